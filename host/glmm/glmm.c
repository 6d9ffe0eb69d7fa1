/* The GLMM's response and family, penalized iteratively reweighted least
 * squares (PIRLS) and the Laplace deviance. The quadratures are in agq.c. */
#include "glmm/glmm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_math.h"
#include "glmm_math.h"
#include "util/strbuf.h"

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
    free(g->pw);
    mlmx_lmm_work_free(g->wu);
    if (!g->shared_stats)
        mlmx_lmm_stats_free(g->su);
    mlmx_lmm_work_free(g->wx);
    if (!g->shared_stats)
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
    mlmx_glmm_nest_free(g->nest);
    mlmx_glmm_gw_free(g->gw);
    free(g->llc);
    free(g->thr);
    free(g->ord_cache);
    if (g->cat_labels)
        for (int k = 0; k < g->ncat; k++)
            free(g->cat_labels[k]);
    free(g->cat_labels);
    free(g->d1);
    free(g->fi);
    free(g);
}

/* The data row (1-based, as a spreadsheet counts data rows) of observation i. */
static size_t data_row(const mlmx_model *md, size_t i) { return md->rows[i] + 1; }

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

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
        } else if (md->weights) {
            /* lme4's convention: a proportion of successes, the weights the
             * trials */
            for (size_t i = 0; i < n; i++) {
                double y = md->y[i], w = md->weights[i], s = y * w;
                if (y < 0.0 || y > 1.0 || fabs(s - round(s)) > 1e-8 * fmax(1.0, w))
                    return mlmx_err_set(err, MLMX_ERR_DATA,
                                        "binomial response '%s' with weights: data row %zu has "
                                        "proportion %g of %g trials, not a whole number of "
                                        "successes",
                                        rn, data_row(md, i), y, w);
                g->yv[i] = w > 0 ? round(s) : 0.0;
                g->ntr[i] = w > 0 ? w : 1.0;
                if (w == 0.0) {
                    /* no trials: the observation carries no information */
                    if (!g->pw) {
                        g->pw = malloc(n * sizeof *g->pw);
                        if (!g->pw)
                            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
                        for (size_t k = 0; k < n; k++)
                            g->pw[k] = 1.0;
                    }
                    g->pw[i] = 0.0;
                }
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
    } else if (g->family == MLMX_FAMILY_POISSON || g->family == MLMX_FAMILY_NEGBIN) {
        const char *fam = g->family == MLMX_FAMILY_POISSON ? "Poisson" : "negative binomial";
        if (md->resp_kind != MLMX_RESP_NUMERIC)
            return mlmx_err_set(err, MLMX_ERR_DATA, "%s response '%s' must be numeric counts (it is %s)",
                                fam, rn,
                                md->resp_kind == MLMX_RESP_FACTOR ? "a factor" : "a cbind()");
        for (size_t i = 0; i < n; i++) {
            double y = md->y[i];
            if (y < 0 || y != floor(y))
                return mlmx_err_set(err, MLMX_ERR_DATA,
                                    "%s response '%s' must be a non-negative integer count; data "
                                    "row %zu has %g",
                                    fam, rn, data_row(md, i), y);
            g->yv[i] = y;
            g->ntr[i] = 1.0;
        }
    } else if (g->family == MLMX_FAMILY_ORDINAL) {
        if (md->resp_kind == MLMX_RESP_CBIND)
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "ordinal response '%s' must be a numeric or factor column, not "
                                "cbind()",
                                rn);
        /* the observed categories, in numeric or level order */
        double *vals = malloc((n ? n : 1) * sizeof *vals);
        if (!vals)
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        memcpy(vals, md->y, n * sizeof *vals);
        qsort(vals, n, sizeof *vals, cmp_dbl);
        int nc = 0;
        for (size_t i = 0; i < n; i++)
            if (i == 0 || vals[i] != vals[i - 1])
                vals[nc++] = vals[i];
        if (nc < 2) {
            free(vals);
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "ordinal response '%s' has only one observed category (%s); an "
                                "ordinal model needs at least two",
                                rn, md->resp_kind == MLMX_RESP_FACTOR && n
                                        ? md->resp_levels[(int)md->y[0]]
                                        : "all values equal");
        }
        g->ncat = nc;
        g->cat_labels = calloc((size_t)nc, sizeof *g->cat_labels);
        g->thr = calloc((size_t)nc, sizeof *g->thr);
        g->ord_cache = malloc(3 * (size_t)nc * sizeof *g->ord_cache);
        if (g->ord_cache)
            for (int k = 0; k < nc; k++)
                g->ord_cache[k] = NAN; /* no thresholds seen yet */
        if (!g->cat_labels || !g->thr) {
            free(vals);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        for (int k = 0; k < nc; k++) {
            g->cat_labels[k] = md->resp_kind == MLMX_RESP_FACTOR
                                   ? mlmx_strdup(md->resp_levels[(int)vals[k]])
                                   : mlmx_asprintf("%g", vals[k]);
            if (!g->cat_labels[k]) {
                free(vals);
                return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            }
        }
        for (size_t i = 0; i < n; i++) {
            int lo = 0, hi = nc - 1;
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (vals[mid] < md->y[i])
                    lo = mid + 1;
                else
                    hi = mid;
            }
            g->yv[i] = lo;
            g->ntr[i] = 1.0;
        }
        free(vals);
    } else {
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "the %s family is not a GLMM family",
                            mlmx_family_name(g->family));
    }
    if (md->weights && !(g->family == MLMX_FAMILY_BINOMIAL && md->resp_kind != MLMX_RESP_CBIND)) {
        g->pw = malloc((n ? n : 1) * sizeof *g->pw);
        if (!g->pw)
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        memcpy(g->pw, md->weights, n * sizeof *g->pw);
    }
    return MLMX_OK;
}

