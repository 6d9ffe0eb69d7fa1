/* F and t tests of fixed effects by Satterthwaite's or Kenward-Roger's
 * degrees of freedom, as lmerTest's contest1D / contestMD and anova()
 * compute them (docs/inference.md). */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "power/power.h"

int mlmx_spd_solve(int n, double *A, double *b, int nrhs)
{
    return (int)LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', n, nrhs, A, n, b, n);
}

int mlmx_ddf_method_parse(const char *name)
{
    if (!name)
        return -1;
    if (strcmp(name, "satterthwaite") == 0)
        return MLMX_DDF_SATTERTHWAITE;
    if (strcmp(name, "kenward-roger") == 0)
        return MLMX_DDF_KENWARD_ROGER;
    if (strcmp(name, "none") == 0)
        return MLMX_DDF_NONE;
    if (strcmp(name, "containment") == 0)
        return MLMX_DDF_CONTAINMENT;
    return -1;
}

/* P(F(d1, d2) > x) and the two-sided P(|T(df)| > |t|). */
static double pf_upper(double x, double d1, double d2)
{
    if (!(x >= 0.0) || !(d2 > 0.0))
        return NAN;
    return mlmx_pw_pbeta(d2 / (d2 + d1 * x), 0.5 * d2, 0.5 * d1);
}

static double pt_two(double t, double df)
{
    return pf_upper(t * t, 1.0, df);
}

/* lmerTest's get_Fstat_ddf: pool the df of q independent t tests. */
static double pool_df(const double *nu, int q)
{
    if (q == 1)
        return nu[0];
    int same = 1;
    double mean = 0.0;
    for (int m = 0; m < q; m++) {
        mean += nu[m] / q;
        if (m && fabs(nu[m] - nu[m - 1]) >= 1e-8)
            same = 0;
    }
    if (same)
        return mean;
    double E = 0.0;
    for (int m = 0; m < q; m++) {
        if (nu[m] <= 2.0)
            return 2.0;
        E += nu[m] / (nu[m] - 2.0);
    }
    return 2.0 * E / (E - q);
}

/* Satterthwaite's F test (contestMD): rotate L to the eigenvectors of
 * L V L^T, drop directions with eigenvalue <= sqrt(eps) * the largest. */
static mlmx_status ftest_satt(const mlmx_fit *f, const mlmx_ddf_state *S, const double *L,
                              int nrow, mlmx_ftest *out)
{
    const int p = S->p;
    double *VL = malloc((size_t)nrow * nrow * sizeof *VL), *ev = malloc((size_t)nrow * sizeof *ev);
    double *PtL = malloc((size_t)p * sizeof *PtL), *nu = malloc((size_t)nrow * sizeof *nu);
    mlmx_status st = VL && ev && PtL && nu ? MLMX_OK : MLMX_ERR_NOMEM;
    for (int i = 0; !st && i < nrow; i++)
        for (int j = 0; j < nrow; j++) {
            double s = 0.0;
            for (int a = 0; a < p; a++)
                for (int b = 0; b < p; b++)
                    s += L[(size_t)i * p + a] * S->V[a + (size_t)b * p] * L[(size_t)j * p + b];
            VL[i + j * nrow] = s;
        }
    if (!st && LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'L', nrow, VL, nrow, ev))
        st = MLMX_ERR_NUMERIC;
    double F = 0.0;
    int q = 0;
    if (!st) {
        const double tol = fmax(sqrt(2.220446049250313e-16) * ev[nrow - 1], 0.0);
        for (int e = nrow - 1; e >= 0 && ev[e] > tol; e--, q++) { /* decreasing, as R */
            double est = 0.0, var;
            for (int a = 0; a < p; a++) {
                PtL[a] = 0.0;
                for (int i = 0; i < nrow; i++)
                    PtL[a] += VL[i + e * nrow] * L[(size_t)i * p + a];
                est += PtL[a] * f->beta[a];
            }
            nu[q] = mlmx_ddf_contrast(S, PtL, &var);
            F += est * est / var;
        }
    }
    if (!st) {
        out->num_df = q;
        out->f = q ? F / q : NAN;
        out->den_df = q ? pool_df(nu, q) : NAN;
        out->mean_sq = out->f * f->sigma * f->sigma;
        out->sum_sq = out->mean_sq * q;
        out->p = pf_upper(out->f, q, out->den_df);
    }
    free(VL), free(ev), free(PtL), free(nu);
    return st;
}

