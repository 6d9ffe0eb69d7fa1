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
#include "lmm_batch_cuda.h"
}
#include "batch_alloc.cuh"
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
    /* per-chunk buffers, grown on demand */
    size_t cap;
    void *rows;
    size_t rows_bytes;
};

__global__ void mlmx_lb_kernel(mlmx_lb_model M, uint64_t seed, const uint64_t *__restrict__ reps,
                               size_t count, double *__restrict__ lev, mlmx_lb_out o)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count)
        return;
    const size_t nz = (size_t)M.nblk * (size_t)M.q;
    double *b = lev + i, *z = lev + nz * count + i;
    double xty[MLMX_LB_PMAX], yty;
    mlmx_lb_scratch w;
    mlmx_lb_simulate(&M, seed, reps[i], b, z, count, xty, &yty, 0);
    mlmx_lb_fit(&M, z, count, xty, yty, &w, &o, i);
}

static cudaError_t launch_lb(const mlmx_lb_model *M, uint64_t seed, const uint64_t *reps,
                             size_t count, double *lev, const mlmx_lb_out *o, cudaStream_t s)
{
    const int threads = 128;
    size_t blocks = (count + threads - 1) / threads;
    mlmx_lb_kernel<<<(unsigned)blocks, threads, 0, s>>>(*M, seed, reps, count, lev, *o);
    return cudaGetLastError();
}

#define CK(call)                                                                        \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            snprintf(msg, msglen, "%s failed: %s", #call, cudaGetErrorString(e_));     \
            st = e_ == cudaErrorMemoryAllocation ? MLMX_ERR_NOMEM : MLMX_ERR_NUMERIC;  \
            goto done;                                                                  \
        }                                                                               \
    } while (0)

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
    CK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CK(dev_alloc(&c->fixed, c->fixed_bytes));
    CK(upload(c, M));
    CK(cudaStreamSynchronize(c->stream));
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
    mlmx_status st = MLMX_OK;
    if (!c || !reps || !theta || !beta || !sigma || !crit || !nev || !conv || !sing || !status) {
        snprintf(msg, msglen, "mlmx_cuda_lb_run: missing argument");
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    const size_t nt = (size_t)c->M.nt, p = (size_t)c->M.p, d = sizeof(double);
    const size_t nz = (size_t)c->M.nblk * (size_t)c->M.q;
    CK(reserve(c, count));
    {
        char *base = (char *)c->rows;
        size_t off = 0;
        cudaError_t e = cudaSuccess;
        double *lev = (double *)put(base, &off, NULL, 2 * nz * count * d, c->stream, &e);
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
        CK(e);
        CK(launch_lb(&c->M, seed, dreps, count, lev, &o, c->stream));
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

extern "C" mlmx_status mlmx_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, char *msg,
                                          size_t msglen)
{
    mlmx_status st = MLMX_OK;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        cudaGetLastError();
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    CK(cudaMemGetInfo(free_bytes, total_bytes));
done:
    return st;
}

extern "C" mlmx_status mlmx_cuda_describe(char *buf, size_t len)
{
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
    snprintf(buf, len, "%s (sm_%d%d, %.1f GiB), driver %d.%d, runtime %d.%d", pr.name, pr.major,
             pr.minor, (double)pr.totalGlobalMem / 1073741824.0, drv / 1000, drv % 1000 / 10,
             rt / 1000, rt % 1000 / 10);
    return MLMX_OK;
}

extern "C" size_t mlmx_cuda_peak_bytes(void) { return g_peak_bytes; }
