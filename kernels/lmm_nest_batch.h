/* One replicate of a linear mixed model whose random-effect terms are
 * nested (2 or 3 grouping factors, each finer factor's levels inside one
 * level of the next coarser one; q_k <= 2 columns a term, at most 4 in all;
 * p <= 16 fixed effects), start to finish: simulate the response (keyed as
 * mlmx_workspace_simulate), form its statistics Z^T y, X^T y, y^T y, and fit
 * it by the ask/tell BFGS of qn.h on the profiled criterion and its exact
 * gradient. Written once, compiled as C for the CPU engine
 * (host/replicate/lmm_nest_batch.c) and as CUDA for the device engine
 * (kernels/lmm_nest_batch.cu).
 *
 * Terms are in model order: term 0 the finest, term K-1 the coarsest (the
 * "top"). Each level of a term is a node of a forest whose roots are the
 * top levels; the levels of each term are renumbered ("positions") so that
 * the children of a node are a contiguous range, and so are all
 * descendants of a top cluster at every term.
 *
 * The criterion (GUIDE §1) by multifrontal elimination, one top cluster at
 * a time. A node of term k has a front of R_k = q_k + anc_k rows (its own
 * q_k columns, then one level of each coarser term: anc_k = sum of q over
 * terms k+1..K-1) and R_k + p + 1 columns (those rows, then [X y]):
 *   own block     T_k^T A T_k + I        A = Z_k^T Z_k on the level
 *   own x anc k'  T_k'^T C^T T_k         C = Z_k^T Z_k' on the level
 *   own x [X y]   T_k^T [G  z]           G = Z_k^T X, z = Z_k^T y
 * plus its children's updates. Eliminating the own columns (Cholesky of a
 * q_k x q_k block) adds 2 log|L_node| to log|L_theta|^2, passes the
 * ancestor rows' update to the parent's front (same row order, so no index
 * map), and downdates the dense (p+1) x (p+1) block [X y]^T [X y] directly:
 * its part of a front is only ever subtracted from, so it is summed over
 * nodes (and over GPU lanes) instead of being carried up. Every top
 * cluster thus gives its share of log|L|^2 and of the Schur update of
 * [X y]^T [X y]; that block S is then factored for log|R_X|^2 and r^2:
 *   ML:   log|L|^2 + n (1 + log(2 pi r^2 / n))
 *   REML: the same with log|R_X|^2 added and n - p for n.
 *
 * Gradient: forward-mode dual numbers through the elimination. Every
 * quantity carries its value and its derivatives over the nt <= 6 entries
 * of theta (the seeds are the entries of the templates T_k), so
 * d log|L|^2 / d theta and dS / d theta come out exactly (to rounding) from
 * the same code that computes the values; then, with beta and r^2 from S,
 *   d crit = d log|L|^2 + [REML] tr(S_XX^{-1} dS_XX) + (n or n-p)/r^2 w^T dS w,
 * w = [-beta; 1] (the envelope theorem: dr^2 = w^T dS w). Why duals rather
 * than a derived formula as in lmm_batch.h: the analytic gradient of a
 * nested system needs the selected inverse of the whole tree (Takahashi's
 * recursions) and its own code path to get wrong; with duals there is one
 * path, a value-only evaluation (nd = 0) runs the same instructions on
 * component 0, and for nt <= 6 the cost is a small multiple of the value.
 *
 * Per-replicate arrays indexed by random-effect slot (b and Z^T y; slot
 * soff[k] + pos * q_k + c) are strided: element s of a replicate sits at
 * base[s * stride], so that one-replicate-per-thread GPU code reads
 * consecutive words. Nothing here allocates; the scratch is fixed-size. */
#ifndef MLMX_LMM_NEST_BATCH_H
#define MLMX_LMM_NEST_BATCH_H

#include <stdint.h>

#include "cluster_math.h"
#include "qn.h"
#include "simulate.h"

#define MLMX_NB_KMAX 3  /* grouping factors */
#define MLMX_NB_QMAX 2  /* columns of one term */
#define MLMX_NB_RMAX 4  /* columns of all terms together (rows of the finest front) */
#define MLMX_NB_PMAX 16
#define MLMX_NB_NTMAX 6
#define MLMX_NB_ND (1 + MLMX_NB_NTMAX) /* a dual number: value and nt derivatives */
#define MLMX_NB_FMAX (MLMX_NB_RMAX * (MLMX_NB_RMAX + MLMX_NB_PMAX + 1))
#define MLMX_NB_SMAX ((MLMX_NB_PMAX + 1) * (MLMX_NB_PMAX + 2) / 2)
#define MLMX_NB_ACCMAX (MLMX_NB_ND * (1 + MLMX_NB_SMAX) + 1)

