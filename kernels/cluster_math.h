/* Per-cluster dense math on tiny matrices (q <= ~8), written once and
 * compiled both as C for the CPU backend and as CUDA device code for the
 * GPU backend, so the CPU tests exercise the very arithmetic the kernels
 * run. All matrices are column-major with leading dimension q unless noted.
 * No allocation, no library calls, no branches on data beyond pivots. */
#ifndef MLMX_CLUSTER_MATH_H
#define MLMX_CLUSTER_MATH_H

#include <math.h>

#if defined(__CUDACC__)
#define MLMX_HD static __host__ __device__ __forceinline__
#else
#define MLMX_HD static inline
#endif

/* In-place lower Cholesky of a symmetric positive-definite q x q matrix
 * (only the lower triangle is read; the strict upper triangle is zeroed).
 * Returns 0, or j+1 when the leading minor of order j+1 is not positive. */
MLMX_HD int mlmx_cm_chol(int q, double *a)
{
    for (int j = 0; j < q; j++) {
        double d = a[j + j * q];
        for (int k = 0; k < j; k++)
            d -= a[j + k * q] * a[j + k * q];
        if (!(d > 0.0))
            return j + 1;
        d = sqrt(d);
        a[j + j * q] = d;
        for (int i = j + 1; i < q; i++) {
            double s = a[i + j * q];
            for (int k = 0; k < j; k++)
                s -= a[i + k * q] * a[j + k * q];
            a[i + j * q] = s / d;
        }
        for (int i = 0; i < j; i++)
            a[i + j * q] = 0.0;
    }
    return 0;
}

/* In-place lower Cholesky of a positive semi-definite q x q matrix (strict
 * upper triangle zeroed): a pivot within 1e-12 of the largest diagonal
 * entry of 0 gives a zero column, as the factor of a singular matrix (a
 * correlation of +-1) has. Returns 0, or -1 when the matrix is not positive
 * semi-definite (a negative pivot, or a zero pivot with a non-zero column).
 * Used for structured covariances (kernels/covstruct.h) and a power
 * scenario's covariances (host/power/power.c). */
MLMX_HD int mlmx_cm_chol_psd(int q, double *a)
{
    double scale = 0.0;
    for (int j = 0; j < q; j++)
        scale = a[j + j * q] > scale ? a[j + j * q] : scale;
    if (!(scale > 0.0))
        scale = 1.0;
    const double tol = 1e-12 * scale;
    for (int j = 0; j < q; j++) {
        double d = a[j + j * q];
        for (int k = 0; k < j; k++)
            d -= a[j + k * q] * a[j + k * q];
        if (d < -tol)
            return -1;
        const double l = d > tol ? sqrt(d) : 0.0;
        a[j + j * q] = l;
        for (int i = j + 1; i < q; i++) {
            double v = a[i + j * q];
            for (int k = 0; k < j; k++)
                v -= a[i + k * q] * a[j + k * q];
            if (l == 0.0 && fabs(v) > 1e-6 * scale)
                return -1;
            a[i + j * q] = l > 0.0 ? v / l : 0.0;
        }
        for (int i = 0; i < j; i++)
            a[i + j * q] = 0.0;
    }
    return 0;
}

/* Solve L x = b in place (L lower triangular q x q): forward substitution. */
MLMX_HD void mlmx_cm_trsv_lower(int q, const double *l, double *b)
{
    for (int i = 0; i < q; i++) {
        double s = b[i];
        for (int k = 0; k < i; k++)
            s -= l[i + k * q] * b[k];
        b[i] = s / l[i + i * q];
    }
}

/* Solve L^T x = b in place: back substitution with the transpose. */
MLMX_HD void mlmx_cm_trsv_lower_t(int q, const double *l, double *b)
{
    for (int i = q - 1; i >= 0; i--) {
        double s = b[i];
        for (int k = i + 1; k < q; k++)
            s -= l[k + i * q] * b[k];
        b[i] = s / l[i + i * q];
    }
}

/* out = T^T A T + I for lower-triangular T and symmetric A (lower triangle
 * read): the term-1 diagonal block of Lambda^T Z^T Z Lambda + I.
 * work: q*q scratch. Fills the lower triangle of out. */
MLMX_HD void mlmx_cm_tat_plus_i(int q, const double *a, const double *t, double *work,
                                double *out)
{
    /* work = A T (A symmetric: element (i,k) from the lower triangle) */
    for (int j = 0; j < q; j++)
        for (int i = 0; i < q; i++) {
            double s = 0.0;
            for (int k = j; k < q; k++) {
                double aik = i >= k ? a[i + k * q] : a[k + i * q];
                s += aik * t[k + j * q];
            }
            work[i + j * q] = s;
        }
    for (int j = 0; j < q; j++)
        for (int i = j; i < q; i++) {
            double s = 0.0;
            for (int k = i; k < q; k++)
                s += t[k + i * q] * work[k + j * q];
            out[i + j * q] = s + (i == j ? 1.0 : 0.0);
        }
}

/* row <- row * T for a 1 x q row vector and lower-triangular T. */
MLMX_HD void mlmx_cm_row_times_lower(int q, const double *t, double *row)
{
    for (int j = 0; j < q; j++) {
        double s = 0.0;
        for (int k = j; k < q; k++)
            s += row[k] * t[k + j * q];
        row[j] = s;
    }
}

