/* Residual correlation and variance structures (issue 10) against nlme
 * 3.1-162's lme, on fixtures written by
 * data/reference/resid/resid_reference.R: AR(1) by row order (Orthodont
 * REML and ML, BodyWeight), AR(1) on an integer time with gaps and the
 * same model as CAR(1) (BodyWeight), ARMA(2,0) and ARMA(1,1), compound
 * symmetry within classes (classroom), varIdent, varPower, and AR(1) with
 * varIdent. Tolerances (issue 10): 1e-6 on the log-likelihood; 1e-4 on the
 * estimates (fixed effects and sigma relative to max(1, |value|), the
 * random-effect SDs relative, the correlation and variance parameters
 * absolute). Both sides optimize to their own tolerances (nlme at
 * tolerance 1e-10, msTol 1e-12): the measured differences are printed on
 * failure. Then the bad-input cases. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlmx.h"

#define REF MLMX_SOURCE_DIR "/data/reference/resid/resid_reference.json"

static json_t *ref_case(const char *name)
{
    static json_t *root;
    if (!root) {
        json_error_t e;
        root = json_load_file(REF, 0, &e);
        cr_assert(root, "cannot read %s: %s", REF, e.text);
    }
    json_t *c = json_object_get(root, name);
    cr_assert(c, "no case %s in the fixture", name);
    return c;
}

static mlmx_model *model_for(const char *data, const char *formula, const char *corr,
                             const char *var, mlmx_data **d)
{
    char path[512];
    snprintf(path, sizeof path, MLMX_SOURCE_DIR "/data/%s.csv", data);
    cr_assert_eq(mlmx_data_read_csv(path, d), MLMX_OK, "%s", mlmx_last_error());
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(*d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_set_residual(m, *d, corr, var), MLMX_OK, "%s", mlmx_last_error());
    return m;
}

static double num_at(json_t *a, int i) { return json_number_value(json_array_get(a, (size_t)i)); }

/* nlme's containment df and tests: summary(fit)$tTable (DF exactly, t and
 * p to 1e-4 and 1e-3 relative) and anova(fit, type = "marginal") (denDF
 * exactly; F and p to 1e-4 and 1e-3 relative where the fixed part has no interaction: with
 * one, nlme's marginal test of a main effect is of its coefficients alone,
 * mlmx's Type III contrast is lmerTest's). ML fits: both with nlme's
 * adjustSigma. A p-value's relative error is its t's times about t^2
 * (BodyWeight's ARMA(2,0): t 5.9 differs by 2e-5 relative, p by 1.5e-4):
 * p is held to 1e-3; below 1e-12 only to be below 1e-10 (nlme's anova
 * gives 1 - pf(), 0 or 2.2e-16 there). */
static int p_close(double p, double rp)
{
    return rp < 1e-12 ? p < 1e-10 : fabs(p - rp) <= 1e-3 * rp;
}

static void check_tests(const char *name, json_t *r, const mlmx_fit *f)
{
    const int p = mlmx_model_nfixef(mlmx_fit_model(f));
    double se[16], df[16], t[16], pv[16];
    cr_assert(p <= 16);
    cr_assert_eq(mlmx_fit_coef_tests_ddf(f, MLMX_DDF_CONTAINMENT, se, df, t, pv), MLMX_OK, "%s",
                 mlmx_last_error());
    for (int j = 0; j < p; j++) {
        const double rdf = num_at(json_object_get(r, "t_df"), j);
        const double rt = num_at(json_object_get(r, "t_value"), j);
        const double rp = num_at(json_object_get(r, "t_p"), j);
        cr_expect_eq(df[j], rdf, "%s: coefficient %d df %g, nlme %g", name, j, df[j], rdf);
        cr_expect(fabs(t[j] - rt) < 1e-4 * fabs(rt), "%s: t %d %.8g, nlme %.8g", name, j, t[j],
                  rt);
        cr_expect(p_close(pv[j], rp), "%s: p %d %.8g, nlme %.8g", name, j, pv[j], rp);
    }
    json_t *av = json_object_get(r, "anova");
    const int nt = mlmx_fit_nterms(f);
    mlmx_ftest tab[16];
    cr_assert(nt <= 16 && (size_t)nt == json_array_size(json_object_get(av, "term")));
    cr_assert_eq(mlmx_fit_anova_type3(f, MLMX_DDF_CONTAINMENT, tab), MLMX_OK, "%s",
                 mlmx_last_error());
    int interaction = 0;
    for (int k = 0; k < nt; k++)
        interaction |= strchr(mlmx_fit_term_label(f, k), ':') != NULL;
    for (int k = 0; k < nt; k++) {
        const double rden = num_at(json_object_get(av, "den_df"), k);
        cr_expect_eq(tab[k].den_df, rden, "%s: %s denDF %g, nlme %g", name,
                     mlmx_fit_term_label(f, k), tab[k].den_df, rden);
        cr_expect_eq(tab[k].num_df, num_at(json_object_get(av, "num_df"), k));
        if (interaction)
            continue;
        const double rF = num_at(json_object_get(av, "F"), k);
        const double rp = num_at(json_object_get(av, "p"), k);
        cr_expect(fabs(tab[k].f - rF) < 1e-4 * rF, "%s: %s F %.8g, nlme %.8g", name,
                  mlmx_fit_term_label(f, k), tab[k].f, rF);
        cr_expect(p_close(tab[k].p, rp), "%s: %s p %.8g, nlme %.8g", name,
                  mlmx_fit_term_label(f, k), tab[k].p, rp);
    }
}

