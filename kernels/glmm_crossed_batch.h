/* Replicate fits of a GLMM with K >= 2 scalar random-effect terms, crossed
 * or nested, e.g. r2 ~ x + (1|id) + (1|item) (subjects x items) or
 * y ~ x + (1|a) + (1|b) + (1|c): binomial with the logit link or Poisson
 * with the log link, by the Laplace approximation (nAGQ = 1, the only
 * method lme4 allows with several terms). Written once as inline math for
 * the CPU engine (host/replicate/glmm_crossed_batch.c) and the CUDA kernel
 * (kernels/glmm_crossed_batch.cu), which both run mlmx_gc_fit_one per
 * replicate (the kernel one replicate per thread; GUIDE §8).
 *
 * Structure (as the LMM engine lmm-crossed): the spherical effects are
 * u = [u0; uR], u0 the first term's n0 levels, uR the other terms' levels
 * stacked (term k's level l at column tcol[k] + l, m columns in all). The
 * Laplace system M = I + Lambda' Z' W Z Lambda is
 *     [ D   B ]   D diagonal (n0): 1 + sum th0^2 z0^2 w over level j,
 *     [ B'  C ]   B (n0 x m, sparse: level j's row holds the R columns its
 *                 observations touch), C dense m x m,
 * eliminated by the Schur complement S = C - B' D^-1 B (dense, m <=
 * MLMX_GC_MMAX) and its Cholesky factor; log det M = sum log D_j +
 * log det S.
 *
 * The definitions are those of the workspace refit (host/glmm/refit.c):
 *   x = [theta (model order, one per term); beta], lower bound 0 on theta,
 *   BFGS (kernels/qn.h) from the problem's start with its inverse-Hessian
 *   seed and the default tolerances (max_evals from the fit options);
 *   Laplace (glmm.c, mlmx_glmm_laplace): D = -2 sum ll(eta~) + |u~|^2 +
 *   log det M(u~), u~ the conditional mode (penalized IRLS = Newton for
 *   the canonical links, step halving on the penalized deviance, warm
 *   started from the previous evaluation's modes as the workspace is);
 *   the exact gradient of grad.c, here in its adjoint form (one solve
 *   instead of one per parameter):
 *     dD = -2 sum d1 deta|_u + sum_i w3_i lev_i deta_i|_u
 *          + 2 sum_i w_i a_i' M^-1 da_i + s' dG,
 *   a_i = Lambda' z_i (K coordinates), lev_i = a_i' M^-1 a_i, t = sum_i
 *   w3_i lev_i a_i, s = M^-1 t, dG the explicit derivative of the mode
 *   equation G = Lambda' Z' d1 - u. The local entries of M^-1 that a_i
 *   touches come from S^-1 (mlmx_gc_inverse).
 * The workspace's PIRLS stops when the deviance change is below 1e-12
 * relative and no mode moved by 1e-7; this one when no Newton component
 * exceeds 1e-10 (1 + |u|): both modes agree to ~1e-10, the deviances to
 * ~1e-12 relative. The workspace falls back to BOBYQA when its BFGS does
 * not converge; the engine reports such a replicate as not converged.
 * ll_i here omits its constant (log binomial coefficient, -log y!); the
 * constants are summed once per replicate (mlmx_gc_simulate) and added to
 * the criterion by the caller.
 *
 * Observations are stored grouped by the first term's level (stable in
 * model order); `pos` maps model observation i to its grouped position.
 * Nothing here allocates or calls a library beyond <math.h>. */
#ifndef MLMX_GLMM_CROSSED_BATCH_H
#define MLMX_GLMM_CROSSED_BATCH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_math.h"
#include "glmm_batch.h"
#include "glmm_math.h"
#include "glmm_nest_batch.h"
#include "qn.h"
#include "random.h"
#include "simulate.h"

#define MLMX_GC_KMAX 8        /* random-effect terms */
#define MLMX_GC_MMAX 256      /* columns of the dense block (levels of terms 2..K) */
#define MLMX_GC_NPMAX 16      /* K + p optimizer parameters (mlmx_gb_se_finish's limit) */
#define MLMX_GC_NEWTON_MAX 60 /* Newton steps for the joint mode */
#define MLMX_GC_HALF_MAX 40   /* step halvings in one of them */

/* The structure every replicate shares (read-only). n observations, K
 * terms, p fixed effects, np = K + p; n0 levels of the first term, m
 * columns of the dense block, nnz entries of B's pattern. */
