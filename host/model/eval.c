/* Formula variables evaluated against a data frame: numeric expressions,
 * factors (factor columns, and factor(x) of a numeric expression with R's
 * level labels) and interactions used as grouping factors. */

#include "model/eval.h"
#include "util/strbuf.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hand-built trees are not depth-checked by the parser; bound recursion. */
#define EVAL_MAX_DEPTH 2000

void mlmx_levels_free(char **levels, int nlevels)
{
    if (!levels)
        return;
    for (int i = 0; i < nlevels; i++)
        free(levels[i]);
    free(levels);
}

static mlmx_status nomem(mlmx_error *err)
{
    return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory evaluating the formula");
}

/* The expression as R prints it, for messages ("?" if out of memory). */
static void expr_text(const mlmx_expr *e, char *buf, size_t size)
{
    char *s = mlmx_expr_deparse(e);
    const char *t = s ? s : "?";
    size_t n = strlen(t);
    if (n >= size && size > 4) {
        memcpy(buf, t, size - 4);
        memcpy(buf + size - 4, "...", 4);
    } else {
        snprintf(buf, size, "%s", t);
    }
    free(s);
}

static int find_column(const mlmx_expr *e, const mlmx_data *d, mlmx_error *err)
{
    int j = mlmx_frame_find(d, e->name);
    if (j < 0)
        mlmx_err_set(err, MLMX_ERR_DATA, "unknown column '%s' (formula position %d)", e->name,
                     e->pos + 1);
    return j;
}

/* Every symbol below e must name a column. */
static int check_symbols(const mlmx_expr *e, const mlmx_data *d, mlmx_error *err, int depth)
{
    if (depth > EVAL_MAX_DEPTH) {
        mlmx_err_set(err, MLMX_ERR_ARG, "expression nested too deeply");
        return -1;
    }
    if (e->kind == MLMX_EX_SYMBOL)
        return find_column(e, d, err) < 0 ? -1 : 0;
    for (int i = 0; i < e->nargs; i++)
        if (check_symbols(e->args[i], d, err, depth + 1) != 0)
            return -1;
    return 0;
}

static int is_call(const mlmx_expr *e, const char *name)
{
    return e->kind == MLMX_EX_CALL && strcmp(e->name, name) == 0;
}

int mlmx_var_is_factor(const mlmx_expr *e, const mlmx_data *d, mlmx_error *err)
{
    if (!e || !d) {
        mlmx_err_set(err, MLMX_ERR_ARG, "invalid argument");
        return -1;
    }
    if (check_symbols(e, d, err, 0) != 0)
        return -1;
    if (e->kind == MLMX_EX_SYMBOL)
        return d->cols[mlmx_frame_find(d, e->name)].type == MLMX_COL_FACTOR;
    if (is_call(e, "factor"))
        return 1;
    if (e->kind == MLMX_EX_BINOP && e->op == ':')
        return 1;
    return 0;
}

/* ------------------------------------------------------------------ numeric */

/* A non-finite value computed from finite inputs (log(0), sqrt(-1), 1/0)
 * would otherwise be mistaken for a missing value further on. */
static mlmx_status not_finite(const mlmx_expr *e, size_t row, mlmx_error *err)
{
    char t[160];
    expr_text(e, t, sizeof t);
    return mlmx_err_set(err, MLMX_ERR_DATA,
                        "'%s' is not finite at row %zu of the data (formula position %d)", t,
                        row + 1, e->pos + 1);
}