/* nlme's intervals(fit) against mlmx_fit_confint(MLMX_CONFINT_NLME): the
 * fixed effects (t on the containment df) to 1e-4 relative (the estimates'
 * tolerance); the variance components, the residual structure's
 * parameters and sigma to 2e-3 relative to max(|bound|, 1): nlme's Hessian
 * is fdHess's quadratic fit (.relStep 1e-4 in the fixture), mlmx's central
 * differences at two steps with a Richardson step (the measured
 * differences are printed on failure). Not compared: fits at a boundary
 * (nlme's interval for an SD of 0.0018 has a lower bound of 1e-140; mlmx
 * refuses), and varPower, whose nlme bounds move with fdHess's step (the
 * power's lower bound -1.018, -1.215, -1.245 at .relStep 1e-3, 1e-4,
 * 1e-5, toward mlmx's -1.248), and BodyWeight's ARMA(2,0), whose
 * likelihood is flat along sigma and the ARMA parameters (sigma's
 * interval runs from 2.8 to 14.5; the two sides differ by 0.5%). */
static void expect_bound(const char *name, const char *what, double got, double want, double tol)
{
    cr_expect(fabs(got - want) <= tol * fmax(fabs(want), 1.0), "%s: %s %.8g, nlme %.8g", name,
              what, got, want);
}

static void check_intervals(const char *name, json_t *r, const mlmx_fit *f)
{
    json_t *iv = json_object_get(r, "intervals");
    if (!json_is_object(iv) || strstr(name, "power") || strstr(name, "arma20"))
        return;
    json_t *rl0 = json_object_get(iv, "re_lower");
    if ((json_is_array(rl0) ? num_at(rl0, 0) : json_number_value(rl0)) < 1e-8)
        return; /* an SD on its boundary */
    mlmx_confint *ci = NULL;
    cr_assert_eq(mlmx_fit_confint(f, MLMX_CONFINT_NLME, 0.95, NULL, &ci), MLMX_OK, "%s: %s", name,
                 mlmx_last_error());
    const mlmx_model *m = mlmx_fit_model(f);
    const int nt = mlmx_model_ntheta(m), nr = mlmx_fit_nresid_par(f), p = mlmx_model_nfixef(m);
    double est, lo, hi;
    for (int j = 0; j < p; j++) {
        cr_assert_eq(mlmx_confint_bounds(ci, nt + nr + 1 + j, &est, &lo, &hi), MLMX_OK);
        expect_bound(name, "fixed lower", lo, num_at(json_object_get(iv, "fixed_lower"), j), 1e-4);
        expect_bound(name, "fixed upper", hi, num_at(json_object_get(iv, "fixed_upper"), j), 1e-4);
    }
    /* the first term: nlme lists sd1, sd2, cor; lme4's order is sd1, cor, sd2 */
    json_t *rl = json_object_get(iv, "re_lower"), *ru = json_object_get(iv, "re_upper");
    const int map[3] = {0, 2, 1};
    const int nre = json_is_array(rl) ? (int)json_array_size(rl) : 1;
    for (int k = 0; k < nre && nre <= 3; k++) {
        cr_assert_eq(mlmx_confint_bounds(ci, nre == 1 ? 0 : map[k], &est, &lo, &hi), MLMX_OK);
        expect_bound(name, "random-effect lower", lo, nre == 1 ? json_number_value(rl) : num_at(rl, k), 2e-3);
        expect_bound(name, "random-effect upper", hi, nre == 1 ? json_number_value(ru) : num_at(ru, k), 2e-3);
    }
    /* the residual parameters: the correlation's, then the variance function's */
    int k = 0;
    const char *keys[2][2] = {{"corr_lower", "corr_upper"}, {"var_lower", "var_upper"}};
    for (int s = 0; s < 2; s++) {
        json_t *a = json_object_get(iv, keys[s][0]), *b = json_object_get(iv, keys[s][1]);
        const int na = json_is_array(a) ? (int)json_array_size(a) : json_is_number(a) ? 1 : 0;
        for (int i = 0; i < na; i++, k++) {
            cr_assert_eq(mlmx_confint_bounds(ci, nt + k, &est, &lo, &hi), MLMX_OK);
            expect_bound(name, mlmx_confint_name(ci, nt + k), lo,
                         json_is_array(a) ? num_at(a, i) : json_number_value(a), 2e-3);
            expect_bound(name, mlmx_confint_name(ci, nt + k), hi,
                         json_is_array(b) ? num_at(b, i) : json_number_value(b), 2e-3);
        }
    }
    cr_expect_eq(k, nr, "%s: %d residual parameters with intervals, nlme %d", name, nr, k);
    cr_assert_eq(mlmx_confint_bounds(ci, nt + nr, &est, &lo, &hi), MLMX_OK);
    expect_bound(name, "sigma lower", lo, json_number_value(json_object_get(iv, "sigma_lower")), 2e-3);
    expect_bound(name, "sigma upper", hi, json_number_value(json_object_get(iv, "sigma_upper")), 2e-3);
    mlmx_confint_free(ci);
}

