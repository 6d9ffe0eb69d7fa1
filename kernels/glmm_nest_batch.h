/* Replicate fits of a GLMM with two nested scalar random-effect terms,
 * e.g. y ~ x + (1|hid/did) = (1|hid) + (1|hid:did): binomial with the
 * logit link or Poisson with the log link, by the Laplace approximation
 * (nAGQ = 1) or nested adaptive Gauss-Hermite quadrature (nAGQ = K > 1,
 * K x K nodes per top-level cluster); the binomial probit and cloglog by
 * the Laplace approximation only (their criterion uses the expected
 * information, as the workspace's, and the mode moves with the observed
 * one: mlmx_gn_laplace_top). Written once as inline math for the
 * CPU engine (host/replicate/glmm_nest_batch.c) and the CUDA kernel
 * (kernels/glmm_nest_batch.cu), GUIDE §8.
 *
 * Names: the model's term 0 is the fine factor (a "doctor", more levels),
 * term 1 the top factor (a "hospital"); every doctor lies in one hospital.
 * eta_i = f_i + tf_i a_d + tc_i b_h, f = X beta, tf = theta_f z0_i,
 * tc = theta_c z1_i, with spherical effects a_d, b_h ~ N(0, 1).
 *
 * The definitions are those of the workspace refit (host/glmm/refit.c):
 *   x = [theta (model order: x[itf], x[itc]); beta], lower bound 0 on
 *   theta, BFGS (kernels/qn.h) from the problem's start with its
 *   inverse-Hessian seed and the default tolerances.
 *   Laplace (glmm.c): D = sum_h [P_h(u~) + log det Omega_h], P = -2 sum ll +
 *   |u|^2, Omega_h = I + Lambda'Z'WZ Lambda over the hospital's effects. The
 *   hospital's Omega is an arrow matrix (doctors diagonal D_d, coupling c_d
 *   to the hospital, corner A), so its determinant is prod D_d times the
 *   Schur complement S_h = A - sum c_d^2 / D_d. The exact gradient is that
 *   of grad.c, derived for the arrow (mlmx_gn_laplace_top).
 *   Nested quadrature (agq.c, mlmx_glmm_agq_nested with K = 2): the
 *   hospital's rule is centred at the joint Laplace mode b~ with scale
 *   1 / sqrt(S_h); at each node v the doctor's rule starts from the
 *   conditional mode of the Laplace factor, a~ - c_d (v - b~) / D_d, is
 *   moved by at most 8 Newton steps to the exact conditional mode given v,
 *   and scaled by the curvature there. The gradient is agq.c's
 *   (mlmx_glmm_agq_grad): node averages of d ll / d eta, the exact motion
 *   of the doctor rule's centre and scale, the hospital rule's centre and
 *   scale held fixed.
 * ll_i here omits its constant (log binomial coefficient, -log y!); the
 * constants are summed once per replicate (mlmx_gn_simulate) and added to
 * the criterion, which keeps the optimizer's relative tolerances those of
 * the workspace fit.
 *
 * Observations are stored grouped by hospital, then doctor (both in level
 * order); `pos` maps model observation i to its grouped position, so the
 * simulation draws in model order as mlmx_workspace_simulate does.
 *
 * The whole criterion is a sum over hospitals. Its parallel pieces, in
 * the order both engines run them (the CPU serially, mlmx_gn_eval; the
 * GPU with a __syncthreads between phases):
 *   0. mlmx_gn_fill_eta: f = X beta per observation;
 *   1. per hospital: Laplace, mlmx_gn_laplace_top (done); quadrature,
 *      mlmx_gn_agq_prep (the joint mode, the rule's scale);
 *   2. quadrature, per (node a, doctor d): mlmx_gn_agq_item;
 *   3. quadrature, per hospital: mlmx_gn_agq_top merges its items.
 *
 * Per-replicate scratch is addressed with a stride (element k at
 * base[k * s]): the CPU and the GPU both pass s = 1 today. Nothing here
 * allocates or calls a library beyond <math.h>. */
#ifndef MLMX_GLMM_NEST_BATCH_H
#define MLMX_GLMM_NEST_BATCH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "glmm_batch.h"
#include "glmm_math.h"
#include "qn.h"
#include "random.h"
#include "simulate.h"

/* Most fixed effects (np = 2 + p <= MLMX_GN_NPMAX optimizer parameters):
 * the per-item gradient sums are register arrays of this size. */
#define MLMX_GN_PMAX 12
#define MLMX_GN_NPMAX (MLMX_GN_PMAX + 2)
#define MLMX_GN_NEWTON_MAX 60 /* Newton steps for one hospital's joint mode */
#define MLMX_GN_HALF_MAX 40   /* step halvings in one of them */
#define MLMX_GN_FINE_NEWTON 8 /* agq.c's Newton steps to a doctor's conditional mode */

/* The structure every replicate shares (read-only). n observations, nfine
 * doctors, ntop hospitals (no empty level), p fixed effects. */
