/* mlmx power: the distribution functions behind the tests and intervals,
 * agreement with the R simulation loop (data/reference/power), the same
 * results for any number of threads, the pilot start on sleepstudy, the
 * outputs, and bad input end to end through the command (one-line error,
 * non-zero exit, no output file). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlmx.h"
#include "power/power.h"
#include "refutil.h"

#define SCEN MLMX_SOURCE_DIR "/data/scenarios/"
#define REF_CSV MLMX_SOURCE_DIR "/data/reference/power/power_reference.csv"

/* ---- distribution functions ------------------------------------------------- */

/* Values from R (pbeta, qbeta, pgamma, qchisq, qt, qnorm, binom.test),
 * printed with options(digits = 16). */
Test(power_math, incomplete_beta_and_quantiles)
{
    cr_expect_float_eq(mlmx_pw_pbeta(0.3, 2, 5), 0.579825, 1e-6);
    cr_expect_float_eq(mlmx_pw_pbeta(0.9, 0.5, 0.5), 0.7951672353, 1e-9);
    cr_expect_float_eq(mlmx_pw_pbeta(0.01, 30, 2) / 3.07000000000003e-59, 1.0, 1e-10);
    cr_expect_float_eq(mlmx_pw_qbeta(0.025, 8, 3), 0.4439045376, 1e-9);
    cr_expect_float_eq(mlmx_pw_qbeta(0.5, 2, 2), 0.5, 1e-12);
    for (double p = 0.01; p < 1.0; p += 0.07)
        cr_expect_float_eq(mlmx_pw_pbeta(mlmx_pw_qbeta(p, 3.5, 0.7), 3.5, 0.7), p, 1e-12);
    cr_expect_float_eq(mlmx_pw_qchisq(0.95, 1), 3.841458820694124, 1e-10);
    cr_expect_float_eq(mlmx_pw_qchisq(0.95, 3), 7.814727903251178, 1e-10);
    cr_expect_float_eq(mlmx_pw_qchisq(0.99, 10), 23.20925115895436, 1e-9);
    cr_expect_float_eq(mlmx_pw_pgamma(2.0, 1.5), 0.7385358700508894, 1e-12);
    cr_expect_float_eq(mlmx_pw_qt(0.975, 10), 2.228138851986274, 1e-10);
    cr_expect_float_eq(mlmx_pw_qt(0.975, 1), 12.70620473617469, 1e-8);
    cr_expect_float_eq(mlmx_pw_qt(0.975, 998), 1.962343846216334, 1e-10);
    cr_expect_float_eq(mlmx_pw_qt(0.025, 5), -2.570581835636314, 1e-10);
    cr_expect_float_eq(mlmx_pw_qnorm(0.975), 1.959963984540054, 1e-13);
}

Test(power_math, clopper_pearson)
{
    double lo, hi;
    mlmx_pw_clopper_pearson(8, 10, 0.95, &lo, &hi); /* binom.test(8, 10) */
    cr_expect_float_eq(lo, 0.4439045376, 1e-9);
    cr_expect_float_eq(hi, 0.9747892736, 1e-9);
    mlmx_pw_clopper_pearson(0, 10, 0.95, &lo, &hi);
    cr_expect_eq(lo, 0.0);
    cr_expect_float_eq(hi, 0.3084971078, 1e-9);
    mlmx_pw_clopper_pearson(10, 10, 0.95, &lo, &hi);
    cr_expect_float_eq(lo, 0.6915028922, 1e-9);
    cr_expect_eq(hi, 1.0);
    mlmx_pw_clopper_pearson(813, 1000, 0.9, &lo, &hi); /* binom.test(813, 1000, conf.level = .9) */
    cr_expect_float_eq(lo, 0.7915430130, 1e-9);
    cr_expect_float_eq(hi, 0.8330793114, 1e-9);
    mlmx_pw_clopper_pearson(0, 0, 0.95, &lo, &hi);
    cr_expect(isnan(lo) && isnan(hi));
}

/* ---- helpers ---------------------------------------------------------------- */

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-power-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}


static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp, "%s", path);
    fputs(text, fp);
    fclose(fp);
}

/* A copy of the scenario src with `from` replaced by `to` (which must be
 * there), written to tmpdir/name; path receives its name. */
