/* Likelihood-ratio tests between nested fits, as lme4's anova() prints
 * them, and of an LMM against the linear model without random effects, as
 * Stata's mixed prints it (include/mlmx.h, "Model comparison";
 * docs/inference.md). */
#include <lapacke.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "infer/infer.h"
#include "infer/compare.h"
#include "lmm/fit.h"
#include "output/output.h"
#include "util/strbuf.h"

#define PI 3.14159265358979323846

mlmx_anova *mlmx_cmp_alloc(int kind, int n)
{
    mlmx_anova *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->kind = kind;
    a->rows = calloc((size_t)n, sizeof *a->rows);
    a->names = calloc((size_t)n, sizeof *a->names);
    a->formulas = calloc((size_t)n, sizeof *a->formulas);
    a->fits = calloc((size_t)n, sizeof *a->fits);
    a->models = calloc((size_t)n, sizeof *a->models);
    if (!a->rows || !a->names || !a->formulas || !a->fits || !a->models) {
        mlmx_anova_free(a);
        return NULL;
    }
    return a;
}

void mlmx_anova_free(mlmx_anova *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->nrows; i++) {
        free(a->names[i]);
        free(a->formulas[i]);
    }
    for (int i = 0; i < a->nfits; i++)
        mlmx_fit_free(a->fits[i]);
    for (int i = 0; i < a->nmodels; i++)
        mlmx_model_free(a->models[i]);
    for (int i = 0; i < a->nwarnings; i++)
        free(a->warnings[i]);
    free(a->warnings);
    free(a->rows);
    free(a->names);
    free(a->formulas);
    free(a->fits);
    free(a->models);
    free(a->formula);
    free(a);
}

mlmx_status mlmx_cmp_warn(mlmx_anova *a, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(a->warnings, (size_t)(a->nwarnings + 1) * sizeof *w);
    if (!w)
        return MLMX_ERR_NOMEM;
    a->warnings = w;
    if (!(w[a->nwarnings] = mlmx_strdup(buf)))
        return MLMX_ERR_NOMEM;
    a->nwarnings++;
    return MLMX_OK;
}

void mlmx_cmp_lrt(mlmx_anova_row *r, const mlmx_anova_row *r0)
{
    const int big = r->npar >= r0->npar;
    const double d = big ? r->loglik - r0->loglik : r0->loglik - r->loglik;
    r->chisq = 2.0 * (d > 0 ? d : 0.0);
    r->df = big ? r->npar - r0->npar : r0->npar - r->npar;
    r->p = r->df > 0 ? mlmx_chi2_sf(r->chisq, r->df) : NAN;
    r->p_chibar = NAN;
}

double mlmx_cmp_chibar01(double x) { return x >= 1e-8 ? 0.5 * mlmx_chi2_sf(x, 1) : 1.0; }

mlmx_status mlmx_cmp_lm_loglik(const mlmx_model *m, int reml, double *ll)
{
    const size_t n = m->n;
    const int p = m->p;
    if (n <= (size_t)p)
        return MLMX_ERR_NUMERIC;
    double *X = malloc(n * (size_t)(p > 0 ? p : 1) * sizeof *X);
    double *y = malloc(n * sizeof *y);
    double *tau = malloc((size_t)(p > 0 ? p : 1) * sizeof *tau);
    if (!X || !y || !tau) {
        free(X);
        free(y);
        free(tau);
        return MLMX_ERR_NOMEM;
    }
    memcpy(X, m->X, n * (size_t)p * sizeof *X);
    memcpy(y, m->y, n * sizeof *y);
    lapack_int info = 0;
    if (p > 0) {
        info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)n, p, X, (lapack_int)n, tau);
        if (!info)
            info = LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', (lapack_int)n, 1, p, X,
                                  (lapack_int)n, tau, y, (lapack_int)n);
    }
    double rss = 0.0, logdet = 0.0;
    for (size_t i = (size_t)p; i < n; i++)
        rss += y[i] * y[i];
    for (int j = 0; j < p; j++)
        logdet += log(fabs(X[(size_t)j * n + (size_t)j]));
    free(X);
    free(y);
    free(tau);
    if (info || !(rss > 0) || !isfinite(logdet))
        return MLMX_ERR_NUMERIC;
    const double N = reml ? (double)(n - (size_t)p) : (double)n;
    *ll = -0.5 * N * (log(2.0 * PI * rss / N) + 1.0) - (reml ? logdet : 0.0);
    return MLMX_OK;
}

/* ---- anova(): the checks ---- */

