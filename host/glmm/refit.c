/* Replicate refits of a GLMM: the second stage of the full fit only (the
 * Laplace or quadrature deviance over x = [theta; beta; extra]) from the
 * problem's parameters, BFGS seeded with the inverse Hessian there. The
 * binomial and Poisson fits with an analytic gradient (and every
 * quadrature fit the gradient covers) step through the ask/tell loop;
 * the others go through the same closed loops as the full fit. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "glmm/objective.h"
#include "replicate/replicate.h"

static int use_gradient(const mlmx_glmm *g, int nagq, mlmx_optimizer opt, int np)
{
    if (opt == MLMX_OPTIM_BOBYQA || np > NPAR_MAX)
        return 0;
    if (nagq > 1)
        return mlmx_gobj_quad_grad_ok(g);
    return nagq == 1 && mlmx_glmm_has_grad(g);
}

mlmx_status mlmx_rep_glmm_prepare(mlmx_problem *P, mlmx_error *err)
{
    mlmx_glmm *g = NULL;
    mlmx_status st = mlmx_glmm_build_stats(P->md, &P->gsu, &P->gsx, err);
    if (!st)
        st = mlmx_glmm_create_shared(P->md, P->family, P->opt.link, P->be, P->gsu, P->gsx, &g,
                                     err);
    if (st)
        return st;
    P->link = g->link;
    if (P->family == MLMX_FAMILY_ORDINAL)
        P->nextra = g->ncat - 1;
    const int nb = P->p - (g->int_col >= 0 ? 1 : 0);
    P->np = P->ntheta + nb + (P->family == MLMX_FAMILY_ORDINAL || P->family == MLMX_FAMILY_NEGBIN
                                  ? P->nextra
                                  : 0);
    if (P->opt.nagq == 0 && (P->family == MLMX_FAMILY_ORDINAL || P->family == MLMX_FAMILY_NEGBIN))
        st = mlmx_err_set(err, MLMX_ERR_ARG, "nagq 0 is for the binomial and Poisson families");
    if (!st && P->np > NPAR_MAX)
        st = mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "%d parameters; at most %d are supported",
                          P->np, NPAR_MAX);
    P->use_grad = use_gradient(g, P->opt.nagq < 1 ? 1 : P->opt.nagq, P->opt.optimizer, P->np);
    mlmx_glmm_free(g);
    return st;
}

/* The optimizer's x from the parameters: theta, the free beta, and the
 * thresholds as c_1, log(c_k - c_{k-1}) or the size as log(size). */
static void pack_start(const mlmx_problem *P, int int_col, double *x)
{
    int i = 0;
    for (int t = 0; t < P->ntheta; t++)
        x[i++] = P->theta[t];
    for (int j = 0; j < P->p; j++)
        if (j != int_col)
            x[i++] = P->beta[j];
    if (P->family == MLMX_FAMILY_ORDINAL)
        for (int k = 0; k < P->nextra; k++)
            x[i++] = k == 0 ? P->extra[0] : log(P->extra[k] - P->extra[k - 1]);
    else if (P->family == MLMX_FAMILY_NEGBIN)
        x[i++] = log(P->extra[0]);
}

void mlmx_rep_glmm_ws_free(mlmx_workspace *W)
{
    mlmx_gobj *c = W->gctx;
    if (c)
        free(c->u0);
    free(c);
    W->gctx = NULL;
    mlmx_glmm_free(W->g);
    W->g = NULL;
    free(W->gx);
    W->gx = NULL;
}

mlmx_status mlmx_rep_glmm_ws_init(mlmx_workspace *W, mlmx_error *err)
{
    const mlmx_problem *P = W->P;
    mlmx_status st = mlmx_glmm_create_shared(P->md, P->family, P->link, P->be, P->gsu, P->gsx,
                                             &W->g, err);
    if (st)
        return st;
    mlmx_glmm *g = W->g;
    mlmx_gobj *c = calloc(1, sizeof *c);
    W->gctx = c;
    const size_t np = (size_t)P->np;
    W->gx = malloc((3 * np + np * np + 1) * sizeof *W->gx);
    if (!c || !W->gx || !(c->u0 = malloc((g->nu ? g->nu : 1) * sizeof *c->u0)))
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    W->gxe = W->gx + np;
    W->gh = W->gxe + np;
    c->g = g;
    c->ntheta = P->ntheta;
    c->p = P->p;
    c->nagq = P->opt.nagq < 1 ? 1 : P->opt.nagq;
    c->nb = P->p - (g->int_col >= 0 ? 1 : 0);
    c->nextra = P->np - P->ntheta - c->nb;
    if (P->use_grad && !W->qn && !(W->qn = mlmx_qn_alloc(P->np)))
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    return MLMX_OK;
}

