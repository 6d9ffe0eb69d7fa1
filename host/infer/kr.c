/* Kenward-Roger's adjusted covariance of the fixed effects and its
 * denominator degrees of freedom (Kenward & Roger 1997), as pbkrtest 0.5
 * computes them for an lmer fit (vcovAdj, Lb_ddf, KRmodcomp):
 *
 *   Sigma = sum_r psi_r G_r: psi the entries (a >= b) of each random-effect
 *     term's covariance, G_r = Z_k (E_ab + E_ba) Z_k^T per level, then
 *     sigma^2 with G = I;
 *   Phi = (X^T Sigma^{-1} X)^{-1}, P_r = -X^T Sigma^{-1} G_r Sigma^{-1} X,
 *   Q_rs = X^T Sigma^{-1} G_r Sigma^{-1} G_s Sigma^{-1} X,
 *   IE_rs = tr(Sigma^{-1} G_r Sigma^{-1} G_s) - 2 tr(Phi Q_rs)
 *           + tr(Phi P_r Phi P_s),   W = 2 IE^{-1},
 *   Phi_A = Phi + 2 Phi (sum_rs W_rs (Q_rs - P_r Phi P_s)) Phi.
 *
 * pbkrtest forms the n x n matrices; here everything is in the space of
 * the q random effects. With A = Z Lambda (Lambda the relative covariance
 * factor), Sigma = sigma^2 (I + A A^T), K = (I + A^T A)^{-1} and
 * W_n = I - A K A^T = sigma^2 Sigma^{-1}: A^T W_n = K A^T, so W_n^2 =
 * W_n - A K^2 A^T, W_n^3 = W_n^2 - A K^3 A^T and tr(W_n^2) = n - q +
 * tr(K^2), and every product above is a q x q or p x q expression in
 * Z^T Z, Z^T X, X^T X and K. Cost O(q^3) with dense q x q matrices
 * (refused above MAX_Q columns), instead of pbkrtest's O(n^3). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

#define MAX_Q 3000

/* C (m x n) = alpha op(A) op(B) + beta C, column-major, tight leading dims. */
static void gemm(int ta, int tb, int m, int n, int k, double alpha, const double *A,
                 const double *B, double beta, double *C)
{
    cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, A, ta ? k : m, B, tb ? n : k, beta, C, m);
}

/* The q-space pieces (all column-major). */
typedef struct kr_work {
    int n, p, qt, nre;   /* observations, fixed effects, random effects, RE parameters */
    int *off;            /* K: first column of each term */
    double *ZtZ, *ZtX, *XtX;
    double *K, *aZ, *aX;  /* (I + Lambda^T Z^T Z Lambda)^{-1}, Lambda^T Z^T Z, Lambda^T Z^T X */
    double *M, *M2;      /* Z^T Sigma^{-1} Z, Z^T Sigma^{-2} Z */
    double *B, *C2;      /* X^T Sigma^{-1} Z, X^T Sigma^{-2} Z (p x q) */
    double *XS2X, *XS3X; /* X^T Sigma^{-2} X, X^T Sigma^{-3} X */
    double trS2;         /* tr(Sigma^{-2}) */
} kr_work;

static void work_free(kr_work *w)
{
    free(w->off);
    free(w->ZtZ);
    free(w->ZtX);
    free(w->XtX);
    free(w->K);
    free(w->aZ);
    free(w->aX);
    free(w->M);
    free(w->M2);
    free(w->B);
    free(w->C2);
    free(w->XS2X);
    free(w->XS3X);
}

/* Z^T Z, Z^T X and X^T X from the terms' model rows. */
static void crossproducts(const mlmx_model *m, kr_work *w, int *idx, double *val)
{
    const int qt = w->qt, p = w->p;
    for (size_t i = 0; i < m->n; i++) {
        int nz = 0;
        for (int k = 0; k < m->K; k++) {
            const mlmx_reterm_info *r = &m->re[k];
            for (int a = 0; a < r->q; a++) {
                idx[nz] = w->off[k] + r->codes[i] * r->q + a;
                val[nz++] = r->z[i * (size_t)r->q + (size_t)a];
            }
        }
        for (int b = 0; b < nz; b++) {
            for (int a = 0; a < nz; a++)
                w->ZtZ[idx[a] + (size_t)idx[b] * qt] += val[a] * val[b];
            for (int j = 0; j < p; j++)
                w->ZtX[idx[b] + (size_t)j * qt] += val[b] * m->X[i + (size_t)j * m->n];
        }
    }
    gemm(1, 0, p, p, (int)m->n, 1.0, m->X, m->X, 0.0, w->XtX);
}

