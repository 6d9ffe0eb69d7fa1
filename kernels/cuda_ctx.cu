// The CUDA backend's context: created lazily under a lock, every device
// allocation of the backend made (and freed) here, and the per-thread
// error message. Calls are serialised because the buffers are shared.
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_ctx.cuh"
extern "C" {
#include "backend_cuda.h"
}

static mlmx_cuda_ctx g_ctx;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_atexit_registered;
static thread_local char tl_msg[512];

extern "C" const char *mlmx_cuda_last_error(void) { return tl_msg; }

mlmx_status mlmx_cuda_fail(mlmx_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    va_end(ap);
    return code;
}

mlmx_status mlmx_cuda_fail_rt(const char *call, cudaError_t e)
{
    return mlmx_cuda_fail(e == cudaErrorMemoryAllocation ? MLMX_ERR_NOMEM : MLMX_ERR_NUMERIC,
                          "%s failed: %s (%s)", call, cudaGetErrorString(e), cudaGetErrorName(e));
}

mlmx_status mlmx_cuda_fail_blas(const char *call, cublasStatus_t s)
{
    return mlmx_cuda_fail(s == CUBLAS_STATUS_ALLOC_FAILED ? MLMX_ERR_NOMEM : MLMX_ERR_NUMERIC,
                          "%s failed: %s", call, cublasGetStatusString(s));
}

static const char *solver_status_name(cusolverStatus_t s)
{
    switch (s) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "unknown cuSOLVER status";
    }
}

mlmx_status mlmx_cuda_fail_solver(const char *call, cusolverStatus_t s)
{
    return mlmx_cuda_fail(s == CUSOLVER_STATUS_ALLOC_FAILED ? MLMX_ERR_NOMEM : MLMX_ERR_NUMERIC,
                          "%s failed: %s (%d)", call, solver_status_name(s), (int)s);
}

extern "C" int mlmx_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the "no driver" state so later calls see their own */
        return 0;
    }
    return n;
}

static int g_selected = -1; /* the process's chosen device, -1: the runtime's default */

extern "C" mlmx_status mlmx_cuda_select_device(int index, int *chosen)
{
    const int n = mlmx_cuda_device_count();
    if (n <= 0 || index < 0)
        return MLMX_ERR_UNSUPPORTED;
    const int d = index % n;
    if (cudaSetDevice(d) != cudaSuccess) {
        cudaGetLastError();
        return MLMX_ERR_UNSUPPORTED;
    }
    g_selected = d;
    if (chosen)
        *chosen = d;
    return MLMX_OK;
}

extern "C" void mlmx_cuda_bind(void)
{
    if (g_selected >= 0 && cudaSetDevice(g_selected) != cudaSuccess)
        cudaGetLastError(); /* the entry's own first call reports the failure */
}

extern "C" void mlmx_cuda_versions(int *driver, int *runtime)
{
    int d = 0, r = 0;
    if (cudaDriverGetVersion(&d) != cudaSuccess)
        d = 0;
    if (cudaRuntimeGetVersion(&r) != cudaSuccess)
        r = 0;
    cudaGetLastError();
    if (driver)
        *driver = d;
    if (runtime)
        *runtime = r;
}

// Free everything in c, recording (not stopping at) the first failure:
// teardown continues so nothing leaks.
static void ctx_destroy(mlmx_cuda_ctx *c)
{
    if (!c->ready)
        return;
    for (int i = 0; i < MLMX_CUDA_NBUF; i++) {
        if (c->buf[i]) {
            cudaError_t e = cudaFree(c->buf[i]);
            if (e != cudaSuccess)
                mlmx_cuda_fail_rt("cudaFree(buffer)", e);
        }
        c->buf[i] = NULL;
        c->cap[i] = 0;
    }
    free(c->host);
    c->host = NULL;
    c->host_cap = 0;
    if (c->solver) {
        cusolverStatus_t s = cusolverDnDestroy(c->solver);
        if (s != CUSOLVER_STATUS_SUCCESS)
            mlmx_cuda_fail_solver("cusolverDnDestroy", s);
    }
    if (c->blas) {
        cublasStatus_t s = cublasDestroy(c->blas);
        if (s != CUBLAS_STATUS_SUCCESS)
            mlmx_cuda_fail_blas("cublasDestroy", s);
    }
    if (c->stream) {
        cudaError_t e = cudaStreamDestroy(c->stream);
        if (e != cudaSuccess)
            mlmx_cuda_fail_rt("cudaStreamDestroy", e);
    }
    c->solver = NULL;
    c->blas = NULL;
    c->stream = NULL;
    c->ready = 0;
}

static void release_at_exit(void) { mlmx_cuda_release(); }

