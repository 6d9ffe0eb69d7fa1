/* The public prepared-problem API: problems, workspaces, report
 * parameters and simulation. The estimators are in lmm_refit.c and
 * host/glmm/refit.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "cluster_math.h"
#include "replicate/replicate.h"
#include "simulate.h"
#include "util/strbuf.h"

void mlmx_problem_free(mlmx_problem *P)
{
    if (!P)
        return;
    mlmx_lmm_stats_free(P->s);
    mlmx_lmm_stats_free(P->gsu);
    mlmx_lmm_stats_free(P->gsx);
    free(P->theta);
    free(P->beta);
    free(P->extra);
    if (P->param_names)
        for (int j = 0; j < P->nparams; j++)
            free(P->param_names[j]);
    free(P->param_names);
    free(P->params);
    free(P->x0);
    free(P->xlo);
    free(P->hinv0);
    free(P->gx0);
    free(P->glb);
    free(P->ghinv0);
    free(P->rnat);
    free(P->rx);
    free(P->rchol);
    free(P->rchol_off);
    free(P->psi0);
    free(P);
}

/* Names in report order (see mlmx.h): fixed effects, per term SDs then
 * correlations, then sigma, thresholds or size. */
static mlmx_status make_names(mlmx_problem *P, const char *const *thr_names)
{
    const mlmx_model *md = P->md;
    int n = 0;
    for (int j = 0; j < md->p; j++)
        n += !(P->family == MLMX_FAMILY_ORDINAL && strcmp(md->fixef_names[j], "(Intercept)") == 0);
    for (int k = 0; k < md->K; k++)
        n += md->re[k].q * (md->re[k].q + 1) / 2;
    n += P->family == MLMX_FAMILY_GAUSSIAN ? 1 : P->nextra;
    n += P->nres;
    P->nparams = n;
    P->param_names = calloc((size_t)n, sizeof *P->param_names);
    P->params = calloc((size_t)n, sizeof *P->params);
    if (!P->param_names || !P->params)
        return MLMX_ERR_NOMEM;
    int i = 0;
    for (int j = 0; j < md->p; j++)
        if (!(P->family == MLMX_FAMILY_ORDINAL && strcmp(md->fixef_names[j], "(Intercept)") == 0))
            P->param_names[i++] = mlmx_asprintf("%s", md->fixef_names[j]);
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *r = &md->re[k];
        for (int a = 0; a < r->q; a++)
            P->param_names[i++] = mlmx_asprintf("sd_%s|%s", r->colnames[a], r->group);
        for (int b = 0; b < r->q; b++)
            for (int a = b + 1; a < r->q; a++)
                P->param_names[i++] =
                    mlmx_asprintf("cor_%s.%s|%s", r->colnames[b], r->colnames[a], r->group);
    }
    if (P->family == MLMX_FAMILY_GAUSSIAN)
        P->param_names[i++] = mlmx_asprintf("sigma");
    else if (P->family == MLMX_FAMILY_NEGBIN)
        P->param_names[i++] = mlmx_asprintf("size");
    else
        for (int k = 0; k < P->nextra; k++)
            P->param_names[i++] =
                thr_names ? mlmx_asprintf("%s", thr_names[k]) : mlmx_asprintf("%d|%d", k + 1, k + 2);
    /* the residual structure's: corr_Phi, corr_Rho, ...; var_<stratum>
     * (the SD ratio), var_power */
    for (int k = 0; k < P->nres; k++)
        P->param_names[i++] = mlmx_asprintf("%s_%s", k < md->resid->ncorr ? "corr" : "var",
                                            md->resid->par_names[k]);
    for (int j = 0; j < n; j++)
        if (!P->param_names[j])
            return MLMX_ERR_NOMEM;
    return MLMX_OK;
}

