/* The glmm-1ri batch engine's per-observation family math (included by
 * kernels/glmm_batch.h): binomial logit, probit and cloglog, Poisson log,
 * negative binomial NB2 (log link) and the cumulative logit, probit and
 * cloglog, each giving what the engine's
 * Laplace and quadrature criteria and their analytic gradients need, as
 * inline C/CUDA (GUIDE §8). Nothing here allocates.
 *
 * The parametrization is the workspace refit's (host/glmm/refit.c,
 * objective.c: mlmx_gobj_unpack): x = [theta; beta; extra], with extra
 *   ordinal: the K-1 thresholds as c_1 = x_e0, c_k = c_{k-1} + exp(x_ek);
 *   NB2:     the log of the size, size = exp(x_e0);
 * and the criterion uses the information w of the workspace's obs_unw
 * (glmm.c) at the mode: the observed one, w = -d2 ll/d eta2, for NB2 and
 * the ordinal links (for the canonical links it equals the expected one),
 * but the expected (Fisher) one, w = n r1 r0 (mlmx_gm_binomial), for the
 * binomial probit and cloglog. There the mode still moves with the
 * observed information wo = -d2 ll/d eta2 (the derivative of the
 * stationarity condition), so mlmx_gbf_centre gives both (wo = w for
 * every other family and link).
 *
 * The link: mlmx_gbf_set fills F for the family's canonical link (logit,
 * log); mlmx_gbf_set_link for any link the engine takes (MLMX_LINK_*:
 * binomial and ordinal logit, probit, cloglog). The derivatives of the
 * probit and cloglog cumulative links come from the log-density's
 * derivatives h = f'/f and k = f''/f at the category's ends
 * (mlmx_gbf_hk): with ra = f(a)/P, rb = f(b)/P, r2 = d1^2 - d2,
 *   dd1/dc_{y-1} = ra (h(a) + d1),   dd1/dc_y = -rb (h(b) + d1),
 *   dd2/dc_{y-1} = 2 d1 dd1/dc_{y-1} + ra (k(a) - r2),
 *   dd2/dc_y = 2 d1 dd1/dc_y - rb (k(b) - r2),
 * and d/deta = -(d/dc_{y-1} + d/dc_y) (a, b = c - eta). The binomial's
 * Fisher information n mu'^2/(mu (1 - mu)) has d log w/d eta = 2 h(eta)
 * - r1 + r0.
 *
 * Why per-observation derivatives in the extra parameters phi: with one
 * scalar effect and M = 1 + sum t_i^2 w_i, the Laplace gradient in phi is
 *   -2 sum dll_i/dphi + (a du/dphi + sum t_i^2 dw_i/dphi) / M,
 *   du/dphi = sum t_i dd1_i/dphi / M,   a = sum t_i^3 dw_i/deta,
 * (the mode moves because d1 depends on phi directly; eta does not), and
 * the quadrature's is the node average of sum dll_i/dphi plus the same
 * motion of the rule's centre and scale (glmm_batch.h). So an observation
 * supplies dll/dphi, dd1/dphi and dw/dphi for the (at most two) extra
 * parameters it touches: an ordinal response of category y touches
 * c_{y-1} and c_y; a count touches the log-size. These are taken in the
 * thresholds c (mapped to x once per evaluation, mlmx_gbf_map_grad) and
 * directly in the log-size. */
#ifndef MLMX_GLMM_BATCH_FAM_H
#define MLMX_GLMM_BATCH_FAM_H

#include <math.h>

#include "glmm_math.h"

/* Most extra parameters (ordinal: categories - 1). */
#define MLMX_GB_EMAX 8

/* The family's parameters at one x, set once per evaluation
 * (mlmx_gbf_set): the thresholds c, and for category y (1..K-2)
 * lc[y] = log(1 - e^-(c_y - c_{y-1})), rr[y] = 1/(e^(c_y - c_{y-1}) - 1)
 * (the cumulative logit's per-category constants, as agq.c's
 * ord_prepare); ex[k] = exp(x_ek) (the threshold map's Jacobian); the NB2
 * size and its log. */