typedef struct mlmx_gc_shared {
    int n, p, K, np, n0, m, nnz;
    int poisson;             /* 0: binomial logit; 1: Poisson log */
    int tcol[MLMX_GC_KMAX];  /* term k >= 1: its first column in uR (tcol[0] = 0, unused) */
    const int *ls;           /* n0 + 1: level j holds grouped positions [ls[j], ls[j+1]) */
    const int *rp;           /* n0 + 1: level j's row of B is entries [rp[j], rp[j+1]) */
    const int *rc;           /* nnz: the column (in uR) of each entry, increasing in a row */
    const int *lv;           /* n: the first term's level of grouped position k */
    const int *col;          /* n * (K-1): position k's column in uR for term t >= 1, at
                                col[k * (K-1) + t - 1] */
    const int *bent;         /* n * (K-1): the entry of B that column is (same layout) */
    const int *pos;          /* n: the grouped position of model observation i */
    const double *X;         /* n * p, row-major, grouped order */
    const double *Z;         /* n * K: term k's column at Z[k_pos * K + k], grouped order */
    const double *nt;        /* n: binomial trials (1 for 0/1 data; unused for Poisson) */
    const double *theta_sim; /* K: the simulation's parameters */
    const double *beta_sim;  /* p */
    const double *x0, *lb;   /* np: the optimizer's start and lower bounds */
    const double *hinv0;     /* np * np column-major inverse Hessian at x0, or NULL */
    const double *xmax;      /* p: largest |X| of each column (difference steps) */
    mlmx_qn_cfg cfg;
} mlmx_gc_shared;

/* One replicate's scratch (stride 1):
 *   y   n       responses, grouped order
 *   ef  n       f = X beta at the point being evaluated
 *   u   n0 + m  the modes [u0; uR] (the warm start of the next point)
 *   st  n0 + m  the Newton step, later the gradient's t and s
 *   gr  n0 + m  the mode equation's residual G = Lambda' Z' d1 - u
 *   dd  n0      D;  bv, cv nnz: B's entries, then M^-1's (first term, uR) entries
 *   sl  m * m   S, then its lower Cholesky factor (column-major)
 *   si  m * m   S^-1 (the gradient's local inverse entries)
 *   sw  m * m   L^-1 on the way to S^-1 */
typedef struct mlmx_gc_rep {
    double *y, *ef, *u, *st, *gr, *dd, *bv, *cv, *sl, *si, *sw;
} mlmx_gc_rep;

/* Doubles of one replicate's scratch (the layout above). */
MLMX_HD size_t mlmx_gc_rep_doubles(const mlmx_gc_shared *S)
{
    const size_t n = (size_t)S->n, nu = (size_t)S->n0 + (size_t)S->m, m = (size_t)S->m;
    return 2 * n + 3 * nu + (size_t)S->n0 + 2 * (size_t)S->nnz + 3 * m * m;
}

/* Point R's arrays into `base` (mlmx_gc_rep_doubles(S) doubles). */
MLMX_HD void mlmx_gc_rep_bind(const mlmx_gc_shared *S, double *base, mlmx_gc_rep *R)
{
    const size_t n = (size_t)S->n, nu = (size_t)S->n0 + (size_t)S->m, m = (size_t)S->m;
    R->y = base;
    R->ef = R->y + n;
    R->u = R->ef + n;
    R->st = R->u + nu;
    R->gr = R->st + nu;
    R->dd = R->gr + nu;
    R->bv = R->dd + S->n0;
    R->cv = R->bv + S->nnz;
    R->sl = R->cv + S->nnz;
    R->si = R->sl + m * m;
    R->sw = R->si + m * m;
}

/* The K coordinates (in u) grouped position k touches and a = Lambda' z
 * there (idx[0] the first term's level, then uR columns offset by n0). */
MLMX_HD void mlmx_gc_coords(const mlmx_gc_shared *S, int k, const double *x, int *idx,
                            double *a)
{
    const int K = S->K;
    const double *z = S->Z + (size_t)k * (size_t)K;
    idx[0] = S->lv[k];
    a[0] = x[0] * z[0];
    for (int t = 1; t < K; t++) {
        idx[t] = S->n0 + S->col[(size_t)k * (size_t)(K - 1) + (size_t)(t - 1)];
        a[t] = x[t] * z[t];
    }
}

