/* The comparison tables as R prints them (lme4's anova, lmerTest's
 * ranova) and as JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "infer/compare.h"
#include "output/output.h"
#include "util/strbuf.h"

#define MAXCOL 9
#define CELL 40

/* Cells of one numeric column with a common number of decimals, chosen so
 * that the largest value shows `sig` significant digits (R's format of an
 * anova column, close enough: the exact values are in the JSON). NaN is
 * an empty cell. */
static void fmt_column(const double *x, int n, int sig, char (*cell)[CELL], int stride)
{
    double mx = 0.0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && fabs(x[i]) > mx)
            mx = fabs(x[i]);
    int dec = mx > 0 ? sig - ((int)floor(log10(mx)) + 1) : 0;
    dec = dec < 0 ? 0 : dec > 10 ? 10 : dec;
    for (int i = 0; i < n; i++) {
        char *c = cell[(size_t)i * stride];
        if (isfinite(x[i]))
            snprintf(c, CELL, "%.*f", dec, x[i]);
        else
            c[0] = '\0';
    }
}

static void fmt_pvalue(double p, char *c)
{
    if (!isfinite(p))
        c[0] = '\0';
    else if (p < 2.220446e-16)
        snprintf(c, CELL, "< 2.2e-16");
    else
        snprintf(c, CELL, "%.4g", p);
}

static const char *stars(double p)
{
    if (!isfinite(p))
        return "";
    return p < 0.001 ? "***" : p < 0.01 ? "**" : p < 0.05 ? "*" : p < 0.1 ? "." : "";
}

/* The table: the row names, then columns right-aligned under their
 * headers, then the stars of the last (p-value) column. */
static void print_table(mlmx_strbuf *b, const mlmx_anova *a, const char *const *head, int nc,
                        char (*cell)[CELL])
{
    const int n = a->nrows;
    int wn = 0, w[MAXCOL];
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(a->rows[i].name);
        wn = l > wn ? l : wn;
    }
    for (int j = 0; j < nc; j++) {
        w[j] = (int)strlen(head[j]);
        for (int i = 0; i < n; i++) {
            int l = (int)strlen(cell[(size_t)i * MAXCOL + j]);
            w[j] = l > w[j] ? l : w[j];
        }
    }
    mlmx_sb_pad(b, "", wn, 0);
    for (int j = 0; j < nc; j++) {
        mlmx_sb_puts(b, " ");
        mlmx_sb_pad(b, head[j], w[j], 1);
    }
    mlmx_sb_puts(b, "    \n");
    for (int i = 0; i < n; i++) {
        mlmx_sb_pad(b, a->rows[i].name, wn, 0);
        for (int j = 0; j < nc; j++) {
            mlmx_sb_puts(b, " ");
            mlmx_sb_pad(b, cell[(size_t)i * MAXCOL + j], w[j], 1);
        }
        mlmx_sb_puts(b, " ");
        mlmx_sb_pad(b, stars(a->rows[i].p), 3, 0);
        mlmx_sb_puts(b, "\n");
    }
    mlmx_sb_puts(b, "---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1\n");
}

/* The columns of each kind of table. */
enum { C_NPAR, C_DFNPAR, C_AIC, C_BIC, C_LOGLIK, C_DEV, C_CHISQ, C_DF, C_P, C_END };
static const int cols_anova[] = {C_NPAR, C_AIC, C_BIC, C_LOGLIK, C_DEV, C_CHISQ, C_DF, C_P, C_END};
static const int cols_ranova[] = {C_NPAR, C_LOGLIK, C_AIC, C_CHISQ, C_DF, C_P, C_END};
static const int cols_drop1[] = {C_DFNPAR, C_AIC, C_CHISQ, C_P, C_END};
static const char *const col_head[] = {"npar",  "npar",     "AIC",   "BIC", "logLik",
                                       "deviance", "Chisq", "Df",  "Pr(>Chisq)"};

static const int *table_cols(const mlmx_anova *a)
{
    return a->kind == MLMX_CMP_RANOVA ? cols_ranova
           : a->kind == MLMX_CMP_DROP1 ? cols_drop1
                                       : cols_anova;
}

static double col_value(const mlmx_anova_row *r, int c)
{
    switch (c) {
    case C_AIC: return r->aic;
    case C_BIC: return r->bic;
    case C_LOGLIK: return r->loglik;
    case C_DEV: return r->deviance;
    default: return r->chisq;
    }
}

/* Fill the cells of the table's columns: numbers with 5 significant
 * digits, integers, p-values; the tests empty in row 0. */
static mlmx_status fill_cells(const mlmx_anova *a, char (*cell)[CELL], const char **head)
{
    const int n = a->nrows, *cols = table_cols(a);
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return MLMX_ERR_NOMEM;
    for (int j = 0; cols[j] != C_END; j++) {
        const int c = cols[j];
        head[j] = col_head[c];
        if (c == C_CHISQ)
            head[j] = a->kind == MLMX_CMP_ANOVA ? "Chisq" : "LRT";
        if (c == C_P && a->kind == MLMX_CMP_DROP1)
            head[j] = "Pr(Chi)";
        for (int i = 0; i < n; i++) {
            const mlmx_anova_row *r = &a->rows[i];
            char *out = cell[(size_t)i * MAXCOL + j];
            out[0] = '\0';
            if (c == C_NPAR)
                snprintf(out, CELL, "%d", r->npar);
            else if ((c == C_DF || c == C_DFNPAR) && i > 0)
                snprintf(out, CELL, "%d", r->df);
            else if (c == C_P)
                fmt_pvalue(r->p, out);
            v[i] = col_value(r, c);
        }
        if (c >= C_AIC && c <= C_CHISQ)
            fmt_column(v, n, 5, cell + j, MAXCOL);
    }
    free(v);
    return MLMX_OK;
}

