/* Residual structures of a linear mixed model (issue 10): within-group
 * correlation (nlme's corAR1, corCAR1, corCompSymm, corARMA; Stata's
 * residuals(ar 1, t()) and residuals(exchangeable)) and heteroscedastic
 * variances (nlme's varIdent, varPower). The residuals are
 * eps ~ N(0, sigma^2 R), R block diagonal over the correlation groups,
 * R_g = D_g C_g D_g with C_g a correlation matrix and D_g the residual
 * SDs relative to sigma.
 *
 * This module parses the specifications, resolves them against the model's
 * rows (groups, times, strata), and gives the parameters and the per-group
 * matrices. The criterion built on them is in host/lmm/rlmm.c. */
#ifndef MLMX_RESID_H
#define MLMX_RESID_H
#include <stddef.h>
#include "data/frame.h"

typedef enum mlmx_corr_kind {
    MLMX_CORR_NONE = 0,
    MLMX_CORR_AR1,  /* rho^|t_s - t_t|, t integer positions (row order by default) */
    MLMX_CORR_CAR1, /* phi^|t_s - t_t|, t real (continuous time), 0 <= phi < 1 */
    MLMX_CORR_CS,   /* rho off the diagonal */
    MLMX_CORR_ARMA  /* ARMA(p, q) autocorrelation at lag |t_s - t_t| (integer t) */
} mlmx_corr_kind;

typedef enum mlmx_var_kind {
    MLMX_VAR_NONE = 0,
    MLMX_VAR_IDENT, /* SD delta_k per stratum k, delta of the first stratum 1 */
    MLMX_VAR_POWER  /* SD |v|^delta of a covariate v */
} mlmx_var_kind;

#define MLMX_ARMA_MAX 3 /* largest p and q of arma(p, q) */

typedef struct mlmx_resid {
    mlmx_corr_kind corr;
    int arma_p, arma_q;
    char *corr_text;   /* as printed: "ar1(~ 1 | Subject)" */
    char *corr_time;   /* time variable, or NULL (row order) */
    char *corr_group;  /* grouping variables as written ("Subject", "a/b") */
    /* groups: observations (model row indices) of group g are
     * gobs[gstart[g] .. gstart[g+1]), ordered by time; gtime the times in
     * that order (positions 0, 1, ... for row order) */
    int ngroups;
    size_t *gstart, *gobs;
    double *gtime;
    int max_gsize;
    int time_truncated; /* ar1/arma times that were not integers (warned) */
    mlmx_var_kind var;
    char *var_text;    /* "varIdent(~ 1 | Sex)" */
    char *var_name;    /* stratum factor (ident) or covariate (power) */
    int nstrata;
    char **strata;     /* nstrata labels (ident) */
    int *stratum;      /* n: stratum of each observation (ident) */
    double *vcov;      /* n: |covariate| (power) */
    /* parameters: the correlation's, then the variance function's */
    int ncorr, nvar, npar;
    char **par_names;  /* npar: "Phi", "Rho", "Phi1", "Theta1", "Male", "power" */
    double *lower, *upper, *start; /* in the optimizer's scale (see mlmx_resid_natural) */
} mlmx_resid;

/* Parse the specifications (either may be NULL or empty) and resolve them
 * on model rows `rows` (n of them) of data d:
 *   correlation: ar1(), ar1(~ t | g), car1(~ t | g), cs(~ 1 | g),
 *                arma(p, q), arma(p, q, ~ t | g)  (nlme's names corAR1, corCAR1,
 *                corCompSymm, corARMA(p = , q = ) are accepted too);
 *   variance:    ident(~ 1 | s), power(~ v)  (varIdent, varPower too).
 * The grouping defaults to default_group (the model's innermost grouping
 * factor); a group named here must be variables of d (a/b or a:b for
 * their combination). Errors name the problem and the position in the
 * specification (MLMX_ERR_FORMULA), or the variable and row (MLMX_ERR_DATA). */
mlmx_status mlmx_resid_build(const mlmx_data *d, const size_t *rows, size_t n,
                             const char *correlation, const char *variance,
                             const char *default_group, mlmx_resid **out, mlmx_error *err);
void mlmx_resid_free(mlmx_resid *r);

/* Natural-scale parameters (as nlme reports them: Phi, Rho, Phi1.., Theta1..,
 * the strata's SD ratios, the power) from the optimizer's x (npar). */
void mlmx_resid_natural(const mlmx_resid *r, const double *x, double *nat);
/* The optimizer's x from natural-scale parameters; MLMX_ERR_ARG when they
 * are outside the structure's range. */
mlmx_status mlmx_resid_from_natural(const mlmx_resid *r, const double *nat, double *x,
                                    mlmx_error *err);

/* Correlation at time distance d >= 0 (d > 0) from natural parameters; for
 * arma the autocorrelations acf[0..maxlag] must have been computed with
 * mlmx_resid_arma_acf. */
int mlmx_resid_arma_acf(int p, int q, const double *phi, const double *theta, int maxlag,
                        double *acf);

/* R_g (ng x ng, column-major, full) for group g at natural parameters nat;
 * acf: the ARMA autocorrelations (arma only, else NULL). */
void mlmx_resid_group_matrix(const mlmx_resid *r, const double *nat, const double *acf, int g,
                             double *Rg);
/* Relative residual SD of observation i (1 without a variance function). */
double mlmx_resid_sd(const mlmx_resid *r, const double *nat, size_t i);

#endif
