/* Profile-likelihood confidence intervals, as lme4's profile() and
 * confint(fit, method = "profile") define them (docs/inference.md).
 *
 * The parameters are lme4's: the random effects' standard deviations and
 * correlations (.sig01, ...), the residual SD (.sigma, LMMs) and the fixed
 * effects. The profile of parameter x is
 *   zeta(x) = sign(x - x^) sqrt(D_x - D^),
 * D_x the deviance minimised over the other parameters with x held, D^
 * its minimum. lme4 evaluates zeta on a grid, fits an interpolating spline
 * and reads the bounds off it; here each bound is the root of
 * zeta(x) = -+z (z = qnorm((1 + level) / 2)) found by safeguarded secant
 * steps, each D_x re-optimised by BOBYQA from the previous point's
 * optimum.
 *
 * LMMs are profiled on the ML deviance of the ML refit (lme4's devfun2
 * calls refitML, also for a REML fit):
 *   variance parameters v = (sds and correlations, sigma):
 *     D(v) = log|L_theta|^2 + r^2(theta) / sigma^2 + n log(2 pi sigma^2),
 *     theta = chol(Sigma / sigma^2), beta at its conditional optimum;
 *   fixed effect j held at b: with r^2(theta, beta) = r^2(theta) +
 *     |R_X (beta - beta^(theta))|^2, minimising over the other
 *     coefficients (and sigma) gives
 *     r_j^2 = r^2(theta) + (b - beta^_j(theta))^2 / [(R_X^T R_X)^{-1}]_jj,
 *     D_j(theta) = log|L_theta|^2 + n (1 + log(2 pi r_j^2 / n)),
 *   the model with column j moved to an offset, without rebuilding it.
 * GLMMs (binomial, Poisson) are profiled on the Laplace or quadrature
 * deviance over (sds and correlations, beta), all re-optimised.
 *
 * Bounds: a standard deviation's lower bound is 0 and a correlation's
 * -1 and 1; where zeta does not reach -+z before the bound, the interval
 * ends at the bound (lme4 does the same). A variance at 0 (a singular
 * fit) gets the lower bound 0 with a note. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "backend/backend.h"
#include "glmm/glmm.h"
#include "infer/confint.h"
#include "lmm/fit.h"
#include "lmm/lmm.h"
#include "optim/optim.h"
#include "power/power.h"

#define QMAX 16
#define TWO_PI 6.283185307179586476925287

void mlmx_theta_to_sdcor(const mlmx_model *m, const double *theta, double s, double *v)
{
    for (int k = 0; k < m->K; k++) {
        const int q = m->re[k].q, off = m->re[k].theta_offset;
        double T[QMAX * QMAX] = {0}, sd[QMAX];
        for (int c = 0, t = off; c < q; c++)
            for (int a = c; a < q; a++, t++)
                T[a + c * q] = theta[t];
        for (int a = 0; a < q; a++) {
            double x = 0.0;
            for (int l = 0; l <= a; l++)
                x += T[a + l * q] * T[a + l * q];
            sd[a] = s * sqrt(x);
        }
        for (int c = 0, t = off; c < q; c++)
            for (int a = c; a < q; a++, t++) {
                if (a == c) {
                    v[t] = sd[a];
                    continue;
                }
                double x = 0.0;
                for (int l = 0; l <= c; l++)
                    x += T[a + l * q] * T[c + l * q];
                v[t] = sd[a] > 0 && sd[c] > 0 ? s * s * x / (sd[a] * sd[c]) : NAN;
            }
    }
}

void mlmx_sdcor_to_theta(const mlmx_model *m, const double *v, double s, double *theta)
{
    for (int k = 0; k < m->K; k++) {
        const int q = m->re[k].q, off = m->re[k].theta_offset;
        double S[QMAX * QMAX], L[QMAX * QMAX] = {0}, sd[QMAX];
        for (int c = 0, t = off; c < q; c++)
            for (int a = c; a < q; a++, t++)
                if (a == c)
                    sd[a] = v[t];
        for (int c = 0, t = off; c < q; c++)
            for (int a = c; a < q; a++, t++) {
                const double r = a == c ? 1.0 : (isfinite(v[t]) ? v[t] : 0.0);
                S[a + c * q] = sd[a] * sd[c] * r / (s * s);
            }
        for (int c = 0; c < q; c++) {
            double d = S[c + c * q];
            for (int l = 0; l < c; l++)
                d -= L[c + l * q] * L[c + l * q];
            if (!(d > 0))
                continue; /* semidefinite: the column stays 0 */
            L[c + c * q] = sqrt(d);
            for (int a = c + 1; a < q; a++) {
                double x = S[a + c * q];
                for (int l = 0; l < c; l++)
                    x -= L[a + l * q] * L[c + l * q];
                L[a + c * q] = x / L[c + c * q];
            }
        }
        for (int c = 0, t = off; c < q; c++)
            for (int a = c; a < q; a++, t++)
                theta[t] = L[a + c * q];
    }
}

