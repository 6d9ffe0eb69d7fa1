#define _POSIX_C_SOURCE 200809L
/* Fitting: BOBYQA over theta on the profiled criterion, then everything
 * lme4 reports, computed once at the optimum from the same factor. */
#include "lmm/fit.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "cluster_math.h"
#include "lmm/fit_psi.h"
#include "optim/optim.h"

static double objective(int n, const double *theta, void *ctx)
{
    (void)n;
    mlmx_lmm_obj *c = ctx;
    double v;
    mlmx_error e;
    mlmx_err_clear(&e);
    c->n_evals++;
    if (mlmx_lmm_eval(c->s, c->be, theta, c->reml, c->w, &v, &e) != MLMX_OK) {
        if (c->err.code == MLMX_OK)
            c->err = e;
        v = HUGE_VAL;
    }
    if (v < c->best)
        c->best = v;
    if (c->progress)
        c->progress(c->progress_ctx, c->n_evals, c->best);
    return v;
}

double mlmx_lmm_obj_value(int n, const double *theta, void *ctx)
{
    return objective(n, theta, ctx);
}

/* Central differences of the criterion, one-sided at a lower bound: the
 * gradient where the analytic formula does not apply (a variance at 0), and
 * the check at the optimum for systems whose analytic gradient would cost a
 * large inverse. Leaves the factor at some nearby point, not at theta. */
static mlmx_status fd_gradient(mlmx_lmm_obj *c, int n, const double *theta, double *g)
{
    double *th = c->th2;
    memcpy(th, theta, (size_t)n * sizeof *th);
    for (int t = 0; t < n; t++) {
        double h = 1e-6 * fmax(fabs(theta[t]), 1.0);
        double lo = c->s->model->theta_lower[t];
        double xm = theta[t] - h < lo ? lo : theta[t] - h, xp = theta[t] + h;
        th[t] = xp;
        double fp = objective(n, th, c);
        th[t] = xm;
        double fm = objective(n, th, c);
        th[t] = theta[t];
        if (!isfinite(fp) || !isfinite(fm))
            return MLMX_ERR_NUMERIC;
        g[t] = (fp - fm) / (xp - xm);
    }
    return MLMX_OK;
}

static double objective_grad(int n, const double *theta, double *grad, void *ctx)
{
    mlmx_lmm_obj *c = ctx;
    double v = objective(n, theta, ctx);
    if (!isfinite(v))
        return v;
    if (mlmx_lmm_grad(c->s, c->w, c->reml, grad) != MLMX_OK) {
        if (fd_gradient(c, n, theta, grad) != MLMX_OK)
            return HUGE_VAL;
        objective(n, theta, ctx); /* leave the factor at theta */
    }
    return v;
}

/* The quasi-Newton path works on log(theta) for the diagonal entries: the
 * criterion is closer to quadratic there, and a variance can shrink
 * geometrically without ever being thrown onto its bound. */
double mlmx_lmm_obj_log(int n, const double *x, double *grad, void *ctx)
{
    mlmx_lmm_obj *c = ctx;
    const double *lower = c->s->model->theta_lower;
    for (int t = 0; t < n; t++)
        c->th[t] = lower[t] == 0.0 ? exp(x[t]) : x[t];
    double v = objective_grad(n, c->th, grad, c);
    if (isfinite(v))
        for (int t = 0; t < n; t++)
            if (lower[t] == 0.0)
                grad[t] *= c->th[t];
    return v;
}

mlmx_status mlmx_lmm_obj_init(mlmx_lmm_obj *c, const mlmx_lmm_stats *s, const mlmx_backend *be,
                              mlmx_lmm_work *w, int reml)
{
    memset(c, 0, sizeof *c);
    c->s = s;
    c->be = be;
    c->w = w;
    c->reml = reml;
    c->best = HUGE_VAL;
    size_t nt = s->model->ntheta > 0 ? (size_t)s->model->ntheta : 1;
    c->th = malloc(2 * nt * sizeof *c->th);
    if (!c->th)
        return MLMX_ERR_NOMEM;
    c->th2 = c->th + nt;
    return MLMX_OK;
}

void mlmx_lmm_obj_release(mlmx_lmm_obj *c) { free(c->th); }

/* Where the derivative-free optimizer's evaluation count limits speed:
 * a truly dense block (after the nested stages) this large costs
 * milliseconds per factorization. */
#define MLMX_QN_DENSE_MIN 300

