/* The ask/tell projected quasi-Newton method (dense BFGS on the free
 * variables, backtracking Armijo line search, lower/upper bounds), written
 * once as inline math for the CPU path (host/optim/qnewton.c wraps it) and
 * for CUDA, where a batch of replicate fits steps in lockstep, one state per
 * replicate (GUIDE §8).
 *
 * The state points into caller storage (nothing here allocates):
 *   mlmx_qn_state st;  mlmx_qn_bind(&st, n, store, active);
 *     store: 8 n + n*n doubles, active: n ints
 *   mlmx_qn_begin(&st, x0, lb, ub, &cfg, hinv0);
 *   while (mlmx_qn_want(&st)) {          x = mlmx_qn_point(&st): where to evaluate
 *       f = criterion at x, gradient written to mlmx_qn_grad(&st) (n values);
 *       mlmx_qn_told(&st, f);            a non-finite f marks a failed point
 *   }
 *   best point st.x, value st.fx, st.n_evals, st.converged, st.stop (MLMX_QN_STOP_*)
 *
 * Why this method: NLopt's L-BFGS takes a long first step that lands on a
 * variance bound, where the profiled criterion is flat to first order and
 * progress stalls; this one caps the first step and approaches a lower
 * bound geometrically (at most 90% of the gap per step). */
#ifndef MLMX_QN_H
#define MLMX_QN_H

#include <math.h>

#ifndef MLMX_HD
#if defined(__CUDACC__)
#define MLMX_HD static __host__ __device__ __forceinline__
#else
#define MLMX_HD static inline
#endif
#endif

enum { MLMX_QN_START = 0, MLMX_QN_SEARCH = 1, MLMX_QN_DONE = 2 };

/* Why a run ended (mlmx_qn_stop_message in host/optim gives the words). */
enum {
    MLMX_QN_STOP_NONE = 0,
    MLMX_QN_STOP_GRADIENT = 1,  /* converged: projected gradient small */
    MLMX_QN_STOP_PREDICTED = 2, /* converged: predicted decrease below resolution */
    MLMX_QN_STOP_FTOL = 3,      /* converged: f and x changed by less than the tolerances */
    MLMX_QN_STOP_LINESEARCH = 4,/* converged: no further decrease at this precision */
    MLMX_QN_STOP_MAXEVAL = 5,   /* not converged: evaluation limit */
    MLMX_QN_STOP_NODESCENT = 6, /* not converged: no descent direction */
    MLMX_QN_STOP_STARTFAIL = 7  /* failed: criterion not finite at the start */
};

typedef struct mlmx_qn_cfg {
    double ftol_abs, ftol_rel, xtol_rel, gtol, init_step;
    int max_evals;
} mlmx_qn_cfg;

typedef struct mlmx_qn_state {
    int n, phase, converged, failed, n_evals, max_evals, have_h, restarts, ls, stop;
    double fx, fn, step, ftol_abs, ftol_rel, xtol_rel, gtol, init_step;
    const double *lb, *ub;
    double *x, *g, *xn, *gn, *d, *s, *y, *Hy, *H;
    int *active;
} mlmx_qn_state;

/* Point the state at storage for n parameters: store holds 8n + n^2
 * doubles, active n ints. */
MLMX_HD void mlmx_qn_bind(mlmx_qn_state *q, int n, double *store, int *active)
{
    q->n = n;
    q->x = store;
    q->g = q->x + n;
    q->xn = q->g + n;
    q->gn = q->xn + n;
    q->d = q->gn + n;
    q->s = q->d + n;
    q->y = q->s + n;
    q->Hy = q->y + n;
    q->H = q->Hy + n;
    q->active = active;
    q->phase = MLMX_QN_DONE;
}

MLMX_HD void mlmx_qn_project(int n, double *x, const double *lb, const double *ub)
{
    for (int i = 0; i < n; i++) {
        if (lb && x[i] < lb[i])
            x[i] = lb[i];
        if (ub && x[i] > ub[i])
            x[i] = ub[i];
    }
}

/* Start a run at x0 (projected onto the bounds). lb, ub may be NULL and
 * must stay valid for the run; hinv0 (n*n, column-major) is the first
 * inverse Hessian, or NULL for a scaled gradient step. */
MLMX_HD void mlmx_qn_begin(mlmx_qn_state *q, const double *x0, const double *lb,
                           const double *ub, const mlmx_qn_cfg *c, const double *hinv0)
{
    const int n = q->n;
    q->lb = lb;
    q->ub = ub;
    q->phase = MLMX_QN_START;
    q->converged = q->failed = q->n_evals = q->restarts = q->ls = 0;
    q->stop = MLMX_QN_STOP_NONE;
    q->max_evals = c->max_evals;
    q->ftol_abs = c->ftol_abs;
    q->ftol_rel = c->ftol_rel;
    q->xtol_rel = c->xtol_rel;
    q->gtol = c->gtol;
    q->init_step = c->init_step;
    q->fx = q->fn = q->step = 0.0;
    for (int i = 0; i < n; i++)
        q->x[i] = x0[i];
    mlmx_qn_project(n, q->x, lb, ub);
    for (int i = 0; i < n * n; i++)
        q->H[i] = hinv0 ? hinv0[i] : 0.0;
    q->have_h = hinv0 != 0;
}

MLMX_HD void mlmx_qn_finish(mlmx_qn_state *q, int converged, int why)
{
    q->phase = MLMX_QN_DONE;
    q->converged = converged;
    q->stop = why;
}

