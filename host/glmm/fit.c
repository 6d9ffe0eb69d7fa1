#define _POSIX_C_SOURCE 200809L
/* GLMM fitting as glmer does it: a theta-only start with beta inside PIRLS
 * (nAGQ = 0), then BOBYQA over (theta, beta) on the Laplace or adaptive
 * quadrature deviance; standard errors from the Hessian of that deviance. */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "glmm/fit_psi.h"
#include "glmm/glmm.h"
#include "glmm/glmm_fit.h"
#include "glmm/objective.h"
#include "lmm/fit.h"
#include "optim/optim.h"
#include "util/strbuf.h"


static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The largest |gradient| at the optimum x, from the last gradient the
 * BFGS path evaluated when it was at x (NaN otherwise: derivative-free
 * paths, or a BOBYQA polish that moved the point). */
static void set_grad_max(mlmx_fit *f, const mlmx_gobj *c, const double *x, int np)
{
    f->grad_max = NAN;
    if (c->have_last != np || memcmp(c->last_x, x, (size_t)np * sizeof *x) != 0)
        return;
    f->grad_max = 0.0;
    for (int j = 0; j < np; j++)
        f->grad_max = fmax(f->grad_max, fabs(c->last_g[j]));
}

/* Conditional modes b = Lambda u, their conditional SDs from the factor at
 * the modes (sigma = 1), fitted means and residuals. */
static mlmx_status finish(mlmx_fit *f, mlmx_gobj *c, const double *theta, const double *beta,
                          mlmx_error *err)
{
    mlmx_glmm *g = c->g;
    const mlmx_model *md = g->md;
    const mlmx_lmm_stats *s = g->su;
    mlmx_lmm_work *w = g->wu;
    const int K = md->K;
    size_t off = 0;
    for (int k = 0; k < K; k++) {
        const int q = md->re[k].q;
        const double *T = w->tptr[k];
        off = k == 0 ? 0 : g->nu1 + (size_t)s->term_off[k];
        for (int l = 0; l < md->re[k].nlevels; l++) {
            const double *u = g->u + off + (size_t)l * (size_t)q;
            for (int a = 0; a < q; a++) {
                double sum = 0;
                for (int cc = 0; cc <= a; cc++)
                    sum += T[a + cc * q] * u[cc];
                f->ranef[k][l * q + a] = sum;
            }
        }
    }
    double *eta = malloc((md->n ? md->n : 1) * sizeof *eta);
    if (!eta)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    mlmx_glmm_eta(g, theta, beta, g->u, eta);
    mlmx_glmm_residuals(g, eta, f->fitted, f->resid, f->pearson);
    free(eta);
    if (!f->have_condsd)
        return MLMX_OK;
    return mlmx_lmm_condsd(s, w, 1.0, f->condsd, err);
}

static mlmx_status check_quadrature(const mlmx_glmm *g, int nagq, mlmx_error *err)
{
    const mlmx_model *md = g->md;
    if (nagq < 0 || nagq > 100)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "--nagq %d is out of range: 0 (PIRLS for beta), 1 (Laplace) or 2..100 "
                            "quadrature points",
                            nagq);
    if (nagq <= 1 || (md->K == 1 && md->re[0].q <= MLMX_AGQ_QMAX) ||
        mlmx_glmm_nested_scalar(g))
        return MLMX_OK;
    if (md->K == 1)
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "adaptive quadrature (--nagq %d) takes at most %d correlated random "
                            "effects in one term (the product rule has K^q nodes); the term for "
                            "'%s' has %d (use --nagq 1, the Laplace approximation)",
                            nagq, MLMX_AGQ_QMAX, md->re[0].group, md->re[0].q);
    for (int k = 0; k < md->K; k++)
        if (md->re[k].q != 1)
            return mlmx_err_set(err, MLMX_ERR_MODEL,
                                "nested adaptive quadrature (--nagq %d) needs scalar random "
                                "effects; the term for '%s' has %d columns (use --nagq 1, the "
                                "Laplace approximation)",
                                nagq, md->re[k].group, md->re[k].q);
    return mlmx_err_set(err, MLMX_ERR_MODEL,
                        "adaptive quadrature (--nagq %d) needs nested grouping factors (each "
                        "level of '%s' inside one level of '%s'); crossed factors can only be "
                        "fitted by the Laplace approximation (--nagq 1)",
                        nagq, md->re[0].group, md->re[1].group);
}

