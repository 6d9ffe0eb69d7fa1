/* Bootstrap distributions and likelihood profiles drawn with PLplot
 * (plots.h), on the drawing layer of plot_draw.h. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output/plot_draw.h"
#include "output/plots.h"
#include "util/strbuf.h"

/* ------------------------------------------------------------ bootstrap */

typedef struct boot_ctx {
    int nparam;
    const char *const *names;
    size_t nrep;
    const double *values, *estimate, *lo, *hi;
    const char *title;
    int ncol, nrow;
    double *col; /* nrep scratch values */
    int *counts; /* bins scratch */
} boot_ctx;

#define BOOT_MAXBINS 60

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void draw_boot_panel(const boot_ctx *c, int j, double vx0, double vx1, double vy0,
                            double vy1)
{
    char buf[1024], num[3][32], info[160];
    size_t n = 0;
    for (size_t r = 0; r < c->nrep; r++) {
        double v = c->values[r * (size_t)c->nparam + (size_t)j];
        if (isfinite(v))
            c->col[n++] = v;
    }
    size_t nan = c->nrep - n;
    double est = c->estimate ? c->estimate[j] : NAN, lo = c->lo ? c->lo[j] : NAN,
           hi = c->hi ? c->hi[j] : NAN;
    double a = HUGE_VAL, b = -HUGE_VAL;
    if (n > 0) {
        qsort(c->col, n, sizeof *c->col, cmp_double);
        a = c->col[0];
        b = c->col[n - 1];
    }
    double ra = a, rb = b; /* axis range: the data and the lines */
    const double marks[3] = {est, lo, hi};
    for (int k = 0; k < 3; k++)
        if (isfinite(marks[k])) {
            ra = fmin(ra, marks[k]);
            rb = fmax(rb, marks[k]);
        }
    if (!(ra <= rb)) {
        ra = 0.0;
        rb = 1.0;
    }
    if (!(rb > ra)) {
        double h = fabs(ra) > 0 ? 0.1 * fabs(ra) : 1.0;
        ra -= h;
        rb += h;
    }
    /* bins over the data: about sqrt(n), 8..BOOT_MAXBINS */
    int nb = n > 0 ? (int)ceil(sqrt((double)n)) : 1;
    nb = nb < 8 ? 8 : nb > BOOT_MAXBINS ? BOOT_MAXBINS : nb;
    double ba = a, bb = b;
    if (n > 0 && !(bb > ba)) {
        double h = fabs(ba) > 0 ? 0.01 * fabs(ba) : 0.01;
        ba -= h;
        bb += h;
        ra = fmin(ra, ba);
        rb = fmax(rb, bb);
    }
    double width = n > 0 ? (bb - ba) / nb : 1.0;
    int maxc = 0;
    for (int k = 0; k < nb; k++)
        c->counts[k] = 0;
    for (size_t i = 0; i < n; i++) {
        int k = (int)((c->col[i] - ba) / width);
        k = k < 0 ? 0 : k >= nb ? nb - 1 : k;
        if (++c->counts[k] > maxc)
            maxc = c->counts[k];
    }
    double pad = 0.04 * (rb - ra);
    double ytop = maxc > 0 ? 1.12 * maxc : 1.0;

    plvpor(vx0, vx1, vy0, vy1);
    plwind(ra - pad, rb + pad, 0.0, ytop);
    plcol0(C_GRID);
    plwidth(1.0);
    plbox("", 0.0, 0, "g", 0.0, 0);

    for (int k = 0; k < nb && n > 0; k++) {
        if (!c->counts[k])
            continue;
        PLFLT x0 = ba + k * width, x1 = ba + (k + 1) * width, y1 = c->counts[k];
        PLFLT xs[5] = {x0, x1, x1, x0, x0}, ys[5] = {0, 0, y1, y1, 0};
        plcol0(C_HIST);
        plfill(4, xs, ys);
        plcol0(C_HIST_EDGE);
        plwidth(0.8);
        plline(5, xs, ys);
    }
    if (isfinite(lo) || isfinite(hi)) {
        plcol0(C_CI);
        plwidth(1.8);
        pllsty(2);
        if (isfinite(lo))
            mlmx_pl_vline(lo, 0.0, ytop);
        if (isfinite(hi))
            mlmx_pl_vline(hi, 0.0, ytop);
        pllsty(1);
    }
    if (isfinite(est)) {
        plcol0(C_EST);
        plwidth(2.2);
        mlmx_pl_vline(est, 0.0, ytop);
    }
    if (n == 0) {
        plcol0(C_MUTED);
        plptex(0.5 * (ra + rb), 0.5 * ytop, 1.0, 0.0, 0.5, "no finite replicates");
    }

    plcol0(C_FG);
    plwidth(1.0);
    mlmx_pl_text_size(0.80);
    plbox("bcnst", 0.0, 0, "bcnstv", 0.0, 0);
    if (j % c->ncol == 0)
        plmtex("l", 4.0, 0.5, 0.5, "replicates");
    /* panel title and a line of numbers */
    mlmx_pl_text_size(1.1);
    plmtex("t", 3.1, 0.5, 0.5, mlmx_pl_text(buf, sizeof buf, c->names && c->names[j] ? c->names[j] : ""));
    mlmx_pl_text_size(0.75);
    plcol0(C_MUTED);
    mlmx_pl_fmt_num(num[0], sizeof num[0], est);
    mlmx_pl_fmt_num(num[1], sizeof num[1], lo);
    mlmx_pl_fmt_num(num[2], sizeof num[2], hi);
    int len = 0;
    info[0] = '\0';
    if (isfinite(est))
        len += snprintf(info + len, sizeof info - (size_t)len, "estimate %s", num[0]);
    if (isfinite(lo) || isfinite(hi))
        len += snprintf(info + len, sizeof info - (size_t)len, "%s[%s, %s]", len ? ", " : "",
                        num[1], num[2]);
    plmtex("t", 2.3, 0.5, 0.5, info);
    snprintf(info, sizeof info, "%zu replicates", n);
    if (nan)
        snprintf(info, sizeof info, "%zu replicates, %zu NaN skipped", n, nan);
    plmtex("t", 0.8, 0.5, 0.5, info);
    mlmx_pl_text_size(1.0);
}