/* How the device kernel maps replicates onto threads
 * (kernels/lmm_nest_batch.cu says why). */
#define MLMX_NB_MAP_AUTO 0   /* by size (mlmx_nb_engine_auto_mapping) */
#define MLMX_NB_MAP_THREAD 1 /* one replicate per thread, every top cluster in turn */
#define MLMX_NB_MAP_WARP 2   /* one replicate per warp, top clusters over the 32 lanes */

/* The shared structure (host pointers on the CPU, device pointers in a
 * kernel). Observations in model order. */
typedef struct mlmx_nb_model {
    int n, p, K, nt, reml;
    int ntop;                  /* levels of the top term */
    int nu;                    /* random-effect slots: sum of nlev * q */
    int q[MLMX_NB_KMAX], anc[MLMX_NB_KMAX], nlev[MLMX_NB_KMAX];
    int toff[MLMX_NB_KMAX];    /* term k's first theta entry */
    int soff[MLMX_NB_KMAX];    /* term k's first slot (and first draw of stream 0) */
    int noff[MLMX_NB_KMAX];    /* term k's levels in code2pos / pos2code */
    int coff[MLMX_NB_KMAX];    /* k >= 1: term k's children pointers at cptr + coff[k] */
    int dstr[MLMX_NB_KMAX];    /* doubles of node data per level of term k */
    size_t doff[MLMX_NB_KMAX]; /* term k's node data at dat + doff[k] */
    size_t zoff[MLMX_NB_KMAX]; /* term k's Z rows at Z + zoff[k] (n * q_k, row-major) */
    const int *cptr;     /* children of position l of term k >= 1: positions
                            [cptr[coff[k]+l], cptr[coff[k]+l+1]) of term k-1 */
    const int *code2pos; /* level code -> position, per term (noff) */
    const int *pos2code; /* position -> level code, per term (noff) */
    const int *opos;     /* n*K: position of observation i's level of term k at i*K+k */
    const int *tobs_ptr; /* ntop+1: observations of top cluster h at tobs[tobs_ptr[h]..) */
    const int *tobs;     /* n, increasing within a top cluster */
    const double *X;     /* n*p column-major */
    const double *Z;     /* the terms' rows (zoff) */
    const double *dat;   /* per node: A (q*q), C (q*anc), G (q*p), column-major */
    const double *XtX;   /* p*p, full */
    const double *theta; /* nt: the parameters replicates are simulated from */
    const double *beta;  /* p */
    double sigma;
    const double *x0;    /* nt: optimizer start (log scale where logp) */
    const double *xlo;   /* nt: lower bounds on the optimizer's scale */
    const double *hinv0; /* nt*nt inverse Hessian at x0, or NULL */
    const unsigned char *logp; /* nt: 1 for a diagonal entry (optimised as log theta) */
    mlmx_qn_cfg cfg;
} mlmx_nb_model;

/* One replicate's results at row i (as mlmx_batch_job): theta nt a row,
 * beta and se p a row (se may be NULL); status 1 done, 2 failed. */
typedef struct mlmx_nb_out {
    double *theta, *beta, *se, *sigma, *crit;
    int *nev;
    signed char *conv, *sing, *status;
} mlmx_nb_out;

/* Fixed-size scratch of one replicate (or one GPU lane): about 29 KB. */
typedef struct mlmx_nb_scratch {
    int nd1;  /* components of a dual in this evaluation: 1 + derivatives */
    double T[MLMX_NB_KMAX * MLMX_NB_QMAX * MLMX_NB_QMAX * MLMX_NB_ND];
    double F[MLMX_NB_KMAX * MLMX_NB_FMAX * MLMX_NB_ND];
    /* log|L|^2 (a dual), the packed lower Schur update of [X y]^T [X y]
     * (duals), and a failure count last */
    double acc[MLMX_NB_ACCMAX];
    double Sxx[MLMX_NB_PMAX * MLMX_NB_PMAX], Si[MLMX_NB_PMAX * MLMX_NB_PMAX];
    double v[MLMX_NB_PMAX + 1], beta[MLMX_NB_PMAX], col[MLMX_NB_PMAX];
    double th[MLMX_NB_NTMAX], g[MLMX_NB_NTMAX];
    double r2, ldz, ldx;
    double qs[8 * MLMX_NB_NTMAX + MLMX_NB_NTMAX * MLMX_NB_NTMAX];
    int act[MLMX_NB_NTMAX];
    int cur[MLMX_NB_KMAX], nxt[MLMX_NB_KMAX];
} mlmx_nb_scratch;

