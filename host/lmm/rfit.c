#define _POSIX_C_SOURCE 200809L
/* Fitting an LMM with a residual structure: BOBYQA over (theta, the
 * residual parameters) on criterion(theta; generalized cross-products at
 * the residual parameters) + log|R|, then everything at the optimum from
 * the same factor (host/lmm/fit.c's finish). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmm/fit.h"
#include "lmm/rlmm.h"
#include "optim/optim.h"

/* The criterion at x = [theta; residual parameters]. */
static double robj_eval(const mlmx_robj *c, const double *x, double *crit, mlmx_error *e)
{
    double ldr = 0.0, v;
    const double *theta = x;
    if (c->th) {
        if (mlmx_model_psi_to_theta(c->s->model, x, c->th) != 0)
            return HUGE_VAL;
        theta = c->th;
    }
    if (c->rl && mlmx_rlmm_set(c->rl, x + c->nt, &c->w->v, &ldr, e) != MLMX_OK)
        return HUGE_VAL;
    if (mlmx_lmm_eval(c->s, c->be, theta, c->reml, c->w, &v, e) != MLMX_OK)
        return HUGE_VAL;
    *crit = v + ldr;
    return *crit;
}

double mlmx_robj_value(int n, const double *x, void *ctx)
{
    (void)n;
    mlmx_robj *c = ctx;
    mlmx_error e;
    mlmx_err_clear(&e);
    double v = HUGE_VAL;
    c->n_evals++;
    if (robj_eval(c, x, &v, &e) == HUGE_VAL) {
        v = HUGE_VAL;
        if (c->err.code == MLMX_OK)
            c->err = e;
    }
    if (v < c->best)
        c->best = v;
    if (c->progress)
        c->progress(c->progress_ctx, c->n_evals, c->best);
    return v;
}

void mlmx_robj_bounds(const mlmx_model *md, double *lo, double *hi)
{
    const mlmx_resid *r = md->resid;
    const int nt = mlmx_model_ncov(md);
    for (int t = 0; t < nt; t++) {
        lo[t] = md->nstructured ? md->psi_lower[t] : md->theta_lower[t];
        hi[t] = md->nstructured ? md->psi_upper[t] : HUGE_VAL;
    }
    for (int k = 0; r && k < r->npar; k++) {
        lo[nt + k] = r->lower[k];
        hi[nt + k] = r->upper[k];
    }
}

/* Start, bounds: theta as lme4 (or o->theta_start), the residual
 * parameters at the structure's start. */
static void start_point(const mlmx_model *md, const mlmx_fit_options *o, double *x, double *lo,
                        double *hi)
{
    const mlmx_resid *r = md->resid;
    const int nt = mlmx_model_ncov(md);
    mlmx_robj_bounds(md, lo, hi);
    for (int t = 0; t < nt; t++) {
        if (md->nstructured) /* theta_start is for theta: ignored here, as in fit.c */
            x[t] = md->psi_start[t];
        else
            x[t] = o->theta_start ? o->theta_start[t] : md->theta_lower[t] == 0.0 ? 1.0 : 0.0;
        if (x[t] < lo[t])
            x[t] = lo[t];
    }
    for (int k = 0; k < r->npar; k++)
        x[nt + k] = r->start[k];
}

/* BOBYQA from x, then again from its optimum while a restart still gains
 * more than 1e-8 (at most 3 restarts): a trust region that shrank early on
 * a flat criterion (ARMA) stops short of the optimum; x: the optimum on
 * return. */
mlmx_status mlmx_robj_minimize(mlmx_robj *c, int np, double *x, const double *lo,
                               const double *hi, int max_evals, double ftol_abs, double xtol_rel,
                               mlmx_optim_result *res, mlmx_error *err)
{
    mlmx_optim_opts oo;
    mlmx_optim_opts_default(&oo);
    if (max_evals > 0)
        oo.max_evals = max_evals;
    if (ftol_abs > 0)
        oo.ftol_abs = ftol_abs;
    if (xtol_rel > 0)
        oo.xtol_rel = xtol_rel;
    mlmx_status st = mlmx_optim_bobyqa(np, x, lo, hi, mlmx_robj_value, c, &oo, res, err);
    if (st || !isfinite(res->fmin))
        return st;
    oo.init_step = 0.01;
    for (int k = 0; k < 3 && !st; k++) {
        const int ev = res->n_evals;
        const double before = res->fmin;
        st = mlmx_optim_bobyqa(np, x, lo, hi, mlmx_robj_value, c, &oo, res, err);
        res->n_evals += ev;
        if (!(before - res->fmin > 1e-8))
            break;
    }
    return st;
}

