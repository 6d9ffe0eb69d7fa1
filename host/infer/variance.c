/* Variance decomposition of a fit: Nakagawa & Schielzeth's R² and the
 * intra-class correlations (include/mlmx.h, mlmx_fit_r2 and
 * mlmx_fit_icc_term; docs/inference.md). Works on the public accessors
 * plus the model's design (X, the terms' rows and level codes). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "infer/infer.h"
#include "mlmx.h"
#include "model/model.h"

#define PI 3.14159265358979323846

/* The family's latent-scale residual variance: sigma^2 for an LMM, the
 * variance of the link's standard distribution for binomial and ordinal
 * models (logistic pi^2/3, normal 1, Gumbel pi^2/6); NaN for counts. */
static double residual_variance(const mlmx_fit *f)
{
    const mlmx_family fam = mlmx_fit_family(f);
    if (fam == MLMX_FAMILY_GAUSSIAN) {
        const double s = mlmx_fit_sigma(f);
        return s * s;
    }
    if (fam != MLMX_FAMILY_BINOMIAL && fam != MLMX_FAMILY_ORDINAL)
        return NAN;
    switch (mlmx_fit_link(f)) {
    case MLMX_LINK_PROBIT: return 1.0;
    case MLMX_LINK_CLOGLOG: return PI * PI / 6.0;
    default: return PI * PI / 3.0;
    }
}

/* Sample variance (denominator n - 1) of the fixed-effect predictor. */
static double fixed_variance(const mlmx_model *m, const double *beta)
{
    const size_t n = m->n;
    if (n < 2)
        return NAN;
    double mean = 0.0, ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double eta = 0.0;
        for (int j = 0; j < m->p; j++)
            eta += m->X[(size_t)j * n + i] * beta[j];
        /* Welford: one pass, no cancellation */
        const double d = eta - mean;
        mean += d / (double)(i + 1);
        ss += d * (eta - mean);
    }
    return ss / (double)(n - 1);
}

/* Sum over terms of tr(Sigma_k Z_k^T Z_k) / n = the mean over observations
 * of z_ik^T Sigma_k z_ik. */
static mlmx_status random_variance(const mlmx_fit *f, const mlmx_model *m, double *out)
{
    double total = 0.0, cov[16 * 16]; /* the model allows q <= 16 */
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        const int q = r->q;
        mlmx_status st = mlmx_fit_term_covariance(f, k, cov);
        if (st)
            return st;
        double s = 0.0;
        for (size_t i = 0; i < m->n; i++) {
            const double *z = r->z + i * (size_t)q;
            for (int a = 0; a < q; a++)
                for (int b = 0; b < q; b++)
                    s += z[a] * cov[a + b * q] * z[b];
        }
        total += s / (double)m->n;
    }
    *out = total;
    return MLMX_OK;
}

mlmx_status mlmx_fit_r2(const mlmx_fit *f, mlmx_r2 *out)
{
    mlmx_api_clear();
    if (!f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_r2: bad argument");
    if (mlmx_infer_iid(f, "R-squared"))
        return MLMX_ERR_UNSUPPORTED;
    const mlmx_model *m = mlmx_fit_model(f);
    memset(out, 0, sizeof *out);
    out->var_fixed = fixed_variance(m, mlmx_fit_beta(f));
    mlmx_status st = random_variance(f, m, &out->var_random);
    if (st)
        return st;
    out->var_residual = residual_variance(f);
    const double vf = out->var_fixed, vr = out->var_random, ve = out->var_residual;
    const double tot = vf + vr + ve;
    out->r2_marginal = vf / tot;
    out->r2_conditional = (vf + vr) / tot;
    out->icc_adjusted = vr / (vr + ve);
    out->icc_conditional = vr / tot;
    if (isnan(ve))
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "R2 and ICC of a %s model need the distribution-specific variance "
                              "of counts, which mlmx does not compute yet",
                              mlmx_family_name(mlmx_fit_family(f)));
    return MLMX_OK;
}

/* The column of term k that is its random intercept, or -1. */
static int intercept_column(const mlmx_reterm_info *r)
{
    for (int c = 0; c < r->q; c++)
        if (strcmp(r->colnames[c], "(Intercept)") == 0)
            return c;
    return -1;
}

/* The variance of term k's random intercept (sigma^2 T T^T's "(Intercept)"
 * entry), 0 when the term has no intercept column. */
static double intercept_variance(const mlmx_fit *f, const mlmx_model *m, int k)
{
    const int c = intercept_column(&m->re[k]);
    double cov[16 * 16]; /* the model allows q <= 16 */
    if (c < 0)
        return 0.0;
    return mlmx_fit_term_covariance(f, k, cov) == MLMX_OK ? cov[c + c * m->re[k].q] : NAN;
}

