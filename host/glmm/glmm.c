/* PIRLS, the Laplace deviance and adaptive Gauss-Hermite quadrature. */
#include "glmm/glmm.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_math.h"
#include "glmm/ghq.h"
#include "glmm_math.h"

#define PIRLS_MAXIT 200
#define PIRLS_MAXHALF 40
/* Working weights below this (relative to the prior weight) are floored:
 * a probit or cloglog fit far in the tail has an information that
 * underflows, and a zero weight would leave its working response undefined. */
#define WT_FLOOR 1e-300

void mlmx_glmm_free(mlmx_glmm *g)
{
    if (!g)
        return;
    free(g->yv);
    free(g->ntr);
    mlmx_lmm_work_free(g->wu);
    mlmx_lmm_stats_free(g->su);
    mlmx_lmm_work_free(g->wx);
    mlmx_lmm_stats_free(g->sx);
    free(g->tm);
    free(g->u);
    free(g->unew);
    free(g->utry);
    free(g->beta);
    free(g->betanew);
    free(g->betatry);
    free(g->etaf);
    free(g->zb);
    free(g->eta);
    free(g->wt);
    free(g->wz);
    free(g->bl);
    free(g->llc);
    free(g->d1);
    free(g->fi);
    free(g);
}

/* The data row (1-based, as a spreadsheet counts data rows) of observation i. */
static size_t data_row(const mlmx_model *md, size_t i) { return md->rows[i] + 1; }

static mlmx_status check_response(mlmx_glmm *g, mlmx_error *err)
{
    const mlmx_model *md = g->md;
    const size_t n = md->n;
    const char *rn = md->response_name;
    g->yv = malloc((n ? n : 1) * sizeof *g->yv);
    g->ntr = malloc((n ? n : 1) * sizeof *g->ntr);
    if (!g->yv || !g->ntr)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    if (g->family == MLMX_FAMILY_BINOMIAL) {
        if (md->resp_kind == MLMX_RESP_FACTOR) {
            if (md->nresp_levels != 2)
                return mlmx_err_set(err, MLMX_ERR_DATA,
                                    "binomial response '%s' is a factor with %d levels; it needs "
                                    "exactly two (the second, '%s', counts as success)",
                                    rn, md->nresp_levels,
                                    md->nresp_levels > 1 ? md->resp_levels[1] : "?");
            for (size_t i = 0; i < n; i++) {
                g->yv[i] = md->y[i];
                g->ntr[i] = 1.0;
            }
        } else if (md->resp_kind == MLMX_RESP_CBIND) {
            for (size_t i = 0; i < n; i++) {
                double s = md->y[i], t = md->ntrials[i];
                if (s < 0 || s != floor(s) || t - s != floor(t - s))
                    return mlmx_err_set(err, MLMX_ERR_DATA,
                                        "binomial response %s: data row %zu has %g successes and "
                                        "%g failures; both must be non-negative integers",
                                        rn, data_row(md, i), s, t - s);
                if (t < s)
                    return mlmx_err_set(err, MLMX_ERR_DATA,
                                        "binomial response %s: data row %zu has %g successes "
                                        "out of %g trials (successes exceed trials)",
                                        rn, data_row(md, i), s, t);
                if (t <= 0)
                    return mlmx_err_set(err, MLMX_ERR_DATA,
                                        "binomial response %s: data row %zu has no trials",
                                        rn, data_row(md, i));
                g->yv[i] = s;
                g->ntr[i] = t;
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                double y = md->y[i];
                if (y != 0.0 && y != 1.0)
                    return mlmx_err_set(err, MLMX_ERR_DATA,
                                        "binomial response '%s' must be 0 or 1 (or a two-level "
                                        "factor, or cbind(successes, failures)); data row %zu has "
                                        "%g",
                                        rn, data_row(md, i), y);
                g->yv[i] = y;
                g->ntr[i] = 1.0;
            }
        }
    } else if (g->family == MLMX_FAMILY_POISSON) {
        if (md->resp_kind != MLMX_RESP_NUMERIC)
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "Poisson response '%s' must be numeric counts (it is %s)", rn,
                                md->resp_kind == MLMX_RESP_FACTOR ? "a factor" : "a cbind()");
        for (size_t i = 0; i < n; i++) {
            double y = md->y[i];
            if (y < 0 || y != floor(y))
                return mlmx_err_set(err, MLMX_ERR_DATA,
                                    "Poisson response '%s' must be a non-negative integer count; "
                                    "data row %zu has %g",
                                    rn, data_row(md, i), y);
            g->yv[i] = y;
            g->ntr[i] = 1.0;
        }
    } else {
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "the %s family is not available yet",
                            mlmx_family_name(g->family));
    }
    return MLMX_OK;
}

