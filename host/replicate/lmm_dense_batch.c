/* The batch engine "lmm-crossed": LMMs with K >= 2 random-effect terms
 * whose non-first terms, X and y form a small dense block (crossed or any
 * non-nested terms; nested ones fit too). The shared structure of
 * kernels/lmm_dense_batch.h is copied from the problem's sufficient
 * statistics (host/lmm/lmm.c's blocks: the first term's per-level Z1^T Z1,
 * their sparse rows into the dense columns, and [Z_R X]^T [Z_R X]); the
 * CPU rows run the kernel math on the calling thread, the device rows the
 * same math in kernels/lmm_dense_batch.cu. */
#include <limits.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmm_dense_batch.h"
#include "optim/optim.h"
#include "replicate/batch.h"
#include "replicate/lmm_dense_engine.h"
#ifdef MLMX_HAVE_CUDA
#include "lmm_dense_batch_cuda.h"
#endif

static const char ld_name[] = "lmm-crossed";

typedef struct ld_impl {
    mlmx_ld_model M; /* first: the tests read it through mlmx_ld_engine_model */
    int *codes, *row_ptr, *row_col, *cterm, *ccomp;
    double *Z, *A1, *B, *D;
    unsigned char *logp;
    int mapping;  /* device mapping (MLMX_LD_MAP_*), 0 = by size */
    void *dev;    /* the device context (mlmx_cuda_ld), made on first use */
} ld_impl;

static void ld_free(void *p)
{
    ld_impl *I = p;
    if (!I)
        return;
#ifdef MLMX_HAVE_CUDA
    mlmx_cuda_ld_free(I->dev);
#endif
    free(I->codes);
    free(I->row_ptr);
    free(I->row_col);
    free(I->cterm);
    free(I->ccomp);
    free(I->Z);
    free(I->A1);
    free(I->B);
    free(I->D);
    free(I->logp);
    free(I);
}

const mlmx_ld_model *mlmx_ld_engine_model(const mlmx_batch_engine *E)
{
    return E && E->name == ld_name ? &((const ld_impl *)E->impl)->M : NULL;
}

void mlmx_ld_engine_set_mapping(mlmx_batch_engine *E, int mapping)
{
    if (E && E->name == ld_name)
        ((ld_impl *)E->impl)->mapping = mapping;
}

/* Every replicate's rows failed (out of memory for the thread's scratch). */
static void fail_rows(const mlmx_ld_model *M, const mlmx_ld_out *o, size_t i0, size_t i1)
{
    for (size_t i = i0; i < i1; i++)
        mlmx_ld_fail_row(M, o, i, 0);
}

static void ld_cpu_rows(const void *impl, const mlmx_batch_job *J, size_t i0, size_t i1)
{
    const ld_impl *I = impl;
    const mlmx_ld_model *M = &I->M;
    const mlmx_ld_out o = {J->theta, J->beta, J->se,  J->sigma, J->crit,
                           J->nev,   J->conv, J->sing, J->status};
    const size_t nt = (size_t)M->nt, nr = mlmx_ld_resp_len(M);
    const size_t len = (size_t)M->nu + nr + mlmx_ld_scratch_len(M, 1) + 8 * nt + nt * nt;
    double *buf = malloc(len * sizeof *buf);
    int *act = malloc((nt ? nt : 1) * sizeof *act);
    if (!buf || !act) {
        fail_rows(M, &o, i0, i1);
        free(buf);
        free(act);
        return;
    }
    double *b = buf, *resp = b + M->nu, *scr = resp + nr;
    double *qstore = scr + mlmx_ld_scratch_len(M, 1);
    mlmx_qn_state q;
    for (size_t i = i0; i < i1; i++) {
        mlmx_ld_simulate(M, J->seed, J->reps[i], b, resp, NULL);
        mlmx_ld_fit(M, resp, scr, &q, qstore, act, 0, 1, &o, i);
    }
    free(buf);
    free(act);
}

#ifdef MLMX_HAVE_CUDA
static mlmx_status ld_device(ld_impl *I, mlmx_error *err)
{
    char msg[256] = "";
    mlmx_status st = MLMX_OK;
    if (!I->dev)
        st = mlmx_cuda_ld_create(&I->M, (mlmx_cuda_ld **)&I->dev, msg, sizeof msg);
    if (st)
        return mlmx_err_set(err, st, "GPU: %s", msg);
    return MLMX_OK;
}

