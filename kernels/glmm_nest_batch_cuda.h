/* The validated C entry of the nested GLMM replicate kernel
 * (kernels/glmm_nest_batch.cu). Plain C declarations: the host code that
 * calls it never includes a CUDA header. Defined only in builds with
 * MLMX_HAVE_CUDA. */
#ifndef MLMX_GLMM_NEST_BATCH_CUDA_H
#define MLMX_GLMM_NEST_BATCH_CUDA_H
#include <stddef.h>
#include <stdint.h>

#include "glmm_nest_batch.h"
#include "mlmx.h"

/* Outputs of a batch, host memory, row i for reps[i] (the layout of
 * mlmx_batch_job with two thetas): theta (count * 2, model order), beta
 * (count * p), se (count * p, or NULL: not computed), crit (count), nev
 * (count), conv, sing, status (count each; status 1 done, 2 failed). */
typedef struct mlmx_gn_cuda_out {
    double *theta, *beta, *se, *crit;
    int *nev;
    signed char *conv, *sing, *status;
} mlmx_gn_cuda_out;

/* Simulate and fit replicates reps[0..count) of the structure S (host
 * pointers; its arrays are copied to the device) on the GPU, one replicate
 * per thread block, with the math of kernels/glmm_nest_batch.h; write the
 * outputs to o. Binds the process's device first (mlmx_cuda_bind). Device
 * buffers (mlmx_gn_fixed_bytes + count * mlmx_gn_rep_bytes, through the
 * batch engines' counted allocator, kernels/batch_alloc.cuh) are allocated
 * once per call and freed before it returns. Returns MLMX_ERR_UNSUPPORTED when no device is present,
 * MLMX_ERR_ARG for bad arguments, MLMX_ERR_NOMEM / MLMX_ERR_NUMERIC when a
 * CUDA call fails (msg, of msglen bytes, names the call). */
mlmx_status mlmx_cuda_gn_rows(const mlmx_gn_shared *S, uint64_t seed, const uint64_t *reps,
                              size_t count, const mlmx_gn_cuda_out *o, char *msg, size_t msglen);

/* Simulated responses only: y (host, count*n) row i = replicate reps[i]'s
 * draws in the structure's grouped order (y[i*n + k] for grouped position
 * k; model observation j is at k = S->pos[j]), as mlmx_gn_sim_one draws
 * them, one replicate per thread. Device buffers (the structure, and
 * count * (mlmx_gn_sim_doubles + 1) doubles, through the counted
 * allocator) are allocated for the call and freed. Errors as
 * mlmx_cuda_gn_rows. */
mlmx_status mlmx_cuda_gn_simulate(const mlmx_gn_shared *S, uint64_t seed, const uint64_t *reps,
                                  size_t count, double *y, char *msg, size_t msglen);

/* The kernel's per-thread local memory (ptxas, sm_90, MLMX_GN_PMAX 12: a
 * 1,248-byte stack for the canonical links' instantiation, 1,392 bytes
 * for the probit/cloglog one; rounded up), which the driver reserves for
 * every thread the device can hold at once, counted for an H200 (132 SMs
 * x 2048 threads, as lmm_nest_batch.cu does): about 400 MB. */
#define MLMX_GN_LOCAL_BYTES ((size_t)1536)
#define MLMX_GN_RESIDENT_THREADS ((size_t)132 * 2048)

/* Device bytes mlmx_cuda_gn_rows needs: fixed (the structure, and the
 * local memory reservation above) and per replicate in flight (its
 * scratch, mlmx_gn_rep_doubles, its output row, key and flags). Pure
 * arithmetic, available in every build. */
static inline size_t mlmx_gn_fixed_bytes(const mlmx_gn_shared *S)
{
    const size_t n = (size_t)S->n, p = (size_t)S->p, np = (size_t)S->np;
    const size_t nf = (size_t)S->nfine, nt = (size_t)S->ntop;
    return (nt + 1 + nf + 1 + 2 * nf + 2 * n) * sizeof(int) +
           (n * p + 3 * n + 2 * (size_t)S->nagq + 2 * p + 2 * np + np * np) * sizeof(double) +
           MLMX_GN_RESIDENT_THREADS * MLMX_GN_LOCAL_BYTES;
}

static inline size_t mlmx_gn_rep_bytes(const mlmx_gn_shared *S)
{
    const size_t p = (size_t)S->p;
    return (mlmx_gn_rep_doubles(S) + 3 + 2 * p) * sizeof(double) + sizeof(uint64_t) +
           sizeof(int) + 3;
}

#endif
