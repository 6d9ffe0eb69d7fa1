/* The batch engine for LMMs with nested random-effect terms ("lmm-nest"):
 * the shared structure of kernels/lmm_nest_batch.h built once from a
 * prepared problem (the nesting forest, level positions, per-level cross
 * products), the CPU rows (the kernel math on the calling thread) and the
 * device rows (the same math in kernels/lmm_nest_batch.cu). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmm_nest_batch.h"
#include "optim/optim.h"
#include "replicate/batch.h"
#include "replicate/lmm_nest_engine.h"
#ifdef MLMX_HAVE_CUDA
#include "lmm_nest_batch_cuda.h"
#endif

typedef struct nb_impl {
    mlmx_nb_model M; /* first: tests read the model through E->impl */
    int *ibuf;       /* cptr, code2pos, pos2code, opos, tobs_ptr, tobs */
    double *dbuf;    /* Z, dat, XtX */
    unsigned char *logp;
    int mapping;     /* device mapping (MLMX_NB_MAP_*) */
    void *dev;       /* the device context (mlmx_cuda_nb), made on first use */
} nb_impl;

static void nb_free(void *p)
{
    nb_impl *I = p;
    if (!I)
        return;
#ifdef MLMX_HAVE_CUDA
    mlmx_cuda_nb_free(I->dev);
#endif
    free(I->ibuf);
    free(I->dbuf);
    free(I->logp);
    free(I);
}

static mlmx_status unsupported(mlmx_error *err, const char *why)
{
    return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "the nested LMM batch engine: %s", why);
}

/* The model is one the engine covers, or the reason it is not. */
static mlmx_status check_model(const mlmx_problem *P, mlmx_error *err)
{
    const mlmx_model *md = P->md;
    if (P->glmm)
        return unsupported(err, "not a linear mixed model");
    if (md->K < 2)
        return unsupported(err, "one random-effect term (no nesting)");
    if (md->K > MLMX_NB_KMAX)
        return unsupported(err, "more than 3 random-effect terms");
    if (md->p > MLMX_NB_PMAX)
        return unsupported(err, "more than 16 fixed-effect columns");
    if (md->offset || md->weights)
        return unsupported(err, "an offset or prior weights");
    if (md->n > INT_MAX / (size_t)MLMX_NB_KMAX)
        return unsupported(err, "the data size");
    int rsum = 0;
    for (int k = 0; k < md->K; k++) {
        if (md->re[k].q > MLMX_NB_QMAX)
            return unsupported(err, "a random-effect term with more than 2 columns");
        if (md->re[k].nlevels < 1)
            return unsupported(err, "a grouping factor without levels");
        rsum += md->re[k].q;
    }
    if (rsum > MLMX_NB_RMAX || P->ntheta > MLMX_NB_NTMAX)
        return unsupported(err, "more than 4 random-effect columns in all");
    return MLMX_OK;
}

/* par (sum of nlevels of terms 0..K-2, at noff): the level of term k+1
 * that holds each level of term k (-1 for a level without observations).
 * MLMX_ERR_UNSUPPORTED naming the two factors when one level of term k
 * meets two of term k+1 (the factors are crossed, not nested). */
static mlmx_status find_parents(const mlmx_model *md, const int *noff, int *par, mlmx_error *err)
{
    for (int k = 0; k + 1 < md->K; k++) {
        int *pk = par + noff[k];
        const int *ca = md->re[k].codes, *cb = md->re[k + 1].codes;
        for (int l = 0; l < md->re[k].nlevels; l++)
            pk[l] = -1;
        for (size_t i = 0; i < md->n; i++) {
            if (pk[ca[i]] < 0) {
                pk[ca[i]] = cb[i];
            } else if (pk[ca[i]] != cb[i]) {
                char why[512];
                snprintf(why, sizeof why,
                         "the grouping factors '%s' and '%s' are crossed, not nested (level "
                         "'%s' of the first meets two levels of the second)",
                         md->re[k].group, md->re[k + 1].group, md->re[k].levels[ca[i]]);
                return unsupported(err, why);
            }
        }
    }
    return MLMX_OK;
}

/* Positions: the top term keeps its codes; each finer term's levels are
 * sorted by their parent's position (then code), so the children of a
 * level, and all descendants of a top cluster, are contiguous. Fills
 * code2pos, pos2code and the children pointers; fill holds the largest
 * nlev ints of scratch. */
