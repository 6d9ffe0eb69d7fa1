/* Bad input, end to end through the mlmx command: each case must give a
 * one-line error that names the problem, a non-zero exit status, no crash,
 * and no output file left behind. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
}

typedef struct result {
    int status; /* exit status, or -1 when killed by a signal */
    char err[4096];
    char out[16384];
} result;

/* Run the command with a shell-quoted argument string; capture stdout,
 * stderr and the exit status. */
static void run(const char *args, result *r)
{
    char cmd[4096], errp[300], outp[300];
    snprintf(errp, sizeof errp, "%s/stderr", tmpdir);
    snprintf(outp, sizeof outp, "%s/stdout", tmpdir);
    snprintf(cmd, sizeof cmd, "timeout 60 '%s' %s >'%s' 2>'%s'", MLMX_CLI_PATH, args, outp, errp);
    int st = system(cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    memset(r->err, 0, sizeof r->err);
    memset(r->out, 0, sizeof r->out);
    FILE *fp = fopen(errp, "r");
    if (fp) {
        size_t n = fread(r->err, 1, sizeof r->err - 1, fp);
        r->err[n] = '\0';
        fclose(fp);
    }
    fp = fopen(outp, "r");
    if (fp) {
        size_t n = fread(r->out, 1, sizeof r->out - 1, fp);
        r->out[n] = '\0';
        fclose(fp);
    }
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Fit `formula` on a CSV with the given content, asking for a JSON file;
 * expect failure with every needle in the message and no JSON written. */
static void expect_fit_error_opts(const char *csv, const char *formula, const char *opts,
                                  int status, const char *const *needles)
{
    char data[300], json[300], args[2048];
    write_file("d.csv", csv, data, sizeof data);
    snprintf(json, sizeof json, "%s/out.json", tmpdir);
    snprintf(args, sizeof args, "fit --data '%s' --formula '%s' --json '%s' %s", data, formula, json,
             opts);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, status, "exit status %d (stderr: %s)", r.status, r.err);
    if (status == 2) {
        for (int i = 0; needles[i]; i++)
            cr_expect(strstr(r.err, needles[i]) != NULL, "message lacks '%s': %s", needles[i],
                      r.err);
        cr_expect_eq(count_lines(r.err), 1, "%s", r.err);
        cr_expect_eq(access(json, F_OK), -1, "a JSON file was left behind");
        return;
    }
    cr_expect(strncmp(r.err, "mlmx: error: ", 13) == 0, "stderr: %s", r.err);
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(r.err, needles[i]) != NULL, "message lacks '%s': %s", needles[i], r.err);
    cr_expect_eq(access(json, F_OK), -1, "a JSON file was left behind");
    cr_expect_eq(r.out[0], '\0', "something was printed on stdout: %s", r.out);
}

static void expect_fit_error(const char *csv, const char *formula, const char *const *needles)
{
    expect_fit_error_opts(csv, formula, "", 1, needles);
}

TestSuite(cli_errors, .init = setup, .fini = teardown);

/* ---- GLMM responses and quadrature (issue 3) ---- */

#define GLMM_CSV_HEAD "y,s,f,x,g,h\n"

Test(cli_errors, binomial_response_outside_0_1)
{
    const char *n[] = {"binomial", "'y'", "0 or 1", "data row 3", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1,2,1,1.5,a,q\n2,1,1,2.5,b,p\n"
                                        "1,0,3,1.0,b,q\n0,1,1,0.2,c,p\n1,3,0,2.2,c,q\n",
                          "y ~ x + (1|g)", "--family binomial", 1, n);
}

Test(cli_errors, binomial_successes_exceed_trials)
{
    const char *n[] = {"successes", "exceed", "trials", "data row 2", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1,5,3,1.5,a,q\n0,1,1,2.5,b,p\n"
                                        "1,0,3,1.0,b,q\n0,1,1,0.2,c,p\n1,3,3,2.2,c,q\n",
                          "cbind(s, f - s) ~ x + (1|g)", "--family binomial", 1, n);
}

