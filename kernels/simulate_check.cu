// Compiles kernels/simulate.h and the closed-form link functions of
// kernels/glmm_math.h as device code on every CUDA build: one kernel that
// draws a response of every family and evaluates each fused-loop function.
// No host entry point yet; the GPU replicate engine (next issue) calls
// these functions from its own kernels.
#include <stdint.h>

#include "simulate.h"

__global__ void mlmx_simulate_check_kernel(int n, uint64_t seed, const double *__restrict__ eta,
                                           double *__restrict__ out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const double thr[3] = {-1.0, 0.0, 1.2}, lc[4] = {0.0, -0.46, -0.30, 0.0},
                 rr[4] = {0.0, 0.58, 0.43, 0.0};
    mlmx_rng r;
    mlmx_rng_init(&r, seed, (uint64_t)i, 1u);
    double *o = out + (size_t)i * 10;
    for (int fam = 0; fam < 5; fam++)
        o[fam] = mlmx_sim_response(fam, fam == 2 || fam == 3 ? 3 : 0, eta[i], 1.0, 10.0, 2.0, 4,
                                   thr, &r);
    double d1, fi, d2, dlo, dhi, prod = 1.0;
    o[5] = mlmx_gm_logit_fast(3.0, 10.0, 0.0, eta[i], &d1, &fi) + d1 + fi;
    o[6] = mlmx_gm_poisson_fast(3.0, 0.0, eta[i], &d1, &fi) + d1 + fi;
    o[7] = mlmx_gm_wprime(0, 10.0, eta[i]) + mlmx_gm_wprime(1, 1.0, eta[i]);
    o[8] = mlmx_gm_ord_logit_obs(thr, 4, lc, rr, i % 4, eta[i], &prod, &d1, &d2, &dlo, &dhi);
    o[9] = prod + d1 + d2 + dlo + dhi + mlmx_gm_devres_negbin(3.0, 2.0, exp(eta[i])) +
           mlmx_gm_negbin_dsize(3.0, 2.0, exp(eta[i]));
}
