/*
 * mlmx — multilevel (mixed-effects) models on the CPU and on NVIDIA GPUs.
 *
 * The public C API. Every object is an opaque handle with a create/free pair;
 * every free function accepts NULL. Every fallible function returns an
 * mlmx_status (MLMX_OK == 0); on failure, mlmx_last_error() returns a
 * one-line message naming the problem (file, line, column, formula
 * position; a formula error adds the formula and a caret on two more
 * lines). The message is thread-local; each fallible call clears it on
 * entry, so it describes the last call made on this thread. The library never prints and never exits.
 */
#ifndef MLMX_H
#define MLMX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLMX_VERSION_MAJOR 0
#define MLMX_VERSION_MINOR 1
#define MLMX_VERSION_PATCH 0
#define MLMX_VERSION_STRING "0.1.0"

typedef enum mlmx_status {
    MLMX_OK = 0,
    MLMX_ERR_IO = 1,          /* a file is missing, unreadable or unwritable */
    MLMX_ERR_PARSE = 2,       /* malformed input file (CSV, HDF5 layout) */
    MLMX_ERR_FORMULA = 3,     /* malformed formula; message shows the position */
    MLMX_ERR_DATA = 4,        /* unknown column, wrong type, NaN/Inf, no rows */
    MLMX_ERR_MODEL = 5,       /* model cannot be fitted to these data */
    MLMX_ERR_NUMERIC = 6,     /* numerical failure (not positive definite, ...) */
    MLMX_ERR_NOMEM = 7,       /* allocation failed */
    MLMX_ERR_ARG = 8,         /* invalid argument to an API function */
    MLMX_ERR_UNSUPPORTED = 9  /* valid request this build cannot do */
} mlmx_status;

/* Message of the last failing call on this thread ("" if none). Never NULL. */
const char *mlmx_last_error(void);
/* Short fixed name of a status code, e.g. "MLMX_ERR_IO". */
const char *mlmx_status_name(mlmx_status s);
/* Library version string, e.g. "0.1.0". */
const char *mlmx_version(void);

/* Threads OpenBLAS may use inside one BLAS/LAPACK call (n >= 1). mlmx's own
 * parallelism is its --threads; OpenBLAS's threads spin while they wait, so
 * with mlmx's threads or any other busy process on the machine they can
 * slow a fit many times over (InstEval: 0.8 s on one BLAS thread, 19 s on
 * two with the machine's other core busy; docs/performance.md). The mlmx
 * command sets 1 unless OPENBLAS_NUM_THREADS is set. Process-wide. */
void mlmx_set_blas_threads(int n);

/* ------------------------------------------------------------------ */
/* Data sets: a table of named columns, numeric or factor.             */
/* ------------------------------------------------------------------ */

typedef struct mlmx_data mlmx_data;

/* Read a CSV file: header row, comma separated, RFC 4180 quoting.
 * A column whose every non-missing field is a finite number is numeric;
 * any other column is a factor whose levels are sorted in byte (C locale)
 * order. Empty fields and NA are missing. NaN or Inf values, ragged rows,
 * duplicate or empty column names and files with no data rows are errors
 * whose message names the file, line and column.
 * out: receives a new data set (free with mlmx_data_free). Allocates. */
mlmx_status mlmx_data_read_csv(const char *path, mlmx_data **out);

/* Read a table from HDF5: `group` (NULL or "" = "/") holds one 1-D dataset
 * per column, all of the same length. Numeric datasets (any integer or
 * float type) become numeric columns; variable- or fixed-length string
 * datasets become factors. Column order is the order of creation when the
 * file tracks it, otherwise name order. NaN in a float dataset is missing
 * (HDF5 has no NA); Inf is an error. See docs/data.md. Allocates.
 * Returns MLMX_ERR_UNSUPPORTED when built without HDF5. */
mlmx_status mlmx_data_read_hdf5(const char *path, const char *group, mlmx_data **out);

/* An empty data set with nrow rows, to be filled column by column. */
mlmx_status mlmx_data_create(size_t nrow, mlmx_data **out);
/* Add a numeric column (copied). missing: NULL, or nrow flags (non-zero =
 * missing). Non-finite values that are not flagged missing are an error. */
mlmx_status mlmx_data_add_numeric(mlmx_data *d, const char *name, const double *x,
                                  const unsigned char *missing);
/* Add a factor column from nrow strings (copied; NULL entry = missing).
 * Levels are sorted in byte order. */
mlmx_status mlmx_data_add_strings(mlmx_data *d, const char *name, const char *const *x);

size_t mlmx_data_nrow(const mlmx_data *d);
int mlmx_data_ncol(const mlmx_data *d);
/* Name of column j (0-based), or NULL when out of range. */
const char *mlmx_data_column_name(const mlmx_data *d, int j);
/* 1 if column j is a factor, 0 if numeric, -1 if out of range. */
int mlmx_data_column_is_factor(const mlmx_data *d, int j);
/* Number of levels of factor column j (0 for numeric or out of range). */
int mlmx_data_column_nlevels(const mlmx_data *d, int j);
void mlmx_data_free(mlmx_data *d);

/* ------------------------------------------------------------------ */
/* Models: a formula bound to a data set.                              */
/* ------------------------------------------------------------------ */

typedef struct mlmx_model mlmx_model;

/* Build a model from lme4 formula syntax, e.g.
 *   "Reaction ~ Days + (Days | Subject)".
 * Parses the formula, selects complete rows, builds the response, the
 * fixed-effect matrix (treatment contrasts, R's column names; rank-deficient
 * columns dropped with a message) and the random-effect terms (ordered by
 * decreasing number of levels, as lme4; a fit takes at most 16 columns per
 * term, MLMX_ERR_UNSUPPORTED beyond). The data set may be freed after
 * this returns. Errors: MLMX_ERR_FORMULA (message shows the position),
 * MLMX_ERR_DATA (unknown column, factor response, ...), MLMX_ERR_MODEL.
 * Allocates; free with mlmx_model_free. */
mlmx_status mlmx_model_create(const mlmx_data *d, const char *formula, mlmx_model **out);
/* The same with prior weights from the numeric column `weights` (NULL:
 * none), as glmer's weights argument: for a binomial model with a numeric
 * response they are the trials and the response the proportion of
 * successes (lme4's convention); for the other families they multiply each
 * observation's log-likelihood. Rows with a missing weight are dropped;
 * negative or non-finite weights are MLMX_ERR_DATA. Linear mixed models do
 * not take weights yet (MLMX_ERR_UNSUPPORTED when fitted). */
mlmx_status mlmx_model_create_weighted(const mlmx_data *d, const char *formula,
                                       const char *weights, mlmx_model **out);
void mlmx_model_free(mlmx_model *m);

size_t mlmx_model_nobs(const mlmx_model *m);        /* observations used */
size_t mlmx_model_ndropped(const mlmx_model *m);    /* rows dropped for missing values */
int mlmx_model_nfixef(const mlmx_model *m);         /* p: fixed-effect coefficients */
const char *mlmx_model_fixef_name(const mlmx_model *m, int j); /* NULL if out of range */
int mlmx_model_ntheta(const mlmx_model *m);         /* covariance parameters */
const char *mlmx_model_theta_name(const mlmx_model *m, int j); /* lme4's theta names */
int mlmx_model_nterms(const mlmx_model *m);         /* random-effect terms */
const char *mlmx_model_term_group(const mlmx_model *m, int k);  /* "Subject", "cask:batch" */
/* Name in the variance table: the group, or "Subject.1" for a second term
 * on the same grouping factor, as lme4's VarCorr prints it. */
const char *mlmx_model_term_name(const mlmx_model *m, int k);
int mlmx_model_term_nlevels(const mlmx_model *m, int k);
int mlmx_model_term_q(const mlmx_model *m, int k);  /* columns of term k */
const char *mlmx_model_term_column(const mlmx_model *m, int k, int c); /* "(Intercept)" */
const char *mlmx_model_term_level(const mlmx_model *m, int k, int l);
/* Informational notes produced while building (rows dropped, columns
 * dropped for rank deficiency). */
int mlmx_model_nmessages(const mlmx_model *m);
const char *mlmx_model_message(const mlmx_model *m, int i);

/* Residual structures (linear mixed models; docs/longitudinal.md): the
 * residuals become eps ~ N(0, sigma^2 R), R block diagonal over the groups
 * of `correlation`, R_g = D C_g D, as nlme's lme(correlation =, weights =).
 *   correlation: "ar1()" (by row order within the model's innermost
 *     grouping factor), "ar1(~ time | group)" (integer times with gaps:
 *     rho^|t - s|; non-integer times are truncated, with a model message
 *     pointing to car1), "car1(~ time | group)" (continuous time, phi^|t - s|),
 *     "cs(~ 1 | group)" (compound symmetry), "arma(p, q)" or
 *     "arma(p, q, ~ time | group)" (p, q <= 3); nlme's corAR1(form = ~ ...),
 *     corCAR1, corCompSymm and corARMA(p = , q = ) are accepted too. The
 *     groups must be nested in the innermost grouping factor (checked when
 *     fitted: MLMX_ERR_MODEL).
 *   variance: "ident(~ 1 | stratum)" (an SD per stratum relative to the
 *     first, nlme's varIdent) or "power(~ v)" (SD |v|^delta, varPower).
 * d must be the data the model was built from. Either may be NULL; both
 * NULL removes the structure. Errors: MLMX_ERR_FORMULA (the position in
 * the text), MLMX_ERR_DATA (a variable that is missing or of the wrong
 * type, duplicate times within a group). Fitting a GLMM with a residual
 * structure is MLMX_ERR_UNSUPPORTED. */
