/* A GLMM problem opened for the engine tests (test_glmm_crossed_batch.c,
 * test_cuda_glmm_crossed_batch.c): data, model, the full fit and its
 * replicate problem, each step asserted. */
#ifndef MLMX_TEST_GLMMPROBLEM_H
#define MLMX_TEST_GLMMPROBLEM_H
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "mlmx.h"
#include "replicate/replicate.h"

typedef struct glmm_problem {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P;
} glmm_problem;

/* Fit formula on csv (family fam, nAGQ nagq; gaussian: an LMM) and make
 * its problem. */
static inline void glmm_problem_open(glmm_problem *g, const char *csv, const char *formula,
                                     mlmx_family fam, int nagq)
{
    memset(g, 0, sizeof *g);
    cr_assert_eq(mlmx_data_read_csv(csv, &g->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(g->d, formula, &g->m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    o.nagq = nagq;
    const mlmx_status st = fam == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(g->m, &o, &g->f)
                                                       : mlmx_fit_glmm(g->m, &o, &g->f);
    cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(g->f, &g->P), MLMX_OK, "%s", mlmx_last_error());
}

static inline void glmm_problem_close(glmm_problem *g)
{
    mlmx_problem_free(g->P);
    mlmx_fit_free(g->f);
    mlmx_model_free(g->m);
    mlmx_data_free(g->d);
}

static inline int glmm_close_to(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= rel * fabs(b) + abs_tol;
}

#endif
