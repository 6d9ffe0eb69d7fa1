/* PLplot power-curve and bootstrap plots: SVG, PNG and PDF files are
 * written whole (atomically), the SVG carries the title, nothing is
 * printed, and bad extensions, unwritable places and bad arguments are
 * errors that leave no file behind. Each test works in a fresh temporary
 * directory. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, fileno */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output/plots.h"

static char tmpdir[64];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx_test_plots_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
}

TestSuite(plots, .init = setup, .fini = teardown);

static const char *tpath(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

static int count_entries(void)
{
    DIR *d = opendir(tmpdir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

/* stdout and stderr go to a file while the library draws; the file must
 * stay empty (the library never prints). */
typedef struct quiet {
    int saved_out, saved_err;
    char path[512];
} quiet;

static void quiet_begin(quiet *q)
{
    tpath(q->path, sizeof q->path, "printed.txt");
    fflush(stdout);
    fflush(stderr);
    int fd = open(q->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    q->saved_out = dup(1);
    q->saved_err = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
}

static void quiet_end(quiet *q)
{
    fflush(stdout);
    fflush(stderr);
    dup2(q->saved_out, 1);
    dup2(q->saved_err, 2);
    close(q->saved_out);
    close(q->saved_err);
    struct stat sb;
    cr_assert_eq(stat(q->path, &sb), 0);
    size_t len = 0;
    char *s = slurp(q->path, &len);
    cr_assert_eq(sb.st_size, 0, "the library printed: %s", s);
    free(s);
    unlink(q->path);
}

#define NPTS 10
static double px[NPTS], pw[NPTS], plo[NPTS], phi[NPTS];

static void power_data(void)
{
    for (int i = 0; i < NPTS; i++) {
        px[i] = 10.0 * (i + 1);
        pw[i] = 1.0 - exp(-px[i] / 30.0);
        double se = sqrt(pw[i] * (1.0 - pw[i]) / 1000.0);
        plo[i] = fmax(0.0, pw[i] - 2.0 * se);
        phi[i] = fmin(1.0, pw[i] + 2.0 * se);
    }
    pw[3] = NAN; /* a point without an estimate: a gap, not an error */
}

static void check_file(const char *path, const char *kind, const char *title)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "%s was not written", path);
    cr_assert_gt(sb.st_size, 2000, "%s is only %lld bytes", path, (long long)sb.st_size);
    cr_assert_eq(sb.st_mode & 0777, 0644);
    size_t len = 0;
    char *s = slurp(path, &len);
    if (strcmp(kind, "svg") == 0) {
        cr_assert(strstr(s, "<svg") != NULL, "%s is not SVG", path);
        cr_assert(strstr(s, "</svg>") != NULL, "%s is truncated", path);
        if (title)
            cr_assert(strstr(s, title) != NULL, "%s lacks the title '%s'", path, title);
    } else if (strcmp(kind, "png") == 0) {
        cr_assert(memcmp(s, "\x89PNG\r\n\x1a\n", 8) == 0, "%s is not PNG", path);
        cr_assert(memcmp(s + len - 8, "IEND", 4) == 0, "%s is truncated", path);
    } else {
        cr_assert(memcmp(s, "%PDF", 4) == 0, "%s is not PDF", path);
    }
    free(s);
}

Test(plots, power_curve_svg_png_pdf)
{
    power_data();
    char p[512];
    const char *title = "Power for x: y ~ x + (x | g) &lt; check";
    const char *kinds[] = {"svg", "png", "pdf"};
    quiet q;
    quiet_begin(&q);
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "power.%s", kinds[k]);
        mlmx_error err = {0};
        mlmx_status st = mlmx_plot_power_curve(tpath(p, sizeof p, name), NPTS, px, pw, plo, phi,
                                               0.05, 0.8, "clusters (g)",
                                               "Power for x: y ~ x + (x | g) < check", &err);
        cr_assert_eq(st, MLMX_OK, "%s: %s", name, err.msg);
    }
    quiet_end(&q);
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "power.%s", kinds[k]);
        check_file(tpath(p, sizeof p, name), kinds[k], k == 0 ? title : NULL);
    }
    cr_assert_eq(count_entries(), 3, "temporary files were left behind");
}

