// Device allocations of the batch engines (internal to kernels/*.cu): one
// pair of functions, defined in lmm_batch.cu, that every engine's buffers
// go through, so that mlmx_cuda_peak_bytes (lmm_batch_cuda.h) counts them
// all. Not thread-safe: the replicate runner drives the device from one
// thread.
#ifndef MLMX_BATCH_ALLOC_CUH
#define MLMX_BATCH_ALLOC_CUH
#include <cuda_runtime.h>
#include <stddef.h>

// cudaMalloc of `bytes` (at least 1), added to the running and peak totals
// on success.
cudaError_t mlmx_cuda_batch_alloc(void **p, size_t bytes);
// cudaFree of p (NULL allowed), `bytes` the size it was allocated with.
void mlmx_cuda_batch_free(void *p, size_t bytes);
#endif
