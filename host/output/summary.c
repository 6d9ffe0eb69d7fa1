/* The printed summary, laid out as lme4's summary(lmer) with R's number
 * formatting rules (a column shares its decimals; 4 significant digits),
 * plus Stata's group-size table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "cluster_math.h"
#include "lmm/fit.h"
#include "output/output.h"
#include "util/strbuf.h"

/* Decimals R's format(x, digits) would use for a whole column: each value
 * needs enough decimals to show `digits` significant digits after dropping
 * trailing zeros; the column takes the largest need. */
int mlmx_fmt_decimals(const double *x, int n, int digits)
{
    int dec = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || x[i] == 0.0)
            continue;
        char buf[64];
        snprintf(buf, sizeof buf, "%.*e", digits - 1, fabs(x[i]));
        char *e = strchr(buf, 'e');
        if (!e)
            continue;
        int ex = atoi(e + 1);
        /* significant digits after dropping trailing zeros of the mantissa */
        int sig = digits;
        for (char *p = e - 1; p > buf && (*p == '0' || *p == '.'); p--)
            if (*p == '0')
                sig--;
        if (sig < 1)
            sig = 1;
        int need = sig - 1 - ex;
        if (need > dec)
            dec = need;
    }
    return dec > 15 ? 15 : dec;
}

/* R's abbreviate(name, 6) for the correlation table's column labels: drop
 * lower-case vowels from the right, then lower-case letters, keeping the
 * first character, until the name is short enough. */
static void abbreviate(const char *in, char *out, size_t cap, int minlen)
{
    snprintf(out, cap, "%s", in);
    size_t len = strlen(out);
    for (int pass = 0; pass < 2 && (int)len > minlen; pass++) {
        for (size_t i = len; i-- > 1 && (int)len > minlen;) {
            char c = out[i];
            int drop = pass == 0 ? strchr("aeiou", c) != NULL && c != '\0'
                                 : (c >= 'a' && c <= 'z');
            if (drop) {
                memmove(out + i, out + i + 1, len - i);
                len--;
            }
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* R's default (type 7) quantile of sorted data. */
static double quantile7(const double *sorted, size_t n, double p)
{
    double h = (double)(n - 1) * p;
    size_t lo = (size_t)floor(h);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (h - (double)lo) * (sorted[hi] - sorted[lo]);
}

void mlmx_scaled_resid_quantiles(const mlmx_fit *f, double q[5])
{
    const size_t n = f->model->n;
    double *r = malloc(n * sizeof *r);
    if (!r) {
        for (int i = 0; i < 5; i++)
            q[i] = NAN;
        return;
    }
    for (size_t i = 0; i < n; i++)
        r[i] = f->pearson  ? f->pearson[i]
               : f->rpar ? f->resid[i] / (f->sigma * mlmx_resid_sd(f->model->resid, f->rpar, i))
                         : f->resid[i] / f->sigma;
    qsort(r, n, sizeof *r, cmp_double);
    const double ps[5] = {0, 0.25, 0.5, 0.75, 1};
    for (int i = 0; i < 5; i++)
        q[i] = quantile7(r, n, ps[i]);
    free(r);
}

static void fmt_col(char out[][48], const double *x, int n, int dec)
{
    for (int i = 0; i < n; i++)
        snprintf(out[i], 48, "%.*f", dec, x[i]);
}

static void group_sizes(const mlmx_reterm_info *r, int *mn, double *avg, int *mx)
{
    *mn = r->nlevels ? r->level_count[0] : 0;
    *mx = *mn;
    long tot = 0;
    for (int l = 0; l < r->nlevels; l++) {
        int c = r->level_count[l];
        tot += c;
        if (c < *mn)
            *mn = c;
        if (c > *mx)
            *mx = c;
    }
    *avg = r->nlevels ? (double)tot / r->nlevels : 0;
}

/* Terms that share a grouping factor label are one "group" in ngroups. */
int mlmx_group_first(const mlmx_model *m, int k)
{
    for (int j = 0; j < k; j++)
        if (strcmp(m->re[j].group, m->re[k].group) == 0)
            return 0;
    return 1;
}

/* Upper tail of the chi-square distribution with k degrees of freedom:
 * Q(k/2, x/2) by the series or the continued fraction (Numerical Recipes'
 * split at x = a + 1). */
double mlmx_chi2_sf(double x, int k)
{
    if (!(x > 0))
        return 1.0;
    double a = 0.5 * k, xx = 0.5 * x;
    double lg = lgamma(a);
    if (xx < a + 1.0) {
        double ap = a, sum = 1.0 / a, del = sum;
        for (int n = 0; n < 1000; n++) {
            ap += 1.0;
            del *= xx / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * 1e-15)
                break;
        }
        return 1.0 - sum * exp(-xx + a * log(xx) - lg);
    }
    double bb = xx + 1.0 - a, c = 1e300, d = 1.0 / bb, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        bb += 2.0;
        d = an * d + bb;
        if (fabs(d) < 1e-300)
            d = 1e-300;
        c = bb + an / c;
        if (fabs(c) < 1e-300)
            c = 1e-300;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-15)
            break;
    }
    return exp(-xx + a * log(xx) - lg) * h;
}

