// The device engine for one-term LMM replicates: one replicate per thread,
// its whole fit (simulation, statistics, BFGS over the profiled criterion)
// inside one launch, by the inline math of lmm_batch.h that the CPU engine
// runs too. Three layers: the kernel, its launcher on a stream, validated
// extern "C" entries. Device allocations go through dev_alloc/dev_free
// alone, which keep the peak (the other engines use them too, through
// batch_alloc.cuh).
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "cuda_entry.h"
#include "lmm_batch_cuda.h"
}
#include "batch_alloc.cuh"
#include "batch_upload.cuh"
#include "lmm_batch.h"

static size_t g_cur_bytes, g_peak_bytes;

static cudaError_t dev_alloc(void **p, size_t bytes)
{
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e == cudaSuccess) {
        g_cur_bytes += bytes;
        if (g_cur_bytes > g_peak_bytes)
            g_peak_bytes = g_cur_bytes;
    }
    return e;
}

static void dev_free(void *p, size_t bytes)
{
    if (!p)
        return;
    cudaFree(p);
    g_cur_bytes -= bytes < g_cur_bytes ? bytes : g_cur_bytes;
}

cudaError_t mlmx_cuda_batch_alloc(void **p, size_t bytes) { return dev_alloc(p, bytes); }

void mlmx_cuda_batch_free(void *p, size_t bytes) { dev_free(p, bytes); }

struct mlmx_cuda_lb {
    mlmx_lb_model M; /* device pointers */
    void *fixed;     /* one allocation holding the structure */
    size_t fixed_bytes;
    cudaStream_t stream;
    size_t resident; /* threads of the kernel the device holds at once */
    /* per-chunk buffers, grown on demand */
    size_t cap;
    void *rows;
    size_t rows_bytes;
};

// A persistent kernel: `slots` threads (as many as the device holds at
// once) each take replicates from a queue (atomicAdd on *next) and run
// their optimizer loops side by side, one criterion evaluation per pass. A
// finished slot takes the next replicate instead of idling until its
// warp's slowest replicate is done: with one replicate per thread and a
// tail of slow fits, a warp that waited would do useful work only about a
// third of the time (bench_lockstep: 0.34 for sleepstudy). Row r of the
// output is replicate reps[r]'s, whichever thread ran it.
__global__ void mlmx_lb_kernel(mlmx_lb_model M, uint64_t seed, const uint64_t *__restrict__ reps,
                               size_t count, double *__restrict__ lev, size_t slots,
                               mlmx_lb_out o, unsigned long long *next)
{
    const size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= slots)
        return;
    const size_t nz = (size_t)M.nblk * (size_t)M.q;
    double *b = lev + t, *z = lev + nz * slots + t;
    double xty[MLMX_LB_PMAX], yty = 0.0;
    mlmx_lb_scratch w;
    mlmx_qn_state st;
    unsigned long long r = atomicAdd(next, 1ULL);
    if (r < count) {
        mlmx_lb_simulate(&M, seed, reps[r], b, z, slots, xty, &yty, 0);
        mlmx_lb_fit_begin(&M, &st, &w);
    }
    while (r < count) {
        if (mlmx_lb_fit_step(&M, &st, z, slots, xty, yty, &w))
            continue;
        mlmx_lb_fit_finish(&M, &st, z, slots, xty, yty, &w, &o, (size_t)r);
        r = atomicAdd(next, 1ULL);
        if (r < count) {
            mlmx_lb_simulate(&M, seed, reps[r], b, z, slots, xty, &yty, 0);
            mlmx_lb_fit_begin(&M, &st, &w);
        }
    }
}

#define LB_THREADS 128

static cudaError_t launch_lb(const mlmx_lb_model *M, uint64_t seed, const uint64_t *reps,
                             size_t count, double *lev, size_t slots, const mlmx_lb_out *o,
                             unsigned long long *next, cudaStream_t s)
{
    cudaError_t e = cudaMemsetAsync(next, 0, sizeof *next, s);
    if (e != cudaSuccess)
        return e;
    const size_t blocks = (slots + LB_THREADS - 1) / LB_THREADS;
    mlmx_lb_kernel<<<(unsigned)blocks, LB_THREADS, 0, s>>>(*M, seed, reps, count, lev, slots, *o,
                                                            next);
    return cudaGetLastError();
}