typedef struct mlmx_gn_shared {
    int n, p, np, nfine, ntop;
    int itf, itc;            /* x's entries of theta_f and theta_c (0 and 1, model order) */
    int poisson;             /* 0: binomial (link: see `link`); 1: Poisson log */
    int nagq;                /* 1: Laplace; > 1: quadrature points per level */
    const int *ts;           /* ntop + 1: hospital h holds doctors [ts[h], ts[h+1]) */
    const int *ds;           /* nfine + 1: doctor d holds grouped positions [ds[d], ds[d+1]) */
    const int *dtop;         /* nfine: the hospital of doctor d */
    const int *dmap;         /* nfine: the doctor index of the fine term's level l */
    const int *doc;          /* n: the doctor of grouped position k */
    const int *pos;          /* n: the grouped position of model observation i */
    const double *X;         /* n * p, row-major, grouped order */
    const double *z0, *z1;   /* n: the two terms' columns, grouped order */
    const double *nt;        /* n: binomial trials (1 for 0/1 data; unused for Poisson) */
    const double *gz;        /* nagq: Gauss-Hermite nodes (nagq > 1) */
    const double *glw;       /* nagq: log weight + node^2 / 2 */
    double thf_sim, thc_sim; /* the simulation's parameters */
    const double *beta_sim;  /* p */
    const double *x0, *lb;   /* np: the optimizer's start and lower bounds */
    const double *hinv0;     /* np * np column-major inverse Hessian at x0, or NULL */
    const double *xmax;      /* p: largest |X| of each column (difference steps) */
    mlmx_qn_cfg cfg;
    int link;                /* MLMX_LINK_*: binomial logit, probit, cloglog (probit and
                                cloglog: nagq 1 only); Poisson log */
} mlmx_gn_shared;

/* One replicate's scratch, each array with stride s:
 *   y   n    responses, grouped order
 *   ef  n    f = X beta at the point being evaluated
 *   uf  nfine, uc ntop: the joint modes (the warm start of the next point)
 *   st, dd, dc, dg  nfine each: a doctor's Newton step (later the Laplace
 *            gradient's solve), D_d, c_d and the mode equation's residual
 *   tsd ntop  the hospital rule's scale 1 / sqrt(S_h) (quadrature)
 *   res nagq * nfine * (np + 1): per (node, doctor) item, the log inner
 *       integral and its gradient (quadrature; NULL for Laplace). */
typedef struct mlmx_gn_rep {
    double *y, *ef, *uf, *uc, *st, *dd, *dc, *dg, *tsd, *res;
    ptrdiff_t s;
} mlmx_gn_rep;

/* Doubles of one replicate's scratch (the layout above, stride 1). */
MLMX_HD size_t mlmx_gn_rep_doubles(const mlmx_gn_shared *S)
{
    size_t r = 2 * (size_t)S->n + 5 * (size_t)S->nfine + 2 * (size_t)S->ntop;
    if (S->nagq > 1)
        r += (size_t)S->nagq * (size_t)S->nfine * (size_t)(S->np + 1);
    return r;
}

/* Point R's arrays into `base` (mlmx_gn_rep_doubles(S) doubles), stride 1. */
MLMX_HD void mlmx_gn_rep_bind(const mlmx_gn_shared *S, double *base, mlmx_gn_rep *R)
{
    const size_t n = (size_t)S->n, nf = (size_t)S->nfine, nt = (size_t)S->ntop;
    R->y = base;
    R->ef = R->y + n;
    R->uf = R->ef + n;
    R->uc = R->uf + nf;
    R->st = R->uc + nt;
    R->dd = R->st + nf;
    R->dc = R->dd + nf;
    R->dg = R->dc + nf;
    R->tsd = R->dg + nf;
    R->res = S->nagq > 1 ? R->tsd + nt : 0;
    R->s = 1;
}

/* ------------------------------------------------------------ simulation */

/* Draw replicate `rep`'s response into R->y exactly as
 * mlmx_workspace_simulate does: from stream 0 the fine term's effects in
 * level order, then the top term's, b = theta u; eta_i = sum_j x_ij beta_j
 * + z0_i b_d + z1_i b_h (model order, the same arithmetic); y_i from
 * stream 1 in model observation order. Leaves R->uf and R->uc at 0 (the
 * workspace fit's first warm start). Returns the sum of the
 * log-likelihood constants, or NaN when a draw is not finite. */
MLMX_HD double mlmx_gn_simulate(const mlmx_gn_shared *S, uint64_t seed, uint64_t rep,
                                const mlmx_gn_rep *R)
{
    const ptrdiff_t s = R->s;
    mlmx_rng r;
    mlmx_rng_init(&r, seed, rep, 0);
    for (int l = 0; l < S->nfine; l++)
        R->uf[S->dmap[l] * s] = S->thf_sim * mlmx_rng_normal(&r);
    for (int l = 0; l < S->ntop; l++)
        R->uc[l * s] = S->thc_sim * mlmx_rng_normal(&r);
    mlmx_rng_init(&r, seed, rep, 1);
    const int p = S->p;
    double cst = 0.0;
    for (int i = 0; i < S->n; i++) {
        const int k = S->pos[i], d = S->doc[k];
        const double *x = S->X + (size_t)k * (size_t)p;
        double eta = 0.0;
        for (int j = 0; j < p; j++)
            eta += x[j] * S->beta_sim[j];
        double zb = 0.0;
        zb += S->z0[k] * R->uf[d * s];
        eta += zb;
        zb = 0.0;
        zb += S->z1[k] * R->uc[S->dtop[d] * s];
        eta += zb;
        const double ntr = S->poisson ? 1.0 : S->nt[k];
        const double y = mlmx_sim_response(S->poisson ? 2 : 1, S->link, eta, 1.0, ntr, 0.0, 0, 0,
                                           &r);
        R->y[k * s] = y;
        cst += S->poisson ? -lgamma(y + 1.0)
                          : lgamma(ntr + 1.0) - lgamma(y + 1.0) - lgamma(ntr - y + 1.0);
    }
    for (int l = 0; l < S->nfine; l++)
        R->uf[l * s] = 0.0;
    for (int l = 0; l < S->ntop; l++)
        R->uc[l * s] = 0.0;
    return isfinite(cst) ? cst : MLMX_GM_NAN;
}

