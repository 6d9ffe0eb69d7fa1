// The CUDA backend: every slot of mlmx_backend on the device, with the
// per-level arithmetic from kernels/cluster_math.h (the CPU backend runs the
// same inline functions) and cuSOLVER for the dense factorization. Three
// layers per slot: __global__ kernels, launchers taking the stream, and the
// validated extern "C" entry points that copy host data in and out.
#include <stdint.h>
#include <string.h>

#include "cuda_ctx.cuh"
extern "C" {
#include "backend_cuda.h"
}
#include "cluster_math.h"

#define MLMX_CUDA_QMAX 16
#define MLMX_CUDA_TPB 128
#define MLMX_CUDA_MAXGRID 65535

// ------------------------------------------------------------------ kernels

// One thread per first-term level: the level's factor and L21 rows.
__global__ void mlmx_k_cluster_factor(int nblk, int q, const double *__restrict__ A,
                                      const double *const *tmats,
                                      const size_t *__restrict__ row_ptr,
                                      const int *__restrict__ row_col, const double *__restrict__ B,
                                      const int *__restrict__ col_term,
                                      const int *__restrict__ term_q, double *__restrict__ L11,
                                      double *__restrict__ L21, double *__restrict__ logd,
                                      int *__restrict__ bad)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= nblk)
        return;
    double work[MLMX_CUDA_QMAX * MLMX_CUDA_QMAX];
    double row[MLMX_CUDA_QMAX];
    const size_t qq = (size_t)q * (size_t)q, r0 = row_ptr[j];
    double *l = L11 + (size_t)j * qq;
    int b = mlmx_cm_level_factor(q, A + (size_t)j * qq, tmats, row_ptr[j + 1] - r0, row_col + r0,
                                 B + r0 * (size_t)q, col_term, term_q, l, L21 + r0 * (size_t)q,
                                 work, row);
    bad[j] = b;
    logd[j] = b ? 0.0 : mlmx_cm_logdiag(q, l);
}

// One block per level (grid-strided): S[row_col[ra], row_col[rb]] -=
// <v_ra, v_rb> for the level's row pairs ra >= rb. Levels share entries of
// S, hence the atomics (the order of the subtractions is not the CPU's).
__global__ void mlmx_k_level_downdate(int nblk, int q, size_t ld, const size_t *__restrict__ ptr,
                                      const int *__restrict__ idx, const double *__restrict__ V,
                                      const int *__restrict__ skip, double *__restrict__ S)
{
    for (int j = blockIdx.x; j < nblk; j += gridDim.x) {
        if (skip && skip[j])
            continue;
        const size_t r0 = ptr[j], nr = ptr[j + 1] - r0;
        for (size_t p = threadIdx.x; p < nr * nr; p += blockDim.x) {
            size_t ra = p / nr, rb = p % nr;
            if (ra < rb)
                continue;
            double d = mlmx_cm_dot(q, V + (r0 + ra) * (size_t)q, V + (r0 + rb) * (size_t)q);
            atomicAdd(S + (size_t)idx[r0 + ra] + (size_t)idx[r0 + rb] * ld, -d);
        }
    }
}

// One thread per level of a nested stage: its diagonal block and its rows
// in the later columns (disjoint between levels); x gets the solved rows.
__global__ void mlmx_k_stage_level(int nblk, int q, int c0, size_t ld,
                                   const size_t *__restrict__ col_ptr, const int *__restrict__ col,
                                   double *S, double *__restrict__ x, int *__restrict__ bad)
{
    int l = blockIdx.x * blockDim.x + threadIdx.x;
    if (l >= nblk)
        return;
    double blk[MLMX_CUDA_QMAX * MLMX_CUDA_QMAX];
    const size_t c = (size_t)c0 + (size_t)l * (size_t)q, r0 = col_ptr[l];
    bad[l] = mlmx_cm_stage_level(q, c, ld, S, col + r0, col_ptr[l + 1] - r0, blk,
                                 x + r0 * (size_t)q);
}

// ---------------------------------------------------------------- launchers

static int grid_for(size_t n, int tpb)
{
    size_t g = (n + (size_t)tpb - 1) / (size_t)tpb;
    return (int)(g > MLMX_CUDA_MAXGRID ? MLMX_CUDA_MAXGRID : (g ? g : 1));
}

