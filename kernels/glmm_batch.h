/* Replicate fits of a GLMM with one random-effect term: a scalar one (the
 * random intercept (1|g), or any single column (0 + x|g)), or a vector of
 * q = 2..MLMX_GB_QMAX correlated effects in one grouping factor, lme4's
 * (1 + x|g) (kernels/glmm_batch_vec.h, Laplace only): binomial with
 * the logit, probit or cloglog link (a vector term: logit only), Poisson
 * with the log link, negative binomial NB2 with the log link, or the
 * cumulative logit, probit or cloglog (ordinal), by the Laplace
 * approximation (nAGQ = 1) or adaptive Gauss-Hermite quadrature
 * (nAGQ > 1): written once as inline math for the CPU engine
 * (host/replicate/glmm_batch.c) and the CUDA kernel
 * (kernels/glmm_batch.cu), GUIDE §8. The per-observation family math is
 * kernels/glmm_batch_fam.h.
 *
 * The definitions are those of the workspace refit (host/glmm/refit.c):
 *   x = [theta; beta; extra] (theta: the q(q+1)/2 entries of the lower
 *   triangle of lme4's relative Cholesky factor T, column by column; beta
 *   without an ordinal model's intercept; extra: thresholds or log-size,
 *   glmm_batch_fam.h), lower bound 0 on T's diagonal entries, BFGS (kernels/qn.h) from the problem's start with its
 *   inverse-Hessian seed and the default tolerances (max_evals from the
 *   fit options);
 *   Laplace: D = sum_j [-2 sum_i ll_i(eta~_i) + u~_j^2 + log(1 + sum_i t_i^2 w_i)],
 *   t_i = theta z_i, u~_j the conditional mode, w_i the information there
 *   (glmm.c, mlmx_glmm_laplace: observed, but expected for the binomial
 *   probit and cloglog, glmm_batch_fam.h), with its exact gradient
 *   (grad.c for the canonical links; the same derivation with the extra
 *   parameters' terms and, where w is the expected information, the
 *   mode's motion by the observed one wo, glmm_batch_fam.h); a vector
 *   term: the same with u~_j a q-vector and log det(I + T' sum_i w_i z_i
 *   z_i' T) for the last term (kernels/glmm_batch_vec.h; w = wo there);
 *   quadrature: D = -2 sum_j [log s_j + LSE_a(log w_a + z_a^2/2 - v_a^2/2 +
 *   sum_i ll_i(v_a))], v_a = u~_j + s_j z_a, s_j = (1 + sum t^2 w)^-1/2,
 *   with the gradient of agq.c (finest_logint_g: the node averages plus
 *   the exact motion of the rule's centre and scale, which agq.c adds for
 *   the canonical links and this engine for every family).
 * ll_i includes its constant (log binomial coefficient, -log y!); the
 * constants are summed once per replicate (mlmx_gb_simulate) and added to
 * the criterion, which keeps the optimizer's relative tolerances those of
 * the workspace fit. NB2's lgamma(y + size) - lgamma(size) depends on the
 * size: it is summed once per cluster and evaluation.
 *
 * Observations are stored grouped by cluster (the term's levels, in level
 * order); `pos` maps model observation i to its grouped position, so the
 * simulation draws in model order as mlmx_workspace_simulate does.
 *
 * Per-replicate scratch is addressed with a stride (element k of replicate
 * r at base[k * stride]): the CPU passes stride 1, the GPU chooses its
 * layout. Nothing here allocates or calls a library beyond <math.h>. */
#ifndef MLMX_GLMM_BATCH_H
#define MLMX_GLMM_BATCH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_math.h"
#include "glmm_batch_fam.h"
#include "glmm_math.h"
#include "qn.h"
#include "random.h"
#include "simulate.h"

/* Most fixed effects in x (p <= MLMX_GB_PMAX), columns of the term (q <=
 * MLMX_GB_QMAX, nth = q(q+1)/2 <= MLMX_GB_THMAX theta entries) and
 * optimizer parameters (np = nth + p + ne <= MLMX_GB_NPMAX, ne <=
 * MLMX_GB_EMAX extra): the per-cluster gradient sums are register arrays
 * of these sizes. */