mlmx_status mlmx_glmm_create(const mlmx_model *md, mlmx_family fam, mlmx_link link,
                             const mlmx_backend *be, mlmx_glmm **out, mlmx_error *err)
{
    *out = NULL;
    if (fam == MLMX_FAMILY_BINOMIAL) {
        if (link == MLMX_LINK_DEFAULT)
            link = MLMX_LINK_LOGIT;
        if (link != MLMX_LINK_LOGIT && link != MLMX_LINK_PROBIT && link != MLMX_LINK_CLOGLOG)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "the binomial family takes the logit, probit or cloglog link, "
                                "not %s",
                                mlmx_link_name(link));
    } else if (fam == MLMX_FAMILY_POISSON) {
        if (link == MLMX_LINK_DEFAULT)
            link = MLMX_LINK_LOG;
        if (link != MLMX_LINK_LOG)
            return mlmx_err_set(err, MLMX_ERR_ARG, "the Poisson family takes the log link, not %s",
                                mlmx_link_name(link));
    }
    mlmx_glmm *g = calloc(1, sizeof *g);
    if (!g)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    g->md = md;
    g->family = fam;
    g->link = link;
    g->n = md->n;
    g->be = be;
    mlmx_status st = check_response(g, err);
    if (!st)
        st = mlmx_lmm_stats_build_ex(md, 0, &g->su, err);
    if (!st)
        st = mlmx_lmm_work_alloc(g->su, &g->wu, err);
    if (!st)
        st = mlmx_lmm_stats_build_ex(md, 1, &g->sx, err);
    if (!st)
        st = mlmx_lmm_work_alloc(g->sx, &g->wx, err);
    if (st) {
        mlmx_glmm_free(g);
        return st;
    }
    g->su->allow_zero_r = 1;
    g->sx->allow_zero_r = 1;
    const size_t n = md->n;
    g->nu1 = (size_t)g->su->nblk * (size_t)g->su->q1;
    g->nu = g->nu1 + (size_t)g->su->m_re;
    g->qmax = g->wu->qmax;
    size_t nu = g->nu ? g->nu : 1, p = md->p ? (size_t)md->p : 1;
    g->tm = calloc((size_t)md->K * (size_t)g->qmax * (size_t)g->qmax, sizeof *g->tm);
    g->u = calloc(nu, sizeof *g->u);
    g->unew = calloc(nu, sizeof *g->unew);
    g->utry = calloc(nu, sizeof *g->utry);
    g->bl = calloc(nu, sizeof *g->bl);
    g->beta = calloc(p, sizeof *g->beta);
    g->betanew = calloc(p, sizeof *g->betanew);
    g->betatry = calloc(p, sizeof *g->betatry);
    g->etaf = calloc(n ? n : 1, sizeof *g->etaf);
    g->zb = calloc(n ? n : 1, sizeof *g->zb);
    g->eta = calloc(n ? n : 1, sizeof *g->eta);
    g->wt = calloc(n ? n : 1, sizeof *g->wt);
    g->wz = calloc(n ? n : 1, sizeof *g->wz);
    g->llc = calloc(n ? n : 1, sizeof *g->llc);
    g->d1 = calloc(n ? n : 1, sizeof *g->d1);
    g->fi = calloc(n ? n : 1, sizeof *g->fi);
    if (!g->llc || !g->d1 || !g->fi || !g->tm || !g->u || !g->unew || !g->utry || !g->bl || !g->beta || !g->betanew ||
        !g->betatry || !g->etaf || !g->zb || !g->eta || !g->wt || !g->wz) {
        mlmx_glmm_free(g);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    /* the constants, so the hot loops compute only the part that depends on eta */
    for (size_t i = 0; i < n; i++) {
        double y = g->yv[i];
        g->llc[i] = fam == MLMX_FAMILY_POISSON
                        ? -lgamma(y + 1.0)
                        : lgamma(g->ntr[i] + 1.0) - lgamma(y + 1.0) - lgamma(g->ntr[i] - y + 1.0);
    }
    *out = g;
    return MLMX_OK;
}