mlmx_status mlmx_model_set_residual(mlmx_model *m, const mlmx_data *d, const char *correlation,
                                    const char *variance);
/* The structures as printed ("ar1(~ 1 | Subject)", "ident(~ 1 | Sex)"),
 * or NULL when there is none. */
const char *mlmx_model_correlation(const mlmx_model *m);
const char *mlmx_model_variance(const mlmx_model *m);
/* The structure's parameters: their number (0 without one) and names, as
 * mlmx_fit_resid_par_name gives them. */
int mlmx_model_nresid_par(const mlmx_model *m);
const char *mlmx_model_resid_par_name(const mlmx_model *m, int k); /* NULL if out of range */

/* ------------------------------------------------------------------ */
/* Fitting linear mixed models.                                        */
/* ------------------------------------------------------------------ */

typedef enum mlmx_method { MLMX_REML = 0, MLMX_ML = 1 } mlmx_method;

/* The conditional distribution of the response given the random effects. */
typedef enum mlmx_family {
    MLMX_FAMILY_GAUSSIAN = 0, /* linear mixed model (mlmx_fit_lmm) */
    MLMX_FAMILY_BINOMIAL = 1, /* 0/1, a two-level factor (second level = success), or
                                 cbind(successes, failures) */
    MLMX_FAMILY_POISSON = 2,  /* non-negative integer counts; offset() allowed */
    MLMX_FAMILY_NEGBIN = 3,   /* negative binomial NB2 (glmmTMB's nbinom2, Var = mu +
                                 mu^2/size): non-negative integer counts, log link; the
                                 size is estimated (mlmx_fit_dispersion) */
    MLMX_FAMILY_ORDINAL = 4   /* cumulative link (ordinal::clmm): a numeric response (its
                                 distinct values in order are the categories) or a factor
                                 (level order); links logit, probit, cloglog; thresholds
                                 replace the intercept (mlmx_fit_thresholds) */
} mlmx_family;

typedef enum mlmx_link {
    MLMX_LINK_DEFAULT = -1, /* the family's default link: logit (binomial, ordinal),
                               log (poisson, negbin) */
    MLMX_LINK_LOGIT = 0,
    MLMX_LINK_PROBIT = 1,
    MLMX_LINK_CLOGLOG = 2,
    MLMX_LINK_LOG = 3
} mlmx_link;

typedef enum mlmx_optimizer {
    MLMX_OPTIM_AUTO = 0,   /* BOBYQA; the quasi-Newton method when the crossed
                              (non-nested) dense part of the model is large (300+
                              columns, e.g. InstEval), where each evaluation costs
                              milliseconds */
    MLMX_OPTIM_BOBYQA = 1, /* NLopt BOBYQA, derivative-free (lme4's default) */
    MLMX_OPTIM_QUASI_NEWTON = 2 /* BFGS on log(theta) with the analytic gradient,
                              finished by BOBYQA when a variance reaches 0; any
                              number of parameters */
} mlmx_optimizer;

/* Where work runs (fits, boot, power; docs/gpu.md):
 * MLMX_DEVICE_CPU the CPU (the default); MLMX_DEVICE_GPU a CUDA GPU, an
 * error where that is impossible (no CUDA in the build, no device, too
 * little device memory, a model no device engine covers); MLMX_DEVICE_AUTO
 * the GPU when it can run the model and the run is large enough to gain,
 * else the CPU, and the CPU for the rest of a run whose GPU fails. */
typedef enum mlmx_device {
    MLMX_DEVICE_CPU = 0,
    MLMX_DEVICE_GPU = 1,
    MLMX_DEVICE_AUTO = 2
} mlmx_device;

typedef struct mlmx_fit_options {
    mlmx_method method;       /* MLMX_REML (default, as lme4) or MLMX_ML */
    mlmx_optimizer optimizer; /* default MLMX_OPTIM_AUTO */
    const double *theta_start;/* NULL: lme4's start (1 on diagonals, 0 off); ignored by
                                 a model with a structured term (cs, ar1, toep), which
                                 starts at SDs 1 and correlations 0 */
    int max_evaluations;      /* default 100000 */
    double ftol_abs;          /* criterion tolerance, default 1e-10 */
    double xtol_rel;          /* theta tolerance, default 1e-8 */
    const char *backend;      /* NULL (chosen by device), "cpu" or "cuda" */
    int conditional_variances;/* 1 (default): compute the conditional SDs of the
                                 random effects (mlmx_fit_ranef_condsd); 0 skips
                                 an O(q^3) inverse that a large model may not need */
    /* Called after every criterion evaluation with the count so far and the
     * best criterion seen (NULL: none). For progress displays: the library
     * itself never prints. Must not call back into the fit. */
    void (*progress)(void *ctx, int n_evaluations, double best_criterion);
    void *progress_ctx;
    /* Generalized linear mixed models (mlmx_fit_glmm); ignored by mlmx_fit_lmm. */
    mlmx_family family;       /* default MLMX_FAMILY_GAUSSIAN */
    mlmx_link link;           /* default MLMX_LINK_DEFAULT */
    int nagq;                 /* 0: beta by PIRLS, theta optimized (lme4's nAGQ = 0;
                                 binomial and Poisson); 1 (default): Laplace over
                                 (theta, beta); K = 2..100: adaptive Gauss-Hermite
                                 quadrature with K points per level, for one scalar
                                 random-effect term, scalar terms nested in each other
                                 (nested quadrature, any depth), or one vector term
                                 with q <= 3 correlated effects (product rule, K^q
                                 nodes) */
    /* Where the fit's factorizations run (default MLMX_DEVICE_CPU):
     * MLMX_DEVICE_GPU the CUDA backend (every per-level factor, Schur
     * update and dense Cholesky of the criterion on the device; an error
     * MLMX_ERR_UNSUPPORTED naming the reason where it is unavailable);
     * MLMX_DEVICE_AUTO the CUDA backend for an LMM whose crossed dense
     * block has at least 300 columns (InstEval-sized) when a device is
     * present, else the CPU; GLMMs stay on the CPU under auto. The fit
     * reports where it ran (mlmx_fit_device). */
    mlmx_device device;
} mlmx_fit_options;

void mlmx_fit_options_default(mlmx_fit_options *o);

typedef struct mlmx_fit mlmx_fit;

/* The profiled criterion at theta (ntheta values), without optimising:
 * -2 log-likelihood for MLMX_ML, the REML criterion for MLMX_REML.
 * MLMX_ERR_UNSUPPORTED for a model with a residual structure. */
mlmx_status mlmx_lmm_criterion_at(const mlmx_model *m, mlmx_method method, const double *theta,
                                  double *value);

/* Fit a linear mixed model by maximising the profiled (restricted)
 * likelihood over theta with BOBYQA. o may be NULL for defaults.
 * A fit that stops without converging is returned (MLMX_OK) with
 * mlmx_fit_converged() == 0 and a message; only invalid input or a
 * numerical breakdown is an error. The model must outlive the fit.
 * Allocates; free with mlmx_fit_free. */
mlmx_status mlmx_fit_lmm(const mlmx_model *m, const mlmx_fit_options *o, mlmx_fit **out);

/* Fit a generalized linear mixed model (o->family not Gaussian) by the
 * Laplace approximation (o->nagq = 1, lme4's glmer default: PIRLS for the
 * conditional modes, BOBYQA over (theta, beta) after a theta-only start),
 * by nagq = 0, or by adaptive Gauss-Hermite quadrature. The log-likelihood
 * is always the full one (sum of log p(y | b) integrated over b), also for
 * binomial fits with nagq > 1 where lme4 prints it relative to the
 * saturated model. Fixed-effect standard errors come from the Hessian of
 * the deviance over (theta, beta), as glmer computes them. Errors:
 * MLMX_ERR_DATA for a response the family cannot take (named with its
 * row), MLMX_ERR_MODEL for quadrature requested where it does not apply.
 * Allocates; free with mlmx_fit_free. */
mlmx_status mlmx_fit_glmm(const mlmx_model *m, const mlmx_fit_options *o, mlmx_fit **out);

/* The GLMM deviance (-2 log-likelihood, full scale) at (theta, beta)
 * without optimising, by o->family, o->link and o->nagq (0 and 1: the
 * Laplace approximation at the conditional modes; K > 1: adaptive
 * quadrature), as lme4's devfun for nAGQ >= 1 computes it. */
mlmx_status mlmx_glmm_deviance_at(const mlmx_model *m, const mlmx_fit_options *o,
                                  const double *theta, const double *beta, double *value);
/* The same with the family's extra parameters: extra = the K-1 increasing
 * thresholds of an ordinal model (its intercept's beta entry is ignored),
 * or the NB2 size (one value); NULL for binomial and Poisson. */
mlmx_status mlmx_glmm_deviance_at_ex(const mlmx_model *m, const mlmx_fit_options *o,
                                     const double *theta, const double *beta,
                                     const double *extra, double *value);
void mlmx_fit_free(mlmx_fit *f);
/* GLMM fits: family, link and quadrature points (MLMX_FAMILY_GAUSSIAN for
 * an LMM fit). */
mlmx_family mlmx_fit_family(const mlmx_fit *f);
mlmx_link mlmx_fit_link(const mlmx_fit *f);
int mlmx_fit_nagq(const mlmx_fit *f);
const char *mlmx_family_name(mlmx_family fam); /* "gaussian", "binomial", ... */
/* Ordinal fits: the thresholds c_1 < ... < c_{K-1} (logit P(Y <= k) =
 * c_k - eta, as ordinal::clmm and Stata's meologit), their SEs and names
 * ("1|2"); the intercept is not estimated (its mlmx_fit_beta entry is 0 and
 * its SE NaN). 0 / NULL for other fits. */
