/* Gauss-Hermite rule for the standard normal density.
 *
 * Nodes: Golub-Welsch, i.e. the eigenvalues of the Jacobi matrix of the
 * probabilists' Hermite polynomials (zero diagonal, off-diagonal sqrt(1),
 * ..., sqrt(k-1)), from LAPACK's dstev without eigenvectors; then a few
 * Newton steps on the orthonormal polynomial p_k bring each node to full
 * relative accuracy (the eigensolver's error is absolute, ~eps ||T||).
 *
 * Weights: not from the eigenvectors, whose first components carry an
 * absolute error ~eps and so lose all relative accuracy for the tiny
 * weights of the outer nodes. For orthonormal polynomials with
 * x p_n = sqrt(n+1) p_{n+1} + sqrt(n) p_{n-1} (here p_n = He_n/sqrt(n!)),
 * Christoffel-Darboux gives w_i = 1 / (sqrt(k) p_k'(z_i) p_{k-1}(z_i)), and
 * p_k' = sqrt(k) p_{k-1}, so w_i = 1 / (k p_{k-1}(z_i)^2). The recurrence
 * runs with power-of-two rescaling and a separate log scale, so log w is
 * formed without ever forming w or p^2 (no overflow, no underflow). */
#include "glmm/ghq.h"

#include <lapacke.h>
#include <math.h>

#define LN2 0.693147180559945309417232121458176568
/* Rescale by 2^-332 (~1e-100) whenever |p_n| passes 2^332: exact, since a
 * power of two, and far from both overflow and underflow. */
#define BIG 0x1p332
#define SMALL 0x1p-332
#define BIG_LOG (332.0 * LN2)

/* p_k(x) and p_{k-1}(x) of the orthonormal probabilists' Hermite
 * polynomials, both divided by exp(*lscale). */
static void hermite_eval(int k, double x, double *pk, double *pkm1, double *lscale)
{
    double prev = 0.0, cur = 1.0, ls = 0.0; /* p_{-1}, p_0 */
    double sq_n = 0.0;                      /* sqrt(n) */
    for (int n = 0; n < k; n++) {
        double sq_n1 = sqrt((double)(n + 1));
        double next = (x * cur - sq_n * prev) / sq_n1;
        prev = cur;
        cur = next;
        sq_n = sq_n1;
        if (fabs(cur) > BIG) {
            cur *= SMALL;
            prev *= SMALL;
            ls += BIG_LOG;
        }
    }
    *pk = cur;
    *pkm1 = prev;
    *lscale = ls;
}

int mlmx_ghq_rule(int k, double *z, double *w, double *logw)
{
    if (k < 1 || k > MLMX_GHQ_MAX || !z)
        return -1;
    double d[MLMX_GHQ_MAX], e[MLMX_GHQ_MAX];
    for (int i = 0; i < k; i++) {
        d[i] = 0.0;
        e[i] = sqrt((double)(i + 1));
    }
    /* jobz 'N': eigenvalues only (dsterf underneath), ascending; no
     * workspace is allocated by LAPACKE for it. */
    if (k > 1 && LAPACKE_dstev(LAPACK_COL_MAJOR, 'N', k, d, e, NULL, 1) != 0)
        return -1;
    const double sqk = sqrt((double)k), logk = log((double)k);
    /* The negative half (i < k/2) is computed and mirrored, so the rule is
     * exactly symmetric and odd moments vanish to rounding; for odd k the
     * middle node is exactly 0 (p_k is odd). */
    for (int i = 0; i < (k + 1) / 2; i++) {
        double x = (k % 2 == 1 && i == k / 2) ? 0.0 : d[i];
        double pk, pkm1, ls;
        if (x != 0.0) {
            /* Newton on p_k: dx = p_k / p_k' = p_k / (sqrt(k) p_{k-1}); the
             * common scale cancels in the ratio. The eigenvalue is already
             * within ~1e-15 |T|, so 1-2 steps converge; cap at 8. */
            for (int it = 0; it < 8; it++) {
                hermite_eval(k, x, &pk, &pkm1, &ls);
                double dx = pk / (sqk * pkm1);
                x -= dx;
                if (fabs(dx) <= 0x1p-53 * fabs(x))
                    break;
            }
        }
        hermite_eval(k, x, &pk, &pkm1, &ls);
        double lw = -logk - 2.0 * (log(fabs(pkm1)) + ls);
        int j = k - 1 - i;
        z[j] = -x; /* then z[i]: the middle node of odd k stays +0 */
        z[i] = x;
        if (w)
            w[i] = w[j] = exp(lw);
        if (logw)
            logw[i] = logw[j] = lw;
    }
    return 0;
}
