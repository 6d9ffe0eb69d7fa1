/* Residual structures in power studies (the scenario's "residual" key,
 * docs/scenarios.md): every model built (a pilot fit, each design point's
 * model, an LRT's null model) gets the scenario's correlation and variance
 * (mlmx_model_set_residual); the truth holds the structure's parameters by
 * name (a pilot fit's estimates, then the scenario's values over them),
 * and mapping them onto a model gives the array mlmx_problem_create_at_resid
 * takes, in mlmx_model_resid_par_name's order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "output/output.h"
#include "power/power.h"
#include "util/strbuf.h"

static mlmx_status nomem(mlmx_error *err)
{
    return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
}

void mlmx_pw_resid_free(pw_truth *t)
{
    for (int k = 0; k < t->nres; k++)
        free(t->res_names[k]);
    free(t->res_names);
    free(t->res);
    free(t->res_sc);
    t->res_names = NULL;
    t->res = NULL;
    t->res_sc = NULL;
    t->nres = 0;
}

/* Set parameter name to v (from_sc: given by the scenario). -1: out of
 * memory. */
static int set_res(pw_truth *t, const char *name, double v, int from_sc)
{
    for (int k = 0; k < t->nres; k++)
        if (strcmp(t->res_names[k], name) == 0) {
            t->res[k] = v;
            t->res_sc[k] = (unsigned char)(t->res_sc[k] | from_sc);
            return 0;
        }
    const size_t n = (size_t)t->nres + 1;
    char **nm = realloc(t->res_names, n * sizeof *nm);
    if (nm)
        t->res_names = nm;
    double *r = realloc(t->res, n * sizeof *r);
    if (r)
        t->res = r;
    unsigned char *s = realloc(t->res_sc, n);
    if (s)
        t->res_sc = s;
    if (!nm || !r || !s || !(nm[t->nres] = mlmx_strdup(name)))
        return -1;
    r[t->nres] = v;
    s[t->nres] = (unsigned char)from_sc;
    t->nres++;
    return 0;
}

mlmx_status mlmx_pw_resid_from_fit(pw_truth *t, const mlmx_fit *f, mlmx_error *err)
{
    for (int k = 0; k < mlmx_fit_nresid_par(f); k++)
        if (set_res(t, mlmx_fit_resid_par_name(f, k), mlmx_fit_resid_par(f, k), 0))
            return nomem(err);
    return MLMX_OK;
}

mlmx_status mlmx_pw_resid_overlay(pw_truth *t, const mlmx_scenario *sc, mlmx_error *err)
{
    for (int i = 0; i < sc->nresid; i++)
        if (set_res(t, sc->resid_names[i], sc->resid_values[i], 1))
            return nomem(err);
    return MLMX_OK;
}

mlmx_status mlmx_pw_resid_error(const mlmx_scenario *sc, mlmx_status st, int at_params,
                                const char *what, const char *msg, mlmx_error *err)
{
    /* the library names the command's options: name the scenario's keys */
    const char *key = at_params && st == MLMX_ERR_ARG ? "residual.parameters" : "residual";
    if (strncmp(msg, "--correlation", 13) == 0) {
        key = "residual.correlation";
        msg += 13;
    } else if (strncmp(msg, "--variance", 10) == 0) {
        key = "residual.variance";
        msg += 10;
    }
    return mlmx_err_set(err, st, "%s: %s%s%s%s", sc->source, what ? what : "", key,
                        msg[0] == ' ' || msg[0] == ':' ? "" : ": ", msg);
}

mlmx_status mlmx_pw_set_residual(const mlmx_scenario *sc, mlmx_model *m, const mlmx_data *d,
                                 const char *what, mlmx_error *err)
{
    if (!sc->has_resid)
        return MLMX_OK;
    mlmx_status st = mlmx_model_set_residual(m, d, sc->resid_corr, sc->resid_var);
    if (st)
        return mlmx_pw_resid_error(sc, st, 0, what, mlmx_last_error(), err);
    return MLMX_OK;
}

/* "Phi, power" or "none": the model's parameter names. */
static void list_names(mlmx_strbuf *b, const mlmx_model *m)
{
    const int n = mlmx_model_nresid_par(m);
    for (int k = 0; k < n; k++)
        mlmx_sb_printf(b, "%s%s", k ? ", " : "", mlmx_model_resid_par_name(m, k));
    if (n == 0)
        mlmx_sb_puts(b, "none");
}

/* The structure as printed: "ar1(~ 1 | g), ident(~ 1 | arm)". */
static void describe(mlmx_strbuf *b, const mlmx_model *m)
{
    const char *c = mlmx_model_correlation(m), *v = mlmx_model_variance(m);
    mlmx_sb_printf(b, "%s%s%s", c ? c : "", c && v ? ", " : "", v ? v : "");
}

/* missing = 0: name is not one of m's parameters; 1: m's parameter name
 * has no value. */
