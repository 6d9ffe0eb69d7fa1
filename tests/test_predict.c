/* Saved models and prediction (docs/inference.md, "Saved models and
 * prediction"; docs/model-file.md): fit -> mlmx_fit_save -> read ->
 * mlmx_predict against lme4's predict() (data/reference/infer/
 * predict_reference.R), the fit's own fitted values reproduced, and bad
 * input through the library and the command.
 *
 * Tolerances. Predictions, their SEs and the response scale: 1e-10
 * relative (absolute below 1e-9 in scale). For that the estimates must be
 * lme4's: an LMM is fitted at lme4's theta exactly (theta_start with one
 * evaluation; beta, sigma and the modes are then profiled as lme4 profiles
 * them); a GLMM's fit is first checked against lme4's beta to 1e-3 and then
 * given lme4's beta, vcov and conditional modes (on cbpp mlmx's Laplace
 * optimum and lme4's differ by up to 4e-4 relative in beta), so that the test checks
 * the saved recipe, the file and the prediction, not the optimizer. Save ->
 * read -> predict on the fitting data reproduces an LMM's fitted values
 * bit for bit, a GLMM's means to 1e-14 relative (its fit sums the linear
 * predictor in another order). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lmm/fit.h"
#include "mlmx.h"
#include "output/modelfile.h"
#include "refutil.h"

#define REFDIR MLMX_SOURCE_DIR "/data/reference/infer/"
#define TOL 1e-10

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-predict-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static double tokval(const char *t) { return strcmp(t, "NA") == 0 ? NAN : strtod(t, NULL); }

/* A fit of the case's model: at lme4's estimates (see the top). */
typedef struct fixture {
    ref_file r;
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    int gauss;
    char datapath[512];
} fixture;

static void pin_glmm(fixture *x)
{
    mlmx_fit *f = x->f;
    const mlmx_model *m = x->m;
    int p = mlmx_model_nfixef(m);
    const ref_line *b = ref_get(&x->r, "beta"), *v = ref_get(&x->r, "vcov");
    cr_assert(b && b->ntok == p && v && v->ntok == p * p);
    for (int j = 0; j < p; j++) {
        double want = strtod(b->tok[j], NULL);
        cr_expect(close_rel(f->beta[j], want, 1e-3, 1e-3), "beta[%d] = %.10g, lme4 %.10g", j,
                  f->beta[j], want);
        f->beta[j] = want;
    }
    for (int j = 0; j < p * p; j++)
        f->vcov[j] = strtod(v->tok[j], NULL);
    for (int k = 0; k < mlmx_model_nterms(m); k++) {
        int q = mlmx_model_term_q(m, k), found = 0;
        for (int l = 0; l < mlmx_model_term_nlevels(m, k); l++) {
            const ref_line *rl;
            for (int i = 0; (rl = ref_get_nth(&x->r, "ranef", i)) != NULL; i++) {
                if (strcmp(rl->tok[0], mlmx_model_term_group(m, k)) == 0 &&
                    strcmp(rl->tok[1], mlmx_model_term_level(m, k, l)) == 0) {
                    cr_assert_eq(rl->ntok, 2 + q);
                    for (int c = 0; c < q; c++)
                        f->ranef[k][l * q + c] = strtod(rl->tok[2 + c], NULL);
                    found++;
                }
            }
        }
        cr_assert_eq(found, mlmx_model_term_nlevels(m, k), "term %d: levels matched", k);
    }
}