static mlmx_status num_rec(const mlmx_expr *e, const mlmx_data *d, double *out, mlmx_error *err,
                           int depth)
{
    size_t n = d->nrow;
    char t[160];
    if (depth > EVAL_MAX_DEPTH)
        return mlmx_err_set(err, MLMX_ERR_ARG, "expression nested too deeply");

    switch (e->kind) {
    case MLMX_EX_NUMBER:
        for (size_t i = 0; i < n; i++)
            out[i] = e->number;
        return MLMX_OK;

    case MLMX_EX_SYMBOL: {
        int j = find_column(e, d, err);
        if (j < 0)
            return MLMX_ERR_DATA;
        const mlmx_column *c = &d->cols[j];
        if (c->type != MLMX_COL_NUMERIC)
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "column '%s' is a factor and cannot be used as a number "
                                "(formula position %d)",
                                e->name, e->pos + 1);
        if (n)
            memcpy(out, c->num, n * sizeof *out);
        return MLMX_OK;
    }

    case MLMX_EX_UNARY: {
        mlmx_status st = num_rec(e->args[0], d, out, err, depth + 1);
        if (st == MLMX_OK && e->op == '-')
            for (size_t i = 0; i < n; i++)
                out[i] = -out[i];
        return st;
    }

    case MLMX_EX_CALL: {
        int fn;
        if (is_call(e, "I") || is_call(e, "offset"))
            fn = 0;
        else if (is_call(e, "log"))
            fn = 1;
        else if (is_call(e, "exp"))
            fn = 2;
        else if (is_call(e, "sqrt"))
            fn = 3;
        else if (is_call(e, "abs"))
            fn = 4;
        else {
            expr_text(e, t, sizeof t);
            return mlmx_err_set(err, MLMX_ERR_DATA, "'%s' is not numeric (formula position %d)",
                                t, e->pos + 1);
        }
        if (e->nargs != 1)
            return mlmx_err_set(err, MLMX_ERR_ARG, "%s() takes one argument", e->name);
        mlmx_status st = num_rec(e->args[0], d, out, err, depth + 1);
        if (st != MLMX_OK || fn == 0)
            return st;
        for (size_t i = 0; i < n; i++) {
            double x = out[i], r;
            if (isnan(x))
                continue;
            switch (fn) {
            case 1: r = log(x); break;
            case 2: r = exp(x); break;
            case 3: r = sqrt(x); break;
            default: r = fabs(x); break;
            }
            if (!isfinite(r))
                return not_finite(e, i, err);
            out[i] = r;
        }
        return MLMX_OK;
    }

    case MLMX_EX_BINOP: {
        if (!strchr("+-*/^<>lgen", e->op) || e->op == '\0') {
            expr_text(e, t, sizeof t);
            return mlmx_err_set(err, MLMX_ERR_DATA,
                                "'%s' cannot be evaluated as a number: only + - * / ^ and "
                                "comparisons are supported in arithmetic (formula position %d)",
                                t, e->pos + 1);
        }
        mlmx_status st = num_rec(e->args[0], d, out, err, depth + 1);
        if (st != MLMX_OK)
            return st;
        double *r = malloc((n ? n : 1) * sizeof *r);
        if (!r)
            return nomem(err);
        st = num_rec(e->args[1], d, r, err, depth + 1);
        for (size_t i = 0; st == MLMX_OK && i < n; i++) {
            double a = out[i], b = r[i], v;
            if (isnan(a) || isnan(b)) {
                out[i] = NAN;
                continue;
            }
            switch (e->op) {
            case '+': v = a + b; break;
            case '-': v = a - b; break;
            case '*': v = a * b; break;
            case '/': v = a / b; break;
            /* comparisons give 1 or 0, as R's TRUE and FALSE in arithmetic */
            case '<': v = a < b; break;
            case '>': v = a > b; break;
            case 'l': v = a <= b; break;
            case 'g': v = a >= b; break;
            case 'e': v = a == b; break;
            case 'n': v = a != b; break;
            default: v = pow(a, b); break;
            }
            if (!isfinite(v))
                st = not_finite(e, i, err);
            out[i] = v;
        }
        free(r);
        return st;
    }
    }
    return mlmx_err_set(err, MLMX_ERR_ARG, "invalid expression");
}

mlmx_status mlmx_var_eval_numeric(const mlmx_expr *e, const mlmx_data *d, double *out,
                                  mlmx_error *err)
{
    if (!e || !d || (!out && d->nrow))
        return mlmx_err_set(err, MLMX_ERR_ARG, "invalid argument");
    return num_rec(e, d, out, err, 0);
}

/* ------------------------------------------------------------------ factors */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* factor() of numbers: levels are the distinct values in numeric order,
 * labelled as R's as.character() prints them; values that print the same
 * (0.1 + 0.2 and 0.3) are one level, as in R. */
static mlmx_status factor_numeric(const double *v, size_t n, int *codes, char ***levels,
                                  int *nlevels, mlmx_error *err)
{
    double *u = malloc((n ? n : 1) * sizeof *u);
    if (!u)
        return nomem(err);
    size_t nu = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i]))
            u[nu++] = v[i];
    qsort(u, nu, sizeof *u, cmp_double);
    size_t k = 0;
    for (size_t i = 0; i < nu; i++)
        if (k == 0 || u[i] != u[k - 1])
            u[k++] = u[i];
    if (k > (size_t)INT32_MAX) {
        free(u);
        return mlmx_err_set(err, MLMX_ERR_DATA, "too many factor levels");
    }

    /* lab[i]: level index of the distinct value u[i] */
    int *lab = malloc((k ? k : 1) * sizeof *lab);
    char **lv = calloc(k ? k : 1, sizeof *lv);
    if (!lab || !lv) {
        free(u);
        free(lab);
        free(lv);
        return nomem(err);
    }
    int nl = 0;
    for (size_t i = 0; i < k; i++) {
        char buf[64];
        mlmx_format_double(u[i], buf, sizeof buf);
        if (nl > 0 && strcmp(lv[nl - 1], buf) == 0) {
            lab[i] = nl - 1;
            continue;
        }
        lv[nl] = mlmx_strdup(buf);
        if (!lv[nl]) {
            mlmx_levels_free(lv, nl);
            free(u);
            free(lab);
            return nomem(err);
        }
        lab[i] = nl++;
    }
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i])) {
            codes[i] = -1;
            continue;
        }
        size_t lo = 0, hi = k; /* u[lo] <= v[i] < u[hi] */
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (u[mid] <= v[i])
                lo = mid;
            else
                hi = mid;
        }
        codes[i] = lab[lo];
    }
    free(u);
    free(lab);
    *levels = lv;
    *nlevels = nl;
    return MLMX_OK;
}