void mlmx_fit_options_default(mlmx_fit_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->method = MLMX_REML;
    o->theta_start = NULL;
    o->max_evaluations = 100000;
    o->ftol_abs = 1e-10;
    o->xtol_rel = 1e-8;
    o->backend = NULL;
    o->conditional_variances = 1;
    o->family = MLMX_FAMILY_GAUSSIAN;
    o->link = MLMX_LINK_DEFAULT;
    o->nagq = 1;
}

void mlmx_fit_free(mlmx_fit *f)
{
    if (!f)
        return;
    free(f->theta);
    free(f->psi);
    free(f->beta);
    free(f->se);
    free(f->vcov);
    free(f->fitted);
    free(f->resid);
    free(f->pearson);
    free(f->thr);
    free(f->thr_se);
    if (f->thr_names)
        for (int k = 0; k < f->nthr; k++)
            free(f->thr_names[k]);
    free(f->thr_names);
    if (f->ranef)
        for (int k = 0; k < f->model->K; k++)
            free(f->ranef[k]);
    if (f->condsd)
        for (int k = 0; k < f->model->K; k++)
            free(f->condsd[k]);
    free(f->ranef);
    free(f->condsd);
    free(f->rpar);
    if (f->cache) {
        void *d = __atomic_load_n(&f->cache->ddf, __ATOMIC_ACQUIRE);
        void (*fr)(void *) = __atomic_load_n(&f->cache->free_ddf, __ATOMIC_ACQUIRE);
        if (d && fr)
            fr(d);
        free(f->cache);
    }
    free(f);
}

double mlmx_lmm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Everything at the optimum from the factor in w (mlmx_lmm_eval was just
 * called at theta). */
mlmx_status mlmx_lmm_rx_inverse(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, double *C)
{
    const int p = s->model->p, m_re = s->m_re;
    const size_t m = (size_t)s->m;
    for (int b = 0; b < p; b++)
        for (int a = 0; a < p; a++)
            C[a + b * p] = a >= b ? w->S[(size_t)(m_re + a) + (size_t)(m_re + b) * m] : 0.0;
    if (p > 0 && LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', p, C, p) != 0)
        return MLMX_ERR_NUMERIC;
    for (int b = 0; b < p; b++)
        for (int a = 0; a < b; a++)
            C[a + b * p] = C[b + a * p];
    return MLMX_OK;
}

mlmx_status mlmx_lmm_finish(mlmx_fit *f, const mlmx_lmm_stats *s, mlmx_lmm_work *w,
                            const double *y, mlmx_error *err)
{
    const mlmx_model *md = f->model;
    const size_t n = md->n;
    const int p = md->p, K = md->K, q1 = s->q1, m_re = s->m_re;
    double denom = f->method == MLMX_REML ? (double)n - p : (double)n;
    double sigma2 = w->r2 / denom;
    f->sigma = sqrt(sigma2);

    /* [u_R; beta] and the first term's u from one solve with the factor. */
    mlmx_lmm_modes(s, w, w->wv, w->u1);
    const double *wv = w->wv;
    for (int j = 0; j < p; j++)
        f->beta[j] = wv[m_re + j];

    /* b = Lambda u, level by level: b_l = T_k u_l */
    for (int k = 0; k < K; k++) {
        const int q = md->re[k].q;
        const double *T = w->tptr[k];
        for (int l = 0; l < md->re[k].nlevels; l++) {
            const double *u = k == 0 ? w->u1 + (size_t)l * q1 : wv + s->term_off[k] + l * q;
            for (int a = 0; a < q; a++) {
                double sum = 0;
                for (int c = 0; c <= a; c++)
                    sum += T[a + c * q] * u[c];
                f->ranef[k][l * q + a] = sum;
            }
        }
    }

    /* Fitted values and residuals. */
    for (size_t i = 0; i < n; i++) {
        double v = 0;
        for (int j = 0; j < p; j++)
            v += md->X[(size_t)j * n + i] * f->beta[j];
        for (int k = 0; k < K; k++) {
            const mlmx_reterm_info *r = &md->re[k];
            const double *b = f->ranef[k] + (size_t)r->codes[i] * r->q;
            const double *z = r->z + i * (size_t)r->q;
            for (int c = 0; c < r->q; c++)
                v += z[c] * b[c];
        }
        f->fitted[i] = v;
        f->resid[i] = y[i] - v;
    }

    /* vcov(beta) = sigma^2 (R_X^T R_X)^{-1} */
    if (p > 0) {
        double *lx = f->vcov;
        if (mlmx_lmm_rx_inverse(s, w, lx) != MLMX_OK)
            return mlmx_err_set(err, MLMX_ERR_NUMERIC, "cannot invert R_X for the fixed-effect "
                                                       "covariance");
        for (int a = 0; a < p * p; a++)
            lx[a] *= sigma2;
        for (int j = 0; j < p; j++)
            f->se[j] = sqrt(lx[j + j * p]);
    }

    /* Conditional variances: the diagonal blocks of sigma^2 Lambda Omega^{-1}
     * Lambda^T, from the inverse of the dense factor's random-effect part
     * (the work's gradient buffer, free at this point). */
    if (!f->have_condsd)
        return MLMX_OK;
    return mlmx_lmm_condsd(s, w, sigma2, f->condsd, err);
}

void mlmx_lmm_set_criteria(mlmx_fit *f, double crit)
{
    const mlmx_model *md = f->model;
    const int nt = md->ntheta;
    f->criterion = crit;
    f->loglik = -0.5 * crit;
    f->df = md->p + mlmx_model_ncov(md) + 1 + (md->resid ? md->resid->npar : 0);
    if (f->psi && !md->nstructured)
        memcpy(f->psi, f->theta, (size_t)nt * sizeof *f->psi);
    f->aic = crit + 2.0 * f->df;
    f->bic = crit + f->df * log((double)md->n);
    f->singular = 0;
    for (int t = 0; t < nt; t++)
        if (md->theta_lower[t] == 0.0 && f->theta[t] < 1e-4)
            f->singular = 1;
}

/* A criterion or estimate that is not finite is a failed fit, never a
 * result: overflow in the response's scale (values near 1e308, or squares
 * of values beyond 1e154) is the usual cause. */
mlmx_status mlmx_lmm_check_finite(const mlmx_fit *f, mlmx_error *err)
{
    int ok = isfinite(f->criterion);
    for (int t = 0; ok && t < f->model->ntheta; t++)
        ok = isfinite(f->theta[t]);
    if (ok)
        return MLMX_OK;
    return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                        "the fit's criterion or estimates are not finite: the response's "
                        "values overflow double precision in its sums of squares (rescale the "
                        "response)");
}

