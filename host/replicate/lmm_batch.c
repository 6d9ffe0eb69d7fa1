/* The batch engine for LMMs with one random-effect term: the shared
 * structure of kernels/lmm_batch.h built from a prepared problem, the CPU
 * rows (the kernel math on the calling thread) and the device rows (the
 * same math in kernels/lmm_batch.cu). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmm_batch.h"
#include "optim/optim.h"
#include "replicate/batch.h"
#ifdef MLMX_HAVE_CUDA
#include "lmm_batch_cuda.h"
#endif

typedef struct lb_impl {
    mlmx_lb_model M;
    int *code;
    double *ZtZ, *ZtX, *XtX;
    unsigned char *logp;
    void *dev; /* the device context (mlmx_cuda_lb), made on first use */
} lb_impl;

static void lb_free(void *p)
{
    lb_impl *I = p;
    if (!I)
        return;
#ifdef MLMX_HAVE_CUDA
    mlmx_cuda_lb_free(I->dev);
#endif
    free(I->code);
    free(I->ZtZ);
    free(I->ZtX);
    free(I->XtX);
    free(I->logp);
    free(I);
}

/* A_j = Z_j^T Z_j, G_j = Z_j^T X_j per level, and X^T X. */
static void cross_products(const mlmx_model *md, lb_impl *I)
{
    const int q = I->M.q, p = I->M.p;
    const size_t n = md->n;
    const mlmx_reterm_info *t = &md->re[0];
    for (size_t i = 0; i < n; i++) {
        const int j = t->codes[i];
        const double *z = t->z + i * (size_t)q;
        double *A = I->ZtZ + (size_t)j * q * q, *G = I->ZtX + (size_t)j * q * p;
        for (int b = 0; b < q; b++)
            for (int a = 0; a < q; a++)
                A[a + b * q] += z[a] * z[b];
        for (int k = 0; k < p; k++) {
            const double x = md->X[(size_t)k * n + i];
            for (int a = 0; a < q; a++)
                G[a + k * q] += z[a] * x;
        }
    }
    mlmx_batch_xtx(md, I->XtX);
}

static void lb_cpu_rows(const void *impl, const mlmx_batch_job *J, size_t i0, size_t i1)
{
    const lb_impl *I = impl;
    const mlmx_lb_model *M = &I->M;
    const size_t nz = (size_t)M->nblk * (size_t)M->q;
    double *buf = malloc(2 * nz * sizeof *buf);
    mlmx_lb_scratch *w = malloc(sizeof *w);
    const mlmx_lb_out o = {J->theta, J->beta, J->se,  J->sigma, J->crit,
                           J->nev,   J->conv, J->sing, J->status};
    for (size_t i = i0; i < i1; i++) {
        if (!buf || !w) { /* out of memory: these rows failed */
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
            continue;
        }
        double xty[MLMX_LB_PMAX], yty;
        mlmx_lb_simulate(M, J->seed, J->reps[i], buf, buf + nz, 1, xty, &yty, NULL);
        mlmx_lb_fit(M, buf + nz, 1, xty, yty, w, &o, i);
    }
    free(buf);
    free(w);
}

#ifdef MLMX_HAVE_CUDA
/* The device copy of the structure, made on first use. */
static mlmx_status lb_device(lb_impl *I, char *msg, size_t len)
{
    if (I->dev)
        return MLMX_OK;
    return mlmx_cuda_lb_create(&I->M, (mlmx_cuda_lb **)&I->dev, msg, len);
}

static mlmx_status lb_gpu_rows(void *impl, const mlmx_batch_job *J, mlmx_error *err)
{
    lb_impl *I = impl;
    char msg[256] = "";
    mlmx_status st = lb_device(I, msg, sizeof msg);
    if (!st)
        st = mlmx_cuda_lb_run(I->dev, J->seed, J->reps, J->count, J->theta, J->beta, J->se,
                              J->sigma, J->crit, J->nev, J->conv, J->sing, J->status, msg,
                              sizeof msg);
    return st ? mlmx_err_set(err, st, "GPU: %s", msg) : MLMX_OK;
}

static mlmx_status lb_gpu_sim(void *impl, uint64_t seed, const uint64_t *reps, size_t count,
                              double *y, mlmx_error *err)
{
    lb_impl *I = impl;
    char msg[256] = "";
    mlmx_status st = lb_device(I, msg, sizeof msg);
    if (!st)
        st = mlmx_cuda_lb_simulate(I->dev, seed, reps, count, y, msg, sizeof msg);
    return st ? mlmx_err_set(err, st, "GPU: %s", msg) : MLMX_OK;
}
#endif

static mlmx_status unsupported(mlmx_error *err, const char *why)
{
    return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "the one-term LMM batch engine: %s", why);
}

mlmx_status mlmx_lb_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err)
{
    const mlmx_model *md = P->md;
    if (P->glmm)
        return unsupported(err, "not a linear mixed model");
    if (md->K != 1)
        return unsupported(err, "more than one random-effect term");
    if (md->re[0].q > MLMX_LB_QMAX || md->p > MLMX_LB_PMAX)
        return unsupported(err, "more than 4 random-effect or 16 fixed-effect columns");
    if (md->offset || md->weights)
        return unsupported(err, "an offset or prior weights");
    if (md->n > INT_MAX || md->re[0].nlevels < 1)
        return unsupported(err, "the data size");
    lb_impl *I = calloc(1, sizeof *I);
    if (!I)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    const int q = md->re[0].q, p = md->p, nb = md->re[0].nlevels, nt = P->ntheta;
    I->code = malloc(md->n * sizeof *I->code);
    I->ZtZ = calloc((size_t)nb * q * q, sizeof *I->ZtZ);
    I->ZtX = calloc((size_t)nb * q * (p ? p : 1), sizeof *I->ZtX);
    I->XtX = calloc((size_t)(p ? p * p : 1), sizeof *I->XtX);
    I->logp = malloc((size_t)nt);
    if (!I->code || !I->ZtZ || !I->ZtX || !I->XtX || !I->logp) {
        lb_free(I);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    memcpy(I->code, md->re[0].codes, md->n * sizeof *I->code);
    for (int t = 0; t < nt; t++)
        I->logp[t] = md->theta_lower[t] == 0.0;
    mlmx_lb_model *M = &I->M;
    M->n = (int)md->n;
    M->p = p;
    M->q = q;
    M->nblk = nb;
    M->nt = nt;
    M->reml = P->opt.method == MLMX_REML;
    cross_products(md, I);
    M->code = I->code;
    M->X = md->X;
    M->Z = md->re[0].z;
    M->ZtZ = I->ZtZ;
    M->ZtX = I->ZtX;
    M->XtX = I->XtX;
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
    E->name = "lmm-1term";
    E->impl = I;
    E->cpu_rows = lb_cpu_rows;
#ifdef MLMX_HAVE_CUDA
    E->gpu_rows = lb_gpu_rows;
    E->gpu_sim = lb_gpu_sim;
    mlmx_cuda_lb_bytes(M, &E->gpu_fixed_bytes, &E->gpu_rep_bytes);
#else
    E->gpu_rows = NULL;
    E->gpu_fixed_bytes = E->gpu_rep_bytes = 0;
#endif
    E->free = lb_free;
    return MLMX_OK;
}
