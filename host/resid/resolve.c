#define _POSIX_C_SOURCE 200809L
/* Resolving residual structures on the model's rows: groups ordered by
 * time, strata, the variance covariate, and the parameters' names,
 * bounds and starting values. */
#include "resid/resid_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mlmx_resid_free(mlmx_resid *r)
{
    if (!r)
        return;
    free(r->corr_text);
    free(r->corr_time);
    free(r->corr_group);
    free(r->gstart);
    free(r->gobs);
    free(r->gtime);
    free(r->var_text);
    free(r->var_name);
    for (int k = 0; k < r->nstrata; k++)
        free(r->strata[k]);
    free(r->strata);
    free(r->stratum);
    free(r->vcov);
    for (int k = 0; k < r->npar; k++)
        free(r->par_names[k]);
    free(r->par_names);
    free(r->lower);
    free(r->upper);
    free(r->start);
    free(r);
}

/* The value of column c at data row `row` as a number for ordering
 * (factor code or numeric value); NaN when missing. */
static double key_value(const mlmx_column *c, size_t row)
{
    if (c->type == MLMX_COL_FACTOR)
        return c->codes[row] < 0 ? NAN : (double)c->codes[row];
    return c->num[row];
}

typedef struct {
    const mlmx_column **cols;
    int ncols;
    const size_t *rows;
    const double *time; /* per observation, or NULL (observation order) */
} sort_ctx;

static sort_ctx *g_sort; /* qsort has no context argument in C11 */

static int cmp_obs(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    for (int c = 0; c < g_sort->ncols; c++) {
        double va = key_value(g_sort->cols[c], g_sort->rows[a]);
        double vb = key_value(g_sort->cols[c], g_sort->rows[b]);
        if (va != vb)
            return va < vb ? -1 : 1;
    }
    if (g_sort->time && g_sort->time[a] != g_sort->time[b])
        return g_sort->time[a] < g_sort->time[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int same_group(const sort_ctx *sc, size_t a, size_t b)
{
    for (int c = 0; c < sc->ncols; c++)
        if (key_value(sc->cols[c], sc->rows[a]) != key_value(sc->cols[c], sc->rows[b]))
            return 0;
    return 1;
}

/* Look up the grouping variables of `group` ("a/b", "a:b", "Subject"). */
static mlmx_status group_columns(const mlmx_data *d, const char *what, const char *group,
                                 const mlmx_column ***out, int *ncols, mlmx_error *err)
{
    int cap = 1;
    for (const char *c = group; *c; c++)
        cap += *c == '/' || *c == ':';
    const mlmx_column **cols = calloc((size_t)cap, sizeof *cols);
    char *copy = strdup(group);
    if (!cols || !copy) {
        free(cols);
        free(copy);
        return MLMX_ERR_NOMEM;
    }
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, "/:", &save); tok; tok = strtok_r(NULL, "/:", &save)) {
        while (*tok == ' ')
            tok++;
        char *e = tok + strlen(tok);
        while (e > tok && e[-1] == ' ')
            *--e = '\0';
        int j = mlmx_frame_find(d, tok);
        if (j < 0) {
            mlmx_err_set(err, MLMX_ERR_DATA, "%s: grouping variable '%s' is not a column of %s",
                         what, tok, d->source && d->source[0] ? d->source : "the data");
            free(cols);
            free(copy);
            return MLMX_ERR_DATA;
        }
        cols[n++] = &d->cols[j];
    }
    free(copy);
    *out = cols;
    *ncols = n;
    return MLMX_OK;
}

/* A numeric column of d named name, checked on the model's rows. */
static mlmx_status numeric_column(const mlmx_data *d, const char *what, const char *role,
                                  const char *name, const size_t *rows, size_t n,
                                  const mlmx_column **out, mlmx_error *err)
{
    int j = mlmx_frame_find(d, name);
    if (j < 0)
        return mlmx_err_set(err, MLMX_ERR_DATA, "%s: %s '%s' is not a column of %s", what, role,
                            name, d->source && d->source[0] ? d->source : "the data");
    const mlmx_column *c = &d->cols[j];
    if (c->type != MLMX_COL_NUMERIC)
        return mlmx_err_set(err, MLMX_ERR_DATA, "%s: %s '%s' is a factor; it must be numeric",
                            what, role, name);
    for (size_t i = 0; i < n; i++)
        if (isnan(c->num[rows[i]]))
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "%s: %s '%s' is missing at data row %zu (a row the model uses; "
                                "drop such rows first)",
                                what, role, name, rows[i] + 1);
    *out = c;
    return MLMX_OK;
}