/* Everything at the optimum x: criteria, the fit's estimates, the
 * residual parameters on nlme's scale. */
static mlmx_status finish(mlmx_fit *f, mlmx_robj *c, const double *x, mlmx_error *err)
{
    const mlmx_model *md = f->model;
    const mlmx_resid *r = md->resid;
    double crit;
    if (robj_eval(c, x, &crit, err) == HUGE_VAL)
        return err->code ? err->code : MLMX_ERR_NUMERIC;
    memcpy(f->theta, c->th ? c->th : x, (size_t)md->ntheta * sizeof *f->theta);
    mlmx_resid_natural(r, x + c->nt, f->rpar);
    mlmx_lmm_set_criteria(f, crit);
    if (c->th) /* set_criteria copies psi from theta only without structures */
        memcpy(f->psi, x, (size_t)c->nt * sizeof *f->psi);
    mlmx_status st = mlmx_lmm_check_finite(f, err);
    if (!st)
        st = mlmx_lmm_finish(f, c->s, c->w, md->y, err);
    return st;
}

mlmx_status mlmx_rlmm_fit(const mlmx_model *md, const mlmx_fit_options *o, mlmx_fit **out,
                          mlmx_error *err)
{
    *out = NULL;
    double t0 = mlmx_lmm_now();
    const mlmx_resid *r = md->resid;
    const int nt = mlmx_model_ncov(md), np = nt + r->npar;
    mlmx_lmm_stats *s = NULL;
    mlmx_lmm_work *w = NULL;
    mlmx_rlmm *rl = NULL;
    mlmx_fit *f = NULL;
    const mlmx_backend *be = NULL;
    char where[256], note[320];
    /* x, its bounds, and theta's scratch for structured terms */
    double *x = malloc((3 * (size_t)np + (size_t)md->ntheta) * sizeof *x);
    mlmx_status st = x ? mlmx_lmm_stats_build(md, &s, err)
                       : mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    if (!st)
        st = mlmx_lmm_check_response(md->y, md->n, err);
    if (!st)
        st = mlmx_rlmm_prepare(s, r, &rl, err);
    if (!st)
        st = mlmx_backend_for_device(o->device, o->backend, s->m - s->chain_end, &be, where,
                                     sizeof where, note, sizeof note, err);
    if (!st)
        st = mlmx_lmm_work_alloc(s, &w, err);
    if (!st && mlmx_fit_alloc(md, &f) != MLMX_OK)
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    if (!st) {
        f->method = o->method;
        f->have_condsd = o->conditional_variances != 0;
        snprintf(f->device, sizeof f->device, "%s", where);
        snprintf(f->device_note, sizeof f->device_note, "%s", note);
        snprintf(f->optimizer, sizeof f->optimizer, "BOBYQA");
        double *th = md->nstructured ? x + 3 * np : NULL;
        mlmx_robj c = {s,   be,       w,   rl,          o->method == MLMX_REML, nt, th, 0,
                       HUGE_VAL, {0}, o->progress, o->progress_ctx};
        double *lo = x + np, *hi = x + 2 * np;
        start_point(md, o, x, lo, hi);
        mlmx_optim_result res;
        st = mlmx_robj_minimize(&c, np, x, lo, hi, o->max_evaluations, o->ftol_abs,
                                o->xtol_rel, &res, err);
        if (!st && !isfinite(res.fmin)) {
            st = c.err.code ? c.err.code : MLMX_ERR_NUMERIC;
            mlmx_err_set(err, st, "the criterion could not be evaluated: %s",
                         c.err.msg[0] ? c.err.msg : "non-finite value");
        }
        if (!st) {
            f->n_evals = res.n_evals;
            f->converged = res.converged;
            memcpy(f->message, res.message, sizeof f->message);
            f->grad_max = NAN;
            st = finish(f, &c, x, err);
        }
    }
    free(x);
    mlmx_rlmm_free(rl);
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
