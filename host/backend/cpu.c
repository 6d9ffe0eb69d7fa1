/* CPU backend: per-cluster math from kernels/cluster_math.h, dense
 * factorization through LAPACKE (OpenBLAS). */
#include <lapacke.h>

#include <cblas.h>

#include "backend/backend.h"
#include "cluster_math.h"

#define MLMX_QMAX 16

static mlmx_status cpu_cluster_factor(const mlmx_cluster_batch *b, const double *const *tmats,
                                      double *L11, double *L21, double *logdiag)
{
    const int q = b->q;
    double work[MLMX_QMAX * MLMX_QMAX];
    double row[MLMX_QMAX];
    double sum = 0.0;
    if (q > MLMX_QMAX)
        return MLMX_ERR_UNSUPPORTED;
    for (int j = 0; j < b->nblk; j++) {
        double *l = L11 + (size_t)j * q * q;
        size_t r0 = b->row_ptr[j], r1 = b->row_ptr[j + 1];
        if (mlmx_cm_level_factor(q, b->A + (size_t)j * q * q, tmats, r1 - r0, b->row_col + r0,
                                 b->B + r0 * (size_t)q, b->col_term, b->term_q, l,
                                 L21 + r0 * (size_t)q, work, row))
            return MLMX_ERR_NUMERIC;
        sum += mlmx_cm_logdiag(q, l);
    }
    *logdiag = sum;
    return MLMX_OK;
}

static mlmx_status cpu_schur_downdate(const mlmx_cluster_batch *b, const double *L21, double *S)
{
    const int q = b->q;
    const size_t m = (size_t)b->m;
    if (b->ngrp > 0 && b->gwork) {
        for (int gi = 0; gi < b->ngrp; gi++) {
            const int j0 = b->grp[gi], j1 = b->grp[gi + 1];
            const size_t r0 = b->row_ptr[j0];
            const int nc = (int)(b->row_ptr[j0 + 1] - r0);
            const int k = (j1 - j0) * q;
            if (j1 - j0 < 4 || nc < 4) {
                /* too small for BLAS: level by level */
                for (int j = j0; j < j1; j++) {
                    size_t a0 = b->row_ptr[j], a1 = b->row_ptr[j + 1];
                    for (size_t rb = a0; rb < a1; rb++) {
                        const double *vb = L21 + rb * (size_t)q;
                        double *scol = S + (size_t)b->row_col[rb] * m;
                        for (size_t ra = rb; ra < a1; ra++) {
                            const double *va = L21 + ra * (size_t)q;
                            double sum = 0.0;
                            for (int i = 0; i < q; i++)
                                sum += va[i] * vb[i];
                            scol[b->row_col[ra]] -= sum;
                        }
                    }
                }
                continue;
            }
            /* G (nc x k): column (level, component) holds the level's rows;
             * T = G G^T (lower), scattered once */
            double *G = b->gwork, *T = b->gwork + (size_t)nc * (size_t)k;
            for (int j = j0; j < j1; j++) {
                const double *Lj = L21 + b->row_ptr[j] * (size_t)q;
                for (int a = 0; a < q; a++) {
                    double *gc = G + (size_t)((j - j0) * q + a) * (size_t)nc;
                    for (int r = 0; r < nc; r++)
                        gc[r] = Lj[(size_t)r * (size_t)q + (size_t)a];
                }
            }
            cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, nc, k, 1.0, G, nc, 0.0, T, nc);
            const int *rc = b->row_col + r0;
            for (int cb = 0; cb < nc; cb++) {
                double *scol = S + (size_t)rc[cb] * m;
                const double *tc = T + (size_t)cb * (size_t)nc;
                for (int ca = cb; ca < nc; ca++)
                    scol[rc[ca]] -= tc[ca];
            }
        }
        return MLMX_OK;
    }
    if (q == 1) {
        /* scalar first term (random intercepts): a rank-one update per level */
        for (int j = 0; j < b->nblk; j++) {
            size_t r0 = b->row_ptr[j], r1 = b->row_ptr[j + 1];
            const int *rc = b->row_col;
            for (size_t rb = r0; rb < r1; rb++) {
                const double vb = L21[rb];
                double *scol = S + (size_t)rc[rb] * m;
                for (size_t ra = rb; ra < r1; ra++)
                    scol[rc[ra]] -= L21[ra] * vb;
            }
        }
        return MLMX_OK;
    }
    for (int j = 0; j < b->nblk; j++) {
        size_t r0 = b->row_ptr[j], r1 = b->row_ptr[j + 1];
        for (size_t rb = r0; rb < r1; rb++) {
            const double *vb = L21 + rb * (size_t)q;
            size_t cb = (size_t)b->row_col[rb];
            double *scol = S + cb * m;
            /* row_col is increasing within a level, so ra >= rb gives the lower triangle. */
            for (size_t ra = rb; ra < r1; ra++)
                scol[b->row_col[ra]] -= mlmx_cm_dot(q, L21 + ra * (size_t)q, vb);
        }
    }
    return MLMX_OK;
}

static mlmx_status cpu_stage_chol(const mlmx_block_stage *st, int m, double *S, double *scratch,
                                  int *fail_col)
{
    const int q = st->q;
    const size_t ld = (size_t)m;
    double blk[MLMX_QMAX * MLMX_QMAX];
    if (q > MLMX_QMAX)
        return MLMX_ERR_UNSUPPORTED;
    for (int l = 0; l < st->nblk; l++) {
        const size_t c = (size_t)st->c0 + (size_t)l * (size_t)q;
        const size_t r0 = st->col_ptr[l], r1 = st->col_ptr[l + 1];
        int bad = mlmx_cm_stage_level(q, c, ld, S, st->col + r0, r1 - r0, blk, scratch);
        if (bad) {
            if (fail_col)
                *fail_col = (int)c + bad - 1;
            return MLMX_ERR_NUMERIC;
        }
        /* later block -= x x^T over the level's columns (lower triangle) */
        for (size_t rb = r0; rb < r1; rb++) {
            const double *xb = scratch + (rb - r0) * (size_t)q;
            double *scol = S + (size_t)st->col[rb] * ld;
            for (size_t ra = rb; ra < r1; ra++)
                scol[st->col[ra]] -= mlmx_cm_dot(q, scratch + (ra - r0) * (size_t)q, xb);
        }
    }
    return MLMX_OK;
}

static mlmx_status cpu_dense_chol(int n, double *S, int lda, int *fail_col)
{
    if (n == 0)
        return MLMX_OK;
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', n, S, lda);
    if (info != 0) {
        if (fail_col)
            *fail_col = info > 0 ? (int)info - 1 : 0;
        return MLMX_ERR_NUMERIC;
    }
    return MLMX_OK;
}

static mlmx_status cpu_dense_inverse(int n, double *S, int lda)
{
    if (n == 0)
        return MLMX_OK;
    return LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', n, S, lda) == 0 ? MLMX_OK
                                                                       : MLMX_ERR_NUMERIC;
}

static const mlmx_backend cpu_backend = {
    "cpu",
    cpu_cluster_factor,
    cpu_schur_downdate,
    cpu_stage_chol,
    cpu_dense_chol,
    cpu_dense_inverse,
};

const mlmx_backend *mlmx_backend_cpu(void) { return &cpu_backend; }