static mlmx_status factor_column(const mlmx_column *c, size_t n, int *codes, char ***levels,
                                 int *nlevels, mlmx_error *err)
{
    char **lv = calloc((size_t)(c->nlevels ? c->nlevels : 1), sizeof *lv);
    if (!lv)
        return nomem(err);
    for (int l = 0; l < c->nlevels; l++) {
        lv[l] = mlmx_strdup(c->levels[l]);
        if (!lv[l]) {
            mlmx_levels_free(lv, l);
            return nomem(err);
        }
    }
    if (n)
        memcpy(codes, c->codes, n * sizeof *codes);
    *levels = lv;
    *nlevels = c->nlevels;
    return MLMX_OK;
}

static mlmx_status group_eval(const mlmx_expr *const *vars, int nvars, const mlmx_data *d,
                              int *codes, char ***levels, int *nlevels, mlmx_error *err);

/* Collect the operands of a:b:c (left to right). */
static int flatten_colon(const mlmx_expr *e, const mlmx_expr **vars, int n)
{
    if (e->kind == MLMX_EX_BINOP && e->op == ':') {
        n = flatten_colon(e->args[0], vars, n);
        return flatten_colon(e->args[1], vars, n);
    }
    vars[n] = e;
    return n + 1;
}

static int count_colon(const mlmx_expr *e, int depth)
{
    if (depth > EVAL_MAX_DEPTH)
        return -1;
    if (e->kind == MLMX_EX_BINOP && e->op == ':') {
        int a = count_colon(e->args[0], depth + 1), b = count_colon(e->args[1], depth + 1);
        return a < 0 || b < 0 ? -1 : a + b;
    }
    return 1;
}

mlmx_status mlmx_var_eval_factor(const mlmx_expr *e, const mlmx_data *d, int *codes,
                                 char ***levels, int *nlevels, mlmx_error *err)
{
    if (!levels || !nlevels)
        return mlmx_err_set(err, MLMX_ERR_ARG, "invalid argument");
    *levels = NULL;
    *nlevels = 0;
    if (!e || !d || (!codes && d->nrow))
        return mlmx_err_set(err, MLMX_ERR_ARG, "invalid argument");
    size_t n = d->nrow;

    if (e->kind == MLMX_EX_BINOP && e->op == ':') {
        int nv = count_colon(e, 0);
        if (nv < 0)
            return mlmx_err_set(err, MLMX_ERR_ARG, "expression nested too deeply");
        const mlmx_expr **vars = malloc((size_t)nv * sizeof *vars);
        if (!vars)
            return nomem(err);
        flatten_colon(e, vars, 0);
        mlmx_status st = group_eval(vars, nv, d, codes, levels, nlevels, err);
        free(vars);
        return st;
    }

    const mlmx_expr *arg = e;
    if (is_call(e, "factor")) {
        if (e->nargs != 1)
            return mlmx_err_set(err, MLMX_ERR_ARG, "factor() takes one argument");
        arg = e->args[0];
    } else if (e->kind != MLMX_EX_SYMBOL) {
        char t[160];
        expr_text(e, t, sizeof t);
        return mlmx_err_set(err, MLMX_ERR_DATA, "'%s' is not a factor (formula position %d)", t,
                            e->pos + 1);
    }
    if (arg->kind == MLMX_EX_SYMBOL) {
        int j = find_column(arg, d, err);
        if (j < 0)
            return MLMX_ERR_DATA;
        if (d->cols[j].type == MLMX_COL_FACTOR)
            return factor_column(&d->cols[j], n, codes, levels, nlevels, err);
    }
    /* A numeric column used as a factor, or factor(<numeric expression>). */
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return nomem(err);
    mlmx_status st = num_rec(arg, d, v, err, 0);
    if (st == MLMX_OK)
        st = factor_numeric(v, n, codes, levels, nlevels, err);
    free(v);
    /* factor() of a comparison is a factor of R's logicals: its levels (0
     * and 1 as numbers, in that order) are labelled FALSE and TRUE */
    const mlmx_expr *inner = arg;
    while (is_call(inner, "I") && inner->nargs == 1)
        inner = inner->args[0];
    if (st == MLMX_OK && inner->kind == MLMX_EX_BINOP && inner->op &&
        strchr("<>lgen", inner->op))
        for (int l = 0; l < *nlevels && st == MLMX_OK; l++) {
            char *lab = mlmx_strdup(strcmp((*levels)[l], "0") == 0 ? "FALSE" : "TRUE");
            if (!lab) {
                st = nomem(err);
                break;
            }
            free((*levels)[l]);
            (*levels)[l] = lab;
        }
    if (st != MLMX_OK && *levels) {
        mlmx_levels_free(*levels, *nlevels);
        *levels = NULL;
        *nlevels = 0;
    }
    return st;
}