/* Responses only: replicate i's y into y + i*n (model order). */
__global__ void mlmx_lb_sim_kernel(mlmx_lb_model M, uint64_t seed, const uint64_t *__restrict__ reps,
                                   size_t count, double *__restrict__ lev, double *__restrict__ y)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count)
        return;
    const size_t nz = (size_t)M.nblk * (size_t)M.q;
    double xty[MLMX_LB_PMAX], yty;
    mlmx_lb_simulate(&M, seed, reps[i], lev + i, lev + nz * count + i, count, xty, &yty,
                     y + i * (size_t)M.n);
}


static size_t row_bytes(const mlmx_lb_model *M)
{
    return sizeof(uint64_t) + (size_t)(M->nt + 2 * M->p + 2) * sizeof(double) + sizeof(int) +
           3;
}

extern "C" void mlmx_cuda_lb_bytes(const mlmx_lb_model *M, size_t *fixed, size_t *per_rep)
{
    const size_t n = (size_t)M->n, q = (size_t)M->q, p = (size_t)M->p, nb = (size_t)M->nblk,
                 nt = (size_t)M->nt;
    *fixed = n * sizeof(int) + (n * p + n * q + nb * q * q + nb * q * p + p * p + 2 * nt + p +
                                nt + 3 * nt + nt * nt) *
                                   sizeof(double) +
             nt + 4096;
    *per_rep = 2 * nb * q * sizeof(double) + row_bytes(M);
}

/* Copy n doubles (or ints, bytes) to the next aligned slot of the fixed
 * allocation, returning the device address. */
static void *put(char *base, size_t *off, const void *src, size_t bytes, cudaStream_t s,
                 cudaError_t *e)
{
    *off = (*off + 15) / 16 * 16;
    void *dst = base + *off;
    *off += bytes;
    if (src && *e == cudaSuccess)
        *e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s);
    return dst;
}

static cudaError_t upload(mlmx_cuda_lb *c, const mlmx_lb_model *H)
{
    const size_t n = (size_t)H->n, q = (size_t)H->q, p = (size_t)H->p, nb = (size_t)H->nblk,
                 nt = (size_t)H->nt, d = sizeof(double);
    cudaError_t e = cudaSuccess;
    char *base = (char *)c->fixed;
    size_t off = 0;
    mlmx_lb_model *M = &c->M;
    *M = *H;
    M->code = (const int *)put(base, &off, H->code, n * sizeof(int), c->stream, &e);
    M->X = (const double *)put(base, &off, H->X, n * p * d, c->stream, &e);
    M->Z = (const double *)put(base, &off, H->Z, n * q * d, c->stream, &e);
    M->ZtZ = (const double *)put(base, &off, H->ZtZ, nb * q * q * d, c->stream, &e);
    M->ZtX = (const double *)put(base, &off, H->ZtX, nb * q * p * d, c->stream, &e);
    M->XtX = (const double *)put(base, &off, H->XtX, p * p * d, c->stream, &e);
    M->theta = (const double *)put(base, &off, H->theta, nt * d, c->stream, &e);
    M->beta = (const double *)put(base, &off, H->beta, p * d, c->stream, &e);
    M->x0 = (const double *)put(base, &off, H->x0, nt * d, c->stream, &e);
    M->xlo = (const double *)put(base, &off, H->xlo, nt * d, c->stream, &e);
    M->hinv0 = H->hinv0 ? (const double *)put(base, &off, H->hinv0, nt * nt * d, c->stream, &e)
                        : 0;
    M->logp = (const unsigned char *)put(base, &off, H->logp, nt, c->stream, &e);
    return e;
}

