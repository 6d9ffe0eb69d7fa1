/* Machine-readable results (JSON) and the conditional modes (CSV). Both
 * are built in memory and written atomically. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "output/output.h"
#include "util/strbuf.h"

void mlmx_json_str(mlmx_strbuf *b, const char *s)
{
    mlmx_sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            mlmx_sb_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            mlmx_sb_printf(b, "\\u%04x", *p);
        else
            mlmx_sb_putn(b, (const char *)p, 1);
    }
    mlmx_sb_puts(b, "\"");
}

void mlmx_json_num(mlmx_strbuf *b, double x)
{
    if (!isfinite(x)) {
        mlmx_sb_puts(b, "null");
        return;
    }
    /* the shortest of %.15g, %.16g and %.17g that reads back as x */
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    mlmx_sb_puts(b, buf);
}

mlmx_status mlmx_sb_write_file(mlmx_strbuf *b, const char *path, const char *what)
{
    if (b->oom) {
        mlmx_sb_free(b);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory writing %s", what);
    }
    int e = mlmx_write_file_atomic(path, b->s ? b->s : "", b->len);
    mlmx_sb_free(b);
    if (e)
        return mlmx_api_failf(MLMX_ERR_IO, "cannot write %s '%s': %s", what, path, strerror(e));
    return MLMX_OK;
}

/* The fixed effects (with z and p for a GLMM), an ordinal model's thresholds, NB2's size. */
static void json_fixef(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    const int glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    mlmx_sb_puts(b, ",\n  \"fixef\": [");
    for (int j = 0, first = 1; j < m->p; j++) {
        if (j == f->skip_col)
            continue; /* ordinal: the thresholds replace the intercept */
        mlmx_sb_puts(b, !first ? ",\n    {\"name\": " : "\n    {\"name\": ");
        first = 0;
        mlmx_json_str(b, m->fixef_names[j]);
        mlmx_sb_puts(b, ", \"estimate\": ");
        mlmx_json_num(b, f->beta[j]);
        mlmx_sb_puts(b, ", \"se\": ");
        mlmx_json_num(b, f->se[j]);
        mlmx_sb_puts(b, glmm ? ", \"z\": " : ", \"t\": ");
        mlmx_json_num(b, f->beta[j] / f->se[j]);
        if (glmm) {
            mlmx_sb_puts(b, ", \"p\": ");
            mlmx_json_num(b, erfc(fabs(f->beta[j] / f->se[j]) / sqrt(2.0)));
        }
        mlmx_sb_puts(b, "}");
    }
    mlmx_sb_puts(b, m->p ? "\n  ]" : "]");
    if (f->family == MLMX_FAMILY_ORDINAL) {
        mlmx_sb_puts(b, ",\n  \"thresholds\": [");
        for (int k = 0; k < f->nthr; k++) {
            mlmx_sb_puts(b, k ? ",\n    {\"name\": " : "\n    {\"name\": ");
            mlmx_json_str(b, f->thr_names[k]);
            mlmx_sb_puts(b, ", \"estimate\": ");
            mlmx_json_num(b, f->thr[k]);
            mlmx_sb_puts(b, ", \"se\": ");
            mlmx_json_num(b, f->thr_se[k]);
            mlmx_sb_puts(b, "}");
        }
        mlmx_sb_puts(b, f->nthr ? "\n  ]" : "]");
    }
    if (f->family == MLMX_FAMILY_NEGBIN) {
        mlmx_sb_puts(b, ",\n  \"dispersion\": {\"size\": ");
        mlmx_json_num(b, f->nb_size);
        mlmx_sb_puts(b, ", \"log_size\": ");
        mlmx_json_num(b, log(f->nb_size));
        mlmx_sb_puts(b, ", \"log_size_se\": ");
        mlmx_json_num(b, f->nb_logsize_se);
        mlmx_sb_puts(b, "}");
    }
}

