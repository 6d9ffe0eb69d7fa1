/* Single-term deletions: lmerTest's ranova() (each random-effect term
 * reduced in turn, mlmx_ranova_create) and lme4's drop1(test = "Chisq")
 * (each fixed-effect term dropped, mlmx_drop1_create), each reduced model
 * tested against the full one. The reduced models are written as formulas
 * from the parsed full formula (random terms after lme4's expansion of '/'
 * and '||', as findbars sees them) and built on the same data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "infer/infer.h"
#include "formula/formula.h"
#include "infer/compare.h"
#include "lmm/fit.h"
#include "util/strbuf.h"

/* Expressions joined by ':' ("Days", "x:z", "classid:schoolid"). */
static void put_joined(mlmx_strbuf *b, mlmx_expr *const *e, int n)
{
    for (int v = 0; v < n; v++) {
        char *s = mlmx_expr_deparse(e[v]);
        if (!s) {
            b->oom = 1;
            return;
        }
        mlmx_sb_printf(b, "%s%s", v ? ":" : "", s);
        free(s);
    }
}

/* A term list without term `skip` (-1: none): "1", "Days", "0 + x + z". */
static void put_terms(mlmx_strbuf *b, const mlmx_termlist *l, int skip)
{
    int n = 0;
    if (!l->intercept)
        mlmx_sb_puts(b, "0");
    else if (l->nterms - (skip >= 0) == 0)
        mlmx_sb_puts(b, "1");
    for (int i = 0; i < l->nterms; i++) {
        if (i == skip)
            continue;
        mlmx_sb_puts(b, n || !l->intercept ? " + " : "");
        put_joined(b, l->terms[i].vars, l->terms[i].nvars);
        n++;
    }
}


/* Term i of l can be dropped: no other term contains all its variables
 * (R's drop.scope, marginality). */
static int droppable(const mlmx_termlist *l, int i)
{
    const mlmx_term *t = &l->terms[i];
    for (int j = 0; j < l->nterms; j++) {
        const mlmx_term *u = &l->terms[j];
        if (j == i || u->nvars <= t->nvars)
            continue;
        int all = 1;
        for (int a = 0; a < t->nvars && all; a++) {
            int found = 0;
            for (int c = 0; c < u->nvars && !found; c++) {
                char *x = mlmx_expr_deparse(t->vars[a]), *y = mlmx_expr_deparse(u->vars[c]);
                found = x && y && strcmp(x, y) == 0;
                free(x);
                free(y);
            }
            all = found;
        }
        if (all)
            return 0;
    }
    return 1;
}

/* Random term r of the reduced formula as text: "(1 | g)" for term k when
 * its only slope term `drop` goes, its other terms otherwise. */
static char *bar_text(const mlmx_formula *F, int r, int k, int drop)
{
    mlmx_strbuf b = {0};
    mlmx_sb_puts(&b, "(");
    if (r == k && F->re[r].lhs.nterms == 1)
        mlmx_sb_puts(&b, "1");
    else
        put_terms(&b, &F->re[r].lhs, r == k ? drop : -1);
    mlmx_sb_puts(&b, " | ");
    put_joined(&b, F->re[r].group, F->re[r].ngroup);
    mlmx_sb_puts(&b, ")");
    if (b.oom) {
        mlmx_sb_free(&b);
        return NULL;
    }
    return b.s;
}

/* The reduced formula: the full one without fixed term fixdrop (-1: none),
 * with random term k (-1: none) reduced (bar_text) or removed (drop < 0).
 * A reduced term equal to another is written once, as R's update.formula
 * merges them ((x || g) without x is (1 | g)). */
static char *reduced_formula(const mlmx_formula *F, int fixdrop, int k, int drop, int *nbars)
{
    mlmx_strbuf b = {0};
    char *resp = F->response ? mlmx_expr_deparse(F->response) : NULL;
    char **bars = calloc((size_t)F->nre + 1, sizeof *bars);
    mlmx_sb_printf(&b, "%s ~ ", resp ? resp : "");
    b.oom |= !bars;
    free(resp);
    put_terms(&b, &F->fixed, fixdrop);
    if (F->offset) {
        char *o = mlmx_expr_deparse(F->offset);
        mlmx_sb_printf(&b, " + offset(%s)", o ? o : "");
        b.oom |= !o;
        free(o);
    }
    *nbars = 0;
    for (int r = 0; r < F->nre && !b.oom; r++) {
        if (r == k && drop < 0)
            continue;
        char *t = bar_text(F, r, k, drop);
        int dup = 0;
        for (int j = 0; t && j < *nbars && !dup; j++)
            dup = strcmp(bars[j], t) == 0;
        if (!t || dup) {
            b.oom |= !t;
            free(t);
            continue;
        }
        mlmx_sb_printf(&b, " + %s", t);
        bars[(*nbars)++] = t;
    }
    for (int j = 0; bars && j < *nbars; j++)
        free(bars[j]);
    free(bars);
    if (b.oom) {
        mlmx_sb_free(&b);
        return NULL;
    }
    return b.s;
}

