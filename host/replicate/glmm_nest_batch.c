/* The batch engine "glmm-nest" (replicate/batch.h): GLMMs with two nested
 * scalar random-effect terms, y ~ x + (1|top/fine), binomial logit or
 * Poisson log, Laplace or nested adaptive quadrature, simulated and
 * refitted by the inline math of kernels/glmm_nest_batch.h on CPU threads
 * or, in CUDA builds, on the device (kernels/glmm_nest_batch.cu).
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
#include "glmm_nest_batch.h"
#include "glmm_nest_batch_cuda.h"
#include "optim/optim.h"
#include "replicate/batch.h"
#include "replicate/glmm_nest_batch_engine.h"


typedef struct gn_impl {
    const mlmx_problem *P;
    mlmx_gn_shared S;
    int *imem;    /* ts, ds, dtop, dmap, doc, pos */
    double *dmem; /* X, z0, z1, nt, gz, glw, beta_sim, x0, lb, hinv0, xmax */
    /* CPU scratch a slot: the replicate's arrays, qn store (8 np + np^2),
     * xs, gp, se (np each), H (np^2); ints: the active flags (np) */
    mlmx_batch_pool pool;
} gn_impl;

static void gn_free(void *impl)
{
    gn_impl *I = impl;
    if (!I)
        return;
    mlmx_batch_pool_free(&I->pool);
    free(I->imem);
    free(I->dmem);
    free(I);
}

/* The top level of each fine level, or -1 when some fine level lies in two
 * top levels or has no observation (parent: nfine ints). */
static int fine_parents(const mlmx_model *md, int *parent)
{
    const mlmx_reterm_info *f = &md->re[0], *c = &md->re[1];
    for (int l = 0; l < f->nlevels; l++)
        parent[l] = -1;
    for (size_t i = 0; i < md->n; i++) {
        int *pl = &parent[f->codes[i]];
        if (*pl >= 0 && *pl != c->codes[i])
            return -1;
        *pl = c->codes[i];
    }
    for (int l = 0; l < f->nlevels; l++)
        if (parent[l] < 0)
            return -1;
    for (int l = 0; l < c->nlevels; l++)
        if (c->level_count && c->level_count[l] < 1)
            return -1;
    return 0;
}

/* Why P is not covered, or NULL. */
static const char *uncovered(const mlmx_problem *P, char *buf, size_t len)
{
    const mlmx_model *md = P->md;
    if (!P->glmm)
        return "a linear mixed model (the glmm-nest engine fits GLMMs)";
    const int noncanon = P->family == MLMX_FAMILY_BINOMIAL &&
                         (P->link == MLMX_LINK_PROBIT || P->link == MLMX_LINK_CLOGLOG);
    if (P->family == MLMX_FAMILY_BINOMIAL && P->link != MLMX_LINK_LOGIT && !noncanon)
        return "a binomial model with a link other than logit, probit and cloglog";
    if (noncanon && P->opt.nagq > 1)
        return "a binomial probit or cloglog model by quadrature (the engine fits these links "
               "by the Laplace approximation)";
    if (P->family == MLMX_FAMILY_POISSON && P->link != MLMX_LINK_LOG)
        return "a Poisson model with a link other than log";
    if (P->family != MLMX_FAMILY_BINOMIAL && P->family != MLMX_FAMILY_POISSON)
        return "a family other than binomial and Poisson";
    if (md->K != 2) {
        snprintf(buf, len, "%d random-effect terms (it fits exactly two, nested)", md->K);
        return buf;
    }
    if (md->re[0].q != 1 || md->re[1].q != 1)
        return "a random-effect term with more than one column";
    if (md->offset)
        return "an offset in the model";
    if (md->weights)
        return "prior weights (binomial trials given as weights: use cbind(successes, failures))";
    if (md->p > MLMX_GN_PMAX) {
        snprintf(buf, len, "%d fixed effects (at most %d)", md->p, MLMX_GN_PMAX);
        return buf;
    }
    if (md->n > (size_t)INT_MAX / 2 || md->re[0].nlevels < 1 || md->re[1].nlevels < 1)
        return "too many observations (or no levels)";
    if (!P->gsu || P->gsu->nchain != 1)
        return "two random-effect terms that are not nested (crossed factors)";
    int *parent = malloc((size_t)md->re[0].nlevels * sizeof *parent);
    if (!parent)
        return "a model too large to analyse (out of memory)";
    const int bad = fine_parents(md, parent);
    free(parent);
    if (bad)
        return "two terms that are not nested level by level (or an empty level)";
    if (P->np != 2 + md->p || P->ntheta != 2 || !P->gx0 || !P->glb)
        return "the problem's optimizer parameters are not [theta; beta]";
    /* the probit and cloglog Laplace refits step BFGS on differences (then
     * a BOBYQA polish) unless BOBYQA is asked for: the engine's analytic
     * gradient finds the same optimum */
    if (noncanon ? P->opt.optimizer == MLMX_OPTIM_BOBYQA : !P->use_grad)
        return "the problem refits by a derivative-free optimizer (BOBYQA)";
    if (P->opt.nagq > MLMX_GHQ_MAX) {
        snprintf(buf, len, "%d quadrature points (at most %d)", P->opt.nagq, MLMX_GHQ_MAX);
        return buf;
    }
    /* the (node, doctor) items are counted in int, their results in size_t */
    if ((size_t)(P->opt.nagq > 1 ? P->opt.nagq : 1) * (size_t)md->re[0].nlevels *
            (size_t)(md->p + 3) > (size_t)INT_MAX)
        return "too many quadrature items (points times fine levels)";
    return NULL;
}

