/* The command end to end on bundled data: summary content, JSON keys and
 * values, random-effects CSV. Numbers are checked against the lme4
 * fixture for sleepstudy REML (data/reference/lmm/sleepstudy_reml.ref). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlmx.h"
#include "refutil.h"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-fit-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}


/* The number that follows "key": in a JSON text. */
static double json_num(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    cr_assert_not_null(p, "JSON lacks key %s", key);
    return strtod(p + strlen(pat), NULL);
}

TestSuite(cli_fit, .init = setup, .fini = teardown);

Test(cli_fit, sleepstudy_summary_json_ranef)
{
    char cmd[2048], json[300], ranef[300], out[300];
    snprintf(json, sizeof json, "%s/fit.json", tmpdir);
    snprintf(ranef, sizeof ranef, "%s/ranef.csv", tmpdir);
    snprintf(out, sizeof out, "%s/summary.txt", tmpdir);
    snprintf(cmd, sizeof cmd,
             "'%s' fit --data '%s/data/sleepstudy.csv' --formula 'Reaction ~ Days + (Days | "
             "Subject)' --json '%s' --ranef '%s' > '%s'",
             MLMX_CLI_PATH, MLMX_SOURCE_DIR, json, ranef, out);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mlmx fit failed");

    ref_file ref;
    cr_assert_eq(ref_load(MLMX_SOURCE_DIR "/data/reference/lmm/sleepstudy_reml.ref", &ref), 0);

    char *sum = ref_slurp(out);
    cr_assert_not_null(sum);
    const char *must[] = {"Linear mixed model fit by REML", "REML criterion at convergence: 1743.6",
                          "Scaled residuals:", "Random effects:", "Subject", "Residual",
                          "Number of obs: 180, groups:  Subject, 18", "Fixed effects:",
                          "(Intercept)", "Days", "Correlation of Fixed Effects:",
                          "Group sizes", NULL};
    for (int i = 0; must[i]; i++)
        cr_expect(strstr(sum, must[i]) != NULL, "summary lacks '%s':\n%s", must[i], sum);
    free(sum);

    char *j = ref_slurp(json);
    cr_assert_not_null(j);
    const char *keys[] = {"\"method\": \"REML\"", "\"loglik\"", "\"deviance\"",
                          "\"reml_criterion\"", "\"aic\"", "\"bic\"", "\"n_obs\": 180",
                          "\"ngroups\": {\"Subject\": 18}", "\"sigma\"", "\"theta\"",
                          "\"fixef\"", "\"varcorr\"", "\"converged\": true",
                          "\"singular\": false", "\"n_evaluations\"",
                          "\"coef_tests\": {\"method\": \"satterthwaite\"",
                          "\"anova\": {\"type\": 3", "\"re_se\": [",
                          "\"lrt_no_random_effects\": {\"chi2\": ", NULL};
    for (int i = 0; keys[i]; i++)
        cr_expect(strstr(j, keys[i]) != NULL, "JSON lacks %s", keys[i]);
    cr_expect(close_rel(json_num(j, "reml_criterion"), ref_num(&ref, "criterion", 0), 1e-6,
                        1e-300));
    cr_expect(close_rel(json_num(j, "sigma"), ref_num(&ref, "sigma", 0), 1e-4, 1e-300));
    cr_expect(close_rel(json_num(j, "aic"), ref_num(&ref, "aic", 0), 1e-6, 1e-300));
    cr_expect_gt(json_num(j, "n_evaluations"), 0);
    free(j);

    char *rc = ref_slurp(ranef);
    cr_assert_not_null(rc);
    cr_expect(strncmp(rc, "group,level,term,mode,condsd\n", 29) == 0);
    int lines = 0;
    for (const char *p = rc; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 1 + 18 * 2, "ranef rows: %d", lines);
    cr_expect(strstr(rc, "Subject,308,(Intercept),") != NULL);
    free(rc);
    ref_free(&ref);
}