/* Groups and times of the correlation. */
static mlmx_status resolve_groups(mlmx_resid *r, const mlmx_data *d, const size_t *rows, size_t n,
                                  const char *group, mlmx_error *err)
{
    const char *what = "--correlation";
    const mlmx_column **cols = NULL;
    int ncols = 0;
    mlmx_status st = group_columns(d, what, group, &cols, &ncols, err);
    if (st)
        return st;
    for (int c = 0; c < ncols; c++)
        for (size_t i = 0; i < n; i++)
            if (isnan(key_value(cols[c], rows[i]))) {
                free(cols);
                return mlmx_err_set(err, MLMX_ERR_DATA,
                                    "%s: grouping variable '%s' is missing at data row %zu", what,
                                    cols[c]->name, rows[i] + 1);
            }
    double *time = malloc((n ? n : 1) * sizeof *time);
    r->gobs = malloc((n ? n : 1) * sizeof *r->gobs);
    r->gtime = malloc((n ? n : 1) * sizeof *r->gtime);
    r->gstart = malloc((n + 1) * sizeof *r->gstart);
    if (!time || !r->gobs || !r->gtime || !r->gstart) {
        free(cols);
        free(time);
        return MLMX_ERR_NOMEM;
    }
    const mlmx_column *tc = NULL;
    if (r->corr_time) {
        st = numeric_column(d, what, "time", r->corr_time, rows, n, &tc, err);
        if (st) {
            free(cols);
            free(time);
            return st;
        }
    }
    for (size_t i = 0; i < n; i++) {
        double t = tc ? tc->num[rows[i]] : (double)i;
        if (tc && (r->corr == MLMX_CORR_AR1 || r->corr == MLMX_CORR_ARMA) && t != trunc(t)) {
            r->time_truncated = 1;
            t = trunc(t);
        }
        time[i] = t;
        r->gobs[i] = i;
    }
    sort_ctx sc = {cols, ncols, rows, time};
    g_sort = &sc;
    qsort(r->gobs, n, sizeof *r->gobs, cmp_obs);
    g_sort = NULL;
    int ng = 0;
    for (size_t o = 0; o < n; o++) {
        size_t i = r->gobs[o];
        if (o == 0 || !same_group(&sc, r->gobs[o - 1], i))
            r->gstart[ng++] = o;
        else if (r->corr != MLMX_CORR_CS && time[r->gobs[o - 1]] == time[i]) {
            mlmx_err_set(err, MLMX_ERR_DATA,
                         "%s '%s': data rows %zu and %zu have the same time %g%s in one group "
                         "of '%s'; times must be distinct within a group",
                         what, r->corr_text, rows[r->gobs[o - 1]] + 1, rows[i] + 1, time[i],
                         r->time_truncated ? " (after truncation to an integer)" : "", group);
            free(cols);
            free(time);
            return MLMX_ERR_DATA;
        }
        r->gtime[o] = time[i];
    }
    r->gstart[ng] = n;
    r->ngroups = ng;
    for (int g = 0; g < ng; g++) {
        int sz = (int)(r->gstart[g + 1] - r->gstart[g]);
        if (sz > r->max_gsize)
            r->max_gsize = sz;
        /* row order: positions 0, 1, ... within the group */
        if (!tc)
            for (size_t o = r->gstart[g]; o < r->gstart[g + 1]; o++)
                r->gtime[o] = (double)(o - r->gstart[g]);
    }
    free(cols);
    free(time);
    return MLMX_OK;
}

/* Strata of varIdent: the levels present, in the factor's order (numeric
 * values in increasing order); the first is the reference. */
