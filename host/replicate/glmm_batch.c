/* The batch engine "glmm-1ri" (replicate/batch.h): GLMMs with one scalar
 * random-effect term, or one vector term of q = 2..MLMX_GB_QMAX columns
 * (Laplace; the engine then names itself "glmm-vec"), binomial (logit,
 * probit, cloglog; a vector term logit only), Poisson log, negative
 * binomial NB2 (log) or cumulative link (ordinal: logit, probit, cloglog),
 * Laplace or adaptive quadrature,
 * simulated and refitted by the inline math of kernels/glmm_batch.h on CPU
 * threads or, in CUDA builds, on the device (kernels/glmm_batch.cu).
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

#include "glmm/ghq.h"
#include "glmm_batch.h"
#include "glmm_batch_cuda.h"
#include "optim/optim.h"
#include "replicate/batch.h"
#include "replicate/glmm_batch_engine.h"


/* The kernels' per-thread local memory (ptxas, sm_90: the largest stack
 * frame of kernels/glmm_batch.cu's eleven instantiations, family x scalar
 * or vector term x canonical or run-time link, 2,624 bytes, rounded up;
 * docs/performance.md), which the driver reserves for every thread the
 * device can hold at once, counted for an H200 (132 SMs x 2048 threads)
 * as the other engines count theirs. */
#define GB_LOCAL_BYTES ((size_t)3072)
#define GB_RESIDENT_THREADS ((size_t)132 * 2048)

typedef struct gb_impl {
    const mlmx_problem *P;
    mlmx_gb_shared S;
    int *imem;     /* cs, clu, pos */
    double *dmem;  /* X, z, nt, gz, glw, beta_sim, x0, lb, hinv0, xmax, extra_sim, tsim */
    double *extra_out; /* set_extra_out's rows (ne a row), or NULL */
    /* CPU scratch a slot: y (n), u (nclu q), qn store (8 np + np^2), xs, g,
     * gp (np each), H (np^2); ints: the active flags (np) */
    mlmx_batch_pool pool;
} gb_impl;

static void gb_free(void *impl)
{
    gb_impl *I = impl;
    if (!I)
        return;
    mlmx_batch_pool_free(&I->pool);
    free(I->imem);
    free(I->dmem);
    free(I);
}

/* The column an ordinal model leaves out of x (its intercept, as
 * glmm.c: thresholds take its place), or -1. */
static int dropped_column(const mlmx_problem *P)
{
    if (P->family != MLMX_FAMILY_ORDINAL)
        return -1;
    for (int j = 0; j < P->md->p; j++)
        if (strcmp(P->md->fixef_names[j], "(Intercept)") == 0)
            return j;
    return -1;
}

/* Why the family and link are not covered, or NULL. */
static const char *uncovered_family(const mlmx_problem *P, char *buf, size_t len)
{
    const int bin_link = P->link == MLMX_LINK_LOGIT || P->link == MLMX_LINK_PROBIT ||
                         P->link == MLMX_LINK_CLOGLOG;
    if (P->family == MLMX_FAMILY_BINOMIAL && !bin_link)
        return "a binomial model with a link other than logit, probit and cloglog";
    if (P->family == MLMX_FAMILY_POISSON && P->link != MLMX_LINK_LOG)
        return "a Poisson model with a link other than log";
    if (P->family == MLMX_FAMILY_NEGBIN && P->link != MLMX_LINK_LOG)
        return "a negative binomial model with a link other than log";
    if (P->family == MLMX_FAMILY_ORDINAL && !bin_link)
        return "an ordinal model with a link other than logit, probit and cloglog";
    if (P->family != MLMX_FAMILY_BINOMIAL && P->family != MLMX_FAMILY_POISSON &&
        P->family != MLMX_FAMILY_NEGBIN && P->family != MLMX_FAMILY_ORDINAL)
        return "a family other than binomial, Poisson, negative binomial and ordinal";
    if (P->family == MLMX_FAMILY_ORDINAL && P->nextra > MLMX_GB_EMAX) {
        snprintf(buf, len, "%d ordinal categories (at most %d)", P->nextra + 1,
                 MLMX_GB_EMAX + 1);
        return buf;
    }
    return NULL;
}