int mlmx_fit_nthresholds(const mlmx_fit *f);
const double *mlmx_fit_thresholds(const mlmx_fit *f);
const double *mlmx_fit_threshold_se(const mlmx_fit *f);
const char *mlmx_fit_threshold_name(const mlmx_fit *f, int k);
/* Negative binomial fits: the NB2 size (Var = mu + mu^2/size; glmmTMB's
 * nbinom2 dispersion) and the SE of its logarithm; NaN for other fits. */
double mlmx_fit_dispersion(const mlmx_fit *f);
double mlmx_fit_dispersion_log_se(const mlmx_fit *f);
const char *mlmx_link_name(mlmx_link link);    /* "logit", "probit", ... */

const mlmx_model *mlmx_fit_model(const mlmx_fit *f);
mlmx_method mlmx_fit_method(const mlmx_fit *f);
int mlmx_fit_converged(const mlmx_fit *f);
int mlmx_fit_singular(const mlmx_fit *f);      /* a variance at 0, as lme4's isSingular */
int mlmx_fit_n_evaluations(const mlmx_fit *f);
const char *mlmx_fit_message(const mlmx_fit *f); /* optimizer's closing message */
/* A warning about the estimates (a GLMM coefficient diverging under complete
 * separation), or "" when there is none. */
const char *mlmx_fit_warning(const mlmx_fit *f);
const char *mlmx_fit_optimizer(const mlmx_fit *f); /* "BOBYQA", "BFGS", "BFGS+BOBYQA" */
/* Where the fit ran: "cpu", or "gpu: <device> (cuda backend)"; and why that
 * differs from mlmx_fit_options.device ("" when it does not). */
const char *mlmx_fit_device(const mlmx_fit *f);
const char *mlmx_fit_device_note(const mlmx_fit *f);
double mlmx_fit_criterion(const mlmx_fit *f);  /* REML criterion, or deviance for ML */
double mlmx_fit_loglik(const mlmx_fit *f);     /* -criterion/2 (restricted for REML) */
double mlmx_fit_aic(const mlmx_fit *f);
double mlmx_fit_bic(const mlmx_fit *f);
int mlmx_fit_df(const mlmx_fit *f);            /* parameters: p + npsi + 1 (LMM) */
double mlmx_fit_sigma(const mlmx_fit *f);      /* residual standard deviation */
double mlmx_fit_fit_seconds(const mlmx_fit *f);/* wall time of the fit */
/* Arrays owned by the fit, valid until mlmx_fit_free. */
const double *mlmx_fit_theta(const mlmx_fit *f);   /* ntheta */
/* The residual structure's parameters on nlme's scale (0 without one):
 * the correlation's ("Phi" of ar1 and car1, "Rho" of cs, "Phi1".. then
 * "Theta1".. of arma), then the variance function's (the SD ratio of each
 * stratum but the first, named by the stratum; "power"). */
int mlmx_fit_nresid_par(const mlmx_fit *f);
double mlmx_fit_resid_par(const mlmx_fit *f, int k);          /* NaN if out of range */
const char *mlmx_fit_resid_par_name(const mlmx_fit *f, int k); /* NULL if out of range */
/* The empirical autocorrelation of an LMM's within-group residuals, as
 * nlme's ACF(fit) (Pearson residuals r_i / (sigma sd_i) per level of the
 * innermost grouping factor, in data order; lag k: the mean of r_t r_{t+k}
 * over all pairs, relative to lag 0), for lags 0..maxlag: acf, n_used (the
 * pairs at each lag; may be NULL) and model (may be NULL: the fitted
 * correlation at each lag where the residual structure is by row order,
 * 0 without one, NaN where it is by a time variable). mlmx_fit_acf_maxlag:
 * nlme's default, min(n_max - 1, floor(10 log10 n_max)) for the largest
 * group n_max (-1 for a GLMM). */
int mlmx_fit_acf_maxlag(const mlmx_fit *f);
mlmx_status mlmx_fit_acf(const mlmx_fit *f, int maxlag, double *acf, double *n_used,
                         double *model);
/* The same at nlme's default lags as a table (text: free with
 * mlmx_string_free), and as a plot (.svg, .png, .pdf; written atomically):
 * the autocorrelation by lag, +-1.96 / sqrt(pairs), the fitted
 * correlation. */
mlmx_status mlmx_fit_acf_text(const mlmx_fit *f, char **text);
mlmx_status mlmx_fit_write_acf_plot(const mlmx_fit *f, const char *path);
/* The optimizer's covariance parameters psi (docs/covstruct.md). Without a
 * structured term (cs(), ar1(), toep() in the formula) psi is theta. A
 * structured term contributes its relative SDs (sd / sigma for an LMM,
 * absolute for a GLMM: q of them, one for ar1) and its correlation
 * parameters: cs "<group>.rho" (the common correlation), ar1 "<group>.rho",
 * toep "<group>.pacf1".. (partial autocorrelations of lags 1..q-1). The
 * fit's df counts psi. mlmx_fit_psi_name: "" when k is out of range; the
 * strings and the array are owned by the fit (valid until mlmx_fit_free). */
int mlmx_fit_npsi(const mlmx_fit *f);
const double *mlmx_fit_psi(const mlmx_fit *f);     /* npsi */
const char *mlmx_fit_psi_name(const mlmx_fit *f, int k);
const double *mlmx_fit_beta(const mlmx_fit *f);    /* p */
const double *mlmx_fit_se(const mlmx_fit *f);      /* p */
const double *mlmx_fit_vcov(const mlmx_fit *f);    /* p*p, column-major */
const double *mlmx_fit_fitted(const mlmx_fit *f);  /* nobs */
const double *mlmx_fit_residuals(const mlmx_fit *f); /* nobs, y - fitted */
/* Conditional modes of term k's random effects: nlevels*q values, level-
 * major (level l, column c at l*q + c), and their conditional SDs. */
const double *mlmx_fit_ranef(const mlmx_fit *f, int k);
const double *mlmx_fit_ranef_condsd(const mlmx_fit *f, int k); /* NULL if not computed */
/* Covariance of term k's random effects: q*q column-major, sigma^2 T T^T. */
mlmx_status mlmx_fit_term_covariance(const mlmx_fit *f, int k, double *cov);

/* Variance decomposition (docs/inference.md): Nakagawa & Schielzeth's R²
 * with Johnson's random-slope term, as performance::r2_nakagawa and
 * performance::icc compute them. On the linear-predictor (latent) scale:
 *   var_fixed     the sample variance (denominator n - 1) of X beta;
 *   var_random    sum over terms of tr(Sigma_k Z_k^T Z_k) / n, the mean
 *                 variance the random effects add to an observation's
 *                 linear predictor (for random intercepts: the sum of
 *                 their variances);
 *   var_residual  an LMM's sigma^2; for binomial and ordinal models the
 *                 variance of the link's standard distribution: logit
 *                 pi^2/3, probit 1, cloglog pi^2/6;
 *   r2_marginal = vf / (vf + vr + ve), r2_conditional = (vf + vr) / (...),
 *   icc_adjusted = vr / (vr + ve), icc_conditional = vr / (vf + vr + ve).
 * Poisson and negative binomial models: MLMX_ERR_UNSUPPORTED (their
 * distribution-specific variance is not implemented yet), with var_fixed
 * and var_random filled and the rest NaN. */
typedef struct mlmx_r2 {
    double var_fixed, var_random, var_residual;
    double r2_marginal, r2_conditional;
    double icc_adjusted, icc_conditional;
} mlmx_r2;
mlmx_status mlmx_fit_r2(const mlmx_fit *f, mlmx_r2 *out);

/* The intra-class correlation of random-effect term k's grouping factor,
 * from the random intercepts' variances v_j, and var_random and
 * var_residual above (total = var_random + var_residual, which is
 * sum_j v_j + var_residual for random-intercept models):
 *   icc             v_k / total (performance::icc(by_group = TRUE));
 *   icc_cumulative  the intercept variances of term k and of every term
 *                   whose factor k's is nested in (or equals), over total:
 *                   the correlation of two observations in the same level
 *                   of k (Stata's estat icc for nested levels, e.g.
 *                   "class|school"); equal to icc for a crossed factor;
 *   mean_size       observations per level of the factor;
 *   design_effect   Kish's 1 + (mean_size - 1) icc_cumulative.
 * icc and icc_cumulative are NaN for a term without a random intercept.
 * Errors as mlmx_fit_r2. */
typedef struct mlmx_icc {
    double icc, icc_cumulative, mean_size, design_effect;
} mlmx_icc;
mlmx_status mlmx_fit_icc_term(const mlmx_fit *f, int k, mlmx_icc *out);
/* Snijders & Bosker's R² of a two-level LMM (one grouping factor g;
 * Multilevel Analysis, 2nd ed., section 7.1), against the empty model
 * y ~ 1 + (1 | g) fitted here by the same method: with sigma2 the residual
 * and tau2 the random-intercept variance of each,
 *   level1 = 1 - (sigma2_F + tau2_F) / (sigma2_0 + tau2_0),
 *   level2 = 1 - (sigma2_F / n + tau2_F) / (sigma2_0 / n + tau2_0),
 * n = n_harmonic, the harmonic mean of the group sizes. With random slopes
 * tau2_F is the intercept variance (at the covariates' 0). Errors:
 * MLMX_ERR_UNSUPPORTED for a GLMM, several grouping factors, no random
 * intercept. */