/* ------------------------------------------------------------------ */
/* The profiled deviances.                                              */
/* ------------------------------------------------------------------ */

typedef struct prof {
    const mlmx_model *m;
    int glmm, nagq;
    int nt, nv, np;      /* theta entries; variance parameters; all parameters */
    int fix;             /* the held parameter (index in the full vector) */
    double fixval;
    double *full;        /* np: the full parameter vector (scratch) */
    double *theta;       /* nt */
    double *warm, *best; /* np - 1 (or nt): the start of the next optimisation, and the
                            optimum of the last one */
    double *lb, *ub;     /* the free parameters' bounds (np each) */
    double warm_at;      /* the held parameter's value at the warm start */
    const double *vcov;  /* GLMM: the fixed effects' covariance (p * p), for warm starts */
    int nfree;
    /* LMM */
    mlmx_lmm_stats *s;
    mlmx_lmm_work *w;
    double *C;           /* p * p */
    /* GLMM */
    mlmx_glmm *g;
    double *u_good;      /* the modes of the last successful evaluation (g->nu) */
    mlmx_error err;
    int n_evals;
} prof;

static double lmm_dev_var(int n, const double *x, void *ctx)
{
    prof *P = ctx;
    (void)n;
    P->n_evals++;
    for (int i = 0, k = 0; i < P->nv; i++)
        P->full[i] = i == P->fix ? P->fixval : x[k++];
    const double sig = P->full[P->nt];
    if (!(sig > 0))
        return HUGE_VAL;
    mlmx_sdcor_to_theta(P->m, P->full, sig, P->theta);
    double crit;
    if (mlmx_lmm_eval(P->s, mlmx_backend_cpu(), P->theta, 0, P->w, &crit, &P->err))
        return HUGE_VAL;
    const double nobs = (double)P->m->n;
    return P->w->logdet_z + P->w->r2 / (sig * sig) + nobs * log(TWO_PI * sig * sig);
}

static double lmm_dev_beta(int n, const double *x, void *ctx)
{
    prof *P = ctx;
    (void)n;
    P->n_evals++;
    const int p = P->m->p, j = P->fix - P->nv;
    double crit;
    if (mlmx_lmm_eval(P->s, mlmx_backend_cpu(), x, 0, P->w, &crit, &P->err))
        return HUGE_VAL;
    mlmx_lmm_modes(P->s, P->w, P->w->wv, P->w->u1);
    if (mlmx_lmm_rx_inverse(P->s, P->w, P->C))
        return HUGE_VAL;
    const double d = P->fixval - P->w->wv[P->s->m_re + j];
    const double r2 = P->w->r2 + d * d / P->C[j + j * p], nobs = (double)P->m->n;
    return P->w->logdet_z + nobs * (1.0 + log(TWO_PI * r2 / nobs));
}

