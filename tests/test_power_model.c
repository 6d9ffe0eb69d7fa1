/* mlmx power --model / "pilot": {"model": ...} (docs/power.md, "Starting
 * from a saved model"): a saved LMM as the pilot gives the same power
 * results as the same scenario with pilot.data (the fit rebuilt from the
 * saved estimates equals the refit), and each bad input (data file changed,
 * a GLMM, another formula, a missing model file) gives a one-line error
 * naming the problem, exit status 1 and no output file.
 *
 * No R fixture: the reference is mlmx's own refit of the pilot data (the
 * pilot path, checked against R in test_power.c); the tolerance on the
 * rebuilt fit is 1e-8 relative, mlmx_model_file_fit's own bound. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "mlmx.h"

#define SLEEP MLMX_SOURCE_DIR "/data/sleepstudy.csv"
#define FORMULA "Reaction ~ Days + (Days | Subject)"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-pwmodel-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(power_model, .init = setup, .fini = teardown);

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp, "cannot write %s", path);
    fputs(text, fp);
    fclose(fp);
}

static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot read %s", path);
    char *s = calloc(1 << 20, 1);
    cr_assert_not_null(s);
    size_t n = fread(s, 1, (1 << 20) - 1, fp);
    s[n] = '\0';
    fclose(fp);
    return s;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Fit formula to data with the given family and save it (data recorded). */
static void save_model(const char *data, const char *formula, mlmx_family family,
                       const char *path)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_data_read_csv(data, &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = family;
    mlmx_status st = family == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(m, &o, &f)
                                                    : mlmx_fit_glmm(m, &o, &f);
    cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_fit_save(f, path, data), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

typedef struct result {
    int status;
    char err[4096];
} result;

/* mlmx power with args (shell-quoted by the caller); stderr captured. */
static void run_power(const char *args, result *r)
{
    char cmd[4096], errp[300];
    tmp_path(errp, sizeof errp, "stderr");
    snprintf(cmd, sizeof cmd, "timeout 120 '%s' power --quiet %s 2>'%s'", MLMX_CLI_PATH, args,
             errp);
    int st = system(cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    memset(r->err, 0, sizeof r->err);
    FILE *fp = fopen(errp, "r");
    if (fp) {
        size_t n = fread(r->err, 1, sizeof r->err - 1, fp);
        r->err[n] = '\0';
        fclose(fp);
    }
}

/* The JSON without the lines that name the inputs ("scenario",
 * "pilot_model"): everything else must be identical. */
static char *json_results(const char *path)
{
    char *s = read_text(path), *w = s;
    for (char *p = s; *p;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (!strstr(p, "\"scenario\":") || (nl && strstr(p, "\"scenario\":") > nl)) {
            if (!(strstr(p, "\"pilot_model\":") && (!nl || strstr(p, "\"pilot_model\":") < nl))) {
                memmove(w, p, len);
                w += len;
            }
        }
        p += len;
    }
    *w = '\0';
    return s;
}

#define SCENARIO_TAIL                                                                          \
    "\"fixed\": {\"Days\": 5}, \"test\": {\"type\": \"wald_t\", \"term\": \"Days\"}, "           \
    "\"curve\": {\"level\": \"Subject\", \"units\": [9, 18]}, \"nsim\": 300, \"seed\": 11}"

/* The rebuilt fit equals the refit: beta, theta, sigma to 1e-8 relative. */
Test(power_model, rebuilt_fit_equals_refit)
{
    char h5[300];
    tmp_path(h5, sizeof h5, "ss.h5");
    save_model(SLEEP, FORMULA, MLMX_FAMILY_GAUSSIAN, h5);
    mlmx_model_file *mf = NULL;
    cr_assert_eq(mlmx_model_file_read(h5, &mf), MLMX_OK, "%s", mlmx_last_error());
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *a = NULL, *b = NULL;
    cr_assert_eq(mlmx_data_read_csv(SLEEP, &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, FORMULA, &m), MLMX_OK);
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &a), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_file_fit(m, mf, NULL, &b), MLMX_OK, "%s", mlmx_last_error());
    double worst = 0.0;
    for (int j = 0; j < 2; j++) {
        const double x = mlmx_fit_beta(a)[j], y = mlmx_fit_beta(b)[j];
        worst = fmax(worst, fabs(x - y) / fmax(1.0, fabs(x)));
    }
    for (int j = 0; j < 3; j++) {
        const double x = mlmx_fit_theta(a)[j], y = mlmx_fit_theta(b)[j];
        worst = fmax(worst, fabs(x - y) / fmax(1.0, fabs(x)));
    }
    worst = fmax(worst, fabs(mlmx_fit_sigma(a) - mlmx_fit_sigma(b)) / mlmx_fit_sigma(a));
    cr_log_info("rebuilt fit vs refit: max relative difference %.3g", worst);
    cr_expect_lt(worst, 1e-8);
    mlmx_fit_free(a);
    mlmx_fit_free(b);
    mlmx_model_free(m);
    mlmx_data_free(d);
    mlmx_model_file_free(mf);
}

/* The same scenario three ways: pilot.data (a refit), --model (no formula
 * in the file; the formula spaced differently in another), pilot.model in
 * the file. The JSON results are identical. */
