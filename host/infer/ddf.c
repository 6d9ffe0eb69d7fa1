/* Satterthwaite's degrees of freedom for an LMM's fixed effects, as
 * lmerTest computes them (Kuznetsova, Brockhoff & Christensen 2017), with
 * the core's analytic gradient where lmerTest differentiates numerically:
 *
 *   varpar = (theta, sigma); D(varpar) the unprofiled deviance
 *     ML:   log|L|^2 + r^2/sigma^2 + n log(2 pi sigma^2)
 *     REML: log|L|^2 + log|R_X|^2 + r^2/sigma^2 + (n - p) log(2 pi sigma^2)
 *   (r^2 the penalized residual sum of squares at theta); A = 2 H^{-1},
 *   H the Hessian of D at the estimates: the asymptotic covariance of
 *   varpar;
 *   V(varpar) = sigma^2 (R_X^T R_X)^{-1}(theta), the covariance of beta;
 *   for a contrast L: df = 2 (L^T V L)^2 / (g^T A g), g_k = L^T dV/dvarpar_k L.
 *
 * Derivatives: dD/dtheta is analytic (the core's d log|M| and d r^2,
 * lmm/grad.c), and its Jacobian in theta is taken by central differences
 * with one Richardson step; the sigma rows of H are analytic; dV/dtheta
 * by Richardson-extrapolated central differences of (R_X^T R_X)^{-1}.
 * At a fit with a variance at 0 the gradient needs an invertible template:
 * there H comes from second differences of D (hessian_boundary), through
 * the boundary as lmerTest's numDeriv. */
#define _POSIX_C_SOURCE 200809L /* M_PI */
#define _DEFAULT_SOURCE
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "backend/backend.h"
#include "infer/infer.h"
#include "lmm/fit.h"
#include "lmm/lmm.h"

typedef mlmx_ddf_state ddf_state;

typedef struct ddf_eval {
    const mlmx_fit *f;
    mlmx_lmm_stats *s;
    mlmx_lmm_work *w;
    int reml;
    double *th, *g1, *g2, *d1, *d2, *e0, *e1; /* scratch: nt each */
} ddf_eval;

static mlmx_status at_theta(ddf_eval *e, const double *theta)
{
    double crit;
    mlmx_error err;
    mlmx_err_clear(&err);
    return mlmx_lmm_eval(e->s, mlmx_backend_cpu(), theta, e->reml, e->w, &crit, &err);
}

/* dD/dtheta at (theta, sigma). */
static mlmx_status dD_dtheta(ddf_eval *e, const double *theta, double sigma, double *g)
{
    mlmx_status st = at_theta(e, theta);
    if (!st)
        st = mlmx_lmm_grad_parts(e->s, e->w, e->reml, g, e->d2);
    for (int t = 0; !st && t < e->s->model->ntheta; t++)
        g[t] += e->d2[t] / (sigma * sigma);
    return st;
}

/* Step for theta entry t: relative, with a floor near 0 (numDeriv's d). */
static double step_of(double x) { return 1e-4 * fmax(fabs(x), 0.1); }

/* H's theta block by central differences of the analytic gradient with one
 * Richardson step ((4 D(h/2) - D(h)) / 3), symmetrised; sigma rows exact. */
static mlmx_status hessian(ddf_eval *e, double *H)
{
    const mlmx_fit *f = e->f;
    const int nt = f->model->ntheta, nv = nt + 1;
    const double sg = f->sigma;
    for (int j = 0; j < nt; j++) {
        double *est[2] = {e->e0, e->e1};
        for (int r = 0; r < 2; r++) {
            const double h = step_of(f->theta[j]) / (r ? 2.0 : 1.0);
            memcpy(e->th, f->theta, (size_t)nt * sizeof *e->th);
            e->th[j] = f->theta[j] + h;
            mlmx_status st = dD_dtheta(e, e->th, sg, e->g1);
            e->th[j] = f->theta[j] - h;
            if (!st)
                st = dD_dtheta(e, e->th, sg, e->g2);
            if (st)
                return st;
            for (int i = 0; i < nt; i++)
                est[r][i] = (e->g1[i] - e->g2[i]) / (2.0 * h);
        }
        for (int i = 0; i < nt; i++)
            H[i + j * nv] = (4.0 * est[1][i] - est[0][i]) / 3.0;
    }
    for (int j = 0; j < nt; j++)
        for (int i = 0; i < j; i++)
            H[i + j * nv] = H[j + i * nv] = 0.5 * (H[i + j * nv] + H[j + i * nv]);
    /* d2D/dtheta dsigma = -2 d(r^2)/dtheta / sigma^3; d2D/dsigma^2 =
     * 6 r^2 / sigma^4 - 2 c / sigma^2 (c = n - p for REML, n for ML) */
    mlmx_status st = at_theta(e, f->theta);
    if (!st)
        st = mlmx_lmm_grad_parts(e->s, e->w, e->reml, e->d1, e->d2);
    if (st)
        return st;
    const double c = (double)f->model->n - (e->reml ? f->model->p : 0);
    for (int i = 0; i < nt; i++)
        H[i + nt * nv] = H[nt + i * nv] = -2.0 * e->d2[i] / (sg * sg * sg);
    H[nt + nt * nv] = 6.0 * e->w->r2 / (sg * sg * sg * sg) - 2.0 * c / (sg * sg);
    return MLMX_OK;
}

