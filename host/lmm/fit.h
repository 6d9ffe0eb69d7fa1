/* The result of a fit: optimizer state and everything derived at the
 * optimum. Read by the accessors in host/api_fit.c and by host/output. */
#ifndef MLMX_LMM_FIT_H
#define MLMX_LMM_FIT_H
#include "lmm/lmm.h"

struct mlmx_fit {
    const mlmx_model *model;
    mlmx_method method;
    int converged, singular, n_evals;
    char message[160];
    char optimizer[32];
    double criterion, loglik, aic, bic, sigma, seconds;
    double grad_max;   /* max |d criterion / d theta| at the optimum; NaN at a boundary */
    int df;
    double *theta;     /* ntheta */
    double *beta;      /* p */
    double *se;        /* p */
    double *vcov;      /* p*p */
    double *fitted;    /* n */
    double *resid;     /* n */
    double **ranef;    /* K arrays of nlevels*q */
    double **condsd;   /* K arrays of nlevels*q */
    int have_condsd;   /* condsd computed (mlmx_fit_options.conditional_variances) */
    /* GLMM fits (family != MLMX_FAMILY_GAUSSIAN): fitted holds the mean
     * (probability of success, expected count), resid the deviance
     * residuals, pearson the Pearson residuals; sigma is 1. */
    mlmx_family family;
    mlmx_link link;
    int nagq;
    double *pearson;   /* n, GLMM only */
    double loglik_glm; /* the model without random effects (likelihood-ratio test) */
    int skip_col;      /* ordinal: X's intercept column, replaced by the thresholds (-1) */
    int nthr;          /* ordinal: thresholds c_1 < ... (logit P(Y <= k) = c_k - eta) */
    double *thr, *thr_se;
    char **thr_names;  /* "1|2" as clmm names them */
    double nb_size, nb_logsize_se; /* negative binomial NB2 size (dispersion) */
    char warning[320]; /* a diverging estimate (complete separation), or empty */
    int n_evals_stage1;
};

/* Allocate a fit's result arrays for md (the GLMM fit uses it too). */
mlmx_status mlmx_fit_alloc(const mlmx_model *md, mlmx_fit **out);

/* Fit (the public mlmx_fit_lmm validates arguments and records errors). */
mlmx_status mlmx_lmm_fit_internal(const mlmx_model *md, const mlmx_fit_options *o,
                                  mlmx_fit **out, mlmx_error *err);

#endif