/* nlme's ACF(fit): the lags' count from the default, the pairs exactly,
 * the autocorrelations to 1e-4 n_0 / n_k (they inherit the estimates'
 * tolerance, magnified where a lag has few pairs: BodyWeight's ARMA(2,0)
 * at lag 10, 16 pairs, differs by 1.6e-4). */
static void check_acf(const char *name, json_t *r, const mlmx_fit *f)
{
    json_t *a = json_object_get(r, "acf"), *nu = json_object_get(r, "acf_n");
    const int nl = (int)json_array_size(a);
    cr_assert_eq(mlmx_fit_acf_maxlag(f), nl - 1, "%s: default maxlag %d, nlme %d", name,
                 mlmx_fit_acf_maxlag(f), nl - 1);
    double acf[64], used[64], model[64];
    cr_assert(nl <= 64);
    cr_assert_eq(mlmx_fit_acf(f, nl - 1, acf, used, model), MLMX_OK, "%s", mlmx_last_error());
    for (int k = 0; k < nl; k++) {
        cr_expect_eq(used[k], num_at(nu, k), "%s: lag %d pairs", name, k);
        cr_expect(fabs(acf[k] - num_at(a, k)) < 1e-4 * used[0] / used[k],
                  "%s: ACF lag %d %.8g, nlme %.8g", name, k, acf[k], num_at(a, k));
    }
}

