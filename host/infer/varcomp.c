/* Standard errors and Wald intervals of an LMM's variance components, as
 * Stata's mixed prints them, and of its cumulative ICCs (estat icc):
 * the delta method on the covariance of (theta, sigma), A = 2 H^{-1} with
 * H the Hessian of the REML or ML deviance (ddf.c, lmerTest's
 * vcov_varpar). The derivative of each reported quantity in (theta,
 * sigma) is a Richardson-extrapolated central difference of the same
 * functions that report it (mlmx_fit_term_covariance, mlmx_fit_icc_term),
 * evaluated on a copy of the fit with the parameters moved. Intervals:
 * a standard deviation or variance on the log scale, a correlation on
 * Fisher's z, a covariance plainly, an ICC on the logit scale. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "power/power.h"

/* What one quantity is: term k's entry (a, b) on the SD or variance scale
 * (k = -1: the residual), or the cumulative ICC of term k. */
typedef struct quantity {
    int kind; /* 0 SD/correlation, 1 variance/covariance, 2 ICC */
    int k, a, b;
} quantity;

static double value_at(const mlmx_fit *f, const quantity *Q, double *theta, double sigma)
{
    mlmx_fit g = *f; /* the fit's functions read theta and sigma from it */
    g.theta = theta;
    g.sigma = sigma;
    if (Q->kind == 2) {
        mlmx_icc icc;
        return mlmx_fit_icc_term(&g, Q->k, &icc) == MLMX_OK ? icc.icc_cumulative : NAN;
    }
    if (Q->k < 0)
        return Q->kind ? sigma * sigma : sigma;
    const int q = f->model->re[Q->k].q;
    double cov[16 * 16];
    if (mlmx_fit_term_covariance(&g, Q->k, cov) != MLMX_OK)
        return NAN;
    const double c = cov[Q->a + Q->b * q];
    if (Q->kind == 1)
        return c;
    return Q->a == Q->b ? sqrt(c) : c / sqrt(cov[Q->a + Q->a * q] * cov[Q->b + Q->b * q]);
}

/* The gradient in (theta, sigma) (nv values) by central differences with
 * one Richardson step. th: scratch of nv - 1. */
static void gradient(const mlmx_fit *f, const quantity *Q, int nv, double *th, double *g)
{
    const int nt = nv - 1;
    for (int j = 0; j < nv; j++) {
        const double x = j < nt ? f->theta[j] : f->sigma;
        double est[2];
        for (int r = 0; r < 2; r++) {
            const double h = 1e-4 * fmax(fabs(x), 0.1) / (r ? 2.0 : 1.0);
            double v[2];
            for (int s = 0; s < 2; s++) {
                memcpy(th, f->theta, (size_t)nt * sizeof *th);
                double sg = f->sigma;
                if (j < nt)
                    th[j] += s ? -h : h;
                else
                    sg += s ? -h : h;
                v[s] = value_at(f, Q, th, sg);
            }
            est[r] = (v[0] - v[1]) / (2.0 * h);
        }
        g[j] = (4.0 * est[1] - est[0]) / 3.0;
    }
}

/* Estimate, SE and interval of Q in out[4]. */
static void delta(const mlmx_fit *f, const mlmx_ddf_state *S, const quantity *Q, double z,
                  double *th, double *g, double *out)
{
    const int nv = S->nv;
    const double x = value_at(f, Q, f->theta, f->sigma);
    gradient(f, Q, nv, th, g);
    double v = 0.0;
    for (int j = 0; j < nv; j++)
        for (int i = 0; i < nv; i++)
            v += g[i] * S->A[i + j * nv] * g[j];
    const double se = sqrt(v);
    out[0] = x;
    out[1] = se;
    if (Q->kind == 2) { /* logit */
        const double l = log(x / (1.0 - x)), d = z * se / (x * (1.0 - x));
        out[2] = 1.0 / (1.0 + exp(-(l - d)));
        out[3] = 1.0 / (1.0 + exp(-(l + d)));
    } else if (Q->k < 0 || Q->a == Q->b) { /* log */
        out[2] = x * exp(-z * se / x);
        out[3] = x * exp(z * se / x);
    } else if (Q->kind == 0) { /* Fisher's z */
        const double a = atanh(x), d = z * se / (1.0 - x * x);
        out[2] = tanh(a - d);
        out[3] = tanh(a + d);
    } else {
        out[2] = x - z * se;
        out[3] = x + z * se;
    }
}

