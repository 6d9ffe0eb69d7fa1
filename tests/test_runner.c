/* The replicate runner's device choice and its fallbacks, testable without
 * a GPU: cpu takes the batch engine where one covers the model and
 * workspaces elsewhere; gpu on a machine or build without a device is a
 * clear error that leaves no file; auto runs on the CPU with a note that
 * says why; and the runner's rows are the engine's. On a machine with a
 * device the gpu-specific expectations are skipped here (the gpu-labelled
 * parity tests cover it). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlmx.h"
#include "replicate/batch.h"
#include "replicate/runner.h"
#include "util/error.h"

typedef struct fitted {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P;
} fitted;

static void fit_model(fitted *x, const char *csv, const char *formula)
{
    memset(x, 0, sizeof *x);
    cr_assert_eq(mlmx_data_read_csv(csv, &x->d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(x->d, formula, &x->m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    cr_assert_eq(mlmx_fit_lmm(x->m, &o, &x->f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(x->f, &x->P), MLMX_OK, "%s", mlmx_last_error());
}

static void unfit(fitted *x)
{
    mlmx_problem_free(x->P);
    mlmx_fit_free(x->f);
    mlmx_model_free(x->m);
    mlmx_data_free(x->d);
}

static int have_device(void)
{
    char buf[256];
    return mlmx_device_describe(buf, sizeof buf) == MLMX_OK;
}

#define SLEEP MLMX_SOURCE_DIR "/data/sleepstudy.csv"
#define SLEEPF "Reaction ~ Days + (Days|Subject)"
/* a model no batch engine covers: nine crossed terms (lmm-crossed takes at
 * most 8; repeated terms keep the fit cheap) */
#define PEN MLMX_SOURCE_DIR "/data/penicillin.csv"
#define PENF                                                                              \
    "diameter ~ 1 + (1|plate) + (1|sample) + (1|plate) + (1|sample) + (1|plate) + "     \
    "(1|sample) + (1|plate) + (1|sample) + (1|plate)"

Test(runner, cpu_takes_the_engine_where_one_covers_the_model)
{
    fitted x;
    fit_model(&x, SLEEP, SLEEPF);
    mlmx_runner *R = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_runner_create(x.P, MLMX_DEVICE_CPU, 2, 100, &R, &e), MLMX_OK, "%s", e.msg);
    cr_expect_str_eq(mlmx_runner_device(R), "cpu: batch engine lmm-1term, 2 threads");
    cr_expect_str_eq(mlmx_runner_note(R), "");
    cr_expect_eq(mlmx_runner_on_gpu(R), 0);
    cr_expect_eq(mlmx_runner_block(R), 1024u);
    /* rows: parameters in report order, beta and se */
    uint64_t reps[5] = {0, 1, 2, 3, 4};
    double params[5 * 6], beta[10], se[10], crit[5];
    int nev[5];
    signed char conv[5], sing[5], status[5];
    mlmx_runner_rows rows = {params, beta, se, crit, nev, conv, sing, status};
    cr_assert_eq(mlmx_runner_run(R, 3, reps, 5, &rows, &e), MLMX_OK, "%s", e.msg);
    cr_assert_eq(mlmx_problem_nparams(x.P), 6);
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(status[i], 1);
        cr_expect(params[i * 6 + 0] == beta[i * 2 + 0], "beta in the report parameters");
        cr_expect(params[i * 6 + 2] > 0 && params[i * 6 + 5] > 0, "SDs and sigma positive");
        cr_expect(se[i * 2 + 1] > 0 && isfinite(crit[i]) && nev[i] > 0);
    }
    /* a block larger than the runner's is refused */
    cr_expect_eq(mlmx_runner_run(R, 3, reps, 2000, &rows, &e), MLMX_ERR_ARG);
    mlmx_runner_free(R);
    unfit(&x);
}