void mlmx_rep_params(const mlmx_problem *P, const double *theta, const double *beta,
                     double sigma, const double *extra, const double *rnat, double *out)
{
    const mlmx_model *md = P->md;
    int i = 0;
    for (int j = 0; j < md->p; j++)
        if (!(P->family == MLMX_FAMILY_ORDINAL && strcmp(md->fixef_names[j], "(Intercept)") == 0))
            out[i++] = beta[j];
    const double s = P->family == MLMX_FAMILY_GAUSSIAN ? sigma : 1.0;
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *r = &md->re[k];
        const int q = r->q;
        const double *th = theta + r->theta_offset;
        /* covariance s^2 T T^T from the column-major lower triangle */
        double sd[16], Tm[16 * 16]; /* q <= 16 (checked at creation) */
        mlmx_cm_theta_to_t(q, th, Tm);
        for (int a = 0; a < q; a++) {
            double v = 0.0;
            for (int c = 0; c <= a; c++)
                v += Tm[a + c * q] * Tm[a + c * q];
            sd[a] = s * sqrt(v);
            out[i++] = sd[a];
        }
        for (int b = 0; b < q; b++)
            for (int a = b + 1; a < q; a++) {
                double v = 0.0;
                for (int c = 0; c <= b; c++)
                    v += Tm[a + c * q] * Tm[b + c * q];
                double den = sd[a] * sd[b] / (s * s);
                out[i++] = den > 0.0 ? v / den : NAN;
            }
    }
    if (P->family == MLMX_FAMILY_GAUSSIAN)
        out[i++] = sigma;
    else
        for (int k = 0; k < P->nextra; k++)
            out[i++] = extra[k];
    for (int k = 0; k < P->nres; k++)
        out[i++] = rnat ? rnat[k] : NAN;
}

static mlmx_status ws_create(const mlmx_problem *P, mlmx_workspace **out, mlmx_error *e);

/* The curvature at the start that seeds every refit's BFGS, on a response
 * simulated from the parameters (a reserved replicate index): a power
 * study's design has no response of its own. */
static mlmx_status curvature(mlmx_problem *P, mlmx_error *err)
{
    mlmx_workspace *W = NULL;
    mlmx_status st = ws_create(P, &W, err);
    if (st)
        return st;
    if (P->md->resid || P->md->nstructured) { /* BOBYQA refits: no curvature */
        mlmx_workspace_free(W);
        return MLMX_OK;
    }
    st = mlmx_workspace_simulate(W, 0x6d6c6d78u, UINT64_MAX, NULL);
    if (st) {
        mlmx_err_set(err, st, "%s", mlmx_last_error());
    } else if (P->glmm) {
        st = mlmx_rep_glmm_curvature(P, W, err);
    } else {
        mlmx_rep_lmm_curvature(P, W);
    }
    mlmx_workspace_free(W);
    return st;
}

