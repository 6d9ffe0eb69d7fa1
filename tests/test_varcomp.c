/* Standard errors and Wald intervals of the variance components
 * (mlmx_fit_varcomp_se, Stata's mixed) and of the cumulative ICCs
 * (mlmx_fit_icc_se, estat icc) against data/reference/infer/
 * varcomp_reference.R: the delta method on lmerTest 3.1-3's vcov_varpar
 * (2 H^-1 by numDeriv) with numDeriv's Jacobian. mlmx is evaluated at the
 * fixture's theta (one evaluation there). Tolerance 1e-4 relative on the
 * SEs and the bounds (both sides difference numerically: lmerTest the
 * deviance twice, mlmx the analytic gradient once); estimates 1e-7. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"
#include "refutil.h"
#include "fitref.h"

#define REFDIR MLMX_SOURCE_DIR "/data/reference/infer/"


static void expect4(const char *what, const double *got, const ref_line *l, int off)
{
    for (int c = 0; c < 4; c++) {
        const double want = strtod(l->tok[off + c], NULL);
        cr_expect(close_rel(got[c], want, c == 0 ? 1e-7 : 1e-4, 1e-12),
                  "%s [%d]: %.10g vs %.10g (rel %.2g)", what, c, got[c], want,
                  fabs(got[c] / want - 1));
    }
}

static void check_case(const char *name)
{
    char path[1024];
    ref_file r;
    snprintf(path, sizeof path, REFDIR "varcomp_%s.ref", name);
    cr_assert_eq(ref_load(path, &r), 0, "cannot read %s", path);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, ref_get(&r, "data")->rest);
    mlmx_fit *f = ref_fit_lmm_at_theta(&r, path, &d, &m);
    const int n = mlmx_fit_nvarcomp(f);
    mlmx_vc_se v[64];
    cr_assert(n <= 64);
    cr_assert_eq(mlmx_fit_varcomp_se(f, 0.95, v), MLMX_OK, "%s", mlmx_last_error());
    const char *scale[2] = {"sd", "var"};
    for (int s = 0; s < 2; s++) {
        int i = 0;
        for (const ref_line *l; (l = ref_get_nth(&r, scale[s], i)) != NULL; i++) {
            cr_assert(i < n && l->ntok == 7);
            cr_expect_eq(v[i].term, atoi(l->tok[0]));
            cr_expect_eq(v[i].a, atoi(l->tok[1]));
            cr_expect_eq(v[i].b, atoi(l->tok[2]));
            char what[128];
            snprintf(what, sizeof what, "%s %s %d", name, scale[s], i);
            expect4(what, s ? v[i].var : v[i].sd, l, 3);
        }
        cr_expect_eq(i, n, "%s: %d %s rows, %d components", name, i, scale[s], n);
    }
    for (int i = 0;; i++) {
        const ref_line *l = ref_get_nth(&r, "icc", i);
        if (!l)
            break;
        double ci[4];
        cr_assert_eq(mlmx_fit_icc_se(f, atoi(l->tok[0]), 0.95, ci), MLMX_OK, "%s",
                     mlmx_last_error());
        char what[128];
        snprintf(what, sizeof what, "%s icc %s", name, l->tok[0]);
        expect4(what, ci, l, 1);
    }
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    ref_free(&r);
}

Test(varcomp, sleepstudy) { check_case("sleepstudy"); }
Test(varcomp, sleepstudy_ml) { check_case("sleepstudy_ml"); }
Test(varcomp, penicillin) { check_case("penicillin"); }
Test(varcomp, classroom_nested) { check_case("classroom_nested"); }

/* A singular fit and a bad level are refused with the reason. */
Test(varcomp, refusals)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_vc_se v[4];
    double ci[4];
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/dyestuff2.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "Yield ~ 1 + (1|Batch)", &m), MLMX_OK);
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK);
    cr_assert(mlmx_fit_singular(f));
    cr_expect_eq(mlmx_fit_varcomp_se(f, 0.95, v), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(mlmx_last_error(), "singular") != NULL, "%s", mlmx_last_error());
    cr_expect_eq(mlmx_fit_icc_se(f, 0, 0.95, ci), MLMX_ERR_UNSUPPORTED);
    cr_expect_eq(mlmx_fit_varcomp_se(f, 1.5, v), MLMX_ERR_ARG);
    cr_expect(strstr(mlmx_last_error(), "level") != NULL, "%s", mlmx_last_error());
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}