/* Doctors in hospital order (fine levels by parent, then level), and the
 * observations grouped by doctor, stable in model order (counting sorts). */
static void build_groups(const mlmx_model *md, gn_impl *I, int *parent)
{
    const int n = (int)md->n, nf = md->re[0].nlevels, nt = md->re[1].nlevels;
    int *ts = I->imem, *ds = ts + nt + 1, *dtop = ds + nf + 1, *dmap = dtop + nf;
    int *doc = dmap + nf, *pos = doc + n;
    const int *fc = md->re[0].codes;
    fine_parents(md, parent);
    for (int h = 0; h <= nt; h++)
        ts[h] = 0;
    for (int l = 0; l < nf; l++)
        ts[parent[l] + 1]++;
    for (int h = 0; h < nt; h++)
        ts[h + 1] += ts[h];
    for (int l = 0; l < nf; l++) { /* ts as the running cursor, shifted back below */
        dmap[l] = ts[parent[l]]++;
        dtop[dmap[l]] = parent[l];
    }
    for (int h = nt; h > 0; h--)
        ts[h] = ts[h - 1];
    ts[0] = 0;
    for (int d = 0; d <= nf; d++)
        ds[d] = 0;
    for (int i = 0; i < n; i++)
        ds[dmap[fc[i]] + 1]++;
    for (int d = 0; d < nf; d++)
        ds[d + 1] += ds[d];
    for (int i = 0; i < n; i++) {
        const int d = dmap[fc[i]];
        pos[i] = ds[d]++;
        doc[pos[i]] = d;
    }
    for (int d = nf; d > 0; d--)
        ds[d] = ds[d - 1];
    ds[0] = 0;
}