const double *mlmx_rep_glmm_trials(const mlmx_workspace *W)
{
    return W->P->family == MLMX_FAMILY_BINOMIAL ? W->g->ntr : NULL;
}

mlmx_status mlmx_rep_glmm_set_response(mlmx_workspace *W, const double *y, mlmx_error *err)
{
    return mlmx_glmm_set_response(W->g, y, err);
}

/* Inverse of half the Hessian (the deviance is -2 log L) at x over the
 * free parameters idx; 0 on success. H: nf^2. */
static int inverse_hessian(const mlmx_problem *P, mlmx_gobj *c, const double *x, const int *idx,
                           int nf, double *H, mlmx_error *err)
{
    mlmx_status st = P->use_grad ? mlmx_gobj_fd_hessian_grad(c, x, idx, nf, H, err)
                                 : mlmx_gobj_fd_hessian(c, x, idx, nf, H, err);
    if (st)
        return -1;
    if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', nf, H, nf) != 0 ||
        LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', nf, H, nf) != 0)
        return -1;
    for (int b = 0; b < nf; b++)
        for (int a = 0; a < b; a++)
            H[a + b * nf] = H[b + a * nf];
    return 0;
}

/* The curvature at the start, from a workspace holding a response: the
 * inverse Hessian of the deviance over x seeds every refit's BFGS. */
