/* Formula variables evaluated against a data frame: numeric expressions,
 * factors (including factor(x) of a numeric column) and interactions used
 * as grouping factors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/eval.h"

void mlmx_levels_free(char **levels, int nlevels)
{
    if (!levels)
        return;
    for (int i = 0; i < nlevels; i++)
        free(levels[i]);
    free(levels);
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *r = malloc(n);
    if (r)
        memcpy(r, s, n);
    return r;
}

static int find_col(const mlmx_expr *e, const mlmx_data *d, mlmx_error *err)
{
    int j = mlmx_frame_find(d, e->name);
    if (j < 0)
        mlmx_err_set(err, MLMX_ERR_DATA, "unknown column '%s' (formula position %d)", e->name,
                     e->pos + 1);
    return j;
}

int mlmx_var_is_factor(const mlmx_expr *e, const mlmx_data *d, mlmx_error *err)
{
    if (e->kind == MLMX_EX_SYMBOL) {
        int j = find_col(e, d, err);
        if (j < 0)
            return -1;
        return d->cols[j].type == MLMX_COL_FACTOR;
    }
    if (e->kind == MLMX_EX_CALL && strcmp(e->name, "factor") == 0)
        return 1;
    if (e->kind == MLMX_EX_BINOP && e->op == ':')
        return 1;
    return 0;
}

static mlmx_status eval_rec(const mlmx_expr *e, const mlmx_data *d, double *out, int depth,
                            mlmx_error *err)
{
    size_t n = d->nrow;
    if (depth > 256)
        return mlmx_err_set(err, MLMX_ERR_FORMULA, "expression is nested too deeply");
    switch (e->kind) {
    case MLMX_EX_NUMBER:
        for (size_t i = 0; i < n; i++)
            out[i] = e->number;
        return MLMX_OK;
    case MLMX_EX_SYMBOL: {
        int j = find_col(e, d, err);
        if (j < 0)
            return MLMX_ERR_DATA;
        if (d->cols[j].type != MLMX_COL_NUMERIC)
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "column '%s' is a factor and cannot be used in arithmetic "
                                "(formula position %d)",
                                e->name, e->pos + 1);
        memcpy(out, d->cols[j].num, n * sizeof *out);
        return MLMX_OK;
    }
    case MLMX_EX_UNARY: {
        mlmx_status st = eval_rec(e->args[0], d, out, depth + 1, err);
        if (st)
            return st;
        if (e->op == '-')
            for (size_t i = 0; i < n; i++)
                out[i] = -out[i];
        return MLMX_OK;
    }
    case MLMX_EX_CALL: {
        const char *f = e->name;
        if (strcmp(f, "factor") == 0 || strcmp(f, "offset") == 0 || strcmp(f, "cbind") == 0)
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s() cannot be used in arithmetic (formula position %d)", f,
                                e->pos + 1);
        if (e->nargs != 1)
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s() takes one argument (formula position %d)", f, e->pos + 1);
        mlmx_status st = eval_rec(e->args[0], d, out, depth + 1, err);
        if (st)
            return st;
        if (strcmp(f, "log") == 0)
            for (size_t i = 0; i < n; i++)
                out[i] = log(out[i]);
        else if (strcmp(f, "exp") == 0)
            for (size_t i = 0; i < n; i++)
                out[i] = exp(out[i]);
        else if (strcmp(f, "sqrt") == 0)
            for (size_t i = 0; i < n; i++)
                out[i] = sqrt(out[i]);
        else if (strcmp(f, "abs") == 0)
            for (size_t i = 0; i < n; i++)
                out[i] = fabs(out[i]);
        /* I(): identity */
        return MLMX_OK;
    }
    case MLMX_EX_BINOP: {
        char op = e->op;
        if (op != '+' && op != '-' && op != '*' && op != '/' && op != '^')
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "operator '%c' cannot be used in arithmetic here (formula "
                                "position %d); wrap arithmetic in I(...)",
                                op == 'B' ? '|' : op, e->pos + 1);
        double *r = malloc((n ? n : 1) * sizeof *r);
        if (!r)
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        mlmx_status st = eval_rec(e->args[0], d, out, depth + 1, err);
        if (!st)
            st = eval_rec(e->args[1], d, r, depth + 1, err);
        if (!st)
            for (size_t i = 0; i < n; i++) {
                switch (op) {
                case '+': out[i] += r[i]; break;
                case '-': out[i] -= r[i]; break;
                case '*': out[i] *= r[i]; break;
                case '/': out[i] /= r[i]; break;
                default: out[i] = pow(out[i], r[i]); break;
                }
            }
        free(r);
        return st;
    }
    }
    return mlmx_err_set(err, MLMX_ERR_FORMULA, "cannot evaluate expression");
}