extern "C" mlmx_status mlmx_cuda_lb_create(const mlmx_lb_model *M, mlmx_cuda_lb **out, char *msg,
                                           size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int ndev = 0;
    size_t per_rep;
    *out = NULL;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        cudaGetLastError();
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    mlmx_cuda_lb *c = (mlmx_cuda_lb *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(msg, msglen, "out of host memory");
        return MLMX_ERR_NOMEM;
    }
    mlmx_cuda_lb_bytes(M, &c->fixed_bytes, &per_rep);
    MLMX_CUDA_CK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    MLMX_CUDA_CK(dev_alloc(&c->fixed, c->fixed_bytes));
    MLMX_CUDA_CK(upload(c, M));
    MLMX_CUDA_CK(cudaStreamSynchronize(c->stream));
    {
        int dev = 0, sms = 0, per_sm = 0;
        MLMX_CUDA_CK(cudaGetDevice(&dev));
        MLMX_CUDA_CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
        MLMX_CUDA_CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mlmx_lb_kernel, LB_THREADS, 0));
        c->resident = (size_t)(sms > 0 ? sms : 1) * (size_t)(per_sm > 0 ? per_sm : 1) * LB_THREADS;
    }
done:
    if (st) {
        mlmx_cuda_lb_free(c);
        return st;
    }
    *out = c;
    return MLMX_OK;
}

