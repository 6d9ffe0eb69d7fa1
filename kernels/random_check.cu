// Compiles kernels/random.h as device code: one kernel that calls every
// sampler, so nvcc checks the header on each CUDA build. It has no host
// entry point; thread i uses stream i of (seed, replicate) and writes its
// draws to out[i*MLMX_RANDOM_CHECK_NOUT ...].
#include <stdint.h>

#include "random.h"

#define MLMX_RANDOM_CHECK_NOUT 12

__global__ void mlmx_random_check_kernel(int nthread, uint64_t seed, uint64_t replicate,
                                         double *__restrict__ out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nthread)
        return;
    const double cdf[3] = {0.1, 0.3, 0.6};
    uint32_t ctr[4] = {(uint32_t)i, 0u, 0u, 0u}, key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t blk[4];
    mlmx_philox4x32_10(ctr, key, blk);
    mlmx_rng r;
    mlmx_rng_init(&r, seed, replicate, (uint32_t)i);
    double z[2];
    mlmx_rng_normal2(&r, z);
    double *o = out + (size_t)i * MLMX_RANDOM_CHECK_NOUT;
    o[0] = (double)(blk[0] ^ mlmx_rng_u32(&r));
    o[1] = mlmx_rng_uniform(&r);
    o[2] = mlmx_rng_normal(&r);
    o[3] = z[0] + z[1];
    o[4] = mlmx_rng_gamma(&r, 0.5);
    o[5] = mlmx_rng_gamma(&r, 3.7);
    o[6] = mlmx_rng_poisson(&r, 4.0);
    o[7] = mlmx_rng_poisson(&r, 1000.0);
    o[8] = mlmx_rng_binomial(&r, 1.0, 0.3);
    o[9] = mlmx_rng_binomial(&r, 500.0, 0.7);
    o[10] = mlmx_rng_negbin(&r, 3.0, 1.5);
    o[11] = (double)mlmx_rng_categorical(&r, 4, cdf);
}