Test(cli_errors, poisson_negative_count)
{
    const char *n[] = {"Poisson", "non-negative integer", "data row 4", "-1", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1,2,1,1.5,a,q\n2,1,1,2.5,b,p\n"
                                        "-1,0,3,1.0,b,q\n0,1,1,0.2,c,p\n1,3,0,2.2,c,q\n",
                          "y ~ x + (1|g)", "--family poisson", 1, n);
}

Test(cli_errors, poisson_non_integer_count)
{
    const char *n[] = {"Poisson", "non-negative integer", "data row 2", "1.5", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1.5,2,1,1.5,a,q\n2,1,1,2.5,b,p\n"
                                        "1,0,3,1.0,b,q\n0,1,1,0.2,c,p\n1,3,0,2.2,c,q\n",
                          "y ~ x + (1|g)", "--family poisson", 1, n);
}

Test(cli_errors, ordinal_one_category)
{
    const char *n[] = {"ordinal", "'y'", "one observed category", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "3,1,2,0.5,a,p\n3,2,1,1.5,a,q\n3,1,1,2.5,b,p\n"
                                        "3,0,3,1.0,b,q\n3,1,1,0.2,c,p\n3,3,0,2.2,c,q\n",
                          "y ~ x + (1|g)", "--family ordinal", 1, n);
}

Test(cli_errors, quadrature_for_crossed_factors)
{
    /* g and h are crossed: each g level meets both h levels */
    const char *n[] = {"nested", "crossed", "--nagq 1", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1,2,1,1.5,a,q\n1,1,1,2.5,b,p\n"
                                        "1,0,3,1.0,b,q\n0,1,1,0.2,c,p\n1,3,0,2.2,c,q\n"
                                        "0,1,2,0.7,a,p\n0,2,1,1.1,b,q\n",
                          "y ~ x + (1|g) + (1|h)", "--family binomial --nagq 7", 1, n);
}

static int count_str(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Complete separation: x > 0 exactly when y = 1. Not an error: the fit is
 * reported with a warning naming the diverging coefficient, once: in the
 * summary, or on standard error when --quiet hides the summary. */
Test(cli_errors, separation_warns_naming_the_coefficient)
{
    char data[300], args[2048], line[64];
    char *csv = malloc(8192);
    cr_assert_not_null(csv);
    strcpy(csv, "y,x,g\n");
    for (int i = 0; i < 60; i++) {
        double x = -2.0 + 4.0 * ((i * 37) % 60) / 59.0;
        snprintf(line, sizeof line, "%d,%.4f,g%d\n", x > 0 ? 1 : 0, x, i % 6);
        strcat(csv, line);
    }
    write_file("sep.csv", csv, data, sizeof data);
    free(csv);
    snprintf(args, sizeof args, "fit --data '%s' --formula 'y ~ x + (1|g)' --family binomial",
             data);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, 0, "exit status %d: %s", r.status, r.err);
    cr_expect_eq(count_str(r.out, "warning:"), 1, "the summary does not carry the warning once");
    cr_expect(strstr(r.out, "'x'") != NULL, "warning does not name x: %s", r.out);
    cr_expect(strstr(r.out, "separated") != NULL, "%s", r.out);
    cr_expect_eq(count_str(r.err, "warning"), 0, "warning printed twice: %s", r.err);

    strcat(args, " --quiet");
    run(args, &r);
    cr_expect_eq(r.status, 0, "exit status %d: %s", r.status, r.err);
    cr_expect_eq(r.out[0], '\0', "--quiet printed: %s", r.out);
    cr_expect_eq(count_str(r.err, "mlmx: warning:"), 1, "no warning: %s", r.err);
    cr_expect(strstr(r.err, "'x'") != NULL, "warning does not name x: %s", r.err);
    cr_expect(strstr(r.err, "separated") != NULL, "%s", r.err);
}

Test(cli_errors, quadrature_points_out_of_range)
{
    const char *n[] = {"--nagq", "101", "out of range", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1,2,1,1.5,a,q\n", "y ~ x + (1|g)",
                          "--family binomial --nagq 101", 2, n);
    const char *n2[] = {"--nagq", "-1", "out of range", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1,2,1,1.5,a,q\n", "y ~ x + (1|g)",
                          "--family binomial --nagq -1", 2, n2);
}