static void order_levels(const mlmx_nb_model *M, const int *par, int *cptr, int *c2p, int *p2c,
                         int *fill)
{
    const int K = M->K, top = K - 1;
    for (int l = 0; l < M->nlev[top]; l++)
        c2p[M->noff[top] + l] = p2c[M->noff[top] + l] = l;
    for (int k = K - 2; k >= 0; k--) {
        const int nl = M->nlev[k], np = M->nlev[k + 1];
        int *cp = cptr + M->coff[k + 1];
        const int *pk = par + M->noff[k], *pc2p = c2p + M->noff[k + 1];
        for (int a = 0; a <= np; a++)
            cp[a] = 0;
        /* a level without observations goes under the first parent: its
         * block is the identity and adds nothing */
        for (int l = 0; l < nl; l++)
            cp[(pk[l] < 0 ? 0 : pc2p[pk[l]]) + 1]++;
        for (int a = 0; a < np; a++)
            cp[a + 1] += cp[a];
        for (int a = 0; a < np; a++)
            fill[a] = cp[a];
        int *pos = c2p + M->noff[k];
        for (int l = 0; l < nl; l++)
            pos[l] = fill[pk[l] < 0 ? 0 : pc2p[pk[l]]]++;
        for (int l = 0; l < nl; l++)
            p2c[M->noff[k] + pos[l]] = l;
    }
}

/* Per observation its positions, and the observations of each top
 * cluster in increasing order. */
static void order_obs(const mlmx_model *md, const mlmx_nb_model *M, const int *c2p, int *opos,
                      int *tptr, int *tobs)
{
    const int K = M->K, top = K - 1;
    for (size_t i = 0; i < md->n; i++)
        for (int k = 0; k < K; k++)
            opos[i * (size_t)K + (size_t)k] = c2p[M->noff[k] + md->re[k].codes[i]];
    for (int h = 0; h <= M->ntop; h++)
        tptr[h] = 0;
    for (size_t i = 0; i < md->n; i++)
        tptr[opos[i * (size_t)K + (size_t)top] + 1]++;
    for (int h = 0; h < M->ntop; h++)
        tptr[h + 1] += tptr[h];
    for (size_t i = 0; i < md->n; i++) {
        const int h = opos[i * (size_t)K + (size_t)top];
        tobs[tptr[h]++] = (int)i;
    }
    for (int h = M->ntop; h > 0; h--)
        tptr[h] = tptr[h - 1];
    tptr[0] = 0;
}

/* Per level: A = Z_k^T Z_k, C = Z_k^T Z_k' (coarser k'), G = Z_k^T X; and
 * X^T X. dat must be zeroed. */
static void cross_products(const mlmx_model *md, const mlmx_nb_model *M, double *dat,
                           double *XtX)
{
    const int K = M->K, p = M->p;
    const size_t n = md->n;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < K; k++) {
            const int q = M->q[k], pos = M->opos[i * (size_t)K + (size_t)k];
            const double *z = md->re[k].z + i * (size_t)q;
            double *A = dat + M->doff[k] + (size_t)pos * (size_t)M->dstr[k];
            double *C = A + q * q, *G = C + q * M->anc[k];
            for (int b = 0; b < q; b++)
                for (int a = 0; a < q; a++)
                    A[a + b * q] += z[a] * z[b];
            int col = 0;
            for (int k2 = k + 1; k2 < K; k2++) {
                const int q2 = M->q[k2];
                const double *z2 = md->re[k2].z + i * (size_t)q2;
                for (int b = 0; b < q2; b++, col++)
                    for (int a = 0; a < q; a++)
                        C[a + col * q] += z[a] * z2[b];
            }
            for (int j = 0; j < p; j++) {
                const double x = md->X[(size_t)j * n + i];
                for (int a = 0; a < q; a++)
                    G[a + j * q] += z[a] * x;
            }
        }
    mlmx_batch_xtx(md, XtX);
}

/* Sizes and offsets of M from the model (no arrays yet); the int and
 * double buffer lengths. */