/* 1 when each level of term k's factor lies within one level of term j's
 * (k nested in j, or the same factor). */
static int nested_in(const mlmx_model *m, int k, int j, int *map)
{
    const mlmx_reterm_info *rk = &m->re[k], *rj = &m->re[j];
    for (int l = 0; l < rk->nlevels; l++)
        map[l] = -1;
    for (size_t i = 0; i < m->n; i++) {
        int *t = &map[rk->codes[i]];
        if (*t < 0)
            *t = rj->codes[i];
        else if (*t != rj->codes[i])
            return 0;
    }
    return 1;
}

mlmx_status mlmx_fit_icc_term(const mlmx_fit *f, int k, mlmx_icc *out)
{
    mlmx_api_clear();
    if (!f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_icc_term: bad argument");
    if (mlmx_infer_iid(f, "the ICC"))
        return MLMX_ERR_UNSUPPORTED;
    const mlmx_model *m = mlmx_fit_model(f);
    if (k < 0 || k >= m->K)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_icc_term: term %d of %d", k, m->K);
    const double ve = residual_variance(f);
    if (isnan(ve))
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "the ICC of a %s model needs the distribution-specific variance "
                              "of counts, which mlmx does not compute yet",
                              mlmx_family_name(mlmx_fit_family(f)));
    double vr = 0.0;
    mlmx_status st = random_variance(f, m, &vr);
    if (st)
        return st;
    int *map = malloc((size_t)m->re[k].nlevels * sizeof *map);
    if (!map)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    const double total = vr + ve;
    double cum = 0.0;
    for (int j = 0; j < m->K; j++)
        if (j == k || nested_in(m, k, j, map))
            cum += intercept_variance(f, m, j);
    free(map);
    const int has_int = intercept_column(&m->re[k]) >= 0;
    out->icc = has_int ? intercept_variance(f, m, k) / total : NAN;
    out->icc_cumulative = has_int ? cum / total : NAN;
    out->mean_size = (double)m->n / (double)m->re[k].nlevels;
    out->design_effect = 1.0 + (out->mean_size - 1.0) * out->icc_cumulative;
    return MLMX_OK;
}

/* The one grouping factor of f's terms (its first term), or -1. */
static int single_factor(const mlmx_model *m)
{
    for (int k = 1; k < m->K; k++)
        if (strcmp(m->re[k].group, m->re[0].group) != 0)
            return -1;
    return m->K > 0 ? 0 : -1;
}

mlmx_status mlmx_fit_r2_snijders_bosker(const mlmx_fit *f, mlmx_r2_sb *out)
{
    mlmx_api_clear();
    if (!f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_r2_snijders_bosker: bad argument");
    if (mlmx_infer_iid(f, "Snijders and Bosker's R-squared"))
        return MLMX_ERR_UNSUPPORTED;
    const mlmx_model *m = mlmx_fit_model(f);
    if (mlmx_fit_family(f) != MLMX_FAMILY_GAUSSIAN || single_factor(m) < 0)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "Snijders-Bosker R2 is for two-level linear mixed models (one "
                              "grouping factor)");
    double tauF = 0.0;
    for (int k = 0; k < m->K; k++)
        tauF += intercept_variance(f, m, k);
    if (!(tauF >= 0.0) || intercept_column(&m->re[0]) < 0)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED, "Snijders-Bosker R2 needs a random "
                                                    "intercept");
    mlmx_model *e = NULL;
    mlmx_fit *f0 = NULL;
    mlmx_error err;
    mlmx_err_clear(&err);
    mlmx_status st = mlmx_model_empty(m, 0, &e, &err);
    if (st)
        return mlmx_api_fail(&err);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = mlmx_fit_method(f);
    o.conditional_variances = 0;
    st = mlmx_fit_lmm(e, &o, &f0);
    if (!st) {
        const mlmx_reterm_info *r = &m->re[0];
        double inv = 0.0;
        for (int l = 0; l < r->nlevels; l++)
            inv += 1.0 / r->level_count[l];
        const double nh = r->nlevels / inv, sF = mlmx_fit_sigma(f), s2F = sF * sF;
        const double s0 = mlmx_fit_sigma(f0), s20 = s0 * s0, tau0 = intercept_variance(f0, e, 0);
        out->n_harmonic = nh;
        out->sigma2_empty = s20;
        out->tau2_empty = tau0;
        out->level1 = 1.0 - (s2F + tauF) / (s20 + tau0);
        out->level2 = 1.0 - (s2F / nh + tauF) / (s20 / nh + tau0);
    }
    mlmx_fit_free(f0);
    mlmx_model_destroy(e);
    return st ? mlmx_api_failf(st, "Snijders-Bosker R2: the empty model: %s", mlmx_last_error())
              : MLMX_OK;
}

