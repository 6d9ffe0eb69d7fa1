#define _POSIX_C_SOURCE 200809L
/* The analytic gradient of the Laplace deviance against central finite
 * differences of the deviance itself (relative 1e-5 of the gradient's
 * scale), on designs that exercise every part of it: one term (cbpp),
 * crossed terms (VerbAgg), three crossed terms with an observation-level
 * one (grouseticks, Poisson), nested terms (hdp), a correlated random
 * slope (VerbAgg (1 + situ | id)). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "glmm/glmm.h"
#include "mlmx.h"

static void check(const char *csv, const char *formula, mlmx_family fam, const double *theta,
                  const double *beta0)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, csv);
    cr_assert_eq(mlmx_data_read_csv(path, &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_glmm *g = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_glmm_create(m, fam, MLMX_LINK_DEFAULT, mlmx_backend_cpu(), &g, &e), MLMX_OK,
                 "%s", e.msg);
    cr_assert(mlmx_glmm_has_grad(g));
    const int nt = m->ntheta, p = m->p, np = nt + p;
    double x[64], gr[64];
    for (int t = 0; t < nt; t++)
        x[t] = theta[t];
    for (int j = 0; j < p; j++)
        x[nt + j] = beta0 ? beta0[j] : 0.1 * (j % 3) - 0.05;
    double dev = NAN;
    cr_assert_eq(mlmx_glmm_laplace_grad(g, x, x + nt, &dev, gr, &e), MLMX_OK, "%s", e.msg);
    double scale = 0.0;
    for (int t = 0; t < np; t++)
        scale = fmax(scale, fabs(gr[t]));
    for (int t = 0; t < np; t++) {
        double h = 1e-5 * fmax(1.0, fabs(x[t])), xp[64], xm[64], fp, fm;
        memcpy(xp, x, sizeof xp);
        memcpy(xm, x, sizeof xm);
        xp[t] += h;
        xm[t] -= h;
        cr_assert_eq(mlmx_glmm_laplace(g, xp, xp + nt, &fp, &e), MLMX_OK, "%s", e.msg);
        cr_assert_eq(mlmx_glmm_laplace(g, xm, xm + nt, &fm, &e), MLMX_OK, "%s", e.msg);
        double fd = (fp - fm) / (2 * h);
        cr_log_info("%s: %d analytic %.10g fd %.10g", csv, t, gr[t], fd);
        cr_expect(fabs(fd - gr[t]) <= 1e-5 * fmax(scale, 1.0) + 1e-6 * fabs(fd),
                  "%s: parameter %d: analytic %.10g, differences %.10g", formula, t, gr[t], fd);
    }
    mlmx_glmm_free(g);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(glmm_grad, one_term)
{
    const double th[] = {0.7}, b[] = {-1.4, -1.0, -1.1, -1.6};
    check("cbpp.csv", "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)",
          MLMX_FAMILY_BINOMIAL, th, b);
}

Test(glmm_grad, crossed)
{
    const double th[] = {1.2, 0.6}, b[] = {0.2, 0.05, 0.3, -1.0, -2.0, -1.0};
    check("verbagg.csv", "r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)",
          MLMX_FAMILY_BINOMIAL, th, b);
}

Test(glmm_grad, poisson_three_terms)
{
    const double th[] = {0.5, 0.7, 0.6}, b[] = {-1.0, 1.0, -1.0, 0.1};
    check("grouseticks.csv", "TICKS ~ factor(YEAR) + cHEIGHT + (1|BROOD) + (1|INDEX) + (1|LOCATION)",
          MLMX_FAMILY_POISSON, th, b);
}

Test(glmm_grad, nested)
{
    const double th[] = {1.9, 0.5};
    check("hdp.csv", "remission ~ IL6 + CRP + LengthofStay + (1|HID) + (1|DID)",
          MLMX_FAMILY_BINOMIAL, th, NULL);
}

Test(glmm_grad, vector_term)
{
    const double th[] = {1.1, 0.3, 0.5, 0.4}, b[] = {0.1, 0.05, -1.0};
    check("verbagg.csv", "r2 ~ Anger + situ + (1 + situ|id) + (1|item)", MLMX_FAMILY_BINOMIAL,
          th, b);
}
