/* Shared pieces of the text and JSON output. */
#ifndef MLMX_OUTPUT_H
#define MLMX_OUTPUT_H
#include "lmm/fit.h"

/* Decimals R's format(x, digits) gives a column of n values. */
int mlmx_fmt_decimals(const double *x, int n, int digits);
/* min, 1Q, median, 3Q, max of the residuals divided by sigma. */
void mlmx_scaled_resid_quantiles(const mlmx_fit *f, double q[5]);
/* Upper tail of chi-square(k) at x; b^T V^{-1} b (V overwritten by its factor). */
double mlmx_chi2_sf(double x, int k);
double mlmx_wald_quadform(int n, double *V, const double *b);
/* A p-value as R's printCoefmat shows it ("NA" for NaN); returns its
 * significance stars. And R's legend of the stars. */
const char *mlmx_fmt_pvalue(double pv, char *buf, size_t cap);
extern const char *const mlmx_signif_legend;
/* 1 if term k is the first term with its grouping factor label. */
int mlmx_group_first(const mlmx_model *m, int k);
/* JSON pieces: a quoted, escaped string; a number in its shortest exact
 * form (null when not finite). */
#include "util/strbuf.h"
void mlmx_json_str(mlmx_strbuf *b, const char *s);
void mlmx_json_num(mlmx_strbuf *b, double x);
/* Write b to path atomically and free it; records the error (naming what
 * and the path) and returns its code. */
mlmx_status mlmx_sb_write_file(mlmx_strbuf *b, const char *path, const char *what);
/* The JSON keys "variance_decomposition" and "icc" (variance_out.c). */
void mlmx_json_variance(mlmx_strbuf *b, const mlmx_fit *f);
/* The JSON keys "coef_tests" and "anova" for an LMM by the method ddf
 * (tests_out.c): null with a "reason" where they do not apply. */
void mlmx_json_tests(mlmx_strbuf *b, const mlmx_fit *f, int ddf);
/* The JSON key "re_se" (varcomp_out.c): the variance components' SEs and
 * intervals, or {"reason": ...} where they are not available. */
void mlmx_json_varcomp(mlmx_strbuf *b, const mlmx_fit *f);
/* The residual structure under the random-effects table as nlme prints it,
 * and the JSON key "residual_structure" (null without one) (resid_out.c). */
void mlmx_sum_resid(mlmx_strbuf *b, const mlmx_fit *f);
void mlmx_json_resid(mlmx_strbuf *b, const mlmx_fit *f);
/* Structured covariances (covstruct_out.c): the summary's line per
 * structured term ("Subject: ar1, rho = 0.93") and the JSON key
 * "covstruct"; nothing for a model without one. */
void mlmx_sum_covstruct(mlmx_strbuf *b, const mlmx_fit *f);
void mlmx_json_covstruct(mlmx_strbuf *b, const mlmx_fit *f);
/* The JSON key "confint" (infer/confint.c). */
void mlmx_json_confint(mlmx_strbuf *b, const mlmx_confint *c);
#endif