/* The chi-bar-square p-values and the boundary caveat, under an anova. */
static void boundary_notes(mlmx_strbuf *b, const mlmx_anova *a)
{
    int any = 0;
    for (int i = 1; i < a->nrows; i++)
        if (isfinite(a->rows[i].p_chibar)) {
            if (!any)
                mlmx_sb_puts(b, "\nOne variance component on its boundary: chi-bar-square "
                                "p-value (0.5 chi2_0 + 0.5 chi2_1):\n");
            any = 1;
            char c[CELL];
            fmt_pvalue(a->rows[i].p_chibar, c);
            mlmx_sb_printf(b, "  %s vs %s: Pr(>chibar2): %s %s\n", a->rows[i].name,
                           a->rows[a->kind != MLMX_CMP_ANOVA ? 0 : i - 1].name, c,
                           stars(a->rows[i].p_chibar));
        }
    if (a->boundary)
        mlmx_sb_puts(b, "Note: where models differ in their random effects, the null "
                        "hypothesis puts a variance on\nthe boundary of the parameter space "
                        "(0): Pr(>Chisq) is then conservative (too large).\n");
}

mlmx_status mlmx_anova_summary(const mlmx_anova *a, const char *data_name, char **text)
{
    mlmx_api_clear();
    if (!a || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_anova_summary: bad argument");
    *text = NULL;
    const char *head[MAXCOL];
    int nc = 0;
    while (table_cols(a)[nc] != C_END)
        nc++;
    char(*cell)[CELL] = calloc((size_t)a->nrows * MAXCOL, sizeof *cell);
    if (!cell || fill_cells(a, cell, head)) {
        free(cell);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    mlmx_strbuf b = {0};
    if (a->kind == MLMX_CMP_RANOVA)
        mlmx_sb_printf(&b, "ANOVA-like table for random-effects: Single term deletions\n\n"
                           "Model:\n%s\n", a->formula);
    else if (a->kind == MLMX_CMP_DROP1)
        mlmx_sb_printf(&b, "Single term deletions\n\nModel:\n%s\n", a->formula);
    if (a->kind == MLMX_CMP_ANOVA) {
        if (data_name)
            mlmx_sb_printf(&b, "Data: %s\n", data_name);
        mlmx_sb_puts(&b, "Models:\n");
        for (int i = 0; i < a->nrows; i++)
            mlmx_sb_printf(&b, "%s: %s\n", a->rows[i].name, a->rows[i].formula);
    }
    print_table(&b, a, head, nc, cell);
    boundary_notes(&b, a);
    for (int i = 0; i < a->nwarnings; i++)
        mlmx_sb_printf(&b, "warning: %s\n", a->warnings[i]);
    free(cell);
    if (b.oom) {
        mlmx_sb_free(&b);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    *text = b.s;
    return MLMX_OK;
}

mlmx_status mlmx_anova_write_json(const mlmx_anova *a, const char *path)
{
    mlmx_api_clear();
    if (!a || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_anova_write_json: bad argument");
    mlmx_strbuf b = {0};
    static const char *const kinds[] = {"anova", "ranova", "drop1"};
    mlmx_sb_printf(&b, "{\n  \"kind\": \"%s\",\n", kinds[a->kind]);
    mlmx_sb_printf(&b, "  \"method\": \"%s\",\n  \"refitted\": %d,\n  \"rows\": [",
                   a->method == MLMX_REML ? "REML" : "ML", a->refitted);
    for (int i = 0; i < a->nrows; i++) {
        const mlmx_anova_row *r = &a->rows[i];
        mlmx_sb_puts(&b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        mlmx_json_str(&b, r->name);
        mlmx_sb_puts(&b, ", \"formula\": ");
        mlmx_json_str(&b, r->formula);
        mlmx_sb_printf(&b, ", \"npar\": %d, \"AIC\": ", r->npar);
        const double v[] = {r->aic, r->bic, r->loglik, r->deviance, r->chisq};
        static const char *const k[] = {"AIC", "BIC", "logLik", "deviance", "Chisq"};
        for (int j = 0; j < 5; j++) {
            if (j)
                mlmx_sb_printf(&b, ", \"%s\": ", k[j]);
            mlmx_json_num(&b, v[j]);
        }
        mlmx_sb_printf(&b, ", \"Df\": %d, \"p\": ", r->df);
        mlmx_json_num(&b, r->p);
        mlmx_sb_puts(&b, ", \"p_chibar\": ");
        mlmx_json_num(&b, r->p_chibar);
        mlmx_sb_puts(&b, "}");
    }
    mlmx_sb_puts(&b, "\n  ],\n  \"warnings\": [");
    for (int i = 0; i < a->nwarnings; i++) {
        mlmx_sb_puts(&b, i ? ", " : "");
        mlmx_json_str(&b, a->warnings[i]);
    }
    mlmx_sb_puts(&b, "]\n}\n");
    return mlmx_sb_write_file(&b, path, "anova JSON");
}
