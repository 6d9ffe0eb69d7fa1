/* The tests of fixed effects as text and JSON: lmerTest's Type III table
 * (mlmx_fit_anova_text) and the JSON keys "coef_tests" and "anova". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "lmm/fit.h"
#include "output/output.h"
#include "util/strbuf.h"

static const char *method_title(mlmx_ddf_method ddf)
{
    return ddf == MLMX_DDF_KENWARD_ROGER  ? "Kenward-Roger's"
           : ddf == MLMX_DDF_NONE         ? "no denominator df (Wald F)"
           : ddf == MLMX_DDF_CONTAINMENT ? "nlme's containment"
                                          : "Satterthwaite's";
}

static const char *method_key(mlmx_ddf_method ddf)
{
    return ddf == MLMX_DDF_KENWARD_ROGER  ? "kenward-roger"
           : ddf == MLMX_DDF_NONE         ? "none"
           : ddf == MLMX_DDF_CONTAINMENT ? "containment"
                                          : "satterthwaite";
}

/* One column of the table: n values with shared decimals for `digits`
 * significant digits (whole numbers for NumDF). */
static void column(char (*cells)[48], const double *x, int n, int digits)
{
    const int dec = digits ? mlmx_fmt_decimals(x, n, digits) : 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]))
            snprintf(cells[i], 48, "NA");
        else
            snprintf(cells[i], 48, "%.*f", dec, x[i]);
    }
}

static void anova_table(mlmx_strbuf *b, const mlmx_fit *f, const mlmx_ftest *tab, int nt)
{
    double *x = malloc((size_t)nt * 5 * sizeof *x);
    char(*cell)[48] = calloc((size_t)nt * 6, sizeof *cell);
    if (!x || !cell) {
        free(x), free(cell);
        b->oom = 1;
        return;
    }
    for (int t = 0; t < nt; t++) {
        x[t] = tab[t].sum_sq;
        x[nt + t] = tab[t].mean_sq;
        x[2 * nt + t] = tab[t].num_df;
        x[3 * nt + t] = tab[t].den_df;
        x[4 * nt + t] = tab[t].f;
    }
    const int digits[5] = {5, 5, 0, 5, 5};
    for (int c = 0; c < 5; c++)
        column(cell + (size_t)c * nt, x + (size_t)c * nt, nt, digits[c]);
    for (int t = 0; t < nt; t++)
        mlmx_fmt_pvalue(tab[t].p, cell[(size_t)5 * nt + t], 48);
    const char *head[6] = {"Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"};
    int w[7] = {0};
    for (int t = 0; t < nt; t++)
        w[0] = (int)strlen(mlmx_fit_term_label(f, t)) > w[0] ? (int)strlen(mlmx_fit_term_label(f, t))
                                                            : w[0];
    for (int c = 0; c < 6; c++) {
        w[c + 1] = (int)strlen(head[c]);
        for (int t = 0; t < nt; t++)
            if ((int)strlen(cell[(size_t)c * nt + t]) > w[c + 1])
                w[c + 1] = (int)strlen(cell[(size_t)c * nt + t]);
    }
    mlmx_sb_pad(b, "", w[0], 0);
    for (int c = 0; c < 6; c++) {
        mlmx_sb_puts(b, " ");
        mlmx_sb_pad(b, head[c], w[c + 1], 1);
    }
    mlmx_sb_puts(b, "\n");
    for (int t = 0; t < nt; t++) {
        mlmx_sb_pad(b, mlmx_fit_term_label(f, t), w[0], 0);
        for (int c = 0; c < 6; c++) {
            mlmx_sb_puts(b, " ");
            mlmx_sb_pad(b, cell[(size_t)c * nt + t], w[c + 1], 1);
        }
        char pc[48];
        mlmx_sb_printf(b, " %s\n", mlmx_fmt_pvalue(tab[t].p, pc, sizeof pc));
    }
    mlmx_sb_puts(b, mlmx_signif_legend);
    free(x);
    free(cell);
}