/* Rows where some column the expression reads is missing. */
static void mark_missing(const mlmx_expr *e, const mlmx_data *d, unsigned char *miss, int depth)
{
    if (depth > 256)
        return;
    if (e->kind == MLMX_EX_SYMBOL) {
        int j = mlmx_frame_find(d, e->name);
        if (j < 0)
            return;
        const mlmx_column *c = &d->cols[j];
        for (size_t i = 0; i < d->nrow; i++)
            if (c->type == MLMX_COL_NUMERIC ? isnan(c->num[i]) : c->codes[i] < 0)
                miss[i] = 1;
        return;
    }
    for (int a = 0; a < e->nargs; a++)
        mark_missing(e->args[a], d, miss, depth + 1);
}

mlmx_status mlmx_var_eval_numeric(const mlmx_expr *e, const mlmx_data *d, double *out,
                                  mlmx_error *err)
{
    mlmx_status st = eval_rec(e, d, out, 0, err);
    if (st)
        return st;
    unsigned char *miss = calloc(d->nrow ? d->nrow : 1, 1);
    if (!miss)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    mark_missing(e, d, miss, 0);
    for (size_t i = 0; i < d->nrow; i++) {
        if (miss[i]) {
            out[i] = NAN;
            continue;
        }
        if (!isfinite(out[i])) {
            char *name = mlmx_expr_deparse(e);
            st = mlmx_err_set(err, MLMX_ERR_DATA,
                              "'%s' is not finite (%g) in data row %zu; check the values or "
                              "the transformation",
                              name ? name : "expression", out[i], i + 1);
            free(name);
            break;
        }
    }
    free(miss);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* R's as.character() of a number, for factor(x) labels. */
static void num_label(double v, char *buf, size_t cap)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, cap, "%.0f", v);
    else
        snprintf(buf, cap, "%.15g", v);
}

mlmx_status mlmx_var_eval_factor(const mlmx_expr *e, const mlmx_data *d, int *codes,
                                 char ***levels, int *nlevels, mlmx_error *err)
{
    *levels = NULL;
    *nlevels = 0;
    size_t n = d->nrow;
    const mlmx_expr *arg = e;
    if (e->kind == MLMX_EX_CALL && strcmp(e->name, "factor") == 0) {
        if (e->nargs != 1)
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "factor() takes one argument (formula position %d)", e->pos + 1);
        arg = e->args[0];
    }
    if (arg->kind == MLMX_EX_SYMBOL) {
        int j = find_col(arg, d, err);
        if (j < 0)
            return MLMX_ERR_DATA;
        const mlmx_column *c = &d->cols[j];
        if (c->type == MLMX_COL_FACTOR) {
            char **lv = calloc((size_t)(c->nlevels ? c->nlevels : 1), sizeof *lv);
            if (!lv)
                return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            for (int l = 0; l < c->nlevels; l++) {
                lv[l] = dupstr(c->levels[l]);
                if (!lv[l]) {
                    mlmx_levels_free(lv, l);
                    return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
                }
            }
            memcpy(codes, c->codes, n * sizeof *codes);
            *levels = lv;
            *nlevels = c->nlevels;
            return MLMX_OK;
        }
    } else if (arg == e) {
        return mlmx_err_set(err, MLMX_ERR_DATA, "expression is not a factor (formula position %d)",
                            e->pos + 1);
    }
    /* numeric: distinct values in numeric order */
    double *v = malloc((n ? n : 1) * sizeof *v);
    double *u = malloc((n ? n : 1) * sizeof *u);
    if (!v || !u) {
        free(v);
        free(u);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    mlmx_status st = mlmx_var_eval_numeric(arg, d, v, err);
    if (st) {
        free(v);
        free(u);
        return st;
    }
    size_t nu = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i]))
            u[nu++] = v[i];
    qsort(u, nu, sizeof *u, cmp_dbl);
    size_t k = 0;
    for (size_t i = 0; i < nu; i++)
        if (k == 0 || u[i] != u[k - 1])
            u[k++] = u[i];
    char **lv = calloc(k ? k : 1, sizeof *lv);
    if (!lv) {
        free(v);
        free(u);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    for (size_t l = 0; l < k; l++) {
        char buf[64];
        num_label(u[l], buf, sizeof buf);
        lv[l] = dupstr(buf);
        if (!lv[l]) {
            mlmx_levels_free(lv, (int)l);
            free(v);
            free(u);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i])) {
            codes[i] = -1;
            continue;
        }
        size_t lo = 0, hi = k;
        while (lo + 1 < hi) {
            size_t mid = (lo + hi) / 2;
            if (u[mid] <= v[i])
                lo = mid;
            else
                hi = mid;
        }
        codes[i] = (int)lo;
    }
    free(v);
    free(u);
    *levels = lv;
    *nlevels = (int)k;
    return MLMX_OK;
}

static int cmp_key(const int *a, const int *b, int nv)
{
    for (int i = 0; i < nv; i++)
        if (a[i] != b[i])
            return (a[i] > b[i]) - (a[i] < b[i]);
    return 0;
}

