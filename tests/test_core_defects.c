/* Defects of the core found by a user's adversarial battery (issue 7 §9):
 * silent wrong answers on overflowing or constant responses, the limit on
 * fixed-effect columns, the fixed stack arrays of theta, and the prepared
 * problem's own checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"

static mlmx_data *sleep_with(double (*f)(double))
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK);
    size_t n = mlmx_data_nrow(d);
    /* a copy with the response transformed: build a new table */
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days|Subject)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    mlmx_fit *fit = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &fit), MLMX_OK);
    const double *fv = mlmx_fit_fitted(fit), *rv = mlmx_fit_residuals(fit);
    double *y = malloc(n * sizeof *y), *days = malloc(n * sizeof *days);
    const char **subj = malloc(n * sizeof *subj);
    char (*buf)[32] = malloc(n * sizeof *buf);
    const double *beta = mlmx_fit_beta(fit);
    for (size_t i = 0; i < n; i++) {
        y[i] = f(fv[i] + rv[i]);
        /* Days recovered from the design: fitted = X beta + Z b */
        days[i] = (double)(i % 10);
        snprintf(buf[i], sizeof buf[i], "s%zu", i / 10);
        subj[i] = buf[i];
    }
    (void)beta;
    mlmx_data *out = NULL;
    cr_assert_eq(mlmx_data_create(n, &out), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(out, "Reaction", y, NULL), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_data_add_numeric(out, "Days", days, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_strings(out, "Subject", subj), MLMX_OK);
    free(y);
    free(days);
    free(subj);
    free(buf);
    mlmx_fit_free(fit);
    mlmx_model_free(m);
    mlmx_data_free(d);
    return out;
}

static double scale_big(double y) { return y * 1e300; }
static double constant(double y) { (void)y; return 250.0; }
static double huge(double y) { return 1e308 * (y > 300 ? 1.0 : 0.9); }

static void expect_refused(double (*f)(double), const char *needle)
{
    mlmx_data *d = sleep_with(f);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days|Subject)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    mlmx_fit *fit = NULL;
    cr_expect_neq(mlmx_fit_lmm(m, &o, &fit), MLMX_OK, "a fit was returned");
    cr_expect_null(fit);
    cr_expect(strstr(mlmx_last_error(), needle) != NULL, "%s", mlmx_last_error());
    mlmx_fit_free(fit);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(core_defects, response_scaled_by_1e300_is_refused)
{
    expect_refused(scale_big, "rescale the response");
}

Test(core_defects, response_near_1e308_is_refused)
{
    expect_refused(huge, "rescale the response");
}

Test(core_defects, constant_response_is_refused)
{
    expect_refused(constant, "constant");
}

Test(core_defects, exp_of_reaction_is_refused)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "exp(Reaction) ~ Days + (Days|Subject)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    mlmx_fit *fit = NULL;
    cr_expect_neq(mlmx_fit_lmm(m, &o, &fit), MLMX_OK);
    cr_expect(strstr(mlmx_last_error(), "rescale") != NULL, "%s", mlmx_last_error());
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* A 600-level fixed factor (lme4 fits it; mlmx used to stop at 511
 * columns). y = level effect + group effect + noise, so the fit must also
 * recover the level effects. */
Test(core_defects, six_hundred_level_fixed_factor_fits, .timeout = 60)
{
    const size_t n = 3000;
    double *y = malloc(n * sizeof *y);
    const char **f = malloc(n * sizeof *f), **g = malloc(n * sizeof *g);
    char (*fb)[32] = malloc(n * sizeof *fb), (*gb)[32] = malloc(n * sizeof *gb);
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        double noise = ((double)(s >> 8) / 16777216.0 - 0.5);
        size_t lev = i % 600, grp = (i / 7) % 50;
        y[i] = 0.01 * (double)lev + 0.3 * (double)(grp % 5) + noise;
        snprintf(fb[i], sizeof fb[i], "L%03zu", lev);
        snprintf(gb[i], sizeof gb[i], "G%02zu", grp);
        f[i] = fb[i];
        g[i] = gb[i];
    }
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_create(n, &d), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(d, "y", y, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_strings(d, "f", f), MLMX_OK);
    cr_assert_eq(mlmx_data_add_strings(d, "g", g), MLMX_OK);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "y ~ f + (1|g)", &m), MLMX_OK, "%s", mlmx_last_error());
    cr_expect_eq(mlmx_model_nfixef(m), 600);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    mlmx_fit *fit = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &fit), MLMX_OK, "%s", mlmx_last_error());
    cr_expect(mlmx_fit_converged(fit));
    /* level 599's effect relative to level 0 is 5.99 (noise SD 0.29, 5 obs each) */
    cr_expect(fabs(mlmx_fit_beta(fit)[599] - 5.99) < 0.6, "%g", mlmx_fit_beta(fit)[599]);
    mlmx_fit_free(fit);
    mlmx_model_free(m);
    mlmx_data_free(d);
    free(y);
    free(f);
    free(g);
    free(fb);
    free(gb);
}