typedef struct mlmx_gbf {
    double c[MLMX_GB_EMAX], lc[MLMX_GB_EMAX + 1], rr[MLMX_GB_EMAX + 1], ex[MLMX_GB_EMAX];
    double size, lsize;
    int link; /* MLMX_LINK_* (mlmx_gbf_set: the family's canonical link) */
} mlmx_gbf;

/* The family's canonical link: logit (binomial, ordinal) or log. */
MLMX_HD int mlmx_gbf_canonical(int fam)
{
    return fam == MLMX_FAM_BINOMIAL || fam == MLMX_FAM_ORDINAL ? MLMX_LINK_LOGIT : MLMX_LINK_LOG;
}

/* Fill F from xe (the ne extra entries of x) for family fam (MLMX_FAM_*
 * of glmm_math.h); ncat: ordinal categories (ne = ncat - 1). Same
 * arithmetic as mlmx_gobj_unpack, so the thresholds are bitwise the
 * workspace's. */
MLMX_HD void mlmx_gbf_set(int fam, int ncat, const double *xe, mlmx_gbf *F)
{
    F->link = mlmx_gbf_canonical(fam);
    if (fam == MLMX_FAM_ORDINAL) {
        double t = xe[0];
        F->c[0] = t;
        F->ex[0] = 1.0;
        for (int k = 1; k < ncat - 1; k++) {
            F->ex[k] = exp(xe[k]);
            t += F->ex[k];
            F->c[k] = t;
        }
        for (int y = 1; y < ncat - 1; y++) {
            const double d = F->c[y] - F->c[y - 1];
            F->lc[y] = log(-expm1(-d));
            F->rr[y] = 1.0 / expm1(d);
        }
    } else if (fam == MLMX_FAM_NEGBIN) {
        F->size = exp(xe[0]);
        F->lsize = log(F->size);
    }
}

/* As mlmx_gbf_set, for link (MLMX_LINK_*; the family must take it). */
MLMX_HD void mlmx_gbf_set_link(int fam, int link, int ncat, const double *xe, mlmx_gbf *F)
{
    mlmx_gbf_set(fam, ncat, xe, F);
    F->link = link;
}

/* The extra parameters observation y touches: ordinal c_{y-1} (*lo) and
 * c_y (*hi), -1 where absent; NB2 the log-size (*lo = 0, *hi = -1);
 * none (-1, -1) for the binomial and Poisson. */
MLMX_HD void mlmx_gbf_touch(int fam, int ncat, double y, int *lo, int *hi)
{
    *lo = *hi = -1;
    if (fam == MLMX_FAM_ORDINAL) {
        const int c = (int)y;
        *lo = c > 0 ? c - 1 : -1;
        *hi = c < ncat - 1 ? c : -1;
    } else if (fam == MLMX_FAM_NEGBIN) {
        *lo = 0;
    }
}

/* NB2 in the logistic form of mlmx_gm_negbin: m = eta - log size,
 * p = plogis(m) = mu/(size + mu), q = 1 - p, L = log(1 + e^m). */
MLMX_HD double mlmx_gbf_nb_pq(double m, double *p, double *q)
{
    const double e = exp(-fabs(m)), ope = 1.0 + e;
    *p = m >= 0.0 ? 1.0 / ope : e / ope;
    *q = m >= 0.0 ? e / ope : 1.0 / ope;
    return (m > 0.0 ? m : 0.0) + log1p(e);
}

/* Binomial logit (poisson = 0) or Poisson log (1): the log-likelihood
 * without its constant at eta, with d ll/d eta and the information w. For
 * the logit with one trial the log(1 + e^-|eta|) factor is multiplied into
 * *prod (in (1, 2]; the caller takes one log, as agq.c does) instead of
 * being logged here. (Also used by kernels/glmm_nest_batch.h.) */