/* Sum of log of the diagonal of a q x q matrix. */
MLMX_HD double mlmx_cm_logdiag(int q, const double *l)
{
    double s = 0.0;
    for (int i = 0; i < q; i++)
        s += log(l[i + i * q]);
    return s;
}

/* Fill the q x q lower-triangular template T from q(q+1)/2 theta entries
 * (column-major lower triangle, lme4's order). */
MLMX_HD void mlmx_cm_theta_to_t(int q, const double *theta, double *t)
{
    int k = 0;
    for (int j = 0; j < q; j++)
        for (int i = 0; i < q; i++)
            t[i + j * q] = i >= j ? theta[k++] : 0.0;
}

/* b = T u for lower-triangular T (q x q) and u (q): a level's random
 * effects from its spherical ones (b = Lambda u), written once. */
MLMX_HD void mlmx_cm_lower_mv(int q, const double *t, const double *u, double *b)
{
    for (int a = 0; a < q; a++) {
        double s = 0.0;
        for (int c = 0; c <= a; c++)
            s += t[a + c * q] * u[c];
        b[a] = s;
    }
}

/* Dot product of two q-vectors, summed in index order. */
MLMX_HD double mlmx_cm_dot(int q, const double *a, const double *b)
{
    double s = 0.0;
    for (int i = 0; i < q; i++)
        s += a[i] * b[i];
    return s;
}

/* One level of the first random-effect term (see mlmx_cluster_batch):
 *   l   (q*q, out)  = chol(T1^T a T1 + I), a the level's q*q block
 *   l21 (nr*q, out) = rows of (Lambda_R^T B_j T1) l^{-T}, from the nr rows
 *                     b (nr*q, row-major) whose R columns are row_col[0..nr)
 * tmats[0] is T1, tmats[k] term k's template (term_q[k]^2, lower); col_term
 * and term_q as in mlmx_cluster_batch. work: q*q, row: q scratch.
 * Returns 0, or the failing order of the level's Cholesky (l21 unset). */
MLMX_HD int mlmx_cm_level_factor(int q, const double *a, const double *const *tmats, size_t nr,
                                 const int *row_col, const double *b, const int *col_term,
                                 const int *term_q, double *l, double *l21, double *work,
                                 double *row)
{
    mlmx_cm_tat_plus_i(q, a, tmats[0], work, l);
    int bad = mlmx_cm_chol(q, l);
    if (bad)
        return bad;
    /* rows: W = B T1, then Lambda_R^T on the row side, then solve */
    for (size_t r = 0; r < nr; r++) {
        double *dst = l21 + r * (size_t)q;
        for (int i = 0; i < q; i++)
            dst[i] = b[r * (size_t)q + (size_t)i];
        mlmx_cm_row_times_lower(q, tmats[0], dst);
    }
    for (size_t r = 0; r < nr;) {
        int k = col_term[row_col[r]];
        if (k < 0) {
            r++;
            continue;
        }
        int qk = term_q[k];
        const double *tk = tmats[k];
        /* rows r..r+qk-1 are the qk components of one level of term k:
         * new row a = sum_c' T_k[c', a] * old row c'. */
        for (int i = 0; i < q; i++) {
            for (int e = 0; e < qk; e++) {
                double s = 0.0;
                for (int cc = e; cc < qk; cc++)
                    s += tk[cc + e * qk] * l21[(r + (size_t)cc) * q + (size_t)i];
                row[e] = s;
            }
            for (int e = 0; e < qk; e++)
                l21[(r + (size_t)e) * q + (size_t)i] = row[e];
        }
        r += (size_t)qk;
    }
    for (size_t r = 0; r < nr; r++)
        mlmx_cm_trsv_lower(q, l, l21 + r * (size_t)q);
    return 0;
}

/* One level of a nested stage (see mlmx_block_stage) on the dense block S
 * (column-major, leading dimension ld): factor the q*q diagonal block at
 * column c into S (via blk, q*q scratch), then replace the level's entries
 * in the nr later rows col[0..nr) by x = L^{-1} S[row, c..c+q), also
 * written to x (nr*q, row-major) for the update of the later columns,
 * which the caller applies. Returns 0, or the failing order (S's block
 * unchanged). */
MLMX_HD int mlmx_cm_stage_level(int q, size_t c, size_t ld, double *S, const int *col, size_t nr,
                                double *blk, double *x)
{
    for (int b = 0; b < q; b++)
        for (int a = 0; a < q; a++)
            blk[a + b * q] = a >= b ? S[(c + (size_t)a) + (c + (size_t)b) * ld] : 0.0;
    int bad = mlmx_cm_chol(q, blk);
    if (bad)
        return bad;
    for (int b = 0; b < q; b++)
        for (int a = b; a < q; a++)
            S[(c + (size_t)a) + (c + (size_t)b) * ld] = blk[a + b * q];
    for (size_t r = 0; r < nr; r++) {
        double *xr = x + r * (size_t)q;
        size_t rw = (size_t)col[r];
        for (int a = 0; a < q; a++)
            xr[a] = S[rw + (c + (size_t)a) * ld];
        mlmx_cm_trsv_lower(q, blk, xr);
        for (int a = 0; a < q; a++)
            S[rw + (c + (size_t)a) * ld] = xr[a];
    }
    return 0;
}

#endif
