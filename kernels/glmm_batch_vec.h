/* One cluster of a GLMM with a vector random-effect term, q = 2..
 * MLMX_GB_QMAX correlated effects in one grouping factor (lme4's
 * (1 + x|g)), by the Laplace approximation: the cluster's part of the
 * glmm-1ri engine's criterion and its exact gradient (the engine reports
 * itself as "glmm-vec" for these models). Included by kernels/glmm_batch.h
 * after its types and per-observation helpers; inline C/CUDA, GUIDE §8.
 *
 * Definitions (host/glmm/glmm.c mlmx_glmm_laplace, grad.c): with T the
 * q x q lower-triangular relative factor (theta its lower triangle by
 * columns, mlmx_cm_theta_to_t), a_i = T' z_i and eta_i = x_i beta + a_i' u,
 *   D_j = h(u~) + log det M,  h(u) = -2 sum_i ll_i(eta_i) + |u|^2,
 *   M = I + T' G T,  G = sum_i w_i z_i z_i'  (w_i the observed information
 *   at the mode u~, which makes h stationary: u~ = T' sum_i z_i d1_i).
 * The links: the canonical ones and the cumulative probit and cloglog,
 * whose w is the observed information too (glmm_batch_fam.h); not the
 * binomial probit and cloglog, whose criterion takes the expected one
 * (the mode would move by another matrix than M; the engine refuses them
 * with a vector term).
 * The mode: Newton steps M du = T' zd - u (zd = sum z_i d1_i) with step
 * halving on h, warm-started from the last evaluation's mode, as the
 * scalar cluster (mlmx_gb_mode) and glmm.c's PIRLS do.
 *
 * The gradient (grad.c's formula, the sums regrouped per cluster): for a
 * parameter phi,
 *   dD = dh/dphi|_u + 2 sum_i w_i a_i' M^-1 da_i
 *        + sum_i h_i (w3_i deta_i + dw_i/dphi|_eta),   h_i = a_i' M^-1 a_i,
 *   deta_i = deta_i|_u + a_i' du,  M du = sum_i (da_i d1_i - a_i w_i deta_i|_u
 *        + a_i dd1_i/dphi|_eta)
 * (w3 = dw/deta; the last terms of each line only for an ordinal model's
 * thresholds and NB2's log-size, glmm_batch_fam.h). With hz3 = sum h_i
 * w3_i z_i, v = M^-1 T' hz3 (so sum_i h_i w3_i a_i' du = v' (M du)) and,
 * for theta entry (r, c) of T (da_i = e_c z_ir, deta_i|_u = z_ir u_c),
 *   dD/dT_rc  = -2 u_c zd_r + 2 (M^-1 T' G)_cr + u_c hz3_r
 *               + v_c zd_r - u_c (G T v)_r,
 *   dD/dbeta_j = -2 sum x_ij d1_i + sum h_i w3_i x_ij - (T v)' sum w_i x_ij z_i,
 *   dD/dphi_e  = -2 sum dll_i/dphi + sum h_i dw_i/dphi + (T v)' sum z_i dd1_i/dphi.
 * With q = 1 these are mlmx_gb_laplace_cluster's. So each cluster takes
 * its Newton passes and one pass at the mode (h_i needs M's factor, which
 * the Newton passes end with). */
#ifndef MLMX_GLMM_BATCH_VEC_H
#define MLMX_GLMM_BATCH_VEC_H

#define MLMX_GBV_Q2 (MLMX_GB_QMAX * MLMX_GB_QMAX)

/* S->q within 1..MLMX_GB_QMAX (the engine checks it; the bound keeps the
 * fixed-size arrays below visibly in range). */
MLMX_HD int mlmx_gbv_q(const mlmx_gb_shared *S)
{
    return S->q < 1 ? 1 : S->q > MLMX_GB_QMAX ? MLMX_GB_QMAX : S->q;
}

/* Cluster c at the mode candidate u (q values): h = -2 sum ll + |u|^2
 * (without the constants), zd = sum z d1 (q), G = sum w z z' (q x q,
 * lower triangle, column-major). */