static mlmx_status resolve_strata(mlmx_resid *r, const mlmx_data *d, const size_t *rows, size_t n,
                                  mlmx_error *err)
{
    const char *what = "--variance";
    const mlmx_column **cols = NULL;
    int ncols = 0;
    mlmx_status st = group_columns(d, what, r->var_name, &cols, &ncols, err);
    if (st)
        return st;
    size_t *ord = malloc((n ? n : 1) * sizeof *ord);
    r->stratum = malloc((n ? n : 1) * sizeof *r->stratum);
    r->strata = calloc(n ? n : 1, sizeof *r->strata);
    if (!ord || !r->stratum || !r->strata) {
        free(cols);
        free(ord);
        return MLMX_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ord[i] = i;
        for (int c = 0; c < ncols; c++)
            if (isnan(key_value(cols[c], rows[i]))) {
                mlmx_err_set(err, MLMX_ERR_DATA, "%s: stratum variable '%s' is missing at data "
                             "row %zu", what, cols[c]->name, rows[i] + 1);
                free(cols);
                free(ord);
                return MLMX_ERR_DATA;
            }
    }
    sort_ctx sc = {cols, ncols, rows, NULL};
    g_sort = &sc;
    qsort(ord, n, sizeof *ord, cmp_obs);
    g_sort = NULL;
    int ns = 0;
    for (size_t o = 0; o < n; o++) {
        size_t i = ord[o];
        if (o == 0 || !same_group(&sc, ord[o - 1], i)) {
            char label[256] = "", part[96];
            for (int c = 0; c < ncols; c++) {
                const mlmx_column *col = cols[c];
                if (col->type == MLMX_COL_FACTOR)
                    snprintf(part, sizeof part, "%s", col->levels[col->codes[rows[i]]]);
                else
                    snprintf(part, sizeof part, "%g", col->num[rows[i]]);
                size_t len = strlen(label);
                snprintf(label + len, sizeof label - len, "%s%s", c ? ":" : "", part);
            }
            r->strata[ns] = strdup(label);
            if (!r->strata[ns]) {
                free(cols);
                free(ord);
                return MLMX_ERR_NOMEM;
            }
            ns++;
        }
        r->stratum[i] = ns - 1;
    }
    r->nstrata = ns;
    free(cols);
    free(ord);
    if (ns < 2)
        return mlmx_err_set(err, MLMX_ERR_DATA,
                            "%s '%s': '%s' takes one value on the model's rows; ident needs two "
                            "strata or more",
                            what, r->var_text, r->var_name);
    return MLMX_OK;
}

static mlmx_status resolve_power(mlmx_resid *r, const mlmx_data *d, const size_t *rows, size_t n,
                                 mlmx_error *err)
{
    const mlmx_column *c = NULL;
    mlmx_status st = numeric_column(d, "--variance", "covariate", r->var_name, rows, n, &c, err);
    if (st)
        return st;
    r->vcov = malloc((n ? n : 1) * sizeof *r->vcov);
    if (!r->vcov)
        return MLMX_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        r->vcov[i] = fabs(c->num[rows[i]]);
        if (r->vcov[i] == 0.0)
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "--variance '%s': covariate '%s' is 0 at data row %zu; a power "
                                "variance needs |%s| > 0",
                                r->var_text, r->var_name, rows[i] + 1, r->var_name);
    }
    return MLMX_OK;
}

static mlmx_status set_params(mlmx_resid *r, mlmx_error *err)
{
    const double one = 1.0 - 1e-6;
    r->ncorr = r->corr == MLMX_CORR_NONE ? 0
               : r->corr == MLMX_CORR_ARMA ? r->arma_p + r->arma_q
                                           : 1;
    r->nvar = r->var == MLMX_VAR_IDENT ? r->nstrata - 1 : r->var == MLMX_VAR_POWER ? 1 : 0;
    r->npar = r->ncorr + r->nvar;
    size_t np = (size_t)(r->npar ? r->npar : 1);
    r->par_names = calloc(np, sizeof *r->par_names);
    r->lower = malloc(np * sizeof *r->lower);
    r->upper = malloc(np * sizeof *r->upper);
    r->start = malloc(np * sizeof *r->start);
    if (!r->par_names || !r->lower || !r->upper || !r->start)
        return MLMX_ERR_NOMEM;
    if (r->corr != MLMX_CORR_NONE && r->max_gsize < 2)
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "--correlation '%s': every group has a single observation, so there "
                            "is no correlation to estimate",
                            r->corr_text);
    for (int k = 0; k < r->npar; k++) {
        char name[160];
        double lo = -one, hi = one, st = 0.0;
        if (k >= r->ncorr) {
            int v = k - r->ncorr;
            if (r->var == MLMX_VAR_IDENT) {
                snprintf(name, sizeof name, "%s", r->strata[v + 1]);
                lo = -15.0; /* log SD ratio */
                hi = 15.0;
            } else {
                snprintf(name, sizeof name, "power");
                lo = -10.0;
                hi = 10.0;
            }
        } else if (r->corr == MLMX_CORR_ARMA) {
            if (k < r->arma_p)
                snprintf(name, sizeof name, "Phi%d", k + 1);
            else
                snprintf(name, sizeof name, "Theta%d", k - r->arma_p + 1);
        } else if (r->corr == MLMX_CORR_CS) {
            snprintf(name, sizeof name, "Rho");
            lo = -1.0 / (r->max_gsize - 1) + 1e-6;
        } else {
            snprintf(name, sizeof name, "Phi");
            if (r->corr == MLMX_CORR_CAR1) {
                lo = 0.0;
                st = 0.2; /* nlme's start */
            }
        }
        r->par_names[k] = strdup(name);
        if (!r->par_names[k])
            return MLMX_ERR_NOMEM;
        r->lower[k] = lo;
        r->upper[k] = hi;
        r->start[k] = st;
    }
    return MLMX_OK;
}