/* ------------------------------------------------------------ dual numbers
 * A dual is nd1 doubles: the value, then its derivatives. */

/* c -= a * b */
MLMX_HD void mlmx_nb_dsubmul(int nd1, double *c, const double *a, const double *b)
{
    c[0] -= a[0] * b[0];
    for (int d = 1; d < nd1; d++)
        c[d] -= a[0] * b[d] + a[d] * b[0];
}

/* c += a * b */
MLMX_HD void mlmx_nb_daddmul(int nd1, double *c, const double *a, const double *b)
{
    c[0] += a[0] * b[0];
    for (int d = 1; d < nd1; d++)
        c[d] += a[0] * b[d] + a[d] * b[0];
}

/* c += s * a for a plain number s */
MLMX_HD void mlmx_nb_daxpy(int nd1, double *c, const double *a, double s)
{
    for (int d = 0; d < nd1; d++)
        c[d] += a[d] * s;
}

/* a /= b in place */
MLMX_HD void mlmx_nb_ddiv(int nd1, double *a, const double *b)
{
    const double x = a[0] / b[0];
    a[0] = x;
    for (int d = 1; d < nd1; d++)
        a[d] = (a[d] - x * b[d]) / b[0];
}

/* Entry (i, j) of a dual matrix with leading dimension ld. */
MLMX_HD double *mlmx_nb_at(double *m, int ld, int nd1, int i, int j)
{
    return m + (size_t)(i + j * ld) * (size_t)nd1;
}

MLMX_HD const double *mlmx_nb_atc(const double *m, int ld, int nd1, int i, int j)
{
    return m + (size_t)(i + j * ld) * (size_t)nd1;
}

/* Entry (a, b), a >= b, of the packed lower (p+1) x (p+1) block in acc. */
MLMX_HD double *mlmx_nb_sacc(double *acc, int P1, int nd1, int a, int b)
{
    const int e = b * P1 - b * (b - 1) / 2 + (a - b);
    return acc + (size_t)(1 + e) * (size_t)nd1;
}

/* Doubles of acc an evaluation with nd derivatives reduces. */
MLMX_HD int mlmx_nb_acc_len(const mlmx_nb_model *M, int nd)
{
    const int P1 = M->p + 1;
    return (nd + 1) * (1 + P1 * (P1 + 1) / 2) + 1;
}

MLMX_HD double *mlmx_nb_front(mlmx_nb_scratch *w, int k)
{
    return w->F + (size_t)k * MLMX_NB_FMAX * MLMX_NB_ND;
}

MLMX_HD double *mlmx_nb_templ(mlmx_nb_scratch *w, int k)
{
    return w->T + (size_t)k * MLMX_NB_QMAX * MLMX_NB_QMAX * MLMX_NB_ND;
}

/* ------------------------------------------------------------ simulation */

/* The random effects of level `pos` of term k from its spherical draws u:
 * b = sigma T u with T from M->theta (as mlmx_workspace_simulate). */
MLMX_HD void mlmx_nb_put_b(const mlmx_nb_model *M, int k, int pos, const double *u, double *b,
                           size_t stride)
{
    const int q = M->q[k];
    double T[MLMX_NB_QMAX * MLMX_NB_QMAX], bb[MLMX_NB_QMAX];
    mlmx_cm_theta_to_t(q, M->theta + M->toff[k], T);
    mlmx_cm_lower_mv(q, T, u, bb);
    for (int c = 0; c < q; c++)
        b[(size_t)(M->soff[k] + pos * q + c) * stride] = bb[c] * M->sigma;
}

/* y_i = X_i beta + sum_k Z_ki b_k + sigma N(0,1), the normal drawn from r,
 * in mlmx_workspace_simulate's order of operations (bit for bit). */
MLMX_HD double mlmx_nb_obs_y(const mlmx_nb_model *M, const double *b, size_t stride, int i,
                             mlmx_rng *r)
{
    double eta = 0.0;
    for (int j = 0; j < M->p; j++)
        eta += M->X[(size_t)j * M->n + i] * M->beta[j];
    for (int k = 0; k < M->K; k++) {
        const int q = M->q[k], s0 = M->soff[k] + M->opos[(size_t)i * M->K + k] * q;
        const double *z = M->Z + M->zoff[k] + (size_t)i * q;
        double s = 0.0;
        for (int c = 0; c < q; c++)
            s += z[c] * b[(size_t)(s0 + c) * stride];
        eta += s;
    }
    return mlmx_sim_response(0, 0, eta, M->sigma, 1.0, 0.0, 0, 0, r);
}

