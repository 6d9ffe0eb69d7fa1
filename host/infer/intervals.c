/* nlme's approximate intervals (intervals.lme): the fixed effects by t on
 * the containment df (host/infer/containment.c); the variance components,
 * the residual structure's parameters and sigma by the normal
 * approximation on nlme's unconstrained scales, from the Hessian of the
 * full (restricted) log-likelihood there (lmeApVar): log SDs, correlations
 * as log((1 + r) / (1 - r)), log sigma, and the residual structure's own
 * transforms (ar1 log((1 + phi) / (1 - phi)); car1 log(phi / (1 - phi));
 * cs log((rho + 1 / (m - 1)) / (1 - rho)), m the largest group; arma the
 * partial autocorrelations' log((1 + k) / (1 - k)), the MA ones with nlme's
 * sign; ident log delta; power delta). Each bound vector is mapped back
 * whole, as nlme does. mlmx's Hessian is by central differences of its
 * criterion (nlme's by fdHess): the bounds agree to about 1e-4. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "infer/confint.h"
#include "infer/infer.h"
#include "lmm/rlmm.h"
#include "power/power.h"

typedef struct iv_ctx {
    const mlmx_fit *f;
    const mlmx_model *m;
    mlmx_lmm_stats *s;
    mlmx_lmm_work *w;
    mlmx_rlmm *rl;
    int nt, nr, ne;   /* theta entries, residual parameters, eta entries */
    double *v, *th, *x;
} iv_ctx;

static double logit2(double u) { return log((1.0 + u) / (1.0 - u)); }
static double unlogit2(double e) { return tanh(0.5 * e); }

/* A theta position that holds an SD (the template's diagonal). */
static int is_diag(const mlmx_model *m, int t) { return m->theta_lower[t] == 0.0; }

/* The residual parameters between mlmx's optimizer scale x and nlme's
 * unconstrained eta. */
static void res_to_eta(const mlmx_resid *r, const double *x, const double *nat, double *e)
{
    for (int k = 0; k < r->npar; k++) {
        if (k >= r->ncorr)
            e[k] = r->var == MLMX_VAR_IDENT ? x[k] : nat[k]; /* log delta; power */
        else if (r->corr == MLMX_CORR_CAR1)
            e[k] = log(nat[0] / (1.0 - nat[0]));
        else if (r->corr == MLMX_CORR_CS)
            e[k] = log((nat[0] + 1.0 / (r->max_gsize - 1)) / (1.0 - nat[0]));
        else if (r->corr == MLMX_CORR_ARMA)
            e[k] = (k < r->arma_p ? 1.0 : -1.0) * logit2(x[k]);
        else
            e[k] = logit2(nat[0]);
    }
}

static void eta_to_res(const mlmx_resid *r, const double *e, double *x)
{
    for (int k = 0; k < r->npar; k++) {
        if (k >= r->ncorr) {
            x[k] = e[k];
        } else if (r->corr == MLMX_CORR_CAR1) {
            x[k] = 1.0 / (1.0 + exp(-e[k]));
        } else if (r->corr == MLMX_CORR_CS) {
            const double a = 1.0 / (r->max_gsize - 1), z = exp(e[k]);
            x[k] = (z - a) / (1.0 + z);
        } else if (r->corr == MLMX_CORR_ARMA) {
            x[k] = (k < r->arma_p ? 1.0 : -1.0) * unlogit2(e[k]);
        } else {
            x[k] = unlogit2(e[k]);
        }
    }
}

/* -2 log-likelihood (restricted for REML), sigma not profiled, at eta. */
static double deviance_at(iv_ctx *c, const double *eta)
{
    const mlmx_model *m = c->m;
    for (int t = 0; t < c->nt; t++)
        c->v[t] = is_diag(m, t) ? exp(eta[t]) : unlogit2(eta[t]);
    const double sg = exp(eta[c->ne - 1]), s2 = sg * sg;
    mlmx_sdcor_to_theta(m, c->v, sg, c->th);
    mlmx_error e;
    mlmx_err_clear(&e);
    double ldr = 0.0, crit;
    if (c->rl) {
        eta_to_res(m->resid, eta + c->nt, c->x);
        if (mlmx_rlmm_set(c->rl, c->x, &c->w->v, &ldr, &e) != MLMX_OK)
            return NAN;
    }
    if (mlmx_lmm_eval(c->s, mlmx_backend_cpu(), c->th, 0, c->w, &crit, &e) != MLMX_OK)
        return NAN;
    const int reml = c->f->method == MLMX_REML;
    const double nn = (double)m->n - (reml ? m->p : 0);
    return c->w->logdet_z + (reml ? c->w->logdet_x : 0.0) + c->w->r2 / s2 +
           nn * log(6.283185307179586 * s2) + ldr;
}