static void fixture_load(const char *name, fixture *x, int pin)
{
    char path[1024];
    memset(x, 0, sizeof *x);
    snprintf(path, sizeof path, REFDIR "predict_%s.ref", name);
    cr_assert_eq(ref_load(path, &x->r), 0, "cannot read %s", path);
    snprintf(x->datapath, sizeof x->datapath, "%s/data/%s", MLMX_SOURCE_DIR,
             ref_get(&x->r, "data")->rest);
    cr_assert_eq(mlmx_data_read_csv(x->datapath, &x->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(x->d, ref_get(&x->r, "formula")->rest, &x->m), MLMX_OK, "%s",
                 mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    x->gauss = strcmp(ref_get(&x->r, "family")->rest, "gaussian") == 0;
    double theta[16];
    const ref_line *tl = ref_get(&x->r, "theta");
    cr_assert(tl && tl->ntok <= 16);
    for (int j = 0; j < tl->ntok; j++)
        theta[j] = strtod(tl->tok[j], NULL);
    o.conditional_variances = 1;
    if (x->gauss) {
        o.theta_start = theta;
        o.max_evaluations = 1;
        cr_assert_eq(mlmx_fit_lmm(x->m, &o, &x->f), MLMX_OK, "%s", mlmx_last_error());
    } else {
        o.family = MLMX_FAMILY_BINOMIAL;
        cr_assert_eq(mlmx_fit_glmm(x->m, &o, &x->f), MLMX_OK, "%s", mlmx_last_error());
        if (pin)
            pin_glmm(x);
    }
}

static void fixture_free(fixture *x)
{
    mlmx_fit_free(x->f);
    mlmx_model_free(x->m);
    mlmx_data_free(x->d);
    ref_free(&x->r);
}

/* Save x's fit and read it back. */
static mlmx_model_file *save_read(const fixture *x, const char *fname)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, fname);
    cr_assert_eq(mlmx_fit_save(x->f, path, x->datapath), MLMX_OK, "%s", mlmx_last_error());
    mlmx_model_file *mf = NULL;
    cr_assert_eq(mlmx_model_file_read(path, &mf), MLMX_OK, "%s", mlmx_last_error());
    return mf;
}

static void expect_vec(const char *what, const double *got, const ref_line *want, size_t n)
{
    cr_assert(want, "fixture lacks %s", what);
    cr_assert_eq((size_t)want->ntok, n, "%s: %d values in the fixture, %zu rows", what,
                 want->ntok, n);
    double maxrel = 0.0;
    for (size_t i = 0; i < n; i++) {
        double w = tokval(want->tok[i]);
        if (!isnan(w) && fabs(got[i] - w) / fmax(fabs(w), 1e-9) > maxrel)
            maxrel = fabs(got[i] - w) / fmax(fabs(w), 1e-9);
        if (isnan(w))
            cr_expect(isnan(got[i]), "%s row %zu: %.17g, R gives NA", what, i + 1, got[i]);
        else
            cr_expect(close_rel(got[i], w, TOL, 1e-9), "%s row %zu: %.17g, R %.17g (diff %.3g)",
                      what, i + 1, got[i], w, got[i] - w);
    }
    cr_log_info("%s: max relative difference from R %.3g", what, maxrel);
}

static void check_case(const char *name)
{
    fixture x;
    fixture_load(name, &x, 1);
    mlmx_model_file *mf = save_read(&x, "model.h5");
    char path[1024];
    snprintf(path, sizeof path, REFDIR "%s", ref_get(&x.r, "newdata")->rest);
    mlmx_data *nd = NULL;
    cr_assert_eq(mlmx_data_read_csv(path, &nd), MLMX_OK, "%s", mlmx_last_error());
    size_t n = mlmx_data_nrow(nd), nnew = 99;
    double *fit = malloc(n * sizeof *fit), *se = malloc(n * sizeof *se);
    mlmx_predict_options o;
    mlmx_predict_options_default(&o);
    o.re = MLMX_PREDICT_RE_NONE;
    cr_assert_eq(mlmx_predict(mf, nd, &o, fit, se, &nnew), MLMX_OK, "%s", mlmx_last_error());
    expect_vec("re none", fit, ref_get(&x.r, "pred_none"), n);
    expect_vec("se", se, ref_get(&x.r, "se_link"), n);
    o.re = MLMX_PREDICT_RE_ALL;
    cr_assert_eq(mlmx_predict(mf, nd, &o, fit, NULL, &nnew), MLMX_OK, "%s", mlmx_last_error());
    expect_vec("re all", fit, ref_get(&x.r, "pred_all"), n);
    cr_expect_eq(nnew, (size_t)ref_num(&x.r, "n_new", 0), "rows with a new level: %zu", nnew);
    if (!x.gauss) {
        o.type = MLMX_PREDICT_RESPONSE;
        cr_assert_eq(mlmx_predict(mf, nd, &o, fit, NULL, NULL), MLMX_OK, "%s",
                     mlmx_last_error());
        expect_vec("response, re all", fit, ref_get(&x.r, "resp_all"), n);
        o.re = MLMX_PREDICT_RE_NONE;
        cr_assert_eq(mlmx_predict(mf, nd, &o, fit, NULL, NULL), MLMX_OK, "%s",
                     mlmx_last_error());
        expect_vec("response, re none", fit, ref_get(&x.r, "resp_none"), n);
    }
    free(fit);
    free(se);
    mlmx_data_free(nd);
    mlmx_model_file_free(mf);
    fixture_free(&x);
}

