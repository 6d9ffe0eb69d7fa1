/* The variance decomposition in the summary (`mlmx fit --r2 --icc`) and in
 * the JSON (always): host/infer/variance.c computes, this formats. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "mlmx.h"
#include "output/output.h"

/* The terms with a random intercept, top level (fewest levels) first, as
 * Stata's estat icc lists them. Returns their count; idx has m->K slots. */
static int icc_terms(const mlmx_model *m, int *idx)
{
    int n = 0;
    for (int k = m->K - 1; k >= 0; k--)
        for (int c = 0; c < m->re[k].q; c++)
            if (strcmp(m->re[k].colnames[c], "(Intercept)") == 0)
                idx[n++] = k;
    return n;
}

static void text_r2(mlmx_strbuf *b, const mlmx_r2 *v, int glmm)
{
    mlmx_sb_printf(b, "\nVariance decomposition (Nakagawa & Schielzeth%s):\n",
                   glmm ? "; latent scale" : "");
    mlmx_sb_printf(b, " variance  fixed %.6g, random %.6g, residual %.6g%s\n", v->var_fixed,
                   v->var_random, v->var_residual, glmm ? " (the link's distribution)" : "");
    mlmx_sb_printf(b, " R2        marginal %.4f, conditional %.4f\n", v->r2_marginal,
                   v->r2_conditional);
    mlmx_sb_printf(b, " ICC       adjusted %.4f, conditional %.4f\n", v->icc_adjusted,
                   v->icc_conditional);
}

/* Snijders & Bosker's R² where it applies (two-level LMMs). */
static void text_sb(mlmx_strbuf *b, const mlmx_fit *f)
{
    mlmx_r2_sb sb;
    if (mlmx_fit_r2_snijders_bosker(f, &sb) == MLMX_OK)
        mlmx_sb_printf(b, " R2 (Snijders & Bosker)  level 1 %.4f, level 2 %.4f (empty model; "
                          "harmonic mean group size %.2f)\n",
                       sb.level1, sb.level2, sb.n_harmonic);
    mlmx_api_clear();
}

static mlmx_status text_icc(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = mlmx_fit_model(f);
    int *idx = malloc((size_t)m->K * sizeof *idx);
    if (!idx)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    const int n = icc_terms(m, idx);
    int w = 5;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(m->re[idx[i]].group);
        w = l > w ? l : w;
    }
    w = w > 40 ? 40 : w;
    mlmx_sb_puts(b, "\nIntra-class correlation by level (cumulative: same level and those above):\n ");
    mlmx_sb_pad(b, "Level", w, 0);
    mlmx_sb_puts(b, "      ICC  cumulative  mean size  design effect   Std. err. [95% conf. "
                    "interval]\n");
    mlmx_status st = MLMX_OK;
    for (int i = 0; i < n && !st; i++) {
        mlmx_icc ic;
        st = mlmx_fit_icc_term(f, idx[i], &ic);
        if (st)
            break;
        mlmx_sb_putn(b, " ", 1);
        mlmx_sb_pad(b, m->re[idx[i]].group, w, 0);
        mlmx_sb_printf(b, " %8.4f  %10.4f  %9.2f  %13.3f", ic.icc, ic.icc_cumulative,
                       ic.mean_size, ic.design_effect);
        /* the cumulative ICC's SE and interval (LMMs, not singular) */
        double ci[4];
        if (mlmx_fit_icc_se(f, idx[i], 0.95, ci) == MLMX_OK)
            mlmx_sb_printf(b, "  %10.4f  %7.4f  %7.4f\n", ci[1], ci[2], ci[3]);
        else
            mlmx_sb_puts(b, "          NA       NA       NA\n");
        mlmx_api_clear();
    }
    if (n == 0)
        mlmx_sb_puts(b, " (no random intercepts)\n");
    free(idx);
    return st;
}