static mlmx_status build_shared(const mlmx_problem *P, gn_impl *I, mlmx_error *err)
{
    const mlmx_model *md = P->md;
    const int n = (int)md->n, nf = md->re[0].nlevels, nt = md->re[1].nlevels, p = md->p;
    const int np = 2 + p, K = P->opt.nagq < 1 ? 1 : P->opt.nagq;
    const size_t nd = (size_t)n * (size_t)p + 3 * (size_t)n + 2 * (size_t)K + 2 * (size_t)p +
                      2 * (size_t)np + (size_t)np * (size_t)np + 1;
    I->imem = malloc(((size_t)nt + 1 + 3 * (size_t)nf + 1 + 2 * (size_t)n) * sizeof *I->imem);
    I->dmem = malloc(nd * sizeof *I->dmem);
    int *parent = malloc((size_t)nf * sizeof *parent);
    if (!I->imem || !I->dmem || !parent) {
        free(parent);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    build_groups(md, I, parent);
    free(parent);
    mlmx_gn_shared *S = &I->S;
    S->n = n;
    S->p = p;
    S->np = np;
    S->nfine = nf;
    S->ntop = nt;
    S->itf = md->re[0].theta_offset;
    S->itc = md->re[1].theta_offset;
    S->poisson = P->family == MLMX_FAMILY_POISSON;
    S->link = (int)P->link;
    S->nagq = K;
    S->ts = I->imem;
    S->ds = S->ts + nt + 1;
    S->dtop = S->ds + nf + 1;
    S->dmap = S->dtop + nf;
    S->doc = S->dmap + nf;
    S->pos = S->doc + n;
    double *X = I->dmem, *z0 = X + (size_t)n * p, *z1 = z0 + n, *ntr = z1 + n, *gz = ntr + n;
    double *glw = gz + K, *bs = glw + K, *x0 = bs + p, *lb = x0 + np, *h0 = lb + np;
    double *xm = h0 + np * np;
    for (int i = 0; i < n; i++) {
        const int k = S->pos[i];
        for (int j = 0; j < p; j++)
            X[(size_t)k * p + j] = md->X[(size_t)j * n + i];
        z0[k] = md->re[0].z[i];
        z1[k] = md->re[1].z[i];
        ntr[k] = md->resp_kind == MLMX_RESP_CBIND ? md->ntrials[i] : 1.0;
    }
    if (K > 1) {
        double w[MLMX_GHQ_MAX];
        if (mlmx_ghq_rule(K, gz, w, glw) != 0)
            return mlmx_err_set(err, MLMX_ERR_ARG, "no %d-point Gauss-Hermite rule", K);
        for (int a = 0; a < K; a++)
            glw[a] += 0.5 * gz[a] * gz[a];
    }
    for (int j = 0; j < p; j++) {
        bs[j] = P->beta[j];
        double mx = 0.0;
        for (int i = 0; i < n; i++)
            mx = fmax(mx, fabs(md->X[(size_t)j * n + i]));
        xm[j] = mx;
    }
    S->X = X;
    S->z0 = z0;
    S->z1 = z1;
    S->nt = ntr;
    S->gz = gz;
    S->glw = glw;
    S->thf_sim = P->theta[S->itf];
    S->thc_sim = P->theta[S->itc];
    S->beta_sim = bs;
    S->xmax = xm;
    S->x0 = x0;
    S->lb = lb;
    mlmx_batch_glmm_optim(P, S->np, x0, lb, h0, &S->hinv0, &S->cfg);
    return MLMX_OK;
}

/* ------------------------------------------------------------ CPU rows */

static size_t slot_doubles(const mlmx_gn_shared *S)
{
    const size_t np = (size_t)S->np;
    return mlmx_gn_rep_doubles(S) + 11 * np + 2 * np * np;
}

static void put_row(const mlmx_batch_job *J, size_t i, int p, const double *x, const double *se,
                    double crit, int nev, int conv, int sing, int status)
{
    for (int t = 0; t < 2; t++)
        J->theta[i * 2 + (size_t)t] = x ? x[t] : NAN;
    for (int j = 0; j < p; j++) {
        J->beta[i * (size_t)p + j] = x ? x[2 + j] : NAN;
        if (J->se)
            J->se[i * (size_t)p + j] = se ? se[j] : NAN;
    }
    if (J->sigma)
        J->sigma[i] = NAN;
    J->crit[i] = crit;
    J->nev[i] = nev;
    J->conv[i] = (signed char)conv;
    J->sing[i] = (signed char)sing;
    J->status[i] = (signed char)status;
}

/* SEs of beta by forward differences of the gradient at the optimum. */
static void cpu_se(const mlmx_gn_shared *S, const mlmx_gn_rep *R, const mlmx_qn_state *q,
                   int sing, double *xs, double *gp, double *H, double *se)
{
    int idx[MLMX_GN_NPMAX];
    const int nf = mlmx_gn_se_index(S, sing, idx), np = S->np;
    for (int a = 0; a < nf; a++) {
        const double h = mlmx_gn_fd_step(S, q->x, idx[a]);
        memcpy(xs, q->x, (size_t)np * sizeof *xs);
        xs[idx[a]] += h;
        mlmx_gn_eval(S, R, xs, gp);
        for (int b = 0; b < nf; b++)
            H[b + a * nf] = (gp[idx[b]] - q->g[idx[b]]) / h;
    }
    mlmx_gb_se_finish(nf, S->p, H, se);
}

static void cpu_rows(const void *impl, const mlmx_batch_job *J, size_t i0, size_t i1)
{
    /* the contract hands impl as const; the slot flags (atomics) and their
     * memory are the only state cpu_rows changes */
    gn_impl *I = (gn_impl *)(uintptr_t)impl;
    const mlmx_gn_shared *S = &I->S;
    const int np = S->np, p = S->p;
    const int which = mlmx_batch_pool_claim(&I->pool);
    if (which < 0) {
        for (size_t i = i0; i < i1; i++)
            put_row(J, i, p, NULL, NULL, NAN, 0, 0, 0, 2);
        return;
    }
    mlmx_gn_rep R;
    mlmx_gn_rep_bind(S, I->pool.mem[which], &R);
    double *store = I->pool.mem[which] + mlmx_gn_rep_doubles(S);
    double *xs = store + 8 * np + np * np, *gp = xs + np, *se = gp + np, *H = se + np;
    mlmx_qn_state q;
    for (size_t i = i0; i < i1; i++) {
        const double cst = mlmx_gn_simulate(S, J->seed, J->reps[i], &R);
        if (!isfinite(cst)) {
            put_row(J, i, p, NULL, NULL, NAN, 0, 0, 0, 2);
            continue;
        }
        mlmx_qn_bind(&q, np, store, I->pool.imem[which]);
        mlmx_qn_begin(&q, S->x0, S->lb, NULL, &S->cfg, S->hinv0);
        int nev0 = 0;
        for (int run = 0; run < 2; run++) {
            while (mlmx_qn_want(&q))
                mlmx_qn_told(&q,
                             mlmx_gn_eval(S, &R, mlmx_qn_point(&q), mlmx_qn_grad(&q)) - 2.0 * cst);
            if (run == 1 || !mlmx_gn_restart_due(&q, S->lb))
                break;
            nev0 = q.n_evals;
            mlmx_gn_restart_point(&q, S->lb, xs, gp); /* gp: the bounds until cpu_se */
            mlmx_qn_begin(&q, xs, S->lb, gp, &S->cfg, NULL);
        }
        q.n_evals += nev0;
        if (q.failed || !isfinite(q.fx)) {
            put_row(J, i, p, NULL, NULL, NAN, q.n_evals, 0, 0, 2);
            continue;
        }
        const int sing = mlmx_gn_singular(q.x);
        if (J->se)
            cpu_se(S, &R, &q, sing, xs, gp, H, se);
        put_row(J, i, p, q.x, J->se ? se : NULL, q.fx, q.n_evals, q.converged, sing, 1);
    }
    mlmx_batch_pool_release(&I->pool, which);
}

/* ------------------------------------------------------------ GPU rows */

#ifdef MLMX_HAVE_CUDA
static mlmx_status gpu_rows(void *impl, const mlmx_batch_job *J, mlmx_error *err)
{
    gn_impl *I = impl;
    char msg[MLMX_ERRMSG_MAX];
    msg[0] = 0;
    mlmx_gn_cuda_out o = {J->theta, J->beta, J->se, J->crit, J->nev, J->conv, J->sing, J->status};
    mlmx_status st = mlmx_cuda_gn_rows(&I->S, J->seed, J->reps, J->count, &o, msg, sizeof msg);
    if (st)
        return mlmx_err_set(err, st, "glmm-nest on the device: %s", msg);
    if (J->sigma)
        for (size_t i = 0; i < J->count; i++)
            J->sigma[i] = NAN;
    return MLMX_OK;
}

static mlmx_status sim_grouped(const void *S, uint64_t seed, const uint64_t *reps, size_t count,
                               double *y, char *msg, size_t msglen)
{
    return mlmx_cuda_gn_simulate((const mlmx_gn_shared *)S, seed, reps, count, y, msg, msglen);
}

/* The device's draws come in grouped order (mlmx_batch_sim_model_order). */
static mlmx_status gpu_sim(void *impl, uint64_t seed, const uint64_t *reps, size_t count,
                           double *y, mlmx_error *err)
{
    const gn_impl *I = impl;
    return mlmx_batch_sim_model_order("glmm-nest", sim_grouped, &I->S, (size_t)I->S.n, I->S.pos,
                                      seed, reps, count, y, err);
}
#endif

mlmx_status mlmx_gn_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err)
{
    char buf[160];
    if (!P || !E)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_gn_engine_init: NULL argument");
    memset(E, 0, sizeof *E);
    const char *why = uncovered(P, buf, sizeof buf);
    if (why)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "the glmm-nest batch engine does not cover %s", why);
    gn_impl *I = calloc(1, sizeof *I);
    if (!I)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    I->P = P;
    mlmx_status st = build_shared(P, I, err);
    if (!st)
        mlmx_batch_pool_init(&I->pool, slot_doubles(&I->S), (size_t)I->S.np);
    if (st) {
        gn_free(I);
        return st;
    }
    E->name = "glmm-nest";
    E->impl = I;
    E->cpu_rows = cpu_rows;
#ifdef MLMX_HAVE_CUDA
    E->gpu_rows = gpu_rows;
    E->gpu_sim = gpu_sim;
#else
    E->gpu_rows = NULL;
#endif
    E->gpu_fixed_bytes = mlmx_gn_fixed_bytes(&I->S);
    E->gpu_rep_bytes = mlmx_gn_rep_bytes(&I->S);
    E->free = gn_free;
    return MLMX_OK;
}

const mlmx_gn_shared *mlmx_gn_engine_shared(const mlmx_batch_engine *E)
{
    if (!E || !E->impl || E->cpu_rows != cpu_rows)
        return NULL;
    return &((const gn_impl *)E->impl)->S;
}
