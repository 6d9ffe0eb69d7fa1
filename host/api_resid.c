/* Public entry points of the residual structures (host/resid). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "lmm/fit.h"
#include "model/model.h"
#include "resid/resid.h"

mlmx_status mlmx_model_set_residual(mlmx_model *m, const mlmx_data *d, const char *correlation,
                                    const char *variance)
{
    mlmx_api_clear();
    if (!m || !d)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_model_set_residual: model or data is NULL");
    if (m->K < 1)
        return mlmx_api_failf(MLMX_ERR_MODEL, "a residual structure needs a model with a "
                                              "random-effect term");
    for (size_t i = 0; i < m->n; i++)
        if (m->rows[i] >= d->nrow)
            return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_model_set_residual: the data are not "
                                                "the model's (row %zu is beyond its %zu rows)",
                                  m->rows[i] + 1, d->nrow);
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_resid *r = NULL;
    mlmx_status st = mlmx_resid_build(d, m->rows, m->n, correlation, variance, m->re[0].group,
                                      &r, &e);
    if (st)
        return mlmx_api_fail(&e);
    if (r && r->time_truncated) {
        char buf[512];
        snprintf(buf, sizeof buf,
                 "%s: the time '%s' has values that are not whole numbers; they were truncated "
                 "to integers, as nlme does (car1(~ %s | %s) takes continuous time)",
                 r->corr_text, r->corr_time, r->corr_time, r->corr_group);
        if (mlmx_model_add_message(m, strdup(buf), &e) != MLMX_OK) {
            mlmx_resid_free(r);
            return mlmx_api_fail(&e);
        }
    }
    mlmx_resid_free(m->resid);
    m->resid = r;
    return MLMX_OK;
}

const char *mlmx_model_correlation(const mlmx_model *m)
{
    return m && m->resid && m->resid->corr != MLMX_CORR_NONE ? m->resid->corr_text : NULL;
}

const char *mlmx_model_variance(const mlmx_model *m)
{
    return m && m->resid && m->resid->var != MLMX_VAR_NONE ? m->resid->var_text : NULL;
}

int mlmx_model_nresid_par(const mlmx_model *m) { return m && m->resid ? m->resid->npar : 0; }

const char *mlmx_model_resid_par_name(const mlmx_model *m, int k)
{
    return k >= 0 && k < mlmx_model_nresid_par(m) ? m->resid->par_names[k] : NULL;
}

int mlmx_fit_nresid_par(const mlmx_fit *f)
{
    return f && f->rpar && f->model->resid ? f->model->resid->npar : 0;
}

double mlmx_fit_resid_par(const mlmx_fit *f, int k)
{
    return k >= 0 && k < mlmx_fit_nresid_par(f) ? f->rpar[k] : NAN;
}

const char *mlmx_fit_resid_par_name(const mlmx_fit *f, int k)
{
    return k >= 0 && k < mlmx_fit_nresid_par(f) ? f->model->resid->par_names[k] : NULL;
}