MLMX_HD double mlmx_gbv_sums(const mlmx_gb_shared *S, const mlmx_gbf *F, const mlmx_gb_rep *R,
                             int c, const double *T, const double *beta, const double *u,
                             double *zd, double *G)
{
    const int q = mlmx_gbv_q(S);
    double b[MLMX_GB_QMAX];
    mlmx_cm_lower_mv(q, T, u, b);
    for (int a = 0; a < q; a++) {
        zd[a] = 0.0;
        for (int e = a; e < q; e++)
            G[e + a * q] = 0.0;
    }
    double lin = 0.0, prod = 1.0;
    for (int k = S->cs[c]; k < S->cs[c + 1]; k++) {
        const double *z = S->z + (size_t)k * (size_t)q;
        const double eta = mlmx_gb_etaf(S, k, beta) + mlmx_cm_dot(q, z, b);
        double d1, w, e1, e2;
        lin += mlmx_gbf_obs_link(S->fam, S->link, S->ncat, F, R->y[k * R->ys], S->nt[k], eta,
                                 &d1, &w, &prod, &e1, &e2);
        if (prod > 1e280) {
            lin -= log(prod);
            prod = 1.0;
        }
        for (int a = 0; a < q; a++) {
            zd[a] += z[a] * d1;
            for (int e = a; e < q; e++)
                G[e + a * q] += w * z[e] * z[a];
        }
    }
    return -2.0 * (lin - log(prod)) + mlmx_cm_dot(q, u, u);
}

/* From G and zd at u: L = chol(I + T' G T) (lower, in L) and the Newton
 * step (I + T' G T)^-1 (T' zd - u) into step. 0, or nonzero when the
 * factor fails. */
MLMX_HD int mlmx_gbv_step(int q, const double *T, const double *G, const double *zd,
                          const double *u, double *L, double *step)
{
    double work[MLMX_GBV_Q2];
    mlmx_cm_tat_plus_i(q, G, T, work, L);
    if (mlmx_cm_chol(q, L))
        return 1;
    for (int a = 0; a < q; a++) {
        double s = 0.0;
        for (int r = a; r < q; r++)
            s += T[r + a * q] * zd[r];
        step[a] = s - u[a];
    }
    mlmx_cm_trsv_lower(q, L, step);
    mlmx_cm_trsv_lower_t(q, L, step);
    return 0;
}

/* Cluster c's conditional mode (q values into u, warm-started from and
 * written back to R->u) by Newton steps with step halving; L the factor
 * of M at the mode. Returns h there, NaN when a factor fails. */
MLMX_HD double mlmx_gbv_mode(const mlmx_gb_shared *S, const mlmx_gbf *F, const mlmx_gb_rep *R,
                             int c, const double *T, const double *beta, double *u, double *L)
{
    const int q = mlmx_gbv_q(S);
    double zd[MLMX_GB_QMAX], G[MLMX_GBV_Q2], step[MLMX_GB_QMAX];
    for (int a = 0; a < q; a++)
        u[a] = R->u[(c * q + a) * R->us];
    double h = mlmx_gbv_sums(S, F, R, c, T, beta, u, zd, G);
    if (mlmx_gbv_step(q, T, G, zd, u, L, step))
        return MLMX_GM_NAN;
    for (int it = 0; it < MLMX_GB_NEWTON_MAX; it++) {
        int big = 0;
        for (int a = 0; a < q; a++)
            big |= fabs(step[a]) > 1e-10 * (1.0 + fabs(u[a]));
        if (!big)
            break;
        int ok = 0;
        for (int hs = 0; hs < MLMX_GB_HALF_MAX && !ok; hs++) {
            double un[MLMX_GB_QMAX], zn[MLMX_GB_QMAX], Gn[MLMX_GBV_Q2];
            for (int a = 0; a < q; a++)
                un[a] = u[a] + step[a];
            const double hn = mlmx_gbv_sums(S, F, R, c, T, beta, un, zn, Gn);
            if (hn <= h + 1e-13 * fabs(h)) {
                ok = 1;
                h = hn;
                for (int a = 0; a < q; a++)
                    u[a] = un[a];
                if (mlmx_gbv_step(q, T, Gn, zn, u, L, step))
                    return MLMX_GM_NAN;
            } else {
                for (int a = 0; a < q; a++)
                    step[a] *= 0.5;
            }
        }
        if (!ok)
            break;
    }
    for (int a = 0; a < q; a++)
        R->u[(c * q + a) * R->us] = u[a];
    return h;
}

