/* One replicate of a Gaussian LMM with K >= 2 random-effect terms whose
 * first term (the most levels, as the model orders the terms) has q1 <=
 * MLMX_LD_QMAX columns and whose other terms, with X and y, form a dense
 * block of m = sum_{k>=2} l_k q_k + p + 1 columns, a runtime size whose
 * only cap is the replicate's scratch (MLMX_LD_SCRATCH_MAX) (crossed terms
 * like Penicillin's plate x sample or sim_crossed's students x teachers,
 * or nested ones like Pastes'): simulate the response (keyed as
 * mlmx_workspace_simulate), form its statistics, and fit it by the
 * ask/tell BFGS of qn.h on the profiled (RE)ML criterion and its exact
 * gradient. Written once, compiled as C for
 * the CPU engine (host/replicate/lmm_dense_batch.c) and as CUDA for the
 * device engine (kernels/lmm_dense_batch.cu): the CPU tests run the very
 * arithmetic the GPU runs.
 *
 * The criterion is evaluated as mlmx_lmm_eval does (host/lmm/lmm.c), on the
 * blocks of [Z1 Z_R X y]^T [Z1 Z_R X y] (Z_R: terms 2..K):
 *   per first-term level j: L_j L_j^T = T1^T A_j T1 + I and the rows
 *     W_j = L_j^{-1} T1^T B_j Lambda_R~ (B_j = Z1_j^T [Z_R X y], only the
 *     columns the level touches; Lambda_R~ is Lambda_R on the Z_R columns
 *     and 1 on X and y);
 *   the dense block S = Lambda_R~^T [Z_R X y]^T [Z_R X y] Lambda_R~ + I_R
 *     (I only on the Z_R diagonal), downdated S -= sum_j W_j^T W_j (the
 *     Schur complement of the first term's block diagonal), and factored
 *     S = F F^T (dense Cholesky; nested stages need no special case: a
 *     dense factorization of a block-diagonal part is the same numbers);
 *   log|L_theta|^2 = 2 sum_j log|L_j| + 2 sum_{c < m_re} log F_cc,
 *   log|R_X|^2 = 2 sum_{m_re <= c < m-1} log F_cc, r^2 = F_{m-1,m-1}^2,
 *   ML:   log|L|^2 + n (1 + log(2 pi r^2 / n)),
 *   REML: log|L|^2 + log|R_X|^2 + (n-p) (1 + log(2 pi r^2 / (n-p))).
 *
 * The gradient: forward-mode dual numbers through the same elimination.
 * Every quantity above is carried as nd = 1 + nt numbers: its value and its
 * derivatives with respect to each theta entry (the templates T_k are
 * seeded with unit derivatives). Why this and not an analytic formula as
 * lmm_batch.h and host/lmm/grad.c use: the derivative is exact to rounding
 * for the very arithmetic evaluated (BFGS's line search sees a consistent
 * pair), it needs no Lambda^{-1} (host/lmm/grad.c's formula divides by
 * theta, so a variance near 0 costs accuracy), no inverse of the dense
 * block, and no second code path to keep in step with the first. It costs
 * about 2 nt extra multiply-adds per multiply-add, affordable because nt
 * is small here (<= MLMX_LD_NTMAX). The value component is computed by the
 * same operations whatever nd, so a value-only evaluation (nd = 1) gives
 * the very number the gradient evaluation returned.
 *
 * Parallel form. Every evaluation function takes (lane, nlanes), nlanes a
 * power of two (an owner is found by masking, not by a division): the CPU
 * passes (0, 1); a CUDA warp passes (lane, 32) and a thread block (lane,
 * blockDim.x), blockDim.x = MLMX_LD_BLOCK_LANES (the block mapping, for
 * large dense blocks; the lane tests also run 256). The first-term levels
 * are spread over the lanes, nlanes at a time; then each of those levels'
 * Schur downdate is dealt out over the lanes by row pair (a barrier after
 * each level, so every entry is downdated in level order, whatever
 * nlanes); the dense Cholesky's column division and trailing updates are
 * dealt out over the lanes, with a barrier (mlmx_ld_sync: __syncwarp for a
 * warp, __syncthreads for a block) between phases. Each dense entry sees
 * the same operations in the same order for any nlanes; only the sum of
 * the levels' log-determinants over the lanes is added in another order.
 * Every lane returns the same criterion and gradient.
 *
 * Storage. Dual numbers are nd consecutive doubles (value first). The
 * dense block is packed lower triangular by rows: entry (a, b), a >= b, at
 * index a (a + 1) / 2 + b. A replicate's response statistics `resp`
 * (mlmx_ld_resp_len doubles) are Z1_j^T y for each level (nblk * q1), then
 * [Z_R X]^T y (m - 1), then y^T y. Its scratch (mlmx_ld_scratch_len
 * doubles for a given nlanes) holds the templates, the dense block, one
 * slot per lane (a level's rows and the per-level and dense phases'
 * temporaries, mlmx_ld_lane_len) and a few results; only O(nt) arrays
 * (MLMX_LD_NTMAX, MLMX_LD_NDMAX) live on the stack. Nothing here allocates
 * or calls a library beyond <math.h>. */
#ifndef MLMX_LMM_DENSE_BATCH_H
#define MLMX_LMM_DENSE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "cluster_math.h"
#include "qn.h"
#include "simulate.h"