static mlmx_status name_error(const pw_study *S, const mlmx_model *m, int missing,
                              const char *name, mlmx_error *err)
{
    mlmx_strbuf s = {0}, n = {0};
    describe(&s, m);
    list_names(&n, m);
    const char *src = S->sc->source, *sd = s.s ? s.s : "?", *nd = n.s ? n.s : "none";
    mlmx_status st =
        missing ? mlmx_err_set(err, MLMX_ERR_ARG,
                               "%s: residual.parameters: no value for '%s' (the structure %s has "
                               "the parameters %s; give each a value, or a pilot to estimate "
                               "them)",
                               src, name, sd, nd)
                : mlmx_err_set(err, MLMX_ERR_ARG,
                               "%s: residual.parameters: '%s' is not a parameter of the structure "
                               "%s (its parameters: %s)",
                               src, name, sd, nd);
    mlmx_sb_free(&s);
    mlmx_sb_free(&n);
    return st;
}

mlmx_status mlmx_pw_map_resid(const pw_study *S, const mlmx_model *m, int check, double *resid,
                              mlmx_error *err)
{
    const pw_truth *t = &S->tr;
    const int n = mlmx_model_nresid_par(m);
    for (int i = 0; check && i < t->nres; i++) {
        if (!t->res_sc[i])
            continue;
        int found = 0;
        for (int k = 0; k < n && !found; k++)
            found = strcmp(mlmx_model_resid_par_name(m, k), t->res_names[i]) == 0;
        if (!found)
            return name_error(S, m, 0, t->res_names[i], err);
    }
    for (int k = 0; k < n; k++) {
        const char *nm = mlmx_model_resid_par_name(m, k);
        int i = 0;
        while (i < t->nres && strcmp(t->res_names[i], nm) != 0)
            i++;
        if (i == t->nres)
            return name_error(S, m, 1, nm, err);
        resid[k] = t->res[i];
    }
    return MLMX_OK;
}

/* ------------------------------------------------------------ the result */

mlmx_status mlmx_pw_resid_result(mlmx_power_result *R, const pw_study *S)
{
    const mlmx_scenario *sc = S->sc;
    const pw_truth *t = &S->tr;
    if (!sc->has_resid)
        return MLMX_OK;
    if ((sc->resid_corr && !(R->correlation = mlmx_strdup(sc->resid_corr))) ||
        (sc->resid_var && !(R->variance = mlmx_strdup(sc->resid_var))))
        return MLMX_ERR_NOMEM;
    const size_t n = (size_t)(t->nres ? t->nres : 1);
    R->resid_names = calloc(n, sizeof *R->resid_names);
    R->resid_values = calloc(n, sizeof *R->resid_values);
    if (!R->resid_names || !R->resid_values)
        return MLMX_ERR_NOMEM;
    for (int k = 0; k < t->nres; k++) {
        if (!(R->resid_names[k] = mlmx_strdup(t->res_names[k])))
            return MLMX_ERR_NOMEM;
        R->resid_values[k] = t->res[k];
        R->nresid = k + 1;
    }
    return MLMX_OK;
}

void mlmx_pw_resid_result_free(mlmx_power_result *R)
{
    free(R->correlation);
    free(R->variance);
    for (int k = 0; k < R->nresid; k++)
        free(R->resid_names[k]);
    free(R->resid_names);
    free(R->resid_values);
}

void mlmx_pw_resid_text(mlmx_strbuf *b, const mlmx_power_result *R)
{
    if (!R->correlation && !R->variance)
        return;
    mlmx_sb_printf(b, "Residuals: %s%s%s", R->correlation ? R->correlation : "",
                   R->correlation && R->variance ? ", " : "", R->variance ? R->variance : "");
    for (int k = 0; k < R->nresid; k++)
        mlmx_sb_printf(b, "%s%s = %.6g", k ? ", " : "; ", R->resid_names[k], R->resid_values[k]);
    mlmx_sb_puts(b, "\n");
}

void mlmx_pw_resid_json(mlmx_strbuf *b, const mlmx_power_result *R)
{
    if (!R->correlation && !R->variance)
        return;
    mlmx_sb_puts(b, ",\n  \"correlation\": ");
    if (R->correlation)
        mlmx_json_str(b, R->correlation);
    else
        mlmx_sb_puts(b, "null");
    mlmx_sb_puts(b, ",\n  \"variance\": ");
    if (R->variance)
        mlmx_json_str(b, R->variance);
    else
        mlmx_sb_puts(b, "null");
    mlmx_sb_puts(b, ",\n  \"residual_parameters\": {");
    for (int k = 0; k < R->nresid; k++) {
        mlmx_sb_puts(b, k ? ", " : "");
        mlmx_json_str(b, R->resid_names[k]);
        mlmx_sb_puts(b, ": ");
        mlmx_json_num(b, R->resid_values[k]);
    }
    mlmx_sb_puts(b, "}");
}