/* Two 16-column terms: 272 covariance parameters, more than the 256-entry
 * stack arrays the quasi-Newton path once had (UBSan reported the write
 * past them). A bounded number of evaluations runs through every buffer. */
Test(core_defects, bfgs_with_272_theta_parameters, .timeout = 120)
{
    const size_t n = 1200;
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_create(n, &d), MLMX_OK);
    double *col = malloc(n * sizeof *col);
    const char **a = malloc(n * sizeof *a), **b = malloc(n * sizeof *b);
    char (*ab)[32] = malloc(n * sizeof *ab), (*bb)[32] = malloc(n * sizeof *bb);
    unsigned s = 99;
    char name[8];
    for (int c = 0; c < 16; c++) {
        for (size_t i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            col[i] = (double)(s >> 8) / 16777216.0 - 0.5;
        }
        snprintf(name, sizeof name, c == 0 ? "y" : "x%d", c);
        cr_assert_eq(mlmx_data_add_numeric(d, name, col, NULL), MLMX_OK);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(ab[i], sizeof ab[i], "a%zu", i % 20);
        snprintf(bb[i], sizeof bb[i], "b%zu", (i / 3) % 25);
        a[i] = ab[i];
        b[i] = bb[i];
    }
    cr_assert_eq(mlmx_data_add_strings(d, "A", a), MLMX_OK);
    cr_assert_eq(mlmx_data_add_strings(d, "B", b), MLMX_OK);
    const char *rhs = "x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11 + x12 + x13 + x14 + x15";
    char formula[1024];
    snprintf(formula, sizeof formula, "y ~ x1 + (1 + %s | A) + (1 + %s | B)", rhs, rhs);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    cr_expect_eq(mlmx_model_ntheta(m), 272);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.optimizer = MLMX_OPTIM_QUASI_NEWTON;
    o.max_evaluations = 15;
    o.conditional_variances = 0;
    mlmx_fit *fit = NULL;
    mlmx_status st = mlmx_fit_lmm(m, &o, &fit);
    cr_expect(st == MLMX_OK || st == MLMX_ERR_NUMERIC, "%s", mlmx_last_error());
    if (st == MLMX_OK)
        cr_expect(isfinite(mlmx_fit_criterion(fit)));
    mlmx_fit_free(fit);
    mlmx_model_free(m);
    mlmx_data_free(d);
    free(col);
    free(a);
    free(b);
    free(ab);
    free(bb);
}

/* The prepared problem refuses parameters it cannot simulate from. */
Test(core_defects, problem_rejects_bad_parameters)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days|Subject)", &m), MLMX_OK);
    const double beta[2] = {250, 10};
    const double bad_theta[3] = {-1.0, 0.0, 0.2}, theta[3] = {1.0, 0.0, 0.2};
    mlmx_problem *p = NULL;
    cr_expect_eq(mlmx_problem_create_at(m, NULL, bad_theta, beta, NULL, 25.0, &p), MLMX_ERR_ARG);
    cr_expect(strstr(mlmx_last_error(), "Subject") != NULL, "%s", mlmx_last_error());
    cr_expect_eq(mlmx_problem_create_at(m, NULL, theta, beta, NULL, -1.0, &p), MLMX_ERR_ARG);
    cr_expect(strstr(mlmx_last_error(), "sigma") != NULL, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create_at(m, NULL, theta, beta, NULL, 25.0, &p), MLMX_OK,
                 "%s", mlmx_last_error());
    mlmx_workspace *w = NULL;
    cr_assert_eq(mlmx_workspace_create(p, &w), MLMX_OK);
    cr_expect_eq(mlmx_workspace_fit(w, 1), MLMX_ERR_ARG); /* no response yet */
    cr_assert_eq(mlmx_workspace_simulate(w, 3, 0, NULL), MLMX_OK);
    cr_assert_eq(mlmx_workspace_fit(w, 1), MLMX_OK, "%s", mlmx_last_error());
    /* simulated from sigma 25, SD(intercept) 25: the refit lands near them */
    const double *par = mlmx_workspace_params(w);
    cr_expect_eq(mlmx_problem_nparams(p), 6);
    cr_expect_str_eq(mlmx_problem_param_name(p, 5), "sigma");
    cr_expect(fabs(par[5] - 25.0) < 5.0, "sigma %g", par[5]);
    mlmx_workspace_free(w);
    mlmx_problem_free(p);
    mlmx_model_free(m);
    mlmx_data_free(d);
}