/* Doubles of one replicate's simulation-only scratch (mlmx_gn_sim_one):
 * y (n), the fine effects (nfine) and the top effects (ntop). */
MLMX_HD size_t mlmx_gn_sim_doubles(const mlmx_gn_shared *S)
{
    return (size_t)S->n + (size_t)S->nfine + (size_t)S->ntop;
}

/* Replicate `rep`'s response alone (the device simulation's thread,
 * kernels/glmm_nest_batch.cu, and its CPU check): mlmx_gn_simulate into
 * base (mlmx_gn_sim_doubles(S) doubles, the response first, grouped
 * order, stride 1). Returns what mlmx_gn_simulate returns. */
MLMX_HD double mlmx_gn_sim_one(const mlmx_gn_shared *S, uint64_t seed, uint64_t rep,
                               double *base)
{
    mlmx_gn_rep R;
    R.y = base;
    R.uf = base + S->n;
    R.uc = R.uf + S->nfine;
    R.ef = R.st = R.dd = R.dc = R.dg = R.tsd = R.res = 0;
    R.s = 1;
    return mlmx_gn_simulate(S, seed, rep, &R);
}

/* ------------------------------------------------------------ one observation */

/* Phase 0: f = X beta at grouped positions k0, k0 + kstep, ... */
MLMX_HD void mlmx_gn_fill_eta(const mlmx_gn_shared *S, const mlmx_gn_rep *R, const double *x,
                              int k0, int kstep)
{
    const double *beta = x + 2;
    for (int k = k0; k < S->n; k += kstep) {
        const double *xr = S->X + (size_t)k * (size_t)S->p;
        double e = 0.0;
        for (int j = 0; j < S->p; j++)
            e += xr[j] * beta[j];
        R->ef[k * R->s] = e;
    }
}

/* d ll / d eta, the information w and its slope w3 = dw / d eta at eta
 * (canonical links: observed and expected information agree). */
MLMX_HD void mlmx_gn_dw(int poisson, double y, double nt, double eta, double *d1, double *w,
                        double *w3)
{
    if (poisson) {
        const double mu = exp(eta);
        *d1 = y - mu;
        *w = mu;
        *w3 = mu;
        return;
    }
    double e, ope;
    const double mu = mlmx_gm_logit_mu(eta, &e, &ope);
    *d1 = y - nt * mu;
    *w = nt * mu * (1.0 - mu);
    *w3 = *w * (1.0 - 2.0 * mu);
}

/* The binomial probit or cloglog (the other links are canonical). */
MLMX_HD int mlmx_gn_noncanon(const mlmx_gn_shared *S)
{
    return S->link == MLMX_LINK_PROBIT || S->link == MLMX_LINK_CLOGLOG;
}

/* One observation's log-likelihood without its constant, d1 and the
 * information w (mlmx_gb_obs; for the probit and cloglog the expected
 * information, mlmx_gbf_bin_link, or with observed != 0 the observed
 * one, which the mode's Newton steps use). */
MLMX_HD double mlmx_gn_obs(const mlmx_gn_shared *S, double y, double nt, double eta, double *d1,
                           double *w, double *prod, int observed)
{
    if (mlmx_gn_noncanon(S)) {
        double wf, w3;
        if (!observed)
            return mlmx_gbf_bin_link(S->link, y, nt, eta, d1, w, 0, 0);
        return mlmx_gbf_bin_link(S->link, y, nt, eta, d1, &wf, w, &w3);
    }
    return mlmx_gb_obs(S->poisson, y, nt, eta, d1, w, prod);
}

/* mlmx_gn_dw for any link, with the observed information *wo (= w for
 * the canonical links). */
MLMX_HD void mlmx_gn_dwo(const mlmx_gn_shared *S, double y, double nt, double eta, double *d1,
                         double *w, double *w3, double *wo)
{
    if (mlmx_gn_noncanon(S)) {
        mlmx_gbf_bin_link(S->link, y, nt, eta, d1, w, wo, w3);
        return;
    }
    mlmx_gn_dw(S->poisson, y, nt, eta, d1, w, w3);
    *wo = *w;
}

/* ------------------------------------------------------------ a hospital's joint mode */

