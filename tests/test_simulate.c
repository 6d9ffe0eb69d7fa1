/* mlmx_simulate_run and mlmx simulate: the responses are exactly the
 * workspace's draws for (seed, r), whatever the thread count or file
 * format; an HDF5 run stopped part-way resumes to the same file; bad
 * requests fail before any file is made. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlmx.h"
#include "output/repstore.h"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-sim-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(simulate, .init = setup, .fini = teardown);

typedef struct model {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
} model;

static void fit_model(model *M, const char *file, const char *formula, mlmx_family fam)
{
    memset(M, 0, sizeof *M);
    char path[512];
    snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, file);
    cr_assert_eq(mlmx_data_read_csv(path, &M->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(M->d, formula, &M->m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    mlmx_status st = fam == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(M->m, &o, &M->f)
                                                 : mlmx_fit_glmm(M->m, &o, &M->f);
    cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
}

static void unfit(model *M)
{
    mlmx_fit_free(M->f);
    mlmx_model_free(M->m);
    mlmx_data_free(M->d);
}

/* The workspace's response r (n values, malloc'd). */
static double *draw(const mlmx_fit *f, uint64_t seed, uint64_t r)
{
    mlmx_problem *P = NULL;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_problem_create(f, &P), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_workspace_create(P, &W), MLMX_OK, "%s", mlmx_last_error());
    size_t n = mlmx_model_nobs(mlmx_fit_model(f));
    double *y = malloc(n * sizeof *y);
    cr_assert_eq(mlmx_workspace_simulate(W, seed, r, y), MLMX_OK, "%s", mlmx_last_error());
    mlmx_workspace_free(W);
    mlmx_problem_free(P);
    return y;
}

/* The CSV's values: nsim columns of n rows into all (r * n + i). */
static void read_csv(const char *path, size_t n, uint64_t nsim, double *all)
{
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "%s missing", path);
    char *line = NULL;
    size_t cap = 0;
    cr_assert(getline(&line, &cap, fp) > 0);
    cr_expect(strncmp(line, "obs,sim_1", 9) == 0, "header: %.40s", line);
    for (size_t i = 0; i < n; i++) {
        cr_assert(getline(&line, &cap, fp) > 0, "row %zu missing", i + 1);
        char *p = line, *end;
        cr_expect_eq(strtoul(p, &end, 10), i + 1);
        p = end;
        for (uint64_t r = 0; r < nsim; r++) {
            cr_assert_eq(*p, ',');
            all[r * n + i] = strtod(p + 1, &end);
            p = end;
        }
    }
    cr_expect_eq(getline(&line, &cap, fp), -1, "rows beyond n");
    free(line);
    fclose(fp);
}

Test(simulate, csv_is_the_workspace_draws_for_any_thread_count)
{
    model M;
    fit_model(&M, "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", MLMX_FAMILY_GAUSSIAN);
    const size_t n = 180;
    const uint64_t nsim = 7;
    double *a[2];
    for (int t = 0; t < 2; t++) {
        char path[300];
        snprintf(path, sizeof path, "%s/s%d.csv", tmpdir, t);
        mlmx_simulate_options o;
        mlmx_simulate_options_default(&o);
        o.nsim = nsim;
        o.seed = 42;
        o.threads = t + 1;
        o.out_path = path;
        mlmx_simulate *s = NULL;
        cr_assert_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_OK, "%s", mlmx_last_error());
        cr_expect(mlmx_simulate_complete(s));
        cr_expect_eq(mlmx_simulate_n_done(s), nsim);
        char want[64];
        snprintf(want, sizeof want, "cpu: workspaces, %d thread%s", t + 1, t ? "s" : "");
        cr_expect_str_eq(mlmx_simulate_device(s), want);
        cr_expect_str_eq(mlmx_simulate_device_note(s), "");
        mlmx_simulate_free(s);
        a[t] = malloc(n * nsim * sizeof *a[t]);
        read_csv(path, n, nsim, a[t]);
    }
    for (uint64_t r = 0; r < nsim; r++) {
        double *y = draw(M.f, 42, r);
        for (size_t i = 0; i < n; i++) {
            /* %.17g round-trips a double exactly */
            cr_expect_eq(a[0][r * n + i], y[i], "r %llu obs %zu", (unsigned long long)r, i);
            cr_expect_eq(a[1][r * n + i], y[i]);
        }
        free(y);
    }
    free(a[0]);
    free(a[1]);
    unfit(&M);
}