Test(power_model, same_results_as_pilot_data)
{
    char h5[300], sa[300], sb[300], sc[300], ja[300], jb[300], jc[300], text[2048],
        args[2048];
    tmp_path(h5, sizeof h5, "ss.h5");
    save_model(SLEEP, FORMULA, MLMX_FAMILY_GAUSSIAN, h5);
    tmp_path(sa, sizeof sa, "a.json");
    tmp_path(sb, sizeof sb, "b.json");
    tmp_path(sc, sizeof sc, "c.json");
    tmp_path(ja, sizeof ja, "a.out.json");
    tmp_path(jb, sizeof jb, "b.out.json");
    tmp_path(jc, sizeof jc, "c.out.json");
    snprintf(text, sizeof text,
             "{\"formula\": \"" FORMULA "\", \"pilot\": {\"data\": \"%s\", \"extend\": "
             "{\"group\": \"Subject\", \"units\": 36}}, " SCENARIO_TAIL,
             SLEEP);
    write_text(sa, text);
    write_text(sb, "{\"pilot\": {\"extend\": {\"group\": \"Subject\", \"units\": 36}}, "
                   SCENARIO_TAIL);
    snprintf(text, sizeof text,
             "{\"formula\": \"Reaction~Days+(Days|Subject)\", \"pilot\": {\"model\": \"%s\", "
             "\"extend\": {\"group\": \"Subject\", \"units\": 36}}, " SCENARIO_TAIL,
             h5);
    write_text(sc, text);
    result r;
    snprintf(args, sizeof args, "--scenario '%s' --json '%s'", sa, ja);
    run_power(args, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(args, sizeof args, "--scenario '%s' --model '%s' --json '%s'", sb, h5, jb);
    run_power(args, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(args, sizeof args, "--scenario '%s' --json '%s'", sc, jc);
    run_power(args, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char *a = json_results(ja), *b = json_results(jb), *c = json_results(jc);
    cr_expect(strstr(a, "\"n_rejected\"") != NULL);
    cr_expect_str_eq(a, b);
    cr_expect_str_eq(a, c);
    char *raw = read_text(jb);
    cr_expect(strstr(raw, "\"pilot_model\"") != NULL, "%s", raw);
    free(raw);
    free(a);
    free(b);
    free(c);
}

/* Run power expecting exit 1, every needle in the one-line message, and
 * no JSON left. */
static void expect_error(const char *scenario_text, const char *model, const char *const *needles)
{
    char sp[300], jp[300], args[2048];
    tmp_path(sp, sizeof sp, "bad.json");
    tmp_path(jp, sizeof jp, "bad.out.json");
    write_text(sp, scenario_text);
    if (model)
        snprintf(args, sizeof args, "--scenario '%s' --model '%s' --json '%s'", sp, model, jp);
    else
        snprintf(args, sizeof args, "--scenario '%s' --json '%s'", sp, jp);
    result r;
    run_power(args, &r);
    cr_expect_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_expect(strncmp(r.err, "mlmx: error: ", 13) == 0, "%s", r.err);
    const char *nl = strchr(r.err, '\n');
    cr_expect(nl && nl[1] == '\0', "one line: %s", r.err);
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(r.err, needles[i]) != NULL, "'%s' not in: %s", needles[i], r.err);
    cr_expect(!exists(jp), "%s left behind", jp);
}

#define SIMPLE "\"test\": {\"type\": \"wald_t\", \"term\": \"Days\"}, \"nsim\": 20}"

Test(power_model, data_file_changed)
{
    char csv[300], h5[300];
    tmp_path(csv, sizeof csv, "sleep.csv");
    tmp_path(h5, sizeof h5, "copy.h5");
    char *text = read_text(SLEEP);
    write_text(csv, text);
    save_model(csv, FORMULA, MLMX_FAMILY_GAUSSIAN, h5);
    char *first = strchr(strchr(text, '\n') + 1, ','); /* first row's second field */
    cr_assert_not_null(first);
    first[1] = first[1] == '9' ? '8' : '9';
    write_text(csv, text);
    free(text);
    const char *n[] = {"copy.h5", "sleep.csv", "SHA-256", NULL};
    expect_error("{" SIMPLE, h5, n);
}

Test(power_model, glmm_refused)
{
    char h5[300];
    tmp_path(h5, sizeof h5, "cbpp.h5");
    save_model(MLMX_SOURCE_DIR "/data/cbpp.csv", "cbind(incidence, size - incidence) ~ period "
               "+ (1 | herd)", MLMX_FAMILY_BINOMIAL, h5);
    const char *n[] = {"cbpp.h5", "binomial GLMM", "linear mixed models only", NULL};
    expect_error("{" SIMPLE, h5, n);
    /* the same from the scenario file's pilot.model */
    char text[1024];
    snprintf(text, sizeof text, "{\"pilot\": {\"model\": \"%s\"}, " SIMPLE, h5);
    expect_error(text, NULL, n);
}

Test(power_model, other_formula)
{
    char h5[300];
    tmp_path(h5, sizeof h5, "ss.h5");
    save_model(SLEEP, FORMULA, MLMX_FAMILY_GAUSSIAN, h5);
    const char *n[] = {"formula 'Reaction ~ Days + (1 | Subject)'", "differs",
                       "'" FORMULA "'", NULL};
    expect_error("{\"formula\": \"Reaction ~ Days + (1 | Subject)\", " SIMPLE, h5, n);
    const char *n2[] = {"family 'poisson'", "gaussian", NULL};
    expect_error("{\"family\": \"poisson\", " SIMPLE, h5, n2);
}

Test(power_model, missing_model_file)
{
    char h5[300];
    tmp_path(h5, sizeof h5, "nope.h5");
    const char *n[] = {"nope.h5", "pilot model", NULL};
    expect_error("{" SIMPLE, h5, n);
    /* without --model and pilot.model, the formula is required as before */
    const char *n2[] = {"formula is missing", NULL};
    expect_error("{" SIMPLE, NULL, n2);
}
