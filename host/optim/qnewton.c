/* A small projected quasi-Newton method (dense BFGS on the free
 * variables, backtracking line search, lower/upper bounds) for the few
 * covariance parameters of a mixed model. NLopt's L-BFGS takes a long
 * first step that lands on a variance bound, where the profiled criterion
 * is flat to first order and progress stalls; this method caps the first
 * step and keeps the iterate away from a bound unless the gradient
 * drives it there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"

#define QN_MAXN 64

static void project(int n, double *x, const double *lb, const double *ub)
{
    for (int i = 0; i < n; i++) {
        if (lb && x[i] < lb[i])
            x[i] = lb[i];
        if (ub && x[i] > ub[i])
            x[i] = ub[i];
    }
}

mlmx_status mlmx_optim_qnewton(int n, double *x, const double *lb, const double *ub,
                               mlmx_objective_grad f, void *ctx, const mlmx_optim_opts *o,
                               mlmx_optim_result *r, mlmx_error *err)
{
    memset(r, 0, sizeof *r);
    if (n <= 0 || n > QN_MAXN)
        return mlmx_err_set(err, MLMX_ERR_ARG, "quasi-Newton: %d parameters (at most %d)", n,
                            QN_MAXN);
    double H[QN_MAXN * QN_MAXN], g[QN_MAXN], gn[QN_MAXN], xn[QN_MAXN], d[QN_MAXN], s[QN_MAXN],
        y[QN_MAXN], Hy[QN_MAXN];
    int active[QN_MAXN];
    project(n, x, lb, ub);
    double fx = f(n, x, g, ctx);
    r->n_evals = 1;
    if (!isfinite(fx)) {
        snprintf(r->message, sizeof r->message, "criterion not finite at the start");
        return mlmx_err_set(err, MLMX_ERR_NUMERIC, "criterion not finite at the starting values");
    }
    for (int i = 0; i < n * n; i++)
        H[i] = o->hinv0 ? o->hinv0[i] : 0.0;
    int have_h = o->hinv0 != NULL;
    for (int iter = 0; r->n_evals < o->max_evals; iter++) {
        /* variables held at a bound by the gradient */
        for (int i = 0; i < n; i++)
            active[i] = (lb && x[i] <= lb[i] && g[i] > 0) || (ub && x[i] >= ub[i] && g[i] < 0);
        double pg = 0.0;
        for (int i = 0; i < n; i++)
            if (!active[i])
                pg = fmax(pg, fabs(g[i]) * fmax(fabs(x[i]), 1.0));
        if (pg <= o->gtol * fmax(fabs(fx), 1.0)) {
            r->converged = 1;
            snprintf(r->message, sizeof r->message, "converged (gradient)");
            break;
        }
        /* direction */
        if (!have_h) {
            double gnorm = 0.0, xnorm = 0.0;
            for (int i = 0; i < n; i++)
                if (!active[i]) {
                    gnorm += g[i] * g[i];
                    xnorm = fmax(xnorm, fabs(x[i]));
                }
            gnorm = sqrt(gnorm);
            /* first step: a move of o->init_step (default 0.5) in the largest
             * parameter, or of a quarter of the parameters' scale */
            double len = fmax(o->init_step > 0 ? o->init_step : 0.5, 0.25 * xnorm) / gnorm;
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
            /* not a descent direction: restart from the scaled gradient */
            have_h = 0;
            for (int i = 0; i < n * n; i++)
                H[i] = 0.0;
            continue;
        }
        /* the predicted decrease is below what the criterion resolves */
        if (-slope <= o->ftol_abs + 1e-13 * fabs(fx)) {
            r->converged = 1;
            snprintf(r->message, sizeof r->message, "converged (predicted decrease)");
            break;
        }
        /* backtracking (Armijo) line search; one step may close at most 90%
         * of the gap to a lower bound, so a variance is approached
         * geometrically instead of being thrown onto the boundary, where the
         * criterion is flat to first order */
        double step = 1.0, fn = HUGE_VAL;
        for (int i = 0; i < n; i++)
            if (lb && d[i] < 0 && isfinite(lb[i]) && x[i] > lb[i]) {
                double lim = 0.9 * (x[i] - lb[i]) / -d[i];
                if (lim < step)
                    step = lim;
            }
        int ok = 0;
        for (int ls = 0; ls < 30 && r->n_evals < o->max_evals; ls++) {
            for (int i = 0; i < n; i++)
                xn[i] = x[i] + step * d[i];
            project(n, xn, lb, ub);
            fn = f(n, xn, gn, ctx);
            r->n_evals++;
            double dec = 0.0;
            for (int i = 0; i < n; i++)
                dec += g[i] * (xn[i] - x[i]);
            if (isfinite(fn) && fn <= fx + 1e-4 * dec) {
                ok = 1;
                break;
            }
            step *= 0.3;
        }
        if (!ok) {
            r->converged = 1; /* no further decrease is possible at this precision */
            snprintf(r->message, sizeof r->message, "converged (line search)");
            break;
        }
        double sy = 0.0, yy = 0.0, smax = 0.0;
        for (int i = 0; i < n; i++) {
            s[i] = xn[i] - x[i];
            y[i] = gn[i] - g[i];
            sy += s[i] * y[i];
            yy += y[i] * y[i];
            smax = fmax(smax, fabs(s[i]) / fmax(fabs(xn[i]), 1e-3));
        }
        double df = fx - fn;
        memcpy(x, xn, (size_t)n * sizeof *x);
        memcpy(g, gn, (size_t)n * sizeof *g);
        fx = fn;
        if (sy > 1e-12 * sqrt(yy) * 1e-12) {
            if (!have_h) {
                /* Nocedal & Wright (6.20): scale the first inverse Hessian */
                for (int i = 0; i < n; i++)
                    H[i + i * n] = sy / yy;
                have_h = 1;
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
                    H[i + j * n] += -rho * (Hy[i] * s[j] + s[i] * Hy[j]) +
                                    (rho * rho * yHy + rho) * s[i] * s[j];
        }
        if (df >= 0 && df <= o->ftol_abs + o->ftol_rel * fabs(fx) && smax <= o->xtol_rel) {
            r->converged = 1;
            snprintf(r->message, sizeof r->message, "converged (ftol)");
            break;
        }
    }
    r->fmin = fx;
    if (!r->converged && !r->message[0])
        snprintf(r->message, sizeof r->message, "stopped after the maximum of %d evaluations",
                 o->max_evals);
    return MLMX_OK;
}
