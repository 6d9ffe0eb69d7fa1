#define _POSIX_C_SOURCE 200809L
/* The analytic gradient of the profiled criterion against central finite
 * differences, on nested, crossed and vector-valued models, REML and ML.
 * Tolerance: relative 1e-5 of max(|g|, 1) (finite differences with h = 1e-5
 * are good to about 1e-7 here). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lmm/lmm.h"
#include "mlmx.h"

static void check_grad(const char *file, const char *formula, const double *theta, int reml)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, file);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_data_read_csv(path, &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_lmm_stats *s = NULL;
    mlmx_lmm_work *w = NULL;
    cr_assert_eq(mlmx_lmm_stats_build(m, &s, &e), MLMX_OK, "%s", e.msg);
    cr_assert_eq(mlmx_lmm_work_alloc(s, &w, &e), MLMX_OK, "%s", e.msg);
    const mlmx_backend *be = mlmx_backend_cpu();
    int nt = m->ntheta;
    double g[64], th[64], f0;
    cr_assert_eq(mlmx_lmm_eval(s, be, theta, reml, w, &f0, &e), MLMX_OK, "%s", e.msg);
    cr_assert_eq(mlmx_lmm_grad(s, w, reml, g), MLMX_OK);
    for (int t = 0; t < nt; t++) {
        memcpy(th, theta, (size_t)nt * sizeof *th);
        double h = 1e-5;
        double fp, fm;
        th[t] = theta[t] + h;
        cr_assert_eq(mlmx_lmm_eval(s, be, th, reml, w, &fp, &e), MLMX_OK);
        th[t] = theta[t] - h;
        cr_assert_eq(mlmx_lmm_eval(s, be, th, reml, w, &fm, &e), MLMX_OK);
        double fd = (fp - fm) / (2 * h);
        double scale = fabs(fd) > 1 ? fabs(fd) : 1;
        cr_expect(fabs(g[t] - fd) < 1e-5 * scale, "%s %s: d/dtheta[%d] analytic %.10g vs FD %.10g",
                  file, reml ? "REML" : "ML", t, g[t], fd);
    }
    mlmx_lmm_work_free(w);
    mlmx_lmm_stats_free(s);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(lmm_grad, sleepstudy_vector_term)
{
    const double th[] = {0.8, 0.1, 0.3};
    check_grad("sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", th, 1);
    check_grad("sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", th, 0);
}

Test(lmm_grad, penicillin_crossed)
{
    const double th[] = {1.2, 2.5};
    check_grad("penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)", th, 1);
    check_grad("penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)", th, 0);
}

Test(lmm_grad, pastes_nested)
{
    const double th[] = {2.0, 1.0};
    check_grad("pastes.csv", "strength ~ 1 + (1|batch/cask)", th, 1);
}

Test(lmm_grad, veneer_vector_second_term)
{
    const double th[] = {0.9, 2.5, -0.5, 0.4};
    check_grad("veneer.csv",
               "gcf ~ time*(base_gcf + cda + age) + (time|patient) + (1|patient:tooth)", th, 0);
    check_grad("veneer.csv",
               "gcf ~ time*(base_gcf + cda + age) + (time|patient) + (1|patient:tooth)", th, 1);
}

Test(lmm_grad, classroom_nested_chain)
{
    /* sex within class within school: two nested stages in the dense block */
    const double th[] = {0.3, 0.35, 0.25};
    check_grad("classroom.csv",
               "mathgain ~ mathkind + ses + (1|schoolid) + (1|schoolid:classid) + "
               "(1|schoolid:classid:sex)",
               th, 1);
    check_grad("classroom.csv",
               "mathgain ~ mathkind + ses + (1|schoolid) + (1|schoolid:classid) + "
               "(1|schoolid:classid:sex)",
               th, 0);
}

Test(lmm_grad, classroom_three_levels)
{
    const double th[] = {0.4, 0.25};
    check_grad("classroom.csv",
               "mathgain ~ mathkind + sex + minority + ses + housepov + (1|schoolid) + (1|classid)",
               th, 0);
}
