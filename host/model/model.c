/* Model frame and model matrices: turns a parsed formula and a data set
 * into y, X (treatment contrasts, R's column names and order) and the
 * random-effect terms, ordered as lme4 orders them. */
#include "model/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/columns.h"
#include "model/eval.h"
#include "resid/resid.h"
#include "util/strbuf.h"

static void free_strv(char **v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

mlmx_status mlmx_model_add_message(mlmx_model *m, char *msg, mlmx_error *err)
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

void mlmx_model_destroy(mlmx_model *m)
{
    if (!m)
        return;
    mlmx_resid_free(m->resid);
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
    free(m->psi_lower);
    free_strv(m->psi_names, m->npsi);
    free_strv(m->messages, m->nmessages);
    mlmx_recipe_clear(&m->recipe);
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
                st = mlmx_model_add_message(m,
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
    recipe_ctx cx = {&m->recipe, NULL};
    st = mlmx_build_columns(&rt->lhs, d, m->rows, n, &cx, &cs, NULL, err);
    if (st)
        return st;
    if (cs.ncol == 0) {
        mlmx_colset_free(&cs);
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "random-effect term for '%s' has no columns (formula position %d)",
                            out->group, rt->pos + 1);
    }
    out->q = cs.ncol;
    out->colnames = cs.names;
    cs.names = NULL;
    out->z = malloc((n ? n : 1) * (size_t)out->q * sizeof *out->z);
    if (!out->z) {
        mlmx_colset_free(&cs);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < out->q; c++)
            out->z[i * (size_t)out->q + (size_t)c] = cs.cols[c][i];
    /* names were taken; the columns (copied into z) and the cells go */
    mlmx_colset_free(&cs);
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

/* The prior weights at the model rows (none when weights is NULL). */
static mlmx_status read_weights(const mlmx_data *d, const char *weights, mlmx_model *m,
                                mlmx_error *err)
{
    mlmx_status st = MLMX_OK;
    if (weights) {
        int j = mlmx_frame_find(d, weights);
        const mlmx_column *c = &d->cols[j];
        if (c->type != MLMX_COL_NUMERIC) {
            return mlmx_err_set(err, MLMX_ERR_DATA, "weights column '%s' is not numeric", weights);
        }
        m->weights = malloc((m->n ? m->n : 1) * sizeof *m->weights);
        if (!m->weights) {
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < m->n; i++) {
            double w = c->num[m->rows[i]];
            if (!(w >= 0) || !isfinite(w)) {
                st = mlmx_err_set(err, MLMX_ERR_DATA,
                                  "weights column '%s': data row %zu has %g; prior weights must "
                                  "be finite and non-negative",
                                  weights, m->rows[i] + 1, w);
                return st;
            }
            m->weights[i] = w;
        }
    }
    return st;
}

/* X, its column names and cells, the fixed terms, and the collinear
 * columns dropped (with a note). */
static mlmx_status build_fixed(const mlmx_formula *f, const mlmx_data *d, mlmx_model *m,
                               mlmx_error *err)
{
    mlmx_status st = MLMX_OK;
    {
        colset cs;
        recipe_ctx cx = {&m->recipe, NULL};
        m->fixterms = calloc((size_t)(f->fixed.nterms ? f->fixed.nterms : 1), sizeof *m->fixterms);
        if (!m->fixterms) {
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        m->nfixterms = f->fixed.nterms;
        st = mlmx_build_columns(&f->fixed, d, m->rows, m->n, &cx, &cs, m->fixterms, err);
        if (st)
            return st;
        st = mlmx_drop_collinear(&cs, m->n, &m->dropped_fixef, &m->n_dropped_fixef, err);
        if (st) {
            mlmx_colset_free(&cs);
            return st;
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
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
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
            st = mlmx_model_add_message(m,
                             mlmx_asprintf("fixed-effect model matrix is rank deficient so dropping "
                                       "%d column%s / coefficient%s: %s",
                                       m->n_dropped_fixef, m->n_dropped_fixef > 1 ? "s" : "",
                                       m->n_dropped_fixef > 1 ? "s" : "", lst ? lst : "?"),
                             err);
            free(lst);
            if (st)
                return st;
        }
    }
    return st;
}

/* The random-effect terms, in formula order first, then ordered and
 * named as lme4 orders and names them. */
static mlmx_status build_random(const mlmx_formula *f, const mlmx_data *d, mlmx_model *m,
                                mlmx_error *err)
{
    mlmx_status st = MLMX_OK;
    if (f->nre > 0) {
        mlmx_reterm_info *tmp = calloc((size_t)f->nre, sizeof *tmp);
        if (!tmp) {
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
        m->re = tmp;
        for (int k = 0; k < f->nre; k++) {
            st = build_reterm(&f->re[k], d, m, &m->re[k], err);
            m->re[k].formula_index = k;
            m->K = k + 1;
            if (st)
                return st;
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
                return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
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
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        }
    }
    return st;
}

/* theta's layout: each term's lower-triangular template, column-major,
 * with its bounds and lme4's names. */
static mlmx_status theta_layout(mlmx_model *m, mlmx_error *err)
{
    mlmx_status st = MLMX_OK;
    m->ntheta = 0;
    for (int k = 0; k < m->K; k++) {
        m->re[k].theta_offset = m->ntheta;
        m->ntheta += m->re[k].q * (m->re[k].q + 1) / 2;
    }
    if (m->ntheta) {
        m->theta_lower = malloc((size_t)m->ntheta * sizeof *m->theta_lower);
        m->theta_names = calloc((size_t)m->ntheta, sizeof *m->theta_names);
        if (!m->theta_lower || !m->theta_names) {
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
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
                        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
                    }
                }
        }
    }
    return st;
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
    st = read_weights(d, weights, m, err);
    if (st)
        goto fail;

    /* Response */
    m->response_name = mlmx_expr_deparse(f->response);
    if (!m->response_name) {
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    st = build_response(f, d, m, err);
    if (st)
        goto fail;

    st = build_fixed(f, d, m, err);
    if (st)
        goto fail;
    st = build_random(f, d, m, err);
    if (st)
        goto fail;
    st = theta_layout(m, err);
    if (!st)
        st = mlmx_model_psi_layout(m, f, err);
    if (st)
        goto fail;

    if ((size_t)m->p + (size_t)m->npsi + 1 > m->n) {
        st = mlmx_err_set(err, MLMX_ERR_MODEL,
                          "the model has %d parameters (%d fixed effects, %d covariance "
                          "parameters, residual variance) but only %zu observations",
                          m->p + m->npsi + 1, m->p, m->npsi, m->n);
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
