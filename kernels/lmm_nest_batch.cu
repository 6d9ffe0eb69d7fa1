// Nested LMM replicate fits on the GPU, all the math from
// kernels/lmm_nest_batch.h (the code the CPU engine runs). Two mappings,
// chosen by size (mlmx_nb_engine_auto_mapping):
//   - one replicate per warp when the top term has >= 32 levels (classroom:
//     107 schools): the top clusters are spread over the 32 lanes, for the
//     simulation (each lane seeks its own draws) and for every criterion
//     evaluation; the criterion, its gradient and the Schur update of
//     [X y]^T [X y] are summed by xor shuffles; the BFGS state (qn.h) sits
//     in shared memory and lane 0 steps it;
//   - one replicate per thread otherwise (pastes: 10 batches, sim_nested4:
//     8 districts): a warp could not fill its lanes, so each thread runs the
//     CPU rows' code on its own replicate, its level arrays strided across
//     replicates so that a warp's loads coalesce.
// The per-thread scratch (mlmx_nb_scratch, ~29 KB) is local memory: only the
// entries the model's dimensions touch are used (for classroom, a few
// hundred bytes), but the driver reserves the full size for every resident
// thread (mlmx_cuda_nb_bytes counts it). Three layers: kernels, launchers on
// a stream, validated extern "C" entries. Device memory through
// batch_alloc.cuh.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cuda_entry.h"
#include "lmm_nest_batch_cuda.h"
}
#include "batch_alloc.cuh"
#include "batch_upload.cuh"
#include "lmm_nest_batch.h"

#define NB_WARPS 4          /* replicates (warps) per block, warp mapping */
#define NB_THREADS 64       /* threads per block, thread mapping */
#define NB_FULL 0xffffffffu
/* resident threads of an H200 (132 SMs x 2048): the local memory the
 * driver reserves for the scratch is counted for this many */
#define NB_RESIDENT_THREADS ((size_t)132 * 2048)

struct mlmx_cuda_nb {
    mlmx_nb_model M; /* device pointers */
    void *fixed;     /* one allocation holding the structure */
    size_t fixed_bytes;
    cudaStream_t stream;
    size_t cap;      /* replicates the row buffers hold */
    void *rows;
    size_t rows_bytes;
};

/* ------------------------------------------------------------ kernels */

static __host__ __device__ int nb_qs_doubles(void)
{
    return (int)((sizeof(mlmx_qn_state) + sizeof(double) - 1) / sizeof(double));
}

/* Shared doubles one warp uses: the optimizer state, its store (8 nt +
 * nt^2) and its active flags. */
static __host__ __device__ int nb_warp_doubles(int nt)
{
    return nb_qs_doubles() + 8 * nt + nt * nt + (nt + 1) / 2;
}

static __device__ double nb_warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(NB_FULL, v, o);
    return v;
}

/* The replicate's response by top clusters over the lanes (each lane
 * seeks its own draws); xty and *yty summed on every lane. A redrawn
 * uniform anywhere (probability 2^-53 a draw) sends the whole simulation
 * to lane 0's sequential stream, so the draws stay the CPU's. */
static __device__ void nb_warp_simulate(const mlmx_nb_model *M, uint64_t seed, uint64_t rep,
                                        double *b, double *zy, double *xty, double *yty, int lane)
{
    double xp[MLMX_NB_PMAX], yp = 0.0;
    int ok = 1;
    for (int j = 0; j < M->p; j++)
        xp[j] = 0.0;
    for (int h = lane; h < M->ntop; h += 32)
        ok &= mlmx_nb_simulate_top(M, seed, rep, h, b, zy, 1, xp, &yp);
    for (int j = 0; j < M->p; j++)
        xty[j] = nb_warp_sum(xp[j]);
    *yty = nb_warp_sum(yp);
    if (__any_sync(NB_FULL, !ok)) {
        __syncwarp();
        if (lane == 0)
            mlmx_nb_simulate(M, seed, rep, b, zy, 1, xty, yty, 0);
        __syncwarp();
        for (int j = 0; j < M->p; j++)
            xty[j] = __shfl_sync(NB_FULL, xty[j], 0);
        *yty = __shfl_sync(NB_FULL, *yty, 0);
    }
}

/* The criterion at the optimizer's x with nd derivatives, the top
 * clusters over the lanes, summed by the warp. Valid on lane 0 (which
 * also holds the gradient in w->g and theta in w->th); 0 elsewhere. */
