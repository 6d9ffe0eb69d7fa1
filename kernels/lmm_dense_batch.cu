// The device engine for LMM replicates with a small dense block
// (lmm-crossed): each replicate's whole fit (simulation, statistics, BFGS
// over the profiled criterion with its dual-number gradient) inside one
// launch, by the inline math of lmm_dense_batch.h that the CPU engine runs
// too. Three mappings, chosen by size (mlmx_cuda_ld_auto_mapping):
//   - one replicate per warp: the first-term levels over the lanes, the
//     Schur downdate by owned dense entries, the dense Cholesky's trailing
//     updates over the lanes, reductions by shuffles; the optimizer state
//     in shared memory, stepped by lane 0; the simulation on lane 0;
//   - one replicate per thread for tiny models (a dense block of <= 16
//     columns and <= 64 first-term effects, e.g. Penicillin, Pastes, Oats),
//     where a warp's lanes would mostly idle: no barriers, the optimizer
//     state in the replicate's global scratch;
//   - one replicate per thread block of LD_BLOCK_LANES threads for large
//     dense blocks (over LD_BLOCK_MIN_M columns: sim_crossed's
//     (time||student), crossed designs with hundreds of levels, InstEval):
//     the same partition as the warp's over 128 lanes, __syncthreads
//     between phases and a shared-memory step in the lane sums, so the
//     dense Cholesky's O(m^3) trailing updates and the Schur downdate
//     spread over four warps; the optimizer state in shared memory.
// The thresholds are guesses until they are measured on a device. Each
// replicate's scratch is a contiguous block of global memory (L1/L2
// cached). Three layers: the kernels, their launcher on a stream, and the
// validated extern "C" entries. Device allocations go through ld_alloc /
// ld_dev_free alone (the counted allocator of batch_alloc.cuh). The
// per-level and dense phases' temporaries are in each lane's slot of that
// scratch (mlmx_ld_lane_len); what stays on the stack (O(nt) arrays) is
// local memory the driver reserves for every resident thread:
// gpu_fixed_bytes counts it.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "cuda_entry.h"
#include "lmm_dense_batch_cuda.h"
}
#include "batch_alloc.cuh"
#include "lmm_dense_batch.h"

#define LD_WARPS 4     /* replicates (warps) per block in the warp mapping */
#define LD_THREADS 128 /* threads per block in the thread mapping */
#define LD_BLOCK_LANES MLMX_LD_BLOCK_LANES /* threads of one replicate, block mapping */
#define LD_BLOCK_MIN_M 64 /* the block mapping above this many dense columns (a guess) */
#define LD_ALIGN 16

/* resident threads of an H200 (132 SMs x 2048): the local memory the
 * driver reserves for the kernels' stack frames is counted for this many */
#define LD_RESIDENT_THREADS ((size_t)132 * 2048)
/* the largest of the three kernels' stack frames (ptxas, sm_90, CUDA 13.0:
 * thread 1,232, warp 1,056, block 1,088 bytes; spills included), rounded
 * up. It was ~6 KB before the per-level temporaries moved into each lane's
 * slot of the global scratch. */
#define LD_STACK_BYTES ((size_t)1280)

/* Every device buffer goes through the batch engines' counted allocator,
 * so mlmx_cuda_peak_bytes includes this engine's. */
static cudaError_t ld_alloc(void **p, size_t bytes) { return mlmx_cuda_batch_alloc(p, bytes); }

static void ld_dev_free(void *p, size_t bytes) { mlmx_cuda_batch_free(p, bytes); }

struct mlmx_cuda_ld {
    mlmx_ld_model M; /* device pointers */
    void *fixed;     /* one allocation holding the structure */
    size_t fixed_bytes;
    cudaStream_t stream;
    void *rows; /* per-chunk buffers, grown on demand */
    size_t rows_bytes;
};

/* ------------------------------------------------------------ sizes */

/* Doubles of shared memory one warp uses: the optimizer's state, its store
 * (8 nt + nt^2) and its active flags. */
static __host__ __device__ size_t ld_warp_shared(int nt)
{
    const size_t qs = (sizeof(mlmx_qn_state) + sizeof(double) - 1) / sizeof(double);
    return qs + 8 * (size_t)nt + (size_t)nt * (size_t)nt + ((size_t)nt + 1) / 2;
}

