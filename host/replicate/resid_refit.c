/* Replicates of an LMM with a residual structure (host/resid): residuals
 * drawn from N(0, sigma^2 R) group by group (R_g = L_g L_g^T at the
 * problem's residual parameters, e_g = L_g z_g), and refits by BOBYQA over
 * (theta, residual parameters) from the problem's values (host/lmm/rfit.c's
 * criterion). Models with structured random-effect covariances refit the
 * same way over psi (from the fit's psi). The batch engines do not cover
 * these models; every replicate runs on workspaces. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmm/rlmm.h"
#include "random.h"
#include "replicate/replicate.h"

mlmx_status mlmx_rep_resid_prepare(mlmx_problem *P, const double *rnat, mlmx_error *err)
{
    const mlmx_model *md = P->md;
    const mlmx_resid *r = md->resid;
    if (P->glmm)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "a residual correlation or variance structure is for linear mixed "
                            "models; not for a %s GLMM",
                            mlmx_family_name(P->family));
    if (!rnat)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "the model has a residual structure (%s%s%s): its parameters are "
                            "needed",
                            r->corr_text ? r->corr_text : "", r->corr_text && r->var_text ? ", " : "",
                            r->var_text ? r->var_text : "");
    const size_t np = (size_t)(r->npar ? r->npar : 1);
    P->nres = r->npar;
    P->rnat = malloc(np * sizeof *P->rnat);
    P->rx = malloc(np * sizeof *P->rx);
    if (!P->rnat || !P->rx)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    memcpy(P->rnat, rnat, (size_t)r->npar * sizeof *rnat);
    mlmx_status st = mlmx_resid_from_natural(r, rnat, P->rx, err);
    if (st || r->corr == MLMX_CORR_NONE)
        return st;
    /* each group's Cholesky factor of R_g, once */
    P->rchol_off = malloc(((size_t)r->ngroups + 1) * sizeof *P->rchol_off);
    if (!P->rchol_off)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    size_t tot = 0;
    int maxlag = 0;
    for (int g = 0; g < r->ngroups; g++) {
        const size_t ng = r->gstart[g + 1] - r->gstart[g];
        P->rchol_off[g] = tot;
        tot += ng * ng;
        double span = r->gtime[r->gstart[g + 1] - 1] - r->gtime[r->gstart[g]];
        if (span > maxlag)
            maxlag = (int)span;
    }
    P->rchol_off[r->ngroups] = tot;
    P->rchol = malloc((tot ? tot : 1) * sizeof *P->rchol);
    double *acf = malloc(((size_t)maxlag + 1) * sizeof *acf);
    if (!P->rchol || !acf) {
        free(acf);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    if (r->corr == MLMX_CORR_ARMA &&
        !mlmx_resid_arma_acf(r->arma_p, r->arma_q, rnat, rnat + r->arma_p, maxlag, acf))
        st = mlmx_err_set(err, MLMX_ERR_ARG, "ARMA parameters without autocorrelations");
    for (int g = 0; !st && g < r->ngroups; g++) {
        const int ng = (int)(r->gstart[g + 1] - r->gstart[g]);
        double *L = P->rchol + P->rchol_off[g];
        mlmx_resid_group_matrix(r, rnat, acf, g, L);
        if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', ng, L, ng) != 0)
            st = mlmx_err_set(err, MLMX_ERR_ARG,
                              "the residual correlation at these parameters is not positive "
                              "definite");
    }
    free(acf);
    return st;
}

void mlmx_rep_resid_draw(const mlmx_problem *P, mlmx_rng *rng, double *eps)
{
    const mlmx_model *md = P->md;
    const mlmx_resid *r = md->resid;
    const size_t n = md->n;
    for (size_t i = 0; i < n; i++)
        eps[i] = mlmx_rng_normal(rng);
    if (r->corr == MLMX_CORR_NONE) {
        for (size_t i = 0; i < n; i++)
            eps[i] *= mlmx_resid_sd(r, P->rnat, i);
        return;
    }
    /* e_g = L_g z_g, in place from the last row up (row a uses z_0..z_a) */
    for (int g = 0; g < r->ngroups; g++) {
        const size_t *obs = r->gobs + r->gstart[g];
        const int ng = (int)(r->gstart[g + 1] - r->gstart[g]);
        const double *L = P->rchol + P->rchol_off[g];
        for (int a = ng - 1; a >= 0; a--) {
            double s = 0.0;
            for (int c = 0; c <= a; c++)
                s += L[a + c * ng] * eps[obs[c]];
            eps[obs[a]] = s;
        }
    }
}