static __device__ double nb_warp_eval(const mlmx_nb_model *M, const double *x, int nd,
                                      const double *zy, const double *xty, double yty,
                                      mlmx_nb_scratch *w, int lane)
{
    mlmx_nb_theta(M, x, w->th);
    mlmx_nb_part(M, w->th, nd, zy, 1, lane, 32, w);
    const int len = mlmx_nb_acc_len(M, nd);
    for (int e = 0; e < len; e++)
        w->acc[e] = nb_warp_sum(w->acc[e]);
    return lane == 0 ? mlmx_nb_finish(M, nd, xty, yty, w) : 0.0;
}

__global__ void __launch_bounds__(32 * NB_WARPS)
    mlmx_nb_warp_kernel(mlmx_nb_model M, uint64_t seed, const uint64_t *__restrict__ reps,
                        size_t count, double *buf, mlmx_nb_out o)
{
    extern __shared__ double nb_smem[];
    const int lane = threadIdx.x & 31, wp = threadIdx.x >> 5, nt = M.nt;
    const size_t r = (size_t)blockIdx.x * NB_WARPS + (size_t)wp;
    if (r >= count)
        return; /* the whole warp: r is the same on every lane */
    double *base = nb_smem + (size_t)wp * (size_t)nb_warp_doubles(nt);
    mlmx_qn_state *q = (mlmx_qn_state *)base;
    double *store = base + nb_qs_doubles();
    int *active = (int *)(store + 8 * nt + nt * nt);
    double *b = buf + r * 2 * (size_t)M.nu, *zy = b + M.nu;
    mlmx_nb_scratch w;
    double xty[MLMX_NB_PMAX], yty;
    nb_warp_simulate(&M, seed, reps[r], b, zy, xty, &yty, lane);
    if (lane == 0) {
        mlmx_qn_bind(q, nt, store, active);
        mlmx_qn_begin(q, M.x0, M.xlo, 0, &M.cfg, M.hinv0);
    }
    __syncwarp();
    while (mlmx_qn_want(q)) {
        const double f = nb_warp_eval(&M, mlmx_qn_point(q), nt, zy, xty, yty, &w, lane);
        __syncwarp();
        if (lane == 0) {
            double *g = mlmx_qn_grad(q);
            if (isfinite(f))
                for (int t = 0; t < nt; t++)
                    g[t] = w.g[t] * (M.logp[t] ? w.th[t] : 1.0);
            mlmx_qn_told(q, f);
        }
        __syncwarp();
    }
    double f = nb_warp_eval(&M, q->x, 0, zy, xty, yty, &w, lane);
    if (lane == 0)
        mlmx_nb_write_row(&M, q->failed ? (double)NAN : f, q->n_evals, q->converged, &w, &o, r);
}

__global__ void __launch_bounds__(NB_THREADS)
    mlmx_nb_thread_kernel(mlmx_nb_model M, uint64_t seed, const uint64_t *__restrict__ reps,
                          size_t count, double *buf, mlmx_nb_out o)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count)
        return;
    double *b = buf + i, *zy = buf + (size_t)M.nu * count + i;
    mlmx_nb_scratch w;
    double xty[MLMX_NB_PMAX], yty;
    mlmx_nb_simulate(&M, seed, reps[i], b, zy, count, xty, &yty, 0);
    mlmx_nb_fit(&M, zy, count, xty, yty, &w, &o, i);
}

/* ------------------------------------------------------------ launchers */

static cudaError_t launch_nb(const mlmx_nb_model *M, int mapping, uint64_t seed,
                             const uint64_t *dreps, size_t count, double *buf,
                             const mlmx_nb_out *o, cudaStream_t s)
{
    if (mapping == MLMX_NB_MAP_WARP) {
        const size_t blocks = (count + NB_WARPS - 1) / NB_WARPS;
        const size_t shmem = (size_t)NB_WARPS * (size_t)nb_warp_doubles(M->nt) * sizeof(double);
        mlmx_nb_warp_kernel<<<(unsigned)blocks, 32 * NB_WARPS, shmem, s>>>(*M, seed, dreps,
                                                                          count, buf, *o);
    } else {
        const size_t blocks = (count + NB_THREADS - 1) / NB_THREADS;
        mlmx_nb_thread_kernel<<<(unsigned)blocks, NB_THREADS, 0, s>>>(*M, seed, dreps, count,
                                                                      buf, *o);
    }
    return cudaGetLastError();
}

/* ------------------------------------------------------------ entries */


/* The structure's arrays and their lengths in bytes, in upload order. */
typedef struct nb_part {
    const void *src;
    size_t bytes;
    const void **dst;
} nb_part;