/* One pass over hospital h at the point a_d + t st_d, b + t db (t = 0: the
 * current modes R->uf, R->uc). Returns P_h = -2 sum ll + sum a^2 + b^2
 * (without constants); writes each doctor's D_d = 1 + sum tf^2 w, c_d =
 * sum tf tc w and residual g_d = sum tf d1 - a_d to R->dd, R->dc, R->dg,
 * and the hospital's A = 1 + sum tc^2 w and g_h = sum tc d1 - b; w the
 * criterion's information, or the observed one (observed != 0, the
 * Newton steps of the probit and cloglog). */
MLMX_HD double mlmx_gn_top_sums(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int h,
                                const double *x, double t, double db, double *A, double *gh,
                                int observed)
{
    const ptrdiff_t s = R->s;
    const double thf = x[S->itf], thc = x[S->itc];
    const double b = t == 0.0 ? R->uc[h * s] : R->uc[h * s] + t * db;
    double lin = 0.0, prod = 1.0, pen = b * b, a1 = 0.0, a2 = 0.0;
    for (int d = S->ts[h]; d < S->ts[h + 1]; d++) {
        const double ad = t == 0.0 ? R->uf[d * s] : R->uf[d * s] + t * R->st[d * s];
        double s1 = 0.0, s2 = 0.0, e = 0.0;
        for (int k = S->ds[d]; k < S->ds[d + 1]; k++) {
            const double tf = thf * S->z0[k], tc = thc * S->z1[k];
            double d1, w;
            lin += mlmx_gn_obs(S, R->y[k * s], S->nt[k], R->ef[k * s] + tf * ad + tc * b, &d1, &w,
                               &prod, observed);
            if (prod > 1e280) {
                lin -= log(prod);
                prod = 1.0;
            }
            s1 += tf * d1;
            s2 += tf * tf * w;
            a1 += tc * d1;
            a2 += tc * tc * w;
            e += tf * tc * w;
        }
        R->dd[d * s] = 1.0 + s2;
        R->dc[d * s] = e;
        R->dg[d * s] = s1 - ad;
        pen += ad * ad;
    }
    *A = 1.0 + a2;
    *gh = a1 - b;
    return -2.0 * (lin - log(prod)) + pen;
}

/* The Newton step of the arrow system Omega delta = g from the sums of the
 * last mlmx_gn_top_sums: the doctors' steps into R->st, the hospital's
 * returned. *big: some step exceeds 1e-10 (1 + |mode|). */
MLMX_HD double mlmx_gn_arrow_step(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int h, double A,
                                  double gh, int *big)
{
    const ptrdiff_t s = R->s;
    double num = gh, den = A;
    for (int d = S->ts[h]; d < S->ts[h + 1]; d++) {
        const double r = R->dc[d * s] / R->dd[d * s];
        num -= r * R->dg[d * s];
        den -= r * R->dc[d * s];
    }
    const double db = num / den;
    int bg = fabs(db) > 1e-10 * (1.0 + fabs(R->uc[h * s]));
    for (int d = S->ts[h]; d < S->ts[h + 1]; d++) {
        const double sd = (R->dg[d * s] - R->dc[d * s] * db) / R->dd[d * s];
        R->st[d * s] = sd;
        bg |= fabs(sd) > 1e-10 * (1.0 + fabs(R->uf[d * s]));
    }
    *big = bg;
    return db;
}

/* Hospital h's joint conditional mode (Newton steps with the observed
 * information, penalized IRLS for the canonical links, with step halving
 * on P_h; P_h is convex, so its one minimum is the workspace PIRLS's),
 * warm-started from and written back to R->uf, R->uc; R->dd, R->dc, R->dg
 * hold the sums (the criterion's information) at the mode. Returns the
 * Laplace deviance P_h + log det Omega_h (without constants); *schur =
 * S_h. */
MLMX_HD double mlmx_gn_top_mode(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int h,
                                const double *x, double *schur)
{
    const ptrdiff_t s = R->s;
    const int obs = mlmx_gn_noncanon(S);
    double A, gh;
    double P = mlmx_gn_top_sums(S, R, h, x, 0.0, 0.0, &A, &gh, obs);
    for (int it = 0; it < MLMX_GN_NEWTON_MAX; it++) {
        int big;
        const double db = mlmx_gn_arrow_step(S, R, h, A, gh, &big);
        if (!big)
            break;
        int ok = 0;
        double t = 1.0;
        for (int hs = 0; hs < MLMX_GN_HALF_MAX && !ok; hs++, t *= 0.5) {
            double An, ghn;
            const double Pn = mlmx_gn_top_sums(S, R, h, x, t, db, &An, &ghn, obs);
            if (Pn <= P + 1e-13 * fabs(P)) {
                ok = 1;
                for (int d = S->ts[h]; d < S->ts[h + 1]; d++)
                    R->uf[d * s] = R->uf[d * s] + t * R->st[d * s];
                R->uc[h * s] = R->uc[h * s] + t * db;
                P = Pn;
                A = An;
                gh = ghn;
            }
        }
        if (!ok) { /* the sums of the rejected trials: back to the mode's */
            P = mlmx_gn_top_sums(S, R, h, x, 0.0, 0.0, &A, &gh, obs);
            break;
        }
    }
    if (obs) /* the criterion's (expected) information at the mode */
        P = mlmx_gn_top_sums(S, R, h, x, 0.0, 0.0, &A, &gh, 0);
    double ld = 0.0, sch = A;
    for (int d = S->ts[h]; d < S->ts[h + 1]; d++) {
        ld += log(R->dd[d * s]);
        sch -= R->dc[d * s] * R->dc[d * s] / R->dd[d * s];
    }
    *schur = sch;
    return P + ld + log(sch);
}