static mlmx_status ctx_create(mlmx_cuda_ctx *c)
{
    mlmx_status st = MLMX_OK;
    int n = 0;
    MLMX_CK_RT(cudaGetDeviceCount(&n));
    if (n <= 0) {
        st = mlmx_cuda_fail(MLMX_ERR_UNSUPPORTED, "no CUDA device");
        goto done;
    }
    c->ready = 1; // from here on ctx_destroy undoes what was made
    mlmx_cuda_bind();
    MLMX_CK_RT(cudaGetDevice(&c->device));
    MLMX_CK_RT(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    MLMX_CK_BLAS(cublasCreate(&c->blas));
    MLMX_CK_BLAS(cublasSetStream(c->blas, c->stream));
    MLMX_CK_SOLVER(cusolverDnCreate(&c->solver));
    MLMX_CK_SOLVER(cusolverDnSetStream(c->solver, c->stream));
    if (!g_atexit_registered && atexit(release_at_exit) == 0)
        g_atexit_registered = 1;
done:
    if (st != MLMX_OK) {
        cudaGetLastError();
        ctx_destroy(c);
    }
    return st;
}

mlmx_status mlmx_cuda_ctx_lock(mlmx_cuda_ctx **out)
{
    mlmx_status st = MLMX_OK;
    pthread_mutex_lock(&g_lock);
    tl_msg[0] = '\0';
    if (!g_ctx.ready)
        st = ctx_create(&g_ctx);
    if (st != MLMX_OK) {
        pthread_mutex_unlock(&g_lock);
        *out = NULL;
        return st;
    }
    // the context's device, whatever this thread selected before
    cudaError_t e = cudaSetDevice(g_ctx.device);
    if (e != cudaSuccess) {
        pthread_mutex_unlock(&g_lock);
        *out = NULL;
        return mlmx_cuda_fail_rt("cudaSetDevice", e);
    }
    *out = &g_ctx;
    return MLMX_OK;
}

void mlmx_cuda_ctx_unlock(void) { pthread_mutex_unlock(&g_lock); }

mlmx_status mlmx_cuda_ctx_buf(mlmx_cuda_ctx *c, int slot, size_t bytes, void **out)
{
    if (slot < 0 || slot >= MLMX_CUDA_NBUF)
        return mlmx_cuda_fail(MLMX_ERR_ARG, "mlmx_cuda_ctx_buf: bad slot %d", slot);
    if (bytes == 0)
        bytes = 8;
    if (c->cap[slot] < bytes) {
        // grow by half again, so a slowly growing size reallocates rarely
        size_t want = c->cap[slot] + c->cap[slot] / 2;
        if (want < bytes)
            want = bytes;
        if (c->buf[slot]) {
            cudaError_t e = cudaFree(c->buf[slot]);
            c->buf[slot] = NULL;
            c->cap[slot] = 0;
            if (e != cudaSuccess)
                return mlmx_cuda_fail_rt("cudaFree(buffer)", e);
        }
        cudaError_t e = cudaMalloc(&c->buf[slot], want);
        if (e != cudaSuccess) {
            c->buf[slot] = NULL;
            return mlmx_cuda_fail_rt("cudaMalloc(buffer)", e);
        }
        c->cap[slot] = want;
    }
    *out = c->buf[slot];
    return MLMX_OK;
}

mlmx_status mlmx_cuda_ctx_host(mlmx_cuda_ctx *c, size_t bytes, void **out)
{
    if (bytes == 0)
        bytes = 16;
    if (c->host_cap < bytes) {
        void *p = realloc(c->host, bytes);
        if (!p)
            return mlmx_cuda_fail(MLMX_ERR_NOMEM, "host staging buffer of %zu bytes", bytes);
        c->host = p;
        c->host_cap = bytes;
    }
    *out = c->host;
    return MLMX_OK;
}

mlmx_status mlmx_cuda_ctx_put(mlmx_cuda_ctx *c, int slot, const void *h, size_t bytes,
                              const char *what, void **out)
{
    mlmx_status st = mlmx_cuda_ctx_buf(c, slot, bytes, out);
    if (st != MLMX_OK || bytes == 0)
        return st;
    cudaError_t e = cudaMemcpyAsync(*out, h, bytes, cudaMemcpyHostToDevice, c->stream);
    if (e != cudaSuccess)
        return mlmx_cuda_fail(e == cudaErrorMemoryAllocation ? MLMX_ERR_NOMEM : MLMX_ERR_NUMERIC,
                              "cudaMemcpyAsync(%s, host to device, %zu bytes) failed: %s", what,
                              bytes, cudaGetErrorString(e));
    return MLMX_OK;
}

extern "C" void mlmx_cuda_release(void)
{
    pthread_mutex_lock(&g_lock);
    ctx_destroy(&g_ctx);
    pthread_mutex_unlock(&g_lock);
}