#define MLMX_GB_PMAX 16
#define MLMX_GB_QMAX 3
#define MLMX_GB_THMAX (MLMX_GB_QMAX * (MLMX_GB_QMAX + 1) / 2)
#define MLMX_GB_NPMAX (MLMX_GB_THMAX + MLMX_GB_PMAX + MLMX_GB_EMAX)
#define MLMX_GB_NEWTON_MAX 60 /* Newton steps for one cluster's mode */
#define MLMX_GB_HALF_MAX 40   /* step halvings in one Newton step */
/* Most free parameters mlmx_gb_se_finish takes: this engine's np, and
 * the nested engine's (kernels/glmm_nest_batch.h, np = 2 + p <= 14),
 * which it also serves. */
#define MLMX_GB_SE_NMAX (MLMX_GB_NPMAX > 16 ? MLMX_GB_NPMAX : 16)

/* The structure every replicate shares (read-only). Dimensions: n
 * observations, nclu clusters (levels of the term, empty ones allowed), q
 * columns of the term (1..MLMX_GB_QMAX) and nth = q(q+1)/2 theta entries,
 * p fixed effects in x (0..MLMX_GB_PMAX; an ordinal model's intercept
 * column is left out), ne extra parameters, np = nth + p + ne. */
typedef struct mlmx_gb_shared {
    int n, nclu, p, np;
    int q, nth;
    int fam;                 /* MLMX_FAM_* (glmm_math.h): binomial logit, Poisson log,
                                NB2 log, cumulative logit */
    int ncat;                /* ordinal categories (0 otherwise) */
    int ne;                  /* extra parameters: ncat - 1 thresholds, 1 log-size, or 0 */
    int pout, int_col;       /* the model's fixed effects and the one left out of x (-1: none) */
    int nagq;                /* 1: Laplace; > 1: quadrature points */
    const int *cs;           /* nclu + 1: cluster j holds grouped positions [cs[j], cs[j+1]) */
    const int *clu;          /* n: the cluster of grouped position k */
    const int *pos;          /* n: the grouped position of model observation i */
    const double *X;         /* n * p, row-major, grouped order */
    const double *z;         /* n * q: the term's columns, row-major, grouped order */
    const double *nt;        /* n: binomial trials (1 for 0/1 data and the other families) */
    const double *gz;        /* nagq: Gauss-Hermite nodes (nagq > 1) */
    const double *glw;       /* nagq: log weight + node^2 / 2 */
    const double *tsim;      /* q * q: the simulation's T (lower, column-major) */
    const double *beta_sim;  /* p (the columns of X) */
    const double *extra_sim; /* ne: thresholds, or the size (natural scale) */
    const double *x0, *lb;   /* np: the optimizer's start and lower bounds */
    const double *hinv0;     /* np * np column-major inverse Hessian at x0, or NULL */
    const double *xmax;      /* p: largest |X| of each column (difference steps) */
    mlmx_qn_cfg cfg;
    int link;                /* MLMX_LINK_*: logit, probit, cloglog (binomial, ordinal);
                                log (Poisson, NB2) */
} mlmx_gb_shared;

/* One replicate's scratch: y (n responses, grouped order) at y[k * ys],
 * u (nclu * q conditional modes, the warm start; component a of cluster j
 * is element j * q + a) at u[(j * q + a) * us]. */
typedef struct mlmx_gb_rep {
    double *y;
    double *u;
    ptrdiff_t ys, us;
} mlmx_gb_rep;

/* ------------------------------------------------------------ simulation */

/* The log-likelihood constant of response y (one trial count nt): what
 * mlmx_gbf_obs leaves out and does not depend on the parameters. */
MLMX_HD double mlmx_gb_llconst(int fam, double y, double nt)
{
    if (fam == MLMX_FAM_BINOMIAL)
        return lgamma(nt + 1.0) - lgamma(y + 1.0) - lgamma(nt - y + 1.0);
    if (fam == MLMX_FAM_ORDINAL)
        return 0.0;
    return -lgamma(y + 1.0);
}

/* Draw replicate `rep`'s response into R->y exactly as
 * mlmx_workspace_simulate does: u_l ~ N(0, I_q) from stream 0 in level
 * order, b_l = T u_l (mlmx_cm_lower_mv), eta_i = sum_j x_ij beta_j +
 * z_i' b_l (model order, the same arithmetic; an ordinal model's intercept
 * column is skipped there and absent here), y_i from stream 1 in model observation order by
 * mlmx_sim_response (family codes of mlmx_family: MLMX_FAM_* + 1). Leaves
 * R->u at 0 (the workspace fit's first warm start). Returns the sum of the
 * log-likelihood constants, or NaN when a draw is not finite. */
