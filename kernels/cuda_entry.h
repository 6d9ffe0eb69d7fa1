/* Validated C entry points of the CUDA kernels. Plain C declarations: the
 * host code that calls them never includes a CUDA header. Defined only in
 * builds with MLMX_HAVE_CUDA. */
#ifndef MLMX_CUDA_ENTRY_H
#define MLMX_CUDA_ENTRY_H
#include "mlmx.h"

/* Number of usable CUDA devices (0 when the driver or a device is absent). */
int mlmx_cuda_device_count(void);

/* Use device index % count for this process's GPU work from now on (one
 * GPU per MPI rank: index = the node-local rank); *chosen gets the device.
 * MLMX_ERR_UNSUPPORTED without a device. mlmx_cuda_bind makes the chosen
 * device current on the calling thread (every entry point calls it first;
 * a no-op until a device is chosen). cuda_ctx.cu. */
mlmx_status mlmx_cuda_select_device(int index, int *chosen);
void mlmx_cuda_bind(void);

/* Batched first-term factorization, the per-level part of the LMM
 * criterion: for j < nblk, L_j = chol(T^T A_j T + I) and
 * logdiag[j] = log det L_j (NaN when A_j's block is not positive definite).
 * Host pointers: A (nblk*q*q), T (q*q), L (nblk*q*q), logdiag (nblk).
 * Copies to the device (the CUDA backend's context buffers, see
 * backend_cuda.h), runs one thread per level, copies back; q <= 16.
 * Returns MLMX_ERR_ARG for bad arguments, MLMX_ERR_UNSUPPORTED without a
 * device, MLMX_ERR_NOMEM when a device allocation fails, MLMX_ERR_NUMERIC
 * on another CUDA failure (msg, msglen bytes, names the call). */
mlmx_status mlmx_cuda_cluster_chol_host(int nblk, int q, const double *A, const double *T,
                                        double *L, double *logdiag, char *msg, size_t msglen);
#endif