static int same_values(const double *a, const double *b, size_t n)
{
    if (!a || !b)
        return a == b;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* The fits describe one response on the same rows, with one family. */
static mlmx_status check_same_data(const mlmx_fit *const *fits, int n)
{
    const mlmx_model *m0 = fits[0]->model;
    for (int i = 1; i < n; i++) {
        const mlmx_model *m = fits[i]->model;
        if (fits[i]->family != fits[0]->family)
            return mlmx_api_failf(MLMX_ERR_ARG,
                                  "anova: model %d is a %s model and model 1 a %s model: "
                                  "compare models of one family",
                                  i + 1, mlmx_family_name(fits[i]->family),
                                  mlmx_family_name(fits[0]->family));
        if (m->n != m0->n)
            return mlmx_api_failf(MLMX_ERR_DATA,
                                  "anova: models were not all fitted to the same size of "
                                  "dataset (model 1: %zu observations, model %d: %zu; missing "
                                  "values in different rows?)",
                                  m0->n, i + 1, m->n);
        if (memcmp(m->rows, m0->rows, m->n * sizeof *m->rows) != 0)
            return mlmx_api_failf(MLMX_ERR_DATA,
                                  "anova: model %d uses other rows of the data than model 1 "
                                  "(missing values in different rows?)",
                                  i + 1);
        if (!same_values(m->y, m0->y, m->n) || !same_values(m->ntrials, m0->ntrials, m->n) ||
            strcmp(m->response_name, m0->response_name) != 0)
            return mlmx_api_failf(MLMX_ERR_DATA,
                                  "anova: model %d's response '%s' differs from model 1's '%s': "
                                  "models must be fitted to the same response",
                                  i + 1, m->response_name, m0->response_name);
    }
    return MLMX_OK;
}

static int has_fixef(const mlmx_model *m, const char *name)
{
    for (int j = 0; j < m->p; j++)
        if (strcmp(m->fixef_names[j], name) == 0)
            return 1;
    return 0;
}

/* Term t of a is matched in b: a term on the same grouping factor whose
 * columns include t's (exact = 1: the same columns). */
static int term_in(const mlmx_reterm_info *t, const mlmx_model *b, int exact)
{
    for (int k = 0; k < b->K; k++) {
        const mlmx_reterm_info *u = &b->re[k];
        if (strcmp(u->group, t->group) != 0 || u->q < t->q || (exact && u->q != t->q))
            continue;
        int all = 1;
        for (int c = 0; c < t->q && all; c++) {
            int found = 0;
            for (int e = 0; e < u->q && !found; e++)
                found = strcmp(t->colnames[c], u->colnames[e]) == 0;
            all = found;
        }
        if (all)
            return 1;
    }
    return 0;
}

/* Why a (fewer parameters) is not nested in b, or NULL when its fixed
 * effects and random terms are among b's. */
static const char *not_nested(const mlmx_model *a, const mlmx_model *b, char *why, size_t len)
{
    for (int j = 0; j < a->p; j++)
        if (!has_fixef(b, a->fixef_names[j])) {
            snprintf(why, len, "fixed effect '%s' is only in the smaller model",
                     a->fixef_names[j]);
            return why;
        }
    for (int k = 0; k < a->K; k++)
        if (!term_in(&a->re[k], b, 0)) {
            snprintf(why, len, "the smaller model's random effects on '%s' are not in the larger",
                     a->re[k].group);
            return why;
        }
    /* residual structures: each of a's (correlation, variance function) is
     * b's, or absent (every structure contains independence at a point) */
    const mlmx_resid *ra = a->resid, *rb = b->resid;
    const int ar1_in_arma = ra && rb && ra->corr == MLMX_CORR_AR1 &&
                            rb->corr == MLMX_CORR_ARMA && rb->arma_p >= 1;
    if (ra && ra->corr != MLMX_CORR_NONE && !ar1_in_arma &&
        (!rb || rb->corr != ra->corr || rb->arma_p < ra->arma_p || rb->arma_q < ra->arma_q ||
         strcmp(rb->corr_group, ra->corr_group) != 0)) {
        snprintf(why, len, "the smaller model's residual correlation %s is not the larger's",
                 ra->corr_text);
        return why;
    }
    if (ra && ra->var != MLMX_VAR_NONE &&
        (!rb || rb->var != ra->var || strcmp(rb->var_name, ra->var_name) != 0)) {
        snprintf(why, len, "the smaller model's variance function %s is not the larger's",
                 ra->var_text);
        return why;
    }
    return NULL;
}

/* b adds one scalar random-effect term to a and nothing else: the test's
 * null puts one variance on its boundary (chi-bar-square, 0.5 chi2_0 +
 * 0.5 chi2_1). */
static int one_variance_more(const mlmx_model *a, const mlmx_model *b)
{
    if (a->p != b->p || b->K != a->K + 1 || mlmx_model_ncov(b) != mlmx_model_ncov(a) + 1)
        return 0;
    for (int j = 0; j < a->p; j++)
        if (!has_fixef(b, a->fixef_names[j]))
            return 0;
    int extra = 0;
    for (int k = 0; k < b->K; k++)
        if (!term_in(&b->re[k], a, 1))
            extra += b->re[k].q == 1 ? 1 : 2;
    return extra == 1;
}

/* ML fits: REML fits are refitted by ML (from their theta), as lme4's
 * anova(refit = TRUE). ml[i] is the fit to use. */
static mlmx_status ml_fits(mlmx_anova *a, const mlmx_fit *const *fits, int n,
                           const mlmx_fit **ml)
{
    for (int i = 0; i < n; i++) {
        ml[i] = fits[i];
        if (fits[i]->family != MLMX_FAMILY_GAUSSIAN || fits[i]->method != MLMX_REML)
            continue;
        mlmx_fit_options o;
        mlmx_fit_options_default(&o);
        o.method = MLMX_ML;
        o.theta_start = fits[i]->theta;
        o.conditional_variances = 0;
        mlmx_fit *r = NULL;
        mlmx_status st = mlmx_fit_lmm(fits[i]->model, &o, &r);
        if (st)
            return st;
        a->fits[a->nfits++] = r;
        ml[i] = r;
        a->refitted++;
    }
    return MLMX_OK;
}

/* Rows in order of npar (stable), each tested against the one before. */
static mlmx_status fill_rows(mlmx_anova *a, const mlmx_fit **ml, int n)
{
    int *ord = malloc((size_t)n * sizeof *ord);
    if (!ord)
        return MLMX_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && ml[ord[j - 1]]->df > ml[i]->df) {
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = i;
    }
    mlmx_status st = MLMX_OK;
    for (int r = 0; r < n && !st; r++) {
        const mlmx_fit *f = ml[ord[r]];
        mlmx_anova_row *w = &a->rows[r];
        a->names[r] = mlmx_asprintf("m%d", ord[r] + 1);
        {
            const mlmx_resid *rs = f->model->resid;
            a->formulas[r] =
                !rs ? mlmx_strdup(f->model->formula)
                    : mlmx_asprintf("%s%s%s%s%s", f->model->formula,
                                    rs->corr != MLMX_CORR_NONE ? ", correlation " : "",
                                    rs->corr != MLMX_CORR_NONE ? rs->corr_text : "",
                                    rs->var != MLMX_VAR_NONE ? ", variance " : "",
                                    rs->var != MLMX_VAR_NONE ? rs->var_text : "");
        }
        a->nrows = r + 1;
        if (!a->names[r] || !a->formulas[r]) {
            st = MLMX_ERR_NOMEM;
            break;
        }
        *w = (mlmx_anova_row){ord[r], a->names[r], a->formulas[r], f->df, f->aic, f->bic,
                              f->loglik, -2.0 * f->loglik, NAN, 0, NAN, NAN};
        if (r == 0)
            continue;
        const mlmx_fit *f0 = ml[ord[r - 1]];
        mlmx_cmp_lrt(w, &a->rows[r - 1]);
        for (int k = 0; k < f->model->K; k++)
            a->boundary |= !term_in(&f->model->re[k], f0->model, 1);
        for (int k = 0; k < f0->model->K; k++)
            a->boundary |= !term_in(&f0->model->re[k], f->model, 1);
        char why[256];
        const char *nn = not_nested(f0->model, f->model, why, sizeof why);
        if (w->df == 0)
            st = mlmx_cmp_warn(a, "%s and %s have the same number of parameters: no test",
                               a->names[r - 1], a->names[r]);
        else if (nn)
            st = mlmx_cmp_warn(a, "%s and %s are not nested (%s): the likelihood-ratio test "
                                  "needs nested models", a->names[r - 1], a->names[r], nn);
        else if (f->loglik < f0->loglik - 1e-6 * (1.0 + fabs(f0->loglik)))
            st = mlmx_cmp_warn(a, "%s has more parameters than %s but a lower log-likelihood "
                                  "(%.2f < %.2f): not nested, or a fit did not converge",
                               a->names[r], a->names[r - 1], f->loglik, f0->loglik);
        else if (w->df == 1 && one_variance_more(f0->model, f->model))
            w->p_chibar = mlmx_cmp_chibar01(w->chisq);
    }
    free(ord);
    return st;
}