/* The sums over cluster c at its mode that the gradient needs (the
 * header's comment): zd = sum z d1, G = sum w z z' (full), hz3 = sum h w3 z;
 * per fixed effect xd1 = sum x d1, hx3 = sum h w3 x, xwz = sum w x z (p x q,
 * row j at j * QMAX); per extra parameter el = sum dll/dphi, hew = sum h
 * dw/dphi, ed = sum z dd1/dphi (row e at e * QMAX). */
typedef struct mlmx_gbv_csum {
    double zd[MLMX_GB_QMAX], G[MLMX_GBV_Q2], hz3[MLMX_GB_QMAX];
    double xd1[MLMX_GB_PMAX], hx3[MLMX_GB_PMAX], xwz[MLMX_GB_PMAX * MLMX_GB_QMAX];
    double el[MLMX_GB_EMAX], hew[MLMX_GB_EMAX], ed[MLMX_GB_EMAX * MLMX_GB_QMAX];
} mlmx_gbv_csum;

/* Add observation k's terms (derivatives o at the mode, h = a' M^-1 a) to cs. */
MLMX_HD void mlmx_gbv_add(const mlmx_gb_shared *S, int k, double y, const double *z,
                          const mlmx_gbf_cd *o, double h, mlmx_gbv_csum *cs)
{
    const int q = mlmx_gbv_q(S), p = S->p;
    const double hw3 = h * o->w3;
    for (int a = 0; a < q; a++) {
        cs->zd[a] += z[a] * o->d1;
        cs->hz3[a] += hw3 * z[a];
        for (int e = 0; e < q; e++)
            cs->G[e + a * q] += o->w * z[e] * z[a];
    }
    const double *x = S->X + (size_t)k * (size_t)p;
    for (int j = 0; j < p; j++) {
        cs->xd1[j] += x[j] * o->d1;
        cs->hx3[j] += hw3 * x[j];
        for (int a = 0; a < q; a++)
            cs->xwz[j * MLMX_GB_QMAX + a] += o->w * x[j] * z[a];
    }
    if (S->ne == 0)
        return;
    int ix[2];
    mlmx_gbf_touch(S->fam, S->ncat, y, &ix[0], &ix[1]);
    for (int s = 0; s < 2; s++)
        if (ix[s] >= 0) {
            cs->el[ix[s]] += o->el[s];
            cs->hew[ix[s]] += h * o->ew[s];
            for (int a = 0; a < q; a++)
                cs->ed[ix[s] * MLMX_GB_QMAX + a] += z[a] * o->ed[s];
        }
}