static void layout(const mlmx_problem *P, mlmx_nb_model *M, size_t *ni, size_t *nd)
{
    const mlmx_model *md = P->md;
    const int K = md->K;
    M->n = (int)md->n;
    M->p = md->p;
    M->K = K;
    M->nt = P->ntheta;
    M->reml = P->opt.method == MLMX_REML;
    M->ntop = md->re[K - 1].nlevels;
    int nu = 0, nlv = 0, nc = 0, anc = 0;
    size_t dd = 0, zz = 0;
    for (int k = K - 1; k >= 0; k--) {
        M->q[k] = md->re[k].q;
        M->anc[k] = anc;
        anc += M->q[k];
    }
    for (int k = 0; k < K; k++) {
        M->nlev[k] = md->re[k].nlevels;
        M->toff[k] = md->re[k].theta_offset;
        M->soff[k] = nu;
        M->noff[k] = nlv;
        M->coff[k] = k ? nc : 0;
        nc += k ? M->nlev[k] + 1 : 0;
        nu += M->nlev[k] * M->q[k];
        nlv += M->nlev[k];
        M->dstr[k] = M->q[k] * (M->q[k] + M->anc[k] + M->p);
        M->doff[k] = dd;
        dd += (size_t)M->nlev[k] * (size_t)M->dstr[k];
        M->zoff[k] = zz;
        zz += md->n * (size_t)M->q[k];
    }
    M->nu = nu;
    int lmax = 0;
    for (int k = 0; k < K; k++)
        lmax = M->nlev[k] > lmax ? M->nlev[k] : lmax;
    /* after the arrays kept: the parents and the counters of the build */
    *ni = (size_t)nc + 2 * (size_t)nlv + md->n * (size_t)K + (size_t)M->ntop + 1 + md->n +
          (size_t)nlv + (size_t)lmax;
    *nd = zz + dd + (size_t)(M->p * M->p) + 1;
}

/* Build the structure into I; MLMX_ERR_UNSUPPORTED for crossed factors. */
static mlmx_status build(const mlmx_problem *P, nb_impl *I, mlmx_error *err)
{
    const mlmx_model *md = P->md;
    mlmx_nb_model *M = &I->M;
    size_t ni, nd;
    layout(P, M, &ni, &nd);
    I->ibuf = malloc(ni * sizeof *I->ibuf);
    I->dbuf = calloc(nd, sizeof *I->dbuf);
    I->logp = malloc((size_t)(M->nt ? M->nt : 1));
    if (!I->ibuf || !I->dbuf || !I->logp)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    int nlv = 0, nc = 0;
    for (int k = 0; k < M->K; k++) {
        nlv += M->nlev[k];
        nc += k ? M->nlev[k] + 1 : 0;
    }
    int *cptr = I->ibuf, *c2p = cptr + nc, *p2c = c2p + nlv, *opos = p2c + nlv;
    int *tptr = opos + md->n * (size_t)M->K, *tobs = tptr + M->ntop + 1;
    int *par = tobs + md->n;
    mlmx_status st = find_parents(md, M->noff, par, err);
    if (st)
        return st;
    order_levels(M, par, cptr, c2p, p2c, par + nlv);
    order_obs(md, M, c2p, opos, tptr, tobs);
    M->cptr = cptr;
    M->code2pos = c2p;
    M->pos2code = p2c;
    M->opos = opos;
    M->tobs_ptr = tptr;
    M->tobs = tobs;
    double *Z = I->dbuf, *dat = Z + M->zoff[M->K - 1] + md->n * (size_t)M->q[M->K - 1];
    double *XtX = dat + M->doff[M->K - 1] + (size_t)M->nlev[M->K - 1] * M->dstr[M->K - 1];
    for (int k = 0; k < M->K; k++)
        memcpy(Z + M->zoff[k], md->re[k].z, md->n * (size_t)M->q[k] * sizeof *Z);
    cross_products(md, M, dat, XtX);
    M->X = md->X;
    M->Z = Z;
    M->dat = dat;
    M->XtX = XtX;
    for (int t = 0; t < M->nt; t++)
        I->logp[t] = md->theta_lower[t] == 0.0;
    M->theta = P->theta;
    M->beta = P->beta;
    M->sigma = P->sigma;
    M->x0 = P->x0;
    M->xlo = P->xlo;
    M->hinv0 = P->hinv0;
    M->logp = I->logp;
    mlmx_optim_opts oo;
    mlmx_optim_opts_default(&oo);
    if (P->opt.max_evaluations > 0)
        oo.max_evals = P->opt.max_evaluations;
    mlmx_qn_cfg_from_opts(&oo, &M->cfg);
    return MLMX_OK;
}