static mlmx_status problem_init(mlmx_problem *P, const mlmx_model *m, const mlmx_fit_options *o,
                                const double *theta, const double *beta, const double *extra,
                                const double *rnat, double sigma, const char *const *thr_names,
                                mlmx_error *err)
{
    P->md = m;
    if (o)
        P->opt = *o;
    else
        mlmx_fit_options_default(&P->opt);
    P->family = P->opt.family;
    P->glmm = P->family != MLMX_FAMILY_GAUSSIAN;
    P->be = mlmx_backend_get(P->opt.backend);
    if (!P->be)
        return mlmx_err_set(err, MLMX_ERR_ARG, "backend '%s' unavailable: %s", P->opt.backend,
                            mlmx_backend_unavailable_reason(P->opt.backend));
    if (m->K < 1)
        return mlmx_err_set(err, MLMX_ERR_MODEL, "the model has no random-effect terms");
    for (int k = 0; k < m->K; k++)
        if (m->re[k].q > 16)
            return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                                "random-effect term for '%s' has %d columns; at most 16 are "
                                "supported",
                                m->re[k].group, m->re[k].q);
    P->ntheta = m->ntheta;
    P->p = m->p;
    P->nextra = 0;
    if (P->family == MLMX_FAMILY_NEGBIN)
        P->nextra = 1;
    const size_t nt = (size_t)(P->ntheta ? P->ntheta : 1), p = (size_t)(P->p ? P->p : 1);
    P->theta = malloc(nt * sizeof *P->theta);
    P->beta = malloc(p * sizeof *P->beta);
    if (!P->theta || !P->beta)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    for (int t = 0; t < P->ntheta; t++) {
        if (!isfinite(theta[t]) || theta[t] < m->theta_lower[t])
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "covariance parameter %d (%s) is %g; it must be finite and at "
                                "least %g",
                                t + 1, m->theta_names[t], theta[t], m->theta_lower[t]);
        P->theta[t] = theta[t];
    }
    for (int j = 0; j < P->p; j++) {
        P->beta[j] = beta[j];
        if (!isfinite(beta[j]))
            return mlmx_err_set(err, MLMX_ERR_ARG, "fixed effect '%s' is not finite",
                                m->fixef_names[j]);
    }
    P->sigma = sigma;
    if (!P->glmm && !(sigma > 0.0 && isfinite(sigma)))
        return mlmx_err_set(err, MLMX_ERR_ARG, "sigma is %g; it must be positive", sigma);
    P->nu_total = 0;
    for (int k = 0; k < m->K; k++)
        P->nu_total += m->re[k].nlevels * m->re[k].q;
    mlmx_status st = P->glmm ? mlmx_rep_glmm_prepare(P, err) : mlmx_rep_lmm_prepare(P, err);
    if (!st && m->resid)
        st = mlmx_rep_resid_prepare(P, rnat, err);
    if (st)
        return st;
    /* the GLMM preparation knows the number of thresholds */
    if (P->nextra > 0) {
        P->extra = malloc((size_t)P->nextra * sizeof *P->extra);
        if (!P->extra)
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        for (int k = 0; k < P->nextra; k++) {
            P->extra[k] = extra ? extra[k] : NAN;
            if (!isfinite(P->extra[k]) || (k > 0 && !(P->extra[k] > P->extra[k - 1])) ||
                (P->family == MLMX_FAMILY_NEGBIN && !(P->extra[k] > 0.0)))
                return mlmx_err_set(err, MLMX_ERR_ARG,
                                    P->family == MLMX_FAMILY_NEGBIN
                                        ? "the negative binomial size must be positive and "
                                          "finite"
                                        : "the %d ordinal thresholds must be finite and "
                                          "increasing",
                                    P->nextra);
        }
    }
    if (make_names(P, thr_names) != MLMX_OK)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    mlmx_rep_params(P, P->theta, P->beta, P->sigma, P->extra, P->rnat, P->params);
    return curvature(P, err);
}