/* Rows r0.. of Lambda^T Y for Y (qt x ncol): T_k^T per level block. */
static void lambda_t_times(const mlmx_fit *f, const kr_work *w, const double *Y, int ncol,
                           double *out)
{
    const mlmx_model *m = f->model;
    const int qt = w->qt;
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        const int q = r->q;
        const double *th = f->theta + r->theta_offset;
        double T[16 * 16];
        for (int j = 0, t = 0; j < q; j++)
            for (int i = 0; i < q; i++)
                T[i + j * q] = i >= j ? th[t++] : 0.0;
        for (int l = 0; l < r->nlevels; l++) {
            const int r0 = w->off[k] + l * q;
            for (int c = 0; c < ncol; c++)
                for (int a = 0; a < q; a++) {
                    double s = 0.0;
                    for (int b = a; b < q; b++)
                        s += T[b + a * q] * Y[r0 + b + (size_t)c * qt];
                    out[r0 + a + (size_t)c * qt] = s;
                }
        }
    }
}

static double *dalloc(size_t n, int *fail)
{
    double *x = calloc(n ? n : 1, sizeof *x);
    if (!x)
        *fail = 1;
    return x;
}

/* K, and the Sigma^{-1} products of kr_work. */
static mlmx_status q_space(const mlmx_fit *f, kr_work *w)
{
    const int qt = w->qt, p = w->p;
    const size_t qq = (size_t)qt * qt, qp = (size_t)qt * p, pp = (size_t)p * p;
    int fail = 0;
    double *KaZ = dalloc(qq, &fail), *KaX = dalloc(qp, &fail), *K2aX = dalloc(qp, &fail);
    double *T1 = dalloc(qq, &fail);
    w->K = dalloc(qq, &fail);
    w->aZ = dalloc(qq, &fail);
    w->aX = dalloc(qp, &fail);
    w->M = dalloc(qq, &fail);
    w->M2 = dalloc(qq, &fail);
    w->B = dalloc(qp, &fail);
    w->C2 = dalloc(qp, &fail);
    w->XS2X = dalloc(pp, &fail);
    w->XS3X = dalloc(pp, &fail);
    mlmx_status st = fail ? MLMX_ERR_NOMEM : MLMX_OK;
    if (!st) {
        lambda_t_times(f, w, w->ZtZ, qt, w->aZ);
        lambda_t_times(f, w, w->ZtX, p, w->aX);
        /* K^{-1} = Lambda^T Z^T Z Lambda + I = (Lambda^T aZ^T)^T + I */
        for (size_t a = 0; a < qq; a++)
            T1[a] = w->aZ[(a % qt) * qt + a / qt]; /* aZ^T = Z^T Z Lambda */
        lambda_t_times(f, w, T1, qt, w->K);
        for (int i = 0; i < qt; i++)
            w->K[i + (size_t)i * qt] += 1.0;
        if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', qt, w->K, qt) ||
            LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', qt, w->K, qt))
            st = MLMX_ERR_NUMERIC;
    }
    if (!st) {
        for (int j = 0; j < qt; j++)
            for (int i = 0; i < j; i++)
                w->K[i + (size_t)j * qt] = w->K[j + (size_t)i * qt];
        const double s2 = f->sigma * f->sigma;
        gemm(0, 0, qt, qt, qt, 1.0, w->K, w->aZ, 0.0, KaZ);
        gemm(0, 0, qt, p, qt, 1.0, w->K, w->aX, 0.0, KaX);
        gemm(0, 0, qt, p, qt, 1.0, w->K, KaX, 0.0, K2aX);
        /* Z^T W Z = Z^T Z - aZ^T K aZ; Z^T W^2 Z = Z^T W Z - (K aZ)^T (K aZ) */
        memcpy(T1, w->ZtZ, qq * sizeof *T1);
        gemm(1, 0, qt, qt, qt, -1.0, w->aZ, KaZ, 1.0, T1);
        for (size_t a = 0; a < qq; a++)
            w->M[a] = T1[a] / s2;
        gemm(1, 0, qt, qt, qt, -1.0, KaZ, KaZ, 1.0, T1);
        for (size_t a = 0; a < qq; a++)
            w->M2[a] = T1[a] / (s2 * s2);
        /* X^T W Z (p x q) = (Z^T X)^T - aX^T K aZ; X^T W^2 Z likewise */
        for (int j = 0; j < qt; j++)
            for (int i = 0; i < p; i++)
                T1[i + (size_t)j * p] = w->ZtX[j + (size_t)i * qt];
        gemm(1, 0, p, qt, qt, -1.0, w->aX, KaZ, 1.0, T1);
        for (size_t a = 0; a < qp; a++)
            w->B[a] = T1[a] / s2;
        gemm(1, 0, p, qt, qt, -1.0, KaX, KaZ, 1.0, T1);
        for (size_t a = 0; a < qp; a++)
            w->C2[a] = T1[a] / (s2 * s2);
        /* X^T W^2 X = X^T X - aX^T K aX - (K aX)^T (K aX); W^3 one more term */
        memcpy(T1, w->XtX, pp * sizeof *T1);
        gemm(1, 0, p, p, qt, -1.0, w->aX, KaX, 1.0, T1);
        gemm(1, 0, p, p, qt, -1.0, KaX, KaX, 1.0, T1);
        for (size_t a = 0; a < pp; a++)
            w->XS2X[a] = T1[a] / (s2 * s2);
        gemm(1, 0, p, p, qt, -1.0, KaX, K2aX, 1.0, T1);
        for (size_t a = 0; a < pp; a++)
            w->XS3X[a] = T1[a] / (s2 * s2 * s2);
        double trK2 = 0.0;
        for (size_t a = 0; a < qq; a++)
            trK2 += w->K[a] * w->K[a];
        w->trS2 = ((double)w->n - qt + trK2) / (s2 * s2);
    }
    free(KaZ);
    free(KaX);
    free(K2aX);
    free(T1);
    return st;
}