/* Add observation i's response y to Z^T y (zy, strided), X^T y and y^T y. */
MLMX_HD void mlmx_nb_obs_acc(const mlmx_nb_model *M, int i, double y, double *zy, size_t stride,
                             double *xty, double *yty)
{
    for (int k = 0; k < M->K; k++) {
        const int q = M->q[k], s0 = M->soff[k] + M->opos[(size_t)i * M->K + k] * q;
        const double *z = M->Z + M->zoff[k] + (size_t)i * q;
        for (int c = 0; c < q; c++)
            zy[(size_t)(s0 + c) * stride] += z[c] * y;
    }
    for (int j = 0; j < M->p; j++)
        xty[j] += M->X[(size_t)j * M->n + i] * y;
    *yty += y * y;
}

/* Replicate rep's response, straight into its statistics: zy (nu, strided),
 * xty (p), *yty; b (nu, strided) receives the random effects. Draws as
 * mlmx_workspace_simulate: stream 0 term by term, level by level (codes),
 * then stream 1 one normal per observation in order. y_out (n) may be NULL. */
MLMX_HD void mlmx_nb_simulate(const mlmx_nb_model *M, uint64_t seed, uint64_t rep, double *b,
                              double *zy, size_t stride, double *xty, double *yty, double *y_out)
{
    mlmx_rng r;
    double u[MLMX_NB_QMAX];
    mlmx_rng_init(&r, seed, rep, 0);
    for (int k = 0; k < M->K; k++)
        for (int l = 0; l < M->nlev[k]; l++) {
            for (int c = 0; c < M->q[k]; c++)
                u[c] = mlmx_rng_normal(&r);
            mlmx_nb_put_b(M, k, M->code2pos[M->noff[k] + l], u, b, stride);
        }
    for (int s = 0; s < M->nu; s++)
        zy[(size_t)s * stride] = 0.0;
    for (int j = 0; j < M->p; j++)
        xty[j] = 0.0;
    double yy = 0.0;
    mlmx_rng_init(&r, seed, rep, 1);
    for (int i = 0; i < M->n; i++) {
        const double y = mlmx_nb_obs_y(M, b, stride, i, &r);
        if (y_out)
            y_out[i] = y;
        mlmx_nb_obs_acc(M, i, y, zy, stride, xty, &yy);
    }
    *yty = yy;
}

/* The positions [*lo, *hi) of term k's levels inside top cluster h. */
MLMX_HD void mlmx_nb_range(const mlmx_nb_model *M, int h, int k, int *lo, int *hi)
{
    int a = h, e = h + 1;
    for (int t = M->K - 1; t > k; t--) {
        const int *cp = M->cptr + M->coff[t];
        a = cp[a];
        e = cp[e];
    }
    *lo = a;
    *hi = e;
}

/* Top cluster h's share of the simulation, each draw found by seeking its
 * block (one normal is one Philox block unless a uniform is redrawn, with
 * probability 2^-53): b and zy of its levels are written, X^T y and y^T y
 * added to xty and *yty. Returns 1, or 0 when some draw took more than one
 * block: then the sequential mlmx_nb_simulate must be used instead. Lets
 * GPU lanes simulate their own top clusters. */
MLMX_HD int mlmx_nb_simulate_top(const mlmx_nb_model *M, uint64_t seed, uint64_t rep, int h,
                                 double *b, double *zy, size_t stride, double *xty, double *yty)
{
    int ok = 1;
    mlmx_rng r;
    double u[MLMX_NB_QMAX];
    mlmx_rng_init(&r, seed, rep, 0);
    for (int k = M->K - 1; k >= 0; k--) {
        int lo, hi;
        mlmx_nb_range(M, h, k, &lo, &hi);
        const int q = M->q[k];
        for (int pos = lo; pos < hi; pos++) {
            const int code = M->pos2code[M->noff[k] + pos];
            for (int c = 0; c < q; c++) {
                const uint32_t blk = (uint32_t)(M->soff[k] + code * q + c);
                mlmx_rng_seek(&r, blk);
                u[c] = mlmx_rng_normal(&r);
                ok &= r.ctr[3] == blk + 1u;
                zy[(size_t)(M->soff[k] + pos * q + c) * stride] = 0.0;
            }
            mlmx_nb_put_b(M, k, pos, u, b, stride);
        }
    }
    mlmx_rng_init(&r, seed, rep, 1);
    for (int o = M->tobs_ptr[h]; o < M->tobs_ptr[h + 1]; o++) {
        const int i = M->tobs[o];
        mlmx_rng_seek(&r, (uint32_t)i);
        const double y = mlmx_nb_obs_y(M, b, stride, i, &r);
        ok &= r.ctr[3] == (uint32_t)i + 1u;
        mlmx_nb_obs_acc(M, i, y, zy, stride, xty, yty);
    }
    return ok;
}

