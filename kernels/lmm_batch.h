/* One replicate of a linear mixed model with a single random-effect term
 * (q <= MLMX_LB_QMAX columns, p <= MLMX_LB_PMAX fixed effects), start to
 * finish: simulate the response (keyed as mlmx_workspace_simulate), form
 * its sufficient statistics Z^T y, X^T y, y^T y, and fit it by the ask/tell
 * BFGS of qn.h on the profiled criterion and its analytic gradient. Written
 * once, compiled as C for the CPU engine (host/replicate/lmm_batch.c) and as
 * CUDA for the device engine (kernels/lmm_batch.cu): the CPU tests run the
 * very arithmetic the GPU runs.
 *
 * The criterion at theta, on the per-level blocks A_j = Z_j^T Z_j, G_j =
 * Z_j^T X_j and the response's z_j = Z_j^T y_j (T = Lambda(theta), lower):
 *   L_j L_j^T = T^T A_j T + I,  c_j = L_j^{-1} T^T z_j,  C_j = L_j^{-1} T^T G_j
 *   S = X^T X - sum C_j^T C_j = R R^T,  R v = X^T y - sum C_j^T c_j
 *   r^2 = y^T y - sum |c_j|^2 - |v|^2,  beta = R^{-T} v
 *   ML:   sum_j log|L_j|^2 + n (1 + log(2 pi r^2 / n))
 *   REML: the same with log|R|^2 added and n - p for n.
 * Its gradient over the entries T[a,b] (no inverse of T, so a variance may
 * approach 0), with u_j = L_j^{-T}(c_j - C_j beta) the spherical modes:
 *   d r^2 / dT[a,b]   = -2 sum_j e_j[a] u_j[b],  e_j = z_j - A_j T u_j - G_j beta
 *   d log|M| / dT[a,b] = 2 sum_j (F_j + K_j (H_j^T T^T A_j - G_j^T))[b,a]
 * where F_j = (L_j L_j^T)^{-1} T^T A_j, H_j = L_j^{-T} C_j and K_j = H_j S^{-1}
 * (REML; for ML only F_j), from the block inverse of the bordered system.
 *
 * Per-replicate arrays indexed by level (the random effects b and z_j) are
 * strided: element k of replicate i sits at base[k * stride] so that a GPU
 * warp's replicates read consecutive words. */
#ifndef MLMX_LMM_BATCH_H
#define MLMX_LMM_BATCH_H

#include <stdint.h>

#include "cluster_math.h"
#include "qn.h"
#include "simulate.h"

#define MLMX_LB_QMAX 4
#define MLMX_LB_PMAX 16
#define MLMX_LB_NTMAX (MLMX_LB_QMAX * (MLMX_LB_QMAX + 1) / 2)

/* The shared structure (host pointers on the CPU, device pointers in a
 * kernel). Observations in model order. */
typedef struct mlmx_lb_model {
    int n, p, q, nblk, nt, reml;
    const int *code;      /* n: level of each observation */
    const double *X;      /* n*p column-major */
    const double *Z;      /* n*q row-major: the term's row per observation */
    const double *ZtZ;    /* nblk*q*q: A_j, column-major, full */
    const double *ZtX;    /* nblk*q*p: G_j, column-major q x p */
    const double *XtX;    /* p*p, column-major, full */
    const double *theta;  /* nt: the parameters replicates are simulated from */
    const double *beta;   /* p */
    double sigma;
    const double *x0;     /* nt: optimizer start (log scale where logp) */
    const double *xlo;    /* nt: lower bounds on the optimizer's scale */
    const double *hinv0;  /* nt*nt inverse Hessian at x0, or NULL */
    const unsigned char *logp; /* nt: 1 for a diagonal entry (optimised as log theta) */
    mlmx_qn_cfg cfg;
} mlmx_lb_model;

/* One replicate's results, written at row i of each array (theta: nt per
 * row, beta and se: p per row; se may be NULL). status 1 done, 2 failed. */
typedef struct mlmx_lb_out {
    double *theta, *beta, *se, *sigma, *crit;
    int *nev;
    signed char *conv, *sing, *status;
} mlmx_lb_out;

