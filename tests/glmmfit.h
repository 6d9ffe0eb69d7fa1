/* A GLMM read, fitted and made a replicate problem, for the GLMM engine
 * tests (test_glmm_batch.c, test_glmm_vec_batch.c, test_glmm_nest_batch.c
 * and their test_cuda_ twins):
 * glmmfit_open asserts each step, glmmfit_close frees in reverse order;
 * and the comparisons those tests and test_glmm_nest_batch.c share. */
#ifndef MLMX_TESTS_GLMMFIT_H
#define MLMX_TESTS_GLMMFIT_H
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "glmm/glmm.h"
#include "mlmx.h"
#include "replicate/replicate.h"

typedef struct glmmfit {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P; /* at the fit's estimates */
} glmmfit;

/* Read csv, build formula, fit (family fam, nagq, link; the other options
 * the defaults) and make the problem; the fit's options are in *o (o may
 * be NULL). */
static inline void glmmfit_open_link(glmmfit *x, const char *csv, const char *formula,
                                     mlmx_family fam, int nagq, mlmx_link link,
                                     mlmx_fit_options *o)
{
    mlmx_fit_options own;
    if (!o)
        o = &own;
    memset(x, 0, sizeof *x);
    cr_assert_eq(mlmx_data_read_csv(csv, &x->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(x->d, formula, &x->m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options_default(o);
    o->family = fam;
    o->nagq = nagq;
    o->link = link;
    cr_assert_eq(mlmx_fit_glmm(x->m, o, &x->f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(x->f, &x->P), MLMX_OK, "%s", mlmx_last_error());
}

static inline void glmmfit_open(glmmfit *x, const char *csv, const char *formula,
                                mlmx_family fam, int nagq)
{
    glmmfit_open_link(x, csv, formula, fam, nagq, MLMX_LINK_DEFAULT, NULL);
}

static inline void glmmfit_close(glmmfit *x)
{
    mlmx_problem_free(x->P);
    mlmx_fit_free(x->f);
    mlmx_model_free(x->m);
    mlmx_data_free(x->d);
    memset(x, 0, sizeof *x);
}

/* |a - b| <= rel |b| + abs_tol */
static inline int close_to(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= rel * fabs(b) + abs_tol;
}

/* The workspace's GLMM code (host/glmm/glmm.c) for model m with link on
 * response y, for criterion checks at fixed points; free with
 * mlmx_glmm_free. glmm_on_response: the family's default link. */
static inline mlmx_glmm *glmm_on_response_link(const mlmx_model *m, mlmx_family fam,
                                               mlmx_link link, const double *y)
{
    mlmx_glmm *g = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_glmm_create(m, fam, link, mlmx_backend_cpu(), &g, &e), MLMX_OK, "%s",
                 e.msg);
    cr_assert_eq(mlmx_glmm_set_response(g, y, &e), MLMX_OK, "%s", e.msg);
    return g;
}

static inline mlmx_glmm *glmm_on_response(const mlmx_model *m, mlmx_family fam, const double *y)
{
    return glmm_on_response_link(m, fam, MLMX_LINK_DEFAULT, y);
}

/* An engine's criterion de and gradient ge (np values) at a point against
 * the workspace's dw and gw (gw NULL: value only): the criterion to 1e-9
 * relative, each gradient entry to 1e-6 of gw's largest entry (+1e-8).
 * what, pt: the message's model and point. */
static inline void expect_like_workspace(double de, double dw, int np, const double *ge,
                                         const double *gw, const char *what, int pt)
{
    cr_expect(close_to(de, dw, 1e-9, 0.0), "%s point %d: engine %.12f, workspace %.12f", what,
              pt, de, dw);
    double gn = 0.0;
    for (int j = 0; gw && j < np; j++)
        gn = fmax(gn, fabs(gw[j]));
    for (int j = 0; gw && j < np; j++)
        cr_expect(fabs(ge[j] - gw[j]) <= 1e-6 * gn + 1e-8,
                  "%s point %d d/dx%d: engine %.10g, workspace %.10g", what, pt, j, ge[j], gw[j]);
}

#endif