Test(cli_fit, ml_and_quiet)
{
    char cmd[2048], json[300], out[300];
    snprintf(json, sizeof json, "%s/fit.json", tmpdir);
    snprintf(out, sizeof out, "%s/summary.txt", tmpdir);
    snprintf(cmd, sizeof cmd,
             "'%s' fit --ml --quiet --data '%s/data/dyestuff.csv' --formula 'Yield ~ 1 + "
             "(1|Batch)' --json '%s' > '%s'",
             MLMX_CLI_PATH, MLMX_SOURCE_DIR, json, out);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *sum = ref_slurp(out);
    cr_expect_str_eq(sum, "", "--quiet printed: %s", sum);
    free(sum);
    char *j = ref_slurp(json);
    cr_assert_not_null(j);
    cr_expect(strstr(j, "\"method\": \"ML\"") != NULL);
    ref_file ref;
    cr_assert_eq(ref_load(MLMX_SOURCE_DIR "/data/reference/lmm/dyestuff_ml.ref", &ref), 0);
    cr_expect(close_rel(json_num(j, "deviance"), ref_num(&ref, "criterion", 0), 1e-6, 1e-300));
    ref_free(&ref);
    free(j);
}

Test(cli_fit, optimizer_choice)
{
    char cmd[2048], json[300];
    snprintf(json, sizeof json, "%s/fit.json", tmpdir);
    const char *names[] = {"bobyqa", "bfgs", "auto"};
    const char *want[] = {"\"optimizer\": \"BOBYQA\"", "\"optimizer\": \"BFGS\"",
                          "\"optimizer\": \"BOBYQA\""};
    ref_file ref;
    cr_assert_eq(ref_load(MLMX_SOURCE_DIR "/data/reference/lmm/sleepstudy_reml.ref", &ref), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd,
                 "'%s' fit --quiet --optimizer %s --data '%s/data/sleepstudy.csv' --formula "
                 "'Reaction ~ Days + (Days | Subject)' --json '%s'",
                 MLMX_CLI_PATH, names[i], MLMX_SOURCE_DIR, json);
        int st = system(cmd);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        char *j = ref_slurp(json);
        cr_expect(strstr(j, want[i]) != NULL, "%s: %s", names[i], j);
        cr_expect(close_rel(json_num(j, "reml_criterion"), ref_num(&ref, "criterion", 0), 1e-6,
                            1e-300));
        free(j);
    }
    ref_free(&ref);
}

/* --device: cpu by default (no summary line, "cpu" in the JSON); auto on a
 * small model runs on the CPU with a note; gpu without a device fails with
 * the reason and writes nothing; a bad value is a usage error. */
Test(cli_fit, device_choice)
{
    char cmd[2048], json[300], out[300], err[300];
    snprintf(json, sizeof json, "%s/fit.json", tmpdir);
    snprintf(out, sizeof out, "%s/summary.txt", tmpdir);
    snprintf(err, sizeof err, "%s/stderr.txt", tmpdir);
    const char *base = "fit --data '" MLMX_SOURCE_DIR "/data/sleepstudy.csv' --formula "
                       "'Reaction ~ Days + (Days | Subject)'";
    snprintf(cmd, sizeof cmd, "'%s' %s --json '%s' > '%s'", MLMX_CLI_PATH, base, json, out);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *j = ref_slurp(json), *sum = ref_slurp(out);
    cr_expect(strstr(j, "\"device\": \"cpu\",\n  \"device_note\": \"\"") != NULL, "%s", j);
    cr_expect(strstr(sum, "device:") == NULL && strstr(sum, "note: device") == NULL, "%s", sum);
    free(j);
    free(sum);
    /* auto: sleepstudy has no crossed dense block, so the CPU, with a note */
    snprintf(cmd, sizeof cmd, "'%s' %s --device auto --json '%s' > '%s'", MLMX_CLI_PATH, base,
             json, out);
    st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    j = ref_slurp(json);
    sum = ref_slurp(out);
    cr_expect(strstr(j, "\"device\": \"cpu\"") != NULL, "%s", j);
    cr_expect(strstr(j, "\"device_note\": \"device auto: running on the CPU: ") != NULL, "%s", j);
    cr_expect(strstr(sum, "note: device auto: running on the CPU: ") != NULL, "%s", sum);
    free(j);
    free(sum);
    remove(json);
    snprintf(cmd, sizeof cmd, "'%s' %s --device tpu --json '%s' 2> '%s'", MLMX_CLI_PATH, base,
             json, err);
    st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    char *e = ref_slurp(err);
    cr_expect(strstr(e, "--device 'tpu' must be cpu, gpu or auto") != NULL, "%s", e);
    free(e);
    cr_expect_eq(access(json, F_OK), -1, "a usage error left a JSON file");
    char why[512];
    if (mlmx_device_describe(why, sizeof why) == MLMX_OK)
        return; /* a device: the gpu path is tests/test_cuda_fit_parity.c's */
    snprintf(cmd, sizeof cmd, "'%s' %s --device gpu --json '%s' > '%s' 2> '%s'", MLMX_CLI_PATH,
             base, json, out, err);
    st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    e = ref_slurp(err);
    cr_expect(strstr(e, "--device gpu: ") != NULL, "%s", e);
    free(e);
    sum = ref_slurp(out);
    cr_expect_str_eq(sum, "", "a refused fit printed: %s", sum);
    free(sum);
    cr_expect_eq(access(json, F_OK), -1, "a refused fit left a JSON file");
}