/* ------------------------------------------------------------ simulation */

/* Draw replicate `rep`'s response into R->y exactly as
 * mlmx_workspace_simulate does: from stream 0 each term's effects in level
 * order (terms in model order), b = theta_k u; eta_i = sum_j x_ij beta_j +
 * z_0i b + z_1i b + ... (model order, the same arithmetic); y_i from
 * stream 1 in model observation order. Leaves R->u at 0 (the workspace
 * fit's first warm start). Returns the sum of the log-likelihood
 * constants, or NaN when a draw is not finite. */
MLMX_HD double mlmx_gc_simulate(const mlmx_gc_shared *S, uint64_t seed, uint64_t rep,
                                const mlmx_gc_rep *R)
{
    const int K = S->K, p = S->p, nu = S->n0 + S->m;
    mlmx_rng r;
    mlmx_rng_init(&r, seed, rep, 0);
    for (int l = 0; l < S->n0; l++)
        R->u[l] = S->theta_sim[0] * mlmx_rng_normal(&r);
    for (int t = 1; t < K; t++) {
        const int c1 = t + 1 < K ? S->tcol[t + 1] : S->m;
        for (int c = S->tcol[t]; c < c1; c++)
            R->u[S->n0 + c] = S->theta_sim[t] * mlmx_rng_normal(&r);
    }
    mlmx_rng_init(&r, seed, rep, 1);
    double cst = 0.0;
    for (int i = 0; i < S->n; i++) {
        const int k = S->pos[i];
        const double *x = S->X + (size_t)k * (size_t)p, *z = S->Z + (size_t)k * (size_t)K;
        double eta = 0.0;
        for (int j = 0; j < p; j++)
            eta += x[j] * S->beta_sim[j];
        int idx[MLMX_GC_KMAX];
        double a[MLMX_GC_KMAX];
        mlmx_gc_coords(S, k, S->theta_sim, idx, a);
        for (int t = 0; t < K; t++) {
            double zb = 0.0;
            zb += z[t] * R->u[idx[t]];
            eta += zb;
        }
        const double ntr = S->poisson ? 1.0 : S->nt[k];
        const double y = mlmx_sim_response(S->poisson ? 2 : 1,
                                           S->poisson ? MLMX_LINK_LOG : MLMX_LINK_LOGIT, eta, 1.0,
                                           ntr, 0.0, 0, 0, &r);
        R->y[k] = y;
        cst += mlmx_gb_llconst(S->poisson ? MLMX_FAM_POISSON : MLMX_FAM_BINOMIAL, y, ntr);
    }
    for (int j = 0; j < nu; j++)
        R->u[j] = 0.0;
    return isfinite(cst) ? cst : MLMX_GM_NAN;
}

/* ------------------------------------------------------------ the mode */

/* f = X beta at every grouped position (beta = x + K). */
MLMX_HD void mlmx_gc_fill_eta(const mlmx_gc_shared *S, const mlmx_gc_rep *R, const double *x)
{
    const double *beta = x + S->K;
    for (int k = 0; k < S->n; k++)
        R->ef[k] = mlmx_cm_dot(S->p, S->X + (size_t)k * (size_t)S->p, beta);
}

/* eta at grouped position k for the modes u + t st (t = 0: u). */
MLMX_HD double mlmx_gc_eta(const mlmx_gc_shared *S, const mlmx_gc_rep *R, int k, const int *idx,
                           const double *a, double t)
{
    double e = R->ef[k];
    for (int c = 0; c < S->K; c++)
        e += a[c] * (t == 0.0 ? R->u[idx[c]] : R->u[idx[c]] + t * R->st[idx[c]]);
    return e;
}

/* The penalized deviance -2 sum ll + |u|^2 (without constants) at u + t st. */
MLMX_HD double mlmx_gc_pdev(const mlmx_gc_shared *S, const mlmx_gc_rep *R, const double *x,
                            double t)
{
    double lin = 0.0, prod = 1.0, pen = 0.0;
    const int nu = S->n0 + S->m;
    for (int k = 0; k < S->n; k++) {
        int idx[MLMX_GC_KMAX];
        double a[MLMX_GC_KMAX], d1, w;
        mlmx_gc_coords(S, k, x, idx, a);
        lin += mlmx_gb_obs(S->poisson, R->y[k], S->nt[k], mlmx_gc_eta(S, R, k, idx, a, t), &d1,
                           &w, &prod);
        if (prod > 1e280) {
            lin -= log(prod);
            prod = 1.0;
        }
    }
    for (int j = 0; j < nu; j++) {
        const double v = t == 0.0 ? R->u[j] : R->u[j] + t * R->st[j];
        pen += v * v;
    }
    return -2.0 * (lin - log(prod)) + pen;
}

