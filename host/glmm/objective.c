#define _POSIX_C_SOURCE 200809L
/* The GLMM objective over x = [theta; beta; extra]: deviances, gradients
 * and Hessians by differences (see objective.h). */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "glmm/glmm.h"
#include "glmm/objective.h"
#include "lmm/fit.h"
#include "optim/optim.h"
#include "util/strbuf.h"


double mlmx_gobj_note(mlmx_gobj *c, mlmx_status st, const mlmx_error *e, double v)
{
    c->n_evals++;
    if (st) {
        if (c->err.code == MLMX_OK)
            c->err = *e;
        v = HUGE_VAL;
    }
    if (!isfinite(v))
        v = HUGE_VAL;
    if (v < c->best)
        c->best = v;
    if (c->progress)
        c->progress(c->progress_ctx, c->n_evals, c->best);
    return v;
}

double mlmx_gobj_obj_stage1(int n, const double *theta, void *ctx)
{
    (void)n;
    mlmx_gobj *c = ctx;
    mlmx_error e;
    mlmx_err_clear(&e);
    double v = HUGE_VAL;
    mlmx_status st = mlmx_glmm_pirls_beta(c->g, theta, &v, &e);
    return mlmx_gobj_note(c, st, &e, v);
}

/* Deviance, log-likelihood, information criteria and the singular flag
 * (a variance at its bound, as lme4's isSingular). */
void mlmx_gobj_set_criteria(mlmx_fit *f, double dev, int np)
{
    const mlmx_model *md = f->model;
    f->criterion = dev;
    f->loglik = -0.5 * dev;
    f->df = np;
    if (f->psi && !md->nstructured)
        memcpy(f->psi, f->theta, (size_t)md->ntheta * sizeof *f->psi);
    f->aic = dev + 2.0 * np;
    f->bic = dev + np * log((double)md->n);
    f->singular = 0;
    for (int t = 0; t < md->ntheta; t++)
        if (md->theta_lower[t] == 0.0 && f->theta[t] < 1e-4)
            f->singular = 1;
}

/* The optimizer's tolerances and budget from the fit options. */
void mlmx_gobj_optim_opts_from(const mlmx_fit_options *o, mlmx_optim_opts *oo)
{
    mlmx_optim_opts_default(oo);
    if (o->max_evaluations > 0)
        oo->max_evals = o->max_evaluations;
    if (o->ftol_abs > 0)
        oo->ftol_abs = o->ftol_abs;
    if (o->xtol_rel > 0)
        oo->xtol_rel = o->xtol_rel;
}

/* The quadrature gradient covers one scalar term and nested scalar terms. */
int mlmx_gobj_quad_grad_ok(const mlmx_glmm *g)
{
    const mlmx_model *md = g->md;
    return md->K <= 8 && (md->K == 1 ? md->re[0].q == 1 : mlmx_glmm_nested_scalar(g));
}

int mlmx_gobj_npar(const mlmx_gobj *c) { return (c->fix_theta ? 0 : c->ntheta) + c->nb + c->nextra; }

/* theta, the full beta and the family's extra parameters from x */
void mlmx_gobj_unpack(mlmx_gobj *c, const double *x, const double **theta, const double **beta)
{
    mlmx_glmm *g = c->g;
    const double *xb = c->fix_theta ? x : x + c->ntheta;
    *theta = c->fix_theta ? c->theta0 : x;
    for (int j = 0, k = 0; j < c->p; j++)
        c->bfull[j] = j == g->int_col ? 0.0 : xb[k++];
    *beta = c->bfull;
    const double *xe = xb + c->nb;
    if (g->family == MLMX_FAMILY_ORDINAL) {
        double t = xe[0];
        g->thr[0] = t;
        for (int k = 1; k < g->ncat - 1; k++) {
            t += exp(xe[k]);
            g->thr[k] = t;
        }
    } else if (g->family == MLMX_FAMILY_NEGBIN) {
        g->nb_size = exp(xe[0]);
    }
}

mlmx_status mlmx_gobj_dev_at(mlmx_gobj *c, const double *x, double *v, mlmx_error *e)
{
    const double *theta, *beta;
    mlmx_gobj_unpack(c, x, &theta, &beta);
    if (c->nagq <= 1 || c->fix_theta)
        return mlmx_glmm_laplace(c->g, theta, beta, v, e);
    return mlmx_glmm_agq(c->g, theta, beta, c->nagq, v, e);
}