/* Fixed-size scratch of one replicate (registers or local memory). */
typedef struct mlmx_lb_scratch {
    double T[MLMX_LB_QMAX * MLMX_LB_QMAX], L[MLMX_LB_QMAX * MLMX_LB_QMAX];
    double AT[MLMX_LB_QMAX * MLMX_LB_QMAX], F[MLMX_LB_QMAX * MLMX_LB_QMAX];
    double gT[MLMX_LB_QMAX * MLMX_LB_QMAX];
    double c[MLMX_LB_QMAX], u[MLMX_LB_QMAX], e[MLMX_LB_QMAX];
    double C[MLMX_LB_QMAX * MLMX_LB_PMAX], H[MLMX_LB_QMAX * MLMX_LB_PMAX];
    double K[MLMX_LB_QMAX * MLMX_LB_PMAX];
    double S[MLMX_LB_PMAX * MLMX_LB_PMAX], Si[MLMX_LB_PMAX * MLMX_LB_PMAX];
    double v[MLMX_LB_PMAX], beta[MLMX_LB_PMAX];
    double th[MLMX_LB_NTMAX];
    double r2, ldz, ldx;
    double qs[8 * MLMX_LB_NTMAX + MLMX_LB_NTMAX * MLMX_LB_NTMAX];
    int act[MLMX_LB_NTMAX];
} mlmx_lb_scratch;

/* Replicate r's response, accumulated straight into its statistics: z
 * (nblk*q, strided), xty (p), *yty. b: nblk*q strided scratch for the
 * random effects. Draws: u from stream 0 level by level, b = sigma T u;
 * y_i = X_i beta + Z_i b_{code_i} + sigma N(0,1) from stream 1 in
 * observation order, exactly as mlmx_workspace_simulate. y_out (n, may be
 * NULL) receives the response itself. */
MLMX_HD void mlmx_lb_simulate(const mlmx_lb_model *M, uint64_t seed, uint64_t rep, double *b,
                              double *z, size_t stride, double *xty, double *yty, double *y_out)
{
    const int q = M->q, p = M->p;
    double T[MLMX_LB_QMAX * MLMX_LB_QMAX], u[MLMX_LB_QMAX], bb[MLMX_LB_QMAX];
    mlmx_rng r;
    mlmx_cm_theta_to_t(q, M->theta, T);
    mlmx_rng_init(&r, seed, rep, 0);
    for (int j = 0; j < M->nblk; j++) {
        for (int c = 0; c < q; c++)
            u[c] = mlmx_rng_normal(&r);
        mlmx_cm_lower_mv(q, T, u, bb);
        for (int c = 0; c < q; c++) {
            b[(size_t)(j * q + c) * stride] = bb[c] * M->sigma;
            z[(size_t)(j * q + c) * stride] = 0.0;
        }
    }
    for (int k = 0; k < p; k++)
        xty[k] = 0.0;
    double yy = 0.0;
    mlmx_rng_init(&r, seed, rep, 1);
    for (int i = 0; i < M->n; i++) {
        double eta = 0.0;
        for (int k = 0; k < p; k++)
            eta += M->X[(size_t)k * M->n + i] * M->beta[k];
        const int j = M->code[i];
        const double *zi = M->Z + (size_t)i * q;
        double s = 0.0;
        for (int c = 0; c < q; c++)
            s += zi[c] * b[(size_t)(j * q + c) * stride];
        eta += s;
        double y = mlmx_sim_response(0, 0, eta, M->sigma, 1.0, 0.0, 0, 0, &r);
        if (y_out)
            y_out[i] = y;
        for (int c = 0; c < q; c++)
            z[(size_t)(j * q + c) * stride] += zi[c] * y;
        for (int k = 0; k < p; k++)
            xty[k] += M->X[(size_t)k * M->n + i] * y;
        yy += y * y;
    }
    *yty = yy;
}

/* For level j at the template in w->T: w->L = chol(T^T A_j T + I), w->AT =
 * A_j T, w->c = L^{-1} T^T z_j, w->C = L^{-1} T^T G_j. 0, or 1 when the
 * block is not positive definite. */