#define MLMX_LD_QMAX 4   /* columns of any term (q1 included) */
/* The dense block's size m is a runtime size: its scratch lives in the
 * replicate's scratch (mlmx_ld_scratch_len), not on a stack. The one cap is
 * on that scratch: at most MLMX_LD_SCRATCH_MAX bytes a replicate (for the
 * widest mapping, MLMX_LD_BLOCK_LANES lanes). Why 256 MiB: a device chunk
 * holds at least 128 replicates (the chunk planner's alignment), 32 GiB of
 * an H200's 141, and every CPU thread holds one; it also keeps the packed
 * indices (m (m + 1) / 2 < 2^31, m < 8,192 at any dual width) in an int.
 * InstEval's 1,159 columns with 3 theta need 21 MiB (128 lanes). */
#define MLMX_LD_SCRATCH_MAX ((size_t)256 << 20)
#define MLMX_LD_BLOCK_LANES 128 /* lanes of one replicate in the device's block mapping */
#define MLMX_LD_NTMAX 16 /* theta entries */
#define MLMX_LD_NDMAX (MLMX_LD_NTMAX + 1)
#define MLMX_LD_KMAX 8   /* random-effect terms */

/* The evaluation's pieces are inlined into mlmx_ld_eval_nd, which the
 * host's mlmx_ld_eval instantiates for each small dual width: with nd a
 * constant the dual loops unroll (three times fewer cycles on Penicillin;
 * the arithmetic, and so every bit, is the same). CUDA inlines everything
 * anyway and keeps one generic copy. */
#if defined(__CUDACC__) || !defined(__GNUC__)
#define MLMX_LD_INL MLMX_HD
#else
#define MLMX_LD_INL static inline __attribute__((always_inline))
#endif

/* The shared structure (host pointers on the CPU, device pointers in a
 * kernel). Observations in model order; term 0 is the first term. */
typedef struct mlmx_ld_model {
    int n, p, K, q1, nblk, m, m_re, nt, reml;
    int maxrows;               /* most rows of one first-term level (y row included) */
    int nu;                    /* random effects over all terms (simulation scratch) */
    int ntm;                   /* template entries: sum_k q_k^2 */
    int tq[MLMX_LD_KMAX];      /* columns of term k */
    int tnl[MLMX_LD_KMAX];     /* levels of term k */
    int toff[MLMX_LD_KMAX];    /* first theta entry of term k */
    int tmo[MLMX_LD_KMAX];     /* first template entry of term k */
    int tcol[MLMX_LD_KMAX];    /* first dense column of term k (k >= 1) */
    size_t zoff[MLMX_LD_KMAX]; /* term k's rows: Z + zoff[k], n * q_k row-major */
    const int *codes;          /* K * n: term k's level of observation i at codes[k * n + i] */
    const double *Z;           /* the terms' rows, concatenated */
    const double *X;           /* n * p column-major */
    const double *A1;          /* nblk * q1 * q1: Z1_j^T Z1_j, column-major, full */
    const int *row_ptr;        /* nblk + 1: level j's rows are [row_ptr[j], row_ptr[j+1]) */
    const int *row_col;        /* each row's dense column; ascending in a level, y (m-1) last */
    const double *B;           /* rows * q1, row-major: Z1_j^T (column); y rows unused */
    const double *D;           /* m (m-1) / 2: [Z_R X]^T [Z_R X], packed lower by rows */
    const int *cterm;          /* m - 1: each dense column's term (-1 for X) */
    const int *ccomp;          /* m - 1: its component within the term's level */
    const double *theta;       /* nt: the parameters replicates are simulated from */
    const double *beta;        /* p */
    double sigma;
    const double *x0;          /* nt: optimizer start (log scale where logp) */
    const double *xlo;         /* nt: lower bounds on the optimizer's scale */
    const double *hinv0;       /* nt * nt inverse Hessian at x0, or NULL */
    const unsigned char *logp; /* nt: 1 for a diagonal entry (optimised as log theta) */
    mlmx_qn_cfg cfg;
} mlmx_ld_model;

/* One replicate's results, written at row i of each array (theta: nt per
 * row, beta and se: p per row; se may be NULL). status 1 done, 2 failed
 * (then the doubles are NaN). */
typedef struct mlmx_ld_out {
    double *theta, *beta, *se, *sigma, *crit;
    int *nev;
    signed char *conv, *sing, *status;
} mlmx_ld_out;

/* ------------------------------------------------------------ lanes */

/* Make the lanes' writes visible to each other: nothing with one lane, a
 * warp barrier (__syncwarp) for a warp's 32 lanes, a block barrier
 * (__syncthreads) for more (one replicate per thread block, whose threads
 * are all its lanes: every thread of the block must reach each call). A
 * host build may define MLMX_LD_HOST_SYNC() and MLMX_LD_HOST_SUM(v) before
 * including this header to run the lanes as threads
 * (tests/test_lmm_dense_lanes.c checks the warp's and the block's
 * partitions of the work that way, without a device). */
MLMX_HD void mlmx_ld_sync(int nlanes)
{
#if defined(__CUDA_ARCH__)
    if (nlanes > 32)
        __syncthreads();
    else if (nlanes > 1)
        __syncwarp();
#elif defined(MLMX_LD_HOST_SYNC)
    if (nlanes > 1)
        MLMX_LD_HOST_SYNC();
#else
    (void)nlanes;
#endif
}

/* The sum of v over the lanes, on every lane (nlanes 1, 32, or a multiple
 * of 32 up to 1024 that is a whole block: shuffles within each warp, then
 * the warps' sums through shared memory, added in warp order). */