/* (L b)^T (L V L^T)^{-1} (L b) for L's nrow rows. */
static mlmx_status wald_stat(int p, const double *V, const double *L, int nrow, const double *beta,
                             double *wald)
{
    double *A = malloc((size_t)nrow * nrow * sizeof *A), *Lb = malloc((size_t)nrow * sizeof *Lb);
    double *x = malloc((size_t)nrow * sizeof *x);
    mlmx_status st = A && Lb && x ? MLMX_OK : MLMX_ERR_NOMEM;
    for (int i = 0; !st && i < nrow; i++) {
        Lb[i] = 0.0;
        for (int a = 0; a < p; a++)
            Lb[i] += L[(size_t)i * p + a] * beta[a];
        x[i] = Lb[i];
        for (int j = 0; j < nrow; j++) {
            double s = 0.0;
            for (int a = 0; a < p; a++)
                for (int b = 0; b < p; b++)
                    s += L[(size_t)i * p + a] * V[a + (size_t)b * p] * L[(size_t)j * p + b];
            A[i + j * nrow] = s;
        }
    }
    if (!st && mlmx_spd_solve(nrow, A, x, 1))
        st = MLMX_ERR_NUMERIC;
    *wald = 0.0;
    for (int i = 0; !st && i < nrow; i++)
        *wald += Lb[i] * x[i];
    free(A), free(Lb), free(x);
    return st;
}

/* Kenward-Roger's F test (pbkrtest's KRmodcomp on L, q = its rows), or
 * without S the unadjusted Wald F with no df. */
static mlmx_status ftest_wald(const mlmx_fit *f, const mlmx_kr_state *S, const double *L,
                              int nrow, mlmx_ftest *out)
{
    double wald;
    mlmx_status st = wald_stat(f->model->p, S ? S->PhiA : f->vcov, L, nrow, f->beta, &wald);
    if (st)
        return st;
    double scale = 1.0;
    out->num_df = nrow;
    out->den_df = S ? mlmx_kr_ddf(S, L, nrow, &scale) : NAN;
    const double FU = wald / nrow;
    out->mean_sq = FU * f->sigma * f->sigma;
    out->sum_sq = out->mean_sq * nrow;
    out->f = FU * scale;
    out->p = S ? pf_upper(out->f, nrow, out->den_df) : NAN;
    return S && isnan(out->den_df) ? MLMX_ERR_NUMERIC : MLMX_OK;
}

/* nlme's adjustSigma for the containment method's tests of an ML fit:
 * the fixed effects' covariance times n / (n - p), as with a REML-like
 * sigma (summary.lme and anova.lme); 1 for REML fits. */
static double ml_adjust(const mlmx_fit *f)
{
    const double n = (double)f->model->n, p = (double)f->model->p;
    return f->method == MLMX_ML ? n / (n - p) : 1.0;
}

/* The state of one method, prepared once for several tests. */
typedef struct tests {
    mlmx_ddf_method ddf;
    const mlmx_ddf_state *sat; /* the fit's cached state (sat_owned when not cached) */
    mlmx_ddf_state *sat_owned;
    mlmx_kr_state kr;
    double *cdf;   /* containment: p coefficients' df, then the terms' */
    int term;      /* containment: the term an F test is of (-1: a general L) */
} tests;