/* Doubles of global scratch one replicate uses with nlanes lanes (1: the
 * thread mapping, 32: warp, LD_BLOCK_LANES: block): the simulation's
 * random effects, the statistics, the evaluation scratch and, per thread,
 * the optimizer's store and active flags. */
static __host__ __device__ size_t ld_work_len(const mlmx_ld_model *M, int nlanes)
{
    size_t len = (size_t)M->nu + mlmx_ld_resp_len(M) + mlmx_ld_scratch_len(M, nlanes);
    if (nlanes == 1)
        len += 8 * (size_t)M->nt + (size_t)M->nt * (size_t)M->nt + ((size_t)M->nt + 1) / 2;
    return len;
}

/* Bytes of a replicate's key and output row (theta, beta, se, sigma,
 * crit, nev, conv, sing, status). */
static size_t ld_row_bytes(const mlmx_ld_model *M)
{
    return sizeof(uint64_t) + (size_t)(M->nt + 2 * M->p + 2) * sizeof(double) + sizeof(int) + 3;
}

extern "C" int mlmx_cuda_ld_auto_mapping(const mlmx_ld_model *M)
{
    if (M->m > LD_BLOCK_MIN_M)
        return MLMX_LD_MAP_BLOCK;
    return M->m <= 16 && M->nblk * M->q1 <= 64 ? MLMX_LD_MAP_THREAD : MLMX_LD_MAP_WARP;
}

/* The lanes of one replicate under a mapping (auto resolved). */
static int ld_lanes(const mlmx_ld_model *M, int mapping)
{
    if (mapping != MLMX_LD_MAP_THREAD && mapping != MLMX_LD_MAP_WARP &&
        mapping != MLMX_LD_MAP_BLOCK)
        mapping = mlmx_cuda_ld_auto_mapping(M);
    return mapping == MLMX_LD_MAP_BLOCK ? LD_BLOCK_LANES : mapping == MLMX_LD_MAP_WARP ? 32 : 1;
}

/* ------------------------------------------------------------ kernels */

/* Replicate rep (output row r) on the nlanes lanes of a warp or a block:
 * its work block (ld_work_len) at w, its optimizer state at base in shared
 * memory (ld_warp_shared(nt) doubles); lane 0 simulates, all lanes fit. */
static __device__ void ld_replicate(const mlmx_ld_model *M, uint64_t seed, uint64_t rep,
                                    double *w, double *base, int lane, int nlanes,
                                    const mlmx_ld_out *o, size_t r)
{
    const size_t qs = (sizeof(mlmx_qn_state) + sizeof(double) - 1) / sizeof(double);
    mlmx_qn_state *q = (mlmx_qn_state *)base;
    double *qstore = base + qs;
    int *qact = (int *)(qstore + 8 * M->nt + M->nt * M->nt);
    double *resp = w + M->nu, *scr = resp + mlmx_ld_resp_len(M);
    if (lane == 0)
        mlmx_ld_simulate(M, seed, rep, w, resp, 0);
    mlmx_ld_sync(nlanes);
    mlmx_ld_fit(M, resp, scr, q, qstore, qact, lane, nlanes, o, r);
}

__global__ void __launch_bounds__(32 * LD_WARPS)
    mlmx_ld_warp_kernel(mlmx_ld_model M, uint64_t seed, const uint64_t *__restrict__ reps,
                        size_t count, double *work, size_t wlen, mlmx_ld_out o)
{
    extern __shared__ double ld_smem[];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const size_t r = (size_t)blockIdx.x * LD_WARPS + (size_t)w;
    if (r >= count)
        return; /* the whole warp: every lane has the same r */
    ld_replicate(&M, seed, reps[r], work + r * wlen, ld_smem + (size_t)w * ld_warp_shared(M.nt),
                 lane, 32, &o, r);
}

__global__ void __launch_bounds__(LD_THREADS)
    mlmx_ld_thread_kernel(mlmx_ld_model M, uint64_t seed, const uint64_t *__restrict__ reps,
                          size_t count, double *work, size_t wlen, mlmx_ld_out o)
{
    const size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= count)
        return;
    double *b = work + r * wlen, *resp = b + M.nu, *scr = resp + mlmx_ld_resp_len(&M);
    double *qstore = scr + mlmx_ld_scratch_len(&M, 1);
    int *qact = (int *)(qstore + 8 * M.nt + M.nt * M.nt);
    mlmx_qn_state q;
    mlmx_ld_simulate(&M, seed, reps[r], b, resp, 0);
    mlmx_ld_fit(&M, resp, scr, &q, qstore, qact, 0, 1, &o, r);
}

