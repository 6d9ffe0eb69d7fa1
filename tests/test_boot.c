/* The parametric bootstrap: agreement with lme4's bootMer within Monte
 * Carlo error (data/reference/boot/bootmer_reference.R), bit-identical
 * replicates for any thread count, slice, shard split, MPI run and
 * interrupted-then-resumed run, and the command's bad-input errors. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlmx.h"
#include "output/repstore.h"

#define SLEEP MLMX_SOURCE_DIR "/data/sleepstudy.csv"
#define SLEEPF "Reaction ~ Days + (Days|Subject)"
#define CBPP MLMX_SOURCE_DIR "/data/cbpp.csv"
#define CBPPF "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)"

static mlmx_data *g_d;
static mlmx_model *g_m;

static mlmx_fit *fit_of(const char *file, const char *formula, mlmx_family fam)
{
    cr_assert_eq(mlmx_data_read_csv(file, &g_d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(g_d, formula, &g_m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    mlmx_fit *f = NULL;
    mlmx_status st = fam == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(g_m, &o, &f) : mlmx_fit_glmm(g_m, &o, &f);
    cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
    return f;
}

static void release(mlmx_fit *f)
{
    mlmx_fit_free(f);
    mlmx_model_free(g_m);
    mlmx_data_free(g_d);
    g_m = NULL;
    g_d = NULL;
}

static char *tmp_path(const char *name)
{
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "/tmp/mlmx_test_boot_%d_%s", (int)getpid(), name);
    return p;
}

/* ------------------------------------------------------------ bootMer */

typedef struct refrow {
    char name[64];
    double est, mean, sd, q025, q975;
} refrow;

static int read_ref(const char *path, refrow *rows, int max)
{
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "missing fixture %s", path);
    char line[512];
    int n = 0;
    cr_assert_not_null(fgets(line, sizeof line, fp));
    while (n < max && fgets(line, sizeof line, fp)) {
        refrow *r = &rows[n];
        char *c = strchr(line, ',');
        cr_assert_not_null(c);
        size_t len = (size_t)(c - line);
        memcpy(r->name, line, len);
        r->name[len] = '\0';
        cr_assert_eq(sscanf(c + 1, "%lf,%lf,%lf,%lf,%lf", &r->est, &r->mean, &r->sd, &r->q025,
                            &r->q975),
                     5);
        n++;
    }
    fclose(fp);
    return n;
}

/* Means within 4 Monte Carlo SEs of the difference of two independent
 * runs of n (sd sqrt(2/n)); the 2.5% and 97.5% quantiles within 4 SEs of
 * a difference of two sample quantiles under normality (the SE of one is
 * sqrt(p(1-p)/n) / phi(z_p) sd = 2.67 sd / sqrt(n) at p = 0.025). The
 * estimates agree to the fits' own tolerance (1e-3 relative; glmer's
 * Laplace is inexact, docs/glmm.md). */
static void check_against(const char *ref, const char *file, const char *formula,
                          mlmx_family fam, double sd_tol)
{
    refrow rows[16];
    int nr = read_ref(ref, rows, 16);
    mlmx_fit *f = fit_of(file, formula, fam);
    mlmx_boot_options o;
    mlmx_boot_options_default(&o);
    o.nsim = 2000;
    o.seed = 20261202;
    o.threads = 2;
    mlmx_boot *b = NULL;
    cr_assert_eq(mlmx_boot_run(f, &o, &b), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_boot_nparams(b), nr);
    cr_expect_eq(mlmx_boot_n_failed(b), 0);
    const double n = 2000.0;
    for (int j = 0; j < nr; j++) {
        mlmx_boot_summary s;
        cr_assert_eq(mlmx_boot_param_summary(b, j, &s), MLMX_OK);
        const refrow *r = &rows[j];
        cr_expect(fabs(s.estimate - r->est) <= 1e-3 * fmax(fabs(r->est), 0.1),
                  "%s (R %s): estimate %g vs %g", mlmx_boot_param_name(b, j), r->name, s.estimate,
                  r->est);
        double tm = 4.0 * r->sd * sqrt(2.0 / n);
        double tq = 4.0 * 2.67 * r->sd * sqrt(2.0 / n);
        cr_expect(fabs(s.mean - r->mean) <= tm, "%s: mean %g vs bootMer %g (tol %g)", r->name,
                  s.mean, r->mean, tm);
        cr_expect(!(sd_tol > 0) || fabs(s.sd - r->sd) <= sd_tol * r->sd,
                  "%s: sd %g vs bootMer %g", r->name, s.sd, r->sd);
        cr_expect(fabs(s.perc_lo - r->q025) <= tq, "%s: 2.5%% %g vs bootMer %g (tol %g)",
                  r->name, s.perc_lo, r->q025, tq);
        cr_expect(fabs(s.perc_hi - r->q975) <= tq, "%s: 97.5%% %g vs bootMer %g (tol %g)",
                  r->name, s.perc_hi, r->q975, tq);
    }
    mlmx_boot_free(b);
    release(f);
}