/* The Hessian of -log L = D / 2 over eta by central differences with steps
 * h max(|eta|, 1). */
static mlmx_status hessian_h(iv_ctx *c, const double *eta, double d0, double h, double *e,
                             double *H)
{
    const int n = c->ne;
    for (int i = 0; i < n; i++) {
        const double hi = h * fmax(fabs(eta[i]), 1.0);
        for (int j = 0; j <= i; j++) {
            const double hj = h * fmax(fabs(eta[j]), 1.0);
            const double si[4] = {1, 1, -1, -1}, sj[4] = {1, -1, 1, -1};
            double d[4];
            for (int k = 0; k < 4; k++) {
                memcpy(e, eta, (size_t)n * sizeof *e);
                if (i == j && k % 2) {
                    d[k] = d0;
                    continue;
                }
                e[i] += si[k] * hi;
                if (i != j)
                    e[j] += sj[k] * hj;
                d[k] = deviance_at(c, e);
                if (!isfinite(d[k]))
                    return MLMX_ERR_NUMERIC;
            }
            const double h2 = i == j ? (d[0] - 2.0 * d0 + d[2]) / (hi * hi)
                                     : (d[0] - d[1] - d[2] + d[3]) / (4.0 * hi * hj);
            H[i + j * n] = H[j + i * n] = 0.5 * h2;
        }
    }
    return MLMX_OK;
}

/* V = (Hessian of -log L)^{-1} over eta: central differences at steps
 * 2e-3 and 1e-3 (relative to max(|eta|, 1)) with one Richardson step. The
 * deviance's rounding (about 1e-13 of its size) over h^2 limits smaller
 * steps: at 1e-5 the bounds are off by 0.1. */
static mlmx_status eta_covariance(iv_ctx *c, const double *eta, double *V)
{
    const int n = c->ne;
    double *e = malloc((size_t)(n + n * n) * sizeof *e), *H = V, *H2 = e + n;
    if (!e)
        return MLMX_ERR_NOMEM;
    const double d0 = deviance_at(c, eta);
    mlmx_status st = isfinite(d0) ? MLMX_OK : MLMX_ERR_NUMERIC;
    if (!st)
        st = hessian_h(c, eta, d0, 2e-3, e, H);
    if (!st)
        st = hessian_h(c, eta, d0, 1e-3, e, H2);
    for (int i = 0; !st && i < n * n; i++)
        H[i] = (4.0 * H2[i] - H[i]) / 3.0;
    free(e);
    if (st)
        return st;
    double *A = malloc((size_t)n * (size_t)n * sizeof *A);
    if (!A)
        return MLMX_ERR_NOMEM;
    memcpy(A, H, (size_t)n * (size_t)n * sizeof *A);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++)
            V[i + j * n] = i == j;
    st = mlmx_spd_solve(n, A, V, n) ? MLMX_ERR_NUMERIC : MLMX_OK;
    free(A);
    return st;
}

static void iv_free(iv_ctx *c)
{
    mlmx_rlmm_free(c->rl);
    mlmx_lmm_work_free(c->w);
    mlmx_lmm_stats_free(c->s);
    free(c->v);
}

/* The bound vector b (eta scale) back to nlme's parameters, written to
 * out[0..nt+nr] (SDs and correlations, residual parameters, sigma). */
static void eta_back(const iv_ctx *c, const double *b, double *out)
{
    for (int t = 0; t < c->nt; t++)
        out[t] = is_diag(c->m, t) ? exp(b[t]) : unlogit2(b[t]);
    if (c->nr) {
        eta_to_res(c->m->resid, b + c->nt, c->x);
        mlmx_resid_natural(c->m->resid, c->x, out + c->nt);
    }
    out[c->nt + c->nr] = exp(b[c->ne - 1]);
}

