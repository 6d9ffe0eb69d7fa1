/* Spherical modes and the analytic gradient of the profiled criterion.
 * Both reuse the factor left in the workspace by mlmx_lmm_eval. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "cluster_math.h"
#include "lmm/lmm.h"

void mlmx_lmm_modes(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, double *wv, double *u1)
{
    const size_t m = (size_t)s->m, mm1 = m - 1;
    const int q1 = s->q1;
    const double *S = w->S;
    for (size_t c = 0; c < mm1; c++)
        wv[c] = S[mm1 + c * m];
    if (mm1)
        cblas_dtrsv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, (int)mm1, S, (int)m, wv,
                    1);
    for (int j = 0; j < s->nblk; j++) {
        double *u = u1 + (size_t)j * q1;
        size_t r0 = s->row_ptr[j], r1 = s->row_ptr[j + 1];
        const double *ly = w->L21 + (r1 - 1) * (size_t)q1; /* the y row is last */
        for (int a = 0; a < q1; a++)
            u[a] = ly[a];
        for (size_t r = r0; r + 1 < r1; r++) {
            double wc = wv[s->row_col[r]];
            const double *row = w->L21 + r * (size_t)q1;
            for (int a = 0; a < q1; a++)
                u[a] -= row[a] * wc;
        }
        mlmx_cm_trsv_lower_t(q1, w->L11 + (size_t)j * q1 * q1, u);
    }
}

#define QM 16
#define SI(a, b) Si[(size_t)(a) + (size_t)(b) * (size_t)mp]

/* Diagonal block (term k, level l; q_k x q_k) of the inverse of the
 * system's leading part whose dense columns are the first mp ones: Omega
 * (mp = m_re) or Omega bordered by X (mp = m_re + p). Si holds the lower
 * triangle of the inverse of the dense factor's leading mp block. For the
 * first term: L11^{-T} (I + W^T Si W) L11^{-1}, W = the level's L21 rows
 * below mp; for the others, a diagonal block of Si. */
void mlmx_lmm_inverse_block(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, const double *Si,
                            int mp, int k, int l, double *V)
{
    const int q = s->term_q[k];
    if (k > 0) {
        int c0 = s->term_off[k] + l * q;
        for (int b = 0; b < q; b++)
            for (int a = 0; a < q; a++)
                V[a + b * q] = a >= b ? SI(c0 + a, c0 + b) : SI(c0 + b, c0 + a);
        return;
    }
    double Mm[QM * QM], Li[QM * QM], tmp[QM * QM];
    size_t r0 = s->row_ptr[l], r1 = s->row_ptr[l + 1];
    for (int a = 0; a < q; a++)
        for (int b = 0; b < q; b++)
            Mm[a + b * q] = a == b ? 1.0 : 0.0;
    size_t re = r0;
    while (re < r1 && s->row_col[re] < mp)
        re++;
    /* W^T Si W from the lower triangle: row_col increases within a level,
     * so ra >= rb reads down column row_col[rb] */
    if (q == 1) {
        double acc = 0.0;
        for (size_t rb = r0; rb < re; rb++) {
            const double *col = Si + (size_t)s->row_col[rb] * (size_t)mp;
            double t = 0.0;
            for (size_t ra = rb + 1; ra < re; ra++)
                t += col[s->row_col[ra]] * w->L21[ra];
            double wb = w->L21[rb];
            acc += wb * (2.0 * t + col[s->row_col[rb]] * wb);
        }
        Mm[0] += acc;
    } else {
        for (size_t rb = r0; rb < re; rb++) {
            const double *wb = w->L21 + rb * (size_t)q;
            const double *col = Si + (size_t)s->row_col[rb] * (size_t)mp;
            for (size_t ra = rb; ra < re; ra++) {
                double sv = col[s->row_col[ra]];
                const double *wa = w->L21 + ra * (size_t)q;
                for (int b = 0; b < q; b++)
                    for (int a = 0; a < q; a++)
                        Mm[a + b * q] += ra == rb ? sv * wa[a] * wb[b]
                                                  : sv * (wa[a] * wb[b] + wb[a] * wa[b]);
            }
        }
    }
    const double *l11 = w->L11 + (size_t)l * q * q;
    for (int c = 0; c < q; c++) {
        for (int a = 0; a < q; a++)
            Li[a + c * q] = a == c ? 1.0 : 0.0;
        mlmx_cm_trsv_lower(q, l11, Li + c * q);
    }
    /* V = Li^T Mm Li */
    for (int b = 0; b < q; b++)
        for (int a = 0; a < q; a++) {
            double sum = 0;
            for (int e = 0; e < q; e++)
                sum += Mm[a + e * q] * Li[e + b * q];
            tmp[a + b * q] = sum;
        }
    for (int b = 0; b < q; b++)
        for (int a = 0; a < q; a++) {
            double sum = 0;
            for (int e = 0; e < q; e++)
                sum += Li[e + a * q] * tmp[e + b * q];
            V[a + b * q] = sum;
        }
}