/* The unprofiled deviance D(theta, sigma) (the header's definition) and
 * r^2 at theta. */
static mlmx_status deviance_at(ddf_eval *e, const double *theta, double sigma, double *D,
                               double *r2)
{
    mlmx_status st = at_theta(e, theta);
    const mlmx_model *m = e->f->model;
    const double c = (double)m->n - (e->reml ? m->p : 0), s2 = sigma * sigma;
    *r2 = e->w->r2;
    *D = e->w->logdet_z + (e->reml ? e->w->logdet_x : 0.0) + e->w->r2 / s2 +
         c * log(2.0 * M_PI * s2);
    return st;
}

/* D and r^2 at theta moved by hj along j and hk along k (k < 0: none). */
static mlmx_status moved(ddf_eval *e, int j, double hj, int k, double hk, double *D, double *r2)
{
    const mlmx_fit *f = e->f;
    memcpy(e->th, f->theta, (size_t)f->model->ntheta * sizeof *e->th);
    e->th[j] += hj;
    if (k >= 0)
        e->th[k] += hk;
    return deviance_at(e, e->th, f->sigma, D, r2);
}

/* H's theta block and sigma column at a boundary fit (a variance at 0,
 * where the analytic gradient needs an invertible template): second
 * central differences of D, and of r^2 for the sigma column, each with
 * one Richardson step; steps 1e-2 max(|theta|, 0.1) (D's rounding over
 * h^2 stays below 1e-6). lmerTest differentiates through the boundary the
 * same way (numDeriv on both sides of theta = 0). */
static mlmx_status hessian_boundary(ddf_eval *e, double *H)
{
    const mlmx_fit *f = e->f;
    const int nt = f->model->ntheta, nv = nt + 1;
    const double sg = f->sigma;
    double D0 = 0, r0 = 0, a = 0, b = 0, c = 0, d = 0, ra = 0, rb = 0, rc = 0, rd = 0;
    mlmx_status st = deviance_at(e, f->theta, sg, &D0, &r0);
    for (int j = 0; !st && j < nt; j++)
        for (int k = 0; !st && k <= j; k++) {
            double est[2], dr[2];
            for (int r = 0; r < 2 && !st; r++) {
                const double hj = 1e-2 * fmax(fabs(f->theta[j]), 0.1) / (r ? 2.0 : 1.0);
                const double hk = 1e-2 * fmax(fabs(f->theta[k]), 0.1) / (r ? 2.0 : 1.0);
                if (j == k) {
                    st = moved(e, j, hj, -1, 0.0, &a, &ra);
                    if (!st)
                        st = moved(e, j, -hj, -1, 0.0, &b, &rb);
                    est[r] = (a - 2.0 * D0 + b) / (hj * hj);
                    dr[r] = (ra - rb) / (2.0 * hj);
                } else {
                    st = moved(e, j, hj, k, hk, &a, &ra);
                    if (!st)
                        st = moved(e, j, hj, k, -hk, &b, &rb);
                    if (!st)
                        st = moved(e, j, -hj, k, hk, &c, &rc);
                    if (!st)
                        st = moved(e, j, -hj, k, -hk, &d, &rd);
                    est[r] = (a - b - c + d) / (4.0 * hj * hk);
                }
            }
            H[j + k * nv] = H[k + j * nv] = (4.0 * est[1] - est[0]) / 3.0;
            if (j == k) /* d2D/dtheta dsigma = -2 d(r^2)/dtheta / sigma^3 */
                H[j + nt * nv] = H[nt + j * nv] = -2.0 * ((4.0 * dr[1] - dr[0]) / 3.0) / (sg * sg * sg);
        }
    const double cc = (double)f->model->n - (e->reml ? f->model->p : 0);
    H[nt + nt * nv] = 6.0 * r0 / (sg * sg * sg * sg) - 2.0 * cc / (sg * sg);
    return st;
}

