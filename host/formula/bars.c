/* Formula tree -> random-effect terms, the way lme4's findbars() and
 * expandDoubleVerts() read them: each bar (or covariance structure's call
 * around one) becomes one term per component of a nested grouping factor
 * (a/b: b:a and a), its left side expanded as the fixed part is
 * (terms.c). */
#include "formula/terms_internal.h"

#include <stdlib.h>
#include <string.h>


typedef struct gcomp {
    mlmx_expr **atoms;
    int n;
} gcomp;

typedef struct glist {
    gcomp *v;
    int n, cap;
    mlmx_expr **atoms;  /* storage for all components' atoms */
    int natoms, capatoms;
} glist;

static mlmx_status add_atom(xctx *c, glist *g, mlmx_expr *e)
{
    if (g->natoms == g->capatoms) {
        int cap = g->capatoms ? 2 * g->capatoms : 8;
        mlmx_expr **na = realloc(g->atoms, (size_t)cap * sizeof *na);
        if (!na)
            return fx_nomem(c->err);
        g->atoms = na;
        g->capatoms = cap;
    }
    g->atoms[g->natoms++] = e;
    g->v[g->n - 1].n++;
    return MLMX_OK;
}

/* One component of a nested grouping factor: a or a:b (atoms joined by ':'). */
static mlmx_status group_atoms(xctx *c, glist *g, mlmx_expr *e)
{
    if (e->kind == MLMX_EX_BINOP && e->op == ':') {
        mlmx_status st = group_atoms(c, g, e->args[0]);
        return st != MLMX_OK ? st : group_atoms(c, g, e->args[1]);
    }
    if (e->kind == MLMX_EX_SYMBOL && strcmp(e->name, ".") != 0)
        return add_atom(c, g, e);
    if (e->kind == MLMX_EX_CALL && strcmp(e->name, "factor") == 0) {
        mlmx_status st = fx_check_args_of(c, e);
        return st != MLMX_OK ? st : add_atom(c, g, e);
    }
    if (e->kind == MLMX_EX_BINOP && (e->op == '|' || e->op == 'B'))
        return fx_error(c->err, c->text, FX(e)->oppos, "random-effect terms cannot be nested");
    return fx_error(c->err, c->text, e->pos,
                    "grouping factor must be a variable or an interaction of variables "
                    "(g, g1:g2, g1/g2)");
}

/* a/b/c -> components [a], [b], [c] (R's '/' is left associative; any
 * parentheses around the parts are ignored). */
static mlmx_status group_components(xctx *c, glist *g, mlmx_expr *e)
{
    if (e->kind == MLMX_EX_BINOP && e->op == '/') {
        mlmx_status st = group_components(c, g, e->args[0]);
        return st != MLMX_OK ? st : group_components(c, g, e->args[1]);
    }
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 4;
        gcomp *nv = realloc(g->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return fx_nomem(c->err);
        g->v = nv;
        g->cap = cap;
    }
    g->v[g->n].atoms = NULL;
    g->v[g->n].n = 0;
    g->n++;
    return group_atoms(c, g, e);
}


static mlmx_reterm *re_push(xctx *c, relist *r)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        mlmx_reterm *nv = realloc(r->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return NULL;
        r->v = nv;
        r->cap = cap;
    }
    mlmx_reterm *t = &r->v[r->n++];
    memset(t, 0, sizeof *t);
    (void)c;
    return t;
}

/* The grouping factor made of components 0..j, as lme4 builds it: the
 * innermost component first, and the label as lme4 prints it: "b:a" for
 * j = 1 of a/b/c, "c:(b:a)" for j = 2 (each further level wraps the one
 * before in parentheses). */