/* Ordinal and negative binomial models: no nAGQ = 0 stage (glmer has
 * neither family); the model without random effects is fitted first (theta
 * held at 0) and starts the full fit; BOBYQA over [theta; beta; extra]. */
static mlmx_status fit_other(mlmx_fit *f, mlmx_gobj *c, const mlmx_fit_options *o, mlmx_error *err)
{
    mlmx_glmm *g = c->g;
    const mlmx_model *md = g->md;
    const int nt = md->ntheta, p = md->p;
    mlmx_status st = MLMX_OK;
    if (o->nagq == 0)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "--nagq 0 (beta by PIRLS) is for the binomial and Poisson families; "
                            "use --nagq 1 (Laplace) or more points");
    const int ord = g->family == MLMX_FAMILY_ORDINAL;
    c->nb = p - (g->int_col >= 0 ? 1 : 0);
    c->nextra = ord ? g->ncat - 1 : 1;
    const int nb = c->nb, ne = c->nextra, np = nt + nb + ne;
    if (np > NPAR_MAX)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "%d parameters; at most %d are supported",
                            np, NPAR_MAX);
    double x[NPAR_MAX], lb[NPAR_MAX];
    for (int t = 0; t < nt; t++) {
        x[t] = o->theta_start ? o->theta_start[t] : (md->theta_lower[t] == 0.0 ? 1.0 : 0.0);
        if (x[t] < md->theta_lower[t])
            x[t] = md->theta_lower[t];
        lb[t] = md->theta_lower[t];
    }
    for (int j = nt; j < np; j++) {
        x[j] = 0.0;
        lb[j] = -HUGE_VAL;
    }
    double *xe = x + nt + nb;
    if (ord) {
        /* thresholds at the link of the cumulative proportions */
        double *cnt = calloc((size_t)g->ncat, sizeof *cnt);
        if (!cnt)
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < md->n; i++)
            cnt[(int)g->yv[i]] += 1.0;
        double cum = 0.0, prev = 0.0;
        for (int k = 0; k < g->ncat - 1; k++) {
            cum += cnt[k];
            double ck = mlmx_glmm_linkfun(g, cum / (double)md->n);
            xe[k] = k == 0 ? ck : log(fmax(ck - prev, 1e-3));
            prev = k == 0 ? ck : prev + exp(xe[k]);
        }
        free(cnt);
    } else {
        xe[0] = 0.0; /* size 1 */
    }
    mlmx_optim_opts oo;
    mlmx_gobj_optim_opts_from(o, &oo);
    mlmx_optim_result res;
    double dev = HUGE_VAL;
    /* without random effects: the likelihood-ratio reference and the start */
    c->fix_theta = 1;
    for (int t = 0; t < nt; t++)
        c->theta0[t] = 0.0;
    if (mlmx_gobj_quad_grad_ok(g) && nb + ne <= 64 && o->optimizer != MLMX_OPTIM_BOBYQA)
        st = mlmx_optim_qnewton(nb + ne, x + nt, lb + nt, NULL, mlmx_gobj_obj_stage2_grad, c, &oo, &res, err);
    else
        st = mlmx_optim_bobyqa(nb + ne, x + nt, lb + nt, NULL, mlmx_gobj_obj_stage2, c, &oo, &res, err);
    if (!st && !isfinite(res.fmin))
        st = mlmx_err_set(err, c->err.code ? c->err.code : MLMX_ERR_NUMERIC,
                          "the model without random effects could not be fitted: %s",
                          c->err.msg[0] ? c->err.msg : "non-finite deviance");
    if (st)
        return st;
    f->loglik_glm = -0.5 * res.fmin;
    f->n_evals_stage1 = res.n_evals;
    c->fix_theta = 0;
    memset(g->u, 0, g->nu * sizeof *g->u);
    c->best = HUGE_VAL;
    const int qgrad = o->nagq > 1 && np <= 64 && o->optimizer != MLMX_OPTIM_BOBYQA && mlmx_gobj_quad_grad_ok(g);
    if (qgrad) {
        /* the quadrature gradient: BFGS from the inverse Hessian at the start
         * (differences of the gradient) */
        double *H0 = calloc((size_t)np * (size_t)np, sizeof *H0);
        int all[NPAR_MAX];
        for (int t = 0; t < np; t++)
            all[t] = t;
        mlmx_optim_opts oq = oo;
        /* the start needs only an approximate curvature: take it at 3 points */
        int keep = c->nagq;
        c->nagq = keep < 3 ? keep : 3;
        int hok = H0 && mlmx_gobj_fd_hessian_grad(c, x, all, np, H0, err) == MLMX_OK;
        c->nagq = keep;
        if (hok &&
            LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', np, H0, np) == 0 &&
            LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', np, H0, np) == 0) {
            for (int b = 0; b < np; b++)
                for (int a = 0; a < b; a++)
                    H0[a + b * np] = H0[b + a * np];
            oq.hinv0 = H0;
        }
        mlmx_err_clear(err);
        st = mlmx_optim_qnewton(np, x, lb, NULL, mlmx_gobj_obj_stage2_grad, c, &oq, &res, err);
        free(H0);
        snprintf(f->optimizer, sizeof f->optimizer, "BFGS");
    } else if (o->optimizer != MLMX_OPTIM_BOBYQA && np <= 64) {
        /* Laplace: BFGS on differences of the deviance, then BOBYQA from
         * there (it stops at once where BFGS already converged) */
        c->u0 = malloc((g->nu ? g->nu : 1) * sizeof *c->u0);
        st = mlmx_optim_qnewton(np, x, lb, NULL, mlmx_gobj_obj_fd_grad, c, &oo, &res, err);
        free(c->u0);
        c->u0 = NULL;
        int ev = res.n_evals;
        if (!st) {
            mlmx_optim_opts ob = oo;
            ob.init_step = 1e-3;
            st = mlmx_optim_bobyqa(np, x, lb, NULL, mlmx_gobj_obj_stage2, c, &ob, &res, err);
            res.n_evals += ev;
        }
        snprintf(f->optimizer, sizeof f->optimizer, "BFGS+BOBYQA");
    } else {
        st = mlmx_optim_bobyqa(np, x, lb, NULL, mlmx_gobj_obj_stage2, c, &oo, &res, err);
        snprintf(f->optimizer, sizeof f->optimizer, "BOBYQA");
    }
    if (!st && !isfinite(res.fmin))
        st = mlmx_err_set(err, c->err.code ? c->err.code : MLMX_ERR_NUMERIC,
                          "the deviance could not be evaluated: %s",
                          c->err.msg[0] ? c->err.msg : "non-finite value");
    if (st)
        return st;
    f->n_evals = res.n_evals + f->n_evals_stage1;
    f->converged = res.converged;
    memcpy(f->message, res.message, sizeof f->message);
    st = mlmx_gobj_dev_at(c, x, &dev, err);
    if (st)
        return st;
    memcpy(f->theta, x, (size_t)nt * sizeof *x);
    const double *th, *be;
    mlmx_gobj_unpack(c, x, &th, &be);
    memcpy(f->beta, be, (size_t)p * sizeof *be);
    mlmx_gobj_set_criteria(f, dev, np);
    set_grad_max(f, c, x, np);
    if (ord) {
        f->skip_col = g->int_col;
        f->nthr = g->ncat - 1;
        f->thr = calloc((size_t)f->nthr, sizeof *f->thr);
        f->thr_se = calloc((size_t)f->nthr, sizeof *f->thr_se);
        f->thr_names = calloc((size_t)f->nthr, sizeof *f->thr_names);
        if (!f->thr || !f->thr_se || !f->thr_names)
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        for (int k = 0; k < f->nthr; k++) {
            f->thr[k] = g->thr[k];
            f->thr_names[k] = mlmx_asprintf("%s|%s", g->cat_labels[k], g->cat_labels[k + 1]);
            if (!f->thr_names[k])
                return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
    } else {
        f->nb_size = g->nb_size;
    }
    /* covariance of [beta; extra] from the Hessian of the deviance (theta
     * held fixed when a variance is at its bound) */
    int idx[NPAR_MAX], nf = 0;
    if (!f->singular)
        for (int t = 0; t < nt; t++)
            idx[nf++] = t;
    for (int j = nt; j < np; j++)
        idx[nf++] = j;
    double *H = calloc((size_t)nf * (size_t)nf, sizeof *H);
    if (!H)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    st = qgrad ? mlmx_gobj_fd_hessian_grad(c, x, idx, nf, H, err) : mlmx_gobj_fd_hessian(c, x, idx, nf, H, err);
    if (!st) {
        for (int a = 0; a < nf * nf; a++)
            H[a] *= 0.5;
        if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', nf, H, nf) != 0 ||
            LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', nf, H, nf) != 0)
            st = mlmx_err_set(err, MLMX_ERR_NUMERIC,
                              "the Hessian of the deviance is not positive definite at the "
                              "optimum; the standard errors are not defined");
    }
    if (!st) {
        for (int b = 0; b < nf; b++)
            for (int a = 0; a < b; a++)
                H[a + b * nf] = H[b + a * nf];
        const int o0 = nf - nb - ne; /* first beta entry in H */
        double *V = f->vcov;
        for (int a = 0; a < p * p; a++)
            V[a] = NAN;
        for (int ja = 0, ka = 0; ja < p; ja++) {
            if (ja == g->int_col)
                continue;
            for (int jb = 0, kb = 0; jb < p; jb++) {
                if (jb == g->int_col)
                    continue;
                V[ja + jb * p] = H[(o0 + ka) + (size_t)(o0 + kb) * nf];
                kb++;
            }
            ka++;
        }
        for (int j = 0; j < p; j++)
            f->se[j] = j == g->int_col ? NAN : sqrt(V[j + j * p]);
        const int e0 = o0 + nb;
        if (ord) {
            /* c = J x: c_k = x_1 + sum_{2 <= j <= k} exp(x_j) */
            const double *xx = x + nt + nb;
            for (int k = 0; k < f->nthr; k++) {
                double v = 0.0;
                for (int a = 0; a <= k; a++)
                    for (int b2 = 0; b2 <= k; b2++) {
                        double ja = a == 0 ? 1.0 : exp(xx[a]);
                        double jb = b2 == 0 ? 1.0 : exp(xx[b2]);
                        v += ja * jb * H[(e0 + a) + (size_t)(e0 + b2) * nf];
                    }
                f->thr_se[k] = sqrt(v);
            }
        } else {
            f->nb_logsize_se = sqrt(H[e0 + (size_t)e0 * nf]);
        }
    }
    free(H);
    return st;
}