MLMX_HD double mlmx_gb_obs(int poisson, double y, double nt, double eta, double *d1, double *w,
                           double *prod)
{
    if (poisson) {
        const double mu = exp(eta);
        *d1 = y - mu;
        *w = mu;
        return y * eta - mu;
    }
    double e, ope;
    const double mu = mlmx_gm_logit_mu(eta, &e, &ope);
    *d1 = y - nt * mu;
    *w = nt * mu * (1.0 - mu);
    double lin = y * eta - nt * (eta > 0.0 ? eta : 0.0);
    if (nt == 1.0)
        *prod *= ope;
    else
        lin -= nt * mlmx_gm_log1p_unit(e, ope);
    return lin;
}

/* h = f'/f (returned) and k = f''/f (*k) of the probit's or the
 * cloglog's density f at x. */
MLMX_HD double mlmx_gbf_hk(int link, double x, double *k)
{
    if (link == MLMX_LINK_PROBIT) {
        *k = x * x - 1.0;
        return -x;
    }
    const double t = exp(x), h = 1.0 - t;
    *k = h * h - t;
    return h;
}

/* Binomial probit or cloglog at eta: the log-likelihood without the
 * binomial coefficient, d1 and the Fisher information *w as obs_unw
 * (mlmx_gm_binomial's arithmetic); when wo is not NULL also the observed
 * information *wo and *w3 = dw/d eta. */
MLMX_HD double mlmx_gbf_bin_link(int link, double y, double nt, double eta, double *d1,
                                 double *w, double *wo, double *w3)
{
    const mlmx_gm_bparts b = mlmx_gm_binomial_parts(link, eta);
    const double ny = nt - y;
    double ll = 0.0, a1 = 0.0, a2 = 0.0;
    if (y != 0.0) {
        ll += y * b.lp;
        a1 += y * b.r1;
        a2 += y * b.s1;
    }
    if (ny != 0.0) {
        ll += ny * b.lq;
        a1 -= ny * b.r0;
        a2 += ny * b.s0;
    }
    *d1 = a1;
    *w = nt * b.r1 * b.r0;
    if (wo) {
        double k;
        *wo = a2;
        *w3 = *w * (2.0 * mlmx_gbf_hk(link, eta, &k) - b.r1 + b.r0);
    }
    return ll;
}

/* One observation at eta: the log-likelihood without the terms that do
 * not depend on eta (the binomial coefficient, -log y!, NB2's
 * lgamma(y + size) - lgamma(size): see mlmx_gbf_cluster_const), d ll/d eta
 * (*d1), the observed information (*w), and d ll/d phi for the extra
 * parameters it touches (*e1 for lo, *e2 for hi, mlmx_gbf_touch; 0 for the
 * binomial and Poisson). y: successes, count or 0-based category; nt:
 * binomial trials. For the logit with one trial and the cumulative logit
 * the (1 + e^-|.|) factors are multiplied into *prod (each in (1, 2]) for
 * the caller's one log per cluster, as agq.c does. */
MLMX_HD double mlmx_gbf_obs_link(int fam, int link, int ncat, const mlmx_gbf *F, double y,
                                 double nt, double eta, double *d1, double *w, double *prod,
                                 double *e1, double *e2)
{
    /* the canonical families first: one test on their hot path */
    if (fam <= MLMX_FAM_POISSON) {
        *e1 = *e2 = 0.0;
        if (fam == MLMX_FAM_BINOMIAL && link != MLMX_LINK_LOGIT)
            return mlmx_gbf_bin_link(link, y, nt, eta, d1, w, NULL, NULL);
        return mlmx_gb_obs(fam == MLMX_FAM_POISSON, y, nt, eta, d1, w, prod);
    }
    if (fam == MLMX_FAM_NEGBIN) {
        const double s = F->size, m = eta - F->lsize;
        double p, q;
        const double L = mlmx_gbf_nb_pq(m, &p, &q);
        *d1 = y * q - s * p;
        *w = (y + s) * p * q;
        *e1 = s * (p - L) - y * q;
        *e2 = 0.0;
        return y * m - (s + y) * L;
    }
    if (link != MLMX_LINK_LOGIT) {
        const mlmx_gm_ocat r = mlmx_gm_ord_cat(link, (int)y, ncat, F->c, eta);
        *d1 = r.d1;
        *w = r.d2;
        *e1 = -r.ra;
        *e2 = r.rb;
        return r.lp;
    }
    double d2;
    const double l =
        mlmx_gm_ord_logit_obs(F->c, ncat, F->lc, F->rr, (int)y, eta, prod, d1, &d2, e1, e2);
    *w = d2;
    return l;
}

