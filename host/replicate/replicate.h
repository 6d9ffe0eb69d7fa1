/* Prepared problems and workspaces (the public mlmx_problem and
 * mlmx_workspace): the structure of a model analysed once and shared, one
 * workspace per thread, responses set or simulated, refits from a start.
 * problem.c holds the public entry points, the report parameters and the
 * simulation; lmm_refit.c and host/glmm/refit.c the two estimators. */
#ifndef MLMX_REPLICATE_H
#define MLMX_REPLICATE_H
#include "glmm/glmm.h"
#include "lmm/fit.h"
#include "mlmx.h"
#include "optim/optim.h"

struct mlmx_problem {
    const mlmx_model *md;
    mlmx_fit_options opt;
    mlmx_family family;
    int glmm;             /* family != gaussian */
    const mlmx_backend *be;
    int ntheta, p, nextra;
    double *theta, *beta, *extra; /* the parameters (extra: thresholds or size) */
    double sigma;
    int nparams;
    char **param_names;
    double *params;       /* nparams, report order */
    int nu_total;         /* random effects over all terms: sum of nlevels * q */
    /* LMM: the shared structure and the BFGS start on x = log(theta) (diagonal) */
    mlmx_lmm_stats *s;
    mlmx_lmm_stats *gsu, *gsx; /* GLMM: the two shared structures */
    double *x0, *xlo;     /* ntheta */
    double *hinv0;        /* ntheta^2 inverse Hessian at x0, or NULL */
    /* GLMM: the link after defaults, the start x = [theta; beta; extra] and its
     * inverse Hessian */
    mlmx_link link;
    int np;               /* optimizer parameters */
    double *gx0, *glb, *ghinv0;
    int use_grad;         /* BFGS on the analytic gradient (else differences) */
    /* LMM with a residual structure (resid_refit.c): its parameters on
     * nlme's and the optimizer's scale, and each group's factor of R_g */
    int nres;
    double *rnat, *rx;
    double *psi0;         /* structured random-effect covariances: the fit's psi */
    double *rchol;
    size_t *rchol_off;    /* ngroups + 1 */
};

struct mlmx_workspace {
    const mlmx_problem *P;
    double *y;            /* n: the current response (LMM) */
    int have_response, have_fit;
    double *b;            /* nu_total: simulated random effects */
    double *u;            /* nu_total: spherical draws */
    double *tm;           /* K templates (qmax^2 each) */
    int qmax;
    double *params, *theta, *beta, *se;
    double criterion;
    int converged, singular, n_evals;
    /* LMM */
    mlmx_lmm_work *w;
    mlmx_lmm_obj obj;
    int obj_ready;
    mlmx_qn *qn;
    double *xe, *xb;      /* ntheta each */
    double *vx;           /* p*p */
    /* GLMM */
    mlmx_glmm *g;
    void *gctx;           /* mlmx_gobj */
    double *gx, *gxe, *gh; /* np, np, np*np */
    /* residual structure */
    struct mlmx_rlmm *rl; /* NULL without a residual structure */
    double *rwork;        /* BOBYQA refits (resid_refit.c): x, lo, hi (ncov + nres
                             each), the natural residual parameters (nres),
                             theta (ntheta), the residual draws (n) */
};

/* Report parameters from theta, beta, sigma, extra and the residual
 * structure's natural parameters rnat (P's layout; NULL without one). */
void mlmx_rep_params(const mlmx_problem *P, const double *theta, const double *beta,
                     double sigma, const double *extra, const double *rnat, double *out);
/* beta, its SEs, sigma and the report parameters from the factor in W at
 * W->theta (lmm_refit.c); rnat: the residual parameters or NULL. */
mlmx_status mlmx_rep_lmm_results(mlmx_workspace *W, const double *rnat, mlmx_error *err);
/* Residual structures (resid_refit.c). */
struct mlmx_rng;
mlmx_status mlmx_rep_resid_prepare(mlmx_problem *P, const double *rnat, mlmx_error *err);
void mlmx_rep_resid_draw(const mlmx_problem *P, struct mlmx_rng *rng, double *eps);
mlmx_status mlmx_rep_resid_ws_init(mlmx_workspace *W, mlmx_error *err);
void mlmx_rep_resid_ws_free(mlmx_workspace *W);
mlmx_status mlmx_rep_resid_set_response(mlmx_workspace *W, mlmx_error *err);
/* The refit of a model with a residual structure or structured
 * random-effect covariances (BOBYQA over psi or theta and the residual
 * parameters); ws_init and ws_free serve both. */
mlmx_status mlmx_rep_resid_fit(mlmx_workspace *W, mlmx_error *err);
/* n doubles of W's scratch for the residual draws. */
double *mlmx_rep_resid_eps(const mlmx_workspace *W);

/* LMM path (host/replicate/lmm_refit.c). */
mlmx_status mlmx_rep_lmm_prepare(mlmx_problem *P, mlmx_error *err);
/* The inverse Hessian over log(theta) at the start, from W's response. */
void mlmx_rep_lmm_curvature(mlmx_problem *P, mlmx_workspace *W);
mlmx_status mlmx_rep_lmm_ws_init(mlmx_workspace *W, mlmx_error *err);
void mlmx_rep_lmm_ws_free(mlmx_workspace *W);
mlmx_status mlmx_rep_lmm_fit(mlmx_workspace *W, mlmx_error *err);

/* GLMM path (host/glmm/refit.c). */
mlmx_status mlmx_rep_glmm_prepare(mlmx_problem *P, mlmx_error *err);
/* The optimizer's start [theta; beta; extra] and its inverse Hessian, from
 * a workspace W of P holding a (simulated) response. */
mlmx_status mlmx_rep_glmm_curvature(mlmx_problem *P, mlmx_workspace *W, mlmx_error *err);
mlmx_status mlmx_rep_glmm_ws_init(mlmx_workspace *W, mlmx_error *err);
void mlmx_rep_glmm_ws_free(mlmx_workspace *W);
mlmx_status mlmx_rep_glmm_set_response(mlmx_workspace *W, const double *y, mlmx_error *err);
mlmx_status mlmx_rep_glmm_fit(mlmx_workspace *W, int want_se, mlmx_error *err);
/* The model's response on the workspace's scale (successes, counts or
 * category codes) and the binomial trials (NULL for other families). */
const double *mlmx_rep_glmm_trials(const mlmx_workspace *W);

#endif
