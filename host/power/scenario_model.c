/* A scenario whose pilot is a saved model (mlmx power --model, or
 * "pilot": {"model": ...}; docs/scenarios.md): the model file gives the
 * formula and the pilot's data file, and later (power_run.c) the truth, from
 * the saved estimates instead of a refit. LMMs only, as boot and simulate
 * --model. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "power/scenario.h"
#include "util/strbuf.h"

/* 1 when a and b are the same formula up to white space. */
static int same_formula(const char *a, const char *b)
{
    for (;;) {
        while (isspace((unsigned char)*a))
            a++;
        while (isspace((unsigned char)*b))
            b++;
        if (*a != *b)
            return 0;
        if (!*a)
            return 1;
        a++;
        b++;
    }
}

mlmx_status mlmx_sc_take_model(mlmx_scenario *sc, const char *path, const char *formula,
                               mlmx_error *err)
{
    const char *src = sc->source;
    mlmx_status st = mlmx_model_file_read(path, &sc->model);
    if (st)
        return mlmx_err_set(err, st, "%s: pilot model: %s", src, mlmx_last_error());
    const mlmx_model_file *m = sc->model;
    if (mlmx_model_file_family(m) != MLMX_FAMILY_GAUSSIAN)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "%s: pilot model '%s' is a %s GLMM; power from a saved model takes "
                            "linear mixed models only (to refit it instead, give formula, "
                            "family and pilot.data)",
                            src, path, mlmx_family_name(mlmx_model_file_family(m)));
    const char *saved = mlmx_model_file_formula(m);
    if (formula && !same_formula(formula, saved))
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: formula '%s' differs from the pilot model's formula '%s' (%s); "
                            "leave formula out or make it the model's",
                            src, formula, saved, path);
    if (!sc->pilot_data) {
        const char *d = mlmx_model_file_data(m);
        if (!d[0])
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "%s: pilot model '%s' records no data file: give pilot.data", src,
                                path);
        if (!(sc->pilot_data = mlmx_strdup(d)))
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    if (!(sc->pilot_model = mlmx_strdup(path)) || !(sc->formula = mlmx_strdup(saved)))
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    return MLMX_OK;
}
