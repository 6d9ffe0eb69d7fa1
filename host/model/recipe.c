/* The recipe of a model's variables: recorded while the model matrices are
 * built, applied to new data so that its rows are coded as the model's
 * (prediction from a saved model, docs/model-file.md). */
#include <stdlib.h>
#include <string.h>

#include "model/eval.h"
#include "model/model.h"
#include "util/strbuf.h"

void mlmx_recipe_clear(mlmx_recipe *rc)
{
    if (!rc)
        return;
    for (int v = 0; v < rc->nvars; v++) {
        free(rc->vars[v].name);
        mlmx_levels_free(rc->vars[v].levels, rc->vars[v].nlevels);
    }
    free(rc->vars);
    rc->vars = NULL;
    rc->nvars = 0;
}

static const mlmx_recipe_var *find(const mlmx_recipe *rc, const char *name)
{
    for (int v = 0; v < rc->nvars; v++)
        if (strcmp(rc->vars[v].name, name) == 0)
            return &rc->vars[v];
    return NULL;
}

/* A malloc'd copy of n labels, or NULL (n = 0 gives a 1-slot array). */
static char **copy_levels(char *const *levels, int n)
{
    char **c = calloc((size_t)(n ? n : 1), sizeof *c);
    if (!c)
        return NULL;
    for (int l = 0; l < n; l++)
        if (!(c[l] = mlmx_strdup(levels[l]))) {
            mlmx_levels_free(c, l);
            return NULL;
        }
    return c;
}

mlmx_status mlmx_recipe_record(mlmx_recipe *rc, const char *name, int is_factor,
                               char *const *levels, int nlevels, mlmx_error *err)
{
    if (find(rc, name))
        return MLMX_OK;
    mlmx_recipe_var *nv = realloc(rc->vars, (size_t)(rc->nvars + 1) * sizeof *nv);
    if (!nv)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    rc->vars = nv;
    mlmx_recipe_var *v = &rc->vars[rc->nvars];
    memset(v, 0, sizeof *v);
    v->name = mlmx_strdup(name);
    v->is_factor = is_factor;
    v->nlevels = is_factor ? nlevels : 0;
    v->levels = is_factor ? copy_levels(levels, nlevels) : NULL;
    if (!v->name || (is_factor && !v->levels)) {
        free(v->name);
        mlmx_levels_free(v->levels, v->nlevels);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    rc->nvars++;
    return MLMX_OK;
}

mlmx_status mlmx_recipe_apply(const mlmx_recipe *rc, const char *name, int is_factor,
                              char ***levels, int *nlevels, int *codes, const size_t *rows,
                              size_t n, mlmx_error *err)
{
    const mlmx_recipe_var *v = find(rc, name);
    if (!v)
        return mlmx_err_set(err, MLMX_ERR_MODEL, "the model's recipe has no variable '%s'", name);
    if (v->is_factor != is_factor)
        return mlmx_err_set(err, MLMX_ERR_DATA,
                            "variable '%s' was fitted with type \"%s\" but type \"%s\" was "
                            "supplied",
                            name, v->is_factor ? "factor" : "numeric",
                            is_factor ? "factor" : "numeric");
    if (!is_factor)
        return MLMX_OK;
    /* new code -> recorded code, by label */
    int *map = malloc((size_t)(*nlevels ? *nlevels : 1) * sizeof *map);
    if (!map)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    for (int l = 0; l < *nlevels; l++) {
        map[l] = -1;
        for (int r = 0; r < v->nlevels && map[l] < 0; r++)
            if (strcmp((*levels)[l], v->levels[r]) == 0)
                map[l] = r;
    }
    for (size_t i = 0; i < n; i++) {
        if (codes[i] < 0)
            continue;
        if (map[codes[i]] < 0) {
            mlmx_status st = mlmx_err_set(err, MLMX_ERR_DATA,
                                          "factor '%s' has new level '%s' in data row %zu (the "
                                          "model was fitted without it)",
                                          name, (*levels)[codes[i]], rows[i] + 1);
            free(map);
            return st;
        }
        codes[i] = map[codes[i]];
    }
    free(map);
    char **c = copy_levels(v->levels, v->nlevels);
    if (!c)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    mlmx_levels_free(*levels, *nlevels);
    *levels = c;
    *nlevels = v->nlevels;
    return MLMX_OK;
}