double mlmx_gobj_obj_stage2(int n, const double *x, void *ctx)
{
    (void)n;
    mlmx_gobj *c = ctx;
    mlmx_error e;
    mlmx_err_clear(&e);
    double v = HUGE_VAL;
    mlmx_status st = mlmx_gobj_dev_at(c, x, &v, &e);
    return mlmx_gobj_note(c, st, &e, v);
}

/* The deviance and its gradient in x-space: the Laplace gradient (canonical
 * links, x = [theta; beta]) for nagq = 1, the quadrature gradient
 * otherwise, mapped from [theta; beta; c or size] to x. */
mlmx_status mlmx_gobj_grad_x(mlmx_gobj *c, const double *x, double *v, double *grad, mlmx_error *e)
{
    mlmx_glmm *g = c->g;
    if (c->nagq <= 1 && !c->fix_theta)
        return mlmx_glmm_laplace_grad(g, x, x + c->ntheta, v, grad, e);
    const double *theta, *beta;
    mlmx_gobj_unpack(c, x, &theta, &beta);
    double gf[NPAR_MAX + 8];
    /* with theta held at 0 the one-point rule is the model without random
     * effects, exactly, and so is its gradient */
    mlmx_status st =
        mlmx_glmm_agq_grad(g, theta, beta, c->fix_theta ? 1 : c->nagq, v, gf, e);
    if (st)
        return st;
    const int nt = c->ntheta, p = c->p, ot = c->fix_theta ? 0 : nt;
    for (int t = 0; t < ot; t++)
        grad[t] = gf[t];
    for (int j = 0, k = 0; j < p; j++)
        if (j != g->int_col)
            grad[ot + k++] = gf[nt + j];
    double *ge = grad + ot + c->nb;
    const double *xe = x + ot + c->nb, *gfe = gf + nt + p;
    if (g->family == MLMX_FAMILY_ORDINAL) {
        /* c_k = x_1 + sum_{2 <= j <= k} exp(x_j) */
        const int nc = g->ncat - 1;
        double tail = 0.0;
        for (int k = nc - 1; k >= 0; k--) {
            tail += gfe[k];
            ge[k] = k == 0 ? tail : exp(xe[k]) * tail;
        }
    } else if (g->family == MLMX_FAMILY_NEGBIN) {
        ge[0] = g->nb_size * gfe[0];
    }
    return MLMX_OK;
}

double mlmx_gobj_obj_stage2_grad(int n, const double *x, double *grad, void *ctx)
{
    (void)n;
    mlmx_gobj *c = ctx;
    mlmx_error e;
    mlmx_err_clear(&e);
    double v = HUGE_VAL;
    mlmx_status st = mlmx_gobj_grad_x(c, x, &v, grad, &e);
    if (!st && n <= NPAR_MAX) {
        memcpy(c->last_x, x, (size_t)n * sizeof *x);
        memcpy(c->last_g, grad, (size_t)n * sizeof *grad);
        c->last_f = v;
        c->have_last = n;
    }
    return mlmx_gobj_note(c, st, &e, v);
}

/* The deviance with its gradient by central differences (the Laplace fits
 * of the ordinal and negative binomial families, whose analytic gradient is
 * not built): 2 n + 1 deviances, each PIRLS warm-started from the centre's
 * modes. */
