/* Row buffers of a batch job for the engine tests (test_lmm_batch.c,
 * test_lmm_nest_batch.c, test_lmm_dense_batch.c): count rows for problem
 * P, replicate keys mult * i + add (not contiguous: keys, not positions). */
#ifndef MLMX_TEST_BATCHROWS_H
#define MLMX_TEST_BATCHROWS_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replicate/batch.h"

typedef struct rows {
    mlmx_batch_job J;
    uint64_t *reps;
} rows;

static inline void rows_alloc_keys(rows *r, const mlmx_problem *P, size_t count, uint64_t seed,
                                   uint64_t mult, uint64_t add)
{
    memset(r, 0, sizeof *r);
    const size_t nt = (size_t)P->ntheta, p = (size_t)P->p;
    r->reps = malloc(count * sizeof *r->reps);
    for (size_t i = 0; i < count; i++)
        r->reps[i] = mult * i + add;
    r->J.seed = seed;
    r->J.reps = r->reps;
    r->J.count = count;
    r->J.theta = calloc(count * nt, sizeof(double));
    r->J.beta = calloc(count * p, sizeof(double));
    r->J.se = calloc(count * p, sizeof(double));
    r->J.sigma = calloc(count, sizeof(double));
    r->J.crit = calloc(count, sizeof(double));
    r->J.nev = calloc(count, sizeof(int));
    r->J.conv = calloc(count, 1);
    r->J.sing = calloc(count, 1);
    r->J.status = calloc(count, 1);
}

static inline void rows_free(rows *r)
{
    free(r->reps);
    free(r->J.theta);
    free(r->J.beta);
    free(r->J.se);
    free(r->J.sigma);
    free(r->J.crit);
    free(r->J.nev);
    free(r->J.conv);
    free(r->J.sing);
    free(r->J.status);
}

#endif