static mlmx_status ld_gpu_rows(void *impl, const mlmx_batch_job *J, mlmx_error *err)
{
    ld_impl *I = impl;
    char msg[256] = "";
    mlmx_status st = ld_device(I, err);
    if (st)
        return st;
    st = mlmx_cuda_ld_run(I->dev, I->mapping, J->seed, J->reps, J->count, J->theta, J->beta,
                          J->se, J->sigma, J->crit, J->nev, J->conv, J->sing, J->status, msg,
                          sizeof msg);
    if (st)
        return mlmx_err_set(err, st, "GPU: %s", msg);
    return MLMX_OK;
}

static mlmx_status ld_gpu_sim(void *impl, uint64_t seed, const uint64_t *reps, size_t count,
                              double *y, mlmx_error *err)
{
    ld_impl *I = impl;
    char msg[256] = "";
    mlmx_status st = ld_device(I, err);
    if (st)
        return st;
    st = mlmx_cuda_ld_simulate(I->dev, seed, reps, count, y, msg, sizeof msg);
    if (st)
        return mlmx_err_set(err, st, "GPU: %s", msg);
    return MLMX_OK;
}
#endif

static mlmx_status unsupported(mlmx_error *err, const char *why)
{
    return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "the crossed-terms LMM batch engine: %s", why);
}

/* Why P is outside the engine's reach, or NULL. */
static const char *refusal(const mlmx_problem *P, char *buf, size_t len)
{
    const mlmx_model *md = P->md;
    if (P->glmm)
        return "not a linear mixed model";
    if (md->K < 2)
        return "fewer than two random-effect terms";
    if (md->K > MLMX_LD_KMAX)
        return "more than 8 random-effect terms";
    for (int k = 0; k < md->K; k++)
        if (md->re[k].q > MLMX_LD_QMAX)
            return "a random-effect term with more than 4 columns";
    if (P->ntheta > MLMX_LD_NTMAX)
        return "more than 16 covariance parameters";
    if (md->offset || md->weights)
        return "an offset or prior weights";
    if (md->n > INT_MAX / MLMX_LD_KMAX || !P->s)
        return "the data size";
    return NULL;
}

const char *mlmx_ld_size_refusal(const mlmx_ld_model *M, char *buf, size_t len)
{
    /* in double: m^2 nd can pass size_t for absurd m */
    const double nd = (double)M->nt + 1.0, m = (double)M->m, q = (double)M->q1;
    const double lane = ((double)M->maxrows * q + 2.0 * q * q + MLMX_LD_QMAX + 4.0) * nd;
    const double dbl = (double)M->ntm * nd + m * (m + 1.0) / 2.0 * nd +
                       (double)MLMX_LD_BLOCK_LANES * lane + 4.0 + m;
    const double bytes = dbl * (double)sizeof(double);
    if (bytes <= (double)MLMX_LD_SCRATCH_MAX)
        return NULL;
    snprintf(buf, len,
             "a dense block of %d columns (the other terms' %d random effects, %d fixed effects "
             "and the response) with %d covariance parameters needs %.0f MiB of scratch a "
             "replicate; at most %zu MiB",
             M->m, M->m_re, M->p, M->nt, bytes / 1048576.0, MLMX_LD_SCRATCH_MAX >> 20);
    return buf;
}

/* The per-level and dense blocks from the problem's statistics (symmetric
 * A1; B rows as they are; the dense block packed). */
static void copy_blocks(const mlmx_lmm_stats *s, ld_impl *I)
{
    const int q = s->q1, m = s->m;
    for (int j = 0; j < s->nblk; j++) {
        const double *src = s->base.A11 + (size_t)j * q * q;
        double *dst = I->A1 + (size_t)j * q * q;
        for (int b = 0; b < q; b++)
            for (int a = 0; a < q; a++)
                dst[a + b * q] = a >= b ? src[a + b * q] : src[b + a * q];
    }
    for (int j = 0; j <= s->nblk; j++)
        I->row_ptr[j] = (int)s->row_ptr[j];
    for (size_t r = 0; r < s->nrows; r++)
        I->row_col[r] = s->row_col[r];
    memcpy(I->B, s->base.B, s->nrows * (size_t)q * sizeof *I->B);
    for (int a = 0; a < m - 1; a++)
        for (int b = 0; b <= a; b++)
            I->D[mlmx_ld_pk(a, b)] = s->base.ARR[(size_t)a + (size_t)b * (size_t)m];
    for (int c = 0; c < m - 1; c++) {
        I->cterm[c] = s->col_term[c];
        I->ccomp[c] = s->col_comp[c];
    }
}

/* The simulation's arrays: every term's codes and rows, concatenated. */
static void copy_terms(const mlmx_model *md, ld_impl *I)
{
    mlmx_ld_model *M = &I->M;
    size_t zo = 0;
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *t = &md->re[k];
        memcpy(I->codes + (size_t)k * md->n, t->codes, md->n * sizeof *I->codes);
        memcpy(I->Z + zo, t->z, md->n * (size_t)t->q * sizeof *I->Z);
        M->zoff[k] = zo;
        zo += md->n * (size_t)t->q;
    }
}