/* One replicate per block: lane = thread, the optimizer state in shared
 * memory (the launch's dynamic shared memory), the simulation on thread 0.
 * Every thread reaches every barrier: none returns early. */
__global__ void __launch_bounds__(LD_BLOCK_LANES)
    mlmx_ld_block_kernel(mlmx_ld_model M, uint64_t seed, const uint64_t *__restrict__ reps,
                         size_t count, double *work, size_t wlen, mlmx_ld_out o)
{
    extern __shared__ double ld_smem[];
    const int lane = threadIdx.x;
    const size_t r = blockIdx.x;
    if (r >= count)
        return; /* the whole block: every thread has the same r */
    ld_replicate(&M, seed, reps[r], work + r * wlen, ld_smem, lane, LD_BLOCK_LANES, &o, r);
}

/* Responses only: replicate r's y into y + r*n (model order). */
__global__ void mlmx_ld_sim_kernel(mlmx_ld_model M, uint64_t seed,
                                   const uint64_t *__restrict__ reps, size_t count, double *bbuf,
                                   double *y)
{
    const size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= count)
        return;
    mlmx_ld_simulate(&M, seed, reps[r], bbuf + r * (size_t)(M.nu > 0 ? M.nu : 1), 0,
                     y + r * (size_t)M.n);
}

static cudaError_t launch_ld(const mlmx_ld_model *M, int lanes, uint64_t seed,
                             const uint64_t *reps, size_t count, double *work,
                             const mlmx_ld_out *o, cudaStream_t s)
{
    const size_t wlen = ld_work_len(M, lanes);
    if (lanes == LD_BLOCK_LANES) {
        const size_t shmem = ld_warp_shared(M->nt) * sizeof(double);
        mlmx_ld_block_kernel<<<(unsigned)count, LD_BLOCK_LANES, shmem, s>>>(*M, seed, reps,
                                                                           count, work, wlen, *o);
    } else if (lanes == 32) {
        const size_t blocks = (count + LD_WARPS - 1) / LD_WARPS;
        const size_t shmem = (size_t)LD_WARPS * ld_warp_shared(M->nt) * sizeof(double);
        mlmx_ld_warp_kernel<<<(unsigned)blocks, 32 * LD_WARPS, shmem, s>>>(*M, seed, reps, count,
                                                                          work, wlen, *o);
    } else {
        const size_t blocks = (count + LD_THREADS - 1) / LD_THREADS;
        mlmx_ld_thread_kernel<<<(unsigned)blocks, LD_THREADS, 0, s>>>(*M, seed, reps, count, work,
                                                                     wlen, *o);
    }
    return cudaGetLastError();
}

/* ------------------------------------------------------------ entries */

#define CK(call)                                                                        \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            snprintf(msg, msglen, "%s failed: %s", #call, cudaGetErrorString(e_));     \
            st = e_ == cudaErrorMemoryAllocation ? MLMX_ERR_NOMEM : MLMX_ERR_NUMERIC;  \
            goto done;                                                                  \
        }                                                                               \
    } while (0)

/* The next aligned slot of `bytes` in an allocation at base (NULL: only
 * count), filled from src when given. */
static void *put(char *base, size_t *off, const void *src, size_t bytes, cudaStream_t s,
                 cudaError_t *e)
{
    *off = (*off + LD_ALIGN - 1) / LD_ALIGN * LD_ALIGN;
    void *dst = base ? base + *off : NULL;
    *off += bytes;
    if (base && src && bytes && *e == cudaSuccess)
        *e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s);
    return dst;
}

/* Lay out (base NULL: size) and copy the structure H into one allocation;
 * D gets the device pointers. Returns the bytes used. */
