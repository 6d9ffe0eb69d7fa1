/* Model comparison (include/mlmx.h, "Model comparison"): the table that
 * mlmx_anova_create (compare.c), mlmx_ranova_create and mlmx_drop1_create
 * (ranova.c) fill
 * and compare_out.c prints and writes. Internal. */
#ifndef MLMX_INFER_COMPARE_H
#define MLMX_INFER_COMPARE_H
#include "mlmx.h"

enum { MLMX_CMP_ANOVA = 0, MLMX_CMP_RANOVA = 1, MLMX_CMP_DROP1 = 2 };

struct mlmx_anova {
    int kind;             /* MLMX_CMP_ANOVA, MLMX_CMP_RANOVA or MLMX_CMP_DROP1 */
    int nrows;
    mlmx_anova_row *rows; /* their name and formula point into names / formulas */
    char **names, **formulas;
    mlmx_fit **fits;      /* refits and reduced fits the table owns (nfits) */
    mlmx_model **models;  /* reduced models it owns (nmodels) */
    int nfits, nmodels;
    int refitted;         /* REML fits refitted by ML */
    int boundary;         /* some test is of random effects: the boundary caveat */
    char **warnings;
    int nwarnings;
    char *formula;        /* ranova, drop1: the full model's formula */
    mlmx_method method;   /* the method of every row */
};

/* A zeroed table with room for n rows, fits and models; NULL on OOM. */
mlmx_anova *mlmx_cmp_alloc(int kind, int n);
/* Append a warning (printf style); MLMX_ERR_NOMEM when it cannot. */
mlmx_status mlmx_cmp_warn(mlmx_anova *a, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The log-likelihood of the linear model y ~ X (the model's response and
 * fixed effects, no random effects) by QR: ML  -n/2 (log(2 pi RSS/n) + 1);
 * REML as R's logLik(lm, REML = TRUE). MLMX_ERR_NUMERIC for n <= p. */
mlmx_status mlmx_cmp_lm_loglik(const mlmx_model *m, int reml, double *ll);
/* Chisq, Df and Pr(>Chisq) of row r against row r0 (r's log-likelihood
 * minus r0's, doubled and clamped at 0 as lme4 does; Df the difference in
 * npar, the sign taken so that Df >= 0; Pr NaN when Df is 0). */
void mlmx_cmp_lrt(mlmx_anova_row *r, const mlmx_anova_row *r0);
/* P(chibar2(01) >= x) for the mixture 0.5 chi2_0 + 0.5 chi2_1: half the
 * chi2_1 tail for x > 0, and 1 at x = 0 (the point mass at 0 counts; a
 * statistic below 1e-8, two fits equal to rounding, is taken as 0). */
double mlmx_cmp_chibar01(double x);
#endif