/* Complete separation (or an empty count cell) sends a coefficient off to
 * infinity; the optimizer then stops somewhere on the plateau. Name the
 * first coefficient that alone moves the linear predictor by more than 30
 * across the data (odds or rates of e^30), as glm warns that "fitted
 * probabilities numerically 0 or 1 occurred". */
static void separation_check(mlmx_fit *f)
{
    const mlmx_model *md = f->model;
    const size_t n = md->n;
    /* the largest move, a covariate before the intercept (which diverges
     * along with the covariate that separates the data) */
    int worst = -1, worst_int = -1;
    double wmove = 0.0, imove = 0.0;
    for (int j = 0; j < md->p; j++) {
        if (j == f->skip_col)
            continue;
        const double *x = md->X + (size_t)j * n;
        double lo = HUGE_VAL, hi = -HUGE_VAL;
        for (size_t i = 0; i < n; i++) {
            lo = fmin(lo, x[i]);
            hi = fmax(hi, x[i]);
        }
        int is_int = strcmp(md->fixef_names[j], "(Intercept)") == 0;
        double move = isfinite(f->beta[j]) ? fabs(f->beta[j]) * (is_int ? 1.0 : hi - lo) : HUGE_VAL;
        if (is_int) {
            worst_int = j;
            imove = move;
        } else if (move > wmove) {
            wmove = move;
            worst = j;
        }
    }
    int j = wmove > 30.0 ? worst : imove > 30.0 ? worst_int : -1;
    if (j >= 0) {
        snprintf(f->warning, sizeof f->warning,
                 "the estimate of '%s' is diverging (%.4g, SE %.4g; it moves the linear "
                 "predictor by %.3g): the data may be completely separated by it, and the "
                 "estimates and SEs are not meaningful",
                 md->fixef_names[j], f->beta[j], f->se[j], j == worst ? wmove : imove);
        return;
    }
    for (j = 0; j < md->p; j++)
        if (j != f->skip_col && !isfinite(f->se[j])) {
            snprintf(f->warning, sizeof f->warning,
                     "the Hessian of the deviance is not positive definite at the optimum, so "
                     "the standard errors (first: '%s') are not defined; the model may be "
                     "overparametrized or the data separated",
                     md->fixef_names[j]);
            return;
        }
}

