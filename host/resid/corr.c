/* The residual structures' math: parameters between the optimizer's scale
 * and nlme's, ARMA autocorrelations, and each group's R_g = D C D. */
#include "resid/resid_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Partial autocorrelations k[0..p) in (-1, 1) to the coefficients
 * a[0..p) of a stationary AR(p) (Durbin-Levinson; Barndorff-Nielsen &
 * Schou 1973): every point of the box is a stationary model and back. */
static void pacf_to_coef(int p, const double *k, double *a)
{
    double prev[MLMX_ARMA_MAX];
    for (int j = 0; j < p; j++) {
        memcpy(prev, a, (size_t)j * sizeof *prev);
        a[j] = k[j];
        for (int i = 0; i < j; i++)
            a[i] = prev[i] - k[j] * prev[j - 1 - i];
    }
}

/* The inverse (step-down recursion); 0 when a is not stationary. */
static int coef_to_pacf(int p, const double *a_in, double *k)
{
    double a[MLMX_ARMA_MAX], prev[MLMX_ARMA_MAX];
    memcpy(a, a_in, (size_t)p * sizeof *a);
    for (int j = p - 1; j >= 0; j--) {
        k[j] = a[j];
        if (!(fabs(k[j]) < 1.0))
            return 0;
        double den = 1.0 - k[j] * k[j];
        memcpy(prev, a, (size_t)j * sizeof *prev);
        for (int i = 0; i < j; i++)
            a[i] = (prev[i] + k[j] * prev[j - 1 - i]) / den;
    }
    return 1;
}

void mlmx_resid_natural(const mlmx_resid *r, const double *x, double *nat)
{
    for (int k = 0; k < r->npar; k++)
        nat[k] = x[k];
    if (r->corr == MLMX_CORR_ARMA) {
        /* AR part: stationary; MA part: invertible (1 + theta_1 B + ...),
         * the MA coefficients being minus those of an AR polynomial */
        pacf_to_coef(r->arma_p, x, nat);
        double ma[MLMX_ARMA_MAX];
        pacf_to_coef(r->arma_q, x + r->arma_p, ma);
        for (int j = 0; j < r->arma_q; j++)
            nat[r->arma_p + j] = -ma[j];
    }
    if (r->var == MLMX_VAR_IDENT)
        for (int k = r->ncorr; k < r->npar; k++)
            nat[k] = exp(x[k]);
}

mlmx_status mlmx_resid_from_natural(const mlmx_resid *r, const double *nat, double *x,
                                    mlmx_error *err)
{
    for (int k = 0; k < r->npar; k++)
        x[k] = nat[k];
    if (r->corr == MLMX_CORR_ARMA) {
        double ma[MLMX_ARMA_MAX];
        for (int j = 0; j < r->arma_q; j++)
            ma[j] = -nat[r->arma_p + j];
        if (!coef_to_pacf(r->arma_p, nat, x) || !coef_to_pacf(r->arma_q, ma, x + r->arma_p))
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "ARMA parameters outside the stationary and invertible region");
    }
    if (r->var == MLMX_VAR_IDENT)
        for (int k = r->ncorr; k < r->npar; k++) {
            if (!(nat[k] > 0.0))
                return mlmx_err_set(err, MLMX_ERR_ARG, "a stratum's SD ratio must be positive");
            x[k] = log(nat[k]);
        }
    for (int k = 0; k < r->npar; k++)
        if (!(x[k] >= r->lower[k] && x[k] <= r->upper[k])) {
            /* the range on nlme's scale (ident's bounds are on log SD ratios) */
            const int ident = k >= r->ncorr && r->var == MLMX_VAR_IDENT;
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "residual parameter '%s' = %g is outside its range [%.6g, %.6g]",
                                r->par_names[k], nat[k], ident ? exp(r->lower[k]) : r->lower[k],
                                ident ? exp(r->upper[k]) : r->upper[k]);
        }
    return MLMX_OK;
}

/* Solve the (n x n, n <= MLMX_ARMA_MAX + 1) system M x = b by Gaussian
 * elimination with partial pivoting; 0 when singular. */
