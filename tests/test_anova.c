/* Model comparison (include/mlmx.h, "Model comparison") against R, on
 * fixtures written by data/reference/infer/anova_reference.R:
 *   - lme4 1.1-31's anova() on sleepstudy (random slope against random
 *     intercept, given in the "wrong" order to test the ordering by npar)
 *     and on classroom (three nested models, the last adding one variance:
 *     the chi-bar-square p-value);
 *   - lmerTest 3.1-3's ranova() on sleepstudy (REML and ML), a random
 *     intercept model (the reduced model is the linear model) and
 *     classroom's nested intercepts;
 *   - the LR test against the linear model (logLik(lm, REML = )).
 * anova's models are evaluated at lme4's ML theta (one evaluation there),
 * so the comparison is of the statistics, not of two optimizers' last
 * digits: tolerance 1e-6 absolute on logLik, AIC, BIC, deviance and Chisq,
 * 1e-6 relative on the p-values (issue 9). ranova's reduced models are
 * refitted by mlmx's own optimizer (as lmerTest refits them): tolerance
 * 1e-6 absolute on logLik, AIC and LRT, 1e-5 relative on p. Bad input
 * goes through the mlmx command: an error and exit 1 for models on other
 * rows or another response, a warning (exit 0) for models that are not
 * nested. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlmx.h"
#include "refutil.h"

#define REFDIR MLMX_SOURCE_DIR "/data/reference/infer/"

static mlmx_data *read_data(const ref_file *r)
{
    char path[1024];
    mlmx_data *d = NULL;
    snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, ref_get(r, "data")->rest);
    cr_assert_eq(mlmx_data_read_csv(path, &d), MLMX_OK, "%s", mlmx_last_error());
    return d;
}

/* Fit m at the theta of line `key` (one evaluation: lme4's estimate). */
static mlmx_fit *fit_at(const mlmx_model *m, const ref_line *tl, mlmx_method method)
{
    double theta[16];
    cr_assert(tl && tl->ntok <= 16 && tl->ntok == mlmx_model_ntheta(m));
    for (int j = 0; j < tl->ntok; j++)
        theta[j] = strtod(tl->tok[j], NULL);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = method;
    o.theta_start = theta;
    o.max_evaluations = 1;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    return f;
}

static double tokd(const ref_line *l, int i)
{
    return strcmp(l->tok[i], "NA") == 0 ? NAN : strtod(l->tok[i], NULL);
}

static void expect_abs(double a, double b, double tol, const char *what, const char *row)
{
    if (isnan(b)) {
        cr_expect(isnan(a), "%s %s: %.10g, R NA", row, what, a);
        return;
    }
    cr_expect(fabs(a - b) <= tol, "%s %s: %.12g vs R %.12g (diff %.2g)", row, what, a, b,
              fabs(a - b));
}

static void expect_p(double a, double b, double rel, const char *row)
{
    if (isnan(b)) {
        cr_expect(isnan(a), "%s p: %.10g, R NA", row, a);
        return;
    }
    cr_expect(close_rel(a, b, rel, 1e-300), "%s p: %.12g vs R %.12g (rel %.2g)", row, a, b,
              fabs(a / b - 1));
}

