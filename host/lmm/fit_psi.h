/* LMM fits over the covariance parameters psi of a model with structured
 * random-effect covariances (host/lmm/fit_psi.c). */
#ifndef MLMX_LMM_FIT_PSI_H
#define MLMX_LMM_FIT_PSI_H
#include "lmm/fit.h"
#include "optim/optim.h"

/* Minimise the criterion over psi from the model's start, inside its box;
 * psi and theta (from psi) left in f. */
mlmx_status mlmx_lmm_optimize_psi(mlmx_fit *f, mlmx_lmm_obj *c, const mlmx_optim_opts *oo,
                                  mlmx_optim_result *res, mlmx_error *err);
/* f->grad_max over psi's interior entries at the optimum (the factor in
 * c->w is at f->theta), from the theta gradient by the chain rule; an
 * interior gradient above lme4's tolerance marks the fit not converged.
 * NaN (no check) at a singular fit or for large random-effect systems. */
mlmx_status mlmx_lmm_psi_gradient(mlmx_fit *f, mlmx_lmm_obj *c, double crit);

#endif