MLMX_HD double mlmx_gb_simulate(const mlmx_gb_shared *S, uint64_t seed, uint64_t rep,
                                const mlmx_gb_rep *R)
{
    mlmx_rng r;
    mlmx_rng_init(&r, seed, rep, 0);
    const int q = S->q, nu = S->nclu * q;
    for (int l = 0; l < S->nclu; l++) {
        double u[MLMX_GB_QMAX], b[MLMX_GB_QMAX];
        for (int a = 0; a < q; a++)
            u[a] = mlmx_rng_normal(&r);
        mlmx_cm_lower_mv(q, S->tsim, u, b);
        for (int a = 0; a < q; a++)
            R->u[(l * q + a) * R->us] = b[a];
    }
    mlmx_rng_init(&r, seed, rep, 1);
    const int p = S->p, fam = S->fam, link = S->link;
    const double size = fam == MLMX_FAM_NEGBIN ? S->extra_sim[0] : 0.0;
    double cst = 0.0;
    for (int i = 0; i < S->n; i++) {
        const int k = S->pos[i];
        const double *x = S->X + (size_t)k * (size_t)p;
        double eta = 0.0;
        for (int j = 0; j < p; j++)
            eta += x[j] * S->beta_sim[j];
        double zb = 0.0;
        for (int a = 0; a < q; a++)
            zb += S->z[k * q + a] * R->u[(S->clu[k] * q + a) * R->us];
        eta += zb;
        const double ntr = S->nt[k];
        const double y = mlmx_sim_response(fam + 1, link, eta, 1.0, ntr, size, S->ncat,
                                           S->extra_sim, &r);
        R->y[k * R->ys] = y;
        cst += mlmx_gb_llconst(fam, y, ntr);
    }
    for (int l = 0; l < nu; l++)
        R->u[l * R->us] = 0.0;
    return isfinite(cst) ? cst : MLMX_GM_NAN;
}

/* ------------------------------------------------------------ one observation */

/* The linear predictor without the random effect at grouped position k. */
MLMX_HD double mlmx_gb_etaf(const mlmx_gb_shared *S, int k, const double *beta)
{
    const double *x = S->X + (size_t)k * (size_t)S->p;
    double e = 0.0;
    for (int j = 0; j < S->p; j++)
        e += x[j] * beta[j];
    return e;
}

/* Cluster c at mode candidate v: h = -2 sum ll + v^2 (without the
 * constants), s1 = sum t d1, s2 = sum t^2 w. */
MLMX_HD double mlmx_gb_newton_sums(const mlmx_gb_shared *S, const mlmx_gbf *F,
                                   const mlmx_gb_rep *R, int c, double theta,
                                   const double *beta, double v, double *s1, double *s2)
{
    double lin = 0.0, prod = 1.0, a1 = 0.0, a2 = 0.0;
    for (int k = S->cs[c]; k < S->cs[c + 1]; k++) {
        const double t = theta * S->z[k];
        double d1, w, e1, e2;
        lin += mlmx_gbf_obs_link(S->fam, S->link, S->ncat, F, R->y[k * R->ys], S->nt[k],
                                 mlmx_gb_etaf(S, k, beta) + t * v, &d1, &w, &prod, &e1, &e2);
        if (prod > 1e280) {
            lin -= log(prod);
            prod = 1.0;
        }
        a1 += t * d1;
        a2 += t * t * w;
    }
    *s1 = a1;
    *s2 = a2;
    return -2.0 * (lin - log(prod)) + v * v;
}

/* Cluster c's conditional mode by Newton steps with step halving on the
 * penalized deviance (PIRLS for one scalar effect), warm-started from and
 * written back to R->u. Returns h at the mode; *s2o = sum t^2 w there. */