MLMX_HD int mlmx_lb_level(const mlmx_lb_model *M, int j, const double *z, size_t stride,
                          mlmx_lb_scratch *w)
{
    const int q = M->q, p = M->p;
    const double *A = M->ZtZ + (size_t)j * q * q, *G = M->ZtX + (size_t)j * q * p;
    mlmx_cm_tat_plus_i(q, A, w->T, w->AT, w->L);
    if (mlmx_cm_chol(q, w->L))
        return 1;
    for (int a = 0; a < q; a++) {
        double s = 0.0;
        for (int c = a; c < q; c++)
            s += w->T[c + a * q] * z[(size_t)(j * q + c) * stride];
        w->c[a] = s;
    }
    mlmx_cm_trsv_lower(q, w->L, w->c);
    for (int k = 0; k < p; k++) {
        double *col = w->C + k * q;
        for (int a = 0; a < q; a++) {
            double s = 0.0;
            for (int c = a; c < q; c++)
                s += w->T[c + a * q] * G[c + k * q];
            col[a] = s;
        }
        mlmx_cm_trsv_lower(q, w->L, col);
    }
    return 0;
}

/* The profiled criterion at theta (nt values, natural scale) for a
 * replicate's statistics; leaves R (in w->S), v, beta, r2, ldz, ldx in w.
 * NaN when a block or R is not positive definite or r^2 <= 0. */
MLMX_HD double mlmx_lb_crit(const mlmx_lb_model *M, const double *theta, const double *z,
                            size_t stride, const double *xty, double yty, mlmx_lb_scratch *w)
{
    const int q = M->q, p = M->p;
    mlmx_cm_theta_to_t(q, theta, w->T);
    for (int a = 0; a < p * p; a++)
        w->S[a] = M->XtX[a];
    for (int k = 0; k < p; k++)
        w->v[k] = xty[k];
    double ys = yty, ldz = 0.0;
    for (int j = 0; j < M->nblk; j++) {
        if (mlmx_lb_level(M, j, z, stride, w))
            return MLMX_GM_NAN;
        ldz += 2.0 * mlmx_cm_logdiag(q, w->L);
        for (int l = 0; l < p; l++) {
            const double *cl = w->C + l * q;
            for (int k = l; k < p; k++) {
                const double *ck = w->C + k * q;
                double s = 0.0;
                for (int a = 0; a < q; a++)
                    s += ck[a] * cl[a];
                w->S[k + l * p] -= s;
            }
            double s = 0.0;
            for (int a = 0; a < q; a++)
                s += cl[a] * w->c[a];
            w->v[l] -= s;
        }
        for (int a = 0; a < q; a++)
            ys -= w->c[a] * w->c[a];
    }
    if (p > 0 && mlmx_cm_chol(p, w->S))
        return MLMX_GM_NAN;
    mlmx_cm_trsv_lower(p, w->S, w->v);
    for (int k = 0; k < p; k++) {
        ys -= w->v[k] * w->v[k];
        w->beta[k] = w->v[k];
    }
    mlmx_cm_trsv_lower_t(p, w->S, w->beta);
    w->r2 = ys;
    w->ldz = ldz;
    w->ldx = p > 0 ? 2.0 * mlmx_cm_logdiag(p, w->S) : 0.0;
    if (!(ys > 0.0))
        return MLMX_GM_NAN;
    const double two_pi = 6.283185307179586476925286766559;
    const double nn = (double)M->n - (M->reml ? (double)p : 0.0);
    return ldz + (M->reml ? w->ldx : 0.0) + nn * (1.0 + log(two_pi * ys / nn));
}

/* w->Si = S^{-1} = R^{-T} R^{-1} (full), from R in w->S; w->K as scratch. */
MLMX_HD void mlmx_lb_sinv(int p, mlmx_lb_scratch *w)
{
    for (int k = 0; k < p; k++) {
        double *col = w->K; /* column k of R^{-1}: solve R x = e_k */
        for (int a = 0; a < p; a++)
            col[a] = a == k ? 1.0 : 0.0;
        mlmx_cm_trsv_lower(p, w->S, col);
        mlmx_cm_trsv_lower_t(p, w->S, col);
        for (int a = 0; a < p; a++)
            w->Si[a + k * p] = col[a];
    }
}