Test(boot, sleepstudy_matches_bootmer, .timeout = 120)
{
    check_against(MLMX_SOURCE_DIR "/data/reference/boot/sleepstudy_boot.csv", SLEEP, SLEEPF,
                  MLMX_FAMILY_GAUSSIAN, 0.1);
}

/* cbpp's period coefficients have a long left tail (herds with no case in
 * a period push a replicate towards separation): their SD is dominated by
 * a few replicates and is not compared; means and quantiles are. */
Test(boot, cbpp_matches_bootmer, .timeout = 120)
{
    check_against(MLMX_SOURCE_DIR "/data/reference/boot/cbpp_boot.csv", CBPP, CBPPF,
                  MLMX_FAMILY_BINOMIAL, 0.0);
}

/* ------------------------------------------------------------ identity */

/* Every dataset of a replicate file, rows [0, n), as one buffer. */
static double *read_all(const char *path, size_t n, size_t *len)
{
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_repstore_meta meta;
    int ng = 0;
    mlmx_repstore_group *groups = NULL;
    cr_assert_eq(mlmx_repstore_read_meta(path, &meta, &ng, &groups, &e), MLMX_OK, "%s", e.msg);
    size_t ncol = 0;
    for (int g = 0; g < ng; g++)
        ncol += (size_t)groups[g].ncol;
    mlmx_repstore *s = NULL;
    cr_assert_eq(mlmx_repstore_open(path, &meta, ng, groups, &s, &e), MLMX_OK, "%s", e.msg);
    *len = n * (ncol + 5);
    double *out = calloc(*len, sizeof *out);
    double *cols[8];
    double *p = out;
    for (int g = 0; g < ng; g++) {
        cols[g] = p;
        p += n * (size_t)groups[g].ncol;
    }
    signed char *cv = calloc(n, 1), *sg = calloc(n, 1), *stt = calloc(n, 1);
    int *ne = calloc(n, sizeof *ne);
    cr_assert_eq(mlmx_repstore_read_block(s, meta.rep_begin, n, cols, p, cv, sg, ne, stt, &e),
                 MLMX_OK, "%s", e.msg);
    for (size_t i = 0; i < n; i++) {
        p[n + i] = cv[i];
        p[2 * n + i] = sg[i];
        p[3 * n + i] = ne[i];
        p[4 * n + i] = stt[i];
    }
    free(cv);
    free(sg);
    free(stt);
    free(ne);
    mlmx_repstore_close(s, &e);
    mlmx_repstore_meta_free(&meta, ng, groups);
    return out;
}

static mlmx_boot *run(const mlmx_fit *f, uint64_t nsim, int threads, uint64_t b0, uint64_t b1,
                      const char *out, int resume, const volatile int *stop)
{
    mlmx_boot_options o;
    mlmx_boot_options_default(&o);
    o.nsim = nsim;
    o.seed = 7;
    o.threads = threads;
    o.rep_begin = b0;
    o.rep_end = b1;
    o.out_path = out;
    o.resume = resume;
    o.stop = stop;
    o.data_file = SLEEP;
    mlmx_boot *b = NULL;
    cr_assert_eq(mlmx_boot_run(f, &o, &b), MLMX_OK, "%s", mlmx_last_error());
    return b;
}

