/* The library's front door for models and fits: argument checks, error
 * recording, accessors. The work is done in host/model and host/lmm. */
#include <math.h>
#include <stdlib.h>

#include "api_internal.h"
#include "glmm/glmm.h"
#include "glmm/glmm_fit.h"
#include "lmm/fit.h"
#include "model/model.h"

mlmx_status mlmx_model_create(const mlmx_data *d, const char *formula, mlmx_model **out)
{
    mlmx_api_clear();
    if (!out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_model_create: out is NULL");
    *out = NULL;
    if (!d || !formula)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_model_create: data or formula is NULL");
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = mlmx_model_build(d, formula, NULL, out, &e);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}

mlmx_status mlmx_model_create_weighted(const mlmx_data *d, const char *formula,
                                       const char *weights, mlmx_model **out)
{
    mlmx_api_clear();
    if (!out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_model_create_weighted: out is NULL");
    *out = NULL;
    if (!d || !formula)
        return mlmx_api_failf(MLMX_ERR_ARG,
                              "mlmx_model_create_weighted: data or formula is NULL");
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = mlmx_model_build(d, formula, weights, out, &e);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}

void mlmx_model_free(mlmx_model *m) { mlmx_model_destroy(m); }

size_t mlmx_model_nobs(const mlmx_model *m) { return m ? m->n : 0; }
size_t mlmx_model_ndropped(const mlmx_model *m) { return m ? m->n_dropped : 0; }
int mlmx_model_nfixef(const mlmx_model *m) { return m ? m->p : 0; }
const char *mlmx_model_fixef_name(const mlmx_model *m, int j)
{
    return m && j >= 0 && j < m->p ? m->fixef_names[j] : NULL;
}
int mlmx_model_ntheta(const mlmx_model *m) { return m ? m->ntheta : 0; }
const char *mlmx_model_theta_name(const mlmx_model *m, int j)
{
    return m && j >= 0 && j < m->ntheta ? m->theta_names[j] : NULL;
}
int mlmx_model_nterms(const mlmx_model *m) { return m ? m->K : 0; }
const char *mlmx_model_term_group(const mlmx_model *m, int k)
{
    return m && k >= 0 && k < m->K ? m->re[k].group : NULL;
}
const char *mlmx_model_term_name(const mlmx_model *m, int k)
{
    return m && k >= 0 && k < m->K ? m->re[k].vcname : NULL;
}
int mlmx_model_term_nlevels(const mlmx_model *m, int k)
{
    return m && k >= 0 && k < m->K ? m->re[k].nlevels : 0;
}
int mlmx_model_term_q(const mlmx_model *m, int k)
{
    return m && k >= 0 && k < m->K ? m->re[k].q : 0;
}
const char *mlmx_model_term_column(const mlmx_model *m, int k, int c)
{
    return m && k >= 0 && k < m->K && c >= 0 && c < m->re[k].q ? m->re[k].colnames[c] : NULL;
}
const char *mlmx_model_term_level(const mlmx_model *m, int k, int l)
{
    return m && k >= 0 && k < m->K && l >= 0 && l < m->re[k].nlevels ? m->re[k].levels[l] : NULL;
}
int mlmx_model_nmessages(const mlmx_model *m) { return m ? m->nmessages : 0; }
const char *mlmx_model_message(const mlmx_model *m, int i)
{
    return m && i >= 0 && i < m->nmessages ? m->messages[i] : NULL;
}

mlmx_status mlmx_lmm_criterion_at(const mlmx_model *m, mlmx_method method, const double *theta,
                                  double *value)
{
    mlmx_api_clear();
    if (!m || !theta || !value)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_lmm_criterion_at: NULL argument");
    if (m->resid)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "mlmx_lmm_criterion_at: the model has a residual structure, whose "
                              "parameters it does not take");
    for (int t = 0; t < m->ntheta; t++)
        if (!isfinite(theta[t]) || theta[t] < m->theta_lower[t])
            return mlmx_api_failf(MLMX_ERR_ARG, "theta[%d] = %g is outside its bounds", t,
                                  theta[t]);
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_lmm_stats *s = NULL;
    mlmx_lmm_work *w = NULL;
    mlmx_status st = mlmx_lmm_stats_build(m, &s, &e);
    if (!st)
        st = mlmx_lmm_work_alloc(s, &w, &e);
    if (!st)
        st = mlmx_lmm_eval(s, mlmx_backend_cpu(), theta, method == MLMX_REML, w, value, &e);
    mlmx_lmm_work_free(w);
    mlmx_lmm_stats_free(s);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}

mlmx_status mlmx_fit_lmm(const mlmx_model *m, const mlmx_fit_options *o, mlmx_fit **out)
{
    mlmx_api_clear();
    if (!out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_lmm: out is NULL");
    *out = NULL;
    if (!m)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_lmm: model is NULL");
    mlmx_fit_options def;
    mlmx_fit_options_default(&def);
    if (!o)
        o = &def;
    if (o->optimizer != MLMX_OPTIM_AUTO && o->optimizer != MLMX_OPTIM_BOBYQA &&
        o->optimizer != MLMX_OPTIM_QUASI_NEWTON)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_lmm: unknown optimizer %d",
                              (int)o->optimizer);
    if (o->method != MLMX_REML && o->method != MLMX_ML)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_lmm: unknown method %d", (int)o->method);
    if (o->theta_start)
        for (int t = 0; t < m->ntheta; t++)
            if (!isfinite(o->theta_start[t]))
                return mlmx_api_failf(MLMX_ERR_ARG, "theta_start[%d] is not finite", t);
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = mlmx_lmm_fit_internal(m, o, out, &e);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}

mlmx_status mlmx_fit_glmm(const mlmx_model *m, const mlmx_fit_options *o, mlmx_fit **out)
{
    mlmx_api_clear();
    if (!out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_glmm: out is NULL");
    *out = NULL;
    if (!m || !o)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_glmm: NULL model or options");
    if (o->family != MLMX_FAMILY_BINOMIAL && o->family != MLMX_FAMILY_POISSON &&
        o->family != MLMX_FAMILY_NEGBIN && o->family != MLMX_FAMILY_ORDINAL)
        return mlmx_api_failf(MLMX_ERR_ARG,
                              "mlmx_fit_glmm: family %d is not a GLMM family (use mlmx_fit_lmm "
                              "for a Gaussian response)",
                              (int)o->family);
    if (o->link < MLMX_LINK_DEFAULT || o->link > MLMX_LINK_LOG)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_glmm: unknown link %d", (int)o->link);
    if (o->theta_start)
        for (int t = 0; t < m->ntheta; t++)
            if (!isfinite(o->theta_start[t]))
                return mlmx_api_failf(MLMX_ERR_ARG, "theta_start[%d] is not finite", t);
    if (m->resid)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "a residual correlation or variance structure is for linear mixed "
                              "models (Gaussian response); a %s GLMM has no residual of that kind "
                              "(use a structured random-effect term instead)",
                              mlmx_family_name(o->family));
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = mlmx_glmm_fit_internal(m, o, out, &e);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}

mlmx_status mlmx_glmm_deviance_at(const mlmx_model *m, const mlmx_fit_options *o,
                                  const double *theta, const double *beta, double *value)
{
    return mlmx_glmm_deviance_at_ex(m, o, theta, beta, NULL, value);
}

mlmx_status mlmx_glmm_deviance_at_ex(const mlmx_model *m, const mlmx_fit_options *o,
                                     const double *theta, const double *beta,
                                     const double *extra, double *value)
{
    mlmx_api_clear();
    if (!m || !o || !theta || (!beta && m->p) || !value)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_glmm_deviance_at: NULL argument");
    for (int t = 0; t < m->ntheta; t++)
        if (!isfinite(theta[t]) || theta[t] < m->theta_lower[t])
            return mlmx_api_failf(MLMX_ERR_ARG, "theta[%d] = %g is outside its bounds", t,
                                  theta[t]);
    if (o->nagq < 0 || o->nagq > 100)
        return mlmx_api_failf(MLMX_ERR_ARG, "nagq %d out of range (0..100)", o->nagq);
    if ((o->family == MLMX_FAMILY_ORDINAL || o->family == MLMX_FAMILY_NEGBIN) && !extra)
        return mlmx_api_failf(MLMX_ERR_ARG,
                              "mlmx_glmm_deviance_at: the %s family needs its %s (use "
                              "mlmx_glmm_deviance_at_ex)",
                              mlmx_family_name(o->family),
                              o->family == MLMX_FAMILY_ORDINAL ? "thresholds" : "size");
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_glmm *g = NULL;
    double *bfull = NULL;
    mlmx_status st = mlmx_glmm_create(m, o->family, o->link, mlmx_backend_cpu(), &g, &e);
    if (!st && o->family == MLMX_FAMILY_ORDINAL) {
        for (int k = 0; k < g->ncat - 1 && !st; k++) {
            if (!isfinite(extra[k]) || (k > 0 && !(extra[k] > extra[k - 1])))
                st = mlmx_err_set(&e, MLMX_ERR_ARG,
                                  "thresholds must be finite and increasing (threshold %d is %g)",
                                  k + 1, extra[k]);
            g->thr[k] = extra[k];
        }
        /* the intercept column is not a parameter of an ordinal model */
        bfull = malloc((m->p ? (size_t)m->p : 1) * sizeof *bfull);
        if (!st && !bfull)
            st = mlmx_err_set(&e, MLMX_ERR_NOMEM, "out of memory");
        for (int j = 0; !st && j < m->p; j++)
            bfull[j] = j == g->int_col ? 0.0 : beta[j];
        beta = bfull;
    } else if (!st && o->family == MLMX_FAMILY_NEGBIN) {
        if (!(extra[0] > 0) || !isfinite(extra[0]))
            st = mlmx_err_set(&e, MLMX_ERR_ARG, "the NB2 size must be positive (it is %g)",
                              extra[0]);
        g->nb_size = extra[0];
    }
    if (!st)
        st = o->nagq > 1 ? mlmx_glmm_agq(g, theta, beta, o->nagq, value, &e)
                         : mlmx_glmm_laplace(g, theta, beta, value, &e);
    mlmx_glmm_free(g);
    free(bfull);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}

mlmx_family mlmx_fit_family(const mlmx_fit *f) { return f ? f->family : MLMX_FAMILY_GAUSSIAN; }
mlmx_link mlmx_fit_link(const mlmx_fit *f) { return f ? f->link : MLMX_LINK_DEFAULT; }
int mlmx_fit_nagq(const mlmx_fit *f) { return f ? f->nagq : 0; }
int mlmx_fit_nthresholds(const mlmx_fit *f) { return f ? f->nthr : 0; }
const double *mlmx_fit_thresholds(const mlmx_fit *f) { return f && f->nthr ? f->thr : NULL; }
const double *mlmx_fit_threshold_se(const mlmx_fit *f) { return f && f->nthr ? f->thr_se : NULL; }
const char *mlmx_fit_threshold_name(const mlmx_fit *f, int k)
{
    return f && k >= 0 && k < f->nthr ? f->thr_names[k] : NULL;
}
double mlmx_fit_dispersion(const mlmx_fit *f)
{
    return f && f->family == MLMX_FAMILY_NEGBIN ? f->nb_size : NAN;
}
double mlmx_fit_dispersion_log_se(const mlmx_fit *f)
{
    return f && f->family == MLMX_FAMILY_NEGBIN ? f->nb_logsize_se : NAN;
}

const char *mlmx_family_name(mlmx_family fam)
{
    switch (fam) {
    case MLMX_FAMILY_GAUSSIAN:
        return "gaussian";
    case MLMX_FAMILY_BINOMIAL:
        return "binomial";
    case MLMX_FAMILY_POISSON:
        return "poisson";
    case MLMX_FAMILY_NEGBIN:
        return "negbin";
    case MLMX_FAMILY_ORDINAL:
        return "ordinal";
    }
    return "unknown";
}

const char *mlmx_link_name(mlmx_link link)
{
    switch (link) {
    case MLMX_LINK_DEFAULT:
        return "default";
    case MLMX_LINK_LOGIT:
        return "logit";
    case MLMX_LINK_PROBIT:
        return "probit";
    case MLMX_LINK_CLOGLOG:
        return "cloglog";
    case MLMX_LINK_LOG:
        return "log";
    }
    return "unknown";
}

const mlmx_model *mlmx_fit_model(const mlmx_fit *f) { return f ? f->model : NULL; }
mlmx_method mlmx_fit_method(const mlmx_fit *f) { return f ? f->method : MLMX_REML; }
int mlmx_fit_converged(const mlmx_fit *f) { return f ? f->converged : 0; }
int mlmx_fit_singular(const mlmx_fit *f) { return f ? f->singular : 0; }
int mlmx_fit_n_evaluations(const mlmx_fit *f) { return f ? f->n_evals : 0; }
const char *mlmx_fit_message(const mlmx_fit *f) { return f ? f->message : ""; }
const char *mlmx_fit_warning(const mlmx_fit *f) { return f ? f->warning : ""; }
const char *mlmx_fit_optimizer(const mlmx_fit *f) { return f ? f->optimizer : ""; }
const char *mlmx_fit_device(const mlmx_fit *f) { return f ? f->device : ""; }
const char *mlmx_fit_device_note(const mlmx_fit *f) { return f ? f->device_note : ""; }
double mlmx_fit_criterion(const mlmx_fit *f) { return f ? f->criterion : NAN; }
double mlmx_fit_loglik(const mlmx_fit *f) { return f ? f->loglik : NAN; }
double mlmx_fit_aic(const mlmx_fit *f) { return f ? f->aic : NAN; }
double mlmx_fit_bic(const mlmx_fit *f) { return f ? f->bic : NAN; }
int mlmx_fit_df(const mlmx_fit *f) { return f ? f->df : 0; }
double mlmx_fit_sigma(const mlmx_fit *f) { return f ? f->sigma : NAN; }
double mlmx_fit_fit_seconds(const mlmx_fit *f) { return f ? f->seconds : NAN; }
const double *mlmx_fit_theta(const mlmx_fit *f) { return f ? f->theta : NULL; }
int mlmx_fit_npsi(const mlmx_fit *f) { return f ? mlmx_model_ncov(f->model) : 0; }
const double *mlmx_fit_psi(const mlmx_fit *f) { return f ? f->psi : NULL; }
const char *mlmx_fit_psi_name(const mlmx_fit *f, int k)
{
    if (!f || k < 0 || k >= mlmx_model_ncov(f->model))
        return "";
    return f->model->nstructured ? f->model->psi_names[k] : f->model->theta_names[k];
}
const double *mlmx_fit_beta(const mlmx_fit *f) { return f ? f->beta : NULL; }
const double *mlmx_fit_se(const mlmx_fit *f) { return f ? f->se : NULL; }
const double *mlmx_fit_vcov(const mlmx_fit *f) { return f ? f->vcov : NULL; }
const double *mlmx_fit_fitted(const mlmx_fit *f) { return f ? f->fitted : NULL; }
const double *mlmx_fit_residuals(const mlmx_fit *f) { return f ? f->resid : NULL; }
const double *mlmx_fit_ranef(const mlmx_fit *f, int k)
{
    return f && k >= 0 && k < f->model->K ? f->ranef[k] : NULL;
}
const double *mlmx_fit_ranef_condsd(const mlmx_fit *f, int k)
{
    return f && f->have_condsd && k >= 0 && k < f->model->K ? f->condsd[k] : NULL;
}

mlmx_status mlmx_fit_term_covariance(const mlmx_fit *f, int k, double *cov)
{
    mlmx_api_clear();
    if (!f || !cov || k < 0 || k >= f->model->K)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_term_covariance: bad argument");
    const mlmx_reterm_info *r = &f->model->re[k];
    int q = r->q;
    const double *th = f->theta + r->theta_offset;
    double t[16 * 16];
    int idx = 0;
    for (int j = 0; j < q; j++)
        for (int i = 0; i < q; i++)
            t[i + j * q] = i >= j ? th[idx++] : 0.0;
    double s2 = f->sigma * f->sigma;
    for (int a = 0; a < q; a++)
        for (int b = 0; b < q; b++) {
            double v = 0;
            for (int c = 0; c < q; c++)
                v += t[a + c * q] * t[b + c * q];
            cov[a + b * q] = s2 * v;
        }
    return MLMX_OK;
}

void mlmx_string_free(char *s) { free(s); }