/* ------------------------------------------------------------ criterion */

/* theta (natural scale) from the optimizer's x. */
MLMX_HD void mlmx_nb_theta(const mlmx_nb_model *M, const double *x, double *th)
{
    for (int t = 0; t < M->nt; t++)
        th[t] = M->logp[t] ? exp(x[t]) : x[t];
}

/* The templates T_k as duals: entry t of theta seeds derivative t + 1
 * when w->nd1 > 1 (then w->nd1 must be nt + 1). */
MLMX_HD void mlmx_nb_templates(const mlmx_nb_model *M, const double *theta, mlmx_nb_scratch *w)
{
    const int nd1 = w->nd1;
    for (int k = 0; k < M->K; k++) {
        const int q = M->q[k];
        double *T = mlmx_nb_templ(w, k);
        int t = M->toff[k];
        for (int b = 0; b < q; b++) /* mlmx_cm_theta_to_t's order */
            for (int a = 0; a < q; a++) {
                double *e = mlmx_nb_at(T, q, nd1, a, b);
                for (int d = 0; d < nd1; d++)
                    e[d] = 0.0;
                if (a >= b) {
                    e[0] = theta[t];
                    if (nd1 > 1)
                        e[1 + t] = 1.0;
                    t++;
                }
            }
    }
}

/* Front of level `pos` of term k from its own data (see the top of the
 * file); the ancestor rows start at zero and receive the children's
 * updates. zy: the replicate's Z^T y (strided). */
MLMX_HD void mlmx_nb_front_init(const mlmx_nb_model *M, int k, int pos, const double *zy,
                                size_t stride, mlmx_nb_scratch *w)
{
    const int nd1 = w->nd1, q = M->q[k], R = q + M->anc[k], p = M->p;
    double *F = mlmx_nb_front(w, k);
    const double *T = mlmx_nb_templ(w, k);
    const double *A = M->dat + M->doff[k] + (size_t)pos * M->dstr[k];
    const double *C = A + q * q, *G = C + q * M->anc[k];
    for (int e = 0; e < R * (R + p + 1) * nd1; e++)
        F[e] = 0.0;
    double AT[MLMX_NB_QMAX * MLMX_NB_QMAX * MLMX_NB_ND];
    for (int e = 0; e < q * q * nd1; e++)
        AT[e] = 0.0;
    for (int j = 0; j < q; j++) /* A T */
        for (int i = 0; i < q; i++)
            for (int m = 0; m < q; m++)
                mlmx_nb_daxpy(nd1, mlmx_nb_at(AT, q, nd1, i, j), mlmx_nb_atc(T, q, nd1, m, j),
                              A[i + m * q]);
    for (int j = 0; j < q; j++) { /* T^T A T + I, lower */
        for (int i = j; i < q; i++)
            for (int m = 0; m < q; m++)
                mlmx_nb_daddmul(nd1, mlmx_nb_at(F, R, nd1, i, j),
                                mlmx_nb_atc(T, q, nd1, m, i), mlmx_nb_at(AT, q, nd1, m, j));
        mlmx_nb_at(F, R, nd1, j, j)[0] += 1.0;
    }
    int ro = q; /* first row (and column of C) of ancestor term k2 */
    for (int k2 = k + 1; k2 < M->K; k2++) {
        const int q2 = M->q[k2];
        const double *T2 = mlmx_nb_templ(w, k2);
        double CT[MLMX_NB_QMAX * MLMX_NB_QMAX * MLMX_NB_ND]; /* C^T T_k: q2 x q */
        for (int e = 0; e < q2 * q * nd1; e++)
            CT[e] = 0.0;
        for (int j = 0; j < q; j++)
            for (int a = 0; a < q2; a++)
                for (int m = 0; m < q; m++)
                    mlmx_nb_daxpy(nd1, mlmx_nb_at(CT, q2, nd1, a, j),
                                  mlmx_nb_atc(T, q, nd1, m, j), C[m + (ro - q + a) * q]);
        for (int j = 0; j < q; j++)
            for (int a = 0; a < q2; a++)
                for (int m = 0; m < q2; m++)
                    mlmx_nb_daddmul(nd1, mlmx_nb_at(F, R, nd1, ro + a, j),
                                    mlmx_nb_atc(T2, q2, nd1, m, a),
                                    mlmx_nb_at(CT, q2, nd1, m, j));
        ro += q2;
    }
    const size_t s0 = (size_t)(M->soff[k] + pos * q);
    for (int i = 0; i < q; i++) /* T^T [G z] */
        for (int m = i; m < q; m++) {
            const double *tmi = mlmx_nb_atc(T, q, nd1, m, i);
            for (int c = 0; c < p; c++)
                mlmx_nb_daxpy(nd1, mlmx_nb_at(F, R, nd1, i, R + c), tmi, G[m + c * q]);
            mlmx_nb_daxpy(nd1, mlmx_nb_at(F, R, nd1, i, R + p), tmi, zy[(s0 + (size_t)m) * stride]);
        }
}