/* The per-observation constants of the log-likelihood (log binomial
 * coefficient, -log y!), so the hot loops compute only what depends on eta. */
static void set_constants(mlmx_glmm *g)
{
    const mlmx_family fam = g->family;
    for (size_t i = 0; i < g->n; i++) {
        double y = g->yv[i];
        g->llc[i] = fam == MLMX_FAMILY_POISSON ? -lgamma(y + 1.0)
                    : fam == MLMX_FAMILY_BINOMIAL
                        ? lgamma(g->ntr[i] + 1.0) - lgamma(y + 1.0) - lgamma(g->ntr[i] - y + 1.0)
                        : 0.0;
    }
}

mlmx_status mlmx_glmm_create(const mlmx_model *md, mlmx_family fam, mlmx_link link,
                             const mlmx_backend *be, mlmx_glmm **out, mlmx_error *err)
{
    return mlmx_glmm_create_shared(md, fam, link, be, NULL, NULL, out, err);
}

mlmx_status mlmx_glmm_build_stats(const mlmx_model *md, mlmx_lmm_stats **su, mlmx_lmm_stats **sx,
                                  mlmx_error *err)
{
    *su = *sx = NULL;
    mlmx_status st = mlmx_lmm_stats_build_ex(md, 0, su, err);
    if (!st)
        st = mlmx_lmm_stats_build_ex(md, 1, sx, err);
    if (st) {
        mlmx_lmm_stats_free(*su);
        mlmx_lmm_stats_free(*sx);
        *su = *sx = NULL;
        return st;
    }
    (*su)->allow_zero_r = 1;
    (*sx)->allow_zero_r = 1;
    return MLMX_OK;
}

