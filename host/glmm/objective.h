/* The GLMM optimizers' objective: the parameter vector x = [theta; beta;
 * extra] and the deviance, its gradient and its Hessian by differences
 * over x (host/glmm/objective.c), shared by the full fit (fit.c) and the
 * replicate refits (refit.c). */
#ifndef MLMX_GLMM_OBJECTIVE_H
#define MLMX_GLMM_OBJECTIVE_H
#include "glmm/glmm.h"
#include "lmm/fit.h"
#include "optim/optim.h"

#define NPAR_MAX 256

/* The optimizer's parameters: x = [theta; beta; extra], where beta leaves
 * out the intercept of an ordinal model (the thresholds take its place) and
 * extra is c_1 and log(c_k - c_{k-1}) for an ordinal model's thresholds (so
 * they stay increasing) or log(size) for the negative binomial. */
typedef struct mlmx_gobj {
    mlmx_glmm *g;
    int ntheta, p, nagq;
    int nb, nextra;
    double bfull[NPAR_MAX];
    double theta0[NPAR_MAX]; /* fixed theta for fits without random effects */
    int fix_theta;           /* x holds [beta; extra] only, theta = theta0 */
    double last_x[NPAR_MAX], last_g[NPAR_MAX], last_f; /* the last gradient evaluated */
    int have_last;
    double *u0; /* the modes to warm-start each difference from (obj_fd_grad), nu */
    mlmx_error err;
    int n_evals;
    double best;
    void (*progress)(void *, int, double);
    void *progress_ctx;
} mlmx_gobj;

double mlmx_gobj_note(mlmx_gobj *c, mlmx_status st, const mlmx_error *e, double v);
double mlmx_gobj_obj_stage1(int n, const double *theta, void *ctx);
void mlmx_gobj_set_criteria(mlmx_fit *f, double dev, int np);
void mlmx_gobj_optim_opts_from(const mlmx_fit_options *o, mlmx_optim_opts *oo);
int mlmx_gobj_quad_grad_ok(const mlmx_glmm *g);
int mlmx_gobj_npar(const mlmx_gobj *c);
void mlmx_gobj_unpack(mlmx_gobj *c, const double *x, const double **theta, const double **beta);
mlmx_status mlmx_gobj_dev_at(mlmx_gobj *c, const double *x, double *v, mlmx_error *e);
double mlmx_gobj_obj_stage2(int n, const double *x, void *ctx);
mlmx_status mlmx_gobj_grad_x(mlmx_gobj *c, const double *x, double *v, double *grad, mlmx_error *e);
double mlmx_gobj_obj_stage2_grad(int n, const double *x, double *grad, void *ctx);
double mlmx_gobj_obj_fd_grad(int n, const double *x, double *grad, void *ctx);
mlmx_status mlmx_gobj_fd_hessian(mlmx_gobj *c, const double *x0, const int *idx, int nf, double *H,
                              mlmx_error *err);
mlmx_status mlmx_gobj_fd_hessian_cols(mlmx_gobj *c, const double *x0, const int *idx, int nf, double *H,
                                   mlmx_error *err);
double mlmx_gobj_fd_step(const mlmx_gobj *c, const double *x0, int j);
mlmx_status mlmx_gobj_fd_hessian_grad(mlmx_gobj *c, const double *x0, const int *idx, int nf, double *H,
                                   mlmx_error *err);

#endif