static void draw_boot(const plot_job *job)
{
    const boot_ctx *c = job->ctx;
    char buf[1024];
    double W = job->width, H = job->height;
    double top = 70.0, left = 70.0, right = 24.0, ptop = 62.0, pbot = 44.0;
    pladv(0);
    /* page title and key */
    plvpor(0.0, 1.0, 0.0, 1.0);
    plwind(0.0, W, 0.0, H);
    plcol0(C_FG);
    if (c->title && c->title[0]) {
        mlmx_pl_text(buf, sizeof buf, c->title);
        mlmx_pl_text_size(mlmx_pl_fit_size(buf, 0.96 * mlmx_pl_page_width_mm(), 1.45));
        plptex(0.5 * W, H - 26.0, 1.0, 0.0, 0.5, buf);
    }
    mlmx_pl_text_size(0.8);
    plcol0(C_MUTED);
    plptex(0.5 * W, H - 51.0, 1.0, 0.0, 0.5,
           "histogram of bootstrap replicates; solid line: estimate; dashed lines: interval");
    double cw = W / c->ncol, ch = (H - top) / c->nrow;
    for (int j = 0; j < c->nparam; j++) {
        int r = j / c->ncol, k = j % c->ncol;
        double x0 = k * cw + left, x1 = (k + 1) * cw - right;
        double y1 = H - top - r * ch - ptop, y0 = H - top - (r + 1) * ch + pbot;
        draw_boot_panel(c, j, x0 / W, x1 / W, y0 / H, y1 / H);
    }
}

mlmx_status mlmx_plot_boot(const char *path, int nparam, const char *const *names, size_t nrep,
                           const double *values, const double *estimate, const double *lo,
                           const double *hi, const char *title, mlmx_error *err)
{
    if (!path || (nrep > 0 && !values))
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_plot_boot: NULL argument");
    if (nparam < 1 || nparam > 64)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "bootstrap plot '%s': %d parameters (1 to 64 can be drawn)", path,
                            nparam);
    if (nrep > ((size_t)-1) / sizeof(double) / (size_t)nparam)
        return mlmx_err_set(err, MLMX_ERR_ARG, "bootstrap plot '%s': too many replicates", path);
    boot_ctx c = {nparam, names, nrep, values, estimate, lo, hi, title, 0, 0, NULL, NULL};
    c.ncol = (int)ceil(sqrt((double)nparam));
    if (c.ncol > 4)
        c.ncol = 4;
    c.nrow = (nparam + c.ncol - 1) / c.ncol;
    c.col = malloc((nrep ? nrep : 1) * sizeof *c.col);
    c.counts = malloc(BOOT_MAXBINS * sizeof *c.counts);
    if (!c.col || !c.counts) {
        free(c.col);
        free(c.counts);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    double w = c.ncol == 1 ? 760.0 : 400.0 * c.ncol, h = 70.0 + (c.ncol == 1 ? 400.0 : 340.0) * c.nrow;
    plot_job job = {w, h, draw_boot, &c};
    mlmx_status st = mlmx_pl_file(path, "bootstrap plot", title, &job, err);
    free(c.col);
    free(c.counts);
    return st;
}

/* ------------------------------------------------------------------ */
/* Likelihood profiles                                                 */
/* ------------------------------------------------------------------ */

typedef struct profile_ctx {
    int nparam, ncol, nrow;
    const char *const *names;
    const int *npts;
    const double *const *x, *const *zeta;
    const double *lo, *hi;
    double z;
    const char *title;
} profile_ctx;