static size_t ld_upload(char *base, const mlmx_ld_model *H, mlmx_ld_model *D, cudaStream_t s,
                        cudaError_t *e)
{
    const size_t n = (size_t)H->n, p = (size_t)H->p, nt = (size_t)H->nt, q = (size_t)H->q1;
    const size_t nb = (size_t)H->nblk, m = (size_t)H->m, d = sizeof(double), i = sizeof(int);
    const size_t nrows = (size_t)H->row_ptr[H->nblk];
    size_t nz = 0, off = 0;
    for (int k = 0; k < H->K; k++)
        nz += n * (size_t)H->tq[k];
    *D = *H;
    D->codes = (const int *)put(base, &off, H->codes, (size_t)H->K * n * i, s, e);
    D->Z = (const double *)put(base, &off, H->Z, nz * d, s, e);
    D->X = (const double *)put(base, &off, H->X, n * p * d, s, e);
    D->A1 = (const double *)put(base, &off, H->A1, nb * q * q * d, s, e);
    D->row_ptr = (const int *)put(base, &off, H->row_ptr, (nb + 1) * i, s, e);
    D->row_col = (const int *)put(base, &off, H->row_col, nrows * i, s, e);
    D->B = (const double *)put(base, &off, H->B, nrows * q * d, s, e);
    D->D = (const double *)put(base, &off, H->D, m * (m - 1) / 2 * d, s, e);
    D->cterm = (const int *)put(base, &off, H->cterm, (m - 1) * i, s, e);
    D->ccomp = (const int *)put(base, &off, H->ccomp, (m - 1) * i, s, e);
    D->theta = (const double *)put(base, &off, H->theta, nt * d, s, e);
    D->beta = (const double *)put(base, &off, H->beta, p * d, s, e);
    D->x0 = (const double *)put(base, &off, H->x0, nt * d, s, e);
    D->xlo = (const double *)put(base, &off, H->xlo, nt * d, s, e);
    D->hinv0 = H->hinv0 ? (const double *)put(base, &off, H->hinv0, nt * nt * d, s, e) : 0;
    D->logp = (const unsigned char *)put(base, &off, H->logp, nt, s, e);
    return off + LD_ALIGN;
}

extern "C" void mlmx_cuda_ld_bytes(const mlmx_ld_model *M, int mapping, size_t *fixed,
                                   size_t *per_rep)
{
    mlmx_ld_model D;
    cudaError_t e = cudaSuccess;
    *fixed = ld_upload(NULL, M, &D, 0, &e) + LD_RESIDENT_THREADS * LD_STACK_BYTES;
    /* the work block, then the key and output arrays, each padded */
    *per_rep = ld_work_len(M, ld_lanes(M, mapping)) * sizeof(double) + ld_row_bytes(M) + 64;
}

extern "C" mlmx_status mlmx_cuda_ld_create(const mlmx_ld_model *M, mlmx_cuda_ld **out, char *msg,
                                           size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int ndev = 0;
    *out = NULL;
    if (!M) {
        snprintf(msg, msglen, "mlmx_cuda_ld_create: no model");
        return MLMX_ERR_ARG;
    }
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        cudaGetLastError();
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    mlmx_cuda_ld *c = (mlmx_cuda_ld *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(msg, msglen, "out of host memory");
        return MLMX_ERR_NOMEM;
    }
    {
        cudaError_t e = cudaSuccess;
        c->fixed_bytes = ld_upload(NULL, M, &c->M, 0, &e);
        CK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
        CK(ld_alloc(&c->fixed, c->fixed_bytes));
        ld_upload((char *)c->fixed, M, &c->M, c->stream, &e);
        CK(e);
        CK(cudaStreamSynchronize(c->stream));
    }
done:
    if (st) {
        mlmx_cuda_ld_free(c);
        return st;
    }
    *out = c;
    return MLMX_OK;
}