static double glmm_dev(int n, const double *x, void *ctx)
{
    prof *P = ctx;
    (void)n;
    P->n_evals++;
    for (int i = 0, k = 0; i < P->np; i++)
        P->full[i] = i == P->fix ? P->fixval : x[k++];
    mlmx_sdcor_to_theta(P->m, P->full, 1.0, P->theta);
    const double *beta = P->full + P->nt;
    double dev;
    mlmx_status st = P->nagq > 1 ? mlmx_glmm_agq(P->g, P->theta, beta, P->nagq, &dev, &P->err)
                                 : mlmx_glmm_laplace(P->g, P->theta, beta, &dev, &P->err);
    /* a failed PIRLS leaves its modes anywhere: the next evaluation starts
     * from the last good ones */
    if (st) {
        memcpy(P->g->u, P->u_good, P->g->nu * sizeof *P->u_good);
        return HUGE_VAL;
    }
    memcpy(P->u_good, P->g->u, P->g->nu * sizeof *P->u_good);
    return st ? HUGE_VAL : dev;
}

/* D_x: the deviance with parameter P->fix at x, minimised over the rest
 * from P->warm; the optimum is left in P->best. */
static mlmx_status dev_at(prof *P, double x, double *dev, mlmx_error *err)
{
    P->fixval = x;
    const int lmm_beta = !P->glmm && P->fix >= P->nv;
    if (P->glmm && P->fix >= P->nt) {
        /* GLMM fixed effect: move the other coefficients to their conditional
         * mean given this one under the fit's covariance (a warm start that
         * keeps the linear predictor, and PIRLS, in range) */
        const int p = P->m->p, j = P->fix - P->nt;
        const double *V = P->vcov, d = x - P->warm_at;
        for (int k = 0; k < p && V[j + j * p] > 0; k++)
            if (k != j)
                P->warm[P->nt + k - (k > j)] += V[k + j * p] / V[j + j * p] * d;
        P->warm_at = x;
    }
    mlmx_objective fn = P->glmm ? glmm_dev : lmm_beta ? lmm_dev_beta : lmm_dev_var;
    memcpy(P->best, P->warm, (size_t)P->nfree * sizeof *P->best);
    if (P->nfree == 0) {
        *dev = fn(0, P->best, P);
        return MLMX_OK;
    }
    mlmx_optim_opts oo;
    mlmx_optim_opts_default(&oo);
    oo.max_evals = 20000;
    if (P->glmm) /* NLopt's first steps scale with |x|: a large coefficient's would
                    throw PIRLS far off */
        oo.init_step = 0.1;
    mlmx_optim_result r;
    mlmx_status st = mlmx_optim_bobyqa(P->nfree, P->best, P->lb, P->ub, fn, P, &oo, &r, err);
    if (st)
        return st;
    *dev = r.fmin;
    if (!(r.fmin < 1e299))
        return mlmx_err_set(err, MLMX_ERR_NUMERIC, "the deviance cannot be evaluated at %g%s%s",
                            x, P->err.msg[0] ? ": " : "", P->err.msg);
    memcpy(P->warm, P->best, (size_t)P->nfree * sizeof *P->warm);
    P->warm_at = x;
    return MLMX_OK;
}

/* The free parameters' bounds and start for profiling parameter j. */
static void set_free(prof *P, int j, const double *est, const double *flb, const double *fub)
{
    P->fix = j;
    if (!P->glmm && j >= P->nv) { /* LMM fixed effect: theta is free */
        P->nfree = P->nt;
        for (int t = 0; t < P->nt; t++) {
            P->lb[t] = P->m->theta_lower[t];
            P->ub[t] = HUGE_VAL;
        }
        mlmx_sdcor_to_theta(P->m, est, est[P->nt], P->warm);
        return;
    }
    const int n = P->glmm ? P->np : P->nv;
    P->nfree = 0;
    for (int i = 0; i < n; i++) {
        if (i == j)
            continue;
        P->lb[P->nfree] = flb[i];
        P->ub[P->nfree] = fub[i];
        P->warm[P->nfree++] = est[i];
    }
}

