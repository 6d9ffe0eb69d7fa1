/* The LMM criterion with a residual structure (host/resid): with
 * eps ~ N(0, sigma^2 R), the profiled criterion is today's criterion on
 * the generalized cross-products [Z X y]^T R^{-1} [Z X y] plus log|R|
 * (nlme's likelihood; GUIDE §1 with the rows whitened by R^{-1/2}).
 *
 * The cross-products are formed without an O(n) pass where the algebra
 * allows (see docs/longitudinal.md):
 *   ar1  R^{-1} is tridiagonal: a fixed combination of 1 + 3 D sets of
 *        statistics (D distinct time gaps), with coefficients in rho^d;
 *   cs   R_g^{-1} = a I + b_n 1 1^T: the ordinary statistics plus one set
 *        of group sums per distinct group size;
 *   ident (alone) one set per stratum, weighted by 1/delta_k^2;
 *   arma on few time patterns (balanced designs): one set per position
 *        pair of each pattern, combined with the entries of C_p^{-1}.
 * car1 (and ar1 with a variance function or many gaps) refill per
 * evaluation from the tridiagonal R_g^{-1}, O(n); the rest (arma on many
 * patterns, cs with a variance function, power with a correlation) from
 * each group's dense R_g^{-1}: O(sum n_g^2) work. */
#ifndef MLMX_RLMM_H
#define MLMX_RLMM_H
#include "lmm/lmm.h"
#include "optim/optim.h"
#include "resid/resid.h"

typedef struct mlmx_rlmm mlmx_rlmm;

/* Prepare for model s->model's residual structure r (the model's own
 * response). MLMX_ERR_MODEL when a correlation group spans levels of the
 * model's innermost grouping factor. */
mlmx_status mlmx_rlmm_prepare(const mlmx_lmm_stats *s, const mlmx_resid *r, mlmx_rlmm **out,
                              mlmx_error *err);
void mlmx_rlmm_free(mlmx_rlmm *rl);
/* Write the cross-products at the residual parameters x (the optimizer's
 * scale, r->npar values) into v, and log|R| into *logdet_r.
 * MLMX_ERR_NUMERIC when some R_g is not positive definite. */
mlmx_status mlmx_rlmm_set(mlmx_rlmm *rl, const double *x, mlmx_lmm_vals *v, double *logdet_r,
                          mlmx_error *err);
/* Which way the cross-products are formed: "precomputed" or "per group". */
const char *mlmx_rlmm_path(const mlmx_rlmm *rl);
/* A new response (n values, kept by pointer: it must stay valid): the
 * precomputed sets are refilled, O(n). */
mlmx_status mlmx_rlmm_set_response(mlmx_rlmm *rl, const double *y, mlmx_error *err);

/* The criterion over x = [covariance parameters; residual parameters
 * (optimizer scale)] for the optimizers (host/lmm/rfit.c), one per
 * workspace. The covariance parameters are theta, or psi for a model with
 * structured random-effect covariances (then th: ntheta scratch for theta). */
typedef struct mlmx_robj {
    const mlmx_lmm_stats *s;
    const mlmx_backend *be;
    mlmx_lmm_work *w;
    mlmx_rlmm *rl; /* NULL without a residual structure: w->v holds the
                      cross-products (structured terms only) */
    int reml, nt;  /* nt: covariance parameters in x (mlmx_model_ncov) */
    double *th;    /* NULL without structured terms */
    int n_evals;
    double best;
    mlmx_error err; /* the first failure, for the message */
    void (*progress)(void *, int, double);
    void *progress_ctx;
} mlmx_robj;

/* The criterion at x, HUGE_VAL where it cannot be evaluated (the factor
 * in c->w is then at x). */
double mlmx_robj_value(int n, const double *x, void *ctx);
/* Bounds of x: the covariance parameters', then the residual structure's
 * (n = ncov + npar; npar 0 without one). */
void mlmx_robj_bounds(const mlmx_model *md, double *lo, double *hi);
/* BOBYQA from x (then once more from its optimum); x: the optimum. */
mlmx_status mlmx_robj_minimize(mlmx_robj *c, int np, double *x, const double *lo,
                               const double *hi, int max_evals, double ftol_abs, double xtol_rel,
                               mlmx_optim_result *res, mlmx_error *err);

#endif