MLMX_HD double mlmx_gb_mode(const mlmx_gb_shared *S, const mlmx_gbf *F, const mlmx_gb_rep *R,
                            int c, double theta, const double *beta, double *vo, double *s2o)
{
    double v = R->u[c * R->us], s1, s2;
    double h = mlmx_gb_newton_sums(S, F, R, c, theta, beta, v, &s1, &s2);
    for (int it = 0; it < MLMX_GB_NEWTON_MAX; it++) {
        double step = (s1 - v) / (1.0 + s2);
        if (!(fabs(step) > 1e-10 * (1.0 + fabs(v))))
            break;
        int ok = 0;
        for (int hs = 0; hs < MLMX_GB_HALF_MAX && !ok; hs++, step *= 0.5) {
            double t1, t2, vn = v + step;
            double hn = mlmx_gb_newton_sums(S, F, R, c, theta, beta, vn, &t1, &t2);
            if (hn <= h + 1e-13 * fabs(h)) {
                ok = 1;
                v = vn;
                h = hn;
                s1 = t1;
                s2 = t2;
            }
        }
        if (!ok)
            break;
    }
    R->u[c * R->us] = v;
    *vo = v;
    *s2o = s2;
    return h;
}

/* ------------------------------------------------------------ centre sums */

/* The sums at a cluster's mode v that the Laplace gradient and the
 * quadrature's centre/scale correction need (w3 = dw/deta, wo the
 * observed information, glmm_batch_fam.h):
 * m = 1 + sum t^2 w, mo = 1 + sum t^2 wo, a = sum t^3 w3, zd1 = sum z d1,
 * z2w = sum z^2 w, z2o = sum z^2 wo, zt2w3 = sum z t^2 w3; per fixed
 * effect xd1 = sum x d1, xtw = sum x t wo, xt2w3 = sum x t^2 w3; per extra
 * parameter phi el = sum dll/dphi, ed = sum t dd1/dphi, ew = sum t^2
 * dw/dphi. The mode moves by du = (...)/mo (its sums with wo), the
 * curvature by a du and the rest (with w). */
typedef struct mlmx_gb_csum {
    double m, mo, a, zd1, z2w, z2o, zt2w3;
    double xd1[MLMX_GB_PMAX], xtw[MLMX_GB_PMAX], xt2w3[MLMX_GB_PMAX];
    double el[MLMX_GB_EMAX], ed[MLMX_GB_EMAX], ew[MLMX_GB_EMAX];
} mlmx_gb_csum;

MLMX_HD void mlmx_gb_centre(const mlmx_gb_shared *S, const mlmx_gbf *F, const mlmx_gb_rep *R,
                            int c, double theta, const double *beta, double v, mlmx_gb_csum *cs)
{
    const int p = S->p;
    cs->m = cs->mo = 1.0;
    cs->a = cs->zd1 = cs->z2w = cs->z2o = cs->zt2w3 = 0.0;
    for (int j = 0; j < p; j++)
        cs->xd1[j] = cs->xtw[j] = cs->xt2w3[j] = 0.0;
    for (int e = 0; e < S->ne; e++)
        cs->el[e] = cs->ed[e] = cs->ew[e] = 0.0;
    for (int k = S->cs[c]; k < S->cs[c + 1]; k++) {
        const double z = S->z[k], t = theta * z, y = R->y[k * R->ys];
        mlmx_gbf_cd o;
        mlmx_gbf_centre_link(S->fam, S->link, S->ncat, F, y, S->nt[k],
                             mlmx_gb_etaf(S, k, beta) + t * v, &o);
        const double d1 = o.d1, w = o.w, w3 = o.w3, wo = o.wo;
        cs->m += t * t * w;
        cs->mo += t * t * wo;
        cs->a += t * t * t * w3;
        cs->zd1 += z * d1;
        cs->z2w += z * z * w;
        cs->z2o += z * z * wo;
        cs->zt2w3 += z * t * t * w3;
        const double *x = S->X + (size_t)k * (size_t)p;
        for (int j = 0; j < p; j++) {
            cs->xd1[j] += x[j] * d1;
            cs->xtw[j] += x[j] * t * wo;
            cs->xt2w3[j] += x[j] * t * t * w3;
        }
        if (S->ne == 0)
            continue;
        int ix[2];
        mlmx_gbf_touch(S->fam, S->ncat, y, &ix[0], &ix[1]);
        for (int s = 0; s < 2; s++)
            if (ix[s] >= 0) {
                cs->el[ix[s]] += o.el[s];
                cs->ed[ix[s]] += t * o.ed[s];
                cs->ew[ix[s]] += t * t * o.ew[s];
            }
    }
}