/* Eliminate the own columns of term k's front: Cholesky of the own block,
 * the ancestor rows' update left in place, log|L|^2 and the [X y] block's
 * downdate added to w->acc. Returns 1 when the block is not positive
 * definite. */
MLMX_HD int mlmx_nb_front_elim(const mlmx_nb_model *M, int k, mlmx_nb_scratch *w)
{
    const int nd1 = w->nd1, q = M->q[k], R = q + M->anc[k], P1 = M->p + 1;
    double *F = mlmx_nb_front(w, k);
    for (int j = 0; j < q; j++) {
        double *L = mlmx_nb_at(F, R, nd1, j, j);
        if (!(L[0] > 0.0))
            return 1;
        const double s = sqrt(L[0]);
        L[0] = s;
        for (int d = 1; d < nd1; d++)
            L[d] /= 2.0 * s;
        w->acc[0] += 2.0 * log(s);
        for (int d = 1; d < nd1; d++)
            w->acc[d] += 2.0 * L[d] / s;
        for (int i = j + 1; i < R; i++)
            mlmx_nb_ddiv(nd1, mlmx_nb_at(F, R, nd1, i, j), L);
        for (int c = 0; c < P1; c++)
            mlmx_nb_ddiv(nd1, mlmx_nb_at(F, R, nd1, j, R + c), L);
        for (int i2 = j + 1; i2 < R; i2++) {
            const double *l2 = mlmx_nb_at(F, R, nd1, i2, j);
            for (int i = i2; i < R; i++)
                mlmx_nb_dsubmul(nd1, mlmx_nb_at(F, R, nd1, i, i2), mlmx_nb_at(F, R, nd1, i, j), l2);
            for (int c = 0; c < P1; c++)
                mlmx_nb_dsubmul(nd1, mlmx_nb_at(F, R, nd1, i2, R + c),
                                mlmx_nb_at(F, R, nd1, j, R + c), l2);
        }
        for (int b = 0; b < P1; b++) {
            const double *xb = mlmx_nb_at(F, R, nd1, j, R + b);
            for (int a = b; a < P1; a++)
                mlmx_nb_dsubmul(nd1, mlmx_nb_sacc(w->acc, P1, nd1, a, b),
                                mlmx_nb_at(F, R, nd1, j, R + a), xb);
        }
    }
    return 0;
}

/* Add the ancestor rows of term k's eliminated front to its parent's. */
MLMX_HD void mlmx_nb_front_pass(const mlmx_nb_model *M, int k, mlmx_nb_scratch *w)
{
    const int nd1 = w->nd1, q = M->q[k], R = q + M->anc[k], Rp = R - q, P1 = M->p + 1;
    double *F = mlmx_nb_front(w, k), *Fp = mlmx_nb_front(w, k + 1);
    for (int j = q; j < R; j++) {
        for (int i = j; i < R; i++)
            mlmx_nb_daxpy(nd1, mlmx_nb_at(Fp, Rp, nd1, i - q, j - q), mlmx_nb_at(F, R, nd1, i, j),
                          1.0);
        for (int c = 0; c < P1; c++)
            mlmx_nb_daxpy(nd1, mlmx_nb_at(Fp, Rp, nd1, j - q, Rp + c),
                          mlmx_nb_at(F, R, nd1, j, R + c), 1.0);
    }
}

/* Top cluster h: its levels in post-order (children before their parent),
 * each front built, filled by its children and eliminated. Returns 1 when
 * a block is not positive definite. */