/* The canonical links in closed form (one exp and one log1p per
 * observation); the other links through the shared per-observation math. */
static double obs_fast(const mlmx_glmm *g, size_t i, double eta, double *d1, double *fi)
{
    const double y = g->yv[i];
    if (g->family == MLMX_FAMILY_POISSON) {
        double mu = exp(eta);
        *d1 = y - mu;
        *fi = mu;
        return y * eta - mu + g->llc[i];
    }
    if (g->link == MLMX_LINK_LOGIT) {
        const double nt = g->ntr[i];
        double e = exp(-fabs(eta));
        double mu = eta >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        *d1 = y - nt * mu;
        *fi = nt * mu * (1.0 - mu);
        return y * eta - nt * (fmax(eta, 0.0) + log1p(e)) + g->llc[i];
    }
    mlmx_gm_obs o = mlmx_gm_binomial((int)g->link, y, g->ntr[i], 1.0, eta);
    *d1 = o.d1;
    *fi = o.fi;
    return o.ll;
}

/* Sum of the log-likelihood at eta, keeping d1 and the information. */
static double loglik_keep(mlmx_glmm *g, const double *eta)
{
    double ll = 0.0;
    for (size_t i = 0; i < g->n; i++)
        ll += obs_fast(g, i, eta[i], &g->d1[i], &g->fi[i]);
    return ll;
}

static mlmx_gm_obs obs_at(const mlmx_glmm *g, size_t i, double eta)
{
    if (g->family == MLMX_FAMILY_POISSON)
        return mlmx_gm_poisson(g->yv[i], 1.0, eta);
    return mlmx_gm_binomial((int)g->link, g->yv[i], g->ntr[i], 1.0, eta);
}

double mlmx_glmm_loglik_eta(const mlmx_glmm *g, const double *eta)
{
    double ll = 0.0;
    for (size_t i = 0; i < g->n; i++)
        ll += obs_at(g, i, eta[i]).ll;
    return ll;
}

void mlmx_glmm_residuals(const mlmx_glmm *g, const double *eta, double *mu, double *devres,
                         double *pearson)
{
    for (size_t i = 0; i < g->n; i++) {
        double y = g->yv[i];
        if (g->family == MLMX_FAMILY_POISSON) {
            double m = exp(eta[i]);
            double d = mlmx_gm_devres_poisson(y, 1.0, m);
            mu[i] = m;
            devres[i] = copysign(sqrt(fmax(d, 0.0)), y - m);
            pearson[i] = (y - m) / sqrt(m);
        } else {
            double nt = g->ntr[i];
            double pr = mlmx_gm_linkinv((int)g->link, eta[i]);
            double d = mlmx_gm_devres_binomial(y, nt, 1.0, nt * pr);
            mu[i] = pr;
            /* on the proportion scale, as lme4 reports them (weights = trials) */
            devres[i] = copysign(sqrt(fmax(d, 0.0)), y / nt - pr);
            pearson[i] = (y / nt - pr) * sqrt(nt / (pr * (1.0 - pr)));
        }
    }
}

static void set_templates(mlmx_glmm *g, const double *theta)
{
    const mlmx_model *md = g->md;
    for (int k = 0; k < md->K; k++)
        mlmx_cm_theta_to_t(md->re[k].q, theta + md->re[k].theta_offset,
                           g->tm + (size_t)k * (size_t)g->qmax * (size_t)g->qmax);
}

