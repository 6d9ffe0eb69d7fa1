/* Replicate refits of a linear mixed model: BFGS on log(theta) as an
 * ask/tell loop from the problem's theta, seeded with the inverse Hessian
 * there, on a workspace whose values differ from the structure's only in
 * the response's row. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "replicate/replicate.h"

/* Inverse Hessian of the criterion over x = log(theta) at x0, from central
 * differences of the analytic gradient (for the model's own response);
 * NULL when it is not positive definite (BFGS then starts from a scaled
 * gradient step). */
static double *start_hessian(const mlmx_problem *P, mlmx_lmm_obj *c, const double *x0)
{
    const int nt = P->ntheta;
    double *H = malloc((size_t)nt * (size_t)nt * sizeof *H);
    double *x = malloc(3 * (size_t)nt * sizeof *x);
    if (!H || !x) {
        free(H);
        free(x);
        return NULL;
    }
    double *gp = x + nt, *gm = gp + nt;
    int ok = 1;
    for (int t = 0; t < nt && ok; t++) {
        const double h = 1e-4;
        memcpy(x, x0, (size_t)nt * sizeof *x);
        x[t] = x0[t] + h;
        ok = isfinite(mlmx_lmm_obj_log(nt, x, gp, c));
        x[t] = x0[t] - h;
        ok = ok && isfinite(mlmx_lmm_obj_log(nt, x, gm, c));
        for (int a = 0; a < nt; a++)
            H[a + t * nt] = (gp[a] - gm[a]) / (2.0 * h);
    }
    for (int b = 0; b < nt && ok; b++)
        for (int a = 0; a < b; a++)
            H[a + b * nt] = H[b + a * nt] = 0.5 * (H[a + b * nt] + H[b + a * nt]);
    ok = ok && LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', nt, H, nt) == 0 &&
         LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', nt, H, nt) == 0;
    free(x);
    if (!ok) {
        free(H);
        return NULL;
    }
    for (int b = 0; b < nt; b++)
        for (int a = 0; a < b; a++)
            H[a + b * nt] = H[b + a * nt];
    return H;
}

mlmx_status mlmx_rep_lmm_prepare(mlmx_problem *P, mlmx_error *err)
{
    const mlmx_model *md = P->md;
    mlmx_status st = mlmx_lmm_stats_build(md, &P->s, err);
    if (st)
        return st;
    const int nt = P->ntheta;
    P->x0 = malloc((size_t)nt * sizeof *P->x0);
    P->xlo = malloc((size_t)nt * sizeof *P->xlo);
    if (!P->x0 || !P->xlo)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    for (int t = 0; t < nt; t++) {
        int diag = md->theta_lower[t] == 0.0;
        P->x0[t] = diag ? log(P->theta[t] > 1e-4 ? P->theta[t] : 1e-4) : P->theta[t];
        P->xlo[t] = diag ? log(1e-8) : -HUGE_VAL;
    }
    return MLMX_OK;
}

void mlmx_rep_lmm_curvature(mlmx_problem *P, mlmx_workspace *W)
{
    P->hinv0 = start_hessian(P, &W->obj, P->x0);
}

void mlmx_rep_lmm_ws_free(mlmx_workspace *W)
{
    if (W->obj_ready)
        mlmx_lmm_obj_release(&W->obj);
    W->obj_ready = 0;
    mlmx_lmm_work_free(W->w);
    W->w = NULL;
    mlmx_qn_free(W->qn);
    W->qn = NULL;
    free(W->xe);
    W->xe = NULL;
    free(W->vx);
    W->vx = NULL;
    mlmx_rep_resid_ws_free(W);
}

mlmx_status mlmx_rep_lmm_ws_init(mlmx_workspace *W, mlmx_error *err)
{
    const mlmx_problem *P = W->P;
    mlmx_status st = mlmx_lmm_work_alloc(P->s, &W->w, err);
    if (st)
        return st;
    if (mlmx_lmm_obj_init(&W->obj, P->s, P->be, W->w, P->opt.method == MLMX_REML) != MLMX_OK)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    W->obj_ready = 1;
    const size_t nt = (size_t)(P->ntheta ? P->ntheta : 1), p = (size_t)(P->p ? P->p : 1);
    W->qn = mlmx_qn_alloc((int)nt);
    W->xe = malloc(2 * nt * sizeof *W->xe);
    W->vx = malloc(p * p * sizeof *W->vx);
    /* the inverse used for the gradient, allocated now rather than in the
     * first fit */
    if (!W->qn || !W->xe || !W->vx || !mlmx_lmm_inverse_buffer(P->s, W->w))
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    W->xb = W->xe + nt;
    return P->md->resid || P->md->nstructured ? mlmx_rep_resid_ws_init(W, err) : MLMX_OK;
}

