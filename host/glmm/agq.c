/* Adaptive Gauss-Hermite quadrature: one scalar term, a vector term by the
 * product rule, and nested scalar terms level by level; the value and its
 * gradient. Every rule is placed with the Laplace fit's modes and
 * curvatures (glmm.c). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_math.h"
#include "glmm/ghq.h"
#include "glmm/glmm.h"
#include "glmm_math.h"

static double obs_fast(const mlmx_glmm *g, size_t i, double eta, double *d1, double *fi)
{
    return mlmx_glmm_obs(g, i, eta, d1, fi);
}

/* Every adaptive rule starts at the Laplace approximation: its PIRLS gives
 * the modes and curvatures the rule is placed with. With one point and
 * `shortcut` that is the answer (*done = 1); otherwise the k-point rule's
 * nodes and log-weights (the nested rules run their one-point rule through
 * the recursion, which is how it is shown to equal Laplace). */
static mlmx_status agq_start(mlmx_glmm *g, const double *theta, const double *beta, int k,
                             int shortcut, double *z, double *lw, double *dev, int *done,
                             mlmx_error *err)
{
    double lap, w[MLMX_GHQ_MAX];
    *done = 0;
    if (k < 1 || k > MLMX_GHQ_MAX)
        return mlmx_err_set(err, MLMX_ERR_ARG, "quadrature points %d out of range (1..%d)", k,
                            MLMX_GHQ_MAX);
    mlmx_status st = mlmx_glmm_laplace(g, theta, beta, &lap, err);
    if (st || (k == 1 && shortcut)) {
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
    mlmx_status st = agq_start(g, theta, beta, k, 1, z, lw, dev, &done, err);
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
    mlmx_status st = agq_start(g, theta, beta, k, 1, z, lw, dev, &done, err);
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

/* The cumulative logit's per-category constants for
 * mlmx_gm_ord_logit_obs (kernels/glmm_math.h): lc[y] = log(1 - e^-(c_y -
 * c_{y-1})) and r[y] = 1/(e^(c_y - c_{y-1}) - 1). */
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
            double eta = wz[i] + th0 * zz[i] * uv, e, ope;
            const double mu = mlmx_gm_logit_mu(eta, &e, &ope);
            if (wi != 0.0)
                lin += wi * (y[i] * eta - nt[i] * (eta > 0.0 ? eta : 0.0) + llc[i]);
            if (nt[i] == 1.0 && wi == 1.0) {
                prod *= ope;
                if (prod > 1e280) {
                    lin -= log(prod);
                    prod = 1.0;
                }
            } else if (wi != 0.0) {
                lin -= wi * nt[i] * mlmx_gm_log1p_unit(e, ope);
            }
            if (t) {
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
            double eta = wz[i] + th0 * zz[i] * uv, d1, fi;
            double ll = mlmx_gm_poisson_fast(y[i], llc[i], eta, &d1, &fi);
            if (wi != 0.0)
                lin += wi * ll;
            if (t) {
                d1 *= wi;
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
            double l = mlmx_gm_ord_logit_obs(g->thr, g->ncat, oc.lc, oc.r, (int)y[i], wz[i] + th0 * zz[i] * uv, &pr, &d1, &d2,
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
            double zt = th0 * zz[i], eta = g->wz[i] + zt * v, e, ope;
            double mu = mlmx_gm_logit_mu(eta, &e, &ope);
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
            mlmx_gm_ord_logit_obs(g->thr, g->ncat, oc.lc, oc.r, (int)g->yv[i], g->wz[i] + zt * v, &pr, &d1, &d2, &dlo, &dhi);
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
    double *G; /* n * W: each observation's node-weighted derivatives */
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
    free(N->G);
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
    N->G = malloc((n ? n : 1) * (size_t)N->W * sizeof *N->G);
    size_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    int ok = N->cur && N->delta && N->child_ptr && N->child && N->rs && N->re && N->T && N->A &&
             N->order && N->G && tmp;
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
    double z[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    int done = 0;
    mlmx_status st = agq_start(g, theta, beta, k, 0, z, lw, dev, &done, err);
    if (st)
        return st;
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
        *d1 = w * o.d1;
        *e1 = w * mlmx_gm_negbin_dsize(y, k, exp(eta));
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
                mlmx_gm_poisson_fast(g->yv[i], 0.0, eta, &d1, &w2);
                w3 = w2;
            } else {
                double e, ope, mu = mlmx_gm_logit_mu(eta, &e, &ope);
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
    double z[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    int done = 0;
    mlmx_status st = agq_start(g, theta, beta, k, 0, z, lw, dev, &done, err);
    if (st)
        return st;
    struct mlmx_nest *N = nest_get(g);
    if (!N)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    double *G = N->G;
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
    return ok ? MLMX_OK : mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
}