static mlmx_status make_group(xctx *c, const glist *g, int j, mlmx_reterm *t)
{
    int nv = 0;
    for (int k = 0; k <= j; k++)
        nv += g->v[k].n;
    t->group = fx_alloc(c->a, (size_t)nv * sizeof *t->group);
    if (!t->group)
        return fx_nomem(c->err);
    size_t lablen = 0;
    char **names = malloc((size_t)nv * sizeof *names);
    int *comp = malloc((size_t)nv * sizeof *comp);
    if (!names || !comp) {
        free(names);
        free(comp);
        return fx_nomem(c->err);
    }
    for (int k = j; k >= 0; k--)
        for (int i = 0; i < g->v[k].n; i++) {
            mlmx_expr *atom = g->v[k].atoms[i];
            char *s = fx_deparse_arena(c->a, atom);
            if (!s) {
                free(names);
                free(comp);
                return fx_nomem(c->err);
            }
            names[t->ngroup] = s;
            comp[t->ngroup] = k;
            t->group[t->ngroup++] = atom;
            lablen += strlen(s) + 3; /* ':' and a pair of parentheses at most */
        }
    t->label = fx_alloc(c->a, lablen + 1);
    if (!t->label) {
        free(names);
        free(comp);
        return fx_nomem(c->err);
    }
    char *p = t->label;
    int open = 0;
    for (int i = 0; i < nv; i++) {
        size_t n = strlen(names[i]);
        if (i) {
            *p++ = ':';
            /* entering component k-1 from component k >= 2: parenthesize */
            if (comp[i] != comp[i - 1] && comp[i - 1] >= 2) {
                *p++ = '(';
                open++;
            }
        }
        memcpy(p, names[i], n);
        p += n;
    }
    while (open-- > 0)
        *p++ = ')';
    *p = '\0';
    free(names);
    free(comp);
    return MLMX_OK;
}

/* A covariance structure around a bar: which one, and the bar's operator
 * as expanded (diag(x | g) is (x || g)). *cov is NULL for us() and diag(). */
static mlmx_status cov_of(xctx *c, const mlmx_expr *call, const char **cov, char *op)
{
    const mlmx_expr *bar = call->args[0];
    *op = bar->op;
    *cov = NULL;
    if (bar->op == 'B')
        return fx_error(c->err, c->text, FXC(bar)->oppos,
                        "%s() takes a term written with '|', as %s(x | g): '||' already makes "
                        "the covariance diagonal",
                        call->name, call->name);
    if (strcmp(call->name, "diag") == 0)
        *op = 'B';
    else if (strcmp(call->name, "us") != 0)
        *cov = call->name;
    return MLMX_OK;
}

mlmx_status fx_expand_bar(xctx *c, mlmx_expr *bar, relist *out)
{
    const char *cov = NULL;
    char op = bar->op;
    const int pos = bar->pos;
    if (bar->kind == MLMX_EX_CALL) {
        mlmx_status st = cov_of(c, bar, &cov, &op);
        if (st != MLMX_OK)
            return st;
        bar = bar->args[0];
    }
    mlmx_termlist lhs;
    c->relhs = 1;
    mlmx_status st = fx_expand_side(c, bar->args[0], &lhs);
    c->relhs = 0;
    if (st != MLMX_OK)
        return st;
    if (!lhs.intercept && lhs.nterms == 0)
        return fx_error(c->err, c->text, bar->pos,
                        "random-effect term has no columns (its left side is empty)");

    glist g = {NULL, 0, 0, NULL, 0, 0};
    st = group_components(c, &g, bar->args[1]);
    if (st == MLMX_OK) {
        /* point each component at its slice of the atom storage */
        int off = 0;
        for (int k = 0; k < g.n; k++) {
            g.v[k].atoms = g.atoms + off;
            off += g.v[k].n;
        }
    }

    /* lme4's expandDoubleVerts: (x || g) is (1 | g) + (0 + x | g), one term
     * per column term; then each is expanded over the '/' nesting. */
    int nsplit = op == 'B' ? (lhs.intercept ? 1 : 0) + lhs.nterms : 1;
    for (int s = 0; st == MLMX_OK && s < nsplit; s++) {
        mlmx_termlist part = lhs;
        if (op == 'B') {
            int ti = lhs.intercept ? s - 1 : s;
            part.intercept = ti < 0;
            part.terms = ti < 0 ? NULL : &lhs.terms[ti];
            part.nterms = ti < 0 ? 0 : 1;
        }
        for (int j = g.n - 1; st == MLMX_OK && j >= 0; j--) {
            mlmx_reterm *t = re_push(c, out);
            if (!t) {
                st = fx_nomem(c->err);
                break;
            }
            t->lhs = part;
            t->pos = pos;
            t->cov = cov;
            st = make_group(c, &g, j, t);
        }
    }
    free(g.v);
    free(g.atoms);
    return st;
}

/* ------------------------------------------------------------------ response */

