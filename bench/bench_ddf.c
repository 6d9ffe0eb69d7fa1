/* Times an LMM fit with lmerTest's summary: building the model, fitting it
 * and formatting the summary with Satterthwaite's (or Kenward-Roger's) df
 * and p-values (mlmx_fit_summary_ddf), as bench/ddf_time.R times
 * summary(lmerTest::lmer(...)) on data already in memory; the CSV is read
 * once, untimed. Prints the median of REPS runs after a warm-up; parsed by
 * bench/run_ddf.sh.
 *
 *   bench_ddf CASE CSV FORMULA satterthwaite|kenward-roger REPS */
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

/* One timed run: model, fit, summary. Returns the seconds, or -1. */
static double run_once(const mlmx_data *d, const char *formula, mlmx_ddf_method ddf, char **text)
{
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    const double t0 = now();
    if (mlmx_model_create(d, formula, &m) || mlmx_fit_lmm(m, NULL, &f) ||
        mlmx_fit_summary_ddf(f, ddf, text)) {
        mlmx_fit_free(f);
        mlmx_model_free(m);
        return -1.0;
    }
    const double t = now() - t0;
    mlmx_fit_free(f);
    mlmx_model_free(m);
    return t;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bench_ddf CASE CSV FORMULA satterthwaite|kenward-roger REPS\n");
        return 2;
    }
    const int ddf = mlmx_ddf_method_parse(argv[4]);
    int reps = atoi(argv[5]);
    reps = reps < 1 ? 1 : reps > 10000 ? 10000 : reps;
    mlmx_data *d = NULL;
    if (ddf < 0 || mlmx_data_read_csv(argv[2], &d)) {
        fprintf(stderr, "bench_ddf: %s\n", ddf < 0 ? "bad method" : mlmx_last_error());
        return 1;
    }
    double *t = malloc((size_t)reps * sizeof *t);
    char *text = NULL;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        mlmx_string_free(text);
        text = NULL;
        const double s = run_once(d, argv[3], (mlmx_ddf_method)ddf, &text);
        if (s < 0) {
            fprintf(stderr, "bench_ddf: %s\n", mlmx_last_error());
            return 1;
        }
        if (r >= 0)
            t[r] = s;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("mlmx %s %s seconds=%.6f reps=%d\n", argv[1], argv[4], t[reps / 2], reps);
    /* the fixed-effects table, to compare with R's */
    const char *fe = strstr(text, "Fixed effects:");
    const char *end = fe ? strstr(fe, "---") : NULL;
    if (fe && end)
        printf("%.*s", (int)(end - fe), fe);
    mlmx_string_free(text);
    free(t);
    mlmx_data_free(d);
    return 0;
}
