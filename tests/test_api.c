/* The public API's contracts: argument checks, NULL-safe frees, status
 * codes with messages, non-convergence reported as a result, the data set
 * freed before the model is used, accessors out of range. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mlmx.h"

static mlmx_data *sleep_data(void)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK, "%s",
                 mlmx_last_error());
    return d;
}

Test(api, free_functions_accept_null)
{
    mlmx_data_free(NULL);
    mlmx_model_free(NULL);
    mlmx_fit_free(NULL);
    mlmx_string_free(NULL);
    cr_assert_str_eq(mlmx_status_name(MLMX_ERR_FORMULA), "MLMX_ERR_FORMULA");
    cr_assert_str_eq(mlmx_version(), MLMX_VERSION_STRING);
}

Test(api, null_arguments_are_errors_with_messages)
{
    mlmx_model *m = (mlmx_model *)1;
    cr_assert_eq(mlmx_model_create(NULL, "y ~ x", &m), MLMX_ERR_ARG);
    cr_assert_null(m);
    cr_assert_neq(strlen(mlmx_last_error()), 0);
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(NULL, NULL, &f), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_fit_summary(NULL, NULL), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_fit_write_json(NULL, "/tmp/x.json"), MLMX_ERR_ARG);
}

Test(api, model_outlives_data_and_accessors_range_check)
{
    mlmx_data *d = sleep_data();
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days | Subject)", &m), MLMX_OK);
    mlmx_data_free(d); /* the model keeps what it needs */
    cr_assert_eq(mlmx_model_nobs(m), 180);
    cr_assert_eq(mlmx_model_nfixef(m), 2);
    cr_assert_str_eq(mlmx_model_fixef_name(m, 1), "Days");
    cr_assert_null(mlmx_model_fixef_name(m, 2));
    cr_assert_null(mlmx_model_fixef_name(m, -1));
    cr_assert_eq(mlmx_model_ntheta(m), 3);
    cr_assert_str_eq(mlmx_model_theta_name(m, 1), "Subject.Days.(Intercept)");
    cr_assert_eq(mlmx_model_nterms(m), 1);
    cr_assert_eq(mlmx_model_term_nlevels(m, 0), 18);
    cr_assert_str_eq(mlmx_model_term_level(m, 0, 0), "308");
    cr_assert_null(mlmx_model_term_level(m, 0, 18));
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK);
    cr_assert(mlmx_fit_converged(f));
    cr_assert_null(mlmx_fit_ranef(f, 1));
    double cov[4];
    cr_assert_eq(mlmx_fit_term_covariance(f, 1, cov), MLMX_ERR_ARG);
    mlmx_fit_free(f);
    mlmx_model_free(m);
}

Test(api, not_converged_is_a_result_not_an_error)
{
    mlmx_data *d = sleep_data();
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days | Subject)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.max_evaluations = 4;
    o.optimizer = MLMX_OPTIM_BOBYQA;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_fit_converged(f), 0);
    cr_assert(strstr(mlmx_fit_message(f), "maximum") != NULL, "%s", mlmx_fit_message(f));
    char *text = NULL;
    cr_assert_eq(mlmx_fit_summary(f, &text), MLMX_OK);
    cr_assert(strstr(text, "did not converge") != NULL, "%s", text);
    mlmx_string_free(text);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(api, invalid_options_and_theta)
{
    mlmx_data *d = sleep_data();
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (1 | Subject)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = (mlmx_method)7;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_ERR_ARG);
    cr_assert_null(f);
    mlmx_fit_options_default(&o);
    o.backend = "no-such-backend";
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_ERR_ARG);
    cr_assert(strstr(mlmx_last_error(), "no-such-backend") != NULL, "%s", mlmx_last_error());
    double v, th = -1.0;
    cr_assert_eq(mlmx_lmm_criterion_at(m, MLMX_REML, &th, &v), MLMX_ERR_ARG);
    th = NAN;
    cr_assert_eq(mlmx_lmm_criterion_at(m, MLMX_REML, &th, &v), MLMX_ERR_ARG);
    th = 0.9;
    cr_assert_eq(mlmx_lmm_criterion_at(m, MLMX_REML, &th, &v), MLMX_OK);
    cr_assert(isfinite(v));
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(api, arrays_api_matches_csv)
{
    /* the same data through mlmx_data_create gives the same fit */
    mlmx_data *d = sleep_data();
    mlmx_model *m1 = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days | Subject)", &m1), MLMX_OK);
    mlmx_fit *f1 = NULL;
    cr_assert_eq(mlmx_fit_lmm(m1, NULL, &f1), MLMX_OK);
    double y[180], x[180];
    char lab[180][8];
    const char *g[180];
    const double *fit = mlmx_fit_fitted(f1), *res = mlmx_fit_residuals(f1);
    for (int i = 0; i < 180; i++) {
        y[i] = fit[i] + res[i];
        x[i] = i % 10;
        snprintf(lab[i], sizeof lab[i], "s%02d", i / 10);
        g[i] = lab[i];
    }
    mlmx_data *d2 = NULL;
    cr_assert_eq(mlmx_data_create(180, &d2), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(d2, "Reaction", y, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(d2, "Days", x, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_strings(d2, "Subject", g), MLMX_OK);
    mlmx_model *m2 = NULL;
    cr_assert_eq(mlmx_model_create(d2, "Reaction ~ Days + (Days | Subject)", &m2), MLMX_OK,
                 "%s", mlmx_last_error());
    mlmx_fit *f2 = NULL;
    cr_assert_eq(mlmx_fit_lmm(m2, NULL, &f2), MLMX_OK);
    cr_assert_float_eq(mlmx_fit_criterion(f2), mlmx_fit_criterion(f1), 1e-9);
    mlmx_fit_free(f1);
    mlmx_fit_free(f2);
    mlmx_model_free(m1);
    mlmx_model_free(m2);
    mlmx_data_free(d);
    mlmx_data_free(d2);
}

typedef struct prog {
    int calls, last_n;
    double last_best;
    int monotone;
} prog;

static void on_progress(void *ctx, int n, double best)
{
    prog *p = ctx;
    if (p->calls && (n != p->last_n + 1 || best > p->last_best))
        p->monotone = 0;
    p->calls++;
    p->last_n = n;
    p->last_best = best;
}

Test(api, progress_callback_sees_every_evaluation)
{
    mlmx_data *d = sleep_data();
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days | Subject)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    prog p = {0, 0, 0.0, 1};
    o.progress = on_progress;
    o.progress_ctx = &p;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK);
    cr_expect_geq(p.calls, mlmx_fit_n_evaluations(f));
    cr_expect(p.monotone, "counts must increase by one and the best criterion never rise");
    cr_expect_float_eq(p.last_best, mlmx_fit_criterion(f), 1e-6);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}