/* ------------------------------------------------------------ one cluster */

/* Cluster c's Laplace deviance (without constants) at (theta, beta) and
 * the family parameters F; its gradient over [theta; beta; extra] (extra
 * in c or the log-size, glmm_batch_fam.h) is added to g (np values). */
MLMX_HD double mlmx_gb_laplace_cluster(const mlmx_gb_shared *S, const mlmx_gbf *F,
                                       const mlmx_gb_rep *R, int c, double theta,
                                       const double *beta, double *g)
{
    double v, s2;
    const double h = mlmx_gb_mode(S, F, R, c, theta, beta, &v, &s2);
    mlmx_gb_csum cs;
    mlmx_gb_centre(S, F, R, c, theta, beta, v, &cs);
    const double M = cs.m, Mo = cs.mo;
    /* the mode's motion: Mo du = (zd1 - v theta z2o) dtheta - sum t wo x dbeta
     * + sum t dd1/dphi dphi */
    const double du = (cs.zd1 - v * theta * cs.z2o) / Mo;
    g[0] += -2.0 * v * cs.zd1 + (2.0 * theta * cs.z2w + v * cs.zt2w3 + cs.a * du) / M;
    for (int j = 0; j < S->p; j++)
        g[1 + j] += -2.0 * cs.xd1[j] + (cs.xt2w3[j] - cs.a / Mo * cs.xtw[j]) / M;
    double *ge = g + 1 + S->p;
    for (int e = 0; e < S->ne; e++)
        ge[e] += -2.0 * cs.el[e] + (cs.a * cs.ed[e] / Mo + cs.ew[e]) / M;
    return h + log(1.0 + s2);
}

/* Running node-weighted sums of the quadrature: log scale mx, sum sc, and
 * the weighted vectors (theta term, fixed effects, extra parameters, the
 * slope h' and node * h'). */
typedef struct mlmx_gb_nsum {
    double mx, sc, gth, hp, zhp;
    double gb[MLMX_GB_PMAX], ge[MLMX_GB_EMAX];
} mlmx_gb_nsum;

MLMX_HD void mlmx_gb_nmerge(mlmx_gb_nsum *N, int p, int ne, double acc, double gth,
                            const double *gb, const double *ge, double hp, double zhp)
{
    if (acc > N->mx) {
        const double f = N->mx == -MLMX_GM_INF ? 0.0 : exp(N->mx - acc);
        N->sc *= f;
        N->gth *= f;
        N->hp *= f;
        N->zhp *= f;
        for (int j = 0; j < p; j++)
            N->gb[j] *= f;
        for (int e = 0; e < ne; e++)
            N->ge[e] *= f;
        N->mx = acc;
    }
    const double w = exp(acc - N->mx);
    N->sc += w;
    N->gth += w * gth;
    N->hp += w * hp;
    N->zhp += w * zhp;
    for (int j = 0; j < p; j++)
        N->gb[j] += w * gb[j];
    for (int e = 0; e < ne; e++)
        N->ge[e] += w * ge[e];
}

/* One node: the integrand's log at u = uv (with the node's log weight
 * lw), and the node's derivative sums (gb = sum x d1, ge = sum dll/dphi,
 * ztd = sum t d1, zd = sum z d1). */
MLMX_HD double mlmx_gb_node(const mlmx_gb_shared *S, const mlmx_gbf *F, const mlmx_gb_rep *R,
                            int c, double theta, const double *beta, double uv, double lw,
                            double *gb, double *ge, double *ztd, double *zd)
{
    const int p = S->p;
    double lin = 0.0, prod = 1.0, a1 = 0.0, a2 = 0.0;
    for (int j = 0; j < p; j++)
        gb[j] = 0.0;
    for (int e = 0; e < S->ne; e++)
        ge[e] = 0.0;
    for (int k = S->cs[c]; k < S->cs[c + 1]; k++) {
        const double z = S->z[k], t = theta * z, y = R->y[k * R->ys];
        double d1, w, e1, e2;
        lin += mlmx_gbf_obs_link(S->fam, S->link, S->ncat, F, y, S->nt[k],
                                 mlmx_gb_etaf(S, k, beta) + t * uv, &d1, &w, &prod, &e1, &e2);
        if (prod > 1e280) {
            lin -= log(prod);
            prod = 1.0;
        }
        a1 += t * d1;
        a2 += z * d1;
        const double *x = S->X + (size_t)k * (size_t)p;
        for (int j = 0; j < p; j++)
            gb[j] += x[j] * d1;
        if (S->ne > 0) {
            int lo, hi;
            mlmx_gbf_touch(S->fam, S->ncat, y, &lo, &hi);
            if (lo >= 0)
                ge[lo] += e1;
            if (hi >= 0)
                ge[hi] += e2;
        }
    }
    *ztd = a1;
    *zd = a2;
    return lw - 0.5 * uv * uv + lin - log(prod);
}

