/* The residuals' autocorrelation plot (nlme's plot(ACF(fit), alpha =
 * 0.05)): a bar per lag from 0 to the empirical autocorrelation, the
 * critical values +-qnorm(0.975) / sqrt(pairs) dashed, and the fitted
 * residual structure's correlation at each lag as a line with points
 * where it is defined. */
#include <math.h>
#include <stdlib.h>

#include "output/plot_draw.h"
#include "output/plots.h"

typedef struct acf_ctx {
    int n;
    const double *acf, *n_used, *model;
    const char *title;
} acf_ctx;

static void draw_acf(const plot_job *job)
{
    const acf_ctx *c = job->ctx;
    char buf[1024];
    double ymin = -0.2, ymax = 1.0;
    for (int k = 0; k < c->n; k++) {
        if (isfinite(c->acf[k]))
            ymin = fmin(ymin, c->acf[k]);
        if (c->model && isfinite(c->model[k]))
            ymin = fmin(ymin, c->model[k]);
        if (c->n_used && c->n_used[k] > 0)
            ymin = fmin(ymin, -1.96 / sqrt(c->n_used[k]));
    }
    ymin = fmax(-1.05, ymin - 0.05);
    const double wx0 = -0.6, wx1 = c->n - 0.4;
    pladv(0);
    mlmx_pl_text_size(1.15);
    plvpor(0.10, 0.97, 0.16, 0.90);
    plwind(wx0, wx1, ymin, ymax + 0.05);
    plcol0(C_GRID);
    plwidth(1.0);
    plbox("", 0.0, 0, "g", 0.2, 0);
    plcol0(C_MUTED);
    mlmx_pl_hline(wx0, wx1, 0.0);
    /* critical values, a dashed step per lag */
    if (c->n_used) {
        plcol0(C_ALPHA);
        plwidth(1.5);
        pllsty(2);
        for (int k = 1; k < c->n; k++)
            if (c->n_used[k] > 0) {
                const double b = 1.96 / sqrt(c->n_used[k]);
                mlmx_pl_hline(k - 0.5, k + 0.5, b);
                mlmx_pl_hline(k - 0.5, k + 0.5, -b);
            }
        pllsty(1);
    }
    /* the empirical autocorrelations */
    plcol0(C_HIST_EDGE);
    plwidth(4.0);
    for (int k = 0; k < c->n; k++)
        if (isfinite(c->acf[k]))
            mlmx_pl_vline((double)k, 0.0, c->acf[k]);
    /* the fitted structure's correlation */
    if (c->model) {
        double wpx, wpy;
        mlmx_pl_world_per_mm(&wpx, &wpy);
        plcol0(C_CURVE);
        plwidth(2.0);
        for (int k = 0; k + 1 < c->n; k++)
            if (isfinite(c->model[k]) && isfinite(c->model[k + 1])) {
                PLFLT x[2] = {k, k + 1}, y[2] = {c->model[k], c->model[k + 1]};
                plline(2, x, y);
            }
        for (int k = 0; k < c->n; k++)
            if (isfinite(c->model[k]))
                mlmx_pl_dot((double)k, c->model[k], 1.4, wpx, wpy);
    }
    plcol0(C_FG);
    plwidth(1.0);
    plbox("bcnst", 1.0, 0, "bcnstv", 0.2, 2);
    plmtex("b", 3.0, 0.5, 0.5, "lag (positions within a group)");
    plmtex("l", 4.2, 0.5, 0.5, "autocorrelation");
    const char *key = "bars: residuals' ACF (nlme); line: fitted correlation; dashed: "
                      "+-1.96/sqrt(pairs)";
    mlmx_pl_text_size(mlmx_pl_fit_size(key, 0.9 * mlmx_pl_page_width_mm(), 0.9));
    plcol0(C_MUTED);
    plmtex("b", 6.0, 0.5, 0.5, key);
    plcol0(C_FG);
    mlmx_pl_text_size(1.15);
    if (c->title && c->title[0]) {
        mlmx_pl_text(buf, sizeof buf, c->title);
        mlmx_pl_text_size(mlmx_pl_fit_size(buf, 0.94 * mlmx_pl_page_width_mm(), 1.45));
        plmtex("t", 1.6, 0.5, 0.5, buf);
        mlmx_pl_text_size(1.15);
    }
}

mlmx_status mlmx_plot_acf(const char *path, int nlag, const double *acf, const double *n_used,
                          const double *model, const char *title, mlmx_error *err)
{
    if (!path || !acf)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_plot_acf: NULL argument");
    if (nlag < 1)
        return mlmx_err_set(err, MLMX_ERR_ARG, "autocorrelation plot '%s': no lags", path);
    acf_ctx c = {nlag, acf, n_used, model, title};
    plot_job job = {900.0, 600.0, draw_acf, &c};
    return mlmx_pl_file(path, "autocorrelation plot", title, &job, err);
}