/* First index of term k in the u layout [term 0; terms 1..K-1 by R column]. */
static size_t term_start(const mlmx_glmm *g, int k)
{
    return k == 0 ? 0 : g->nu1 + (size_t)g->su->term_off[k];
}

/* zb = Z Lambda u with the templates in g->tm. */
static void compute_zb(mlmx_glmm *g, const double *u, double *zb)
{
    const mlmx_model *md = g->md;
    const size_t n = md->n;
    for (int k = 0; k < md->K; k++) {
        const int q = md->re[k].q;
        const double *T = g->tm + (size_t)k * (size_t)g->qmax * (size_t)g->qmax;
        size_t off = term_start(g, k);
        for (int l = 0; l < md->re[k].nlevels; l++) {
            const double *ul = u + off + (size_t)l * (size_t)q;
            double *bl = g->bl + off + (size_t)l * (size_t)q;
            for (int a = 0; a < q; a++) {
                double s = 0.0;
                for (int c = 0; c <= a; c++)
                    s += T[a + c * q] * ul[c];
                bl[a] = s;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        zb[i] = 0.0;
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *r = &md->re[k];
        const int q = r->q;
        size_t off = term_start(g, k);
        for (size_t i = 0; i < n; i++) {
            const double *b = g->bl + off + (size_t)r->codes[i] * (size_t)q;
            const double *z = r->z + i * (size_t)q;
            double s = 0.0;
            for (int c = 0; c < q; c++)
                s += z[c] * b[c];
            zb[i] += s;
        }
    }
}

static void compute_etaf(mlmx_glmm *g, const double *beta)
{
    const mlmx_model *md = g->md;
    const size_t n = md->n;
    for (size_t i = 0; i < n; i++)
        g->etaf[i] = md->offset ? md->offset[i] : 0.0;
    for (int j = 0; j < md->p; j++) {
        const double *x = md->X + (size_t)j * n;
        double b = beta[j];
        for (size_t i = 0; i < n; i++)
            g->etaf[i] += x[i] * b;
    }
}

void mlmx_glmm_eta(mlmx_glmm *g, const double *theta, const double *beta, const double *u,
                   double *eta)
{
    set_templates(g, theta);
    compute_etaf(g, beta);
    compute_zb(g, u, g->zb);
    for (size_t i = 0; i < g->n; i++)
        eta[i] = g->etaf[i] + g->zb[i];
}

static double sumsq(const double *v, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += v[i] * v[i];
    return s;
}

/* Penalized deviance -2 sum ll + |u|^2 at u (eta and zb left for u). */
static double pen_dev(mlmx_glmm *g, const double *u)
{
    compute_zb(g, u, g->zb);
    for (size_t i = 0; i < g->n; i++)
        g->eta[i] = g->etaf[i] + g->zb[i];
    double ll = loglik_keep(g, g->eta);
    return -2.0 * ll + sumsq(u, g->nu);
}

/* Working weights and the working response (minus what the system solves
 * for): wz = base + d1 / W, base = Z Lambda u (modes only) or eta - offset.
 * d1 and the information are those pen_dev left for the current point. */
static void working(mlmx_glmm *g, int with_beta)
{
    const mlmx_model *md = g->md;
    for (size_t i = 0; i < g->n; i++) {
        double w = g->fi[i] > WT_FLOOR ? g->fi[i] : WT_FLOOR;
        double base = with_beta ? g->eta[i] - (md->offset ? md->offset[i] : 0.0) : g->zb[i];
        g->wt[i] = w;
        g->wz[i] = base + g->d1[i] / w;
    }
}

static mlmx_status factor_system(mlmx_glmm *g, mlmx_lmm_stats *s, mlmx_lmm_work *w,
                                 const double *theta, mlmx_error *err)
{
    double crit;
    mlmx_lmm_stats_refill(s, g->wt, g->wz);
    return mlmx_lmm_eval(s, g->be, theta, 0, w, &crit, err);
}

/* Gather [u1; uR] (and beta) from the solve of the system in (s, w). */
static void gather_modes(mlmx_glmm *g, const mlmx_lmm_stats *s, mlmx_lmm_work *w, double *u,
                         double *beta)
{
    mlmx_lmm_modes(s, w, w->wv, w->u1);
    memcpy(u, w->u1, g->nu1 * sizeof *u);
    memcpy(u + g->nu1, w->wv, (size_t)s->m_re * sizeof *u);
    if (beta)
        memcpy(beta, w->wv + s->m_re, (size_t)s->p * sizeof *beta);
}

mlmx_status mlmx_glmm_laplace(mlmx_glmm *g, const double *theta, const double *beta,
                              double *dev, mlmx_error *err)
{
    set_templates(g, theta);
    compute_etaf(g, beta);
    double pdev = pen_dev(g, g->u);
    mlmx_status st = MLMX_OK;
    int it;
    for (it = 0; it < PIRLS_MAXIT; it++) {
        working(g, 0);
        st = factor_system(g, g->su, g->wu, theta, err);
        if (st)
            return st;
        gather_modes(g, g->su, g->wu, g->unew, NULL);
        double h = 1.0, ptry = HUGE_VAL;
        int ok = 0;
        for (int hs = 0; hs < PIRLS_MAXHALF; hs++, h *= 0.5) {
            for (size_t j = 0; j < g->nu; j++)
                g->utry[j] = g->u[j] + h * (g->unew[j] - g->u[j]);
            ptry = pen_dev(g, g->utry);
            if (ptry <= pdev + 1e-13 * fabs(pdev)) {
                ok = 1;
                break;
            }
        }
        if (!ok) {
            pen_dev(g, g->u); /* restore eta at the last accepted point */
            break;
        }
        double dmax = 0.0;
        for (size_t j = 0; j < g->nu; j++)
            dmax = fmax(dmax, fabs(g->utry[j] - g->u[j]));
        memcpy(g->u, g->utry, g->nu * sizeof *g->u);
        double change = pdev - ptry;
        pdev = ptry;
        if (change < 1e-12 * (fabs(pdev) + 1.0) && dmax < 1e-7)
            break;
    }
    g->pirls_iter = it + 1;
    g->pirls_total += it + 1;
    /* the curvature at the modes: weights at the final u */
    working(g, 0);
    st = factor_system(g, g->su, g->wu, theta, err);
    if (st)
        return st;
    *dev = pdev + g->wu->logdet_z;
    return MLMX_OK;
}

mlmx_status mlmx_glmm_pirls_beta(mlmx_glmm *g, const double *theta, double *dev,
                                 mlmx_error *err)
{
    const mlmx_model *md = g->md;
    const size_t p = (size_t)md->p;
    set_templates(g, theta);
    compute_etaf(g, g->beta);
    double pdev = pen_dev(g, g->u);
    mlmx_status st = MLMX_OK;
    int it;
    for (it = 0; it < PIRLS_MAXIT; it++) {
        working(g, 1);
        st = factor_system(g, g->sx, g->wx, theta, err);
        if (st)
            return st;
        gather_modes(g, g->sx, g->wx, g->unew, g->betanew);
        double h = 1.0, ptry = HUGE_VAL;
        int ok = 0;
        for (int hs = 0; hs < PIRLS_MAXHALF; hs++, h *= 0.5) {
            for (size_t j = 0; j < g->nu; j++)
                g->utry[j] = g->u[j] + h * (g->unew[j] - g->u[j]);
            for (size_t j = 0; j < p; j++)
                g->betatry[j] = g->beta[j] + h * (g->betanew[j] - g->beta[j]);
            compute_etaf(g, g->betatry);
            ptry = pen_dev(g, g->utry);
            if (ptry <= pdev + 1e-13 * fabs(pdev)) {
                ok = 1;
                break;
            }
        }
        if (!ok) {
            compute_etaf(g, g->beta);
            pen_dev(g, g->u);
            break;
        }
        double dmax = 0.0;
        for (size_t j = 0; j < g->nu; j++)
            dmax = fmax(dmax, fabs(g->utry[j] - g->u[j]));
        for (size_t j = 0; j < p; j++)
            dmax = fmax(dmax, fabs(g->betatry[j] - g->beta[j]));
        memcpy(g->u, g->utry, g->nu * sizeof *g->u);
        memcpy(g->beta, g->betatry, p * sizeof *g->beta);
        double change = pdev - ptry;
        pdev = ptry;
        if (change < 1e-12 * (fabs(pdev) + 1.0) && dmax < 1e-7)
            break;
    }
    g->pirls_iter = it + 1;
    working(g, 1);
    st = factor_system(g, g->sx, g->wx, theta, err);
    if (st)
        return st;
    *dev = pdev + g->wx->logdet_z;
    return MLMX_OK;
}

mlmx_status mlmx_glmm_agq(mlmx_glmm *g, const double *theta, const double *beta, int k,
                          double *dev, mlmx_error *err)
{
    const mlmx_model *md = g->md;
    if (md->K > 1 && mlmx_glmm_nested_scalar(g))
        return mlmx_glmm_agq_nested(g, theta, beta, k, dev, err);
    if (md->K != 1 || md->re[0].q != 1)
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "adaptive quadrature needs a single scalar random-effect term or "
                            "scalar terms each nested in the next");
    double lap;
    mlmx_status st = mlmx_glmm_laplace(g, theta, beta, &lap, err);
    if (st || k == 1) {
        *dev = lap;
        return st;
    }
    double z[MLMX_GHQ_MAX], w[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    if (k < 1 || k > MLMX_GHQ_MAX || mlmx_ghq_rule(k, z, w, lw) != 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "quadrature points %d out of range (1..%d)", k,
                            MLMX_GHQ_MAX);
    const mlmx_lmm_stats *s = g->su;
    const double th = g->tm[0];
    const double *zz = md->re[0].z;
    double total = 0.0;
    for (int j = 0; j < s->nblk; j++) {
        double uh = g->u[j];
        double sd = 1.0 / g->wu->L11[j];
        double mx = -INFINITY, sc = 0.0;
        for (int a = 0; a < k; a++) {
            double uv = uh + sd * z[a];
            double acc = lw[a] + 0.5 * z[a] * z[a] - 0.5 * uv * uv;
            double d1, fi;
            for (size_t o = s->obs_start[j]; o < s->obs_start[j + 1]; o++) {
                size_t i = s->obs_order[o];
                acc += obs_fast(g, i, g->etaf[i] + zz[i] * th * uv, &d1, &fi);
            }
            mlmx_gm_lse_add(&mx, &sc, acc);
        }
        total += log(sd) + mx + log(sc);
    }
    *dev = -2.0 * total;
    return MLMX_OK;
}

/* ------------------------------------------------------------------ */
/* Nested adaptive quadrature (Rabe-Hesketh, Skrondal & Pickles 2005):
 * the likelihood of a top-level cluster is integrated level by level, each
 * integral over one scalar random effect given the values chosen for its
 * ancestors. Every level's rule is adaptive. Its centre is the conditional
 * mode of the Laplace approximation given the ancestors' node values,
 * E[v | ancestors] = v~ - sum_a L[a,v] (a - a~) / L[v,v], and its scale the
 * conditional SD 1 / L[v,v], both read off the PIRLS factor (ordered
 * finest first, so L[v,v]^2 is v's precision once the finer levels are
 * integrated out). At the finest level the centre and scale are refined by
 * Newton steps to the exact conditional mode and curvature given the
 * ancestors. With one point per level every node sits at the joint mode and
 * the result is the Laplace approximation exactly. */

typedef struct nest_ctx {
    mlmx_glmm *g;
    int nq;
    const double *z, *lw;
    double *cur;        /* node value chosen for each term on the current path */
    double *delta;      /* node value - mode, per R column (terms >= 1) */
    size_t **child_ptr; /* term k >= 1: children (levels of term k-1) of each level */
    int **child;
} nest_ctx;

static double finest_logint(nest_ctx *c, int l)
{
    mlmx_glmm *g = c->g;
    const mlmx_model *md = g->md;
    const mlmx_lmm_stats *s = g->su;
    const mlmx_lmm_work *w = g->wu;
    const int K = md->K;
    const size_t qq = (size_t)g->qmax * (size_t)g->qmax;
    /* centre from the factor: the rows of L21 are this level's entries in
     * the columns of its ancestors (the last row is the response) */
    double shift = 0.0;
    for (size_t r = s->row_ptr[l]; r + 1 < s->row_ptr[l + 1]; r++)
        shift += w->L21[r] * c->delta[s->row_col[r]];
    double lcc = w->L11[l];
    double um = g->u[l];
    double v = um - shift / lcc;
    const double th0 = g->tm[0];
    const double *z0 = md->re[0].z;
    /* the ancestors' part of eta, per observation */
    size_t o0 = s->obs_start[l], o1 = s->obs_start[l + 1];
    for (size_t o = o0; o < o1; o++) {
        size_t i = s->obs_order[o];
        double b = g->etaf[i];
        for (int k = 1; k < K; k++)
            b += g->tm[(size_t)k * qq] * md->re[k].z[i] * c->cur[k];
        g->wz[i] = b; /* scratch: the ancestors' linear predictor */
    }
    /* Newton to the conditional mode (Fisher information, as the Laplace
     * factor uses) */
    double prec = lcc * lcc;
    for (int it = 0; it < 8; it++) {
        double gr = -v, info = 1.0, d1, fi;
        for (size_t o = o0; o < o1; o++) {
            size_t i = s->obs_order[o];
            double zt = th0 * z0[i];
            obs_fast(g, i, g->wz[i] + zt * v, &d1, &fi);
            gr += zt * d1;
            info += zt * zt * fi;
        }
        double step = gr / info;
        v += step;
        prec = info;
        if (fabs(step) < 1e-10 * (1.0 + fabs(v)))
            break;
    }
    {
        /* the curvature at the refined centre */
        double info = 1.0, d1, fi;
        for (size_t o = o0; o < o1; o++) {
            size_t i = s->obs_order[o];
            double zt = th0 * z0[i];
            obs_fast(g, i, g->wz[i] + zt * v, &d1, &fi);
            info += zt * zt * fi;
        }
        prec = info;
    }
    double sd = 1.0 / sqrt(prec);
    double mx = -INFINITY, sc = 0.0;
    for (int a = 0; a < c->nq; a++) {
        double uv = v + sd * c->z[a];
        double acc = c->lw[a] + 0.5 * c->z[a] * c->z[a] - 0.5 * uv * uv, d1, fi;
        for (size_t o = o0; o < o1; o++) {
            size_t i = s->obs_order[o];
            acc += obs_fast(g, i, g->wz[i] + th0 * z0[i] * uv, &d1, &fi);
        }
        mlmx_gm_lse_add(&mx, &sc, acc);
    }
    return log(sd) + mx + log(sc);
}

static double level_logint(nest_ctx *c, int k, int l)
{
    if (k == 0)
        return finest_logint(c, l);
    mlmx_glmm *g = c->g;
    const mlmx_lmm_stats *s = g->su;
    const mlmx_lmm_work *w = g->wu;
    const size_t m = (size_t)s->m;
    const size_t col = (size_t)s->term_off[k] + (size_t)l;
    const mlmx_block_stage *st = &s->stages[k - 1];
    double lcc = w->S[col + col * m];
    double shift = 0.0;
    for (size_t r = st->col_ptr[l]; r < st->col_ptr[l + 1]; r++) {
        size_t a = (size_t)st->col[r];
        if (a + 1 < m)
            shift += w->S[a + col * m] * c->delta[a];
    }
    double um = g->u[g->nu1 + col];
    double center = um - shift / lcc, sd = 1.0 / lcc;
    double mx = -INFINITY, sc = 0.0;
    for (int a = 0; a < c->nq; a++) {
        double v = center + sd * c->z[a];
        c->cur[k] = v;
        c->delta[col] = v - um;
        double acc = c->lw[a] + 0.5 * c->z[a] * c->z[a] - 0.5 * v * v;
        for (size_t e = c->child_ptr[k][l]; e < c->child_ptr[k][l + 1]; e++)
            acc += level_logint(c, k - 1, c->child[k][e]);
        mlmx_gm_lse_add(&mx, &sc, acc);
    }
    c->delta[col] = 0.0;
    c->cur[k] = 0.0;
    return log(sd) + mx + log(sc);
}

int mlmx_glmm_nested_scalar(const mlmx_glmm *g)
{
    const mlmx_model *md = g->md;
    if (md->K < 2 || g->su->nchain != md->K - 1)
        return 0;
    for (int k = 0; k < md->K; k++)
        if (md->re[k].q != 1)
            return 0;
    return 1;
}

mlmx_status mlmx_glmm_agq_nested(mlmx_glmm *g, const double *theta, const double *beta, int k,
                                 double *dev, mlmx_error *err)
{
    const mlmx_model *md = g->md;
    if (!mlmx_glmm_nested_scalar(g))
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "nested adaptive quadrature needs scalar random-effect terms, each "
                            "nested in the next");
    double lap;
    mlmx_status st = mlmx_glmm_laplace(g, theta, beta, &lap, err);
    if (st)
        return st;
    double z[MLMX_GHQ_MAX], w[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    if (k < 1 || k > MLMX_GHQ_MAX || mlmx_ghq_rule(k, z, w, lw) != 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "quadrature points %d out of range (1..%d)", k,
                            MLMX_GHQ_MAX);
    const int K = md->K;
    nest_ctx c = {g, k, z, lw, NULL, NULL, NULL, NULL};
    c.cur = calloc((size_t)K, sizeof *c.cur);
    c.delta = calloc((size_t)g->su->m, sizeof *c.delta);
    c.child_ptr = calloc((size_t)K, sizeof *c.child_ptr);
    c.child = calloc((size_t)K, sizeof *c.child);
    int ok = c.cur && c.delta && c.child_ptr && c.child;
    /* children of each level of term k >= 1: the levels of term k-1 inside it */
    for (int t = 1; ok && t < K; t++) {
        const mlmx_reterm_info *fine = &md->re[t - 1], *coarse = &md->re[t];
        int *parent = malloc((size_t)fine->nlevels * sizeof *parent);
        c.child_ptr[t] = calloc((size_t)coarse->nlevels + 1, sizeof **c.child_ptr);
        c.child[t] = malloc((size_t)fine->nlevels * sizeof **c.child);
        ok = parent && c.child_ptr[t] && c.child[t];
        if (ok) {
            for (int l = 0; l < fine->nlevels; l++)
                parent[l] = -1;
            for (size_t i = 0; i < md->n; i++)
                parent[fine->codes[i]] = coarse->codes[i];
            for (int l = 0; l < fine->nlevels; l++)
                c.child_ptr[t][parent[l] + 1]++;
            for (int l = 0; l < coarse->nlevels; l++)
                c.child_ptr[t][l + 1] += c.child_ptr[t][l];
            size_t *fill = malloc(((size_t)coarse->nlevels + 1) * sizeof *fill);
            ok = fill != NULL;
            if (ok) {
                memcpy(fill, c.child_ptr[t], ((size_t)coarse->nlevels + 1) * sizeof *fill);
                for (int l = 0; l < fine->nlevels; l++)
                    c.child[t][fill[parent[l]]++] = l;
            }
            free(fill);
        }
        free(parent);
    }
    if (ok) {
        double total = 0.0;
        for (int l = 0; l < md->re[K - 1].nlevels; l++)
            total += level_logint(&c, K - 1, l);
        *dev = -2.0 * total;
    }
    for (int t = 1; t < K; t++) {
        if (c.child_ptr)
            free(c.child_ptr[t]);
        if (c.child)
            free(c.child[t]);
    }
    free(c.cur);
    free(c.delta);
    free(c.child_ptr);
    free(c.child);
    return ok ? MLMX_OK : mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
}