extern "C" void mlmx_cuda_lb_free(mlmx_cuda_lb *c)
{
    if (!c)
        return;
    dev_free(c->rows, c->rows_bytes);
    dev_free(c->fixed, c->fixed_bytes);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

/* Grow the per-chunk buffers to hold count replicates. */
static cudaError_t reserve(mlmx_cuda_lb *c, size_t count)
{
    if (count <= c->cap)
        return cudaSuccess;
    size_t fixed, per;
    mlmx_cuda_lb_bytes(&c->M, &fixed, &per);
    dev_free(c->rows, c->rows_bytes);
    c->rows = NULL;
    c->cap = 0;
    c->rows_bytes = count * (per + 64);
    cudaError_t e = dev_alloc(&c->rows, c->rows_bytes);
    if (e == cudaSuccess)
        c->cap = count;
    else
        c->rows_bytes = 0;
    return e;
}

extern "C" mlmx_status mlmx_cuda_lb_run(mlmx_cuda_lb *c, uint64_t seed, const uint64_t *reps,
                                        size_t count, double *theta, double *beta, double *se,
                                        double *sigma, double *crit, int *nev, signed char *conv,
                                        signed char *sing, signed char *status, char *msg,
                                        size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    if (!c || !reps || !theta || !beta || !sigma || !crit || !nev || !conv || !sing || !status) {
        snprintf(msg, msglen, "mlmx_cuda_lb_run: missing argument");
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    const size_t nt = (size_t)c->M.nt, p = (size_t)c->M.p, d = sizeof(double);
    const size_t nz = (size_t)c->M.nblk * (size_t)c->M.q;
    MLMX_CUDA_CK(reserve(c, count));
    {
        char *base = (char *)c->rows;
        size_t off = 0;
        cudaError_t e = cudaSuccess;
        const size_t slots = count < c->resident ? count : c->resident;
        double *lev = (double *)put(base, &off, NULL, 2 * nz * slots * d, c->stream, &e);
        unsigned long long *next =
            (unsigned long long *)put(base, &off, NULL, sizeof(unsigned long long), c->stream, &e);
        uint64_t *dreps = (uint64_t *)put(base, &off, reps, count * sizeof(uint64_t), c->stream, &e);
        mlmx_lb_out o;
        o.theta = (double *)put(base, &off, NULL, count * nt * d, c->stream, &e);
        o.beta = (double *)put(base, &off, NULL, count * p * d, c->stream, &e);
        o.se = se ? (double *)put(base, &off, NULL, count * p * d, c->stream, &e) : NULL;
        o.sigma = (double *)put(base, &off, NULL, count * d, c->stream, &e);
        o.crit = (double *)put(base, &off, NULL, count * d, c->stream, &e);
        o.nev = (int *)put(base, &off, NULL, count * sizeof(int), c->stream, &e);
        o.conv = (signed char *)put(base, &off, NULL, count, c->stream, &e);
        o.sing = (signed char *)put(base, &off, NULL, count, c->stream, &e);
        o.status = (signed char *)put(base, &off, NULL, count, c->stream, &e);
        MLMX_CUDA_CK(e);
        MLMX_CUDA_CK(launch_lb(&c->M, seed, dreps, count, lev, slots, &o, next, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(theta, o.theta, count * nt * d, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(beta, o.beta, count * p * d, cudaMemcpyDeviceToHost, c->stream));
        if (se)
            MLMX_CUDA_CK(cudaMemcpyAsync(se, o.se, count * p * d, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(sigma, o.sigma, count * d, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(crit, o.crit, count * d, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(nev, o.nev, count * sizeof(int), cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(conv, o.conv, count, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(sing, o.sing, count, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaMemcpyAsync(status, o.status, count, cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaStreamSynchronize(c->stream));
    }
done:
    return st;
}

extern "C" mlmx_status mlmx_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, char *msg,
                                          size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        cudaGetLastError();
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    MLMX_CUDA_CK(cudaMemGetInfo(free_bytes, total_bytes));
done:
    return st;
}

extern "C" mlmx_status mlmx_cuda_describe(char *buf, size_t len)
{
    mlmx_cuda_bind();
    int ndev = 0, drv = 0, rt = 0, dev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    if (drv == 0) {
        cudaGetLastError();
        snprintf(buf, len, "no CUDA driver is installed (no GPU on this machine?)");
        return MLMX_ERR_UNSUPPORTED;
    }
    if (e == cudaErrorInsufficientDriver || drv < rt) {
        cudaGetLastError();
        snprintf(buf, len, "the CUDA driver (%d.%d) is older than this build's runtime (%d.%d)",
                 drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
        return MLMX_ERR_UNSUPPORTED;
    }
    if (e != cudaSuccess || ndev == 0) {
        cudaGetLastError();
        snprintf(buf, len, "no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e)
                                                                  : "none found");
        return MLMX_ERR_UNSUPPORTED;
    }
    cudaDeviceProp pr;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&pr, dev) != cudaSuccess) {
        cudaGetLastError();
        snprintf(buf, len, "cannot query CUDA device properties");
        return MLMX_ERR_UNSUPPORTED;
    }
    int k = snprintf(buf, len, "%s (sm_%d%d, %.1f GiB), driver %d.%d, runtime %d.%d", pr.name,
                     pr.major, pr.minor, (double)pr.totalGlobalMem / 1073741824.0, drv / 1000,
                     drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    if (ndev > 1 && k > 0 && (size_t)k < len)
        snprintf(buf + k, len - (size_t)k, ", device %d of %d", dev, ndev);
    return MLMX_OK;
}

extern "C" size_t mlmx_cuda_peak_bytes(void) { return g_peak_bytes; }

extern "C" mlmx_status mlmx_cuda_lb_simulate(mlmx_cuda_lb *c, uint64_t seed, const uint64_t *reps,
                                             size_t count, double *y, char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    if (!c || !reps || !y) {
        snprintf(msg, msglen, "mlmx_cuda_lb_simulate: missing argument");
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    const size_t nz = (size_t)c->M.nblk * (size_t)c->M.q, n = (size_t)c->M.n;
    const size_t bytes = (2 * nz + n) * count * sizeof(double) + count * sizeof(uint64_t);
    void *buf = NULL;
    MLMX_CUDA_CK(dev_alloc(&buf, bytes));
    {
        double *lev = (double *)buf, *dy = lev + 2 * nz * count;
        uint64_t *dreps = (uint64_t *)(dy + n * count);
        const int threads = 128;
        const size_t blocks = (count + threads - 1) / threads;
        MLMX_CUDA_CK(cudaMemcpyAsync(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice,
                           c->stream));
        mlmx_lb_sim_kernel<<<(unsigned)blocks, threads, 0, c->stream>>>(c->M, seed, dreps, count,
                                                                       lev, dy);
        MLMX_CUDA_CK(cudaGetLastError());
        MLMX_CUDA_CK(cudaMemcpyAsync(y, dy, n * count * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
        MLMX_CUDA_CK(cudaStreamSynchronize(c->stream));
    }
done:
    dev_free(buf, bytes);
    return st;
}