/* In-place lower Cholesky factor of the m x m matrix a (lower triangle
 * read and written, column-major), right-looking so that zero multipliers
 * skip their updates: a nested or sparse pattern (grouseticks' broods in
 * locations) factors in far fewer than m^3 / 6 operations. Returns 0, or
 * j + 1 when the pivot of column j is not positive. */
MLMX_HD int mlmx_gc_chol(int m, double *a)
{
    for (int j = 0; j < m; j++) {
        double *cj = a + (size_t)j * m;
        if (!(cj[j] > 0.0))
            return j + 1;
        const double d = sqrt(cj[j]);
        cj[j] = d;
        for (int i = j + 1; i < m; i++)
            cj[i] /= d;
        for (int k = j + 1; k < m; k++) {
            const double l = cj[k];
            if (l == 0.0)
                continue;
            double *ck = a + (size_t)k * m;
            for (int i = k; i < m; i++)
                ck[i] -= cj[i] * l;
        }
    }
    return 0;
}

/* M at the modes u: D, B's entries, S = C - B' D^-1 B factored in place
 * (R->sl), and G = Lambda' Z' d1 - u in R->gr. Returns log det M, or NaN
 * when S is not positive definite (rounding only: M >= I). */
MLMX_HD double mlmx_gc_system(const mlmx_gc_shared *S, const mlmx_gc_rep *R, const double *x)
{
    const int K = S->K, m = S->m, nu = S->n0 + m;
    for (int j = 0; j < nu; j++)
        R->gr[j] = -R->u[j];
    for (int j = 0; j < S->n0; j++)
        R->dd[j] = 1.0;
    for (int e = 0; e < S->nnz; e++)
        R->bv[e] = 0.0;
    for (int c = 0; c < m; c++)
        for (int r = c; r < m; r++)
            R->sl[r + (size_t)c * m] = r == c ? 1.0 : 0.0;
    for (int k = 0; k < S->n; k++) {
        int idx[MLMX_GC_KMAX];
        double a[MLMX_GC_KMAX], d1, w, prod = 1.0;
        mlmx_gc_coords(S, k, x, idx, a);
        mlmx_gb_obs(S->poisson, R->y[k], S->nt[k], mlmx_gc_eta(S, R, k, idx, a, 0.0), &d1, &w,
                    &prod);
        const int *be = S->bent + (size_t)k * (size_t)(K - 1);
        for (int t = 0; t < K; t++)
            R->gr[idx[t]] += a[t] * d1;
        R->dd[idx[0]] += a[0] * a[0] * w;
        for (int t = 1; t < K; t++) {
            R->bv[be[t - 1]] += a[0] * a[t] * w;
            for (int s = 1; s < K; s++) {
                const int r = idx[s] - S->n0, c = idx[t] - S->n0;
                if (r >= c)
                    R->sl[r + (size_t)c * m] += a[s] * a[t] * w;
            }
        }
    }
    double ld = 0.0;
    for (int j = 0; j < S->n0; j++) {
        const double id = 1.0 / R->dd[j];
        ld += log(R->dd[j]);
        for (int e = S->rp[j]; e < S->rp[j + 1]; e++)
            for (int f = e; f < S->rp[j + 1]; f++) /* rc increases: (rc[f], rc[e]) is lower */
                R->sl[S->rc[f] + (size_t)S->rc[e] * m] -= R->bv[f] * R->bv[e] * id;
    }
    if (mlmx_gc_chol(m, R->sl) != 0)
        return MLMX_GM_NAN;
    return ld + 2.0 * mlmx_cm_logdiag(m, R->sl);
}

/* v <- M^-1 v (v: n0 + m) with the factor of the last mlmx_gc_system. */
MLMX_HD void mlmx_gc_solve(const mlmx_gc_shared *S, const mlmx_gc_rep *R, double *v)
{
    double *vr = v + S->n0;
    for (int j = 0; j < S->n0; j++) {
        const double y = v[j] / R->dd[j];
        for (int e = S->rp[j]; e < S->rp[j + 1]; e++)
            vr[S->rc[e]] -= R->bv[e] * y;
    }
    mlmx_cm_trsv_lower(S->m, R->sl, vr);
    mlmx_cm_trsv_lower_t(S->m, R->sl, vr);
    for (int j = 0; j < S->n0; j++) {
        double s = v[j];
        for (int e = S->rp[j]; e < S->rp[j + 1]; e++)
            s -= R->bv[e] * vr[S->rc[e]];
        v[j] = s / R->dd[j];
    }
}