/* mlmx_gbf_obs_link with F's link. (The engine passes its structure's
 * link instead, which a kernel instantiation makes a compile-time
 * constant: F lives in local memory, where the compiler does not fold it.) */
MLMX_HD double mlmx_gbf_obs(int fam, int ncat, const mlmx_gbf *F, double y, double nt, double eta,
                            double *d1, double *w, double *prod, double *e1, double *e2)
{
    return mlmx_gbf_obs_link(fam, F->link, ncat, F, y, nt, eta, d1, w, prod, e1, e2);
}

/* One observation's derivatives at the rule's centre (no log-likelihood):
 * d1, w, w3 = dw/d eta, the observed information wo (= w but for the
 * binomial probit and cloglog), and for the extra parameters it touches
 * (index 0 for lo, 1 for hi) dll/dphi (el), dd1/dphi (ed), dw/dphi (ew);
 * 0 for the binomial and Poisson, which have none. */
typedef struct mlmx_gbf_cd {
    double d1, w, w3, el[2], ed[2], ew[2], wo;
} mlmx_gbf_cd;

/* The cumulative probit or cloglog at the centre (see the top). */
MLMX_HD void mlmx_gbf_ord_centre(int link, const mlmx_gbf *F, int ncat, double y, double eta,
                                 mlmx_gbf_cd *o)
{
    const int c = (int)y;
    const mlmx_gm_ocat r = mlmx_gm_ord_cat(link, c, ncat, F->c, eta);
    const double d1 = r.d1, r2 = d1 * d1 - r.d2;
    double k;
    o->d1 = d1;
    o->w = o->wo = r.d2;
    o->el[0] = -r.ra;
    o->el[1] = r.rb;
    if (r.ra > 0.0) { /* c > 0 */
        const double h = mlmx_gbf_hk(link, F->c[c - 1] - eta, &k);
        o->ed[0] = r.ra * (h + d1);
        o->ew[0] = 2.0 * d1 * o->ed[0] + r.ra * (k - r2);
    }
    if (r.rb > 0.0) { /* c < ncat - 1 */
        const double h = mlmx_gbf_hk(link, F->c[c] - eta, &k);
        o->ed[1] = -r.rb * (h + d1);
        o->ew[1] = 2.0 * d1 * o->ed[1] - r.rb * (k - r2);
    }
    o->w3 = -(o->ew[0] + o->ew[1]);
}