/* Why P is not covered, or NULL. */
static const char *uncovered(const mlmx_problem *P, char *buf, size_t len)
{
    const mlmx_model *md = P->md;
    if (!P->glmm)
        return "a linear mixed model (the glmm-1ri engine fits GLMMs)";
    const char *why = uncovered_family(P, buf, len);
    if (why)
        return why;
    if (md->K != 1)
        return "more than one random-effect term";
    const int q = md->re[0].q;
    if (q > MLMX_GB_QMAX) {
        snprintf(buf, len, "a random-effect term with %d columns (at most %d)", q, MLMX_GB_QMAX);
        return buf;
    }
    if (q > 1 && P->opt.nagq > 1)
        return "adaptive quadrature with a vector random-effect term (Laplace only)";
    /* the binomial probit and cloglog criteria take the expected
     * information, the mode moves with the observed one: the vector
     * cluster (kernels/glmm_batch_vec.h) has one matrix for both */
    if (q > 1 && P->family == MLMX_FAMILY_BINOMIAL && P->link != MLMX_LINK_LOGIT)
        return "a binomial probit or cloglog model with a vector random-effect term (logit only)";
    if (md->offset)
        return "an offset in the model";
    if (md->weights)
        return "prior weights (binomial trials given as weights: use cbind(successes, failures))";
    const int extra = P->family == MLMX_FAMILY_ORDINAL || P->family == MLMX_FAMILY_NEGBIN;
    const int pin = md->p - (dropped_column(P) >= 0), ne = extra ? P->nextra : 0;
    if (pin > MLMX_GB_PMAX) {
        snprintf(buf, len, "%d fixed effects (at most %d)", pin, MLMX_GB_PMAX);
        return buf;
    }
    if (md->n > (size_t)INT_MAX / 2 || md->re[0].nlevels < 1)
        return "too many observations (or no levels)";
    if (P->ntheta != q * (q + 1) / 2 || P->np != P->ntheta + pin + ne || !P->gx0 || !P->glb)
        return "the problem's optimizer parameters are not [theta; beta; extra]";
    /* the ordinal, NB2 and binomial probit/cloglog Laplace refits step
     * BFGS on differences (then a BOBYQA polish) unless BOBYQA is asked
     * for: the engine's analytic gradient finds the same optimum */
    const int fd_refit = extra || (P->family == MLMX_FAMILY_BINOMIAL && P->link != MLMX_LINK_LOGIT);
    if (fd_refit ? P->opt.optimizer == MLMX_OPTIM_BOBYQA : !P->use_grad)
        return "the problem refits by a derivative-free optimizer (BOBYQA)";
    /* a diagonal entry of T at its bound 0 is a stationary point of the
     * criterion (it depends on the entry's square), which BFGS cannot
     * leave; the ordinal and NB2 refits always end with BOBYQA, which can */
    for (int t = 0; extra && q > 1 && t < P->ntheta; t++)
        if (P->glb[t] == 0.0 && P->gx0[t] < 1e-4)
            return "an ordinal or negative binomial model with a vector term that starts with a "
                   "variance at its bound (the workspaces' BOBYQA polish leaves it)";
    if (P->opt.nagq > MLMX_GHQ_MAX) {
        snprintf(buf, len, "%d quadrature points (at most %d)", P->opt.nagq, MLMX_GHQ_MAX);
        return buf;
    }
    return NULL;
}

/* Observations grouped by level, stable in model order (a counting sort,
 * cs used as the running cursor and shifted back). */