/* The joint conditional mode at x (Newton with step halving on the
 * penalized deviance), warm-started from and written back to R->u; the
 * system is left factored at the mode. Returns the Laplace deviance
 * (without constants), NaN when a factorization fails. */
MLMX_HD double mlmx_gc_mode(const mlmx_gc_shared *S, const mlmx_gc_rep *R, const double *x)
{
    const int nu = S->n0 + S->m;
    double P = mlmx_gc_pdev(S, R, x, 0.0), ld = MLMX_GM_NAN;
    int fresh = 0; /* the factor is that of the current u */
    for (int it = 0; it < MLMX_GC_NEWTON_MAX; it++) {
        ld = mlmx_gc_system(S, R, x);
        fresh = 1;
        if (!isfinite(ld))
            return MLMX_GM_NAN;
        int big = 0;
        for (int j = 0; j < nu; j++)
            R->st[j] = R->gr[j];
        mlmx_gc_solve(S, R, R->st);
        for (int j = 0; j < nu; j++)
            big |= fabs(R->st[j]) > 1e-10 * (1.0 + fabs(R->u[j]));
        if (!big)
            break;
        int ok = 0;
        double t = 1.0;
        for (int hs = 0; hs < MLMX_GC_HALF_MAX && !ok; hs++, t *= 0.5) {
            const double Pn = mlmx_gc_pdev(S, R, x, t);
            if (Pn <= P + 1e-13 * fabs(P)) {
                ok = 1;
                for (int j = 0; j < nu; j++)
                    R->u[j] += t * R->st[j];
                P = Pn;
                fresh = 0;
            }
        }
        if (!ok)
            break;
    }
    if (!fresh)
        ld = mlmx_gc_system(S, R, x);
    return P + ld;
}

/* ------------------------------------------------------------ the gradient */

/* S^-1 into R->si (full, from the factor L in R->sl) as W' W with W =
 * L^-1 (in R->sw), both skipping zeros; then M^-1's entries on B's
 * pattern, cv[e] = -(S^-1 B' D^-1)[rc[e], j] for entry e of row j.
 * R->gr and R->st serve as scratch (a row of W: values, indices). */
MLMX_HD void mlmx_gc_inverse(const mlmx_gc_shared *S, const mlmx_gc_rep *R)
{
    const int m = S->m;
    for (int c = 0; c < m; c++) {
        double *w = R->sw + (size_t)c * m;
        for (int r = 0; r < m; r++)
            w[r] = r == c ? 1.0 : 0.0;
        for (int k = c; k < m; k++) {
            if (w[k] == 0.0)
                continue;
            const double *lk = R->sl + (size_t)k * m;
            const double v = w[k] / lk[k];
            w[k] = v;
            for (int i = k + 1; i < m; i++)
                w[i] -= lk[i] * v;
        }
    }
    for (size_t e = 0; e < (size_t)m * m; e++)
        R->si[e] = 0.0;
    for (int k = 0; k < m; k++) { /* S^-1 += (row k of W)' (row k of W) */
        int nz = 0;
        for (int r = 0; r <= k; r++) {
            const double v = R->sw[k + (size_t)r * m];
            if (v != 0.0) {
                R->gr[nz] = v;
                R->st[nz++] = r;
            }
        }
        for (int a = 0; a < nz; a++)
            for (int b = 0; b <= a; b++)
                R->si[(int)R->st[a] + (size_t)R->st[b] * m] += R->gr[a] * R->gr[b];
    }
    for (int c = 0; c < m; c++)
        for (int r = c + 1; r < m; r++)
            R->si[c + (size_t)r * m] = R->si[r + (size_t)c * m];
    for (int j = 0; j < S->n0; j++)
        for (int e = S->rp[j]; e < S->rp[j + 1]; e++) {
            const double *sc = R->si + (size_t)S->rc[e] * m;
            double s = 0.0;
            for (int f = S->rp[j]; f < S->rp[j + 1]; f++)
                s += R->bv[f] * sc[S->rc[f]];
            R->cv[e] = -s / R->dd[j];
        }
}

