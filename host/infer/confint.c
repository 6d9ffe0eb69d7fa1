/* Confidence intervals of a fit (mlmx_fit_confint): lme4's parameter
 * names, the Wald and bootstrap paths, and the outputs (the text R prints,
 * the JSON section, the profile plot). The profile itself is in
 * profile.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "infer/infer.h"
#include "infer/confint.h"
#include "output/output.h"
#include "output/plots.h"
#include "power/power.h"
#include "util/strbuf.h"

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

mlmx_status mlmx_confint_note(mlmx_confint *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **m = realloc(c->msgs, (size_t)(c->nmsg + 1) * sizeof *m);
    if (!m)
        return MLMX_ERR_NOMEM;
    c->msgs = m;
    if (!(m[c->nmsg] = mlmx_strdup(buf)))
        return MLMX_ERR_NOMEM;
    c->nmsg++;
    return MLMX_OK;
}

mlmx_status mlmx_confint_add_point(mlmx_confint *c, int j, double x, double zeta)
{
    if (c->npts[j] == c->cap[j]) {
        const int cap = c->cap[j] ? 2 * c->cap[j] : 16;
        double *px = realloc(c->px[j], (size_t)cap * sizeof *px);
        if (px)
            c->px[j] = px;
        double *pz = px ? realloc(c->pz[j], (size_t)cap * sizeof *pz) : NULL;
        if (!pz)
            return MLMX_ERR_NOMEM;
        c->pz[j] = pz;
        c->cap[j] = cap;
    }
    c->px[j][c->npts[j]] = x;
    c->pz[j][c->npts[j]++] = zeta;
    return MLMX_OK;
}

void mlmx_confint_free(mlmx_confint *c)
{
    if (!c)
        return;
    for (int j = 0; j < c->np; j++) {
        if (c->names)
            free(c->names[j]);
        if (c->px)
            free(c->px[j]);
        if (c->pz)
            free(c->pz[j]);
    }
    for (int i = 0; i < c->nmsg; i++)
        free(c->msgs[i]);
    free(c->msgs);
    free(c->names);
    free(c->est);
    free(c->npts);
    free(c->px);
    free(c->pz);
    free(c);
}

/* The object with lme4's names (.sig01, ..., .sigma, fixed effects). */
static mlmx_confint *confint_alloc(const mlmx_fit *f, mlmx_confint_method method, double level)
{
    const mlmx_model *m = f->model;
    mlmx_confint *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->method = method;
    c->level = level;
    /* nlme's intervals add the residual structure's parameters */
    const int nres = method == MLMX_CONFINT_NLME && m->resid ? m->resid->npar : 0;
    c->nvar = m->ntheta + nres + (f->family == MLMX_FAMILY_GAUSSIAN);
    c->np = c->nvar + m->p;
    const size_t np = (size_t)c->np;
    c->names = calloc(np, sizeof *c->names);
    c->est = malloc(3 * np * sizeof *c->est);
    c->npts = calloc(2 * np, sizeof *c->npts);
    c->px = calloc(np, sizeof *c->px);
    c->pz = calloc(np, sizeof *c->pz);
    if (!c->names || !c->est || !c->npts || !c->px || !c->pz) {
        mlmx_confint_free(c);
        return NULL;
    }
    c->lo = c->est + np;
    c->hi = c->lo + np;
    c->cap = c->npts + np;
    for (size_t j = 0; j < 3 * np; j++)
        c->est[j] = NAN;
    for (int j = 0; j < c->np; j++) {
        c->names[j] = j < m->ntheta          ? mlmx_asprintf(".sig%02d", j + 1)
                      : j < m->ntheta + nres ? mlmx_strdup(m->resid->par_names[j - m->ntheta])
                      : j < c->nvar          ? mlmx_strdup(".sigma")
                                             : mlmx_strdup(m->fixef_names[j - c->nvar]);
        if (!c->names[j]) {
            mlmx_confint_free(c);
            return NULL;
        }
    }
    return c;
}

/* The estimates in lme4's parameters (the fit's, not the ML refit's). */
static void fit_estimates(const mlmx_fit *f, mlmx_confint *c)
{
    const int glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    const mlmx_model *m = f->model;
    mlmx_theta_to_sdcor(m, f->theta, glmm ? 1.0 : f->sigma, c->est);
    for (int k = m->ntheta; k < c->nvar - !glmm; k++) /* nlme's: the residual structure */
        c->est[k] = f->rpar[k - m->ntheta];
    if (!glmm)
        c->est[c->nvar - 1] = f->sigma;
    memcpy(c->est + c->nvar, f->beta, (size_t)f->model->p * sizeof *c->est);
}