static void check_anova(const char *name)
{
    char path[1024];
    ref_file r;
    snprintf(path, sizeof path, REFDIR "anova_%s.ref", name);
    cr_assert_eq(ref_load(path, &r), 0, "cannot read %s", path);
    mlmx_data *d = read_data(&r);
    const int n = (int)ref_num(&r, "nmodels", 0);
    mlmx_model *m[8] = {0};
    mlmx_fit *f[8] = {0};
    cr_assert(n >= 2 && n <= 8);
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "formula%d", i + 1);
        cr_assert_eq(mlmx_model_create(d, ref_get(&r, key)->rest, &m[i]), MLMX_OK, "%s",
                     mlmx_last_error());
        snprintf(key, sizeof key, "theta%d", i + 1);
        f[i] = fit_at(m[i], ref_get(&r, key), MLMX_ML);
    }
    mlmx_anova *a = NULL;
    cr_assert_eq(mlmx_anova_create((const mlmx_fit *const *)f, n, &a), MLMX_OK, "%s",
                 mlmx_last_error());
    cr_expect_eq(mlmx_anova_refitted(a), 0);
    cr_expect_eq(mlmx_anova_nwarnings(a), 0, "%s", mlmx_anova_warning(a, 0));
    cr_assert_eq(mlmx_anova_nrows(a), n);
    for (int i = 0; i < n; i++) {
        const ref_line *l = ref_get_nth(&r, "row", i);
        const mlmx_anova_row *w = mlmx_anova_row_at(a, i);
        cr_assert(l && w && l->ntok == 9);
        cr_expect_str_eq(w->name, l->tok[0]);
        cr_expect_eq(w->npar, atoi(l->tok[1]));
        expect_abs(w->aic, tokd(l, 2), 1e-6, "AIC", l->tok[0]);
        expect_abs(w->bic, tokd(l, 3), 1e-6, "BIC", l->tok[0]);
        expect_abs(w->loglik, tokd(l, 4), 1e-6, "logLik", l->tok[0]);
        expect_abs(w->deviance, tokd(l, 5), 1e-6, "deviance", l->tok[0]);
        expect_abs(w->chisq, tokd(l, 6), 1e-6, "Chisq", l->tok[0]);
        if (i > 0)
            cr_expect_eq(w->df, atoi(l->tok[7]));
        expect_p(w->p, tokd(l, 8), 1e-6, l->tok[0]);
        /* the chi-bar-square p-value exactly where the fixture has one */
        const ref_line *cb = NULL;
        for (int k = 0; (cb = ref_get_nth(&r, "chibar", k)) != NULL; k++)
            if (strcmp(cb->tok[0], w->name) == 0)
                break;
        expect_p(w->p_chibar, cb ? tokd(cb, 1) : NAN, 1e-6, l->tok[0]);
    }
    char *text = NULL;
    cr_assert_eq(mlmx_anova_summary(a, "data", &text), MLMX_OK);
    cr_expect(strstr(text, "Pr(>Chisq)") && strstr(text, "Models:"), "%s", text);
    mlmx_string_free(text);
    mlmx_anova_free(a);

    /* REML fits are refitted by ML from their own optimum: the same table */
    mlmx_fit *g[8] = {0};
    for (int i = 0; i < n; i++)
        cr_assert_eq(mlmx_fit_lmm(m[i], NULL, &g[i]), MLMX_OK);
    cr_assert_eq(mlmx_anova_create((const mlmx_fit *const *)g, n, &a), MLMX_OK, "%s",
                 mlmx_last_error());
    cr_expect_eq(mlmx_anova_refitted(a), n);
    for (int i = 0; i < n; i++) {
        const ref_line *l = ref_get_nth(&r, "row", i);
        expect_abs(mlmx_anova_row_at(a, i)->loglik, tokd(l, 4), 1e-6, "refit logLik", l->tok[0]);
    }
    mlmx_anova_free(a);
    for (int i = 0; i < n; i++) {
        mlmx_fit_free(g[i]);
        mlmx_fit_free(f[i]);
        mlmx_model_free(m[i]);
    }
    mlmx_data_free(d);
    ref_free(&r);
}

Test(anova, sleepstudy) { check_anova("sleepstudy"); }
Test(anova, classroom) { check_anova("classroom"); }

/* The fixture's row: nnum numbers first, then the name (it has spaces). */
static const char *row_name(const ref_line *l, int nnum, char *buf, size_t len)
{
    const char *s = l->rest;
    for (int k = 0; k < nnum; k++)
        s = strchr(s, ' ') + 1;
    snprintf(buf, len, "%s", s);
    return buf;
}