static void build_groups(const mlmx_model *md, gb_impl *I)
{
    const int n = (int)md->n, L = md->re[0].nlevels;
    int *cs = I->imem, *clu = cs + L + 1, *pos = clu + n;
    const int *codes = md->re[0].codes;
    for (int l = 0; l <= L; l++)
        cs[l] = 0;
    for (int i = 0; i < n; i++)
        cs[codes[i] + 1]++;
    for (int l = 0; l < L; l++)
        cs[l + 1] += cs[l];
    for (int i = 0; i < n; i++) {
        pos[i] = cs[codes[i]]++;
        clu[pos[i]] = codes[i];
    }
    for (int l = L; l > 0; l--)
        cs[l] = cs[l - 1];
    cs[0] = 0;
}

/* The family's codes and dimensions (S->n, nclu, p, q, nth, np, fam,
 * ncat, ne, pout, int_col, nagq). */
static void shared_dims(const mlmx_problem *P, mlmx_gb_shared *S)
{
    const mlmx_model *md = P->md;
    S->n = (int)md->n;
    S->nclu = md->re[0].nlevels;
    S->pout = md->p;
    S->int_col = dropped_column(P);
    S->p = md->p - (S->int_col >= 0);
    S->fam = P->family == MLMX_FAMILY_POISSON   ? MLMX_FAM_POISSON
             : P->family == MLMX_FAMILY_NEGBIN  ? MLMX_FAM_NEGBIN
             : P->family == MLMX_FAMILY_ORDINAL ? MLMX_FAM_ORDINAL
                                                : MLMX_FAM_BINOMIAL;
    S->link = (int)P->link;
    S->ncat = S->fam == MLMX_FAM_ORDINAL ? P->nextra + 1 : 0;
    S->ne = S->fam == MLMX_FAM_ORDINAL || S->fam == MLMX_FAM_NEGBIN ? P->nextra : 0;
    S->q = md->re[0].q;
    S->nth = S->q * (S->q + 1) / 2;
    S->np = S->nth + S->p + S->ne;
    S->nagq = P->opt.nagq < 1 ? 1 : P->opt.nagq;
}