MLMX_HD double mlmx_ld_lane_sum(double v, int nlanes)
{
#if defined(__CUDA_ARCH__)
    if (nlanes > 1)
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
    if (nlanes > 32) {
        __shared__ double ld_warp_sum[32];
        __syncthreads(); /* the previous call's readers are done */
        if ((threadIdx.x & 31) == 0)
            ld_warp_sum[threadIdx.x >> 5] = v;
        __syncthreads();
        v = 0.0;
        for (int w = 0; w < (nlanes >> 5); w++)
            v += ld_warp_sum[w];
    }
#elif defined(MLMX_LD_HOST_SUM)
    if (nlanes > 1)
        v = MLMX_LD_HOST_SUM(v);
#else
    (void)nlanes;
#endif
    return v;
}

/* Walk (i, k), 0 <= k <= i, through the packed lower triangle (row by
 * row) by `step` entries: how lanes deal out a triangle's entries
 * round-robin (start at (0, 0) and walk by lane, then by nlanes). */
MLMX_HD void mlmx_ld_tri_walk(int *i, int *k, int step)
{
    int ii = *i, kk = *k + step;
    while (kk > ii) {
        kk -= ii + 1;
        ii++;
    }
    *i = ii;
    *k = kk;
}

/* ------------------------------------------------------------ sizes */

/* Packed lower-triangular index of (a, b), a >= b. */
MLMX_LD_INL int mlmx_ld_pk(int a, int b) { return a * (a + 1) / 2 + b; }

/* Doubles of a replicate's response statistics. */
MLMX_HD size_t mlmx_ld_resp_len(const mlmx_ld_model *M)
{
    return (size_t)M->nblk * (size_t)M->q1 + (size_t)M->m;
}

/* Doubles of one lane's slot at dual width nd: a first-term level's rows
 * (maxrows q1 duals), T1^T A_j and L_j (q1^2 each), one level's mixed rows
 * (MLMX_LD_QMAX) and four duals for the dense phases. This was the ~6 KB
 * stack frame of the per-level step; as scratch it costs no local memory
 * and depends on the model, not on compile-time maxima. */
MLMX_HD size_t mlmx_ld_lane_len(const mlmx_ld_model *M, int nd)
{
    const size_t q = (size_t)M->q1;
    return ((size_t)M->maxrows * q + 2 * q * q + MLMX_LD_QMAX + 4) * (size_t)nd;
}

/* Offsets (in doubles) of the scratch regions for nlanes lanes: the
 * templates, the dense block, the lanes' slots (mlmx_ld_lane_len), the
 * results; and the total. Each region is sized for the widest duals (nd =
 * 1 + nt). */
MLMX_HD size_t mlmx_ld_layout(const mlmx_ld_model *M, int nlanes, size_t *tm, size_t *S,
                              size_t *rows, size_t *misc)
{
    const size_t nd = (size_t)M->nt + 1, m = (size_t)M->m;
    const size_t o_tm = 0, o_S = o_tm + (size_t)M->ntm * nd;
    const size_t o_rows = o_S + m * (m + 1) / 2 * nd;
    const size_t o_misc = o_rows + (size_t)nlanes * mlmx_ld_lane_len(M, (int)nd);
    if (tm)
        *tm = o_tm;
    if (S)
        *S = o_S;
    if (rows)
        *rows = o_rows;
    if (misc)
        *misc = o_misc;
    return o_misc + 4 + m;
}

/* Doubles of a replicate's scratch for nlanes lanes. */
MLMX_HD size_t mlmx_ld_scratch_len(const mlmx_ld_model *M, int nlanes)
{
    return mlmx_ld_layout(M, nlanes, 0, 0, 0, 0);
}

/* ------------------------------------------------------------ simulation */

/* resp = 0 (before accumulating a response). */
MLMX_HD void mlmx_ld_resp_zero(const mlmx_ld_model *M, double *resp)
{
    const size_t len = mlmx_ld_resp_len(M);
    for (size_t k = 0; k < len; k++)
        resp[k] = 0.0;
}

/* Observation i with response y into resp (Z1^T y by level, Z_R^T y, X^T y,
 * y^T y). */
MLMX_HD void mlmx_ld_accumulate(const mlmx_ld_model *M, size_t i, double y, double *resp)
{
    const size_t n = (size_t)M->n;
    double *ry = resp + (size_t)M->nblk * (size_t)M->q1;
    for (int k = 0; k < M->K; k++) {
        const int q = M->tq[k], l = M->codes[(size_t)k * n + i];
        const double *z = M->Z + M->zoff[k] + i * (size_t)q;
        double *dst = k == 0 ? resp + (size_t)l * (size_t)q : ry + M->tcol[k] + l * q;
        for (int c = 0; c < q; c++)
            dst[c] += z[c] * y;
    }
    for (int j = 0; j < M->p; j++)
        ry[M->m_re + j] += M->X[(size_t)j * n + i] * y;
    ry[M->m - 1] += y * y;
}

/* Replicate rep's response, drawn exactly as mlmx_workspace_simulate
 * draws it: u from stream 0 (terms in order, level-major), b = sigma T_k u;
 * then in observation order eta = sum_j x_ij beta_j + sum_k z_ik b_k (the
 * same additions in the same order) and y = eta + sigma N(0,1) from stream
 * 1. b: M->nu doubles of scratch. resp (may be NULL) receives the
 * statistics, y_out (n, may be NULL) the response itself. */
