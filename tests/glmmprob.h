/* A fitted GLMM and its replicate problem for the GLMM engine tests
 * (test_glmm_batch.c, test_glmm_nest_batch.c and their test_cuda_ twins): data from csv,
 * the model, a fit with family fam, link and nagq, and the problem at the
 * fit. Asserts (criterion) that each step succeeds. */
#ifndef MLMX_TEST_GLMMPROB_H
#define MLMX_TEST_GLMMPROB_H
#include <criterion/criterion.h>
#include <string.h>

#include "mlmx.h"

typedef struct glmmprob {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P;
} glmmprob;

static inline void glmmprob_open(glmmprob *x, const char *csv, const char *formula,
                                 mlmx_family fam, mlmx_link link, int nagq)
{
    memset(x, 0, sizeof *x);
    cr_assert_eq(mlmx_data_read_csv(csv, &x->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(x->d, formula, &x->m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    o.link = link;
    o.nagq = nagq;
    cr_assert_eq(mlmx_fit_glmm(x->m, &o, &x->f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(x->f, &x->P), MLMX_OK, "%s", mlmx_last_error());
}

static inline void glmmprob_close(glmmprob *x)
{
    mlmx_problem_free(x->P);
    mlmx_fit_free(x->f);
    mlmx_model_free(x->m);
    mlmx_data_free(x->d);
    memset(x, 0, sizeof *x);
}
#endif
