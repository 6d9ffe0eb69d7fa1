/* The result of a fit: optimizer state and everything derived at the
 * optimum. Read by the accessors in host/api_fit.c and by host/output. */
#ifndef MLMX_LMM_FIT_H
#define MLMX_LMM_FIT_H
#include "lmm/lmm.h"
#include "resid/resid.h"

/* What inference derives from a fit once and keeps (host/infer): set on
 * first use with an atomic compare-and-swap, so that const fits can be
 * read from several threads; released by mlmx_fit_free through free_ddf. */
typedef struct mlmx_fit_cache {
    void *ddf;                  /* infer/ddf.c's mlmx_ddf_state, or NULL */
    void (*free_ddf)(void *);
} mlmx_fit_cache;

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
    double *psi;       /* mlmx_model_ncov(model): the optimizer's covariance parameters
                          (theta itself unless a term is structured) */
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
    char device[256];      /* where the fit ran (mlmx_fit_device) */
    char device_note[320]; /* why that differs from the request, or "" */
    mlmx_fit_cache *cache; /* NULL: nothing is kept (fits not from mlmx_fit_alloc) */
    double *rpar;      /* model->resid->npar residual parameters on nlme's scale
                          (NULL without a residual structure) */
};

/* The profiled criterion as the optimizers see it: one evaluation context
 * per workspace (scratch allocated once by mlmx_lmm_obj_init). */
typedef struct mlmx_lmm_obj {
    const mlmx_lmm_stats *s;
    const mlmx_backend *be;
    mlmx_lmm_work *w;
    int reml;
    mlmx_error err; /* first numerical failure, kept for the message */
    void (*progress)(void *, int, double);
    void *progress_ctx;
    int n_evals;
    double best;
    double *th, *th2; /* ntheta scratch each */
} mlmx_lmm_obj;

mlmx_status mlmx_lmm_obj_init(mlmx_lmm_obj *c, const mlmx_lmm_stats *s, const mlmx_backend *be,
                              mlmx_lmm_work *w, int reml);
void mlmx_lmm_obj_release(mlmx_lmm_obj *c);
/* The criterion at theta (HUGE_VAL where it cannot be evaluated). */
double mlmx_lmm_obj_value(int n, const double *theta, void *ctx);
/* The criterion and its gradient over x, where x = log(theta) for the
 * diagonal entries (lower bound 0) and theta elsewhere; analytic gradient,
 * central differences where the formula does not apply. */
double mlmx_lmm_obj_log(int n, const double *x, double *grad, void *ctx);

/* Everything at the optimum (beta, vcov, sigma, modes, fitted values,
 * residuals against the response y, conditional SDs) from the factor in w
 * (mlmx_lmm_eval was just called at f->theta). */
mlmx_status mlmx_lmm_finish(mlmx_fit *f, const mlmx_lmm_stats *s, mlmx_lmm_work *w,
                            const double *y, mlmx_error *err);

/* Criterion, logLik, AIC, BIC, df and the singular flag from crit and f->theta. */
void mlmx_lmm_set_criteria(mlmx_fit *f, double crit);
/* MLMX_ERR_NUMERIC naming overflow when the criterion or theta is not finite. */
mlmx_status mlmx_lmm_check_finite(const mlmx_fit *f, mlmx_error *err);

/* MLMX_ERR_DATA for a constant response, MLMX_ERR_NUMERIC when its sum of
 * squares overflows. */
mlmx_status mlmx_lmm_check_response(const double *y, size_t n, mlmx_error *err);

/* Monotonic seconds, for a fit's wall time. */
double mlmx_lmm_now(void);

/* Allocate a fit's result arrays for md (the GLMM fit uses it too). */
mlmx_status mlmx_fit_alloc(const mlmx_model *md, mlmx_fit **out);

/* Fit with the model's residual structure (host/lmm/rfit.c). */
mlmx_status mlmx_rlmm_fit(const mlmx_model *md, const mlmx_fit_options *o, mlmx_fit **out,
                          mlmx_error *err);

/* Fit (the public mlmx_fit_lmm validates arguments and records errors). */
mlmx_status mlmx_lmm_fit_internal(const mlmx_model *md, const mlmx_fit_options *o,
                                  mlmx_fit **out, mlmx_error *err);

#endif