static void edited(const char *src, const char *from, const char *to, const char *name,
                   char *path, size_t cap)
{
    char *s = ref_slurp(src);
    cr_assert_not_null(s, "%s", src);
    char *at = strstr(s, from);
    cr_assert_not_null(at, "'%s' is not in %s", from, src);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    snprintf(path, cap, "%s/%s", tmpdir, name);
    write_text(path, out);
    free(out);
    free(s);
}

typedef struct result {
    int status;
    char err[4096];
    char out[16384];
} result;

static void run_cli(const char *args, result *r)
{
    char cmd[4096], errp[300], outp[300];
    snprintf(errp, sizeof errp, "%s/stderr", tmpdir);
    snprintf(outp, sizeof outp, "%s/stdout", tmpdir);
    snprintf(cmd, sizeof cmd, "timeout 120 '%s' power %s >'%s' 2>'%s'", MLMX_CLI_PATH, args,
             outp, errp);
    int st = system(cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char *e = ref_slurp(errp), *o = ref_slurp(outp);
    snprintf(r->err, sizeof r->err, "%s", e ? e : "");
    snprintf(r->out, sizeof r->out, "%s", o ? o : "");
    free(e);
    free(o);
}

/* Remove the JSON line holding the "device" key (in place). */
static void drop_device_line(char *s)
{
    char *k = strstr(s, "\"device\": ");
    if (!k)
        return;
    char *a = k, *e = strchr(k, '\n');
    while (a > s && a[-1] != '\n')
        a--;
    if (e)
        memmove(a, e + 1, strlen(e + 1) + 1);
    else
        *a = '\0';
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static mlmx_power_result *run_api(const char *path, long nsim, int threads)
{
    mlmx_power_options o;
    mlmx_power_options_default(&o);
    o.nsim = nsim;
    o.threads = threads;
    mlmx_power_result *r = NULL;
    cr_assert_eq(mlmx_power_run(path, &o, &r), MLMX_OK, "%s: %s", path, mlmx_last_error());
    return r;
}

/* ---- agreement with R ------------------------------------------------------- */

typedef struct ref_row {
    long nsim, n_failed, n_singular;
    double power, seconds;
} ref_row;

static int ref_read(const char *scenario, ref_row *out)
{
    FILE *fp = fopen(REF_CSV, "r");
    if (!fp)
        return -1;
    char line[512];
    int found = -1;
    while (fgets(line, sizeof line, fp)) {
        char name[64];
        ref_row r;
        if (sscanf(line, "%63[^,],%ld,%lf,%ld,%ld,%lf", name, &r.nsim, &r.power, &r.n_failed,
                   &r.n_singular, &r.seconds) == 6 &&
            strcmp(name, scenario) == 0) {
            *out = r;
            found = 0;
        }
    }
    fclose(fp);
    return found;
}

/* Two independent binomial estimates agree within Monte Carlo error when
 * |p1 - p2| <= 4 sqrt(p (1 - p) (1/n1 + 1/n2)), p the pooled proportion
 * (a two-sample z test at |z| <= 4; the designs' covariates are drawn
 * differently in R and here, which adds a little design variation). */
static void expect_agrees(const char *scenario, const char *file, long nsim)
{
    ref_row ref = {0, 0, 0, 0.0, 0.0};
    cr_assert_eq(ref_read(scenario, &ref), 0, "no row '%s' in %s", scenario, REF_CSV);
    mlmx_power_result *r = run_api(file, nsim, 2);
    const mlmx_power_point *b = mlmx_power_base(r);
    const double n1 = (double)b->n_ok, n2 = (double)(ref.nsim - ref.n_failed);
    const double p = (b->power * n1 + ref.power * n2) / (n1 + n2);
    const double tol = 4.0 * sqrt(p * (1.0 - p) * (1.0 / n1 + 1.0 / n2));
    cr_log_info("%s: mlmx %.4f (%ld fits, %ld failed, %ld singular, %.2f s), R %.4f (%ld, %ld "
                "failed, %ld singular, %.1f s), |diff| %.4f, tolerance %.4f",
                scenario, b->power, b->n_ok, b->n_failed, b->n_singular, b->seconds, ref.power,
                ref.nsim, ref.n_failed, ref.n_singular, ref.seconds, fabs(b->power - ref.power),
                tol);
    cr_expect_leq(fabs(b->power - ref.power), tol, "%s: mlmx %.4f vs R %.4f (tolerance %.4f)",
                  scenario, b->power, ref.power, tol);
    cr_expect_leq(b->ci_lower, b->power);
    cr_expect_geq(b->ci_upper, b->power);
    mlmx_power_result_free(r);
}

Test(power_reference, slope) { expect_agrees("slope", SCEN "slope_power.json", 2000); }
Test(power_reference, binomial) { expect_agrees("binomial", SCEN "binomial_power.json", 2000); }
Test(power_reference, ordinal) { expect_agrees("ordinal", SCEN "ordinal_power.json", 1000); }

/* ---- threads, outputs ------------------------------------------------------- */

TestSuite(power_cli, .init = setup, .fini = teardown);

/* The same JSON (and CSV) byte for byte with 1 and 2 threads: a curve of a
 * linear model, and a binomial likelihood ratio test. */
Test(power_cli, threads_give_identical_results)
{
    char lrt[300];
    edited(SCEN "binomial_power.json", "\"test\": {\"type\": \"wald_z\", \"term\": \"x\"}",
           "\"test\": {\"type\": \"lrt\", \"drop\": [\"x\"]}", "lrt.json", lrt, sizeof lrt);
    const char *files[] = {SCEN "slope_power.json", lrt};
    const char *nsim[] = {"200", "150"};
    for (int f = 0; f < 2; f++) {
        char *out[2] = {NULL, NULL}, *csv[2] = {NULL, NULL};
        for (int t = 0; t < 2; t++) {
            char args[1024], jp[300], cp[300];
            snprintf(jp, sizeof jp, "%s/t%d.json", tmpdir, t + 1);
            snprintf(cp, sizeof cp, "%s/t%d.csv", tmpdir, t + 1);
            snprintf(args, sizeof args,
                     "--scenario '%s' --nsim %s --threads %d --json '%s' --csv '%s' --quiet",
                     files[f], nsim[f], t + 1, jp, cp);
            result r;
            run_cli(args, &r);
            cr_assert_eq(r.status, 0, "%s", r.err);
            out[t] = ref_slurp(jp);
            csv[t] = ref_slurp(cp);
            cr_assert_not_null(out[t]);
            cr_assert_not_null(csv[t]);
        }
        /* the "device" key names the thread count; every other byte agrees */
        drop_device_line(out[0]);
        drop_device_line(out[1]);
        cr_expect_str_eq(out[0], out[1], "JSON differs between 1 and 2 threads for %s", files[f]);
        cr_expect_str_eq(csv[0], csv[1], "CSV differs between 1 and 2 threads for %s", files[f]);
        for (int t = 0; t < 2; t++) {
            free(out[t]);
            free(csv[t]);
        }
    }
}

/* A curve: the table on stdout, the JSON keys (per point under `curve`),
 * one CSV row per point, and the plot. */
Test(power_cli, curve_outputs)
{
    char args[1024], jp[300], cp[300], pp[300];
    snprintf(jp, sizeof jp, "%s/c.json", tmpdir);
    snprintf(cp, sizeof cp, "%s/c.csv", tmpdir);
    snprintf(pp, sizeof pp, "%s/c.svg", tmpdir);
    snprintf(args, sizeof args,
             "--scenario '%s' --nsim 100 --threads 2 --json '%s' --csv '%s' --plot '%s'",
             SCEN "slope_power.json", jp, cp, pp);
    result r;
    run_cli(args, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(r.err[0], '\0', "stderr: %s", r.err);
    cr_expect(strstr(r.out, "Wald z of 'x'") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "\n   100  ") != NULL, "no row for 100 clusters: %s", r.out);
    char *j = ref_slurp(jp);
    cr_assert_not_null(j);
    const char *keys[] = {"\"power\": ",    "\"ci_lower\": ",   "\"ci_upper\": ",
                          "\"nsim\": 100",  "\"n_failed\": ",   "\"n_singular\": ",
                          "\"curve\": [",   "\"units\": 10,",   "\"units\": 100,",
                          "\"units\": 50,", "\"curve_level\": \"g\"", NULL};
    for (int i = 0; keys[i]; i++)
        cr_expect(strstr(j, keys[i]) != NULL, "JSON lacks %s", keys[i]);
    int npow = 0;
    for (const char *s = j; (s = strstr(s, "\"power\": ")); s++)
        npow++;
    cr_expect_eq(npow, 11, "power given %d times (base + 10 points)", npow);
    free(j);
    char *c = ref_slurp(cp);
    cr_assert_not_null(c);
    cr_expect_eq(strncmp(c, "units,nobs,nsim,n_ok,n_rejected,power,ci_lower,ci_upper,n_failed,"
                            "n_singular,",
                         75),
                 0, "%s", c);
    cr_expect_eq(count_lines(c), 11, "%s", c);
    cr_expect(strstr(c, "\n10,200,100,") != NULL, "%s", c);
    free(c);
    char *svg = ref_slurp(pp);
    cr_assert_not_null(svg);
    cr_expect(strstr(svg, "<svg") != NULL);
    free(svg);
}

static void expect_error(const char *scenario, const char *extra, int status,
                         const char *const *needles);

/* Device choice: the default runs the batch engine on the CPU and says so;
 * gpu without a device (or for an LRT) fails with the reason and leaves no
 * file; auto runs on the CPU with a note saying why. */
Test(power_cli, device_choice)
{
    char jp[300], args[1024];
    snprintf(jp, sizeof jp, "%s/d.json", tmpdir);
    snprintf(args, sizeof args, "--scenario '%s' --nsim 50 --threads 2 --json '%s'",
             SCEN "binomial_power.json", jp);
    result r;
    run_cli(args, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "device: cpu: batch engine glmm-1ri, 2 threads\n") != NULL, "%s",
              r.out);
    char *j = ref_slurp(jp);
    cr_assert_not_null(j);
    cr_expect(strstr(j, "\"device\": \"cpu: batch engine glmm-1ri, 2 threads\"") != NULL, "%s", j);
    cr_expect(strstr(j, "\"device_note\": \"\"") != NULL, "%s", j);
    free(j);
    char lrt[300];
    edited(SCEN "slope_power.json", "\"test\": {\"type\": \"wald_z\", \"term\": \"x\"}",
           "\"test\": {\"type\": \"lrt\", \"drop\": [\"x\"]}", "lrt.json", lrt, sizeof lrt);
    const char *n_lrt[] = {"--device gpu", "LRT", "CPU", NULL};
    expect_error(lrt, "--nsim 20 --device gpu", 1, n_lrt);
    snprintf(args, sizeof args, "--scenario '%s' --nsim 20 --device auto", lrt);
    run_cli(args, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "device: cpu: workspaces, 1 thread\n") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "note: device auto: running on the CPU: an LRT") != NULL, "%s", r.out);
    const char *n_bad[] = {"--device", "'tpu'", "cpu, gpu or auto", NULL};
    expect_error(SCEN "slope_power.json", "--device tpu", 2, n_bad);
    char desc[512];
    if (mlmx_device_describe(desc, sizeof desc) != MLMX_OK) {
        /* no device here: gpu is refused with the reason, auto falls back */
        const char *n_gpu[] = {"--device gpu", NULL};
        expect_error(SCEN "slope_power.json", "--nsim 20 --device gpu", 1, n_gpu);
        snprintf(args, sizeof args, "--scenario '%s' --nsim 1000 --device auto --threads 2",
                 SCEN "binomial_power.json");
        run_cli(args, &r);
        cr_assert_eq(r.status, 0, "%s", r.err);
        cr_expect(strstr(r.out, "device: cpu: batch engine glmm-1ri, 2 threads\n") != NULL, "%s",
                  r.out);
        cr_expect(strstr(r.out, "note: device auto: running on the CPU") != NULL, "%s", r.out);
    }
}