/* ------------------------------------------------------------ Laplace */

/* Hospital h's Laplace deviance (without constants) at x; its gradient
 * over x added to g (np values). grad.c's formula on the arrow:
 *   dD = -2 sum d1 deta|_u + sum_i w3_i lev_i deta_i|_u
 *        + 2 sum_i w_i r_i' Omega^-1 dr_i + s' dG,
 * with r_i = tf_i e_d + tc_i e_h (Lambda' z_i), lev_i = r_i' Omega^-1 r_i,
 * t = sum_i w3_i lev_i r_i, s = Omega^-1 t, and dG the explicit derivative
 * of the mode equation G = Lambda' Z' d1 - u (the mode's motion is
 * du = Omega^-1 dG, so its effect through the weights is t' du = s' dG).
 * Omega and w3 use the criterion's information w; the mode's motion the
 * observed one wo (Omega_o, dG's d d1/d eta = -wo), which differ for the
 * probit and cloglog. Two passes after the mode: the leverages, t and
 * Omega_o's arrow, then s' dG, s = Omega_o^-1 t. Between them R->st holds
 * t_d / Do_d and R->dg c_o,d / Do_d (Omega_o's diagonal and coupling). */
MLMX_HD double mlmx_gn_laplace_top(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int h,
                                   const double *x, double *g)
{
    const ptrdiff_t s = R->s;
    const int p = S->p, itf = S->itf, itc = S->itc;
    const double thf = x[itf], thc = x[itc];
    double sch;
    const double L = mlmx_gn_top_mode(S, R, h, x, &sch);
    const double b = R->uc[h * s], ihh = 1.0 / sch;
    double th = 0.0, ao = 1.0, qo = 0.0; /* Omega_o's corner, sum c_o t / D_o */
    for (int d = S->ts[h]; d < S->ts[h + 1]; d++) {
        const double ad = R->uf[d * s], Dd = R->dd[d * s], cd = R->dc[d * s];
        const double idh = -cd / (Dd * sch), idd = 1.0 / Dd + cd * cd / (Dd * Dd * sch);
        double td = 0.0, Do = 1.0, co = 0.0;
        for (int k = S->ds[d]; k < S->ds[d + 1]; k++) {
            const double z0 = S->z0[k], z1 = S->z1[k], tf = thf * z0, tc = thc * z1;
            double d1, w, w3, wo;
            mlmx_gn_dwo(S, R->y[k * s], S->nt[k], R->ef[k * s] + tf * ad + tc * b, &d1, &w, &w3,
                        &wo);
            Do += tf * tf * wo;
            co += tf * tc * wo;
            ao += tc * tc * wo;
            const double wl = w3 * (tf * tf * idd + 2.0 * tf * tc * idh + tc * tc * ihh);
            const double c = wl - 2.0 * d1;
            const double *xr = S->X + (size_t)k * (size_t)p;
            for (int j = 0; j < p; j++)
                g[2 + j] += c * xr[j];
            g[itf] += z0 * (ad * c + 2.0 * w * (tf * idd + tc * idh));
            g[itc] += z1 * (b * c + 2.0 * w * (tf * idh + tc * ihh));
            td += tf * wl;
            th += tc * wl;
        }
        R->st[d * s] = td / Do;
        R->dg[d * s] = co / Do;
        qo += co * td / Do;
        ao -= co * co / Do;
    }
    const double sh = (th - qo) / ao; /* ao: Omega_o's Schur complement now */
    for (int d = S->ts[h]; d < S->ts[h + 1]; d++) {
        const double sd = R->st[d * s] - R->dg[d * s] * sh;
        const double ad = R->uf[d * s];
        for (int k = S->ds[d]; k < S->ds[d + 1]; k++) {
            const double z0 = S->z0[k], z1 = S->z1[k], tf = thf * z0, tc = thc * z1;
            double d1, w, w3, wo;
            mlmx_gn_dwo(S, R->y[k * s], S->nt[k], R->ef[k * s] + tf * ad + tc * b, &d1, &w, &w3,
                        &wo);
            const double *xr = S->X + (size_t)k * (size_t)p;
            const double c = -wo * (tf * sd + tc * sh);
            for (int j = 0; j < p; j++)
                g[2 + j] += c * xr[j];
            g[itf] += sd * (z0 * d1 - thf * ad * z0 * z0 * wo) - sh * thc * ad * z0 * z1 * wo;
            g[itc] += sh * (z1 * d1 - thc * b * z1 * z1 * wo) - sd * thf * b * z0 * z1 * wo;
        }
    }
    return L;
}

/* ------------------------------------------------------------ nested quadrature */

/* Running node-weighted sums: log scale mx, sum sc, the weighted vector v
 * (np) and, for a doctor's rule, the slope h' and node * h'. */
