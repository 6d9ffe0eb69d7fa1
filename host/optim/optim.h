/* Bound-constrained minimisation. NLopt's BOBYQA (lme4's default
 * optimizer) is the reference; only this module includes nlopt.h. */
#ifndef MLMX_OPTIM_H
#define MLMX_OPTIM_H
#include "util/error.h"

typedef double (*mlmx_objective)(int n, const double *x, void *ctx);

typedef struct mlmx_optim_opts {
    double ftol_abs;   /* stop when an iteration changes f by less than this */
    double ftol_rel;
    double xtol_rel;   /* ... or x by less than this, relatively */
    double xtol_abs;
    int max_evals;
    double init_step;  /* BOBYQA: initial trust-region radius (<= 0: NLopt's choice);
                          quasi-Newton: length of the first step (<= 0: 0.5) */
    double gtol;       /* quasi-Newton: stop when max |g_i| max(|x_i|,1) <= gtol max(|f|,1) */
    const double *hinv0; /* quasi-Newton: initial inverse Hessian (n*n), or NULL for a
                            scaled gradient step */
} mlmx_optim_opts;

typedef struct mlmx_optim_result {
    double fmin;
    int n_evals;
    int converged;     /* 1: a tolerance was met; 0: stopped for another reason */
    char message[160];
} mlmx_optim_result;

void mlmx_optim_opts_default(mlmx_optim_opts *o);

/* Minimise f over x (in: start, out: argmin) subject to lb <= x <= ub
 * (either may be NULL for unbounded). A non-finite f is treated as a
 * failed point (the optimizer backs away). Errors only for invalid
 * arguments or an optimizer failure; "not converged" is a result. */
mlmx_status mlmx_optim_bobyqa(int n, double *x, const double *lb, const double *ub,
                              mlmx_objective f, void *ctx, const mlmx_optim_opts *o,
                              mlmx_optim_result *r, mlmx_error *err);
/* Objective with gradient: returns f and fills grad (n values); a
 * non-finite return marks the point as failed. */
typedef double (*mlmx_objective_grad)(int n, const double *x, double *grad, void *ctx);

/* Projected BFGS with a capped first step (kernels/qn.h), any
 * number of parameters (its dense inverse Hessian is n*n). A closed loop
 * around the ask/tell state machine below. Allocates its state once. */
mlmx_status mlmx_optim_qnewton(int n, double *x, const double *lb, const double *ub,
                               mlmx_objective_grad f, void *ctx, const mlmx_optim_opts *o,
                               mlmx_optim_result *r, mlmx_error *err);

/* The same method as a reverse-communication (ask/tell) state machine, so
 * that the caller owns the loop: a batch of replicate fits can step in
 * lockstep, each evaluation of the batch done together (GUIDE §8).
 *   q = mlmx_qn_alloc(nmax);                   once per workspace
 *   mlmx_qn_start(q, n, x0, lb, ub, opts);     per fit; allocates nothing
 *   while (mlmx_qn_ask(q, x, &g)) {            x: where to evaluate
 *       f = criterion and gradient at x, the gradient written to g (n values);
 *       mlmx_qn_tell(q, f);                    a non-finite f marks a failed point
 *   }
 *   mlmx_qn_result(q, xbest, &r);
 * lb, ub (may be NULL) and opts->hinv0 must stay valid until the run ends;
 * opts is read at start only. */
typedef struct mlmx_qn mlmx_qn;
mlmx_qn *mlmx_qn_alloc(int nmax);      /* NULL when out of memory or nmax <= 0 */
void mlmx_qn_free(mlmx_qn *q);
/* MLMX_ERR_ARG when n is outside 1..nmax. */
mlmx_status mlmx_qn_start(mlmx_qn *q, int n, const double *x0, const double *lb,
                          const double *ub, const mlmx_optim_opts *o);
/* 1: evaluate at x (n values written) and write the gradient to *grad;
 * 0: the run has ended. */
int mlmx_qn_ask(mlmx_qn *q, double *x, double **grad);
void mlmx_qn_tell(mlmx_qn *q, double f);
/* The best point (x may be NULL), value, evaluation count and message. */
void mlmx_qn_result(const mlmx_qn *q, double *x, mlmx_optim_result *r);
/* 1 when the criterion was not finite at the start. */
int mlmx_qn_failed(const mlmx_qn *q);
/* The words for a kernels/qn.h stop code (MLMX_QN_STOP_*). */
const char *mlmx_qn_stop_message(int stop);
/* The kernels/qn.h settings from the options (hinv0 aside). */
struct mlmx_qn_cfg;
void mlmx_qn_cfg_from_opts(const mlmx_optim_opts *o, struct mlmx_qn_cfg *c);
#endif