/* Numeric options: a non-number (or trailing junk) is "not a number", a
 * number outside the range "out of range". */
Test(cli_errors, numeric_options_not_a_number)
{
    static const struct {
        const char *val, *what;
    } cases[] = {{"abc", "is not a number"},      {"5x", "is not a number"},
                 {"''", "is not a number"},       {"' 5'", "is not a number"},
                 {"2.5", "is not a whole number"}, {"99999999999999999999", "out of range"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char opts[128];
        snprintf(opts, sizeof opts, "--family binomial --nagq %s", cases[i].val);
        const char *n[] = {"--nagq", cases[i].what, NULL};
        expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1,2,1,1.5,a,q\n", "y ~ x + (1|g)",
                              opts, 2, n);
    }
}

/* Conflicting or repeated options are usage errors, not "the last wins". */
Test(cli_errors, conflicting_options_exit_2)
{
    const char *csv = "y,x,g\n1,2,a\n3,4,a\n5,6,b\n7,1,b\n";
    const char *n[] = {"--reml", "--ml", "conflict", NULL};
    expect_fit_error_opts(csv, "y ~ x + (1|g)", "--reml --ml", 2, n);
    expect_fit_error_opts(csv, "y ~ x + (1|g)", "--ml --reml", 2, n);
    const char *n2[] = {"--reml", "maximum likelihood", NULL};
    expect_fit_error_opts(csv, "y ~ x + (1|g)", "--family poisson --reml", 2, n2);
    const char *n3[] = {"--optimizer", "twice", NULL};
    expect_fit_error_opts(csv, "y ~ x + (1|g)", "--optimizer bobyqa --optimizer bfgs", 2, n3);
}

/* --weights names a column: a missing one is reported as the option's. */
Test(cli_errors, weights_unknown_column)
{
    const char *n[] = {"--weights: no column 'nosuch' in ", "d.csv", NULL};
    expect_fit_error_opts(GLMM_CSV_HEAD "0,1,2,0.5,a,p\n1,2,1,1.5,a,q\n", "y ~ x + (1|g)",
                          "--family poisson --weights nosuch", 1, n);
}

/* A semicolon-separated file with Stata's '.' for missing fits as the
 * comma-separated one does (one row dropped, not a factor). */
Test(cli_errors, semicolon_file_with_stata_missing_fits)
{
    char data[300], args[1024];
    write_file("s.csv",
               "y;x;g\n1;2;a\n3;4;a\n5;.;b\n7;1;b\n2;2;c\n4;3;c\n6;5;a\n3;3;b\n1;1;c\n",
               data, sizeof data);
    snprintf(args, sizeof args, "fit --data '%s' --formula 'y ~ x + (1|g)'", data);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, 0, "exit status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "1 of 9 rows dropped for missing values in x") != NULL, "%s", r.err);
    cr_expect(strstr(r.out, "Number of obs: 8") != NULL, "%s", r.out);
}

static void read_file(const char *path, char *buf, size_t cap)
{
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "%s was not written", path);
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

/* GLMM outputs: the JSON says "glmm" and has no made-up gradient (the GLMM
 * fit does not compute one); the summary says once why its SEs differ
 * from glmer's defaults. */
