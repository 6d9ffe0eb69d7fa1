/* The batch engine "glmm-crossed" (replicate/batch.h): GLMMs with 2 to
 * MLMX_GC_KMAX scalar random-effect terms, crossed or nested, binomial
 * logit or Poisson log, by the Laplace approximation, simulated and
 * refitted by the inline math of kernels/glmm_crossed_batch.h on CPU
 * threads or, in CUDA builds, on the device (kernels/glmm_crossed_batch.cu,
 * one replicate per thread running the same mlmx_gc_fit_one).
 *
 * CPU scratch: cpu_rows allocates nothing per replicate; each concurrent
 * caller claims a slot of the engine's mlmx_batch_pool (batch.h). */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glmm_crossed_batch.h"
#include "glmm_crossed_batch_cuda.h"
#include "replicate/batch.h"
#include "replicate/glmm_crossed_batch_engine.h"

typedef struct gc_impl {
    const mlmx_problem *P;
    mlmx_gc_shared S;
    int *ls, *rp, *rc, *lv, *col, *bent, *pos;
    double *dmem; /* X, Z, nt, theta_sim, beta_sim, x0, lb, hinv0, xmax */
    /* CPU scratch a slot: the replicate's arrays, qn store (8 np + np^2),
     * xs, gp, se (np each), H (np^2); ints: the active flags (np) */
    mlmx_batch_pool pool;
} gc_impl;

static void gc_free(void *impl)
{
    gc_impl *I = impl;
    if (!I)
        return;
    mlmx_batch_pool_free(&I->pool);
    free(I->ls);
    free(I->rp);
    free(I->rc);
    free(I->lv);
    free(I->col);
    free(I->bent);
    free(I->pos);
    free(I->dmem);
    free(I);
}

/* Columns of the dense block: the levels of terms 1..K-1. */
static long dense_columns(const mlmx_model *md)
{
    long m = 0;
    for (int k = 1; k < md->K; k++)
        m += md->re[k].nlevels;
    return m;
}

/* Why P is not covered, or NULL. */
static const char *uncovered(const mlmx_problem *P, char *buf, size_t len)
{
    const mlmx_model *md = P->md;
    if (!P->glmm)
        return "a linear mixed model (the glmm-crossed engine fits GLMMs)";
    if (P->family == MLMX_FAMILY_BINOMIAL && P->link != MLMX_LINK_LOGIT)
        return "a binomial model with a link other than logit";
    if (P->family == MLMX_FAMILY_POISSON && P->link != MLMX_LINK_LOG)
        return "a Poisson model with a link other than log";
    if (P->family != MLMX_FAMILY_BINOMIAL && P->family != MLMX_FAMILY_POISSON)
        return "a family other than binomial and Poisson";
    if (md->K < 2 || md->K > MLMX_GC_KMAX) {
        snprintf(buf, len, "%d random-effect terms (it fits 2 to %d)", md->K, MLMX_GC_KMAX);
        return buf;
    }
    for (int k = 0; k < md->K; k++)
        if (md->re[k].q != 1 || md->re[k].theta_offset != k)
            return "a random-effect term with more than one column";
    if (P->opt.nagq > 1)
        return "adaptive quadrature (it fits the Laplace approximation)";
    if (md->offset)
        return "an offset in the model";
    if (md->weights)
        return "prior weights (binomial trials given as weights: use cbind(successes, failures))";
    if (md->K + md->p > MLMX_GC_NPMAX) {
        snprintf(buf, len, "%d parameters (at most %d)", md->K + md->p, MLMX_GC_NPMAX);
        return buf;
    }
    const long m = dense_columns(md);
    if (m > MLMX_GC_MMAX) {
        snprintf(buf, len, "%ld levels in the terms after the first (at most %d)", m,
                 MLMX_GC_MMAX);
        return buf;
    }
    if (md->n > (size_t)INT_MAX / MLMX_GC_KMAX || md->re[0].nlevels < 1)
        return "too many observations (or no levels)";
    if (P->np != md->K + md->p || P->ntheta != md->K || !P->gx0 || !P->glb)
        return "the problem's optimizer parameters are not [theta; beta]";
    if (!P->use_grad)
        return "the problem refits by a derivative-free optimizer (BOBYQA)";
    return NULL;
}