static cudaError_t launch_cluster_factor(const mlmx_cluster_batch *b, const double *dA,
                                         const double *const *dtm, const size_t *dptr,
                                         const int *dcol, const double *dB, const int *dterm,
                                         const int *dq, double *dL11, double *dL21, double *dlog,
                                         int *dbad, cudaStream_t s)
{
    const int tpb = 64; // ~2 KiB of local scratch per thread
    int blocks = (b->nblk + tpb - 1) / tpb;
    mlmx_k_cluster_factor<<<blocks, tpb, 0, s>>>(b->nblk, b->q, dA, dtm, dptr, dcol, dB, dterm, dq,
                                                 dL11, dL21, dlog, dbad);
    return cudaGetLastError();
}

static cudaError_t launch_level_downdate(int nblk, int q, size_t ld, const size_t *dptr,
                                         const int *didx, const double *dV, const int *dskip,
                                         double *dS, cudaStream_t s)
{
    mlmx_k_level_downdate<<<grid_for((size_t)nblk, 1), MLMX_CUDA_TPB, 0, s>>>(nblk, q, ld, dptr,
                                                                             didx, dV, dskip, dS);
    return cudaGetLastError();
}

static cudaError_t launch_stage_level(const mlmx_block_stage *st, size_t ld, const size_t *dptr,
                                      const int *dcol, double *dS, double *dx, int *dbad,
                                      cudaStream_t s)
{
    const int tpb = 64;
    int blocks = (st->nblk + tpb - 1) / tpb;
    mlmx_k_stage_level<<<blocks, tpb, 0, s>>>(st->nblk, st->q, st->c0, ld, dptr, dcol, dS, dx,
                                              dbad);
    return cudaGetLastError();
}

// ------------------------------------------------------------- entry points

// Number of terms the batch refers to: 1 + the largest col_term.
static int batch_terms(const mlmx_cluster_batch *b)
{
    int K = 1;
    for (int c = 0; c < b->m; c++)
        if (b->col_term[c] + 1 > K)
            K = b->col_term[c] + 1;
    return K;
}

static mlmx_status check_batch(const mlmx_cluster_batch *b, const char *fn)
{
    if (!b || b->nblk < 0 || b->m < 0 || (b->nblk > 0 && (!b->row_ptr || !b->A || !b->B)) ||
        (b->m > 0 && (!b->col_term || !b->term_q)))
        return mlmx_cuda_fail(MLMX_ERR_ARG, "%s: NULL or negative batch fields", fn);
    if (b->q < 1 || b->q > MLMX_CUDA_QMAX)
        return mlmx_cuda_fail(MLMX_ERR_UNSUPPORTED, "%s: q = %d (1..%d supported)", fn, b->q,
                              MLMX_CUDA_QMAX);
    if (b->nblk > 0 && b->row_ptr[b->nblk] > 0 && !b->row_col)
        return mlmx_cuda_fail(MLMX_ERR_ARG, "%s: row_col is NULL", fn);
    return MLMX_OK;
}

// The K templates packed on the device, and the device table of pointers
// to them (tmats on the device). stage: host staging with room for K
// pointers.
static mlmx_status put_templates(mlmx_cuda_ctx *c, const mlmx_cluster_batch *b,
                                 const double *const *tmats, int K, const double **stage,
                                 const double *const **dtm)
{
    size_t total = 0;
    for (int k = 0; k < K; k++) {
        int qk = k == 0 ? b->q : b->term_q[k];
        if (!tmats[k] || qk < 1 || qk > MLMX_CUDA_QMAX)
            return mlmx_cuda_fail(MLMX_ERR_ARG, "mlmx_cuda_cluster_factor: template %d (q %d)", k,
                                  qk);
        total += (size_t)qk * (size_t)qk;
    }
    double *dT = NULL;
    mlmx_status st = mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_T, total * sizeof(double), (void **)&dT);
    if (st != MLMX_OK)
        return st;
    size_t off = 0;
    for (int k = 0; k < K; k++) {
        int qk = k == 0 ? b->q : b->term_q[k];
        size_t n = (size_t)qk * (size_t)qk;
        cudaError_t e = cudaMemcpyAsync(dT + off, tmats[k], n * sizeof(double),
                                        cudaMemcpyHostToDevice, c->stream);
        if (e != cudaSuccess)
            return mlmx_cuda_fail_rt("cudaMemcpyAsync(template, host to device)", e);
        stage[k] = dT + off;
        off += n;
    }
    return mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_TPTR, stage, (size_t)K * sizeof(double *),
                             "template pointers", (void **)dtm);
}