/* Random-effect parameter r: term k and entry (a, b), a >= b, in the
 * order of the term's theta (column-major lower triangle). */
static void param_of(const mlmx_model *m, int r, int *k, int *a, int *b)
{
    *k = *a = *b = 0;
    for (int t = 0; t < m->K; t++) {
        const int q = m->re[t].q, np = q * (q + 1) / 2;
        if (r < np) {
            for (int c = 0; c < q; c++) {
                if (r < q - c) {
                    *k = t;
                    *b = c;
                    *a = c + r;
                    return;
                }
                r -= q - c;
            }
        }
        r -= np;
    }
}

/* out (p x q) = B D_r; DM (q x q) = D_r M (NULL: skipped). */
static void apply_D(const mlmx_model *m, const kr_work *w, int r, double *BD, double *DM)
{
    int k, a, b;
    param_of(m, r, &k, &a, &b);
    const int qt = w->qt, p = w->p, q = m->re[k].q;
    memset(BD, 0, (size_t)p * qt * sizeof *BD);
    if (DM)
        memset(DM, 0, (size_t)qt * qt * sizeof *DM);
    for (int l = 0; l < m->re[k].nlevels; l++) {
        const int ia = w->off[k] + l * q + a, ib = w->off[k] + l * q + b;
        for (int i = 0; i < p; i++) {
            BD[i + (size_t)ib * p] += w->B[i + (size_t)ia * p];
            if (a != b)
                BD[i + (size_t)ia * p] += w->B[i + (size_t)ib * p];
        }
        for (int j = 0; DM && j < qt; j++) {
            DM[ia + (size_t)j * qt] += w->M[ib + (size_t)j * qt];
            if (a != b)
                DM[ib + (size_t)j * qt] += w->M[ia + (size_t)j * qt];
        }
    }
}

/* tr(Sigma^{-1} G_r Sigma^{-1}) = tr(D_r Z^T Sigma^{-2} Z). */
static double trace_D_M2(const mlmx_model *m, const kr_work *w, int r)
{
    int k, a, b;
    param_of(m, r, &k, &a, &b);
    const int q = m->re[k].q, qt = w->qt;
    double s = 0.0;
    for (int l = 0; l < m->re[k].nlevels; l++) {
        const int ia = w->off[k] + l * q + a, ib = w->off[k] + l * q + b;
        s += w->M2[ib + (size_t)ia * qt] + (a != b ? w->M2[ia + (size_t)ib * qt] : 0.0);
    }
    return s;
}

