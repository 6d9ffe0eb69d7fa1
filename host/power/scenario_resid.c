/* The scenario's "residual" key (docs/scenarios.md): a residual correlation
 * structure and/or variance function for a linear mixed model, as nlme's
 * lme(correlation =, weights =), and the true values of their parameters.
 *
 *   "residual": {"correlation": "ar1(~ time | subject)",
 *                "variance": "ident(~ 1 | arm)",
 *                "parameters": {"Phi": 0.5, "treated": 1.3}}
 *
 * Here only the shape is checked (types, keys, the family, no saved
 * model); the specifications, the parameter names and their ranges need
 * the design's data and are checked where the models are built
 * (power_run.c: mlmx_model_set_residual, mlmx_problem_create_at_resid). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "power/scenario.h"
#include "util/strbuf.h"

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static mlmx_status fail(const mlmx_scenario *sc, mlmx_error *err, const char *fmt, ...)
{
    char buf[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *p = buf; *p; p++) /* one line */
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    return mlmx_err_set(err, MLMX_ERR_PARSE, "%s: %s", sc->source, buf);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* residual.<key>: a non-empty one-line string, or absent (*out NULL). */
static mlmx_status get_spec(mlmx_scenario *sc, json_t *v, const char *key, char **out,
                            mlmx_error *err)
{
    json_t *s = json_object_get(v, key);
    *out = NULL;
    if (!s)
        return MLMX_OK;
    if (!json_is_string(s))
        return fail(sc, err, "residual.%s must be a string such as %s (got %s)", key,
                    strcmp(key, "correlation") == 0 ? "\"ar1(~ time | subject)\""
                                                    : "\"ident(~ 1 | arm)\"",
                    type_name(s));
    const char *t = json_string_value(s);
    if (strlen(t) != json_string_length(s))
        return fail(sc, err, "residual.%s contains a NUL character", key);
    for (const char *p = t; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail(sc, err, "residual.%s contains a control character", key);
    const char *q = t;
    while (*q == ' ')
        q++;
    if (!*q)
        return fail(sc, err, "residual.%s must not be empty", key);
    if (!(*out = mlmx_strdup(t)))
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", sc->source);
    return MLMX_OK;
}

/* residual.parameters: {"name": number, ...} in file order. */
static mlmx_status get_params(mlmx_scenario *sc, json_t *p, mlmx_error *err)
{
    if (!json_is_object(p))
        return fail(sc, err,
                    "residual.parameters must be an object mapping the structure's parameter "
                    "names to values, e.g. {\"Phi\": 0.5} (got %s)",
                    type_name(p));
    const size_t n = json_object_size(p);
    if (n > 1000)
        return fail(sc, err, "residual.parameters: more than 1000 entries (%zu)", n);
    sc->resid_names = calloc(n ? n : 1, sizeof *sc->resid_names);
    sc->resid_values = calloc(n ? n : 1, sizeof *sc->resid_values);
    if (!sc->resid_names || !sc->resid_values)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", sc->source);
    const char *key;
    json_t *x;
    json_object_foreach(p, key, x)
    {
        if (!key[0])
            return fail(sc, err, "residual.parameters: an empty parameter name");
        if (!json_is_number(x))
            return fail(sc, err, "residual.parameters.%s must be a number (got %s)", key,
                        type_name(x));
        const double val = json_number_value(x);
        if (!isfinite(val))
            return fail(sc, err, "residual.parameters.%s must be finite", key);
        if (!(sc->resid_names[sc->nresid] = mlmx_strdup(key)))
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", sc->source);
        sc->resid_values[sc->nresid++] = val;
    }
    return MLMX_OK;
}

mlmx_status mlmx_sc_parse_residual(mlmx_scenario *sc, json_t *v, mlmx_error *err)
{
    static const char *const keys[] = {"correlation", "variance", "parameters", NULL};
    if (!json_is_object(v))
        return fail(sc, err,
                    "residual must be an object with \"correlation\" and/or \"variance\" (and "
                    "\"parameters\") (got %s)",
                    type_name(v));
    mlmx_status st = mlmx_sc_check_keys(sc->source, v, "residual", keys, err);
    if (st)
        return st;
    if (sc->family != MLMX_FAMILY_GAUSSIAN)
        return fail(sc, err,
                    "residual: residual correlation and variance structures apply to gaussian "
                    "models only (linear mixed models, as nlme's lme); family is %s",
                    mlmx_family_name(sc->family));
    if (sc->model)
        return fail(sc, err,
                    "residual: power from a saved model (--model or pilot.model '%s') does not "
                    "take residual structures; give pilot.data and the formula instead, and the "
                    "pilot is refitted with the structure",
                    sc->pilot_model ? sc->pilot_model : "?");
    if ((st = get_spec(sc, v, "correlation", &sc->resid_corr, err)) ||
        (st = get_spec(sc, v, "variance", &sc->resid_var, err)))
        return st;
    if (!sc->resid_corr && !sc->resid_var)
        return fail(sc, err,
                    "residual needs \"correlation\" (e.g. \"ar1(~ time | subject)\"), "
                    "\"variance\" (e.g. \"ident(~ 1 | arm)\") or both");
    sc->has_resid = 1;
    json_t *p = json_object_get(v, "parameters");
    return p ? get_params(sc, p, err) : MLMX_OK;
}

void mlmx_sc_free_residual(mlmx_scenario *sc)
{
    free(sc->resid_corr);
    free(sc->resid_var);
    for (int i = 0; i < sc->nresid; i++)
        free(sc->resid_names[i]);
    free(sc->resid_names);
    free(sc->resid_values);
    sc->resid_corr = sc->resid_var = NULL;
    sc->resid_names = NULL;
    sc->resid_values = NULL;
    sc->nresid = 0;
    sc->has_resid = 0;
}
