/* Times an LMM fit with a residual structure (issue 10): building the
 * model, setting the structure and fitting it, as bench/resid_time.R times
 * nlme::lme(...) on data already in memory; the CSV is read once,
 * untimed. Prints the median of REPS runs after a warm-up, the
 * log-likelihood and the residual parameters; parsed by bench/run_resid.sh.
 *
 *   bench_resid CASE CSV FORMULA CORRELATION VARIANCE reml|ml REPS
 * (CORRELATION or VARIANCE "-": none) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlmx.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *opt(const char *s) { return strcmp(s, "-") == 0 ? NULL : s; }

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: bench_resid CASE CSV FORMULA CORRELATION VARIANCE reml|ml REPS\n");
        return 2;
    }
    int reps = atoi(argv[7]);
    reps = reps < 1 ? 1 : reps > 1000 ? 1000 : reps;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = strcmp(argv[6], "ml") == 0 ? MLMX_ML : MLMX_REML;
    o.conditional_variances = 0;
    mlmx_data *d = NULL;
    if (mlmx_data_read_csv(argv[2], &d)) {
        fprintf(stderr, "bench_resid: %s\n", mlmx_last_error());
        return 1;
    }
    double *t = malloc((size_t)reps * sizeof *t);
    mlmx_fit *f = NULL;
    mlmx_model *m = NULL;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        mlmx_fit_free(f);
        mlmx_model_free(m);
        f = NULL;
        m = NULL;
        const double t0 = now();
        if (mlmx_model_create(d, argv[3], &m) ||
            mlmx_model_set_residual(m, d, opt(argv[4]), opt(argv[5])) ||
            mlmx_fit_lmm(m, &o, &f)) {
            fprintf(stderr, "bench_resid: %s\n", mlmx_last_error());
            return 1;
        }
        if (r >= 0)
            t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("mlmx %s seconds=%.6f reps=%d loglik=%.6f evals=%d", argv[1], t[reps / 2], reps,
           mlmx_fit_loglik(f), mlmx_fit_n_evaluations(f));
    for (int k = 0; k < mlmx_fit_nresid_par(f); k++)
        printf(" %s=%.6f", mlmx_fit_resid_par_name(f, k), mlmx_fit_resid_par(f, k));
    printf("\n");
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    free(t);
    return 0;
}
