/* Caterpillar plot of the conditional modes (lme4's dotplot(ranef(fit,
 * condVar = TRUE))): one panel per term and column, levels sorted by
 * their mode, each with a 95% interval (mode ± 1.96 conditional SD).
 * Written as standalone SVG, no dependency. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "output/output.h"
#include "util/strbuf.h"

typedef struct item {
    double mode, sd;
    int level;
} item;

static int cmp_item(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return (x->mode > y->mode) - (x->mode < y->mode);
}

static void xml_text(mlmx_strbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': mlmx_sb_puts(b, "&lt;"); break;
        case '>': mlmx_sb_puts(b, "&gt;"); break;
        case '&': mlmx_sb_puts(b, "&amp;"); break;
        case '"': mlmx_sb_puts(b, "&quot;"); break;
        default: {
            char c[2] = {*s, 0};
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                mlmx_sb_puts(b, c);
        }
        }
    }
}

/* Tick step of 1, 2 or 5 times a power of ten giving about five ticks. */
static double nice_step(double range)
{
    double raw = range / 5.0, p = pow(10.0, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

#define W 720.0
#define TOP 46.0
#define GAP 64.0

mlmx_status mlmx_fit_write_ranef_plot(const mlmx_fit *f, const char *path)
{
    mlmx_api_clear();
    if (!f || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_write_ranef_plot: NULL argument");
    if (!f->have_condsd)
        return mlmx_api_failf(MLMX_ERR_ARG, "the caterpillar plot needs conditional variances; "
                                            "this fit was made without them "
                                            "(mlmx_fit_options.conditional_variances = 0)");
    const mlmx_model *m = f->model;
    int maxlev = 1;
    for (int k = 0; k < m->K; k++)
        if (m->re[k].nlevels > maxlev)
            maxlev = m->re[k].nlevels;
    item *it = malloc((size_t)maxlev * sizeof *it);
    if (!it)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");

    /* panel heights first, for the document size */
    double total = 20.0;
    for (int k = 0; k < m->K; k++) {
        int nl = m->re[k].nlevels;
        double rh = nl <= 60 ? 12.0 : 720.0 / nl;
        total += m->re[k].q * (TOP + rh * nl + GAP);
    }
    mlmx_strbuf b = {0};
    mlmx_sb_printf(&b,
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"Helvetica, Arial, sans-serif\" "
                   "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                   W, total, W, total);
    double y0 = 20.0;
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        int nl = r->nlevels;
        double rh = nl <= 60 ? 12.0 : 720.0 / nl;
        int labels = rh >= 9.0;
        size_t lw = 0;
        for (int l = 0; labels && l < nl; l++)
            if (strlen(r->levels[l]) > lw)
                lw = strlen(r->levels[l]);
        double left = labels ? fmin(40.0 + 6.5 * (double)lw, 220.0) : 50.0, right = W - 20.0;
        for (int c = 0; c < r->q; c++) {
            double lo = HUGE_VAL, hi = -HUGE_VAL;
            for (int l = 0; l < nl; l++) {
                it[l].mode = f->ranef[k][l * r->q + c];
                it[l].sd = f->condsd[k][l * r->q + c];
                it[l].level = l;
                lo = fmin(lo, it[l].mode - 1.96 * it[l].sd);
                hi = fmax(hi, it[l].mode + 1.96 * it[l].sd);
            }
            lo = fmin(lo, 0.0);
            hi = fmax(hi, 0.0);
            if (!(hi > lo)) {
                lo -= 1.0;
                hi += 1.0;
            }
            double pad = 0.04 * (hi - lo);
            lo -= pad;
            hi += pad;
            qsort(it, (size_t)nl, sizeof *it, cmp_item);
            double ph = rh * nl, top = y0 + TOP;
#define XS(v) (left + ((v)-lo) / (hi - lo) * (right - left))
            mlmx_sb_puts(&b, "<text x=\"10\" y=\"");
            mlmx_sb_printf(&b, "%.1f\" font-size=\"13\" font-weight=\"bold\">", y0 + 16);
            xml_text(&b, r->vcname);
            mlmx_sb_puts(&b, ": ");
            xml_text(&b, r->colnames[c]);
            mlmx_sb_printf(&b,
                           "</text>\n<text x=\"10\" y=\"%.1f\" fill=\"#555\">conditional modes "
                           "with 95%% intervals (\xc2\xb1 1.96 conditional SD), %d levels, "
                           "sorted</text>\n",
                           y0 + 32, nl);
            mlmx_sb_printf(&b,
                           "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                           "fill=\"none\" stroke=\"#999\"/>\n",
                           left, top, right - left, ph);
            double step = nice_step(hi - lo);
            for (double t = ceil(lo / step) * step; t <= hi; t += step) {
                double x = XS(t);
                mlmx_sb_printf(&b,
                               "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                               "stroke=\"#eee\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
                               "text-anchor=\"middle\">%g</text>\n",
                               x, top, x, top + ph, x, top + ph + 14, fabs(t) < 1e-12 * step ? 0.0 : t);
            }
            mlmx_sb_printf(&b,
                           "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                           "stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n",
                           XS(0.0), top, XS(0.0), top + ph);
            for (int i = 0; i < nl; i++) {
                /* largest mode at the top, as lattice's dotplot draws it */
                double y = top + ph - rh * (i + 0.5);
                double a = XS(it[i].mode - 1.96 * it[i].sd), z = XS(it[i].mode + 1.96 * it[i].sd);
                mlmx_sb_printf(&b,
                               "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                               "stroke=\"#36c\" stroke-width=\"%.1f\"/>\n",
                               a, y, z, y, rh >= 4 ? 1.2 : 0.6);
                mlmx_sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"#036\"/>\n",
                               XS(it[i].mode), y, rh >= 4 ? 2.5 : 0.8);
                if (labels) {
                    mlmx_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">",
                                   left - 6, y + 4);
                    xml_text(&b, r->levels[it[i].level]);
                    mlmx_sb_puts(&b, "</text>\n");
                }
            }
#undef XS
            y0 += TOP + ph + GAP;
        }
    }
    mlmx_sb_puts(&b, "</svg>\n");
    free(it);
    if (b.oom) {
        mlmx_sb_free(&b);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory writing the plot");
    }
    int e = mlmx_write_file_atomic(path, b.s, b.len);
    mlmx_sb_free(&b);
    if (e)
        return mlmx_api_failf(MLMX_ERR_IO, "cannot write plot '%s': %s", path, strerror(e));
    return MLMX_OK;
}