/* The dimensions of M from P (the arrays are filled by the copies). */
static void dims(const mlmx_problem *P, mlmx_ld_model *M)
{
    const mlmx_model *md = P->md;
    const mlmx_lmm_stats *s = P->s;
    M->n = (int)md->n;
    M->p = md->p;
    M->K = md->K;
    M->q1 = s->q1;
    M->nblk = s->nblk;
    M->m = s->m;
    M->m_re = s->m_re;
    M->nt = P->ntheta;
    M->reml = P->opt.method == MLMX_REML;
    M->nu = P->nu_total;
    M->ntm = 0;
    for (int k = 0; k < md->K; k++) {
        M->tq[k] = md->re[k].q;
        M->tnl[k] = md->re[k].nlevels;
        M->toff[k] = md->re[k].theta_offset;
        M->tmo[k] = M->ntm;
        M->tcol[k] = k > 0 ? s->term_off[k] : 0;
        M->ntm += M->tq[k] * M->tq[k];
    }
    M->maxrows = 1;
    for (int j = 0; j < s->nblk; j++) {
        const int nr = (int)(s->row_ptr[j + 1] - s->row_ptr[j]);
        if (nr > M->maxrows)
            M->maxrows = nr;
    }
}

mlmx_status mlmx_ld_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err)
{
    char buf[256];
    const char *why = refusal(P, buf, sizeof buf);
    if (why)
        return unsupported(err, why);
    const mlmx_model *md = P->md;
    const mlmx_lmm_stats *s = P->s;
    mlmx_ld_model Md;
    memset(&Md, 0, sizeof Md);
    dims(P, &Md);
    why = mlmx_ld_size_refusal(&Md, buf, sizeof buf);
    if (why)
        return unsupported(err, why);
    ld_impl *I = calloc(1, sizeof *I);
    if (!I)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    mlmx_ld_model *M = &I->M;
    *M = Md;
    const size_t q = (size_t)s->q1, m = (size_t)s->m, nt = (size_t)P->ntheta;
    size_t nz = 0;
    for (int k = 0; k < md->K; k++)
        nz += md->n * (size_t)md->re[k].q;
    I->codes = malloc((size_t)md->K * md->n * sizeof *I->codes);
    I->Z = malloc((nz ? nz : 1) * sizeof *I->Z);
    I->A1 = malloc((size_t)s->nblk * q * q * sizeof *I->A1);
    I->row_ptr = malloc(((size_t)s->nblk + 1) * sizeof *I->row_ptr);
    I->row_col = malloc((s->nrows ? s->nrows : 1) * sizeof *I->row_col);
    I->B = malloc((s->nrows ? s->nrows : 1) * q * sizeof *I->B);
    I->D = malloc(m * (m - 1) / 2 * sizeof *I->D + sizeof *I->D);
    I->cterm = malloc(m * sizeof *I->cterm);
    I->ccomp = malloc(m * sizeof *I->ccomp);
    I->logp = malloc(nt ? nt : 1);
    if (!I->codes || !I->Z || !I->A1 || !I->row_ptr || !I->row_col || !I->B || !I->D ||
        !I->cterm || !I->ccomp || !I->logp) {
        ld_free(I);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    copy_blocks(s, I);
    copy_terms(md, I);
    for (size_t t = 0; t < nt; t++)
        I->logp[t] = md->theta_lower[t] == 0.0;
    M->codes = I->codes;
    M->Z = I->Z;
    M->X = md->X;
    M->A1 = I->A1;
    M->row_ptr = I->row_ptr;
    M->row_col = I->row_col;
    M->B = I->B;
    M->D = I->D;
    M->cterm = I->cterm;
    M->ccomp = I->ccomp;
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
    E->name = ld_name;
    E->impl = I;
    E->cpu_rows = ld_cpu_rows;
    E->cpu_slower = M->m > MLMX_LD_CPU_MAX_M;
#ifdef MLMX_HAVE_CUDA
    E->gpu_rows = ld_gpu_rows;
    E->gpu_sim = ld_gpu_sim;
    mlmx_cuda_ld_bytes(M, MLMX_LD_MAP_AUTO, &E->gpu_fixed_bytes, &E->gpu_rep_bytes);
#else
    E->gpu_rows = NULL;
    E->gpu_sim = NULL;
    E->gpu_fixed_bytes = E->gpu_rep_bytes = 0;
#endif
    E->free = ld_free;
    return MLMX_OK;
}
