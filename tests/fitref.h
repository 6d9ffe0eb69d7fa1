/* Fitting a fixture's LMM at the fixture's theta (tests that compare
 * inference with R at R's own estimates). Include after criterion.h,
 * mlmx.h and refutil.h. */
#ifndef MLMX_TESTS_FITREF_H
#define MLMX_TESTS_FITREF_H

/* Reads csv, builds the fixture's "formula" and fits it by the fixture's
 * "method" (REML unless "ML") with theta_start = its "theta" and one
 * evaluation: beta and sigma are then profiled at lme4's theta exactly as
 * lme4 profiles them. */
static inline mlmx_fit *ref_fit_lmm_at_theta(const ref_file *r, const char *csv, mlmx_data **d,
                                             mlmx_model **m)
{
    cr_assert_eq(mlmx_data_read_csv(csv, d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(*d, ref_get(r, "formula")->rest, m), MLMX_OK, "%s",
                 mlmx_last_error());
    const ref_line *tl = ref_get(r, "theta");
    double theta[REF_MAXTOK];
    cr_assert(tl && tl->ntok <= REF_MAXTOK);
    for (int j = 0; j < tl->ntok; j++)
        theta[j] = strtod(tl->tok[j], NULL);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    const ref_line *ml = ref_get(r, "method");
    o.method = ml && strcmp(ml->rest, "ML") == 0 ? MLMX_ML : MLMX_REML;
    o.theta_start = theta;
    o.max_evaluations = 1;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_fit_lmm(*m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    return f;
}
#endif