mlmx_status mlmx_rep_glmm_curvature(mlmx_problem *P, mlmx_workspace *W, mlmx_error *err)
{
    const int np = P->np;
    mlmx_gobj *c = W->gctx;
    P->gx0 = malloc((size_t)np * sizeof *P->gx0);
    P->glb = malloc((size_t)np * sizeof *P->glb);
    if (!P->gx0 || !P->glb)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    pack_start(P, W->g->int_col, P->gx0);
    for (int j = 0; j < np; j++)
        P->glb[j] = j < P->ntheta ? P->md->theta_lower[j] : -HUGE_VAL;
    int *idx = malloc((size_t)np * sizeof *idx);
    double *H = malloc((size_t)np * (size_t)np * sizeof *H);
    if (!idx || !H) {
        free(idx);
        free(H);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    for (int j = 0; j < np; j++)
        idx[j] = j;
    memset(W->g->u, 0, W->g->nu * sizeof *W->g->u);
    mlmx_error e2;
    mlmx_err_clear(&e2);
    if (inverse_hessian(P, c, P->gx0, idx, np, H, &e2) == 0) {
        P->ghinv0 = H;
    } else {
        free(H);
    }
    free(idx);
    return MLMX_OK;
}

static mlmx_status optimize(mlmx_workspace *W, mlmx_optim_result *res, mlmx_error *err)
{
    const mlmx_problem *P = W->P;
    mlmx_gobj *c = W->gctx;
    const int np = P->np;
    double *x = W->gx;
    mlmx_optim_opts oo;
    mlmx_optim_opts_default(&oo);
    if (P->opt.max_evaluations > 0)
        oo.max_evals = P->opt.max_evaluations;
    mlmx_status st = MLMX_OK;
    if (P->use_grad) {
        oo.hinv0 = P->ghinv0;
        mlmx_qn_start(W->qn, np, P->gx0, P->glb, NULL, &oo);
        double *g;
        while (mlmx_qn_ask(W->qn, W->gxe, &g))
            mlmx_qn_tell(W->qn, mlmx_gobj_obj_stage2_grad(np, W->gxe, g, c));
        mlmx_qn_result(W->qn, x, res);
        if (!mlmx_qn_failed(W->qn) && !res->converged) {
            int ev = res->n_evals;
            st = mlmx_optim_bobyqa(np, x, P->glb, NULL, mlmx_gobj_obj_stage2, c, &oo, res, err);
            res->n_evals += ev;
        }
        return st;
    }
    memcpy(x, P->gx0, (size_t)np * sizeof *x);
    if (P->opt.optimizer != MLMX_OPTIM_BOBYQA && np <= 64) {
        /* as the full fit: BFGS on differences, BOBYQA from there */
        oo.hinv0 = P->ghinv0;
        st = mlmx_optim_qnewton(np, x, P->glb, NULL, mlmx_gobj_obj_fd_grad, c, &oo, res, err);
        int ev = res->n_evals;
        if (!st) {
            mlmx_optim_opts ob;
            mlmx_optim_opts_default(&ob);
            ob.init_step = 1e-3;
            st = mlmx_optim_bobyqa(np, x, P->glb, NULL, mlmx_gobj_obj_stage2, c, &ob, res, err);
            res->n_evals += ev;
        }
        return st;
    }
    return mlmx_optim_bobyqa(np, x, P->glb, NULL, mlmx_gobj_obj_stage2, c, &oo, res, err);
}

mlmx_status mlmx_rep_glmm_fit(mlmx_workspace *W, int want_se, mlmx_error *err)
{
    const mlmx_problem *P = W->P;
    const mlmx_model *md = P->md;
    mlmx_gobj *c = W->gctx;
    mlmx_glmm *g = W->g;
    const int np = P->np, nt = P->ntheta;
    c->n_evals = 0;
    c->best = HUGE_VAL;
    c->have_last = 0;
    mlmx_err_clear(&c->err);
    memset(g->u, 0, g->nu * sizeof *g->u);
    mlmx_optim_result res;
    mlmx_status st = optimize(W, &res, err);
    if (st)
        return st;
    if (!isfinite(res.fmin))
        return mlmx_err_set(err, c->err.code ? c->err.code : MLMX_ERR_NUMERIC,
                            "the deviance could not be evaluated: %s",
                            c->err.msg[0] ? c->err.msg : "non-finite value");
    double dev;
    st = mlmx_gobj_dev_at(c, W->gx, &dev, err);
    if (st)
        return st;
    W->criterion = dev;
    W->converged = res.converged;
    W->n_evals = res.n_evals;
    memcpy(W->theta, W->gx, (size_t)nt * sizeof *W->theta);
    const double *th, *be;
    mlmx_gobj_unpack(c, W->gx, &th, &be);
    memcpy(W->beta, be, (size_t)P->p * sizeof *W->beta);
    W->singular = 0;
    for (int t = 0; t < nt; t++)
        if (md->theta_lower[t] == 0.0 && W->theta[t] < 1e-4)
            W->singular = 1;
    double extra[NPAR_MAX];
    if (P->family == MLMX_FAMILY_ORDINAL)
        memcpy(extra, g->thr, (size_t)P->nextra * sizeof *extra);
    else if (P->family == MLMX_FAMILY_NEGBIN)
        extra[0] = g->nb_size;
    mlmx_rep_params(P, W->theta, W->beta, 1.0, extra, NULL, W->params);
    for (int j = 0; j < P->p; j++)
        W->se[j] = NAN;
    if (!want_se)
        return MLMX_OK;
    /* SEs of beta from the Hessian over the free parameters (theta held
     * when a variance is at its bound), as the full fit */
    int idx[NPAR_MAX], nf = 0;
    if (!W->singular)
        for (int t = 0; t < nt; t++)
            idx[nf++] = t;
    for (int j = nt; j < np; j++)
        idx[nf++] = j;
    mlmx_error e2;
    mlmx_err_clear(&e2);
    if (inverse_hessian(P, c, W->gx, idx, nf, W->gh, &e2) == 0) {
        const int o0 = nf - (np - nt);
        for (int j = 0, k = 0; j < P->p; j++) {
            if (j == g->int_col)
                continue;
            /* inverse of H/2 = 2 H^-1 */
            W->se[j] = sqrt(2.0 * W->gh[(o0 + k) + (size_t)(o0 + k) * nf]);
            k++;
        }
    }
    return mlmx_gobj_dev_at(c, W->gx, &dev, err);
}