Test(cli_errors, glmm_json_and_summary)
{
    char json[300], args[2048], buf[16384];
    snprintf(json, sizeof json, "%s/g.json", tmpdir);
    snprintf(args, sizeof args,
             "fit --data '%s/data/cbpp.csv' --formula 'cbind(incidence, size - incidence) ~ "
             "period + (1|herd)' --family binomial --optimizer bfgs --json '%s'",
             MLMX_SOURCE_DIR, json);
    result r;
    run(args, &r);
    cr_assert_eq(r.status, 0, "exit status %d: %s", r.status, r.err);
    cr_expect_eq(count_str(r.out, "Std. Errors from the exact Laplace Hessian; glmer's default "
                                  "(tolPwrss = 1e-7) can differ in the 3rd digit\n"),
                 1, "%s", r.out);
    read_file(json, buf, sizeof buf);
    cr_expect(strstr(buf, "\"model\": \"glmm\"") != NULL, "%s", buf);
    /* a BFGS fit reports its last gradient: small, and not the 0 it used to
     * print */
    const char *mg = strstr(buf, "\"max_abs_gradient\": ");
    cr_assert_not_null(mg, "%s", buf);
    double gmax = strtod(mg + strlen("\"max_abs_gradient\": "), NULL);
    cr_expect(gmax > 0.0 && gmax < 1e-2, "max_abs_gradient %g", gmax);

    snprintf(args, sizeof args,
             "fit --data '%s/data/sleepstudy.csv' --formula 'Reaction ~ Days + (Days|Subject)' "
             "--json '%s'",
             MLMX_SOURCE_DIR, json);
    run(args, &r);
    cr_assert_eq(r.status, 0, "exit status %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, "Std. Errors from") == NULL, "%s", r.out);
    read_file(json, buf, sizeof buf);
    cr_expect(strstr(buf, "\"model\": \"lmm\"") != NULL, "%s", buf);
}

Test(cli_errors, missing_file)
{
    result r;
    run("fit --data /nonexistent/dir/none.csv --formula 'y ~ x + (1|g)'", &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "/nonexistent/dir/none.csv") != NULL, "%s", r.err);
    cr_expect_eq(count_lines(r.err), 1, "%s", r.err);
}

Test(cli_errors, ragged_row_names_line)
{
    const char *n[] = {"d.csv", ":3", "2 fields", NULL};
    expect_fit_error("y,x,g\n1,2,a\n3,4\n5,6,b\n", "y ~ x + (1|g)", n);
}

Test(cli_errors, unknown_column)
{
    const char *n[] = {"unknown column", "'z'", NULL};
    expect_fit_error("y,x,g\n1,2,a\n3,4,a\n5,6,b\n7,1,b\n", "y ~ z + (1|g)", n);
}

Test(cli_errors, malformed_formula_shows_position)
{
    const char *n[] = {"formula", "position", "^", NULL};
    expect_fit_error("y,x,g\n1,2,a\n3,4,a\n5,6,b\n7,1,b\n", "y ~ x + + (1|g", n);
}

Test(cli_errors, non_numeric_response)
{
    const char *n[] = {"response", "'y'", "not numeric", NULL};
    expect_fit_error("y,x,g\nlow,2,a\nhigh,4,a\nlow,6,b\nhigh,1,b\n", "y ~ x + (1|g)", n);
}

Test(cli_errors, grouping_factor_with_one_level)
{
    const char *n[] = {"'g'", "1 level", NULL};
    expect_fit_error("y,x,g\n1,2,a\n3,4,a\n5,6,a\n7,1,a\n", "y ~ x + (1|g)", n);
}

Test(cli_errors, more_parameters_than_observations)
{
    const char *n[] = {"parameters", "observations", NULL};
    expect_fit_error("y,x,z,w,g\n1,2,3,1,a\n3,4,1,2,a\n5,6,2,2,b\n7,1,5,1,b\n",
                     "y ~ x + z + w + (1|g)", n);
}

Test(cli_errors, all_missing_column)
{
    const char *n[] = {"'x'", "no non-missing", NULL};
    expect_fit_error("y,x,g\n1,NA,a\n3,,a\n5,NA,b\n7,NA,b\n", "y ~ x + (1|g)", n);
}

Test(cli_errors, nan_value)
{
    const char *n[] = {"d.csv", ":3", "'x'", NULL};
    expect_fit_error("y,x,g\n1,2,a\n3,NaN,a\n5,6,b\n7,1,b\n", "y ~ x + (1|g)", n);
}

Test(cli_errors, inf_value)
{
    const char *n[] = {"d.csv", ":4", "'y'", NULL};
    expect_fit_error("y,x,g\n1,2,a\n3,4,a\nInf,6,b\n7,1,b\n", "y ~ x + (1|g)", n);
}

Test(cli_errors, empty_file)
{
    const char *n[] = {"d.csv", "empty", NULL};
    expect_fit_error("", "y ~ x + (1|g)", n);
}

Test(cli_errors, no_random_effects)
{
    const char *n[] = {"random-effect", NULL};
    expect_fit_error("y,x,g\n1,2,a\n3,4,a\n5,6,b\n7,1,b\n8,2,b\n", "y ~ x", n);
}