static double trace_prod(int n, const double *A, const double *B) /* tr(A B) */
{
    double s = 0.0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++)
            s += A[i + (size_t)j * n] * B[j + (size_t)i * n];
    return s;
}

/* W = 2 IE^{-1}: the inverse, or MASS::ginv's pseudo-inverse when the
 * smallest |eigenvalue| is at most 1e-10 (pbkrtest's rule). */
static mlmx_status info_inverse(int nv, const double *IE, double *W)
{
    double *E = malloc((size_t)nv * nv * sizeof *E), *ev = malloc((size_t)nv * sizeof *ev);
    if (!E || !ev) {
        free(E);
        free(ev);
        return MLMX_ERR_NOMEM;
    }
    memcpy(E, IE, (size_t)nv * nv * sizeof *E);
    mlmx_status st = LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'L', nv, E, nv, ev) ? MLMX_ERR_NUMERIC
                                                                              : MLMX_OK;
    double mn = HUGE_VAL, mx = 0.0;
    for (int i = 0; !st && i < nv; i++) {
        mn = fmin(mn, fabs(ev[i]));
        mx = fmax(mx, fabs(ev[i]));
    }
    const double tol = mn > 1e-10 ? 0.0 : sqrt(2.220446049250313e-16) * mx;
    for (int j = 0; !st && j < nv; j++)
        for (int i = 0; i < nv; i++) {
            double s = 0.0;
            for (int e = 0; e < nv; e++)
                if (fabs(ev[e]) > tol)
                    s += E[i + e * nv] * E[j + e * nv] / ev[e];
            W[i + j * nv] = 2.0 * s;
        }
    free(E);
    free(ev);
    return st;
}

/* P, Q, the traces, W and Phi_A from the q-space pieces. */
static mlmx_status adjust(const mlmx_fit *f, const kr_work *w, mlmx_kr_state *S)
{
    const mlmx_model *m = f->model;
    const int p = w->p, qt = w->qt, nre = w->nre, nv = nre + 1;
    const size_t pp = (size_t)p * p, qp = (size_t)p * qt, qq = (size_t)qt * qt;
    int fail = 0;
    double *BD = dalloc(qp * nre, &fail), *DM = dalloc(qq * nre, &fail);
    double *MBD = dalloc(qp, &fail), *Q = dalloc(pp * nv * nv, &fail);
    double *IE = dalloc((size_t)nv * nv, &fail), *T1 = dalloc(pp, &fail), *T2 = dalloc(pp, &fail);
    double *U = dalloc(pp, &fail);
    if (fail) {
        free(BD), free(DM), free(MBD), free(Q), free(IE), free(T1), free(T2), free(U);
        return MLMX_ERR_NOMEM;
    }
    const double *Phi = S->Phi;
    for (int r = 0; r < nre; r++) {
        apply_D(m, w, r, BD + qp * r, DM + qq * r);
        gemm(0, 1, p, p, qt, -1.0, BD + qp * r, w->B, 0.0, S->P + pp * r);
    }
    for (size_t a = 0; a < pp; a++)
        S->P[pp * nre + a] = -w->XS2X[a];
    /* Q_rs (r <= s) and the traces tr(Sigma^{-1} G_r Sigma^{-1} G_s) */
    for (int s = 0; s < nv; s++) {
        if (s < nre)
            gemm(0, 1, qt, p, qt, 1.0, w->M, BD + qp * s, 0.0, MBD); /* M (B D_s)^T */
        for (int r = 0; r <= s; r++) {
            double *Qrs = Q + pp * (r + (size_t)s * nv), ktr = 0.0;
            if (s < nre) {
                gemm(0, 0, p, p, qt, 1.0, BD + qp * r, MBD, 0.0, Qrs);
                ktr = trace_prod(qt, DM + qq * r, DM + qq * s);
            } else if (r < nre) {
                gemm(0, 1, p, p, qt, 1.0, BD + qp * r, w->C2, 0.0, Qrs);
                ktr = trace_D_M2(m, w, r);
            } else {
                memcpy(Qrs, w->XS3X, pp * sizeof *Qrs);
                ktr = w->trS2;
            }
            /* IE_rs = ktr - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s) */
            gemm(0, 0, p, p, p, 1.0, Phi, S->P + pp * r, 0.0, T1);
            gemm(0, 0, p, p, p, 1.0, Phi, S->P + pp * s, 0.0, T2);
            IE[r + s * nv] = IE[s + r * nv] =
                ktr - 2.0 * trace_prod(p, Phi, Qrs) + trace_prod(p, T1, T2);
        }
    }
    mlmx_status st = info_inverse(nv, IE, S->W);
    /* U = sum_{r<s} W_rs [(Q_rs - P_r Phi P_s) + transpose] + sum_r W_rr (Q_rr - P_r Phi P_r) */
    for (int s = 0; !st && s < nv; s++)
        for (int r = 0; r <= s; r++) {
            memcpy(T2, Q + pp * (r + (size_t)s * nv), pp * sizeof *T2);
            gemm(0, 0, p, p, p, 1.0, S->P + pp * r, Phi, 0.0, T1);
            gemm(0, 0, p, p, p, -1.0, T1, S->P + pp * s, 1.0, T2);
            const double wrs = S->W[r + s * nv];
            for (int j = 0; j < p; j++)
                for (int i = 0; i < p; i++)
                    U[i + j * p] += wrs * (r == s ? T2[i + j * p] : T2[i + j * p] + T2[j + i * p]);
        }
    if (!st) {
        gemm(0, 0, p, p, p, 1.0, Phi, U, 0.0, T1);
        memcpy(S->PhiA, Phi, pp * sizeof *Phi);
        gemm(0, 0, p, p, p, 2.0, T1, Phi, 1.0, S->PhiA);
    }
    free(BD), free(DM), free(MBD), free(Q), free(IE), free(T1), free(T2), free(U);
    return st;
}