extern "C" mlmx_status mlmx_cuda_cluster_factor(const mlmx_cluster_batch *b,
                                                const double *const *tmats, double *L11,
                                                double *L21, double *logdiag)
{
    mlmx_status st = check_batch(b, "mlmx_cuda_cluster_factor");
    if (st != MLMX_OK)
        return st;
    if (!tmats || !L11 || !L21 || !logdiag)
        return mlmx_cuda_fail(MLMX_ERR_ARG, "mlmx_cuda_cluster_factor: NULL argument");
    if (b->nblk == 0) {
        *logdiag = 0.0;
        return MLMX_OK;
    }
    const int K = batch_terms(b), q = b->q, nblk = b->nblk;
    const size_t qq = (size_t)q * (size_t)q, nrows = b->row_ptr[nblk];
    mlmx_cuda_ctx *c = NULL;
    void *host = NULL;
    double *dA, *dB, *dL11, *dL21, *dlog, *hlog;
    const double **htm;
    const double *const *dtm;
    size_t *dptr;
    int *dcol, *dterm, *dq, *dbad, *hbad;
    double sum = 0.0;
    int first_bad = -1;
    st = mlmx_cuda_ctx_lock(&c);
    if (st != MLMX_OK)
        return st;
    // host staging: per-level logs, template pointers, per-level flags
    MLMX_CK(mlmx_cuda_ctx_host(c, (size_t)nblk * (sizeof(double) + sizeof(int)) +
                                      (size_t)K * sizeof(double *), &host));
    hlog = (double *)host;
    htm = (const double **)(hlog + nblk);
    hbad = (int *)(htm + K);
    MLMX_CK(put_templates(c, b, tmats, K, htm, &dtm));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_A, b->A, (size_t)nblk * qq * sizeof(double), "A",
                              (void **)&dA));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_ROWPTR, b->row_ptr,
                              ((size_t)nblk + 1) * sizeof(size_t), "row_ptr", (void **)&dptr));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_ROWCOL, b->row_col, nrows * sizeof(int), "row_col",
                              (void **)&dcol));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_B, b->B, nrows * (size_t)q * sizeof(double), "B",
                              (void **)&dB));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_COLTERM, b->col_term, (size_t)b->m * sizeof(int),
                              "col_term", (void **)&dterm));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_TERMQ, b->term_q, (size_t)K * sizeof(int),
                              "term_q", (void **)&dq));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_L11, (size_t)nblk * qq * sizeof(double),
                              (void **)&dL11));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_L21, nrows * (size_t)q * sizeof(double),
                              (void **)&dL21));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_LOG, (size_t)nblk * sizeof(double), (void **)&dlog));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_FLAG, (size_t)nblk * sizeof(int), (void **)&dbad));
    MLMX_CK_RT(launch_cluster_factor(b, dA, dtm, dptr, dcol, dB, dterm, dq, dL11, dL21, dlog, dbad,
                                     c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(L11, dL11, (size_t)nblk * qq * sizeof(double),
                               cudaMemcpyDeviceToHost, c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(L21, dL21, nrows * (size_t)q * sizeof(double),
                               cudaMemcpyDeviceToHost, c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(hlog, dlog, (size_t)nblk * sizeof(double), cudaMemcpyDeviceToHost,
                               c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(hbad, dbad, (size_t)nblk * sizeof(int), cudaMemcpyDeviceToHost,
                               c->stream));
    MLMX_CK_RT(cudaStreamSynchronize(c->stream));
    // the CPU's order of summation, so logdiag agrees to the last bits
    for (int j = 0; j < nblk && first_bad < 0; j++) {
        if (hbad[j])
            first_bad = j;
        sum += hlog[j];
    }
    if (first_bad >= 0)
        st = mlmx_cuda_fail(MLMX_ERR_NUMERIC, "level %d: block not positive definite", first_bad);
    else
        *logdiag = sum;
done:
    mlmx_cuda_ctx_unlock();
    return st;
}

extern "C" mlmx_status mlmx_cuda_schur_downdate(const mlmx_cluster_batch *b, const double *L21,
                                                double *S)
{
    mlmx_status st = check_batch(b, "mlmx_cuda_schur_downdate");
    if (st != MLMX_OK)
        return st;
    if (!L21 || !S)
        return mlmx_cuda_fail(MLMX_ERR_ARG, "mlmx_cuda_schur_downdate: NULL argument");
    if (b->nblk == 0 || b->m == 0 || b->row_ptr[b->nblk] == 0)
        return MLMX_OK;
    const int q = b->q, nblk = b->nblk;
    const size_t m = (size_t)b->m, nrows = b->row_ptr[nblk];
    mlmx_cuda_ctx *c = NULL;
    double *dS, *dL21;
    size_t *dptr;
    int *dcol;
    st = mlmx_cuda_ctx_lock(&c);
    if (st != MLMX_OK)
        return st;
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_S, S, m * m * sizeof(double), "S", (void **)&dS));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_ROWPTR, b->row_ptr,
                              ((size_t)nblk + 1) * sizeof(size_t), "row_ptr", (void **)&dptr));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_ROWCOL, b->row_col, nrows * sizeof(int), "row_col",
                              (void **)&dcol));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_L21, L21, nrows * (size_t)q * sizeof(double), "L21",
                              (void **)&dL21));
    MLMX_CK_RT(launch_level_downdate(nblk, q, m, dptr, dcol, dL21, NULL, dS, c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(S, dS, m * m * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    MLMX_CK_RT(cudaStreamSynchronize(c->stream));
done:
    mlmx_cuda_ctx_unlock();
    return st;
}

extern "C" mlmx_status mlmx_cuda_stage_chol(const mlmx_block_stage *stg, int m, double *S,
                                            double *scratch, int *fail_col)
{
    (void)scratch; // the device keeps every level's solved rows at once
    if (!stg || !S || m < 0 || stg->nblk < 0 || (stg->nblk > 0 && (!stg->col_ptr)))
        return mlmx_cuda_fail(MLMX_ERR_ARG, "mlmx_cuda_stage_chol: NULL or negative argument");
    if (stg->q < 1 || stg->q > MLMX_CUDA_QMAX)
        return mlmx_cuda_fail(MLMX_ERR_UNSUPPORTED, "mlmx_cuda_stage_chol: q = %d (1..%d)",
                              stg->q, MLMX_CUDA_QMAX);
    if (stg->nblk == 0)
        return MLMX_OK;
    const int q = stg->q, nblk = stg->nblk;
    const size_t ld = (size_t)m, total = stg->col_ptr[nblk];
    if (total > 0 && !stg->col)
        return mlmx_cuda_fail(MLMX_ERR_ARG, "mlmx_cuda_stage_chol: col is NULL");
    mlmx_cuda_ctx *c = NULL;
    void *host = NULL;
    double *dS, *dx;
    size_t *dptr;
    int *dcol, *dbad, *hbad;
    mlmx_status st = mlmx_cuda_ctx_lock(&c);
    if (st != MLMX_OK)
        return st;
    MLMX_CK(mlmx_cuda_ctx_host(c, (size_t)nblk * sizeof(int), &host));
    hbad = (int *)host;
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_S, S, ld * ld * sizeof(double), "S", (void **)&dS));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_ROWPTR, stg->col_ptr,
                              ((size_t)nblk + 1) * sizeof(size_t), "col_ptr", (void **)&dptr));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_ROWCOL, stg->col, total * sizeof(int), "col",
                              (void **)&dcol));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_L21, total * (size_t)q * sizeof(double),
                              (void **)&dx));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_FLAG, (size_t)nblk * sizeof(int), (void **)&dbad));
    MLMX_CK_RT(launch_stage_level(stg, ld, dptr, dcol, dS, dx, dbad, c->stream));
    // later block -= x x^T per level; failed levels are left out (the CPU
    // stops there, and the result is an error either way)
    MLMX_CK_RT(launch_level_downdate(nblk, q, ld, dptr, dcol, dx, dbad, dS, c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(S, dS, ld * ld * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(hbad, dbad, (size_t)nblk * sizeof(int), cudaMemcpyDeviceToHost,
                               c->stream));
    MLMX_CK_RT(cudaStreamSynchronize(c->stream));
    for (int l = 0; l < nblk; l++)
        if (hbad[l]) {
            // the CPU stops at its first failing level: the same column
            if (fail_col)
                *fail_col = stg->c0 + l * q + hbad[l] - 1;
            st = mlmx_cuda_fail(MLMX_ERR_NUMERIC, "stage level %d: block not positive definite",
                                l);
            break;
        }
done:
    mlmx_cuda_ctx_unlock();
    return st;
}

// The n*n block S (leading dimension lda) through cuSOLVER's potrf (inv =
// 0) or potri (inv = 1) on the context's device buffer, in place; *info is
// cuSOLVER's devInfo.
static mlmx_status dense_solver(int n, double *S, int lda, int inv, int *info)
{
    const size_t nn = (size_t)n, row = nn * sizeof(double), pitch = (size_t)lda * sizeof(double);
    mlmx_cuda_ctx *c = NULL;
    double *dS, *dwork;
    int *dinfo, lwork = 0;
    mlmx_status st = mlmx_cuda_ctx_lock(&c);
    if (st != MLMX_OK)
        return st;
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_S, nn * nn * sizeof(double), (void **)&dS));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_FLAG, sizeof(int), (void **)&dinfo));
    MLMX_CK_RT(cudaMemcpy2DAsync(dS, row, S, pitch, row, nn, cudaMemcpyHostToDevice, c->stream));
    if (inv)
        MLMX_CK_SOLVER(
            cusolverDnDpotri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n, dS, n, &lwork));
    else
        MLMX_CK_SOLVER(
            cusolverDnDpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n, dS, n, &lwork));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_WORK,
                              (size_t)(lwork > 0 ? lwork : 1) * sizeof(double), (void **)&dwork));
    if (inv)
        MLMX_CK_SOLVER(
            cusolverDnDpotri(c->solver, CUBLAS_FILL_MODE_LOWER, n, dS, n, dwork, lwork, dinfo));
    else
        MLMX_CK_SOLVER(
            cusolverDnDpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, n, dS, n, dwork, lwork, dinfo));
    MLMX_CK_RT(cudaMemcpy2DAsync(S, pitch, dS, row, row, nn, cudaMemcpyDeviceToHost, c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(info, dinfo, sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    MLMX_CK_RT(cudaStreamSynchronize(c->stream));
done:
    mlmx_cuda_ctx_unlock();
    return st;
}

extern "C" mlmx_status mlmx_cuda_dense_chol(int n, double *S, int lda, int *fail_col)
{
    if (n < 0 || !S || lda < (n > 1 ? n : 1))
        return mlmx_cuda_fail(MLMX_ERR_ARG, "mlmx_cuda_dense_chol: n %d, lda %d, S %p", n, lda,
                              (void *)S);
    if (n == 0)
        return MLMX_OK;
    int info = 0;
    mlmx_status st = dense_solver(n, S, lda, 0, &info);
    if (st != MLMX_OK)
        return st;
    if (info > 0) {
        // LAPACK's convention: the leading minor of order info is not positive
        if (fail_col)
            *fail_col = info - 1;
        return mlmx_cuda_fail(MLMX_ERR_NUMERIC, "cusolverDnDpotrf: leading minor of order %d is "
                                                "not positive definite", info);
    }
    if (info < 0) {
        if (fail_col)
            *fail_col = 0;
        return mlmx_cuda_fail(MLMX_ERR_NUMERIC, "cusolverDnDpotrf: argument %d invalid", -info);
    }
    return MLMX_OK;
}

extern "C" mlmx_status mlmx_cuda_dense_inverse(int n, double *S, int lda)
{
    if (n < 0 || !S || lda < (n > 1 ? n : 1))
        return mlmx_cuda_fail(MLMX_ERR_ARG, "mlmx_cuda_dense_inverse: n %d, lda %d, S %p", n, lda,
                              (void *)S);
    if (n == 0)
        return MLMX_OK;
    int info = 0;
    mlmx_status st = dense_solver(n, S, lda, 1, &info);
    if (st == MLMX_OK && info != 0)
        st = mlmx_cuda_fail(MLMX_ERR_NUMERIC, "cusolverDnDpotri: %s %d",
                            info > 0 ? "zero diagonal element" : "invalid argument",
                            info > 0 ? info : -info);
    return st;
}