static volatile int stop_now;
static void stop_after_first(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    (void)total;
    if (done > 0)
        stop_now = 1;
}

/* An HDF5 run stopped after its first block keeps it; --resume completes
 * the file, and every row is the workspace's draw. Binomial successes of
 * the model's trials (cbpp). */
Test(simulate, hdf5_stops_and_resumes_to_the_same_draws)
{
    model M;
    fit_model(&M, "cbpp.csv", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
              MLMX_FAMILY_BINOMIAL);
    const size_t n = mlmx_model_nobs(M.m);
    /* blocks of 2^22 / n responses: enough simulations for several blocks */
    const uint64_t nsim = (uint64_t)((1u << 22) / n) * 2 + 5;
    char path[300];
    snprintf(path, sizeof path, "%s/s.h5", tmpdir);
    mlmx_simulate_options o;
    mlmx_simulate_options_default(&o);
    o.nsim = nsim;
    o.seed = 7;
    o.threads = 2;
    o.out_path = path;
    o.progress = stop_after_first;
    o.stop = &stop_now;
    stop_now = 0;
    mlmx_simulate *s = NULL;
    cr_assert_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_OK, "%s", mlmx_last_error());
    cr_expect(!mlmx_simulate_complete(s));
    const uint64_t first = mlmx_simulate_n_done(s);
    cr_expect(first > 0 && first < nsim, "%llu done", (unsigned long long)first);
    mlmx_simulate_free(s);
    o.progress = NULL;
    o.stop = NULL;
    o.resume = 1;
    cr_assert_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_OK, "%s", mlmx_last_error());
    cr_expect(mlmx_simulate_complete(s));
    cr_expect_eq(mlmx_simulate_n_done(s), nsim);
    mlmx_simulate_free(s);
    /* the file: complete, group "y" of n columns, rows equal to the draws */
    mlmx_repstore_meta meta;
    int ng = 0;
    mlmx_repstore_group *g = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_repstore_read_meta(path, &meta, &ng, &g, &e), MLMX_OK, "%s", e.msg);
    cr_expect_eq(ng, 1);
    cr_expect_str_eq(g[0].name, "y");
    cr_expect_eq(g[0].ncol, (int)n);
    cr_expect_eq(meta.nsim, nsim);
    cr_expect_eq(meta.seed, 7);
    mlmx_repstore *st = NULL;
    cr_assert_eq(mlmx_repstore_open(path, &meta, ng, g, &st, &e), MLMX_OK, "%s", e.msg);
    const uint64_t check[] = {0, first - 1, first, nsim - 1};
    double *row = malloc(n * sizeof *row);
    for (int k = 0; k < 4; k++) {
        double *vals[1] = {row};
        signed char status = 0;
        cr_assert_eq(mlmx_repstore_read_block(st, check[k], 1, vals, NULL, NULL, NULL, NULL,
                                              &status, &e),
                     MLMX_OK, "%s", e.msg);
        cr_expect_eq(status, 1);
        double *y = draw(M.f, 7, check[k]);
        for (size_t i = 0; i < n; i++)
            cr_expect_eq(row[i], y[i], "r %llu obs %zu", (unsigned long long)check[k], i);
        free(y);
    }
    free(row);
    mlmx_repstore_close(st, &e);
    mlmx_repstore_meta_free(&meta, ng, g);
    unfit(&M);
}

