// Helpers of the batch engines' extern "C" entries (internal to
// kernels/*.cu): the structure's host arrays packed in order into one int
// block and one double block on the device, and the check of a CUDA call.
#ifndef MLMX_BATCH_UPLOAD_CUH
#define MLMX_BATCH_UPLOAD_CUH
#include <cuda_runtime.h>
#include <stddef.h>

typedef struct mlmx_cuda_part {
    const void *src; // host array (NULL: the destination stays NULL)
    size_t bytes;
    int isint;        // 1: into the int block; 0: into the double block
    const void **dst; // the device pointer to set
} mlmx_cuda_part;

// Copy parts[0..nparts) into di (ints) and dd (doubles) in order.
static inline cudaError_t mlmx_cuda_upload_parts(const mlmx_cuda_part *parts, size_t nparts,
                                                 int *di, double *dd)
{
    for (size_t k = 0; k < nparts; k++) {
        void *dst = parts[k].isint ? (void *)di : (void *)dd;
        if (parts[k].src && parts[k].bytes) {
            cudaError_t e = cudaMemcpy(dst, parts[k].src, parts[k].bytes, cudaMemcpyHostToDevice);
            if (e != cudaSuccess)
                return e;
        }
        *parts[k].dst = parts[k].src ? dst : NULL;
        if (parts[k].isint)
            di += parts[k].bytes / sizeof(int);
        else
            dd += parts[k].bytes / sizeof(double);
    }
    return cudaSuccess;
}

// In an entry with `char *msg`, `size_t msglen`, `mlmx_status st` and a
// `done:` label: on a failed CUDA call, name it in msg, set st
// (MLMX_ERR_NOMEM for an allocation, else MLMX_ERR_NUMERIC), go to done.
#define MLMX_CUDA_CK(call)                                                              \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            snprintf(msg, msglen, "%s failed: %s", #call, cudaGetErrorString(e_));     \
            st = e_ == cudaErrorMemoryAllocation ? MLMX_ERR_NOMEM : MLMX_ERR_NUMERIC;   \
            goto done;                                                                  \
        }                                                                               \
    } while (0)
#endif