static void check_case(const char *name, const char *data, const char *formula, const char *corr,
                       const char *var, mlmx_method method)
{
    json_t *r = ref_case(name);
    mlmx_data *d = NULL;
    mlmx_model *m = model_for(data, formula, corr, var, &d);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = method;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s: %s", name, mlmx_last_error());
    const double ll = json_real_value(json_object_get(r, "loglik"));
    cr_expect(fabs(mlmx_fit_loglik(f) - ll) < 1e-6, "%s: logLik %.10f, nlme %.10f", name,
              mlmx_fit_loglik(f), ll);
    cr_expect_eq(mlmx_fit_df(f), (int)json_integer_value(json_object_get(r, "df")),
                 "%s: df", name);
    const double sg = json_real_value(json_object_get(r, "sigma"));
    cr_expect(fabs(mlmx_fit_sigma(f) - sg) < 1e-4 * fmax(1.0, sg), "%s: sigma %.8g, nlme %.8g",
              name, mlmx_fit_sigma(f), sg);
    const char *key;
    json_t *v;
    int j = 0;
    json_object_foreach(json_object_get(r, "fixef"), key, v) {
        const double b = mlmx_fit_beta(f)[j], rb = json_real_value(v);
        cr_expect(fabs(b - rb) < 1e-4 * fmax(1.0, fabs(rb)), "%s: %s %.8g, nlme %.8g", name, key,
                  b, rb);
        j++;
    }
    /* the first term's SDs (a scalar, or an intercept and a slope) */
    json_t *sd = json_object_get(r, "re_sd");
    double cov[4];
    cr_assert_eq(mlmx_fit_term_covariance(f, 0, cov), MLMX_OK);
    const int q = mlmx_model_term_q(m, 0);
    for (int a = 0; a < q; a++) {
        const double rs = json_is_array(sd) ? json_real_value(json_array_get(sd, (size_t)a))
                                            : json_real_value(sd);
        const double s = sqrt(cov[a + a * q]);
        /* ARMA(1,1) on Orthodont puts the intercept's variance at its
         * boundary: mlmx reaches 0, nlme (on log SD) stops at SD 0.0018 on a
         * flat likelihood (mlmx's is 4.5e-8 higher). There the variances
         * are compared, to 1e-4 absolute. */
        if (rs < 1e-2)
            cr_expect(fabs(s * s - rs * rs) < 1e-4, "%s: random-effect variance %d %.8g, nlme "
                      "%.8g", name, a, s * s, rs * rs);
        else
            cr_expect(fabs(s - rs) < 1e-4 * fmax(rs, 1.0),
                      "%s: random-effect SD %d %.8g, nlme %.8g", name, a, s, rs);
    }
    /* the residual parameters: correlation, then variance function (nlme's
     * varIdent lists the reference stratum first, at 1) */
    double want[8];
    int nw = 0;
    json_t *c = json_object_get(r, "corr");
    if (json_is_array(c)) {
        for (size_t k = 0; k < json_array_size(c); k++)
            want[nw++] = json_real_value(json_array_get(c, k));
    } else if (json_is_number(c)) {
        want[nw++] = json_number_value(c);
    }
    json_t *vp = json_object_get(r, "varpar");
    int first = 1;
    json_object_foreach(vp, key, v) {
        if (!(first && strcmp(key, "power") != 0))
            want[nw++] = json_number_value(v);
        first = 0;
    }
    cr_assert_eq(mlmx_fit_nresid_par(f), nw, "%s: %d residual parameters, nlme %d", name,
                 mlmx_fit_nresid_par(f), nw);
    for (int k = 0; k < nw; k++)
        cr_expect(fabs(mlmx_fit_resid_par(f, k) - want[k]) < 1e-4, "%s: %s %.8g, nlme %.8g", name,
                  mlmx_fit_resid_par_name(f, k), mlmx_fit_resid_par(f, k), want[k]);
    check_tests(name, r, f);
    check_intervals(name, r, f);
    check_acf(name, r, f);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

#define ORTH "distance ~ age + Sex + (1 | Subject)"
#define BW "weight ~ Time * factor(Diet) + (Time | Rat)"

Test(resid_nlme, orthodont_ar1_reml)
{
    check_case("orthodont_ar1_REML", "orthodont", ORTH, "ar1()", NULL, MLMX_REML);
}
Test(resid_nlme, orthodont_ar1_ml)
{
    check_case("orthodont_ar1_ML", "orthodont", ORTH, "corAR1()", NULL, MLMX_ML);
}
Test(resid_nlme, bodyweight_ar1)
{
    check_case("bodyweight_ar1_REML", "bodyweight", BW, "ar1()", NULL, MLMX_REML);
}
Test(resid_nlme, bodyweight_ar1_integer_time_with_gaps)
{
    check_case("bodyweight_ar1time_REML", "bodyweight", BW, "ar1(~ Time | Rat)", NULL,
               MLMX_REML);
}
Test(resid_nlme, bodyweight_car1)
{
    check_case("bodyweight_car1_REML", "bodyweight", BW, "corCAR1(form = ~ Time | Rat)", NULL,
               MLMX_REML);
}
Test(resid_nlme, bodyweight_arma20_ml)
{
    check_case("bodyweight_arma20_ML", "bodyweight", BW, "arma(2, 0)", NULL, MLMX_ML);
}
Test(resid_nlme, orthodont_arma11)
{
    check_case("orthodont_arma11_REML", "orthodont", ORTH, "corARMA(p = 1, q = 1)", NULL,
               MLMX_REML);
}
Test(resid_nlme, classroom_cs_within_classes)
{
    check_case("classroom_cs_REML", "classroom", "mathgain ~ mathkind + ses + (1 | schoolid)",
               "cs(~ 1 | classid)", NULL, MLMX_REML);
}
Test(resid_nlme, orthodont_varident)
{
    check_case("orthodont_ident_REML", "orthodont", ORTH, NULL, "varIdent(form = ~ 1 | Sex)",
               MLMX_REML);
}
Test(resid_nlme, orthodont_varpower_ml)
{
    check_case("orthodont_power_ML", "orthodont", ORTH, NULL, "power(~ age)", MLMX_ML);
}
Test(resid_nlme, orthodont_ar1_and_varident)
{
    check_case("orthodont_ar1_ident_REML", "orthodont", ORTH, "ar1()", "ident(~ 1 | Sex)",
               MLMX_REML);
}

/* nlme's containment df without a residual structure, on three nested
 * levels: school-level (housepov), class-level (yearstea) and pupil-level
 * covariates get 105, 204 and 876 df. */
Test(resid_nlme, classroom_nested_containment_df)
{
    json_t *r = ref_case("classroom_nested_REML");
    mlmx_data *d = NULL;
    mlmx_model *m = model_for("classroom",
                              "mathgain ~ mathkind + ses + yearstea + housepov + "
                              "(1 | schoolid/classid)",
                              NULL, NULL, &d);
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK, "%s", mlmx_last_error());
    const double ll = json_real_value(json_object_get(r, "loglik"));
    cr_expect(fabs(mlmx_fit_loglik(f) - ll) < 1e-6, "logLik %.10f, nlme %.10f",
              mlmx_fit_loglik(f), ll);
    const char *key;
    json_t *v;
    int j = 0;
    json_object_foreach(json_object_get(r, "fixef"), key, v) {
        const double rb = json_real_value(v);
        cr_expect(fabs(mlmx_fit_beta(f)[j] - rb) < 1e-4 * fmax(1.0, fabs(rb)), "%s", key);
        j++;
    }
    check_tests("classroom_nested_REML", r, f);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* ---- bad input: each a clear error, nothing half-built ---- */

static void expect_set_error(const char *data, const char *formula, const char *corr,
                             const char *var, mlmx_status code, const char *const *needles)
{
    char path[512];
    snprintf(path, sizeof path, MLMX_SOURCE_DIR "/data/%s.csv", data);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_data_read_csv(path, &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK);
    cr_expect_eq(mlmx_model_set_residual(m, d, corr, var), code, "%s / %s: %s",
                 corr ? corr : "-", var ? var : "-", mlmx_last_error());
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(mlmx_last_error(), needles[i]), "message lacks '%s': %s", needles[i],
                  mlmx_last_error());
    cr_expect_null(mlmx_model_correlation(m), "a structure was kept after the error");
    cr_expect_null(mlmx_model_variance(m));
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(resid_errors, grouping_not_nested_in_the_model_groups)
{
    /* Sex spans Subjects: the residual correlation would link subjects */
    mlmx_data *d = NULL;
    mlmx_model *m = model_for("orthodont", ORTH, "ar1(~ 1 | Sex)", NULL, &d);
    mlmx_fit *f = NULL;
    cr_expect_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_ERR_MODEL);
    cr_expect_null(f);
    cr_expect(strstr(mlmx_last_error(), "nested") && strstr(mlmx_last_error(), "'Subject'"),
              "%s", mlmx_last_error());
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(resid_errors, duplicate_times_in_a_group)
{
    const char *n[] = {"same time", "data rows", "distinct", NULL};
    expect_set_error("bodyweight", BW, "ar1(~ Diet | Rat)", NULL, MLMX_ERR_DATA, n);
    expect_set_error("bodyweight", BW, "car1(~ Diet | Rat)", NULL, MLMX_ERR_DATA, n);
}

Test(resid_errors, arma_orders_too_large)
{
    const char *n[] = {"arma(4, 0)", "too large", "at most 3", NULL};
    expect_set_error("orthodont", ORTH, "arma(4, 0)", NULL, MLMX_ERR_FORMULA, n);
    const char *n0[] = {"p >= 1 or q >= 1", NULL};
    expect_set_error("orthodont", ORTH, "corARMA(p = 0, q = 0)", NULL, MLMX_ERR_FORMULA, n0);
    const char *n3[] = {"two orders", NULL};
    expect_set_error("orthodont", ORTH, "arma(1, 1, 1)", NULL, MLMX_ERR_FORMULA, n3);
}

Test(resid_errors, syntax)
{
    const char *unknown[] = {"unknown structure 'ar2'", "position 1", NULL};
    expect_set_error("orthodont", ORTH, "ar2()", NULL, MLMX_ERR_FORMULA, unknown);
    const char *nogroup[] = {"no grouping variable after '|'", NULL};
    expect_set_error("orthodont", ORTH, "ar1(~ age | )", NULL, MLMX_ERR_FORMULA, nogroup);
    const char *paren[] = {"missing ')'", NULL};
    expect_set_error("orthodont", ORTH, "ar1(~ age | Subject", NULL, MLMX_ERR_FORMULA, paren);
    const char *arg[] = {"unexpected argument at position 5", NULL};
    expect_set_error("orthodont", ORTH, "ar1(foo)", NULL, MLMX_ERR_FORMULA, arg);
    const char *col[] = {"'Week'", "not a column", NULL};
    expect_set_error("orthodont", ORTH, "ar1(~ Week | Subject)", NULL, MLMX_ERR_DATA, col);
    const char *fac[] = {"'Sex'", "factor", "numeric", NULL};
    expect_set_error("orthodont", ORTH, "car1(~ Sex | Subject)", NULL, MLMX_ERR_DATA, fac);
    const char *vid[] = {"ident needs the strata", NULL};
    expect_set_error("orthodont", ORTH, NULL, "ident(~ age)", MLMX_ERR_FORMULA, vid);
    const char *corr_as_var[] = {"unknown structure 'ar1'", "ident, power", NULL};
    expect_set_error("orthodont", ORTH, NULL, "ar1()", MLMX_ERR_FORMULA, corr_as_var);
    /* found by tests/fuzz/fuzz_resid.c: a newline would split the message
     * that quotes the text; a second formula leaked the first */
    const char *ctl[] = {"control character 0x0a at position 5", NULL};
    expect_set_error("orthodont", ORTH, "ar1(\n)", NULL, MLMX_ERR_FORMULA, ctl);
    const char *two[] = {"a second formula at position 29", NULL};
    expect_set_error("orthodont", ORTH, "arma(1, 0, ~ age | Subject, ~ age | Subject)", NULL,
                     MLMX_ERR_FORMULA, two);
}

Test(resid_errors, glmm_with_residual_correlation)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/cbpp.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                                   &m),
                 MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_set_residual(m, d, "ar1()", NULL), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = MLMX_FAMILY_BINOMIAL;
    mlmx_fit *f = NULL;
    cr_expect_eq(mlmx_fit_glmm(m, &o, &f), MLMX_ERR_UNSUPPORTED);
    cr_expect_null(f);
    cr_expect(strstr(mlmx_last_error(), "linear mixed models") &&
                  strstr(mlmx_last_error(), "binomial"),
              "%s", mlmx_last_error());
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(resid_errors, what_is_not_available_says_so)
{
    mlmx_data *d = NULL;
    mlmx_model *m = model_for("orthodont", ORTH, "ar1()", NULL, &d);
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK, "%s", mlmx_last_error());
    double df[3], t[3], p[3];
    cr_expect_eq(mlmx_fit_coef_tests(f, df, t, p), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(mlmx_last_error(), "residual correlation"), "%s", mlmx_last_error());
    cr_expect_eq(mlmx_fit_save(f, "/tmp/mlmx_resid_never.h5", NULL), MLMX_ERR_UNSUPPORTED);
    cr_expect_eq(access("/tmp/mlmx_resid_never.h5", F_OK), -1);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* ar1 on a time that is not a whole number: truncated as nlme does, with
 * a note; the fit is then the one on the truncated (integer) time. */