/* A likelihood ratio test: ML fits of both models, chi-square(1) bound. */
Test(power_cli, lrt)
{
    char sc[300], jp[300], args[1024];
    edited(SCEN "slope_power.json", "\"test\": {\"type\": \"wald_z\", \"term\": \"x\"}",
           "\"test\": {\"type\": \"lrt\", \"drop\": [\"x\"]}", "lrt.json", sc, sizeof sc);
    snprintf(jp, sizeof jp, "%s/l.json", tmpdir);
    snprintf(args, sizeof args, "--scenario '%s' --nsim 100 --json '%s' --quiet", sc, jp);
    result r;
    run_cli(args, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(r.out[0], '\0', "--quiet printed: %s", r.out);
    char *j = ref_slurp(jp);
    cr_assert_not_null(j);
    cr_expect(strstr(j, "\"df\": 1") != NULL, "%s", j);
    cr_expect(strstr(j, "\"method\": \"ML\"") != NULL, "%s", j);
    cr_expect(strstr(j, "\"null_formula\": \"y ~ x + (x | g) - x\"") != NULL, "%s", j);
    cr_expect(strstr(j, "\"critical_value\": 3.84145882069412") != NULL, "%s", j);
    free(j);
}

/* ---- bad input -------------------------------------------------------------- */

/* Run with all three outputs requested; expect exit status `status`, a
 * one-line message holding every needle, nothing on stdout and no file. */
static void expect_error(const char *scenario, const char *extra, int status,
                         const char *const *needles)
{
    char args[2048], jp[300], cp[300], pp[300];
    snprintf(jp, sizeof jp, "%s/out.json", tmpdir);
    snprintf(cp, sizeof cp, "%s/out.csv", tmpdir);
    snprintf(pp, sizeof pp, "%s/out.svg", tmpdir);
    snprintf(args, sizeof args, "--scenario '%s' --json '%s' --csv '%s' --plot '%s' %s",
             scenario, jp, cp, pp, extra);
    result r;
    run_cli(args, &r);
    cr_expect_eq(r.status, status, "exit status %d (stderr: %s)", r.status, r.err);
    cr_expect_eq(count_lines(r.err), 1, "not one line: %s", r.err);
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(r.err, needles[i]) != NULL, "message lacks '%s': %s", needles[i],
                  r.err);
    cr_expect_eq(r.out[0], '\0', "stdout: %s", r.out);
    cr_expect_eq(access(jp, F_OK), -1, "a JSON file was left behind");
    cr_expect_eq(access(cp, F_OK), -1, "a CSV file was left behind");
    cr_expect_eq(access(pp, F_OK), -1, "a plot was left behind");
}