/* ------------------------------------------------------------------ */
/* The root of zeta(x) = z.                                             */
/* ------------------------------------------------------------------ */

typedef struct side {
    double est, base, lb, ub, step;
} side;

static double zeta_of(const side *S, double x, double dev)
{
    const double d = dev - S->base;
    return (x >= S->est ? 1.0 : -1.0) * sqrt(d > 0 ? d : 0.0);
}

/* The bound on one side: x with zeta(x) = z (z < 0: below the estimate),
 * or the parameter's own bound where zeta stops short of z there
 * (*at_bound = 1). The warm start is the estimate's optimum (w0). */
static mlmx_status find_root(prof *P, const side *S, double z, const double *w0,
                             mlmx_confint *c, int j, double *out, int *at_bound, mlmx_error *err)
{
    const double dir = z > 0 ? 1.0 : -1.0, bound = z > 0 ? S->ub : S->lb;
    memcpy(P->warm, w0, (size_t)P->nfree * sizeof *P->warm);
    P->warm_at = S->est;
    *at_bound = 0;
    double xa = S->est, za = 0.0;      /* inside: (zeta - z) dir < 0 */
    double xb = NAN, zb = NAN;         /* beyond */
    double xp = S->est, zp = 0.0;      /* the previous point */
    double x = S->est + dir * S->step;
    int same = 0, last_end = 0;
    for (int it = 0; it < 80; it++) {
        if ((x - bound) * dir >= 0)
            x = bound;
        double dev;
        mlmx_status st = dev_at(P, x, &dev, err);
        if (st)
            return st;
        const double zx = zeta_of(S, x, dev);
        st = mlmx_confint_add_point(c, j, x, zx);
        if (st)
            return mlmx_err_set(err, st, "out of memory");
        if (fabs(zx - z) < 1e-7) {
            *out = x;
            return MLMX_OK;
        }
        int end;
        if ((zx - z) * dir > 0) {
            xb = x, zb = zx, end = 2;
        } else {
            if (x == bound) {
                *out = bound;
                *at_bound = 1;
                return MLMX_OK;
            }
            xa = x, za = zx, end = 1;
        }
        same = end == last_end ? same + 1 : 0;
        last_end = end;
        double xn;
        const double slope = (zx - zp) / (x - xp);
        if (isnan(xb)) { /* not bracketed yet: secant outwards, at most 10 times the step */
            const double cap = 10.0 * fabs(x - xp) + S->step;
            xn = slope > 0 && isfinite(slope) ? x + (z - zx) / slope : x + dir * cap;
            if ((xn - x) * dir <= 0 || fabs(xn - x) > cap)
                xn = x + dir * cap;
        } else {
            /* a bracket of 1e-6 first steps (a millionth of a standard error for
             * a fixed effect) is the end: GLMM deviances are noisy there */
            if (fabs(xb - xa) <= 1e-6 * S->step) {
                *out = xa + (z - za) * (xb - xa) / (zb - za);
                return MLMX_OK;
            }
            xn = slope > 0 && isfinite(slope) ? x + (z - zx) / slope : NAN;
            const double lo = fmin(xa, xb), hi = fmax(xa, xb);
            if (!(xn > lo && xn < hi) || same >= 2) /* regula falsi, then bisection */
                xn = same >= 3 ? 0.5 * (xa + xb) : xa + (z - za) * (xb - xa) / (zb - za);
            if (!(xn > lo && xn < hi))
                xn = 0.5 * (xa + xb);
        }
        xp = x, zp = zx, x = xn;
    }
    return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                        "the profile of %s did not reach zeta = %g (80 steps)", c->names[j], z);
}

/* ------------------------------------------------------------------ */
/* The driver.                                                          */
/* ------------------------------------------------------------------ */

static void prof_free(prof *P)
{
    free(P->full);
    free(P->u_good);
    mlmx_lmm_work_free(P->w);
    mlmx_lmm_stats_free(P->s);
    mlmx_glmm_free(P->g);
}

