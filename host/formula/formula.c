/* The formula API: parse + expand, free, the variable list, and the
 * pieces shared by the phases (arena, error messages). The grammar lives
 * in parse.c, R's terms() algebra in terms.c, deparse in deparse.c. */
#include "formula/formula_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ arena */

struct fx_block {
    fx_block *next;
    size_t used, cap;
    max_align_t data[];
};

#define FX_BLOCK_BYTES 8192

void *fx_alloc(fx_arena *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + align - 1) / align * align;
    if (n == 0)
        n = align;
    fx_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > FX_BLOCK_BYTES ? n : FX_BLOCK_BYTES;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        /* A big one-off allocation goes behind the current block so the
         * remaining room in the current block is not wasted. */
        if (a->head && cap > FX_BLOCK_BYTES) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *fx_strndup(fx_arena *a, const char *s, size_t n)
{
    char *p = fx_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void fx_arena_free(fx_arena *a)
{
    if (!a)
        return;
    fx_block *b = a->head;
    while (b) {
        fx_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* ------------------------------------------------------------------ errors */

mlmx_status fx_nomem(mlmx_error *err)
{
    return mlmx_err_set(err, MLMX_ERR_NOMEM, "formula: out of memory");
}

void fx_quote_name(const char *name, char *buf, size_t size)
{
    /* Names come from the user's text and may be huge or contain control
     * bytes; keep messages one readable line. */
    const size_t maxlen = 40;
    size_t o = 0, i = 0;
    if (size == 0)
        return;
    for (; name[i] && o + 1 < size; i++) {
        if (i == maxlen) {
            if (o + 4 < size) {
                memcpy(buf + o, "...", 3);
                o += 3;
            }
            break;
        }
        unsigned char c = (unsigned char)name[i];
        buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[o] = '\0';
}

/* Columns are counted in characters (UTF-8 lead bytes), so the caret lines
 * up under non-ASCII names in a terminal. */
static int fx_columns(const char *s, size_t n)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

/* Longest text shown in full; longer formulas are shown as a window around
 * the position, which keeps the message inside MLMX_ERRMSG_MAX. */
#define FX_SHOW_MAX 380
#define FX_WINDOW 300

mlmx_status fx_error(mlmx_error *err, const char *text, int pos, const char *fmt, ...)
{
    if (!err)
        return MLMX_ERR_FORMULA;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);

    size_t len = strlen(text);
    if (pos < 0)
        pos = 0;
    if ((size_t)pos > len)
        pos = (int)len;

    size_t start = 0, end = len;
    if (len > FX_SHOW_MAX) {
        start = (size_t)pos > FX_WINDOW / 2 ? (size_t)pos - FX_WINDOW / 2 : 0;
        end = start + FX_WINDOW < len ? start + FX_WINDOW : len;
        /* do not cut a UTF-8 sequence in half (at most 3 continuation
         * bytes; the text need not be valid UTF-8) */
        for (int k = 0; k < 3 && start > 0 && ((unsigned char)text[start] & 0xC0) == 0x80; k++)
            start--;
        for (int k = 0; k < 3 && end < len && ((unsigned char)text[end] & 0xC0) == 0x80; k++)
            end++;
    }

    char shown[FX_SHOW_MAX + 16]; /* window + 3 + 3 UTF-8 bytes + two "..." */
    size_t o = 0;
    if (start > 0) {
        memcpy(shown, "...", 3);
        o = 3;
    }
    int caret = (int)o + fx_columns(text + start, (size_t)pos - start);
    for (size_t i = start; i < end; i++) {
        unsigned char c = (unsigned char)text[i];
        /* tabs and newlines would break the caret alignment */
        shown[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    if (end < len) {
        memcpy(shown + o, "...", 3);
        o += 3;
    }
    shown[o] = '\0';

    int col = fx_columns(text, (size_t)pos) + 1;
    mlmx_err_set(err, MLMX_ERR_FORMULA, "formula: %s at position %d:\n  %s\n  %*s^", what, col,
                 shown, caret, "");
    return MLMX_ERR_FORMULA;
}

/* ------------------------------------------------------------------ API */

mlmx_status mlmx_formula_parse(const char *text, mlmx_formula **out, mlmx_error *err)
{
    if (!out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "formula: no output pointer");
    *out = NULL;
    if (!text)
        return mlmx_err_set(err, MLMX_ERR_ARG, "formula: no formula text");

    fx_arena *a = calloc(1, sizeof *a);
    if (!a)
        return fx_nomem(err);
    mlmx_formula *f = fx_alloc(a, sizeof *f);
    if (!f) {
        free(a);
        return fx_nomem(err);
    }
    f->arena = a;

    mlmx_status st = MLMX_OK;
    size_t len = strlen(text);
    if (len > FX_MAX_TEXT) {
        st = mlmx_err_set(err, MLMX_ERR_FORMULA,
                          "formula: formula is too long (%zu bytes; at most %d)", len,
                          FX_MAX_TEXT);
        goto fail;
    }
    f->text = fx_strndup(a, text, len);
    if (!f->text) {
        st = fx_nomem(err);
        goto fail;
    }
    st = fx_parse_text(f->text, a, &f->response, &a->rhs, err);
    if (st != MLMX_OK)
        goto fail;
    st = fx_expand(f, a, err);
    if (st != MLMX_OK)
        goto fail;
    *out = f;
    return MLMX_OK;

fail:
    mlmx_formula_free(f);
    return st;
}

void mlmx_formula_free(mlmx_formula *f)
{
    if (!f)
        return;
    /* f itself lives in its arena */
    fx_arena *a = f->arena;
    fx_arena_free(a);
    free(a);
}

typedef struct name_list {
    const char **v;
    int n, cap;
} name_list;

static int name_add(name_list *l, const char *s)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        const char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

static int is_sum(const mlmx_expr *e)
{
    return e->kind == MLMX_EX_BINOP && (e->op == '+' || e->op == '-');
}

/* Pre-order walk = order of appearance in the text. The tree depth is
 * bounded by the parser (FX_MAX_DEPTH) except along the left spine of a
 * sum a + b - c + ..., which is walked by a loop, so recursion is safe. */
static int collect_symbols(const mlmx_expr *e, name_list *l)
{
    if (!e)
        return 0;
    if (e->kind == MLMX_EX_SYMBOL)
        return name_add(l, e->name);
    if (is_sum(e) && is_sum(e->args[0])) {
        int k = 0;
        for (const mlmx_expr *x = e; is_sum(x); x = x->args[0])
            k++;
        const mlmx_expr **links = malloc((size_t)k * sizeof *links);
        if (!links)
            return -1;
        int i = k;
        for (const mlmx_expr *x = e; is_sum(x); x = x->args[0])
            links[--i] = x;
        int rc = collect_symbols(links[0]->args[0], l);
        for (i = 0; i < k && rc == 0; i++)
            rc = collect_symbols(links[i]->args[1], l);
        free(links);
        return rc;
    }
    for (int i = 0; i < e->nargs; i++)
        if (collect_symbols(e->args[i], l) != 0)
            return -1;
    return 0;
}

mlmx_status mlmx_formula_variables(const mlmx_formula *f, const char ***names, int *n,
                                   mlmx_error *err)
{
    if (!f || !names || !n)
        return mlmx_err_set(err, MLMX_ERR_ARG, "formula: invalid argument");
    *names = NULL;
    *n = 0;
    const fx_arena *a = f->arena;
    name_list l = {NULL, 0, 0};
    if (collect_symbols(f->response, &l) != 0 || collect_symbols(a->rhs, &l) != 0) {
        free(l.v);
        return fx_nomem(err);
    }
    *names = l.v;
    *n = l.n;
    return MLMX_OK;
}