static mlmx_status build_shared(const mlmx_problem *P, gb_impl *I, mlmx_error *err)
{
    const mlmx_model *md = P->md;
    mlmx_gb_shared *S = &I->S;
    shared_dims(P, S);
    const int n = S->n, L = S->nclu, p = S->p, np = S->np, K = S->nagq, ne = S->ne, q = S->q;
    const size_t nd = (size_t)n * (size_t)(p + q) + (size_t)n + 2 * (size_t)K + 2 * (size_t)p +
                      2 * (size_t)np + (size_t)np * (size_t)np + (size_t)ne + (size_t)(q * q) + 1;
    I->imem = malloc(((size_t)L + 1 + 2 * (size_t)n) * sizeof *I->imem);
    I->dmem = malloc(nd * sizeof *I->dmem);
    if (!I->imem || !I->dmem)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    build_groups(md, I);
    S->cs = I->imem;
    S->clu = I->imem + L + 1;
    S->pos = S->clu + n;
    double *X = I->dmem, *z = X + (size_t)n * p, *nt = z + (size_t)n * q, *gz = nt + n;
    double *glw = gz + K, *bs = glw + K, *x0 = bs + p, *lb = x0 + np, *h0 = lb + np;
    double *xm = h0 + np * np, *es = xm + p, *ts = es + ne;
    /* model column jm is x's column j (the ordinal intercept left out) */
    for (int jm = 0, j = 0; jm < md->p; jm++) {
        if (jm == S->int_col)
            continue;
        const double *col = md->X + (size_t)jm * (size_t)n;
        double mx = 0.0;
        for (int i = 0; i < n; i++) {
            X[(size_t)S->pos[i] * p + j] = col[i];
            mx = fmax(mx, fabs(col[i]));
        }
        bs[j] = P->beta[jm];
        xm[j++] = mx;
    }
    for (int i = 0; i < n; i++) {
        const int k = S->pos[i];
        for (int a = 0; a < q; a++)
            z[(size_t)k * q + a] = md->re[0].z[(size_t)i * q + a];
        nt[k] = S->fam == MLMX_FAM_BINOMIAL && md->resp_kind == MLMX_RESP_CBIND ? md->ntrials[i]
                                                                               : 1.0;
    }
    if (K > 1) {
        double w[MLMX_GHQ_MAX];
        if (mlmx_ghq_rule(K, gz, w, glw) != 0)
            return mlmx_err_set(err, MLMX_ERR_ARG, "no %d-point Gauss-Hermite rule", K);
        for (int a = 0; a < K; a++)
            glw[a] += 0.5 * gz[a] * gz[a];
    }
    if (ne > 0) /* binomial and Poisson have no extra parameters (P->extra NULL) */
        memcpy(es, P->extra, (size_t)ne * sizeof *es);
    memcpy(x0, P->gx0, (size_t)np * sizeof *x0);
    memcpy(lb, P->glb, (size_t)np * sizeof *lb);
    if (P->ghinv0)
        memcpy(h0, P->ghinv0, (size_t)np * np * sizeof *h0);
    S->X = X;
    S->z = z;
    S->nt = nt;
    S->gz = gz;
    S->glw = glw;
    mlmx_cm_theta_to_t(q, P->theta, ts);
    S->tsim = ts;
    S->beta_sim = bs;
    S->extra_sim = es;
    S->x0 = x0;
    S->lb = lb;
    S->hinv0 = P->ghinv0 ? h0 : NULL;
    S->xmax = xm;
    mlmx_optim_opts oo;
    mlmx_optim_opts_default(&oo);
    if (P->opt.max_evaluations > 0)
        oo.max_evals = P->opt.max_evaluations;
    mlmx_qn_cfg_from_opts(&oo, &S->cfg);
    return MLMX_OK;
}

/* ------------------------------------------------------------ CPU rows */

/* Row i of J (and of the extra rows, when set) from the optimum x (NULL:
 * a failed fit, NaN outputs) and the SEs of x's fixed effects (NULL: not
 * computed), in the model's layout (mlmx_gb_unpack). */
static void put_row(const gb_impl *I, const mlmx_batch_job *J, size_t i, const double *x,
                    const double *se, double crit, int nev, int conv, int sing, int status)
{
    const mlmx_gb_shared *S = &I->S;
    const size_t p = (size_t)S->pout, ne = (size_t)S->ne;
    double *beta = J->beta + i * p, *sr = J->se ? J->se + i * p : NULL;
    double *ex = I->extra_out && ne ? I->extra_out + i * ne : NULL;
    if (x) {
        mlmx_gb_unpack(S, x, se, J->theta + i * (size_t)S->nth, beta, sr, ex);
    } else {
        for (int t = 0; t < S->nth; t++)
            J->theta[i * (size_t)S->nth + (size_t)t] = NAN;
        for (size_t j = 0; j < p; j++) {
            beta[j] = NAN;
            if (sr)
                sr[j] = NAN;
        }
        for (size_t k = 0; ex && k < ne; k++)
            ex[k] = NAN;
    }
    if (J->sigma)
        J->sigma[i] = NAN;
    J->crit[i] = crit;
    J->nev[i] = nev;
    J->conv[i] = (signed char)conv;
    J->sing[i] = (signed char)sing;
    J->status[i] = (signed char)status;
}

/* The criterion and gradient of the whole replicate at x (cst: the
 * log-likelihood constants). */
static double eval_all(const mlmx_gb_shared *S, const mlmx_gb_rep *R, const double *x, double *g,
                       double cst)
{
    return mlmx_gb_eval_part(S, R, x, g, 0, 1) - 2.0 * cst;
}

/* One BFGS run from q's start, the theta entries of mask `held` held at
 * their bound (mlmx_gb_hold). */