/* b^T V^{-1} b by a Cholesky of V (overwritten); NaN if V is not positive
 * definite. */
double mlmx_wald_quadform(int n, double *V, const double *b)
{
    if (mlmx_cm_chol(n, V) != 0)
        return NAN;
    double *y = malloc((size_t)n * sizeof *y);
    if (!y)
        return NAN;
    memcpy(y, b, (size_t)n * sizeof *y);
    mlmx_cm_trsv_lower(n, V, y);
    double q = 0;
    for (int i = 0; i < n; i++)
        q += y[i] * y[i];
    free(y);
    return q;
}

/* A p-value as R's printCoefmat shows it, and its significance stars. */
const char *mlmx_fmt_pvalue(double pv, char *buf, size_t cap)
{
    if (isnan(pv))
        snprintf(buf, cap, "NA");
    else if (pv < 2e-16)
        snprintf(buf, cap, "< 2e-16");
    else if (pv < 1e-4)
        snprintf(buf, cap, "%.2e", pv);
    else
        snprintf(buf, cap, "%.3g", pv);
    return pv < 0.001 ? "***" : pv < 0.01 ? "**" : pv < 0.05 ? "*" : pv < 0.1 ? "." : "";
}

/* The columns of a coefficient table: Estimate, Std. Error, df (when
 * df), the statistic (stat: "z value" or "t value") and its p-value (when
 * pv) with significance stars, as lme4, lmerTest and clmm print them. */
typedef struct coef_cols {
    char *const *names;
    const double *est, *se, *df, *pv;
    int n;
    const char *stat, *plabel;
} coef_cols;

static int cell_width(int w, const char *s) { return (int)strlen(s) > w ? (int)strlen(s) : w; }

static void coef_table(mlmx_strbuf *b, const char *title, const coef_cols *c)
{
    const int n = c->n;
    if (n <= 0)
        return;
    double *es = calloc(2 * (size_t)n, sizeof *es);
    if (!es) {
        b->oom = 1;
        return;
    }
    for (int j = 0; j < n; j++) {
        es[j] = c->est[j];
        es[n + j] = c->se[j];
    }
    const int dec = mlmx_fmt_decimals(es, 2 * n, 4);
    free(es);
    int wn = 0, we = 8, ws = 10, wd = 2, wt = (int)strlen(c->stat);
    char ce[48], cs[48], cd[48], ct[48];
    for (int j = 0; j < n; j++) {
        snprintf(ce, 48, "%.*f", dec, c->est[j]);
        snprintf(cs, 48, "%.*f", dec, c->se[j]);
        snprintf(cd, 48, "%.3f", c->df ? c->df[j] : 0.0);
        snprintf(ct, 48, "%.3f", c->est[j] / c->se[j]);
        wn = cell_width(wn, c->names[j]);
        we = cell_width(we, ce);
        ws = cell_width(ws, cs);
        wd = cell_width(wd, cd);
        wt = cell_width(wt, ct);
    }
    mlmx_sb_printf(b, "%s:\n", title);
    mlmx_sb_pad(b, "", wn, 0);
    mlmx_sb_puts(b, " ");
    mlmx_sb_pad(b, "Estimate", we, 1);
    mlmx_sb_puts(b, " ");
    mlmx_sb_pad(b, "Std. Error", ws, 1);
    if (c->df) {
        mlmx_sb_puts(b, " ");
        mlmx_sb_pad(b, "df", wd, 1);
    }
    mlmx_sb_puts(b, " ");
    mlmx_sb_pad(b, c->stat, wt, 1);
    if (c->pv)
        mlmx_sb_printf(b, " %s", c->plabel);
    mlmx_sb_puts(b, "\n");
    for (int j = 0; j < n; j++) {
        snprintf(ce, 48, "%.*f", dec, c->est[j]);
        snprintf(cs, 48, "%.*f", dec, c->se[j]);
        snprintf(ct, 48, "%.3f", c->est[j] / c->se[j]);
        mlmx_sb_pad(b, c->names[j], wn, 0);
        mlmx_sb_puts(b, " ");
        mlmx_sb_pad(b, ce, we, 1);
        mlmx_sb_puts(b, " ");
        mlmx_sb_pad(b, cs, ws, 1);
        if (c->df) {
            snprintf(cd, 48, "%.3f", c->df[j]);
            mlmx_sb_puts(b, " ");
            mlmx_sb_pad(b, cd, wd, 1);
        }
        mlmx_sb_puts(b, " ");
        mlmx_sb_pad(b, ct, wt, 1);
        if (c->pv) {
            char pc[32];
            const char *stars = mlmx_fmt_pvalue(c->pv[j], pc, sizeof pc);
            mlmx_sb_printf(b, " %8s %s", pc, stars);
        }
        mlmx_sb_puts(b, "\n");
    }
}