Test(resid_errors, non_integer_time_is_truncated_with_a_note)
{
    char path[] = "/tmp/mlmx_resid_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *out = fdopen(fd, "w"), *in = fopen(MLMX_SOURCE_DIR "/data/orthodont.csv", "r");
    cr_assert(out && in);
    char line[256];
    cr_assert(fgets(line, sizeof line, in));
    fputs("distance,age,Subject,Sex,t\n", out);
    while (fgets(line, sizeof line, in)) {
        double dist, age;
        char subj[32], sex[32];
        cr_assert_eq(sscanf(line, "%lf,%lf,%31[^,],%31[^\n]", &dist, &age, subj, sex), 4);
        fprintf(out, "%g,%g,%s,%s,%g\n", dist, age, subj, sex, age + 0.25);
    }
    fclose(in);
    fclose(out);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL, *m2 = NULL;
    cr_assert_eq(mlmx_data_read_csv(path, &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, ORTH, &m), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, ORTH, &m2), MLMX_OK);
    cr_assert_eq(mlmx_model_set_residual(m, d, "ar1(~ t | Subject)", NULL), MLMX_OK);
    cr_assert_eq(mlmx_model_set_residual(m2, d, "ar1(~ age | Subject)", NULL), MLMX_OK);
    int noted = 0;
    for (int i = 0; i < mlmx_model_nmessages(m); i++)
        noted |= strstr(mlmx_model_message(m, i), "truncated") &&
                 strstr(mlmx_model_message(m, i), "car1");
    cr_expect(noted, "no note about the truncated time");
    cr_expect_eq(mlmx_model_nmessages(m2), 0);
    mlmx_fit *f = NULL, *f2 = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK);
    cr_assert_eq(mlmx_fit_lmm(m2, NULL, &f2), MLMX_OK);
    cr_expect(fabs(mlmx_fit_loglik(f) - mlmx_fit_loglik(f2)) < 1e-9, "%.12f %.12f",
              mlmx_fit_loglik(f), mlmx_fit_loglik(f2));
    mlmx_fit_free(f);
    mlmx_fit_free(f2);
    mlmx_model_free(m);
    mlmx_model_free(m2);
    mlmx_data_free(d);
    unlink(path);
}