/* beta, its SEs, sigma and the report parameters from the factor at theta. */
mlmx_status mlmx_rep_lmm_results(mlmx_workspace *W, const double *rnat, mlmx_error *err)
{
    const mlmx_problem *P = W->P;
    const mlmx_lmm_stats *s = P->s;
    mlmx_lmm_work *w = W->w;
    const int p = P->p, m_re = s->m_re;
    const size_t m = (size_t)s->m;
    const double nn = (double)P->md->n - (P->opt.method == MLMX_REML ? p : 0);
    const double sigma2 = w->r2 / nn;
    mlmx_lmm_modes(s, w, w->wv, w->u1);
    for (int j = 0; j < p; j++)
        W->beta[j] = w->wv[m_re + j];
    double *V = W->vx;
    for (int b = 0; b < p; b++)
        for (int a = 0; a < p; a++)
            V[a + b * p] = a >= b ? w->S[(size_t)(m_re + a) + (size_t)(m_re + b) * m] : 0.0;
    if (p > 0 && LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', p, V, p) != 0)
        return mlmx_err_set(err, MLMX_ERR_NUMERIC, "cannot invert R_X");
    for (int j = 0; j < p; j++)
        W->se[j] = sqrt(sigma2 * V[j + j * p]);
    mlmx_rep_params(P, W->theta, W->beta, sqrt(sigma2), NULL, rnat, W->params);
    return MLMX_OK;
}

mlmx_status mlmx_rep_lmm_fit(mlmx_workspace *W, mlmx_error *err)
{
    const mlmx_problem *P = W->P;
    if (P->md->resid || P->md->nstructured)
        return mlmx_rep_resid_fit(W, err);
    const mlmx_model *md = P->md;
    const int nt = P->ntheta;
    mlmx_lmm_obj *c = &W->obj;
    c->n_evals = 0;
    c->best = HUGE_VAL;
    mlmx_err_clear(&c->err);
    mlmx_optim_opts oo;
    mlmx_optim_opts_default(&oo);
    if (P->opt.max_evaluations > 0)
        oo.max_evals = P->opt.max_evaluations;
    oo.hinv0 = P->hinv0;
    mlmx_optim_result res;
    mlmx_qn_start(W->qn, nt, P->x0, P->xlo, NULL, &oo);
    double *g;
    while (mlmx_qn_ask(W->qn, W->xe, &g))
        mlmx_qn_tell(W->qn, mlmx_lmm_obj_log(nt, W->xe, g, c));
    mlmx_qn_result(W->qn, W->xb, &res);
    for (int t = 0; t < nt; t++)
        W->theta[t] = md->theta_lower[t] == 0.0 ? exp(W->xb[t]) : W->xb[t];
    int boundary = 0;
    for (int t = 0; t < nt; t++)
        if (md->theta_lower[t] == 0.0 && W->theta[t] < 1e-4)
            boundary = 1;
    mlmx_status st = MLMX_OK;
    if (!mlmx_qn_failed(W->qn) && (boundary || !res.converged)) {
        /* a variance at its bound: the derivative-free polish, as the
         * single fit does */
        int ev = res.n_evals;
        mlmx_optim_opts ob;
        mlmx_optim_opts_default(&ob);
        st = mlmx_optim_bobyqa(nt, W->theta, md->theta_lower, NULL, mlmx_lmm_obj_value, c, &ob,
                               &res, err);
        res.n_evals += ev;
    }
    if (st)
        return st;
    if (!isfinite(res.fmin))
        return mlmx_err_set(err, c->err.code ? c->err.code : MLMX_ERR_NUMERIC,
                            "the criterion could not be evaluated: %s",
                            c->err.msg[0] ? c->err.msg : "non-finite value");
    double crit;
    st = mlmx_lmm_eval(P->s, P->be, W->theta, c->reml, W->w, &crit, err);
    if (st)
        return st;
    W->criterion = crit;
    W->converged = res.converged;
    W->n_evals = res.n_evals;
    W->singular = 0;
    for (int t = 0; t < nt; t++)
        if (md->theta_lower[t] == 0.0 && W->theta[t] < 1e-4)
            W->singular = 1;
    return mlmx_rep_lmm_results(W, NULL, err);
}