static mlmx_status ddf_arg(mlmx_ddf_method ddf)
{
    return ddf == MLMX_DDF_SATTERTHWAITE || ddf == MLMX_DDF_KENWARD_ROGER ||
                   ddf == MLMX_DDF_NONE || ddf == MLMX_DDF_CONTAINMENT
               ? MLMX_OK
               : mlmx_api_failf(MLMX_ERR_ARG, "unknown denominator df method %d", (int)ddf);
}

static mlmx_status tests_prepare(const mlmx_fit *f, mlmx_ddf_method ddf, tests *T)
{
    memset(T, 0, sizeof *T);
    T->ddf = ddf;
    mlmx_status st = ddf_arg(ddf);
    if (st)
        return st;
    if (f->family != MLMX_FAMILY_GAUSSIAN)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "t and F tests with denominator df are for linear mixed models "
                              "(a GLMM has Wald z tests)");
    if (ddf == MLMX_DDF_SATTERTHWAITE)
        return mlmx_ddf_acquire(f, "Satterthwaite degrees of freedom", &T->sat, &T->sat_owned);
    if (ddf == MLMX_DDF_KENWARD_ROGER)
        return mlmx_kr_prepare(f, &T->kr);
    if (ddf == MLMX_DDF_CONTAINMENT) {
        const mlmx_model *m = f->model;
        mlmx_error e;
        mlmx_err_clear(&e);
        T->term = -1;
        T->cdf = malloc(((size_t)m->p + (size_t)m->nfixterms + 1) * sizeof *T->cdf);
        if (!T->cdf)
            return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
        if (mlmx_containment_df(m, T->cdf, T->cdf + m->p, &e) != MLMX_OK) {
            free(T->cdf);
            T->cdf = NULL;
            return mlmx_api_fail(&e);
        }
    }
    return MLMX_OK;
}

static void tests_free(tests *T)
{
    if (T->ddf == MLMX_DDF_SATTERTHWAITE)
        mlmx_ddf_release(T->sat_owned);
    else if (T->ddf == MLMX_DDF_KENWARD_ROGER)
        mlmx_kr_free(&T->kr);
    free(T->cdf);
}

static mlmx_status tests_f(const mlmx_fit *f, const tests *T, const double *L, int nrow,
                           mlmx_ftest *out)
{
    if (nrow <= 0) {
        out->sum_sq = out->mean_sq = out->num_df = out->den_df = out->f = out->p = NAN;
        return MLMX_OK;
    }
    if (T->ddf == MLMX_DDF_SATTERTHWAITE)
        return ftest_satt(f, T->sat, L, nrow, out);
    mlmx_status st = ftest_wald(f, T->ddf == MLMX_DDF_KENWARD_ROGER ? &T->kr : NULL, L, nrow, out);
    if (!st && T->ddf == MLMX_DDF_CONTAINMENT) {
        /* a term's df, or as nlme for a general L the least df of the
         * coefficients it involves */
        const int p = f->model->p;
        double df = HUGE_VAL;
        if (T->term >= 0)
            df = T->cdf[p + T->term];
        else
            for (int i = 0; i < nrow; i++)
                for (int a = 0; a < p; a++)
                    if (L[(size_t)i * p + a] != 0.0)
                        df = fmin(df, T->cdf[a]);
        out->den_df = df;
        out->f /= ml_adjust(f);
        out->p = pf_upper(out->f, nrow, df);
    }
    return st;
}

