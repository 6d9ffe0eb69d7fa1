/* The validated C entry of the crossed GLMM replicate kernel
 * (kernels/glmm_crossed_batch.cu). Plain C declarations: the host code
 * that calls it never includes a CUDA header. Defined only in builds with
 * MLMX_HAVE_CUDA. */
#ifndef MLMX_GLMM_CROSSED_BATCH_CUDA_H
#define MLMX_GLMM_CROSSED_BATCH_CUDA_H
#include <stddef.h>
#include <stdint.h>

#include "glmm_crossed_batch.h"
#include "mlmx.h"

/* Outputs of a batch, host memory, row i for reps[i] (the layout of
 * mlmx_batch_job): theta (count * K, model order), beta (count * p), se
 * (count * p, or NULL: not computed), crit (count), nev (count), conv,
 * sing, status (count each; status 1 done, 2 failed). */
typedef struct mlmx_gc_cuda_out {
    double *theta, *beta, *se, *crit;
    int *nev;
    signed char *conv, *sing, *status;
} mlmx_gc_cuda_out;

/* Simulate and fit replicates reps[0..count) of the structure S (host
 * pointers; its arrays are copied to the device) on the GPU, one replicate
 * per thread, each running mlmx_gc_fit_one (kernels/glmm_crossed_batch.h),
 * the CPU engine's code; write the outputs to o. Binds the process's
 * device first (mlmx_cuda_bind). Device buffers (mlmx_gc_fixed_bytes +
 * count * mlmx_gc_rep_bytes, through the counted allocator,
 * kernels/batch_alloc.cuh) are allocated per call and freed before it
 * returns. Returns MLMX_ERR_UNSUPPORTED when no device is present,
 * MLMX_ERR_ARG for bad arguments, MLMX_ERR_NOMEM / MLMX_ERR_NUMERIC when a
 * CUDA call fails (msg, of msglen bytes, names the call). */
mlmx_status mlmx_cuda_gc_rows(const mlmx_gc_shared *S, uint64_t seed, const uint64_t *reps,
                              size_t count, const mlmx_gc_cuda_out *o, char *msg, size_t msglen);

/* Simulated responses only: y (count * n, row i for reps[i], model
 * observation order, the values mlmx_gc_simulate and
 * mlmx_workspace_simulate give), one replicate per thread. Device buffers:
 * the structure and count * (2 n + n0 + m) doubles. Errors as
 * mlmx_cuda_gc_rows. */
mlmx_status mlmx_cuda_gc_simulate(const mlmx_gc_shared *S, uint64_t seed, const uint64_t *reps,
                                  size_t count, double *y, char *msg, size_t msglen);

/* The kernel's per-thread local memory (ptxas -v for sm_90, nvcc 13.0: an
 * 848-byte stack frame, spills included, rounded up; docs/performance.md),
 * which the driver reserves for
 * every thread the device can hold at once, counted for an H200 (132 SMs
 * x 2048 threads, as the other engines do). */
#define MLMX_GC_LOCAL_BYTES ((size_t)1024)
#define MLMX_GC_RESIDENT_THREADS ((size_t)132 * 2048)

/* Device bytes mlmx_cuda_gc_rows needs: fixed (the structure, and the
 * local memory reservation above) and per replicate in flight (its
 * scratch: mlmx_gc_rep_doubles, mlmx_gc_opt_doubles, x and se, the output
 * row, key, count, active flags and status bytes). Pure arithmetic,
 * available in every build. */
static inline size_t mlmx_gc_fixed_bytes(const mlmx_gc_shared *S)
{
    const size_t n = (size_t)S->n, p = (size_t)S->p, np = (size_t)S->np, K = (size_t)S->K;
    const size_t n0 = (size_t)S->n0, nnz = (size_t)S->nnz;
    return (2 * (n0 + 1) + nnz + 2 * n + 2 * n * (K - 1)) * sizeof(int) +
           (n * (p + K + 1) + K + 2 * p + 2 * np + np * np) * sizeof(double) +
           MLMX_GC_RESIDENT_THREADS * MLMX_GC_LOCAL_BYTES;
}

static inline size_t mlmx_gc_rep_bytes(const mlmx_gc_shared *S)
{
    const size_t p = (size_t)S->p, np = (size_t)S->np, K = (size_t)S->K;
    return (mlmx_gc_rep_doubles(S) + mlmx_gc_opt_doubles(S) + np + p + K + 2 + 2 * p) *
               sizeof(double) +
           sizeof(uint64_t) + (np + 1) * sizeof(int) + 3;
}

#endif