/* A fit with a variance at 0. */
static int at_boundary(const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    for (int k = 0; k < m->K; k++) {
        const int q = m->re[k].q;
        const double *th = f->theta + m->re[k].theta_offset;
        for (int c = 0, t = 0; c < q; c++)
            for (int a = c; a < q; a++, t++)
                if (a == c && !(th[t] > 1e-8))
                    return 1;
    }
    return 0;
}

/* dV/dtheta_j: Richardson-extrapolated central differences of sigma^2
 * (R_X^T R_X)^{-1}; dV/dsigma = 2 V / sigma. C1, C2 scratch p * p. */
static mlmx_status jacobian(ddf_eval *e, const ddf_state *S, double *C1, double *C2)
{
    const mlmx_fit *f = e->f;
    const int nt = S->nt, pp = S->p * S->p;
    const double s2 = f->sigma * f->sigma;
    for (int j = 0; j < nt; j++) {
        double *Jj = S->J + (size_t)j * pp;
        for (int r = 0; r < 2; r++) {
            const double h = step_of(f->theta[j]) / (r ? 2.0 : 1.0);
            memcpy(e->th, f->theta, (size_t)nt * sizeof *e->th);
            e->th[j] = f->theta[j] + h;
            mlmx_status st = at_theta(e, e->th);
            if (!st)
                st = mlmx_lmm_rx_inverse(e->s, e->w, C1);
            e->th[j] = f->theta[j] - h;
            if (!st)
                st = at_theta(e, e->th);
            if (!st)
                st = mlmx_lmm_rx_inverse(e->s, e->w, C2);
            if (st)
                return st;
            for (int a = 0; a < pp; a++) {
                const double d = s2 * (C1[a] - C2[a]) / (2.0 * h);
                Jj[a] = r ? (4.0 * d - Jj[a]) / 3.0 : d;
            }
        }
    }
    for (int a = 0; a < pp; a++)
        S->J[(size_t)nt * pp + a] = 2.0 * S->V[a] / f->sigma;
    return MLMX_OK;
}

/* A = 2 H^{-1} (H overwritten). */
static mlmx_status covariance_of_varpar(int nv, double *H, double *A)
{
    lapack_int *ipiv = malloc((size_t)nv * sizeof *ipiv);
    if (!ipiv)
        return MLMX_ERR_NOMEM;
    for (int j = 0; j < nv; j++)
        for (int i = 0; i < nv; i++)
            A[i + j * nv] = i == j ? 2.0 : 0.0;
    const lapack_int info = LAPACKE_dgesv(LAPACK_COL_MAJOR, nv, nv, H, nv, ipiv, A, nv);
    free(ipiv);
    return info == 0 ? MLMX_OK : MLMX_ERR_NUMERIC;
}

void mlmx_ddf_free(ddf_state *S)
{
    free(S->A);
    free(S->J);
    free(S->V);
}

static void eval_free(ddf_eval *e)
{
    mlmx_lmm_work_free(e->w);
    mlmx_lmm_stats_free(e->s);
    free(e->th);
}

mlmx_status mlmx_infer_iid(const mlmx_fit *f, const char *what)
{
    if (!f->model->resid)
        return MLMX_OK;
    return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                          "%s: not available yet for a model with a residual correlation or "
                          "variance structure (docs/longitudinal.md lists what is)",
                          what);
}

/* The refusals, with the reason recorded. */
static mlmx_status check_fit(const mlmx_fit *f, const char *what)
{
    if (mlmx_infer_iid(f, what))
        return MLMX_ERR_UNSUPPORTED;
    if (f->family != MLMX_FAMILY_GAUSSIAN)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "%s: for linear mixed models only (a GLMM has Wald z tests)", what);
    return mlmx_api_require_unstructured(f->model, what);
}

