/* The device engine for LMM replicates with a small dense block
 * (kernels/lmm_dense_batch.cu): plain C declarations, so the host code that
 * calls them never includes a CUDA header. Defined only in builds with
 * MLMX_HAVE_CUDA. */
#ifndef MLMX_LMM_DENSE_BATCH_CUDA_H
#define MLMX_LMM_DENSE_BATCH_CUDA_H
#include <stddef.h>
#include <stdint.h>

#include "lmm_dense_batch.h"
#include "mlmx.h"

/* Device mappings: one replicate per thread (tiny models: no barriers, 32
 * replicates a warp), one per warp (levels over the lanes), or one per
 * thread block of MLMX_LD_BLOCK_LANES threads (large dense blocks: the
 * dense Cholesky and the downdate over the block, __syncthreads). */
enum { MLMX_LD_MAP_AUTO = 0, MLMX_LD_MAP_THREAD = 1, MLMX_LD_MAP_WARP = 2, MLMX_LD_MAP_BLOCK = 3 };

typedef struct mlmx_cuda_ld mlmx_cuda_ld;

/* The mapping MLMX_LD_MAP_AUTO stands for with model M (by size, guesses
 * until measured: per block when the dense block has over 64 columns, per
 * thread when it has at most 16 and the first term at most 64 random
 * effects, per warp otherwise). Pure arithmetic. */
int mlmx_cuda_ld_auto_mapping(const mlmx_ld_model *M);

/* Device bytes: *fixed for the structure M and the local memory the driver
 * reserves for the kernels' stack frames, *per_rep for each replicate in
 * flight under `mapping` (its simulation scratch, statistics, evaluation
 * scratch, optimizer state when per thread, and output rows). Pure
 * arithmetic. Allocations go through mlmx_cuda_batch_alloc, so
 * mlmx_cuda_peak_bytes (lmm_batch_cuda.h) counts them. */
void mlmx_cuda_ld_bytes(const mlmx_ld_model *M, int mapping, size_t *fixed, size_t *per_rep);

/* Upload M (host pointers) to the current device once. MLMX_ERR_UNSUPPORTED
 * without a device; MLMX_ERR_NOMEM when the device is out of memory;
 * MLMX_ERR_NUMERIC for another CUDA failure (msg names the call). */
mlmx_status mlmx_cuda_ld_create(const mlmx_ld_model *M, mlmx_cuda_ld **out, char *msg,
                                size_t msglen);

/* Simulate and fit replicates reps[0..count) on the device under
 * `mapping` and copy row i of each output back to the host arrays (theta
 * count*nt, beta and se count*p (se may be NULL), sigma, crit, nev, conv,
 * sing, status count each), as mlmx_ld_simulate + mlmx_ld_fit write them
 * on the CPU. The caller sizes count to the device's memory
 * (mlmx_batch_plan_chunk); buffers grow on demand and are kept until
 * mlmx_cuda_ld_free. Errors as mlmx_cuda_ld_create, MLMX_ERR_ARG for a
 * missing argument. */
mlmx_status mlmx_cuda_ld_run(mlmx_cuda_ld *c, int mapping, uint64_t seed, const uint64_t *reps,
                             size_t count, double *theta, double *beta, double *se,
                             double *sigma, double *crit, int *nev, signed char *conv,
                             signed char *sing, signed char *status, char *msg, size_t msglen);

/* Simulated responses only, one replicate per thread: y (host, count*n)
 * row i = replicate reps[i]'s response in model order, as mlmx_ld_simulate
 * draws it on the CPU. Device buffers of (nu + n) doubles and one key a
 * replicate are allocated for the call and freed. Errors as
 * mlmx_cuda_ld_run. */
mlmx_status mlmx_cuda_ld_simulate(mlmx_cuda_ld *c, uint64_t seed, const uint64_t *reps,
                                  size_t count, double *y, char *msg, size_t msglen);

/* Frees the device copies (NULL is allowed). */
void mlmx_cuda_ld_free(mlmx_cuda_ld *c);

#endif