/* A start for scalar terms from the model without random effects: each
 * level's weighted mean working residual on the linear-predictor scale,
 * whose variance over the levels, less its sampling variance, estimates the
 * term's variance (a method-of-moments guess that ignores the other terms;
 * it only has to put the optimizer near the optimum). Vector terms keep
 * lme4's start. Uses the working weights and response the GLM's PIRLS left. */
static void moment_start(const mlmx_glmm *g, double *theta)
{
    const mlmx_model *md = g->md;
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *r = &md->re[k];
        if (r->q != 1)
            continue;
        double *sw = calloc((size_t)r->nlevels, sizeof *sw);
        double *sr = calloc((size_t)r->nlevels, sizeof *sr);
        if (!sw || !sr) {
            free(sw);
            free(sr);
            return;
        }
        for (size_t i = 0; i < md->n; i++) {
            /* working residual d1 / W = wz - (eta - offset) */
            double res = g->wz[i] - (g->eta[i] - (md->offset ? md->offset[i] : 0.0));
            double z = r->z[i];
            sw[r->codes[i]] += g->wt[i] * z * z;
            sr[r->codes[i]] += g->wt[i] * z * res;
        }
        double acc = 0.0;
        int nl = 0;
        for (int l = 0; l < r->nlevels; l++)
            if (sw[l] > 0) {
                double m = sr[l] / sw[l];
                acc += m * m - 1.0 / sw[l];
                nl++;
            }
        free(sw);
        free(sr);
        double v = nl ? acc / nl : 1.0;
        theta[r->theta_offset] = sqrt(v > 0.01 ? v : 0.01);
    }
}