MLMX_HD void mlmx_ld_simulate(const mlmx_ld_model *M, uint64_t seed, uint64_t rep, double *b,
                              double *resp, double *y_out)
{
    const size_t n = (size_t)M->n;
    double T[MLMX_LD_QMAX * MLMX_LD_QMAX], u[MLMX_LD_QMAX];
    mlmx_rng r;
    mlmx_rng_init(&r, seed, rep, 0);
    int off = 0;
    for (int k = 0; k < M->K; k++) {
        const int q = M->tq[k];
        mlmx_cm_theta_to_t(q, M->theta + M->toff[k], T);
        for (int l = 0; l < M->tnl[k]; l++) {
            for (int c = 0; c < q; c++)
                u[c] = mlmx_rng_normal(&r);
            mlmx_cm_lower_mv(q, T, u, b + off);
            for (int c = 0; c < q; c++)
                b[off + c] *= M->sigma;
            off += q;
        }
    }
    if (resp)
        mlmx_ld_resp_zero(M, resp);
    mlmx_rng_init(&r, seed, rep, 1);
    for (size_t i = 0; i < n; i++) {
        double eta = 0.0;
        for (int j = 0; j < M->p; j++)
            eta += M->X[(size_t)j * n + i] * M->beta[j];
        int boff = 0;
        for (int k = 0; k < M->K; k++) {
            const int q = M->tq[k];
            const double *z = M->Z + M->zoff[k] + i * (size_t)q;
            const double *bk = b + boff + M->codes[(size_t)k * n + i] * q;
            double s = 0.0;
            for (int c = 0; c < q; c++)
                s += z[c] * bk[c];
            eta += s;
            boff += M->tnl[k] * q;
        }
        const double y = mlmx_sim_response(0, 0, eta, M->sigma, 1.0, 0.0, 0, 0, &r);
        if (y_out)
            y_out[i] = y;
        if (resp)
            mlmx_ld_accumulate(M, i, y, resp);
    }
}

/* ------------------------------------------------------------ dual numbers */

/* s += a * b */
MLMX_LD_INL void mlmx_ld_dfma(int nd, double *s, const double *a, const double *b)
{
    const double av = a[0], bv = b[0];
    for (int t = 1; t < nd; t++)
        s[t] += av * b[t] + a[t] * bv;
    s[0] += av * bv;
}

/* s -= a * b */
MLMX_LD_INL void mlmx_ld_dfms(int nd, double *s, const double *a, const double *b)
{
    const double av = a[0], bv = b[0];
    for (int t = 1; t < nd; t++)
        s[t] -= av * b[t] + a[t] * bv;
    s[0] -= av * bv;
}

/* s += c * a for a constant c */
MLMX_LD_INL void mlmx_ld_daxpy(int nd, double *s, double c, const double *a)
{
    for (int t = 0; t < nd; t++)
        s[t] += c * a[t];
}

/* a /= b */
MLMX_LD_INL void mlmx_ld_ddiv(int nd, double *a, const double *b)
{
    const double v = a[0] / b[0];
    for (int t = 1; t < nd; t++)
        a[t] = (a[t] - v * b[t]) / b[0];
    a[0] = v;
}

/* a = sqrt(a) (a[0] > 0) */
MLMX_LD_INL void mlmx_ld_dsqrt(int nd, double *a)
{
    const double v = sqrt(a[0]);
    for (int t = 1; t < nd; t++)
        a[t] = a[t] / (2.0 * v);
    a[0] = v;
}

/* acc += w log(a) (a[0] > 0) */
MLMX_LD_INL void mlmx_ld_dlog_add(int nd, double *acc, double w, const double *a)
{
    for (int t = 1; t < nd; t++)
        acc[t] += w * a[t] / a[0];
    acc[0] += w * log(a[0]);
}

/* a = 0 */
MLMX_LD_INL void mlmx_ld_dzero(int nd, double *a)
{
    for (int t = 0; t < nd; t++)
        a[t] = 0.0;
}

/* dst = src */
MLMX_LD_INL void mlmx_ld_dcopy(int nd, double *dst, const double *src)
{
    for (int t = 0; t < nd; t++)
        dst[t] = src[t];
}

/* ------------------------------------------------------------ the criterion */

/* The templates T_k as duals at theta (nd = 1: values only; otherwise
 * entry theta_t carries the unit derivative in component 1 + t). tm:
 * ntm * nd doubles, term k's q_k x q_k column-major block from tmo[k]. */
MLMX_LD_INL void mlmx_ld_templates(const mlmx_ld_model *M, const double *theta, int nd, double *tm)
{
    for (int k = 0; k < M->K; k++) {
        const int q = M->tq[k];
        double *T = tm + (size_t)M->tmo[k] * (size_t)nd;
        int t = M->toff[k];
        for (int b = 0; b < q; b++)
            for (int a = 0; a < q; a++) {
                double *e = T + (size_t)(a + b * q) * (size_t)nd;
                mlmx_ld_dzero(nd, e);
                if (a >= b) {
                    e[0] = theta[t];
                    if (nd > 1)
                        e[1 + t] = 1.0;
                    t++;
                }
            }
    }
}

/* Lambda~[row, col]'s entry as a dual: T_k[i, c] for a column of term k
 * (component c, block row i), 1 for an X or y column (k < 0). */
MLMX_LD_INL void mlmx_ld_lam(const mlmx_ld_model *M, const double *tm, int nd, int k, int i, int c,
                         double *out)
{
    if (k < 0) {
        mlmx_ld_dzero(nd, out);
        out[0] = 1.0;
        return;
    }
    const int q = M->tq[k];
    mlmx_ld_dcopy(nd, out, tm + (size_t)(M->tmo[k] + i + c * q) * (size_t)nd);
}

