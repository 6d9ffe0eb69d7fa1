#define _POSIX_C_SOURCE 200809L
/* Prior weights (mlmx_model_create_weighted, the command's --weights):
 *   - binomial: a proportion response with the trials as weights is the same
 *     likelihood as cbind(successes, failures) (glmer's convention), so the
 *     fits agree to rounding (rel 1e-9);
 *   - Poisson: frequency weights of 2 equal every row twice (rel 1e-9);
 *   - a negative weight is an error naming the row; a linear mixed model
 *     refuses weights (not yet supported) rather than ignoring them. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"

static mlmx_model *models[8];
static int nmodels;

static mlmx_fit *fit(const char *csv, const char *formula, const char *weights,
                     mlmx_family fam)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_data_read_csv(csv, &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create_weighted(d, formula, weights, &m), MLMX_OK, "%s",
                 mlmx_last_error());
    mlmx_data_free(d);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_glmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    models[nmodels++] = m; /* freed after its fit, in free_fits() */
    return f;
}

static void same_fit(mlmx_fit *a, mlmx_fit *b, const char *what)
{
    cr_expect(fabs(mlmx_fit_loglik(a) - mlmx_fit_loglik(b)) <= 1e-9 * fabs(mlmx_fit_loglik(a)),
              "%s: loglik %.12f vs %.12f", what, mlmx_fit_loglik(a), mlmx_fit_loglik(b));
    const mlmx_model *m = mlmx_fit_model(a);
    for (int j = 0; j < mlmx_model_nfixef(m); j++) {
        cr_expect(fabs(mlmx_fit_beta(a)[j] - mlmx_fit_beta(b)[j]) <= 1e-6,
                  "%s: beta[%d] %.10f vs %.10f", what, j, mlmx_fit_beta(a)[j],
                  mlmx_fit_beta(b)[j]);
        cr_expect(fabs(mlmx_fit_se(a)[j] - mlmx_fit_se(b)[j]) <= 1e-6 * mlmx_fit_se(a)[j] + 1e-8,
                  "%s: se[%d] %.10f vs %.10f", what, j, mlmx_fit_se(a)[j], mlmx_fit_se(b)[j]);
    }
    cr_expect(fabs(mlmx_fit_theta(a)[0] - mlmx_fit_theta(b)[0]) <= 1e-6, "%s: theta", what);
}

static void free_fits(mlmx_fit *a, mlmx_fit *b)
{
    mlmx_fit_free(a);
    mlmx_fit_free(b);
    for (int k = 0; k < nmodels; k++)
        mlmx_model_free(models[k]);
    nmodels = 0;
}

Test(glmm_weights, binomial_proportion_with_trials_is_cbind)
{
    const char *csv = MLMX_SOURCE_DIR "/data/cbpp.csv";
    mlmx_fit *a = fit(csv, "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)", NULL,
                      MLMX_FAMILY_BINOMIAL);
    mlmx_fit *b = fit(csv, "prop ~ factor(period) + (1|herd)", "size", MLMX_FAMILY_BINOMIAL);
    same_fit(a, b, "cbpp");
    free_fits(a, b);
}

Test(glmm_weights, poisson_frequency_weights_are_duplicated_rows)
{
    /* cbpp's incidence as counts: each row twice, or once with weight 2 */
    char dup[] = "/tmp/mlmx-wdup-XXXXXX", one[] = "/tmp/mlmx-wone-XXXXXX";
    int fd1 = mkstemp(dup), fd2 = mkstemp(one);
    cr_assert(fd1 >= 0 && fd2 >= 0);
    FILE *in = fopen(MLMX_SOURCE_DIR "/data/cbpp.csv", "r");
    FILE *fa = fdopen(fd1, "w"), *fb = fdopen(fd2, "w");
    cr_assert(in && fa && fb);
    char line[512];
    int first = 1;
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (first) {
            fprintf(fa, "%s\n", line);
            fprintf(fb, "%s,w\n", line);
            first = 0;
            continue;
        }
        fprintf(fa, "%s\n%s\n", line, line);
        fprintf(fb, "%s,2\n", line);
    }
    fclose(in);
    fclose(fa);
    fclose(fb);
    const char *f = "incidence ~ factor(period) + (1|herd)";
    mlmx_fit *a = fit(dup, f, NULL, MLMX_FAMILY_POISSON);
    mlmx_fit *b = fit(one, f, "w", MLMX_FAMILY_POISSON);
    same_fit(a, b, "cbpp counts, doubled");
    free_fits(a, b);
    remove(dup);
    remove(one);
}