Test(runner, cpu_uses_workspaces_for_a_crossed_model)
{
    fitted x;
    fit_model(&x, PEN, PENF);
    mlmx_runner *R = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_runner_create(x.P, MLMX_DEVICE_CPU, 1, 10, &R, &e), MLMX_OK, "%s", e.msg);
    cr_expect_str_eq(mlmx_runner_device(R), "cpu: workspaces, 1 thread");
    mlmx_runner_free(R);
    /* gpu: the model is not covered (on any machine) */
    cr_expect_eq(mlmx_runner_create(x.P, MLMX_DEVICE_GPU, 1, 10, &R, &e), MLMX_ERR_UNSUPPORTED);
    cr_expect_null(R);
    cr_expect(strstr(e.msg, "more than one random-effect term") != NULL, "%s", e.msg);
    /* auto: the CPU, saying why */
    cr_assert_eq(mlmx_runner_create(x.P, MLMX_DEVICE_AUTO, 1, 5000, &R, &e), MLMX_OK);
    cr_expect(strstr(mlmx_runner_note(R), "more than one random-effect term") != NULL, "%s",
              mlmx_runner_note(R));
    mlmx_runner_free(R);
    unfit(&x);
}

/* lmm-crossed covers (time||student) + (1|teacher) (194 dense columns), but
 * its CPU rows are slower than workspaces there (engine cpu_slower): the
 * CPU refits through workspaces; the GPU would take the engine. */
Test(runner, cpu_uses_workspaces_where_the_engine_is_slower, .timeout = 60)
{
    fitted x;
    fit_model(&x, MLMX_SOURCE_DIR "/data/sim_crossed.csv",
              "score ~ time + grp + (time||student) + (1|teacher)");
    mlmx_runner *R = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_runner_create(x.P, MLMX_DEVICE_CPU, 2, 10, &R, &e), MLMX_OK, "%s", e.msg);
    cr_expect_str_eq(mlmx_runner_device(R), "cpu: workspaces, 2 threads (faster on the CPU "
                     "than the lmm-crossed engine for this model)");
    mlmx_runner_free(R);
    if (!have_device()) { /* auto: the CPU's workspaces too, with the note */
        cr_assert_eq(mlmx_runner_create(x.P, MLMX_DEVICE_AUTO, 1, 5000, &R, &e), MLMX_OK);
        cr_expect(strstr(mlmx_runner_device(R), "cpu: workspaces") != NULL, "%s",
                  mlmx_runner_device(R));
        cr_expect(strstr(mlmx_runner_note(R), "device auto: running on the CPU") != NULL, "%s",
                  mlmx_runner_note(R));
        mlmx_runner_free(R);
    }
    unfit(&x);
}

Test(runner, gpu_without_a_device_is_a_clear_error)
{
    if (have_device())
        cr_skip_test("a CUDA device is present: the no-device path does not apply");
    fitted x;
    fit_model(&x, SLEEP, SLEEPF);
    mlmx_runner *R = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_expect_eq(mlmx_runner_create(x.P, MLMX_DEVICE_GPU, 1, 100000, &R, &e),
                 MLMX_ERR_UNSUPPORTED);
    cr_expect(strncmp(e.msg, "--device gpu: ", 14) == 0 && strlen(e.msg) > 20, "%s", e.msg);
    /* auto falls back, with the reason */
    cr_assert_eq(mlmx_runner_create(x.P, MLMX_DEVICE_AUTO, 1, 100000, &R, &e), MLMX_OK);
    cr_expect_str_eq(mlmx_runner_device(R), "cpu: batch engine lmm-1term, 1 thread");
    cr_expect(strstr(mlmx_runner_note(R), "device auto: running on the CPU") != NULL);
    mlmx_runner_free(R);
    /* auto below the size where the GPU gains: the CPU on any machine (a
     * build without CUDA says that first) */
    cr_assert_eq(mlmx_runner_create(x.P, MLMX_DEVICE_AUTO, 1, 10, &R, &e), MLMX_OK);
    cr_expect(strstr(mlmx_runner_note(R), "too few") != NULL ||
                  strstr(mlmx_runner_note(R), "no device path in this build") != NULL,
              "%s", mlmx_runner_note(R));
    mlmx_runner_free(R);
    unfit(&x);
}

