/* Power analysis results: accessors, the summary text, JSON, CSV and the
 * power-curve plot (host/output/plots.c), every file written atomically,
 * and the check that an output path can be written before any work. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_internal.h"
#include "output/output.h"
#include "output/plots.h"
#include "power/power.h"
#include "util/strbuf.h"

void mlmx_power_result_free(mlmx_power_result *r)
{
    if (!r)
        return;
    free(r->scenario);
    free(r->formula);
    free(r->reduced);
    free(r->term);
    free(r->pilot);
    free(r->pilot_model);
    free(r->curve_level);
    mlmx_pw_resid_result_free(r);
    free(r->points);
    free(r);
}

const mlmx_power_point *mlmx_power_base(const mlmx_power_result *r) { return r ? &r->base : NULL; }
int mlmx_power_npoints(const mlmx_power_result *r) { return r ? r->npoints : 0; }
const mlmx_power_point *mlmx_power_point_at(const mlmx_power_result *r, int i)
{
    return r && i >= 0 && i < r->npoints ? &r->points[i] : NULL;
}
const char *mlmx_power_curve_level(const mlmx_power_result *r) { return r ? r->curve_level : NULL; }
const char *mlmx_power_device(const mlmx_power_result *r) { return r ? r->device : NULL; }
const char *mlmx_power_device_note(const mlmx_power_result *r) { return r ? r->note : NULL; }
size_t mlmx_power_device_peak_bytes(const mlmx_power_result *r) { return r ? r->peak_dev : 0; }

static const char *test_label(mlmx_sc_test t)
{
    switch (t) {
    case MLMX_SC_WALD_Z: return "Wald z";
    case MLMX_SC_WALD_T: return "Wald t";
    case MLMX_SC_LRT: return "likelihood ratio";
    }
    return "?";
}

/* ------------------------------------------------------------ text */

static void describe(mlmx_strbuf *b, const mlmx_power_result *r)
{
    mlmx_sb_printf(b, "Power by simulation: %s, %s", r->formula, mlmx_family_name(r->family));
    if (r->family == MLMX_FAMILY_GAUSSIAN)
        mlmx_sb_printf(b, " (%s)", r->method == MLMX_REML ? "REML" : "ML");
    mlmx_sb_puts(b, "\n");
    if (r->pilot_model)
        mlmx_sb_printf(b, "Pilot: saved model %s on %s\n  (its saved estimates are the truth "
                          "where the scenario is silent)\n",
                       r->pilot_model, r->pilot);
    else if (r->pilot)
        mlmx_sb_printf(b, "Pilot: %s (its estimates are the truth where the scenario is silent)\n",
                       r->pilot);
    mlmx_pw_resid_text(b, r);
    if (r->test == MLMX_SC_LRT)
        mlmx_sb_printf(b, "Test: likelihood ratio, dropping %s (%d df, ML fits), alpha %g\n",
                       r->term, r->df, r->alpha);
    else
        mlmx_sb_printf(b, "Test: %s of '%s', two-sided, alpha %g\n", test_label(r->test), r->term,
                       r->alpha);
    mlmx_sb_printf(b, "Simulations: %ld per design point, seed %llu\n\n", r->nsim,
                   (unsigned long long)r->seed);
}

static void point_line(mlmx_strbuf *b, const mlmx_power_point *p)
{
    char pw[32] = "NA", ci[64] = "NA";
    if (p->n_ok > 0) {
        snprintf(pw, sizeof pw, "%.4f", p->power);
        snprintf(ci, sizeof ci, "[%.4f, %.4f]", p->ci_lower, p->ci_upper);
    }
    mlmx_sb_printf(b, "%8s  %-18s%9ld%9ld%9ld%9ld\n", pw, ci, p->n_rejected, p->n_ok, p->n_failed,
                   p->n_singular);
}