const char *const mlmx_signif_legend =
    "---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1\n";

/* Two-sided Wald z p-values of n estimates. */
static double *z_pvalues(const double *est, const double *se, int n)
{
    double *pv = malloc((size_t)(n ? n : 1) * sizeof *pv);
    for (int j = 0; pv && j < n; j++)
        pv[j] = erfc(fabs(est[j] / se[j]) / sqrt(2.0));
    return pv;
}

/* The title, formula, data, and the fit criteria. */
static void sum_header(mlmx_strbuf *b, const mlmx_fit *f, const char *ddf_title)
{
    const mlmx_model *m = f->model;
    const int glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    const int reml = f->method == MLMX_REML && !glmm;
    if (glmm) {
        if (f->nagq > 1)
            mlmx_sb_printf(b,
                           "Generalized linear mixed model fit by maximum likelihood (Adaptive "
                           "Gauss-Hermite Quadrature, nAGQ = %d)\n",
                           f->nagq);
        else
            mlmx_sb_printf(b,
                           "Generalized linear mixed model fit by maximum likelihood (Laplace "
                           "Approximation%s)\n",
                           f->nagq == 0 ? ", nAGQ = 0" : "");
        mlmx_sb_printf(b, " Family: %s  ( %s )\n", mlmx_family_name(f->family),
                       mlmx_link_name(f->link));
    } else {
        mlmx_sb_printf(b, "Linear mixed model fit by %s%s\n",
                       reml ? "REML" : "maximum likelihood", ddf_title);
    }
    mlmx_sb_printf(b, "Formula: %s\n", m->formula);
    if (m->source && m->source[0])
        mlmx_sb_printf(b, "   Data: %s\n", m->source);
    mlmx_sb_puts(b, "\n");
    {
        double v[5] = {f->aic, f->bic, f->loglik, reml ? NAN : f->criterion,
                       (double)m->n - (double)f->df};
        const char *h[5] = {"AIC", "BIC", "logLik", "deviance", "df.resid"};
        char cells[5][48];
        for (int i = 0; i < 4; i++)
            snprintf(cells[i], 48, "%.1f", v[i]);
        snprintf(cells[4], 48, "%zu", m->n - (size_t)f->df);
        if (reml)
            mlmx_sb_printf(b, "REML criterion at convergence: %.4f\n", f->criterion);
        int nc = reml ? 3 : 5;
        for (int i = 0; i < nc; i++) {
            int w = (int)strlen(cells[i]) > 8 ? (int)strlen(cells[i]) : 8;
            mlmx_sb_pad(b, h[i], w + 1, 1);
        }
        mlmx_sb_puts(b, "\n");
        for (int i = 0; i < nc; i++) {
            int w = (int)strlen(cells[i]) > 8 ? (int)strlen(cells[i]) : 8;
            mlmx_sb_pad(b, cells[i], w + 1, 1);
        }
        mlmx_sb_puts(b, reml ? "   (restricted likelihood)\n\n" : "\n\n");
    }
}