extern "C" void mlmx_cuda_ld_free(mlmx_cuda_ld *c)
{
    if (!c)
        return;
    ld_dev_free(c->rows, c->rows_bytes);
    ld_dev_free(c->fixed, c->fixed_bytes);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

/* Grow the per-chunk buffer to `bytes`. */
static cudaError_t reserve(mlmx_cuda_ld *c, size_t bytes)
{
    if (bytes <= c->rows_bytes)
        return cudaSuccess;
    ld_dev_free(c->rows, c->rows_bytes);
    c->rows = NULL;
    c->rows_bytes = 0;
    cudaError_t e = ld_alloc(&c->rows, bytes);
    if (e == cudaSuccess)
        c->rows_bytes = bytes;
    return e;
}

/* The chunk's device arrays in c->rows (base NULL: their size). */
static size_t carve(char *base, const mlmx_ld_model *M, size_t count, int lanes, int want_se,
                    double **work, uint64_t **dreps, mlmx_ld_out *o)
{
    const size_t nt = (size_t)M->nt, p = (size_t)M->p, d = sizeof(double);
    size_t off = 0;
    cudaError_t e = cudaSuccess;
    *work = (double *)put(base, &off, NULL, ld_work_len(M, lanes) * count * d, 0, &e);
    *dreps = (uint64_t *)put(base, &off, NULL, count * sizeof(uint64_t), 0, &e);
    o->theta = (double *)put(base, &off, NULL, count * nt * d, 0, &e);
    o->beta = (double *)put(base, &off, NULL, count * p * d, 0, &e);
    o->se = want_se ? (double *)put(base, &off, NULL, count * p * d, 0, &e) : NULL;
    o->sigma = (double *)put(base, &off, NULL, count * d, 0, &e);
    o->crit = (double *)put(base, &off, NULL, count * d, 0, &e);
    o->nev = (int *)put(base, &off, NULL, count * sizeof(int), 0, &e);
    o->conv = (signed char *)put(base, &off, NULL, count, 0, &e);
    o->sing = (signed char *)put(base, &off, NULL, count, 0, &e);
    o->status = (signed char *)put(base, &off, NULL, count, 0, &e);
    return off + LD_ALIGN;
}

extern "C" mlmx_status mlmx_cuda_ld_run(mlmx_cuda_ld *c, int mapping, uint64_t seed,
                                        const uint64_t *reps, size_t count, double *theta,
                                        double *beta, double *se, double *sigma, double *crit,
                                        int *nev, signed char *conv, signed char *sing,
                                        signed char *status, char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    if (!c || !reps || !theta || !beta || !sigma || !crit || !nev || !conv || !sing || !status) {
        snprintf(msg, msglen, "mlmx_cuda_ld_run: missing argument");
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    {
        const mlmx_ld_model *M = &c->M;
        const int lanes = ld_lanes(M, mapping);
        const size_t nt = (size_t)M->nt, p = (size_t)M->p, d = sizeof(double);
        double *work;
        uint64_t *dreps;
        mlmx_ld_out o;
        CK(reserve(c, carve(NULL, M, count, lanes, se != NULL, &work, &dreps, &o)));
        carve((char *)c->rows, M, count, lanes, se != NULL, &work, &dreps, &o);
        CK(cudaMemcpyAsync(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice,
                           c->stream));
        CK(launch_ld(M, lanes, seed, dreps, count, work, &o, c->stream));
        CK(cudaMemcpyAsync(theta, o.theta, count * nt * d, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaMemcpyAsync(beta, o.beta, count * p * d, cudaMemcpyDeviceToHost, c->stream));
        if (se)
            CK(cudaMemcpyAsync(se, o.se, count * p * d, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaMemcpyAsync(sigma, o.sigma, count * d, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaMemcpyAsync(crit, o.crit, count * d, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaMemcpyAsync(nev, o.nev, count * sizeof(int), cudaMemcpyDeviceToHost, c->stream));
        CK(cudaMemcpyAsync(conv, o.conv, count, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaMemcpyAsync(sing, o.sing, count, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaMemcpyAsync(status, o.status, count, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaStreamSynchronize(c->stream));
    }
done:
    return st;
}

extern "C" mlmx_status mlmx_cuda_ld_simulate(mlmx_cuda_ld *c, uint64_t seed, const uint64_t *reps,
                                             size_t count, double *y, char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    void *buf = NULL;
    size_t bytes = 0;
    if (!c || !reps || !y) {
        snprintf(msg, msglen, "mlmx_cuda_ld_simulate: missing argument");
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    {
        const size_t n = (size_t)c->M.n, nu = (size_t)(c->M.nu > 0 ? c->M.nu : 1);
        bytes = (nu + n) * count * sizeof(double) + count * sizeof(uint64_t);
        CK(ld_alloc(&buf, bytes));
        double *bb = (double *)buf, *dy = bb + nu * count;
        uint64_t *dreps = (uint64_t *)(dy + n * count);
        const size_t blocks = (count + LD_THREADS - 1) / LD_THREADS;
        CK(cudaMemcpyAsync(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice,
                           c->stream));
        mlmx_ld_sim_kernel<<<(unsigned)blocks, LD_THREADS, 0, c->stream>>>(c->M, seed, dreps,
                                                                         count, bb, dy);
        CK(cudaGetLastError());
        CK(cudaMemcpyAsync(y, dy, n * count * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
        CK(cudaStreamSynchronize(c->stream));
    }
done:
    ld_dev_free(buf, bytes);
    return st;
}