double mlmx_gobj_obj_fd_grad(int n, const double *x, double *grad, void *ctx)
{
    mlmx_gobj *c = ctx;
    mlmx_glmm *g = c->g;
    mlmx_error e;
    mlmx_err_clear(&e);
    double v = HUGE_VAL;
    mlmx_status st = mlmx_gobj_dev_at(c, x, &v, &e);
    if (!st && g->nu > 0) {
        double *u0 = c->u0, xx[NPAR_MAX];
        if (!u0)
            st = mlmx_err_set(&e, MLMX_ERR_NOMEM, "out of memory");
        else
            memcpy(u0, g->u, g->nu * sizeof *u0);
        for (int t = 0; t < n && !st; t++) {
            double h = 1e-5 * fmax(fabs(x[t]), 0.1), fp, fm;
            memcpy(xx, x, (size_t)n * sizeof *xx);
            xx[t] = x[t] + h;
            memcpy(g->u, u0, g->nu * sizeof *u0);
            st = mlmx_gobj_dev_at(c, xx, &fp, &e);
            if (st)
                break;
            xx[t] = x[t] - h;
            if (c->g->md->theta_lower[0] == 0.0 && t < (c->fix_theta ? 0 : c->ntheta) &&
                xx[t] < 0.0)
                xx[t] = 0.0;
            memcpy(g->u, u0, g->nu * sizeof *u0);
            st = mlmx_gobj_dev_at(c, xx, &fm, &e);
            grad[t] = (fp - fm) / (x[t] + h - xx[t]);
        }
        if (u0)
            memcpy(g->u, u0, g->nu * sizeof *u0);
    }
    return mlmx_gobj_note(c, st, &e, v);
}


/* Hessian of the deviance over the free parameters (indices idx) by
 * central differences; the conditional modes are warm-started from the
 * optimum each time so every value is a converged PIRLS. */
mlmx_status mlmx_gobj_fd_hessian(mlmx_gobj *c, const double *x0, const int *idx, int nf, double *H,
                              mlmx_error *err)
{
    int np = mlmx_gobj_npar(c);
    double x[NPAR_MAX], f0;
    mlmx_glmm *g = c->g;
    double *u0 = malloc(g->nu ? g->nu * sizeof *u0 : sizeof *u0);
    if (!u0)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    memcpy(x, x0, (size_t)np * sizeof *x);
    mlmx_status st = mlmx_gobj_dev_at(c, x, &f0, err);
    memcpy(u0, g->u, g->nu * sizeof *u0);
    double h[NPAR_MAX];
    for (int a = 0; a < nf; a++)
        h[a] = 1e-3 * fmax(fabs(x0[idx[a]]), 0.1);
    for (int a = 0; a < nf && !st; a++) {
        for (int b = 0; b <= a && !st; b++) {
            double fv[4];
            const int sa[4] = {1, 1, -1, -1}, sb[4] = {1, -1, 1, -1};
            int ncase = a == b ? 2 : 4;
            for (int t = 0; t < ncase && !st; t++) {
                memcpy(x, x0, (size_t)np * sizeof *x);
                if (a == b) {
                    x[idx[a]] += (t == 0 ? 1 : -1) * h[a];
                } else {
                    x[idx[a]] += sa[t] * h[a];
                    x[idx[b]] += sb[t] * h[b];
                }
                memcpy(g->u, u0, g->nu * sizeof *u0);
                st = mlmx_gobj_dev_at(c, x, &fv[t], err);
            }
            if (st)
                break;
            double v = a == b ? (fv[0] - 2.0 * f0 + fv[1]) / (h[a] * h[a])
                              : (fv[0] - fv[1] - fv[2] + fv[3]) / (4.0 * h[a] * h[b]);
            H[a + b * nf] = H[b + a * nf] = v;
        }
    }
    memcpy(g->u, u0, g->nu * sizeof *u0);
    if (!st)
        st = mlmx_gobj_dev_at(c, x0, &f0, err); /* leave the modes and factor at the optimum */
    free(u0);
    return st;
}

/* Columns idx of the Hessian (all np rows, np*nf) by central differences
 * of the analytic gradient. */
mlmx_status mlmx_gobj_fd_hessian_cols(mlmx_gobj *c, const double *x0, const int *idx, int nf, double *H,
                                   mlmx_error *err)
{
    int np = mlmx_gobj_npar(c);
    double x[NPAR_MAX], gp[NPAR_MAX], gm[NPAR_MAX], f;
    mlmx_glmm *g = c->g;
    double *u0 = malloc(g->nu ? g->nu * sizeof *u0 : sizeof *u0);
    if (!u0)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    memcpy(u0, g->u, g->nu * sizeof *u0);
    mlmx_status st = MLMX_OK;
    for (int a = 0; a < nf && !st; a++) {
        double h = 1e-4 * fmax(fabs(x0[idx[a]]), 0.1);
        memcpy(x, x0, (size_t)np * sizeof *x);
        x[idx[a]] += h;
        memcpy(g->u, u0, g->nu * sizeof *u0);
        st = mlmx_gobj_grad_x(c, x, &f, gp, err);
        if (st)
            break;
        x[idx[a]] = x0[idx[a]] - h;
        memcpy(g->u, u0, g->nu * sizeof *u0);
        st = mlmx_gobj_grad_x(c, x, &f, gm, err);
        for (int b = 0; b < np; b++)
            H[b + a * np] = (gp[b] - gm[b]) / (2.0 * h);
    }
    memcpy(g->u, u0, g->nu * sizeof *u0);
    free(u0);
    return st;
}