/* Level j's part of the gradient over T's entries, added to w->gT (q*q,
 * column-major; lower triangle used): scale2 = (n or n-p) / r^2. Needs the
 * criterion's beta and, for REML, w->Si. Recomputes the level's factor. */
MLMX_HD void mlmx_lb_grad_level(const mlmx_lb_model *M, int j, const double *z, size_t stride,
                                double scale2, mlmx_lb_scratch *w)
{
    const int q = M->q, p = M->p;
    const double *A = M->ZtZ + (size_t)j * q * q, *G = M->ZtX + (size_t)j * q * p;
    mlmx_lb_level(M, j, z, stride, w);
    for (int a = 0; a < q; a++) {
        double s = w->c[a];
        for (int k = 0; k < p; k++)
            s -= w->C[a + k * q] * w->beta[k];
        w->u[a] = s;
    }
    mlmx_cm_trsv_lower_t(q, w->L, w->u);
    double tu[MLMX_LB_QMAX];
    mlmx_cm_lower_mv(q, w->T, w->u, tu);
    for (int a = 0; a < q; a++) {
        double s = z[(size_t)(j * q + a) * stride];
        for (int c = 0; c < q; c++)
            s -= A[a + c * q] * tu[c];
        for (int k = 0; k < p; k++)
            s -= G[a + k * q] * w->beta[k];
        w->e[a] = s;
    }
    /* F = (L L^T)^{-1} T^T A: column b of T^T A is row b of A T (= w->AT) */
    for (int b = 0; b < q; b++) {
        double *f = w->F + b * q;
        for (int a = 0; a < q; a++)
            f[a] = w->AT[b + a * q];
        mlmx_cm_trsv_lower(q, w->L, f);
        mlmx_cm_trsv_lower_t(q, w->L, f);
    }
    if (M->reml) {
        for (int k = 0; k < p; k++) { /* H = L^{-T} C */
            double *h = w->H + k * q;
            for (int a = 0; a < q; a++)
                h[a] = w->C[a + k * q];
            mlmx_cm_trsv_lower_t(q, w->L, h);
        }
        for (int k = 0; k < p; k++) /* K = H S^{-1} */
            for (int a = 0; a < q; a++) {
                double s = 0.0;
                for (int l = 0; l < p; l++)
                    s += w->H[a + l * q] * w->Si[l + k * p];
                w->K[a + k * q] = s;
            }
        /* F += K (H^T T^T A - G^T): (H^T T^T A)[k,b] = sum_a H[a,k] (A T)[b,a] */
        for (int b = 0; b < q; b++)
            for (int k = 0; k < p; k++) {
                double wkb = -G[b + k * q];
                for (int a = 0; a < q; a++)
                    wkb += w->H[a + k * q] * w->AT[b + a * q];
                for (int a = 0; a < q; a++)
                    w->F[a + b * q] += w->K[a + k * q] * wkb;
            }
    }
    for (int b = 0; b < q; b++)
        for (int a = b; a < q; a++)
            w->gT[a + b * q] += 2.0 * w->F[b + a * q] - 2.0 * scale2 * w->e[a] * w->u[b];
}

/* Criterion and gradient at the optimizer's x (nt values: log theta where
 * M->logp). grad (nt) is written when the value is finite. */
MLMX_HD double mlmx_lb_objective(const mlmx_lb_model *M, const double *x, double *grad,
                                 const double *z, size_t stride, const double *xty, double yty,
                                 mlmx_lb_scratch *w)
{
    const int q = M->q, p = M->p;
    for (int t = 0; t < M->nt; t++)
        w->th[t] = M->logp[t] ? exp(x[t]) : x[t];
    double f = mlmx_lb_crit(M, w->th, z, stride, xty, yty, w);
    if (!isfinite(f))
        return f;
    if (M->reml)
        mlmx_lb_sinv(p, w);
    for (int a = 0; a < q * q; a++)
        w->gT[a] = 0.0;
    const double scale2 = ((double)M->n - (M->reml ? (double)p : 0.0)) / w->r2;
    for (int j = 0; j < M->nblk; j++)
        mlmx_lb_grad_level(M, j, z, stride, scale2, w);
    int t = 0;
    for (int b = 0; b < q; b++)
        for (int a = b; a < q; a++, t++)
            grad[t] = w->gT[a + b * q] * (M->logp[t] ? w->th[t] : 1.0);
    return f;
}

