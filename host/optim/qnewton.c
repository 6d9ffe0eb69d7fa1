/* A small projected quasi-Newton method (dense BFGS on the free
 * variables, backtracking line search, lower/upper bounds) for the
 * covariance (and fixed-effect) parameters of a mixed model, written as an
 * ask/tell state machine so that a batch of replicate fits can step in
 * lockstep (GUIDE §8). NLopt's L-BFGS takes a long first step that lands
 * on a variance bound, where the profiled criterion is flat to first order
 * and progress stalls; this method caps the first step and keeps the
 * iterate away from a bound unless the gradient drives it there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"

enum { QN_START = 0, QN_SEARCH = 1, QN_DONE = 2 };

struct mlmx_qn {
    int nmax, n;
    int phase, converged, failed, n_evals, max_evals, have_h, restarts;
    double fx, fn, step, ftol_abs, ftol_rel, xtol_rel, gtol, init_step;
    int ls;
    const double *lb, *ub;
    double *x, *g, *H, *xn, *gn, *d, *s, *y, *Hy;
    int *active;
    char message[160];
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
    q->H = malloc(n * n * sizeof *q->H);
    q->x = malloc(8 * n * sizeof *q->x);
    q->active = malloc(n * sizeof *q->active);
    if (!q->H || !q->x || !q->active) {
        mlmx_qn_free(q);
        return NULL;
    }
    q->g = q->x + n;
    q->xn = q->g + n;
    q->gn = q->xn + n;
    q->d = q->gn + n;
    q->s = q->d + n;
    q->y = q->s + n;
    q->Hy = q->y + n;
    return q;
}

void mlmx_qn_free(mlmx_qn *q)
{
    if (!q)
        return;
    free(q->H);
    free(q->x);
    free(q->active);
    free(q);
}

static void project(int n, double *x, const double *lb, const double *ub)
{
    for (int i = 0; i < n; i++) {
        if (lb && x[i] < lb[i])
            x[i] = lb[i];
        if (ub && x[i] > ub[i])
            x[i] = ub[i];
    }
}

mlmx_status mlmx_qn_start(mlmx_qn *q, int n, const double *x0, const double *lb,
                          const double *ub, const mlmx_optim_opts *o)
{
    if (n <= 0 || n > q->nmax)
        return MLMX_ERR_ARG;
    q->n = n;
    q->lb = lb;
    q->ub = ub;
    q->phase = QN_START;
    q->converged = q->failed = q->n_evals = q->restarts = 0;
    q->max_evals = o->max_evals;
    q->ftol_abs = o->ftol_abs;
    q->ftol_rel = o->ftol_rel;
    q->xtol_rel = o->xtol_rel;
    q->gtol = o->gtol;
    q->init_step = o->init_step;
    q->message[0] = '\0';
    memcpy(q->x, x0, (size_t)n * sizeof *q->x);
    project(n, q->x, lb, ub);
    for (size_t i = 0; i < (size_t)n * (size_t)n; i++)
        q->H[i] = o->hinv0 ? o->hinv0[i] : 0.0;
    q->have_h = o->hinv0 != NULL;
    return MLMX_OK;
}

static void stop(mlmx_qn *q, int converged, const char *msg)
{
    q->phase = QN_DONE;
    q->converged = converged;
    snprintf(q->message, sizeof q->message, "%s", msg);
}

/* From an accepted point (x, g, fx): the next trial point in xn, or the end. */
static void next_direction(mlmx_qn *q)
{
    const int n = q->n;
    const double *lb = q->lb, *ub = q->ub;
    double *x = q->x, *g = q->g, *d = q->d, *H = q->H;
    int *active = q->active;
    for (;;) {
        if (q->n_evals >= q->max_evals) {
            q->phase = QN_DONE;
            snprintf(q->message, sizeof q->message,
                     "stopped after the maximum of %d evaluations", q->max_evals);
            return;
        }
        /* variables held at a bound by the gradient */
        for (int i = 0; i < n; i++)
            active[i] = (lb && x[i] <= lb[i] && g[i] > 0) || (ub && x[i] >= ub[i] && g[i] < 0);
        double pg = 0.0;
        for (int i = 0; i < n; i++)
            if (!active[i])
                pg = fmax(pg, fabs(g[i]) * fmax(fabs(x[i]), 1.0));
        if (pg <= q->gtol * fmax(fabs(q->fx), 1.0)) {
            stop(q, 1, "converged (gradient)");
            return;
        }
        if (!q->have_h) {
            double gnorm = 0.0, xnorm = 0.0;
            for (int i = 0; i < n; i++)
                if (!active[i]) {
                    gnorm += g[i] * g[i];
                    xnorm = fmax(xnorm, fabs(x[i]));
                }
            gnorm = sqrt(gnorm);
            /* first step: a move of init_step (default 0.5) in the largest
             * parameter, or of a quarter of the parameters' scale */
            double len = fmax(q->init_step > 0 ? q->init_step : 0.5, 0.25 * xnorm) / gnorm;
            for (int i = 0; i < n; i++)
                d[i] = active[i] ? 0.0 : -len * g[i];
        } else {
            for (int i = 0; i < n; i++) {
                double sum = 0.0;
                if (!active[i])
                    for (int j = 0; j < n; j++)
                        if (!active[j])
                            sum -= H[i + j * n] * g[j];
                d[i] = sum;
            }
        }
        double slope = 0.0;
        for (int i = 0; i < n; i++)
            slope += g[i] * d[i];
        if (!(slope < 0.0)) {
            /* not a descent direction: restart from the scaled gradient,
             * once; a gradient step that is no descent either ends the run */
            if (!q->have_h || q->restarts++ > 0) {
                stop(q, 0, "no descent direction (gradient not finite?)");
                return;
            }
            q->have_h = 0;
            for (size_t i = 0; i < (size_t)n * (size_t)n; i++)
                H[i] = 0.0;
            continue;
        }
        q->restarts = 0;
        /* the predicted decrease is below what the criterion resolves */
        if (-slope <= q->ftol_abs + 1e-13 * fabs(q->fx)) {
            stop(q, 1, "converged (predicted decrease)");
            return;
        }
        /* backtracking (Armijo) line search; one step may close at most 90%
         * of the gap to a lower bound, so a variance is approached
         * geometrically instead of being thrown onto the boundary, where the
         * criterion is flat to first order */
        double step = 1.0;
        for (int i = 0; i < n; i++)
            if (lb && d[i] < 0 && isfinite(lb[i]) && x[i] > lb[i]) {
                double lim = 0.9 * (x[i] - lb[i]) / -d[i];
                if (lim < step)
                    step = lim;
            }
        q->step = step;
        q->ls = 0;
        q->phase = QN_SEARCH;
        for (int i = 0; i < n; i++)
            q->xn[i] = x[i] + step * d[i];
        project(n, q->xn, lb, ub);
        return;
    }
}

