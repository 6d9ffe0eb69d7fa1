// Batched per-level (per-cluster) factorization on the GPU: the same
// arithmetic as the CPU backend, from kernels/cluster_math.h. Three layers:
// the kernel, a launcher on a stream, and a validated extern "C" entry.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>

extern "C" {
#include "cuda_entry.h"
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

extern "C" int mlmx_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no driver" state */
        return 0;
    }
    return n;
}

#define CK(call)                                                                        \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            snprintf(msg, msglen, "%s failed: %s", #call, cudaGetErrorString(e_));     \
            st = MLMX_ERR_NUMERIC;                                                      \
            goto done;                                                                  \
        }                                                                               \
    } while (0)

extern "C" mlmx_status mlmx_cuda_cluster_chol_host(int nblk, int q, const double *A,
                                                   const double *T, double *L, double *logdiag,
                                                   char *msg, size_t msglen)
{
    mlmx_status st = MLMX_OK;
    double *dA = NULL, *dT = NULL, *dL = NULL, *dlog = NULL;
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
    CK(cudaMalloc((void **)&dA, (size_t)nblk * blk * sizeof(double)));
    CK(cudaMalloc((void **)&dT, blk * sizeof(double)));
    CK(cudaMalloc((void **)&dL, (size_t)nblk * blk * sizeof(double)));
    CK(cudaMalloc((void **)&dlog, (size_t)nblk * sizeof(double)));
    CK(cudaMemcpy(dA, A, (size_t)nblk * blk * sizeof(double), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dT, T, blk * sizeof(double), cudaMemcpyHostToDevice));
    CK(launch_cluster_chol(nblk, q, dA, dT, dL, dlog, 0));
    CK(cudaMemcpy(L, dL, (size_t)nblk * blk * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(logdiag, dlog, (size_t)nblk * sizeof(double), cudaMemcpyDeviceToHost));
done:
    cudaFree(dA);
    cudaFree(dT);
    cudaFree(dL);
    cudaFree(dlog);
    return st;
}