typedef struct mlmx_r2_sb {
    double level1, level2, n_harmonic, sigma2_empty, tau2_empty;
} mlmx_r2_sb;
mlmx_status mlmx_fit_r2_snijders_bosker(const mlmx_fit *f, mlmx_r2_sb *out);
/* The decomposition as text, for under the summary (mlmx fit --r2 --icc):
 * what = MLMX_SHOW_R2 (the variances, R2 and overall ICCs) and/or
 * MLMX_SHOW_ICC (a table of the ICC, cumulative ICC, mean cluster size and
 * design effect of each level with a random intercept, top level first).
 * For a model whose decomposition is not available (counts) the text is a
 * line saying why. Free *out with mlmx_string_free. The JSON of
 * mlmx_fit_write_json always has "variance_decomposition" and "icc". */
#define MLMX_SHOW_R2 1
#define MLMX_SHOW_ICC 2
mlmx_status mlmx_fit_variance_summary(const mlmx_fit *f, int what, char **out);

/* Satterthwaite's denominator degrees of freedom for the contrast L^T beta
 * (L: p values) of a linear mixed model fit, as lmerTest computes them
 * (docs/inference.md): df = 2 (L^T V L)^2 / (g^T A g), with V = vcov(beta)
 * as a function of the variance parameters (theta, sigma), g its gradient
 * along L and A = 2 H^{-1} (H the Hessian of the REML or ML deviance in
 * (theta, sigma)) at the estimates; at a singular fit (a variance at 0)
 * H by second differences through the boundary, as lmerTest. H and dV are
 * computed on the first call for a fit and kept in it (also for
 * mlmx_fit_coef_tests[_ddf], mlmx_fit_ftest, the Type III tests and the
 * variance components' SEs); several threads may call these on one fit.
 * Errors: MLMX_ERR_UNSUPPORTED for a GLMM, with the reason. */
mlmx_status mlmx_fit_satterthwaite(const mlmx_fit *f, const double *L, double *df);
/* For each fixed effect j (p values each): Satterthwaite's df, t =
 * beta_j / se_j and the two-sided p-value of t on df, as lmerTest's
 * summary() prints them. Errors as mlmx_fit_satterthwaite. */
mlmx_status mlmx_fit_coef_tests(const mlmx_fit *f, double *df, double *t, double *p);

/* Tests of fixed effects by method (docs/inference.md): the denominator
 * degrees of freedom of lmerTest's summary() and anova(). */
typedef enum mlmx_ddf_method {
    MLMX_DDF_SATTERTHWAITE = 0, /* lmerTest's default */
    MLMX_DDF_KENWARD_ROGER = 1, /* pbkrtest's: REML fits only */
    MLMX_DDF_NONE = 2,          /* no df: lme4's t values without p-values */
    MLMX_DDF_CONTAINMENT = 3    /* nlme's inner-outer df (summary(lme)); nested
                                   grouping factors; any residual structure */
} mlmx_ddf_method;
/* "satterthwaite", "kenward-roger", "none", "containment" (-1 for another
 * name). */
int mlmx_ddf_method_parse(const char *name);

/* Per fixed effect (p values each) as lmerTest's summary(fit, ddf = ...):
 * se (Kenward-Roger: from the adjusted covariance), df, t = beta / se and
 * the two-sided p of t on df. MLMX_DDF_NONE: the unadjusted se and t, df
 * and p NaN. MLMX_DDF_CONTAINMENT: nlme's df, and for an ML fit nlme's
 * adjustSigma (se times sqrt(n / (n - p))). Errors: MLMX_ERR_UNSUPPORTED
 * for a GLMM, an ML fit (Kenward-Roger), a residual structure
 * (Satterthwaite, Kenward-Roger), crossed factors (containment), with the
 * reason. */
mlmx_status mlmx_fit_coef_tests_ddf(const mlmx_fit *f, mlmx_ddf_method ddf, double *se,
                                    double *df, double *t, double *p);
/* Kenward & Roger's adjusted covariance of beta (p * p, column-major), as
 * pbkrtest::vcovAdj; computed in the space of the random effects
 * (MLMX_ERR_UNSUPPORTED above 3,000 of them). Errors as above. */
mlmx_status mlmx_fit_vcov_kr(const mlmx_fit *f, double *vcov);

/* An F test of L beta = 0 as lmerTest's contestMD / anova() prints it:
 * sum_sq = mean_sq * num_df, mean_sq = F sigma^2 (Kenward-Roger: before
 * its scaling of F), num_df, den_df, f and p = P(F(num_df, den_df) > f).
 * Satterthwaite: L's rows are rotated to the eigenvectors of L V L^T and
 * the df of the rotated t tests pooled (lmerTest); Kenward-Roger: the
 * adjusted covariance, df and F scaling of pbkrtest's KRmodcomp;
 * containment: the Wald F (ML: adjustSigma) on the least df of the
 * coefficients L involves (a term's own df in the Type III table, as
 * nlme's anova(type = "marginal")). */
typedef struct mlmx_ftest {
    double sum_sq, mean_sq, num_df, den_df, f, p;
} mlmx_ftest;
/* L: nrow rows of p values (row-major). MLMX_DDF_NONE: den_df and p NaN. */
mlmx_status mlmx_fit_ftest(const mlmx_fit *f, mlmx_ddf_method ddf, const double *L, int nrow,
                           mlmx_ftest *out);
/* The fixed part's terms (not the intercept) in R's order and labels. */
int mlmx_fit_nterms(const mlmx_fit *f);
const char *mlmx_fit_term_label(const mlmx_fit *f, int t);
/* Type III F tests of every term (out: mlmx_fit_nterms rows), as
 * lmerTest's anova(fit, type = 3): the hypotheses of SAS's Type III with
 * lmerTest's containment rule (Type I for a model with one term).
 * MLMX_ERR_UNSUPPORTED also for a formula whose terms' margins are not
 * all in the model, or with columns dropped as collinear. */
mlmx_status mlmx_fit_anova_type3(const mlmx_fit *f, mlmx_ddf_method ddf, mlmx_ftest *out);
/* The Type III table as text ("Type III Analysis of Variance Table with
 * Satterthwaite's method"); free with mlmx_string_free. */
mlmx_status mlmx_fit_anova_text(const mlmx_fit *f, mlmx_ddf_method ddf, char **text);

/* Standard errors and Wald intervals of an LMM's variance components, as
 * Stata's mixed prints them (docs/inference.md): the delta method on the
 * covariance of (theta, sigma), 2 H^{-1} with H the Hessian of the REML or
 * ML deviance (lmerTest's vcov_varpar). One entry per theta entry, then
 * the residual (mlmx_fit_nvarcomp entries, in theta's order): term (-1:
 * the residual) and columns a >= b (a == b: a standard deviation /
 * variance; a > b: a correlation / covariance); sd[] and var[] hold the
 * estimate, SE, lower and upper bound at `level` on the two scales.
 * Intervals: log scale for SDs and variances, Fisher's z for
 * correlations, plain for covariances. Errors: MLMX_ERR_UNSUPPORTED for a
 * GLMM or a singular fit. */
typedef struct mlmx_vc_se {
    int term, a, b;
    double sd[4], var[4];
} mlmx_vc_se;
int mlmx_fit_nvarcomp(const mlmx_fit *f);
mlmx_status mlmx_fit_varcomp_se(const mlmx_fit *f, double level, mlmx_vc_se *out);
/* The same as text under the summary (scale 0: SD and correlation, as
 * Stata's default; 1: variance and covariance, Stata's "variance"). */
mlmx_status mlmx_fit_varcomp_text(const mlmx_fit *f, int scale, char **text);
/* The cumulative ICC of term k (mlmx_fit_icc_term) with its delta-method
 * SE and a logit-scale interval at `level` (Stata's estat icc): out =
 * {estimate, se, lower, upper}. LMMs; errors as mlmx_fit_varcomp_se, and
 * for a term without a random intercept. */
mlmx_status mlmx_fit_icc_se(const mlmx_fit *f, int k, double level, double out[4]);

/* ------------------------------------------------------------------ */
/* Prepared problems: one model, many responses (bootstrap, power).    */
/* ------------------------------------------------------------------ */
/* A problem is a model prepared for many refits: its structure (blocks,
 * orderings, nested stages) is analysed once and shared, read-only, by
 * every workspace and thread. It holds one set of parameters, from which
 * replicate responses are simulated and from which every refit starts
 * (the original estimate for a bootstrap, the true values in a power
 * study). A workspace is one thread's numerical state, allocated once:
 * set (or simulate) a response, fit, read the results, repeat. For a
 * linear mixed model a new response recomputes only Z'y, X'y and y'y, and
 * a refit allocates nothing unless a variance reaches its bound (the
 * derivative-free polish there is NLopt's, which allocates). A refit reads
 * only the workspace's response, never the model's.
 *
 * The report parameters of a problem (mlmx_problem_param_name) are, in
 * order: the fixed effects (lme4's names; an ordinal model's intercept is
 * left out), then for each random-effect term its standard deviations
 * "sd_<column>|<group>" and correlations "cor_<column1>.<column2>|<group>"
 * (lme4's VarCorr, e.g. "sd_(Intercept)|Subject", "cor_(Intercept).Days|Subject"),
 * then "sigma" (linear models), the thresholds "1|2", ... (ordinal) or
 * "size" (negative binomial). */