/* ---- replicates: draws from N(0, sigma^2 R), refits ---- */

/* With theta = 0 and beta = 0 a simulated response is sigma e, e ~ N(0, R):
 * the empirical variance and lag-1, lag-2 correlations within subjects
 * over 3000 replicates of Orthodont (81 lag-1 pairs each) have SEs near
 * 0.003; held to 0.015. */
Test(resid_replicates, draws_have_the_structure)
{
    mlmx_data *d = NULL;
    mlmx_model *m = model_for("orthodont", ORTH, "ar1()", "ident(~ 1 | Sex)", &d);
    const double theta = 0.0, beta[3] = {0, 0, 0}, rnat[2] = {0.6, 2.0};
    mlmx_problem *P = NULL;
    cr_assert_eq(mlmx_problem_create_at_resid(m, NULL, &theta, beta, rnat, 1.5, &P), MLMX_OK,
                 "%s", mlmx_last_error());
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(P, &W), MLMX_OK);
    const size_t n = mlmx_model_nobs(m);
    double y[108], s[2][3] = {{0}}; /* per sex: sum e^2 / sd^2, lag-1, lag-2 products */
    long cnt[2][3] = {{0}};
    cr_assert_eq(n, 108);
    for (int r = 0; r < 3000; r++) {
        cr_assert_eq(mlmx_workspace_simulate(W, 7, (uint64_t)r, y), MLMX_OK);
        /* rows: 27 subjects of 4 ages in order; the first 16 are male */
        for (size_t i = 0; i < n; i++) {
            const int male = i < 64, pos = (int)(i % 4);
            const double sd = 1.5 * (male ? 2.0 : 1.0);
            s[male][0] += y[i] * y[i] / (sd * sd);
            cnt[male][0]++;
            for (int lag = 1; lag <= 2; lag++)
                if (pos >= lag) {
                    s[male][lag] += y[i] * y[i - (size_t)lag] / (sd * sd);
                    cnt[male][lag]++;
                }
        }
    }
    for (int sex = 0; sex < 2; sex++) {
        cr_expect(fabs(s[sex][0] / (double)cnt[sex][0] - 1.0) < 0.015, "variance %g",
                  s[sex][0] / (double)cnt[sex][0]);
        cr_expect(fabs(s[sex][1] / (double)cnt[sex][1] - 0.6) < 0.015, "lag 1 %g",
                  s[sex][1] / (double)cnt[sex][1]);
        cr_expect(fabs(s[sex][2] / (double)cnt[sex][2] - 0.36) < 0.015, "lag 2 %g",
                  s[sex][2] / (double)cnt[sex][2]);
    }
    mlmx_workspace_free(W);
    mlmx_problem_free(P);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* Refits of responses simulated at BodyWeight's AR(1) estimates: every
 * refit succeeds, and the mean of the refitted Phi is near the truth. */
