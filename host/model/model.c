/* Model frame and model matrices: turns a parsed formula and a data set
 * into y, X (treatment contrasts, R's column names and order) and the
 * random-effect terms, ordered as lme4 orders them. */
#include "model/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/eval.h"
#include "util/strbuf.h"

static void free_strv(char **v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static mlmx_status add_message(mlmx_model *m, char *msg, mlmx_error *err)
{
    if (!msg)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    char **nm = realloc(m->messages, (size_t)(m->nmessages + 1) * sizeof *nm);
    if (!nm) {
        free(msg);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    m->messages = nm;
    m->messages[m->nmessages++] = msg;
    return MLMX_OK;
}

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

typedef struct colset {
    int ncol, cap;
    double **cols; /* each n values */
    char **names;
    int **cells;   /* fixed part: each column's term and levels (fixef_cell) */
} colset;

static void colset_free(colset *c)
{
    for (int j = 0; j < c->ncol; j++) {
        free(c->cols[j]);
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
static mlmx_status build_columns(const mlmx_termlist *tl, const mlmx_data *d, const size_t *rows,
                                 size_t n, colset *out, mlmx_fixterm *meta, mlmx_error *err)
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
                        if (vars[a].is_factor)
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
            free_strv(tnames[t], tl->terms[t].nvars);
    }
    free(tnames);
    if (st)
        colset_free(out);
    return st;
}

/* ------------------------------------------------------------------ */
/* Rank: keep a column unless it lies (numerically) in the span of the
 * columns kept before it, as R's pivoting QR keeps the earlier of two
 * collinear columns. Modified Gram-Schmidt with re-orthogonalisation. */
static mlmx_status drop_collinear(colset *c, size_t n, char ***dropped, int *ndropped,
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

/* ------------------------------------------------------------------ */

void mlmx_model_destroy(mlmx_model *m)
{
    if (!m)
        return;
    free(m->formula);
    free(m->source);
    free(m->rows);
    free(m->y);
    mlmx_levels_free(m->resp_levels, m->nresp_levels);
    free(m->ntrials);
    free(m->offset);
    free(m->weights);
    free(m->X);
    free_strv(m->fixef_names, m->p);
    for (int j = 0; m->fixef_cell && j < m->p; j++)
        free(m->fixef_cell[j]);
    free(m->fixef_cell);
    for (int t = 0; m->fixterms && t < m->nfixterms; t++) {
        free(m->fixterms[t].label);
        free_strv(m->fixterms[t].vars, m->fixterms[t].nvars);
        free(m->fixterms[t].nlevels);
        free(m->fixterms[t].coded_from);
    }
    free(m->fixterms);
    free_strv(m->dropped_fixef, m->n_dropped_fixef);
    free(m->response_name);
    for (int k = 0; k < m->K; k++) {
        mlmx_reterm_info *r = &m->re[k];
        free(r->group);
        free(r->vcname);
        mlmx_levels_free(r->levels, r->nlevels);
        free(r->codes);
        free(r->level_count);
        free_strv(r->colnames, r->q);
        free(r->z);
    }
    free(m->re);
    free(m->theta_lower);
    free_strv(m->theta_names, m->ntheta);
    free_strv(m->messages, m->nmessages);
    free(m);
}

/* Rows in which every model variable is present. */
static mlmx_status complete_rows(const mlmx_formula *f, const mlmx_data *d, const char *weights,
                                 mlmx_model *m, mlmx_error *err)
{
    const char **names = NULL;
    int nn = 0;
    mlmx_status st = mlmx_formula_variables(f, &names, &nn, err);
    if (st)
        return st;
    if (weights) {
        /* the weights column counts as a model variable: its missing rows
         * are dropped too */
        const char **nw = realloc(names, ((size_t)nn + 1) * sizeof *nw);
        if (!nw) {
            free(names);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        names = nw;
        names[nn++] = weights;
    }
    unsigned char *bad = calloc(d->nrow ? d->nrow : 1, 1);
    if (!bad) {
        free(names);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    char *which = NULL;
    size_t wlen = 0;
    for (int v = 0; v < nn && !st; v++) {
        int j = mlmx_frame_find(d, names[v]);
        if (j < 0 && weights && v == nn - 1) {
            st = mlmx_err_set(err, MLMX_ERR_DATA, "weights: no column '%s'%s%s%s", weights,
                              d->source && d->source[0] ? " in " : "",
                              d->source && d->source[0] ? d->source : "",
                              d->source && d->source[0] ? "" : " in the data");
            break;
        }
        if (j < 0) {
            st = mlmx_err_set(err, MLMX_ERR_DATA,
                              "formula refers to unknown column '%s'%s%s%s", names[v],
                              d->source && d->source[0] ? " (not in '" : "",
                              d->source && d->source[0] ? d->source : "",
                              d->source && d->source[0] ? "')" : "");
            break;
        }
        const mlmx_column *c = &d->cols[j];
        size_t nmiss = 0;
        for (size_t i = 0; i < d->nrow; i++) {
            int miss = c->type == MLMX_COL_NUMERIC ? isnan(c->num[i]) : c->codes[i] < 0;
            if (miss) {
                bad[i] = 1;
                nmiss++;
            }
        }
        if (nmiss == d->nrow && d->nrow > 0) {
            st = mlmx_err_set(err, MLMX_ERR_DATA, "column '%s' has no non-missing values",
                              names[v]);
            break;
        }
        if (nmiss) {
            size_t add = strlen(names[v]) + 3;
            char *nw = realloc(which, wlen + add);
            if (nw) {
                which = nw;
                snprintf(which + wlen, add, "%s%s", wlen ? ", " : "", names[v]);
                wlen = strlen(which) + 1;
            }
        }
    }
    free(names);
    if (!st) {
        size_t n = 0;
        for (size_t i = 0; i < d->nrow; i++)
            n += !bad[i];
        m->rows = malloc((n ? n : 1) * sizeof *m->rows);
        if (!m->rows)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        else {
            size_t w = 0;
            for (size_t i = 0; i < d->nrow; i++)
                if (!bad[i])
                    m->rows[w++] = i;
            m->n = n;
            m->n_dropped = d->nrow - n;
            if (n == 0)
                st = mlmx_err_set(err, MLMX_ERR_DATA,
                                  "no complete rows: every row has a missing value in %s",
                                  which ? which : "a model variable");
            else if (m->n_dropped)
                st = add_message(m,
                                 mlmx_asprintf("%zu of %zu rows dropped for missing values in %s",
                                           m->n_dropped, d->nrow, which ? which : "?"),
                                 err);
        }
    }
    free(which);
    free(bad);
    return st;
}

static mlmx_status build_reterm(const mlmx_reterm *rt, const mlmx_data *d, mlmx_model *m,
                                mlmx_reterm_info *out, mlmx_error *err)
{
    memset(out, 0, sizeof *out);
    size_t n = m->n;
    out->group = mlmx_strdup(rt->label);
    if (!out->group)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    int *all = malloc((d->nrow ? d->nrow : 1) * sizeof *all);
    if (!all)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    char **lev = NULL;
    int nlev = 0;
    mlmx_status st = mlmx_group_eval(rt->group, rt->ngroup, d, all, &lev, &nlev, err);
    if (st) {
        free(all);
        return st;
    }
    /* Keep only the levels observed in the model rows, in their order. */
    int *map = malloc((size_t)(nlev ? nlev : 1) * sizeof *map);
    out->codes = malloc((n ? n : 1) * sizeof *out->codes);
    if (!map || !out->codes) {
        free(all);
        free(map);
        mlmx_levels_free(lev, nlev);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    for (int l = 0; l < nlev; l++)
        map[l] = -1;
    for (size_t i = 0; i < n; i++)
        map[all[m->rows[i]]] = 0;
    int used = 0;
    for (int l = 0; l < nlev; l++)
        if (map[l] == 0)
            map[l] = used++;
    out->levels = calloc((size_t)(used ? used : 1), sizeof *out->levels);
    out->level_count = calloc((size_t)(used ? used : 1), sizeof *out->level_count);
    if (!out->levels || !out->level_count) {
        free(all);
        free(map);
        mlmx_levels_free(lev, nlev);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    for (int l = 0; l < nlev; l++) {
        if (map[l] >= 0) {
            out->levels[map[l]] = lev[l];
            lev[l] = NULL;
        }
    }
    out->nlevels = used;
    for (size_t i = 0; i < n; i++) {
        out->codes[i] = map[all[m->rows[i]]];
        out->level_count[out->codes[i]]++;
    }
    mlmx_levels_free(lev, nlev);
    free(map);
    free(all);
    if (used < 2)
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "grouping factor '%s' has %d level%s in the data used; a random "
                            "effect needs at least 2",
                            out->group, used, used == 1 ? "" : "s");

    colset cs;
    st = build_columns(&rt->lhs, d, m->rows, n, &cs, NULL, err);
    if (st)
        return st;
    if (cs.ncol == 0) {
        colset_free(&cs);
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "random-effect term for '%s' has no columns (formula position %d)",
                            out->group, rt->pos + 1);
    }
    out->q = cs.ncol;
    out->colnames = cs.names;
    cs.names = NULL;
    out->z = malloc((n ? n : 1) * (size_t)out->q * sizeof *out->z);
    if (!out->z) {
        colset_free(&cs);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < out->q; c++)
            out->z[i * (size_t)out->q + (size_t)c] = cs.cols[c][i];
    for (int c = 0; c < cs.ncol; c++)
        free(cs.cols[c]);
    free(cs.cols);
    return MLMX_OK;
}

/* One numeric variable at the model rows. */
static mlmx_status numeric_at_rows(const mlmx_expr *e, const mlmx_data *d, const mlmx_model *m,
                                   double **out, mlmx_error *err)
{
    double *all = malloc((d->nrow ? d->nrow : 1) * sizeof *all);
    double *v = malloc((m->n ? m->n : 1) * sizeof *v);
    if (!all || !v) {
        free(all);
        free(v);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    mlmx_status st = mlmx_var_eval_numeric(e, d, all, err);
    if (!st)
        for (size_t i = 0; i < m->n; i++)
            v[i] = all[m->rows[i]];
    free(all);
    if (st) {
        free(v);
        return st;
    }
    *out = v;
    return MLMX_OK;
}

/* The response: numeric, a factor (its codes; the GLMM families decide
 * what they accept) or cbind(successes, failures); and the offset. */
static mlmx_status build_response(const mlmx_formula *f, const mlmx_data *d, mlmx_model *m,
                                  mlmx_error *err)
{
    const mlmx_expr *r = f->response;
    mlmx_status st;
    if (r->kind == MLMX_EX_CALL && strcmp(r->name, "cbind") == 0) {
        if (r->nargs != 2)
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "cbind() in the response needs two arguments, successes and "
                                "failures (it has %d)",
                                r->nargs);
        double *fl = NULL;
        for (int a = 0; a < 2; a++) {
            int isf = mlmx_var_is_factor(r->args[a], d, err);
            if (isf < 0)
                return err->code ? err->code : MLMX_ERR_DATA;
            if (isf)
                return mlmx_err_set(err, MLMX_ERR_DATA,
                                    "cbind() in the response needs numeric counts, but its %s "
                                    "argument is a factor",
                                    a ? "second" : "first");
        }
        st = numeric_at_rows(r->args[0], d, m, &m->y, err);
        if (!st)
            st = numeric_at_rows(r->args[1], d, m, &fl, err);
        if (st) {
            free(fl);
            return st;
        }
        for (size_t i = 0; i < m->n; i++)
            fl[i] += m->y[i];
        m->ntrials = fl;
        m->resp_kind = MLMX_RESP_CBIND;
    } else {
        int isf = mlmx_var_is_factor(r, d, err);
        if (isf < 0)
            return err->code ? err->code : MLMX_ERR_DATA;
        if (isf) {
            int *codes = malloc((d->nrow ? d->nrow : 1) * sizeof *codes);
            m->y = malloc((m->n ? m->n : 1) * sizeof *m->y);
            if (!codes || !m->y) {
                free(codes);
                return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            }
            st = mlmx_var_eval_factor(r, d, codes, &m->resp_levels, &m->nresp_levels, err);
            if (!st)
                for (size_t i = 0; i < m->n; i++)
                    m->y[i] = (double)codes[m->rows[i]];
            free(codes);
            if (st)
                return st;
            m->resp_kind = MLMX_RESP_FACTOR;
        } else {
            st = numeric_at_rows(r, d, m, &m->y, err);
            if (st)
                return st;
            m->resp_kind = MLMX_RESP_NUMERIC;
        }
    }
    if (f->offset) {
        int isf = mlmx_var_is_factor(f->offset, d, err);
        if (isf < 0)
            return err->code ? err->code : MLMX_ERR_DATA;
        if (isf)
            return mlmx_err_set(err, MLMX_ERR_DATA, "offset() needs a numeric variable");
        st = numeric_at_rows(f->offset, d, m, &m->offset, err);
        if (st)
            return st;
    }
    return MLMX_OK;
}

mlmx_status mlmx_model_build(const mlmx_data *d, const char *formula, const char *weights,
                             mlmx_model **out, mlmx_error *err)
{
    *out = NULL;
    mlmx_formula *f = NULL;
    mlmx_status st = mlmx_formula_parse(formula, &f, err);
    if (st)
        return st;
    mlmx_model *m = calloc(1, sizeof *m);
    if (!m) {
        mlmx_formula_free(f);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    m->formula = mlmx_strdup(formula);
    m->source = mlmx_strdup(d->source ? d->source : "");
    if (!m->formula || !m->source) {
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!f->response) {
        st = mlmx_err_set(err, MLMX_ERR_FORMULA, "formula: the model needs a response (y ~ ...)");
        goto fail;
    }
    st = complete_rows(f, d, weights, m, err);
    if (st)
        goto fail;
    if (weights) {
        int j = mlmx_frame_find(d, weights);
        const mlmx_column *c = &d->cols[j];
        if (c->type != MLMX_COL_NUMERIC) {
            st = mlmx_err_set(err, MLMX_ERR_DATA, "weights column '%s' is not numeric", weights);
            goto fail;
        }
        m->weights = malloc((m->n ? m->n : 1) * sizeof *m->weights);
        if (!m->weights) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < m->n; i++) {
            double w = c->num[m->rows[i]];
            if (!(w >= 0) || !isfinite(w)) {
                st = mlmx_err_set(err, MLMX_ERR_DATA,
                                  "weights column '%s': data row %zu has %g; prior weights must "
                                  "be finite and non-negative",
                                  weights, m->rows[i] + 1, w);
                goto fail;
            }
            m->weights[i] = w;
        }
    }

    /* Response */
    m->response_name = mlmx_expr_deparse(f->response);
    if (!m->response_name) {
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    st = build_response(f, d, m, err);
    if (st)
        goto fail;

    /* Fixed effects */
    {
        colset cs;
        m->fixterms = calloc((size_t)(f->fixed.nterms ? f->fixed.nterms : 1), sizeof *m->fixterms);
        if (!m->fixterms) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            goto fail;
        }
        m->nfixterms = f->fixed.nterms;
        st = build_columns(&f->fixed, d, m->rows, m->n, &cs, m->fixterms, err);
        if (st)
            goto fail;
        st = drop_collinear(&cs, m->n, &m->dropped_fixef, &m->n_dropped_fixef, err);
        if (st) {
            colset_free(&cs);
            goto fail;
        }
        m->p = cs.ncol;
        m->fixef_names = cs.names;
        m->fixef_cell = cs.cells;
        m->X = malloc((m->n ? m->n : 1) * (size_t)(m->p ? m->p : 1) * sizeof *m->X);
        if (!m->X) {
            cs.names = NULL;
            for (int c = 0; c < cs.ncol; c++)
                free(cs.cols[c]);
            free(cs.cols);
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int c = 0; c < cs.ncol; c++) {
            memcpy(m->X + (size_t)c * m->n, cs.cols[c], m->n * sizeof(double));
            free(cs.cols[c]);
        }
        free(cs.cols);
        if (m->n_dropped_fixef) {
            size_t len = 1;
            for (int j = 0; j < m->n_dropped_fixef; j++)
                len += strlen(m->dropped_fixef[j]) + 2;
            char *lst = malloc(len);
            if (lst) {
                lst[0] = '\0';
                for (int j = 0; j < m->n_dropped_fixef; j++) {
                    if (j)
                        strcat(lst, ", ");
                    strcat(lst, m->dropped_fixef[j]);
                }
            }
            st = add_message(m,
                             mlmx_asprintf("fixed-effect model matrix is rank deficient so dropping "
                                       "%d column%s / coefficient%s: %s",
                                       m->n_dropped_fixef, m->n_dropped_fixef > 1 ? "s" : "",
                                       m->n_dropped_fixef > 1 ? "s" : "", lst ? lst : "?"),
                             err);
            free(lst);
            if (st)
                goto fail;
        }
    }

    /* Random effects, in formula order first */
    if (f->nre > 0) {
        mlmx_reterm_info *tmp = calloc((size_t)f->nre, sizeof *tmp);
        if (!tmp) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            goto fail;
        }
        m->re = tmp;
        for (int k = 0; k < f->nre; k++) {
            st = build_reterm(&f->re[k], d, m, &m->re[k], err);
            m->K = k + 1;
            if (st)
                goto fail;
        }
        /* lme4 (mkReTrms): when some term has more levels than the one
         * before it, order terms by decreasing levels as rev(order(nl)) does,
         * which also reverses the order of ties. */
        int increase = 0;
        for (int k = 1; k < m->K; k++)
            if (m->re[k].nlevels > m->re[k - 1].nlevels)
                increase = 1;
        if (increase) {
            int *ord = malloc((size_t)m->K * sizeof *ord);
            mlmx_reterm_info *sorted = malloc((size_t)m->K * sizeof *sorted);
            if (!ord || !sorted) {
                free(ord);
                free(sorted);
                st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
                goto fail;
            }
            for (int k = 0; k < m->K; k++)
                ord[k] = k;
            /* stable ascending insertion sort, then reverse */
            for (int a = 1; a < m->K; a++) {
                int v = ord[a], b = a - 1;
                while (b >= 0 && m->re[ord[b]].nlevels > m->re[v].nlevels) {
                    ord[b + 1] = ord[b];
                    b--;
                }
                ord[b + 1] = v;
            }
            for (int k = 0; k < m->K; k++)
                sorted[k] = m->re[ord[m->K - 1 - k]];
            free(m->re);
            m->re = sorted;
            free(ord);
        }
    }

    /* lme4 names a second term on the same grouping factor "g.1", a third "g.2" */
    for (int k = 0; k < m->K; k++) {
        int dup = 0;
        for (int j = 0; j < k; j++)
            dup += strcmp(m->re[j].group, m->re[k].group) == 0;
        m->re[k].vcname = dup ? mlmx_asprintf("%s.%d", m->re[k].group, dup) : mlmx_strdup(m->re[k].group);
        if (!m->re[k].vcname) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }

    /* theta layout: each term's lower-triangular template, column-major */
    m->ntheta = 0;
    for (int k = 0; k < m->K; k++) {
        m->re[k].theta_offset = m->ntheta;
        m->ntheta += m->re[k].q * (m->re[k].q + 1) / 2;
    }
    if (m->ntheta) {
        m->theta_lower = malloc((size_t)m->ntheta * sizeof *m->theta_lower);
        m->theta_names = calloc((size_t)m->ntheta, sizeof *m->theta_names);
        if (!m->theta_lower || !m->theta_names) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int k = 0; k < m->K; k++) {
            const mlmx_reterm_info *r = &m->re[k];
            int t = r->theta_offset;
            for (int c = 0; c < r->q; c++)
                for (int a = c; a < r->q; a++, t++) {
                    m->theta_lower[t] = (a == c) ? 0.0 : -HUGE_VAL;
                    m->theta_names[t] =
                        a == c ? mlmx_asprintf("%s.%s", r->group, r->colnames[a])
                               : mlmx_asprintf("%s.%s.%s", r->group, r->colnames[a], r->colnames[c]);
                    if (!m->theta_names[t]) {
                        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
                        goto fail;
                    }
                }
        }
    }

    if ((size_t)m->p + (size_t)m->ntheta + 1 > m->n) {
        st = mlmx_err_set(err, MLMX_ERR_MODEL,
                          "the model has %d parameters (%d fixed effects, %d covariance "
                          "parameters, residual variance) but only %zu observations",
                          m->p + m->ntheta + 1, m->p, m->ntheta, m->n);
        goto fail;
    }
    mlmx_formula_free(f);
    *out = m;
    return MLMX_OK;
fail:
    mlmx_formula_free(f);
    mlmx_model_destroy(m);
    return st;
}