/* ------------------------------------------------------------------ interactions */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static char *join_label(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 2);
    if (s) {
        memcpy(s, a, na);
        s[na] = ':';
        memcpy(s + na + 1, b, nb + 1);
    }
    return s;
}

/* Combine the running interaction (cur, with curlev labels) with one more
 * factor: keys cur * nb + c ordered as R orders factor(a:b) (the earlier
 * factor varies slowest), keeping only observed combinations. With nb == 0
 * (first factor) it just drops unobserved levels. */
static mlmx_status combine(size_t n, int *cur, char ***curlev, int *ncur, const int *c,
                           char **lev, int nlev, int first, mlmx_error *err)
{
    int64_t mult = first ? 1 : nlev;
    int64_t *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return nomem(err);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (first)
            cur[i] = c[i];
        if (cur[i] < 0 || (!first && c[i] < 0)) {
            cur[i] = -1;
            continue;
        }
        keys[m++] = first ? cur[i] : (int64_t)cur[i] * mult + c[i];
    }
    qsort(keys, m, sizeof *keys, cmp_i64);
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        if (k == 0 || keys[i] != keys[k - 1])
            keys[k++] = keys[i];

    char **nl = calloc(k ? k : 1, sizeof *nl);
    if (!nl) {
        free(keys);
        return nomem(err);
    }
    for (size_t l = 0; l < k; l++) {
        nl[l] = first ? mlmx_strdup(lev[keys[l]])
                      : join_label((*curlev)[keys[l] / mult], lev[keys[l] % mult]);
        if (!nl[l]) {
            mlmx_levels_free(nl, (int)l);
            free(keys);
            return nomem(err);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (cur[i] < 0)
            continue;
        int64_t key = first ? cur[i] : (int64_t)cur[i] * mult + c[i];
        size_t lo = 0, hi = k;
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (keys[mid] <= key)
                lo = mid;
            else
                hi = mid;
        }
        cur[i] = (int)lo;
    }
    free(keys);
    if (!first)
        mlmx_levels_free(*curlev, *ncur);
    *curlev = nl;
    *ncur = (int)k;
    return MLMX_OK;
}

static mlmx_status group_eval(const mlmx_expr *const *vars, int nvars, const mlmx_data *d,
                              int *codes, char ***levels, int *nlevels, mlmx_error *err)
{
    if (!levels || !nlevels)
        return mlmx_err_set(err, MLMX_ERR_ARG, "invalid argument");
    *levels = NULL;
    *nlevels = 0;
    if (!vars || nvars < 1 || !d || (!codes && d->nrow))
        return mlmx_err_set(err, MLMX_ERR_ARG, "invalid argument");
    size_t n = d->nrow;
    int *c = malloc((n ? n : 1) * sizeof *c);
    if (!c)
        return nomem(err);
    char **cur = NULL;
    int ncur = 0;
    mlmx_status st = MLMX_OK;
    for (int k = 0; k < nvars && st == MLMX_OK; k++) {
        char **lev = NULL;
        int nlev = 0;
        st = mlmx_var_eval_factor(vars[k], d, c, &lev, &nlev, err);
        if (st == MLMX_OK)
            st = combine(n, codes, &cur, &ncur, c, lev, nlev, k == 0, err);
        mlmx_levels_free(lev, nlev);
    }
    free(c);
    if (st != MLMX_OK) {
        mlmx_levels_free(cur, ncur);
        return st;
    }
    *levels = cur;
    *nlevels = ncur;
    return MLMX_OK;
}

mlmx_status mlmx_group_eval(mlmx_expr *const *vars, int nvars, const mlmx_data *d, int *codes,
                            char ***levels, int *nlevels, mlmx_error *err)
{
    return group_eval((const mlmx_expr *const *)vars, nvars, d, codes, levels, nlevels, err);
}
