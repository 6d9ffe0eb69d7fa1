/* The validated C entry of the GLMM replicate kernel (kernels/glmm_batch.cu).
 * Plain C declarations: the host code that calls it never includes a CUDA
 * header. Defined only in builds with MLMX_HAVE_CUDA. */
#ifndef MLMX_GLMM_BATCH_CUDA_H
#define MLMX_GLMM_BATCH_CUDA_H
#include <stddef.h>
#include <stdint.h>

#include "glmm_batch.h"
#include "mlmx.h"

/* Outputs of a batch, host memory, row i for reps[i] (the layout of
 * mlmx_batch_job, mlmx_gb_unpack): theta (count * nth), beta
 * (count * pout), se (count * pout, or NULL: not computed), crit (count),
 * nev (count), conv, sing, status (count each; status 1 done, 2 failed),
 * extra (count * ne thresholds or sizes, or NULL: not wanted). */
typedef struct mlmx_gb_cuda_out {
    double *theta, *beta, *se, *crit;
    int *nev;
    signed char *conv, *sing, *status;
    double *extra;
} mlmx_gb_cuda_out;

/* Simulate and fit replicates reps[0..count) of the structure S (host
 * pointers; its arrays are copied to the current device) on the GPU, one
 * replicate per warp, with the math of kernels/glmm_batch.h; write the
 * outputs to o. Device buffers (mlmx_gb_fixed_bytes + count *
 * mlmx_gb_rep_bytes, through the batch engines' counted allocator,
 * kernels/batch_alloc.cuh) are allocated once per call and freed before it
 * returns. Returns MLMX_ERR_UNSUPPORTED when no device is present,
 * MLMX_ERR_ARG for bad arguments, MLMX_ERR_NOMEM / MLMX_ERR_NUMERIC when a
 * CUDA call fails (msg, of msglen bytes, names the call). */
mlmx_status mlmx_cuda_gb_rows(const mlmx_gb_shared *S, uint64_t seed, const uint64_t *reps,
                              size_t count, const mlmx_gb_cuda_out *o, char *msg, size_t msglen);

/* Simulated responses only: y (host, count*n) row i = replicate reps[i]'s
 * draws in the structure's grouped order (y[i*n + k] for grouped position
 * k; model observation j is at k = S->pos[j]), as mlmx_gb_simulate draws
 * them. Device buffers are allocated for the call and freed. Errors as
 * mlmx_cuda_gb_rows. */
mlmx_status mlmx_cuda_gb_simulate(const mlmx_gb_shared *S, uint64_t seed, const uint64_t *reps,
                                  size_t count, double *y, char *msg, size_t msglen);

/* The structure's device copy: *bi bytes of ints, *bd of doubles. */
static inline void mlmx_gb_struct_bytes(const mlmx_gb_shared *S, size_t *bi, size_t *bd)
{
    const size_t n = (size_t)S->n, p = (size_t)S->p, np = (size_t)S->np, q = (size_t)S->q;
    *bi = ((size_t)S->nclu + 1 + 2 * n) * sizeof(int);
    *bd = (n * (p + q) + n + 2 * (size_t)S->nagq + 2 * p + 2 * np + np * np + (size_t)S->ne +
           q * q) *
          sizeof(double);
}

/* Device bytes mlmx_cuda_gb_rows allocates: fixed (the structure and the
 * queue counter; the engine adds the kernels' local memory reservation,
 * host/replicate/glmm_batch.c) and per replicate in flight (its response
 * and modes, output row, key and flags). Pure arithmetic, available in
 * every build. */
static inline size_t mlmx_gb_fixed_bytes(const mlmx_gb_shared *S)
{
    size_t bi, bd;
    mlmx_gb_struct_bytes(S, &bi, &bd);
    return bi + bd + sizeof(unsigned long long);
}

static inline size_t mlmx_gb_rep_bytes(const mlmx_gb_shared *S)
{
    const size_t p = (size_t)S->pout;
    return ((size_t)S->n + (size_t)S->nclu * (size_t)S->q + (size_t)S->nth + 1 + 2 * p +
            (size_t)S->ne) *
               sizeof(double) +
           sizeof(uint64_t) + sizeof(int) + 3;
}

#endif