static void expect_edit_error(const char *from, const char *to, const char *const *needles)
{
    char sc[300];
    edited(SCEN "slope_power.json", from, to, "bad.json", sc, sizeof sc);
    expect_error(sc, "--nsim 20", 1, needles);
}

Test(power_cli, unknown_coefficient)
{
    const char *n[] = {"bad.json", "fixed", "'z'", "(Intercept), x", NULL};
    expect_edit_error("\"x\": 0.3}", "\"x\": 0.3, \"z\": 1}", n);
}

Test(power_cli, unknown_test_term)
{
    const char *n[] = {"bad.json", "test.term", "'w'", NULL};
    expect_edit_error("\"term\": \"x\"", "\"term\": \"w\"", n);
}

Test(power_cli, unknown_dropped_term)
{
    const char *n[] = {"bad.json", "test.drop", "'w'", NULL};
    expect_edit_error("\"type\": \"wald_z\", \"term\": \"x\"",
                      "\"type\": \"lrt\", \"drop\": [\"w\"]", n);
}

Test(power_cli, unknown_random_group)
{
    const char *n[] = {"bad.json", "'h'", "grouping factor", NULL};
    expect_edit_error("{\"group\": \"g\"", "{\"group\": \"h\"", n);
}

Test(power_cli, negative_variance)
{
    const char *n[] = {"bad.json", "negative", "variance", "'(Intercept)'", NULL};
    expect_edit_error("\"sd\": {\"(Intercept)\": 1, \"x\": 0.5}",
                      "\"var\": {\"(Intercept)\": -1, \"x\": 0.25}", n);
}