Test(resid_replicates, refits_recover_the_parameters)
{
    mlmx_data *d = NULL;
    mlmx_model *m = model_for("bodyweight", BW, "ar1()", NULL, &d);
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK);
    mlmx_problem *P = NULL;
    cr_assert_eq(mlmx_problem_create(f, &P), MLMX_OK, "%s", mlmx_last_error());
    const int np = mlmx_problem_nparams(P);
    cr_assert_str_eq(mlmx_problem_param_name(P, np - 1), "corr_Phi");
    cr_assert_str_eq(mlmx_problem_param_name(P, np - 2), "sigma");
    cr_expect(fabs(mlmx_problem_params(P)[np - 1] - mlmx_fit_resid_par(f, 0)) < 1e-12);
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(P, &W), MLMX_OK);
    const int R = 200;
    double sum = 0.0, sum2 = 0.0, ssig = 0.0;
    for (int r = 0; r < R; r++) {
        cr_assert_eq(mlmx_workspace_simulate(W, 11, (uint64_t)r, NULL), MLMX_OK);
        cr_assert_eq(mlmx_workspace_fit(W, 1), MLMX_OK, "%s", mlmx_last_error());
        const double phi = mlmx_workspace_params(W)[np - 1];
        sum += phi;
        sum2 += phi * phi;
        ssig += mlmx_workspace_params(W)[np - 2];
    }
    const double mean = sum / R, sd = sqrt(sum2 / R - mean * mean);
    const double truth = mlmx_fit_resid_par(f, 0);
    /* 16 rats of 11 weighings: REML's Phi is biased down by a few hundredths
     * at this size; 4 SEs of the mean (about 0.03) plus 0.05 */
    cr_expect(fabs(mean - truth) < 4.0 * sd / sqrt(R) + 0.05, "mean Phi %.4f (SD %.4f), truth %.4f",
              mean, sd, truth);
    cr_expect(fabs(ssig / R / mlmx_fit_sigma(f) - 1.0) < 0.1, "mean sigma %.4f, truth %.4f",
              ssig / R, mlmx_fit_sigma(f));
    mlmx_workspace_free(W);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* The summary's block and the JSON key "residual_structure". */