TestSuite(predict, .init = setup, .fini = teardown);

Test(predict, sleepstudy_against_lme4) { check_case("sleepstudy"); }
Test(predict, oats_factor_interaction_against_lme4) { check_case("oats"); }
Test(predict, cbpp_binomial_against_lme4) { check_case("cbpp"); }

/* Save -> read -> predict on the fitting data gives the fit's fitted values. */
static void check_refit(const char *name, double tol)
{
    fixture x;
    fixture_load(name, &x, 0);
    mlmx_model_file *mf = save_read(&x, "model.h5");
    cr_expect_str_eq(mlmx_model_file_formula(mf), ref_get(&x.r, "formula")->rest);
    cr_expect_str_eq(mlmx_model_file_version(mf), mlmx_version());
    cr_expect_eq(strlen(mlmx_model_file_data_sha256(mf)), 64u);
    size_t n = mlmx_data_nrow(x.d);
    cr_assert_eq(n, mlmx_model_nobs(x.m), "the data set has no dropped rows");
    double *fit = malloc(n * sizeof *fit);
    mlmx_predict_options o;
    mlmx_predict_options_default(&o);
    o.type = MLMX_PREDICT_RESPONSE;
    size_t nnew = 99;
    cr_assert_eq(mlmx_predict(mf, x.d, &o, fit, NULL, &nnew), MLMX_OK, "%s", mlmx_last_error());
    cr_expect_eq(nnew, 0u);
    const double *fv = mlmx_fit_fitted(x.f);
    for (size_t i = 0; i < n; i++)
        if (tol == 0)
            cr_expect_eq(fit[i], fv[i], "row %zu: %.17g, fitted %.17g", i + 1, fit[i], fv[i]);
        else
            cr_expect(close_rel(fit[i], fv[i], tol, 1e-300), "row %zu: %.17g, fitted %.17g",
                      i + 1, fit[i], fv[i]);
    free(fit);
    mlmx_model_file_free(mf);
    fixture_free(&x);
}

Test(predict, sleepstudy_reproduces_fitted_exactly) { check_refit("sleepstudy", 0); }
Test(predict, oats_reproduces_fitted_exactly) { check_refit("oats", 0); }
Test(predict, cbpp_reproduces_fitted_means) { check_refit("cbpp", 1e-14); }

/* ---- bad input: the library -------------------------------------------- */

