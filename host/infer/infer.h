/* Internal pieces of the tests of fixed effects (issue 9 §3), shared by
 * ddf.c (Satterthwaite), kr.c (Kenward-Roger), anova3.c (Type III
 * contrasts) and ftest.c (the F tests and the summary's columns). */
#ifndef MLMX_INFER_H
#define MLMX_INFER_H
#include "api_internal.h"
#include "lmm/fit.h"
#include "model/model.h"

/* Satterthwaite: the pieces at the estimates (ddf.c). */
typedef struct mlmx_ddf_state {
    int nt, nv, p;   /* theta entries, varpar entries (nt + 1), fixed effects */
    double *A;       /* nv * nv: 2 H^{-1}, the covariance of (theta, sigma) */
    double *J;       /* nv blocks of p * p: dV/dvarpar_k */
    double *V;       /* p * p: vcov(beta) */
} mlmx_ddf_state;

/* nlme's containment (inner-outer) df of m's fixed effects (p values;
 * NULL: not wanted) and of its fixed terms (m->nfixterms values, for F
 * tests of terms) (containment.c). MLMX_ERR_UNSUPPORTED for crossed
 * grouping factors. */
mlmx_status mlmx_containment_df(const mlmx_model *m, double *coef_df, double *term_df,
                                mlmx_error *err);

/* MLMX_ERR_UNSUPPORTED, recorded, naming `what`, when f's model has a
 * residual correlation or variance structure (host/resid), for which
 * `what` is not available yet; MLMX_OK otherwise. */
mlmx_status mlmx_infer_iid(const mlmx_fit *f, const char *what);

/* Errors (recorded): MLMX_ERR_UNSUPPORTED for a GLMM or a singular fit. */
/* what: the quantity asked for, named in the errors. */
mlmx_status mlmx_ddf_prepare(const mlmx_fit *f, const char *what, mlmx_ddf_state *S);
void mlmx_ddf_free(mlmx_ddf_state *S);
/* The state of fit f, prepared once and cached in the fit (lmm/fit.h's
 * mlmx_fit_cache) where it has a cache; *owned is then NULL, else the
 * state to give to mlmx_ddf_release. Errors as mlmx_ddf_prepare. */
mlmx_status mlmx_ddf_acquire(const mlmx_fit *f, const char *what, const mlmx_ddf_state **S,
                             mlmx_ddf_state **owned);
void mlmx_ddf_release(mlmx_ddf_state *owned);
/* Satterthwaite's df of L^T beta (L: p values); *var = L^T V L. Reads S
 * only (safe on a shared state). */
double mlmx_ddf_contrast(const mlmx_ddf_state *S, const double *L, double *var);

/* Kenward-Roger (kr.c): pbkrtest's vcovAdj pieces for the linear
 * covariance parameterisation Sigma = sum_r psi_r G_r (each random-effect
 * covariance entry, then sigma^2). */
typedef struct mlmx_kr_state {
    int p, nv;
    double *Phi;     /* p * p: vcov(beta) */
    double *PhiA;    /* p * p: the adjusted covariance */
    double *P;       /* nv blocks of p * p: X^T dSigma^{-1}/dpsi_r X */
    double *W;       /* nv * nv: 2 (expected information)^{-1} */
} mlmx_kr_state;

/* Errors (recorded): MLMX_ERR_UNSUPPORTED for a GLMM, an ML fit, or a
 * random-effect system too large for its dense q x q matrices. */
mlmx_status mlmx_kr_prepare(const mlmx_fit *f, mlmx_kr_state *S);
void mlmx_kr_free(mlmx_kr_state *S);
/* pbkrtest's denominator df for the q x p contrast L (row-major, full row
 * rank q), and the F scaling of its Wald statistic (*scale). */
double mlmx_kr_ddf(const mlmx_kr_state *S, const double *L, int q, double *scale);

/* Type III contrasts (anova3.c), as lmerTest's get_contrasts_type3 (or
 * type 1 with at most one term): for each term t of m->fixterms, rows[t]
 * rows of p values (row-major) in *L[t]. Free each with free(). */
mlmx_status mlmx_type3_contrasts(const mlmx_model *m, double ***L, int **rows);

/* Small dense helpers (ftest.c). */
/* Solve A x = b in place for symmetric positive definite A (n x n,
 * column-major, overwritten): 0 or the LAPACK info. */
int mlmx_spd_solve(int n, double *A, double *b, int nrhs);
#endif
