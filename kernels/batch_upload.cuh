// Copies of a batch engine's shared structure to the device (internal to
// kernels/*.cu): a list of host arrays packed in order into one int block
// and one double block, each destination pointer pointed at its copy.
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
#endif
