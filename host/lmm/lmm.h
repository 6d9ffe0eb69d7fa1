/* Linear mixed models: the profiled criterion evaluated on sufficient
 * statistics (GUIDE §1). The structure (which blocks exist) is analysed
 * once in mlmx_lmm_stats_build; every theta evaluation reuses the
 * preallocated workspace and allocates nothing. */
#ifndef MLMX_LMM_H
#define MLMX_LMM_H
#include "backend/backend.h"
#include "model/model.h"

/* The numbers of one data set (or one replicate, or one PIRLS iteration)
 * on the shared structure: the blocks of [Z X y]^T W [Z X y]. Only the
 * response's row (Z^T y, X^T y, y^T y) changes between replicates of an
 * LMM; PIRLS refills everything with new weights. */
typedef struct mlmx_lmm_vals {
    double *A11;         /* nblk*q1*q1: first term's per-level Z1^T W Z1 */
    double *B;           /* nrows*q1: per-level Z1^T W [Z_R X y] rows */
    double *ARR;         /* m*m column-major, lower triangle: [Z_R X y]^T W [Z_R X y] */
    double yty;
    int *ridx;           /* nnz_row scratch for the fill */
    double *rval;
} mlmx_lmm_vals;

/* The structure of a model's system, analysed once, immutable afterwards
 * and shared by every workspace and thread; base holds the values for the
 * model's own data (unit weights, the model's response). */
typedef struct mlmx_lmm_stats {
    const mlmx_model *model;
    int p;               /* fixed-effect columns in the system: model->p, or 0 (GLMM modes
                            with beta fixed) */
    int q1, nblk;        /* first term: dimension and levels */
    int m;               /* dense columns: terms 2..K, then X (p), then y */
    int m_re;            /* of which random-effect columns */
    int *term_off;       /* K: first R column of term k (k >= 1; term 0 unused) */
    mlmx_lmm_vals base;
    size_t *row_ptr;     /* nblk+1 */
    int *row_col;        /* rows of B */
    size_t nrows;
    int *col_term, *col_comp, *term_q;
    /* Observations grouped by first-term level (obs_order, obs_start[nblk+1])
     * and, per observation in that order, the B rows (within its level) of
     * its nnz_row entries: enough to refill the values for new weights. */
    size_t *obs_order, *obs_start;
    int *obs_bpos;
    int nnz_row;
    int allow_zero_r;    /* PIRLS: a zero last pivot means r = 0, not an error */
    /* runs of consecutive first-term levels with identical row columns (see
     * mlmx_cluster_batch.grp), and the scratch their update needs */
    int ngrp;
    int *grp;
    size_t gwork_len;
    /* Terms 1..nchain, each nested in the next (term 0 in term 1, ...), are
     * factored stage by stage inside the dense block (block diagonal, see
     * mlmx_block_stage); the rest, from column chain_end, is dense. */
    int nchain;
    int chain_end;
    size_t maxcols;          /* most later columns of one stage level */
    mlmx_block_stage *stages;
    size_t **stage_ptr;
    int **stage_col;
} mlmx_lmm_stats;

/* Numerical state at theta for one thread: the values it factors (its
 * own copy, initialised from the structure's base values) and the factor. */
typedef struct mlmx_lmm_work {
    mlmx_lmm_vals v;
    double *tmats;       /* K templates, each qmax*qmax slot */
    int qmax;
    const double **tptr; /* K pointers into tmats */
    double *L11;         /* nblk*q1*q1 */
    double *L21;         /* nrows*q1 */
    double *S;           /* m*m */
    double logdet_z;     /* log|L_theta|^2 */
    double logdet_x;     /* log|R_X|^2 */
    double r2;           /* penalized residual sum of squares */
    /* gradient scratch */
    double *wv;          /* m: [u_R; beta] */
    double *u1;          /* nblk*q1: first term's spherical modes */
    double *Sinv;        /* (m_re+p)^2, allocated on first use: only the gradient
                            and the conditional variances need it */
    double *scratch;     /* maxcols * qmax, for the nested stages */
    double *gwork;       /* gwork_len: grouped Schur updates (NULL when none) */
    const mlmx_backend *be; /* the last mlmx_lmm_eval's backend (NULL: none yet):
                            the gradient's inverse runs on it too */
} mlmx_lmm_work;

/* The LMM's statistics (numeric response, X in the system). */
mlmx_status mlmx_lmm_stats_build(const mlmx_model *m, mlmx_lmm_stats **out, mlmx_error *err);
/* The same structure for any response kind, with X in the system or not
 * (use_x = 0: columns [Z, z] only), filled with unit weights and y. */
mlmx_status mlmx_lmm_stats_build_ex(const mlmx_model *m, int use_x, mlmx_lmm_stats **out,
                                    mlmx_error *err);
/* Recompute all values v for observation weights w and response z (n each;
 * NULL: 1 and the model's y): the weighted cross-products [Z X z]^T W [Z X z]
 * of penalized iteratively reweighted least squares. Allocates nothing. */