/* Cluster c's quadrature deviance (without constants), its gradient added
 * to g: the node averages of the log-likelihood's derivatives, plus the
 * motion of the rule's centre (the mode) and scale with the parameters
 * (agq.c, extended to the extra parameters). */
MLMX_HD double mlmx_gb_agq_cluster(const mlmx_gb_shared *S, const mlmx_gbf *F,
                                   const mlmx_gb_rep *R, int c, double theta,
                                   const double *beta, double *g)
{
    const int p = S->p, ne = S->ne;
    double v, s2;
    mlmx_gb_mode(S, F, R, c, theta, beta, &v, &s2);
    const double sd = 1.0 / sqrt(1.0 + s2);
    mlmx_gb_nsum N;
    N.mx = -MLMX_GM_INF;
    N.sc = N.gth = N.hp = N.zhp = 0.0;
    for (int j = 0; j < p; j++)
        N.gb[j] = 0.0;
    for (int e = 0; e < ne; e++)
        N.ge[e] = 0.0;
    for (int a = 0; a < S->nagq; a++) {
        const double uv = v + sd * S->gz[a];
        double gb[MLMX_GB_PMAX], ge[MLMX_GB_EMAX], ztd, zd;
        const double acc =
            mlmx_gb_node(S, F, R, c, theta, beta, uv, S->glw[a], gb, ge, &ztd, &zd);
        const double hp = -uv + ztd;
        mlmx_gb_nmerge(&N, p, ne, acc, uv * zd, gb, ge, hp, S->gz[a] * hp);
    }
    mlmx_gb_csum cs;
    mlmx_gb_centre(S, F, R, c, theta, beta, v, &cs);
    const double Dc = N.hp / N.sc, Ds = 1.0 / sd + N.zhp / N.sc;
    const double q = -0.5 * sd * sd * sd, cf = (Dc + Ds * q * cs.a) / cs.mo;
    /* sum_i z_i rho_i and sum_i x_i kappa_i of finest_logint_g */
    const double zrho = cf * (cs.zd1 - v * theta * cs.z2o) +
                        Ds * q * (2.0 * theta * cs.z2w + v * cs.zt2w3);
    g[0] += -2.0 * (N.gth / N.sc + zrho);
    for (int j = 0; j < p; j++)
        g[1 + j] += -2.0 * (N.gb[j] / N.sc - cf * cs.xtw[j] + Ds * q * cs.xt2w3[j]);
    double *ge = g + 1 + p;
    for (int e = 0; e < ne; e++)
        ge[e] += -2.0 * (N.ge[e] / N.sc + cf * cs.ed[e] + Ds * q * cs.ew[e]);
    return -2.0 * (log(sd) + N.mx + log(N.sc));
}

/* The vector term's cluster (Laplace): needs the types and the
 * per-observation helpers above. */
#include "glmm_batch_vec.h"

/* ------------------------------------------------------------ criterion */

/* NB2's size-dependent constants of cluster c (the sum of
 * lgamma(y + size) - lgamma(size)), its log-size derivative added to *gls. */
MLMX_HD double mlmx_gb_nb_cluster(const mlmx_gb_shared *S, const mlmx_gbf *F,
                                  const mlmx_gb_rep *R, int c, double *gls)
{
    double f = 0.0, d = 0.0;
    for (int k = S->cs[c]; k < S->cs[c + 1]; k++) {
        double dk;
        f += mlmx_gbf_nb_const(F, R->y[k * R->ys], &dk);
        d += dk;
    }
    *gls += d;
    return f;
}

/* The part of the criterion (without the constants) from clusters c0,
 * c0 + cstep, ...; its gradient over x = [theta; beta; extra] written to
 * g (np values, zeroed here). One lane of a warp passes (lane, 32); the CPU
 * (0, 1). The caller sums the parts and adds -2 times the constants. */