/* 1 when entry t of the variance parameters is a standard deviation. */
static int is_sd(const mlmx_model *m, int t)
{
    for (int k = 0; k < m->K; k++) {
        const int q = m->re[k].q, off = m->re[k].theta_offset;
        if (t < off || t >= off + q * (q + 1) / 2)
            continue;
        for (int cc = 0, u = off; cc < q; cc++)
            for (int a = cc; a < q; a++, u++)
                if (u == t)
                    return a == cc;
    }
    return 0;
}

/* A correlation of a term whose SDs include a 0 (not profiled). */
static int cor_undefined(const prof *P, const double *est, int j)
{
    return j < P->nt && !is_sd(P->m, j) && isnan(est[j]);
}

/* Both bounds of parameter j. */
static mlmx_status profile_param(prof *P, mlmx_confint *c, int j, const double *est,
                                 const double *flb, const double *fub, const side *S0,
                                 double *w0, mlmx_error *err)
{
    const double zq = mlmx_pw_qnorm(0.5 + 0.5 * c->level);
    side S = *S0;
    set_free(P, j, est, flb, fub);
    memcpy(w0, P->warm, (size_t)P->nfree * sizeof *w0);
    mlmx_status st = mlmx_confint_add_point(c, j, S.est, 0.0);
    if (st)
        return mlmx_err_set(err, st, "out of memory");
    int hit;
    if (S.est <= S.lb) {
        c->lo[j] = S.lb;
        st = mlmx_confint_note(c, "%s is at its bound %g (singular fit): its lower bound is %g, "
                                  "as lme4's", c->names[j], S.lb, S.lb);
    } else {
        st = find_root(P, &S, -zq, w0, c, j, &c->lo[j], &hit, err);
        if (!st && hit)
            st = mlmx_confint_note(c, "%s: the profile stays above zeta = %.4g down to the "
                                      "bound %g, the lower end (as lme4)", c->names[j], -zq, S.lb);
    }
    if (!st)
        st = find_root(P, &S, zq, w0, c, j, &c->hi[j], &hit, err);
    if (!st && hit)
        st = mlmx_confint_note(c, "%s: the profile stays below zeta = %.4g up to the bound %g, "
                                  "the upper end (as lme4)", c->names[j], zq, S.ub);
    return st;
}

/* The fit the profile is about (an LMM's ML refit), its estimates in
 * lme4's parameters, and the evaluation state. */
static mlmx_status prof_setup(const mlmx_fit *f, mlmx_confint *c, prof *P, mlmx_fit **fml,
                              mlmx_error *err)
{
    const mlmx_model *m = f->model;
    mlmx_status st = MLMX_OK;
    P->m = m;
    P->glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    P->nagq = f->nagq;
    P->vcov = f->vcov;
    P->nt = m->ntheta;
    P->nv = c->nvar;
    P->np = c->np;
    const mlmx_fit *e = f;
    if (!P->glmm && f->method == MLMX_REML) {
        mlmx_fit_options o;
        mlmx_fit_options_default(&o);
        o.method = MLMX_ML;
        o.theta_start = f->theta;
        o.conditional_variances = 0;
        st = mlmx_lmm_fit_internal(m, &o, fml, err);
        if (st)
            return st;
        e = *fml;
        st = mlmx_confint_note(c, "profiled on the ML refit of the REML fit (as lme4's "
                                  "profile); the estimates are the ML ones");
    }
    const int np = P->np;
    P->full = malloc((size_t)(6 * np + P->nt + m->p * m->p + 1) * sizeof *P->full);
    if (!P->full)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    P->theta = P->full + np;
    P->warm = P->theta + P->nt;
    P->best = P->warm + np;
    P->lb = P->best + np;
    P->ub = P->lb + np;
    P->C = P->ub + np;
    mlmx_theta_to_sdcor(m, e->theta, P->glmm ? 1.0 : e->sigma, c->est);
    if (!P->glmm)
        c->est[P->nt] = e->sigma;
    memcpy(c->est + P->nv, e->beta, (size_t)m->p * sizeof *c->est);
    if (!st && P->glmm) {
        if (f->nthr > 0 || f->family == MLMX_FAMILY_NEGBIN || f->nagq < 1)
            return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                                "profile intervals are for linear models and binomial or Poisson "
                                "GLMMs fitted by the Laplace approximation or quadrature (use "
                                "--confint wald or boot)");
        st = mlmx_glmm_create(m, f->family, f->link, mlmx_backend_cpu(), &P->g, err);
        if (!st && !(P->u_good = calloc(P->g->nu ? P->g->nu : 1, sizeof *P->u_good)))
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    } else if (!st) {
        st = mlmx_lmm_stats_build(m, &P->s, err);
        if (!st)
            st = mlmx_lmm_work_alloc(P->s, &P->w, err);
    }
    return st;
}