static void wald(const mlmx_fit *f, mlmx_confint *c)
{
    const double z = mlmx_pw_qnorm(0.5 + 0.5 * c->level);
    for (int j = 0; j < f->model->p; j++) {
        /* lme4: cf + ses %o% qnorm(a), a = (1 - level) / 2 and 1 - a */
        c->lo[c->nvar + j] = f->beta[j] + f->se[j] * -z;
        c->hi[c->nvar + j] = f->beta[j] + f->se[j] * z;
    }
}

/* Percentile intervals of a parametric bootstrap, mapped from the
 * bootstrap's parameter order (fixed effects; per term its SDs, then its
 * correlations; sigma) to lme4's. */
static mlmx_status boot_intervals(const mlmx_fit *f, const mlmx_boot_options *bo, mlmx_confint *c)
{
    mlmx_boot_options o = *bo;
    o.level = c->level;
    mlmx_boot *b = NULL;
    mlmx_status st = mlmx_boot_run(f, &o, &b);
    if (st)
        return st;
    const mlmx_model *m = f->model;
    int bj = m->p;
    for (int k = 0; k < m->K && !st; k++) {
        const int q = m->re[k].q, off = m->re[k].theta_offset;
        for (int pass = 0; pass < 2; pass++) /* SDs, then correlations */
            for (int cc = 0, t = off; cc < q; cc++)
                for (int a = cc; a < q; a++, t++) {
                    if ((a == cc) != (pass == 0))
                        continue;
                    mlmx_boot_summary s;
                    if (!(st = mlmx_boot_param_summary(b, bj++, &s)))
                        c->lo[t] = s.perc_lo, c->hi[t] = s.perc_hi;
                }
    }
    for (int j = 0; j < m->p && !st; j++) {
        mlmx_boot_summary s;
        if (!(st = mlmx_boot_param_summary(b, j, &s)))
            c->lo[c->nvar + j] = s.perc_lo, c->hi[c->nvar + j] = s.perc_hi;
    }
    if (!st && f->family == MLMX_FAMILY_GAUSSIAN) {
        mlmx_boot_summary s;
        if (!(st = mlmx_boot_param_summary(b, bj, &s)))
            c->lo[c->nvar - 1] = s.perc_lo, c->hi[c->nvar - 1] = s.perc_hi;
    }
    if (!st)
        st = mlmx_confint_note(c, "percentile intervals of %llu bootstrap replicates (%llu failed)",
                               (unsigned long long)mlmx_boot_n_done(b),
                               (unsigned long long)mlmx_boot_n_failed(b));
    mlmx_boot_free(b);
    return st;
}