/* The dense block before the downdate, lanes over its packed entries:
 * S[a, b] = sum Lambda~[., a] D Lambda~[., b] (+1 on the Z_R diagonal), the
 * response row S[m-1, b] = (Lambda~^T [Z_R X]^T y)[b], S[m-1, m-1] = y^T y.
 * ry: the response's m statistics ([Z_R X]^T y, y^T y). w: 3 duals of the
 * lane's own scratch. */
MLMX_LD_INL void mlmx_ld_dense_init(const mlmx_ld_model *M, int nd, const double *tm,
                                    const double *ry, double *S, double *w, int lane, int nlanes)
{
    const int m = M->m, mm = m - 1;
    double *la = w, *lb = w + nd, *pr = w + 2 * nd;
    int cnt = 0;
    for (int a = 0; a < m; a++)
        for (int b = 0; b <= a; b++) {
            if ((cnt++ & (nlanes - 1)) != lane)
                continue;
            double *s = S + (size_t)mlmx_ld_pk(a, b) * (size_t)nd;
            mlmx_ld_dzero(nd, s);
            const int kb = b < mm ? M->cterm[b] : -1, cb = b < mm ? M->ccomp[b] : 0;
            const int qb = kb < 0 ? 1 : M->tq[kb], b0 = b - cb;
            if (a == mm) {
                if (b == mm) {
                    s[0] = ry[mm];
                    continue;
                }
                for (int jx = cb; jx < qb; jx++) {
                    mlmx_ld_lam(M, tm, nd, kb, jx, cb, lb);
                    mlmx_ld_daxpy(nd, s, ry[b0 + jx], lb);
                }
                continue;
            }
            const int ka = M->cterm[a], ca = M->ccomp[a];
            const int qa = ka < 0 ? 1 : M->tq[ka], a0 = a - ca;
            for (int i = ca; i < qa; i++) {
                mlmx_ld_lam(M, tm, nd, ka, i, ca, la);
                for (int jx = cb; jx < qb; jx++) {
                    const int r = a0 + i, c = b0 + jx;
                    const double d = M->D[r >= c ? mlmx_ld_pk(r, c) : mlmx_ld_pk(c, r)];
                    mlmx_ld_lam(M, tm, nd, kb, jx, cb, lb);
                    mlmx_ld_dzero(nd, pr);
                    mlmx_ld_dfma(nd, pr, la, lb);
                    mlmx_ld_daxpy(nd, s, d, pr);
                }
            }
            if (a == b && a < M->m_re)
                s[0] += 1.0;
        }
}

/* First-term level j: L_j = chol(T1^T A_j T1 + I) and the level's rows
 * W_j = L_j^{-1} (Lambda~^T B_j^T T1)^T, row r's q1 duals at rows + r q1 nd,
 * where rows is the start of the lane's slot (mlmx_ld_lane_len(M, nd)
 * doubles; the rest of the slot is this step's scratch). z1: the
 * response's Z1_j^T y (q1). acc (nd) += log|L_j|^2. Returns 0, or 1 when
 * the block is not positive definite. */
MLMX_LD_INL int mlmx_ld_level(const mlmx_ld_model *M, int j, int nd, const double *tm,
                              const double *z1, double *rows, double *acc)
{
    const int q = M->q1, r0 = M->row_ptr[j], nr = M->row_ptr[j + 1] - r0;
    const double *A = M->A1 + (size_t)j * (size_t)(q * q), *T1 = tm + (size_t)M->tmo[0] * nd;
    double *AT = rows + (size_t)M->maxrows * (size_t)q * (size_t)nd;
    double *L = AT + (size_t)(q * q) * (size_t)nd;
    double *tmp = L + (size_t)(q * q) * (size_t)nd;
#define LD_E(P, a, b) ((P) + (size_t)((a) + (b) * q) * (size_t)nd)
    for (int b = 0; b < q; b++) /* AT = A T1 */
        for (int a = 0; a < q; a++) {
            double *e = LD_E(AT, a, b);
            mlmx_ld_dzero(nd, e);
            for (int c = b; c < q; c++)
                mlmx_ld_daxpy(nd, e, A[a + c * q], LD_E(T1, c, b));
        }
    for (int b = 0; b < q; b++) /* L = T1^T AT + I, lower */
        for (int a = b; a < q; a++) {
            double *e = LD_E(L, a, b);
            mlmx_ld_dzero(nd, e);
            for (int c = a; c < q; c++)
                mlmx_ld_dfma(nd, e, LD_E(T1, c, a), LD_E(AT, c, b));
            if (a == b)
                e[0] += 1.0;
        }
    for (int c = 0; c < q; c++) { /* Cholesky, column by column */
        double *d = LD_E(L, c, c);
        for (int k = 0; k < c; k++)
            mlmx_ld_dfms(nd, d, LD_E(L, c, k), LD_E(L, c, k));
        if (!(d[0] > 0.0))
            return 1;
        mlmx_ld_dsqrt(nd, d);
        mlmx_ld_dlog_add(nd, acc, 2.0, d);
        for (int i = c + 1; i < q; i++) {
            double *e = LD_E(L, i, c);
            for (int k = 0; k < c; k++)
                mlmx_ld_dfms(nd, e, LD_E(L, i, k), LD_E(L, c, k));
            mlmx_ld_ddiv(nd, e, d);
        }
    }
    /* each row times T1 (the y row is the response's z1) */
    for (int r = 0; r < nr; r++) {
        const double *v = r == nr - 1 ? z1 : M->B + (size_t)(r0 + r) * (size_t)q;
        double *w = rows + (size_t)r * (size_t)q * (size_t)nd;
        for (int b = 0; b < q; b++) {
            double *e = w + (size_t)b * nd;
            mlmx_ld_dzero(nd, e);
            for (int c = b; c < q; c++)
                mlmx_ld_daxpy(nd, e, v[c], LD_E(T1, c, b));
        }
    }
    /* Lambda_R^T on the row side: the q_k rows of one level of term k mix
     * as new row e = sum_{c >= e} T_k[c, e] old row c */
    for (int r = 0; r < nr - 1;) {
        const int k = M->cterm[M->row_col[r0 + r]];
        if (k < 0) {
            r++;
            continue;
        }
        const int qk = M->tq[k];
        const double *Tk = tm + (size_t)M->tmo[k] * nd;
        for (int i = 0; i < q; i++) {
            for (int e = 0; e < qk; e++) {
                double *te = tmp + (size_t)e * nd;
                mlmx_ld_dzero(nd, te);
                for (int c = e; c < qk; c++)
                    mlmx_ld_dfma(nd, te, Tk + (size_t)(c + e * qk) * nd,
                                 rows + ((size_t)(r + c) * q + i) * nd);
            }
            for (int e = 0; e < qk; e++)
                mlmx_ld_dcopy(nd, rows + ((size_t)(r + e) * q + i) * nd, tmp + (size_t)e * nd);
        }
        r += qk;
    }
    for (int r = 0; r < nr; r++) { /* L_j^{-1} on each row */
        double *w = rows + (size_t)r * (size_t)q * (size_t)nd;
        for (int a = 0; a < q; a++) {
            double *e = w + (size_t)a * nd;
            for (int c = 0; c < a; c++)
                mlmx_ld_dfms(nd, e, LD_E(L, a, c), w + (size_t)c * nd);
            mlmx_ld_ddiv(nd, e, LD_E(L, a, a));
        }
    }
#undef LD_E
    return 0;
}