mlmx_status mlmx_fit_anova_text(const mlmx_fit *f, mlmx_ddf_method ddf, char **text)
{
    mlmx_api_clear();
    if (!f || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_anova_text: NULL argument");
    *text = NULL;
    const int nt = mlmx_fit_nterms(f);
    mlmx_strbuf b = {0};
    mlmx_sb_printf(&b, "\nType III Analysis of Variance Table with %s method\n",
                   method_title(ddf));
    if (nt == 0) {
        mlmx_sb_puts(&b, "(no terms other than the intercept)\n");
    } else {
        mlmx_ftest *tab = calloc((size_t)nt, sizeof *tab);
        if (!tab) {
            mlmx_sb_free(&b);
            return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
        }
        mlmx_status st = mlmx_fit_anova_type3(f, ddf, tab);
        if (st) {
            free(tab);
            mlmx_sb_free(&b);
            return st;
        }
        anova_table(&b, f, tab, nt);
        free(tab);
    }
    if (b.oom) {
        mlmx_sb_free(&b);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    *text = b.s;
    return MLMX_OK;
}

static void json_reason(mlmx_strbuf *b, const char *key, const char *why)
{
    mlmx_sb_printf(b, ",\n  \"%s\": {\"method\": null, \"reason\": ", key);
    mlmx_json_str(b, why);
    mlmx_sb_puts(b, "}");
}

/* "coef_tests": lmerTest's summary() columns by the method. */
static void json_coef_tests(mlmx_strbuf *b, const mlmx_fit *f, mlmx_ddf_method ddf)
{
    const int p = f->model->p;
    double *c = malloc(((size_t)p + 1) * 4 * sizeof *c);
    if (!c) {
        b->oom = 1;
        return;
    }
    double *se = c, *df = c + p + 1, *t = df + p + 1, *pv = t + p + 1;
    if (mlmx_fit_coef_tests_ddf(f, ddf, se, df, t, pv) != MLMX_OK) {
        json_reason(b, "coef_tests", mlmx_last_error());
        mlmx_api_clear();
        free(c);
        return;
    }
    mlmx_sb_printf(b, ",\n  \"coef_tests\": {\"method\": \"%s\", \"coefficients\": [",
                   method_key(ddf));
    for (int j = 0; j < p; j++) {
        mlmx_sb_puts(b, j ? ",\n    {\"name\": " : "\n    {\"name\": ");
        mlmx_json_str(b, f->model->fixef_names[j]);
        const char *k[4] = {"se", "df", "t", "p"};
        const double v[4] = {se[j], df[j], t[j], pv[j]};
        for (int i = 0; i < 4; i++) {
            mlmx_sb_printf(b, ", \"%s\": ", k[i]);
            mlmx_json_num(b, v[i]);
        }
        mlmx_sb_puts(b, "}");
    }
    mlmx_sb_puts(b, p ? "\n  ]}" : "]}");
    free(c);
}

/* "anova": the Type III table by the method. */
static void json_anova(mlmx_strbuf *b, const mlmx_fit *f, mlmx_ddf_method ddf)
{
    const int nt = mlmx_fit_nterms(f);
    mlmx_ftest *tab = calloc((size_t)(nt ? nt : 1), sizeof *tab);
    if (!tab) {
        b->oom = 1;
        return;
    }
    if (nt && mlmx_fit_anova_type3(f, ddf, tab) != MLMX_OK) {
        json_reason(b, "anova", mlmx_last_error());
        mlmx_api_clear();
        free(tab);
        return;
    }
    mlmx_sb_printf(b, ",\n  \"anova\": {\"type\": 3, \"method\": \"%s\", \"terms\": [",
                   method_key(ddf));
    for (int t = 0; t < nt; t++) {
        mlmx_sb_puts(b, t ? ",\n    {\"term\": " : "\n    {\"term\": ");
        mlmx_json_str(b, mlmx_fit_term_label(f, t));
        const char *k[6] = {"sum_sq", "mean_sq", "num_df", "den_df", "F", "p"};
        const double v[6] = {tab[t].sum_sq, tab[t].mean_sq, tab[t].num_df,
                             tab[t].den_df, tab[t].f,       tab[t].p};
        for (int i = 0; i < 6; i++) {
            mlmx_sb_printf(b, ", \"%s\": ", k[i]);
            mlmx_json_num(b, v[i]);
        }
        mlmx_sb_puts(b, "}");
    }
    mlmx_sb_puts(b, nt ? "\n  ]}" : "]}");
    free(tab);
}

void mlmx_json_tests(mlmx_strbuf *b, const mlmx_fit *f, int ddf)
{
    if (f->family != MLMX_FAMILY_GAUSSIAN) {
        json_reason(b, "coef_tests", "a GLMM has Wald z tests (fixef)");
        json_reason(b, "anova", "a GLMM has Wald z tests (fixef)");
        return;
    }
    json_coef_tests(b, f, (mlmx_ddf_method)ddf);
    json_anova(b, f, (mlmx_ddf_method)ddf);
}