static void write_text(const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Predict from x's saved fit on a CSV text: the status, message in msg. */
static mlmx_status predict_csv(const fixture *x, const char *csv, char *msg, size_t cap)
{
    char path[512];
    write_text("new.csv", csv, path, sizeof path);
    mlmx_model_file *mf = save_read(x, "model.h5");
    mlmx_data *nd = NULL;
    cr_assert_eq(mlmx_data_read_csv(path, &nd), MLMX_OK, "%s", mlmx_last_error());
    double fit[16];
    cr_assert_leq(mlmx_data_nrow(nd), 16u);
    mlmx_predict_options o;
    mlmx_predict_options_default(&o);
    mlmx_status st = mlmx_predict(mf, nd, &o, fit, NULL, NULL);
    snprintf(msg, cap, "%s", mlmx_last_error());
    mlmx_data_free(nd);
    mlmx_model_file_free(mf);
    return st;
}

Test(predict, missing_column_is_named)
{
    fixture x;
    fixture_load("sleepstudy", &x, 0);
    char msg[1024];
    cr_expect_eq(predict_csv(&x, "Subject\n308\n309\n", msg, sizeof msg), MLMX_ERR_DATA);
    cr_expect(strstr(msg, "newdata") && strstr(msg, "'Days'"), "message: %s", msg);
    fixture_free(&x);
}

Test(predict, factor_given_as_numbers_and_numbers_as_strings)
{
    fixture x;
    fixture_load("oats", &x, 0);
    char msg[1024];
    cr_expect_eq(predict_csv(&x, "nitro,Variety,Block\n0,1,I\n0.2,2,II\n", msg, sizeof msg),
                 MLMX_ERR_DATA);
    cr_expect(strstr(msg, "'Variety'") && strstr(msg, "fitted with type \"factor\"") &&
                  strstr(msg, "\"numeric\" was supplied"),
              "message: %s", msg);
    fixture_free(&x);
    fixture_load("sleepstudy", &x, 0);
    cr_expect_eq(predict_csv(&x, "Days,Subject\nthree,308\n", msg, sizeof msg), MLMX_ERR_DATA);
    cr_expect(strstr(msg, "'Days'") && strstr(msg, "fitted with type \"numeric\""), "message: %s",
              msg);
    fixture_free(&x);
}

Test(predict, unseen_fixed_effect_level_names_factor_row_level)
{
    fixture x;
    fixture_load("oats", &x, 0);
    char msg[1024];
    cr_expect_eq(predict_csv(&x, "nitro,Variety,Block\n0,Victory,I\n0.2,Purple,II\n", msg,
                             sizeof msg),
                 MLMX_ERR_DATA);
    cr_expect(strstr(msg, "factor 'Variety'") && strstr(msg, "new level 'Purple'") &&
                  strstr(msg, "row 2"),
              "message: %s", msg);
    fixture_free(&x);
}

Test(predict, other_format_version_is_refused)
{
    fixture x;
    fixture_load("sleepstudy", &x, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/v2.h5", tmpdir);
    cr_assert_eq(mlmx_model_file_write(x.f, path, NULL, MLMX_MODEL_FILE_FORMAT + 1), MLMX_OK,
                 "%s", mlmx_last_error());
    mlmx_model_file *mf = NULL;
    cr_expect_eq(mlmx_model_file_read(path, &mf), MLMX_ERR_UNSUPPORTED);
    cr_expect_null(mf);
    cr_expect(strstr(mlmx_last_error(), "format version 2") &&
                  strstr(mlmx_last_error(), "reads format version 1"),
              "message: %s", mlmx_last_error());
    fixture_free(&x);
}

/* Damage a saved file: truncate it to half, or overwrite len bytes at off. */
static mlmx_status read_damaged(const fixture *x, long off, long len, int truncate_half)
{
    char path[512];
    snprintf(path, sizeof path, "%s/damaged.h5", tmpdir);
    cr_assert_eq(mlmx_fit_save(x->f, path, NULL), MLMX_OK, "%s", mlmx_last_error());
    FILE *fp = fopen(path, "r+b");
    cr_assert_not_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    if (truncate_half) {
        fclose(fp);
        cr_assert_eq(truncate(path, size / 2), 0);
    } else {
        cr_assert_lt(off + len, size);
        fseek(fp, off, SEEK_SET);
        for (long i = 0; i < len; i++)
            fputc(0xA5, fp);
        fclose(fp);
    }
    mlmx_model_file *mf = NULL;
    mlmx_status st = mlmx_model_file_read(path, &mf);
    mlmx_model_file_free(mf);
    return st;
}

Test(predict, damaged_files_are_refused)
{
    fixture x;
    fixture_load("sleepstudy", &x, 0);
    cr_expect_eq(read_damaged(&x, 0, 0, 1), MLMX_ERR_PARSE, "truncated: %s",
                 mlmx_last_error());
    cr_expect_eq(read_damaged(&x, 0, 8, 0), MLMX_ERR_PARSE, "signature: %s", mlmx_last_error());
    cr_expect(strstr(mlmx_last_error(), "not an HDF5 file"), "%s", mlmx_last_error());
    cr_expect_eq(read_damaged(&x, 8, 64, 0), MLMX_ERR_PARSE, "superblock: %s",
                 mlmx_last_error());
    /* not a model file; no file at all */
    mlmx_model_file *mf = NULL;
    cr_expect_eq(mlmx_model_file_read(x.datapath, &mf), MLMX_ERR_PARSE);
    char path[512];
    snprintf(path, sizeof path, "%s/none.h5", tmpdir);
    cr_expect_eq(mlmx_model_file_read(path, &mf), MLMX_ERR_IO);
    cr_expect_null(mf);
    fixture_free(&x);
}

/* ---- the command --------------------------------------------------------- */

typedef struct result {
    int status; /* exit status, or -1 when killed by a signal */
    char err[4096];
    char out[16384];
} result;


static void run(const char *args, result *r)
{
    char cmd[4096], errp[300], outp[300];
    snprintf(errp, sizeof errp, "%s/stderr", tmpdir);
    snprintf(outp, sizeof outp, "%s/stdout", tmpdir);
    snprintf(cmd, sizeof cmd, "cd '%s' && timeout 60 '%s' %s >'%s' 2>'%s'", MLMX_SOURCE_DIR,
             MLMX_CLI_PATH, args, outp, errp);
    int st = system(cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    ref_slurp_buf(errp, r->err, sizeof r->err);
    ref_slurp_buf(outp, r->out, sizeof r->out);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

#define SLEEP_FIT                                                                               \
    "fit --data data/sleepstudy.csv --formula 'Reaction ~ Days + (Days | Subject)' --quiet "

Test(predict, cli_save_and_predict)
{
    char args[2048], out[512];
    result r;
    snprintf(args, sizeof args, SLEEP_FIT "--save '%s/m.h5'", tmpdir);
    run(args, &r);
    cr_assert_eq(r.status, 0, "fit --save: %s", r.err);
    snprintf(out, sizeof out, "%s/pred.csv", tmpdir);
    snprintf(args, sizeof args,
             "predict --model '%s/m.h5' --newdata "
             "data/reference/infer/predict_sleepstudy_newdata.csv --se --out '%s'",
             tmpdir, out);
    run(args, &r);
    cr_assert_eq(r.status, 0, "predict: %s", r.err);
    cr_expect(strstr(r.err, "2 of 6 rows have a grouping level the model did not see"),
              "note: %s", r.err);
    char text[4096];
    ref_slurp_buf(out, text, sizeof text);
    cr_expect_eq(strncmp(text, "fit,se.fit\n", 11), 0, "output: %s", text);
    int lines = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n';
    cr_expect_eq(lines, 7, "a header and 6 rows: %s", text);
    cr_expect(strstr(text, "\nNA,NA\n"), "the row with a missing Days is NA: %s", text);
    /* standard output, fixed effects only, response scale of an LMM = link */
    snprintf(args, sizeof args,
             "predict --model '%s/m.h5' --newdata "
             "data/reference/infer/predict_sleepstudy_newdata.csv --re none --type response",
             tmpdir);
    run(args, &r);
    cr_assert_eq(r.status, 0, "predict: %s", r.err);
    cr_expect_eq(strncmp(r.out, "fit\n", 4), 0, "stdout: %s", r.out);
    cr_expect_eq(r.err[0], '\0', "no note with --re none: %s", r.err);
}

Test(predict, cli_bad_input)
{
    char args[2048], out[512], path[512];
    result r;
    snprintf(args, sizeof args, SLEEP_FIT "--save '%s/m.h5'", tmpdir);
    run(args, &r);
    cr_assert_eq(r.status, 0, "fit --save: %s", r.err);
    snprintf(out, sizeof out, "%s/pred.csv", tmpdir);
    /* a missing column */
    write_text("nodays.csv", "Subject\n308\n", path, sizeof path);
    snprintf(args, sizeof args, "predict --model '%s/m.h5' --newdata '%s' --out '%s'", tmpdir,
             path, out);
    run(args, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "mlmx predict: error: newdata: unknown column 'Days'"), "%s", r.err);
    cr_expect_not(exists(out), "no output file on failure");
    /* a factor level type mismatch: Days given as words */
    write_text("words.csv", "Days,Subject\nthree,308\n", path, sizeof path);
    snprintf(args, sizeof args, "predict --model '%s/m.h5' --newdata '%s' --out '%s'", tmpdir,
             path, out);
    run(args, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "variable 'Days' was fitted with type \"numeric\""), "%s", r.err);
    cr_expect_not(exists(out));
    /* a damaged model file: truncated */
    char model[512];
    snprintf(model, sizeof model, "%s/m.h5", tmpdir);
    cr_assert_eq(truncate(model, 1000), 0);
    snprintf(args, sizeof args,
             "predict --model '%s' --newdata data/sleepstudy.csv --out '%s'", model, out);
    run(args, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "mlmx predict: error:") && strstr(r.err, "m.h5"), "%s", r.err);
    cr_expect_not(exists(out));
    /* not a model file */
    snprintf(args, sizeof args, "predict --model data/sleepstudy.csv --newdata "
                                "data/sleepstudy.csv");
    run(args, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "not an HDF5 file"), "%s", r.err);
    /* usage errors */
    run("predict --model x.h5", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--model and --newdata are required"), "%s", r.err);
    run("predict --model x.h5 --newdata y.csv --re some", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--re 'some' must be all or none"), "%s", r.err);
    /* fit --save into a directory that does not exist: no file, exit 1 */
    snprintf(args, sizeof args, SLEEP_FIT "--save '%s/no/such/dir/m.h5'", tmpdir);
    run(args, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "cannot create"), "%s", r.err);
}

/* ---- boot and simulate from a saved model -------------------------------- */

Test(predict, cli_simulate_and_boot_from_saved_model)
{
    char args[2048], a[512], b[512];
    result r;
    snprintf(args, sizeof args, SLEEP_FIT "--save '%s/m.h5'", tmpdir);
    run(args, &r);
    cr_assert_eq(r.status, 0, "fit --save: %s", r.err);
    /* the responses drawn from the saved model are those drawn after a fit */
    snprintf(a, sizeof a, "%s/a.csv", tmpdir);
    snprintf(b, sizeof b, "%s/b.csv", tmpdir);
    snprintf(args, sizeof args, "simulate --model '%s/m.h5' --nsim 4 --out '%s' --quiet", tmpdir,
             a);
    run(args, &r);
    cr_assert_eq(r.status, 0, "simulate --model: %s", r.err);
    snprintf(args, sizeof args,
             "simulate --data data/sleepstudy.csv --formula 'Reaction ~ Days + (Days | Subject)' "
             "--nsim 4 --out '%s' --quiet",
             b);
    run(args, &r);
    cr_assert_eq(r.status, 0, "simulate: %s", r.err);
    static char ta[65536], tb[65536];
    ref_slurp_buf(a, ta, sizeof ta);
    ref_slurp_buf(b, tb, sizeof tb);
    cr_expect(ta[0] && strcmp(ta, tb) == 0, "simulate --model differs from simulate after a fit");
    snprintf(args, sizeof args, "boot --model '%s/m.h5' --nsim 5", tmpdir);
    run(args, &r);
    cr_expect_eq(r.status, 0, "boot --model: %s", r.err);
    cr_expect(strstr(r.out, "5 of 5 replicates"), "%s", r.out);
    /* other data: refused by its SHA-256 */
    snprintf(args, sizeof args, "boot --model '%s/m.h5' --data data/dyestuff.csv --nsim 5",
             tmpdir);
    run(args, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "is not the one the model was fitted to"), "%s", r.err);
    /* --model with --formula: usage error */
    snprintf(args, sizeof args, "simulate --model '%s/m.h5' --formula 'y ~ x' --nsim 2 --out "
                                "'%s'", tmpdir, a);
    run(args, &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--model gives the formula"), "%s", r.err);
    /* a saved GLMM: not done yet, said so */
    snprintf(args, sizeof args,
             "fit --data data/cbpp.csv --formula 'cbind(incidence, size - incidence) ~ "
             "factor(period) + (1|herd)' --family binomial --quiet --save '%s/g.h5'",
             tmpdir);
    run(args, &r);
    cr_assert_eq(r.status, 0, "fit --save: %s", r.err);
    snprintf(args, sizeof args, "boot --model '%s/g.h5' --nsim 5", tmpdir);
    run(args, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "not done yet"), "%s", r.err);
}