mlmx_status mlmx_fit_coef_tests_ddf(const mlmx_fit *f, mlmx_ddf_method ddf, double *se,
                                    double *df, double *t, double *p)
{
    mlmx_api_clear();
    if (!f || !se || !df || !t || !p)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_coef_tests_ddf: bad argument");
    tests T;
    mlmx_status st = tests_prepare(f, ddf, &T);
    if (st)
        return st;
    const int np = f->model->p;
    double *L = calloc((size_t)np + 1, sizeof *L);
    if (!L) {
        tests_free(&T);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    for (int j = 0; j < np && !st; j++) {
        double var = f->vcov[j + (size_t)j * np], scale;
        L[j] = 1.0;
        df[j] = NAN;
        if (ddf == MLMX_DDF_SATTERTHWAITE)
            df[j] = mlmx_ddf_contrast(T.sat, L, &var);
        else if (ddf == MLMX_DDF_KENWARD_ROGER) {
            var = T.kr.PhiA[j + (size_t)j * np];
            df[j] = mlmx_kr_ddf(&T.kr, L, 1, &scale);
        } else if (ddf == MLMX_DDF_CONTAINMENT) {
            df[j] = T.cdf[j];
            var *= ml_adjust(f);
        }
        L[j] = 0.0;
        se[j] = sqrt(var);
        t[j] = f->beta[j] / se[j];
        p[j] = ddf == MLMX_DDF_NONE ? NAN : pt_two(t[j], df[j]);
    }
    free(L);
    tests_free(&T);
    return MLMX_OK;
}

mlmx_status mlmx_fit_vcov_kr(const mlmx_fit *f, double *vcov)
{
    mlmx_api_clear();
    if (!f || !vcov)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_vcov_kr: bad argument");
    tests T;
    mlmx_status st = tests_prepare(f, MLMX_DDF_KENWARD_ROGER, &T);
    if (st)
        return st;
    memcpy(vcov, T.kr.PhiA, (size_t)f->model->p * f->model->p * sizeof *vcov);
    tests_free(&T);
    return MLMX_OK;
}

mlmx_status mlmx_fit_ftest(const mlmx_fit *f, mlmx_ddf_method ddf, const double *L, int nrow,
                           mlmx_ftest *out)
{
    mlmx_api_clear();
    if (!f || !L || nrow < 1 || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_ftest: bad argument");
    tests T;
    mlmx_status st = tests_prepare(f, ddf, &T);
    if (st)
        return st;
    st = tests_f(f, &T, L, nrow, out);
    tests_free(&T);
    return st ? mlmx_api_failf(st, "F test: the contrast's covariance is singular") : MLMX_OK;
}

int mlmx_fit_nterms(const mlmx_fit *f) { return f ? f->model->nfixterms : 0; }

const char *mlmx_fit_term_label(const mlmx_fit *f, int t)
{
    return f && t >= 0 && t < f->model->nfixterms ? f->model->fixterms[t].label : NULL;
}

mlmx_status mlmx_fit_anova_type3(const mlmx_fit *f, mlmx_ddf_method ddf, mlmx_ftest *out)
{
    mlmx_api_clear();
    if (!f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_anova_type3: bad argument");
    const mlmx_model *m = f->model;
    double **L = NULL;
    int *rows = NULL;
    mlmx_status st = ddf_arg(ddf);
    if (!st) {
        st = mlmx_type3_contrasts(m, &L, &rows);
        if (st == MLMX_ERR_UNSUPPORTED)
            st = mlmx_api_failf(st, "Type III tests need every margin of each term in the "
                                    "model (a hierarchical formula) and no columns dropped as "
                                    "collinear");
        else if (st)
            st = mlmx_api_failf(st, "Type III contrasts: %s",
                                st == MLMX_ERR_NOMEM ? "out of memory" : "numerical failure");
    }
    tests T;
    int prepared = 0;
    if (!st) {
        st = tests_prepare(f, ddf, &T);
        prepared = !st;
    }
    for (int t = 0; !st && t < m->nfixterms; t++)
        if ((T.term = t, st = tests_f(f, &T, L[t], rows[t], &out[t])))
            st = mlmx_api_failf(st, "Type III test of '%s': the contrast's covariance is "
                                    "singular",
                                m->fixterms[t].label);
    if (prepared)
        tests_free(&T);
    for (int t = 0; L && t < m->nfixterms; t++)
        free(L[t]);
    free(L);
    free(rows);
    return st;
}
