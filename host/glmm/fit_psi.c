#define _POSIX_C_SOURCE 200809L
/* The GLMM fit of a model with structured random-effect covariances
 * (binomial and Poisson, Laplace): glmer's two stages over psi instead of
 * theta (theta = T's entries computed from psi before each evaluation),
 * BOBYQA inside psi's box, and vcov(beta) from the Hessian of the deviance
 * over (psi, beta) by differences, as glmmTMB's sdreport takes it over its
 * own parameters. */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glmm/fit_psi.h"
#include "glmm/glmm.h"
#include "lmm/fit.h"
#include "optim/optim.h"

typedef struct pctx {
    mlmx_gobj *c;
    const mlmx_model *md;
    double theta[NPAR_MAX];
} pctx;

/* Stage 1: psi with beta inside PIRLS. */
static double obj_psi1(int n, const double *psi, void *ctx)
{
    (void)n;
    pctx *p = ctx;
    if (mlmx_model_psi_to_theta(p->md, psi, p->theta) != 0)
        return mlmx_gobj_note(p->c, MLMX_OK, NULL, HUGE_VAL);
    return mlmx_gobj_obj_stage1(p->md->ntheta, p->theta, p->c);
}

/* Stage 2: the Laplace deviance at x = [psi; beta]. */
static double obj_psi2(int n, const double *x, void *ctx)
{
    (void)n;
    pctx *p = ctx;
    if (mlmx_model_psi_to_theta(p->md, x, p->theta) != 0)
        return mlmx_gobj_note(p->c, MLMX_OK, NULL, HUGE_VAL);
    mlmx_error e;
    mlmx_err_clear(&e);
    double v = HUGE_VAL;
    mlmx_status st = mlmx_glmm_laplace(p->c->g, p->theta, x + p->md->npsi, &v, &e);
    return mlmx_gobj_note(p->c, st, &e, v);
}

/* H (nf x nf) of the deviance over the entries idx of x, central
 * differences with steps 1e-4 max(|x|, 1). */
static mlmx_status hessian(pctx *p, const double *x0, int np, const int *idx, int nf, double *H)
{
    double x[NPAR_MAX], h[NPAR_MAX];
    memcpy(x, x0, (size_t)np * sizeof *x);
    for (int a = 0; a < nf; a++)
        h[a] = 1e-4 * fmax(fabs(x0[idx[a]]), 1.0);
    const double f0 = obj_psi2(np, x, p);
    for (int a = 0; a < nf; a++)
        for (int b = 0; b <= a; b++) {
            const int ia = idx[a], ib = idx[b];
            double v;
            if (a == b) {
                x[ia] = x0[ia] + h[a];
                double fp = obj_psi2(np, x, p);
                x[ia] = x0[ia] - h[a];
                double fm = obj_psi2(np, x, p);
                v = (fp - 2.0 * f0 + fm) / (h[a] * h[a]);
            } else {
                double s[4];
                for (int k = 0; k < 4; k++) {
                    x[ia] = x0[ia] + (k & 1 ? -h[a] : h[a]);
                    x[ib] = x0[ib] + (k & 2 ? -h[b] : h[b]);
                    s[k] = obj_psi2(np, x, p);
                }
                v = (s[0] - s[1] - s[2] + s[3]) / (4.0 * h[a] * h[b]);
            }
            x[ia] = x0[ia];
            x[ib] = x0[ib];
            if (!isfinite(v))
                return MLMX_ERR_NUMERIC;
            H[a + b * nf] = H[b + a * nf] = v;
        }
    return MLMX_OK;
}

/* vcov(beta) = the beta block of (H/2)^-1, psi held fixed where the fit is
 * singular (a variance or correlation on its bound); NaN when H is not
 * positive definite. */
static mlmx_status beta_vcov(mlmx_fit *f, pctx *p, const double *x, int np, mlmx_error *err)
{
    const mlmx_model *md = p->md;
    const int ns = md->npsi, pp = md->p;
    int idx[NPAR_MAX], nf = 0;
    if (!f->singular)
        for (int j = 0; j < ns; j++)
            idx[nf++] = j;
    for (int j = 0; j < pp; j++)
        idx[nf++] = ns + j;
    double *H = calloc((size_t)nf * (size_t)nf, sizeof *H);
    if (!H)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    int ok = hessian(p, x, np, idx, nf, H) == MLMX_OK;
    for (int a = 0; ok && a < nf * nf; a++)
        H[a] *= 0.5;
    ok = ok && LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', nf, H, nf) == 0 &&
         LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', nf, H, nf) == 0;
    const int o0 = nf - pp;
    for (int b = 0; b < pp; b++)
        for (int a = 0; a < pp; a++) {
            int ia = o0 + a, ib = o0 + b;
            f->vcov[a + b * pp] = !ok ? NAN : ia >= ib ? H[ia + ib * nf] : H[ib + ia * nf];
        }
    for (int j = 0; j < pp; j++)
        f->se[j] = sqrt(f->vcov[j + j * pp]);
    free(H);
    return MLMX_OK;
}

