/* Model columns from a term list: evaluated variables, R's coding of
 * factors by contrasts or indicators, the recipe hook for new data, and
 * the removal of collinear columns (columns.h). */
#include "model/columns.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/eval.h"
#include "util/strbuf.h"

/* ------------------------------------------------------------------ */
/* Evaluated variables of a term, restricted to the model rows.        */

typedef struct evar {
    int is_factor;
    double *num;   /* n values (numeric) */
    int *codes;    /* n codes (factor) */
    char **levels;
    int nlevels;
    char *name;    /* deparsed variable */
} evar;

static void evar_free(evar *v)
{
    free(v->num);
    free(v->codes);
    mlmx_levels_free(v->levels, v->nlevels);
    free(v->name);
    memset(v, 0, sizeof *v);
}

/* Is e logical-valued in R: a comparison, or I() of one (I(week > 2))? */
static int is_logical(const mlmx_expr *e)
{
    while (e->kind == MLMX_EX_CALL && strcmp(e->name, "I") == 0 && e->nargs == 1)
        e = e->args[0];
    return e->kind == MLMX_EX_BINOP && e->op && strchr("<>lgen", e->op) != NULL;
}

/* R's model.matrix codes a logical variable as a factor with the levels
 * FALSE and TRUE (both, whichever occur): with an intercept its column is
 * "I(week > 2)TRUE", as lme4 names it. */