typedef struct mlmx_problem mlmx_problem;
typedef struct mlmx_workspace mlmx_workspace;

/* A problem at a fit's estimates, with the fit's options (method, family,
 * link, nagq). The fit's model must outlive the problem. Allocates. */
mlmx_status mlmx_problem_create(const mlmx_fit *f, mlmx_problem **out);
/* A problem at given parameters: theta (ntheta), beta (p; an ordinal
 * model's intercept entry is ignored), extra (the K-1 increasing
 * thresholds of an ordinal model, or the NB2 size; NULL otherwise) and
 * sigma (linear models; ignored otherwise). o: family, link, nagq, method
 * and tolerances (NULL: defaults). Errors: MLMX_ERR_ARG for a negative
 * diagonal theta, a non-finite value or thresholds out of order. */
mlmx_status mlmx_problem_create_at(const mlmx_model *m, const mlmx_fit_options *o,
                                   const double *theta, const double *beta, const double *extra,
                                   double sigma, mlmx_problem **out);
/* The same for a linear mixed model with a residual structure
 * (mlmx_model_set_residual): resid holds its parameters on nlme's scale, in
 * mlmx_fit_resid_par's order (mlmx_model_resid_par_name names them);
 * MLMX_ERR_ARG when they are outside the structure's range, or when the
 * model has a structure and resid is NULL (mlmx_problem_create_at).
 * Replicates draw the residuals from N(0, sigma^2 R) and refit every
 * parameter, these included (report names "corr_Phi", "var_<stratum>",
 * "var_power" after sigma). */
mlmx_status mlmx_problem_create_at_resid(const mlmx_model *m, const mlmx_fit_options *o,
                                         const double *theta, const double *beta,
                                         const double *resid, double sigma, mlmx_problem **out);
void mlmx_problem_free(mlmx_problem *p);
const mlmx_model *mlmx_problem_model(const mlmx_problem *p);
int mlmx_problem_nparams(const mlmx_problem *p);
const char *mlmx_problem_param_name(const mlmx_problem *p, int j); /* NULL if out of range */
/* The problem's own parameters (nparams values, in report order). */
const double *mlmx_problem_params(const mlmx_problem *p);

/* One thread's state for p (which must outlive it). Allocates. */
mlmx_status mlmx_workspace_create(const mlmx_problem *p, mlmx_workspace **out);
void mlmx_workspace_free(mlmx_workspace *w);
/* Set the response: n values on the model's scale (linear models: y;
 * binomial: successes, with the model's trials; Poisson and negative
 * binomial: counts; ordinal: category codes 0..K-1). Errors name the row.
 * Allocates nothing. */
mlmx_status mlmx_workspace_set_response(mlmx_workspace *w, const double *y);
/* Simulate a response from the problem's parameters and set it: random
 * effects from Philox4x32-10 stream 0 and the observations from stream 1
 * of the key (seed, replicate), so any split of the replicates over
 * threads, processes or machines draws the same numbers (docs/random.md).
 * y: n values out (a copy), or NULL. Allocates nothing. */
mlmx_status mlmx_workspace_simulate(mlmx_workspace *w, uint64_t seed, uint64_t replicate,
                                    double *y);
/* Fit the current response, starting from the problem's parameters.
 * want_se = 0 skips the fixed effects' standard errors where they cost
 * extra (GLMMs: a Hessian by differences). MLMX_OK also when the fit did
 * not converge (mlmx_workspace_converged); an error means no estimate. */
mlmx_status mlmx_workspace_fit(mlmx_workspace *w, int want_se);
/* Results of the last successful mlmx_workspace_fit (arrays owned by w). */
const double *mlmx_workspace_params(const mlmx_workspace *w); /* nparams, report order */
const double *mlmx_workspace_theta(const mlmx_workspace *w);  /* ntheta */
const double *mlmx_workspace_beta(const mlmx_workspace *w);   /* p */
const double *mlmx_workspace_se(const mlmx_workspace *w);     /* p; NaN when not computed */
double mlmx_workspace_criterion(const mlmx_workspace *w); /* REML criterion or deviance */
int mlmx_workspace_converged(const mlmx_workspace *w);
int mlmx_workspace_singular(const mlmx_workspace *w);
int mlmx_workspace_n_evaluations(const mlmx_workspace *w);


/* The CUDA device in words (name, compute capability, memory, driver and
 * runtime versions) into buf. MLMX_ERR_UNSUPPORTED, with the reason in buf,
 * in a build without CUDA, without a device, or with a driver older than
 * the build's runtime. */
mlmx_status mlmx_device_describe(char *buf, size_t len);

/* Run this process's GPU work on CUDA device index % (devices present):
 * one GPU per MPI rank, with index the rank's number on its node (mlmx
 * boot under mpirun does this). MLMX_ERR_UNSUPPORTED in a build without
 * CUDA or without a device (the CPU paths are unaffected). Call before the
 * first GPU work; later work from any thread uses the chosen device. */
mlmx_status mlmx_device_select(int index);

/* ------------------------------------------------------------------ */
/* Confidence intervals (lme4's confint()).                            */
/* ------------------------------------------------------------------ */
/* The parameters are lme4's, in its order: the random effects' standard
 * deviations and correlations ".sig01", ".sig02", ... (per term, the lower
 * triangle of the SD/correlation matrix column by column, as theta), the
 * residual SD ".sigma" (linear models), then the fixed effects.
 *   MLMX_CONFINT_PROFILE  profile likelihood, as confint(fit, method =
 *       "profile"): each bound solves zeta(x) = -+qnorm((1 + level) / 2),
 *       zeta the signed square root of the change in deviance with the
 *       other parameters re-optimised. Linear models are profiled on the ML
 *       deviance of the ML refit (as lme4, also for a REML fit: the
 *       estimates are the ML ones), binomial and Poisson GLMMs on the
 *       Laplace or quadrature deviance. A parameter whose profile does not
 *       reach the level before its bound (an SD at 0, a correlation at
 *       -+1) gets the bound, with a message (mlmx_confint_message).
 *   MLMX_CONFINT_WALD  beta +- qnorm((1 + level) / 2) SE, as confint(fit,
 *       method = "Wald"); NaN for the variance parameters (lme4's NA).
 *   MLMX_CONFINT_BOOT  percentile intervals of a parametric bootstrap
 *       (mlmx_boot_run with the boot options given; their level is
 *       replaced by this one), as confint(fit, method = "boot") with
 *       boot.type = "perc".
 *   MLMX_CONFINT_NLME  nlme's intervals(fit) (LMMs, with or without a
 *       residual structure; not with structured terms or at a boundary):
 *       the fixed effects by t on the containment df, the variance
 *       components, the residual structure's parameters (after the .sig
 *       entries, named as mlmx_fit_resid_par_name) and .sigma by the
 *       normal approximation on nlme's unconstrained scales (log SDs,
 *       log((1 + r) / (1 - r)), ...) from the log-likelihood's Hessian there
 *       (docs/longitudinal.md).
 * Errors: MLMX_ERR_ARG (level outside (0, 1), unknown method),
 * MLMX_ERR_UNSUPPORTED (profile of an ordinal, negative binomial or
 * nAGQ = 0 fit), MLMX_ERR_NUMERIC (a profile that cannot be followed),
 * the bootstrap's errors. Allocates; free with mlmx_confint_free. */
typedef enum mlmx_confint_method {
    MLMX_CONFINT_PROFILE = 0,
    MLMX_CONFINT_WALD = 1,
    MLMX_CONFINT_BOOT = 2,
    MLMX_CONFINT_NLME = 3
} mlmx_confint_method;
typedef struct mlmx_confint mlmx_confint;
struct mlmx_boot_options;
mlmx_status mlmx_fit_confint(const mlmx_fit *f, mlmx_confint_method method, double level,
                             const struct mlmx_boot_options *boot, mlmx_confint **out);
void mlmx_confint_free(mlmx_confint *c);
int mlmx_confint_nparams(const mlmx_confint *c);
const char *mlmx_confint_name(const mlmx_confint *c, int j); /* NULL if out of range */
/* The estimate (profile: the ML fit's for a linear model) and the bounds
 * of parameter j; NaN where there is none. MLMX_ERR_ARG out of range. */
mlmx_status mlmx_confint_bounds(const mlmx_confint *c, int j, double *estimate, double *lower,
                                double *upper);
/* Notes on the intervals (the ML refit, bounds at the boundary). */
int mlmx_confint_nmessages(const mlmx_confint *c);
const char *mlmx_confint_message(const mlmx_confint *c, int i);
double mlmx_confint_seconds(const mlmx_confint *c); /* wall time of the computation */
/* The table as R prints confint() ("2.5 %" and "97.5 %" columns), then the
 * notes. Free with mlmx_string_free. */
mlmx_status mlmx_confint_text(const mlmx_confint *c, char **text);
/* Profile plots (profile intervals only): zeta against each parameter,
 * one panel per parameter, with the interval's ends and +-z marked (lme4's
 * xyplot of a profile). SVG, PNG or PDF by the extension; atomic.
 * MLMX_ERR_ARG for intervals of another method. */
mlmx_status mlmx_confint_write_plot(const mlmx_confint *c, const char *path);

