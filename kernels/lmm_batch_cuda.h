/* The device engine for one-term LMM replicates (kernels/lmm_batch.cu):
 * plain C declarations, so the host code that calls them never includes a
 * CUDA header. Defined only in builds with MLMX_HAVE_CUDA. */
#ifndef MLMX_LMM_BATCH_CUDA_H
#define MLMX_LMM_BATCH_CUDA_H
#include <stddef.h>
#include <stdint.h>

#include "lmm_batch.h"
#include "mlmx.h"

typedef struct mlmx_cuda_lb mlmx_cuda_lb;

/* Device bytes: *fixed for the structure M, *per_rep for each replicate
 * in flight (its strided level arrays and its output rows). */
void mlmx_cuda_lb_bytes(const mlmx_lb_model *M, size_t *fixed, size_t *per_rep);

/* Upload M (host pointers) to the current device once. MLMX_ERR_UNSUPPORTED
 * without a device; MLMX_ERR_NOMEM when the device is out of memory;
 * MLMX_ERR_NUMERIC for another CUDA failure (msg names the call). */
mlmx_status mlmx_cuda_lb_create(const mlmx_lb_model *M, mlmx_cuda_lb **out, char *msg,
                                size_t msglen);

/* Simulate and fit replicates reps[0..count) on the device, one replicate
 * per thread, and copy row i of each output back to the host arrays
 * (theta count*nt, beta and se count*p (se may be NULL), sigma, crit, nev,
 * conv, sing, status count each), exactly as mlmx_lb_simulate + mlmx_lb_fit
 * write them on the CPU. The caller sizes count to the device's memory
 * (mlmx_batch_plan_chunk); buffers grow on demand and are kept. */
mlmx_status mlmx_cuda_lb_run(mlmx_cuda_lb *c, uint64_t seed, const uint64_t *reps, size_t count,
                             double *theta, double *beta, double *se, double *sigma,
                             double *crit, int *nev, signed char *conv, signed char *sing,
                             signed char *status, char *msg, size_t msglen);

/* Simulated responses only: y (host, count*n) row i = replicate reps[i]'s
 * response, as mlmx_lb_simulate draws it on the CPU (y_out). Device
 * buffers of (2*nblk*q + n) doubles a replicate are allocated for the
 * call and freed. Errors as mlmx_cuda_lb_run. */
mlmx_status mlmx_cuda_lb_simulate(mlmx_cuda_lb *c, uint64_t seed, const uint64_t *reps,
                                  size_t count, double *y, char *msg, size_t msglen);

/* Frees the device copies (NULL is allowed). */
void mlmx_cuda_lb_free(mlmx_cuda_lb *c);

/* Free and total memory of the current device: MLMX_ERR_UNSUPPORTED
 * without one. */
mlmx_status mlmx_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, char *msg, size_t msglen);

/* The device's name, compute capability and driver/runtime versions in
 * text (for reports); MLMX_ERR_UNSUPPORTED without a device, and when the
 * driver is older than the runtime (the message says both versions). */
mlmx_status mlmx_cuda_describe(char *buf, size_t len);

/* Peak device memory this process allocated through the batch engines. */
size_t mlmx_cuda_peak_bytes(void);
#endif
