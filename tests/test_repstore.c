/* Replicate store (host/output/repstore.c, docs/replicates-hdf5.md):
 * block round trip, status bookkeeping, resume checks, merge of shards
 * bit-identical to one file, merge errors, and a file left by a process
 * that died after a flush without closing. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlmx.h"
#include "output/repstore.h"

/* ---- fixtures ----------------------------------------------------------- */

static const char *const beta_names[2] = {"(Intercept)", "Days"};
static const char *const theta_names[3] = {"sd_(Intercept)|Subject",
                                           "cor_(Intercept).Days|Subject", "sd_Days|Subject"};
static const mlmx_repstore_group groups2[2] = {{"beta", 2, beta_names},
                                               {"theta", 3, theta_names}};

static char tmpdir[64];

static void setup_dir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-repstore-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void cleanup_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        /* best effort */
    }
}

static char *tpath(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

static mlmx_repstore_meta make_meta(unsigned long long seed, unsigned long long nsim,
                                    unsigned long long b, unsigned long long e, const char *key)
{
    mlmx_repstore_meta m = {0};
    m.formula = "Reaction ~ Days + (Days | Subject)";
    m.family = "gaussian";
    m.method = "REML";
    m.data_file = "data/sleepstudy.csv";
    m.data_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    m.mlmx_version = NULL; /* this library's */
    m.seed = seed;
    m.nsim = nsim;
    m.rep_begin = b;
    m.rep_end = e;
    m.model_key = key;
    return m;
}

/* Deterministic replicate values, with a signed zero and a NaN payload to
 * make bit-identity checks meaningful. */
static double val(int g, unsigned long long r, int j)
{
    if (r == 3 && j == 0)
        return -0.0;
    if (r == 5 && j == 1) {
        uint64_t b = 0x7ff8dead0000beefULL;
        double d;
        memcpy(&d, &b, sizeof d);
        return d;
    }
    return sin((double)(r * 13 + (unsigned long long)j * 7 + (unsigned long long)g)) * 1e3 /
           (1.0 + (double)r);
}
static double crit_of(unsigned long long r) { return 1700.0 + 0.125 * (double)r; }
static signed char conv_of(unsigned long long r) { return r % 7 != 0; }
static signed char sing_of(unsigned long long r) { return r % 5 == 0; }
static int neval_of(unsigned long long r) { return 20 + (int)(r % 13); }
static signed char status_of(unsigned long long r) { return r % 11 == 4 ? 2 : 1; }

/* Write replicates [b, e): mode 0 one block, 1 row by row backwards,
 * 2 blocks of 7. */
static void write_range(mlmx_repstore *s, unsigned long long b, unsigned long long e, int mode)
{
    mlmx_error err = {0};
    if (mode == 1) {
        for (unsigned long long r = e; r-- > b;) {
            double v0[2], v1[3];
            for (int j = 0; j < 2; j++)
                v0[j] = val(0, r, j);
            for (int j = 0; j < 3; j++)
                v1[j] = val(1, r, j);
            const double *const vals[2] = {v0, v1};
            cr_assert_eq(mlmx_repstore_write(s, r, vals, crit_of(r), conv_of(r), sing_of(r),
                                             neval_of(r), status_of(r), &err),
                         MLMX_OK, "%s", err.msg);
        }
        return;
    }
    size_t step = mode == 0 ? (size_t)(e - b) : 7;
    for (unsigned long long r0 = b; r0 < e; r0 += step) {
        size_t n = e - r0 < step ? (size_t)(e - r0) : step;
        double *v0 = malloc(n * 2 * sizeof *v0), *v1 = malloc(n * 3 * sizeof *v1);
        double *cr = malloc(n * sizeof *cr);
        signed char *cv = malloc(n), *sg = malloc(n), *stt = malloc(n);
        int *ne = malloc(n * sizeof *ne);
        for (size_t i = 0; i < n; i++) {
            unsigned long long r = r0 + i;
            for (int j = 0; j < 2; j++)
                v0[i * 2 + (size_t)j] = val(0, r, j);
            for (int j = 0; j < 3; j++)
                v1[i * 3 + (size_t)j] = val(1, r, j);
            cr[i] = crit_of(r);
            cv[i] = conv_of(r);
            sg[i] = sing_of(r);
            ne[i] = neval_of(r);
            stt[i] = status_of(r);
        }
        const double *const vals[2] = {v0, v1};
        cr_assert_eq(mlmx_repstore_write_block(s, r0, n, vals, cr, cv, sg, ne, stt, &err),
                     MLMX_OK, "%s", err.msg);
        free(v0);
        free(v1);
        free(cr);
        free(cv);
        free(sg);
        free(stt);
        free(ne);
    }
}

/* Check replicates [b, e) of an open store against the generator. */
static void check_range(mlmx_repstore *s, unsigned long long b, unsigned long long e)
{
    mlmx_error err = {0};
    size_t n = (size_t)(e - b);
    double *v0 = malloc(n * 2 * sizeof *v0), *v1 = malloc(n * 3 * sizeof *v1);
    double *cr = malloc(n * sizeof *cr);
    signed char *cv = malloc(n), *sg = malloc(n), *stt = malloc(n);
    int *ne = malloc(n * sizeof *ne);
    double *const vals[2] = {v0, v1};
    cr_assert_eq(mlmx_repstore_read_block(s, b, n, vals, cr, cv, sg, ne, stt, &err), MLMX_OK,
                 "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        unsigned long long r = b + i;
        for (int j = 0; j < 2; j++) {
            double x = val(0, r, j);
            cr_assert(memcmp(&v0[i * 2 + (size_t)j], &x, sizeof x) == 0, "beta[%llu,%d]", r, j);
        }
        for (int j = 0; j < 3; j++) {
            double x = val(1, r, j);
            cr_assert(memcmp(&v1[i * 3 + (size_t)j], &x, sizeof x) == 0, "theta[%llu,%d]", r,
                      j);
        }
        cr_assert_eq(cr[i], crit_of(r));
        cr_assert_eq(cv[i], conv_of(r));
        cr_assert_eq(sg[i], sing_of(r));
        cr_assert_eq(ne[i], neval_of(r));
        cr_assert_eq(stt[i], status_of(r));
    }
    free(v0);
    free(v1);
    free(cr);
    free(cv);
    free(sg);
    free(stt);
    free(ne);
}

static void make_file(const char *path, unsigned long long seed, unsigned long long nsim,
                      unsigned long long b, unsigned long long e, const char *key, int mode)
{
    mlmx_error err = {0};
    mlmx_repstore_meta m = make_meta(seed, nsim, b, e, key);
    mlmx_repstore *s = NULL;
    cr_assert_eq(mlmx_repstore_create(path, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    write_range(s, b, e, mode);
    cr_assert_eq(mlmx_repstore_set_complete(s, 1, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK, "%s", err.msg);
}

/* Raw bytes of a numeric dataset (file type as memory type: no conversion). */
static unsigned char *raw_dset(const char *path, const char *name, size_t *nbytes)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "open %s", path);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert(d >= 0, "%s: dataset %s", path, name);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    size_t n = (size_t)H5Sget_simple_extent_npoints(sp) * H5Tget_size(t);
    unsigned char *buf = malloc(n ? n : 1);
    cr_assert(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    *nbytes = n;
    return buf;
}

static int int_attr(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "open %s", path);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    cr_assert(a >= 0, "%s: attribute %s", path, name);
    int v = -1;
    cr_assert(H5Aread(a, H5T_NATIVE_INT, &v) >= 0);
    H5Aclose(a);
    H5Fclose(f);
    return v;
}

static void assert_same_datasets(const char *a, const char *b)
{
    static const char *const names[] = {"values/beta", "values/theta", "criterion",
                                        "converged",   "singular",     "n_evaluations",
                                        "status",      "replicate"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        size_t na = 0, nb = 0;
        unsigned char *x = raw_dset(a, names[k], &na), *y = raw_dset(b, names[k], &nb);
        cr_assert_eq(na, nb, "%s: sizes differ", names[k]);
        cr_assert(memcmp(x, y, na) == 0, "%s: contents differ", names[k]);
        free(x);
        free(y);
    }
    mlmx_repstore_meta ma, mb;
    int nga = 0, ngb = 0;
    mlmx_repstore_group *ga = NULL, *gb = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_repstore_read_meta(a, &ma, &nga, &ga, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_read_meta(b, &mb, &ngb, &gb, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(nga, ngb);
    for (int g = 0; g < nga; g++) {
        cr_assert_str_eq(ga[g].name, gb[g].name);
        cr_assert_eq(ga[g].ncol, gb[g].ncol);
        for (int j = 0; j < ga[g].ncol; j++)
            cr_assert_str_eq(ga[g].colnames[j], gb[g].colnames[j]);
    }
    cr_assert_eq(ma.rep_begin, mb.rep_begin);
    cr_assert_eq(ma.rep_end, mb.rep_end);
    cr_assert_eq(ma.seed, mb.seed);
    cr_assert_str_eq(ma.model_key, mb.model_key);
    cr_assert_eq(int_attr(a, "complete"), int_attr(b, "complete"));
    mlmx_repstore_meta_free(&ma, nga, ga);
    mlmx_repstore_meta_free(&mb, ngb, gb);
}

/* ---- tests -------------------------------------------------------------- */

TestSuite(repstore, .init = setup_dir, .fini = cleanup_dir);

Test(repstore, round_trip_and_status)
{
    char p[256];
    tpath(p, sizeof p, "one.h5");
    mlmx_error err = {0};
    mlmx_repstore_meta m = make_meta(42, 40, 10, 40, "key-A");
    mlmx_repstore *s = NULL;
    cr_assert_eq(mlmx_repstore_create(p, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_rep_begin(s), 10);
    cr_assert_eq(mlmx_repstore_rep_end(s), 40);

    signed char done[30];
    cr_assert_eq(mlmx_repstore_status(s, done, &err), MLMX_OK, "%s", err.msg);
    for (int i = 0; i < 30; i++)
        cr_assert_eq(done[i], 0);

    write_range(s, 12, 20, 0); /* one block */
    write_range(s, 25, 33, 2); /* blocks of 7 */
    write_range(s, 36, 38, 1); /* row by row */
    cr_assert_eq(mlmx_repstore_status(s, done, &err), MLMX_OK, "%s", err.msg);
    for (unsigned long long r = 10; r < 40; r++) {
        int in = (r >= 12 && r < 20) || (r >= 25 && r < 33) || (r >= 36 && r < 38);
        cr_assert_eq(done[r - 10], in ? status_of(r) : 0, "replicate %llu", r);
    }
    check_range(s, 12, 20);
    check_range(s, 25, 33);
    check_range(s, 36, 38);

    /* unwritten rows read as NaN with status 0; NULL skips a dataset */
    double b0[2], t0[3], c0;
    signed char st0;
    double *const vals[2] = {b0, NULL};
    cr_assert_eq(mlmx_repstore_read_block(s, 21, 1, vals, &c0, NULL, NULL, NULL, &st0, &err),
                 MLMX_OK, "%s", err.msg);
    cr_assert(isnan(b0[0]) && isnan(b0[1]) && isnan(c0));
    cr_assert_eq(st0, 0);
    (void)t0;

    /* out of the slice, bad status: errors naming the file */
    const double *const w[2] = {b0, t0};
    cr_assert_eq(mlmx_repstore_write(s, 9, w, 0, 1, 0, 1, 1, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, p) && strstr(err.msg, "[10, 40)"), "%s", err.msg);
    cr_assert_eq(mlmx_repstore_write(s, 40, w, 0, 1, 0, 1, 1, &err), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_repstore_write(s, 39, w, 0, 1, 0, 1, 3, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "status 3"), "%s", err.msg);
    cr_assert_eq(mlmx_repstore_read_block(s, 35, 6, vals, NULL, NULL, NULL, NULL, NULL, &err),
                 MLMX_ERR_ARG);

    /* a failed replicate */
    b0[0] = b0[1] = NAN;
    t0[0] = t0[1] = t0[2] = NAN;
    cr_assert_eq(mlmx_repstore_write(s, 39, w, NAN, 0, 0, 500, 2, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_status(s, done, &err), MLMX_OK);
    cr_assert_eq(done[29], 2);
    cr_assert_eq(mlmx_repstore_flush(s, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_set_complete(s, 1, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_close(NULL, &err), MLMX_OK);
    cr_assert_eq(int_attr(p, "complete"), 1);

    /* meta and groups back */
    mlmx_repstore_meta mm;
    int ng = 0;
    mlmx_repstore_group *g = NULL;
    cr_assert_eq(mlmx_repstore_read_meta(p, &mm, &ng, &g, &err), MLMX_OK, "%s", err.msg);
    cr_assert_str_eq(mm.formula, m.formula);
    cr_assert_str_eq(mm.family, "gaussian");
    cr_assert_str_eq(mm.method, "REML");
    cr_assert_str_eq(mm.data_file, m.data_file);
    cr_assert_str_eq(mm.data_sha256, m.data_sha256);
    cr_assert_str_eq(mm.mlmx_version, MLMX_VERSION_STRING);
    cr_assert_str_eq(mm.model_key, "key-A");
    cr_assert_eq(mm.seed, 42);
    cr_assert_eq(mm.nsim, 40);
    cr_assert_eq(mm.rep_begin, 10);
    cr_assert_eq(mm.rep_end, 40);
    cr_assert_eq(ng, 2);
    cr_assert_str_eq(g[0].name, "beta");
    cr_assert_eq(g[0].ncol, 2);
    cr_assert_str_eq(g[0].colnames[0], "(Intercept)");
    cr_assert_str_eq(g[1].name, "theta");
    cr_assert_eq(g[1].ncol, 3);
    cr_assert_str_eq(g[1].colnames[1], "cor_(Intercept).Days|Subject");
    mlmx_repstore_meta_free(&mm, ng, g);

    /* reopen and read again */
    cr_assert_eq(mlmx_repstore_open(p, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    check_range(s, 25, 33);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK, "%s", err.msg);
}

Test(repstore, zero_column_group_and_bad_groups)
{
    char p[256];
    tpath(p, sizeof p, "zero.h5");
    mlmx_error err = {0};
    mlmx_repstore_meta m = make_meta(1, 5, 0, 5, "k");
    const mlmx_repstore_group g3[3] = {{"beta", 2, beta_names}, {"empty", 0, NULL},
                                       {"theta", 3, theta_names}};
    mlmx_repstore *s = NULL;
    cr_assert_eq(mlmx_repstore_create(p, &m, 3, g3, &s, &err), MLMX_OK, "%s", err.msg);
    double b[2] = {1, 2}, t[3] = {3, 4, 5};
    const double *const v[3] = {b, NULL, t};
    cr_assert_eq(mlmx_repstore_write(s, 2, v, 1.5, 1, 0, 7, 1, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_open(p, &m, 3, g3, &s, &err), MLMX_OK, "%s", err.msg);
    double rb[2], rt[3];
    double *const rv[3] = {rb, NULL, rt};
    cr_assert_eq(mlmx_repstore_read_block(s, 2, 1, rv, NULL, NULL, NULL, NULL, NULL, &err),
                 MLMX_OK, "%s", err.msg);
    cr_assert(rb[1] == 2 && rt[2] == 5);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK);

    /* invalid groups and slices leave no file */
    char q[256];
    tpath(q, sizeof q, "bad.h5");
    const mlmx_repstore_group dup[2] = {{"beta", 2, beta_names}, {"beta", 3, theta_names}};
    cr_assert_eq(mlmx_repstore_create(q, &m, 2, dup, &s, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "twice"), "%s", err.msg);
    const mlmx_repstore_group slash[1] = {{"a/b", 2, beta_names}};
    cr_assert_eq(mlmx_repstore_create(q, &m, 1, slash, &s, &err), MLMX_ERR_ARG);
    mlmx_repstore_meta bad = make_meta(1, 5, 3, 3, "k");
    cr_assert_eq(mlmx_repstore_create(q, &bad, 2, groups2, &s, &err), MLMX_ERR_ARG);
    bad = make_meta(1, 5, 0, 6, "k");
    cr_assert_eq(mlmx_repstore_create(q, &bad, 2, groups2, &s, &err), MLMX_ERR_ARG);
    cr_assert_null(s);
    cr_assert_neq(access(q, F_OK), 0);
    /* a directory that does not exist: IO error naming the path, nothing printed */
    cr_assert_eq(mlmx_repstore_create("/nonexistent-dir/x.h5", &m, 2, groups2, &s, &err),
                 MLMX_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent-dir/x.h5"), "%s", err.msg);
}

Test(repstore, resume_checks)
{
    char p[256];
    tpath(p, sizeof p, "resume.h5");
    mlmx_error err = {0};
    mlmx_repstore_meta m = make_meta(42, 30, 0, 30, "lmm|Reaction~Days+(Days|Subject)|sha:01");
    mlmx_repstore *s = NULL;
    cr_assert_eq(mlmx_repstore_create(p, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    write_range(s, 0, 12, 0);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(int_attr(p, "complete"), 0);

    /* the same run resumes; the done replicates are found */
    cr_assert_eq(mlmx_repstore_open(p, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    signed char done[30];
    cr_assert_eq(mlmx_repstore_status(s, done, &err), MLMX_OK, "%s", err.msg);
    for (int r = 0; r < 30; r++)
        cr_assert_eq(done[r] != 0, r < 12);
    write_range(s, 12, 30, 2);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_open(p, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    check_range(s, 0, 30);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK, "%s", err.msg);

    /* other seed */
    mlmx_repstore_meta x = m;
    x.seed = 43;
    cr_assert_eq(mlmx_repstore_open(p, &x, 2, groups2, &s, &err), MLMX_ERR_ARG);
    cr_assert_null(s);
    cr_assert(strstr(err.msg, p) && strstr(err.msg, "seed") && strstr(err.msg, "42") &&
                  strstr(err.msg, "43"),
              "%s", err.msg);
    /* other model */
    x = m;
    x.model_key = "lmm|Reaction~Days+(1|Subject)|sha:01";
    cr_assert_eq(mlmx_repstore_open(p, &x, 2, groups2, &s, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "model_key") && strstr(err.msg, "(1|Subject)"), "%s", err.msg);
    /* other nsim, other slice */
    x = m;
    x.nsim = 31;
    cr_assert_eq(mlmx_repstore_open(p, &x, 2, groups2, &s, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "nsim"), "%s", err.msg);
    x = make_meta(42, 30, 0, 20, m.model_key);
    cr_assert_eq(mlmx_repstore_open(p, &x, 2, groups2, &s, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "range"), "%s", err.msg);
    /* other groups */
    const char *const other[3] = {"sd_(Intercept)|Subject", "cor_(Intercept).Days|Subject",
                                  "sd_Days|Subj"};
    const mlmx_repstore_group g2[2] = {{"beta", 2, beta_names}, {"theta", 3, other}};
    cr_assert_eq(mlmx_repstore_open(p, &m, 2, g2, &s, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "sd_Days|Subj'"), "%s", err.msg);
    cr_assert_eq(mlmx_repstore_open(p, &m, 1, groups2, &s, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "groups"), "%s", err.msg);

    /* missing file, a file that is not HDF5, an HDF5 file that is not ours;
     * nothing printed on stderr */
    char q[256], e[256];
    tpath(e, sizeof e, "stderr.txt");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0 && saved >= 0);
    dup2(fd, 2);
    close(fd);
    mlmx_status st1 = mlmx_repstore_open(tpath(q, sizeof q, "none.h5"), &m, 2, groups2, &s, &err);
    char msg1[MLMX_ERRMSG_MAX];
    snprintf(msg1, sizeof msg1, "%s", err.msg);
    FILE *fp = fopen(tpath(q, sizeof q, "text.h5"), "w");
    fputs("not hdf5\n", fp);
    fclose(fp);
    mlmx_status st2 = mlmx_repstore_open(q, &m, 2, groups2, &s, &err);
    hid_t f = H5Fcreate(tpath(q, sizeof q, "foreign.h5"), H5F_ACC_TRUNC, H5P_DEFAULT,
                        H5P_DEFAULT);
    H5Fclose(f);
    mlmx_status st3 = mlmx_repstore_open(q, &m, 2, groups2, &s, &err);
    char msg3[MLMX_ERRMSG_MAX];
    snprintf(msg3, sizeof msg3, "%s", err.msg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cr_assert_eq(st1, MLMX_ERR_IO);
    cr_assert(strstr(msg1, "none.h5"), "%s", msg1);
    cr_assert_eq(st2, MLMX_ERR_PARSE);
    cr_assert_eq(st3, MLMX_ERR_PARSE);
    cr_assert(strstr(msg3, "not an mlmx replicate file"), "%s", msg3);
    struct stat sb;
    cr_assert_eq(stat(e, &sb), 0);
    cr_assert_eq(sb.st_size, 0, "the library printed to stderr");
}

static void merge_case(const unsigned long long *cuts, int nshards, const int *modes)
{
    const unsigned long long nsim = cuts[nshards];
    char one[256], out[256], names[4][256];
    const char *in[4];
    tpath(one, sizeof one, "single.h5");
    tpath(out, sizeof out, "merged.h5");
    make_file(one, 7, nsim, 0, nsim, "key-M", 0);
    for (int i = 0; i < nshards; i++) {
        snprintf(names[i], sizeof names[i], "%s/shard%d.h5", tmpdir, i);
        make_file(names[i], 7, nsim, cuts[i], cuts[i + 1], "key-M", modes[i]);
    }
    /* given out of order on purpose */
    for (int i = 0; i < nshards; i++)
        in[i] = names[nshards - 1 - i];
    mlmx_error err = {0};
    cr_assert_eq(mlmx_repstore_merge(in, nshards, out, &err), MLMX_OK, "%s", err.msg);
    assert_same_datasets(one, out);
    cr_assert_eq(int_attr(out, "complete"), 1);
    mlmx_repstore_meta m;
    cr_assert_eq(mlmx_repstore_read_meta(out, &m, NULL, NULL, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(m.rep_begin, 0);
    cr_assert_eq(m.rep_end, nsim);
    cr_assert_eq(m.nsim, nsim);
    mlmx_repstore_meta_free(&m, 0, NULL);
    /* no temporary left next to the output */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", tmpdir);
    cr_assert_neq(system(cmd), 0, "a temporary file was left");
}

Test(repstore, merge_two_shards_bit_identical)
{
    const unsigned long long cuts[3] = {0, 23, 60};
    const int modes[2] = {1, 2};
    merge_case(cuts, 2, modes);
}

Test(repstore, merge_three_shards_bit_identical)
{
    const unsigned long long cuts[4] = {0, 1, 40, 97};
    const int modes[3] = {0, 1, 2};
    merge_case(cuts, 3, modes);
}

Test(repstore, merge_errors)
{
    char a[256], b[256], c[256], d[256], e[256], f[256], out[256];
    tpath(a, sizeof a, "a.h5");
    tpath(b, sizeof b, "b.h5");
    tpath(c, sizeof c, "c.h5");
    tpath(d, sizeof d, "d.h5");
    tpath(e, sizeof e, "e.h5");
    tpath(f, sizeof f, "f.h5");
    tpath(out, sizeof out, "out.h5");
    make_file(a, 5, 30, 0, 10, "K", 0);
    make_file(b, 5, 30, 10, 20, "K", 0);
    make_file(c, 5, 30, 20, 30, "K", 0);
    make_file(d, 5, 30, 15, 25, "K", 0); /* overlaps b and c */
    make_file(e, 6, 30, 20, 30, "K", 0); /* other seed */
    make_file(f, 5, 30, 20, 30, "K2", 0); /* other model */
    mlmx_error err = {0};

    const char *gap[2] = {a, c};
    cr_assert_eq(mlmx_repstore_merge(gap, 2, out, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "gap") && strstr(err.msg, "[10, 20)"), "%s", err.msg);
    const char *head[2] = {b, c};
    cr_assert_eq(mlmx_repstore_merge(head, 2, out, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "[0, 10)"), "%s", err.msg);
    const char *tail[2] = {a, b};
    cr_assert_eq(mlmx_repstore_merge(tail, 2, out, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "[20, 30)"), "%s", err.msg);
    const char *over[4] = {a, b, c, d};
    cr_assert_eq(mlmx_repstore_merge(over, 4, out, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "overlap") && strstr(err.msg, "[15, 20)") && strstr(err.msg, d),
              "%s", err.msg);
    const char *twice[3] = {a, b, b};
    cr_assert_eq(mlmx_repstore_merge(twice, 3, out, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "overlap"), "%s", err.msg);
    const char *seed[3] = {a, b, e};
    cr_assert_eq(mlmx_repstore_merge(seed, 3, out, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, e) && strstr(err.msg, "seed"), "%s", err.msg);
    const char *key[3] = {a, b, f};
    cr_assert_eq(mlmx_repstore_merge(key, 3, out, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, f) && strstr(err.msg, "model_key"), "%s", err.msg);
    const char *missing[3] = {a, b, "/nonexistent-dir/z.h5"};
    cr_assert_eq(mlmx_repstore_merge(missing, 3, out, &err), MLMX_ERR_IO);
    cr_assert(strstr(err.msg, "z.h5"), "%s", err.msg);
    cr_assert_neq(access(out, F_OK), 0, "a failed merge left an output file");

    /* an unfinished shard */
    char g[256];
    tpath(g, sizeof g, "g.h5");
    mlmx_repstore_meta m = make_meta(5, 30, 20, 30, "K");
    mlmx_repstore *s = NULL;
    cr_assert_eq(mlmx_repstore_create(g, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    write_range(s, 20, 25, 0);
    write_range(s, 26, 30, 0);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK);
    const char *unfinished[3] = {a, b, g};
    cr_assert_eq(mlmx_repstore_merge(unfinished, 3, out, &err), MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, g) && strstr(err.msg, "25"), "%s", err.msg);
    cr_assert_neq(access(out, F_OK), 0);

    /* an existing output is left alone by a failed merge, replaced by a good one */
    FILE *fp = fopen(out, "w");
    fputs("old", fp);
    fclose(fp);
    cr_assert_eq(mlmx_repstore_merge(gap, 2, out, &err), MLMX_ERR_ARG);
    struct stat sb;
    cr_assert(stat(out, &sb) == 0 && sb.st_size == 3);
    const char *good[3] = {c, a, b};
    cr_assert_eq(mlmx_repstore_merge(good, 3, out, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_open(out, &(mlmx_repstore_meta){.seed = 5, .nsim = 30,
                                                               .rep_begin = 0, .rep_end = 30,
                                                               .model_key = "K"},
                                    2, groups2, &s, &err),
                 MLMX_OK, "%s", err.msg);
    check_range(s, 0, 30);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK);
    /* a directory that does not exist for the output */
    cr_assert_eq(mlmx_repstore_merge(good, 3, "/nonexistent-dir/out.h5", &err), MLMX_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent-dir/out.h5"), "%s", err.msg);
}

Test(repstore, interrupted_after_flush_stays_readable)
{
    char p[256];
    tpath(p, sizeof p, "interrupted.h5");
    mlmx_repstore_meta m = make_meta(99, 50, 0, 50, "key-I");
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* child: write, flush, write more, die without closing */
        mlmx_error err = {0};
        mlmx_repstore *s = NULL;
        if (mlmx_repstore_create(p, &m, 2, groups2, &s, &err) != MLMX_OK)
            _exit(2);
        for (unsigned long long r = 0; r < 20; r++) {
            double v0[2], v1[3];
            for (int j = 0; j < 2; j++)
                v0[j] = val(0, r, j);
            for (int j = 0; j < 3; j++)
                v1[j] = val(1, r, j);
            const double *const vals[2] = {v0, v1};
            if (r == 15 && mlmx_repstore_flush(s, &err) != MLMX_OK)
                _exit(3);
            if (mlmx_repstore_write(s, r, vals, crit_of(r), conv_of(r), sing_of(r), neval_of(r),
                                    status_of(r), &err) != MLMX_OK)
                _exit(4);
        }
        _exit(0);
    }
    int wst = 0;
    cr_assert_eq(waitpid(pid, &wst, 0), pid);
    cr_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "child failed (%d)", wst);

    /* a plain HDF5 reader (as h5py) opens it */
    size_t nb = 0;
    unsigned char *raw = raw_dset(p, "status", &nb);
    cr_assert_eq(nb, 50);
    free(raw);
    cr_assert_eq(int_attr(p, "complete"), 0);

    /* resume: the flushed replicates are there; any later one whose status
     * reached the disk is complete; the rest are not done */
    mlmx_error err = {0};
    mlmx_repstore *s = NULL;
    cr_assert_eq(mlmx_repstore_open(p, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    signed char done[50];
    cr_assert_eq(mlmx_repstore_status(s, done, &err), MLMX_OK, "%s", err.msg);
    for (int r = 0; r < 15; r++)
        cr_assert_eq(done[r], status_of((unsigned long long)r));
    check_range(s, 0, 15);
    for (int r = 15; r < 20; r++)
        if (done[r])
            check_range(s, (unsigned long long)r, (unsigned long long)r + 1);
    for (int r = 20; r < 50; r++)
        cr_assert_eq(done[r], 0);
    /* finish the run */
    write_range(s, 15, 50, 2);
    cr_assert_eq(mlmx_repstore_set_complete(s, 1, &err), MLMX_OK);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_repstore_open(p, &m, 2, groups2, &s, &err), MLMX_OK, "%s", err.msg);
    check_range(s, 0, 50);
    cr_assert_eq(mlmx_repstore_close(s, &err), MLMX_OK);
    cr_assert_eq(int_attr(p, "complete"), 1);
}