Test(power_cli, negative_sd)
{
    const char *n[] = {"bad.json", "negative", "'x'", NULL};
    expect_edit_error("\"x\": 0.5}", "\"x\": -0.5}", n);
}

Test(power_cli, correlation_out_of_range)
{
    const char *n[] = {"bad.json", "[-1, 1]", "1.5", NULL};
    expect_edit_error("\"(Intercept):x\": 0.3", "\"(Intercept):x\": 1.5", n);
}

Test(power_cli, zero_clusters)
{
    const char *n[] = {"bad.json", "units", "at least 1", "'g'", NULL};
    expect_edit_error("{\"name\": \"g\", \"units\": 50}", "{\"name\": \"g\", \"units\": 0}", n);
}

Test(power_cli, zero_clusters_in_curve)
{
    const char *n[] = {"bad.json", "curve.units[0]", "at least 1", NULL};
    expect_edit_error("\"units\": [10,", "\"units\": [0,", n);
}

Test(power_cli, nsim_not_positive)
{
    const char *n[] = {"bad.json", "nsim must be positive", NULL};
    char sc[300];
    edited(SCEN "slope_power.json", "\"nsim\": 1000", "\"nsim\": 0", "bad.json", sc, sizeof sc);
    expect_error(sc, "", 1, n);
    const char *n2[] = {"--nsim", "'0'", NULL};
    expect_error(SCEN "slope_power.json", "--nsim 0", 2, n2);
    const char *n3[] = {"--nsim", "'-3'", NULL};
    expect_error(SCEN "slope_power.json", "--nsim -3", 2, n3);
}