mlmx_status mlmx_power_summary(const mlmx_power_result *r, char **text)
{
    mlmx_api_clear();
    if (!r || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_power_summary: NULL argument");
    *text = NULL;
    mlmx_strbuf b = {0};
    describe(&b, r);
    char cilab[32];
    snprintf(cilab, sizeof cilab, "%.4g%% CI", 100.0 * r->conf_level);
    int w = 0;
    if (r->npoints > 0) {
        w = (int)strlen(r->curve_level);
        w = w < 6 ? 6 : w > 24 ? 24 : w;
        mlmx_sb_printf(&b, "%*.*s", w, w, r->curve_level);
    }
    mlmx_sb_printf(&b, "%8s  %-18s%9s%9s%9s%9s\n", "power", cilab, "rejected", "fits", "failed",
                   "singular");
    if (r->npoints == 0)
        point_line(&b, &r->base);
    for (int i = 0; i < r->npoints; i++) {
        mlmx_sb_printf(&b, "%*ld", w, r->points[i].units);
        point_line(&b, &r->points[i]);
    }
    long nc = r->base.n_nonconverged;
    for (int i = 0; i < r->npoints; i++)
        nc += r->points[i].n_nonconverged;
    mlmx_sb_printf(&b, "\npower = rejected / fits (successful fits); CI: Clopper-Pearson. Failed "
                       "fits are\nleft out, singular fits are kept%s.\n",
                   nc ? " (so are fits that did not converge)" : "");
    mlmx_sb_printf(&b, "device: %s\n", r->device);
    if (r->note[0])
        mlmx_sb_printf(&b, "note: %s\n", r->note);
    if (r->peak_dev)
        mlmx_sb_printf(&b, "peak GPU memory: %.1f MiB\n", (double)r->peak_dev / 1048576.0);
    if (b.oom) {
        mlmx_sb_free(&b);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    *text = b.s;
    return MLMX_OK;
}

/* ------------------------------------------------------------ JSON, CSV */

/* A point's keys (ind: the indentation of the keys). */
static void json_point(mlmx_strbuf *b, const mlmx_power_point *p, const char *ind)
{
    mlmx_sb_printf(b, "%s\"units\": ", ind);
    if (p->units >= 0)
        mlmx_sb_printf(b, "%ld", p->units);
    else
        mlmx_sb_puts(b, "null");
    mlmx_sb_printf(b, ",\n%s\"nobs\": %ld,\n%s\"nsim\": %ld,\n%s\"n_ok\": %ld", ind, p->nobs, ind,
                   p->nsim, ind, p->n_ok);
    mlmx_sb_printf(b, ",\n%s\"n_rejected\": %ld,\n%s\"power\": ", ind, p->n_rejected, ind);
    mlmx_json_num(b, p->power);
    mlmx_sb_printf(b, ",\n%s\"ci_lower\": ", ind);
    mlmx_json_num(b, p->ci_lower);
    mlmx_sb_printf(b, ",\n%s\"ci_upper\": ", ind);
    mlmx_json_num(b, p->ci_upper);
    mlmx_sb_printf(b, ",\n%s\"n_failed\": %ld,\n%s\"n_singular\": %ld,\n%s\"n_nonconverged\": %ld",
                   ind, p->n_failed, ind, p->n_singular, ind, p->n_nonconverged);
    mlmx_sb_printf(b, ",\n%s\"critical_value\": ", ind);
    mlmx_json_num(b, p->critical_value);
}

mlmx_status mlmx_power_write_json(const mlmx_power_result *r, const char *path)
{
    mlmx_api_clear();
    if (!r || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_power_write_json: NULL argument");
    mlmx_strbuf b = {0};
    mlmx_sb_puts(&b, "{\n  \"mlmx_version\": ");
    mlmx_json_str(&b, MLMX_VERSION_STRING);
    mlmx_sb_puts(&b, ",\n  \"scenario\": ");
    mlmx_json_str(&b, r->scenario);
    mlmx_sb_puts(&b, ",\n  \"formula\": ");
    mlmx_json_str(&b, r->formula);
    mlmx_sb_printf(&b, ",\n  \"family\": \"%s\"", mlmx_family_name(r->family));
    mlmx_sb_printf(&b, ",\n  \"method\": \"%s\"",
                   r->family != MLMX_FAMILY_GAUSSIAN ? "Laplace"
                   : r->method == MLMX_REML          ? "REML"
                                                     : "ML");
    if (r->pilot) {
        mlmx_sb_puts(&b, ",\n  \"pilot\": ");
        mlmx_json_str(&b, r->pilot);
    }
    if (r->pilot_model) {
        mlmx_sb_puts(&b, ",\n  \"pilot_model\": ");
        mlmx_json_str(&b, r->pilot_model);
    }
    mlmx_pw_resid_json(&b, r);
    mlmx_sb_printf(&b, ",\n  \"test\": \"%s\",\n  \"term\": ", mlmx_sc_test_name(r->test));
    mlmx_json_str(&b, r->term);
    if (r->test == MLMX_SC_LRT) {
        mlmx_sb_puts(&b, ",\n  \"null_formula\": ");
        mlmx_json_str(&b, r->reduced);
        mlmx_sb_printf(&b, ",\n  \"df\": %d", r->df);
    }
    mlmx_sb_puts(&b, ",\n  \"alpha\": ");
    mlmx_json_num(&b, r->alpha);
    mlmx_sb_puts(&b, ",\n  \"conf_level\": ");
    mlmx_json_num(&b, r->conf_level);
    mlmx_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"device\": ", (unsigned long long)r->seed);
    mlmx_json_str(&b, r->device);
    mlmx_sb_puts(&b, ",\n  \"device_note\": ");
    mlmx_json_str(&b, r->note);
    mlmx_sb_printf(&b, ",\n  \"device_peak_bytes\": %zu,\n", r->peak_dev);
    json_point(&b, &r->base, "  ");
    if (r->npoints > 0) {
        mlmx_sb_puts(&b, ",\n  \"curve_level\": ");
        mlmx_json_str(&b, r->curve_level);
        mlmx_sb_puts(&b, ",\n  \"curve\": [");
        for (int i = 0; i < r->npoints; i++) {
            mlmx_sb_printf(&b, "%s\n    {\n", i ? "," : "");
            json_point(&b, &r->points[i], "      ");
            mlmx_sb_puts(&b, "\n    }");
        }
        mlmx_sb_puts(&b, "\n  ]");
    }
    mlmx_sb_puts(&b, "\n}\n");
    return mlmx_sb_write_file(&b, path, "the power JSON");
}

static void csv_num(mlmx_strbuf *b, double x)
{
    if (isfinite(x)) {
        mlmx_sb_puts(b, ",");
        mlmx_json_num(b, x); /* the shortest exact form, as in the JSON */
    } else {
        mlmx_sb_puts(b, ",NA");
    }
}

static void csv_row(mlmx_strbuf *b, const mlmx_power_point *p)
{
    if (p->units >= 0)
        mlmx_sb_printf(b, "%ld", p->units);
    else
        mlmx_sb_puts(b, "NA");
    mlmx_sb_printf(b, ",%ld,%ld,%ld,%ld", p->nobs, p->nsim, p->n_ok, p->n_rejected);
    csv_num(b, p->power);
    csv_num(b, p->ci_lower);
    csv_num(b, p->ci_upper);
    mlmx_sb_printf(b, ",%ld,%ld,%ld", p->n_failed, p->n_singular, p->n_nonconverged);
    csv_num(b, p->critical_value);
    mlmx_sb_puts(b, "\n");
}

mlmx_status mlmx_power_write_csv(const mlmx_power_result *r, const char *path)
{
    mlmx_api_clear();
    if (!r || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_power_write_csv: NULL argument");
    mlmx_strbuf b = {0};
    mlmx_sb_puts(&b, "units,nobs,nsim,n_ok,n_rejected,power,ci_lower,ci_upper,n_failed,"
                     "n_singular,n_nonconverged,critical_value\n");
    if (r->npoints == 0)
        csv_row(&b, &r->base);
    for (int i = 0; i < r->npoints; i++)
        csv_row(&b, &r->points[i]);
    return mlmx_sb_write_file(&b, path, "the power CSV");
}

/* ------------------------------------------------------------ plot */

mlmx_status mlmx_power_write_plot(const mlmx_power_result *r, const char *path)
{
    mlmx_api_clear();
    if (!r || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_power_write_plot: NULL argument");
    const int n = r->npoints ? r->npoints : 1;
    const mlmx_power_point *pts = r->npoints ? r->points : &r->base;
    double *buf = malloc(4 * (size_t)n * sizeof *buf);
    if (!buf)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    double *x = buf, *pw = buf + n, *lo = buf + 2 * n, *hi = buf + 3 * n;
    for (int i = 0; i < n; i++) {
        x[i] = pts[i].units >= 0 ? (double)pts[i].units : 1.0;
        pw[i] = pts[i].power;
        lo[i] = pts[i].ci_lower;
        hi[i] = pts[i].ci_upper;
    }
    char xlabel[256], title[512];
    if (r->curve_level)
        snprintf(xlabel, sizeof xlabel, "units of %s", r->curve_level);
    else
        snprintf(xlabel, sizeof xlabel, "design");
    const int pct = (int)lround(100.0 * r->conf_level);
    if (r->test == MLMX_SC_LRT)
        snprintf(title, sizeof title, "Power: likelihood ratio test dropping %s (%d%% band)",
                 r->term, pct);
    else
        snprintf(title, sizeof title, "Power: %s test of %s (%d%% band)", test_label(r->test),
                 r->term, pct);
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st =
        mlmx_plot_power_curve(path, n, x, pw, lo, hi, r->alpha, 0.8, xlabel, title, &e);
    free(buf);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}

/* ------------------------------------------------------------ output paths */

static int has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), k = strlen(ext);
    return n > k && strcasecmp(path + n - k, ext) == 0;
}

mlmx_status mlmx_power_check_output(const char *path, int plot)
{
    mlmx_api_clear();
    if (!path || !path[0])
        return mlmx_api_failf(MLMX_ERR_ARG, "an output path is empty");
    if (plot && !has_ext(path, ".svg") && !has_ext(path, ".png") && !has_ext(path, ".pdf"))
        return mlmx_api_failf(MLMX_ERR_ARG,
                              "cannot write the plot '%s': the name must end in .svg, .png or "
                              ".pdf",
                              path);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return mlmx_api_failf(MLMX_ERR_IO, "cannot write '%s': it is a directory", path);
    /* a temporary file next to it, as the atomic writers make */
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char *tmp = malloc(dl + 32);
    if (!tmp)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, dl);
    strcpy(tmp + dl, ".mlmx-check-XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return mlmx_api_failf(MLMX_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    close(fd);
    remove(tmp);
    free(tmp);
    return MLMX_OK;
}