/* The search direction d at the accepted point; 0 when the run ended. */
MLMX_HD int mlmx_qn_direction(mlmx_qn_state *q)
{
    const int n = q->n;
    const double *x = q->x, *g = q->g, *H = q->H;
    double *d = q->d;
    int *active = q->active;
    for (;;) {
        if (q->n_evals >= q->max_evals) {
            mlmx_qn_finish(q, 0, MLMX_QN_STOP_MAXEVAL);
            return 0;
        }
        /* variables held at a bound by the gradient */
        for (int i = 0; i < n; i++)
            active[i] = (q->lb && x[i] <= q->lb[i] && g[i] > 0) ||
                        (q->ub && x[i] >= q->ub[i] && g[i] < 0);
        double pg = 0.0;
        for (int i = 0; i < n; i++)
            if (!active[i])
                pg = fmax(pg, fabs(g[i]) * fmax(fabs(x[i]), 1.0));
        if (pg <= q->gtol * fmax(fabs(q->fx), 1.0)) {
            mlmx_qn_finish(q, 1, MLMX_QN_STOP_GRADIENT);
            return 0;
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
                mlmx_qn_finish(q, 0, MLMX_QN_STOP_NODESCENT);
                return 0;
            }
            q->have_h = 0;
            for (int i = 0; i < n * n; i++)
                q->H[i] = 0.0;
            continue;
        }
        q->restarts = 0;
        if (-slope <= q->ftol_abs + 1e-13 * fabs(q->fx)) {
            mlmx_qn_finish(q, 1, MLMX_QN_STOP_PREDICTED);
            return 0;
        }
        return 1;
    }
}

/* From an accepted point: the first trial point of the line search in xn,
 * or the end of the run. One step closes at most 90% of the gap to a lower
 * bound, so a variance is approached geometrically instead of being thrown
 * onto the boundary, where the criterion is flat to first order. */
MLMX_HD void mlmx_qn_next(mlmx_qn_state *q)
{
    if (!mlmx_qn_direction(q))
        return;
    const int n = q->n;
    double step = 1.0;
    for (int i = 0; i < n; i++)
        if (q->lb && q->d[i] < 0 && isfinite(q->lb[i]) && q->x[i] > q->lb[i]) {
            double lim = 0.9 * (q->x[i] - q->lb[i]) / -q->d[i];
            if (lim < step)
                step = lim;
        }
    q->step = step;
    q->ls = 0;
    q->phase = MLMX_QN_SEARCH;
    for (int i = 0; i < n; i++)
        q->xn[i] = q->x[i] + step * q->d[i];
    mlmx_qn_project(n, q->xn, q->lb, q->ub);
}

/* The trial point (xn, gn, fn) passed the line search: BFGS update of the
 * inverse Hessian, H = (I - rho s y^T) H (I - rho y s^T) + rho s s^T. */
MLMX_HD void mlmx_qn_accept(mlmx_qn_state *q)
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
    for (int i = 0; i < n; i++) {
        q->x[i] = q->xn[i];
        q->g[i] = q->gn[i];
    }
    q->fx = q->fn;
    if (sy > 1e-12 * sqrt(yy) * 1e-12) {
        if (!q->have_h) {
            /* Nocedal & Wright (6.20): scale the first inverse Hessian */
            for (int i = 0; i < n; i++)
                H[i + i * n] = sy / yy;
            q->have_h = 1;
        }
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
        mlmx_qn_finish(q, 1, MLMX_QN_STOP_FTOL);
        return;
    }
    mlmx_qn_next(q);
}

/* 1 while the run wants an evaluation. */
MLMX_HD int mlmx_qn_want(const mlmx_qn_state *q) { return q->phase != MLMX_QN_DONE; }

/* Where to evaluate (n values, read-only for the caller). */
MLMX_HD const double *mlmx_qn_point(const mlmx_qn_state *q)
{
    return q->phase == MLMX_QN_START ? q->x : q->xn;
}

/* Where the caller writes the gradient at mlmx_qn_point. */
MLMX_HD double *mlmx_qn_grad(mlmx_qn_state *q) { return q->phase == MLMX_QN_START ? q->g : q->gn; }

/* The criterion at mlmx_qn_point (its gradient already written). */
MLMX_HD void mlmx_qn_told(mlmx_qn_state *q, double f)
{
    const int n = q->n;
    q->n_evals++;
    if (q->phase == MLMX_QN_START) {
        q->fx = f;
        if (!isfinite(f)) {
            q->failed = 1;
            mlmx_qn_finish(q, 0, MLMX_QN_STOP_STARTFAIL);
            return;
        }
        mlmx_qn_next(q);
        return;
    }
    if (q->phase != MLMX_QN_SEARCH)
        return;
    q->fn = f;
    double dec = 0.0;
    for (int i = 0; i < n; i++)
        dec += q->g[i] * (q->xn[i] - q->x[i]);
    if (isfinite(f) && f <= q->fx + 1e-4 * dec) {
        mlmx_qn_accept(q);
        return;
    }
    q->step *= 0.3;
    if (++q->ls >= 30) {
        mlmx_qn_finish(q, 1, MLMX_QN_STOP_LINESEARCH);
        return;
    }
    if (q->n_evals >= q->max_evals) {
        mlmx_qn_finish(q, 0, MLMX_QN_STOP_MAXEVAL);
        return;
    }
    for (int i = 0; i < n; i++)
        q->xn[i] = q->x[i] + q->step * q->d[i];
    mlmx_qn_project(n, q->xn, q->lb, q->ub);
}

#endif