Test(cli_fit, singular_fit_is_reported)
{
    char cmd[2048], out[300];
    snprintf(out, sizeof out, "%s/summary.txt", tmpdir);
    snprintf(cmd, sizeof cmd,
             "'%s' fit --data '%s/data/dyestuff2.csv' --formula 'Yield ~ 1 + (1|Batch)' > '%s'",
             MLMX_CLI_PATH, MLMX_SOURCE_DIR, out);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *sum = ref_slurp(out);
    cr_expect(strstr(sum, "singular") != NULL, "no singular-fit note:\n%s", sum);
    free(sum);
}

Test(cli_fit, caterpillar_plot_svg)
{
    char cmd[2048], svg[300];
    snprintf(svg, sizeof svg, "%s/ranef.svg", tmpdir);
    snprintf(cmd, sizeof cmd,
             "'%s' fit --quiet --data '%s/data/pastes.csv' --formula 'strength ~ 1 + "
             "(1|batch/cask)' --ranef-plot '%s'",
             MLMX_CLI_PATH, MLMX_SOURCE_DIR, svg);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *s = ref_slurp(svg);
    cr_assert_not_null(s);
    cr_expect(strncmp(s, "<svg ", 5) == 0);
    cr_expect(strstr(s, "</svg>\n") != NULL);
    /* one panel per term, one point per level: 30 cask:batch + 10 batch */
    cr_expect(strstr(s, ">cask:batch: (Intercept)<") != NULL);
    cr_expect(strstr(s, ">batch: (Intercept)<") != NULL);
    int circles = 0;
    for (const char *p = s; (p = strstr(p, "<circle")); p++)
        circles++;
    cr_expect_eq(circles, 40);
    free(s);
}

/* A GLMM end to end: the summary's GLMM content, the JSON keys issue 3 adds
 * (family, link, nagq, thresholds, dispersion) with values from the
 * fixtures, the random-effects CSV with conditional SDs, and the plot. */
static char *run_glmm(const char *data, const char *formula, const char *opts, char *json,
                      char *ranef)
{
    char cmd[3000], out[300], plot[300];
    snprintf(json, 300, "%s/g.json", tmpdir);
    snprintf(ranef, 300, "%s/g.csv", tmpdir);
    snprintf(out, sizeof out, "%s/g.txt", tmpdir);
    snprintf(plot, sizeof plot, "%s/g.svg", tmpdir);
    snprintf(cmd, sizeof cmd,
             "'%s' fit --data '%s/data/%s' --formula '%s' %s --json '%s' --ranef '%s' "
             "--ranef-plot '%s' > '%s'",
             MLMX_CLI_PATH, MLMX_SOURCE_DIR, data, formula, opts, json, ranef, plot, out);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mlmx fit failed: %s", cmd);
    cr_expect_eq(access(plot, R_OK), 0, "no plot written");
    return ref_slurp(out);
}