Test(power_cli, malformed_file_line_and_column)
{
    const char *n[] = {"bad.json:21:", "expected", NULL};
    expect_edit_error("\"alpha\": 0.05,", "\"alpha\": 0.05", n);
}

Test(power_cli, missing_file)
{
    const char *n[] = {"nope.json", NULL};
    expect_error("/nonexistent/nope.json", "", 1, n);
}

Test(power_cli, output_not_writable)
{
    /* checked before the first replicate: a scenario that would take
     * minutes fails at once, and the writable outputs are not created */
    char args[1024], jp[300];
    snprintf(jp, sizeof jp, "%s/ok.json", tmpdir);
    snprintf(args, sizeof args,
             "--scenario '%s' --nsim 1000000 --json '%s' --csv /nonexistent/dir/x.csv",
             SCEN "ordinal_power.json", jp);
    result r;
    run_cli(args, &r);
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect_eq(count_lines(r.err), 1, "%s", r.err);
    cr_expect(strstr(r.err, "/nonexistent/dir/x.csv") != NULL, "%s", r.err);
    cr_expect_eq(access(jp, F_OK), -1, "a JSON file was left behind");
    const char *n[] = {"x.gif", ".svg, .png or .pdf", NULL};
    snprintf(args, sizeof args, "--scenario '%s' --plot '%s/x.gif'", SCEN "slope_power.json",
             tmpdir);
    run_cli(args, &r);
    cr_expect_eq(r.status, 1, "%s", r.err);
    for (int i = 0; n[i]; i++)
        cr_expect(strstr(r.err, n[i]) != NULL, "%s", r.err);
    snprintf(args, sizeof args, "--scenario '%s' --json '%s'", SCEN "slope_power.json", tmpdir);
    run_cli(args, &r);
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect(strstr(r.err, "is a directory") != NULL, "%s", r.err);
}

Test(power_cli, usage_errors)
{
    result r;
    run_cli("--nsim 10", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--scenario is required") != NULL, "%s", r.err);
    run_cli("--scenario x.json --bogus", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "unknown option '--bogus'") != NULL, "%s", r.err);
    run_cli("--scenario x.json --threads 0", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--threads") != NULL, "%s", r.err);
    run_cli("--scenario x.json --seed -1", &r);
    cr_expect_eq(r.status, 2);
    run_cli("--help", &r);
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "usage: mlmx power") != NULL);
}

/* ---- the engine through the API ---------------------------------------------- */

TestSuite(power_api, .init = setup, .fini = teardown);

static void expect_api_error(const char *text, const char *const *needles)
{
    char path[300];
    snprintf(path, sizeof path, "%s/s.json", tmpdir);
    write_text(path, text);
    mlmx_power_options o;
    mlmx_power_options_default(&o);
    o.nsim = 10;
    mlmx_power_result *r = NULL;
    cr_expect_neq(mlmx_power_run(path, &o, &r), MLMX_OK);
    cr_expect_null(r);
    const char *msg = mlmx_last_error();
    cr_expect_null(strchr(msg, '\n'), "not one line: %s", msg);
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(msg, needles[i]) != NULL, "message lacks '%s': %s", needles[i], msg);
}

