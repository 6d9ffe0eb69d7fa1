/* Times profile-likelihood confidence intervals (mlmx_fit_confint, every
 * parameter) on a fitted model: the data are read and the model fitted
 * once, untimed, as bench/profile_time.R times confint(fit, method =
 * "profile") on a fitted lmer/glmer object. Prints the median of REPS
 * runs (after a warm-up) and the intervals; parsed by bench/run_profile.sh.
 *
 *   bench_profile CASE CSV FORMULA gaussian|binomial REPS */
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

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bench_profile CASE CSV FORMULA gaussian|binomial REPS\n");
        return 2;
    }
    const char *name = argv[1];
    const int glmm = strcmp(argv[4], "binomial") == 0;
    int reps = atoi(argv[5]);
    reps = reps < 1 ? 1 : reps > 10000 ? 10000 : reps;
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    if (glmm)
        o.family = MLMX_FAMILY_BINOMIAL;
    if (mlmx_data_read_csv(argv[2], &d) || mlmx_model_create(d, argv[3], &m) ||
        (glmm ? mlmx_fit_glmm(m, &o, &f) : mlmx_fit_lmm(m, &o, &f))) {
        fprintf(stderr, "bench_profile: %s\n", mlmx_last_error());
        return 1;
    }
    double *t = malloc((size_t)reps * sizeof *t);
    mlmx_confint *c = NULL;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        mlmx_confint_free(c);
        const double t0 = now();
        if (mlmx_fit_confint(f, MLMX_CONFINT_PROFILE, 0.95, NULL, &c)) {
            fprintf(stderr, "bench_profile: %s\n", mlmx_last_error());
            return 1;
        }
        if (r >= 0)
            t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("mlmx %s seconds=%.6f reps=%d\n", name, t[reps / 2], reps);
    for (int j = 0; j < mlmx_confint_nparams(c); j++) {
        double lo, hi;
        mlmx_confint_bounds(c, j, NULL, &lo, &hi);
        printf("  %-16s %12.7g %12.7g\n", mlmx_confint_name(c, j), lo, hi);
    }
    mlmx_confint_free(c);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    free(t);
    return 0;
}