static int nb_parts(const mlmx_nb_model *H, mlmx_nb_model *D, nb_part *pt)
{
    const int K = H->K, last = K - 1;
    const size_t n = (size_t)H->n, p = (size_t)H->p, nt = (size_t)H->nt, d = sizeof(double);
    const size_t ncp = (size_t)H->coff[last] + (size_t)H->nlev[last] + 1;
    const size_t nlv = (size_t)H->noff[last] + (size_t)H->nlev[last];
    const size_t nz = H->zoff[last] + n * (size_t)H->q[last];
    const size_t ndat = H->doff[last] + (size_t)H->nlev[last] * (size_t)H->dstr[last];
    int k = 0;
    pt[k++] = {H->cptr, ncp * sizeof(int), (const void **)&D->cptr};
    pt[k++] = {H->code2pos, nlv * sizeof(int), (const void **)&D->code2pos};
    pt[k++] = {H->pos2code, nlv * sizeof(int), (const void **)&D->pos2code};
    pt[k++] = {H->opos, n * (size_t)K * sizeof(int), (const void **)&D->opos};
    pt[k++] = {H->tobs_ptr, ((size_t)H->ntop + 1) * sizeof(int), (const void **)&D->tobs_ptr};
    pt[k++] = {H->tobs, n * sizeof(int), (const void **)&D->tobs};
    pt[k++] = {H->X, n * p * d, (const void **)&D->X};
    pt[k++] = {H->Z, nz * d, (const void **)&D->Z};
    pt[k++] = {H->dat, ndat * d, (const void **)&D->dat};
    pt[k++] = {H->XtX, p * p * d, (const void **)&D->XtX};
    pt[k++] = {H->theta, nt * d, (const void **)&D->theta};
    pt[k++] = {H->beta, p * d, (const void **)&D->beta};
    pt[k++] = {H->x0, nt * d, (const void **)&D->x0};
    pt[k++] = {H->xlo, nt * d, (const void **)&D->xlo};
    pt[k++] = {H->hinv0, H->hinv0 ? nt * nt * d : 0, (const void **)&D->hinv0};
    pt[k++] = {H->logp, nt, (const void **)&D->logp};
    return k;
}

static size_t structure_bytes(const mlmx_nb_model *M)
{
    mlmx_nb_model D;
    nb_part pt[16];
    const int np = nb_parts(M, &D, pt);
    size_t total = 0;
    for (int k = 0; k < np; k++)
        total += (pt[k].bytes + 15) / 16 * 16;
    return total;
}

static size_t row_bytes(const mlmx_nb_model *M)
{
    return sizeof(uint64_t) + (size_t)(M->nt + 2 * M->p + 2) * sizeof(double) + sizeof(int) + 3;
}

extern "C" void mlmx_cuda_nb_bytes(const mlmx_nb_model *M, size_t *fixed, size_t *per_rep)
{
    *fixed = structure_bytes(M) + NB_RESIDENT_THREADS * sizeof(mlmx_nb_scratch);
    *per_rep = 2 * (size_t)M->nu * sizeof(double) + row_bytes(M) + 64;
}

/* Copy the structure into c->fixed (allocated to structure_bytes). */
static cudaError_t upload(mlmx_cuda_nb *c, const mlmx_nb_model *H)
{
    nb_part pt[16];
    c->M = *H;
    const int np = nb_parts(H, &c->M, pt);
    char *base = (char *)c->fixed;
    size_t off = 0;
    for (int k = 0; k < np; k++) {
        *pt[k].dst = pt[k].src ? (const void *)(base + off) : NULL;
        if (pt[k].src && pt[k].bytes) {
            cudaError_t e = cudaMemcpyAsync(base + off, pt[k].src, pt[k].bytes,
                                            cudaMemcpyHostToDevice, c->stream);
            if (e != cudaSuccess)
                return e;
        }
        off += (pt[k].bytes + 15) / 16 * 16;
    }
    return cudaSuccess;
}

extern "C" mlmx_status mlmx_cuda_nb_create(const mlmx_nb_model *M, mlmx_cuda_nb **out, char *msg,
                                           size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int ndev = 0;
    *out = NULL;
    if (!M || M->K < 2 || M->K > MLMX_NB_KMAX || M->p > MLMX_NB_PMAX || M->nt > MLMX_NB_NTMAX) {
        snprintf(msg, msglen, "mlmx_cuda_nb_create: bad structure");
        return MLMX_ERR_ARG;
    }
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        cudaGetLastError();
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    mlmx_cuda_nb *c = (mlmx_cuda_nb *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(msg, msglen, "out of host memory");
        return MLMX_ERR_NOMEM;
    }
    c->fixed_bytes = structure_bytes(M);
    MLMX_CUDA_CK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    MLMX_CUDA_CK(mlmx_cuda_batch_alloc(&c->fixed, c->fixed_bytes));
    MLMX_CUDA_CK(upload(c, M));
    MLMX_CUDA_CK(cudaStreamSynchronize(c->stream));
done:
    if (st) {
        mlmx_cuda_nb_free(c);
        return st;
    }
    *out = c;
    return MLMX_OK;
}

