/* Structured random-effect covariances (glmmTMB's cs, ar1, toep): the map
 * from a term's optimizer parameters psi to the entries of its q x q
 * lower-triangular template T (theta, column-major lower triangle as
 * mlmx_cm_theta_to_t reads it), and that map's Jacobian. Written once,
 * compiled as C for the CPU and as CUDA device code.
 *
 * A structured term's covariance is Var(b) = sigma^2 T T^T = sigma^2 D R D,
 * D = diag(s_1..s_q) the relative SDs and R the structure's correlation
 * matrix, so T = D chol(R). psi holds, per kind (q columns):
 *   MLMX_COV_US   the q(q+1)/2 entries of T themselves (lme4's theta)
 *   MLMX_COV_CS   s_1..s_q, rho            R_ij = rho (i != j), rho in [-1/(q-1), 1]
 *   MLMX_COV_AR1  s, rho                   R_ij = rho^|i-j|, one SD for all columns
 *   MLMX_COV_TOEP s_1..s_q, phi_1..phi_q-1 R_ij = rho_|i-j|, the lag correlations
 *                 rho_k of the partial autocorrelations phi_k in [-1, 1]
 * (Durbin-Levinson: mlmx_cov_toep_rho). glmmTMB's toep has the same model,
 * parametrised by the lag correlations themselves; every phi in the box
 * gives a positive semi-definite R, so the optimizer never meets a region
 * where the criterion is undefined. Work arrays: q*q doubles per matrix
 * named; q <= 16. */
#ifndef MLMX_COVSTRUCT_H
#define MLMX_COVSTRUCT_H

#include <stddef.h>

#include "cluster_math.h"

enum { MLMX_COV_US = 0, MLMX_COV_CS = 1, MLMX_COV_AR1 = 2, MLMX_COV_TOEP = 3 };

/* Parameters of a term of kind `kind` with q columns. */
MLMX_HD int mlmx_cov_npsi(int kind, int q)
{
    switch (kind) {
    case MLMX_COV_CS:
        return q + 1;
    case MLMX_COV_AR1:
        return 2;
    case MLMX_COV_TOEP:
        return 2 * q - 1;
    default:
        return q * (q + 1) / 2;
    }
}

/* Number of leading SD parameters (1 for ar1, q for cs and toep). */
MLMX_HD int mlmx_cov_nsd(int kind, int q) { return kind == MLMX_COV_AR1 ? 1 : q; }

/* Box bounds and lme4-like start (SDs 1, correlations 0) of a structured
 * term's psi; lo, hi, start: npsi each. Not for MLMX_COV_US. */
MLMX_HD void mlmx_cov_box(int kind, int q, double *lo, double *hi, double *start)
{
    const int ns = mlmx_cov_nsd(kind, q), np = mlmx_cov_npsi(kind, q);
    for (int j = 0; j < np; j++) {
        const int sd = j < ns;
        lo[j] = sd ? 0.0 : (kind == MLMX_COV_CS ? -1.0 / (q - 1) : -1.0);
        hi[j] = sd ? HUGE_VAL : 1.0;
        start[j] = sd ? 1.0 : 0.0;
    }
}

/* Lag correlations rho_1..rho_n of an AR(n) process with partial
 * autocorrelations phi_1..phi_n (Durbin-Levinson), and, when drho is not
 * NULL, drho[k + m n] = d rho_k+1 / d phi_m+1 by forward differentiation of
 * the recursion. a, da: (1 + n) n doubles of work (n <= 15). */
MLMX_HD void mlmx_cov_toep_rho(int n, const double *phi, double *rho, double *drho, double *a,
                               double *da)
{
    /* a[j]: AR(k) coefficients; da[j + (1 + m) n]: their derivatives in phi_m */
    double na[16], dna[16];
    for (int i = 0; i < (1 + n) * n; i++)
        a[i] = da[i] = 0.0;
    for (int k = 0; k < n; k++) {
        const double pk = phi[k];
        for (int m = n - 1; m >= -1; m--) { /* the values last: the derivatives read the old a */
            /* m = -1: the values; m >= 0: derivatives in phi_m */
            const double *cur = m < 0 ? a : da + (size_t)(1 + m) * n;
            for (int j = 0; j < k; j++) {
                double v = cur[j] - pk * cur[k - 1 - j];
                if (m == k)
                    v -= a[k - 1 - j];
                if (m < 0)
                    na[j] = v;
                else
                    dna[j] = v;
            }
            double *dst = m < 0 ? a : da + (size_t)(1 + m) * n;
            for (int j = 0; j < k; j++)
                dst[j] = m < 0 ? na[j] : dna[j];
            dst[k] = m < 0 ? pk : (m == k ? 1.0 : 0.0);
        }
        /* rho_k+1 = sum_j a_j rho_(k-j), rho_0 = 1 */
        double r = 0.0;
        for (int j = 0; j <= k; j++)
            r += a[j] * (k - j == 0 ? 1.0 : rho[k - j - 1]);
        rho[k] = r;
        if (!drho)
            continue;
        for (int m = 0; m < n; m++) {
            const double *dam = da + (size_t)(1 + m) * n;
            double d = 0.0;
            for (int j = 0; j <= k; j++) {
                const int l = k - j; /* lag of the rho factor */
                d += dam[j] * (l == 0 ? 1.0 : rho[l - 1]);
                if (l > 0)
                    d += a[j] * drho[(l - 1) + (size_t)m * n];
            }
            drho[k + (size_t)m * n] = d;
        }
    }
}