mlmx_status mlmx_fit_confint(const mlmx_fit *f, mlmx_confint_method method, double level,
                             const struct mlmx_boot_options *boot, mlmx_confint **out)
{
    mlmx_api_clear();
    if (!f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_confint: NULL argument");
    *out = NULL;
    if (!(level > 0.0 && level < 1.0))
        return mlmx_api_failf(MLMX_ERR_ARG, "confidence level %g is not between 0 and 1", level);
    if (method != MLMX_CONFINT_PROFILE && method != MLMX_CONFINT_WALD &&
        method != MLMX_CONFINT_BOOT && method != MLMX_CONFINT_NLME)
        return mlmx_api_failf(MLMX_ERR_ARG, "unknown confidence interval method %d", (int)method);
    if (mlmx_api_require_unstructured(f->model, method == MLMX_CONFINT_PROFILE
                                                    ? "profile confidence intervals"
                                                : method == MLMX_CONFINT_BOOT
                                                    ? "bootstrap confidence intervals"
                                                    : "Wald confidence intervals"))
        return MLMX_ERR_UNSUPPORTED;
    if (method == MLMX_CONFINT_BOOT && !boot)
        return mlmx_api_failf(MLMX_ERR_ARG, "bootstrap intervals need the bootstrap options");
    if (method != MLMX_CONFINT_WALD && method != MLMX_CONFINT_NLME &&
        mlmx_infer_iid(f, method == MLMX_CONFINT_PROFILE ? "profile confidence intervals"
                                                          : "bootstrap confidence intervals"))
        return MLMX_ERR_UNSUPPORTED;
    const double t0 = now_seconds();
    mlmx_confint *c = confint_alloc(f, method, level);
    if (!c)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_status st = MLMX_OK;
    if (method == MLMX_CONFINT_PROFILE) {
        mlmx_error e;
        mlmx_err_clear(&e);
        st = mlmx_profile_confint(f, c, &e);
        if (st) {
            mlmx_confint_free(c);
            return mlmx_api_failf(st, "profile confidence intervals: %s",
                                  e.msg[0] ? e.msg : "out of memory");
        }
    } else if (method == MLMX_CONFINT_NLME) {
        fit_estimates(f, c);
        mlmx_error e;
        mlmx_err_clear(&e);
        st = mlmx_nlme_intervals(f, c, &e);
        if (st) {
            mlmx_confint_free(c);
            return mlmx_api_failf(st, "%s", e.msg[0] ? e.msg : "out of memory");
        }
    } else {
        fit_estimates(f, c);
        if (method == MLMX_CONFINT_WALD)
            wald(f, c);
        else
            st = boot_intervals(f, boot, c);
        if (st) {
            mlmx_confint_free(c);
            return st == MLMX_ERR_NOMEM ? mlmx_api_failf(st, "out of memory") : st;
        }
    }
    c->seconds = now_seconds() - t0;
    *out = c;
    return MLMX_OK;
}

int mlmx_confint_nparams(const mlmx_confint *c) { return c ? c->np : 0; }

const char *mlmx_confint_name(const mlmx_confint *c, int j)
{
    return c && j >= 0 && j < c->np ? c->names[j] : NULL;
}

mlmx_status mlmx_confint_bounds(const mlmx_confint *c, int j, double *estimate, double *lower,
                                double *upper)
{
    mlmx_api_clear();
    if (!c || j < 0 || j >= c->np)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_confint_bounds: parameter %d out of range", j);
    if (estimate)
        *estimate = c->est[j];
    if (lower)
        *lower = c->lo[j];
    if (upper)
        *upper = c->hi[j];
    return MLMX_OK;
}

int mlmx_confint_nmessages(const mlmx_confint *c) { return c ? c->nmsg : 0; }

const char *mlmx_confint_message(const mlmx_confint *c, int i)
{
    return c && i >= 0 && i < c->nmsg ? c->msgs[i] : NULL;
}

double mlmx_confint_seconds(const mlmx_confint *c) { return c ? c->seconds : NAN; }

/* R's format.perc: "2.5 %", "97.5 %". */
static void perc_label(char *buf, size_t n, double a)
{
    snprintf(buf, n, "%.3g %%", 100.0 * a);
}

static const char *method_name(mlmx_confint_method m)
{
    return m == MLMX_CONFINT_PROFILE ? "profile"
           : m == MLMX_CONFINT_WALD  ? "Wald"
           : m == MLMX_CONFINT_NLME  ? "nlme"
                                     : "boot";
}

mlmx_status mlmx_confint_text(const mlmx_confint *c, char **text)
{
    mlmx_api_clear();
    if (!c || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_confint_text: NULL argument");
    const double a = 0.5 * (1.0 - c->level);
    char head[2][32], cell[64];
    perc_label(head[0], sizeof head[0], a);
    perc_label(head[1], sizeof head[1], 1.0 - a);
    const double *col[2] = {c->lo, c->hi};
    int dec[2], w[2], wn = 0;
    for (int j = 0; j < c->np; j++)
        wn = (int)strlen(c->names[j]) > wn ? (int)strlen(c->names[j]) : wn;
    for (int k = 0; k < 2; k++) { /* R formats each column of a matrix on its own */
        dec[k] = mlmx_fmt_decimals(col[k], c->np, 7);
        w[k] = (int)strlen(head[k]);
        for (int j = 0; j < c->np; j++) {
            int len = isfinite(col[k][j]) ? snprintf(cell, sizeof cell, "%.*f", dec[k], col[k][j])
                                          : 2;
            w[k] = len > w[k] ? len : w[k];
        }
    }
    mlmx_strbuf b = {0};
    mlmx_sb_printf(&b, "\nConfidence intervals (%s, level %g):\n", method_name(c->method),
                   c->level);
    mlmx_sb_printf(&b, "%*s %*s %*s\n", wn, "", w[0], head[0], w[1], head[1]);
    for (int j = 0; j < c->np; j++) {
        mlmx_sb_printf(&b, "%-*s", wn, c->names[j]);
        for (int k = 0; k < 2; k++) {
            if (isfinite(col[k][j]))
                snprintf(cell, sizeof cell, "%.*f", dec[k], col[k][j]);
            else
                snprintf(cell, sizeof cell, "NA");
            mlmx_sb_printf(&b, " %*s", w[k], cell);
        }
        mlmx_sb_puts(&b, "\n");
    }
    for (int i = 0; i < c->nmsg; i++)
        mlmx_sb_printf(&b, "note: %s\n", c->msgs[i]);
    if (!b.s)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    *text = b.s;
    return MLMX_OK;
}

void mlmx_json_confint(mlmx_strbuf *b, const mlmx_confint *c)
{
    mlmx_sb_printf(b, ",\n  \"confint\": {\"method\": \"%s\", \"level\": ",
                   method_name(c->method));
    mlmx_json_num(b, c->level);
    mlmx_sb_puts(b, ", \"parameters\": [");
    for (int j = 0; j < c->np; j++) {
        mlmx_sb_puts(b, j ? ",\n    {\"name\": " : "\n    {\"name\": ");
        mlmx_json_str(b, c->names[j]);
        const char *key[3] = {"estimate", "lower", "upper"};
        const double val[3] = {c->est[j], c->lo[j], c->hi[j]};
        for (int k = 0; k < 3; k++) {
            mlmx_sb_printf(b, ", \"%s\": ", key[k]);
            mlmx_json_num(b, val[k]);
        }
        mlmx_sb_puts(b, "}");
    }
    mlmx_sb_puts(b, "],\n    \"messages\": [");
    for (int i = 0; i < c->nmsg; i++) {
        mlmx_sb_puts(b, i ? ", " : "");
        mlmx_json_str(b, c->msgs[i]);
    }
    mlmx_sb_puts(b, "], \"seconds\": ");
    mlmx_json_num(b, c->seconds);
    mlmx_sb_puts(b, "}");
}

typedef struct xz {
    double x, z;
} xz;

static int cmp_xz(const void *a, const void *b)
{
    const double u = ((const xz *)a)->x, v = ((const xz *)b)->x;
    return (u > v) - (u < v);
}

mlmx_status mlmx_confint_write_plot(const mlmx_confint *c, const char *path)
{
    mlmx_api_clear();
    if (!c || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_confint_write_plot: NULL argument");
    if (c->method != MLMX_CONFINT_PROFILE)
        return mlmx_api_failf(MLMX_ERR_ARG, "a profile plot needs profile intervals (these are %s)",
                              method_name(c->method));
    /* the points of each parameter sorted by x, duplicates dropped */
    size_t tot = 0;
    for (int j = 0; j < c->np; j++)
        tot += (size_t)c->npts[j];
    xz *buf = malloc((tot ? tot : 1) * sizeof *buf);
    double *xs = malloc(2 * (tot ? tot : 1) * sizeof *xs);
    const double **px = malloc((size_t)c->np * sizeof *px), **pz = malloc((size_t)c->np * sizeof *pz);
    int *n = malloc((size_t)c->np * sizeof *n);
    if (!buf || !xs || !px || !pz || !n) {
        free(buf), free(xs), free(px), free(pz), free(n);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    size_t off = 0;
    for (int j = 0; j < c->np; j++) {
        xz *b = buf + off;
        for (int i = 0; i < c->npts[j]; i++)
            b[i].x = c->px[j][i], b[i].z = c->pz[j][i];
        qsort(b, (size_t)c->npts[j], sizeof *b, cmp_xz);
        double *x = xs + 2 * off, *z = x + c->npts[j];
        int k = 0;
        for (int i = 0; i < c->npts[j]; i++)
            if (k == 0 || b[i].x != x[k - 1])
                x[k] = b[i].x, z[k++] = b[i].z;
        px[j] = x, pz[j] = z, n[j] = k;
        off += (size_t)c->npts[j];
    }
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = mlmx_plot_profile(path, c->np, (const char *const *)c->names, n, px, pz, c->lo,
                                       c->hi, mlmx_pw_qnorm(0.5 + 0.5 * c->level),
                                       "Likelihood profiles", &e);
    free(buf), free(xs), free(px), free(pz), free(n);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}