void mlmx_kr_free(mlmx_kr_state *S)
{
    free(S->Phi);
    free(S->PhiA);
    free(S->P);
    free(S->W);
    memset(S, 0, sizeof *S);
}

static mlmx_status kr_check(const mlmx_fit *f, int qt)
{
    if (f->family != MLMX_FAMILY_GAUSSIAN)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "Kenward-Roger degrees of freedom are for linear mixed models "
                              "(a GLMM has Wald z tests)");
    if (f->method != MLMX_REML)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "Kenward-Roger's method is only available for REML fits (as "
                              "lmerTest and pbkrtest): fit with --reml");
    if (mlmx_api_require_unstructured(f->model, "Kenward-Roger's method"))
        return MLMX_ERR_UNSUPPORTED;
    if (qt > MAX_Q)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "Kenward-Roger: %d random effects is more than its dense q x q "
                              "algebra takes (%d); use Satterthwaite's method",
                              qt, MAX_Q);
    return MLMX_OK;
}

mlmx_status mlmx_kr_prepare(const mlmx_fit *f, mlmx_kr_state *S)
{
    memset(S, 0, sizeof *S);
    if (mlmx_infer_iid(f, "Kenward-Roger"))
        return MLMX_ERR_UNSUPPORTED;
    const mlmx_model *m = f->model;
    kr_work w;
    memset(&w, 0, sizeof w);
    w.n = (int)m->n;
    w.p = m->p;
    int nz = 0;
    for (int k = 0; k < m->K; k++) {
        w.qt += m->re[k].nlevels * m->re[k].q;
        w.nre += m->re[k].q * (m->re[k].q + 1) / 2;
        nz += m->re[k].q;
    }
    mlmx_status st = kr_check(f, w.qt);
    if (st)
        return st;
    const int p = w.p, nv = w.nre + 1, qt = w.qt;
    int fail = 0;
    w.off = malloc((size_t)(m->K ? m->K : 1) * sizeof *w.off);
    int *idx = malloc((size_t)(nz ? nz : 1) * sizeof *idx);
    double *val = dalloc((size_t)nz, &fail);
    w.ZtZ = dalloc((size_t)qt * qt, &fail);
    w.ZtX = dalloc((size_t)qt * p, &fail);
    w.XtX = dalloc((size_t)p * p, &fail);
    S->p = p;
    S->nv = nv;
    S->Phi = dalloc((size_t)p * p, &fail);
    S->PhiA = dalloc((size_t)p * p, &fail);
    S->P = dalloc((size_t)p * p * nv, &fail);
    S->W = dalloc((size_t)nv * nv, &fail);
    st = fail || !w.off || !idx ? MLMX_ERR_NOMEM : MLMX_OK;
    if (!st) {
        for (int k = 0, o = 0; k < m->K; k++) {
            w.off[k] = o;
            o += m->re[k].nlevels * m->re[k].q;
        }
        memcpy(S->Phi, f->vcov, (size_t)p * p * sizeof *S->Phi);
        crossproducts(m, &w, idx, val);
        st = q_space(f, &w);
    }
    if (!st)
        st = adjust(f, &w, S);
    free(idx);
    free(val);
    work_free(&w);
    if (st) {
        mlmx_kr_free(S);
        return mlmx_api_failf(st, st == MLMX_ERR_NOMEM
                                      ? "out of memory"
                                      : "Kenward-Roger: the covariance or the information "
                                        "matrix is singular");
    }
    return MLMX_OK;
}

