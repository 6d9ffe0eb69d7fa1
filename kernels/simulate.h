/* One simulated response per observation, written once for the CPU path
 * and CUDA: the family's draw at the linear predictor eta, from the
 * samplers of random.h and the inverse links of glmm_math.h. */
#ifndef MLMX_SIMULATE_H
#define MLMX_SIMULATE_H

#include "glmm_math.h"
#include "random.h"

/* The draw for family fam (mlmx_family values: 0 gaussian, 1 binomial,
 * 2 Poisson, 3 NB2, 4 ordinal) and link (mlmx_link values):
 *   gaussian  eta + sigma N(0,1)
 *   binomial  Binomial(trials, linkinv(eta))
 *   Poisson   Poisson(exp(eta))
 *   NB2       Poisson(exp(eta) Gamma(size)/size)
 *   ordinal   the category k (0..ncat-1) by inversion of the cumulative
 *             probabilities F(c_k - eta), F the link's distribution
 * NaN for an unknown family. */
MLMX_HD double mlmx_sim_response(int fam, int link, double eta, double sigma, double trials,
                                 double size, int ncat, const double *thr, mlmx_rng *r)
{
    switch (fam) {
    case 0:
        return eta + sigma * mlmx_rng_normal(r);
    case 1:
        return mlmx_rng_binomial(r, trials, mlmx_gm_linkinv(link, eta));
    case 2:
        return mlmx_rng_poisson(r, exp(eta));
    case 3:
        return mlmx_rng_negbin(r, exp(eta), size);
    case 4: {
        double u = mlmx_rng_uniform(r);
        for (int k = 0; k < ncat - 1; k++) {
            double x = thr[k] - eta;
            double cdf = link == MLMX_LINK_PROBIT    ? mlmx_gm_pnorm(x)
                         : link == MLMX_LINK_CLOGLOG ? -expm1(-exp(x))
                                     : mlmx_gm_plogis(x);
            if (u <= cdf)
                return (double)k;
        }
        return (double)(ncat - 1);
    }
    default:
        return MLMX_GM_NAN;
    }
}

#endif
