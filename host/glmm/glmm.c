/* PIRLS, the Laplace deviance and adaptive Gauss-Hermite quadrature. */
#include "glmm/glmm.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_math.h"
#include "glmm/ghq.h"
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
    mlmx_glmm_nest_free(g->nest);
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
        g->llc[i] = fam == MLMX_FAMILY_POISSON ? -lgamma(y + 1.0)
                    : fam == MLMX_FAMILY_BINOMIAL
                        ? lgamma(g->ntr[i] + 1.0) - lgamma(y + 1.0) - lgamma(g->ntr[i] - y + 1.0)
                        : 0.0;
    }
    *out = g;
    return MLMX_OK;
}

/* The canonical links in closed form (one exp and one log1p per
 * observation); the other links through the shared per-observation math. */
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
    if (g->family == MLMX_FAMILY_POISSON) {
        double mu = exp(eta);
        *d1 = y - mu;
        *fi = mu;
        return y * eta - mu + g->llc[i];
    }
    if (g->link == MLMX_LINK_LOGIT) {
        const double nt = g->ntr[i];
        double e = exp(-fabs(eta));
        double ope = 1.0 + e;
        double mu = eta >= 0 ? 1.0 / ope : e / ope;
        *d1 = y - nt * mu;
        *fi = nt * mu * (1.0 - mu);
        /* log1p(e), e in (0, 1]: log(1 + e) is within an ulp of 1 in absolute
         * terms above 1e-4 (what a sum of log-likelihoods needs), and the
         * series below; glibc's log1p costs twice log in the quadrature's
         * inner loop */
        double l1p = e > 1e-4 ? log(ope) : e * (1.0 - e * (0.5 - e * (1.0 / 3.0)));
        return y * eta - nt * ((eta > 0.0 ? eta : 0.0) + l1p) + g->llc[i];
    }
    mlmx_gm_obs o = mlmx_gm_binomial((int)g->link, y, g->ntr[i], 1.0, eta);
    *d1 = o.d1;
    *fi = o.fi;
    return o.ll;
}

/* One observation's log-likelihood, d ll / d eta and information, times its
 * prior weight. */
static double obs_fast(const mlmx_glmm *g, size_t i, double eta, double *d1, double *fi)
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
            double d = 2.0 * ((y > 0 ? y * log(y / m) : 0.0) - (y + k) * log((y + k) / (m + k)));
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

/* Every adaptive rule starts at the Laplace approximation: its PIRLS gives
 * the modes and curvatures the rule is placed with. With one point that is
 * the answer (*done = 1); otherwise the k-point rule's nodes and log-weights. */
static mlmx_status agq_start(mlmx_glmm *g, const double *theta, const double *beta, int k,
                             double *z, double *lw, double *dev, int *done, mlmx_error *err)
{
    double lap, w[MLMX_GHQ_MAX];
    *done = 0;
    if (k < 1 || k > MLMX_GHQ_MAX)
        return mlmx_err_set(err, MLMX_ERR_ARG, "quadrature points %d out of range (1..%d)", k,
                            MLMX_GHQ_MAX);
    mlmx_status st = mlmx_glmm_laplace(g, theta, beta, &lap, err);
    if (st || k == 1) {
        *dev = lap;
        *done = 1;
        return st;
    }
    if (mlmx_ghq_rule(k, z, w, lw) != 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "no %d-point Gauss-Hermite rule", k);
    return MLMX_OK;
}

/* A vector random effect (q <= 3, e.g. a correlated intercept and slope) in
 * one grouping factor, by the product rule (GLMMadaptive's approach): K^q
 * nodes z, placed at u = u~ + L^-T z with L the Cholesky factor of the
 * cluster's conditional precision at the mode (the PIRLS factor's diagonal
 * block), so that
 *   log int phi_q(u) prod p(y | u) du
 *     = -log det L + LSE_m [log W_m + |z_m|^2/2 - |u_m|^2/2 + sum_i ll_i(u_m)],
 * which is the Laplace approximation at one point. */