static void cpu_bfgs(const mlmx_gb_shared *S, const mlmx_gb_rep *R, mlmx_qn_state *q, double cst,
                     int held)
{
    while (mlmx_qn_want(q)) {
        const double f = eval_all(S, R, mlmx_qn_point(q), mlmx_qn_grad(q), cst);
        mlmx_gb_hold(held, S->nth, mlmx_qn_grad(q));
        mlmx_qn_told(q, f);
    }
}

/* SEs of beta by forward differences of the gradient at the optimum. */
static void cpu_se(const mlmx_gb_shared *S, const mlmx_gb_rep *R, const mlmx_qn_state *q,
                   double cst, int sing, double *xs, double *gp, double *H, double *se)
{
    int idx[MLMX_GB_NPMAX];
    const int nf = mlmx_gb_se_index(S, sing, idx), np = S->np;
    for (int a = 0; a < nf; a++) {
        const double h = mlmx_gb_fd_step(S, q->x, idx[a]);
        memcpy(xs, q->x, (size_t)np * sizeof *xs);
        xs[idx[a]] += h;
        eval_all(S, R, xs, gp, cst);
        for (int b = 0; b < nf; b++)
            H[b + a * nf] = (gp[idx[b]] - q->g[idx[b]]) / h;
    }
    mlmx_gb_se_finish(nf, S->p, H, se);
}

static void cpu_rows(const void *impl, const mlmx_batch_job *J, size_t i0, size_t i1)
{
    /* the contract hands impl as const; the slot flags (atomics) and their
     * memory are the only state cpu_rows changes */
    gb_impl *I = (gb_impl *)(uintptr_t)impl;
    const mlmx_gb_shared *S = &I->S;
    const int np = S->np;
    const int which = mlmx_batch_pool_claim(&I->pool);
    if (which < 0) {
        for (size_t i = i0; i < i1; i++)
            put_row(I, J, i, NULL, NULL, NAN, 0, 0, 0, 2);
        return;
    }
    double *y = I->pool.mem[which], *u = y + S->n, *store = u + (size_t)S->nclu * S->q;
    int *active = I->pool.imem[which];
    double *xs = store + 8 * np + np * np, *gp = xs + np, *se = gp + np, *H = se + np;
    mlmx_gb_rep R = {y, u, 1, 1};
    mlmx_qn_state q;
    for (size_t i = i0; i < i1; i++) {
        const double cst = mlmx_gb_simulate(S, J->seed, J->reps[i], &R);
        if (!isfinite(cst)) {
            put_row(I, J, i, NULL, NULL, NAN, 0, 0, 0, 2);
            continue;
        }
        mlmx_qn_bind(&q, np, store, active);
        mlmx_qn_begin(&q, S->x0, S->lb, NULL, &S->cfg, S->hinv0);
        cpu_bfgs(S, &R, &q, cst, 0);
        if (q.failed || !isfinite(q.fx)) {
            put_row(I, J, i, NULL, NULL, NAN, q.n_evals, 0, 0, 2);
            continue;
        }
        /* a vector term's singular ordinal or NB2 fit: once more with the
         * singular entries held at 0 (mlmx_gb_polish_point) */
        const int held = mlmx_gb_polish_point(S, q.x, xs);
        if (held) {
            const int ev = q.n_evals;
            mlmx_qn_begin(&q, xs, S->lb, NULL, &S->cfg, S->hinv0);
            cpu_bfgs(S, &R, &q, cst, held);
            q.n_evals += ev;
            if (q.failed || !isfinite(q.fx)) {
                put_row(I, J, i, NULL, NULL, NAN, q.n_evals, 0, 0, 2);
                continue;
            }
        }
        const int sing = mlmx_gb_singular(S, q.x);
        if (J->se)
            cpu_se(S, &R, &q, cst, sing, xs, gp, H, se);
        put_row(I, J, i, q.x, J->se ? se : NULL, q.fx, q.n_evals, q.converged, sing, 1);
    }
    mlmx_batch_pool_release(&I->pool, which);
}