#define FACTOR_SCENARIO(FIXED)                                                              \
    "{\"formula\": \"y ~ factor(k) + (1 | g)\", \"design\": {\"levels\": [{\"name\": \"g\", "      \
    "\"units\": 20}, {\"name\": \"obs\", \"units\": 5}], \"covariates\": [{\"name\": \"k\", "      \
    "\"level\": \"obs\", \"binary\": {\"p\": 0.5}}]}, \"fixed\": " FIXED ", \"random\": "       \
    "[{\"group\": \"g\", \"sd\": {\"(Intercept)\": 1}}], \"sigma\": 1, \"test\": {\"type\": "    \
    "\"wald_z\", \"term\": \"factor(k)1\"}}"

/* Coefficient names that depend on the data (factor levels) are checked
 * against the model: unknown names, and names the model has but the
 * scenario leaves out, are errors naming them and the model's names. */
Test(power_api, factor_coefficients_checked_against_the_model)
{
    const char *n1[] = {"fixed", "'factor(k)2'", "(Intercept), factor(k)1", NULL};
    expect_api_error(FACTOR_SCENARIO("{\"(Intercept)\": 0, \"factor(k)1\": 0.5, "
                                     "\"factor(k)2\": 1}"),
                     n1);
    const char *n2[] = {"fixed", "no value", "'factor(k)1'", NULL};
    expect_api_error(FACTOR_SCENARIO("{\"(Intercept)\": 0}"), n2);
    char path[300];
    snprintf(path, sizeof path, "%s/ok.json", tmpdir);
    write_text(path, FACTOR_SCENARIO("{\"(Intercept)\": 0, \"factor(k)1\": 0.5}"));
    mlmx_power_result *r = run_api(path, 50, 1);
    cr_expect_eq(mlmx_power_base(r)->nsim, 50);
    cr_expect_eq(mlmx_power_base(r)->nobs, 100);
    mlmx_power_result_free(r);
}

static void count_progress(void *ctx, int point, int npoints, long done, long nsim)
{
    long *c = ctx;
    c[0]++;
    c[1] = npoints;
    if (done == nsim)
        c[2]++;
    (void)point;
}

Test(power_api, options_and_progress)
{
    mlmx_power_options o;
    mlmx_power_options_default(&o);
    cr_expect_eq(o.threads, 1);
    cr_expect_eq(o.conf_level, 0.95);
    long calls[3] = {0, 0, 0};
    o.nsim = 30;
    o.threads = 2;
    o.seed_given = 1;
    o.seed = 99;
    o.progress = count_progress;
    o.progress_ctx = calls;
    mlmx_power_result *r = NULL;
    cr_assert_eq(mlmx_power_run(SCEN "slope_power.json", &o, &r), MLMX_OK, "%s",
                 mlmx_last_error());
    /* Wald tests report after each block of replicates: at least once a
     * point, at most once a replicate */
    cr_expect(calls[0] >= 10 && calls[0] <= 300, "%ld progress calls", calls[0]);
    cr_expect_eq(calls[1], 10);
    cr_expect_eq(calls[2], 10);
    cr_expect_eq(mlmx_power_npoints(r), 10);
    cr_expect_str_eq(mlmx_power_curve_level(r), "g");
    cr_expect_eq(mlmx_power_point_at(r, 0)->units, 10);
    cr_expect_eq(mlmx_power_point_at(r, 9)->units, 100);
    cr_expect_null(mlmx_power_point_at(r, 10));
    /* the base design (50 clusters) is the curve's point at 50 */
    cr_expect_eq(mlmx_power_base(r)->units, 50);
    cr_expect_eq(mlmx_power_base(r)->n_rejected, mlmx_power_point_at(r, 4)->n_rejected);
    cr_expect_str_eq(mlmx_power_device(r), "cpu: batch engine lmm-1term, 2 threads");
    cr_expect_str_eq(mlmx_power_device_note(r), "");
    cr_expect_eq(mlmx_power_device_peak_bytes(r), 0);
    mlmx_power_result_free(r);
    o.device = (mlmx_device)7;
    cr_expect_eq(mlmx_power_run(SCEN "slope_power.json", &o, &r), MLMX_ERR_ARG);
    o.device = MLMX_DEVICE_CPU;
    o.nsim = -1;
    cr_expect_eq(mlmx_power_run(SCEN "slope_power.json", &o, &r), MLMX_ERR_ARG);
    o.nsim = 10;
    o.threads = 0;
    cr_expect_eq(mlmx_power_run(SCEN "slope_power.json", &o, &r), MLMX_ERR_ARG);
}