static mlmx_status agq_vector(mlmx_glmm *g, const double *theta, const double *beta, int k,
                              double *dev, mlmx_error *err)
{
    const mlmx_model *md = g->md;
    const int q = md->re[0].q;
    double z[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    int done = 0;
    mlmx_status st = agq_start(g, theta, beta, k, z, lw, dev, &done, err);
    if (st || done)
        return st;
    long nn = 1;
    for (int a = 0; a < q; a++)
        nn *= k;
    const mlmx_lmm_stats *s = g->su;
    const double *T = g->tm; /* term 0's template, leading dimension q */
    const double *zz = md->re[0].z;
    double total = 0.0;
    for (int j = 0; j < s->nblk; j++) {
        const double *L = g->wu->L11 + (size_t)j * (size_t)q * (size_t)q;
        const double *uh = g->u + (size_t)j * (size_t)q;
        double ldet = 0.0;
        for (int a = 0; a < q; a++)
            ldet += log(L[a + a * q]);
        double mx = -INFINITY, sc = 0.0;
        for (long node = 0; node < nn; node++) {
            double zv[MLMX_AGQ_QMAX], uv[MLMX_AGQ_QMAX], bv[MLMX_AGQ_QMAX];
            double acc = 0.0;
            long r = node;
            for (int a = 0; a < q; a++) {
                int idx = (int)(r % k);
                r /= k;
                zv[a] = z[idx];
                acc += lw[idx] + 0.5 * z[idx] * z[idx];
            }
            /* u = u~ + L^-T z */
            for (int a = 0; a < q; a++)
                uv[a] = zv[a];
            mlmx_cm_trsv_lower_t(q, L, uv);
            for (int a = 0; a < q; a++) {
                uv[a] += uh[a];
                acc -= 0.5 * uv[a] * uv[a];
            }
            /* b = T u */
            for (int a = 0; a < q; a++) {
                double sum = 0.0;
                for (int c = 0; c <= a; c++)
                    sum += T[a + c * q] * uv[c];
                bv[a] = sum;
            }
            double d1, fi;
            for (size_t o = s->obs_start[j]; o < s->obs_start[j + 1]; o++) {
                size_t i = s->obs_order[o];
                double eta = g->etaf[i];
                for (int a = 0; a < q; a++)
                    eta += zz[i * (size_t)q + (size_t)a] * bv[a];
                acc += obs_fast(g, i, eta, &d1, &fi);
            }
            mlmx_gm_lse_add(&mx, &sc, acc);
        }
        total += -ldet + mx + log(sc);
    }
    *dev = -2.0 * total;
    return MLMX_OK;
}

mlmx_status mlmx_glmm_agq(mlmx_glmm *g, const double *theta, const double *beta, int k,
                          double *dev, mlmx_error *err)
{
    const mlmx_model *md = g->md;
    if (md->K > 1 && mlmx_glmm_nested_scalar(g))
        return mlmx_glmm_agq_nested(g, theta, beta, k, dev, err);
    if (md->K == 1 && md->re[0].q > 1 && md->re[0].q <= MLMX_AGQ_QMAX)
        return agq_vector(g, theta, beta, k, dev, err);
    if (md->K != 1 || md->re[0].q != 1)
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "adaptive quadrature needs a single random-effect term (scalar, or "
                            "up to %d correlated effects) or scalar terms each nested in the next",
                            MLMX_AGQ_QMAX);
    double z[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    int done = 0;
    mlmx_status st = agq_start(g, theta, beta, k, z, lw, dev, &done, err);
    if (st || done)
        return st;
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

/* The log-likelihood of one cluster's observations (idx[0..no)) at
 * eta_i = wz[i] + theta0 z_i u, the ancestors' part already in wz. With t,
 * also each observation's d ll / d eta (and the family's extras) into rows of
 * W: [d1, d1 u, d1 cur[1..K-1], extras]. The inner loop of every quadrature:
 * for the logit link the log(1 + e^-|eta|) terms are multiplied and logged
 * once per cluster (each factor is in (1, 2], so the product cannot
 * overflow before it is flushed), and no log at all is taken for Poisson. */
static double obs_deriv(const mlmx_glmm *g, size_t i, double eta, double *d1, double *e1,
                        double *e2);

/* Cumulative logit, one observation of category y at eta. With A = c_{y-1} -
 * eta and B = c_y - eta,
 *   log P = -log1pexp(-B) - log1pexp(A) + log(1 - e^(A-B)),
 * whose last term depends on the thresholds only (oc->lc[y]); each
 * log1pexp(x) is max(x, 0) + log(1 + e^-|x|), and the caller multiplies the
 * (1 + e^-|x|) factors (both in (1, 2]) and takes one log per cluster. Also
 * d ll/d eta = F(A) + F(B) - 1, -d2 ll/d eta2 = F'(A) + F'(B), and d ll/d c_{y-1}
 * = -F(A) - r_y, d ll/d c_y = 1 - F(B) + r_y with r_y = 1/(e^(c_y - c_{y-1}) - 1). */
typedef struct ord_consts {
    const double *lc, *r;
    int ok;
} ord_consts;

/* The per-category constants for the current thresholds, recomputed only
 * when the thresholds changed since the last call. */
static void ord_prepare(const mlmx_glmm *g, ord_consts *oc)
{
    oc->ok = g->family == MLMX_FAMILY_ORDINAL && g->link == MLMX_LINK_LOGIT && g->ord_cache;
    if (!oc->ok)
        return;
    const int K = g->ncat;
    double *snap = g->ord_cache, *lc = snap + K, *r = snap + 2 * K;
    if (memcmp(snap, g->thr, (size_t)(K - 1) * sizeof *snap) != 0) {
        memcpy(snap, g->thr, (size_t)(K - 1) * sizeof *snap);
        for (int y = 1; y < K - 1; y++) {
            double d = g->thr[y] - g->thr[y - 1];
            lc[y] = log(-expm1(-d));
            r[y] = 1.0 / expm1(d);
        }
    }
    oc->lc = lc;
    oc->r = r;
}

static inline double ord_logit_obs(const mlmx_glmm *g, const ord_consts *oc, int y, double eta,
                                   double *prod, double *d1, double *d2, double *dlo, double *dhi)
{
    const int K = g->ncat;
    double lin = 0.0, fa = 0.0, fb = 1.0, va = 0.0, vb = 0.0;
    if (y > 0) { /* A term: -log1pexp(A) */
        double A = g->thr[y - 1] - eta, e = exp(-fabs(A)), ope = 1.0 + e;
        lin -= A > 0.0 ? A : 0.0;
        *prod *= ope;
        fa = A >= 0 ? 1.0 / ope : e / ope;
        va = fa * (1.0 - fa);
    }
    if (y < K - 1) { /* B term: -log1pexp(-B) */
        double B = g->thr[y] - eta, e = exp(-fabs(B)), ope = 1.0 + e;
        lin -= B < 0.0 ? -B : 0.0;
        *prod *= ope;
        fb = B >= 0 ? 1.0 / ope : e / ope;
        vb = fb * (1.0 - fb);
    }
    double r = 0.0;
    if (y > 0 && y < K - 1) {
        lin += oc->lc[y];
        r = oc->r[y];
    }
    *d1 = fa + fb - 1.0;
    *d2 = va + vb;
    *dlo = y > 0 ? -fa - r : 0.0;
    *dhi = y < K - 1 ? 1.0 - fb + r : 0.0;
    return lin;
}

static double cluster_ll(const mlmx_glmm *g, const size_t *idx, size_t no, double th0, double uv,
                         double *t, int W, int K, const double *cur)
{
    const double *zz = g->md->re[0].z;
    const double *y = g->yv, *nt = g->ntr, *llc = g->llc, *wz = g->wz;
    double lin = 0.0, prod = 1.0;
    if (g->family == MLMX_FAMILY_BINOMIAL && g->link == MLMX_LINK_LOGIT) {
        const double *pw = g->pw;
        for (size_t o = 0; o < no; o++) {
            size_t i = idx[o];
            const double wi = pw ? pw[i] : 1.0;
            double eta = wz[i] + th0 * zz[i] * uv;
            double e = exp(-fabs(eta)), ope = 1.0 + e;
            if (wi != 0.0)
                lin += wi * (y[i] * eta - nt[i] * (eta > 0.0 ? eta : 0.0) + llc[i]);
            if (nt[i] == 1.0 && wi == 1.0) {
                prod *= ope;
                if (prod > 1e280) {
                    lin -= log(prod);
                    prod = 1.0;
                }
            } else if (wi != 0.0) {
                lin -= wi * nt[i] *
                       (e > 1e-4 ? log(ope) : e * (1.0 - e * (0.5 - e * (1.0 / 3.0))));
            }
            if (t) {
                double mu = eta >= 0 ? 1.0 / ope : e / ope;
                double d1 = wi * (y[i] - nt[i] * mu);
                double *r = t + o * (size_t)W;
                r[0] = d1;
                r[1] = d1 * uv;
                for (int k = 1; k < K; k++)
                    r[1 + k] = d1 * cur[k];
            }
        }
        return lin - log(prod);
    }
    if (g->family == MLMX_FAMILY_POISSON) {
        const double *pw = g->pw;
        for (size_t o = 0; o < no; o++) {
            size_t i = idx[o];
            const double wi = pw ? pw[i] : 1.0;
            double eta = wz[i] + th0 * zz[i] * uv;
            double mu = exp(eta);
            if (wi != 0.0)
                lin += wi * (y[i] * eta - mu + llc[i]);
            if (t) {
                double d1 = wi * (y[i] - mu);
                double *r = t + o * (size_t)W;
                r[0] = d1;
                r[1] = d1 * uv;
                for (int k = 1; k < K; k++)
                    r[1 + k] = d1 * cur[k];
            }
        }
        return lin;
    }
    ord_consts oc;
    ord_prepare(g, &oc);
    if (oc.ok) {
        const double *pw = g->pw;
        for (size_t o = 0; o < no; o++) {
            size_t i = idx[o];
            const double wi = pw ? pw[i] : 1.0;
            double d1, d2, dlo, dhi, pr = 1.0;
            double l = ord_logit_obs(g, &oc, (int)y[i], wz[i] + th0 * zz[i] * uv, &pr, &d1, &d2,
                                     &dlo, &dhi);
            if (wi == 1.0) {
                lin += l;
                prod *= pr;
                if (prod > 1e280) {
                    lin -= log(prod);
                    prod = 1.0;
                }
            } else if (wi != 0.0) {
                lin += wi * (l - log(pr));
            }
            if (t) {
                double *r = t + o * (size_t)W;
                d1 *= wi;
                r[0] = d1;
                r[1] = d1 * uv;
                for (int k = 1; k < K; k++)
                    r[1 + k] = d1 * cur[k];
                r[K + 1] = wi * dlo;
                r[K + 2] = wi * dhi;
            }
        }
        return lin - log(prod);
    }
    for (size_t o = 0; o < no; o++) {
        size_t i = idx[o];
        double d1, e1, e2;
        lin += obs_deriv(g, i, wz[i] + th0 * zz[i] * uv, &d1, &e1, &e2);
        if (t) {
            double *r = t + o * (size_t)W;
            r[0] = d1;
            r[1] = d1 * uv;
            for (int k = 1; k < K; k++)
                r[1 + k] = d1 * cur[k];
            if (W > K + 1)
                r[K + 1] = e1;
            if (W > K + 2)
                r[K + 2] = e2;
        }
    }
    return lin;
}

/* Sum over the cluster of zt d1 and zt^2 W at eta_i = wz[i] + zt_i v (the
 * Newton step of the conditional mode): no log-likelihood, so no log. */
static void cluster_newton(const mlmx_glmm *g, const size_t *idx, size_t no, double th0, double v,
                           double *gr, double *info)
{
    const double *zz = g->md->re[0].z;
    double s1 = 0.0, s2 = 0.0;
    if (g->family == MLMX_FAMILY_BINOMIAL && g->link == MLMX_LINK_LOGIT) {
        for (size_t o = 0; o < no; o++) {
            size_t i = idx[o];
            double zt = th0 * zz[i], eta = g->wz[i] + zt * v;
            double e = exp(-fabs(eta)), ope = 1.0 + e;
            double mu = eta >= 0 ? 1.0 / ope : e / ope;
            const double wi = g->pw ? g->pw[i] : 1.0;
            s1 += wi * zt * (g->yv[i] - g->ntr[i] * mu);
            s2 += wi * zt * zt * g->ntr[i] * mu * (1.0 - mu);
        }
    } else if (g->family == MLMX_FAMILY_ORDINAL && g->link == MLMX_LINK_LOGIT && g->ord_cache) {
        ord_consts oc;
        ord_prepare(g, &oc);
        for (size_t o = 0; o < no; o++) {
            size_t i = idx[o];
            double zt = th0 * zz[i], d1, d2, dlo, dhi, pr = 1.0;
            const double wi = g->pw ? g->pw[i] : 1.0;
            ord_logit_obs(g, &oc, (int)g->yv[i], g->wz[i] + zt * v, &pr, &d1, &d2, &dlo, &dhi);
            s1 += wi * zt * d1;
            s2 += wi * zt * zt * d2;
        }
    } else {
        for (size_t o = 0; o < no; o++) {
            size_t i = idx[o];
            double zt = th0 * zz[i], d1, fi;
            obs_fast(g, i, g->wz[i] + zt * v, &d1, &fi);
            s1 += zt * d1;
            s2 += zt * zt * fi;
        }
    }
    *gr = s1;
    *info = s2;
}

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
     * factor uses), then the curvature at the refined centre */
    double prec, gr, info;
    for (int it = 0; it < 8; it++) {
        cluster_newton(g, s->obs_order + o0, o1 - o0, th0, v, &gr, &info);
        double step = (gr - v) / (1.0 + info);
        v += step;
        if (fabs(step) < 1e-10 * (1.0 + fabs(v)))
            break;
    }
    cluster_newton(g, s->obs_order + o0, o1 - o0, th0, v, &gr, &info);
    prec = 1.0 + info;
    (void)z0;
    double sd = 1.0 / sqrt(prec);
    double mx = -INFINITY, sc = 0.0;
    for (int a = 0; a < c->nq; a++) {
        double uv = v + sd * c->z[a];
        double acc = c->lw[a] + 0.5 * c->z[a] * c->z[a] - 0.5 * uv * uv;
        acc += cluster_ll(g, s->obs_order + o0, o1 - o0, th0, uv, NULL, 0, 0, NULL);
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

/* The nesting structure, built once per GLMM (mlmx_glmm_free releases it):
 * the children of every level, the observations in nest order (coarsest
 * term first, so every cluster of every term is a contiguous range), the
 * ranges, and the per-level buffers of the gradient's recursion. */
struct mlmx_nest {
    int K, W;
    double *cur, *delta;
    size_t **child_ptr;
    int **child;
    size_t **rs, **re;
    size_t *order;
    double **T, **A;
    double *cw;
};

static void nest_free(struct mlmx_nest *N)
{
    if (!N)
        return;
    for (int t = 0; t < N->K; t++) {
        if (N->child_ptr)
            free(N->child_ptr[t]);
        if (N->child)
            free(N->child[t]);
        if (N->rs)
            free(N->rs[t]);
        if (N->re)
            free(N->re[t]);
        if (N->T)
            free(N->T[t]);
        if (N->A)
            free(N->A[t]);
    }
    free(N->cur);
    free(N->delta);
    free(N->child_ptr);
    free(N->child);
    free(N->rs);
    free(N->re);
    free(N->T);
    free(N->A);
    free(N->order);
    free(N->cw);
    free(N);
}

static struct mlmx_nest *nest_build(const mlmx_glmm *g)
{
    const mlmx_model *md = g->md;
    const int K = md->K;
    const size_t n = md->n;
    struct mlmx_nest *N = calloc(1, sizeof *N);
    if (!N)
        return NULL;
    N->K = K;
    N->W = 1 + K + (g->family == MLMX_FAMILY_ORDINAL ? 2 : g->family == MLMX_FAMILY_NEGBIN ? 1 : 0);
    const int W = N->W;
    N->cur = calloc((size_t)K, sizeof *N->cur);
    N->delta = calloc((size_t)g->su->m, sizeof *N->delta);
    N->child_ptr = calloc((size_t)K, sizeof *N->child_ptr);
    N->child = calloc((size_t)K, sizeof *N->child);
    N->rs = calloc((size_t)K, sizeof *N->rs);
    N->re = calloc((size_t)K, sizeof *N->re);
    N->T = calloc((size_t)K, sizeof *N->T);
    N->A = calloc((size_t)K, sizeof *N->A);
    N->order = malloc((n ? n : 1) * sizeof *N->order);
    size_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    int ok = N->cur && N->delta && N->child_ptr && N->child && N->rs && N->re && N->T && N->A &&
             N->order && tmp;
    /* nest order: a stable counting sort by each term's code, finest first */
    if (ok) {
        for (size_t i = 0; i < n; i++)
            N->order[i] = i;
        for (int t = 0; ok && t < K; t++) {
            int nl = md->re[t].nlevels;
            size_t *cnt = calloc((size_t)nl + 1, sizeof *cnt);
            ok = cnt != NULL;
            if (!ok)
                break;
            for (size_t i = 0; i < n; i++)
                cnt[md->re[t].codes[i] + 1]++;
            for (int l = 0; l < nl; l++)
                cnt[l + 1] += cnt[l];
            for (size_t o = 0; o < n; o++) {
                size_t i = N->order[o];
                tmp[cnt[md->re[t].codes[i]]++] = i;
            }
            memcpy(N->order, tmp, n * sizeof *tmp);
            free(cnt);
        }
    }
    free(tmp);
    /* ranges, and buffers for the largest cluster of each term */
    for (int t = 0; ok && t < K; t++) {
        int nl = md->re[t].nlevels;
        N->rs[t] = calloc((size_t)nl, sizeof **N->rs);
        N->re[t] = calloc((size_t)nl, sizeof **N->re);
        ok = N->rs[t] && N->re[t];
        if (!ok)
            break;
        for (int l = 0; l < nl; l++)
            N->rs[t][l] = (size_t)-1;
        for (size_t o = 0; o < n; o++) {
            int l = md->re[t].codes[N->order[o]];
            if (N->rs[t][l] == (size_t)-1)
                N->rs[t][l] = o;
            N->re[t][l] = o + 1;
        }
        size_t mxs = 1;
        for (int l = 0; l < nl; l++)
            if (N->rs[t][l] != (size_t)-1 && N->re[t][l] - N->rs[t][l] > mxs)
                mxs = N->re[t][l] - N->rs[t][l];
        N->T[t] = malloc(mxs * (size_t)W * sizeof **N->T);
        N->A[t] = malloc(mxs * (size_t)W * sizeof **N->A);
        ok = N->T[t] && N->A[t];
        if (ok && t == 0) {
            N->cw = malloc(mxs * 3 * sizeof *N->cw);
            ok = N->cw != NULL;
        }
    }
    /* children of each level of term t >= 1: the levels of term t-1 inside it */
    for (int t = 1; ok && t < K; t++) {
        const mlmx_reterm_info *fine = &md->re[t - 1], *coarse = &md->re[t];
        int *parent = malloc((size_t)fine->nlevels * sizeof *parent);
        size_t *fill = malloc(((size_t)coarse->nlevels + 1) * sizeof *fill);
        N->child_ptr[t] = calloc((size_t)coarse->nlevels + 1, sizeof **N->child_ptr);
        N->child[t] = malloc((size_t)fine->nlevels * sizeof **N->child);
        ok = parent && fill && N->child_ptr[t] && N->child[t];
        if (ok) {
            for (size_t i = 0; i < n; i++)
                parent[fine->codes[i]] = coarse->codes[i];
            for (int l = 0; l < fine->nlevels; l++)
                N->child_ptr[t][parent[l] + 1]++;
            for (int l = 0; l < coarse->nlevels; l++)
                N->child_ptr[t][l + 1] += N->child_ptr[t][l];
            memcpy(fill, N->child_ptr[t], ((size_t)coarse->nlevels + 1) * sizeof *fill);
            for (int l = 0; l < fine->nlevels; l++)
                N->child[t][fill[parent[l]]++] = l;
        }
        free(parent);
        free(fill);
    }
    if (!ok) {
        nest_free(N);
        return NULL;
    }
    return N;
}

/* The structure, built on first use; its per-path state reset. */
static struct mlmx_nest *nest_get(mlmx_glmm *g)
{
    if (!g->nest)
        g->nest = nest_build(g);
    if (g->nest) {
        memset(g->nest->cur, 0, (size_t)g->nest->K * sizeof *g->nest->cur);
        memset(g->nest->delta, 0, (size_t)g->su->m * sizeof *g->nest->delta);
    }
    return g->nest;
}

void mlmx_glmm_nest_free(struct mlmx_nest *N) { nest_free(N); }

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
    struct mlmx_nest *N = nest_get(g);
    if (!N)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    const int K = md->K;
    nest_ctx c = {g, k, z, lw, N->cur, N->delta, N->child_ptr, N->child};
    double total = 0.0;
    for (int l = 0; l < md->re[K - 1].nlevels; l++)
        total += level_logint(&c, K - 1, l);
    *dev = -2.0 * total;
    return MLMX_OK;
}

/* ------------------------------------------------------------------ */
/* The gradient of the adaptive quadrature deviance with the rule's
 * centres and scales held fixed (their own dependence on the parameters
 * is left out: it vanishes as the points grow, and is far below the
 * optimizer's tolerance at the usual 7..25 points; GLMMadaptive and
 * Stata's adaptive quadrature optimize the same way). The quadrature is
 * the recursion above; each level returns, per observation, the
 * node-weighted averages of d ll / d eta (and times each level's node
 * value, for theta; and the family's extra derivatives), which the level
 * above averages again with its own node weights. */

typedef struct gnest {
    mlmx_glmm *g;
    int nq, W, K;
    const double *z, *lw;
    double *cur, *delta;
    size_t **child_ptr;
    int **child;
    size_t **rs, **re;   /* per level k: cluster l's range [rs[k][l], re[k][l]) in nest order */
    size_t *order;       /* observations in nest order */
    double **T, **A;     /* per level: children's rows for one node, and the running average */
    double *cw;          /* finest: d1, W and dW/deta at the rule's centre, 3 per observation */
} gnest;

/* d ll / d eta and the family's extra derivatives (ordinal: d ll / d c_{y-1},
 * d ll / d c_y; negative binomial: d ll / d size) at eta. */
static double obs_deriv(const mlmx_glmm *g, size_t i, double eta, double *d1, double *e1,
                        double *e2)
{
    const double y = g->yv[i];
    const double w = g->pw ? g->pw[i] : 1.0;
    *e1 = *e2 = 0.0;
    if (g->family == MLMX_FAMILY_ORDINAL) {
        mlmx_gm_ocat r = mlmx_gm_ord_cat((int)g->link, (int)y, g->ncat, g->thr, eta);
        *d1 = w * r.d1;
        *e1 = -w * r.ra;
        *e2 = w * r.rb;
        return w == 0.0 ? 0.0 : w * r.lp;
    }
    if (g->family == MLMX_FAMILY_NEGBIN) {
        const double k = g->nb_size;
        mlmx_gm_obs o = mlmx_gm_negbin(y, k, 1.0, eta);
        double mu = exp(eta), dig = 0.0;
        /* psi(y + k) - psi(k) = sum_{j < y} 1 / (k + j) for integer y */
        for (int j = 0; j < (int)y; j++)
            dig += 1.0 / (k + j);
        *d1 = w * o.d1;
        *e1 = w * (dig + log(k / (k + mu)) + 1.0 - (k + y) / (k + mu));
        return w == 0.0 ? 0.0 : w * o.ll;
    }
    double fi;
    return obs_fast(g, i, eta, d1, &fi);
}

/* Running node-weighted average of rows: A (n x W) and the scale (mx, sc). */
static void wmerge(double *A, const double *T, size_t nrow, int W, double a, double *mx,
                   double *sc)
{
    if (a > *mx) {
        double f = *mx == -INFINITY ? 0.0 : exp(*mx - a);
        for (size_t r = 0; r < nrow * (size_t)W; r++)
            A[r] *= f;
        *sc *= f;
        *mx = a;
    }
    double w = exp(a - *mx);
    *sc += w;
    for (size_t r = 0; r < nrow * (size_t)W; r++)
        A[r] += w * T[r];
}

static double finest_logint_g(gnest *c, int l, double *out)
{
    mlmx_glmm *g = c->g;
    const mlmx_model *md = g->md;
    const mlmx_lmm_stats *s = g->su;
    const mlmx_lmm_work *w = g->wu;
    const int K = md->K, W = c->W;
    const size_t qq = (size_t)g->qmax * (size_t)g->qmax;
    double shift = 0.0;
    for (size_t r = s->row_ptr[l]; r + 1 < s->row_ptr[l + 1]; r++)
        shift += w->L21[r] * c->delta[s->row_col[r]];
    double lcc = w->L11[l], um = g->u[l];
    double v = um - shift / lcc;
    const double th0 = g->tm[0];
    const double *z0 = md->re[0].z;
    const size_t r0 = c->rs[0][l], r1 = c->re[0][l], nr = r1 - r0;
    for (size_t o = r0; o < r1; o++) {
        size_t i = c->order[o];
        double b = g->etaf[i];
        for (int k = 1; k < K; k++)
            b += g->tm[(size_t)k * qq] * md->re[k].z[i] * c->cur[k];
        g->wz[i] = b;
    }
    double prec, gr, info;
    for (int it = 0; it < 8; it++) {
        cluster_newton(g, c->order + r0, nr, th0, v, &gr, &info);
        double step = (gr - v) / (1.0 + info);
        v += step;
        if (fabs(step) < 1e-10 * (1.0 + fabs(v)))
            break;
    }
    cluster_newton(g, c->order + r0, nr, th0, v, &gr, &info);
    prec = 1.0 + info;
    (void)lcc;
    double sd = 1.0 / sqrt(prec);
    double *A = c->A[0], *T = c->T[0];
    memset(A, 0, nr * (size_t)W * sizeof *A);
    double mx = -INFINITY, sc = 0.0;
    double av[MLMX_GHQ_MAX], hp[MLMX_GHQ_MAX];
    const size_t *ix = c->order + r0;
    for (int a = 0; a < c->nq; a++) {
        double uv = v + sd * c->z[a];
        double acc = c->lw[a] + 0.5 * c->z[a] * c->z[a] - 0.5 * uv * uv;
        acc += cluster_ll(g, ix, nr, th0, uv, T, W, K, c->cur);
        /* h'(u) = -u + sum_i t_i d1_i: the integrand's slope at the node */
        double sl = -uv;
        for (size_t o = 0; o < nr; o++)
            sl += th0 * z0[ix[o]] * T[o * (size_t)W];
        av[a] = acc;
        hp[a] = sl;
        wmerge(A, T, nr, W, acc, &mx, &sc);
    }
    for (size_t r = 0; r < nr * (size_t)W; r++)
        out[r] = A[r] / sc;
    /* The rule's centre (the conditional mode) and scale move with the
     * parameters; for the canonical links add that motion exactly (the
     * implicit derivative of the mode, and of the curvature there), which
     * makes the single-term gradient exact. With ancestors their node values
     * are held fixed. */
    if ((g->family == MLMX_FAMILY_BINOMIAL && g->link == MLMX_LINK_LOGIT) ||
        g->family == MLMX_FAMILY_POISSON) {
        double Dc = 0.0, Ds = 1.0 / sd;
        for (int a = 0; a < c->nq; a++) {
            double pi = exp(av[a] - mx) / sc;
            Dc += pi * hp[a];
            Ds += pi * c->z[a] * hp[a];
        }
        /* d1, d2 (= the Fisher information for these links) and its slope at
         * the centre, per observation */
        double D = 1.0, T3 = 0.0;
        double *Tc = c->cw;
        for (size_t o = 0; o < nr; o++) {
            size_t i = ix[o];
            double t = th0 * z0[i], eta = g->wz[i] + t * v, d1, w2, w3;
            if (g->family == MLMX_FAMILY_POISSON) {
                double mu = exp(eta);
                d1 = g->yv[i] - mu;
                w2 = mu;
                w3 = mu;
            } else {
                double e = exp(-fabs(eta)), mu = eta >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
                d1 = g->yv[i] - g->ntr[i] * mu;
                w2 = g->ntr[i] * mu * (1.0 - mu);
                w3 = w2 * (1.0 - 2.0 * mu);
            }
            const double wi = g->pw ? g->pw[i] : 1.0;
            d1 *= wi;
            w2 *= wi;
            w3 *= wi;
            double *r = Tc + o * 3;
            r[0] = d1;
            r[1] = w2;
            r[2] = w3;
            D += t * t * w2;
            T3 += t * t * t * w3;
        }
        const double q = -0.5 * sd * sd * sd, cf = (Dc + Ds * q * T3) / D;
        for (size_t o = 0; o < nr; o++) {
            size_t i = ix[o];
            double t = th0 * z0[i];
            const double *r = Tc + o * 3;
            double d1 = r[0], w2 = r[1], w3 = r[2];
            double kappa = -t * w2 * cf + Ds * q * t * t * w3;
            double rho = cf * (d1 - t * w2 * v) + Ds * q * (2.0 * t * w2 + t * t * w3 * v);
            double *ou = out + o * (size_t)W;
            ou[0] += kappa;
            ou[1] += rho;
            for (int k = 1; k < K; k++)
                ou[1 + k] += c->cur[k] * kappa;
        }
    }
    return log(sd) + mx + log(sc);
}

static double level_logint_g(gnest *c, int k, int l, double *out)
{
    if (k == 0)
        return finest_logint_g(c, l, out);
    mlmx_glmm *g = c->g;
    const mlmx_lmm_stats *s = g->su;
    const mlmx_lmm_work *w = g->wu;
    const size_t m = (size_t)s->m;
    const size_t col = (size_t)s->term_off[k] + (size_t)l;
    const mlmx_block_stage *st = &s->stages[k - 1];
    const int W = c->W;
    double lcc = w->S[col + col * m], shift = 0.0;
    for (size_t r = st->col_ptr[l]; r < st->col_ptr[l + 1]; r++) {
        size_t a = (size_t)st->col[r];
        if (a + 1 < m)
            shift += w->S[a + col * m] * c->delta[a];
    }
    double um = g->u[g->nu1 + col];
    double center = um - shift / lcc, sd = 1.0 / lcc;
    const size_t r0 = c->rs[k][l], r1 = c->re[k][l], nr = r1 - r0;
    double *A = c->A[k], *T = c->T[k];
    memset(A, 0, nr * (size_t)W * sizeof *A);
    double mx = -INFINITY, sc = 0.0;
    for (int a = 0; a < c->nq; a++) {
        double v = center + sd * c->z[a];
        c->cur[k] = v;
        c->delta[col] = v - um;
        double acc = c->lw[a] + 0.5 * c->z[a] * c->z[a] - 0.5 * v * v;
        for (size_t e = c->child_ptr[k][l]; e < c->child_ptr[k][l + 1]; e++) {
            int ch = c->child[k][e];
            size_t c0 = c->rs[k - 1][ch];
            acc += level_logint_g(c, k - 1, ch, T + (c0 - r0) * (size_t)W);
        }
        wmerge(A, T, nr, W, acc, &mx, &sc);
    }
    c->delta[col] = 0.0;
    c->cur[k] = 0.0;
    for (size_t r = 0; r < nr * (size_t)W; r++)
        out[r] = A[r] / sc;
    return log(sd) + mx + log(sc);
}

mlmx_status mlmx_glmm_agq_grad(mlmx_glmm *g, const double *theta, const double *beta, int k,
                               double *dev, double *grad, mlmx_error *err)
{
    const mlmx_model *md = g->md;
    const int K = md->K;
    const size_t n = md->n;
    if (K > 8 || !(K == 1 ? md->re[0].q == 1 : mlmx_glmm_nested_scalar(g)))
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "the quadrature gradient needs scalar terms, each nested in the next");
    double lap;
    mlmx_status st = mlmx_glmm_laplace(g, theta, beta, &lap, err);
    if (st)
        return st;
    double z[MLMX_GHQ_MAX], wq[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    if (k < 1 || k > MLMX_GHQ_MAX || mlmx_ghq_rule(k, z, wq, lw) != 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "quadrature points %d out of range (1..%d)", k,
                            MLMX_GHQ_MAX);
    struct mlmx_nest *N = nest_get(g);
    double *G = N ? malloc((n ? n : 1) * (size_t)N->W * sizeof *G) : NULL;
    if (!G)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    const int W = N->W;
    gnest c = {g,      k,      W,    K,     z,     lw,    N->cur, N->delta,
               N->child_ptr, N->child, N->rs, N->re, N->order, N->T,  N->A,   N->cw};
    int ok = 1;
    if (ok) {
        double total = 0.0;
        const int top = K - 1;
        for (int l = 0; l < md->re[top].nlevels; l++) {
            size_t s0 = c.rs[top][l];
            total += level_logint_g(&c, top, l, G + s0 * (size_t)W);
        }
        *dev = -2.0 * total;
        /* the gradient of -2 sum log I over [theta; beta; extra] */
        const int nt = md->ntheta, p = md->p;
        int ne = g->family == MLMX_FAMILY_ORDINAL ? g->ncat - 1
                 : g->family == MLMX_FAMILY_NEGBIN ? 1
                                                   : 0;
        for (int t = 0; t < nt + p + ne; t++)
            grad[t] = 0.0;
        for (size_t o = 0; o < n; o++) {
            size_t i = c.order[o];
            const double *gi = G + o * (size_t)W;
            for (int t = 0; t < K; t++)
                grad[md->re[t].theta_offset] += -2.0 * md->re[t].z[i] * gi[1 + t];
            for (int j = 0; j < p; j++)
                grad[nt + j] += -2.0 * md->X[(size_t)j * n + i] * gi[0];
            if (g->family == MLMX_FAMILY_ORDINAL) {
                int y = (int)g->yv[i];
                if (y > 0)
                    grad[nt + p + y - 1] += -2.0 * gi[K + 1];
                if (y < g->ncat - 1)
                    grad[nt + p + y] += -2.0 * gi[K + 2];
            } else if (g->family == MLMX_FAMILY_NEGBIN) {
                grad[nt + p] += -2.0 * gi[K + 1];
            }
        }
    }
    free(G);
    return ok ? MLMX_OK : mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
}