static mlmx_status check_supported(const mlmx_model *md, const mlmx_fit_options *o,
                                   mlmx_error *err)
{
    const char *what = NULL;
    if (o->family != MLMX_FAMILY_BINOMIAL && o->family != MLMX_FAMILY_POISSON)
        what = "the ordinal and negative binomial families";
    else if (o->nagq != 1)
        what = "adaptive quadrature and --nagq 0 (only the Laplace approximation, --nagq 1)";
    if (!what)
        return MLMX_OK;
    return mlmx_model_require_unstructured(md, what, err);
}

mlmx_status mlmx_glmm_fit_psi(mlmx_fit *f, mlmx_gobj *c, const mlmx_fit_options *o,
                              mlmx_error *err)
{
    const mlmx_model *md = c->g->md;
    const int ns = md->npsi, p = md->p, np = ns + p;
    mlmx_status st = check_supported(md, o, err);
    if (st)
        return st;
    if (np > NPAR_MAX || md->ntheta > NPAR_MAX)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "%d parameters; at most %d are supported",
                            np, NPAR_MAX);
    pctx *px = calloc(1, sizeof *px);
    if (!px)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    px->c = c;
    px->md = md;
    double x[NPAR_MAX], lb[NPAR_MAX], ub[NPAR_MAX], dev = HUGE_VAL;
    memcpy(x, md->psi_start, (size_t)ns * sizeof *x);
    memcpy(lb, md->psi_lower, (size_t)ns * sizeof *lb);
    memcpy(ub, md->psi_upper, (size_t)ns * sizeof *ub);
    for (int j = ns; j < np; j++) {
        lb[j] = -HUGE_VAL;
        ub[j] = HUGE_VAL;
    }
    mlmx_optim_opts oo;
    mlmx_gobj_optim_opts_from(o, &oo);
    mlmx_optim_result res;
    /* the model without random effects: the likelihood-ratio reference */
    st = mlmx_glmm_pirls_beta(c->g, px->theta, &dev, err);
    if (!st) {
        f->loglik_glm = -0.5 * dev;
        memset(c->g->u, 0, c->g->nu * sizeof *c->g->u);
        st = mlmx_optim_bobyqa(ns, x, lb, ub, obj_psi1, px, &oo, &res, err);
    }
    if (!st && isfinite(res.fmin)) {
        f->n_evals_stage1 = res.n_evals;
        mlmx_model_psi_to_theta(md, x, px->theta);
        st = mlmx_glmm_pirls_beta(c->g, px->theta, &dev, err);
        for (int j = 0; j < p; j++)
            x[ns + j] = c->g->beta[j];
        c->best = HUGE_VAL;
        if (!st)
            st = mlmx_optim_bobyqa(np, x, lb, ub, obj_psi2, px, &oo, &res, err);
    }
    if (!st && !isfinite(res.fmin))
        st = mlmx_err_set(err, c->err.code ? c->err.code : MLMX_ERR_NUMERIC,
                          "the deviance could not be evaluated: %s",
                          c->err.msg[0] ? c->err.msg : "non-finite value");
    if (!st) {
        snprintf(f->optimizer, sizeof f->optimizer, "BOBYQA");
        f->n_evals = res.n_evals + f->n_evals_stage1;
        f->converged = res.converged;
        memcpy(f->message, res.message, sizeof f->message);
        memcpy(f->psi, x, (size_t)ns * sizeof *x);
        mlmx_model_psi_to_theta(md, x, f->theta);
        memcpy(f->beta, x + ns, (size_t)p * sizeof *x);
        dev = obj_psi2(np, x, px);
        mlmx_gobj_set_criteria(f, dev, np);
        f->grad_max = NAN;
        st = beta_vcov(f, px, x, np, err);
    }
    /* the modes and their factor at the optimum, for the results */
    if (!st)
        st = mlmx_glmm_laplace(c->g, f->theta, f->beta, &dev, err);
    free(px);
    return st;
}
