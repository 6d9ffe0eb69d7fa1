/* Times mlmx GLMM fits through the public API: the data are read once (not
 * timed, as bench/glmer_time.R reads its data frame outside the timing);
 * each repetition builds the model from the formula and fits it, which is
 * what one glmer() call does. Prints one line, parsed by bench/run_glmm.sh:
 *   mlmx CASE median_s=... min_s=... reps=... loglik=... evals=... */
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
    if (argc != 8) {
        fprintf(stderr, "usage: bench_glmm CASE CSV FORMULA FAMILY LINK|default NAGQ REPS\n");
        return 2;
    }
    const char *name = argv[1], *csv = argv[2], *formula = argv[3], *fam = argv[4],
               *link = argv[5];
    int nagq = atoi(argv[6]), reps = atoi(argv[7]);
    if (reps < 1)
        reps = 1;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.conditional_variances = 0; /* glmer() does not compute them either */
    o.nagq = nagq;
    const char *fams[] = {"gaussian", "binomial", "poisson", "negbin", "ordinal"};
    const char *links[] = {"logit", "probit", "cloglog", "log"};
    o.family = MLMX_FAMILY_GAUSSIAN;
    for (int j = 0; j < 5; j++)
        if (strcmp(fam, fams[j]) == 0)
            o.family = (mlmx_family)j;
    for (int j = 0; j < 4; j++)
        if (strcmp(link, links[j]) == 0)
            o.link = (mlmx_link)j;
    mlmx_data *d = NULL;
    if (mlmx_data_read_csv(csv, &d)) {
        fprintf(stderr, "bench_glmm: %s\n", mlmx_last_error());
        return 1;
    }
    double *t = malloc((size_t)reps * sizeof *t);
    double ll = 0;
    int nev = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double t0 = now();
        mlmx_model *m = NULL;
        mlmx_fit *f = NULL;
        if (mlmx_model_create(d, formula, &m) || mlmx_fit_glmm(m, &o, &f)) {
            fprintf(stderr, "bench_glmm: %s\n", mlmx_last_error());
            mlmx_model_free(m);
            return 1;
        }
        double el = now() - t0;
        ll = mlmx_fit_loglik(f);
        nev = mlmx_fit_n_evaluations(f);
        mlmx_fit_free(f);
        mlmx_model_free(m);
        if (r >= 0)
            t[r] = el;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("mlmx %s median_s=%.6g min_s=%.6g reps=%d loglik=%.10f evals=%d\n", name, t[reps / 2],
           t[0], reps, ll, nev);
    free(t);
    mlmx_data_free(d);
    return 0;
}
