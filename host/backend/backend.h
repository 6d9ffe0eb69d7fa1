/* The compute backend interface. The LMM and GLMM estimators see compute
 * only through this struct; host/backend/registry.c is the one file that
 * knows which backends exist. The CPU backend fills every slot and is the
 * oracle the CUDA backend is tested against. */
#ifndef MLMX_BACKEND_H
#define MLMX_BACKEND_H
#include <stddef.h>
#include "mlmx.h"
#include "util/error.h"

/* The first (largest) random-effect term's per-level blocks: a batch of
 * small independent problems, one per level ("cluster"). The rest of the
 * model (other terms, X, y) is a dense block of m columns ("R columns").
 *   A     nblk*q*q   Z1^T Z1 per level (lower triangle used), column-major
 *   B     rows*q     row-major: row r = (Z1 block of level j)^T r-column
 *                    row_col[r], for r in [row_ptr[j], row_ptr[j+1])
 * Columns of R that belong to a random-effect term k >= 2 are transformed
 * by that term's template: col_term[c] = term index into tmats (-1 for X and
 * y), col_comp[c] = component in [0, term_q[k]); the q_k columns of one
 * level are consecutive. */
typedef struct mlmx_cluster_batch {
    int nblk, q, m;
    const double *A;
    const size_t *row_ptr;
    const int *row_col;
    const double *B;
    const int *col_term;
    const int *col_comp;
    const int *term_q;
    /* Runs of consecutive levels whose rows have identical columns (a
     * balanced crossed design, every subject meeting every item): levels
     * [grp[g], grp[g+1]) share level grp[g]'s row_col. Their Schur updates
     * are one rank-k update (dsyrk) of a dense block. ngrp = 0: none.
     * gwork holds the gathered rows and the block (see mlmx_lmm_stats). */
    int ngrp;
    const int *grp;
    double *gwork;
} mlmx_cluster_batch;

/* One stage of nested terms inside the dense block: a term whose levels
 * are independent of each other once the finer terms are eliminated (the
 * finer term is nested in it), so its part of the dense block is block
 * diagonal. Level l owns columns [c0 + l*q, c0 + (l+1)*q) and couples only
 * to the later columns col[col_ptr[l] .. col_ptr[l+1]) (increasing). */
typedef struct mlmx_block_stage {
    int nblk, q, c0;
    const size_t *col_ptr;
    const int *col;
} mlmx_block_stage;

typedef struct mlmx_backend {
    const char *name;
    /* For every level j: L11_j = chol(T1^T A_j T1 + I) (q*q, lower,
     * column-major) and the rows of L21_j = (Lambda_R^T B_j T1) L11_j^{-T}
     * (same layout as B). tmats[0] is T1, tmats[k] the template of term k.
     * *logdiag = sum over j of log det L11_j. MLMX_ERR_NUMERIC when a block
     * is not positive definite. */
    mlmx_status (*cluster_factor)(const mlmx_cluster_batch *b, const double *const *tmats,
                                  double *L11, double *L21, double *logdiag);
    /* S (m*m, column-major, lower triangle) -= sum_j L21_j L21_j^T, scattered
     * to the rows/columns row_col. */
    mlmx_status (*schur_downdate)(const mlmx_cluster_batch *b, const double *L21, double *S);
    /* Factor one nested stage of the dense block S (m*m, column-major,
     * lower) in place, exactly as a dense Cholesky would leave those
     * columns, skipping the zero blocks: each level's q*q block, its rows in
     * the later columns, and the update of the later columns. scratch holds
     * (max columns per level)*q doubles. MLMX_ERR_NUMERIC with *fail_col. */
    mlmx_status (*stage_chol)(const mlmx_block_stage *st, int m, double *S, double *scratch,
                              int *fail_col);
    /* In-place lower Cholesky of an n*n block with leading dimension lda
     * (column-major). Returns MLMX_ERR_NUMERIC with *fail_col = first
     * failing column (0-based). */
    mlmx_status (*dense_chol)(int n, double *S, int lda, int *fail_col);
    /* The inverse of L L^T from its lower Cholesky factor L (n*n, leading
     * dimension lda, column-major), in place, lower triangle (LAPACK's
     * dpotri): the gradient's and the conditional variances' blocks.
     * MLMX_ERR_NUMERIC when L has a zero on its diagonal. */
    mlmx_status (*dense_inverse)(int n, double *S, int lda);
} mlmx_backend;

/* The backend named `name` ("cpu", "cuda"), or NULL when it is unknown or
 * not usable here (see mlmx_backend_unavailable_reason). NULL or "" gives
 * the default (cpu). "cuda" is returned only in builds with CUDA, with
 * every slot filled, a device present and a driver whose CUDA major
 * version is at least the runtime's. Allocates nothing; may query the
 * CUDA driver. */
const mlmx_backend *mlmx_backend_get(const char *name);

/* Why mlmx_backend_get(name) gives NULL, as a sentence for the user
 * ("unknown backend 'x' ...", "mlmx was built without CUDA ...", "no CUDA
 * device (driver 13.0, runtime 13.0)", "CUDA driver too old: ..."), or NULL
 * when the backend is available. The text is static or thread-local: valid
 * until the thread's next call. NULL or "" means "cpu". */
const char *mlmx_backend_unavailable_reason(const char *name);

/* The backend a single fit uses for `device` (mlmx_fit_options): cpu
 * gives `name` (NULL: cpu); gpu gives "cuda" (MLMX_ERR_UNSUPPORTED with
 * the reason when it is unavailable, or MLMX_ERR_ARG when `name` names
 * another backend); auto gives "cuda" when it is available and
 * dense_cols (the columns of the model's crossed dense block) is at least
 * MLMX_DEVICE_DENSE_MIN, else the CPU. Writes where the fit runs ("cpu",
 * or "gpu: <device> (cuda backend)") to where[wlen] and, when that differs
 * from the request, why to note[nlen] ("" otherwise). */
#define MLMX_DEVICE_DENSE_MIN 300
mlmx_status mlmx_backend_for_device(mlmx_device device, const char *name, int dense_cols,
                                    const mlmx_backend **out, char *where, size_t wlen,
                                    char *note, size_t nlen, mlmx_error *err);

/* The registered backend names, available or not: i in [0, count). */
int mlmx_backend_count(void);
const char *mlmx_backend_name(int i);

/* The CPU backend (always present, every slot filled): the oracle. */
const mlmx_backend *mlmx_backend_cpu(void);

/* The CUDA backend and its availability check (NULL: usable; else the
 * reason), defined in host/backend/cuda.c only in builds with
 * MLMX_HAVE_CUDA. Use mlmx_backend_get("cuda"), which checks. */
const mlmx_backend *mlmx_backend_cuda(void);
const char *mlmx_backend_cuda_unavailable(void);

#endif