Test(cli_errors, usage_errors_exit_2)
{
    result r;
    run("fit --formula 'y ~ x + (1|g)'", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--data") != NULL, "%s", r.err);
    run("frobnicate", &r);
    cr_expect_eq(r.status, 2);
    run("fit --data", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "needs a value") != NULL, "%s", r.err);
    run("fit --optimizer newton --data x.csv --formula 'y ~ x + (1|g)'", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "newton") != NULL, "%s", r.err);
}

Test(cli_errors, help_and_version)
{
    result r;
    run("--help", &r);
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "usage: mlmx") != NULL);
    run("fit --help", &r);
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "--formula") != NULL);
    cr_expect(strstr(r.out, "--ranef") != NULL);
    /* every family and link the command accepts is listed */
    const char *words[] = {"gaussian", "binomial", "poisson", "negbin", "ordinal",
                           "logit",    "probit",   "cloglog", "log"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        cr_expect(strstr(r.out, words[i]) != NULL, "fit --help lacks %s", words[i]);
    run("--version", &r);
    cr_expect_eq(r.status, 0);
    cr_expect(strncmp(r.out, "mlmx ", 5) == 0, "%s", r.out);
}

Test(cli_errors, unwritable_output_leaves_nothing_behind)
{
    char data[300], json[300], args[2048];
    write_file("d.csv", "y,x,g\n1,2,a\n3,4,a\n5,6,b\n7,1,b\n2,2,c\n4,3,c\n", data, sizeof data);
    snprintf(json, sizeof json, "%s/out.json", tmpdir);
    snprintf(args, sizeof args,
             "fit --quiet --data '%s' --formula 'y ~ x + (1|g)' --json '%s' --ranef "
             "'/nonexistent-dir/r.csv'",
             data, json);
    result r;
    run(args, &r);
    cr_expect_eq(r.status, 1, "exit status %d (stderr: %s)", r.status, r.err);
    cr_expect(strstr(r.err, "/nonexistent-dir/r.csv") != NULL, "%s", r.err);
    cr_expect_eq(access(json, F_OK), -1, "the JSON written before the failure was left behind");
}

/* ---- residual structures (issue 10) ---- */

#define RESID_CSV "y,x,g,t\n1.2,1,a,1\n2.3,2,a,2\n2.9,3,a,3\n0.8,1,b,1\n2.1,2,b,2\n3.5,3,b,3\n" \
                  "1.1,1,c,1\n1.9,2,c,2\n3.3,3,c,3\n1.4,1,d,1\n2.6,2,d,2\n2.7,3,d,3\n"

Test(cli_errors, correlation_syntax_error)
{
    const char *n[] = {"--correlation", "'ar1(~ t | g'", "missing ')'", NULL};
    expect_fit_error_opts(RESID_CSV, "y ~ x + (1|g)", "--correlation 'ar1(~ t | g'", 1, n);
}

Test(cli_errors, correlation_duplicate_times)
{
    const char *n[] = {"same time", "data rows 3 and 13", NULL};
    expect_fit_error_opts(RESID_CSV "9,3,a,3\n", "y ~ x + (1|g)", "--correlation 'ar1(~ t | g)'", 1,
                          n);
}

Test(cli_errors, correlation_for_a_glmm)
{
    const char *n[] = {"residual correlation", "linear mixed models", "poisson", NULL};
    expect_fit_error_opts("y,x,g\n1,1,a\n2,2,a\n0,1,b\n3,2,b\n1,1,c\n4,2,c\n", "y ~ x + (1|g)",
                          "--family poisson --correlation 'ar1()'", 1, n);
}

Test(cli_errors, correlation_with_satterthwaite)
{
    const char *n[] = {"--ddf satterthwaite", "--correlation", NULL};
    expect_fit_error_opts(RESID_CSV, "y ~ x + (1|g)",
                          "--correlation 'ar1()' --ddf satterthwaite", 2, n);
}

Test(cli_errors, variance_arma_too_large)
{
    const char *n[] = {"arma(2, 4)", "too large", NULL};
    expect_fit_error_opts(RESID_CSV, "y ~ x + (1|g)", "--correlation 'arma(2, 4)'", 1, n);
}