static void check_ranova(const char *name)
{
    char path[1024];
    ref_file r;
    snprintf(path, sizeof path, REFDIR "ranova_%s.ref", name);
    cr_assert_eq(ref_load(path, &r), 0, "cannot read %s", path);
    mlmx_data *d = read_data(&r);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, ref_get(&r, "formula")->rest, &m), MLMX_OK);
    const mlmx_method meth = strcmp(ref_get(&r, "method")->rest, "ML") == 0 ? MLMX_ML : MLMX_REML;
    mlmx_fit *f = fit_at(m, ref_get(&r, "theta"), meth);
    mlmx_anova *a = NULL;
    cr_assert_eq(mlmx_ranova_create(d, f, NULL, &a), MLMX_OK, "%s", mlmx_last_error());
    int n = 0;
    for (const ref_line *l; (l = ref_get_nth(&r, "row", n)) != NULL; n++) {
        const mlmx_anova_row *w = mlmx_anova_row_at(a, n);
        char rn[256];
        cr_assert(w, "%s: row %d missing", name, n);
        cr_expect_str_eq(w->name, row_name(l, 6, rn, sizeof rn));
        cr_expect_eq(w->npar, atoi(l->tok[0]), "%s %s: npar %d", name, w->name, w->npar);
        expect_abs(w->loglik, tokd(l, 1), 1e-6, "logLik", w->name);
        expect_abs(w->aic, tokd(l, 2), 1e-6, "AIC", w->name);
        expect_abs(w->chisq, tokd(l, 3), 1e-6, "LRT", w->name);
        if (n > 0)
            cr_expect_eq(w->df, atoi(l->tok[4]));
        expect_p(w->p, tokd(l, 5), 1e-5, w->name);
    }
    cr_expect_eq(mlmx_anova_nrows(a), n);
    mlmx_anova_free(a);

    /* the LR test against the linear model, by the fit's method */
    double chi2, p;
    int df;
    cr_assert_eq(mlmx_fit_lrt_linear(f, &chi2, &df, &p), MLMX_OK, "%s", mlmx_last_error());
    const double lr = 2.0 * (tokd(ref_get_nth(&r, "row", 0), 1) - ref_num(&r, "lm_loglik", 0));
    expect_abs(chi2, lr, 1e-6, "LR test vs. linear model", name);
    cr_expect_eq(df, mlmx_model_ntheta(m));
    char *text = NULL;
    cr_assert_eq(mlmx_fit_lrt_linear_text(f, &text), MLMX_OK);
    cr_expect(strstr(text, df == 1 ? "chibar2(01)" : "conservative"), "%s", text);
    mlmx_string_free(text);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    ref_free(&r);
}

Test(ranova, sleepstudy) { check_ranova("sleepstudy"); }
Test(ranova, sleepstudy_ml) { check_ranova("sleepstudy_ml"); }
Test(ranova, random_intercept_to_lm) { check_ranova("sleepstudy_ri"); }
Test(ranova, classroom) { check_ranova("classroom"); }

/* ---- bad input, through the mlmx command ---- */

typedef struct result {
    int status;
    char out[8192], err[4096];
} result;

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-anova-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}


