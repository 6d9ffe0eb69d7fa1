/* Prediction from a saved model on new data (docs/inference.md, "Saved
 * models and prediction"): the model-matrix rows of the new data coded by
 * the model's recipe (host/model/recipe.c), the linear predictor with or
 * without the conditional modes (lme4's re.form = NULL / NA, unseen levels
 * at b = 0 as allow.new.levels = TRUE), the response scale by the inverse
 * link, and the standard error of the fixed-effect part. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "glmm_math.h"
#include "model/eval.h"
#include "model/model.h"
#include "output/modelfile.h"

void mlmx_predict_options_default(mlmx_predict_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->re = MLMX_PREDICT_RE_ALL;
    o->type = MLMX_PREDICT_LINK;
}

typedef struct lev_ix {
    const char *s;
    int i;
} lev_ix;

static int lev_cmp(const void *a, const void *b)
{
    return strcmp(((const lev_ix *)a)->s, ((const lev_ix *)b)->s);
}

/* Add term t's contribution z b to eta; rows whose level the model did not
 * see get b = 0 and are flagged in isnew; a missing grouping value gives NaN. */
static mlmx_status add_term(const mlmx_model_file *m, const mlmx_mf_term *t,
                            const mlmx_reterm *rt, const mlmx_data *d, double *eta,
                            unsigned char *isnew, mlmx_error *err)
{
    size_t n = d->nrow;
    int *codes = malloc((n ? n : 1) * sizeof *codes);
    double *Z = malloc((n ? n : 1) * (size_t)(t->q ? t->q : 1) * sizeof *Z);
    lev_ix *ix = malloc((size_t)(t->nlevels ? t->nlevels : 1) * sizeof *ix);
    int *map = NULL;
    char **lev = NULL;
    int nlev = 0;
    mlmx_status st = MLMX_OK;
    if (!codes || !Z || !ix)
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    if (!st)
        st = mlmx_group_eval(rt->group, rt->ngroup, d, codes, &lev, &nlev, err);
    if (!st)
        st = mlmx_model_columns_for(&rt->lhs, d, &m->recipe, t->colnames, t->q, Z, err);
    if (!st && !(map = malloc((size_t)(nlev ? nlev : 1) * sizeof *map)))
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    if (!st) {
        for (int l = 0; l < t->nlevels; l++)
            ix[l] = (lev_ix){t->levels[l], l};
        qsort(ix, (size_t)t->nlevels, sizeof *ix, lev_cmp);
        for (int l = 0; l < nlev; l++) {
            lev_ix key = {lev[l], 0};
            const lev_ix *hit = bsearch(&key, ix, (size_t)t->nlevels, sizeof *ix, lev_cmp);
            map[l] = hit ? hit->i : -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (codes[i] < 0) {
                eta[i] = NAN;
                continue;
            }
            int l = map[codes[i]];
            if (l < 0) {
                isnew[i] = 1;
                continue;
            }
            const double *b = t->modes + (size_t)l * (size_t)t->q;
            for (int c = 0; c < t->q; c++)
                eta[i] += Z[(size_t)c * n + i] * b[c];
        }
    }
    mlmx_levels_free(lev, nlev);
    free(map);
    free(ix);
    free(Z);
    free(codes);
    return st;
}

/* sqrt(x_i^T V x_i) for each row of X (n x p, column-major). */
static void fixef_se(const mlmx_model_file *m, const double *X, size_t n, double *se)
{
    const int p = m->p;
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < p; j++) {
            double vx = 0.0;
            for (int k = 0; k < p; k++)
                vx += m->vcov[(size_t)j * (size_t)p + (size_t)k] * X[(size_t)k * n + i];
            s += X[(size_t)j * n + i] * vx;
        }
        se[i] = sqrt(fmax(s, 0.0));
        if (isnan(s))
            se[i] = NAN;
    }
}

static mlmx_status check_args(const mlmx_model_file *m, const mlmx_data *d,
                              const mlmx_predict_options *o, const double *fit, const double *se)
{
    if (!m || !d || !o || !fit)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_predict: a model, data, options and an "
                                            "output array are needed");
    if ((o->re != MLMX_PREDICT_RE_NONE && o->re != MLMX_PREDICT_RE_ALL) ||
        (o->type != MLMX_PREDICT_LINK && o->type != MLMX_PREDICT_RESPONSE))
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_predict: re and type out of range");
    if (m->family == MLMX_FAMILY_ORDINAL && (o->type == MLMX_PREDICT_RESPONSE || se))
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "predict: an ordinal model gives the linear predictor only "
                              "(type link, no standard errors)");
    return MLMX_OK;
}