static int sh(const char *cmd, char *err, size_t errlen)
{
    char full[2048], ef[128];
    snprintf(ef, sizeof ef, "/tmp/mlmx_test_runner_%d.err", (int)getpid());
    snprintf(full, sizeof full, "%s 2>%s >/dev/null", cmd, ef);
    int rc = system(full);
    FILE *fp = fopen(ef, "r");
    err[0] = '\0';
    if (fp) {
        size_t k = fread(err, 1, errlen - 1, fp);
        err[k] = '\0';
        fclose(fp);
    }
    remove(ef);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

#define BOOT MLMX_CLI_PATH " boot --data " SLEEP " --formula '" SLEEPF "' --nsim 20"

Test(runner, boot_command_device_option, .timeout = 60)
{
    char err[2048], cmd[1024], out[128];
    cr_expect_eq(sh(BOOT " --device tpu", err, sizeof err), 2);
    cr_expect(strstr(err, "--device 'tpu' must be cpu, gpu or auto") != NULL, "%s", err);
    cr_expect_eq(sh(BOOT " --device", err, sizeof err), 2);
    if (have_device())
        return;
    snprintf(out, sizeof out, "/tmp/mlmx_test_runner_%d.h5", (int)getpid());
    remove(out);
    snprintf(cmd, sizeof cmd, BOOT " --device gpu --out %s", out);
    cr_expect_eq(sh(cmd, err, sizeof err), 1);
    cr_expect(strstr(err, "--device gpu: ") != NULL, "%s", err);
    cr_expect_eq(access(out, F_OK), -1, "no file may be left by a refused --device gpu");
    snprintf(cmd, sizeof cmd, BOOT " --device auto --out %s", out);
    cr_expect_eq(sh(cmd, err, sizeof err), 0, "%s", err);
    cr_expect_eq(access(out, F_OK), 0);
    remove(out);
}

/* One GPU per MPI rank: mlmx_device_select takes the rank's index on its
 * node; without a device (or CUDA) it says so and changes nothing. */
Test(runner, device_select)
{
    cr_expect_eq(mlmx_device_select(-1), MLMX_ERR_ARG);
    char why[512];
    const int have = mlmx_device_describe(why, sizeof why) == MLMX_OK;
    if (!have) {
        cr_expect_eq(mlmx_device_select(0), MLMX_ERR_UNSUPPORTED);
        cr_expect_eq(mlmx_device_select(3), MLMX_ERR_UNSUPPORTED);
        cr_expect_eq(mlmx_device_describe(why, sizeof why), MLMX_ERR_UNSUPPORTED);
        return;
    }
    /* any index maps onto a present device */
    cr_expect_eq(mlmx_device_select(7), MLMX_OK);
    cr_expect_eq(mlmx_device_select(0), MLMX_OK);
    cr_expect_eq(mlmx_device_describe(why, sizeof why), MLMX_OK, "%s", why);
}

/* A device failing in the middle of a run, without a device: the runner's
 * blocks go through a stand-in for the engine's gpu_rows that runs the
 * same engine's CPU rows, and fails on the second block as a CUDA call
 * would. auto: that block and the rest run on the CPU, the first block's
 * rows are kept, and every row equals a CPU-only run's (the same engine
 * arithmetic, so bitwise). gpu: the failure is the run's error, with the
 * CUDA message, after the first block's rows were delivered. */
static mlmx_batch_engine *g_cpu_engine;
static int g_gpu_calls, g_gpu_fail_at;

static mlmx_status stand_in_gpu(void *impl, const struct mlmx_batch_job *J, mlmx_error *err)
{
    (void)impl;
    if (g_gpu_calls++ == g_gpu_fail_at)
        return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                            "cudaMemcpy failed: an illegal memory access was encountered "
                            "(cudaErrorIllegalAddress, injected)");
    return mlmx_batch_run_cpu(g_cpu_engine, J, 1, err);
}

#define FB_BLOCK 40
#define FB_NB 3
#define FB_NP 6

typedef struct fb_rows {
    double params[FB_BLOCK * FB_NP], beta[FB_BLOCK * 2], crit[FB_BLOCK];
    int nev[FB_BLOCK];
    signed char conv[FB_BLOCK], sing[FB_BLOCK], status[FB_BLOCK];
} fb_rows;

/* Block b of the run (replicates b*FB_BLOCK ...) through R into o. */
static mlmx_status fb_run(mlmx_runner *R, int b, fb_rows *o, mlmx_error *e)
{
    uint64_t reps[FB_BLOCK];
    for (int i = 0; i < FB_BLOCK; i++)
        reps[i] = (uint64_t)(b * FB_BLOCK + i);
    mlmx_runner_rows rows = {o->params, o->beta, NULL, o->crit, o->nev, o->conv, o->sing, o->status};
    return mlmx_runner_run(R, 11, reps, FB_BLOCK, &rows, e);
}