/* Scaled residuals, as lme4 (none for ordinal fits). */
static void sum_residuals(mlmx_strbuf *b, const mlmx_fit *f)
{
    if (f->family != MLMX_FAMILY_ORDINAL) {
        double q[5];
        mlmx_scaled_resid_quantiles(f, q);
        /* as lme4: zapsmall(q, 5), then print with 4 significant digits */
        double mx = 0;
        for (int i = 0; i < 5; i++)
            mx = fmax(mx, fabs(q[i]));
        int zd = mx > 0 ? 5 - (int)ceil(log10(mx)) : 5;
        if (zd < 0)
            zd = 0;
        double sc = pow(10.0, zd);
        for (int i = 0; i < 5; i++)
            q[i] = round(q[i] * sc) / sc;
        int dec = mlmx_fmt_decimals(q, 5, 4);
        char cells[5][48];
        fmt_col(cells, q, 5, dec);
        const char *h[5] = {"Min", "1Q", "Median", "3Q", "Max"};
        int w = 0;
        for (int i = 0; i < 5; i++)
            if ((int)strlen(cells[i]) > w)
                w = (int)strlen(cells[i]);
        mlmx_sb_puts(b, "Scaled residuals:\n");
        for (int i = 0; i < 5; i++)
            mlmx_sb_pad(b, h[i], w + 1, 1);
        mlmx_sb_puts(b, "\n");
        for (int i = 0; i < 5; i++)
            mlmx_sb_pad(b, cells[i], w + 1, 1);
        mlmx_sb_puts(b, "\n\n");
    }
}

/* The variance components, as lme4's VarCorr. */
static void sum_ranef(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    const int K = m->K, glmm = f->family != MLMX_FAMILY_GAUSSIAN;
        int nrow = 1;
        int maxq = 1;
        for (int k = 0; k < K; k++) {
            nrow += m->re[k].q;
            if (m->re[k].q > maxq)
                maxq = m->re[k].q;
        }
        double *var = calloc((size_t)nrow, sizeof *var), *sd = calloc((size_t)nrow, sizeof *sd);
        double *cov = malloc((size_t)maxq * (size_t)maxq * sizeof *cov);
        char(*vc)[48] = calloc((size_t)nrow, sizeof *vc);
        char(*sc)[48] = calloc((size_t)nrow, sizeof *sc);
        if (!var || !sd || !cov || !vc || !sc) {
            free(var);
            free(sd);
            free(cov);
            free(vc);
            free(sc);
            b->oom = 1;
            return;
        }
        int row = 0;
        for (int k = 0; k < K; k++) {
            mlmx_fit_term_covariance(f, k, cov);
            for (int a = 0; a < m->re[k].q; a++, row++) {
                var[row] = cov[a + a * m->re[k].q];
                sd[row] = sqrt(var[row]);
            }
        }
        var[row] = f->sigma * f->sigma;
        sd[row] = f->sigma;
        if (glmm)
            nrow--; /* no residual variance: the family fixes it */
        fmt_col(vc, var, nrow, mlmx_fmt_decimals(var, nrow, 4));
        fmt_col(sc, sd, nrow, mlmx_fmt_decimals(sd, nrow, 4));
        int wg = 8, wn = 4, wv = 8, ws = 8;
        for (int k = 0; k < K; k++) {
            if ((int)strlen(m->re[k].vcname) > wg)
                wg = (int)strlen(m->re[k].vcname);
            for (int a = 0; a < m->re[k].q; a++)
                if ((int)strlen(m->re[k].colnames[a]) > wn)
                    wn = (int)strlen(m->re[k].colnames[a]);
        }
        for (int r = 0; r < nrow; r++) {
            if ((int)strlen(vc[r]) > wv)
                wv = (int)strlen(vc[r]);
            if ((int)strlen(sc[r]) > ws)
                ws = (int)strlen(sc[r]);
        }
        mlmx_sb_puts(b, "Random effects:\n ");
        mlmx_sb_pad(b, "Groups", wg + 1, 0);
        mlmx_sb_pad(b, "Name", wn + 1, 0);
        mlmx_sb_pad(b, "Variance", wv, 1);
        mlmx_sb_puts(b, " ");
        mlmx_sb_pad(b, "Std.Dev.", ws, 1);
        if (maxq > 1)
            mlmx_sb_puts(b, " Corr");
        mlmx_sb_puts(b, "\n");
        row = 0;
        for (int k = 0; k < K; k++) {
            int q = m->re[k].q;
            mlmx_fit_term_covariance(f, k, cov);
            for (int a = 0; a < q; a++, row++) {
                mlmx_sb_puts(b, " ");
                mlmx_sb_pad(b, a == 0 ? m->re[k].vcname : "", wg + 1, 0);
                mlmx_sb_pad(b, m->re[k].colnames[a], wn + 1, 0);
                mlmx_sb_pad(b, vc[row], wv, 1);
                mlmx_sb_puts(b, " ");
                mlmx_sb_pad(b, sc[row], ws, 1);
                for (int c = 0; c < a; c++) {
                    double den = sqrt(cov[a + a * q] * cov[c + c * q]);
                    double r = den > 0 ? cov[a + c * q] / den : NAN;
                    if (isnan(r))
                        mlmx_sb_puts(b, "   NaN");
                    else
                        mlmx_sb_printf(b, " %5.2f", r);
                }
                mlmx_sb_puts(b, "\n");
            }
        }
        if (!glmm) {
            mlmx_sb_puts(b, " ");
            mlmx_sb_pad(b, "Residual", wg + 1, 0);
            mlmx_sb_pad(b, "", wn + 1, 0);
            mlmx_sb_pad(b, vc[row], wv, 1);
            mlmx_sb_puts(b, " ");
            mlmx_sb_pad(b, sc[row], ws, 1);
            mlmx_sb_puts(b, "\n");
        }
        free(var);
        free(sd);
        free(cov);
        free(vc);
        free(sc);
}

