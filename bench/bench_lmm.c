/* Times mlmx fits through the public API: the data are read once (not
 * timed, as lme4's data frame is already in memory in bench/lme4_time.R);
 * each repetition builds the model from the formula and fits it, which is
 * what one lmer() call does. Prints one line per case, parsed by
 * bench/run_lmm.sh. */
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
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bench_lmm CASE CSV FORMULA REML|ML REPS\n");
        return 2;
    }
    const char *name = argv[1], *csv = argv[2], *formula = argv[3];
    int reml = strcmp(argv[4], "ML") != 0;
    int reps = atoi(argv[5]);
    if (reps < 1)
        reps = 1;
    mlmx_data *d = NULL;
    if (mlmx_data_read_csv(csv, &d)) {
        fprintf(stderr, "bench_lmm: %s\n", mlmx_last_error());
        return 1;
    }
    double *t = malloc((size_t)reps * sizeof *t);
    double crit = 0;
    int nev = 0;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = reml ? MLMX_REML : MLMX_ML;
    o.conditional_variances = 0; /* lmer() does not compute them either */
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double t0 = now();
        mlmx_model *m = NULL;
        mlmx_fit *f = NULL;
        if (mlmx_model_create(d, formula, &m) || mlmx_fit_lmm(m, &o, &f)) {
            fprintf(stderr, "bench_lmm: %s\n", mlmx_last_error());
            mlmx_model_free(m);
            return 1;
        }
        double el = now() - t0;
        crit = mlmx_fit_criterion(f);
        nev = mlmx_fit_n_evaluations(f);
        mlmx_fit_free(f);
        mlmx_model_free(m);
        if (r >= 0)
            t[r] = el;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("mlmx %s median_s=%.6g min_s=%.6g reps=%d criterion=%.10f evals=%d\n", name,
           t[reps / 2], t[0], reps, crit, nev);
    free(t);
    mlmx_data_free(d);
    return 0;
}