mlmx_status mlmx_glmm_fit_internal(const mlmx_model *md, const mlmx_fit_options *o,
                                   mlmx_fit **out, mlmx_error *err)
{
    *out = NULL;
    double t0 = now_seconds();
    const mlmx_backend *be = NULL;
    char where[256], note[320];
    /* a GLMM fit passes no dense size: auto keeps it on the CPU */
    mlmx_status st = mlmx_backend_for_device(o->device, o->backend, -1, &be, where,
                                             sizeof where, note, sizeof note, err);
    if (st)
        return st;
    if (md->K < 1)
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "the formula has no random-effect terms such as (1|group); a mixed "
                            "model needs at least one");
    for (int k = 0; k < md->K; k++)
        if (md->re[k].q > 16)
            return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                                "random-effect term for '%s' has %d columns; at most 16 are "
                                "supported",
                                md->re[k].group, md->re[k].q);
    if (o->nagq < 0 || o->nagq > 100)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "--nagq %d is out of range: 0 (PIRLS for beta), 1 (Laplace) or 2..100 "
                            "quadrature points",
                            o->nagq);
    const int nt = md->ntheta, p = md->p, np = nt + p;
    if (np > NPAR_MAX)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "%d parameters; at most %d are supported",
                            np, NPAR_MAX);
    mlmx_glmm *g = NULL;
    st = mlmx_glmm_create(md, o->family, o->link, be, &g, err);
    if (!st)
        st = check_quadrature(g, o->nagq, err);
    if (st) {
        mlmx_glmm_free(g);
        return st;
    }
    mlmx_fit *f = NULL;
    if (mlmx_fit_alloc(md, &f) != MLMX_OK ||
        !(f->pearson = calloc(md->n ? md->n : 1, sizeof *f->pearson))) {
        mlmx_fit_free(f);
        mlmx_glmm_free(g);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    f->method = MLMX_ML;
    f->family = o->family;
    f->link = g->link;
    f->nagq = o->nagq;
    f->have_condsd = o->conditional_variances != 0;
    f->sigma = 1.0;
    snprintf(f->device, sizeof f->device, "%s", where);
    snprintf(f->device_note, sizeof f->device_note, "%s", note);
    mlmx_gobj c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.ntheta = nt;
    c.p = p;
    c.nagq = o->nagq;
    c.nb = p;
    c.best = HUGE_VAL;
    c.progress = o->progress;
    c.progress_ctx = o->progress_ctx;
    if (md->nstructured) {
        st = mlmx_glmm_fit_psi(f, &c, o, err);
        if (!st)
            st = finish(f, &c, f->theta, f->beta, err);
        goto done;
    }
    if (o->family == MLMX_FAMILY_ORDINAL || o->family == MLMX_FAMILY_NEGBIN) {
        st = fit_other(f, &c, o, err);
        if (!st)
            st = finish(f, &c, f->theta, f->beta, err);
        goto done;
    }
    double x[NPAR_MAX], lb[NPAR_MAX];
    for (int t = 0; t < nt; t++) {
        x[t] = o->theta_start ? o->theta_start[t] : (md->theta_lower[t] == 0.0 ? 1.0 : 0.0);
        if (x[t] < md->theta_lower[t])
            x[t] = md->theta_lower[t];
        lb[t] = md->theta_lower[t];
    }
    for (int j = 0; j < p; j++)
        lb[nt + j] = -HUGE_VAL;
    mlmx_optim_opts oo;
    mlmx_gobj_optim_opts_from(o, &oo);
    mlmx_optim_result res;
    double dev = HUGE_VAL;

    /* The model without random effects (theta = 0): PIRLS is then the GLM's
     * IRLS; its log-likelihood is the likelihood-ratio test's reference, and
     * its beta a start as glm() gives glmer. */
    {
        double th0[NPAR_MAX] = {0};
        st = mlmx_glmm_pirls_beta(g, th0, &dev, err);
        if (st)
            goto done;
        f->loglik_glm = -0.5 * dev;
        memset(g->u, 0, g->nu * sizeof *g->u);
        if (!o->theta_start)
            moment_start(g, x);
    }
    /* Stage 1: theta with beta inside PIRLS. Where BFGS with the exact
     * gradient follows, this is only its starting point and need not be
     * tight. */
    const int use_grad =
        np <= 64 && o->optimizer != MLMX_OPTIM_BOBYQA &&
        ((o->nagq == 1 && mlmx_glmm_has_grad(g)) || (o->nagq > 1 && mlmx_gobj_quad_grad_ok(g)));
    {
        mlmx_optim_opts o1 = oo;
        if (use_grad) {
            /* a few steps from theta = 1 bring the start within BFGS's reach;
             * BOBYQA's first 2 ntheta + 1 evaluations only build its model */
            o1.xtol_rel = 1e-2;
            o1.ftol_abs = 1e-2;
            o1.max_evals = 4 + 2 * nt;
        }
        if (use_grad)
            g->pirls_beta_tol = 1e-8;
        st = mlmx_optim_bobyqa(nt, x, lb, NULL, mlmx_gobj_obj_stage1, &c, &o1, &res, err);
        g->pirls_beta_tol = 1e-12;
    }
    if (st)
        goto done;
    if (!isfinite(res.fmin)) {
        st = c.err.code ? c.err.code : MLMX_ERR_NUMERIC;
        mlmx_err_set(err, st, "the deviance could not be evaluated: %s",
                     c.err.msg[0] ? c.err.msg : "non-finite value");
        goto done;
    }
    st = mlmx_glmm_pirls_beta(g, x, &dev, err);
    if (st)
        goto done;
    f->n_evals_stage1 = res.n_evals;
    for (int j = 0; j < p; j++)
        x[nt + j] = g->beta[j];
    int nev = res.n_evals;
    int conv = res.converged;
    char msg[160];
    memcpy(msg, res.message, sizeof msg);
    if (o->nagq >= 1) {
        /* Stage 2: (theta, beta) on the Laplace or quadrature deviance. */
        c.best = HUGE_VAL;
        if (use_grad) {
            /* the analytic gradient: BFGS, then BOBYQA polishes from there
             * (it stops at once where BFGS already converged) */
            /* start from the inverse of an approximate Hessian there: the
             * theta columns by differences of the gradient (2 ntheta
             * gradients), the beta block 2 R_X^T R_X from the nAGQ = 0 factor
             * (exact for the penalized deviance); BFGS then converges in a
             * few steps */
            double *H0 = calloc((size_t)np * (size_t)np, sizeof *H0);
            mlmx_optim_opts oq = oo;
            int ok = H0 != NULL;
            if (ok && nt > 0) {
                int th_idx[NPAR_MAX];
                double *Ht = calloc((size_t)np * (size_t)nt, sizeof *Ht);
                for (int t = 0; t < nt; t++)
                    th_idx[t] = t;
                /* with quadrature, the Laplace curvature is start enough */
                int keep = c.nagq;
                if (c.nagq > 1 && mlmx_glmm_has_grad(g))
                    c.nagq = 1;
                ok = Ht && mlmx_gobj_fd_hessian_cols(&c, x, th_idx, nt, Ht, err) == MLMX_OK;
                c.nagq = keep;
                for (int t = 0; ok && t < nt; t++)
                    for (int a = 0; a < np; a++)
                        H0[a + t * np] = H0[t + a * np] = Ht[a + t * np];
                free(Ht);
            }
            if (ok) {
                const mlmx_lmm_stats *sx = g->sx;
                const size_t mx = (size_t)sx->m;
                const double *S = g->wx->S;
                for (int a = 0; a < p; a++)
                    for (int b = 0; b <= a; b++) {
                        /* (R_X^T R_X)[a,b] from the lower factor's X rows */
                        double sum = 0.0;
                        for (int e = 0; e <= b; e++)
                            sum += S[(size_t)(sx->m_re + a) + (size_t)(sx->m_re + e) * mx] *
                                   S[(size_t)(sx->m_re + b) + (size_t)(sx->m_re + e) * mx];
                        H0[(nt + a) + (size_t)(nt + b) * np] =
                            H0[(nt + b) + (size_t)(nt + a) * np] = 2.0 * sum;
                    }
                /* far from the optimum the theta block can be indefinite:
                 * then keep only its absolute diagonal (a scaled steepest
                 * descent in theta, Newton-like in beta) */
                double *Hc = malloc((size_t)np * (size_t)np * sizeof *Hc);
                ok = Hc != NULL;
                if (ok) {
                    memcpy(Hc, H0, (size_t)np * (size_t)np * sizeof *Hc);
                    if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', np, Hc, np) != 0) {
                        for (int a = 0; a < np; a++)
                            for (int b = 0; b < np; b++)
                                if ((a < nt || b < nt) && a != b)
                                    H0[a + b * np] = 0.0;
                        for (int t = 0; t < nt; t++)
                            H0[t + t * np] = fmax(fabs(H0[t + t * np]), 1e-8);
                        memcpy(Hc, H0, (size_t)np * (size_t)np * sizeof *Hc);
                        ok = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', np, Hc, np) == 0;
                    }
                    ok = ok && LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', np, Hc, np) == 0;
                    if (ok)
                        memcpy(H0, Hc, (size_t)np * (size_t)np * sizeof *Hc);
                    free(Hc);
                }
            }
            if (ok) {
                for (int b = 0; b < np; b++)
                    for (int a = 0; a < b; a++)
                        H0[a + b * np] = H0[b + a * np];
                oq.hinv0 = H0;
            }
            mlmx_err_clear(err);
            st = mlmx_optim_qnewton(np, x, lb, NULL, mlmx_gobj_obj_stage2_grad, &c, &oq, &res, err);
            free(H0);
            if (!st) {
                int ev = res.n_evals;
                snprintf(f->optimizer, sizeof f->optimizer, "BFGS");
                if (!res.converged) {
                    st = mlmx_optim_bobyqa(np, x, lb, NULL, mlmx_gobj_obj_stage2, &c, &oo, &res, err);
                    res.n_evals += ev;
                    snprintf(f->optimizer, sizeof f->optimizer, "BFGS+BOBYQA");
                }
            }
        } else {
            st = mlmx_optim_bobyqa(np, x, lb, NULL, mlmx_gobj_obj_stage2, &c, &oo, &res, err);
        }
        if (st)
            goto done;
        if (!isfinite(res.fmin)) {
            st = c.err.code ? c.err.code : MLMX_ERR_NUMERIC;
            mlmx_err_set(err, st, "the deviance could not be evaluated: %s",
                         c.err.msg[0] ? c.err.msg : "non-finite value");
            goto done;
        }
        nev += res.n_evals;
        conv = res.converged;
        memcpy(msg, res.message, sizeof msg);
        st = mlmx_gobj_dev_at(&c, x, &dev, err);
        if (st)
            goto done;
    }
    f->n_evals = nev;
    f->converged = conv;
    memcpy(f->message, msg, sizeof f->message);
    if (!f->optimizer[0])
        snprintf(f->optimizer, sizeof f->optimizer, "BOBYQA");
    memcpy(f->theta, x, (size_t)nt * sizeof *x);
    memcpy(f->beta, x + nt, (size_t)p * sizeof *x);
    mlmx_gobj_set_criteria(f, dev, np);
    set_grad_max(f, &c, x, np);

    /* vcov(beta): for nagq >= 1 from the Hessian of the deviance over
     * (theta, beta) (theta held fixed when a variance is at its bound), as
     * glmer's default use.hessian = TRUE; for nagq = 0 from R_X. */
    if (p > 0) {
        double *V = f->vcov;
        if (o->nagq >= 1) {
            int idx[NPAR_MAX], nf = 0;
            if (!f->singular)
                for (int t = 0; t < nt; t++)
                    idx[nf++] = t;
            for (int j = 0; j < p; j++)
                idx[nf++] = nt + j;
            double *H = calloc((size_t)nf * (size_t)nf, sizeof *H);
            if (!H) {
                st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
                goto done;
            }
            st = use_grad ? mlmx_gobj_fd_hessian_grad(&c, x, idx, nf, H, err)
                          : mlmx_gobj_fd_hessian(&c, x, idx, nf, H, err);
            if (!st) {
                /* inverse of H/2 (the deviance is -2 log L) */
                for (int a = 0; a < nf * nf; a++)
                    H[a] *= 0.5;
                if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', nf, H, nf) != 0 ||
                    LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', nf, H, nf) != 0) {
                    /* reported through the SEs (NaN) and the fit's warning */
                    for (int a = 0; a < p * p; a++)
                        V[a] = NAN;
                } else {
                    int o0 = nf - p;
                    for (int b = 0; b < p; b++)
                        for (int a = 0; a < p; a++) {
                            int ia = o0 + a, ib = o0 + b;
                            V[a + b * p] = ia >= ib ? H[ia + ib * nf] : H[ib + ia * nf];
                        }
                }
            }
            free(H);
            if (st)
                goto done;
        } else {
            const mlmx_lmm_stats *s = g->sx;
            const size_t m = (size_t)s->m;
            const int m_re = s->m_re;
            for (int b = 0; b < p; b++)
                for (int a = 0; a < p; a++)
                    V[a + b * p] =
                        a >= b ? g->wx->S[(size_t)(m_re + a) + (size_t)(m_re + b) * m] : 0.0;
            if (LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', p, V, p) != 0) {
                st = mlmx_err_set(err, MLMX_ERR_NUMERIC,
                                  "cannot invert R_X for the fixed-effect covariance");
                goto done;
            }
            for (int b = 0; b < p; b++)
                for (int a = 0; a < b; a++)
                    V[a + b * p] = V[b + a * p];
        }
        for (int j = 0; j < p; j++)
            f->se[j] = sqrt(V[j + j * p]);
    }
    if (o->nagq == 0) {
        /* the modes and their factor for the results below (the same
         * deviance: beta and u solve PIRLS jointly) */
        st = mlmx_glmm_laplace(g, x, x + nt, &dev, err);
        if (st)
            goto done;
    }
    st = finish(f, &c, x, x + nt, err);
done:
    mlmx_glmm_free(g);
    if (st) {
        mlmx_fit_free(f);
        return st;
    }
    separation_check(f);
    f->seconds = now_seconds() - t0;
    *out = f;
    return MLMX_OK;
}