mlmx_status mlmx_ddf_prepare(const mlmx_fit *f, const char *what, ddf_state *S)
{
    memset(S, 0, sizeof *S);
    mlmx_status st = check_fit(f, what);
    if (st)
        return st;
    const mlmx_model *m = f->model;
    const int nt = m->ntheta, nv = nt + 1, p = m->p;
    S->nt = nt;
    S->nv = nv;
    S->p = p;
    ddf_eval e = {f, NULL, NULL, f->method == MLMX_REML, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    mlmx_error err;
    mlmx_err_clear(&err);
    st = mlmx_lmm_stats_build(m, &e.s, &err);
    if (!st)
        st = mlmx_lmm_work_alloc(e.s, &e.w, &err);
    double *H = NULL, *C = NULL;
    if (!st) {
        e.th = malloc((size_t)7 * nt * sizeof *e.th);
        H = malloc((size_t)nv * nv * sizeof *H);
        C = malloc((size_t)2 * p * p * sizeof *C);
        S->A = malloc((size_t)nv * nv * sizeof *S->A);
        S->J = malloc((size_t)nv * p * p * sizeof *S->J);
        S->V = malloc((size_t)p * p * sizeof *S->V);
        if (!e.th || !H || !C || !S->A || !S->J || !S->V)
            st = MLMX_ERR_NOMEM;
    }
    if (!st) {
        e.g1 = e.th + nt;
        e.g2 = e.g1 + nt;
        e.d1 = e.g2 + nt;
        e.d2 = e.d1 + nt;
        e.e0 = e.d2 + nt;
        e.e1 = e.e0 + nt;
        memcpy(S->V, f->vcov, (size_t)p * p * sizeof *S->V);
        st = at_boundary(f) ? hessian_boundary(&e, H) : hessian(&e, H);
    }
    if (!st)
        st = covariance_of_varpar(nv, H, S->A);
    if (!st)
        st = jacobian(&e, S, C, C + (size_t)p * p);
    free(H);
    free(C);
    eval_free(&e);
    if (st) {
        mlmx_ddf_free(S);
        return mlmx_api_failf(st, st == MLMX_ERR_NOMEM ? "out of memory"
                                                        : "%s: %s",
                              what, err.msg[0] ? err.msg : "the deviance's Hessian is singular");
    }
    return MLMX_OK;
}

/* df of the contrast L (p values) from the prepared state. */
double mlmx_ddf_contrast(const ddf_state *S, const double *L, double *var)
{
    const int p = S->p, nv = S->nv;
    double *g = malloc((size_t)nv * sizeof *g), v = 0.0;
    if (!g) {
        *var = NAN;
        return NAN;
    }
    for (int k = 0; k <= nv; k++) {
        const double *M = k < nv ? S->J + (size_t)k * p * p : S->V;
        double x = 0.0;
        for (int b = 0; b < p; b++)
            for (int a = 0; a < p; a++)
                x += L[a] * M[a + b * p] * L[b];
        if (k < nv)
            g[k] = x;
        else
            v = x;
    }
    double q = 0.0;
    for (int j = 0; j < nv; j++)
        for (int i = 0; i < nv; i++)
            q += g[i] * S->A[i + j * nv] * g[j];
    free(g);
    *var = v;
    return 2.0 * v * v / q;
}

static void state_destroy(void *p)
{
    mlmx_ddf_free(p);
    free(p);
}

mlmx_status mlmx_ddf_acquire(const mlmx_fit *f, const char *what, const mlmx_ddf_state **out,
                             mlmx_ddf_state **owned)
{
    *owned = NULL;
    mlmx_fit_cache *c = f->cache;
    void *have = c ? __atomic_load_n(&c->ddf, __ATOMIC_ACQUIRE) : NULL;
    if (have) {
        *out = have;
        return MLMX_OK;
    }
    mlmx_ddf_state *S = malloc(sizeof *S);
    if (!S)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_status st = mlmx_ddf_prepare(f, what, S);
    if (st) {
        free(S);
        return st;
    }
    void *expected = NULL;
    if (c) {
        __atomic_store_n(&c->free_ddf, state_destroy, __ATOMIC_RELEASE);
        if (!__atomic_compare_exchange_n(&c->ddf, &expected, S, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
            state_destroy(S); /* another thread cached one first */
            *out = expected;
            return MLMX_OK;
        }
        *out = S;
        return MLMX_OK;
    }
    *out = *owned = S;
    return MLMX_OK;
}

void mlmx_ddf_release(mlmx_ddf_state *owned)
{
    if (owned)
        state_destroy(owned);
}

mlmx_status mlmx_fit_satterthwaite(const mlmx_fit *f, const double *L, double *df)
{
    mlmx_api_clear();
    if (!f || !L || !df)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_satterthwaite: bad argument");
    const ddf_state *S;
    ddf_state *owned;
    mlmx_status st = mlmx_ddf_acquire(f, "Satterthwaite degrees of freedom", &S, &owned);
    if (st)
        return st;
    double var;
    *df = mlmx_ddf_contrast(S, L, &var);
    mlmx_ddf_release(owned);
    return MLMX_OK;
}

mlmx_status mlmx_fit_coef_tests(const mlmx_fit *f, double *df, double *t, double *p)
{
    mlmx_api_clear();
    if (!f || !df || !t || !p)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_coef_tests: bad argument");
    double *se = malloc(((size_t)f->model->p + 1) * sizeof *se);
    if (!se)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_status st = mlmx_fit_coef_tests_ddf(f, MLMX_DDF_SATTERTHWAITE, se, df, t, p);
    free(se);
    return st;
}