typedef struct mlmx_gn_nsum {
    double mx, sc, hp, zhp;
    double v[MLMX_GN_NPMAX];
} mlmx_gn_nsum;

MLMX_HD void mlmx_gn_nsum_init(mlmx_gn_nsum *N, int np)
{
    N->mx = -MLMX_GM_INF;
    N->sc = N->hp = N->zhp = 0.0;
    for (int j = 0; j < np; j++)
        N->v[j] = 0.0;
}

MLMX_HD void mlmx_gn_nmerge(mlmx_gn_nsum *N, int np, double acc, const double *v, double hp,
                            double zhp)
{
    if (acc > N->mx) {
        const double f = N->mx == -MLMX_GM_INF ? 0.0 : exp(N->mx - acc);
        N->sc *= f;
        N->hp *= f;
        N->zhp *= f;
        for (int j = 0; j < np; j++)
            N->v[j] *= f;
        N->mx = acc;
    }
    const double w = exp(acc - N->mx);
    N->sc += w;
    N->hp += w * hp;
    N->zhp += w * zhp;
    for (int j = 0; j < np; j++)
        N->v[j] += w * v[j];
}

/* The doctor's rule's centre and curvature sums at its centre u, given the
 * hospital's node value v (agq.c finest_logint_g): m = 1 + sum tf^2 w,
 * a3 = sum tf^3 w3, and for the gradient's correction z0d1 = sum z0 d1,
 * z0tw = sum z0 tf w, z0t2w3 = sum z0 tf^2 w3, z1tw, z1t2w3 likewise with
 * z1, xtw = sum x tf w, xt2w3 = sum x tf^2 w3 (p each). */
typedef struct mlmx_gn_csum {
    double m, a3, z0d1, z0tw, z0t2w3, z1tw, z1t2w3;
    double xtw[MLMX_GN_PMAX], xt2w3[MLMX_GN_PMAX];
} mlmx_gn_csum;

/* Doctor d's sums at u: Newton's (s1 = sum tf d1, returned; *s2 = sum tf^2 w)
 * and, when cs is not NULL, the centre sums. wz_k = f_k + tc_k v. */
MLMX_HD double mlmx_gn_fine_sums(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int d,
                                 const double *x, double v, double u, double *s2,
                                 mlmx_gn_csum *cs)
{
    const ptrdiff_t s = R->s;
    const int p = S->p;
    const double thf = x[S->itf], thc = x[S->itc];
    double a1 = 0.0, a2 = 0.0;
    if (cs) {
        cs->a3 = cs->z0d1 = cs->z0tw = cs->z0t2w3 = cs->z1tw = cs->z1t2w3 = 0.0;
        for (int j = 0; j < p; j++)
            cs->xtw[j] = cs->xt2w3[j] = 0.0;
    }
    for (int k = S->ds[d]; k < S->ds[d + 1]; k++) {
        const double z0 = S->z0[k], tf = thf * z0;
        const double eta = (R->ef[k * s] + (thc * S->z1[k]) * v) + tf * u;
        double d1, w, w3;
        mlmx_gn_dw(S->poisson, R->y[k * s], S->nt[k], eta, &d1, &w, &w3);
        a1 += tf * d1;
        a2 += tf * tf * w;
        if (cs) {
            const double z1 = S->z1[k], tw = tf * w, t2w3 = tf * tf * w3;
            cs->a3 += tf * t2w3;
            cs->z0d1 += z0 * d1;
            cs->z0tw += z0 * tw;
            cs->z0t2w3 += z0 * t2w3;
            cs->z1tw += z1 * tw;
            cs->z1t2w3 += z1 * t2w3;
            const double *xr = S->X + (size_t)k * (size_t)p;
            for (int j = 0; j < p; j++) {
                cs->xtw[j] += xr[j] * tw;
                cs->xt2w3[j] += xr[j] * t2w3;
            }
        }
    }
    *s2 = a2;
    if (cs)
        cs->m = 1.0 + a2;
    return a1;
}

/* One node of doctor d's rule at u = ub: the integrand's log (without
 * constants, with the node's log weight lw), and the node's vector in x's
 * layout (v[itf] = ub sum z0 d1, v[itc] = v sum z1 d1, v[2+j] = sum x_j d1)
 * and its slope h' = -ub + sum tf d1. */
MLMX_HD double mlmx_gn_fine_node(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int d,
                                 const double *x, double v, double ub, double lw, double *vec,
                                 double *hp)
{
    const ptrdiff_t s = R->s;
    const int p = S->p;
    const double thf = x[S->itf], thc = x[S->itc];
    double lin = 0.0, prod = 1.0, std = 0.0, sz0 = 0.0, sz1 = 0.0, gb[MLMX_GN_PMAX];
    for (int j = 0; j < p; j++)
        gb[j] = 0.0;
    for (int k = S->ds[d]; k < S->ds[d + 1]; k++) {
        const double z0 = S->z0[k], z1 = S->z1[k], tf = thf * z0;
        const double eta = (R->ef[k * s] + (thc * z1) * v) + tf * ub;
        double d1, w;
        lin += mlmx_gb_obs(S->poisson, R->y[k * s], S->nt[k], eta, &d1, &w, &prod);
        if (prod > 1e280) {
            lin -= log(prod);
            prod = 1.0;
        }
        std += tf * d1;
        sz0 += z0 * d1;
        sz1 += z1 * d1;
        const double *xr = S->X + (size_t)k * (size_t)p;
        for (int j = 0; j < p; j++)
            gb[j] += xr[j] * d1;
    }
    vec[S->itf] = ub * sz0;
    vec[S->itc] = v * sz1;
    for (int j = 0; j < p; j++)
        vec[2 + j] = gb[j];
    *hp = -ub + std;
    return lw - 0.5 * ub * ub + lin - log(prod);
}