MLMX_HD int mlmx_nb_top(const mlmx_nb_model *M, int h, const double *zy, size_t stride,
                        mlmx_nb_scratch *w)
{
    int k = M->K - 1;
    w->cur[k] = h;
    mlmx_nb_front_init(M, k, h, zy, stride, w);
    w->nxt[k] = M->cptr[M->coff[k] + h];
    for (;;) {
        if (k > 0 && w->nxt[k] < M->cptr[M->coff[k] + w->cur[k] + 1]) {
            const int c = w->nxt[k]++;
            k--;
            w->cur[k] = c;
            mlmx_nb_front_init(M, k, c, zy, stride, w);
            if (k > 0)
                w->nxt[k] = M->cptr[M->coff[k] + c];
            continue;
        }
        if (mlmx_nb_front_elim(M, k, w))
            return 1;
        if (k == M->K - 1)
            return 0;
        mlmx_nb_front_pass(M, k, w);
        k++;
    }
}

/* The top clusters h0, h0 + hs, ... at theta (natural scale) with nd
 * derivatives (0, or nt): their shares summed into w->acc (length
 * mlmx_nb_acc_len; the last entry counts failures). A CPU thread takes all
 * (h0 = 0, hs = 1); a GPU lane takes every 32nd and the warp sums acc. */
MLMX_HD void mlmx_nb_part(const mlmx_nb_model *M, const double *theta, int nd, const double *zy,
                          size_t stride, int h0, int hs, mlmx_nb_scratch *w)
{
    w->nd1 = nd + 1;
    mlmx_nb_templates(M, theta, w);
    const int len = mlmx_nb_acc_len(M, nd);
    for (int e = 0; e < len; e++)
        w->acc[e] = 0.0;
    for (int h = h0; h < M->ntop; h += hs)
        if (mlmx_nb_top(M, h, zy, stride, w)) {
            w->acc[len - 1] += 1.0;
            return;
        }
}

/* w->Si = Sxx^{-1} (full p x p) from its factor R in w->Sxx. */
MLMX_HD void mlmx_nb_sinv(int p, mlmx_nb_scratch *w)
{
    for (int k = 0; k < p; k++) {
        for (int a = 0; a < p; a++)
            w->col[a] = a == k ? 1.0 : 0.0;
        mlmx_cm_trsv_lower(p, w->Sxx, w->col);
        mlmx_cm_trsv_lower_t(p, w->Sxx, w->col);
        for (int a = 0; a < p; a++)
            w->Si[a + k * p] = w->col[a];
    }
}

/* The criterion from the summed w->acc (evaluated with nd derivatives) and
 * the replicate's X^T y, y^T y; leaves R in w->Sxx, beta, r2, ldz, ldx. With
 * nd > 0 also its gradient over theta (natural scale) in w->g. NaN when a
 * block or R is not positive definite, or r^2 <= 0. */
MLMX_HD double mlmx_nb_finish(const mlmx_nb_model *M, int nd, const double *xty, double yty,
                              mlmx_nb_scratch *w)
{
    const int p = M->p, P1 = p + 1, nd1 = nd + 1;
    if (w->acc[mlmx_nb_acc_len(M, nd) - 1] != 0.0)
        return MLMX_GM_NAN;
    for (int b = 0; b < p; b++) {
        for (int a = b; a < p; a++)
            w->Sxx[a + b * p] = M->XtX[a + b * p] + mlmx_nb_sacc(w->acc, P1, nd1, a, b)[0];
        w->v[b] = xty[b] + mlmx_nb_sacc(w->acc, P1, nd1, p, b)[0];
    }
    double ys = yty + mlmx_nb_sacc(w->acc, P1, nd1, p, p)[0];
    if (p > 0 && mlmx_cm_chol(p, w->Sxx))
        return MLMX_GM_NAN;
    mlmx_cm_trsv_lower(p, w->Sxx, w->v);
    for (int k = 0; k < p; k++) {
        ys -= w->v[k] * w->v[k];
        w->beta[k] = w->v[k];
    }
    mlmx_cm_trsv_lower_t(p, w->Sxx, w->beta);
    w->r2 = ys;
    w->ldz = w->acc[0];
    w->ldx = p > 0 ? 2.0 * mlmx_cm_logdiag(p, w->Sxx) : 0.0;
    if (!(ys > 0.0) || !isfinite(w->ldz))
        return MLMX_GM_NAN;
    const double two_pi = 6.283185307179586476925286766559;
    const double nn = (double)M->n - (M->reml ? (double)p : 0.0);
    if (nd > 0) {
        if (M->reml)
            mlmx_nb_sinv(p, w);
        for (int k = 0; k < p; k++) /* w = [-beta; 1] */
            w->v[k] = -w->beta[k];
        w->v[p] = 1.0;
        for (int t = 0; t < nd; t++) {
            double dr2 = 0.0, dlx = 0.0;
            for (int b = 0; b < P1; b++)
                for (int a = b; a < P1; a++) {
                    const double ds = mlmx_nb_sacc(w->acc, P1, nd1, a, b)[1 + t];
                    const double two = a == b ? 1.0 : 2.0;
                    dr2 += two * w->v[a] * w->v[b] * ds;
                    if (M->reml && a < p)
                        dlx += two * w->Si[a + b * p] * ds;
                }
            w->g[t] = w->acc[1 + t] + dlx + nn / ys * dr2;
        }
    }
    return w->ldz + (M->reml ? w->ldx : 0.0) + nn * (1.0 + log(two_pi * ys / nn));
}