/* R (q x q, full) and, when dR is not NULL, dR/d(correlation parameter c)
 * for c = 0..npsi-nsd-1 (each q x q, consecutive). */
MLMX_HD void mlmx_cov_corr(int kind, int q, const double *psi, double *R, double *dR)
{
    const int ns = mlmx_cov_nsd(kind, q), nc = mlmx_cov_npsi(kind, q) - ns;
    const double *rho = psi + ns;
    double lag[16], dlag[16 * 16], wa[16 * 16], wda[16 * 16];
    if (kind == MLMX_COV_TOEP) {
        mlmx_cov_toep_rho(q - 1, psi + ns, lag, dR ? dlag : (double *)0, wa, wda);
        rho = lag;
    }
    for (int j = 0; j < q; j++)
        for (int i = 0; i < q; i++) {
            const int d = i > j ? i - j : j - i;
            double r = 1.0, dr = 0.0;
            if (d > 0 && kind == MLMX_COV_CS) {
                r = rho[0];
                dr = 1.0;
            } else if (d > 0 && kind == MLMX_COV_AR1) {
                double pw = 1.0; /* rho^(d-1) by products: exact at rho = 0 */
                for (int k = 1; k < d; k++)
                    pw *= rho[0];
                r = pw * rho[0];
                dr = d * pw;
            } else if (d > 0) {
                r = rho[d - 1];
            }
            R[i + j * q] = r;
            if (!dR)
                continue;
            for (int c = 0; c < nc; c++)
                dR[(size_t)c * q * q + i + j * q] =
                    kind == MLMX_COV_TOEP ? (d > 0 ? dlag[(d - 1) + c * (q - 1)] : 0.0)
                                          : (d > 0 ? dr : 0.0);
        }
}

/* theta (q(q+1)/2) from a structured term's psi. L: q*q work (left holding
 * chol(R)). Returns 0, or -1 when R is not positive semi-definite. */
MLMX_HD int mlmx_cov_theta(int kind, int q, const double *psi, double *theta, double *L)
{
    mlmx_cov_corr(kind, q, psi, L, (double *)0);
    if (mlmx_cm_chol_psd(q, L) != 0)
        return -1;
    int t = 0;
    for (int c = 0; c < q; c++)
        for (int a = c; a < q; a++)
            theta[t++] = psi[kind == MLMX_COV_AR1 ? 0 : a] * L[a + c * q];
    return 0;
}

/* J = d theta / d psi (q(q+1)/2 x npsi, column-major) of a structured term.
 * Correlation columns by the derivative of the Cholesky factor,
 * dL = L Phi(L^-1 dR L^-T) (Phi: the lower triangle, diagonal halved).
 * work: (3 + npsi - nsd) q*q doubles. Returns 0, or -1 where chol(R) is
 * singular (a correlation at its bound) or R is not positive definite. */
MLMX_HD int mlmx_cov_jacobian(int kind, int q, const double *psi, double *J, double *work)
{
    const int ns = mlmx_cov_nsd(kind, q), np = mlmx_cov_npsi(kind, q), nc = np - ns;
    const int nt = q * (q + 1) / 2;
    double *L = work, *M = work + q * q, *P = work + 2 * q * q, *dR = work + 3 * q * q;
    mlmx_cov_corr(kind, q, psi, L, dR);
    if (mlmx_cm_chol_psd(q, L) != 0)
        return -1;
    for (int j = 0; j < q; j++)
        if (!(L[j + j * q] > 1e-10))
            return -1;
    for (int j = 0; j < np * nt; j++)
        J[j] = 0.0;
    /* SD columns: d T[a,c] / d s_a = L[a,c] (ar1: every row) */
    for (int c = 0, t = 0; c < q; c++)
        for (int a = c; a < q; a++, t++)
            J[t + (kind == MLMX_COV_AR1 ? 0 : a) * nt] = L[a + c * q];
    for (int k = 0; k < nc; k++) {
        /* M = L^-1 dR L^-T: two triangular solves by columns */
        for (int j = 0; j < q * q; j++)
            M[j] = dR[(size_t)k * q * q + j];
        for (int j = 0; j < q; j++)
            mlmx_cm_trsv_lower(q, L, M + j * q);
        for (int i = 0; i < q; i++)
            for (int j = 0; j < q; j++)
                P[j + i * q] = M[i + j * q];
        for (int j = 0; j < q; j++)
            mlmx_cm_trsv_lower(q, L, P + j * q);
        /* Phi(P) in M, then dL = L Phi */
        for (int j = 0; j < q; j++)
            for (int i = 0; i < q; i++)
                M[i + j * q] = i > j ? P[i + j * q] : i == j ? 0.5 * P[i + j * q] : 0.0;
        for (int c = 0, t = 0; c < q; c++)
            for (int a = c; a < q; a++, t++) {
                double s = 0.0;
                for (int e = c; e <= a; e++)
                    s += L[a + e * q] * M[e + c * q];
                J[t + (ns + k) * nt] = psi[kind == MLMX_COV_AR1 ? 0 : a] * s;
            }
    }
    return 0;
}

#endif