/* Observations and groups, and Stata's table of group sizes. */
static void sum_groups(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    const int K = m->K;
    mlmx_sb_printf(b, "Number of obs: %zu, groups:  ", m->n);
    {
        int first = 1;
        for (int k = 0; k < K; k++) {
            if (!mlmx_group_first(m, k))
                continue;
            mlmx_sb_printf(b, "%s%s, %d", first ? "" : "; ", m->re[k].group, m->re[k].nlevels);
            first = 0;
        }
        mlmx_sb_puts(b, "\n\n");
    }

    /* Group sizes, as Stata prints them */
    {
        int wg = 14;
        for (int k = 0; k < K; k++)
            if ((int)strlen(m->re[k].group) > wg)
                wg = (int)strlen(m->re[k].group);
        mlmx_sb_puts(b, "Group sizes (observations per group):\n ");
        mlmx_sb_pad(b, "Group", wg + 1, 0);
        mlmx_sb_puts(b, "  Groups     Min  Average     Max\n");
        for (int k = 0; k < K; k++) {
            if (!mlmx_group_first(m, k))
                continue;
            int mn, mx;
            double avg;
            group_sizes(&m->re[k], &mn, &avg, &mx);
            mlmx_sb_puts(b, " ");
            mlmx_sb_pad(b, m->re[k].group, wg + 1, 0);
            mlmx_sb_printf(b, "%8d%8d%9.1f%8d\n", m->re[k].nlevels, mn, avg, mx);
        }
        mlmx_sb_puts(b, "\n");
    }
}

/* Fixed effects: ordinal fits leave out the intercept (the thresholds
 * take its place) and add the thresholds' table. tests: lmerTest's
 * columns (se, df, p per coefficient), or NULL. */
