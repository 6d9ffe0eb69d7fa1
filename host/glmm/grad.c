/* The gradient of the Laplace deviance over (theta, beta), for the
 * canonical links (logit, log), where the observed and expected
 * information agree.
 *
 * D(phi) = P(u~, phi) + log|M|,  P = -2 sum l_i(eta_i) + |u|^2,
 * M = Lambda' Z' W Z Lambda + I,  W = diag(w_i(eta~_i)).
 * The mode makes P stationary in u, so P contributes only its partial
 * derivatives (-2 x_j' d1 for beta_j, -2 d1' Z dLambda u~ for theta_t).
 * log|M| moves with theta directly and through the weights at the mode:
 *   d log|M| = 2 tr(M^-1 Lambda' Z' W Z dLambda) + sum_i w'_i h_i d eta~_i,
 *   h_i = a_i' M^-1 a_i,  a_i = Lambda' z_i,
 *   d eta~ = X dbeta + Z dLambda u~ + Z Lambda du~,
 *   M du~ = dLambda' Z' d1 - Lambda' Z' W (X dbeta + Z dLambda u~)
 * (the derivative of the stationarity condition u = Lambda' Z' d1). Every
 * quantity is per observation, local to the levels it touches: the blocks
 * of M^-1 among them come from the factor (see mlmx_lmm_inverse_block) and
 * the solves from mlmx_glmm_solve. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_math.h"
#include "glmm/glmm.h"
#include "glmm_math.h"

#define QT_MAX 64 /* coordinates one observation touches (sum of q_k) */

int mlmx_glmm_has_grad(const mlmx_glmm *g)
{
    int qt = 0;
    for (int k = 0; k < g->md->K; k++)
        qt += g->md->re[k].q;
    if (qt > QT_MAX)
        return 0;
    if (g->family == MLMX_FAMILY_POISSON)
        return 1;
    return g->family == MLMX_FAMILY_BINOMIAL && g->link == MLMX_LINK_LOGIT;
}

/* M x = b in place (b: nu, layout [first term; R columns]) with the factor
 * of g->su/g->wu. */
void mlmx_glmm_solve(const mlmx_glmm *g, double *b)
{
    const mlmx_lmm_stats *s = g->su;
    const mlmx_lmm_work *w = g->wu;
    const int q1 = s->q1, mre = s->m_re;
    const size_t m = (size_t)s->m;
    double *b1 = b, *bR = b + g->nu1;
    for (int j = 0; j < s->nblk; j++) {
        double *y = b1 + (size_t)j * q1;
        mlmx_cm_trsv_lower(q1, w->L11 + (size_t)j * q1 * q1, y);
        for (size_t r = s->row_ptr[j]; r + 1 < s->row_ptr[j + 1]; r++) {
            const double *row = w->L21 + r * (size_t)q1;
            double t = 0.0;
            for (int a = 0; a < q1; a++)
                t += row[a] * y[a];
            bR[s->row_col[r]] -= t;
        }
    }
    /* the R part's factor: lower triangular (the nested stages keep their
     * zeros), forward then backward */
    for (int c = 0; c < mre; c++) {
        double v = bR[c] / w->S[(size_t)c * (m + 1)];
        bR[c] = v;
        if (v != 0.0)
            for (int r = c + 1; r < mre; r++)
                bR[r] -= w->S[(size_t)r + (size_t)c * m] * v;
    }
    for (int c = mre - 1; c >= 0; c--) {
        double v = bR[c];
        for (int r = c + 1; r < mre; r++)
            v -= w->S[(size_t)r + (size_t)c * m] * bR[r];
        bR[c] = v / w->S[(size_t)c * (m + 1)];
    }
    for (int j = 0; j < s->nblk; j++) {
        double *y = b1 + (size_t)j * q1;
        for (size_t r = s->row_ptr[j]; r + 1 < s->row_ptr[j + 1]; r++) {
            const double *row = w->L21 + r * (size_t)q1;
            double xr = bR[s->row_col[r]];
            for (int a = 0; a < q1; a++)
                y[a] -= row[a] * xr;
        }
        mlmx_cm_trsv_lower_t(q1, w->L11 + (size_t)j * q1 * q1, y);
    }
}

