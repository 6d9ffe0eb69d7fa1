/* libFuzzer harness for the residual-structure specifications
 * (mlmx_model_set_residual: host/resid/parse.c and resolve.c) and the fit
 * they lead to. The input is "CORRELATION\nVARIANCE" (either part may be
 * empty) applied to a small longitudinal data set built in memory (6
 * subjects, 4 to 5 visits, a numeric time with a duplicate in one subject,
 * a non-integer time, a factor stratum, a covariate with a 0). Besides
 * crashes, leaks and hangs it aborts when the contract breaks: a failure
 * leaves no structure on the model and has a one-line, non-empty message;
 * a success reports what it parsed, and a fit either succeeds with finite
 * estimates or fails with a one-line message. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_resid: broken invariant: %s\n", what);
        abort();
    }
}

static void check_message(void)
{
    const char *m = mlmx_last_error();
    check(m && m[0] && !strchr(m, '\n'), "an error message that is empty or spans lines");
}

static mlmx_data *make_data(void)
{
    enum { N = 27 };
    static const char *subj[N] = {"a", "a", "a", "a", "b", "b", "b", "b", "b", "c", "c", "c",
                                  "c", "d", "d", "d", "d", "e", "e", "e", "e", "e", "f", "f",
                                  "f", "f", "f"};
    static const char *sex[N] = {"F", "F", "F", "F", "M", "M", "M", "M", "M", "F", "F", "F",
                                 "F", "M", "M", "M", "M", "F", "F", "F", "F", "F", "M", "M",
                                 "M", "M", "M"};
    double y[N], t[N], tdup[N], treal[N], x[N];
    for (int i = 0; i < N; i++) {
        t[i] = (double)(i % 5);
        tdup[i] = i == 3 ? 1.0 : t[i];
        treal[i] = t[i] * 1.3 + 0.1;
        x[i] = (double)(i % 4);
        y[i] = 10.0 + 0.5 * t[i] + sin(3.7 * i) + (i % 7) * 0.3;
    }
    mlmx_data *d = NULL;
    check(mlmx_data_create(N, &d) == MLMX_OK, "data");
    check(mlmx_data_add_numeric(d, "y", y, NULL) == MLMX_OK, "y");
    check(mlmx_data_add_numeric(d, "time", t, NULL) == MLMX_OK, "time");
    check(mlmx_data_add_numeric(d, "tdup", tdup, NULL) == MLMX_OK, "tdup");
    check(mlmx_data_add_numeric(d, "treal", treal, NULL) == MLMX_OK, "treal");
    check(mlmx_data_add_numeric(d, "x", x, NULL) == MLMX_OK, "x");
    check(mlmx_data_add_strings(d, "subject", subj) == MLMX_OK, "subject");
    check(mlmx_data_add_strings(d, "sex", sex) == MLMX_OK, "sex");
    return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mlmx_data *d;
    if (!d)
        d = make_data();
    if (size > 400)
        return 0;
    char *text = malloc(size + 1);
    check(text != NULL, "malloc");
    memcpy(text, data, size);
    text[size] = '\0';
    if (strlen(text) != size) { /* an embedded NUL: C strings cannot hold it */
        free(text);
        return 0;
    }
    char *nl = strchr(text, '\n');
    const char *var = NULL;
    if (nl) {
        *nl = '\0';
        var = nl + 1;
    }
    mlmx_model *m = NULL;
    check(mlmx_model_create(d, "y ~ time + (1 | subject)", &m) == MLMX_OK, "model");
    mlmx_status st = mlmx_model_set_residual(m, d, text, var);
    if (st != MLMX_OK) {
        check_message();
        check(!mlmx_model_correlation(m) && !mlmx_model_variance(m),
              "a structure left on the model after an error");
    } else {
        mlmx_fit_options o;
        mlmx_fit_options_default(&o);
        o.max_evaluations = 2000;
        mlmx_fit *f = NULL;
        if (mlmx_fit_lmm(m, &o, &f) == MLMX_OK) {
            check(isfinite(mlmx_fit_loglik(f)), "a fit with a non-finite log-likelihood");
            for (int k = 0; k < mlmx_fit_nresid_par(f); k++)
                check(isfinite(mlmx_fit_resid_par(f, k)) && mlmx_fit_resid_par_name(f, k),
                      "a residual parameter that is not finite or has no name");
            char *s = NULL;
            check(mlmx_fit_summary(f, &s) == MLMX_OK && s, "summary");
            mlmx_string_free(s);
            mlmx_fit_free(f);
        } else {
            check(f == NULL, "a failed fit returned an object");
            check_message();
        }
    }
    mlmx_model_free(m);
    free(text);
    return 0;
}