static void sum_fixef(mlmx_strbuf *b, const mlmx_fit *f, const double *const *tests)
{
    const mlmx_model *m = f->model;
    const int p = m->p, glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    char **nm = malloc(((size_t)p + 1) * sizeof *nm);
    double *e = malloc(((size_t)p + 1) * sizeof *e), *se = malloc(((size_t)p + 1) * sizeof *se);
    double *pv = NULL;
    int nd = 0;
    for (int j = 0; nm && e && se && j < p; j++)
        if (j != f->skip_col) {
            nm[nd] = m->fixef_names[j];
            e[nd] = f->beta[j];
            se[nd++] = tests ? tests[0][j] : f->se[j];
        }
    if (nm && e && se && glmm)
        pv = z_pvalues(e, se, nd);
    if (!nm || !e || !se || (glmm && !pv)) {
        b->oom = 1;
    } else if (nd == 0 && f->nthr == 0) {
        /* no fixed effects: no table */
    } else if (glmm) {
        coef_cols c = {nm, e, se, NULL, pv, nd, "z value", "Pr(>|z|)"};
        coef_table(b, "Fixed effects", &c);
        if (f->nthr > 0) {
            double *tp = z_pvalues(f->thr, f->thr_se, f->nthr);
            coef_cols t = {f->thr_names, f->thr, f->thr_se, NULL, tp, f->nthr, "z value",
                           "Pr(>|z|)"};
            mlmx_sb_puts(b, "\n");
            if (tp)
                coef_table(b, "Threshold coefficients (logit P(Y <= k) = c_k - eta)", &t);
            else
                b->oom = 1;
            free(tp);
        }
        mlmx_sb_puts(b, mlmx_signif_legend);
    } else {
        coef_cols c = {nm, e, se, tests ? tests[1] : NULL, tests ? tests[2] : NULL, nd,
                       "t value", "Pr(>|t|)"};
        coef_table(b, "Fixed effects", &c);
        if (tests)
            mlmx_sb_puts(b, mlmx_signif_legend);
    }
    /* glmer's Hessian comes from a stale PIRLS factor (docs/glmm.md,
     * "How close to R"): say so where the numbers are compared */
    if (f->skip_col < 0 && f->nthr == 0 &&
        (f->family == MLMX_FAMILY_BINOMIAL || f->family == MLMX_FAMILY_POISSON) && f->nagq >= 1)
        mlmx_sb_printf(b,
                       "Std. Errors from the exact %s Hessian; glmer's default (tolPwrss = "
                       "1e-7) can differ in the 3rd digit\n",
                       f->nagq > 1 ? "quadrature" : "Laplace");
    free(nm);
    free(e);
    free(se);
    free(pv);
}

/* The correlation of the fixed effects, as lme4. */
static void sum_correlation(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    const int p = m->p;
    if (p > 1 && f->skip_col < 0) {
        mlmx_sb_puts(b, "\nCorrelation of Fixed Effects:\n");
        int wn = 0;
        for (int j = 1; j < p; j++)
            if ((int)strlen(m->fixef_names[j]) > wn)
                wn = (int)strlen(m->fixef_names[j]);
        char ab[256];
        mlmx_sb_pad(b, "", wn, 0);
        for (int c = 0; c < p - 1; c++) {
            abbreviate(m->fixef_names[c], ab, sizeof ab, 6);
            mlmx_sb_puts(b, " ");
            mlmx_sb_pad(b, ab, 6, 0);
        }
        mlmx_sb_puts(b, "\n");
        for (int a = 1; a < p; a++) {
            mlmx_sb_pad(b, m->fixef_names[a], wn, 0);
            for (int c = 0; c < a; c++) {
                double r = f->vcov[a + c * p] / (f->se[a] * f->se[c]);
                mlmx_sb_printf(b, " %6.3f", r);
            }
            mlmx_sb_puts(b, "\n");
        }
    }
}

/* GLMMs, as Stata prints them: the joint Wald test of the fixed effects
 * other than the intercept, and the likelihood-ratio test against the
 * model without random effects. */
static void sum_glmm_tests(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    const int p = m->p;
        /* Stata's extras: the joint Wald test of the fixed effects other than
         * the intercept, and the likelihood-ratio test against the model
         * without random effects */
        int j0 = p > 0 && (strcmp(m->fixef_names[0], "(Intercept)") == 0 || f->skip_col == 0) ? 1 : 0;
        int pw = p - j0;
        if (pw > 0) {
            double *V = malloc((size_t)pw * (size_t)pw * sizeof *V);
            double *bv = malloc((size_t)pw * sizeof *bv);
            if (V && bv) {
                for (int a = 0; a < pw; a++) {
                    bv[a] = f->beta[j0 + a];
                    for (int c = 0; c < pw; c++)
                        V[a + c * pw] = f->vcov[(j0 + a) + (j0 + c) * p];
                }
                double w2 = mlmx_wald_quadform(pw, V, bv);
                if (isfinite(w2))
                    mlmx_sb_printf(b, "\nWald chi2(%d) = %.2f, Prob > chi2 = %.4f (fixed effects "
                                       "other than the intercept)\n",
                                   pw, w2, mlmx_chi2_sf(w2, pw));
            }
            free(V);
            free(bv);
        }
        double lr, pv;
        int nv;
        if (mlmx_fit_lrt_linear(f, &lr, &nv, &pv) != MLMX_OK) {
            mlmx_api_clear();
            return;
        }
        if (nv == 1)
            mlmx_sb_printf(b, "LR test vs. %s model without random effects: chibar2(01) = "
                               "%.2f, Prob >= chibar2 = %.4f\n",
                           mlmx_family_name(f->family), lr, pv);
        else
            mlmx_sb_printf(b, "LR test vs. %s model without random effects: chi2(%d) = %.2f, "
                               "Prob > chi2 = %.4f (conservative: variances are bounded at 0)\n",
                           mlmx_family_name(f->family), nv, lr, pv);
}