/* The trial point (xn, gn, fn) passed the line search: BFGS update. */
static void accept(mlmx_qn *q)
{
    const int n = q->n;
    double *H = q->H, *s = q->s, *y = q->y, *Hy = q->Hy;
    double sy = 0.0, yy = 0.0, smax = 0.0;
    for (int i = 0; i < n; i++) {
        s[i] = q->xn[i] - q->x[i];
        y[i] = q->gn[i] - q->g[i];
        sy += s[i] * y[i];
        yy += y[i] * y[i];
        smax = fmax(smax, fabs(s[i]) / fmax(fabs(q->xn[i]), 1e-3));
    }
    double df = q->fx - q->fn;
    memcpy(q->x, q->xn, (size_t)n * sizeof *q->x);
    memcpy(q->g, q->gn, (size_t)n * sizeof *q->g);
    q->fx = q->fn;
    if (sy > 1e-12 * sqrt(yy) * 1e-12) {
        if (!q->have_h) {
            /* Nocedal & Wright (6.20): scale the first inverse Hessian */
            for (int i = 0; i < n; i++)
                H[i + i * n] = sy / yy;
            q->have_h = 1;
        }
        /* BFGS inverse update: H = (I - rho s y^T) H (I - rho y s^T) + rho s s^T */
        double rho = 1.0 / sy, yHy = 0.0;
        for (int i = 0; i < n; i++) {
            double sum = 0.0;
            for (int j = 0; j < n; j++)
                sum += H[i + j * n] * y[j];
            Hy[i] = sum;
            yHy += y[i] * sum;
        }
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++)
                H[i + j * n] +=
                    -rho * (Hy[i] * s[j] + s[i] * Hy[j]) + (rho * rho * yHy + rho) * s[i] * s[j];
    }
    if (df >= 0 && df <= q->ftol_abs + q->ftol_rel * fabs(q->fx) && smax <= q->xtol_rel) {
        stop(q, 1, "converged (ftol)");
        return;
    }
    next_direction(q);
}

int mlmx_qn_ask(mlmx_qn *q, double *x_eval, double **grad_out)
{
    if (q->phase == QN_DONE)
        return 0;
    const double *src = q->phase == QN_START ? q->x : q->xn;
    memcpy(x_eval, src, (size_t)q->n * sizeof *x_eval);
    *grad_out = q->phase == QN_START ? q->g : q->gn;
    return 1;
}

void mlmx_qn_tell(mlmx_qn *q, double f)
{
    const int n = q->n;
    q->n_evals++;
    if (q->phase == QN_START) {
        q->fx = f;
        if (!isfinite(f)) {
            q->failed = 1;
            stop(q, 0, "criterion not finite at the start");
            return;
        }
        next_direction(q);
        return;
    }
    if (q->phase != QN_SEARCH)
        return;
    q->fn = f;
    double dec = 0.0;
    for (int i = 0; i < n; i++)
        dec += q->g[i] * (q->xn[i] - q->x[i]);
    if (isfinite(f) && f <= q->fx + 1e-4 * dec) {
        accept(q);
        return;
    }
    q->step *= 0.3;
    if (++q->ls >= 30 || q->n_evals >= q->max_evals) {
        /* no further decrease is possible at this precision */
        if (q->ls >= 30)
            stop(q, 1, "converged (line search)");
        else {
            q->phase = QN_DONE;
            snprintf(q->message, sizeof q->message,
                     "stopped after the maximum of %d evaluations", q->max_evals);
        }
        return;
    }
    for (int i = 0; i < n; i++)
        q->xn[i] = q->x[i] + q->step * q->d[i];
    project(n, q->xn, q->lb, q->ub);
}

void mlmx_qn_result(const mlmx_qn *q, double *x, mlmx_optim_result *r)
{
    if (x)
        memcpy(x, q->x, (size_t)q->n * sizeof *x);
    r->fmin = q->fx;
    r->n_evals = q->n_evals;
    r->converged = q->converged;
    snprintf(r->message, sizeof r->message, "%s", q->message);
}

int mlmx_qn_failed(const mlmx_qn *q) { return q->failed; }

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