/* va = M^-1 a on the coordinates of grouped position k (first-term level
 * j, its B entries be, uR columns idx - n0). */
MLMX_HD void mlmx_gc_local(const mlmx_gc_shared *S, const mlmx_gc_rep *R, int k, const int *idx,
                           const double *a, double *va)
{
    const int K = S->K, m = S->m, j = idx[0];
    const int *be = S->bent + (size_t)k * (size_t)(K - 1);
    double v00 = 1.0;
    for (int e = S->rp[j]; e < S->rp[j + 1]; e++)
        v00 -= R->bv[e] * R->cv[e];
    v00 /= R->dd[j];
    double v0 = v00 * a[0];
    for (int t = 1; t < K; t++) {
        v0 += R->cv[be[t - 1]] * a[t];
        double vt = R->cv[be[t - 1]] * a[0];
        const double *sc = R->si + (size_t)(idx[t] - S->n0) * m;
        for (int s = 1; s < K; s++)
            vt += sc[idx[s] - S->n0] * a[s];
        va[t] = vt;
    }
    va[0] = v0;
}

/* The replicate's Laplace deviance (without constants) at x and its
 * gradient g (np values): the mode, then two passes over the observations
 * around the adjoint solve s = M^-1 t (R->st). */
MLMX_HD double mlmx_gc_eval(const mlmx_gc_shared *S, const mlmx_gc_rep *R, const double *x,
                            double *g)
{
    const int K = S->K, p = S->p, nu = S->n0 + S->m;
    for (int j = 0; j < S->np; j++)
        g[j] = 0.0;
    mlmx_gc_fill_eta(S, R, x);
    const double L = mlmx_gc_mode(S, R, x);
    if (!isfinite(L))
        return MLMX_GM_NAN;
    mlmx_gc_inverse(S, R);
    for (int j = 0; j < nu; j++)
        R->st[j] = 0.0;
    for (int k = 0; k < S->n; k++) {
        int idx[MLMX_GC_KMAX];
        double a[MLMX_GC_KMAX], va[MLMX_GC_KMAX], d1, w, w3;
        mlmx_gc_coords(S, k, x, idx, a);
        mlmx_gn_dw(S->poisson, R->y[k], S->nt[k], mlmx_gc_eta(S, R, k, idx, a, 0.0), &d1, &w,
                   &w3);
        mlmx_gc_local(S, R, k, idx, a, va);
        const double wl = w3 * mlmx_cm_dot(K, a, va), c = wl - 2.0 * d1;
        const double *xr = S->X + (size_t)k * (size_t)p, *z = S->Z + (size_t)k * (size_t)K;
        for (int j = 0; j < p; j++)
            g[K + j] += c * xr[j];
        for (int t = 0; t < K; t++) {
            g[t] += z[t] * (R->u[idx[t]] * c + 2.0 * w * va[t]);
            R->st[idx[t]] += a[t] * wl;
        }
    }
    mlmx_gc_solve(S, R, R->st);
    for (int k = 0; k < S->n; k++) {
        int idx[MLMX_GC_KMAX];
        double a[MLMX_GC_KMAX], d1, w, w3, rs = 0.0;
        mlmx_gc_coords(S, k, x, idx, a);
        mlmx_gn_dw(S->poisson, R->y[k], S->nt[k], mlmx_gc_eta(S, R, k, idx, a, 0.0), &d1, &w,
                   &w3);
        for (int t = 0; t < K; t++)
            rs += a[t] * R->st[idx[t]];
        const double *xr = S->X + (size_t)k * (size_t)p, *z = S->Z + (size_t)k * (size_t)K;
        for (int j = 0; j < p; j++)
            g[K + j] -= w * rs * xr[j];
        for (int t = 0; t < K; t++)
            g[t] += z[t] * (R->st[idx[t]] * d1 - rs * w * R->u[idx[t]]);
    }
    return L;
}

/* ------------------------------------------------------------ standard errors */

/* The forward-difference step for parameter j at x (mlmx_gobj_fd_step). */
MLMX_HD double mlmx_gc_fd_step(const mlmx_gc_shared *S, const double *x, int j)
{
    if (j >= S->K)
        return 1e-4 / mlmx_gm_fmax(S->xmax[j - S->K], 1e-3);
    return 1e-4 * mlmx_gm_fmax(fabs(x[j]), 0.1);
}