Test(plots, power_curve_without_band_target_or_title)
{
    power_data();
    char p[512];
    mlmx_error err = {0};
    cr_assert_eq(mlmx_plot_power_curve(tpath(p, sizeof p, "bare.svg"), NPTS, px, pw, NULL, NULL,
                                       NAN, NAN, NULL, NULL, &err),
                 MLMX_OK, "%s", err.msg);
    check_file(p, "svg", NULL);
    /* one point */
    cr_assert_eq(mlmx_plot_power_curve(tpath(p, sizeof p, "one.PNG"), 1, px + 5, pw + 5, plo + 5,
                                       phi + 5, 0.05, 0.9, "n", "one point", &err),
                 MLMX_OK, "%s", err.msg);
    check_file(p, "png", NULL);
}

#define NREP 500
#define NPAR 5

Test(plots, bootstrap_svg_png)
{
    static double v[NREP * NPAR];
    const char *names[NPAR] = {"(Intercept)", "Days", "sd_(Intercept)|Subject",
                               "cor_Days.(Intercept)|Subject", "sigma"};
    double est[NPAR], lo[NPAR], hi[NPAR];
    unsigned s = 12345;
    for (int r = 0; r < NREP; r++)
        for (int j = 0; j < NPAR; j++) {
            double u = 0;
            for (int k = 0; k < 12; k++) { /* Irwin-Hall: about normal */
                s = s * 1103515245u + 12345u;
                u += (s >> 8) / 16777216.0;
            }
            v[r * NPAR + j] = 10.0 * j + (u - 6.0) * (j + 1);
        }
    v[7 * NPAR + 1] = NAN; /* failed replicates are skipped */
    v[9 * NPAR + 1] = NAN;
    for (int j = 0; j < NPAR; j++) {
        est[j] = 10.0 * j;
        lo[j] = est[j] - 1.96 * (j + 1);
        hi[j] = est[j] + 1.96 * (j + 1);
    }
    const char *title = "Parametric bootstrap: Reaction ~ Days + (Days | Subject)";
    char p[512];
    quiet q;
    quiet_begin(&q);
    mlmx_error err = {0};
    cr_assert_eq(mlmx_plot_boot(tpath(p, sizeof p, "boot.svg"), NPAR, names, NREP, v, est, lo,
                                hi, title, &err),
                 MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_plot_boot(tpath(p, sizeof p, "boot.png"), NPAR, names, NREP, v, est, lo,
                                hi, title, &err),
                 MLMX_OK, "%s", err.msg);
    /* one parameter, all replicates NaN, no interval: still a plot */
    static double nan1[4] = {NAN, NAN, NAN, NAN};
    const char *one[1] = {"x"};
    cr_assert_eq(mlmx_plot_boot(tpath(p, sizeof p, "empty.png"), 1, one, 4, nan1, NULL, NULL,
                                NULL, NULL, &err),
                 MLMX_OK, "%s", err.msg);
    quiet_end(&q);
    check_file(tpath(p, sizeof p, "boot.svg"), "svg", title);
    check_file(tpath(p, sizeof p, "boot.png"), "png", NULL);
    check_file(tpath(p, sizeof p, "empty.png"), "png", NULL);
    cr_assert_eq(count_entries(), 3, "temporary files were left behind");
}

Test(plots, many_calls_in_one_process)
{
    power_data();
    char p[512];
    for (int i = 0; i < 6; i++) {
        mlmx_error err = {0};
        cr_assert_eq(mlmx_plot_power_curve(tpath(p, sizeof p, i % 2 ? "again.png" : "again.svg"),
                                           NPTS, px, pw, plo, phi, 0.05, 0.8, "clusters",
                                           "again", &err),
                     MLMX_OK, "call %d: %s", i, err.msg);
    }
    check_file(tpath(p, sizeof p, "again.svg"), "svg", "again");
    check_file(tpath(p, sizeof p, "again.png"), "png", NULL);
    cr_assert_eq(count_entries(), 2);
}