/* The step to the first point on a side, and the parameter's bounds. */
static void param_side(const prof *P, const mlmx_fit *e, const double *est, int j, double zq,
                       side *S, double *flb, double *fub)
{
    S->est = est[j];
    if (j < P->nt && is_sd(P->m, j)) {
        flb[j] = 0.0, fub[j] = HUGE_VAL;
        S->step = est[j] > 0 ? 0.3 * est[j] : 0.1 * (P->glmm ? 1.0 : e->sigma);
    } else if (j < P->nt) {
        flb[j] = -1.0, fub[j] = 1.0;
        S->step = 0.3 * (1.0 - fabs(est[j])) + 1e-3;
    } else if (j < P->nv) { /* sigma */
        flb[j] = 1e-6 * est[j], fub[j] = HUGE_VAL;
        S->step = zq * est[j] / sqrt(2.0 * (double)P->m->n);
    } else {
        flb[j] = -HUGE_VAL, fub[j] = HUGE_VAL;
        const double se = e->se[j - P->nv];
        S->step = zq * (isfinite(se) && se > 0 ? se : fmax(fabs(est[j]), 1.0));
    }
    S->lb = flb[j], S->ub = fub[j];
}

mlmx_status mlmx_profile_confint(const mlmx_fit *f, mlmx_confint *c, mlmx_error *err)
{
    prof P;
    memset(&P, 0, sizeof P);
    mlmx_err_clear(&P.err);
    mlmx_fit *fml = NULL;
    mlmx_status st = prof_setup(f, c, &P, &fml, err);
    const mlmx_fit *e = fml ? fml : f;
    const int np = P.np;
    double *flb = NULL, *fub, *w0;
    if (!st && !(flb = malloc((size_t)3 * np * sizeof *flb)))
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    fub = flb + np;
    w0 = fub + np;
    const double zq = mlmx_pw_qnorm(0.5 + 0.5 * c->level);
    side S = {0};
    for (int j = 0; !st && j < np; j++)
        param_side(&P, e, c->est, j, zq, &S, flb, fub);
    if (!st) { /* D^: the deviance at the estimates, by the profile's own function */
        P.fix = -1;
        S.base = P.glmm ? glmm_dev(np, c->est, &P) : lmm_dev_var(P.nv, c->est, &P);
        if (!(S.base < 1e299))
            st = mlmx_err_set(err, MLMX_ERR_NUMERIC, "the deviance at the estimates: %s",
                              P.err.msg);
    }
    for (int j = 0; !st && j < np; j++) {
        const double base = S.base;
        param_side(&P, e, c->est, j, zq, &S, flb, fub);
        S.base = base;
        if (cor_undefined(&P, c->est, j)) {
            c->lo[j] = c->hi[j] = NAN;
            st = mlmx_confint_note(c, "%s: a correlation with a standard deviation at 0 is not "
                                      "profiled", c->names[j]);
            continue;
        }
        st = profile_param(&P, c, j, c->est, flb, fub, &S, w0, err);
    }
    free(flb);
    prof_free(&P);
    mlmx_fit_free(fml);
    return st;
}