mlmx_status mlmx_anova_create(const mlmx_fit *const *fits, int n, mlmx_anova **out)
{
    mlmx_api_clear();
    if (!out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_anova_create: out is NULL");
    *out = NULL;
    if (!fits || n < 2)
        return mlmx_api_failf(MLMX_ERR_ARG, "anova: give at least two fits to compare");
    for (int i = 0; i < n; i++)
        if (!fits[i])
            return mlmx_api_failf(MLMX_ERR_ARG, "anova: fit %d is NULL", i + 1);
    mlmx_status st = check_same_data(fits, n);
    if (st)
        return st;
    mlmx_anova *a = mlmx_cmp_alloc(MLMX_CMP_ANOVA, n);
    const mlmx_fit **ml = malloc((size_t)n * sizeof *ml);
    if (!a || !ml) {
        mlmx_anova_free(a);
        free(ml);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    a->method = MLMX_ML;
    st = ml_fits(a, fits, n, ml);
    if (st) {
        /* the refit's own message names the problem */
        free(ml);
        mlmx_anova_free(a);
        return st;
    }
    st = fill_rows(a, ml, n);
    free(ml);
    if (st) {
        mlmx_anova_free(a);
        return mlmx_api_failf(st, "out of memory");
    }
    *out = a;
    return MLMX_OK;
}

int mlmx_anova_nrows(const mlmx_anova *a) { return a ? a->nrows : 0; }

const mlmx_anova_row *mlmx_anova_row_at(const mlmx_anova *a, int i)
{
    return a && i >= 0 && i < a->nrows ? &a->rows[i] : NULL;
}

int mlmx_anova_refitted(const mlmx_anova *a) { return a ? a->refitted : 0; }
int mlmx_anova_nwarnings(const mlmx_anova *a) { return a ? a->nwarnings : 0; }

const char *mlmx_anova_warning(const mlmx_anova *a, int i)
{
    return a && i >= 0 && i < a->nwarnings ? a->warnings[i] : NULL;
}

/* ---- the LR test against the model without random effects ---- */

mlmx_status mlmx_fit_lrt_linear(const mlmx_fit *f, double *chi2, int *df, double *p)
{
    mlmx_api_clear();
    if (!f || !chi2 || !df || !p)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_lrt_linear: bad argument");
    if (mlmx_infer_iid(f, "the LR test against the linear model"))
        return MLMX_ERR_UNSUPPORTED;
    double ll0 = f->loglik_glm;
    if (f->family == MLMX_FAMILY_GAUSSIAN) {
        mlmx_status st = mlmx_cmp_lm_loglik(f->model, f->method == MLMX_REML, &ll0);
        if (st)
            return mlmx_api_failf(st, st == MLMX_ERR_NOMEM
                                          ? "out of memory"
                                          : "LR test vs. linear model: the linear model "
                                            "cannot be fitted (no residual degrees of freedom)");
    }
    const double d = 2.0 * (f->loglik - ll0);
    *chi2 = d > 0 ? d : 0.0;
    *df = mlmx_model_ncov(f->model);
    *p = *df == 1 ? mlmx_cmp_chibar01(*chi2) : mlmx_chi2_sf(*chi2, *df);
    return MLMX_OK;
}

mlmx_status mlmx_fit_lrt_linear_text(const mlmx_fit *f, char **text)
{
    mlmx_api_clear();
    if (!f || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_lrt_linear_text: bad argument");
    double chi2, p;
    int df;
    mlmx_status st = mlmx_fit_lrt_linear(f, &chi2, &df, &p);
    if (st)
        return st;
    const char *what = f->family == MLMX_FAMILY_GAUSSIAN ? "linear model" : "model without "
                                                                              "random effects";
    *text = df == 1 ? mlmx_asprintf("LR test vs. %s: chibar2(01) = %.2f, Prob >= chibar2 = "
                                    "%.4f\n", what, chi2, p)
                    : mlmx_asprintf("LR test vs. %s: chi2(%d) = %.2f, Prob > chi2 = %.4f\n"
                                    "Note: LR test is conservative and provided only for "
                                    "reference (variances are bounded at 0).\n",
                                    what, df, chi2, p);
    return *text ? MLMX_OK : mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
}
