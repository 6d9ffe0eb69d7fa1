/* lme4 formula syntax: a recursive-descent parser with R's operator
 * precedence, then R's terms() expansion (main effects, interactions,
 * nesting, removal) and lme4's random-effect term expansion ('/' and '||').
 * Every node lives in one arena freed with the formula. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formula/formula.h"

#define MAX_DEPTH 200

/* ------------------------------------------------------------------ */
/* Arena                                                               */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
} arena_block;

typedef struct arena {
    arena_block *head;
} arena;

static void *arena_alloc(arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 8192 ? n : 8192;
        arena_block *b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(arena *a)
{
    arena_block *b = a ? a->head : NULL;
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    free(a);
}

static char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *r = arena_alloc(a, n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* Errors with a caret under the position                              */

typedef struct parser {
    const char *text;
    size_t len, pos;
    arena *ar;
    mlmx_error *err;
    int failed;
    int depth;
} parser;

static mlmx_status ferr(parser *p, size_t pos, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static mlmx_status ferr(parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return MLMX_ERR_FORMULA;
    p->failed = 1;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* the formula shown on one line: control characters become spaces */
    char shown[512];
    size_t n = p->len < sizeof shown - 1 ? p->len : sizeof shown - 1;
    for (size_t i = 0; i < n; i++)
        shown[i] = (unsigned char)p->text[i] < 0x20 ? ' ' : p->text[i];
    shown[n] = '\0';
    if (pos > n)
        pos = n;
    char caret[520];
    memset(caret, ' ', pos);
    caret[pos] = '^';
    caret[pos + 1] = '\0';
    mlmx_err_set(p->err, MLMX_ERR_FORMULA, "formula: %s at position %zu:\n  %s\n  %s", what,
                 pos + 1, shown, caret);
    return MLMX_ERR_FORMULA;
}

/* ------------------------------------------------------------------ */
/* Lexer                                                               */

typedef enum tok_kind { T_END, T_NAME, T_NUM, T_OP, T_LP, T_RP, T_COMMA, T_BAD } tok_kind;

typedef struct token {
    tok_kind kind;
    char op;          /* T_OP: ~ + - * / : ^ | B(||) %(%in%) */
    size_t pos, len;  /* source span; for backquoted names, inside the quotes */
    double num;
} token;

static void skip_space(parser *p)
{
    while (p->pos < p->len && isspace((unsigned char)p->text[p->pos]))
        p->pos++;
}

static token peek(parser *p)
{
    skip_space(p);
    token t = {T_END, 0, p->pos, 0, 0};
    if (p->pos >= p->len)
        return t;
    const char *s = p->text + p->pos;
    char c = s[0];
    if (isalpha((unsigned char)c) || c == '.' ||
        ((unsigned char)c >= 0x80)) {
        size_t n = 0;
        while (p->pos + n < p->len &&
               (isalnum((unsigned char)s[n]) || s[n] == '.' || s[n] == '_' ||
                (unsigned char)s[n] >= 0x80))
            n++;
        /* ".5" is a number */
        if (c == '.' && n > 1 && isdigit((unsigned char)s[1])) {
            char *end;
            t.kind = T_NUM;
            t.num = strtod(s, &end);
            t.len = (size_t)(end - s);
            return t;
        }
        t.kind = T_NAME;
        t.len = n;
        return t;
    }
    if (isdigit((unsigned char)c)) {
        char buf[64];
        size_t n = 0;
        while (p->pos + n < p->len && n < sizeof buf - 1 &&
               (isdigit((unsigned char)s[n]) || s[n] == '.' || s[n] == 'e' || s[n] == 'E' ||
                ((s[n] == '+' || s[n] == '-') && n > 0 && (s[n - 1] == 'e' || s[n - 1] == 'E'))))
            n++;
        memcpy(buf, s, n);
        buf[n] = '\0';
        char *end;
        t.num = strtod(buf, &end);
        t.len = (size_t)(end - buf);
        t.kind = t.len ? T_NUM : T_BAD;
        if (!t.len)
            t.len = 1;
        return t;
    }
    if (c == '`') {
        const char *e = memchr(s + 1, '`', p->len - p->pos - 1);
        if (!e) {
            t.kind = T_BAD;
            t.len = 1;
            t.op = '`';
            return t;
        }
        t.kind = T_NAME;
        t.pos = p->pos + 1;
        t.len = (size_t)(e - s - 1);
        t.op = '`';
        return t;
    }
    t.len = 1;
    switch (c) {
    case '(':
        t.kind = T_LP;
        return t;
    case ')':
        t.kind = T_RP;
        return t;
    case ',':
        t.kind = T_COMMA;
        return t;
    case '|':
        t.kind = T_OP;
        if (p->pos + 1 < p->len && s[1] == '|') {
            t.op = 'B';
            t.len = 2;
        } else {
            t.op = '|';
        }
        return t;
    case '%':
        if (p->len - p->pos >= 4 && strncmp(s, "%in%", 4) == 0) {
            t.kind = T_OP;
            t.op = '%';
            t.len = 4;
            return t;
        }
        t.kind = T_BAD;
        return t;
    case '~':
    case '+':
    case '-':
    case '*':
    case '/':
    case ':':
    case '^':
        t.kind = T_OP;
        t.op = c;
        return t;
    default:
        t.kind = T_BAD;
        return t;
    }
}

static void advance(parser *p, token t)
{
    p->pos = t.pos + t.len + (t.kind == T_NAME && t.op == '`' ? 1 : 0);
}

/* ------------------------------------------------------------------ */
/* Parser: precedence climbing with R's levels                         */

static mlmx_expr *new_node(parser *p, mlmx_expr_kind k, size_t pos)
{
    mlmx_expr *e = arena_alloc(p->ar, sizeof *e);
    if (!e) {
        mlmx_err_set(p->err, MLMX_ERR_NOMEM, "out of memory");
        p->failed = 1;
        return NULL;
    }
    e->kind = k;
    e->pos = (int)pos;
    return e;
}

static mlmx_expr *binop(parser *p, char op, mlmx_expr *l, mlmx_expr *r, size_t pos)
{
    mlmx_expr *e = new_node(p, MLMX_EX_BINOP, pos);
    if (!e)
        return NULL;
    e->op = op;
    e->args = arena_alloc(p->ar, 2 * sizeof *e->args);
    if (!e->args) {
        p->failed = 1;
        return NULL;
    }
    e->args[0] = l;
    e->args[1] = r;
    e->nargs = 2;
    return e;
}

static const char *known_funcs[] = {"log", "exp", "sqrt", "abs", "I", "factor", "offset", "cbind",
                                    NULL};

static int prec_of(char op)
{
    switch (op) {
    case '~': return 1;
    case '|':
    case 'B': return 2;
    case '+':
    case '-': return 3;
    case '*':
    case '/': return 4;
    case '%': return 5;
    case ':': return 6;
    case '^': return 8; /* unary minus sits at 7 */
    default: return 0;
    }
}

static mlmx_expr *parse_expr(parser *p, int minprec);

static mlmx_expr *parse_primary(parser *p)
{
    token t = peek(p);
    if (++p->depth > MAX_DEPTH) {
        ferr(p, t.pos, "formula is nested too deeply");
        return NULL;
    }
    mlmx_expr *e = NULL;
    switch (t.kind) {
    case T_END:
        ferr(p, t.pos, "unexpected end of formula");
        break;
    case T_BAD:
        if (t.op == '`')
            ferr(p, t.pos, "unterminated backquoted name");
        else
            ferr(p, t.pos, "unexpected character '%c'", p->text[t.pos]);
        break;
    case T_NUM:
        advance(p, t);
        e = new_node(p, MLMX_EX_NUMBER, t.pos);
        if (e)
            e->number = t.num;
        break;
    case T_NAME: {
        advance(p, t);
        token n = peek(p);
        if (n.kind == T_LP && t.op != '`') {
            /* a function call */
            char *name = arena_strndup(p->ar, p->text + t.pos, t.len);
            if (!name) {
                p->failed = 1;
                break;
            }
            int known = 0;
            for (int i = 0; known_funcs[i]; i++)
                if (strcmp(name, known_funcs[i]) == 0)
                    known = 1;
            if (!known) {
                ferr(p, t.pos,
                     "unknown function '%s' (known: log, exp, sqrt, abs, I, factor, offset, "
                     "cbind)",
                     name);
                break;
            }
            advance(p, n);
            e = new_node(p, MLMX_EX_CALL, t.pos);
            if (!e)
                break;
            e->name = name;
            mlmx_expr *args[16];
            int na = 0;
            token c = peek(p);
            if (c.kind == T_RP) {
                ferr(p, c.pos, "function '%s' needs an argument", name);
                e = NULL;
                break;
            }
            for (;;) {
                mlmx_expr *a = parse_expr(p, 1);
                if (!a) {
                    e = NULL;
                    break;
                }
                if (na == 16) {
                    ferr(p, (size_t)a->pos, "too many arguments to '%s'", name);
                    e = NULL;
                    break;
                }
                args[na++] = a;
                c = peek(p);
                if (c.kind == T_COMMA) {
                    advance(p, c);
                    continue;
                }
                if (c.kind == T_RP) {
                    advance(p, c);
                    break;
                }
                ferr(p, c.pos, "expected ',' or ')' in the call to '%s'", name);
                e = NULL;
                break;
            }
            if (!e)
                break;
            e->args = arena_alloc(p->ar, (size_t)na * sizeof *e->args);
            if (!e->args) {
                p->failed = 1;
                e = NULL;
                break;
            }
            memcpy(e->args, args, (size_t)na * sizeof *args);
            e->nargs = na;
        } else {
            e = new_node(p, MLMX_EX_SYMBOL, t.pos);
            if (e) {
                e->name = arena_strndup(p->ar, p->text + t.pos, t.len);
                if (!e->name) {
                    p->failed = 1;
                    e = NULL;
                } else if (t.len == 0) {
                    ferr(p, t.pos, "empty backquoted name");
                    e = NULL;
                }
            }
        }
        break;
    }
    case T_LP: {
        advance(p, t);
        e = parse_expr(p, 1);
        if (!e)
            break;
        token c = peek(p);
        if (c.kind != T_RP) {
            ferr(p, c.pos, c.kind == T_END ? "missing ')' for the '(' at position %zu"
                                           : "expected ')' to close the '(' at position %zu",
                 t.pos + 1);
            e = NULL;
            break;
        }
        advance(p, c);
        e->paren = 1;
        if (e->kind != MLMX_EX_NUMBER && e->kind != MLMX_EX_SYMBOL)
            e->pos = (int)t.pos;
        break;
    }
    case T_OP:
        if (t.op == '-' || t.op == '+') {
            advance(p, t);
            mlmx_expr *a = parse_expr(p, 7);
            if (!a)
                break;
            e = new_node(p, MLMX_EX_UNARY, t.pos);
            if (!e)
                break;
            e->op = t.op;
            e->args = arena_alloc(p->ar, sizeof *e->args);
            if (!e->args) {
                p->failed = 1;
                e = NULL;
                break;
            }
            e->args[0] = a;
            e->nargs = 1;
        } else {
            ferr(p, t.pos, "unexpected '%.*s'", (int)t.len, p->text + t.pos);
        }
        break;
    case T_RP:
        ferr(p, t.pos, "unexpected ')'");
        break;
    case T_COMMA:
        ferr(p, t.pos, "unexpected ','");
        break;
    }
    p->depth--;
    return e;
}

static mlmx_expr *parse_expr(parser *p, int minprec)
{
    if (++p->depth > MAX_DEPTH) {
        ferr(p, p->pos, "formula is nested too deeply");
        return NULL;
    }
    mlmx_expr *lhs = parse_primary(p);
    while (lhs) {
        token t = peek(p);
        if (t.kind != T_OP)
            break;
        int pr = prec_of(t.op);
        if (pr < minprec)
            break;
        advance(p, t);
        token nx = peek(p);
        if (nx.kind == T_END) {
            ferr(p, t.pos, "'%.*s' at the end of the formula needs a right-hand side",
                 (int)t.len, p->text + t.pos);
            lhs = NULL;
            break;
        }
        /* '^' is right-associative, the rest left-associative */
        mlmx_expr *rhs = parse_expr(p, t.op == '^' ? pr : pr + 1);
        if (!rhs) {
            lhs = NULL;
            break;
        }
        lhs = binop(p, t.op, lhs, rhs, t.pos);
    }
    p->depth--;
    return lhs;
}

/* ------------------------------------------------------------------ */
/* Deparse                                                             */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

static void deparse_rec(const mlmx_expr *e, sbuf *b, int depth)
{
    if (depth > MAX_DEPTH + 10) {
        sb_add(b, "...");
        return;
    }
    if (e->paren && e->kind == MLMX_EX_BINOP)
        sb_add(b, "(");
    switch (e->kind) {
    case MLMX_EX_SYMBOL:
        sb_add(b, e->name);
        break;
    case MLMX_EX_NUMBER: {
        char buf[64];
        snprintf(buf, sizeof buf, "%.15g", e->number);
        sb_add(b, buf);
        break;
    }
    case MLMX_EX_CALL:
        sb_add(b, e->name);
        sb_add(b, "(");
        for (int i = 0; i < e->nargs; i++) {
            if (i)
                sb_add(b, ", ");
            deparse_rec(e->args[i], b, depth + 1);
        }
        sb_add(b, ")");
        break;
    case MLMX_EX_UNARY: {
        char op[2] = {e->op, 0};
        sb_add(b, op);
        deparse_rec(e->args[0], b, depth + 1);
        break;
    }
    case MLMX_EX_BINOP: {
        deparse_rec(e->args[0], b, depth + 1);
        switch (e->op) {
        case '^': sb_add(b, "^"); break;
        case ':': sb_add(b, ":"); break;
        case 'B': sb_add(b, " || "); break;
        case '%': sb_add(b, " %in% "); break;
        default: {
            char op[4] = {' ', e->op, ' ', 0};
            sb_add(b, op);
        }
        }
        deparse_rec(e->args[1], b, depth + 1);
        break;
    }
    }
    if (e->paren && e->kind == MLMX_EX_BINOP)
        sb_add(b, ")");
}

char *mlmx_expr_deparse(const mlmx_expr *e)
{
    sbuf b = {0};
    deparse_rec(e, &b, 0);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    if (!b.s) {
        b.s = malloc(1);
        if (b.s)
            b.s[0] = '\0';
    }
    return b.s;
}

/* ------------------------------------------------------------------ */
/* Term expansion (R's terms())                                        */

#define MAXV 256 /* distinct variables in one term list */

typedef struct vtable {
    int n;
    char *key[MAXV];       /* deparsed variable (arena) */
    mlmx_expr *expr[MAXV]; /* first occurrence */
} vtable;

typedef struct tset {      /* a term: sorted variable indices */
    int n;
    unsigned char *v;
} tset;

typedef struct tlist {
    int n, cap;
    tset *t;
} tlist;

typedef struct expander {
    parser *p;
    vtable vt;
} expander;

static int vt_index(expander *x, mlmx_expr *e)
{
    char *k = mlmx_expr_deparse(e);
    if (!k) {
        x->p->failed = 1;
        mlmx_err_set(x->p->err, MLMX_ERR_NOMEM, "out of memory");
        return -1;
    }
    for (int i = 0; i < x->vt.n; i++)
        if (strcmp(x->vt.key[i], k) == 0) {
            free(k);
            return i;
        }
    if (x->vt.n == MAXV) {
        free(k);
        ferr(x->p, (size_t)e->pos, "too many distinct variables (at most %d)", MAXV);
        return -1;
    }
    char *ak = arena_strndup(x->p->ar, k, strlen(k));
    free(k);
    if (!ak) {
        x->p->failed = 1;
        return -1;
    }
    x->vt.key[x->vt.n] = ak;
    x->vt.expr[x->vt.n] = e;
    return x->vt.n++;
}

static int tset_eq(const tset *a, const tset *b)
{
    return a->n == b->n && memcmp(a->v, b->v, (size_t)a->n) == 0;
}

static int tl_find(const tlist *l, const tset *t)
{
    for (int i = 0; i < l->n; i++)
        if (tset_eq(&l->t[i], t))
            return i;
    return -1;
}

static int tl_add(expander *x, tlist *l, const tset *t)
{
    if (tl_find(l, t) >= 0)
        return 0;
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 8;
        tset *nt = arena_alloc(x->p->ar, (size_t)nc * sizeof *nt);
        if (!nt) {
            x->p->failed = 1;
            return -1;
        }
        if (l->n)
            memcpy(nt, l->t, (size_t)l->n * sizeof *nt);
        l->t = nt;
        l->cap = nc;
    }
    l->t[l->n++] = *t;
    return 0;
}

/* union of two terms (sorted, unique) */
static int tset_union(expander *x, const tset *a, const tset *b, tset *out)
{
    unsigned char buf[MAXV];
    int n = 0, i = 0, j = 0;
    while (i < a->n || j < b->n) {
        unsigned char v;
        if (j >= b->n || (i < a->n && a->v[i] < b->v[j]))
            v = a->v[i++];
        else if (i >= a->n || b->v[j] < a->v[i])
            v = b->v[j++];
        else {
            v = a->v[i];
            i++;
            j++;
        }
        buf[n++] = v;
    }
    out->n = n;
    out->v = arena_alloc(x->p->ar, (size_t)(n ? n : 1));
    if (!out->v) {
        x->p->failed = 1;
        return -1;
    }
    memcpy(out->v, buf, (size_t)n);
    return 0;
}

static int expand(expander *x, mlmx_expr *e, tlist *out);

static int interact(expander *x, const tlist *a, const tlist *b, tlist *out)
{
    for (int i = 0; i < a->n; i++)
        for (int j = 0; j < b->n; j++) {
            tset u;
            if (tset_union(x, &a->t[i], &b->t[j], &u) || tl_add(x, out, &u))
                return -1;
        }
    return 0;
}

static int is_atomic(const mlmx_expr *e)
{
    return e->kind == MLMX_EX_SYMBOL || e->kind == MLMX_EX_CALL;
}

/* Expand an expression inside the term algebra (no intercept handling:
 * numbers and bars are errors here). */
static int expand(expander *x, mlmx_expr *e, tlist *out)
{
    parser *p = x->p;
    memset(out, 0, sizeof *out);
    if (is_atomic(e)) {
        if (e->kind == MLMX_EX_CALL && strcmp(e->name, "offset") == 0) {
            ferr(p, (size_t)e->pos, "offset() must be a term of its own");
            return -1;
        }
        int v = vt_index(x, e);
        if (v < 0)
            return -1;
        tset t;
        t.n = 1;
        t.v = arena_alloc(p->ar, 1);
        if (!t.v) {
            p->failed = 1;
            return -1;
        }
        t.v[0] = (unsigned char)v;
        return tl_add(x, out, &t);
    }
    if (e->kind == MLMX_EX_NUMBER) {
        ferr(p, (size_t)e->pos, "a number (%g) cannot be part of an interaction", e->number);
        return -1;
    }
    if (e->kind == MLMX_EX_UNARY) {
        ferr(p, (size_t)e->pos, "unexpected '%c' inside a term", e->op);
        return -1;
    }
    tlist a, b;
    switch (e->op) {
    case '+':
        if (expand(x, e->args[0], out) || expand(x, e->args[1], &b))
            return -1;
        for (int i = 0; i < b.n; i++)
            if (tl_add(x, out, &b.t[i]))
                return -1;
        return 0;
    case '-':
        if (expand(x, e->args[0], out) || expand(x, e->args[1], &b))
            return -1;
        for (int i = 0; i < b.n; i++) {
            int k = tl_find(out, &b.t[i]);
            if (k >= 0) {
                memmove(out->t + k, out->t + k + 1, (size_t)(out->n - k - 1) * sizeof *out->t);
                out->n--;
            }
        }
        return 0;
    case '*':
        if (expand(x, e->args[0], &a) || expand(x, e->args[1], &b))
            return -1;
        for (int i = 0; i < a.n; i++)
            if (tl_add(x, out, &a.t[i]))
                return -1;
        for (int i = 0; i < b.n; i++)
            if (tl_add(x, out, &b.t[i]))
                return -1;
        return interact(x, &a, &b, out);
    case ':':
        if (expand(x, e->args[0], &a) || expand(x, e->args[1], &b))
            return -1;
        return interact(x, &a, &b, out);
    case '/':
    case '%': {
        /* a/b = a + (all of a):b ; b %in% a = b:a */
        if (expand(x, e->args[0], &a) || expand(x, e->args[1], &b))
            return -1;
        if (e->op == '%') {
            return interact(x, &a, &b, out);
        }
        for (int i = 0; i < a.n; i++)
            if (tl_add(x, out, &a.t[i]))
                return -1;
        tset all = {0, NULL};
        for (int i = 0; i < a.n; i++) {
            tset u;
            if (tset_union(x, &all, &a.t[i], &u))
                return -1;
            all = u;
        }
        tlist one = {1, 1, &all};
        return interact(x, &one, &b, out);
    }
    case '^': {
        const mlmx_expr *r = e->args[1];
        if (r->kind != MLMX_EX_NUMBER || r->number < 1 || r->number > 16 ||
            r->number != floor(r->number)) {
            ferr(p, (size_t)r->pos, "the power in (...)^n must be a whole number from 1 to 16");
            return -1;
        }
        if (expand(x, e->args[0], &a))
            return -1;
        tlist cur = {0, 0, NULL};
        for (int i = 0; i < a.n; i++)
            if (tl_add(x, &cur, &a.t[i]))
                return -1;
        for (int k = 1; k < (int)r->number; k++) {
            tlist next = {0, 0, NULL};
            for (int i = 0; i < cur.n; i++)
                if (tl_add(x, &next, &cur.t[i]))
                    return -1;
            if (interact(x, &cur, &a, &next))
                return -1;
            cur = next;
        }
        *out = cur;
        return 0;
    }
    case '|':
    case 'B':
        ferr(p, (size_t)e->pos, "random-effect term must be in parentheses, as in (1 | g)");
        return -1;
    case '~':
        ferr(p, (size_t)e->pos, "more than one '~' in the formula");
        return -1;
    default:
        ferr(p, (size_t)e->pos, "unexpected operator");
        return -1;
    }
}

/* Stable order by degree, as R's terms() orders term labels. */
static void order_by_degree(tlist *l)
{
    for (int i = 1; i < l->n; i++) {
        tset t = l->t[i];
        int j = i - 1;
        while (j >= 0 && l->t[j].n > t.n) {
            l->t[j + 1] = l->t[j];
            j--;
        }
        l->t[j + 1] = t;
    }
}

static int to_termlist(expander *x, const tlist *l, int intercept, mlmx_termlist *out)
{
    out->intercept = intercept;
    out->nterms = l->n;
    out->terms = arena_alloc(x->p->ar, (size_t)(l->n ? l->n : 1) * sizeof *out->terms);
    if (!out->terms) {
        x->p->failed = 1;
        return -1;
    }
    for (int i = 0; i < l->n; i++) {
        mlmx_term *t = &out->terms[i];
        t->nvars = l->t[i].n;
        t->vars = arena_alloc(x->p->ar, (size_t)t->nvars * sizeof *t->vars);
        if (!t->vars) {
            x->p->failed = 1;
            return -1;
        }
        for (int k = 0; k < t->nvars; k++)
            t->vars[k] = x->vt.expr[l->t[i].v[k]];
    }
    return 0;
}

/* The summands of a top-level +/- chain, with their signs. */
typedef struct summand {
    mlmx_expr *e;
    int sign;
} summand;

static int flatten(parser *p, mlmx_expr *e, int sign, summand *out, int *n, int cap)
{
    if (e->kind == MLMX_EX_BINOP && !e->paren && (e->op == '+' || e->op == '-')) {
        if (flatten(p, e->args[0], sign, out, n, cap))
            return -1;
        return flatten(p, e->args[1], e->op == '-' ? -sign : sign, out, n, cap);
    }
    if (e->kind == MLMX_EX_UNARY && !e->paren)
        return flatten(p, e->args[0], e->op == '-' ? -sign : sign, out, n, cap);
    if (*n == cap) {
        ferr(p, (size_t)e->pos, "too many terms (at most %d)", cap);
        return -1;
    }
    out[*n].e = e;
    out[*n].sign = sign;
    (*n)++;
    return 0;
}

#define MAXSUM 512

static int is_bar(const mlmx_expr *e)
{
    return e->kind == MLMX_EX_BINOP && (e->op == '|' || e->op == 'B');
}

/* Expand one side (fixed part, or the left of a bar). Bars are collected
 * into bars[] when allowed (fixed part), an error otherwise. */
static int expand_side(expander *x, mlmx_expr *e, mlmx_termlist *out, mlmx_expr **bars,
                       int *nbars, mlmx_expr **offset)
{
    parser *p = x->p;
    summand *s = malloc(MAXSUM * sizeof *s);
    if (!s) {
        p->failed = 1;
        return -1;
    }
    int n = 0, rc = -1;
    if (flatten(p, e, 1, s, &n, MAXSUM))
        goto done;
    int intercept = 1;
    tlist acc = {0, 0, NULL};
    for (int i = 0; i < n; i++) {
        mlmx_expr *t = s[i].e;
        if (t->kind == MLMX_EX_NUMBER) {
            if (t->number == 1.0)
                intercept = s[i].sign > 0;
            else if (t->number == 0.0)
                intercept = s[i].sign < 0;
            else {
                ferr(p, (size_t)t->pos, "the number %g is not a term (use 0 or 1 for the intercept)",
                     t->number);
                goto done;
            }
            continue;
        }
        if (is_bar(t)) {
            if (!bars) {
                ferr(p, (size_t)t->pos, "a random-effect term cannot be nested in another one");
                goto done;
            }
            if (!t->paren) {
                ferr(p, (size_t)t->pos, "random-effect term must be in parentheses, as in (1 | g)");
                goto done;
            }
            if (s[i].sign < 0) {
                ferr(p, (size_t)t->pos, "a random-effect term cannot be removed with '-'");
                goto done;
            }
            bars[(*nbars)++] = t;
            continue;
        }
        if (t->kind == MLMX_EX_CALL && strcmp(t->name, "offset") == 0) {
            if (!offset) {
                ferr(p, (size_t)t->pos, "offset() belongs in the fixed part of the formula");
                goto done;
            }
            if (*offset) {
                ferr(p, (size_t)t->pos, "only one offset() is allowed");
                goto done;
            }
            if (t->nargs != 1 || s[i].sign < 0) {
                ferr(p, (size_t)t->pos, "offset() takes one argument");
                goto done;
            }
            *offset = t->args[0];
            continue;
        }
        tlist part;
        if (expand(x, t, &part))
            goto done;
        if (s[i].sign > 0) {
            for (int k = 0; k < part.n; k++)
                if (tl_add(x, &acc, &part.t[k]))
                    goto done;
        } else {
            for (int k = 0; k < part.n; k++) {
                int f = tl_find(&acc, &part.t[k]);
                if (f >= 0) {
                    memmove(acc.t + f, acc.t + f + 1, (size_t)(acc.n - f - 1) * sizeof *acc.t);
                    acc.n--;
                }
            }
        }
    }
    order_by_degree(&acc);
    rc = to_termlist(x, &acc, intercept, out);
done:
    free(s);
    return rc;
}

/* Grouping factors of a bar's right side: a, a:b, a/b (nested). Each
 * result is a list of variables and lme4's label. */
typedef struct group {
    mlmx_expr *vars[32];
    int n;
} group;

static int collect_colon(parser *p, mlmx_expr *e, group *g)
{
    if (e->kind == MLMX_EX_BINOP && e->op == ':') {
        if (collect_colon(p, e->args[0], g))
            return -1;
        return collect_colon(p, e->args[1], g);
    }
    if (!is_atomic(e)) {
        ferr(p, (size_t)e->pos, "a grouping factor must be a variable or an interaction a:b");
        return -1;
    }
    if (g->n == 32) {
        ferr(p, (size_t)e->pos, "grouping factor has too many components");
        return -1;
    }
    g->vars[g->n++] = e;
    return 0;
}

/* a/b/c -> [a], [b,a], [c,b,a] (lme4 labels b:a, c:b:a) */
static int expand_groups(parser *p, mlmx_expr *e, group *out, int *n, int cap)
{
    if (e->kind == MLMX_EX_BINOP && e->op == '/') {
        if (expand_groups(p, e->args[0], out, n, cap))
            return -1;
        group inner = {{0}, 0};
        if (collect_colon(p, e->args[1], &inner))
            return -1;
        group prev = out[*n - 1];
        if (*n == cap || inner.n + prev.n > 32) {
            ferr(p, (size_t)e->pos, "grouping factor nests too deeply");
            return -1;
        }
        group g = inner;
        for (int i = 0; i < prev.n; i++)
            g.vars[g.n++] = prev.vars[i];
        out[(*n)++] = g;
        return 0;
    }
    if (*n == cap) {
        ferr(p, (size_t)e->pos, "too many grouping factors");
        return -1;
    }
    group g = {{0}, 0};
    if (collect_colon(p, e, &g))
        return -1;
    out[(*n)++] = g;
    return 0;
}

typedef struct relist {
    int n, cap;
    mlmx_reterm *r;
} relist;

static int re_push(parser *p, relist *l, const mlmx_reterm *t)
{
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 8;
        mlmx_reterm *nr = arena_alloc(p->ar, (size_t)nc * sizeof *nr);
        if (!nr) {
            p->failed = 1;
            return -1;
        }
        if (l->n)
            memcpy(nr, l->r, (size_t)l->n * sizeof *nr);
        l->r = nr;
        l->cap = nc;
    }
    l->r[l->n++] = *t;
    return 0;
}

static int expand_bar(parser *p, mlmx_expr *bar, relist *out)
{
    mlmx_expr *lhs = bar->args[0], *rhs = bar->args[1];
    expander x;
    memset(&x, 0, sizeof x);
    x.p = p;
    mlmx_termlist tl;
    if (expand_side(&x, lhs, &tl, NULL, NULL, NULL))
        return -1;
    if (!tl.intercept && tl.nterms == 0) {
        ferr(p, (size_t)bar->pos, "random-effect term has no columns");
        return -1;
    }
    group groups[32];
    int ng = 0;
    if (expand_groups(p, rhs, groups, &ng, 32))
        return -1;
    for (int g = 0; g < ng; g++) {
        mlmx_reterm base;
        memset(&base, 0, sizeof base);
        base.pos = bar->pos > 0 ? bar->pos - 1 : 0;
        base.ngroup = groups[g].n;
        base.group = arena_alloc(p->ar, (size_t)groups[g].n * sizeof *base.group);
        if (!base.group) {
            p->failed = 1;
            return -1;
        }
        sbuf lab = {0};
        for (int i = 0; i < groups[g].n; i++) {
            base.group[i] = groups[g].vars[i];
            char *d = mlmx_expr_deparse(groups[g].vars[i]);
            if (!d) {
                free(lab.s);
                p->failed = 1;
                return -1;
            }
            if (i)
                sb_add(&lab, ":");
            sb_add(&lab, d);
            free(d);
        }
        if (lab.oom) {
            free(lab.s);
            p->failed = 1;
            return -1;
        }
        base.label = arena_strndup(p->ar, lab.s, lab.len);
        free(lab.s);
        if (!base.label) {
            p->failed = 1;
            return -1;
        }
        if (bar->op == '|') {
            base.lhs = tl;
            if (re_push(p, out, &base))
                return -1;
        } else {
            /* (x || g): one term per column-term, intercept first */
            if (tl.intercept) {
                mlmx_reterm r = base;
                r.lhs.intercept = 1;
                r.lhs.nterms = 0;
                r.lhs.terms = NULL;
                if (re_push(p, out, &r))
                    return -1;
            }
            for (int i = 0; i < tl.nterms; i++) {
                mlmx_reterm r = base;
                r.lhs.intercept = 0;
                r.lhs.nterms = 1;
                r.lhs.terms = &tl.terms[i];
                if (re_push(p, out, &r))
                    return -1;
            }
        }
    }
    return 0;
}

mlmx_status mlmx_formula_parse(const char *text, mlmx_formula **out, mlmx_error *err)
{
    *out = NULL;
    arena *ar = calloc(1, sizeof *ar);
    if (!ar)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    parser p = {text ? text : "", text ? strlen(text) : 0, 0, ar, err, 0, 0};
    mlmx_formula *f = arena_alloc(ar, sizeof *f);
    if (!f) {
        arena_free(ar);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    f->arena = ar;
    f->text = arena_strndup(ar, p.text, p.len);
    size_t k = 0;
    while (k < p.len && isspace((unsigned char)p.text[k]))
        k++;
    if (k == p.len) {
        ferr(&p, 0, "the formula is empty");
        goto fail;
    }
    mlmx_expr *root = parse_expr(&p, 1);
    if (!root)
        goto fail;
    token t = peek(&p);
    if (t.kind != T_END) {
        if (t.kind == T_RP)
            ferr(&p, t.pos, "unmatched ')'");
        else
            ferr(&p, t.pos, "unexpected '%.*s'", (int)(t.len ? t.len : 1), p.text + t.pos);
        goto fail;
    }
    if (!(root->kind == MLMX_EX_BINOP && root->op == '~')) {
        ferr(&p, 0, "the formula needs a '~' between the response and the terms");
        goto fail;
    }
    mlmx_expr *lhs = root->args[0], *rhs = root->args[1];
    if (lhs->kind == MLMX_EX_BINOP && lhs->op == '~') {
        ferr(&p, (size_t)root->pos, "more than one '~' in the formula");
        goto fail;
    }
    if (is_bar(lhs) || lhs->kind == MLMX_EX_NUMBER) {
        ferr(&p, (size_t)lhs->pos, "the response must be a variable or an expression of one");
        goto fail;
    }
    f->response = lhs;
    {
        expander x;
        memset(&x, 0, sizeof x);
        x.p = &p;
        mlmx_expr *bars[MAXSUM];
        int nb = 0;
        if (expand_side(&x, rhs, &f->fixed, bars, &nb, &f->offset))
            goto fail;
        relist rl = {0, 0, NULL};
        for (int i = 0; i < nb; i++)
            if (expand_bar(&p, bars[i], &rl))
                goto fail;
        f->re = rl.r;
        f->nre = rl.n;
    }
    if (p.failed)
        goto fail;
    *out = f;
    return MLMX_OK;
fail:
    arena_free(ar);
    if (err && err->code == MLMX_OK)
        mlmx_err_set(err, MLMX_ERR_FORMULA, "formula: cannot parse");
    return err ? err->code : MLMX_ERR_FORMULA;
}

void mlmx_formula_free(mlmx_formula *f)
{
    if (f)
        arena_free(f->arena);
}

static int known_name(const char *n, const char **names, int k)
{
    for (int i = 0; i < k; i++)
        if (strcmp(names[i], n) == 0)
            return 1;
    return 0;
}

static int collect_symbols(const mlmx_expr *e, const char ***names, int *n, int *cap, int depth)
{
    if (!e || depth > MAX_DEPTH + 10)
        return 0;
    if (e->kind == MLMX_EX_SYMBOL) {
        if (known_name(e->name, *names, *n))
            return 0;
        if (*n == *cap) {
            int nc = *cap ? 2 * *cap : 16;
            const char **nn = realloc(*names, (size_t)nc * sizeof *nn);
            if (!nn)
                return -1;
            *names = nn;
            *cap = nc;
        }
        (*names)[(*n)++] = e->name;
        return 0;
    }
    for (int i = 0; i < e->nargs; i++)
        if (collect_symbols(e->args[i], names, n, cap, depth + 1))
            return -1;
    return 0;
}

mlmx_status mlmx_formula_variables(const mlmx_formula *f, const char ***names, int *n,
                                   mlmx_error *err)
{
    *names = NULL;
    *n = 0;
    int cap = 0, rc = 0;
    rc |= collect_symbols(f->response, names, n, &cap, 0);
    for (int t = 0; t < f->fixed.nterms; t++)
        for (int v = 0; v < f->fixed.terms[t].nvars; v++)
            rc |= collect_symbols(f->fixed.terms[t].vars[v], names, n, &cap, 0);
    rc |= collect_symbols(f->offset, names, n, &cap, 0);
    for (int r = 0; r < f->nre; r++) {
        const mlmx_reterm *re = &f->re[r];
        for (int t = 0; t < re->lhs.nterms; t++)
            for (int v = 0; v < re->lhs.terms[t].nvars; v++)
                rc |= collect_symbols(re->lhs.terms[t].vars[v], names, n, &cap, 0);
        for (int g = 0; g < re->ngroup; g++)
            rc |= collect_symbols(re->group[g], names, n, &cap, 0);
    }
    if (rc) {
        free(*names);
        *names = NULL;
        *n = 0;
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    return MLMX_OK;
}