/* Criterion and gradient (nt) at the optimizer's x, one thread doing every
 * top cluster (the CPU rows and the one-replicate-per-thread kernel). */
MLMX_HD double mlmx_nb_objective(const mlmx_nb_model *M, const double *x, double *grad,
                                 const double *zy, size_t stride, const double *xty, double yty,
                                 mlmx_nb_scratch *w)
{
    mlmx_nb_theta(M, x, w->th);
    mlmx_nb_part(M, w->th, M->nt, zy, stride, 0, 1, w);
    const double f = mlmx_nb_finish(M, M->nt, xty, yty, w);
    if (isfinite(f))
        for (int t = 0; t < M->nt; t++)
            grad[t] = w->g[t] * (M->logp[t] ? w->th[t] : 1.0);
    return f;
}

/* Row i of o from the criterion f at w->th, after mlmx_nb_part and
 * mlmx_nb_finish there with nd = 0 (f NaN: the row failed). */
MLMX_HD void mlmx_nb_write_row(const mlmx_nb_model *M, double f, int n_evals, int converged,
                               mlmx_nb_scratch *w, const mlmx_nb_out *o, size_t i)
{
    const int nt = M->nt, p = M->p;
    int sing = 0;
    for (int t = 0; t < nt; t++)
        if (M->logp[t] && w->th[t] < 1e-4)
            sing = 1;
    o->nev[i] = n_evals;
    if (!isfinite(f)) {
        for (int t = 0; t < nt; t++)
            o->theta[i * nt + t] = MLMX_GM_NAN;
        for (int k = 0; k < p; k++) {
            o->beta[i * p + k] = MLMX_GM_NAN;
            if (o->se)
                o->se[i * p + k] = MLMX_GM_NAN;
        }
        o->sigma[i] = o->crit[i] = MLMX_GM_NAN;
        o->conv[i] = o->sing[i] = 0;
        o->status[i] = 2;
        return;
    }
    const double s2 = w->r2 / ((double)M->n - (M->reml ? (double)p : 0.0));
    if (o->se)
        mlmx_nb_sinv(p, w);
    for (int t = 0; t < nt; t++)
        o->theta[i * nt + t] = w->th[t];
    for (int k = 0; k < p; k++) {
        o->beta[i * p + k] = w->beta[k];
        if (o->se)
            o->se[i * p + k] = sqrt(s2 * w->Si[k + k * p]);
    }
    o->sigma[i] = sqrt(s2);
    o->crit[i] = f;
    o->conv[i] = (signed char)converged;
    o->sing[i] = (signed char)sing;
    o->status[i] = 1;
}

/* Fit one replicate from its statistics on one thread (BFGS as
 * lmm_refit.c runs it: M's start, bounds, inverse Hessian and settings)
 * and write row i of o. */
MLMX_HD void mlmx_nb_fit(const mlmx_nb_model *M, const double *zy, size_t stride,
                         const double *xty, double yty, mlmx_nb_scratch *w, const mlmx_nb_out *o,
                         size_t i)
{
    mlmx_qn_state st;
    mlmx_qn_bind(&st, M->nt, w->qs, w->act);
    mlmx_qn_begin(&st, M->x0, M->xlo, 0, &M->cfg, M->hinv0);
    while (mlmx_qn_want(&st))
        mlmx_qn_told(&st, mlmx_nb_objective(M, mlmx_qn_point(&st), mlmx_qn_grad(&st), zy, stride,
                                            xty, yty, w));
    mlmx_nb_theta(M, st.x, w->th);
    double f = MLMX_GM_NAN;
    if (!st.failed) {
        mlmx_nb_part(M, w->th, 0, zy, stride, 0, 1, w);
        f = mlmx_nb_finish(M, 0, xty, yty, w);
    }
    mlmx_nb_write_row(M, f, st.n_evals, st.converged, w, o, i);
}

#endif
