/* Single fits on the GPU (mlmx_fit_options.device = MLMX_DEVICE_GPU: the
 * CUDA backend) against the same fits on the CPU, for every fitted model of
 * the LMM and GLMM reference batteries (data/reference/lmm/ fixtures and the
 * data/reference/glmm/ fixtures that carry nagq). Tolerances, relative with a
 * floor of 1e-6 for values near zero: LMM 1e-6, GLMM 1e-5 on the
 * criterion, theta, beta, the thresholds and the NB2 size (issue 8).
 *
 * Skipped, never passed, without CUDA or without a device. With
 * MLMX_TEST_FIT_PARITY_SELF=1 (the ctest "fit_parity_harness") the
 * harness runs on any machine with the CPU in place of the GPU, so the
 * battery walk and the comparisons are themselves tested. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"
#include "refutil.h"

#define REFROOT MLMX_SOURCE_DIR "/data/reference/"
#define MAXCASES 64

static int self_mode(void)
{
    const char *s = getenv("MLMX_TEST_FIT_PARITY_SELF");
    return s && strcmp(s, "1") == 0;
}

/* The device the comparison runs against the CPU, or a skip. */
static mlmx_device other_device(void)
{
    if (self_mode())
        return MLMX_DEVICE_CPU;
    char why[512];
    if (mlmx_device_describe(why, sizeof why) != MLMX_OK)
        cr_skip_test("no usable CUDA device: %s", why);
    return MLMX_DEVICE_GPU;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The .ref files of dir (sorted), as malloc'd names without ".ref". */
static int list_cases(const char *dir, char **names)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAXCASES) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".ref") == 0) {
            names[n] = strdup(e->d_name);
            names[n++][len - 4] = '\0';
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    return n;
}

static mlmx_family family_of(const char *s)
{
    return strcmp(s, "binomial") == 0  ? MLMX_FAMILY_BINOMIAL
           : strcmp(s, "poisson") == 0 ? MLMX_FAMILY_POISSON
           : strcmp(s, "negbin") == 0  ? MLMX_FAMILY_NEGBIN
           : strcmp(s, "ordinal") == 0 ? MLMX_FAMILY_ORDINAL
                                       : MLMX_FAMILY_GAUSSIAN;
}

static mlmx_link link_of(const char *s)
{
    return strcmp(s, "probit") == 0    ? MLMX_LINK_PROBIT
           : strcmp(s, "cloglog") == 0 ? MLMX_LINK_CLOGLOG
           : strcmp(s, "log") == 0     ? MLMX_LINK_LOG
           : strcmp(s, "logit") == 0   ? MLMX_LINK_LOGIT
                                       : MLMX_LINK_DEFAULT;
}

static void expect_vec(const char *name, const char *what, const double *a, const double *b,
                       int n, double tol)
{
    for (int i = 0; i < n; i++)
        cr_expect(close_rel(a[i], b[i], tol, 1e-6), "%s: %s[%d] %.12g (device) vs %.12g (cpu)",
                  name, what, i, a[i], b[i]);
}

/* Fit case `name` of the battery in sub ("lmm" or "glmm") on the CPU and
 * on dev, and compare. 0 when the fixture is not a fit (no nagq). */
static int compare_case(const char *sub, const char *name, mlmx_device dev)
{
    char path[1024];
    ref_file r;
    snprintf(path, sizeof path, REFROOT "%s/%s.ref", sub, name);
    cr_assert_eq(ref_load(path, &r), 0, "cannot read %s", path);
    const int glmm = strcmp(sub, "glmm") == 0;
    const ref_line *dl = ref_get(&r, "data"), *fl = ref_get(&r, "formula");
    if (!dl || !fl || (glmm && (!ref_get(&r, "nagq") || !ref_get(&r, "family")))) {
        ref_free(&r);
        return 0;
    }
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    snprintf(path, sizeof path, MLMX_SOURCE_DIR "/data/%s", dl->rest);
    cr_assert_eq(mlmx_data_read_csv(path, &d), MLMX_OK, "%s: %s", name, mlmx_last_error());
    cr_assert_eq(mlmx_model_create(d, fl->rest, &m), MLMX_OK, "%s: %s", name, mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    if (glmm) {
        o.family = family_of(ref_get(&r, "family")->rest);
        o.link = ref_get(&r, "link") ? link_of(ref_get(&r, "link")->rest) : MLMX_LINK_DEFAULT;
        o.nagq = (int)ref_num(&r, "nagq", 0);
    } else {
        const ref_line *ml = ref_get(&r, "method");
        o.method = ml && strcmp(ml->rest, "ML") == 0 ? MLMX_ML : MLMX_REML;
    }
    mlmx_fit *f[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        o.device = k == 0 ? MLMX_DEVICE_CPU : dev;
        mlmx_status st = glmm ? mlmx_fit_glmm(m, &o, &f[k]) : mlmx_fit_lmm(m, &o, &f[k]);
        cr_assert_eq(st, MLMX_OK, "%s (%s): %s", name, k ? "device" : "cpu", mlmx_last_error());
    }
    if (dev == MLMX_DEVICE_GPU)
        cr_expect(strncmp(mlmx_fit_device(f[1]), "gpu: ", 5) == 0, "%s: ran on '%s'", name,
                  mlmx_fit_device(f[1]));
    const double tol = glmm ? 1e-5 : 1e-6;
    const double c0 = mlmx_fit_criterion(f[0]), c1 = mlmx_fit_criterion(f[1]);
    cr_expect(close_rel(c1, c0, tol, 1e-6), "%s: criterion %.12g vs %.12g", name, c1, c0);
    expect_vec(name, "theta", mlmx_fit_theta(f[1]), mlmx_fit_theta(f[0]), mlmx_model_ntheta(m),
               tol);
    expect_vec(name, "beta", mlmx_fit_beta(f[1]), mlmx_fit_beta(f[0]), mlmx_model_nfixef(m), tol);
    if (o.family == MLMX_FAMILY_ORDINAL)
        expect_vec(name, "thresholds", mlmx_fit_thresholds(f[1]), mlmx_fit_thresholds(f[0]),
                   mlmx_fit_nthresholds(f[0]), tol);
    if (o.family == MLMX_FAMILY_NEGBIN) {
        const double s0 = mlmx_fit_dispersion(f[0]), s1 = mlmx_fit_dispersion(f[1]);
        cr_expect(close_rel(s1, s0, tol, 1e-6), "%s: size %.12g vs %.12g", name, s1, s0);
    }
    mlmx_fit_free(f[0]);
    mlmx_fit_free(f[1]);
    mlmx_model_free(m);
    mlmx_data_free(d);
    ref_free(&r);
    return 1;
}

static void run_battery(const char *sub, int min_cases)
{
    const mlmx_device dev = other_device();
    char dir[512], *names[MAXCASES];
    snprintf(dir, sizeof dir, REFROOT "%s", sub);
    const int n = list_cases(dir, names);
    int fitted = 0;
    for (int i = 0; i < n; i++) {
        fitted += compare_case(sub, names[i], dev);
        free(names[i]);
    }
    cr_expect(fitted >= min_cases, "%s battery: %d fitted cases (expected at least %d)", sub,
              fitted, min_cases);
}

Test(cuda_fit_parity, lmm_battery, .timeout = 600) { run_battery("lmm", 25); }
Test(cuda_fit_parity, glmm_battery, .timeout = 900) { run_battery("glmm", 15); }
