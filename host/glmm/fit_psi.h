/* GLMM fits over the covariance parameters psi of a model with structured
 * random-effect covariances (host/glmm/fit_psi.c). */
#ifndef MLMX_GLMM_FIT_PSI_H
#define MLMX_GLMM_FIT_PSI_H
#include "glmm/objective.h"

/* Fit md = c->g->md (binomial or Poisson, Laplace: MLMX_ERR_UNSUPPORTED
 * otherwise) into f: psi, theta, beta, vcov, criteria; leaves the Laplace
 * modes and factor at the optimum in c->g. */
mlmx_status mlmx_glmm_fit_psi(mlmx_fit *f, mlmx_gobj *c, const mlmx_fit_options *o,
                              mlmx_error *err);

#endif