/* Doctor d's log inner integral log I_d(v) (without constants) at the
 * hospital's node value v, its gradient over x written to gl (np values):
 * agq.c's finest_logint_g. */
MLMX_HD double mlmx_gn_agq_fine(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int d,
                                const double *x, double v, double *gl)
{
    const ptrdiff_t s = R->s;
    const int np = S->np, p = S->p, h = S->dtop[d];
    /* the conditional mode given v from the Laplace factor, then Newton */
    double u = R->uf[d * s] - R->dc[d * s] * (v - R->uc[h * s]) / R->dd[d * s], s2;
    for (int it = 0; it < MLMX_GN_FINE_NEWTON; it++) {
        const double s1 = mlmx_gn_fine_sums(S, R, d, x, v, u, &s2, 0);
        const double step = (s1 - u) / (1.0 + s2);
        u += step;
        if (fabs(step) < 1e-10 * (1.0 + fabs(u)))
            break;
    }
    mlmx_gn_csum cs;
    mlmx_gn_fine_sums(S, R, d, x, v, u, &s2, &cs);
    const double sd = 1.0 / sqrt(cs.m);
    mlmx_gn_nsum N;
    mlmx_gn_nsum_init(&N, np);
    for (int a = 0; a < S->nagq; a++) {
        const double ub = u + sd * S->gz[a];
        double vec[MLMX_GN_NPMAX], hp;
        const double acc = mlmx_gn_fine_node(S, R, d, x, v, ub, S->glw[a], vec, &hp);
        mlmx_gn_nmerge(&N, np, acc, vec, hp, S->gz[a] * hp);
    }
    /* the motion of the rule's centre and scale (finest_logint_g) */
    const double Dc = N.hp / N.sc, Ds = 1.0 / sd + N.zhp / N.sc;
    const double q = -0.5 * sd * sd * sd, dq = Ds * q, cf = (Dc + dq * cs.a3) / cs.m;
    gl[S->itf] = N.v[S->itf] / N.sc + cf * (cs.z0d1 - u * cs.z0tw) +
                 dq * (2.0 * cs.z0tw + u * cs.z0t2w3);
    gl[S->itc] = N.v[S->itc] / N.sc + v * (-cf * cs.z1tw + dq * cs.z1t2w3);
    for (int j = 0; j < p; j++)
        gl[2 + j] = N.v[2 + j] / N.sc - cf * cs.xtw[j] + dq * cs.xt2w3[j];
    return log(sd) + N.mx + log(N.sc);
}

/* Phase 1 of the quadrature: hospital h's joint mode and its rule's scale
 * 1 / sqrt(S_h) into R->tsd. */
MLMX_HD void mlmx_gn_agq_prep(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int h,
                              const double *x)
{
    double sch;
    mlmx_gn_top_mode(S, R, h, x, &sch);
    R->tsd[h * R->s] = 1.0 / sqrt(sch);
}

/* Where item (node a, doctor d)'s np + 1 results start in R->res. */
MLMX_HD double *mlmx_gn_res(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int a, int d)
{
    return R->res + ((size_t)a * (size_t)S->nfine + (size_t)d) * (size_t)(S->np + 1) * R->s;
}

/* Phase 2: item i = a * nfine + d, doctor d's log inner integral at the
 * hospital's node a and its gradient, stored in R->res. */
MLMX_HD void mlmx_gn_agq_item(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int item,
                              const double *x)
{
    const ptrdiff_t s = R->s;
    const int a = item / S->nfine, d = item - a * S->nfine, h = S->dtop[d];
    const double v = R->uc[h * s] + R->tsd[h * s] * S->gz[a];
    double gl[MLMX_GN_NPMAX];
    const double li = mlmx_gn_agq_fine(S, R, d, x, v, gl);
    double *r = mlmx_gn_res(S, R, a, d);
    r[0 * s] = li;
    for (int j = 0; j < S->np; j++)
        r[(1 + j) * s] = gl[j];
}

/* Phase 3: hospital h's quadrature deviance -2 log I_h (without
 * constants) from its items; its gradient added to g (np values). */
