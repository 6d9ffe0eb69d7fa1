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

/* The adaptive quadrature gradient. For the canonical links it includes how
 * the finest level's rule (centre at the conditional mode, scale from the
 * curvature there) moves with the parameters, and is checked at relative
 * 1e-6 of the gradient's scale; for the ordinal and negative binomial
 * families the rule is held fixed, which differs from differences of the
 * quadrature deviance by what shrinks as the points grow (checked at 2e-4). */
static void check_agq(const char *csv, const char *formula, mlmx_family fam, int k, const double *x0,
                      int np_expect, double thr0)
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
    const int nt = m->ntheta, p = m->p;
    int ne = fam == MLMX_FAMILY_ORDINAL ? g->ncat - 1 : fam == MLMX_FAMILY_NEGBIN ? 1 : 0;
    const int np = nt + p + ne;
    cr_assert_eq(np, np_expect);
    double x[64], gr[64], dev = NAN, dev2 = NAN;
    memcpy(x, x0, (size_t)np * sizeof *x);
    /* the extra parameters live in g: thresholds or size */
#define SET_EXTRA(xx)                                                                              \
    do {                                                                                           \
        if (fam == MLMX_FAMILY_ORDINAL)                                                            \
            for (int q_ = 0; q_ < ne; q_++)                                                        \
                g->thr[q_] = (xx)[nt + p + q_];                                                    \
        else if (fam == MLMX_FAMILY_NEGBIN)                                                        \
            g->nb_size = (xx)[nt + p];                                                             \
    } while (0)
    SET_EXTRA(x);
    (void)thr0;
    cr_assert_eq(mlmx_glmm_agq_grad(g, x, x + nt, k, &dev, gr, &e), MLMX_OK, "%s", e.msg);
    cr_assert_eq(mlmx_glmm_agq(g, x, x + nt, k, &dev2, &e), MLMX_OK, "%s", e.msg);
    cr_expect(fabs(dev - dev2) <= 1e-10 * fabs(dev), "%s: value %.12f vs %.12f", formula, dev, dev2);
    double scale = 0.0;
    for (int t = 0; t < np; t++)
        scale = fmax(scale, fabs(gr[t]));
    for (int t = 0; t < np; t++) {
        double h = 1e-5 * fmax(1.0, fabs(x[t])), xp[64], xm[64], fp, fm;
        memcpy(xp, x, sizeof xp);
        memcpy(xm, x, sizeof xm);
        xp[t] += h;
        xm[t] -= h;
        SET_EXTRA(xp);
        cr_assert_eq(mlmx_glmm_agq(g, xp, xp + nt, k, &fp, &e), MLMX_OK, "%s", e.msg);
        SET_EXTRA(xm);
        cr_assert_eq(mlmx_glmm_agq(g, xm, xm + nt, k, &fm, &e), MLMX_OK, "%s", e.msg);
        double fd = (fp - fm) / (2 * h);
        cr_log_info("%s k=%d: %d quadrature gradient %.10g, differences %.10g", csv, k, t, gr[t],
                    fd);
        double tol = fam == MLMX_FAMILY_ORDINAL || fam == MLMX_FAMILY_NEGBIN ? 2e-4 : 1e-6;
        cr_expect(fabs(fd - gr[t]) <= tol * fmax(scale, 1.0), "%s: parameter %d: %.10g vs %.10g",
                  formula, t, gr[t], fd);
    }
    mlmx_glmm_free(g);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(glmm_grad, agq_one_term)
{
    const double x[] = {0.7, -1.4, -1.0, -1.1, -1.6};
    check_agq("cbpp.csv", "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)",
              MLMX_FAMILY_BINOMIAL, 25, x, 5, 0);
}

Test(glmm_grad, agq_nested)
{
    const double x[] = {1.2, 0.6, -1.5, -0.06, -0.02, -0.15};
    check_agq("hdp_hid123.csv", "remission ~ IL6 + CRP + LengthofStay + (1|HID) + (1|DID)",
              MLMX_FAMILY_BINOMIAL, 15, x, 6, 0);
}

Test(glmm_grad, agq_ordinal)
{
    /* theta, (Intercept) held at 0, tempwarm, contactyes, 4 thresholds */
    const double x[] = {1.1, 0.0, 3.0, 1.8, -1.6, 1.5, 4.2, 6.1};
    check_agq("wine.csv", "rating ~ temp + contact + (1|judge)", MLMX_FAMILY_ORDINAL, 10, x, 8,
              0);
}

Test(glmm_grad, agq_negbin)
{
    const double x[] = {0.5, -0.3, 0.4, 0.1, 1.5};
    check_agq("salamanders.csv", "count ~ mined + cover + (1|site)", MLMX_FAMILY_NEGBIN, 10, x, 5,
              0);
}

Test(glmm_grad, agq_one_term_large_variance)
{
    /* hdp's doctors: SD about 2, 10 points (the fit glmer compares at) */
    const double x[] = {2.0145, -2.0526, -0.0568, -0.0215, -0.4139, -1.0035, -2.3370, -0.1212, 0.1201};
    check_agq("hdp.csv", "remission ~ IL6 + CRP + CancerStage + LengthofStay + Experience + (1|DID)",
              MLMX_FAMILY_BINOMIAL, 10, x, 9, 0);
}