/* ------------------------------------------------------------ GPU rows */

#ifdef MLMX_HAVE_CUDA
static mlmx_status gpu_rows(void *impl, const mlmx_batch_job *J, mlmx_error *err)
{
    gb_impl *I = impl;
    char msg[MLMX_ERRMSG_MAX];
    msg[0] = 0;
    mlmx_gb_cuda_out o = {J->theta, J->beta, J->se,    J->crit,     J->nev,
                          J->conv,  J->sing, J->status, I->extra_out};
    mlmx_status st = mlmx_cuda_gb_rows(&I->S, J->seed, J->reps, J->count, &o, msg, sizeof msg);
    if (st)
        return mlmx_err_set(err, st, "%s on the device: %s",
                            I->S.q > 1 ? "glmm-vec" : "glmm-1ri", msg);
    if (J->sigma)
        for (size_t i = 0; i < J->count; i++)
            J->sigma[i] = NAN;
    return MLMX_OK;
}

static mlmx_status sim_grouped(const void *S, uint64_t seed, const uint64_t *reps, size_t count,
                               double *y, char *msg, size_t msglen)
{
    return mlmx_cuda_gb_simulate((const mlmx_gb_shared *)S, seed, reps, count, y, msg, msglen);
}

/* The device's draws come in grouped order (mlmx_batch_sim_model_order). */
static mlmx_status gpu_sim(void *impl, uint64_t seed, const uint64_t *reps, size_t count,
                           double *y, mlmx_error *err)
{
    const gb_impl *I = impl;
    return mlmx_batch_sim_model_order(I->S.q > 1 ? "glmm-vec" : "glmm-1ri", sim_grouped, &I->S,
                                      (size_t)I->S.n, I->S.pos, seed, reps, count, y, err);
}
#endif

static void set_extra_out(void *impl, double *extra) { ((gb_impl *)impl)->extra_out = extra; }

mlmx_status mlmx_gb_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err)
{
    char buf[160];
    if (!P || !E)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_gb_engine_init: NULL argument");
    memset(E, 0, sizeof *E);
    const char *why = uncovered(P, buf, sizeof buf);
    if (why)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "the glmm-1ri batch engine does not cover %s",
                            why);
    gb_impl *I = calloc(1, sizeof *I);
    if (!I)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    I->P = P;
    mlmx_status st = build_shared(P, I, err);
    if (!st) {
        const size_t np = (size_t)I->S.np;
        mlmx_batch_pool_init(&I->pool,
                             (size_t)I->S.n + (size_t)I->S.nclu * (size_t)I->S.q + 11 * np +
                                 2 * np * np,
                             np);
    }
    if (st) {
        gb_free(I);
        return st;
    }
    E->name = I->S.q > 1 ? "glmm-vec" : "glmm-1ri";
    E->impl = I;
    E->cpu_rows = cpu_rows;
#ifdef MLMX_HAVE_CUDA
    E->gpu_rows = gpu_rows;
    E->gpu_sim = gpu_sim;
#else
    E->gpu_rows = NULL;
#endif
    E->gpu_fixed_bytes = mlmx_gb_fixed_bytes(&I->S) + GB_RESIDENT_THREADS * GB_LOCAL_BYTES;
    E->gpu_rep_bytes = mlmx_gb_rep_bytes(&I->S);
    E->free = gb_free;
    if (I->S.ne > 0)
        E->set_extra_out = set_extra_out;
    return MLMX_OK;
}

const mlmx_gb_shared *mlmx_gb_engine_shared(const mlmx_batch_engine *E)
{
    if (!E || !E->impl || E->cpu_rows != cpu_rows)
        return NULL;
    return &((const gb_impl *)E->impl)->S;
}