Test(plots, unknown_extension_is_an_argument_error)
{
    power_data();
    char p[512];
    const char *bad[] = {"power.gif", "power", "power.svg.txt", "dir.svg/power"};
    for (int i = 0; i < 4; i++) {
        mlmx_error err = {0};
        cr_assert_eq(mlmx_plot_power_curve(tpath(p, sizeof p, bad[i]), NPTS, px, pw, plo, phi,
                                           0.05, 0.8, "x", "t", &err),
                     MLMX_ERR_ARG, "%s", bad[i]);
        cr_assert(strstr(err.msg, ".svg") && strstr(err.msg, ".png") && strstr(err.msg, ".pdf"),
                  "message: %s", err.msg);
        cr_assert(strstr(err.msg, bad[i]) != NULL, "message does not name the file: %s",
                  err.msg);
    }
    mlmx_error err = {0};
    const char *names[1] = {"x"};
    double v[2] = {1, 2};
    cr_assert_eq(mlmx_plot_boot(tpath(p, sizeof p, "boot.jpeg"), 1, names, 2, v, NULL, NULL, NULL,
                                NULL, &err),
                 MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, ".svg") != NULL, "message: %s", err.msg);
    cr_assert_eq(count_entries(), 0, "a file was written");
}

Test(plots, unwritable_place_is_an_io_error_and_leaves_nothing)
{
    power_data();
    char p[512];
    mlmx_error err = {0};
    quiet q;
    quiet_begin(&q);
    /* a directory that does not exist */
    mlmx_status st = mlmx_plot_power_curve(tpath(p, sizeof p, "missing/power.svg"), NPTS, px, pw,
                                           plo, phi, 0.05, 0.8, "x", "t", &err);
    cr_assert_eq(st, MLMX_ERR_IO);
    cr_assert(strstr(err.msg, "missing/power.svg") != NULL, "message: %s", err.msg);
    cr_assert(strchr(err.msg, '\n') == NULL, "message spans lines: %s", err.msg);
    /* a "directory" that is a file */
    char f[512];
    FILE *fp = fopen(tpath(f, sizeof f, "plain"), "w");
    cr_assert_not_null(fp);
    fclose(fp);
    st = mlmx_plot_boot(tpath(p, sizeof p, "plain/boot.png"), 1, (const char *const[]){"x"}, 1,
                        (const double[]){1.0}, NULL, NULL, NULL, "t", &err);
    cr_assert_eq(st, MLMX_ERR_IO, "%s", err.msg);
    quiet_end(&q);
    cr_assert_eq(count_entries(), 1, "something besides 'plain' was left behind");
    /* the path is a directory: the temporary file is made, the rename fails */
    char d[512];
    cr_assert_eq(mkdir(tpath(d, sizeof d, "adir.svg"), 0755), 0);
    st = mlmx_plot_power_curve(d, NPTS, px, pw, plo, phi, 0.05, 0.8, "x", "t", &err);
    cr_assert_eq(st, MLMX_ERR_IO, "%s", err.msg);
    cr_assert_eq(count_entries(), 2, "a temporary file was left behind");
    rmdir(d);
}

Test(plots, bad_arguments)
{
    power_data();
    char p[512];
    mlmx_error err = {0};
    tpath(p, sizeof p, "bad.svg");
    cr_assert_eq(mlmx_plot_power_curve(p, 0, px, pw, plo, phi, 0.05, 0.8, "x", "t", &err),
                 MLMX_ERR_ARG);
    cr_assert_eq(mlmx_plot_power_curve(NULL, NPTS, px, pw, plo, phi, 0.05, 0.8, "x", "t", &err),
                 MLMX_ERR_ARG);
    double bad[NPTS];
    memcpy(bad, pw, sizeof bad);
    bad[2] = 1.5;
    cr_assert_eq(mlmx_plot_power_curve(p, NPTS, px, bad, plo, phi, 0.05, 0.8, "x", "t", &err),
                 MLMX_ERR_ARG);
    cr_assert(strstr(err.msg, "point 3") != NULL, "message: %s", err.msg);
    cr_assert_eq(mlmx_plot_power_curve(p, NPTS, px, pw, plo, phi, 1.5, 0.8, "x", "t", &err),
                 MLMX_ERR_ARG);
    memcpy(bad, px, sizeof bad);
    bad[0] = INFINITY;
    cr_assert_eq(mlmx_plot_power_curve(p, NPTS, bad, pw, plo, phi, 0.05, 0.8, "x", "t", &err),
                 MLMX_ERR_ARG);
    cr_assert_eq(mlmx_plot_boot(p, 0, NULL, 0, NULL, NULL, NULL, NULL, NULL, &err), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_plot_boot(p, 1, NULL, 3, NULL, NULL, NULL, NULL, NULL, &err), MLMX_ERR_ARG);
    cr_assert_eq(count_entries(), 0);
}
