/* The device engine for nested LMM replicates (kernels/lmm_nest_batch.cu):
 * plain C declarations, so the host code that calls them never includes a
 * CUDA header. Defined only in builds with MLMX_HAVE_CUDA. */
#ifndef MLMX_LMM_NEST_BATCH_CUDA_H
#define MLMX_LMM_NEST_BATCH_CUDA_H
#include <stddef.h>
#include <stdint.h>

#include "lmm_nest_batch.h"
#include "mlmx.h"

typedef struct mlmx_cuda_nb mlmx_cuda_nb;

/* Device bytes: *fixed for the structure M plus the local memory the
 * driver reserves for the kernel's per-thread scratch (sizeof
 * mlmx_nb_scratch for every thread the device can hold at once, counted
 * for an H200: 132 SMs x 2048 threads, about 7.8 GB); *per_rep for each
 * replicate in flight (its b and Z^T y, its key and its output row). */
void mlmx_cuda_nb_bytes(const mlmx_nb_model *M, size_t *fixed, size_t *per_rep);

/* Upload M (host pointers) to the current device once. MLMX_ERR_UNSUPPORTED
 * without a device; MLMX_ERR_NOMEM when the device is out of memory;
 * MLMX_ERR_NUMERIC for another CUDA failure (msg, msglen bytes, names the
 * call). Allocates the context (free with mlmx_cuda_nb_free). */
mlmx_status mlmx_cuda_nb_create(const mlmx_nb_model *M, mlmx_cuda_nb **out, char *msg,
                                size_t msglen);

/* Simulate and fit replicates reps[0..count) on the device and copy row i
 * of each output to the host arrays of o (theta count*nt, beta and se
 * count*p (se may be NULL), sigma, crit, nev, conv, sing, status count
 * each), as mlmx_nb_simulate + mlmx_nb_fit write them on the CPU.
 * mapping: 1 one replicate per thread, 2 one replicate per warp (see
 * replicate/lmm_nest_engine.h; anything else is MLMX_ERR_ARG). The caller
 * sizes count to the device's memory (mlmx_batch_plan_chunk); buffers grow
 * on demand and are kept. MLMX_ERR_ARG for missing arguments; CUDA
 * failures as mlmx_cuda_nb_create. */
mlmx_status mlmx_cuda_nb_run(mlmx_cuda_nb *c, int mapping, uint64_t seed, const uint64_t *reps,
                             size_t count, const mlmx_nb_out *o, char *msg, size_t msglen);

/* Frees the device copies and buffers (NULL is allowed). */
void mlmx_cuda_nb_free(mlmx_cuda_nb *c);

#endif