void mlmx_lmm_vals_fill(const mlmx_lmm_stats *s, mlmx_lmm_vals *v, const double *w,
                        const double *z);
/* The entries of observation i's row in the dense columns (terms 2..K,
 * X, then the response z[i]): columns in ridx (increasing), values in rval;
 * returns their number, s->nnz_row. */
int mlmx_lmm_obs_entries(const mlmx_lmm_stats *s, size_t i, const double *z, int *ridx,
                         double *rval);
/* A new response y (n values, unit weights): recompute only the response's
 * row of v (Z^T y, X^T y, y^T y); Z^T Z, Z^T X and X^T X are kept. O(n),
 * allocates nothing. */
void mlmx_lmm_vals_set_response(const mlmx_lmm_stats *s, mlmx_lmm_vals *v, const double *y);
/* Allocate v for the structure s and copy src (NULL: s->base) into it. */
mlmx_status mlmx_lmm_vals_init(const mlmx_lmm_stats *s, mlmx_lmm_vals *v, const mlmx_lmm_vals *src);
void mlmx_lmm_vals_release(mlmx_lmm_vals *v);
void mlmx_lmm_stats_free(mlmx_lmm_stats *s);
mlmx_status mlmx_lmm_work_alloc(const mlmx_lmm_stats *s, mlmx_lmm_work **out, mlmx_error *err);
void mlmx_lmm_work_free(mlmx_lmm_work *w);

/* Factor at theta and return the profiled criterion: -2 log-likelihood
 * (reml = 0) or the REML criterion (reml = 1). */
mlmx_status mlmx_lmm_eval(const mlmx_lmm_stats *s, const mlmx_backend *be, const double *theta,
                          int reml, mlmx_lmm_work *w, double *crit, mlmx_error *err);

/* Spherical modes and beta from the factor in w (after mlmx_lmm_eval):
 * wv[0..m-1) = [u of terms 2..K; beta], u1 = first term's u (level-major). */
void mlmx_lmm_modes(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, double *wv, double *u1);

/* Gradient of the profiled criterion with respect to theta, from the
 * factor in w (call mlmx_lmm_eval at theta first). Uses
 *   d log|M| = 2 tr(Lambda^{-1} dLambda) - 2 tr(Minv_ZZ Lambda^{-1} dLambda)
 *   d r^2    = -2 u^T Lambda^{-1} dLambda u
 * (M = Omega for ML, Omega bordered by X for REML), so it needs an
 * invertible template: MLMX_ERR_NUMERIC when a diagonal theta is 0. */
mlmx_status mlmx_lmm_grad(const mlmx_lmm_stats *s, mlmx_lmm_work *w, int reml, double *grad);
/* The two parts of that gradient: dlogm = d log|M| and dr2 = d r^2 with
 * respect to theta (the profiled gradient is dlogm + (n - p) dr2 / r^2,
 * n for ML), for derivatives of the unprofiled deviance (host/infer/ddf.c).
 * Same conditions as mlmx_lmm_grad. */
mlmx_status mlmx_lmm_grad_parts(const mlmx_lmm_stats *s, mlmx_lmm_work *w, int reml,
                                double *dlogm, double *dr2);
/* (R_X^T R_X)^{-1} (p*p, column-major, both triangles) from the factor in
 * w (after mlmx_lmm_eval): the fixed effects' covariance over sigma^2.
 * MLMX_ERR_NUMERIC when R_X is singular. (lmm/fit.c) */
mlmx_status mlmx_lmm_rx_inverse(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, double *C);

/* Diagonal block (term k, level l) of the inverse of the leading part of
 * the system with mp dense columns, from Si, the lower triangle of the
 * inverse of the dense factor's leading mp block (see grad.c). */
void mlmx_lmm_inverse_block(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, const double *Si,
                            int mp, int k, int l, double *V);

/* The (m-1)^2 buffer for inverses, allocated on the first call (once per
 * workspace); NULL when out of memory. */
double *mlmx_lmm_inverse_buffer(const mlmx_lmm_stats *s, mlmx_lmm_work *w);

/* The inverse of the dense factor's leading mp columns (lower triangle), in
 * the workspace's inverse buffer, by the backend of the last evaluation
 * (its dense_inverse slot; the CPU's before any); NULL when out of memory
 * or singular. */
double *mlmx_lmm_invert_leading(const mlmx_lmm_stats *s, mlmx_lmm_work *w, int mp);

/* Conditional SDs of the random effects, sqrt(scale2 diag(Lambda M^-1
 * Lambda^T)) per term and level, from the factor in w (scale2 = sigma^2 for
 * an LMM, 1 for a GLMM). */
mlmx_status mlmx_lmm_condsd(const mlmx_lmm_stats *s, mlmx_lmm_work *w, double scale2,
                            double **condsd, mlmx_error *err);

/* Criterion from the factor pieces in w (after mlmx_lmm_eval). */
double mlmx_lmm_criterion(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, int reml);

#endif