/* ---- the pilot start (simr's extend and powerCurve) ------------------------- */

#define PILOT(EXTRA)                                                                           \
    "{\"formula\": \"Reaction ~ Days + (Days | Subject)\", \"pilot\": {\"data\": "                \
    "\"data/sleepstudy.csv\", \"extend\": {\"group\": \"Subject\", \"units\": 36}}, "             \
    "\"fixed\": {\"Days\": 5}, \"test\": {\"type\": \"wald_t\", \"term\": \"Days\"}" EXTRA "}"

/* sleepstudy's estimates as the truth with the effect of Days set to 5:
 * the SE of Days at 18 subjects is lme4's 1.546, so the power there is
 * about P(|t| > 1.973) at a noncentrality 5 / 1.546 = 3.23, i.e. 0.89
 * (a little less with an estimated SE). Units are copied in turn: 10
 * observations per subject at every point. */
Test(power_api, pilot_sleepstudy_curve)
{
    char path[300];
    snprintf(path, sizeof path, "%s/pilot.json", tmpdir);
    write_text(path, PILOT(", \"curve\": {\"level\": \"Subject\", \"units\": [9, 18, 36]}"));
    mlmx_power_result *r = run_api(path, 1000, 2);
    cr_assert_eq(mlmx_power_npoints(r), 3);
    const mlmx_power_point *p9 = mlmx_power_point_at(r, 0), *p18 = mlmx_power_point_at(r, 1),
                           *p36 = mlmx_power_point_at(r, 2);
    cr_expect_eq(p9->nobs, 90);
    cr_expect_eq(p18->nobs, 180);
    cr_expect_eq(p36->nobs, 360);
    cr_expect_eq(mlmx_power_base(r)->units, 36);
    cr_expect_eq(mlmx_power_base(r)->n_rejected, p36->n_rejected);
    cr_log_info("pilot: power %.3f %.3f %.3f at 9, 18, 36 subjects", p9->power, p18->power,
                p36->power);
    cr_expect(fabs(p18->power - 0.885) < 0.04, "power at 18 subjects %.3f", p18->power);
    cr_expect(p9->power < p18->power && p18->power < p36->power);
    /* the t bound with n - p = 178 residual df */
    cr_expect_float_eq(p18->critical_value, 1.973380889, 1e-8);
    mlmx_power_result_free(r);
}

/* The scenario's random effects override the pilot's: no variation of the
 * Days slope between subjects gives a much higher power. */
Test(power_api, pilot_overrides)
{
    char path[300];
    snprintf(path, sizeof path, "%s/pilot.json", tmpdir);
    write_text(path, PILOT(", \"random\": [{\"group\": \"Subject\", \"sd\": {\"Days\": 0.5}}]"));
    mlmx_power_result *r = run_api(path, 200, 2);
    cr_expect_gt(mlmx_power_base(r)->power, 0.99);
    cr_expect_eq(mlmx_power_base(r)->nobs, 360);
    mlmx_power_result_free(r);
    const char *n1[] = {"pilot.extend.group", "'Days'", "grouping factor", NULL};
    char text[2048];
    snprintf(text, sizeof text, "%s", PILOT(""));
    char *at = strstr(text, "\"group\": \"Subject\"");
    memcpy(at, "\"group\": \"Days\"   ", 18);
    expect_api_error(text, n1);
    const char *n2[] = {"nope.csv", NULL};
    snprintf(text, sizeof text, "%s", PILOT(""));
    at = strstr(text, "data/sleepstudy.csv");
    memcpy(at, "data/nope.csv      ", 19);
    expect_api_error(text, n2);
}