static void draw_profile_panel(const profile_ctx *c, int j, double vx0, double vx1, double vy0,
                               double vy1)
{
    char buf[1024];
    const int n = c->npts[j];
    const double *x = c->x[j], *zt = c->zeta[j];
    double xa = HUGE_VAL, xb = -HUGE_VAL, za = -c->z, zb = c->z;
    for (int i = 0; i < n; i++) {
        xa = fmin(xa, x[i]), xb = fmax(xb, x[i]);
        za = fmin(za, zt[i]), zb = fmax(zb, zt[i]);
    }
    if (!(xb > xa)) {
        const double h = isfinite(xa) && xa != 0 ? 0.1 * fabs(xa) : 1.0;
        xa = (isfinite(xa) ? xa : 0.0) - h;
        xb = xa + 2.0 * h;
    }
    const double px = 0.04 * (xb - xa), pz = 0.06 * (zb - za);
    plvpor(vx0, vx1, vy0, vy1);
    plwind(xa - px, xb + px, za - pz, zb + pz);
    plcol0(C_GRID);
    plwidth(1.0);
    plbox("g", 0.0, 0, "g", 0.0, 0);
    plcol0(C_TARGET);
    pllsty(2);
    mlmx_pl_hline(xa - px, xb + px, c->z);
    mlmx_pl_hline(xa - px, xb + px, -c->z);
    pllsty(1);
    if (isfinite(c->lo[j]) || isfinite(c->hi[j])) {
        plcol0(C_CI);
        plwidth(1.6);
        pllsty(2);
        if (isfinite(c->lo[j]))
            mlmx_pl_vline(c->lo[j], za - pz, zb + pz);
        if (isfinite(c->hi[j]))
            mlmx_pl_vline(c->hi[j], za - pz, zb + pz);
        pllsty(1);
    }
    double wx, wy;
    mlmx_pl_world_per_mm(&wx, &wy);
    plcol0(C_CURVE);
    plwidth(2.0);
    for (int i = 1; i < n; i++) {
        PLFLT xs[2] = {x[i - 1], x[i]}, ys[2] = {zt[i - 1], zt[i]};
        plline(2, xs, ys);
    }
    for (int i = 0; i < n; i++)
        mlmx_pl_dot(x[i], zt[i], 0.6, wx, wy);
    plcol0(C_FG);
    plwidth(1.0);
    mlmx_pl_text_size(0.80);
    plbox("bcnst", 0.0, 0, "bcnstv", 0.0, 0);
    if (j % c->ncol == 0)
        plmtex("l", 4.0, 0.5, 0.5, "zeta");
    mlmx_pl_text_size(1.1);
    plmtex("t", 1.2, 0.5, 0.5, mlmx_pl_text(buf, sizeof buf, c->names[j]));
    mlmx_pl_text_size(1.0);
}

static void draw_profile(const plot_job *job)
{
    const profile_ctx *c = job->ctx;
    char buf[1024];
    const double W = job->width, H = job->height, top = 70.0;
    pladv(0);
    plvpor(0.0, 1.0, 0.0, 1.0);
    plwind(0.0, W, 0.0, H);
    plcol0(C_FG);
    if (c->title && c->title[0]) {
        mlmx_pl_text(buf, sizeof buf, c->title);
        mlmx_pl_text_size(mlmx_pl_fit_size(buf, 0.96 * mlmx_pl_page_width_mm(), 1.45));
        plptex(0.5 * W, H - 26.0, 1.0, 0.0, 0.5, buf);
    }
    mlmx_pl_text_size(0.8);
    plcol0(C_MUTED);
    snprintf(buf, sizeof buf,
             "zeta: the signed square root of the change in deviance; green: zeta = +-%.3g; "
             "orange: the interval",
             c->z);
    plptex(0.5 * W, H - 51.0, 1.0, 0.0, 0.5, buf);
    const double cw = W / c->ncol, ch = (H - top) / c->nrow;
    for (int j = 0; j < c->nparam; j++) {
        const int r = j / c->ncol, k = j % c->ncol;
        const double x0 = k * cw + 70.0, x1 = (k + 1) * cw - 24.0;
        const double y1 = H - top - r * ch - 40.0, y0 = H - top - (r + 1) * ch + 44.0;
        draw_profile_panel(c, j, x0 / W, x1 / W, y0 / H, y1 / H);
    }
}

mlmx_status mlmx_plot_profile(const char *path, int nparam, const char *const *names,
                              const int *npts, const double *const *x, const double *const *zeta,
                              const double *lo, const double *hi, double z, const char *title,
                              mlmx_error *err)
{
    if (!path || !names || !npts || !x || !zeta || !lo || !hi)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_plot_profile: NULL argument");
    if (nparam < 1 || nparam > 64)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "profile plot '%s': %d parameters (1 to 64 can be drawn)", path, nparam);
    profile_ctx c = {nparam, 0, 0, names, npts, x, zeta, lo, hi, z, title};
    c.ncol = nparam < 3 ? nparam : 3;
    c.nrow = (nparam + c.ncol - 1) / c.ncol;
    const double w = 360.0 * c.ncol, h = 70.0 + 300.0 * c.nrow;
    plot_job job = {w, h, draw_profile, &c};
    return mlmx_pl_file(path, "profile plot", title, &job, err);
}