/* The variance components as lme4's VarCorr, the residual last (LMMs). */
static void json_varcorr(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    const int glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    mlmx_sb_puts(b, ",\n  \"varcorr\": [");
    double cov[256];
    int firstvc = 1;
    for (int k = 0; k < m->K; k++) {
        int q = m->re[k].q;
        mlmx_fit_term_covariance(f, k, cov);
        for (int a = 0; a < q; a++) {
            mlmx_sb_puts(b, firstvc ? "\n    {\"group\": " : ",\n    {\"group\": ");
            firstvc = 0;
            mlmx_json_str(b, m->re[k].vcname);
            mlmx_sb_puts(b, ", \"name\": ");
            mlmx_json_str(b, m->re[k].colnames[a]);
            mlmx_sb_puts(b, ", \"variance\": ");
            mlmx_json_num(b, cov[a + a * q]);
            mlmx_sb_puts(b, ", \"sd\": ");
            mlmx_json_num(b, sqrt(cov[a + a * q]));
            mlmx_sb_puts(b, ", \"correlations\": {");
            for (int c = 0; c < a; c++) {
                double den = sqrt(cov[a + a * q] * cov[c + c * q]);
                mlmx_sb_puts(b, c ? ", " : "");
                mlmx_json_str(b, m->re[k].colnames[c]);
                mlmx_sb_puts(b, ": ");
                mlmx_json_num(b, den > 0 ? cov[a + c * q] / den : NAN);
            }
            mlmx_sb_puts(b, "}}");
        }
    }
    if (!glmm) {
        mlmx_sb_puts(b, firstvc
                             ? "\n    {\"group\": \"Residual\", \"name\": null, \"variance\": "
                             : ",\n    {\"group\": \"Residual\", \"name\": null, \"variance\": ");
        mlmx_json_num(b, f->sigma * f->sigma);
        mlmx_sb_puts(b, ", \"sd\": ");
        mlmx_json_num(b, f->sigma);
        mlmx_sb_puts(b, ", \"correlations\": {}}");
    }
    mlmx_sb_puts(b, "\n  ]");
}

mlmx_status mlmx_fit_write_json(const mlmx_fit *f, const char *path)
{
    return mlmx_fit_write_json_ex(f, MLMX_DDF_SATTERTHWAITE, NULL, path);
}