mlmx_status mlmx_group_eval(mlmx_expr *const *vars, int nvars, const mlmx_data *d, int *codes,
                            char ***levels, int *nlevels, mlmx_error *err)
{
    *levels = NULL;
    *nlevels = 0;
    size_t n = d->nrow;
    if (nvars == 1)
        return mlmx_var_eval_factor(vars[0], d, codes, levels, nlevels, err);
    int *keys = malloc((n ? n : 1) * (size_t)nvars * sizeof *keys);
    char ***lv = calloc((size_t)nvars, sizeof *lv);
    int *nl = calloc((size_t)nvars, sizeof *nl);
    int *tmp = malloc((n ? n : 1) * sizeof *tmp);
    mlmx_status st = MLMX_OK;
    if (!keys || !lv || !nl || !tmp)
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    for (int v = 0; v < nvars && !st; v++) {
        st = mlmx_var_eval_factor(vars[v], d, tmp, &lv[v], &nl[v], err);
        if (!st)
            for (size_t i = 0; i < n; i++)
                keys[i * (size_t)nvars + (size_t)v] = tmp[i];
    }
    /* Observed combinations: sort the complete rows by their key, label each
     * distinct key once, then order the levels by label. */
    size_t *ord = NULL;
    if (!st) {
        ord = malloc((n ? n : 1) * sizeof *ord);
        if (!ord)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    char **ulab = NULL;
    size_t nuniq = 0;
    if (!st) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            int miss = 0;
            for (int v = 0; v < nvars; v++)
                if (keys[i * (size_t)nvars + (size_t)v] < 0)
                    miss = 1;
            if (!miss)
                ord[m++] = i;
            codes[i] = -1;
        }
        /* bottom-up merge sort of the rows by key (stable, O(n log n)) */
        size_t *buf = malloc((m ? m : 1) * sizeof *buf);
        if (!buf)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        for (size_t width = 1; !st && width < m; width *= 2) {
            for (size_t lo = 0; lo < m; lo += 2 * width) {
                size_t mid = lo + width < m ? lo + width : m;
                size_t hi = lo + 2 * width < m ? lo + 2 * width : m;
                size_t a = lo, b = mid, o = lo;
                while (a < mid && b < hi) {
                    if (cmp_key(keys + ord[b] * (size_t)nvars, keys + ord[a] * (size_t)nvars,
                                nvars) < 0)
                        buf[o++] = ord[b++];
                    else
                        buf[o++] = ord[a++];
                }
                while (a < mid)
                    buf[o++] = ord[a++];
                while (b < hi)
                    buf[o++] = ord[b++];
            }
            memcpy(ord, buf, m * sizeof *ord);
        }
        free(buf);
        /* distinct keys get provisional ids; labels joined with ':' */
        if (!st) {
            ulab = calloc(m ? m : 1, sizeof *ulab);
            if (!ulab)
                st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        for (size_t r = 0; !st && r < m; r++) {
            const int *k = keys + ord[r] * (size_t)nvars;
            if (r == 0 || cmp_key(k, keys + ord[r - 1] * (size_t)nvars, nvars) != 0) {
                size_t len = 1;
                for (int v = 0; v < nvars; v++)
                    len += strlen(lv[v][k[v]]) + 1;
                char *s = malloc(len);
                if (!s) {
                    st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
                    break;
                }
                s[0] = '\0';
                for (int v = 0; v < nvars; v++) {
                    if (v)
                        strcat(s, ":");
                    strcat(s, lv[v][k[v]]);
                }
                ulab[nuniq++] = s;
            }
            codes[ord[r]] = (int)nuniq - 1;
        }
        /* final level order: byte order of the labels */
        if (!st && nuniq) {
            char **sorted = malloc(nuniq * sizeof *sorted);
            int *remap = malloc(nuniq * sizeof *remap);
            if (!sorted || !remap) {
                free(sorted);
                free(remap);
                st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            } else {
                memcpy(sorted, ulab, nuniq * sizeof *sorted);
                qsort(sorted, nuniq, sizeof *sorted, cmp_str);
                for (size_t u = 0; u < nuniq; u++) {
                    char **hit = bsearch(&ulab[u], sorted, nuniq, sizeof *sorted, cmp_str);
                    remap[u] = (int)(hit - sorted);
                }
                for (size_t i = 0; i < n; i++)
                    if (codes[i] >= 0)
                        codes[i] = remap[codes[i]];
                free(ulab);
                ulab = sorted;
                free(remap);
            }
        }
    }
    if (!st) {
        *levels = ulab;
        *nlevels = (int)nuniq;
        ulab = NULL;
    }
    if (ulab) {
        for (size_t u = 0; u < nuniq; u++)
            free(ulab[u]);
        free(ulab);
    }
    for (int v = 0; lv && v < nvars; v++)
        mlmx_levels_free(lv[v], nl[v]);
    free(lv);
    free(nl);
    free(keys);
    free(tmp);
    free(ord);
    return st;
}