Test(resid_output, summary_and_json)
{
    mlmx_data *d = NULL;
    mlmx_model *m = model_for("orthodont", ORTH, "ar1()", "ident(~ 1 | Sex)", &d);
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK, "%s", mlmx_last_error());
    char *text = NULL;
    cr_assert_eq(mlmx_fit_summary(f, &text), MLMX_OK);
    const char *want[] = {"Correlation structure: AR(1)\n Formula: ar1(~ 1 | Subject)\n",
                          "  Phi = 0.1886", "Variance function: different SDs per stratum",
                          " Formula: ident(~ 1 | Sex)\n", "  Female = 1, Male = 2.254"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect(strstr(text, want[i]), "summary lacks '%s':\n%s", want[i], text);
    mlmx_string_free(text);
    char path[] = "/tmp/mlmx_resid_json_XXXXXX";
    const int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(mlmx_fit_write_json(f, path), MLMX_OK, "%s", mlmx_last_error());
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    unlink(path);
    cr_assert(root, "%s", e.text);
    json_t *rs = json_object_get(root, "residual_structure");
    json_t *c = json_object_get(rs, "correlation"), *v = json_object_get(rs, "variance");
    cr_expect_str_eq(json_string_value(json_object_get(c, "structure")), "ar1");
    cr_expect_str_eq(json_string_value(json_object_get(c, "formula")), "ar1(~ 1 | Subject)");
    cr_expect_eq(json_integer_value(json_object_get(c, "groups")), 27);
    cr_expect(fabs(json_number_value(json_object_get(json_object_get(c, "parameters"), "Phi")) -
                   mlmx_fit_resid_par(f, 0)) < 1e-15);
    cr_expect_str_eq(json_string_value(json_object_get(v, "structure")), "ident");
    json_t *vp = json_object_get(v, "parameters");
    cr_expect_eq(json_number_value(json_object_get(vp, "Female")), 1.0);
    cr_expect(fabs(json_number_value(json_object_get(vp, "Male")) - mlmx_fit_resid_par(f, 1)) <
              1e-15);
    cr_expect_eq(json_integer_value(json_object_get(root, "df")), 7);
    json_decref(root);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* The autocorrelation table and plot: the table's rows are mlmx_fit_acf's;
 * the plot is written whole (an SVG), and a bad extension writes nothing. */
Test(resid_output, acf_table_and_plot)
{
    mlmx_data *d = NULL;
    mlmx_model *m = model_for("bodyweight", BW, "ar1()", NULL, &d);
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK, "%s", mlmx_last_error());
    char *text = NULL;
    cr_assert_eq(mlmx_fit_acf_text(f, &text), MLMX_OK, "%s", mlmx_last_error());
    double acf[11], used[11], model[11];
    cr_assert_eq(mlmx_fit_acf_maxlag(f), 10);
    cr_assert_eq(mlmx_fit_acf(f, 10, acf, used, model), MLMX_OK);
    char row[96];
    snprintf(row, sizeof row, "   1 %9.5f %7.0f %9.5f\n", acf[1], used[1], model[1]);
    cr_expect(strstr(text, row), "table lacks '%s':\n%s", row, text);
    cr_expect(fabs(model[2] - pow(mlmx_fit_resid_par(f, 0), 2)) < 1e-15, "fitted lag 2");
    mlmx_string_free(text);
    char path[64];
    snprintf(path, sizeof path, "/tmp/mlmx_resid_acf_%d.svg", (int)getpid());
    cr_assert_eq(mlmx_fit_write_acf_plot(f, path), MLMX_OK, "%s", mlmx_last_error());
    FILE *fp = fopen(path, "r");
    cr_assert(fp);
    char head[4096] = {0};
    cr_expect(fread(head, 1, sizeof head - 1, fp) > 100);
    fclose(fp);
    cr_expect(strstr(head, "<svg") != NULL, "not an SVG");
    unlink(path);
    cr_expect_eq(mlmx_fit_write_acf_plot(f, "/tmp/mlmx_resid_acf.txt"), MLMX_ERR_ARG);
    cr_expect_eq(access("/tmp/mlmx_resid_acf.txt", F_OK), -1);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}
