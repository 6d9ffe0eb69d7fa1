/* The empirical autocorrelation of an LMM's within-group residuals, as
 * nlme's ACF(fit) computes it (ACF.lme, resType "pearson"): per level of the
 * innermost grouping factor, residuals r_i / (sigma sd_i) in data order;
 * at lag k the sum over groups of sum_t r_t r_{t+k}, divided by the number
 * of such pairs, relative to lag 0. Beside it, the model's correlation at
 * each lag in positions, where the residual structure is by row order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "lmm/fit.h"

int mlmx_fit_acf_maxlag(const mlmx_fit *f)
{
    if (!f || f->family != MLMX_FAMILY_GAUSSIAN || f->model->K < 1)
        return -1;
    const mlmx_reterm_info *t = &f->model->re[0];
    int maxn = 0;
    for (int l = 0; l < t->nlevels; l++)
        maxn = t->level_count[l] > maxn ? t->level_count[l] : maxn;
    const int a = maxn - 1, b = (int)(10.0 * log10((double)maxn)); /* nlme's default */
    return a < b ? a : b;
}

/* The model's correlation at lag k (positions within a group), NaN where
 * the structure is not by row order. */
static double model_corr(const mlmx_fit *f, int k, const double *acf_arma)
{
    const mlmx_resid *r = f->model->resid;
    if (k == 0)
        return 1.0;
    if (!r || r->corr == MLMX_CORR_NONE)
        return 0.0;
    if (r->corr_time && r->corr != MLMX_CORR_CS)
        return NAN;
    switch (r->corr) {
    case MLMX_CORR_AR1:
        return pow(f->rpar[0], k);
    case MLMX_CORR_CS:
        return f->rpar[0];
    case MLMX_CORR_ARMA:
        return acf_arma ? acf_arma[k] : NAN;
    default:
        return NAN;
    }
}

mlmx_status mlmx_fit_acf(const mlmx_fit *f, int maxlag, double *acf, double *n_used,
                         double *model)
{
    mlmx_api_clear();
    if (!f || !acf || maxlag < 0)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_acf: bad argument");
    if (f->family != MLMX_FAMILY_GAUSSIAN)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "the residuals' autocorrelation is for linear mixed models");
    const mlmx_model *m = f->model;
    const mlmx_reterm_info *t = &m->re[0];
    const size_t n = m->n;
    /* observations by level, in data order (a counting sort is stable) */
    size_t *start = calloc((size_t)t->nlevels + 1, sizeof *start);
    size_t *ord = malloc((n ? n : 1) * sizeof *ord);
    double *r = malloc((n ? n : 1) * sizeof *r), *cnt = calloc((size_t)maxlag + 1, sizeof *cnt);
    double *arma = NULL;
    const mlmx_resid *rs = m->resid;
    if (rs && rs->corr == MLMX_CORR_ARMA && !rs->corr_time) {
        arma = malloc(((size_t)maxlag + 1) * sizeof *arma);
        if (arma && !mlmx_resid_arma_acf(rs->arma_p, rs->arma_q, f->rpar, f->rpar + rs->arma_p,
                                         maxlag, arma)) {
            free(arma);
            arma = NULL;
        }
    }
    if (!start || !ord || !r || !cnt) {
        free(start), free(ord), free(r), free(cnt), free(arma);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        start[t->codes[i] + 1]++;
    for (int l = 0; l < t->nlevels; l++)
        start[l + 1] += start[l];
    for (size_t i = 0; i < n; i++) /* start[l] moves to level l's end */
        ord[start[t->codes[i]]++] = i;
    for (int l = t->nlevels; l > 0; l--) /* restore the starts */
        start[l] = start[l - 1];
    start[0] = 0;
    for (size_t i = 0; i < n; i++)
        r[i] = f->resid[i] / (f->sigma * (rs ? mlmx_resid_sd(rs, f->rpar, i) : 1.0));
    for (int k = 0; k <= maxlag; k++)
        acf[k] = 0.0;
    for (int l = 0; l < t->nlevels; l++) {
        const size_t *o = ord + start[l];
        const size_t ng = start[l + 1] - start[l];
        for (int k = 0; k <= maxlag && (size_t)k < ng; k++) {
            double s = 0.0;
            for (size_t a = 0; a + (size_t)k < ng; a++)
                s += r[o[a]] * r[o[a + (size_t)k]];
            acf[k] += s;
            cnt[k] += (double)(ng - (size_t)k);
        }
    }
    const double a0 = acf[0] / cnt[0];
    for (int k = 0; k <= maxlag; k++) {
        acf[k] = cnt[k] > 0 ? acf[k] / cnt[k] / a0 : NAN;
        if (n_used)
            n_used[k] = cnt[k];
        if (model)
            model[k] = model_corr(f, k, arma);
    }
    free(start), free(ord), free(r), free(cnt), free(arma);
    return MLMX_OK;
}