/* ------------------------------------------------------------------ */
/* Parametric bootstrap.                                               */
/* ------------------------------------------------------------------ */
typedef struct mlmx_boot_options {
    uint64_t seed;            /* Philox key (default 1) */
    uint64_t nsim;            /* replicates of the whole run (> 0) */
    uint64_t rep_begin, rep_end; /* the slice computed here: [begin, end); 0, 0 = all */
    int threads;              /* workspaces, one per thread (default 1) */
    double level;             /* interval level (default 0.95) */
    const char *out_path;     /* .h5/.hdf5: replicate file (docs/replicates-hdf5.md);
                                 .csv: one row per replicate; NULL: none */
    int resume;               /* 1: out_path exists; compute only its missing replicates */
    const char *data_file;    /* recorded in the file (name and SHA-256); may be NULL */
    /* Called from the calling thread after each block of replicates with
     * the number done so far (NULL: none). */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    /* Polled between blocks: when *stop becomes non-zero the run ends early,
     * leaving a valid file marked incomplete (a signal handler sets it). */
    const volatile int *stop;
    mlmx_device device;       /* where the refits run (default MLMX_DEVICE_CPU) */
} mlmx_boot_options;

void mlmx_boot_options_default(mlmx_boot_options *o);

typedef struct mlmx_boot mlmx_boot;

/* Parametric bootstrap of a fit: replicate r is simulated from the fit's
 * estimates with the key (seed, r) and refitted from them on a prepared
 * problem (mlmx_problem). Results are bit-identical for any number of
 * threads and any split of the replicates. Checks that out_path can be
 * written before the first replicate; a resumed file must come from the
 * same model, data, seed and nsim (MLMX_ERR_ARG naming the mismatch).
 * Allocates; free with mlmx_boot_free. */
mlmx_status mlmx_boot_run(const mlmx_fit *f, const mlmx_boot_options *o, mlmx_boot **out);
void mlmx_boot_free(mlmx_boot *b);
int mlmx_boot_nparams(const mlmx_boot *b);
const char *mlmx_boot_param_name(const mlmx_boot *b, int j);
uint64_t mlmx_boot_n_done(const mlmx_boot *b);      /* replicates with a result or failure */
uint64_t mlmx_boot_n_failed(const mlmx_boot *b);    /* refits that gave no estimate */
uint64_t mlmx_boot_n_nonconverged(const mlmx_boot *b);
uint64_t mlmx_boot_n_singular(const mlmx_boot *b);
int mlmx_boot_complete(const mlmx_boot *b);         /* every replicate of the slice done */
/* Where the refits ran ("gpu: ...", "cpu: batch engine lmm-1term, 2 threads",
 * "cpu: workspaces, 1 thread") and why that differs from the device asked
 * for ("" when it does not, e.g. "device auto: running on the CPU: ..."). */
const char *mlmx_boot_device(const mlmx_boot *b);
const char *mlmx_boot_device_note(const mlmx_boot *b);
/* Peak GPU memory the run allocated (bytes; 0 on the CPU). */
size_t mlmx_boot_device_peak_bytes(const mlmx_boot *b);
/* Summary of parameter j over the successful replicates: the estimate,
 * the bootstrap mean and SD, and the percentile, basic and normal
 * intervals at the level (quantiles of R's type 7). */
typedef struct mlmx_boot_summary {
    double estimate, mean, sd;
    double perc_lo, perc_hi, basic_lo, basic_hi, norm_lo, norm_hi;
    uint64_t n;
} mlmx_boot_summary;
mlmx_status mlmx_boot_param_summary(const mlmx_boot *b, int j, mlmx_boot_summary *s);
/* The replicate values of the slice, replicate-major (r * nparams + j);
 * NaN for a failed or missing replicate. */
const double *mlmx_boot_values(const mlmx_boot *b);
/* The summary table (estimates, intervals, counts) as text; malloc'd. */
mlmx_status mlmx_boot_summary_text(const mlmx_boot *b, char **text);
/* The bootstrap distribution of every parameter as a picture (SVG, PNG or
 * PDF by the extension): a histogram per parameter with the estimate and
 * the percentile interval marked. Written atomically. */
mlmx_status mlmx_boot_write_plot(const mlmx_boot *b, const char *path);
/* Join shard files of one run (from --shard) into one file, bit-identical
 * in its datasets to a single run; MLMX_ERR_ARG when they do not fit
 * together (another run, a gap, an overlap). Atomic. */
mlmx_status mlmx_boot_merge(const char *const *inputs, int ninputs, const char *output);

/* ------------------------------------------------------------------ */
/* Simulated responses (lme4's simulate()).                            */
/* ------------------------------------------------------------------ */
typedef struct mlmx_simulate_options {
    uint64_t seed;            /* Philox key (default 1): response r is drawn from (seed, r),
                                 the draws of bootstrap replicate r */
    uint64_t nsim;            /* responses to draw (> 0) */
    int threads;              /* CPU threads (default 1); the draws do not depend on it */
    mlmx_device device;       /* default MLMX_DEVICE_CPU; MLMX_DEVICE_GPU draws with a
                                 batch engine's simulation kernel (docs/gpu.md) */
    const char *out_path;     /* required. .h5/.hdf5: a replicate file
                                 (docs/replicates-hdf5.md) with one group "y" of n
                                 columns, one row per response, written block by
                                 block and resumable; .csv: one row per observation
                                 (obs = its model row, 1..n) and columns sim_1..sim_N,
                                 as simulate() returns them, written whole at the end
                                 (at most 10^8 values) */
    int resume;               /* 1: out_path (.h5) exists; draw only its missing rows */
    const char *data_file;    /* recorded in an HDF5 file (name and SHA-256); may be NULL */
    void (*progress)(void *ctx, uint64_t done, uint64_t total); /* after each block */
    void *progress_ctx;
    const volatile int *stop; /* polled between blocks: an HDF5 file keeps what is done */
} mlmx_simulate_options;

void mlmx_simulate_options_default(mlmx_simulate_options *o);

typedef struct mlmx_simulate mlmx_simulate;

/* Draw nsim responses from the fit's estimates, on the model's scale (a
 * linear model's y; binomial successes of the model's trials; counts;
 * ordinal category codes 0..K-1 in the order of the thresholds), and
 * write them to out_path. Checks the options and, for --device gpu, that
 * the GPU can run before any file is made. Errors: MLMX_ERR_ARG (bad
 * options, a CSV too large), MLMX_ERR_UNSUPPORTED (gpu impossible, with
 * the reason), MLMX_ERR_IO. Allocates; free with mlmx_simulate_free. */
mlmx_status mlmx_simulate_run(const mlmx_fit *f, const mlmx_simulate_options *o,
                              mlmx_simulate **out);
void mlmx_simulate_free(mlmx_simulate *s);
uint64_t mlmx_simulate_n_done(const mlmx_simulate *s); /* responses in the file */
int mlmx_simulate_complete(const mlmx_simulate *s);    /* all nsim (not stopped) */
/* Where the draws ran ("cpu: workspaces, 2 threads", "gpu: ..., engine
 * lmm-1term") and why that differs from the request ("" when it does not). */
const char *mlmx_simulate_device(const mlmx_simulate *s);
const char *mlmx_simulate_device_note(const mlmx_simulate *s);

/* ------------------------------------------------------------------ */
/* Model comparison: likelihood-ratio tests (docs/inference.md).       */
/* ------------------------------------------------------------------ */
/* A comparison table: lme4's anova(m1, m2, ...) (mlmx_anova_create),
 * lmerTest's ranova(fit) (mlmx_ranova_create) or lme4's drop1(fit, test =
 * "Chisq") (mlmx_drop1_create). Row i holds one model; Chisq, Df and
 * Pr(>Chisq) compare it with the row before (anova) or with the full model
 * in row 0 (ranova, drop1). */
typedef struct mlmx_anova mlmx_anova;
typedef struct mlmx_anova_row {
    int model;            /* anova: index of the fit in the array given; ranova, drop1:
                             -1 for the full model, else the reduced model's number */
    const char *name;     /* anova: "m1", "m2", ... (1 + model); ranova: "<none>",
                             "Days in (Days | Subject)", "(1 | Subject)" as lmerTest;
                             drop1: "<none>", the dropped term's label */
    const char *formula;  /* the model's formula */
    int npar;             /* parameters, as logLik's df: p + ntheta + 1 for an LMM
                             (p + 1 for a linear model) */
    double aic, bic, loglik, deviance; /* deviance = -2 logLik */
    double chisq;         /* 2 |logLik difference|, clamped at 0 as lme4 (NaN in row 0) */
    int df;               /* difference in npar (0 in row 0) */
    double p;             /* Pr(>Chisq) on df (NaN in row 0 and when df = 0) */
    double p_chibar;      /* where the larger model adds exactly one variance component
                             and nothing else (one scalar random-effect term), the null
                             puts that variance on its boundary: the p-value of the
                             chi-bar-square mixture 0.5 chi2_0 + 0.5 chi2_1, p / 2
                             (1 when Chisq = 0; Self & Liang 1987; Stata's
                             chibar2(01)); NaN otherwise */
} mlmx_anova_row;

/* lme4's anova() for n >= 2 fits of one response on the same rows: REML
 * fits of LMMs are refitted by ML from their theta (lme4's refit = TRUE;
 * mlmx_anova_refitted counts them, for lme4's message "refitting model(s)
 * with ML (instead of REML)"); rows are ordered by npar (ties keep the
 * given order); each row is tested against the row before. Pairs that are
 * not nested give a warning (mlmx_anova_warning), not an error, as R: the
 * rule is that the smaller model's fixed-effect names and random-effect
 * terms (grouping factor and columns) must be among the larger model's,
 * and the larger model's log-likelihood must not be lower (1e-6
 * relative); equal npar warn that there is no test. Errors: MLMX_ERR_ARG
 * (fewer than two fits, a NULL fit, different families), MLMX_ERR_DATA
 * (a different number of observations, other rows of the data, a
 * different response), and a failed ML refit's error. The fits (and their
 * models) must outlive the table. Allocates; free with mlmx_anova_free. */