static char *canonical(const char *kind, const mlmx_resid_spec *sp, const char *group)
{
    char buf[1024];
    char orders[32] = "";
    if (sp->corr == MLMX_CORR_ARMA)
        snprintf(orders, sizeof orders, "%d, %d, ", sp->p, sp->q);
    if (group)
        snprintf(buf, sizeof buf, "%s(%s~ %s | %s)", kind, orders, sp->time ? sp->time : "1",
                 group);
    else
        snprintf(buf, sizeof buf, "%s(%s~ %s)", kind, orders, sp->time ? sp->time : "1");
    return strdup(buf);
}

static const char *corr_word(mlmx_corr_kind k)
{
    return k == MLMX_CORR_AR1 ? "ar1" : k == MLMX_CORR_CAR1 ? "car1" : k == MLMX_CORR_CS ? "cs"
                                                                                         : "arma";
}

static int blank(const char *s)
{
    if (!s)
        return 1;
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == '\0';
}

mlmx_status mlmx_resid_build(const mlmx_data *d, const size_t *rows, size_t n,
                             const char *correlation, const char *variance,
                             const char *default_group, mlmx_resid **out, mlmx_error *err)
{
    *out = NULL;
    if (blank(correlation) && blank(variance))
        return MLMX_OK;
    mlmx_resid *r = calloc(1, sizeof *r);
    if (!r)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    mlmx_resid_spec cs = {0}, vs = {0};
    mlmx_status st = MLMX_OK;
    if (!blank(correlation)) {
        st = mlmx_resid_parse("--correlation", correlation, 1, &cs, err);
        if (!st) {
            const char *group = cs.group ? cs.group : default_group;
            r->corr = cs.corr;
            r->arma_p = cs.p;
            r->arma_q = cs.q;
            r->corr_text = canonical(corr_word(cs.corr), &cs, group);
            r->corr_group = group ? strdup(group) : NULL;
            if (cs.time)
                r->corr_time = strdup(cs.time);
            if (!r->corr_text || !r->corr_group || (cs.time && !r->corr_time))
                st = MLMX_ERR_NOMEM;
            if (!st)
                st = resolve_groups(r, d, rows, n, group, err);
        }
    }
    if (!st && !blank(variance)) {
        st = mlmx_resid_parse("--variance", variance, 0, &vs, err);
        if (!st) {
            r->var = vs.var;
            r->var_text = canonical(vs.var == MLMX_VAR_IDENT ? "ident" : "power", &vs, vs.group);
            r->var_name = strdup(vs.var == MLMX_VAR_IDENT ? vs.group : vs.time);
            if (!r->var_text || !r->var_name)
                st = MLMX_ERR_NOMEM;
            else if (vs.var == MLMX_VAR_IDENT)
                st = resolve_strata(r, d, rows, n, err);
            else
                st = resolve_power(r, d, rows, n, err);
        }
    }
    if (!st)
        st = set_params(r, err);
    mlmx_resid_spec_clear(&cs);
    mlmx_resid_spec_clear(&vs);
    if (st) {
        if (st == MLMX_ERR_NOMEM)
            mlmx_err_set(err, st, "out of memory resolving the residual structure");
        mlmx_resid_free(r);
        return st;
    }
    *out = r;
    return MLMX_OK;
}