mlmx_status mlmx_fit_variance_summary(const mlmx_fit *f, int what, char **out)
{
    mlmx_api_clear();
    if (!f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_variance_summary: bad argument");
    *out = NULL;
    mlmx_strbuf b = {0};
    mlmx_r2 v;
    mlmx_status st = mlmx_fit_r2(f, &v);
    if (st == MLMX_ERR_UNSUPPORTED) {
        mlmx_sb_printf(&b, "\nR2 and ICC: %s\n", mlmx_last_error());
        st = MLMX_OK;
    } else if (!st) {
        if (what & MLMX_SHOW_R2) {
            text_r2(&b, &v, mlmx_fit_family(f) != MLMX_FAMILY_GAUSSIAN);
            text_sb(&b, f);
        }
        if (what & MLMX_SHOW_ICC)
            st = text_icc(&b, f);
    }
    if (st || !b.s || b.oom) {
        mlmx_sb_free(&b);
        return st ? st : mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    *out = b.s;
    return MLMX_OK;
}

void mlmx_json_variance(mlmx_strbuf *b, const mlmx_fit *f)
{
    mlmx_r2 v;
    const int ok = mlmx_fit_r2(f, &v) == MLMX_OK;
    const double x[7] = {v.var_fixed,   v.var_random,     v.var_residual,   v.r2_marginal,
                         v.r2_conditional, v.icc_adjusted, v.icc_conditional};
    static const char *key[7] = {"var_fixed",      "var_random",   "var_residual", "r2_marginal",
                                 "r2_conditional", "icc_adjusted", "icc_conditional"};
    mlmx_sb_puts(b, ",\n  \"variance_decomposition\": {");
    for (int i = 0; i < 7; i++) {
        mlmx_sb_printf(b, "%s\"%s\": ", i ? ", " : "", key[i]);
        mlmx_json_num(b, ok || i < 2 ? x[i] : NAN);
    }
    mlmx_sb_puts(b, "}");
    mlmx_r2_sb sb;
    mlmx_sb_puts(b, ",\n  \"r2_snijders_bosker\": ");
    if (mlmx_fit_r2_snijders_bosker(f, &sb) == MLMX_OK) {
        const double sv[5] = {sb.level1, sb.level2, sb.n_harmonic, sb.sigma2_empty, sb.tau2_empty};
        static const char *k[5] = {"level1", "level2", "n_harmonic", "sigma2_empty",
                                   "tau2_empty"};
        for (int i = 0; i < 5; i++) {
            mlmx_sb_printf(b, "%s\"%s\": ", i ? ", " : "{", k[i]);
            mlmx_json_num(b, sv[i]);
        }
        mlmx_sb_puts(b, "}");
    } else {
        mlmx_sb_puts(b, "{\"reason\": ");
        mlmx_json_str(b, mlmx_last_error());
        mlmx_sb_puts(b, "}");
    }
    mlmx_api_clear();
    const mlmx_model *m = mlmx_fit_model(f);
    int *idx = malloc((size_t)m->K * sizeof *idx);
    const int n = idx ? icc_terms(m, idx) : 0;
    mlmx_sb_puts(b, ",\n  \"icc\": [");
    for (int i = 0; i < n; i++) {
        mlmx_icc ic;
        if (mlmx_fit_icc_term(f, idx[i], &ic) != MLMX_OK)
            ic.icc = ic.icc_cumulative = ic.mean_size = ic.design_effect = NAN;
        mlmx_sb_puts(b, i ? ",\n    {\"group\": " : "\n    {\"group\": ");
        mlmx_json_str(b, m->re[idx[i]].group);
        mlmx_sb_puts(b, ", \"icc\": ");
        mlmx_json_num(b, ic.icc);
        mlmx_sb_puts(b, ", \"icc_cumulative\": ");
        mlmx_json_num(b, ic.icc_cumulative);
        mlmx_sb_puts(b, ", \"mean_size\": ");
        mlmx_json_num(b, ic.mean_size);
        mlmx_sb_puts(b, ", \"design_effect\": ");
        mlmx_json_num(b, ic.design_effect);
        double ci[4] = {NAN, NAN, NAN, NAN};
        if (mlmx_fit_icc_se(f, idx[i], 0.95, ci) != MLMX_OK)
            ci[1] = ci[2] = ci[3] = NAN;
        mlmx_sb_puts(b, ", \"icc_cumulative_se\": ");
        mlmx_json_num(b, ci[1]);
        mlmx_sb_puts(b, ", \"icc_cumulative_lower\": ");
        mlmx_json_num(b, ci[2]);
        mlmx_sb_puts(b, ", \"icc_cumulative_upper\": ");
        mlmx_json_num(b, ci[3]);
        mlmx_sb_puts(b, "}");
    }
    mlmx_sb_puts(b, n ? "\n  ]" : "]");
    free(idx);
    mlmx_api_clear();
}