mlmx_status mlmx_anova_create(const mlmx_fit *const *fits, int n, mlmx_anova **out);
/* lmerTest's ranova(fit) for a linear mixed model fitted to d: each
 * random-effect term (after lme4's expansion of '/' and '||') is reduced
 * in turn, as lmerTest's rule: a term with slopes loses one slope term at
 * a time (respecting marginality; (x | g) and (0 + x | g) become (1 | g)),
 * a random-intercept term (1 | g) is removed. Each reduced model is
 * refitted by the fit's method (REML stays REML) with the options o (NULL:
 * defaults; its method is ignored); a model with no random term left is
 * the linear model, whose (restricted) log-likelihood is computed in
 * closed form (QR, as R's logLik(lm, REML = )). Errors: MLMX_ERR_UNSUPPORTED
 * for a GLMM, MLMX_ERR_DATA when a reduced model uses other rows ("number
 * of rows in use has changed", as lmerTest), and the refits' errors. d must
 * be the data set the fit's model was built from. Allocates. */
mlmx_status mlmx_ranova_create(const mlmx_data *d, const mlmx_fit *f, const mlmx_fit_options *o,
                               mlmx_anova **out);
/* lme4's drop1(fit, test = "Chisq"): each fixed-effect term that
 * marginality allows (R's drop.scope: not contained in an interaction) is
 * dropped in turn, the model refitted with the fit's family, link,
 * quadrature and the options o (NULL: defaults), and tested against the
 * full model by the likelihood ratio. Rows: "<none>", then the term labels
 * as R writes them ("factor(period)", "x:z"); a row's df is the number of
 * coefficients dropped (drop1's npar column). For GLMMs and LMMs fitted by
 * ML. Errors: MLMX_ERR_ARG for a REML fit (lme4's drop1 would mix REML
 * estimates with ML likelihoods), MLMX_ERR_UNSUPPORTED for prior weights,
 * MLMX_ERR_DATA when a reduced model uses other rows, the refits' errors.
 * d must be the data set the fit's model was built from. Allocates. */
mlmx_status mlmx_drop1_create(const mlmx_data *d, const mlmx_fit *f, const mlmx_fit_options *o,
                              mlmx_anova **out);
void mlmx_anova_free(mlmx_anova *a);
int mlmx_anova_nrows(const mlmx_anova *a);
const mlmx_anova_row *mlmx_anova_row_at(const mlmx_anova *a, int i); /* NULL out of range */
int mlmx_anova_refitted(const mlmx_anova *a); /* REML fits refitted by ML */
int mlmx_anova_nwarnings(const mlmx_anova *a);
const char *mlmx_anova_warning(const mlmx_anova *a, int i); /* NULL out of range */
/* The table as R prints it: anova ("Data: <data_name>" when data_name is
 * not NULL, "Models:", each model's formula, the table with signif stars,
 * the chi-bar-square p-values and the boundary caveat, the warnings),
 * ranova (lmerTest's heading, "Model:", the table) or drop1 ("Single term
 * deletions", "Model:", npar AIC LRT Pr(Chi)). malloc'd; release with
 * mlmx_string_free. */
mlmx_status mlmx_anova_summary(const mlmx_anova *a, const char *data_name, char **text);
/* The table as JSON ({"kind" (anova, ranova, drop1), "method", "rows": [{"name", "formula", "npar", "AIC",
 * "BIC", "logLik", "deviance", "Chisq", "Df", "p", "p_chibar"}],
 * "refitted", "warnings"}), written atomically. */
mlmx_status mlmx_anova_write_json(const mlmx_anova *a, const char *path);

/* The likelihood-ratio test of a fit against the same model without random
 * effects, as Stata's mixed prints it under the table: chi2 = 2 (logLik -
 * logLik0) (clamped at 0), logLik0 the linear model's by the fit's method
 * (ML, or REML as R's logLik(lm, REML = TRUE)) for an LMM, the GLM's for a
 * GLMM; df = ntheta; p = the chi-bar-square p-value P(chi2_1 >= chi2) / 2
 * (1 at chi2 = 0) when df = 1, else the conservative P(chi2_df >= chi2) (Stata's note).
 * Errors: MLMX_ERR_ARG (NULL), MLMX_ERR_NUMERIC (no residual df). */
mlmx_status mlmx_fit_lrt_linear(const mlmx_fit *f, double *chi2, int *df, double *p);
/* Its line as Stata prints it ("LR test vs. linear model: chibar2(01) =
 * 107.20, Prob >= chibar2 = 0.0000", or chi2(df) with the conservative
 * note). malloc'd; release with mlmx_string_free. */
mlmx_status mlmx_fit_lrt_linear_text(const mlmx_fit *f, char **text);

/* ------------------------------------------------------------------ */
/* Output.                                                             */
/* ------------------------------------------------------------------ */

/* The summary as lme4's summary(lmer) prints it, plus Stata's group-size
 * table. *text is malloc'd; release with mlmx_string_free. */
mlmx_status mlmx_fit_summary(const mlmx_fit *f, char **text);
/* The summary with lmerTest's df and p-value columns for an LMM (ddf:
 * Satterthwaite or Kenward-Roger; NONE is mlmx_fit_summary's lme4
 * layout). Where the method does not apply (an ML fit for Kenward-Roger)
 * the table is lme4's with a note saying why. GLMMs: their Wald z table
 * whatever ddf. */
mlmx_status mlmx_fit_summary_ddf(const mlmx_fit *f, mlmx_ddf_method ddf, char **text);
/* Write results as JSON (see docs/cli.md for the keys). The file is
 * written to a temporary name and renamed: no partial file on failure. */
mlmx_status mlmx_fit_write_json(const mlmx_fit *f, const char *path);
/* The same with the fixed-effect tests of an LMM by the method ddf (keys
 * "coef_tests" and "anova"; mlmx_fit_write_json uses Satterthwaite's) and,
 * when ci is not NULL, its intervals under "confint": {"method", "level",
 * "parameters": [{"name", "estimate", "lower", "upper"}, ...], "messages",
 * "seconds"} (docs/cli.md). Atomic. */
mlmx_status mlmx_fit_write_json_ex(const mlmx_fit *f, mlmx_ddf_method ddf, const mlmx_confint *ci,
                                   const char *path);
/* Write conditional modes as CSV: group,level,term,mode,condsd. */
mlmx_status mlmx_fit_write_ranef(const mlmx_fit *f, const char *path);
/* Caterpillar plot of the conditional modes as SVG: one panel per term and
 * column, levels sorted by mode, with mode +- 1.96 conditional SD (lme4's
 * dotplot(ranef(fit, condVar = TRUE))). Written atomically. */
mlmx_status mlmx_fit_write_ranef_plot(const mlmx_fit *f, const char *path);
void mlmx_string_free(char *s);


/* ------------------------------------------------------------------ */
/* Power analysis by simulation (docs/power.md, docs/scenarios.md).    */
/* ------------------------------------------------------------------ */
/* A scenario file names a model, a design (or a pilot study), the true
 * parameters, a test, alpha and nsim. Replicate r of a design point is
 * simulated from the key (seed, r) on a prepared problem and refitted; the
 * test rejects or not. Power is rejections / successful fits with a
 * Clopper-Pearson interval; fits that give no estimate (or a non-finite
 * test statistic) count in n_failed and leave the denominator, singular
 * fits are counted and kept. Results are bit-identical for any number of
 * threads. */
typedef struct mlmx_power_options {
    long nsim;                /* > 0: replaces the scenario's nsim; 0: the scenario's */
    int threads;              /* workspaces, one per thread (default 1) */
    int seed_given;           /* 1: seed replaces the scenario's seed */
    uint64_t seed;
    double conf_level;        /* Clopper-Pearson level (default 0.95) */
    /* Called as replicates finish, serialized (NULL: none): after each
     * block of replicates for a Wald test (from the calling thread), after
     * each replicate for an LRT (from the worker that finished it), with
     * the design point (0-based, of npoints run), replicates done at that
     * point and its nsim; once with done == nsim per point. Must not call
     * back into the library. */
    void (*progress)(void *ctx, int point, int npoints, long done, long nsim);
    void *progress_ctx;
    /* Where the simulations are refitted (default MLMX_DEVICE_CPU). Wald
     * tests run through the replicate runner: a batch engine on the GPU or
     * on CPU threads where one covers the model, else workspaces. An LRT
     * refits two models to each response and runs on CPU workspaces:
     * MLMX_DEVICE_GPU is then an error, MLMX_DEVICE_AUTO a note. */
    mlmx_device device;
} mlmx_power_options;

void mlmx_power_options_default(mlmx_power_options *o);

/* One design point's result. */
typedef struct mlmx_power_point {
    long units;               /* units of the curve level (or the pilot's group) at this
                                 point; -1 when the scenario has no such level */
    long nsim, n_ok, n_rejected, n_failed, n_singular, n_nonconverged;
    double power;             /* n_rejected / n_ok (NaN when n_ok = 0) */
    double ci_lower, ci_upper;/* Clopper-Pearson interval (NaN when n_ok = 0) */
    double critical_value;    /* |z| or |t| bound, or the chi-square quantile (LRT) */
    long nobs;                /* observations in the design */
    double seconds;           /* wall time of this point */
} mlmx_power_point;

typedef struct mlmx_power_result mlmx_power_result;