MLMX_HD double mlmx_gb_eval_part(const mlmx_gb_shared *S, const mlmx_gb_rep *R, const double *x,
                                 double *g, int c0, int cstep)
{
    const double theta = x[0];
    const double *beta = x + S->nth;
    double T[MLMX_GB_QMAX * MLMX_GB_QMAX];
    if (S->q > 1)
        mlmx_cm_theta_to_t(S->q, x, T);
    mlmx_gbf F;
    mlmx_gbf_set_link(S->fam, S->link, S->ncat, beta + S->p, &F);
    for (int j = 0; j < S->np; j++)
        g[j] = 0.0;
    double f = 0.0, nbc = 0.0, gls = 0.0;
    for (int c = c0; c < S->nclu; c += cstep) {
        f += S->q > 1       ? mlmx_gbv_laplace_cluster(S, &F, R, c, T, beta, g)
             : S->nagq > 1 ? mlmx_gb_agq_cluster(S, &F, R, c, theta, beta, g)
                           : mlmx_gb_laplace_cluster(S, &F, R, c, theta, beta, g);
        if (S->fam == MLMX_FAM_NEGBIN)
            nbc += mlmx_gb_nb_cluster(S, &F, R, c, &gls);
    }
    double *ge = g + S->nth + S->p;
    if (S->fam == MLMX_FAM_NEGBIN) {
        f -= 2.0 * nbc;
        ge[0] -= 2.0 * gls;
    } else if (S->fam == MLMX_FAM_ORDINAL) {
        mlmx_gbf_map_grad(S->ncat, &F, ge);
    }
    return f;
}

/* Replicate results in the model's layout from the optimum x and the SEs
 * of x's fixed effects (se_x, p values, or NULL): theta (nth values); beta (pout
 * values, 0 for the left-out intercept, as the workspace's); se (pout,
 * NaN for the intercept; skipped when NULL); extra (ne values in the
 * natural scale, mlmx_gbf_natural; skipped when NULL). */
MLMX_HD void mlmx_gb_unpack(const mlmx_gb_shared *S, const double *x, const double *se_x,
                            double *theta, double *beta, double *se, double *extra)
{
    for (int t = 0; t < S->nth; t++)
        theta[t] = x[t];
    for (int j = 0, k = 0; j < S->pout; j++) {
        const int in = j != S->int_col;
        beta[j] = in ? x[S->nth + k] : 0.0;
        if (se)
            se[j] = in && se_x ? se_x[k] : MLMX_GM_NAN;
        k += in;
    }
    if (extra)
        mlmx_gbf_natural(S->fam, S->ncat, x + S->nth + S->p, extra);
}

/* ------------------------------------------------------------ standard errors */

/* The forward-difference step for parameter j at x (host/glmm/objective.c,
 * mlmx_gobj_fd_step): a move of ~1e-4 in the linear predictor for a
 * coefficient, 1e-4 relative (at least 1e-5) for theta and the extra
 * parameters. */
MLMX_HD double mlmx_gb_fd_step(const mlmx_gb_shared *S, const double *x, int j)
{
    if (j >= S->nth && j < S->nth + S->p)
        return 1e-4 / mlmx_gm_fmax(S->xmax[j - S->nth], 1e-3);
    return 1e-4 * mlmx_gm_fmax(fabs(x[j]), 0.1);
}

/* Whether the fit at x is singular as refit.c flags it: a theta entry
 * with lower bound 0 (a diagonal entry of T) below 1e-4. */
MLMX_HD int mlmx_gb_singular(const mlmx_gb_shared *S, const double *x)
{
    int sing = 0;
    for (int t = 0; t < S->nth; t++)
        sing |= S->lb[t] == 0.0 && x[t] < 1e-4;
    return sing;
}

/* Where a vector term's fit that ended singular restarts (the ordinal and
 * NB2 families, whose workspace refits end with a BOBYQA polish): x with
 * each diagonal entry of T below 1e-4 put at its bound 0, into xr (np).
 * Returns the entries held there as a bit mask (bit t for theta entry t;
 * 0: no restart is due, xr unset). Why: the criterion depends on such an
 * entry through its square, so it is flat there; the first BFGS run's
 * curvature along it grows without bound as it approaches 0 (kernels/qn.h
 * closes 90% of the gap a step), its directions follow that entry alone,
 * and the run can stop short of the optimum in the others. The restart
 * holds the entries at 0 (mlmx_gb_hold) and steps the others from a fresh
 * curvature: the optimum the workspaces' polish reaches there. */