mlmx_status mlmx_fit_write_json_ex(const mlmx_fit *f, mlmx_ddf_method ddf, const mlmx_confint *ci,
                                   const char *path)
{
    mlmx_api_clear();
    if (!f || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_write_json: NULL argument");
    const mlmx_model *m = f->model;
    mlmx_strbuf b = {0};
    int reml = f->method == MLMX_REML;
    mlmx_sb_puts(&b, "{\n  \"mlmx_version\": ");
    mlmx_json_str(&b, MLMX_VERSION_STRING);
    const int glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    mlmx_sb_printf(&b, ",\n  \"model\": \"%s\",\n  \"formula\": ", glmm ? "glmm" : "lmm");
    mlmx_json_str(&b, m->formula);
    mlmx_sb_puts(&b, ",\n  \"data\": ");
    mlmx_json_str(&b, m->source ? m->source : "");
    mlmx_sb_printf(&b, ",\n  \"method\": \"%s\"",
                   glmm ? (f->nagq > 1 ? "AGQ" : "Laplace") : reml ? "REML" : "ML");
    mlmx_sb_printf(&b, ",\n  \"family\": \"%s\"", mlmx_family_name(f->family));
    if (glmm) {
        mlmx_sb_printf(&b, ",\n  \"link\": \"%s\"", mlmx_link_name(f->link));
        mlmx_sb_printf(&b, ",\n  \"nagq\": %d", f->nagq);
        mlmx_sb_puts(&b, ",\n  \"loglik_no_random_effects\": ");
        mlmx_json_num(&b, f->loglik_glm);
    }
    mlmx_sb_puts(&b, ",\n  \"loglik\": ");
    mlmx_json_num(&b, f->loglik);
    mlmx_sb_puts(&b, ",\n  \"deviance\": ");
    /* lme4's deviance(): -2 log-likelihood; for REML fits it is the REML
     * criterion that is reported separately, so deviance is null there. */
    mlmx_json_num(&b, reml ? NAN : f->criterion);
    if (reml) {
        mlmx_sb_puts(&b, ",\n  \"reml_criterion\": ");
        mlmx_json_num(&b, f->criterion);
    }
    mlmx_sb_puts(&b, ",\n  \"aic\": ");
    mlmx_json_num(&b, f->aic);
    mlmx_sb_puts(&b, ",\n  \"bic\": ");
    mlmx_json_num(&b, f->bic);
    mlmx_sb_printf(&b, ",\n  \"df\": %d", f->df);
    mlmx_sb_printf(&b, ",\n  \"n_obs\": %zu", m->n);
    mlmx_sb_printf(&b, ",\n  \"n_dropped\": %zu", m->n_dropped);
    mlmx_sb_puts(&b, ",\n  \"ngroups\": {");
    for (int k = 0, first = 1; k < m->K; k++) {
        if (!mlmx_group_first(m, k))
            continue;
        mlmx_sb_puts(&b, first ? "" : ", ");
        mlmx_json_str(&b, m->re[k].group);
        mlmx_sb_printf(&b, ": %d", m->re[k].nlevels);
        first = 0;
    }
    mlmx_sb_puts(&b, "}");
    mlmx_sb_puts(&b, ",\n  \"sigma\": ");
    mlmx_json_num(&b, f->sigma);
    mlmx_sb_puts(&b, ",\n  \"theta\": [");
    for (int t = 0; t < m->ntheta; t++) {
        mlmx_sb_puts(&b, t ? ", " : "");
        mlmx_json_num(&b, f->theta[t]);
    }
    mlmx_sb_puts(&b, "],\n  \"theta_names\": [");
    for (int t = 0; t < m->ntheta; t++) {
        mlmx_sb_puts(&b, t ? ", " : "");
        mlmx_json_str(&b, m->theta_names[t]);
    }
    mlmx_sb_puts(&b, "]");
    mlmx_json_covstruct(&b, f);
    json_fixef(&b, f);
    mlmx_sb_puts(&b, ",\n  \"dropped_fixef\": [");
    for (int j = 0; j < m->n_dropped_fixef; j++) {
        mlmx_sb_puts(&b, j ? ", " : "");
        mlmx_json_str(&b, m->dropped_fixef[j]);
    }
    mlmx_sb_puts(&b, "],\n  \"vcov\": [");
    for (int a = 0; a < m->p; a++) {
        mlmx_sb_puts(&b, a ? ", [" : "[");
        for (int c = 0; c < m->p; c++) {
            mlmx_sb_puts(&b, c ? ", " : "");
            mlmx_json_num(&b, f->vcov[a + c * m->p]);
        }
        mlmx_sb_puts(&b, "]");
    }
    mlmx_sb_puts(&b, "]");
    json_varcorr(&b, f);
    mlmx_json_resid(&b, f);
    mlmx_json_variance(&b, f);
    mlmx_json_tests(&b, f, ddf);
    if (!glmm)
        mlmx_json_varcomp(&b, f);
    {
        /* the LR test against the model without random effects (Stata's) */
        double chi2, pv;
        int df;
        mlmx_sb_puts(&b, ",\n  \"lrt_no_random_effects\": ");
        if (mlmx_fit_lrt_linear(f, &chi2, &df, &pv) == MLMX_OK) {
            mlmx_sb_puts(&b, "{\"chi2\": ");
            mlmx_json_num(&b, chi2);
            mlmx_sb_printf(&b, ", \"df\": %d, \"mixture\": %s, \"p\": ", df,
                           df == 1 ? "true" : "false");
            mlmx_json_num(&b, pv);
            mlmx_sb_puts(&b, "}");
        } else {
            mlmx_sb_puts(&b, "null");
            mlmx_api_clear();
        }
    }
    {
        double q[5];
        mlmx_scaled_resid_quantiles(f, q);
        mlmx_sb_puts(&b, ",\n  \"scaled_residual_quantiles\": [");
        for (int i = 0; i < 5; i++) {
            mlmx_sb_puts(&b, i ? ", " : "");
            mlmx_json_num(&b, q[i]);
        }
        mlmx_sb_puts(&b, "]");
    }
    mlmx_sb_printf(&b, ",\n  \"converged\": %s", f->converged ? "true" : "false");
    mlmx_sb_printf(&b, ",\n  \"singular\": %s", f->singular ? "true" : "false");
    mlmx_sb_printf(&b, ",\n  \"n_evaluations\": %d", f->n_evals);
    /* The largest |gradient| of the criterion at the optimum (GLMMs: over
     * the optimizer's parameters, from its last gradient); null where none
     * was computed (derivative-free paths, a variance at its bound). */
    mlmx_sb_puts(&b, ",\n  \"max_abs_gradient\": ");
    mlmx_json_num(&b, f->grad_max);
    mlmx_sb_puts(&b, ",\n  \"optimizer\": ");
    mlmx_json_str(&b, f->optimizer);
    mlmx_sb_puts(&b, ",\n  \"optimizer_message\": ");
    mlmx_json_str(&b, f->message);
    mlmx_sb_puts(&b, ",\n  \"warning\": ");
    mlmx_json_str(&b, f->warning);
    mlmx_sb_puts(&b, ",\n  \"messages\": [");
    for (int i = 0; i < m->nmessages; i++) {
        mlmx_sb_puts(&b, i ? ", " : "");
        mlmx_json_str(&b, m->messages[i]);
    }
    mlmx_sb_puts(&b, "],\n  \"device\": ");
    mlmx_json_str(&b, f->device);
    mlmx_sb_puts(&b, ",\n  \"device_note\": ");
    mlmx_json_str(&b, f->device_note);
    mlmx_sb_puts(&b, ",\n  \"fit_seconds\": ");
    mlmx_json_num(&b, f->seconds);
    if (ci)
        mlmx_json_confint(&b, ci);
    mlmx_sb_puts(&b, "\n}\n");
    return mlmx_sb_write_file(&b, path, "JSON results");
}

static void csv_field(mlmx_strbuf *b, const char *s)
{
    if (strpbrk(s, ",\"\n\r")) {
        mlmx_sb_puts(b, "\"");
        for (const char *p = s; *p; p++) {
            if (*p == '"')
                mlmx_sb_puts(b, "\"\"");
            else {
                char c[2] = {*p, 0};
                mlmx_sb_puts(b, c);
            }
        }
        mlmx_sb_puts(b, "\"");
    } else {
        mlmx_sb_puts(b, s);
    }
}

mlmx_status mlmx_fit_write_ranef(const mlmx_fit *f, const char *path)
{
    mlmx_api_clear();
    if (!f || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_write_ranef: NULL argument");
    const mlmx_model *m = f->model;
    mlmx_strbuf b = {0};
    mlmx_sb_puts(&b, "group,level,term,mode,condsd\n");
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        for (int c = 0; c < r->q; c++)
            for (int l = 0; l < r->nlevels; l++) {
                csv_field(&b, r->group);
                mlmx_sb_puts(&b, ",");
                csv_field(&b, r->levels[l]);
                mlmx_sb_puts(&b, ",");
                csv_field(&b, r->colnames[c]);
                mlmx_sb_printf(&b, ",%.17g,", f->ranef[k][l * r->q + c]);
                if (f->have_condsd)
                    mlmx_sb_printf(&b, "%.17g\n", f->condsd[k][l * r->q + c]);
                else
                    mlmx_sb_puts(&b, "NA\n");
            }
    }
    return mlmx_sb_write_file(&b, path, "random effects");
}