/* Bad requests: an error before any file. */
Test(simulate, bad_requests_leave_no_file)
{
    model M;
    fit_model(&M, "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", MLMX_FAMILY_GAUSSIAN);
    char path[300];
    snprintf(path, sizeof path, "%s/bad.csv", tmpdir);
    mlmx_simulate_options o;
    mlmx_simulate_options_default(&o);
    o.out_path = path;
    mlmx_simulate *s = NULL;
    cr_expect_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_ERR_ARG); /* nsim 0 */
    o.nsim = 600000; /* 180 x 600,000 > 10^8 values */
    cr_expect_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_ERR_ARG);
    cr_expect(strstr(mlmx_last_error(), "FILE.h5") != NULL, "%s", mlmx_last_error());
    o.nsim = 10;
    o.resume = 1;
    cr_expect_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_ERR_ARG); /* resume a CSV */
    o.resume = 0;
    o.threads = 0;
    cr_expect_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_ERR_ARG);
    o.threads = 1;
    o.out_path = NULL;
    cr_expect_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_ERR_ARG);
    o.out_path = path;
    char why[512];
    if (mlmx_device_describe(why, sizeof why) != MLMX_OK) {
        o.device = MLMX_DEVICE_GPU;
        cr_expect_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_ERR_UNSUPPORTED);
        cr_expect(strstr(mlmx_last_error(), "--device gpu: ") != NULL, "%s", mlmx_last_error());
        o.device = MLMX_DEVICE_AUTO;
        cr_assert_eq(mlmx_simulate_run(M.f, &o, &s), MLMX_OK, "%s", mlmx_last_error());
        cr_expect(strstr(mlmx_simulate_device_note(s), "device auto: running on the CPU") != NULL,
                  "%s", mlmx_simulate_device_note(s));
        mlmx_simulate_free(s);
        remove(path);
    }
    cr_expect_eq(access(path, F_OK), -1, "a refused run left %s", path);
    unfit(&M);
}

static int run_cli(const char *args, char *out, size_t outlen)
{
    char cmd[2048], op[300];
    snprintf(op, sizeof op, "%s/cli.out", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' simulate %s > '%s' 2>&1", MLMX_CLI_PATH, args, op);
    int st = system(cmd);
    FILE *fp = fopen(op, "r");
    size_t k = fp ? fread(out, 1, outlen - 1, fp) : 0;
    out[k] = '\0';
    if (fp)
        fclose(fp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(simulate, command_line)
{
    char out[4096], args[1024], path[300];
    snprintf(path, sizeof path, "%s/c.csv", tmpdir);
    const char *mdl = "--data '" MLMX_SOURCE_DIR "/data/dyestuff.csv' --formula 'Yield ~ 1 + "
                        "(1|Batch)'";
    snprintf(args, sizeof args, "%s --nsim 3 --seed 5 --out '%s'", mdl, path);
    cr_expect_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "Simulated 3 responses") != NULL, "%s", out);
    cr_expect(strstr(out, "device: cpu: workspaces, 1 thread") != NULL, "%s", out);
    cr_expect_eq(access(path, F_OK), 0);
    snprintf(args, sizeof args, "%s --nsim 3", mdl);
    cr_expect_eq(run_cli(args, out, sizeof out), 2, "%s", out);
    cr_expect(strstr(out, "--out") != NULL, "%s", out);
    snprintf(args, sizeof args, "%s --nsim 0 --out '%s'", mdl, path);
    cr_expect_eq(run_cli(args, out, sizeof out), 2, "%s", out);
    snprintf(args, sizeof args, "%s --nsim 3 --out '%s' --device tpu", mdl, path);
    cr_expect_eq(run_cli(args, out, sizeof out), 2, "%s", out);
    cr_expect(strstr(out, "cpu, gpu or auto") != NULL, "%s", out);
    snprintf(args, sizeof args, "%s --nsim 3 --out '%s' --bogus", mdl, path);
    cr_expect_eq(run_cli(args, out, sizeof out), 2, "%s", out);
    cr_expect_eq(run_cli("--help", out, sizeof out), 0);
    cr_expect(strstr(out, "usage: mlmx simulate") != NULL, "%s", out);
}