mlmx_status mlmx_glmm_create_shared(const mlmx_model *md, mlmx_family fam, mlmx_link link,
                                    const mlmx_backend *be, mlmx_lmm_stats *su,
                                    mlmx_lmm_stats *sx, mlmx_glmm **out, mlmx_error *err)
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
    if (fam == MLMX_FAMILY_NEGBIN) {
        if (link == MLMX_LINK_DEFAULT)
            link = MLMX_LINK_LOG;
        if (link != MLMX_LINK_LOG)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "the negative binomial family takes the log link, not %s",
                                mlmx_link_name(link));
    } else if (fam == MLMX_FAMILY_ORDINAL) {
        if (link == MLMX_LINK_DEFAULT)
            link = MLMX_LINK_LOGIT;
        if (link != MLMX_LINK_LOGIT && link != MLMX_LINK_PROBIT && link != MLMX_LINK_CLOGLOG)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "the ordinal family takes the logit, probit or cloglog link, not %s",
                                mlmx_link_name(link));
    }
    mlmx_glmm *g = calloc(1, sizeof *g);
    if (!g)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    g->md = md;
    g->int_col = -1;
    g->nb_size = 1.0;
    g->pirls_beta_tol = 1e-12;
    if (fam == MLMX_FAMILY_ORDINAL)
        for (int j = 0; j < md->p; j++)
            if (strcmp(md->fixef_names[j], "(Intercept)") == 0)
                g->int_col = j;
    g->family = fam;
    g->link = link;
    g->n = md->n;
    g->be = be;
    mlmx_status st = check_response(g, err);
    if (!st && su && sx) {
        g->su = su;
        g->sx = sx;
        g->shared_stats = 1;
    } else if (!st) {
        st = mlmx_glmm_build_stats(md, &g->su, &g->sx, err);
    }
    if (!st)
        st = mlmx_lmm_work_alloc(g->su, &g->wu, err);
    if (!st)
        st = mlmx_lmm_work_alloc(g->sx, &g->wx, err);
    if (st) {
        mlmx_glmm_free(g);
        return st;
    }
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
    set_constants(g);
    *out = g;
    return MLMX_OK;
}

mlmx_status mlmx_glmm_set_response(mlmx_glmm *g, const double *y, mlmx_error *err)
{
    for (size_t i = 0; i < g->n; i++) {
        const double v = y[i];
        int ok = isfinite(v) && v >= 0.0 && v == floor(v);
        if (ok && g->family == MLMX_FAMILY_BINOMIAL)
            ok = v <= g->ntr[i];
        if (ok && g->family == MLMX_FAMILY_ORDINAL)
            ok = v < (double)g->ncat;
        if (!ok)
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "response value %zu is %g: the %s family needs %s", i + 1, v,
                                mlmx_family_name(g->family),
                                g->family == MLMX_FAMILY_BINOMIAL ? "whole successes between 0 "
                                                                    "and the trials"
                                : g->family == MLMX_FAMILY_ORDINAL
                                    ? "a category code 0..K-1"
                                    : "a non-negative whole count");
    }
    memcpy(g->yv, y, g->n * sizeof *y);
    set_constants(g);
    return MLMX_OK;
}

/* The canonical links in closed form (one exp and one log1p per
 * observation), the other links and families through the general functions,
 * all of them in kernels/glmm_math.h. */
static double obs_unw(const mlmx_glmm *g, size_t i, double eta, double *d1, double *fi)
{
    const double y = g->yv[i];
    if (g->family == MLMX_FAMILY_ORDINAL) {
        mlmx_gm_ocat r = mlmx_gm_ord_cat((int)g->link, (int)y, g->ncat, g->thr, eta);
        *d1 = r.d1;
        *fi = r.d2;
        return r.lp;
    }
    if (g->family == MLMX_FAMILY_NEGBIN) {
        mlmx_gm_obs o = mlmx_gm_negbin(y, g->nb_size, 1.0, eta);
        *d1 = o.d1;
        *fi = o.d2;
        return o.ll;
    }
    if (g->family == MLMX_FAMILY_POISSON)
        return mlmx_gm_poisson_fast(y, g->llc[i], eta, d1, fi);
    if (g->link == MLMX_LINK_LOGIT)
        return mlmx_gm_logit_fast(y, g->ntr[i], g->llc[i], eta, d1, fi);
    mlmx_gm_obs o = mlmx_gm_binomial((int)g->link, y, g->ntr[i], 1.0, eta);
    *d1 = o.d1;
    *fi = o.fi;
    return o.ll;
}

/* One observation's log-likelihood, d ll / d eta and information, times its
 * prior weight. */
double mlmx_glmm_obs(const mlmx_glmm *g, size_t i, double eta, double *d1, double *fi)
{
    double ll = obs_unw(g, i, eta, d1, fi);
    if (g->pw) {
        const double w = g->pw[i];
        *d1 *= w;
        *fi *= w;
        return w == 0.0 ? 0.0 : ll * w;
    }
    return ll;
}