mlmx_status mlmx_lmm_check_response(const double *y, size_t n, mlmx_error *err)
{
    double mean = 0.0, ss = 0.0, sy = 0.0;
    for (size_t i = 0; i < n; i++)
        mean += y[i];
    mean /= (double)(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        ss += (y[i] - mean) * (y[i] - mean);
        sy += y[i] * y[i];
    }
    if (!isfinite(mean) || !isfinite(ss) || !isfinite(sy))
        return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                            "the response's sum of squares overflows double precision (values "
                            "beyond about 1e154): rescale the response");
    if (!(ss > 1e-24 * sy) || ss == 0.0)
        return mlmx_err_set(err, MLMX_ERR_DATA,
                            "the response is constant (%.17g in every row): there is no variance "
                            "to estimate",
                            n ? y[0] : 0.0);
    return MLMX_OK;
}

mlmx_status mlmx_fit_alloc(const mlmx_model *md, mlmx_fit **out)
{
    mlmx_fit *f = calloc(1, sizeof *f);
    if (!f)
        return MLMX_ERR_NOMEM;
    f->cache = calloc(1, sizeof *f->cache);
    if (!f->cache) {
        free(f);
        return MLMX_ERR_NOMEM;
    }
    f->model = md;
    f->skip_col = -1;
    size_t n = md->n;
    int p = md->p;
    f->theta = calloc((size_t)(md->ntheta ? md->ntheta : 1), sizeof *f->theta);
    f->psi = calloc((size_t)(mlmx_model_ncov(md) ? mlmx_model_ncov(md) : 1), sizeof *f->psi);
    f->beta = calloc((size_t)(p ? p : 1), sizeof *f->beta);
    f->se = calloc((size_t)(p ? p : 1), sizeof *f->se);
    f->vcov = calloc((size_t)(p ? p * p : 1), sizeof *f->vcov);
    f->fitted = calloc(n ? n : 1, sizeof *f->fitted);
    f->resid = calloc(n ? n : 1, sizeof *f->resid);
    f->ranef = calloc((size_t)(md->K ? md->K : 1), sizeof *f->ranef);
    f->condsd = calloc((size_t)(md->K ? md->K : 1), sizeof *f->condsd);
    if (md->resid)
        f->rpar = calloc((size_t)(md->resid->npar ? md->resid->npar : 1), sizeof *f->rpar);
    int ok = f->theta && f->psi && f->beta && f->se && f->vcov && f->fitted && f->resid &&
             f->ranef && f->condsd && (!md->resid || f->rpar);
    for (int k = 0; ok && k < md->K; k++) {
        size_t len = (size_t)md->re[k].nlevels * (size_t)md->re[k].q;
        f->ranef[k] = calloc(len, sizeof **f->ranef);
        f->condsd[k] = calloc(len, sizeof **f->condsd);
        ok = f->ranef[k] && f->condsd[k];
    }
    if (!ok) {
        mlmx_fit_free(f);
        return MLMX_ERR_NOMEM;
    }
    *out = f;
    return MLMX_OK;
}

