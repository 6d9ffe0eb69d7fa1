/* The residual structure in the summary and the JSON output. */
#include <stdio.h>
#include <string.h>

#include "output/output.h"
#include "resid/resid.h"

static const char *corr_title(const mlmx_resid *r, char *buf, size_t cap)
{
    switch (r->corr) {
    case MLMX_CORR_AR1:
        return "AR(1)";
    case MLMX_CORR_CAR1:
        return "Continuous AR(1)";
    case MLMX_CORR_CS:
        return "Compound symmetry";
    default:
        snprintf(buf, cap, "ARMA(%d,%d)", r->arma_p, r->arma_q);
        return buf;
    }
}

/* name = value pairs, k in [k0, k1) of the fit's residual parameters;
 * ident's reference stratum first, at 1. */
static void sum_params(mlmx_strbuf *b, const mlmx_fit *f, int k0, int k1, int with_ref)
{
    const mlmx_resid *r = f->model->resid;
    mlmx_sb_puts(b, " Parameter estimate(s):\n ");
    if (with_ref)
        mlmx_sb_printf(b, " %s = 1", r->strata[0]);
    for (int k = k0; k < k1; k++)
        mlmx_sb_printf(b, "%s %s = %.6g", k > k0 || with_ref ? "," : "", r->par_names[k],
                       f->rpar[k]);
    mlmx_sb_puts(b, "\n");
}

void mlmx_sum_resid(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_resid *r = f->model->resid;
    if (!r || !f->rpar)
        return;
    char buf[32];
    if (r->corr != MLMX_CORR_NONE) {
        mlmx_sb_printf(b, "Correlation structure: %s\n Formula: %s\n",
                       corr_title(r, buf, sizeof buf), r->corr_text);
        sum_params(b, f, 0, r->ncorr, 0);
    }
    if (r->var != MLMX_VAR_NONE) {
        mlmx_sb_printf(b, "Variance function: %s\n Formula: %s\n",
                       r->var == MLMX_VAR_IDENT ? "different SDs per stratum (residual SD "
                                                  "relative to the first stratum's)"
                                                : "power of a covariate (SD |v|^power)",
                       r->var_text);
        sum_params(b, f, r->ncorr, r->npar, r->var == MLMX_VAR_IDENT);
    }
}

static void json_params(mlmx_strbuf *b, const mlmx_fit *f, int k0, int k1, int with_ref)
{
    const mlmx_resid *r = f->model->resid;
    mlmx_sb_puts(b, "{");
    if (with_ref) {
        mlmx_json_str(b, r->strata[0]);
        mlmx_sb_puts(b, ": 1");
    }
    for (int k = k0; k < k1; k++) {
        mlmx_sb_puts(b, k > k0 || with_ref ? ", " : "");
        mlmx_json_str(b, r->par_names[k]);
        mlmx_sb_puts(b, ": ");
        mlmx_json_num(b, f->rpar[k]);
    }
    mlmx_sb_puts(b, "}");
}

void mlmx_json_resid(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_resid *r = f->model->resid;
    mlmx_sb_puts(b, ",\n  \"residual_structure\": ");
    if (!r || !f->rpar) {
        mlmx_sb_puts(b, "null");
        return;
    }
    static const char *const cw[] = {"none", "ar1", "car1", "cs", "arma"};
    mlmx_sb_puts(b, "{\"correlation\": ");
    if (r->corr != MLMX_CORR_NONE) {
        mlmx_sb_printf(b, "{\"structure\": \"%s\", \"p\": %d, \"q\": %d, \"formula\": ",
                       cw[r->corr], r->arma_p, r->arma_q);
        mlmx_json_str(b, r->corr_text);
        mlmx_sb_printf(b, ", \"groups\": %d, \"max_group_size\": %d, \"parameters\": ",
                       r->ngroups, r->max_gsize);
        json_params(b, f, 0, r->ncorr, 0);
        mlmx_sb_puts(b, "}");
    } else {
        mlmx_sb_puts(b, "null");
    }
    mlmx_sb_puts(b, ", \"variance\": ");
    if (r->var != MLMX_VAR_NONE) {
        mlmx_sb_printf(b, "{\"structure\": \"%s\", \"formula\": ",
                       r->var == MLMX_VAR_IDENT ? "ident" : "power");
        mlmx_json_str(b, r->var_text);
        mlmx_sb_puts(b, ", \"parameters\": ");
        json_params(b, f, r->ncorr, r->npar, r->var == MLMX_VAR_IDENT);
        mlmx_sb_puts(b, "}");
    } else {
        mlmx_sb_puts(b, "null");
    }
    mlmx_sb_puts(b, "}");
}