static mlmx_status create_at(const mlmx_model *m, const mlmx_fit_options *o, const double *theta,
                             const double *beta, const double *extra, const double *resid,
                             double sigma, mlmx_problem **out)
{
    mlmx_api_clear();
    if (!m || !theta || (!beta && m->p > 0) || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_problem_create_at: NULL argument");
    *out = NULL;
    if ((o && o->family != MLMX_FAMILY_GAUSSIAN) &&
        mlmx_api_require_unstructured(m, "the replicate engine for GLMMs (power, "
                                         "mlmx_problem_create_at)"))
        return MLMX_ERR_UNSUPPORTED;
    mlmx_problem *P = calloc(1, sizeof *P);
    if (!P)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = problem_init(P, m, o, theta, beta, extra, resid, sigma, NULL, &e);
    if (!st && m->nstructured) {
        /* structured terms: psi from the given theta, which must hold the
         * structure */
        if (!(P->psi0 = malloc((size_t)mlmx_model_ncov(m) * sizeof *P->psi0)))
            st = mlmx_err_set(&e, MLMX_ERR_NOMEM, "out of memory");
        else
            st = mlmx_model_theta_to_psi(m, theta, P->psi0, &e);
    }
    if (st) {
        mlmx_problem_free(P);
        return mlmx_api_fail(&e);
    }
    *out = P;
    return MLMX_OK;
}

mlmx_status mlmx_problem_create_at(const mlmx_model *m, const mlmx_fit_options *o,
                                   const double *theta, const double *beta, const double *extra,
                                   double sigma, mlmx_problem **out)
{
    return create_at(m, o, theta, beta, extra, NULL, sigma, out);
}

mlmx_status mlmx_problem_create_at_resid(const mlmx_model *m, const mlmx_fit_options *o,
                                         const double *theta, const double *beta,
                                         const double *resid, double sigma, mlmx_problem **out)
{
    return create_at(m, o, theta, beta, NULL, resid, sigma, out);
}

mlmx_status mlmx_problem_create(const mlmx_fit *f, mlmx_problem **out)
{
    mlmx_api_clear();
    if (!f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_problem_create: NULL argument");
    *out = NULL;
    /* structured random-effect covariances: LMMs refit over psi (from the
     * fit's); GLMMs not yet */
    if (f->family != MLMX_FAMILY_GAUSSIAN &&
        mlmx_api_require_unstructured(f->model, "the replicate engine for GLMMs (boot, "
                                                "simulate, mlmx_problem)"))
        return MLMX_ERR_UNSUPPORTED;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = f->method;
    o.family = f->family;
    o.link = f->link;
    o.nagq = f->nagq;
    double size = f->nb_size;
    const double *extra = f->family == MLMX_FAMILY_ORDINAL   ? f->thr
                          : f->family == MLMX_FAMILY_NEGBIN ? &size
                                                             : NULL;
    mlmx_problem *P = calloc(1, sizeof *P);
    if (!P)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = problem_init(P, f->model, &o, f->theta, f->beta, extra, f->rpar, f->sigma,
                                  (const char *const *)f->thr_names, &e);
    if (!st && f->model->nstructured) {
        const size_t nc = (size_t)mlmx_model_ncov(f->model);
        if (!(P->psi0 = malloc(nc * sizeof *P->psi0)))
            st = mlmx_err_set(&e, MLMX_ERR_NOMEM, "out of memory");
        else
            memcpy(P->psi0, f->psi, nc * sizeof *P->psi0);
    }
    if (st) {
        mlmx_problem_free(P);
        return mlmx_api_fail(&e);
    }
    *out = P;
    return MLMX_OK;
}

const mlmx_model *mlmx_problem_model(const mlmx_problem *p) { return p ? p->md : NULL; }
int mlmx_problem_nparams(const mlmx_problem *p) { return p ? p->nparams : 0; }
const double *mlmx_problem_params(const mlmx_problem *p) { return p ? p->params : NULL; }
const char *mlmx_problem_param_name(const mlmx_problem *p, int j)
{
    return p && j >= 0 && j < p->nparams ? p->param_names[j] : NULL;
}

void mlmx_workspace_free(mlmx_workspace *W)
{
    if (!W)
        return;
    mlmx_rep_lmm_ws_free(W);
    mlmx_rep_glmm_ws_free(W);
    free(W->y);
    free(W->b);
    free(W->u);
    free(W->tm);
    free(W->params);
    free(W->theta);
    free(W->beta);
    free(W->se);
    free(W);
}

static mlmx_status ws_create(const mlmx_problem *P, mlmx_workspace **out, mlmx_error *e)
{
    *out = NULL;
    mlmx_workspace *W = calloc(1, sizeof *W);
    if (!W)
        return mlmx_err_set(e, MLMX_ERR_NOMEM, "out of memory");
    W->P = P;
    const mlmx_model *md = P->md;
    const size_t n = md->n ? md->n : 1;
    int qm = 1;
    for (int k = 0; k < md->K; k++)
        qm = md->re[k].q > qm ? md->re[k].q : qm;
    W->qmax = qm;
    W->y = malloc(n * sizeof *W->y);
    W->b = malloc((size_t)(P->nu_total ? P->nu_total : 1) * sizeof *W->b);
    W->u = malloc((size_t)(P->nu_total ? P->nu_total : 1) * sizeof *W->u);
    W->tm = calloc((size_t)md->K * (size_t)qm * (size_t)qm, sizeof *W->tm);
    W->params = calloc((size_t)P->nparams, sizeof *W->params);
    W->theta = calloc((size_t)(P->ntheta ? P->ntheta : 1), sizeof *W->theta);
    W->beta = calloc((size_t)(P->p ? P->p : 1), sizeof *W->beta);
    W->se = calloc((size_t)(P->p ? P->p : 1), sizeof *W->se);
    mlmx_status st = MLMX_OK;
    if (!W->y || !W->b || !W->u || !W->tm || !W->params || !W->theta || !W->beta || !W->se)
        st = mlmx_err_set(e, MLMX_ERR_NOMEM, "out of memory");
    if (!st)
        st = P->glmm ? mlmx_rep_glmm_ws_init(W, e) : mlmx_rep_lmm_ws_init(W, e);
    if (st) {
        mlmx_workspace_free(W);
        return st;
    }
    *out = W;
    return MLMX_OK;
}

mlmx_status mlmx_workspace_create(const mlmx_problem *P, mlmx_workspace **out)
{
    mlmx_api_clear();
    if (!P || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_workspace_create: NULL argument");
    mlmx_error e;
    mlmx_err_clear(&e);
    if (ws_create(P, out, &e) != MLMX_OK)
        return mlmx_api_fail(&e);
    return MLMX_OK;
}

mlmx_status mlmx_workspace_set_response(mlmx_workspace *W, const double *y)
{
    mlmx_api_clear();
    if (!W || !y)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_workspace_set_response: NULL argument");
    const mlmx_problem *P = W->P;
    const size_t n = P->md->n;
    mlmx_error e;
    mlmx_err_clear(&e);
    W->have_response = 0;
    W->have_fit = 0;
    if (P->glmm) {
        mlmx_status st = mlmx_rep_glmm_set_response(W, y, &e);
        if (st)
            return mlmx_api_fail(&e);
    } else {
        for (size_t i = 0; i < n; i++)
            if (!isfinite(y[i]))
                return mlmx_api_failf(MLMX_ERR_DATA, "response value %zu is not finite", i + 1);
        memcpy(W->y, y, n * sizeof *y);
        mlmx_lmm_vals_set_response(P->s, &W->w->v, W->y);
        if (P->md->resid && mlmx_rep_resid_set_response(W, &e) != MLMX_OK)
            return mlmx_api_fail(&e);
    }
    W->have_response = 1;
    return MLMX_OK;
}

/* eta without the residual: offset + X beta + sum_k Z_k b_k, with b_k = s T_k u
 * and u drawn from stream 0 (terms in order, level-major). */
static void simulate_eta(mlmx_workspace *W, mlmx_rng *r, double scale, double *eta)
{
    const mlmx_problem *P = W->P;
    const mlmx_model *md = P->md;
    const size_t n = md->n;
    size_t off = 0;
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *t = &md->re[k];
        double *T = W->tm + (size_t)k * (size_t)W->qmax * (size_t)W->qmax;
        mlmx_cm_theta_to_t(t->q, P->theta + t->theta_offset, T);
        for (int l = 0; l < t->nlevels; l++) {
            double *u = W->u + off, *b = W->b + off;
            for (int c = 0; c < t->q; c++)
                u[c] = mlmx_rng_normal(r);
            mlmx_cm_lower_mv(t->q, T, u, b);
            for (int c = 0; c < t->q; c++)
                b[c] *= scale;
            off += (size_t)t->q;
        }
    }
    for (size_t i = 0; i < n; i++)
        eta[i] = md->offset ? md->offset[i] : 0.0;
    for (int j = 0; j < P->p; j++) {
        if (P->family == MLMX_FAMILY_ORDINAL && strcmp(md->fixef_names[j], "(Intercept)") == 0)
            continue;
        const double *x = md->X + (size_t)j * n, bj = P->beta[j];
        for (size_t i = 0; i < n; i++)
            eta[i] += x[i] * bj;
    }
    off = 0;
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *t = &md->re[k];
        for (size_t i = 0; i < n; i++) {
            const double *b = W->b + off + (size_t)t->codes[i] * (size_t)t->q;
            const double *z = t->z + i * (size_t)t->q;
            double s = 0.0;
            for (int c = 0; c < t->q; c++)
                s += z[c] * b[c];
            eta[i] += s;
        }
        off += (size_t)t->nlevels * (size_t)t->q;
    }
}

mlmx_status mlmx_workspace_simulate(mlmx_workspace *W, uint64_t seed, uint64_t replicate,
                                    double *y)
{
    mlmx_api_clear();
    if (!W)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_workspace_simulate: NULL workspace");
    const mlmx_problem *P = W->P;
    const size_t n = P->md->n;
    mlmx_rng r;
    mlmx_rng_init(&r, seed, replicate, 0);
    double *eta = W->y; /* the response is built in place over its predictor */
    simulate_eta(W, &r, P->glmm ? 1.0 : P->sigma, eta);
    mlmx_rng_init(&r, seed, replicate, 1);
    const double *trials = P->glmm ? mlmx_rep_glmm_trials(W) : NULL;
    const int ncat = P->family == MLMX_FAMILY_ORDINAL ? P->nextra + 1 : 0;
    const double size = P->family == MLMX_FAMILY_NEGBIN ? P->extra[0] : 0.0;
    if (P->md->resid) {
        /* correlated or heteroscedastic residuals, sigma^2 R */
        double *eps = mlmx_rep_resid_eps(W);
        mlmx_rep_resid_draw(P, &r, eps);
        for (size_t i = 0; i < n; i++)
            eta[i] += P->sigma * eps[i];
    } else {
        for (size_t i = 0; i < n; i++)
            eta[i] = mlmx_sim_response((int)P->family, (int)P->link, eta[i], P->sigma,
                                       trials ? trials[i] : 1.0, size, ncat, P->extra, &r);
    }
    if (y)
        memcpy(y, eta, n * sizeof *y);
    mlmx_status st = mlmx_workspace_set_response(W, eta);
    return st;
}

mlmx_status mlmx_workspace_fit(mlmx_workspace *W, int want_se)
{
    mlmx_api_clear();
    if (!W)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_workspace_fit: NULL workspace");
    if (!W->have_response)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_workspace_fit: no response set");
    mlmx_error e;
    mlmx_err_clear(&e);
    W->have_fit = 0;
    mlmx_status st = W->P->glmm ? mlmx_rep_glmm_fit(W, want_se, &e) : mlmx_rep_lmm_fit(W, &e);
    if (st)
        return mlmx_api_fail(&e);
    W->have_fit = 1;
    return MLMX_OK;
}

const double *mlmx_workspace_params(const mlmx_workspace *w) { return w ? w->params : NULL; }
const double *mlmx_workspace_theta(const mlmx_workspace *w) { return w ? w->theta : NULL; }
const double *mlmx_workspace_beta(const mlmx_workspace *w) { return w ? w->beta : NULL; }
const double *mlmx_workspace_se(const mlmx_workspace *w) { return w ? w->se : NULL; }
double mlmx_workspace_criterion(const mlmx_workspace *w) { return w ? w->criterion : NAN; }
int mlmx_workspace_converged(const mlmx_workspace *w) { return w ? w->converged : 0; }
int mlmx_workspace_singular(const mlmx_workspace *w) { return w ? w->singular : 0; }
int mlmx_workspace_n_evaluations(const mlmx_workspace *w) { return w ? w->n_evals : 0; }