MLMX_HD double mlmx_gn_agq_top(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int h, double *g)
{
    const ptrdiff_t s = R->s;
    const int np = S->np;
    const double sdh = R->tsd[h * s], b = R->uc[h * s];
    mlmx_gn_nsum N;
    mlmx_gn_nsum_init(&N, np);
    for (int a = 0; a < S->nagq; a++) {
        const double va = b + sdh * S->gz[a];
        double acc = S->glw[a] - 0.5 * va * va, vec[MLMX_GN_NPMAX];
        for (int j = 0; j < np; j++)
            vec[j] = 0.0;
        for (int d = S->ts[h]; d < S->ts[h + 1]; d++) {
            const double *r = mlmx_gn_res(S, R, a, d);
            acc += r[0 * s];
            for (int j = 0; j < np; j++)
                vec[j] += r[(1 + j) * s];
        }
        mlmx_gn_nmerge(&N, np, acc, vec, 0.0, 0.0);
    }
    for (int j = 0; j < np; j++)
        g[j] += -2.0 * N.v[j] / N.sc;
    return -2.0 * (log(sdh) + N.mx + log(N.sc));
}

/* ------------------------------------------------------------ criterion */

/* The whole replicate's criterion (without the constants) at x, its
 * gradient written to g (np values): the phases above in order, serially
 * (the CPU engine; the GPU runs the same phases over its threads). The
 * caller adds -2 times the constants. */
MLMX_HD double mlmx_gn_eval(const mlmx_gn_shared *S, const mlmx_gn_rep *R, const double *x,
                            double *g)
{
    for (int j = 0; j < S->np; j++)
        g[j] = 0.0;
    mlmx_gn_fill_eta(S, R, x, 0, 1);
    double f = 0.0;
    if (S->nagq <= 1) {
        for (int h = 0; h < S->ntop; h++)
            f += mlmx_gn_laplace_top(S, R, h, x, g);
        return f;
    }
    for (int h = 0; h < S->ntop; h++)
        mlmx_gn_agq_prep(S, R, h, x);
    const int items = S->nagq * S->nfine;
    for (int i = 0; i < items; i++)
        mlmx_gn_agq_item(S, R, i, x);
    for (int h = 0; h < S->ntop; h++)
        f += mlmx_gn_agq_top(S, R, h, g);
    return f;
}

/* ------------------------------------------------------------ standard errors */

/* The forward-difference step for parameter j at x (host/glmm/objective.c,
 * mlmx_gobj_fd_step): a move of ~1e-4 in the linear predictor for a
 * coefficient, 1e-4 relative (at least 1e-5) for a theta. */
MLMX_HD double mlmx_gn_fd_step(const mlmx_gn_shared *S, const double *x, int j)
{
    if (j >= 2)
        return 1e-4 / mlmx_gm_fmax(S->xmax[j - 2], 1e-3);
    return 1e-4 * mlmx_gm_fmax(fabs(x[j]), 0.1);
}

/* The free parameters of the SE Hessian (refit.c): both thetas unless the
 * fit is singular, then every beta (idx: np entries). Returns their
 * number nf. */
MLMX_HD int mlmx_gn_se_index(const mlmx_gn_shared *S, int singular, int *idx)
{
    int nf = 0;
    if (!singular) {
        idx[nf++] = 0;
        idx[nf++] = 1;
    }
    for (int j = 2; j < S->np; j++)
        idx[nf++] = j;
    return nf;
}

/* Singular as refit.c: a theta below 1e-4 (both have lower bound 0). */
MLMX_HD int mlmx_gn_singular(const double *x) { return x[0] < 1e-4 || x[1] < 1e-4; }

/* Whether a finished BFGS run (kernels/qn.h) is to be restarted once from
 * its end point without the inverse Hessian: it stopped as converged while
 * the projected gradient (leaving out a parameter within 1e-6 of its lower
 * bound lb whose gradient points outward) is still above 1e-5 max(|f|, 1).
 * That happens when a variance heads for 0: each step is cut to 90% of its
 * gap (qn.h), the BFGS matrix over-weights that flat direction, and the
 * other parameters stop moving until the f and x tolerances end the run
 * (seen with the probit on hdp: the fixed effects' gradient ~30 at a
 * criterion 0.4 above the optimum). The restart holds such a variance on
 * its bound (mlmx_gn_restart_point: the upper bound ub equal to it) and
 * fits the other parameters. The CPU engine and the kernel both apply
 * it. */
MLMX_HD int mlmx_gn_restart_due(const mlmx_qn_state *q, const double *lb)
{
    if (!q->converged)
        return 0;
    double pg = 0.0;
    for (int i = 0; i < q->n; i++)
        if (!(q->x[i] <= lb[i] + 1e-6 && q->g[i] > 0.0))
            pg = fmax(pg, fabs(q->g[i]) * fmax(fabs(q->x[i]), 1.0));
    return pg > 1e-5 * fmax(fabs(q->fx), 1.0);
}

/* The restart's start xs and upper bounds ub (np values each): q's end
 * point, a variance within 1e-6 of its lower bound put on it and held
 * there (ub = lb), the other parameters free (ub = +inf). */
MLMX_HD void mlmx_gn_restart_point(const mlmx_qn_state *q, const double *lb, double *xs,
                                   double *ub)
{
    for (int i = 0; i < q->n; i++) {
        const int hold = i < 2 && q->x[i] - lb[i] <= 1e-6;
        xs[i] = hold ? lb[i] : q->x[i];
        ub[i] = hold ? lb[i] : MLMX_GM_INF;
    }
}

#endif
