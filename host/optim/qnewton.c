/* The host's handle on the ask/tell quasi-Newton method of kernels/qn.h:
 * its storage, the options mapping and the messages. The method itself is
 * the shared inline code, the very arithmetic the CUDA replicate fits run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"
#include "qn.h"

struct mlmx_qn {
    int nmax;
    mlmx_qn_state st;
    double *store;
    int *active;
};

mlmx_qn *mlmx_qn_alloc(int nmax)
{
    if (nmax <= 0)
        return NULL;
    mlmx_qn *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    size_t n = (size_t)nmax;
    q->nmax = nmax;
    q->store = malloc((8 * n + n * n) * sizeof *q->store);
    q->active = malloc(n * sizeof *q->active);
    if (!q->store || !q->active) {
        mlmx_qn_free(q);
        return NULL;
    }
    mlmx_qn_bind(&q->st, nmax, q->store, q->active);
    return q;
}

void mlmx_qn_free(mlmx_qn *q)
{
    if (!q)
        return;
    free(q->store);
    free(q->active);
    free(q);
}

void mlmx_qn_cfg_from_opts(const mlmx_optim_opts *o, mlmx_qn_cfg *c)
{
    c->ftol_abs = o->ftol_abs;
    c->ftol_rel = o->ftol_rel;
    c->xtol_rel = o->xtol_rel;
    c->gtol = o->gtol;
    c->init_step = o->init_step;
    c->max_evals = o->max_evals;
}

mlmx_status mlmx_qn_start(mlmx_qn *q, int n, const double *x0, const double *lb,
                          const double *ub, const mlmx_optim_opts *o)
{
    if (n <= 0 || n > q->nmax)
        return MLMX_ERR_ARG;
    mlmx_qn_cfg c;
    mlmx_qn_cfg_from_opts(o, &c);
    mlmx_qn_bind(&q->st, n, q->store, q->active);
    mlmx_qn_begin(&q->st, x0, lb, ub, &c, o->hinv0);
    return MLMX_OK;
}

int mlmx_qn_ask(mlmx_qn *q, double *x_eval, double **grad_out)
{
    if (!mlmx_qn_want(&q->st))
        return 0;
    memcpy(x_eval, mlmx_qn_point(&q->st), (size_t)q->st.n * sizeof *x_eval);
    *grad_out = mlmx_qn_grad(&q->st);
    return 1;
}

void mlmx_qn_tell(mlmx_qn *q, double f) { mlmx_qn_told(&q->st, f); }

const char *mlmx_qn_stop_message(int stop)
{
    switch (stop) {
    case MLMX_QN_STOP_GRADIENT:
        return "converged (gradient)";
    case MLMX_QN_STOP_PREDICTED:
        return "converged (predicted decrease)";
    case MLMX_QN_STOP_FTOL:
        return "converged (ftol)";
    case MLMX_QN_STOP_LINESEARCH:
        return "converged (line search)";
    case MLMX_QN_STOP_MAXEVAL:
        return "stopped after the maximum number of evaluations";
    case MLMX_QN_STOP_NODESCENT:
        return "no descent direction (gradient not finite?)";
    case MLMX_QN_STOP_STARTFAIL:
        return "criterion not finite at the start";
    default:
        return "";
    }
}

void mlmx_qn_result(const mlmx_qn *q, double *x, mlmx_optim_result *r)
{
    const mlmx_qn_state *s = &q->st;
    if (x)
        memcpy(x, s->x, (size_t)s->n * sizeof *x);
    r->fmin = s->fx;
    r->n_evals = s->n_evals;
    r->converged = s->converged;
    if (s->stop == MLMX_QN_STOP_MAXEVAL)
        snprintf(r->message, sizeof r->message, "stopped after the maximum of %d evaluations",
                 s->max_evals);
    else
        snprintf(r->message, sizeof r->message, "%s", mlmx_qn_stop_message(s->stop));
}

int mlmx_qn_failed(const mlmx_qn *q) { return q->st.failed; }

mlmx_status mlmx_optim_qnewton(int n, double *x, const double *lb, const double *ub,
                               mlmx_objective_grad f, void *ctx, const mlmx_optim_opts *o,
                               mlmx_optim_result *r, mlmx_error *err)
{
    memset(r, 0, sizeof *r);
    if (n <= 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "quasi-Newton: no parameters");
    mlmx_qn *q = mlmx_qn_alloc(n);
    double *xe = malloc((size_t)n * sizeof *xe);
    if (!q || !xe) {
        mlmx_qn_free(q);
        free(xe);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "quasi-Newton: out of memory");
    }
    mlmx_qn_start(q, n, x, lb, ub, o);
    double *g;
    while (mlmx_qn_ask(q, xe, &g))
        mlmx_qn_tell(q, f(n, xe, g, ctx));
    mlmx_qn_result(q, x, r);
    int failed = mlmx_qn_failed(q);
    mlmx_qn_free(q);
    free(xe);
    if (failed)
        return mlmx_err_set(err, MLMX_ERR_NUMERIC, "criterion not finite at the starting values");
    return MLMX_OK;
}