static int small_solve(int n, double M[][MLMX_ARMA_MAX + 1], double *b)
{
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(M[r][c]) > fabs(M[piv][c]))
                piv = r;
        if (!(fabs(M[piv][c]) > 1e-300))
            return 0;
        if (piv != c) {
            for (int j = 0; j < n; j++) {
                double t = M[c][j];
                M[c][j] = M[piv][j];
                M[piv][j] = t;
            }
            double t = b[c];
            b[c] = b[piv];
            b[piv] = t;
        }
        for (int r = c + 1; r < n; r++) {
            double f = M[r][c] / M[c][c];
            for (int j = c; j < n; j++)
                M[r][j] -= f * M[c][j];
            b[r] -= f * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        double s = b[c];
        for (int j = c + 1; j < n; j++)
            s -= M[c][j] * b[j];
        b[c] = s / M[c][c];
    }
    return 1;
}

/* Autocorrelations of x_t = sum phi_i x_{t-i} + a_t + sum theta_j a_{t-j}:
 * the first p+1 autocovariances from their linear equations, the rest by
 * the AR recursion (Brockwell & Davis 1991, section 3.3). */
int mlmx_resid_arma_acf(int p, int q, const double *phi, const double *theta, int maxlag,
                        double *acf)
{
    double psi[MLMX_ARMA_MAX + 1], th[MLMX_ARMA_MAX + 1];
    th[0] = 1.0;
    for (int j = 1; j <= q; j++)
        th[j] = theta[j - 1];
    for (int j = 0; j <= q; j++) {
        psi[j] = th[j];
        for (int i = 1; i <= p && i <= j; i++)
            psi[j] += phi[i - 1] * psi[j - i];
    }
    /* rhs(k) = sum_{j=k}^{q} theta_j psi_{j-k} */
    double rhs[MLMX_ARMA_MAX + 2];
    for (int k = 0; k <= MLMX_ARMA_MAX + 1; k++) {
        rhs[k] = 0.0;
        for (int j = k; j <= q; j++)
            rhs[k] += th[j] * psi[j - k];
    }
    double M[MLMX_ARMA_MAX + 1][MLMX_ARMA_MAX + 1] = {{0}};
    double g[MLMX_ARMA_MAX + 1] = {0};
    for (int k = 0; k <= p; k++) {
        M[k][k] += 1.0;
        for (int i = 1; i <= p; i++)
            M[k][abs(k - i)] -= phi[i - 1];
        g[k] = rhs[k];
    }
    if (!small_solve(p + 1, M, g) || !(g[0] > 0.0))
        return 0;
    for (int k = 0; k <= maxlag; k++) {
        double v;
        if (k <= p) {
            v = g[k];
        } else {
            v = k <= q ? rhs[k] : 0.0;
            for (int i = 1; i <= p; i++)
                v += phi[i - 1] * acf[k - i] * g[0];
        }
        acf[k] = v / g[0];
    }
    return 1;
}

double mlmx_resid_sd(const mlmx_resid *r, const double *nat, size_t i)
{
    if (r->var == MLMX_VAR_IDENT)
        return r->stratum[i] == 0 ? 1.0 : nat[r->ncorr + r->stratum[i] - 1];
    if (r->var == MLMX_VAR_POWER)
        return pow(r->vcov[i], nat[r->ncorr]);
    return 1.0;
}

/* The correlation at distance d (>= 0) between two times of a group. */
static double corr_at(const mlmx_resid *r, const double *nat, const double *acf, double d)
{
    if (d == 0.0)
        return 1.0;
    switch (r->corr) {
    case MLMX_CORR_AR1:
    case MLMX_CORR_CAR1:
        return pow(nat[0], d);
    case MLMX_CORR_CS:
        return nat[0];
    case MLMX_CORR_ARMA:
        return acf[(size_t)d];
    default:
        return 0.0;
    }
}

void mlmx_resid_group_matrix(const mlmx_resid *r, const double *nat, const double *acf, int g,
                             double *Rg)
{
    const size_t o0 = r->gstart[g];
    const int ng = (int)(r->gstart[g + 1] - o0);
    for (int b = 0; b < ng; b++) {
        double sb = mlmx_resid_sd(r, nat, r->gobs[o0 + (size_t)b]);
        for (int a = b; a < ng; a++) {
            double sa = a == b ? sb : mlmx_resid_sd(r, nat, r->gobs[o0 + (size_t)a]);
            double d = fabs(r->gtime[o0 + (size_t)a] - r->gtime[o0 + (size_t)b]);
            double v = sa * sb * (a == b ? 1.0 : corr_at(r, nat, acf, d));
            Rg[a + b * ng] = v;
            Rg[b + a * ng] = v;
        }
    }
}