Test(glmm_weights, bad_weights_and_lmm)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK);
    /* Days is 0 on some rows: as weights they are allowed (0 = no information) */
    cr_assert_eq(mlmx_model_create_weighted(d, "Reaction ~ Days + (1|Subject)", "Days", &m),
                 MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit *f = NULL;
    cr_expect_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(mlmx_last_error(), "weights") != NULL, "%s", mlmx_last_error());
    mlmx_model_free(m);
    mlmx_data_free(d);
    /* a negative weight, named with its row */
    double y[6] = {1, 0, 1, 1, 0, 1}, x[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 1, -1, 1, 1, 1};
    const char *g[6] = {"a", "a", "b", "b", "c", "c"};
    cr_assert_eq(mlmx_data_create(6, &d), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(d, "y", y, NULL), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_data_add_numeric(d, "x", x, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(d, "w", w, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_strings(d, "g", g), MLMX_OK, "%s", mlmx_last_error());
    cr_expect_eq(mlmx_model_create_weighted(d, "y ~ x + (1|g)", "w", &m), MLMX_ERR_DATA);
    cr_expect(strstr(mlmx_last_error(), "data row 3") != NULL, "%s", mlmx_last_error());
    /* a string column */
    cr_expect_eq(mlmx_model_create_weighted(d, "y ~ x + (1|g)", "g", &m), MLMX_ERR_DATA);
    cr_expect(strstr(mlmx_last_error(), "not numeric") != NULL, "%s", mlmx_last_error());
    mlmx_data_free(d);
}

/* offset(): a constant offset of 2 on the log scale moves the intercept by
 * exactly -2 and leaves the rest of the Poisson fit unchanged. */
Test(glmm_weights, offset_shifts_the_intercept)
{
    char with[] = "/tmp/mlmx-off-XXXXXX";
    int fd = mkstemp(with);
    cr_assert(fd >= 0);
    FILE *in = fopen(MLMX_SOURCE_DIR "/data/cbpp.csv", "r");
    FILE *out = fdopen(fd, "w");
    cr_assert(in && out);
    char line[512];
    int first = 1;
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        fprintf(out, "%s,%s\n", line, first ? "o" : "2");
        first = 0;
    }
    fclose(in);
    fclose(out);
    mlmx_fit *a = fit(with, "incidence ~ factor(period) + (1|herd)", NULL, MLMX_FAMILY_POISSON);
    mlmx_fit *b = fit(with, "incidence ~ factor(period) + offset(o) + (1|herd)", NULL,
                      MLMX_FAMILY_POISSON);
    cr_expect(fabs(mlmx_fit_loglik(a) - mlmx_fit_loglik(b)) <= 1e-9 * fabs(mlmx_fit_loglik(a)),
              "loglik %.12f vs %.12f", mlmx_fit_loglik(a), mlmx_fit_loglik(b));
    cr_expect(fabs(mlmx_fit_beta(b)[0] - (mlmx_fit_beta(a)[0] - 2.0)) < 1e-6,
              "intercept %.8f vs %.8f - 2", mlmx_fit_beta(b)[0], mlmx_fit_beta(a)[0]);
    for (int j = 1; j < 4; j++)
        cr_expect(fabs(mlmx_fit_beta(b)[j] - mlmx_fit_beta(a)[j]) < 1e-6, "beta[%d]", j);
    free_fits(a, b);
    remove(with);
}