static void fb_setup(fitted *x, mlmx_runner **R, fb_rows *ref, int auto_mode)
{
    mlmx_error e;
    mlmx_err_clear(&e);
    fit_model(x, SLEEP, SLEEPF);
    cr_assert_eq(mlmx_problem_nparams(x->P), FB_NP);
    /* the reference: a CPU-only run */
    cr_assert_eq(mlmx_runner_create(x->P, MLMX_DEVICE_CPU, 2, FB_NB * FB_BLOCK, R, &e), MLMX_OK);
    for (int b = 0; b < FB_NB; b++)
        cr_assert_eq(fb_run(*R, b, &ref[b], &e), MLMX_OK, "%s", e.msg);
    mlmx_runner_free(*R);
    cr_assert_eq(mlmx_batch_engine_create(x->P, &g_cpu_engine, &e), MLMX_OK, "%s", e.msg);
    cr_assert_eq(mlmx_runner_create(x->P, MLMX_DEVICE_CPU, 2, FB_NB * FB_BLOCK, R, &e), MLMX_OK);
    cr_assert_eq(mlmx_runner_test_device(*R, stand_in_gpu, auto_mode), MLMX_OK);
    cr_expect_eq(mlmx_runner_on_gpu(*R), 1);
    cr_expect_str_eq(mlmx_runner_device(*R), "gpu: test device, batch engine lmm-1term");
    g_gpu_calls = 0;
    g_gpu_fail_at = 1;
}

static void fb_expect_same(const fb_rows *a, const fb_rows *b, int block)
{
    for (int i = 0; i < FB_BLOCK; i++) {
        cr_expect_eq(a->status[i], 1);
        cr_expect_eq(b->status[i], 1);
        for (int j = 0; j < FB_NP; j++)
            cr_expect(a->params[i * FB_NP + j] == b->params[i * FB_NP + j],
                      "block %d row %d param %d: %.17g vs %.17g", block, i, j,
                      a->params[i * FB_NP + j], b->params[i * FB_NP + j]);
        cr_expect(a->crit[i] == b->crit[i]);
    }
}

Test(runner, auto_moves_to_the_cpu_when_the_device_fails_mid_run, .timeout = 120)
{
    fitted x;
    mlmx_runner *R = NULL;
    static fb_rows ref[FB_NB], got[FB_NB];
    fb_setup(&x, &R, ref, 1);
    mlmx_error e;
    mlmx_err_clear(&e);
    for (int b = 0; b < FB_NB; b++) {
        cr_assert_eq(fb_run(R, b, &got[b], &e), MLMX_OK, "block %d: %s", b, e.msg);
        cr_expect_eq(mlmx_runner_on_gpu(R), b == 0, "block %d", b);
    }
    cr_expect_eq(g_gpu_calls, 2, "the device is not tried again after it failed");
    cr_expect_str_eq(mlmx_runner_device(R),
                     "cpu: batch engine lmm-1term, 2 threads (after a GPU failure)");
    cr_expect(strstr(mlmx_runner_note(R), "the GPU failed (cudaMemcpy failed") != NULL &&
                  strstr(mlmx_runner_note(R), "the rest of the run is on the CPU") != NULL,
              "%s", mlmx_runner_note(R));
    for (int b = 0; b < FB_NB; b++)
        fb_expect_same(&ref[b], &got[b], b);
    mlmx_runner_free(R);
    mlmx_batch_engine_free(g_cpu_engine);
    unfit(&x);
}

Test(runner, gpu_stops_with_the_cuda_message_when_the_device_fails_mid_run, .timeout = 120)
{
    fitted x;
    mlmx_runner *R = NULL;
    static fb_rows ref[FB_NB], got[FB_NB];
    fb_setup(&x, &R, ref, 0);
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(fb_run(R, 0, &got[0], &e), MLMX_OK, "%s", e.msg);
    fb_expect_same(&ref[0], &got[0], 0);
    cr_expect_eq(fb_run(R, 1, &got[1], &e), MLMX_ERR_NUMERIC);
    cr_expect(strstr(e.msg, "cudaErrorIllegalAddress") != NULL, "%s", e.msg);
    cr_expect_eq(mlmx_runner_on_gpu(R), 1, "gpu does not move to the CPU");
    cr_expect_str_eq(mlmx_runner_note(R), "");
    mlmx_runner_free(R);
    mlmx_batch_engine_free(g_cpu_engine);
    unfit(&x);
}