/* The row name as lmerTest writes it: "(1 | Subject)" for a removed term,
 * "Days in (Days | Subject)" for a dropped slope. */
static char *row_name(const mlmx_reterm *r, int drop)
{
    mlmx_strbuf b = {0};
    if (drop >= 0) {
        put_joined(&b, r->lhs.terms[drop].vars, r->lhs.terms[drop].nvars);
        mlmx_sb_puts(&b, " in ");
    }
    mlmx_sb_puts(&b, "(");
    put_terms(&b, &r->lhs, -1);
    mlmx_sb_printf(&b, " | %s)", r->label);
    if (b.oom) {
        mlmx_sb_free(&b);
        return NULL;
    }
    return b.s;
}

/* Fill row r from a log-likelihood with npar parameters. */
static void set_row(mlmx_anova *a, int r, int model, double ll, int npar, size_t n)
{
    mlmx_anova_row *w = &a->rows[r];
    *w = (mlmx_anova_row){model, a->names[r], a->formulas[r], npar, -2.0 * ll + 2.0 * npar,
                          -2.0 * ll + npar * log((double)n), ll, -2.0 * ll, NAN, 0, NAN, NAN};
    if (r > 0)
        mlmx_cmp_lrt(w, &a->rows[0]);
}

/* Build and fit (or, with no random term left, the linear model) the
 * reduced model of row r, with the full fit's method, family, link and
 * quadrature. */
static mlmx_status reduced_row(mlmx_anova *a, int r, int nbars, const mlmx_data *d,
                               const mlmx_fit *f, const mlmx_fit_options *o)
{
    const mlmx_model *m = f->model;
    double ll;
    int npar;
    if (nbars == 0) {
        mlmx_status st = mlmx_cmp_lm_loglik(m, f->method == MLMX_REML, &ll);
        if (st)
            return mlmx_api_failf(st, "the linear model %s cannot be fitted", a->formulas[r]);
        npar = m->p + 1;
    } else {
        mlmx_model *rm = NULL;
        mlmx_fit *rf = NULL;
        mlmx_status st = mlmx_model_create(d, a->formulas[r], &rm);
        if (st)
            return st;
        a->models[a->nmodels++] = rm;
        if (rm->n != m->n)
            return mlmx_api_failf(MLMX_ERR_DATA,
                                  "%s: number of rows in use has changed (%zu in the model, "
                                  "%zu in %s): remove missing values?",
                                  a->kind == MLMX_CMP_RANOVA ? "ranova" : "drop1", m->n,
                                  rm->n, a->formulas[r]);
        mlmx_fit_options ro = *o;
        ro.method = f->method;
        ro.family = f->family;
        ro.link = f->link;
        ro.nagq = f->nagq;
        ro.theta_start = NULL;
        ro.progress = NULL;
        ro.conditional_variances = 0;
        st = f->family == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(rm, &ro, &rf)
                                                : mlmx_fit_glmm(rm, &ro, &rf);
        if (st)
            return st;
        a->fits[a->nfits++] = rf;
        ll = rf->loglik;
        npar = rf->df;
    }
    set_row(a, r, r, ll, npar, m->n);
    return MLMX_OK;
}

/* Rows 1..: each random term's reductions, in the formula's order. */
static mlmx_status reductions(mlmx_anova *a, const mlmx_formula *F, const mlmx_data *d,
                              const mlmx_fit *f, const mlmx_fit_options *o)
{
    mlmx_status st = MLMX_OK;
    for (int k = 0; k < F->nre && !st; k++) {
        const mlmx_termlist *l = &F->re[k].lhs;
        for (int t = l->nterms ? 0 : -1; t < l->nterms && !st; t++) {
            if (t >= 0 && !droppable(l, t))
                continue;
            const int r = a->nrows;
            int nbars = 0;
            a->names[r] = row_name(&F->re[k], t);
            a->formulas[r] = reduced_formula(F, -1, k, t, &nbars);
            a->nrows++;
            if (!a->names[r] || !a->formulas[r])
                return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
            st = reduced_row(a, r, nbars, d, f, o);
            /* one scalar variance removed, the rest unchanged: chi-bar-square */
            if (!st && t < 0 && F->re[k].lhs.intercept && a->rows[r].df == 1)
                a->rows[r].p_chibar = mlmx_cmp_chibar01(a->rows[r].chisq);
        }
    }
    return st;
}

/* The fit's formula parsed, and *o the options given or the defaults
 * (in *def); errors recorded. */