extern "C" void mlmx_cuda_nb_free(mlmx_cuda_nb *c)
{
    if (!c)
        return;
    mlmx_cuda_batch_free(c->rows, c->rows_bytes);
    mlmx_cuda_batch_free(c->fixed, c->fixed_bytes);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

/* Grow the row buffers to hold count replicates. */
static cudaError_t reserve(mlmx_cuda_nb *c, size_t count)
{
    if (count <= c->cap)
        return cudaSuccess;
    size_t fixed, per;
    mlmx_cuda_nb_bytes(&c->M, &fixed, &per);
    mlmx_cuda_batch_free(c->rows, c->rows_bytes);
    c->rows = NULL;
    c->cap = 0;
    c->rows_bytes = count * per + 16 * 16;
    cudaError_t e = mlmx_cuda_batch_alloc(&c->rows, c->rows_bytes);
    if (e == cudaSuccess)
        c->cap = count;
    else
        c->rows_bytes = 0;
    return e;
}

/* The next 16-byte aligned slot of `bytes` in the row buffer. */
static void *slot(char *base, size_t *off, size_t bytes)
{
    *off = (*off + 15) / 16 * 16;
    void *p = base + *off;
    *off += bytes;
    return p;
}

extern "C" mlmx_status mlmx_cuda_nb_run(mlmx_cuda_nb *c, int mapping, uint64_t seed,
                                        const uint64_t *reps, size_t count, const mlmx_nb_out *o,
                                        char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    if (!c || !reps || !o || !o->theta || !o->beta || !o->sigma || !o->crit || !o->nev ||
        !o->conv || !o->sing || !o->status || (mapping != MLMX_NB_MAP_THREAD && mapping != MLMX_NB_MAP_WARP)) {
        snprintf(msg, msglen, "mlmx_cuda_nb_run: missing argument or bad mapping");
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    const size_t nt = (size_t)c->M.nt, p = (size_t)c->M.p, d = sizeof(double);
    if (count > SIZE_MAX / 2 / (row_bytes(&c->M) + 2 * (size_t)c->M.nu * d + 64)) {
        snprintf(msg, msglen, "mlmx_cuda_nb_run: %zu replicates overflow the buffer size", count);
        return MLMX_ERR_ARG;
    }
    MLMX_CUDA_CK(reserve(c, count));
    {
        char *base = (char *)c->rows;
        size_t off = 0;
        double *buf = (double *)slot(base, &off, 2 * (size_t)c->M.nu * count * d);
        uint64_t *dreps = (uint64_t *)slot(base, &off, count * sizeof(uint64_t));
        mlmx_nb_out od;
        od.theta = (double *)slot(base, &off, count * nt * d);
        od.beta = (double *)slot(base, &off, count * p * d);
        od.se = o->se ? (double *)slot(base, &off, count * p * d) : NULL;
        od.sigma = (double *)slot(base, &off, count * d);
        od.crit = (double *)slot(base, &off, count * d);
        od.nev = (int *)slot(base, &off, count * sizeof(int));
        od.conv = (signed char *)slot(base, &off, count);
        od.sing = (signed char *)slot(base, &off, count);
        od.status = (signed char *)slot(base, &off, count);
        MLMX_CUDA_CK(cudaMemcpyAsync(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice,
                           c->stream));
        MLMX_CUDA_CK(launch_nb(&c->M, mapping, seed, dreps, count, buf, &od, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(o->theta, od.theta, count * nt * d, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(o->beta, od.beta, count * p * d, cudaMemcpyDeviceToHost, c->stream));
        if (o->se)
            MLMX_CUDA_CK(cudaMemcpyAsync(o->se, od.se, count * p * d, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(o->sigma, od.sigma, count * d, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(o->crit, od.crit, count * d, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(o->nev, od.nev, count * sizeof(int), cudaMemcpyDeviceToHost,
                           c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(o->conv, od.conv, count, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(o->sing, od.sing, count, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(o->status, od.status, count, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaStreamSynchronize(c->stream));
    }
done:
    return st;
}