static mlmx_status evar_logical(const mlmx_expr *e, const mlmx_data *d, const size_t *rows,
                                size_t n, evar *v, mlmx_error *err)
{
    double *all = malloc((d->nrow ? d->nrow : 1) * sizeof *all);
    v->codes = malloc((n ? n : 1) * sizeof *v->codes);
    v->levels = calloc(2, sizeof *v->levels);
    if (!all || !v->codes || !v->levels) {
        free(all);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    v->nlevels = 2;
    v->levels[0] = mlmx_strdup("FALSE");
    v->levels[1] = mlmx_strdup("TRUE");
    if (!v->levels[0] || !v->levels[1]) {
        free(all);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    mlmx_status st = mlmx_var_eval_numeric(e, d, all, err);
    if (!st)
        for (size_t i = 0; i < n; i++) {
            double x = all[rows[i]];
            v->codes[i] = isnan(x) ? -1 : x != 0.0;
        }
    free(all);
    v->is_factor = 1;
    return st;
}

static mlmx_status evar_eval(const mlmx_expr *e, const mlmx_data *d, const size_t *rows, size_t n,
                             evar *v, mlmx_error *err)
{
    memset(v, 0, sizeof *v);
    v->name = mlmx_expr_deparse(e);
    if (!v->name)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    if (is_logical(e))
        return evar_logical(e, d, rows, n, v, err);
    int isf = mlmx_var_is_factor(e, d, err);
    if (isf < 0)
        return err->code ? err->code : MLMX_ERR_DATA;
    v->is_factor = isf;
    if (isf) {
        int *all = malloc((d->nrow ? d->nrow : 1) * sizeof *all);
        v->codes = malloc((n ? n : 1) * sizeof *v->codes);
        if (!all || !v->codes) {
            free(all);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        mlmx_status st = mlmx_var_eval_factor(e, d, all, &v->levels, &v->nlevels, err);
        if (st) {
            free(all);
            return st;
        }
        for (size_t i = 0; i < n; i++)
            v->codes[i] = all[rows[i]];
        free(all);
    } else {
        double *all = malloc((d->nrow ? d->nrow : 1) * sizeof *all);
        v->num = malloc((n ? n : 1) * sizeof *v->num);
        if (!all || !v->num) {
            free(all);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        mlmx_status st = mlmx_var_eval_numeric(e, d, all, err);
        if (st) {
            free(all);
            return st;
        }
        for (size_t i = 0; i < n; i++)
            v->num[i] = all[rows[i]];
        free(all);
    }
    return MLMX_OK;
}

/* ------------------------------------------------------------------ */
/* Columns of a term list (fixed part, or the left side of a bar).     */


void mlmx_colset_free(colset *c)
{
    for (int j = 0; j < c->ncol; j++) {
        free(c->cols[j]);
        if (c->names) /* NULL once the caller took them */
            free(c->names[j]);
    }
    free(c->cols);
    free(c->names);
    for (int j = 0; c->cells && j < c->ncol; j++)
        free(c->cells[j]);
    free(c->cells);
    memset(c, 0, sizeof *c);
}

static mlmx_status colset_push(colset *c, double *col, char *name, mlmx_error *err)
{
    if (!col || !name) {
        free(col);
        free(name);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    if (c->ncol == c->cap) {
        int nc = c->cap ? 2 * c->cap : 8;
        double **ncols = realloc(c->cols, (size_t)nc * sizeof *ncols);
        if (!ncols) {
            free(col);
            free(name);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        c->cols = ncols;
        char **nn = realloc(c->names, (size_t)nc * sizeof *nn);
        if (!nn) {
            free(col);
            free(name);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        c->names = nn;
        int **ncl = realloc(c->cells, (size_t)nc * sizeof *ncl);
        if (!ncl) {
            free(col);
            free(name);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        c->cells = ncl;
        c->cap = nc;
    }
    c->cols[c->ncol] = col;
    c->names[c->ncol] = name;
    c->cells[c->ncol] = NULL;
    c->ncol++;
    return MLMX_OK;
}

/* Is the set of deparsed variable names of term t minus variable `skip`
 * one of the terms of tl (or, when empty, is there an intercept)? This is
 * R's rule for coding a factor by contrasts (margin present) or by
 * indicators (margin absent). */
static int margin_present(const mlmx_termlist *tl, char **const *tnames, int t, int skip)
{
    const mlmx_term *term = &tl->terms[t];
    int want = term->nvars - 1;
    if (want == 0)
        return tl->intercept;
    for (int o = 0; o < tl->nterms; o++) {
        if (tl->terms[o].nvars != want)
            continue;
        int all = 1;
        for (int a = 0; a < term->nvars && all; a++) {
            if (a == skip)
                continue;
            int found = 0;
            for (int b = 0; b < want; b++)
                if (strcmp(tnames[t][a], tnames[o][b]) == 0)
                    found = 1;
            all = found;
        }
        if (all)
            return 1;
    }
    return 0;
}


static mlmx_status recipe_hook(const recipe_ctx *cx, evar *v, const size_t *rows, size_t n,
                               mlmx_error *err)
{
    if (!cx)
        return MLMX_OK;
    if (cx->rec)
        return mlmx_recipe_record(cx->rec, v->name, v->is_factor, v->levels, v->nlevels, err);
    if (cx->apply)
        return mlmx_recipe_apply(cx->apply, v->name, v->is_factor, &v->levels, &v->nlevels,
                                 v->codes, rows, n, err);
    return MLMX_OK;
}

/* The fixed part's term t, for the tests of terms (mlmx_fixterm). */
static mlmx_status fixterm_record(mlmx_fixterm *ft, char **tnames, const evar *vars,
                                  const int *first, int nv)
{
    ft->nvars = nv;
    ft->vars = calloc((size_t)nv, sizeof *ft->vars);
    ft->nlevels = calloc((size_t)nv, sizeof *ft->nlevels);
    ft->coded_from = calloc((size_t)nv, sizeof *ft->coded_from);
    size_t len = 1;
    for (int a = 0; a < nv; a++)
        len += strlen(tnames[a]) + 1;
    ft->label = malloc(len);
    if (!ft->vars || !ft->nlevels || !ft->coded_from || !ft->label)
        return MLMX_ERR_NOMEM;
    ft->label[0] = '\0';
    for (int a = 0; a < nv; a++) {
        if (a)
            strcat(ft->label, ":");
        strcat(ft->label, tnames[a]);
        ft->vars[a] = mlmx_strdup(tnames[a]);
        if (!ft->vars[a])
            return MLMX_ERR_NOMEM;
        ft->nlevels[a] = vars[a].is_factor ? vars[a].nlevels : 0;
        ft->coded_from[a] = first[a];
    }
    return MLMX_OK;
}

/* Column j's term and levels (mlmx_model.fixef_cell). */
static int *cell_of(int t, const evar *vars, const int *first, const int *idx, int nv)
{
    int *c = malloc((size_t)(nv + 1) * sizeof *c);
    if (!c)
        return NULL;
    c[0] = t;
    for (int a = 0; a < nv; a++)
        c[1 + a] = vars[a].is_factor ? first[a] + idx[a] : -1;
    return c;
}

/* The columns of a term list. meta (the fixed part only; NULL otherwise):
 * tl->nterms zeroed entries, filled with each term's structure, and each
 * column's cell recorded in out->cells. */
mlmx_status mlmx_build_columns(const mlmx_termlist *tl, const mlmx_data *d, const size_t *rows,
                                 size_t n, const recipe_ctx *cx, colset *out, mlmx_fixterm *meta,
                                 mlmx_error *err)
{
    mlmx_status st = MLMX_OK;
    memset(out, 0, sizeof *out);
    char ***tnames = calloc((size_t)(tl->nterms ? tl->nterms : 1), sizeof *tnames);
    if (!tnames)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    for (int t = 0; t < tl->nterms && !st; t++) {
        tnames[t] = calloc((size_t)tl->terms[t].nvars, sizeof **tnames);
        if (!tnames[t]) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            break;
        }
        for (int a = 0; a < tl->terms[t].nvars; a++) {
            tnames[t][a] = mlmx_expr_deparse(tl->terms[t].vars[a]);
            if (!tnames[t][a])
                st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
    }
    if (!st && tl->intercept) {
        double *one = malloc((n ? n : 1) * sizeof *one);
        if (one)
            for (size_t i = 0; i < n; i++)
                one[i] = 1.0;
        st = colset_push(out, one, mlmx_strdup("(Intercept)"), err);
        if (!st && meta && !(out->cells[0] = cell_of(-1, NULL, NULL, NULL, 0)))
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    for (int t = 0; t < tl->nterms && !st; t++) {
        const mlmx_term *term = &tl->terms[t];
        int nv = term->nvars;
        evar *vars = calloc((size_t)nv, sizeof *vars);
        int *first = calloc((size_t)nv, sizeof *first);  /* first level used */
        int *count = calloc((size_t)nv, sizeof *count);  /* levels (or 1 for numeric) */
        int *idx = calloc((size_t)nv, sizeof *idx);
        if (!vars || !first || !count || !idx)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        for (int a = 0; a < nv && !st; a++) {
            st = evar_eval(term->vars[a], d, rows, n, &vars[a], err);
            if (!st)
                st = recipe_hook(cx, &vars[a], rows, n, err);
            if (st)
                break;
            if (vars[a].is_factor) {
                int contrasts = margin_present(tl, tnames, t, a);
                first[a] = contrasts ? 1 : 0;
                count[a] = vars[a].nlevels - first[a];
            } else {
                first[a] = 0;
                count[a] = 1;
            }
        }
        if (!st && meta && fixterm_record(&meta[t], tnames[t], vars, first, nv))
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        /* Enumerate column tuples, the first variable varying fastest (R's order). */
        int empty = 0;
        for (int a = 0; a < nv && !st; a++)
            if (count[a] <= 0)
                empty = 1;
        while (!st && !empty) {
            double *col = malloc((n ? n : 1) * sizeof *col);
            size_t nlen = 1;
            for (int a = 0; a < nv; a++)
                nlen += strlen(vars[a].name) + 1 +
                        (vars[a].is_factor ? strlen(vars[a].levels[first[a] + idx[a]]) : 0);
            char *name = malloc(nlen);
            if (col && name) {
                name[0] = '\0';
                for (int a = 0; a < nv; a++) {
                    if (a)
                        strcat(name, ":");
                    strcat(name, vars[a].name);
                    if (vars[a].is_factor)
                        strcat(name, vars[a].levels[first[a] + idx[a]]);
                }
                for (size_t i = 0; i < n; i++) {
                    double v = 1.0;
                    for (int a = 0; a < nv; a++) {
                        if (vars[a].is_factor && vars[a].codes[i] < 0)
                            v = NAN; /* missing (new data only: model rows are complete) */
                        else if (vars[a].is_factor)
                            v *= (vars[a].codes[i] == first[a] + idx[a]) ? 1.0 : 0.0;
                        else
                            v *= vars[a].num[i];
                    }
                    col[i] = v;
                }
            }
            st = colset_push(out, col, name, err);
            if (!st && meta && !(out->cells[out->ncol - 1] = cell_of(t, vars, first, idx, nv)))
                st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            int a = 0;
            while (a < nv) {
                if (++idx[a] < count[a])
                    break;
                idx[a] = 0;
                a++;
            }
            if (a == nv)
                break;
        }
        for (int a = 0; vars && a < nv; a++)
            evar_free(&vars[a]);
        free(vars);
        free(first);
        free(count);
        free(idx);
    }
    for (int t = 0; t < tl->nterms; t++) {
        if (tnames[t])
            mlmx_levels_free(tnames[t], tl->terms[t].nvars);
    }
    free(tnames);
    if (st)
        mlmx_colset_free(out);
    return st;
}

/* ------------------------------------------------------------------ */
/* Rank: keep a column unless it lies (numerically) in the span of the
 * columns kept before it, as R's pivoting QR keeps the earlier of two
 * collinear columns. Modified Gram-Schmidt with re-orthogonalisation. */
mlmx_status mlmx_drop_collinear(colset *c, size_t n, char ***dropped, int *ndropped,
                                  mlmx_error *err)
{
    *dropped = NULL;
    *ndropped = 0;
    int k = c->ncol;
    if (k == 0)
        return MLMX_OK;
    double **q = calloc((size_t)k, sizeof *q);
    int *keep = calloc((size_t)k, sizeof *keep);
    if (!q || !keep) {
        free(q);
        free(keep);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    int nq = 0;
    mlmx_status st = MLMX_OK;
    for (int j = 0; j < k && !st; j++) {
        double *v = malloc((n ? n : 1) * sizeof *v);
        if (!v) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            break;
        }
        double norm0 = 0;
        for (size_t i = 0; i < n; i++) {
            v[i] = c->cols[j][i];
            norm0 += v[i] * v[i];
        }
        norm0 = sqrt(norm0);
        for (int pass = 0; pass < 2; pass++)
            for (int b = 0; b < nq; b++) {
                double dot = 0;
                for (size_t i = 0; i < n; i++)
                    dot += q[b][i] * v[i];
                for (size_t i = 0; i < n; i++)
                    v[i] -= dot * q[b][i];
            }
        double norm = 0;
        for (size_t i = 0; i < n; i++)
            norm += v[i] * v[i];
        norm = sqrt(norm);
        if (norm0 > 0 && norm > 1e-7 * norm0) {
            for (size_t i = 0; i < n; i++)
                v[i] /= norm;
            q[nq++] = v;
            keep[j] = 1;
        } else {
            free(v);
        }
    }
    for (int b = 0; b < nq; b++)
        free(q[b]);
    free(q);
    if (!st && nq < k) {
        char **dn = calloc((size_t)(k - nq), sizeof *dn);
        if (!dn)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        int w = 0, nd = 0;
        for (int j = 0; j < k && !st; j++) {
            if (keep[j]) {
                c->cols[w] = c->cols[j];
                c->names[w] = c->names[j];
                c->cells[w] = c->cells[j];
                w++;
            } else {
                free(c->cols[j]);
                free(c->cells[j]);
                dn[nd++] = c->names[j];
            }
        }
        if (!st) {
            c->ncol = w;
            *dropped = dn;
            *ndropped = nd;
        }
    }
    free(keep);
    return st;
}

mlmx_status mlmx_model_columns_for(const mlmx_termlist *tl, const mlmx_data *d,
                                   const mlmx_recipe *rc, char *const *names, int ncol,
                                   double *out, mlmx_error *err)
{
    size_t n = d->nrow;
    size_t *rows = malloc((n ? n : 1) * sizeof *rows);
    if (!rows)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        rows[i] = i;
    recipe_ctx cx = {NULL, rc};
    colset cs;
    mlmx_status st = mlmx_build_columns(tl, d, rows, n, &cx, &cs, NULL, err);
    free(rows);
    if (st)
        return st;
    for (int j = 0; j < ncol && !st; j++) {
        int c = 0;
        while (c < cs.ncol && strcmp(cs.names[c], names[j]) != 0)
            c++;
        if (c == cs.ncol)
            st = mlmx_err_set(err, MLMX_ERR_MODEL,
                              "the formula does not give the model column '%s'", names[j]);
        else
            memcpy(out + (size_t)j * n, cs.cols[c], n * sizeof *out);
    }
    mlmx_colset_free(&cs);
    return st;
}

