// Batched per-level (per-cluster) factorization on the GPU: the same
// arithmetic as the CPU backend, from kernels/cluster_math.h. Three layers:
// the kernel, a launcher on a stream, and a validated extern "C" entry.
// Its buffers come from the backend's context (kernels/cuda_ctx.cu).
#include <math.h>
#include <stdio.h>

#include "cuda_ctx.cuh"
extern "C" {
#include "backend_cuda.h"
}
#include "cluster_math.h"

#define MLMX_CUDA_QMAX 16

__global__ void mlmx_cluster_chol_kernel(int nblk, int q, const double *__restrict__ A,
                                         const double *__restrict__ T, double *__restrict__ L,
                                         double *__restrict__ logdiag)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= nblk)
        return;
    double work[MLMX_CUDA_QMAX * MLMX_CUDA_QMAX];
    double *l = L + (size_t)j * q * q;
    mlmx_cm_tat_plus_i(q, A + (size_t)j * q * q, T, work, l);
    logdiag[j] = mlmx_cm_chol(q, l) ? nan("") : mlmx_cm_logdiag(q, l);
}

static cudaError_t launch_cluster_chol(int nblk, int q, const double *dA, const double *dT,
                                       double *dL, double *dlog, cudaStream_t stream)
{
    const int threads = 128;
    int blocks = (nblk + threads - 1) / threads;
    mlmx_cluster_chol_kernel<<<blocks, threads, 0, stream>>>(nblk, q, dA, dT, dL, dlog);
    return cudaGetLastError();
}

extern "C" mlmx_status mlmx_cuda_cluster_chol_host(int nblk, int q, const double *A,
                                                   const double *T, double *L, double *logdiag,
                                                   char *msg, size_t msglen)
{
    mlmx_status st = MLMX_OK;
    mlmx_cuda_ctx *c = NULL;
    double *dA, *dT, *dL, *dlog;
    size_t blk = (size_t)q * (size_t)q;
    if (nblk <= 0 || q <= 0 || q > MLMX_CUDA_QMAX || !A || !T || !L || !logdiag) {
        snprintf(msg, msglen, "mlmx_cuda_cluster_chol_host: bad arguments (nblk %d, q %d)", nblk,
                 q);
        return MLMX_ERR_ARG;
    }
    if (mlmx_cuda_device_count() == 0) {
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    st = mlmx_cuda_ctx_lock(&c);
    if (st != MLMX_OK) {
        snprintf(msg, msglen, "%s", mlmx_cuda_last_error());
        return st;
    }
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_A, A, (size_t)nblk * blk * sizeof(double), "A",
                              (void **)&dA));
    MLMX_CK(mlmx_cuda_ctx_put(c, MLMX_CUDA_BUF_T, T, blk * sizeof(double), "T", (void **)&dT));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_L11, (size_t)nblk * blk * sizeof(double),
                              (void **)&dL));
    MLMX_CK(mlmx_cuda_ctx_buf(c, MLMX_CUDA_BUF_LOG, (size_t)nblk * sizeof(double), (void **)&dlog));
    MLMX_CK_RT(launch_cluster_chol(nblk, q, dA, dT, dL, dlog, c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(L, dL, (size_t)nblk * blk * sizeof(double), cudaMemcpyDeviceToHost,
                               c->stream));
    MLMX_CK_RT(cudaMemcpyAsync(logdiag, dlog, (size_t)nblk * sizeof(double),
                               cudaMemcpyDeviceToHost, c->stream));
    MLMX_CK_RT(cudaStreamSynchronize(c->stream));
done:
    if (st != MLMX_OK)
        snprintf(msg, msglen, "%s", mlmx_cuda_last_error());
    mlmx_cuda_ctx_unlock();
    return st;
}
