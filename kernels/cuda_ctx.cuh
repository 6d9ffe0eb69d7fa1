// The CUDA backend's one context (internal to kernels/*.cu): the stream,
// the cuBLAS and cuSOLVER handles and the growable device buffers. Every
// device allocation of the backend goes through mlmx_cuda_ctx_buf.
#ifndef MLMX_CUDA_CTX_CUH
#define MLMX_CUDA_CTX_CUH
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

extern "C" {
#include "mlmx.h"
}

// Buffer slots: one per distinct array a call keeps on the device.
enum mlmx_cuda_slot {
    MLMX_CUDA_BUF_A,
    MLMX_CUDA_BUF_B,
    MLMX_CUDA_BUF_L11,
    MLMX_CUDA_BUF_L21,
    MLMX_CUDA_BUF_T,
    MLMX_CUDA_BUF_TPTR,
    MLMX_CUDA_BUF_ROWPTR,
    MLMX_CUDA_BUF_ROWCOL,
    MLMX_CUDA_BUF_COLTERM,
    MLMX_CUDA_BUF_TERMQ,
    MLMX_CUDA_BUF_S,
    MLMX_CUDA_BUF_LOG,
    MLMX_CUDA_BUF_FLAG,
    MLMX_CUDA_BUF_WORK,
    MLMX_CUDA_NBUF
};

typedef struct mlmx_cuda_ctx {
    int ready;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    void *buf[MLMX_CUDA_NBUF];
    size_t cap[MLMX_CUDA_NBUF];
    void *host;      // host staging (per-level results, pointer tables)
    size_t host_cap;
} mlmx_cuda_ctx;

// Lock the context and create it on first use. On success *out is the
// context and the caller must call mlmx_cuda_ctx_unlock; on failure the
// lock is not held and the message is set.
mlmx_status mlmx_cuda_ctx_lock(mlmx_cuda_ctx **out);
void mlmx_cuda_ctx_unlock(void);

// A device buffer of at least `bytes` in slot `slot` (contents not kept
// when it grows). Sets the message on failure.
mlmx_status mlmx_cuda_ctx_buf(mlmx_cuda_ctx *c, int slot, size_t bytes, void **out);

// Host staging memory of at least `bytes` (contents not kept when it
// grows), 16-byte aligned. Sets the message on failure.
mlmx_status mlmx_cuda_ctx_host(mlmx_cuda_ctx *c, size_t bytes, void **out);

// Allocate slot `slot` for `bytes` and queue the copy of host h into it;
// `what` names the array in a failure message.
mlmx_status mlmx_cuda_ctx_put(mlmx_cuda_ctx *c, int slot, const void *h, size_t bytes,
                              const char *what, void **out);

// Record the failure of a checked call in the thread's message; return the
// status it maps to (MLMX_ERR_NOMEM for allocation failures, else
// MLMX_ERR_NUMERIC).
mlmx_status mlmx_cuda_fail_rt(const char *call, cudaError_t e);
mlmx_status mlmx_cuda_fail_blas(const char *call, cublasStatus_t s);
mlmx_status mlmx_cuda_fail_solver(const char *call, cusolverStatus_t s);
// printf-style message for the thread; returns code.
mlmx_status mlmx_cuda_fail(mlmx_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

// Checked calls: on failure record the message, set `st` and jump to
// `done` (the caller's single exit, which unlocks).
#define MLMX_CK_RT(call)                                                                      \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            st = mlmx_cuda_fail_rt(#call, e_);                                                \
            goto done;                                                                        \
        }                                                                                     \
    } while (0)
#define MLMX_CK_BLAS(call)                                                                    \
    do {                                                                                      \
        cublasStatus_t s_ = (call);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                    \
            st = mlmx_cuda_fail_blas(#call, s_);                                              \
            goto done;                                                                        \
        }                                                                                     \
    } while (0)
#define MLMX_CK_SOLVER(call)                                                                  \
    do {                                                                                      \
        cusolverStatus_t s_ = (call);                                                         \
        if (s_ != CUSOLVER_STATUS_SUCCESS) {                                                  \
            st = mlmx_cuda_fail_solver(#call, s_);                                            \
            goto done;                                                                        \
        }                                                                                     \
    } while (0)
#define MLMX_CK(status_expr)                                                                  \
    do {                                                                                      \
        st = (status_expr);                                                                   \
        if (st != MLMX_OK)                                                                    \
            goto done;                                                                        \
    } while (0)

#endif