/* Minimise the criterion from f->theta: BFGS on log(theta) (finished by
 * BOBYQA at a bound or without convergence) or BOBYQA; theta back in f.
 * x: 2 ntheta scratch. */
static mlmx_status optimize(mlmx_fit *f, mlmx_lmm_obj *ctx, const mlmx_optim_opts *oo,
                           int use_qn, double *x, mlmx_optim_result *res, mlmx_error *err)
{
    const mlmx_model *md = f->model;
    const int nt = md->ntheta;
    mlmx_status st;
    if (!use_qn) {
        snprintf(f->optimizer, sizeof f->optimizer, "BOBYQA");
        return mlmx_optim_bobyqa(nt, f->theta, md->theta_lower, NULL, objective, ctx, oo, res,
                                 err);
    }
    double *xlo = x + nt;
    for (int t = 0; t < nt; t++) {
        int diag = md->theta_lower[t] == 0.0;
        x[t] = diag ? log(f->theta[t] > 1e-8 ? f->theta[t] : 1e-8) : f->theta[t];
        xlo[t] = diag ? log(1e-8) : -HUGE_VAL;
    }
    st = mlmx_optim_qnewton(nt, x, xlo, NULL, mlmx_lmm_obj_log, ctx, oo, res, err);
    for (int t = 0; t < nt; t++)
        f->theta[t] = md->theta_lower[t] == 0.0 ? exp(x[t]) : x[t];
    snprintf(f->optimizer, sizeof f->optimizer, "BFGS");
    int boundary = 0;
    for (int t = 0; t < nt; t++)
        if (md->theta_lower[t] == 0.0 && f->theta[t] < 1e-4)
            boundary = 1;
    if (st == MLMX_OK && (boundary || !res->converged)) {
        /* finish derivative-free where the gradient formula is weakest */
        int ev = res->n_evals;
        st = mlmx_optim_bobyqa(nt, f->theta, md->theta_lower, NULL, objective, ctx, oo, res,
                               err);
        res->n_evals += ev;
        snprintf(f->optimizer, sizeof f->optimizer, "BFGS+BOBYQA");
    }
    return st;
}

/* As lme4 checks, the gradient of the criterion at the optimum should
 * vanish (interior fits; at a boundary it need not). The tolerance is
 * lme4's 0.002, relative to the criterion's size in units of 1000: for
 * InstEval (criterion 2.4e5) rounding alone leaves gradients of ~0.01. The
 * analytic gradient inverts the random-effect part, O(m^3); past a few
 * hundred columns central differences are cheaper (they move the factor,
 * which is then put back at the optimum). g: ntheta scratch. */
static mlmx_status check_gradient(mlmx_fit *f, mlmx_lmm_obj *ctx, double *g, double *crit,
                                  mlmx_error *err)
{
    const mlmx_lmm_stats *s = ctx->s;
    const int nt = f->model->ntheta;
    int gok;
    if (s->m <= 500) {
        gok = mlmx_lmm_grad(s, ctx->w, ctx->reml, g) == MLMX_OK;
    } else {
        gok = fd_gradient(ctx, nt, f->theta, g) == MLMX_OK;
        mlmx_status st = mlmx_lmm_eval(s, ctx->be, f->theta, ctx->reml, ctx->w, crit, err);
        if (st)
            return st;
    }
    if (!gok)
        return MLMX_OK;
    f->grad_max = 0.0;
    for (int t = 0; t < nt; t++)
        f->grad_max = fmax(f->grad_max, fabs(g[t]));
    double tol = 2e-3 * fmax(1.0, fabs(*crit) / 1000.0);
    if (f->converged && f->grad_max > tol) {
        f->converged = 0;
        snprintf(f->message, sizeof f->message,
                 "the optimizer stopped where the criterion's gradient is %.3g (tolerance %.3g)",
                 f->grad_max, tol);
    }
    return MLMX_OK;
}