Test(cli_fit, glmm_binomial_agq)
{
    char json[300], ranef[300];
    char *sum = run_glmm("cbpp.csv", "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)",
                         "--family binomial --nagq 25", json, ranef);
    cr_assert_not_null(sum);
    const char *must[] = {"Generalized linear mixed model fit by maximum likelihood (Adaptive "
                          "Gauss-Hermite Quadrature, nAGQ = 25)",
                          "Family: binomial  ( logit )", "z value", "Pr(>|z|)", "Wald chi2(3)",
                          "LR test vs. binomial model without random effects", NULL};
    for (int i = 0; must[i]; i++)
        cr_expect(strstr(sum, must[i]) != NULL, "summary lacks '%s':\n%s", must[i], sum);
    cr_expect(strstr(sum, "Residual") == NULL, "a GLMM has no residual variance row");
    free(sum);
    char *j = ref_slurp(json);
    cr_assert_not_null(j);
    const char *keys[] = {"\"method\": \"AGQ\"", "\"family\": \"binomial\"", "\"link\": \"logit\"",
                          "\"nagq\": 25", "\"ngroups\": {\"herd\": 15}", "\"fixef\"", "\"z\"",
                          "\"p\"", "\"varcorr\"", "\"loglik_no_random_effects\"", NULL};
    for (int i = 0; keys[i]; i++)
        cr_expect(strstr(j, keys[i]) != NULL, "JSON lacks %s", keys[i]);
    ref_file ref;
    cr_assert_eq(ref_load(MLMX_SOURCE_DIR "/data/reference/glmm/cbpp_agq25.ref", &ref), 0);
    /* the full-scale log-likelihood, -91.983 (lme4 prints -50.005 here) */
    cr_expect(close_rel(json_num(j, "loglik"), ref_num(&ref, "loglik", 0), 1e-6, 0), "loglik %g",
              json_num(j, "loglik"));
    ref_free(&ref);
    free(j);
    char *rc = ref_slurp(ranef);
    cr_assert_not_null(rc);
    cr_expect(strncmp(rc, "group,level,term,mode,condsd\n", 29) == 0);
    cr_expect(strstr(rc, "herd,1,(Intercept),") != NULL, "%s", rc);
    free(rc);
}

Test(cli_fit, glmm_ordinal_thresholds_and_negbin_dispersion)
{
    char json[300], ranef[300];
    char *sum = run_glmm("wine.csv", "rating ~ temp + contact + (1|judge)",
                         "--family ordinal --nagq 10", json, ranef);
    cr_assert_not_null(sum);
    cr_expect(strstr(sum, "Threshold coefficients") != NULL, "%s", sum);
    cr_expect(strstr(sum, "1|2") != NULL && strstr(sum, "4|5") != NULL, "%s", sum);
    free(sum);
    char *j = ref_slurp(json);
    cr_assert_not_null(j);
    cr_expect(strstr(j, "\"family\": \"ordinal\"") != NULL);
    cr_expect(strstr(j, "\"thresholds\": [") != NULL, "JSON lacks thresholds");
    cr_expect(strstr(j, "{\"name\": \"2|3\", \"estimate\": ") != NULL);
    cr_expect(strstr(j, "{\"name\": \"(Intercept)\"") == NULL, "ordinal fixef has no intercept");
    ref_file ref;
    cr_assert_eq(ref_load(MLMX_SOURCE_DIR "/data/reference/glmm/wine_agq10.ref", &ref), 0);
    cr_expect(close_rel(json_num(j, "loglik"), ref_num(&ref, "loglik", 0), 1e-6, 0));
    ref_free(&ref);
    free(j);

    sum = run_glmm("salamanders.csv", "count ~ spp * mined + (1|site)", "--family negbin", json,
                   ranef);
    cr_assert_not_null(sum);
    cr_expect(strstr(sum, "Dispersion parameter for nbinom2 family") != NULL, "%s", sum);
    free(sum);
    j = ref_slurp(json);
    cr_assert_not_null(j);
    cr_expect(strstr(j, "\"family\": \"negbin\"") != NULL);
    cr_expect(strstr(j, "\"dispersion\": {\"size\": ") != NULL, "JSON lacks dispersion");
    cr_assert_eq(ref_load(MLMX_SOURCE_DIR "/data/reference/glmm/salamanders_nb2.ref", &ref), 0);
    cr_expect(close_rel(json_num(j, "size"), ref_num(&ref, "dispersion", 0), 1e-3, 0),
              "size %g vs %g", json_num(j, "size"), ref_num(&ref, "dispersion", 0));
    ref_free(&ref);
    free(j);
}
