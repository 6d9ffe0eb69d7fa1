/* The variance components' standard errors and intervals as text (Stata's
 * random-effects table, `mlmx fit --re-se sd|var`) and JSON ("re_se"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "lmm/fit.h"
#include "output/output.h"
#include "util/strbuf.h"

/* "sd(Days)", "corr((Intercept),Days)", "var(Days)", "cov(...)"; the
 * residual's "sd" / "var". */
static void param_name(const mlmx_model *m, const mlmx_vc_se *v, int scale, char *buf,
                       size_t cap)
{
    const char *one = scale ? "var" : "sd", *two = scale ? "cov" : "corr";
    if (v->term < 0)
        snprintf(buf, cap, "%s", one);
    else if (v->a == v->b)
        snprintf(buf, cap, "%s(%s)", one, m->re[v->term].colnames[v->a]);
    else
        snprintf(buf, cap, "%s(%s,%s)", two, m->re[v->term].colnames[v->b],
                 m->re[v->term].colnames[v->a]);
}

mlmx_status mlmx_fit_varcomp_text(const mlmx_fit *f, int scale, char **text)
{
    mlmx_api_clear();
    if (!f || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_varcomp_text: NULL argument");
    *text = NULL;
    const int n = mlmx_fit_nvarcomp(f);
    mlmx_vc_se *v = calloc((size_t)n, sizeof *v);
    if (!v)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_status st = mlmx_fit_varcomp_se(f, 0.95, v);
    if (st) {
        free(v);
        return st;
    }
    const mlmx_model *m = f->model;
    char name[600];
    int wg = 8, wp = 9;
    for (int i = 0; i < n; i++) {
        const char *g = v[i].term < 0 ? "Residual" : m->re[v[i].term].vcname;
        wg = (int)strlen(g) > wg ? (int)strlen(g) : wg;
        param_name(m, &v[i], scale, name, sizeof name);
        wp = (int)strlen(name) > wp ? (int)strlen(name) : wp;
    }
    mlmx_strbuf b = {0};
    mlmx_sb_printf(&b, "\nRandom-effects parameters (delta method on the Hessian of the %s "
                       "deviance, as Stata's mixed):\n ",
                   f->method == MLMX_REML ? "REML" : "ML");
    mlmx_sb_pad(&b, "Group", wg + 1, 0);
    mlmx_sb_pad(&b, "Parameter", wp, 0);
    mlmx_sb_puts(&b, "     Estimate    Std. err.   [95% conf. interval]\n");
    for (int i = 0; i < n; i++) {
        const double *x = scale ? v[i].var : v[i].sd;
        const int first = i == 0 || v[i].term != v[i - 1].term;
        const char *g = v[i].term < 0 ? "Residual" : m->re[v[i].term].vcname;
        param_name(m, &v[i], scale, name, sizeof name);
        mlmx_sb_puts(&b, " ");
        mlmx_sb_pad(&b, first ? g : "", wg + 1, 0);
        mlmx_sb_pad(&b, name, wp, 0);
        mlmx_sb_printf(&b, " %12.6g %12.6g %12.6g %12.6g\n", x[0], x[1], x[2], x[3]);
    }
    free(v);
    if (b.oom || !b.s) {
        mlmx_sb_free(&b);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    *text = b.s;
    return MLMX_OK;
}

static void json_four(mlmx_strbuf *b, const char *key, const double *x)
{
    static const char *k[4] = {"estimate", "se", "lower", "upper"};
    mlmx_sb_printf(b, ", \"%s\": {", key);
    for (int i = 0; i < 4; i++) {
        mlmx_sb_printf(b, "%s\"%s\": ", i ? ", " : "", k[i]);
        mlmx_json_num(b, x[i]);
    }
    mlmx_sb_puts(b, "}");
}

void mlmx_json_varcomp(mlmx_strbuf *b, const mlmx_fit *f)
{
    const int n = mlmx_fit_nvarcomp(f);
    mlmx_vc_se *v = calloc((size_t)n, sizeof *v);
    if (!v) {
        b->oom = 1;
        return;
    }
    if (mlmx_fit_varcomp_se(f, 0.95, v) != MLMX_OK) {
        mlmx_sb_puts(b, ",\n  \"re_se\": {\"reason\": ");
        mlmx_json_str(b, mlmx_last_error());
        mlmx_sb_puts(b, "}");
        mlmx_api_clear();
        free(v);
        return;
    }
    const mlmx_model *m = f->model;
    char sd[600], var[600];
    mlmx_sb_puts(b, ",\n  \"re_se\": [");
    for (int i = 0; i < n; i++) {
        mlmx_sb_puts(b, i ? ",\n    {\"group\": " : "\n    {\"group\": ");
        mlmx_json_str(b, v[i].term < 0 ? "Residual" : m->re[v[i].term].vcname);
        param_name(m, &v[i], 0, sd, sizeof sd);
        param_name(m, &v[i], 1, var, sizeof var);
        mlmx_sb_puts(b, ", \"sd_name\": ");
        mlmx_json_str(b, sd);
        mlmx_sb_puts(b, ", \"var_name\": ");
        mlmx_json_str(b, var);
        json_four(b, "sd", v[i].sd);
        json_four(b, "var", v[i].var);
        mlmx_sb_puts(b, "}");
    }
    mlmx_sb_puts(b, "\n  ]");
    free(v);
}
