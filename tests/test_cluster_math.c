/* The per-cluster math shared by the CPU backend and the CUDA kernels
 * (kernels/cluster_math.h) against LAPACK and direct formulas, for every
 * block size the library supports (q = 1..16). Tolerance 1e-12 relative. */
#include <criterion/criterion.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_math.h"

#define QMAX 16

/* deterministic pseudo-random numbers in [-1, 1) */
static double rnd(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (double)(*state >> 8) / (double)(1u << 23) - 1.0;
}

/* A = B B^T + q I: symmetric positive definite */
static void spd(int q, unsigned *st, double *a)
{
    double b[QMAX * QMAX];
    for (int i = 0; i < q * q; i++)
        b[i] = rnd(st);
    for (int j = 0; j < q; j++)
        for (int i = 0; i < q; i++) {
            double s = i == j ? q : 0.0;
            for (int k = 0; k < q; k++)
                s += b[i + k * q] * b[j + k * q];
            a[i + j * q] = s;
        }
}

Test(cluster_math, cholesky_matches_lapack)
{
    unsigned st = 12345;
    for (int q = 1; q <= QMAX; q++) {
        double a[QMAX * QMAX], l[QMAX * QMAX];
        spd(q, &st, a);
        memcpy(l, a, sizeof a);
        cr_assert_eq(mlmx_cm_chol(q, a), 0, "q=%d", q);
        cr_assert_eq(LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', q, l, q), 0);
        for (int j = 0; j < q; j++)
            for (int i = 0; i < q; i++) {
                double want = i >= j ? l[i + j * q] : 0.0;
                cr_expect(fabs(a[i + j * q] - want) <= 1e-12 * fmax(1.0, fabs(want)),
                          "q=%d L[%d,%d] %.17g vs %.17g", q, i, j, a[i + j * q], want);
            }
        double ld = mlmx_cm_logdiag(q, a), want = 0;
        for (int i = 0; i < q; i++)
            want += log(l[i + i * q]);
        cr_expect(fabs(ld - want) <= 1e-12 * fmax(1.0, fabs(want)));
    }
}

Test(cluster_math, cholesky_reports_the_failing_column)
{
    double a[9] = {4, 2, 0, 2, 1, 0, 0, 0, 1}; /* rank 2 leading 2x2 block */
    cr_expect_eq(mlmx_cm_chol(3, a), 2);
    double b[1] = {-1.0};
    cr_expect_eq(mlmx_cm_chol(1, b), 1);
    double c[1] = {NAN};
    cr_expect_eq(mlmx_cm_chol(1, c), 1, "NaN must fail, not pass");
}

Test(cluster_math, triangular_solves_invert_the_factor)
{
    unsigned st = 777;
    for (int q = 1; q <= QMAX; q++) {
        double a[QMAX * QMAX], x[QMAX], b[QMAX], y[QMAX];
        spd(q, &st, a);
        cr_assert_eq(mlmx_cm_chol(q, a), 0);
        for (int i = 0; i < q; i++)
            x[i] = rnd(&st);
        /* b = L x, solve back */
        for (int i = 0; i < q; i++) {
            double s = 0;
            for (int k = 0; k <= i; k++)
                s += a[i + k * q] * x[k];
            b[i] = s;
        }
        memcpy(y, b, sizeof b);
        mlmx_cm_trsv_lower(q, a, y);
        for (int i = 0; i < q; i++)
            cr_expect(fabs(y[i] - x[i]) <= 1e-12 * fmax(1.0, fabs(x[i])), "q=%d L solve", q);
        /* b = L^T x, solve back */
        for (int i = 0; i < q; i++) {
            double s = 0;
            for (int k = i; k < q; k++)
                s += a[k + i * q] * x[k];
            b[i] = s;
        }
        memcpy(y, b, sizeof b);
        mlmx_cm_trsv_lower_t(q, a, y);
        for (int i = 0; i < q; i++)
            cr_expect(fabs(y[i] - x[i]) <= 1e-12 * fmax(1.0, fabs(x[i])), "q=%d L^T solve", q);
    }
}

Test(cluster_math, template_products)
{
    unsigned st = 4242;
    for (int q = 1; q <= QMAX; q++) {
        double a[QMAX * QMAX], t[QMAX * QMAX], work[QMAX * QMAX], out[QMAX * QMAX];
        double theta[QMAX * (QMAX + 1) / 2], row[QMAX], r2[QMAX];
        spd(q, &st, a);
        int nt = q * (q + 1) / 2;
        for (int i = 0; i < nt; i++)
            theta[i] = rnd(&st);
        mlmx_cm_theta_to_t(q, theta, t);
        /* column-major lower triangle, theta in order */
        for (int j = 0, k = 0; j < q; j++)
            for (int i = 0; i < q; i++)
                cr_expect_eq(t[i + j * q], i >= j ? theta[k++] : 0.0);
        mlmx_cm_tat_plus_i(q, a, t, work, out);
        for (int j = 0; j < q; j++)
            for (int i = j; i < q; i++) {
                double s = i == j ? 1.0 : 0.0;
                for (int k = 0; k < q; k++)
                    for (int l = 0; l < q; l++)
                        s += t[k + i * q] * a[k + l * q] * t[l + j * q];
                cr_expect(fabs(out[i + j * q] - s) <= 1e-12 * fmax(1.0, fabs(s)),
                          "q=%d (T'AT+I)[%d,%d]", q, i, j);
            }
        for (int i = 0; i < q; i++)
            row[i] = r2[i] = rnd(&st);
        mlmx_cm_row_times_lower(q, t, row);
        for (int j = 0; j < q; j++) {
            double s = 0;
            for (int k = 0; k < q; k++)
                s += r2[k] * t[k + j * q];
            cr_expect(fabs(row[j] - s) <= 1e-12 * fmax(1.0, fabs(s)), "q=%d row*T", q);
        }
    }
}
