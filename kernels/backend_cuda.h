/* The CUDA backend's validated C entry points: one per slot of
 * mlmx_backend (host/backend/backend.h), with the CPU backend's semantics
 * exactly. Plain C declarations: host/backend/cuda.c fills the backend
 * struct with them without including a CUDA header. Defined only in builds
 * with MLMX_HAVE_CUDA (kernels/backend_cuda.cu, kernels/cuda_ctx.cu).
 *
 * Memory: every argument is a HOST pointer. Each call copies its inputs to
 * the device, runs on the context's stream, copies the outputs back and
 * synchronises, so a call is complete when it returns. The device buffers,
 * the stream and the cuBLAS/cuSOLVER handles live in one process-wide
 * context, created on the first call and grown as needed (so a call may
 * allocate device memory); mlmx_cuda_release() frees it (also run at exit).
 * Calls from several threads are serialised on that context.
 *
 * Status codes shared by the entry points:
 *   MLMX_OK
 *   MLMX_ERR_NUMERIC      a block is not positive definite (the slot's own
 *                         meaning, *fail_col as the CPU sets it), or a
 *                         CUDA/cuBLAS/cuSOLVER call failed
 *   MLMX_ERR_NOMEM        a device (or pinned/staging) allocation failed
 *   MLMX_ERR_UNSUPPORTED  no usable device, or q > 16
 *   MLMX_ERR_ARG          NULL or inconsistent arguments
 * After any status but MLMX_OK and a numeric (not positive definite)
 * result, mlmx_cuda_last_error() names the failing call and the CUDA error.
 */
#ifndef MLMX_BACKEND_CUDA_H
#define MLMX_BACKEND_CUDA_H
#include "backend/backend.h"
#include "cuda_entry.h"

/* Slot cluster_factor: for every level j of b, L11_j = chol(T1^T A_j T1 + I)
 * and the rows of L21 (layouts in mlmx_cluster_batch); *logdiag = sum_j log
 * det L11_j, summed on the host in level order as the CPU does. tmats[k]:
 * term k's q_k*q_k template (k < 1 + max col_term). b->grp/gwork unused. */
mlmx_status mlmx_cuda_cluster_factor(const mlmx_cluster_batch *b, const double *const *tmats,
                                     double *L11, double *L21, double *logdiag);

/* Slot schur_downdate: S (b->m * b->m, column-major, lower triangle) -=
 * sum_j L21_j L21_j^T scattered to rows/columns row_col. L21: b's rows*q.
 * The level groups (b->grp) are not needed: every level is one block. */
mlmx_status mlmx_cuda_schur_downdate(const mlmx_cluster_batch *b, const double *L21, double *S);

/* Slot stage_chol: factor the nested stage st of the m*m dense block S in
 * place. scratch is unused (the device holds its own). On a block that is
 * not positive definite: MLMX_ERR_NUMERIC and *fail_col = the column of
 * the first failing pivot of the first failing level (as on the CPU). */
mlmx_status mlmx_cuda_stage_chol(const mlmx_block_stage *st, int m, double *S, double *scratch,
                                 int *fail_col);

/* Slot dense_chol: in-place lower Cholesky (cusolverDnDpotrf) of the n*n
 * block S with leading dimension lda >= n. Not positive definite:
 * MLMX_ERR_NUMERIC and *fail_col = first failing column (0-based, LAPACK's
 * info - 1). n == 0: MLMX_OK, nothing copied. */
mlmx_status mlmx_cuda_dense_chol(int n, double *S, int lda, int *fail_col);
/* The dense_inverse slot: cuSOLVER potri on a device copy of the block. */
mlmx_status mlmx_cuda_dense_inverse(int n, double *S, int lda);

/* Free the context (device buffers, stream, handles). Safe to call when
 * none exists, repeatedly, and before a later call creates a new one. */
void mlmx_cuda_release(void);

/* The calling thread's last CUDA backend error message ("" when none). */
const char *mlmx_cuda_last_error(void);

/* CUDA driver and runtime versions (1000*major + 10*minor, e.g. 13000);
 * 0 for one that cannot be queried (no driver installed). */
void mlmx_cuda_versions(int *driver, int *runtime);

#endif
