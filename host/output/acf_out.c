/* The residuals' autocorrelation (host/infer/acf.c) as text under the
 * summary and as a plot (plot_acf.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "api_internal.h"
#include "output/output.h"
#include "output/plots.h"

/* acf, pairs and model at lags 0..maxlag (3 (maxlag + 1) doubles). */
static mlmx_status acf_arrays(const mlmx_fit *f, int *nlag, double **buf)
{
    const int maxlag = mlmx_fit_acf_maxlag(f);
    if (maxlag < 1)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "the residuals' autocorrelation needs a linear mixed model with "
                              "groups of two observations or more");
    *nlag = maxlag + 1;
    *buf = malloc(3 * (size_t)*nlag * sizeof **buf);
    if (!*buf)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_status st = mlmx_fit_acf(f, maxlag, *buf, *buf + *nlag, *buf + 2 * *nlag);
    if (st) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}

mlmx_status mlmx_fit_acf_text(const mlmx_fit *f, char **text)
{
    mlmx_api_clear();
    if (!f || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_acf_text: NULL argument");
    int n = 0;
    double *a = NULL;
    mlmx_status st = acf_arrays(f, &n, &a);
    if (st)
        return st;
    mlmx_strbuf b = {0};
    mlmx_sb_printf(&b, "\nAutocorrelation of the Pearson residuals within '%s' (nlme's ACF):\n",
                   f->model->re[0].group);
    mlmx_sb_puts(&b, " lag       ACF   pairs    fitted\n");
    for (int k = 0; k < n; k++) {
        mlmx_sb_printf(&b, "%4d %9.5f %7.0f", k, a[k], a[n + k]);
        if (isfinite(a[2 * n + k]))
            mlmx_sb_printf(&b, " %9.5f", a[2 * n + k]);
        mlmx_sb_puts(&b, "\n");
    }
    free(a);
    if (b.oom) {
        mlmx_sb_free(&b);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    *text = b.s;
    return MLMX_OK;
}

mlmx_status mlmx_fit_write_acf_plot(const mlmx_fit *f, const char *path)
{
    mlmx_api_clear();
    if (!f || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_write_acf_plot: NULL argument");
    int n = 0;
    double *a = NULL;
    mlmx_status st = acf_arrays(f, &n, &a);
    if (st)
        return st;
    char title[512];
    snprintf(title, sizeof title, "Residual autocorrelation within %s: %s",
             f->model->re[0].group, f->model->formula);
    mlmx_error e;
    mlmx_err_clear(&e);
    st = mlmx_plot_acf(path, n, a, a + n, a + 2 * n, title, &e);
    free(a);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}