/* The coordinates observation i touches, in the u layout, with a_i =
 * Lambda' z_i there; returns their count. */
static int obs_coords(const mlmx_glmm *g, size_t i, size_t *idx, double *a)
{
    const mlmx_model *md = g->md;
    const size_t qq = (size_t)g->qmax * (size_t)g->qmax;
    int n = 0;
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *r = &md->re[k];
        const int q = r->q;
        const double *T = g->tm + (size_t)k * qq;
        const double *z = r->z + i * (size_t)q;
        size_t off = (k == 0 ? 0 : g->nu1 + (size_t)g->su->term_off[k]) +
                     (size_t)r->codes[i] * (size_t)q;
        for (int c = 0; c < q; c++) {
            double s = 0.0;
            for (int rr = c; rr < q; rr++)
                s += T[rr + c * q] * z[rr];
            idx[n] = off + (size_t)c;
            a[n++] = s;
        }
    }
    return n;
}

static double wprime(const mlmx_glmm *g, size_t i, double eta)
{
    const double w = g->pw ? g->pw[i] : 1.0;
    return w * mlmx_gm_wprime(g->family == MLMX_FAMILY_POISSON, g->ntr[i], eta);
}

mlmx_status mlmx_glmm_laplace_grad(mlmx_glmm *g, const double *theta, const double *beta,
                                   double *dev, double *grad, mlmx_error *err)
{
    const mlmx_model *md = g->md;
    const mlmx_lmm_stats *s = g->su;
    mlmx_lmm_work *w = g->wu;
    const size_t n = md->n, nu = g->nu;
    const int p = md->p, nt = md->ntheta, K = md->K, q1 = s->q1, mre = s->m_re;
    if (!mlmx_glmm_has_grad(g))
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "no analytic gradient for this link");
    mlmx_status st = mlmx_glmm_laplace(g, theta, beta, dev, err);
    if (st)
        return st;
    /* d1, fi at the mode are in g->d1, g->fi (the last pen_dev point) */
    double *Si = mlmx_lmm_inverse_buffer(s, w);
    int qt = 0;
    for (int k = 0; k < K; k++)
        qt += md->re[k].q;
    /* the buffers, allocated with the first gradient and kept in g: the
     * optimizer loop allocates nothing */
    if (!g->gw) {
        size_t maxrow = 1;
        for (int j = 0; j < s->nblk; j++)
            if (s->row_ptr[j + 1] - s->row_ptr[j] > maxrow)
                maxrow = s->row_ptr[j + 1] - s->row_ptr[j];
        struct mlmx_glmm_gw *b = calloc(1, sizeof *b);
        if (b) {
            b->rhs = malloc((nu ? nu : 1) * sizeof *b->rhs);
            b->deta = malloc((n ? n : 1) * (size_t)(nt + p) * sizeof *b->deta);
            b->hh = malloc((n ? n : 1) * sizeof *b->hh);
            b->Va = malloc((n ? n : 1) * QT_MAX * sizeof *b->Va);
            b->Cj = malloc(maxrow * (size_t)q1 * sizeof *b->Cj);
            b->AI = malloc((n ? n : 1) * (size_t)qt * sizeof *b->AI);
            b->AV = malloc((n ? n : 1) * (size_t)qt * sizeof *b->AV);
            if (!b->rhs || !b->deta || !b->hh || !b->Va || !b->Cj || !b->AI || !b->AV) {
                mlmx_glmm_gw_free(b);
                b = NULL;
            }
        }
        g->gw = b;
    }
    if (!Si || !g->gw)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory for the gradient");
    double *rhs = g->gw->rhs, *deta = g->gw->deta, *hh = g->gw->hh, *Va = g->gw->Va;
    double *Cj = g->gw->Cj, *AV = g->gw->AV;
    size_t *AI = g->gw->AI;
    if (mre > 0) {
        if (!mlmx_lmm_invert_leading(s, w, mre)) {
            st = mlmx_err_set(err, MLMX_ERR_NUMERIC, "cannot invert the random-effect factor");
            goto done;
        }
        for (int b = 0; b < mre; b++)
            for (int a = 0; a < b; a++)
                Si[(size_t)a + (size_t)b * mre] = Si[(size_t)b + (size_t)a * mre];
    }
    for (int t = 0; t < nt + p; t++)
        grad[t] = 0.0;
    for (size_t i = 0; i < n; i++)
        obs_coords(g, i, AI + i * (size_t)qt, AV + i * (size_t)qt);