MLMX_HD void mlmx_gbf_centre_link(int fam, int link, int ncat, const mlmx_gbf *F, double y,
                                  double nt, double eta, mlmx_gbf_cd *o)
{
    o->el[0] = o->el[1] = o->ed[0] = o->ed[1] = o->ew[0] = o->ew[1] = 0.0;
    if (link != mlmx_gbf_canonical(fam)) {
        if (fam == MLMX_FAM_ORDINAL)
            mlmx_gbf_ord_centre(link, F, ncat, y, eta, o);
        else
            mlmx_gbf_bin_link(link, y, nt, eta, &o->d1, &o->w, &o->wo, &o->w3);
        return;
    }
    switch (fam) {
    case MLMX_FAM_POISSON:
        o->w = o->w3 = o->wo = exp(eta);
        o->d1 = y - o->w;
        return;
    case MLMX_FAM_NEGBIN: {
        /* in the log-size ls: dp/dls = -pq, dq/dls = pq (m = eta - ls) */
        const double s = F->size;
        double p, q;
        const double L = mlmx_gbf_nb_pq(eta - F->lsize, &p, &q);
        o->d1 = y * q - s * p;
        o->w = o->wo = (y + s) * p * q;
        o->w3 = o->w * (q - p);
        o->el[0] = s * (p - L) - y * q;
        o->ed[0] = y * p * q - s * p * p;
        o->ew[0] = p * q * (y * (p - q) + 2.0 * s * p);
        return;
    }
    case MLMX_FAM_ORDINAL: {
        /* fa = F(c_{y-1} - eta), fb = F(c_y - eta); d1 = fa + fb - 1,
         * w = f(a) + f(b), f = F(1 - F), f' = f (1 - 2F) */
        double prod = 1.0, d2;
        mlmx_gm_ord_logit_obs(F->c, ncat, F->lc, F->rr, (int)y, eta, &prod, &o->d1, &d2,
                              &o->el[0], &o->el[1]);
        const int c = (int)y;
        double va = 0.0, vb = 0.0, sa = 0.0, sb = 0.0;
        if (c > 0) {
            const double fa = mlmx_gm_plogis(F->c[c - 1] - eta);
            va = fa * mlmx_gm_plogis(eta - F->c[c - 1]);
            sa = va * (1.0 - 2.0 * fa);
        }
        if (c < ncat - 1) {
            const double fb = mlmx_gm_plogis(F->c[c] - eta);
            vb = fb * mlmx_gm_plogis(eta - F->c[c]);
            sb = vb * (1.0 - 2.0 * fb);
        }
        o->w = o->wo = d2;
        o->w3 = -(sa + sb);
        o->ed[0] = va;
        o->ed[1] = vb;
        o->ew[0] = sa;
        o->ew[1] = sb;
        return;
    }
    default: {
        double e, ope;
        const double mu = mlmx_gm_logit_mu(eta, &e, &ope);
        o->d1 = y - nt * mu;
        o->w = o->wo = nt * mu * (1.0 - mu);
        o->w3 = o->w * (1.0 - 2.0 * mu);
        return;
    }
    }
}

/* mlmx_gbf_centre_link with F's link (see mlmx_gbf_obs). */
MLMX_HD void mlmx_gbf_centre(int fam, int ncat, const mlmx_gbf *F, double y, double nt,
                             double eta, mlmx_gbf_cd *o)
{
    mlmx_gbf_centre_link(fam, F->link, ncat, F, y, nt, eta, o);
}

/* The NB2 log-likelihood's terms that do not depend on eta for one count:
 * lgamma(y + size) - lgamma(size) (mlmx_gm_lgamma_ratio, as mlmx_gm_negbin
 * computes it) as the return value, and its derivative in the log-size,
 * size (psi(y + size) - psi(size)) = size sum_{j<y} 1/(size + j), into
 * *dls. Once per cluster and evaluation, never per node. */
MLMX_HD double mlmx_gbf_nb_const(const mlmx_gbf *F, double y, double *dls)
{
    const double s = F->size;
    double dig = 0.0;
    for (int j = 0; j < (int)y; j++)
        dig += 1.0 / (s + j);
    *dls = s * dig;
    return mlmx_gm_lgamma_ratio(y, s);
}

/* Map the gradient in the thresholds c (ge, ncat - 1 values, in place) to
 * the gradient in x: c_k = x_0 + sum_{1<=j<=k} exp(x_j), so
 * d/dx_k = ex_k sum_{j>=k} d/dc_j (ex_0 = 1), as mlmx_gobj_grad_x. */
MLMX_HD void mlmx_gbf_map_grad(int ncat, const mlmx_gbf *F, double *ge)
{
    double tail = 0.0;
    for (int k = ncat - 2; k >= 0; k--) {
        tail += ge[k];
        ge[k] = F->ex[k] * tail;
    }
}

/* The extra parameters in their natural scale from x's (thresholds, or
 * the size), as the workspace reports them (mlmx_rep_glmm_fit). */
MLMX_HD void mlmx_gbf_natural(int fam, int ncat, const double *xe, double *out)
{
    if (fam == MLMX_FAM_ORDINAL) {
        double t = xe[0];
        out[0] = t;
        for (int k = 1; k < ncat - 1; k++) {
            t += exp(xe[k]);
            out[k] = t;
        }
    } else if (fam == MLMX_FAM_NEGBIN) {
        out[0] = exp(xe[0]);
    }
}

#endif
