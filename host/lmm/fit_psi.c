#define _POSIX_C_SOURCE 200809L
/* The LMM fit of a model with structured random-effect covariances
 * (host/model/covstruct.c): BOBYQA over psi inside its box, theta = T's
 * entries computed from psi before each evaluation of the profiled
 * criterion, and the gradient at the optimum by the chain rule. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmm/fit.h"
#include "lmm/fit_psi.h"
#include "optim/optim.h"

typedef struct psi_obj {
    mlmx_lmm_obj *c;
    const mlmx_model *md;
    double *theta;
} psi_obj;

static double psi_objective(int n, const double *psi, void *ctx)
{
    (void)n;
    psi_obj *p = ctx;
    if (mlmx_model_psi_to_theta(p->md, psi, p->theta) != 0) {
        p->c->n_evals++;
        return HUGE_VAL; /* a Toeplitz correlation that is not positive semi-definite */
    }
    return mlmx_lmm_obj_value(p->md->ntheta, p->theta, p->c);
}

mlmx_status mlmx_lmm_optimize_psi(mlmx_fit *f, mlmx_lmm_obj *c, const mlmx_optim_opts *oo,
                                  mlmx_optim_result *res, mlmx_error *err)
{
    const mlmx_model *md = f->model;
    psi_obj p = {c, md, f->theta};
    memcpy(f->psi, md->psi_start, (size_t)md->npsi * sizeof *f->psi);
    snprintf(f->optimizer, sizeof f->optimizer, "BOBYQA");
    mlmx_status st = mlmx_optim_bobyqa(md->npsi, f->psi, md->psi_lower, md->psi_upper,
                                       psi_objective, &p, oo, res, err);
    if (st == MLMX_OK && mlmx_model_psi_to_theta(md, f->psi, f->theta) != 0)
        st = mlmx_err_set(err, MLMX_ERR_NUMERIC,
                          "the optimizer stopped where a structured covariance is not "
                          "positive semi-definite");
    return st;
}

mlmx_status mlmx_lmm_psi_gradient(mlmx_fit *f, mlmx_lmm_obj *c, double crit)
{
    const mlmx_model *md = f->model;
    f->grad_max = NAN;
    if (f->singular || c->s->m > 500)
        return MLMX_OK;
    double *gt = malloc((size_t)(md->ntheta + md->npsi) * sizeof *gt);
    if (!gt)
        return MLMX_ERR_NOMEM;
    double *gp = gt + md->ntheta;
    if (mlmx_lmm_grad(c->s, c->w, c->reml, gt) == MLMX_OK &&
        mlmx_model_grad_psi(md, f->psi, gt, gp) == 0) {
        f->grad_max = 0.0;
        for (int j = 0; j < md->npsi; j++) {
            /* a parameter on its bound need not have a zero derivative */
            int at_bound = f->psi[j] <= md->psi_lower[j] + 1e-8 ||
                           f->psi[j] >= md->psi_upper[j] - 1e-8;
            if (!at_bound)
                f->grad_max = fmax(f->grad_max, fabs(gp[j]));
        }
        double tol = 2e-3 * fmax(1.0, fabs(crit) / 1000.0);
        if (f->converged && f->grad_max > tol) {
            f->converged = 0;
            snprintf(f->message, sizeof f->message,
                     "the optimizer stopped where the criterion's gradient is %.3g "
                     "(tolerance %.3g)",
                     f->grad_max, tol);
        }
    }
    free(gt);
    return MLMX_OK;
}