/* rwork's layout: x, lo, hi (np each), rnat (nres), theta (ntheta), eps (n) */
static size_t np_of(const mlmx_problem *P) { return (size_t)(mlmx_model_ncov(P->md) + P->nres); }

double *mlmx_rep_resid_eps(const mlmx_workspace *W)
{
    const mlmx_problem *P = W->P;
    return W->rwork + 3 * np_of(P) + (size_t)P->nres + (size_t)P->ntheta;
}

void mlmx_rep_resid_ws_free(mlmx_workspace *W)
{
    mlmx_rlmm_free(W->rl);
    W->rl = NULL;
    free(W->rwork);
    W->rwork = NULL;
}

mlmx_status mlmx_rep_resid_ws_init(mlmx_workspace *W, mlmx_error *err)
{
    const mlmx_problem *P = W->P;
    const size_t np = np_of(P);
    if (P->md->resid) {
        mlmx_status st = mlmx_rlmm_prepare(P->s, P->md->resid, &W->rl, err);
        if (st)
            return st;
    }
    W->rwork = malloc((3 * np + (size_t)P->nres + (size_t)P->ntheta + P->md->n) *
                      sizeof *W->rwork);
    if (!W->rwork)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    return MLMX_OK;
}

mlmx_status mlmx_rep_resid_set_response(mlmx_workspace *W, mlmx_error *err)
{
    return W->rl ? mlmx_rlmm_set_response(W->rl, W->y, err) : MLMX_OK;
}

/* The refit: x = [theta or psi; residual parameters] from the problem's
 * values. */
mlmx_status mlmx_rep_resid_fit(mlmx_workspace *W, mlmx_error *err)
{
    const mlmx_problem *P = W->P;
    const mlmx_model *md = P->md;
    const int nt = mlmx_model_ncov(md), np = nt + P->nres;
    double *x = W->rwork, *lo = x + np, *hi = lo + np, *rnat = hi + np;
    double *th = md->nstructured ? rnat + P->nres : NULL;
    memcpy(x, md->nstructured ? P->psi0 : P->theta, (size_t)nt * sizeof *x);
    if (P->nres)
        memcpy(x + nt, P->rx, (size_t)P->nres * sizeof *x);
    mlmx_robj_bounds(md, lo, hi);
    mlmx_robj c = {P->s, P->be, W->w, W->rl, P->opt.method == MLMX_REML, nt, th, 0, HUGE_VAL,
                   {0},  NULL,  NULL};
    mlmx_optim_result res;
    mlmx_status st = mlmx_robj_minimize(&c, np, x, lo, hi, P->opt.max_evaluations, 0.0, 0.0,
                                        &res, err);
    if (st)
        return st;
    if (!isfinite(res.fmin))
        return mlmx_err_set(err, c.err.code ? c.err.code : MLMX_ERR_NUMERIC,
                            "the criterion could not be evaluated: %s",
                            c.err.msg[0] ? c.err.msg : "non-finite value");
    const double crit = mlmx_robj_value(np, x, &c); /* the factor back at the optimum */
    if (!isfinite(crit))
        return mlmx_err_set(err, MLMX_ERR_NUMERIC, "the criterion at the optimum: %s",
                            c.err.msg);
    memcpy(W->theta, th ? th : x, (size_t)P->ntheta * sizeof *x);
    if (md->resid)
        mlmx_resid_natural(md->resid, x + nt, rnat);
    W->criterion = crit;
    W->converged = res.converged;
    W->n_evals = res.n_evals + 1;
    W->singular = 0;
    for (int t = 0; t < P->ntheta; t++)
        if (md->theta_lower[t] == 0.0 && W->theta[t] < 1e-4)
            W->singular = 1;
    return mlmx_rep_lmm_results(W, md->resid ? rnat : NULL, err);
}