static void run(const char *args, result *r)
{
    char cmd[4096], outp[300], errp[300];
    snprintf(outp, sizeof outp, "%s/stdout", tmpdir);
    snprintf(errp, sizeof errp, "%s/stderr", tmpdir);
    snprintf(cmd, sizeof cmd, "timeout 60 '%s' %s >'%s' 2>'%s'", MLMX_CLI_PATH, args, outp, errp);
    int st = system(cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    ref_slurp_buf(outp, r->out, sizeof r->out);
    ref_slurp_buf(errp, r->err, sizeof r->err);
}

/* 40 rows in 8 groups; x2 is missing in row 7, so a model with x2 uses 39. */
static void write_csv(char *path, size_t cap)
{
    snprintf(path, cap, "%s/d.csv", tmpdir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs("y,x1,x2,g\n", fp);
    for (int i = 0; i < 40; i++) {
        const double x1 = i % 5, x2 = sin(0.7 * i), u = 0.8 * cos(1.3 * (i % 8));
        const double y = 1.0 + 0.5 * x1 + 0.3 * x2 + u + 0.4 * sin(2.1 * i + 0.3);
        if (i == 7)
            fprintf(fp, "%.6f,%g,NA,g%d\n", y, x1, i % 8);
        else
            fprintf(fp, "%.6f,%g,%.6f,g%d\n", y, x1, x2, i % 8);
    }
    fclose(fp);
}

Test(anova_cli, different_rows_is_an_error, .init = setup, .fini = teardown)
{
    char csv[300], args[1024], json[300];
    write_csv(csv, sizeof csv);
    snprintf(json, sizeof json, "%s/a.json", tmpdir);
    snprintf(args, sizeof args,
             "anova --data '%s' --formula 'y ~ x1 + (1|g)' --formula 'y ~ x1 + x2 + (1|g)' "
             "--json '%s'", csv, json);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "mlmx: error: anova: models were not all fitted to the same size "
                            "of dataset"), "%s", r.err);
    cr_expect(strstr(r.err, "40") && strstr(r.err, "39"), "%s", r.err);
    cr_expect_eq(access(json, F_OK), -1, "a JSON file was left behind");
}

Test(anova_cli, different_response_is_an_error, .init = setup, .fini = teardown)
{
    char csv[300], args[1024];
    write_csv(csv, sizeof csv);
    snprintf(args, sizeof args,
             "anova --data '%s' --formula 'y ~ x1 + (1|g)' --formula 'exp(y) ~ x1 + (1|g)'", csv);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "response 'exp(y)' differs from model 1's 'y'"), "%s", r.err);
    cr_expect_null(strstr(r.err, "refitting"), "no refit message on failure: %s", r.err);
    cr_expect_eq(r.out[0], '\0', "no table on failure: %s", r.out);
}

Test(anova_cli, non_nested_models_warn, .init = setup, .fini = teardown)
{
    char csv[300], args[1024];
    write_csv(csv, sizeof csv);
    /* x1 alone against x2 and sin-free log(x1 + 1): neither contains the other */
    snprintf(args, sizeof args,
             "anova --data '%s' --formula 'y ~ x1 + (1|g)' "
             "--formula 'y ~ log(x1 + 1) + I(x1^2) + (1|g)'", csv);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, 0, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "mlmx anova: warning: m1 and m2 are not nested (fixed effect 'x1' "
                            "is only in the smaller model)"), "%s", r.err);
    cr_expect(strstr(r.err, "refitting model(s) with ML (instead of REML)"), "%s", r.err);
    cr_expect(strstr(r.out, "Pr(>Chisq)") && strstr(r.out, "warning: m1 and m2"), "%s", r.out);
}

Test(anova_cli, equal_npar_warn, .init = setup, .fini = teardown)
{
    char csv[300], args[1024];
    write_csv(csv, sizeof csv);
    snprintf(args, sizeof args,
             "anova --data '%s' --ml --formula 'y ~ x1 + (1|g)' --formula 'y ~ I(x1^2) + (1|g)'",
             csv);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, 0, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "have the same number of parameters: no test"), "%s", r.err);
    cr_expect_null(strstr(r.err, "refitting"), "--ml: nothing to refit: %s", r.err);
}