/* Notes and warnings under the tables. */
static void sum_notes(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    for (int i = 0; i < m->nmessages; i++)
        mlmx_sb_printf(b, "note: %s\n", m->messages[i]);
    if (f->singular)
        mlmx_sb_puts(b, "boundary (singular) fit: a variance component is estimated as zero\n");
    if (!f->converged)
        mlmx_sb_printf(b, "warning: the optimizer did not converge: %s\n", f->message);
    if (f->warning[0])
        mlmx_sb_printf(b, "warning: %s\n", f->warning);
    /* lme4's layout stays untouched on the CPU: the device only when asked */
    if (strcmp(f->device, "cpu") != 0 && f->device[0])
        mlmx_sb_printf(b, "device: %s\n", f->device);
    if (f->device_note[0])
        mlmx_sb_printf(b, "note: %s\n", f->device_note);
}

static const char *ddf_name(mlmx_ddf_method ddf)
{
    return ddf == MLMX_DDF_KENWARD_ROGER  ? "Kenward-Roger"
           : ddf == MLMX_DDF_CONTAINMENT ? "nlme's containment"
                                          : "Satterthwaite";
}

mlmx_status mlmx_fit_summary_ddf(const mlmx_fit *f, mlmx_ddf_method ddf, char **text)
{
    mlmx_api_clear();
    if (!f || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_summary: NULL argument");
    *text = NULL;
    const int p = f->model->p, glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    double *cols[4] = {NULL, NULL, NULL, NULL}; /* se, df, p, t */
    char note[600] = "", title[80] = "";
    if (!glmm && ddf != MLMX_DDF_NONE) {
        for (int i = 0; i < 4; i++)
            cols[i] = malloc(((size_t)p + 1) * sizeof *cols[i]);
        if (!cols[0] || !cols[1] || !cols[2] || !cols[3]) {
            for (int i = 0; i < 4; i++)
                free(cols[i]);
            return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
        }
        if (mlmx_fit_coef_tests_ddf(f, ddf, cols[0], cols[1], cols[3], cols[2]) == MLMX_OK) {
            snprintf(title, sizeof title, ". t-tests use %s%s method", ddf_name(ddf),
                     ddf == MLMX_DDF_CONTAINMENT ? "" : "'s");
        } else {
            snprintf(note, sizeof note, "%s's df and p-values not computed: %s\n",
                     ddf_name(ddf), mlmx_last_error());
            for (int i = 0; i < 4; i++) {
                free(cols[i]);
                cols[i] = NULL;
            }
            mlmx_api_clear();
        }
    }
    mlmx_strbuf b = {0};
    sum_header(&b, f, title);
    sum_residuals(&b, f);
    sum_ranef(&b, f);
    mlmx_sum_covstruct(&b, f);
    mlmx_sum_resid(&b, f);
    sum_groups(&b, f);
    sum_fixef(&b, f, cols[0] ? (const double *const *)cols : NULL);
    if (note[0])
        mlmx_sb_puts(&b, note);
    if (f->family == MLMX_FAMILY_NEGBIN)
        mlmx_sb_printf(&b, "\nDispersion parameter for nbinom2 family (size): %.4g (SE of "
                           "log(size) %.4g)\n",
                       f->nb_size, f->nb_logsize_se);
    sum_correlation(&b, f);
    if (glmm)
        sum_glmm_tests(&b, f);
    sum_notes(&b, f);
    for (int i = 0; i < 4; i++)
        free(cols[i]);
    if (b.oom) {
        mlmx_sb_free(&b);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    *text = b.s;
    return MLMX_OK;
}

mlmx_status mlmx_fit_summary(const mlmx_fit *f, char **text)
{
    return mlmx_fit_summary_ddf(f, MLMX_DDF_NONE, text);
}