/* x / y, 0 where |y| < 1e-14 (pbkrtest's .divZero). */
static double div_zero(double x, double y) { return fabs(y) < 1e-14 ? 0.0 : x / y; }

double mlmx_kr_ddf(const mlmx_kr_state *S, const double *L, int q, double *scale)
{
    const int p = S->p, nv = S->nv;
    const size_t pp = (size_t)p * p;
    double *Lt = calloc((size_t)p * q + 1, sizeof *Lt), *LPL = malloc((size_t)q * q * sizeof *LPL);
    double *T = malloc((size_t)p * q * sizeof *T), *Th = malloc(pp * sizeof *Th);
    double *ThPhi = malloc(pp * sizeof *ThPhi), *u = malloc(pp * nv * sizeof *u);
    double *T1 = malloc(pp * sizeof *T1), *tr = malloc((size_t)nv * sizeof *tr);
    double df = NAN;
    if (Lt && LPL && T && Th && ThPhi && u && T1 && tr) {
        /* Theta = L^T (L Phi L^T)^{-1} L, with Lt = L^T (p x q) */
        for (int i = 0; i < q; i++)
            for (int j = 0; j < p; j++)
                Lt[j + (size_t)i * p] = L[(size_t)i * p + j];
        gemm(0, 0, p, q, p, 1.0, S->Phi, Lt, 0.0, T);     /* Phi L^T */
        gemm(1, 0, q, q, p, 1.0, Lt, T, 0.0, LPL);         /* L Phi L^T */
        for (int j = 0; j < q; j++)                        /* T <- L (q x p) */
            for (int i = 0; i < p; i++)
                T[j + (size_t)i * q] = Lt[i + (size_t)j * p];
        if (mlmx_spd_solve(q, LPL, T, p) == 0) {
            gemm(0, 0, p, p, q, 1.0, Lt, T, 0.0, Th);
            gemm(0, 0, p, p, p, 1.0, Th, S->Phi, 0.0, ThPhi);
            for (int r = 0; r < nv; r++) { /* u_r = Theta Phi P_r Phi */
                gemm(0, 0, p, p, p, 1.0, ThPhi, S->P + pp * r, 0.0, T1);
                gemm(0, 0, p, p, p, 1.0, T1, S->Phi, 0.0, u + pp * r);
                tr[r] = 0.0;
                for (int i = 0; i < p; i++)
                    tr[r] += u[pp * r + i + (size_t)i * p];
            }
            double A1 = 0.0, A2 = 0.0;
            for (int i = 0; i < nv; i++)
                for (int j = i; j < nv; j++) {
                    const double e = i == j ? 1.0 : 2.0, w = S->W[i + j * nv];
                    A1 += e * w * tr[i] * tr[j];
                    A2 += e * w * trace_prod(p, u + pp * i, u + pp * j);
                }
            const double qd = q, B = (A1 + 6.0 * A2) / (2.0 * qd);
            const double g = ((qd + 1.0) * A1 - (qd + 4.0) * A2) / ((qd + 2.0) * A2);
            const double den = 3.0 * qd + 2.0 * (1.0 - g);
            const double c1 = g / den, c2 = (qd - g) / den, c3 = (qd + 2.0 - g) / den;
            double V0 = 1.0 + c1 * B;
            const double V1 = 1.0 - c2 * B, V2 = 1.0 - c3 * B;
            if (fabs(V0) < 1e-10)
                V0 = 0.0;
            const double x = div_zero(1.0 - A2 / qd, V1);
            const double rho = x * x * V0 / (V2 * qd);
            df = 4.0 + (qd + 2.0) / (qd * rho - 1.0);
            *scale = fabs(df - 2.0) < 1e-2 ? 1.0 : df * (1.0 - A2 / qd) / (df - 2.0);
        }
    }
    free(Lt), free(LPL), free(T), free(Th), free(ThPhi), free(u), free(T1), free(tr);
    return df;
}