/* Singular as refit.c: some theta below 1e-4 (all have lower bound 0). */
MLMX_HD int mlmx_gc_singular(const mlmx_gc_shared *S, const double *x)
{
    int s = 0;
    for (int t = 0; t < S->K; t++)
        s |= x[t] < 1e-4;
    return s;
}

/* The free parameters of the SE Hessian (refit.c): every theta unless the
 * fit is singular, then every beta (idx: np entries). Returns their
 * number nf. */
MLMX_HD int mlmx_gc_se_index(const mlmx_gc_shared *S, int singular, int *idx)
{
    int nf = 0;
    if (!singular)
        for (int t = 0; t < S->K; t++)
            idx[nf++] = t;
    for (int j = S->K; j < S->np; j++)
        idx[nf++] = j;
    return nf;
}

/* ------------------------------------------------------------ one replicate */

/* Doubles of a replicate's optimizer scratch beside mlmx_gc_rep: the qn
 * store (8 np + np^2), a point and a gradient (np each), the SE Hessian
 * (np^2); and ints: the qn active flags (np). */
MLMX_HD size_t mlmx_gc_opt_doubles(const mlmx_gc_shared *S)
{
    const size_t np = (size_t)S->np;
    return 10 * np + 2 * np * np;
}

/* What a replicate's fit gives besides x and the SEs. status: 1 done, 2
 * failed (then x and se are not written). */
typedef struct mlmx_gc_result {
    double crit;
    int nev, conv, sing, status;
} mlmx_gc_result;

/* SEs of beta (se: p) by forward differences of the gradient at the
 * optimum q->x (refit.c's steps); xs, gp: np, H: np^2 scratch. */
MLMX_HD void mlmx_gc_se(const mlmx_gc_shared *S, const mlmx_gc_rep *R, const mlmx_qn_state *q,
                        int sing, double *xs, double *gp, double *H, double *se)
{
    int idx[MLMX_GC_NPMAX];
    const int nf = mlmx_gc_se_index(S, sing, idx), np = S->np;
    for (int a = 0; a < nf; a++) {
        const double h = mlmx_gc_fd_step(S, q->x, idx[a]);
        for (int j = 0; j < np; j++)
            xs[j] = q->x[j];
        xs[idx[a]] += h;
        mlmx_gc_eval(S, R, xs, gp);
        for (int b = 0; b < nf; b++)
            H[b + a * nf] = (gp[idx[b]] - q->g[idx[b]]) / h;
    }
    mlmx_gb_se_finish(nf, S->p, H, se);
}

/* Replicate `rep`: simulate, refit by BFGS from the problem's start (the
 * workspace refit's loop), and when se is not NULL the SEs of beta. x
 * (np) gets the optimum; opt: mlmx_gc_opt_doubles(S) doubles, active: np
 * ints. The CPU engine and the CUDA kernel both run exactly this. */
MLMX_HD void mlmx_gc_fit_one(const mlmx_gc_shared *S, const mlmx_gc_rep *R, uint64_t seed,
                             uint64_t rep, double *opt, int *active, double *x, double *se,
                             mlmx_gc_result *res)
{
    const int np = S->np;
    double *xs = opt + 8 * np + np * np, *gp = xs + np, *H = gp + np;
    mlmx_qn_state q;
    res->crit = MLMX_GM_NAN;
    res->nev = res->conv = res->sing = 0;
    res->status = 2;
    const double cst = mlmx_gc_simulate(S, seed, rep, R);
    if (!isfinite(cst))
        return;
    mlmx_qn_bind(&q, np, opt, active);
    mlmx_qn_begin(&q, S->x0, S->lb, NULL, &S->cfg, S->hinv0);
    while (mlmx_qn_want(&q))
        mlmx_qn_told(&q, mlmx_gc_eval(S, R, mlmx_qn_point(&q), mlmx_qn_grad(&q)) - 2.0 * cst);
    res->nev = q.n_evals;
    if (q.failed || !isfinite(q.fx))
        return;
    res->sing = mlmx_gc_singular(S, q.x);
    if (se)
        mlmx_gc_se(S, R, &q, res->sing, xs, gp, H, se);
    for (int j = 0; j < np; j++)
        x[j] = q.x[j];
    res->crit = q.fx;
    res->conv = q.converged;
    res->status = 1;
}

#endif