/* The Schur downdate by level j's rows (from mlmx_ld_level): S[c_a, c_b]
 * -= sum_i W[a, i] W[b, i] over the level's row pairs (ra, rb), rb <= ra,
 * dealt out round-robin over the lanes. Row columns are distinct within a
 * level, so no two lanes write one entry; the caller runs the levels one
 * after another with a barrier between them, so every entry is downdated
 * in level order by the same operations whatever nlanes. */
MLMX_LD_INL void mlmx_ld_downdate(const mlmx_ld_model *M, int j, int nd, const double *rows,
                                  double *S, int lane, int nlanes)
{
    const int q = M->q1, r0 = M->row_ptr[j], nr = M->row_ptr[j + 1] - r0;
    int ra = 0, rb = 0;
    mlmx_ld_tri_walk(&ra, &rb, lane);
    for (; ra < nr; mlmx_ld_tri_walk(&ra, &rb, nlanes)) {
        const double *wa = rows + (size_t)ra * (size_t)q * nd;
        const double *wb = rows + (size_t)rb * (size_t)q * nd;
        double *s = S + (size_t)mlmx_ld_pk(M->row_col[r0 + ra], M->row_col[r0 + rb]) * nd;
        for (int i = 0; i < q; i++)
            mlmx_ld_dfms(nd, s, wa + (size_t)i * nd, wb + (size_t)i * nd);
    }
}

/* In-place right-looking Cholesky of the packed dual block S (m x m),
 * the trailing updates spread over the lanes. dj: one dual of the lane's
 * own scratch. 0, or the failing column + 1 (the same on every lane). */
MLMX_LD_INL int mlmx_ld_dense_chol(int m, int nd, double *S, double *dj, int lane, int nlanes)
{
    for (int j = 0; j < m; j++) {
        const double *d = S + (size_t)mlmx_ld_pk(j, j) * nd;
        if (!(d[0] > 0.0))
            return j + 1;
        mlmx_ld_dcopy(nd, dj, d);
        mlmx_ld_dsqrt(nd, dj);
        for (int i = j + 1 + lane; i < m; i += nlanes)
            mlmx_ld_ddiv(nd, S + (size_t)mlmx_ld_pk(i, j) * nd, dj);
        mlmx_ld_sync(nlanes);
        if (lane == 0)
            mlmx_ld_dcopy(nd, S + (size_t)mlmx_ld_pk(j, j) * nd, dj);
        if (nlanes == 1) { /* one lane: row by row, each row's run contiguous */
            for (int i = j + 1; i < m; i++) {
                const double *sij = S + (size_t)mlmx_ld_pk(i, j) * nd;
                double *sik = S + (size_t)mlmx_ld_pk(i, j + 1) * nd;
                for (int k = j + 1; k <= i; k++, sik += nd)
                    mlmx_ld_dfms(nd, sik, sij, S + (size_t)mlmx_ld_pk(k, j) * nd);
            }
            continue;
        }
        /* the trailing triangle (i >= k > j), its packed entries dealt out
         * round-robin: (ii, kk) = (i - j - 1, k - j - 1) walks by nlanes;
         * each entry sees the same operations as with one lane */
        int ii = 0, kk = 0;
        mlmx_ld_tri_walk(&ii, &kk, lane);
        for (; ii < m - j - 1; mlmx_ld_tri_walk(&ii, &kk, nlanes)) {
            const int i = ii + j + 1, k = kk + j + 1;
            mlmx_ld_dfms(nd, S + (size_t)mlmx_ld_pk(i, k) * nd, S + (size_t)mlmx_ld_pk(i, j) * nd,
                         S + (size_t)mlmx_ld_pk(k, j) * nd);
        }
        mlmx_ld_sync(nlanes);
    }
    return 0;
}