mlmx_status mlmx_lmm_fit_internal(const mlmx_model *md, const mlmx_fit_options *o,
                                  mlmx_fit **out, mlmx_error *err)
{
    *out = NULL;
    if (md->resid)
        return mlmx_rlmm_fit(md, o, out, err);
    double t0 = mlmx_lmm_now();
    if (md->K > 0)
        for (int k = 0; k < md->K; k++)
            if (md->re[k].q > 16)
                return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                                    "random-effect term for '%s' has %d columns; at most 16 are "
                                    "supported",
                                    md->re[k].group, md->re[k].q);
    mlmx_lmm_stats *s = NULL;
    mlmx_lmm_work *w = NULL;
    mlmx_fit *f = NULL;
    mlmx_status st = mlmx_lmm_stats_build(md, &s, err);
    if (!st)
        st = mlmx_lmm_check_response(md->y, md->n, err);
    if (st) {
        mlmx_lmm_stats_free(s);
        return st;
    }
    const mlmx_backend *be = NULL;
    char where[256], note[320];
    st = mlmx_backend_for_device(o->device, o->backend, s->m - s->chain_end, &be, where,
                                 sizeof where, note, sizeof note, err);
    if (!st)
        st = mlmx_lmm_work_alloc(s, &w, err);
    if (st) {
        mlmx_lmm_stats_free(s);
        return st;
    }
    if (mlmx_fit_alloc(md, &f) != MLMX_OK) {
        mlmx_lmm_work_free(w);
        mlmx_lmm_stats_free(s);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    f->method = o->method;
    f->have_condsd = o->conditional_variances != 0;
    snprintf(f->device, sizeof f->device, "%s", where);
    snprintf(f->device_note, sizeof f->device_note, "%s", note);
    int nt = md->ntheta;
    for (int t = 0; t < nt; t++) {
        if (o->theta_start)
            f->theta[t] = o->theta_start[t];
        else
            f->theta[t] = md->theta_lower[t] == 0.0 ? 1.0 : 0.0;
        if (f->theta[t] < md->theta_lower[t])
            f->theta[t] = md->theta_lower[t];
    }
    mlmx_lmm_obj ctx;
    double *x = malloc(3 * (size_t)(nt > 0 ? nt : 1) * sizeof *x);
    if (!x || mlmx_lmm_obj_init(&ctx, s, be, w, o->method == MLMX_REML) != MLMX_OK) {
        free(x);
        mlmx_fit_free(f);
        mlmx_lmm_work_free(w);
        mlmx_lmm_stats_free(s);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    double *g = x + 2 * nt;
    ctx.progress = o->progress;
    ctx.progress_ctx = o->progress_ctx;
    mlmx_optim_opts oo;
    mlmx_optim_opts_default(&oo);
    if (o->max_evaluations > 0)
        oo.max_evals = o->max_evaluations;
    if (o->ftol_abs > 0)
        oo.ftol_abs = o->ftol_abs;
    if (o->xtol_rel > 0)
        oo.xtol_rel = o->xtol_rel;
    mlmx_optim_result res;
    int use_qn = o->optimizer == MLMX_OPTIM_QUASI_NEWTON ||
                 (o->optimizer == MLMX_OPTIM_AUTO && s->m - s->chain_end >= MLMX_QN_DENSE_MIN);
    if (md->nstructured)
        st = mlmx_lmm_optimize_psi(f, &ctx, &oo, &res, err);
    else
        st = optimize(f, &ctx, &oo, use_qn, x, &res, err);
    if (st == MLMX_OK && !isfinite(res.fmin)) {
        st = ctx.err.code ? ctx.err.code : MLMX_ERR_NUMERIC;
        mlmx_err_set(err, st, "the criterion could not be evaluated: %s",
                     ctx.err.msg[0] ? ctx.err.msg : "non-finite value");
    }
    if (st == MLMX_OK) {
        f->n_evals = res.n_evals;
        f->converged = res.converged;
        memcpy(f->message, res.message, sizeof f->message);
        double crit;
        st = mlmx_lmm_eval(s, be, f->theta, ctx.reml, w, &crit, err);
        if (st == MLMX_OK) {
            mlmx_lmm_set_criteria(f, crit);
            f->grad_max = NAN;
            if (md->nstructured)
                st = mlmx_lmm_psi_gradient(f, &ctx, crit);
            else if (!use_qn && !f->singular)
                st = check_gradient(f, &ctx, g, &crit, err);
            if (st == MLMX_OK)
                st = mlmx_lmm_check_finite(f, err);
            if (st == MLMX_OK)
                st = mlmx_lmm_finish(f, s, w, md->y, err);
        }
    }
    mlmx_lmm_obj_release(&ctx);
    free(x);
    mlmx_lmm_work_free(w);
    mlmx_lmm_stats_free(s);
    if (st) {
        mlmx_fit_free(f);
        return st;
    }
    f->seconds = mlmx_lmm_now() - t0;
    *out = f;
    return MLMX_OK;
}