static void failed_row(const mlmx_nb_model *M, const mlmx_batch_job *J, size_t i)
{
    for (int t = 0; t < M->nt; t++)
        J->theta[i * (size_t)M->nt + (size_t)t] = NAN;
    for (int k = 0; k < M->p; k++) {
        J->beta[i * (size_t)M->p + (size_t)k] = NAN;
        if (J->se)
            J->se[i * (size_t)M->p + (size_t)k] = NAN;
    }
    J->sigma[i] = J->crit[i] = NAN;
    J->nev[i] = 0;
    J->conv[i] = J->sing[i] = 0;
    J->status[i] = 2;
}

static void nb_cpu_rows(const void *impl, const mlmx_batch_job *J, size_t i0, size_t i1)
{
    const nb_impl *I = impl;
    const mlmx_nb_model *M = &I->M;
    const size_t nu = (size_t)M->nu;
    double *buf = malloc(2 * nu * sizeof *buf);
    mlmx_nb_scratch *w = malloc(sizeof *w);
    const mlmx_nb_out o = {J->theta, J->beta, J->se,  J->sigma, J->crit,
                           J->nev,   J->conv, J->sing, J->status};
    for (size_t i = i0; i < i1; i++) {
        if (!buf || !w) { /* out of memory: these rows failed */
            failed_row(M, J, i);
            continue;
        }
        double xty[MLMX_NB_PMAX], yty;
        mlmx_nb_simulate(M, J->seed, J->reps[i], buf, buf + nu, 1, xty, &yty, NULL);
        mlmx_nb_fit(M, buf + nu, 1, xty, yty, w, &o, i);
    }
    free(buf);
    free(w);
}

#ifdef MLMX_HAVE_CUDA
static mlmx_status nb_gpu_rows(void *impl, const mlmx_batch_job *J, mlmx_error *err)
{
    nb_impl *I = impl;
    char msg[256] = "";
    mlmx_status st = MLMX_OK;
    if (!I->dev)
        st = mlmx_cuda_nb_create(&I->M, (mlmx_cuda_nb **)&I->dev, msg, sizeof msg);
    if (!st) {
        const mlmx_nb_out o = {J->theta, J->beta, J->se,  J->sigma, J->crit,
                               J->nev,   J->conv, J->sing, J->status};
        st = mlmx_cuda_nb_run(I->dev, I->mapping, J->seed, J->reps, J->count, &o, msg,
                              sizeof msg);
    }
    if (st)
        return mlmx_err_set(err, st, "GPU: %s", msg);
    return MLMX_OK;
}
#endif

const mlmx_nb_model *mlmx_nb_engine_model(const mlmx_batch_engine *E)
{
    return E && E->name && strcmp(E->name, "lmm-nest") == 0 ? &((const nb_impl *)E->impl)->M
                                                             : NULL;
}

int mlmx_nb_engine_auto_mapping(const mlmx_nb_model *M)
{
    /* a warp needs a top cluster for each of its 32 lanes to pay off;
     * fewer, and whole replicates per thread keep every lane busy */
    return M->ntop >= 32 ? MLMX_NB_MAP_WARP : MLMX_NB_MAP_THREAD;
}

void mlmx_nb_engine_set_mapping(mlmx_batch_engine *E, int mapping)
{
    nb_impl *I = E->impl;
    I->mapping = mapping == MLMX_NB_MAP_AUTO ? mlmx_nb_engine_auto_mapping(&I->M) : mapping;
}

mlmx_status mlmx_nb_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err)
{
    mlmx_status st = check_model(P, err);
    if (st)
        return st;
    nb_impl *I = calloc(1, sizeof *I);
    if (!I)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    st = build(P, I, err);
    if (st) {
        nb_free(I);
        return st;
    }
    I->mapping = mlmx_nb_engine_auto_mapping(&I->M);
    E->name = "lmm-nest";
    E->impl = I;
    E->cpu_rows = nb_cpu_rows;
#ifdef MLMX_HAVE_CUDA
    E->gpu_rows = nb_gpu_rows;
    mlmx_cuda_nb_bytes(&I->M, &E->gpu_fixed_bytes, &E->gpu_rep_bytes);
#else
    E->gpu_rows = NULL;
    E->gpu_fixed_bytes = E->gpu_rep_bytes = 0;
#endif
    E->free = nb_free;
    return MLMX_OK;
}