#define COORDS(i, idx, a, nc)                                                                    \
    const size_t *idx = AI + (i) * (size_t)qt;                                                   \
    const double *a = AV + (i) * (size_t)qt;                                                     \
    const int nc = qt

    /* Local inverse blocks, observation by observation (grouped by the
     * first term's level): Va_i = M^-1 a_i on the coordinates of i. */
    for (int j = 0; j < s->nblk; j++) {
        const size_t r0 = s->row_ptr[j], r1 = s->row_ptr[j + 1] - 1; /* without y */
        const size_t nr = r1 - r0;
        double V[16 * 16];
        mlmx_lmm_inverse_block(s, w, Si, mre, 0, j, V);
        /* Cj[(r - r0) * q1 + a] = (M^-1)[first-term coordinate a, column row_col[r]] */
        const double *l11 = w->L11 + (size_t)j * q1 * q1;
        for (size_t rc = 0; rc < nr; rc++) {
            int col = s->row_col[r0 + rc];
            double *cc = Cj + rc * (size_t)q1;
            const double *scol = Si + (size_t)col * mre;
            if (q1 == 1) {
                /* a dot product: four partial sums, so the additions overlap */
                double c0 = 0.0, c1 = 0.0, c2 = 0.0, c3 = 0.0;
                size_t r = r0;
                for (; r + 4 <= r1; r += 4) {
                    c0 += w->L21[r] * scol[s->row_col[r]];
                    c1 += w->L21[r + 1] * scol[s->row_col[r + 1]];
                    c2 += w->L21[r + 2] * scol[s->row_col[r + 2]];
                    c3 += w->L21[r + 3] * scol[s->row_col[r + 3]];
                }
                for (; r < r1; r++)
                    c0 += w->L21[r] * scol[s->row_col[r]];
                cc[0] = -((c0 + c1) + (c2 + c3)) / l11[0];
                continue;
            }
            for (int a = 0; a < q1; a++)
                cc[a] = 0.0;
            for (size_t r = r0; r < r1; r++) {
                double sv = scol[s->row_col[r]];
                const double *row = w->L21 + r * (size_t)q1;
                for (int a = 0; a < q1; a++)
                    cc[a] += row[a] * sv;
            }
            mlmx_cm_trsv_lower_t(q1, l11, cc);
            for (int a = 0; a < q1; a++)
                cc[a] = -cc[a];
        }
        for (size_t o = s->obs_start[j]; o < s->obs_start[j + 1]; o++) {
            size_t i = s->obs_order[o];
            COORDS(i, idx, a, nc);
            double *va = Va + i * QT_MAX;
            /* position of each R coordinate among the level's rows */
            size_t rpos[QT_MAX];
            for (int e = q1; e < nc; e++) {
                int col = (int)(idx[e] - g->nu1);
                size_t lo = r0, hi = r1;
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (s->row_col[mid] < col)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                rpos[e] = lo - r0;
            }
            for (int e = 0; e < nc; e++) {
                double v = 0.0;
                for (int f = 0; f < nc; f++) {
                    double mij;
                    if (e < q1 && f < q1)
                        mij = V[e + f * q1];
                    else if (e < q1)
                        mij = Cj[rpos[f] * (size_t)q1 + (size_t)e];
                    else if (f < q1)
                        mij = Cj[rpos[e] * (size_t)q1 + (size_t)f];
                    else
                        mij = Si[(idx[e] - g->nu1) + (idx[f] - g->nu1) * (size_t)mre];
                    v += mij * a[f];
                }
                va[e] = v;
            }
            double h = 0.0;
            for (int e = 0; e < nc; e++)
                h += a[e] * va[e];
            hh[i] = h * wprime(g, i, g->eta[i]);
        }
    }

    /* beta: -2 X' d1, and the weight term through d eta / d beta_j =
     * x_j - Z Lambda M^-1 Lambda' Z' W x_j */
    for (int jb = 0; jb < p; jb++) {
        const double *x = md->X + (size_t)jb * n;
        double *de = deta + (size_t)(nt + jb) * n;
        memset(rhs, 0, nu * sizeof *rhs);
        double gp = 0.0;
        for (size_t i = 0; i < n; i++) {
            COORDS(i, idx, a, nc);
            double wx = g->fi[i] * x[i];
            for (int e = 0; e < nc; e++)
                rhs[idx[e]] -= a[e] * wx;
            gp += x[i] * g->d1[i];
        }
        mlmx_glmm_solve(g, rhs);
        for (size_t i = 0; i < n; i++) {
            COORDS(i, idx, a, nc);
            double v = x[i];
            for (int e = 0; e < nc; e++)
                v += a[e] * rhs[idx[e]];
            de[i] = v;
        }
        grad[nt + jb] = -2.0 * gp;
    }
    /* theta_t = T_k[r, c]: dLambda' z_i has z_ik[r] at coordinate c of the
     * term's block */
    for (int k = 0; k < K; k++) {
        const mlmx_reterm_info *re = &md->re[k];
        const int q = re->q;
        int t = re->theta_offset;
        for (int c = 0; c < q; c++)
            for (int r = c; r < q; r++, t++) {
                double *de = deta + (size_t)t * n;
                memset(rhs, 0, nu * sizeof *rhs);
                double gp = 0.0, tr = 0.0;
                for (size_t i = 0; i < n; i++) {
                    COORDS(i, idx, a, nc);
                    /* which of i's coordinates is (term k, component c) */
                    int ek = 0;
                    for (int kk = 0; kk < k; kk++)
                        ek += md->re[kk].q;
                    ek += c;
                    double zr = re->z[i * (size_t)q + (size_t)r];
                    double uc = g->u[idx[ek]];
                    double dzu = zr * uc; /* (Z dLambda u~)_i */
                    de[i] = dzu;
                    gp += g->d1[i] * dzu;
                    rhs[idx[ek]] += zr * g->d1[i];
                    double wd = g->fi[i] * dzu;
                    for (int e = 0; e < nc; e++)
                        rhs[idx[e]] -= a[e] * wd;
                    /* 2 tr(M^-1 Lambda' Z' W Z dLambda) = 2 sum_i w_i zr (M^-1 a_i)[ek] */
                    tr += g->fi[i] * zr * Va[i * QT_MAX + (size_t)ek];
                }
                mlmx_glmm_solve(g, rhs);
                for (size_t i = 0; i < n; i++) {
                    COORDS(i, idx, a, nc);
                    for (int e = 0; e < nc; e++)
                        de[i] += a[e] * rhs[idx[e]];
                }
                grad[t] = -2.0 * gp + 2.0 * tr;
            }
    }
    for (int t = 0; t < nt + p; t++) {
        const double *de = deta + (size_t)t * n;
        double sum = 0.0;
        for (size_t i = 0; i < n; i++)
            sum += hh[i] * de[i];
        grad[t] += sum;
    }
done:
    return st;
}

void mlmx_glmm_gw_free(struct mlmx_glmm_gw *b)
{
    if (!b)
        return;
    free(b->rhs);
    free(b->deta);
    free(b->hh);
    free(b->Va);
    free(b->Cj);
    free(b->AI);
    free(b->AV);
    free(b);
}