static mlmx_status parse_fitted(const mlmx_fit *f, const mlmx_fit_options **o,
                                mlmx_fit_options *def, mlmx_formula **F)
{
    if (!*o) {
        mlmx_fit_options_default(def);
        *o = def;
    }
    mlmx_error err;
    mlmx_err_clear(&err);
    return mlmx_formula_parse(f->model->formula, F, &err) ? mlmx_api_fail(&err) : MLMX_OK;
}

mlmx_status mlmx_ranova_create(const mlmx_data *d, const mlmx_fit *f, const mlmx_fit_options *o,
                               mlmx_anova **out)
{
    mlmx_api_clear();
    if (!d || !f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_ranova_create: bad argument");
    if (mlmx_infer_iid(f, "ranova"))
        return MLMX_ERR_UNSUPPORTED;
    *out = NULL;
    if (f->family != MLMX_FAMILY_GAUSSIAN)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "ranova is for linear mixed models (lmerTest's ranova)");
    if (mlmx_api_require_unstructured(f->model, "ranova"))
        return MLMX_ERR_UNSUPPORTED;
    mlmx_fit_options def;
    mlmx_formula *F = NULL;
    mlmx_status st = parse_fitted(f, &o, &def, &F);
    if (st)
        return st;
    int n = 1;
    for (int k = 0; k < F->nre; k++)
        n += F->re[k].lhs.nterms ? F->re[k].lhs.nterms : 1;
    mlmx_anova *a = mlmx_cmp_alloc(MLMX_CMP_RANOVA, n);
    if (a) {
        a->method = f->method;
        a->formula = mlmx_strdup(f->model->formula);
        a->names[0] = mlmx_strdup("<none>");
        a->formulas[0] = mlmx_strdup(f->model->formula);
        a->nrows = 1;
    }
    if (!a || !a->formula || !a->names[0] || !a->formulas[0])
        st = mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    if (!st) {
        set_row(a, 0, -1, f->loglik, f->df, f->model->n);
        st = reductions(a, F, d, f, o);
    }
    mlmx_formula_free(F);
    if (st) {
        mlmx_anova_free(a);
        return st;
    }
    a->boundary = 1;
    *out = a;
    return MLMX_OK;
}

mlmx_status mlmx_drop1_create(const mlmx_data *d, const mlmx_fit *f, const mlmx_fit_options *o,
                              mlmx_anova **out)
{
    mlmx_api_clear();
    if (!d || !f || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_drop1_create: bad argument");
    if (mlmx_infer_iid(f, "drop1"))
        return MLMX_ERR_UNSUPPORTED;
    *out = NULL;
    /* the reduced formulas are written from the expanded terms, which
     * would lose the structure */
    if (mlmx_api_require_unstructured(f->model, "drop1 (mlmx anova --drop1)"))
        return MLMX_ERR_UNSUPPORTED;
    if (f->family == MLMX_FAMILY_GAUSSIAN && f->method == MLMX_REML)
        return mlmx_api_failf(MLMX_ERR_ARG, "drop1: likelihood-ratio tests of fixed effects "
                                            "need an ML fit (fit with method ML)");
    if (f->model->weights)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "drop1: a model with prior weights is not supported");
    mlmx_fit_options def;
    mlmx_formula *F = NULL;
    mlmx_status st = parse_fitted(f, &o, &def, &F);
    if (st)
        return st;
    mlmx_anova *a = mlmx_cmp_alloc(MLMX_CMP_DROP1, 1 + F->fixed.nterms);
    if (a) {
        a->method = f->method;
        a->formula = mlmx_strdup(f->model->formula);
        a->names[0] = mlmx_strdup("<none>");
        a->formulas[0] = mlmx_strdup(f->model->formula);
        a->nrows = 1;
    }
    if (!a || !a->formula || !a->names[0] || !a->formulas[0])
        st = mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    if (!st)
        set_row(a, 0, -1, f->loglik, f->df, f->model->n);
    for (int t = 0; !st && t < F->fixed.nterms; t++) {
        if (!droppable(&F->fixed, t))
            continue;
        const int r = a->nrows;
        int nbars = 0;
        mlmx_strbuf b = {0};
        put_joined(&b, F->fixed.terms[t].vars, F->fixed.terms[t].nvars);
        a->names[r] = b.oom ? NULL : b.s;
        if (b.oom)
            mlmx_sb_free(&b);
        a->formulas[r] = reduced_formula(F, t, -1, -1, &nbars);
        a->nrows++;
        st = !a->names[r] || !a->formulas[r] ? mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory")
                                             : reduced_row(a, r, nbars, d, f, o);
    }
    mlmx_formula_free(F);
    if (st) {
        mlmx_anova_free(a);
        return st;
    }
    *out = a;
    return MLMX_OK;
}