/* Observations grouped by the first term's level (counting sort, stable
 * in model order): ls, pos, lv, and each position's uR columns. */
static void build_groups(const mlmx_model *md, gc_impl *I)
{
    const int n = (int)md->n, n0 = md->re[0].nlevels, K = md->K;
    const int *c0 = md->re[0].codes;
    int *ls = I->ls;
    for (int j = 0; j <= n0; j++)
        ls[j] = 0;
    for (int i = 0; i < n; i++)
        ls[c0[i] + 1]++;
    for (int j = 0; j < n0; j++)
        ls[j + 1] += ls[j];
    for (int i = 0; i < n; i++) {
        const int k = ls[c0[i]]++;
        I->pos[i] = k;
        I->lv[k] = c0[i];
        for (int t = 1; t < K; t++)
            I->col[(size_t)k * (K - 1) + t - 1] = I->S.tcol[t] + md->re[t].codes[i];
    }
    for (int j = n0; j > 0; j--)
        ls[j] = ls[j - 1];
    ls[0] = 0;
}

/* B's pattern: each level's distinct uR columns in increasing order (rp,
 * rc), and the entry of each position's columns (bent). mark: m ints. */
static mlmx_status build_pattern(gc_impl *I, int *mark, mlmx_error *err)
{
    mlmx_gc_shared *S = &I->S;
    const int m = S->m, K1 = S->K - 1;
    for (int c = 0; c < m; c++)
        mark[c] = -1;
    int nnz = 0;
    for (int pass = 0; pass < 2; pass++) {
        nnz = 0;
        for (int c = 0; c < m; c++)
            mark[c] = -1;
        for (int j = 0; j < S->n0; j++) {
            I->rp[j] = nnz;
            for (int k = I->ls[j]; k < I->ls[j + 1]; k++)
                for (int t = 0; t < K1; t++)
                    mark[I->col[(size_t)k * K1 + t]] = -2 - j;
            for (int c = 0; c < m; c++)
                if (mark[c] == -2 - j) {
                    if (pass)
                        I->rc[nnz] = c;
                    mark[c] = nnz++; /* the entry, for this level's positions */
                }
            if (pass)
                for (int k = I->ls[j]; k < I->ls[j + 1]; k++)
                    for (int t = 0; t < K1; t++)
                        I->bent[(size_t)k * K1 + t] = mark[I->col[(size_t)k * K1 + t]];
        }
        I->rp[S->n0] = nnz;
        if (!pass && !(I->rc = malloc((nnz ? (size_t)nnz : 1) * sizeof *I->rc)))
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    S->nnz = nnz;
    return MLMX_OK;
}

/* The model's data in grouped order, and the simulation's parameters. */
static void build_data(const mlmx_problem *P, gc_impl *I)
{
    const mlmx_model *md = P->md;
    mlmx_gc_shared *S = &I->S;
    const int n = S->n, p = S->p, K = S->K, np = S->np;
    double *X = I->dmem, *Z = X + (size_t)n * p, *ntr = Z + (size_t)n * K, *ts = ntr + n;
    double *bs = ts + K, *x0 = bs + p, *lb = x0 + np, *h0 = lb + np, *xm = h0 + np * np;
    for (int i = 0; i < n; i++) {
        const int k = I->pos[i];
        for (int j = 0; j < p; j++)
            X[(size_t)k * p + j] = md->X[(size_t)j * n + i];
        for (int t = 0; t < K; t++)
            Z[(size_t)k * K + t] = md->re[t].z[i];
        ntr[k] = md->resp_kind == MLMX_RESP_CBIND ? md->ntrials[i] : 1.0;
    }
    for (int t = 0; t < K; t++)
        ts[t] = P->theta[t];
    for (int j = 0; j < p; j++) {
        bs[j] = P->beta[j];
        double mx = 0.0;
        for (int i = 0; i < n; i++)
            mx = fmax(mx, fabs(md->X[(size_t)j * n + i]));
        xm[j] = mx;
    }
    S->X = X;
    S->Z = Z;
    S->nt = ntr;
    S->theta_sim = ts;
    S->beta_sim = bs;
    S->xmax = xm;
    S->x0 = x0;
    S->lb = lb;
    mlmx_batch_glmm_optim(P, S->np, x0, lb, h0, &S->hinv0, &S->cfg);
}

static mlmx_status build_shared(const mlmx_problem *P, gc_impl *I, mlmx_error *err)
{
    const mlmx_model *md = P->md;
    mlmx_gc_shared *S = &I->S;
    S->n = (int)md->n;
    S->p = md->p;
    S->K = md->K;
    S->np = md->K + md->p;
    S->n0 = md->re[0].nlevels;
    S->m = (int)dense_columns(md);
    S->poisson = P->family == MLMX_FAMILY_POISSON;
    S->tcol[0] = 0;
    for (int k = 1, c = 0; k < S->K; k++) {
        S->tcol[k] = c;
        c += md->re[k].nlevels;
    }
    const size_t n = (size_t)S->n, n0 = (size_t)S->n0, K1 = (size_t)S->K - 1;
    const size_t np = (size_t)S->np;
    I->ls = malloc((n0 + 1) * sizeof *I->ls);
    I->rp = malloc((n0 + 1) * sizeof *I->rp);
    I->lv = malloc(n * sizeof *I->lv);
    I->pos = malloc(n * sizeof *I->pos);
    I->col = malloc(n * K1 * sizeof *I->col);
    I->bent = malloc(n * K1 * sizeof *I->bent);
    I->dmem = malloc((n * (size_t)(S->p + S->K + 1) + (size_t)(S->K + S->p) + 3 * np +
                      np * np + 1) * sizeof *I->dmem);
    int *mark = malloc(((size_t)S->m + 1) * sizeof *mark);
    if (!I->ls || !I->rp || !I->lv || !I->pos || !I->col || !I->bent || !I->dmem || !mark) {
        free(mark);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    build_groups(md, I);
    mlmx_status st = build_pattern(I, mark, err);
    free(mark);
    if (st)
        return st;
    S->ls = I->ls;
    S->rp = I->rp;
    S->rc = I->rc;
    S->lv = I->lv;
    S->col = I->col;
    S->bent = I->bent;
    S->pos = I->pos;
    build_data(P, I);
    return MLMX_OK;
}

/* ------------------------------------------------------------ CPU rows */

static size_t slot_doubles(const mlmx_gc_shared *S)
{
    return mlmx_gc_rep_doubles(S) + mlmx_gc_opt_doubles(S) + (size_t)S->np + (size_t)S->p;
}

static void put_row(const mlmx_batch_job *J, size_t i, const mlmx_gc_shared *S, const double *x,
                    const double *se, const mlmx_gc_result *res)
{
    const int K = S->K, p = S->p, ok = res->status == 1;
    for (int t = 0; t < K; t++)
        J->theta[i * (size_t)K + (size_t)t] = ok ? x[t] : NAN;
    for (int j = 0; j < p; j++) {
        J->beta[i * (size_t)p + j] = ok ? x[K + j] : NAN;
        if (J->se)
            J->se[i * (size_t)p + j] = ok ? se[j] : NAN;
    }
    if (J->sigma)
        J->sigma[i] = NAN;
    J->crit[i] = res->crit;
    J->nev[i] = res->nev;
    J->conv[i] = (signed char)res->conv;
    J->sing[i] = (signed char)res->sing;
    J->status[i] = (signed char)res->status;
}

static void cpu_rows(const void *impl, const mlmx_batch_job *J, size_t i0, size_t i1)
{
    /* the contract hands impl as const; the slot flags (atomics) and their
     * memory are the only state cpu_rows changes */
    gc_impl *I = (gc_impl *)(uintptr_t)impl;
    const mlmx_gc_shared *S = &I->S;
    const int which = mlmx_batch_pool_claim(&I->pool);
    mlmx_gc_result res = {NAN, 0, 0, 0, 2};
    if (which < 0) {
        for (size_t i = i0; i < i1; i++)
            put_row(J, i, S, NULL, NULL, &res);
        return;
    }
    mlmx_gc_rep R;
    mlmx_gc_rep_bind(S, I->pool.mem[which], &R);
    double *opt = I->pool.mem[which] + mlmx_gc_rep_doubles(S);
    double *x = opt + mlmx_gc_opt_doubles(S), *se = x + S->np;
    for (size_t i = i0; i < i1; i++) {
        mlmx_gc_fit_one(S, &R, J->seed, J->reps[i], opt, I->pool.imem[which], x,
                        J->se ? se : NULL, &res);
        put_row(J, i, S, x, se, &res);
    }
    mlmx_batch_pool_release(&I->pool, which);
}

/* ------------------------------------------------------------ GPU rows */

#ifdef MLMX_HAVE_CUDA
static mlmx_status gpu_rows(void *impl, const mlmx_batch_job *J, mlmx_error *err)
{
    gc_impl *I = impl;
    char msg[MLMX_ERRMSG_MAX];
    msg[0] = 0;
    mlmx_gc_cuda_out o = {J->theta, J->beta, J->se, J->crit, J->nev, J->conv, J->sing, J->status};
    mlmx_status st = mlmx_cuda_gc_rows(&I->S, J->seed, J->reps, J->count, &o, msg, sizeof msg);
    if (st)
        return mlmx_err_set(err, st, "glmm-crossed on the device: %s", msg);
    if (J->sigma)
        for (size_t i = 0; i < J->count; i++)
            J->sigma[i] = NAN;
    return MLMX_OK;
}

static mlmx_status gpu_sim(void *impl, uint64_t seed, const uint64_t *reps, size_t count,
                           double *y, mlmx_error *err)
{
    gc_impl *I = impl;
    char msg[MLMX_ERRMSG_MAX];
    msg[0] = 0;
    mlmx_status st = mlmx_cuda_gc_simulate(&I->S, seed, reps, count, y, msg, sizeof msg);
    if (st)
        return mlmx_err_set(err, st, "glmm-crossed simulation on the device: %s", msg);
    return MLMX_OK;
}
#endif

mlmx_status mlmx_gc_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err)
{
    char buf[160];
    if (!P || !E)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_gc_engine_init: NULL argument");
    memset(E, 0, sizeof *E);
    const char *why = uncovered(P, buf, sizeof buf);
    if (why)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "the glmm-crossed batch engine does not cover %s", why);
    gc_impl *I = calloc(1, sizeof *I);
    if (!I)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    I->P = P;
    mlmx_status st = build_shared(P, I, err);
    if (st) {
        gc_free(I);
        return st;
    }
    mlmx_batch_pool_init(&I->pool, slot_doubles(&I->S), (size_t)I->S.np);
    E->name = "glmm-crossed";
    E->impl = I;
    E->cpu_rows = cpu_rows;
#ifdef MLMX_HAVE_CUDA
    E->gpu_rows = gpu_rows;
    E->gpu_sim = gpu_sim;
#endif
    E->gpu_fixed_bytes = mlmx_gc_fixed_bytes(&I->S);
    E->gpu_rep_bytes = mlmx_gc_rep_bytes(&I->S);
    E->free = gc_free;
    return MLMX_OK;
}

const mlmx_gc_shared *mlmx_gc_engine_shared(const mlmx_batch_engine *E)
{
    if (!E || !E->impl || E->cpu_rows != cpu_rows)
        return NULL;
    return &((const gc_impl *)E->impl)->S;
}