/* mlmx_ld_eval's body (see there), for one dual width nd. */
MLMX_LD_INL double mlmx_ld_eval_nd(const mlmx_ld_model *M, const double *theta, int nd,
                                   const double *resp, double *scr, int lane, int nlanes,
                                   double *dtheta)
{
    size_t o_tm, o_S, o_rows, o_misc;
    mlmx_ld_layout(M, nlanes, &o_tm, &o_S, &o_rows, &o_misc);
    double *tm = scr + o_tm, *S = scr + o_S, *misc = scr + o_misc;
    const size_t slot = mlmx_ld_lane_len(M, nd);
    const int m = M->m, q = M->q1;
    const double *ry = resp + (size_t)M->nblk * (size_t)q;
    /* this lane's four duals at the end of its slot */
    double *lw = scr + o_rows + (size_t)lane * slot + slot - 4 * (size_t)nd;
    if (lane == 0)
        mlmx_ld_templates(M, theta, nd, tm);
    mlmx_ld_sync(nlanes);
    mlmx_ld_dense_init(M, nd, tm, ry, S, lw, lane, nlanes);
    mlmx_ld_sync(nlanes);
    double acc[MLMX_LD_NDMAX];
    mlmx_ld_dzero(nd, acc);
    int bad = 0;
    for (int j0 = 0; j0 < M->nblk; j0 += nlanes) {
        const int j = j0 + lane;
        if (j < M->nblk && !bad)
            bad = mlmx_ld_level(M, j, nd, tm, resp + (size_t)j * q,
                                scr + o_rows + (size_t)lane * slot, acc);
        mlmx_ld_sync(nlanes);
        for (int jj = j0; jj < M->nblk && jj < j0 + nlanes; jj++) {
            mlmx_ld_downdate(M, jj, nd, scr + o_rows + (size_t)(jj - j0) * slot, S, lane,
                             nlanes);
            mlmx_ld_sync(nlanes);
        }
    }
    if (mlmx_ld_lane_sum((double)bad, nlanes) > 0.0)
        return MLMX_GM_NAN;
    if (mlmx_ld_dense_chol(m, nd, S, lw, lane, nlanes))
        return MLMX_GM_NAN;
    for (int t = 0; t < nd; t++)
        acc[t] = mlmx_ld_lane_sum(acc[t], nlanes);
    double ldx[MLMX_LD_NDMAX], r2[MLMX_LD_NDMAX];
    mlmx_ld_dzero(nd, ldx);
    for (int c = 0; c < m - 1; c++)
        mlmx_ld_dlog_add(nd, c < M->m_re ? acc : ldx, 2.0, S + (size_t)mlmx_ld_pk(c, c) * nd);
    const double *r = S + (size_t)mlmx_ld_pk(m - 1, m - 1) * nd;
    mlmx_ld_dzero(nd, r2);
    mlmx_ld_dfma(nd, r2, r, r);
    if (!(r2[0] > 0.0))
        return MLMX_GM_NAN;
    const double two_pi = 6.283185307179586476925286766559;
    const double nn = (double)M->n - (M->reml ? (double)M->p : 0.0);
    const double f = acc[0] + (M->reml ? ldx[0] : 0.0) + nn * (1.0 + log(two_pi * r2[0] / nn));
    if (dtheta)
        for (int t = 1; t < nd; t++)
            dtheta[t - 1] = acc[t] + (M->reml ? ldx[t] : 0.0) + nn * r2[t] / r2[0];
    if (lane == 0) {
        misc[0] = r2[0];
        misc[1] = acc[0];
        misc[2] = ldx[0];
    }
    mlmx_ld_sync(nlanes);
    return f;
}

/* The profiled criterion at theta (nt values, natural scale) for a
 * replicate's statistics resp, with nd = 1 (value) or 1 + nt (value and
 * gradient: dtheta[t] = d crit / d theta_t, written when finite). Leaves
 * the factor of the dense block (nd-dual, packed) in the scratch and r^2,
 * log|L|^2, log|R_X|^2 at its results (mlmx_ld_layout's misc). Every lane
 * returns the same value; NaN when a block is not positive definite. */
MLMX_HD double mlmx_ld_eval(const mlmx_ld_model *M, const double *theta, int nd,
                            const double *resp, double *scr, int lane, int nlanes,
                            double *dtheta)
{
#if !defined(__CUDACC__)
    switch (nd) { /* constant widths: nt <= 4 */
    case 1:
        return mlmx_ld_eval_nd(M, theta, 1, resp, scr, lane, nlanes, dtheta);
    case 2:
        return mlmx_ld_eval_nd(M, theta, 2, resp, scr, lane, nlanes, dtheta);
    case 3:
        return mlmx_ld_eval_nd(M, theta, 3, resp, scr, lane, nlanes, dtheta);
    case 4:
        return mlmx_ld_eval_nd(M, theta, 4, resp, scr, lane, nlanes, dtheta);
    case 5:
        return mlmx_ld_eval_nd(M, theta, 5, resp, scr, lane, nlanes, dtheta);
    default:
        break;
    }
#endif
    return mlmx_ld_eval_nd(M, theta, nd, resp, scr, lane, nlanes, dtheta);
}

/* Criterion and gradient at the optimizer's x (nt values: log theta where
 * M->logp); grad (nt) is written when the value is finite. */
MLMX_HD double mlmx_ld_objective(const mlmx_ld_model *M, const double *x, double *grad,
                                 const double *resp, double *scr, int lane, int nlanes)
{
    double th[MLMX_LD_NTMAX], dth[MLMX_LD_NTMAX];
    for (int t = 0; t < M->nt; t++)
        th[t] = M->logp[t] ? exp(x[t]) : x[t];
    const double f = mlmx_ld_eval(M, th, 1 + M->nt, resp, scr, lane, nlanes, dth);
    if (isfinite(f))
        for (int t = 0; t < M->nt; t++)
            grad[t] = dth[t] * (M->logp[t] ? th[t] : 1.0);
    return f;
}