static mlmx_status iv_check(const mlmx_fit *f, mlmx_error *err)
{
    const mlmx_model *m = f->model;
    if (f->family != MLMX_FAMILY_GAUSSIAN)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "nlme's intervals are for linear mixed "
                                                       "models");
    if (m->nstructured)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "nlme's intervals: not available with a structured random-effect "
                            "covariance");
    double *v = malloc((size_t)(m->ntheta ? m->ntheta : 1) * sizeof *v);
    if (!v)
        return MLMX_ERR_NOMEM;
    mlmx_theta_to_sdcor(m, f->theta, f->sigma, v);
    mlmx_status st = MLMX_OK;
    for (int t = 0; t < m->ntheta && !st; t++)
        if (is_diag(m, t) ? !(v[t] > 1e-8 * f->sigma) : !(fabs(v[t]) < 1.0 - 1e-10))
            st = mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                              "nlme's intervals: %s is on its boundary (%g), where the "
                              "log-scale normal approximation does not apply (a singular fit)",
                              m->theta_names[t], v[t]);
    free(v);
    return st;
}

static mlmx_status iv_prepare(iv_ctx *c, const mlmx_fit *f, mlmx_error *err)
{
    const mlmx_model *m = f->model;
    memset(c, 0, sizeof *c);
    c->f = f;
    c->m = m;
    c->nt = m->ntheta;
    c->nr = m->resid ? m->resid->npar : 0;
    c->ne = c->nt + c->nr + 1;
    mlmx_status st = mlmx_lmm_stats_build(m, &c->s, err);
    if (!st)
        st = mlmx_lmm_work_alloc(c->s, &c->w, err);
    if (!st && m->resid)
        st = mlmx_rlmm_prepare(c->s, m->resid, &c->rl, err);
    if (!st) {
        c->v = malloc((size_t)(2 * c->nt + c->nr + 1) * sizeof *c->v);
        if (!c->v)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        c->th = c->v + c->nt;
        c->x = c->th + c->nt;
    }
    return st;
}

mlmx_status mlmx_nlme_intervals(const mlmx_fit *f, mlmx_confint *c, mlmx_error *err)
{
    const mlmx_model *m = f->model;
    mlmx_status st = iv_check(f, err);
    if (st)
        return st == MLMX_ERR_NOMEM ? mlmx_err_set(err, st, "out of memory") : st;
    iv_ctx x;
    st = iv_prepare(&x, f, err);
    const int ne = x.ne, nv = x.nt + x.nr + 1;
    double *eta = malloc((size_t)(3 * ne + ne * ne) * sizeof *eta);
    double *lo = eta + ne, *hi = lo + ne, *V = hi + ne;
    if (!st && !eta)
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    if (!st) {
        mlmx_theta_to_sdcor(m, f->theta, f->sigma, x.v);
        for (int t = 0; t < x.nt; t++)
            eta[t] = is_diag(m, t) ? log(x.v[t]) : logit2(x.v[t]);
        if (x.nr) {
            st = mlmx_resid_from_natural(m->resid, f->rpar, x.x, err);
            if (!st)
                res_to_eta(m->resid, x.x, f->rpar, eta + x.nt);
        }
        eta[ne - 1] = log(f->sigma);
    }
    if (!st && (st = eta_covariance(&x, eta, V)))
        mlmx_err_set(err, st, "nlme's intervals: the approximate covariance of the variance "
                              "parameters is not positive definite");
    if (!st) {
        const double z = mlmx_pw_qnorm(0.5 + 0.5 * c->level);
        for (int i = 0; i < ne; i++) {
            const double half = z * sqrt(V[i + i * ne]);
            lo[i] = eta[i] - half;
            hi[i] = eta[i] + half;
        }
        eta_back(&x, lo, c->lo);
        eta_back(&x, hi, c->hi);
        /* the fixed effects: t on the containment df, nlme's varFix */
        double *df = malloc((size_t)(m->p + 1) * sizeof *df);
        if (!df || mlmx_containment_df(m, df, NULL, err) != MLMX_OK) {
            st = df ? err->code : mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        } else {
            for (int j = 0; j < m->p; j++) {
                const double half = mlmx_pw_qt(0.5 + 0.5 * c->level, df[j]) * f->se[j];
                c->lo[nv + j] = f->beta[j] - half;
                c->hi[nv + j] = f->beta[j] + half;
            }
        }
        free(df);
    }
    free(eta);
    iv_free(&x);
    return st;
}