MLMX_HD int mlmx_gb_polish_point(const mlmx_gb_shared *S, const double *x, double *xr)
{
    if (S->q < 2 || S->ne == 0 || !mlmx_gb_singular(S, x))
        return 0;
    int held = 0;
    for (int j = 0; j < S->np; j++) {
        const int h = j < S->nth && S->lb[j] == 0.0 && x[j] < 1e-4;
        held |= h << j;
        xr[j] = h ? 0.0 : x[j];
    }
    return held;
}

/* Hold the entries of mask `held` at their lower bound in a BFGS run: a
 * positive gradient there makes kernels/qn.h treat them as active (no
 * step, no curvature update along them); the criterion does not change.
 * (Releasing an entry whose derivative at 0 is negative brings back the
 * first run's stall: on wine's ordinal bootstrap, 200 replicates, it left
 * 70 criteria above the workspaces' against 2 when held.) */
MLMX_HD void mlmx_gb_hold(int held, int nth, double *g)
{
    for (int t = 0; t < nth; t++)
        if (held >> t & 1)
            g[t] = 1.0;
}

/* The free parameters of the SE Hessian: every theta unless singular,
 * the extra parameters, then every beta (idx: np entries; refit.c's set
 * in another order, which permutes H and its inverse alike, and keeps the
 * fixed effects last for mlmx_gb_se_finish). Returns their number nf. */
MLMX_HD int mlmx_gb_se_index(const mlmx_gb_shared *S, int singular, int *idx)
{
    int nf = 0;
    for (int t = 0; t < S->nth && !singular; t++)
        idx[nf++] = t;
    for (int e = 0; e < S->ne; e++)
        idx[nf++] = S->nth + S->p + e;
    for (int j = 0; j < S->p; j++)
        idx[nf++] = S->nth + j;
    return nf;
}

/* From the Hessian H (nf x nf, column-major, column a the forward
 * difference of the gradient along idx[a], rows idx; nf <=
 * MLMX_GB_SE_NMAX, the last p of them the fixed effects) the SEs of beta
 * as refit.c: symmetrize, invert (Cholesky), se_j = sqrt(2 [H^-1]_jj).
 * H is overwritten. se (p) NaN when H is not positive definite. */
MLMX_HD void mlmx_gb_se_finish(int nf, int p, double *H, double *se)
{
    for (int a = 0; a < nf; a++)
        for (int b = 0; b < a; b++) {
            const double v = 0.5 * (H[a + b * nf] + H[b + a * nf]);
            H[a + b * nf] = H[b + a * nf] = v;
        }
    int ok = 1;
    /* lower Cholesky in place */
    for (int j = 0; j < nf && ok; j++) {
        double d = H[j + j * nf];
        for (int k = 0; k < j; k++)
            d -= H[j + k * nf] * H[j + k * nf];
        if (!(d > 0.0)) {
            ok = 0;
            break;
        }
        d = sqrt(d);
        H[j + j * nf] = d;
        for (int i = j + 1; i < nf; i++) {
            double s = H[i + j * nf];
            for (int k = 0; k < j; k++)
                s -= H[i + k * nf] * H[j + k * nf];
            H[i + j * nf] = s / d;
        }
    }
    /* diag of (L L^T)^-1 = sum_k (L^-1)_{kj}^2: column j of L^-1 by
     * forward substitution into the upper triangle's scratch (row j) */
    for (int j = 0; j < p; j++) {
        const int c = nf - p + j;
        double s = 0.0, col[MLMX_GB_SE_NMAX];
        if (ok) {
            for (int i = 0; i < nf; i++) {
                double v = i == c ? 1.0 : 0.0;
                for (int k = c; k < i; k++)
                    v -= H[i + k * nf] * col[k];
                col[i] = i < c ? 0.0 : v / H[i + i * nf];
                s += col[i] * col[i];
            }
        }
        se[j] = ok ? sqrt(2.0 * s) : MLMX_GM_NAN;
    }
}

#endif