int mlmx_fit_nvarcomp(const mlmx_fit *f)
{
    return f ? f->model->ntheta + 1 : 0;
}

/* A variance at 0 has no log-scale interval (nor a delta-method SE of its
 * SD: |theta| is not differentiable there). */
static mlmx_status not_singular(const mlmx_fit *f, const char *what)
{
    return f->singular ? mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                                        "%s: the fit is singular (a variance component is at "
                                        "0), where the log-scale intervals are not defined",
                                        what)
                       : MLMX_OK;
}

static mlmx_status level_arg(double level, double *z)
{
    if (!(level > 0.0 && level < 1.0))
        return mlmx_api_failf(MLMX_ERR_ARG, "confidence level %g is not between 0 and 1", level);
    *z = mlmx_pw_qnorm(0.5 + 0.5 * level);
    return MLMX_OK;
}

/* The covariance of (theta, sigma) and 2 nv doubles of scratch in *th;
 * refusals (a singular fit, a GLMM) recorded naming what. */
static mlmx_status prepare(const mlmx_fit *f, const char *what, const mlmx_ddf_state **S,
                           mlmx_ddf_state **owned, double **th)
{
    mlmx_status st = not_singular(f, what);
    if (!st)
        st = mlmx_ddf_acquire(f, what, S, owned);
    if (st)
        return st;
    *th = malloc((size_t)(2 * (*S)->nv) * sizeof **th);
    if (!*th) {
        mlmx_ddf_release(*owned);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    return MLMX_OK;
}

mlmx_status mlmx_fit_varcomp_se(const mlmx_fit *f, double level, mlmx_vc_se *out)
{
    mlmx_api_clear();
    double z = 0.0;
    if (!f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_varcomp_se: bad argument");
    if (mlmx_api_require_unstructured(f->model, "standard errors of the variance components "
                                                "(--re-se)"))
        return MLMX_ERR_UNSUPPORTED;
    mlmx_status st = level_arg(level, &z);
    const mlmx_ddf_state *S = NULL;
    mlmx_ddf_state *owned = NULL;
    double *th = NULL;
    if (!st)
        st = prepare(f, "standard errors of the variance components", &S, &owned, &th);
    if (st)
        return st;
    const mlmx_model *m = f->model;
    int n = 0;
    for (int k = 0; k <= m->K; k++) {
        const int q = k < m->K ? m->re[k].q : 1;
        for (int b = 0; b < q; b++)
            for (int a = b; a < q; a++, n++) {
                quantity Q = {0, k < m->K ? k : -1, a, b};
                out[n].term = Q.k;
                out[n].a = a;
                out[n].b = b;
                delta(f, S, &Q, z, th, th + S->nv, out[n].sd);
                Q.kind = 1;
                delta(f, S, &Q, z, th, th + S->nv, out[n].var);
            }
    }
    free(th);
    mlmx_ddf_release(owned);
    return MLMX_OK;
}

mlmx_status mlmx_fit_icc_se(const mlmx_fit *f, int k, double level, double out[4])
{
    mlmx_api_clear();
    double z = 0.0;
    if (!f || !out || k < 0 || k >= f->model->K)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_icc_se: bad argument");
    mlmx_icc icc;
    mlmx_status st = level_arg(level, &z);
    if (!st)
        st = mlmx_fit_icc_term(f, k, &icc);
    if (!st && isnan(icc.icc_cumulative))
        st = mlmx_api_failf(MLMX_ERR_UNSUPPORTED, "term '%s' has no random intercept",
                            f->model->re[k].group);
    const mlmx_ddf_state *S = NULL;
    mlmx_ddf_state *owned = NULL;
    double *th = NULL;
    if (!st)
        st = prepare(f, "the standard error of the ICC", &S, &owned, &th);
    if (st)
        return st;
    const quantity Q = {2, k, 0, 0};
    delta(f, S, &Q, z, th, th + S->nv, out);
    free(th);
    mlmx_ddf_release(owned);
    return MLMX_OK;
}
