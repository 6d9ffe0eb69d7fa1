/* Gauss-Hermite quadrature for the standard normal density (host only):
 * the nodes and weights adaptive quadrature (nAGQ > 1) integrates over. */
#ifndef MLMX_GLMM_GHQ_H
#define MLMX_GLMM_GHQ_H

#define MLMX_GHQ_MAX 200 /* most nodes a rule may have */

/* The k-point rule for phi, the standard normal density, k = 1..MLMX_GHQ_MAX:
 * z[i], w[i] (i < k) with sum_i w[i] f(z[i]) ~= int phi(z) f(z) dz, exact
 * for polynomials of degree <= 2k-1. z is ascending and exactly symmetric
 * (z[k-1-i] == -z[i], z[(k-1)/2] == 0 for odd k), w symmetric and summing
 * to 1. logw[i] = log w[i], accurate in relative terms even where w[i]
 * underflows (k = 200 reaches ~1e-163; the log never loses it).
 * z is required; w and logw may be NULL. Returns 0, or -1 for k out of range
 * (or a LAPACK failure). Allocates nothing (k-sized stack arrays); no
 * static state, so it is safe to call from several threads. */
int mlmx_ghq_rule(int k, double *z, double *w, double *logw);

#endif