double *mlmx_lmm_invert_leading(const mlmx_lmm_stats *s, mlmx_lmm_work *w, int mp)
{
    const size_t m = (size_t)s->m;
    double *Si = mlmx_lmm_inverse_buffer(s, w);
    if (!Si || mp <= 0)
        return Si;
    for (int b = 0; b < mp; b++)
        memcpy(Si + (size_t)b * mp + b, w->S + (size_t)b * m + b, (size_t)(mp - b) * sizeof *Si);
    const mlmx_backend *be = w->be ? w->be : mlmx_backend_cpu();
    if (be->dense_inverse(mp, Si, mp) != MLMX_OK)
        return NULL;
    return Si;
}

mlmx_status mlmx_lmm_condsd(const mlmx_lmm_stats *s, mlmx_lmm_work *w, double scale2,
                            double **condsd, mlmx_error *err)
{
    const mlmx_model *md = s->model;
    const int m_re = s->m_re;
    double *sinv = mlmx_lmm_invert_leading(s, w, m_re);
    if (!sinv)
        return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                            "cannot invert the random-effect factor for the conditional "
                            "variances");
    for (int k = 0; k < md->K; k++) {
        const int q = md->re[k].q;
        const double *T = w->tptr[k];
        for (int l = 0; l < md->re[k].nlevels; l++) {
            double V[QM * QM];
            mlmx_lmm_inverse_block(s, w, sinv, m_re, k, l, V);
            for (int a = 0; a < q; a++) {
                /* var(b_a) = scale2 sum_{c,d <= a} T[a,c] V[c,d] T[a,d] */
                double v = 0;
                for (int c = 0; c <= a; c++)
                    for (int d = 0; d <= a; d++)
                        v += T[a + c * q] * V[c + d * q] * T[a + d * q];
                condsd[k][l * q + a] = sqrt(scale2 * v);
            }
        }
    }
    return MLMX_OK;
}

/* The gradient (dr2 NULL) or its two parts (grad: d log|M|, dr2: d r^2). */
static mlmx_status grad_impl(const mlmx_lmm_stats *s, mlmx_lmm_work *w, int reml, double *grad,
                             double *dr2)
{
    const mlmx_model *md = s->model;
    const int mp = reml ? s->m_re + md->p : s->m_re;
    for (int k = 0; k < md->K; k++) {
        int q = s->term_q[k];
        for (int a = 0; a < q; a++)
            if (!(w->tptr[k][a + a * q] > 1e-12))
                return MLMX_ERR_NUMERIC;
    }
    mlmx_lmm_modes(s, w, w->wv, w->u1);
    double *Si = mlmx_lmm_invert_leading(s, w, mp);
    if (!Si)
        return MLMX_ERR_NUMERIC;
    /* dpotri leaves the lower triangle, which is all the blocks read */
    for (int t = 0; t < md->ntheta; t++) {
        grad[t] = 0.0;
        if (dr2)
            dr2[t] = 0.0;
    }
    /* d r^2 enters as (n - p) d r^2 / r^2 (n for ML) */
    const double rscale = (reml ? (double)md->n - md->p : (double)md->n) / w->r2;
    for (int k = 0; k < md->K; k++) {
        const int q = s->term_q[k];
        const double *T = w->tptr[k];
        double Ti[QM * QM], V[QM * QM], VT[QM * QM], tu[QM];
        for (int c = 0; c < q; c++) {
            for (int a = 0; a < q; a++)
                Ti[a + c * q] = a == c ? 1.0 : 0.0;
            mlmx_cm_trsv_lower(q, T, Ti + c * q);
        }
        int nlev = md->re[k].nlevels;
        for (int l = 0; l < nlev; l++) {
            mlmx_lmm_inverse_block(s, w, Si, mp, k, l, V);
            const double *u = k == 0 ? w->u1 + (size_t)l * q : w->wv + s->term_off[k] + l * q;
            /* tu = T^{-T} u; VT = V T^{-1} */
            for (int a = 0; a < q; a++)
                tu[a] = u[a];
            mlmx_cm_trsv_lower_t(q, T, tu);
            for (int b = 0; b < q; b++)
                for (int a = 0; a < q; a++) {
                    double sum = 0;
                    for (int e = b; e < q; e++)
                        sum += V[a + e * q] * Ti[e + b * q];
                    VT[a + b * q] = sum;
                }
            int t = md->re[k].theta_offset;
            for (int c = 0; c < q; c++)
                for (int a = c; a < q; a++, t++) {
                    if (dr2) {
                        grad[t] += 2.0 * (Ti[c + a * q] - VT[c + a * q]);
                        dr2[t] -= 2.0 * tu[a] * u[c];
                    } else {
                        grad[t] += 2.0 * (Ti[c + a * q] - VT[c + a * q]) -
                                   2.0 * rscale * tu[a] * u[c];
                    }
                }
        }
    }
    return MLMX_OK;
}

mlmx_status mlmx_lmm_grad(const mlmx_lmm_stats *s, mlmx_lmm_work *w, int reml, double *grad)
{
    return grad_impl(s, w, reml, grad, NULL);
}

mlmx_status mlmx_lmm_grad_parts(const mlmx_lmm_stats *s, mlmx_lmm_work *w, int reml,
                                double *dlogm, double *dr2)
{
    return grad_impl(s, w, reml, dlogm, dr2);
}