static double obs_fast(const mlmx_glmm *g, size_t i, double eta, double *d1, double *fi)
{
    return mlmx_glmm_obs(g, i, eta, d1, fi);
}

/* Sum of the log-likelihood at eta, keeping d1 and the information. */
static double loglik_keep(mlmx_glmm *g, const double *eta)
{
    double ll = 0.0;
    for (size_t i = 0; i < g->n; i++)
        ll += obs_fast(g, i, eta[i], &g->d1[i], &g->fi[i]);
    return ll;
}


double mlmx_glmm_linkfun(const mlmx_glmm *g, double mu)
{
    return mlmx_gm_linkfun((int)g->link, mu);
}

double mlmx_glmm_loglik_eta(const mlmx_glmm *g, const double *eta)
{
    double ll = 0.0, d1, fi;
    for (size_t i = 0; i < g->n; i++)
        ll += obs_fast(g, i, eta[i], &d1, &fi);
    return ll;
}

static void resid_unw(const mlmx_glmm *g, const double *eta, double *mu, double *devres,
                      double *pearson);

void mlmx_glmm_residuals(const mlmx_glmm *g, const double *eta, double *mu, double *devres,
                         double *pearson)
{
    resid_unw(g, eta, mu, devres, pearson);
    if (g->pw)
        for (size_t i = 0; i < g->n; i++) {
            double sw = sqrt(g->pw[i]);
            devres[i] *= sw;
            pearson[i] *= sw;
        }
}

static void resid_unw(const mlmx_glmm *g, const double *eta, double *mu, double *devres,
                      double *pearson)
{
    for (size_t i = 0; i < g->n; i++) {
        double y = g->yv[i];
        if (g->family == MLMX_FAMILY_ORDINAL) {
            /* the probability of the observed category; no residuals */
            double d1, fi;
            mu[i] = exp(obs_fast(g, i, eta[i], &d1, &fi));
            devres[i] = sqrt(-2.0 * log(mu[i]));
            pearson[i] = NAN;
            continue;
        }
        if (g->family == MLMX_FAMILY_NEGBIN) {
            double m = exp(eta[i]), k = g->nb_size;
            double d = mlmx_gm_devres_negbin(y, k, m);
            mu[i] = m;
            devres[i] = copysign(sqrt(fmax(d, 0.0)), y - m);
            pearson[i] = (y - m) / sqrt(m + m * m / k);
            continue;
        }
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
    mlmx_lmm_vals_fill(s, &w->v, g->wt, g->wz);
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
    double last_ld = NAN;
    int it, restarted = 0;
    for (it = 0; it < PIRLS_MAXIT; it++) {
        working(g, 1);
        st = factor_system(g, g->sx, g->wx, theta, err);
        if (st) {
            /* a coefficient running off to infinity (complete separation)
             * drives the working weights to 0 until X'WX is singular: keep
             * the last point; the fit names the coefficient. Warm-started at
             * such a point, start over from beta = 0 once. */
            if (it == 0 && !restarted) {
                restarted = 1;
                memset(g->beta, 0, p * sizeof *g->beta);
                memset(g->u, 0, g->nu * sizeof *g->u);
                compute_etaf(g, g->beta);
                pdev = pen_dev(g, g->u);
                mlmx_err_clear(err);
                st = MLMX_OK;
                it = -1;
                continue;
            }
            if (isnan(last_ld))
                return st;
            mlmx_err_clear(err);
            st = MLMX_OK;
            break;
        }
        last_ld = g->wx->logdet_z;
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
        if (change < g->pirls_beta_tol * (fabs(pdev) + 1.0) && dmax < 1e-7)
            break;
    }
    g->pirls_iter = it + 1;
    working(g, 1);
    st = factor_system(g, g->sx, g->wx, theta, err);
    if (st) {
        if (isnan(last_ld))
            return st;
        mlmx_err_clear(err);
        *dev = pdev + last_ld;
        return MLMX_OK;
    }
    *dev = pdev + g->wx->logdet_z;
    return MLMX_OK;
}

