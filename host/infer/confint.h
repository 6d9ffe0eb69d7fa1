/* Confidence intervals of a fit (mlmx_fit_confint): the result object,
 * shared by the Wald, bootstrap and profile paths (confint.c) and the
 * profile computation (profile.c). */
#ifndef MLMX_INFER_CONFINT_H
#define MLMX_INFER_CONFINT_H
#include "lmm/fit.h"

struct mlmx_confint {
    mlmx_confint_method method;
    double level;
    int np;          /* parameters: nvar variance parameters, then the fixed effects */
    int nvar;        /* ntheta, plus 1 (.sigma) for an LMM; nlme's intervals: plus the
                        residual structure's parameters, before .sigma */
    char **names;    /* lme4's: .sig01, ..., .sigma, fixed effects */
    double *est;     /* the estimates the intervals are about (profile: the ML fit's) */
    double *lo, *hi; /* NaN: not available (Wald's variance parameters) */
    /* The profile's points: parameter j's (x, zeta) pairs, in the order
     * they were computed (npts[j] of cap[j]). */
    int *npts, *cap;
    double **px, **pz;
    char **msgs;
    int nmsg;
    double seconds;
};

/* A note for the user (the boundary, an ML refit); MLMX_ERR_NOMEM only. */
mlmx_status mlmx_confint_note(mlmx_confint *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Record the profile point (x, zeta) of parameter j. */
mlmx_status mlmx_confint_add_point(mlmx_confint *c, int j, double x, double zeta);

/* lme4's standard deviations and correlations (per term, the lower
 * triangle column by column as theta: sd on the diagonal, correlations
 * below) of s^2 T T^T, T the term's template from theta; and back: theta
 * from the SDs, correlations and s (a Cholesky factor that sets a
 * non-positive pivot and its column to 0, for correlations of +-1). */
void mlmx_theta_to_sdcor(const mlmx_model *m, const double *theta, double s, double *v);
void mlmx_sdcor_to_theta(const mlmx_model *m, const double *v, double s, double *theta);

/* nlme's intervals (intervals.c) into c's lo and hi (est and names set). */
mlmx_status mlmx_nlme_intervals(const mlmx_fit *f, mlmx_confint *c, mlmx_error *err);

/* Profile intervals into c (names, est, lo, hi, points, notes), for an
 * LMM (on the ML refit, as lme4's profile) or a binomial or Poisson GLMM
 * (Laplace or AGQ deviance). */
mlmx_status mlmx_profile_confint(const mlmx_fit *f, mlmx_confint *c, mlmx_error *err);

#endif
