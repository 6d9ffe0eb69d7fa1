/* The prepared problem against the ordinary fit: a response simulated by
 * a workspace, refitted there, must give what mlmx_fit_lmm / mlmx_fit_glmm
 * give on a data set holding that response (the same criterion and
 * estimates to the optimizers' tolerance), and the simulation must be a
 * pure function of (seed, replicate). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlmx.h"

static int near(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= rel * fabs(b) + abs_tol;
}

/* The data set d with column `col` replaced by y (numeric); the other
 * columns copied as they are (factors through their labels). */
static mlmx_data *with_column(const mlmx_data *d, const char *col, const double *y,
                              const char *csv)
{
    (void)d;
    /* re-read the file and rebuild: the public API has no column accessor
     * for values, so the test writes a CSV with the response replaced */
    FILE *in = fopen(csv, "r");
    cr_assert_not_null(in);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "/tmp/mlmx_test_replicate_%d.csv", (int)getpid());
    FILE *out = fopen(tmp, "w");
    cr_assert_not_null(out);
    char line[4096];
    cr_assert_not_null(fgets(line, sizeof line, in));
    fputs(line, out);
    /* which field is col */
    int target = -1, k = 0;
    for (char *p = strtok(line, ",\n"); p; p = strtok(NULL, ",\n"), k++)
        if (strcmp(p, col) == 0)
            target = k;
    cr_assert_geq(target, 0);
    size_t r = 0;
    while (fgets(line, sizeof line, in)) {
        int f = 0;
        char *p = line;
        for (;;) {
            char *c = strpbrk(p, ",\n");
            if (f > 0)
                fputc(',', out);
            if (f == target)
                fprintf(out, "%.17g", y[r]);
            else
                fwrite(p, 1, c ? (size_t)(c - p) : strlen(p), out);
            f++;
            if (!c || *c == '\n')
                break;
            p = c + 1;
        }
        fputc('\n', out);
        r++;
    }
    fclose(in);
    fclose(out);
    mlmx_data *nd = NULL;
    cr_assert_eq(mlmx_data_read_csv(tmp, &nd), MLMX_OK, "%s", mlmx_last_error());
    remove(tmp);
    return nd;
}

static void compare(const char *csv, const char *formula, const char *col, mlmx_family fam)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(csv, &d), MLMX_OK);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    mlmx_fit *f = NULL;
    mlmx_status st = fam ? mlmx_fit_glmm(m, &o, &f) : mlmx_fit_lmm(m, &o, &f);
    cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
    mlmx_problem *p = NULL;
    cr_assert_eq(mlmx_problem_create(f, &p), MLMX_OK, "%s", mlmx_last_error());
    mlmx_workspace *w = NULL, *w2 = NULL;
    cr_assert_eq(mlmx_workspace_create(p, &w), MLMX_OK);
    cr_assert_eq(mlmx_workspace_create(p, &w2), MLMX_OK);
    const size_t n = mlmx_model_nobs(m);
    double *y = malloc(n * sizeof *y), *y2 = malloc(n * sizeof *y2);
    for (int rep = 0; rep < 3; rep++) {
        /* pure function of (seed, replicate), in any workspace, any order */
        cr_assert_eq(mlmx_workspace_simulate(w2, 11, (uint64_t)rep + 100, NULL), MLMX_OK);
        cr_assert_eq(mlmx_workspace_simulate(w, 11, (uint64_t)rep, y), MLMX_OK);
        cr_assert_eq(mlmx_workspace_simulate(w2, 11, (uint64_t)rep, y2), MLMX_OK);
        cr_expect(memcmp(y, y2, n * sizeof *y) == 0, "replicate %d differs between workspaces", rep);
        cr_assert_eq(mlmx_workspace_fit(w, 1), MLMX_OK, "%s", mlmx_last_error());
        /* the same response as data, fitted from scratch */
        mlmx_data *nd = with_column(d, col, y, csv);
        mlmx_model *nm = NULL;
        cr_assert_eq(mlmx_model_create(nd, formula, &nm), MLMX_OK, "%s", mlmx_last_error());
        mlmx_fit *nf = NULL;
        st = fam ? mlmx_fit_glmm(nm, &o, &nf) : mlmx_fit_lmm(nm, &o, &nf);
        cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
        cr_expect(near(mlmx_workspace_criterion(w), mlmx_fit_criterion(nf), 1e-7, 1e-7),
                  "replicate %d: criterion %.10g vs %.10g", rep, mlmx_workspace_criterion(w),
                  mlmx_fit_criterion(nf));
        const double *b = mlmx_workspace_beta(w), *bf = mlmx_fit_beta(nf);
        const double *se = mlmx_workspace_se(w), *sef = mlmx_fit_se(nf);
        for (int j = 0; j < mlmx_model_nfixef(m); j++) {
            cr_expect(near(b[j], bf[j], 1e-3, 1e-4), "rep %d beta %d: %g vs %g", rep, j, b[j],
                      bf[j]);
            cr_expect(near(se[j], sef[j], 2e-3, 1e-5), "rep %d se %d: %g vs %g", rep, j, se[j],
                      sef[j]);
        }
        if (!mlmx_workspace_singular(w))
            for (int t = 0; t < mlmx_model_ntheta(m); t++)
                cr_expect(near(mlmx_workspace_theta(w)[t], mlmx_fit_theta(nf)[t], 2e-3, 2e-4),
                          "rep %d theta %d: %g vs %g", rep, t, mlmx_workspace_theta(w)[t],
                          mlmx_fit_theta(nf)[t]);
        mlmx_fit_free(nf);
        mlmx_model_free(nm);
        mlmx_data_free(nd);
    }
    free(y);
    free(y2);
    mlmx_workspace_free(w);
    mlmx_workspace_free(w2);
    mlmx_problem_free(p);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(replicate, lmm_refit_equals_a_full_fit, .timeout = 60)
{
    compare(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)",
            "Reaction", MLMX_FAMILY_GAUSSIAN);
}

Test(replicate, nested_lmm_refit_equals_a_full_fit, .timeout = 60)
{
    compare(MLMX_SOURCE_DIR "/data/pastes.csv", "strength ~ 1 + (1|batch/cask)", "strength",
            MLMX_FAMILY_GAUSSIAN);
}

Test(replicate, binomial_refit_equals_a_full_fit, .timeout = 60)
{
    compare(MLMX_SOURCE_DIR "/data/cbpp.csv",
            "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", "incidence",
            MLMX_FAMILY_BINOMIAL);
}

Test(replicate, poisson_refit_equals_a_full_fit, .timeout = 60)
{
    compare(MLMX_SOURCE_DIR "/data/grouseticks.csv",
            "TICKS ~ factor(YEAR) + (1|BROOD) + (1|LOCATION)", "TICKS", MLMX_FAMILY_POISSON);
}
