#define _POSIX_C_SOURCE 200809L
/* The structured random-effect covariances in the summary (a line per
 * structured term under the random-effects table) and in the JSON
 * ("covstruct"). Nothing is written for a model without one, so the
 * output of every other model is unchanged. */
#include "covstruct.h"
#include "model/model.h"
#include "output/output.h"

void mlmx_sum_covstruct(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    if (!m->nstructured || !f->psi)
        return;
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        if (r->cov == MLMX_COV_US)
            continue;
        double rho[16];
        const int nr = mlmx_model_term_rho(m, k, f->psi, rho);
        mlmx_sb_printf(b, " %s: %s, rho%s =", r->vcname, mlmx_cov_kind_name(r->cov),
                       r->cov == MLMX_COV_TOEP ? " (lags 1..)" : "");
        for (int j = 0; j < nr; j++)
            mlmx_sb_printf(b, " %.4g", rho[j]);
        mlmx_sb_puts(b, "\n");
    }
}

void mlmx_json_covstruct(mlmx_strbuf *b, const mlmx_fit *f)
{
    const mlmx_model *m = f->model;
    if (!m->nstructured || !f->psi)
        return;
    mlmx_sb_puts(b, ",\n  \"covstruct\": [");
    int first = 1;
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        if (r->cov == MLMX_COV_US)
            continue;
        double rho[16];
        const int nr = mlmx_model_term_rho(m, k, f->psi, rho);
        mlmx_sb_puts(b, first ? "\n    {\"term\": " : ",\n    {\"term\": ");
        first = 0;
        mlmx_json_str(b, r->vcname);
        mlmx_sb_puts(b, ", \"structure\": ");
        mlmx_json_str(b, mlmx_cov_kind_name(r->cov));
        mlmx_sb_puts(b, ", \"rho\": [");
        for (int j = 0; j < nr; j++) {
            mlmx_sb_puts(b, j ? ", " : "");
            mlmx_json_num(b, rho[j]);
        }
        mlmx_sb_puts(b, "], \"psi_names\": [");
        for (int j = 0; j < r->npsi; j++) {
            mlmx_sb_puts(b, j ? ", " : "");
            mlmx_json_str(b, m->psi_names[r->psi_offset + j]);
        }
        mlmx_sb_puts(b, "], \"psi\": [");
        for (int j = 0; j < r->npsi; j++) {
            mlmx_sb_puts(b, j ? ", " : "");
            mlmx_json_num(b, f->psi[r->psi_offset + j]);
        }
        mlmx_sb_puts(b, "]}");
    }
    mlmx_sb_puts(b, "\n  ]");
}