Test(anova_cli, usage_errors, .init = setup, .fini = teardown)
{
    result r;
    run("anova --data x.csv --formula 'y ~ x + (1|g)'", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "give at least two models"), "%s", r.err);
    run("ranova --data x.csv --formula 'y ~ x + (1|g)' --family binomial", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "ranova is for linear mixed models"), "%s", r.err);
    run("anova --data x.csv --formula 'y ~ (1|g)' --formula 'y ~ x + (1|g)' --bogus", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "unknown option '--bogus'"), "%s", r.err);
    run("anova --drop1 --data x.csv --formula 'y ~ x + (1|g)' --formula 'y ~ (1|g)'", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--drop1 takes one --formula"), "%s", r.err);
    run("anova --drop1 --reml --data " MLMX_SOURCE_DIR "/data/sleepstudy.csv "
        "--formula 'Reaction ~ Days + (1|Subject)'", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--drop1 compares ML fits"), "%s", r.err);
}

Test(anova, library_argument_errors)
{
    mlmx_anova *a = (mlmx_anova *)1;
    cr_expect_eq(mlmx_anova_create(NULL, 2, &a), MLMX_ERR_ARG);
    cr_expect_null(a);
    cr_expect(strstr(mlmx_last_error(), "at least two fits"), "%s", mlmx_last_error());
    const mlmx_fit *one[2] = {NULL, NULL};
    cr_expect_eq(mlmx_anova_create(one, 2, &a), MLMX_ERR_ARG);
    cr_expect(strstr(mlmx_last_error(), "fit 1 is NULL"), "%s", mlmx_last_error());
    cr_expect_eq(mlmx_anova_nrows(NULL), 0);
    cr_expect_null(mlmx_anova_row_at(NULL, 0));
    mlmx_anova_free(NULL);
}

/* A GLMM and an LMM of one response are not comparable: different families. */
Test(anova, family_mismatch_is_an_error)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f[2] = {NULL, NULL};
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/cbpp.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "incidence ~ period + (1|herd)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = MLMX_ML;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f[0]), MLMX_OK, "%s", mlmx_last_error());
    o.family = MLMX_FAMILY_POISSON;
    cr_assert_eq(mlmx_fit_glmm(m, &o, &f[1]), MLMX_OK, "%s", mlmx_last_error());
    mlmx_anova *a = NULL;
    cr_expect_eq(mlmx_anova_create((const mlmx_fit *const *)f, 2, &a), MLMX_ERR_ARG);
    cr_expect(strstr(mlmx_last_error(), "model 2 is a poisson model and model 1 a gaussian"),
              "%s", mlmx_last_error());
    cr_expect_eq(mlmx_ranova_create(d, f[1], NULL, &a), MLMX_ERR_UNSUPPORTED);
    mlmx_fit_free(f[0]);
    mlmx_fit_free(f[1]);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(anova_cli, same_count_other_rows_is_an_error, .init = setup, .fini = teardown)
{
    char csv[300], args[1024];
    write_csv(csv, sizeof csv);
    /* x3 is x2 shifted: missing in row 8 instead of 7, 39 rows each */
    char fixed[300], cmd[1024];
    snprintf(fixed, sizeof fixed, "%s/e.csv", tmpdir);
    snprintf(cmd, sizeof cmd,
             "awk -F, 'BEGIN{OFS=\",\"} NR==1{print $0,\"x3\"; next} "
             "{x3 = (NR==10) ? \"NA\" : $2; print $0, x3}' '%s' > '%s'", csv, fixed);
    cr_assert_eq(system(cmd), 0);
    snprintf(args, sizeof args,
             "anova --data '%s' --formula 'y ~ x2 + (1|g)' --formula 'y ~ x2 + x3 + (1|g)' "
             "--formula 'y ~ x3 + (1|g)'", fixed);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "not all fitted to the same size of dataset"), "%s", r.err);
    snprintf(args, sizeof args,
             "anova --data '%s' --formula 'y ~ x2 + (1|g)' --formula 'y ~ x3 + (1|g)'", fixed);
    run(args, &r);
    cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "model 2 uses other rows of the data than model 1"), "%s", r.err);
}