/* Read the scenario file, fit the pilot if it has one, and estimate power
 * at the base design and at every curve point. Errors (one line each,
 * naming the file, key, coefficient, term or column): MLMX_ERR_IO,
 * MLMX_ERR_PARSE (malformed file: line and column; bad values),
 * MLMX_ERR_FORMULA, MLMX_ERR_ARG (names that do not match the model,
 * options out of range), and the model's and pilot fit's errors.
 * Allocates; free with mlmx_power_result_free. */
mlmx_status mlmx_power_run(const char *scenario_path, const mlmx_power_options *o,
                           mlmx_power_result **out);
void mlmx_power_result_free(mlmx_power_result *r);
/* The base design's result (the scenario's design, or the pilot extended to
 * pilot.extend.units). */
const mlmx_power_point *mlmx_power_base(const mlmx_power_result *r);
/* Curve points, in the file's order (0 without a curve). */
int mlmx_power_npoints(const mlmx_power_result *r);
const mlmx_power_point *mlmx_power_point_at(const mlmx_power_result *r, int i);
/* The level whose units the curve varies (NULL without a curve). */
const char *mlmx_power_curve_level(const mlmx_power_result *r);
/* Where the refits ran (as mlmx_boot_device: "gpu: ...", "cpu: batch engine
 * lmm-1term, 2 threads", "cpu: workspaces, 2 threads"; the last design
 * point's), why that differs from the device asked for ("" when it does
 * not), and the peak GPU memory of the run (bytes; 0 on the CPU). */
const char *mlmx_power_device(const mlmx_power_result *r);
const char *mlmx_power_device_note(const mlmx_power_result *r);
size_t mlmx_power_device_peak_bytes(const mlmx_power_result *r);
/* The summary (a line for the base design, a table for a curve); malloc'd,
 * release with mlmx_string_free. */
mlmx_status mlmx_power_summary(const mlmx_power_result *r, char **text);
/* Outputs, each written atomically (no partial file on failure): JSON with
 * the keys power, ci_lower, ci_upper, nsim, n_ok, n_rejected, n_failed,
 * n_singular, ... and `curve` (one such object per point, with `units`);
 * CSV with one row per point (the base design's row without a curve); the
 * power curve with its band as SVG, PNG or PDF by the extension. */
mlmx_status mlmx_power_write_json(const mlmx_power_result *r, const char *path);
mlmx_status mlmx_power_write_csv(const mlmx_power_result *r, const char *path);
mlmx_status mlmx_power_write_plot(const mlmx_power_result *r, const char *path);
/* Check, before any work, that path can be written: its directory exists
 * and takes a new file, path is not a directory, and (plot = 1) the
 * extension is .svg, .png or .pdf. Creates and removes a temporary file;
 * leaves nothing behind. MLMX_ERR_IO or MLMX_ERR_ARG naming the path. */
mlmx_status mlmx_power_check_output(const char *path, int plot);

/* --- Power from a saved model (mlmx power --model; simr's "start from a
 * fitted model"). As mlmx_power_run with the model file at model_path
 * (written by mlmx_fit_save) as the pilot: its formula (the scenario's
 * formula may be left out; if given it must equal the model's up to white
 * space), its data file (the scenario's pilot.data, else the recorded
 * path; checked by SHA-256) and its saved estimates as the truth (the fit
 * rebuilt by mlmx_model_file_fit, not a refit); pilot.extend, fixed,
 * random, sigma and curve apply as with a pilot. model_path replaces the
 * scenario's pilot.model; NULL: the scenario's pilot.model, if any.
 * Errors, besides mlmx_power_run's: the model file's (MLMX_ERR_IO,
 * MLMX_ERR_PARSE), MLMX_ERR_UNSUPPORTED (a GLMM: linear mixed models
 * only), MLMX_ERR_ARG (a formula that differs from the model's, no data
 * file recorded), MLMX_ERR_DATA (the data file changed). */
mlmx_status mlmx_power_run_model(const char *scenario_path, const char *model_path,
                                 const mlmx_power_options *o, mlmx_power_result **out);

/* ------------------------------------------------------------------ */
/* Saved models and prediction (docs/model-file.md, docs/inference.md). */
/* ------------------------------------------------------------------ */
/* A model file holds everything needed to use a fit without its data: the
 * formula, the recipe (each variable's type and factor levels in coding
 * order, from which model-matrix rows of new data are rebuilt with the same
 * contrasts), the fixed effects with their vcov, theta, sigma, the
 * conditional modes with their SDs and levels, the family, link, method and
 * nagq, ordinal thresholds and the NB size, the data file's name and
 * SHA-256, a format version and the writer's mlmx version. */
typedef struct mlmx_model_file mlmx_model_file;

/* Write f to path as HDF5 (format version 1, docs/model-file.md). data_path
 * (may be NULL) is recorded with its SHA-256. Written to a temporary name
 * and renamed: no partial file on failure. The conditional SDs are stored
 * only when the fit computed them (mlmx_fit_options.conditional_variances).
 * Errors: MLMX_ERR_IO (the data file cannot be hashed, the file cannot be
 * written), MLMX_ERR_ARG. */
mlmx_status mlmx_fit_save(const mlmx_fit *f, const char *path, const char *data_path);
/* Read a model file. Errors: MLMX_ERR_IO (cannot be read); MLMX_ERR_PARSE
 * (not an HDF5 file, damaged: a checksum or read fails, not an mlmx model
 * file, a missing dataset or attribute, named); MLMX_ERR_UNSUPPORTED (a
 * format version this build does not read, naming both versions). A file of
 * the same format version written by another mlmx version is read; its
 * writer's version is mlmx_model_file_version. Allocates. */
mlmx_status mlmx_model_file_read(const char *path, mlmx_model_file **out);
void mlmx_model_file_free(mlmx_model_file *m);
const char *mlmx_model_file_formula(const mlmx_model_file *m);
const char *mlmx_model_file_version(const mlmx_model_file *m);      /* the writer's */
const char *mlmx_model_file_data(const mlmx_model_file *m);         /* "" if not recorded */
const char *mlmx_model_file_data_sha256(const mlmx_model_file *m);  /* "" if not recorded */
mlmx_family mlmx_model_file_family(const mlmx_model_file *m);

typedef enum mlmx_predict_re {
    MLMX_PREDICT_RE_NONE = 0, /* fixed effects only: lme4's re.form = NA */
    MLMX_PREDICT_RE_ALL = 1   /* with the conditional modes (re.form = NULL); a level
                                 the model did not see gets b = 0 (allow.new.levels) */
} mlmx_predict_re;
typedef enum mlmx_predict_type {
    MLMX_PREDICT_LINK = 0,    /* the linear predictor (offset included) */
    MLMX_PREDICT_RESPONSE = 1 /* the mean: the inverse link of the linear predictor
                                 (a binomial model's probability) */
} mlmx_predict_type;
typedef struct mlmx_predict_options {
    mlmx_predict_re re;       /* default MLMX_PREDICT_RE_ALL, as lme4 */
    mlmx_predict_type type;   /* default MLMX_PREDICT_LINK, as lme4 */
} mlmx_predict_options;
void mlmx_predict_options_default(mlmx_predict_options *o);

/* Predict for every row of newdata, as lme4's predict(fit, newdata,
 * re.form, allow.new.levels = TRUE, type): fit receives nrow values. se
 * (NULL: not computed) receives the standard error of the fixed-effect
 * part, sqrt(x^T vcov x) on the link scale, times |d mu / d eta| for type
 * response (the delta method). n_new (may be NULL) receives the number of
 * rows with a grouping level the model did not see (predicted at b = 0 for
 * that term). A missing value in a variable a row needs gives NaN (R's NA,
 * na.action = na.pass). newdata need not hold the response. Errors
 * (MLMX_ERR_DATA, message starting "newdata:"): a column of the formula
 * absent (named); a variable whose type differs from the fit's (a factor
 * supplied as numbers or the reverse, as R's "variable 'x' was fitted with
 * type ..."); a fixed-effect factor level the model did not see (the
 * factor, data row and level, as R's "factor f has new level"). Ordinal
 * models: type link only, without se (MLMX_ERR_UNSUPPORTED). */
mlmx_status mlmx_predict(const mlmx_model_file *m, const mlmx_data *newdata,
                         const mlmx_predict_options *o, double *fit, double *se, size_t *n_new);

/* Starting from a saved model (mlmx boot, simulate --model; simr's "start
 * from a fitted model"). mlmx_model_file_check_data: MLMX_OK when the file
 * at data_path has the SHA-256 recorded in m; MLMX_ERR_DATA when it differs
 * or none was recorded, MLMX_ERR_IO when it cannot be read. */
mlmx_status mlmx_model_file_check_data(const mlmx_model_file *m, const char *data_path);
/* A fit of model (built from the saved formula on the saved data) at the
 * saved estimates: a linear mixed model is evaluated once at the saved
 * theta with the saved method, so beta, sigma and the modes are the saved
 * ones; o (NULL: defaults) gives the rest (device, conditional variances).
 * Errors: MLMX_ERR_DATA when the model is not the saved one (observations,
 * fixed-effect columns) or its beta differs from the saved beta by more
 * than 1e-8 relative (other data); MLMX_ERR_UNSUPPORTED for a GLMM (not
 * done yet). Allocates; free with mlmx_fit_free. */
mlmx_status mlmx_model_file_fit(const mlmx_model *model, const mlmx_model_file *m,
                                const mlmx_fit_options *o, mlmx_fit **out);

#ifdef __cplusplus
}
#endif
#endif /* MLMX_H */