/* The pass over cluster c at its mode u (L: M's factor) filling cs. */
MLMX_HD void mlmx_gbv_centre(const mlmx_gb_shared *S, const mlmx_gbf *F, const mlmx_gb_rep *R,
                             int c, const double *T, const double *beta, const double *u,
                             const double *L, mlmx_gbv_csum *cs)
{
    const int q = mlmx_gbv_q(S);
    double b[MLMX_GB_QMAX];
    mlmx_cm_lower_mv(q, T, u, b);
    for (int a = 0; a < q; a++)
        cs->zd[a] = cs->hz3[a] = 0.0;
    for (int a = 0; a < q * q; a++)
        cs->G[a] = 0.0;
    for (int j = 0; j < S->p; j++) {
        cs->xd1[j] = cs->hx3[j] = 0.0;
        for (int a = 0; a < q; a++)
            cs->xwz[j * MLMX_GB_QMAX + a] = 0.0;
    }
    for (int e = 0; e < S->ne; e++) {
        cs->el[e] = cs->hew[e] = 0.0;
        for (int a = 0; a < q; a++)
            cs->ed[e * MLMX_GB_QMAX + a] = 0.0;
    }
    for (int k = S->cs[c]; k < S->cs[c + 1]; k++) {
        const double *z = S->z + (size_t)k * (size_t)q, y = R->y[k * R->ys];
        mlmx_gbf_cd o;
        mlmx_gbf_centre_link(S->fam, S->link, S->ncat, F, y, S->nt[k],
                             mlmx_gb_etaf(S, k, beta) + mlmx_cm_dot(q, z, b), &o);
        /* h = |L^-1 T' z|^2 */
        double a[MLMX_GB_QMAX];
        for (int e = 0; e < q; e++) {
            double s = 0.0;
            for (int r = e; r < q; r++)
                s += T[r + e * q] * z[r];
            a[e] = s;
        }
        mlmx_cm_trsv_lower(q, L, a);
        mlmx_gbv_add(S, k, y, z, &o, mlmx_cm_dot(q, a, a), cs);
    }
}

/* Cluster c's Laplace deviance (without constants) at (T, beta) and the
 * family parameters F; its gradient over [theta; beta; extra] added to g
 * (np values). NaN when a factor fails. */
MLMX_HD double mlmx_gbv_laplace_cluster(const mlmx_gb_shared *S, const mlmx_gbf *F,
                                        const mlmx_gb_rep *R, int c, const double *T,
                                        const double *beta, double *g)
{
    const int q = mlmx_gbv_q(S), nth = S->nth, p = S->p;
    double u[MLMX_GB_QMAX], L[MLMX_GBV_Q2];
    const double h = mlmx_gbv_mode(S, F, R, c, T, beta, u, L);
    if (!isfinite(h))
        return MLMX_GM_NAN;
    mlmx_gbv_csum cs;
    mlmx_gbv_centre(S, F, R, c, T, beta, u, L, &cs);
    /* v = M^-1 T' hz3, tv = T v, gtv = G T v */
    double v[MLMX_GB_QMAX], tv[MLMX_GB_QMAX], gtv[MLMX_GB_QMAX];
    for (int a = 0; a < q; a++) {
        double s = 0.0;
        for (int r = a; r < q; r++)
            s += T[r + a * q] * cs.hz3[r];
        v[a] = s;
    }
    mlmx_cm_trsv_lower(q, L, v);
    mlmx_cm_trsv_lower_t(q, L, v);
    mlmx_cm_lower_mv(q, T, v, tv);
    for (int a = 0; a < q; a++)
        gtv[a] = mlmx_cm_dot(q, cs.G + a * q, tv);
    /* theta entry (r, c) of T, column by column: column r of K = M^-1 T' G */
    int t = 0;
    for (int cc = 0; cc < q; cc++)
        for (int r = cc; r < q; r++, t++) {
            double kcol[MLMX_GB_QMAX];
            for (int a = 0; a < q; a++) {
                double s = 0.0;
                for (int e = a; e < q; e++)
                    s += T[e + a * q] * cs.G[e + r * q];
                kcol[a] = s;
            }
            mlmx_cm_trsv_lower(q, L, kcol);
            mlmx_cm_trsv_lower_t(q, L, kcol);
            g[t] += -2.0 * u[cc] * cs.zd[r] + 2.0 * kcol[cc] + u[cc] * cs.hz3[r] +
                    v[cc] * cs.zd[r] - u[cc] * gtv[r];
        }
    for (int j = 0; j < p; j++)
        g[nth + j] += -2.0 * cs.xd1[j] + cs.hx3[j] - mlmx_cm_dot(q, tv, cs.xwz + j * MLMX_GB_QMAX);
    double *ge = g + nth + p;
    for (int e = 0; e < S->ne; e++)
        ge[e] += -2.0 * cs.el[e] + cs.hew[e] + mlmx_cm_dot(q, tv, cs.ed + e * MLMX_GB_QMAX);
    return h + 2.0 * mlmx_cm_logdiag(q, L);
}

#endif