static void expect_same(const char *a, const char *b, size_t n)
{
    size_t la, lb;
    double *x = read_all(a, n, &la), *y = read_all(b, n, &lb);
    cr_assert_eq(la, lb);
    cr_expect(memcmp(x, y, la * sizeof *x) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

Test(boot, threads_give_identical_files, .timeout = 60)
{
    mlmx_fit *f = fit_of(SLEEP, SLEEPF, MLMX_FAMILY_GAUSSIAN);
    const char *a = tmp_path("t1.h5"), *b = tmp_path("t2.h5");
    mlmx_boot_free(run(f, 2500, 1, 0, 0, a, 0, NULL));
    mlmx_boot_free(run(f, 2500, 2, 0, 0, b, 0, NULL));
    expect_same(a, b, 2500);
    /* the CSV holds the same numbers, under lme4's names */
    const char *c = tmp_path("t.csv");
    mlmx_boot *bb = run(f, 2500, 2, 0, 0, c, 0, NULL);
    FILE *fp = fopen(c, "r");
    cr_assert_not_null(fp);
    char line[512];
    cr_assert_not_null(fgets(line, sizeof line, fp));
    cr_expect(strstr(line, "replicate,status,(Intercept),Days,sd_(Intercept)|Subject") == line,
              "%s", line);
    cr_assert_not_null(fgets(line, sizeof line, fp));
    double v;
    cr_assert_eq(sscanf(strchr(strchr(line, ',') + 1, ',') + 1, "%lf", &v), 1);
    cr_expect_eq(v, mlmx_boot_values(bb)[0]);
    fclose(fp);
    mlmx_boot_free(bb);
    remove(a);
    remove(b);
    remove(c);
    release(f);
}

Test(boot, slices_and_shards_merge_to_one_run, .timeout = 60)
{
    mlmx_fit *f = fit_of(SLEEP, SLEEPF, MLMX_FAMILY_GAUSSIAN);
    const char *whole = tmp_path("w.h5"), *s0 = tmp_path("s0.h5"), *s1 = tmp_path("s1.h5"),
               *s2 = tmp_path("s2.h5"), *m = tmp_path("m.h5");
    mlmx_boot_free(run(f, 3000, 1, 0, 0, whole, 0, NULL));
    /* two slices, and the first of them compared with the whole run's rows */
    mlmx_boot *a = run(f, 3000, 2, 0, 1100, s0, 0, NULL);
    mlmx_boot *w = run(f, 3000, 1, 0, 0, NULL, 0, NULL);
    cr_expect(memcmp(mlmx_boot_values(a), mlmx_boot_values(w),
                     1100 * (size_t)mlmx_boot_nparams(w) * sizeof(double)) == 0);
    mlmx_boot_free(a);
    mlmx_boot_free(w);
    mlmx_boot_free(run(f, 3000, 1, 1100, 2000, s1, 0, NULL));
    mlmx_boot_free(run(f, 3000, 2, 2000, 3000, s2, 0, NULL));
    const char *in[3] = {s2, s0, s1};
    cr_assert_eq(mlmx_boot_merge(in, 3, m), MLMX_OK, "%s", mlmx_last_error());
    expect_same(whole, m, 3000);
    /* shards that do not fit together: a gap */
    const char *gap[2] = {s0, s2};
    cr_expect_neq(mlmx_boot_merge(gap, 2, tmp_path("bad.h5")), MLMX_OK);
    cr_expect(access(tmp_path("bad.h5"), F_OK) != 0);
    remove(whole);
    remove(s0);
    remove(s1);
    remove(s2);
    remove(m);
    release(f);
}

static volatile int g_stop;
static void stop_after_first(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    (void)total;
    if (done > 0)
        g_stop = 1;
}

Test(boot, interrupted_then_resumed_is_identical, .timeout = 60)
{
    mlmx_fit *f = fit_of(SLEEP, SLEEPF, MLMX_FAMILY_GAUSSIAN);
    const char *whole = tmp_path("rw.h5"), *part = tmp_path("rp.h5");
    mlmx_boot_free(run(f, 3000, 2, 0, 0, whole, 0, NULL));
    mlmx_boot_options o;
    mlmx_boot_options_default(&o);
    o.nsim = 3000;
    o.seed = 7;
    o.threads = 2;
    o.out_path = part;
    o.data_file = SLEEP;
    o.progress = stop_after_first;
    g_stop = 0;
    o.stop = &g_stop;
    mlmx_boot *b = NULL;
    cr_assert_eq(mlmx_boot_run(f, &o, &b), MLMX_OK, "%s", mlmx_last_error());
    cr_expect_eq(mlmx_boot_complete(b), 0);
    cr_expect(mlmx_boot_n_done(b) > 0 && mlmx_boot_n_done(b) < 3000);
    mlmx_boot_free(b);
    /* the file is valid and marked incomplete */
    mlmx_repstore_meta meta;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_repstore_read_meta(part, &meta, NULL, NULL, &e), MLMX_OK, "%s", e.msg);
    mlmx_repstore_meta_free(&meta, 0, NULL);
    mlmx_boot_free(run(f, 3000, 1, 0, 0, part, 1, NULL));
    expect_same(whole, part, 3000);
    /* resuming with another seed is refused, naming it */
    o.progress = NULL;
    o.stop = NULL;
    o.seed = 8;
    o.resume = 1;
    cr_expect_neq(mlmx_boot_run(f, &o, &b), MLMX_OK);
    cr_expect(strstr(mlmx_last_error(), "seed") != NULL, "%s", mlmx_last_error());
    remove(whole);
    remove(part);
    release(f);
}

/* ------------------------------------------------------------ command */

static int sh(const char *cmd, char *err, size_t errlen)
{
    char full[2048];
    const char *ef = tmp_path("stderr.txt");
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

#define BOOT MLMX_CLI_PATH " boot --data " SLEEP " --formula '" SLEEPF "'"

Test(boot_cli, bad_input_is_refused_before_any_replicate, .timeout = 60)
{
    char err[1024], cmd[1024];
    const char *out = tmp_path("never.h5");
    snprintf(cmd, sizeof cmd, BOOT " --nsim 0 --out %s", out);
    cr_expect_eq(sh(cmd, err, sizeof err), 2);
    cr_expect(strstr(err, "--nsim") != NULL, "%s", err);
    snprintf(cmd, sizeof cmd, BOOT " --nsim 100 --shard 3/3 --out %s", out);
    cr_expect_eq(sh(cmd, err, sizeof err), 2);
    cr_expect(strstr(err, "--shard") != NULL, "%s", err);
    snprintf(cmd, sizeof cmd, BOOT " --nsim 100 --out /nonexistent-dir/x.h5");
    cr_expect_eq(sh(cmd, err, sizeof err), 1);
    cr_expect(strstr(err, "/nonexistent-dir/x.h5") != NULL, "%s", err);
    snprintf(cmd, sizeof cmd, BOOT " --nsim 100 --out /nonexistent-dir/x.csv");
    cr_expect_eq(sh(cmd, err, sizeof err), 1);
    cr_expect(access(out, F_OK) != 0);
    /* --resume on a file from another model */
    const char *f1 = tmp_path("other.h5");
    snprintf(cmd, sizeof cmd,
             MLMX_CLI_PATH " boot --data " SLEEP " --formula 'Reaction ~ Days + (1|Subject)' "
                           "--nsim 50 --out %s --quiet",
             f1);
    cr_assert_eq(sh(cmd, err, sizeof err), 0, "%s", err);
    snprintf(cmd, sizeof cmd, BOOT " --nsim 50 --resume %s", f1);
    cr_expect_eq(sh(cmd, err, sizeof err), 1);
    cr_expect(strstr(err, "model") != NULL, "%s", err);
    remove(f1);
    /* merging shards that do not fit together */
    const char *a = tmp_path("ma.h5"), *b = tmp_path("mb.h5"), *m = tmp_path("mm.h5");
    snprintf(cmd, sizeof cmd, BOOT " --nsim 60 --shard 0/3 --out %s --quiet", a);
    cr_assert_eq(sh(cmd, err, sizeof err), 0, "%s", err);
    snprintf(cmd, sizeof cmd, BOOT " --nsim 60 --shard 2/3 --out %s --quiet", b);
    cr_assert_eq(sh(cmd, err, sizeof err), 0, "%s", err);
    snprintf(cmd, sizeof cmd, MLMX_CLI_PATH " merge --out %s %s %s", m, a, b);
    cr_expect_eq(sh(cmd, err, sizeof err), 1);
    cr_expect(err[0] != '\0');
    cr_expect(access(m, F_OK) != 0);
    remove(a);
    remove(b);
}

/* OpenMPI's own allocations are reported by LeakSanitizer in sanitizer
 * builds; leak checking is off for the mpirun run only. */
Test(boot_cli, mpirun_gives_the_single_run_file, .timeout = 120)
{
#ifndef MLMX_HAVE_MPI
    cr_skip_test("built without MPI");
#else
    char err[2048], cmd[1024];
    const char *one = tmp_path("mpi1.h5"), *two = tmp_path("mpi2.h5");
    snprintf(cmd, sizeof cmd, BOOT " --nsim 2000 --seed 5 --out %s --quiet", one);
    cr_assert_eq(sh(cmd, err, sizeof err), 0, "%s", err);
    snprintf(cmd, sizeof cmd,
             "ASAN_OPTIONS=detect_leaks=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
             "OMPI_MCA_plm=isolated "
             "OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 "
             "%s -n 2 " BOOT " --nsim 2000 --seed 5 --out %s --quiet",
             MLMX_MPIEXEC, two);
    cr_assert_eq(sh(cmd, err, sizeof err), 0, "%s", err);
    expect_same(one, two, 2000);
    remove(one);
    remove(two);
#endif
}