mlmx_status mlmx_predict(const mlmx_model_file *m, const mlmx_data *d,
                         const mlmx_predict_options *o, double *fit, double *se, size_t *n_new)
{
    mlmx_api_clear();
    mlmx_status st = check_args(m, d, o, fit, se);
    if (st)
        return st;
    mlmx_error err = {MLMX_OK, ""};
    mlmx_formula *f = NULL;
    size_t n = d->nrow;
    const int p = m->p;
    double *X = malloc((n ? n : 1) * (size_t)(p ? p : 1) * sizeof *X);
    unsigned char *isnew = calloc(n ? n : 1, 1);
    if (!X || !isnew)
        st = mlmx_err_set(&err, MLMX_ERR_NOMEM, "out of memory");
    if (!st)
        st = mlmx_formula_parse(m->formula, &f, &err);
    if (!st)
        st = mlmx_model_columns_for(&f->fixed, d, &m->recipe, m->fixef_names, p, X, &err);
    if (!st) {
        for (size_t i = 0; i < n; i++) {
            double v = 0.0;
            for (int j = 0; j < p; j++)
                v += X[(size_t)j * n + i] * m->beta[j];
            fit[i] = v;
        }
        if (f->offset) {
            double *off = malloc((n ? n : 1) * sizeof *off);
            st = off ? mlmx_var_eval_numeric(f->offset, d, off, &err)
                     : mlmx_err_set(&err, MLMX_ERR_NOMEM, "out of memory");
            for (size_t i = 0; !st && i < n; i++)
                fit[i] += off[i];
            free(off);
        }
    }
    for (int k = 0; !st && o->re == MLMX_PREDICT_RE_ALL && k < m->K; k++) {
        const mlmx_mf_term *t = &m->terms[k];
        if (t->formula_index < 0 || t->formula_index >= f->nre)
            st = mlmx_err_set(&err, MLMX_ERR_PARSE, "model file: term %d does not match the "
                              "formula '%s'", k + 1, m->formula);
        else
            st = add_term(m, t, &f->re[t->formula_index], d, fit, isnew, &err);
    }
    if (!st && se)
        fixef_se(m, X, n, se);
    if (!st && o->type == MLMX_PREDICT_RESPONSE && m->family != MLMX_FAMILY_GAUSSIAN) {
        int link = m->family == MLMX_FAMILY_BINOMIAL ? (int)m->link : MLMX_LINK_LOG;
        for (size_t i = 0; i < n; i++) {
            double eta = fit[i];
            fit[i] = isnan(eta) ? NAN : mlmx_gm_linkinv(link, eta);
            if (se)
                se[i] *= isnan(eta) ? NAN : fabs(mlmx_gm_mu_eta(link, eta));
        }
    }
    if (!st && n_new) {
        *n_new = 0;
        for (size_t i = 0; i < n; i++)
            *n_new += isnew[i];
    }
    mlmx_formula_free(f);
    free(X);
    free(isnew);
    if (st) {
        if (!err.code)
            err.code = st;
        if (err.code == MLMX_ERR_DATA)
            return mlmx_api_failf(err.code, "newdata: %s", err.msg);
        return mlmx_api_fail(&err);
    }
    return MLMX_OK;
}

/* ---- a fit at a saved model's estimates --------------------------------- */

mlmx_status mlmx_model_file_fit(const mlmx_model *m, const mlmx_model_file *mf,
                                const mlmx_fit_options *o, mlmx_fit **out)
{
    mlmx_api_clear();
    if (!m || !mf || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_model_file_fit: a model and a model file "
                                            "are needed");
    *out = NULL;
    if (mf->family != MLMX_FAMILY_GAUSSIAN)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "starting from a saved %s model is not done yet (linear mixed "
                              "models only): give --formula and --family instead of --model",
                              mlmx_family_name(mf->family));
    int same = strcmp(m->formula, mf->formula) == 0 && m->p == mf->p &&
               m->ntheta == mf->ntheta && m->K == mf->K && (double)m->n == mf->nobs;
    for (int j = 0; same && j < m->p; j++)
        same = strcmp(m->fixef_names[j], mf->fixef_names[j]) == 0;
    if (!same)
        return mlmx_api_failf(MLMX_ERR_DATA,
                              "the model built from the data (%zu observations, %d fixed "
                              "effects) is not the saved one (%.0f observations, %d fixed "
                              "effects)",
                              m->n, m->p, mf->nobs, mf->p);
    mlmx_fit_options fo;
    if (o)
        fo = *o;
    else
        mlmx_fit_options_default(&fo);
    fo.family = MLMX_FAMILY_GAUSSIAN;
    fo.method = mf->method;
    fo.theta_start = mf->theta;
    fo.max_evaluations = 1; /* beta, sigma and the modes profiled at the saved theta */
    mlmx_status st = mlmx_fit_lmm(m, &fo, out);
    if (st)
        return st;
    const double *beta = mlmx_fit_beta(*out);
    for (int j = 0; j < m->p; j++) {
        double se = sqrt(fabs(mf->vcov[(size_t)j * (size_t)m->p + (size_t)j]));
        if (!(fabs(beta[j] - mf->beta[j]) <= 1e-8 * fmax(fabs(mf->beta[j]), se))) {
            st = mlmx_api_failf(MLMX_ERR_DATA,
                                "the data give %s = %.10g at the saved theta, the saved model "
                                "%.10g: not the data it was fitted to",
                                m->fixef_names[j], beta[j], mf->beta[j]);
            mlmx_fit_free(*out);
            *out = NULL;
            return st;
        }
    }
    return MLMX_OK;
}