/* beta and its SEs from the value-only factor left by mlmx_ld_eval(nd = 1):
 * R_X^T beta = the response row's X part, se_k = sqrt(s2 [(R_X R_X^T)^{-1}]_kk).
 * beta (p) out; se (p, may be NULL) out; work: p doubles. */
MLMX_HD void mlmx_ld_beta_se(const mlmx_ld_model *M, const double *S, double s2, double *beta,
                             double *se, double *work)
{
    const int p = M->p, c0 = M->m_re, my = M->m - 1;
    for (int k = p - 1; k >= 0; k--) {
        double s = S[mlmx_ld_pk(my, c0 + k)];
        for (int l = k + 1; l < p; l++)
            s -= S[mlmx_ld_pk(c0 + l, c0 + k)] * beta[l];
        beta[k] = s / S[mlmx_ld_pk(c0 + k, c0 + k)];
    }
    if (!se)
        return;
    for (int k = 0; k < p; k++) { /* column k of R_X^{-1}: rows k.. */
        double v = 0.0;
        for (int i = k; i < p; i++) {
            double s = i == k ? 1.0 : 0.0;
            for (int l = k; l < i; l++)
                s -= S[mlmx_ld_pk(c0 + i, c0 + l)] * work[l];
            work[i] = s / S[mlmx_ld_pk(c0 + i, c0 + i)];
            v += work[i] * work[i];
        }
        se[k] = sqrt(s2 * v);
    }
}

/* Row i of o marked failed. */
MLMX_HD void mlmx_ld_fail_row(const mlmx_ld_model *M, const mlmx_ld_out *o, size_t i, int nev)
{
    for (int t = 0; t < M->nt; t++)
        o->theta[i * M->nt + t] = MLMX_GM_NAN;
    for (int k = 0; k < M->p; k++) {
        o->beta[i * M->p + k] = MLMX_GM_NAN;
        if (o->se)
            o->se[i * M->p + k] = MLMX_GM_NAN;
    }
    o->sigma[i] = o->crit[i] = MLMX_GM_NAN;
    o->nev[i] = nev;
    o->conv[i] = o->sing[i] = 0;
    o->status[i] = 2;
}

/* Fit one replicate from its statistics and write row i of o, as
 * mlmx_lb_fit and the workspace refit (lmm_refit.c) do: BFGS from M->x0
 * within M->xlo, seeded with M->hinv0, M->cfg's tolerances; theta at the
 * best point, singular when a diagonal entry is below 1e-4 (no BOBYQA
 * polish: the criterion still agrees with the workspace's). The optimizer
 * state q (bound here to qstore, 8 nt + nt^2 doubles, and qact, nt ints)
 * is stepped by lane 0 and read by all lanes: on the device it lives in
 * shared memory. Row i is written by lane 0. */
MLMX_HD void mlmx_ld_fit(const mlmx_ld_model *M, const double *resp, double *scr,
                         mlmx_qn_state *q, double *qstore, int *qact, int lane, int nlanes,
                         const mlmx_ld_out *o, size_t i)
{
    const int nt = M->nt, p = M->p;
    if (lane == 0) {
        mlmx_qn_bind(q, nt, qstore, qact);
        mlmx_qn_begin(q, M->x0, M->xlo, 0, &M->cfg, M->hinv0);
    }
    mlmx_ld_sync(nlanes);
    double g[MLMX_LD_NTMAX], th[MLMX_LD_NTMAX];
    while (mlmx_qn_want(q)) {
        const double f = mlmx_ld_objective(M, mlmx_qn_point(q), g, resp, scr, lane, nlanes);
        mlmx_ld_sync(nlanes);
        if (lane == 0) {
            if (isfinite(f)) {
                double *qg = mlmx_qn_grad(q);
                for (int t = 0; t < nt; t++)
                    qg[t] = g[t];
            }
            mlmx_qn_told(q, f);
        }
        mlmx_ld_sync(nlanes);
    }
    int sing = 0;
    for (int t = 0; t < nt; t++) {
        th[t] = M->logp[t] ? exp(q->x[t]) : q->x[t];
        if (M->logp[t] && th[t] < 1e-4)
            sing = 1;
    }
    const int nev = q->n_evals;
    const double f = q->failed ? MLMX_GM_NAN
                               : mlmx_ld_eval(M, th, 1, resp, scr, lane, nlanes, 0);
    if (lane != 0)
        return;
    if (!isfinite(f)) {
        mlmx_ld_fail_row(M, o, i, nev);
        return;
    }
    size_t o_S, o_misc;
    mlmx_ld_layout(M, nlanes, 0, &o_S, 0, &o_misc);
    const double nn = (double)M->n - (M->reml ? (double)p : 0.0);
    const double s2 = scr[o_misc] / nn;
    mlmx_ld_beta_se(M, scr + o_S, s2, o->beta + i * p, o->se ? o->se + i * p : 0,
                    scr + o_misc + 4);
    for (int t = 0; t < nt; t++)
        o->theta[i * nt + t] = th[t];
    o->sigma[i] = sqrt(s2);
    o->crit[i] = f;
    o->nev[i] = nev;
    o->conv[i] = (signed char)q->converged;
    o->sing[i] = (signed char)sing;
    o->status[i] = 1;
}

#endif
