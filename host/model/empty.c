/* The empty model of a fitted one: y ~ 1 + (1 | g) on the same rows, built
 * from the model itself (no data needed), for Snijders & Bosker's R²
 * (host/infer/variance.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/strbuf.h"

static char **strv_copy(char *const *v, int n)
{
    char **c = calloc((size_t)(n ? n : 1), sizeof *c);
    for (int i = 0; c && i < n; i++)
        if (!(c[i] = mlmx_strdup(v[i]))) {
            for (int j = 0; j < i; j++)
                free(c[j]);
            free(c);
            return NULL;
        }
    return c;
}

/* Term k's grouping factor with one random intercept. */
static int copy_term(const mlmx_reterm_info *r, size_t n, mlmx_reterm_info *t)
{
    t->group = mlmx_strdup(r->group);
    t->vcname = mlmx_strdup(r->group);
    t->nlevels = r->nlevels;
    t->levels = strv_copy(r->levels, r->nlevels);
    t->codes = malloc((n ? n : 1) * sizeof *t->codes);
    t->level_count = malloc((size_t)r->nlevels * sizeof *t->level_count);
    t->q = 1;
    t->colnames = calloc(1, sizeof *t->colnames);
    t->z = malloc((n ? n : 1) * sizeof *t->z);
    if (!t->group || !t->vcname || !t->levels || !t->codes || !t->level_count ||
        !t->colnames || !(t->colnames[0] = mlmx_strdup("(Intercept)")) || !t->z)
        return -1;
    memcpy(t->codes, r->codes, n * sizeof *t->codes);
    memcpy(t->level_count, r->level_count, (size_t)r->nlevels * sizeof *t->level_count);
    for (size_t i = 0; i < n; i++)
        t->z[i] = 1.0;
    t->theta_offset = 0;
    return 0;
}

mlmx_status mlmx_model_empty(const mlmx_model *m, int k, mlmx_model **out, mlmx_error *err)
{
    *out = NULL;
    if (k < 0 || k >= m->K || m->resp_kind != MLMX_RESP_NUMERIC || m->weights || m->offset)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "the empty model needs a numeric response without weights or "
                            "offset");
    mlmx_model *e = calloc(1, sizeof *e);
    if (!e)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    const size_t n = m->n;
    e->n = n;
    e->formula = mlmx_asprintf("%s ~ 1 + (1 | %s)", m->response_name, m->re[k].group);
    e->source = mlmx_strdup(m->source ? m->source : "");
    e->response_name = mlmx_strdup(m->response_name);
    e->rows = malloc((n ? n : 1) * sizeof *e->rows);
    e->y = malloc((n ? n : 1) * sizeof *e->y);
    e->X = malloc((n ? n : 1) * sizeof *e->X);
    e->fixef_names = calloc(1, sizeof *e->fixef_names);
    e->fixef_cell = calloc(1, sizeof *e->fixef_cell);
    e->re = calloc(1, sizeof *e->re);
    e->theta_lower = calloc(1, sizeof *e->theta_lower);
    e->theta_names = calloc(1, sizeof *e->theta_names);
    int bad = !e->formula || !e->source || !e->response_name || !e->rows || !e->y || !e->X ||
              !e->fixef_names || !e->fixef_cell || !e->re || !e->theta_lower || !e->theta_names;
    if (!bad) {
        e->p = 1;
        e->K = 1;
        e->ntheta = 1;
        memcpy(e->rows, m->rows, n * sizeof *e->rows);
        memcpy(e->y, m->y, n * sizeof *e->y);
        for (size_t i = 0; i < n; i++)
            e->X[i] = 1.0;
        bad = !(e->fixef_names[0] = mlmx_strdup("(Intercept)")) ||
              !(e->fixef_cell[0] = malloc(sizeof **e->fixef_cell)) || copy_term(&m->re[k], n, e->re) ||
              !(e->theta_names[0] = mlmx_asprintf("%s.(Intercept)", m->re[k].group));
        if (!bad)
            e->fixef_cell[0][0] = -1;
    }
    if (bad) {
        mlmx_model_destroy(e);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    *out = e;
    return MLMX_OK;
}