/* The fit in three steps, so that a kernel can run many replicates'
 * optimizer loops in lockstep and refill a finished slot with the next
 * replicate (kernels/lmm_batch.cu): begin, then mlmx_lb_fit_step while it
 * returns 1, then finish. st's store lives in w. */
MLMX_HD void mlmx_lb_fit_begin(const mlmx_lb_model *M, mlmx_qn_state *st, mlmx_lb_scratch *w)
{
    mlmx_qn_bind(st, M->nt, w->qs, w->act);
    mlmx_qn_begin(st, M->x0, M->xlo, 0, &M->cfg, M->hinv0);
}

/* One criterion evaluation where the optimizer wants one: 1, or 0 when it
 * has stopped. */
MLMX_HD int mlmx_lb_fit_step(const mlmx_lb_model *M, mlmx_qn_state *st, const double *z,
                             size_t stride, const double *xty, double yty, mlmx_lb_scratch *w)
{
    if (!mlmx_qn_want(st))
        return 0;
    mlmx_qn_told(st, mlmx_lb_objective(M, mlmx_qn_point(st), mlmx_qn_grad(st), z, stride, xty,
                                       yty, w));
    return 1;
}

/* Row i of o from the stopped optimizer st. */
MLMX_HD void mlmx_lb_fit_finish(const mlmx_lb_model *M, const mlmx_qn_state *st, const double *z,
                                size_t stride, const double *xty, double yty, mlmx_lb_scratch *w,
                                const mlmx_lb_out *o, size_t i)
{
    const int nt = M->nt, p = M->p;
    int sing = 0;
    for (int t = 0; t < nt; t++) {
        w->th[t] = M->logp[t] ? exp(st->x[t]) : st->x[t];
        if (M->logp[t] && w->th[t] < 1e-4)
            sing = 1;
    }
    double f = st->failed ? MLMX_GM_NAN : mlmx_lb_crit(M, w->th, z, stride, xty, yty, w);
    if (!isfinite(f)) {
        for (int t = 0; t < nt; t++)
            o->theta[i * nt + t] = MLMX_GM_NAN;
        for (int k = 0; k < p; k++) {
            o->beta[i * p + k] = MLMX_GM_NAN;
            if (o->se)
                o->se[i * p + k] = MLMX_GM_NAN;
        }
        o->sigma[i] = o->crit[i] = MLMX_GM_NAN;
        o->nev[i] = st->n_evals;
        o->conv[i] = o->sing[i] = 0;
        o->status[i] = 2;
        return;
    }
    const double nn = (double)M->n - (M->reml ? (double)p : 0.0);
    const double s2 = w->r2 / nn;
    if (o->se)
        mlmx_lb_sinv(p, w);
    for (int t = 0; t < nt; t++)
        o->theta[i * nt + t] = w->th[t];
    for (int k = 0; k < p; k++) {
        o->beta[i * p + k] = w->beta[k];
        if (o->se)
            o->se[i * p + k] = sqrt(s2 * w->Si[k + k * p]);
    }
    o->sigma[i] = sqrt(s2);
    o->crit[i] = f;
    o->nev[i] = st->n_evals;
    o->conv[i] = (signed char)st->converged;
    o->sing[i] = (signed char)sing;
    o->status[i] = 1;
}

/* Fit one replicate from its statistics and write row i of o. */
MLMX_HD void mlmx_lb_fit(const mlmx_lb_model *M, const double *z, size_t stride,
                         const double *xty, double yty, mlmx_lb_scratch *w, const mlmx_lb_out *o,
                         size_t i)
{
    mlmx_qn_state st;
    mlmx_lb_fit_begin(M, &st, w);
    while (mlmx_lb_fit_step(M, &st, z, stride, xty, yty, w))
        ;
    mlmx_lb_fit_finish(M, &st, z, stride, xty, yty, w, o, i);
}

#endif