/* lme4's drop1(fit, test = "Chisq") on cbpp (binomial, Laplace; lme4 at
 * tolPwrss = 1e-12) and sleepstudy (LMM by ML), mlmx fitting the full and
 * reduced models itself: 1e-6 absolute on AIC and LRT, 1e-5 relative on p. */
static void check_drop1(const char *name)
{
    char path[1024];
    ref_file r;
    snprintf(path, sizeof path, REFDIR "drop1_%s.ref", name);
    cr_assert_eq(ref_load(path, &r), 0, "cannot read %s", path);
    mlmx_data *d = read_data(&r);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, ref_get(&r, "formula")->rest, &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = MLMX_ML;
    mlmx_fit *f = NULL;
    if (strcmp(ref_get(&r, "family")->rest, "binomial") == 0) {
        o.family = MLMX_FAMILY_BINOMIAL;
        cr_assert_eq(mlmx_fit_glmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    } else {
        cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    }
    expect_abs(mlmx_fit_loglik(f), ref_num(&r, "loglik", 0), 1e-6, "full logLik", name);
    mlmx_anova *a = NULL;
    cr_assert_eq(mlmx_drop1_create(d, f, &o, &a), MLMX_OK, "%s", mlmx_last_error());
    int n = 0;
    for (const ref_line *l; (l = ref_get_nth(&r, "row", n)) != NULL; n++) {
        const mlmx_anova_row *w = mlmx_anova_row_at(a, n);
        cr_assert(w, "%s: row %d missing", name, n);
        char rn[256];
        cr_expect_str_eq(w->name, row_name(l, 4, rn, sizeof rn));
        if (n > 0)
            cr_expect_eq(w->df, atoi(l->tok[0]));
        expect_abs(w->aic, tokd(l, 1), 1e-6, "AIC", w->name);
        expect_abs(w->chisq, tokd(l, 2), 1e-6, "LRT", w->name);
        expect_p(w->p, tokd(l, 3), 1e-5, w->name);
    }
    cr_expect_eq(mlmx_anova_nrows(a), n);
    char *text = NULL;
    cr_assert_eq(mlmx_anova_summary(a, NULL, &text), MLMX_OK);
    cr_expect(strstr(text, "Single term deletions") && strstr(text, "Pr(Chi)"), "%s", text);
    mlmx_string_free(text);
    mlmx_anova_free(a);
    /* a REML fit is refused: drop1 compares ML fits */
    mlmx_fit *g = NULL;
    if (mlmx_fit_family(f) == MLMX_FAMILY_GAUSSIAN) {
        cr_assert_eq(mlmx_fit_lmm(m, NULL, &g), MLMX_OK);
        cr_expect_eq(mlmx_drop1_create(d, g, NULL, &a), MLMX_ERR_ARG);
        cr_expect(strstr(mlmx_last_error(), "need an ML fit"), "%s", mlmx_last_error());
        mlmx_fit_free(g);
    }
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    ref_free(&r);
}

Test(drop1, cbpp_binomial) { check_drop1("cbpp"); }
Test(drop1, sleepstudy_ml) { check_drop1("sleepstudy_ml"); }

/* A singular fit (Dyestuff2: the batch variance is 0) equals the linear
 * model: chibar2(01) = 0 and Prob >= chibar2 = 1, as Stata prints it. */
Test(lrt_linear, singular_fit_has_p_one)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/dyestuff2.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "Yield ~ 1 + (1|Batch)", &m), MLMX_OK);
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK);
    cr_assert(mlmx_fit_singular(f));
    double chi2, p;
    int df;
    cr_assert_eq(mlmx_fit_lrt_linear(f, &chi2, &df, &p), MLMX_OK);
    cr_expect_eq(df, 1);
    cr_expect(chi2 < 1e-8, "chi2 %.3g", chi2);
    cr_expect_eq(p, 1.0, "p %.17g", p);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}