/* A difference step that moves the linear predictor by about 1e-4: for a
 * coefficient, 1e-4 over the column's largest |x| (a covariate in the
 * hundreds gets a small step), else 1e-4 relative. */
double mlmx_gobj_fd_step(const mlmx_gobj *c, const double *x0, int j)
{
    const int nt = c->fix_theta ? 0 : c->ntheta;
    const mlmx_model *md = c->g->md;
    if (j >= nt && j < nt + c->nb) {
        int col = j - nt;
        if (c->g->int_col >= 0 && col >= c->g->int_col)
            col++;
        const double *xc = md->X + (size_t)col * md->n;
        double mx = 0.0;
        for (size_t i = 0; i < md->n; i++)
            mx = fmax(mx, fabs(xc[i]));
        return 1e-4 / fmax(mx, 1e-3);
    }
    return 1e-4 * fmax(fabs(x0[j]), 0.1);
}

/* The same Hessian by central differences of the analytic gradient: 2 nf
 * gradients instead of ~2 nf^2 deviances, symmetrized. */
mlmx_status mlmx_gobj_fd_hessian_grad(mlmx_gobj *c, const double *x0, const int *idx, int nf, double *H,
                                   mlmx_error *err)
{
    int np = mlmx_gobj_npar(c);
    double x[NPAR_MAX], gp[NPAR_MAX], gm[NPAR_MAX], g0[NPAR_MAX], f;
    mlmx_glmm *g = c->g;
    /* forward differences: one gradient per column; their O(h) error, ~1e-4
     * relative in the Hessian, moves the standard errors by ~1e-5 */
    const int forward = 1;
    double *u0 = malloc(g->nu ? g->nu * sizeof *u0 : sizeof *u0);
    if (!u0)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    memcpy(u0, g->u, g->nu * sizeof *u0);
    mlmx_status st = MLMX_OK;
    if (forward) {
        /* the optimizer's last gradient is usually this very point's */
        if (c->have_last == np && memcmp(c->last_x, x0, (size_t)np * sizeof *x0) == 0) {
            memcpy(g0, c->last_g, (size_t)np * sizeof *g0);
        } else {
            memcpy(x, x0, (size_t)np * sizeof *x);
            st = mlmx_gobj_grad_x(c, x, &f, g0, err);
        }
    }
    for (int a = 0; a < nf && !st; a++) {
        double h = mlmx_gobj_fd_step(c, x0, idx[a]);
        memcpy(x, x0, (size_t)np * sizeof *x);
        x[idx[a]] += h;
        memcpy(g->u, u0, g->nu * sizeof *u0);
        st = mlmx_gobj_grad_x(c, x, &f, gp, err);
        if (st)
            break;
        if (forward) {
            for (int b = 0; b < nf; b++)
                H[b + a * nf] = (gp[idx[b]] - g0[idx[b]]) / h;
            continue;
        }
        x[idx[a]] = x0[idx[a]] - h;
        memcpy(g->u, u0, g->nu * sizeof *u0);
        st = mlmx_gobj_grad_x(c, x, &f, gm, err);
        for (int b = 0; b < nf; b++)
            H[b + a * nf] = (gp[idx[b]] - gm[idx[b]]) / (2.0 * h);
    }
    for (int a = 0; a < nf && !st; a++)
        for (int b = 0; b < a; b++) {
            double v = 0.5 * (H[a + b * nf] + H[b + a * nf]);
            H[a + b * nf] = H[b + a * nf] = v;
        }
    memcpy(g->u, u0, g->nu * sizeof *u0);
    if (!st)
        st = mlmx_gobj_dev_at(c, x0, &f, err);
    free(u0);
    return st;
}

