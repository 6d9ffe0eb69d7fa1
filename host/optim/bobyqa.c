#include <math.h>
#include <nlopt.h>
#include <stdio.h>
#include <string.h>

#include "optim/optim.h"

void mlmx_optim_opts_default(mlmx_optim_opts *o)
{
    o->ftol_abs = 1e-10;
    o->ftol_rel = 1e-13;
    o->xtol_rel = 1e-8;
    o->xtol_abs = 1e-10;
    o->max_evals = 100000;
    o->init_step = 0.0;
    o->gtol = 1e-9;
    o->hinv0 = NULL;
}

typedef struct wrap {
    mlmx_objective f;
    void *ctx;
    int n_evals;
} wrap;

static double nlopt_obj(unsigned n, const double *x, double *grad, void *data)
{
    (void)grad;
    wrap *w = data;
    w->n_evals++;
    double v = w->f((int)n, x, w->ctx);
    /* BOBYQA has no notion of an infeasible point: a huge finite value
     * pushes it back into the region where the criterion is defined. */
    return isfinite(v) ? v : 1e300;
}

static mlmx_status finish_result(nlopt_result res, double fmin, int n_evals, int max_evals,
                                 mlmx_optim_result *r, mlmx_error *err)
{
    r->fmin = fmin;
    r->n_evals = n_evals;
    switch (res) {
    case NLOPT_SUCCESS:
    case NLOPT_STOPVAL_REACHED:
    case NLOPT_FTOL_REACHED:
    case NLOPT_XTOL_REACHED:
        r->converged = 1;
        snprintf(r->message, sizeof r->message, "converged (%s)",
                 res == NLOPT_FTOL_REACHED ? "ftol" : res == NLOPT_XTOL_REACHED ? "xtol" : "ok");
        return MLMX_OK;
    case NLOPT_MAXEVAL_REACHED:
        snprintf(r->message, sizeof r->message, "stopped after the maximum of %d evaluations",
                 max_evals);
        return MLMX_OK;
    case NLOPT_MAXTIME_REACHED:
        snprintf(r->message, sizeof r->message, "stopped at the time limit");
        return MLMX_OK;
    case NLOPT_ROUNDOFF_LIMITED:
        /* progress limited by rounding: the point is as good as it gets */
        r->converged = 1;
        snprintf(r->message, sizeof r->message, "converged (round-off limited)");
        return MLMX_OK;
    default:
        snprintf(r->message, sizeof r->message, "optimizer failed (NLopt code %d)", (int)res);
        return mlmx_err_set(err, MLMX_ERR_NUMERIC, "optimizer failed (NLopt code %d)", (int)res);
    }
}

mlmx_status mlmx_optim_bobyqa(int n, double *x, const double *lb, const double *ub,
                              mlmx_objective f, void *ctx, const mlmx_optim_opts *o,
                              mlmx_optim_result *r, mlmx_error *err)
{
    memset(r, 0, sizeof *r);
    if (n <= 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "optimizer: no parameters");
    nlopt_opt opt = nlopt_create(NLOPT_LN_BOBYQA, (unsigned)n);
    if (!opt)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "optimizer: cannot create NLopt object");
    wrap w = {f, ctx, 0};
    if (lb)
        nlopt_set_lower_bounds(opt, lb);
    if (ub)
        nlopt_set_upper_bounds(opt, ub);
    nlopt_set_min_objective(opt, nlopt_obj, &w);
    nlopt_set_ftol_abs(opt, o->ftol_abs);
    nlopt_set_ftol_rel(opt, o->ftol_rel);
    nlopt_set_xtol_rel(opt, o->xtol_rel);
    nlopt_set_xtol_abs1(opt, o->xtol_abs);
    nlopt_set_maxeval(opt, o->max_evals);
    if (o->init_step > 0)
        nlopt_set_initial_step1(opt, o->init_step);
    double fmin = HUGE_VAL;
    nlopt_result res = nlopt_optimize(opt, x, &fmin);
    nlopt_destroy(opt);
    return finish_result(res, fmin, w.n_evals, o->max_evals, r, err);
}
