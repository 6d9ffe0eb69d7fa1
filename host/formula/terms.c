/* Formula tree -> terms, the way R's terms.formula() (src/library/stats/
 * src/model.c: ExtractVars, EncodeVars, TrimRepeats) and lme4's
 * findbars/nobars/expandDoubleVerts do it.
 *
 * As in R, a term is a bit set over the variables of the formula, numbered
 * in order of first appearance. Each operator maps term lists to a term
 * list ('+' concatenates, ':' takes all pairwise unions, '*' both, '/'
 * nests, '^' crosses repeatedly, '-' removes); duplicates and empty terms
 * are then dropped keeping first occurrences, and the final list is sorted
 * by degree, stably. The numbers 0 and 1 act on the intercept, with a
 * parity flag that flips on the right of '-'. The variables inside a term
 * therefore come out in formula order, which is why R prints
 * sector*cses after meanses*cses as "cses:sector". */
#include "formula/terms_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ term lists */

typedef struct tlist {
    uint64_t *b;  /* n terms of nw words each */
    int n, cap, nw;
} tlist;

static void tl_free(tlist *t)
{
    free(t->b);
    t->b = NULL;
    t->n = t->cap = 0;
}

static uint64_t *tl_at(const tlist *t, int i)
{
    return t->b + (size_t)i * (size_t)t->nw;
}


static mlmx_status too_many_terms(xctx *c, const mlmx_expr *at)
{
    return fx_error(c->err, c->text, at ? at->pos : 0,
                    "formula expands to too many terms (more than %d)", FX_MAX_TERMS);
}

/* Reserve room for k more terms; at counts against FX_MAX_PRODUCT. */
static mlmx_status tl_reserve(xctx *c, tlist *t, long long k, const mlmx_expr *at)
{
    if ((long long)t->n + k > FX_MAX_PRODUCT)
        return too_many_terms(c, at);
    c->work += (long)k * t->nw;
    if (c->work > FX_MAX_WORK)
        return fx_error(c->err, c->text, at ? at->pos : 0,
                        "formula is too complex to expand");
    int need = t->n + (int)k;
    if (need <= t->cap)
        return MLMX_OK;
    int cap = t->cap ? t->cap : 4;
    while (cap < need)
        cap *= 2;
    uint64_t *b = realloc(t->b, (size_t)cap * (size_t)t->nw * sizeof *b);
    if (!b)
        return fx_nomem(c->err);
    t->b = b;
    t->cap = cap;
    return MLMX_OK;
}

/* Append one zeroed term and return it (room must be reserved). */
static uint64_t *tl_push(tlist *t)
{
    uint64_t *p = tl_at(t, t->n++);
    memset(p, 0, (size_t)t->nw * sizeof *p);
    return p;
}

static int term_zero(const uint64_t *a, int nw)
{
    for (int w = 0; w < nw; w++)
        if (a[w])
            return 0;
    return 1;
}

static int term_eq(const uint64_t *a, const uint64_t *b, int nw)
{
    return memcmp(a, b, (size_t)nw * sizeof *a) == 0;
}

static uint64_t term_hash(const uint64_t *a, int nw)
{
    uint64_t h = 1469598103934665603ULL;
    for (int w = 0; w < nw; w++) {
        h ^= a[w];
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    return h;
}

static int term_degree(const uint64_t *a, int nw)
{
    int d = 0;
    for (int w = 0; w < nw; w++) {
        uint64_t x = a[w];
        while (x) {
            x &= x - 1;
            d++;
        }
    }
    return d;
}

/* R's TrimRepeats: drop empty terms and later duplicates, in place. A hash
 * set keeps this linear; interaction products can be large. */
static mlmx_status tl_trim(xctx *c, tlist *t, const mlmx_expr *at)
{
    if (t->n == 0)
        return MLMX_OK;
    size_t size = 16;
    while (size < (size_t)t->n * 2)
        size *= 2;
    int *slot = malloc(size * sizeof *slot);
    if (!slot)
        return fx_nomem(c->err);
    for (size_t s = 0; s < size; s++)
        slot[s] = -1;
    int out = 0;
    for (int i = 0; i < t->n; i++) {
        const uint64_t *ti = tl_at(t, i);
        if (term_zero(ti, t->nw))
            continue;
        size_t s = (size_t)term_hash(ti, t->nw) & (size - 1);
        int dup = 0;
        while (slot[s] >= 0) {
            if (term_eq(tl_at(t, slot[s]), ti, t->nw)) {
                dup = 1;
                break;
            }
            s = (s + 1) & (size - 1);
        }
        if (dup)
            continue;
        if (out != i)
            memcpy(tl_at(t, out), ti, (size_t)t->nw * sizeof *ti);
        slot[s] = out++;
    }
    free(slot);
    t->n = out;
    if (out > FX_MAX_TERMS)
        return too_many_terms(c, at);
    return MLMX_OK;
}

/* R's DeleteTerms: drop from t every term that is in r, in place. A hash
 * set of r keeps this linear in both lists. */
static mlmx_status tl_remove(xctx *c, tlist *t, const tlist *r)
{
    if (r->n == 0 || t->n == 0)
        return MLMX_OK;
    size_t size = 16;
    while (size < (size_t)r->n * 2)
        size *= 2;
    int *slot = malloc(size * sizeof *slot);
    if (!slot)
        return fx_nomem(c->err);
    for (size_t s = 0; s < size; s++)
        slot[s] = -1;
    for (int j = 0; j < r->n; j++) {
        size_t s = (size_t)term_hash(tl_at(r, j), r->nw) & (size - 1);
        while (slot[s] >= 0)
            s = (s + 1) & (size - 1);
        slot[s] = j;
    }
    int w = 0;
    for (int i = 0; i < t->n; i++) {
        const uint64_t *ti = tl_at(t, i);
        size_t s = (size_t)term_hash(ti, t->nw) & (size - 1);
        int drop = 0;
        for (; slot[s] >= 0 && !drop; s = (s + 1) & (size - 1))
            drop = term_eq(tl_at(r, slot[s]), ti, t->nw);
        if (!drop) {
            if (w != i)
                memcpy(tl_at(t, w), ti, (size_t)t->nw * sizeof *ti);
            w++;
        }
    }
    free(slot);
    t->n = w;
    return MLMX_OK;
}

/* ------------------------------------------------------------------ variables */

static mlmx_status install_var(xctx *c, mlmx_expr *e)
{
    /* In term context parentheses only group: "(a)" is the variable a, as
     * in R, so the table holds an unparenthesized copy (which is what
     * consumers deparse into coefficient names). */
    mlmx_expr *v = e;
    if (e->paren) {
        fx_node *copy = fx_alloc(c->a, sizeof *copy);
        if (!copy)
            return fx_nomem(c->err);
        *copy = *FX(e);
        copy->e.paren = 0;
        v = &copy->e;
    }
    char *key = fx_deparse_arena(c->a, v);
    if (!key)
        return fx_nomem(c->err);
    for (int i = 0; i < c->nvars; i++)
        if (strcmp(c->keys[i], key) == 0) {
            FX(e)->varidx = i;
            return MLMX_OK;
        }
    if (c->nvars == FX_MAX_VARS)
        return fx_error(c->err, c->text, e->pos, "too many variables in the formula (more than %d)",
                        FX_MAX_VARS);
    c->vars[c->nvars] = v;
    c->keys[c->nvars] = key;
    FX(e)->varidx = c->nvars++;
    return MLMX_OK;
}

/* A chain a + b - c + ... (left associative, so a left-deep tree): its
 * links from the bottom up, so walks can loop over a long sum instead of
 * recursing down its left spine (the parser does not count that spine
 * against the depth limit). *links is malloc'd; NULL when e is no chain. */
static int is_sum(const mlmx_expr *e)
{
    return e->kind == MLMX_EX_BINOP && (e->op == '+' || e->op == '-');
}

static mlmx_status sum_links(xctx *c, const mlmx_expr *e, const mlmx_expr ***links, int *n)
{
    *links = NULL;
    *n = 0;
    int k = 0;
    for (const mlmx_expr *x = e; is_sum(x); x = x->args[0])
        k++;
    const mlmx_expr **v = malloc((size_t)(k ? k : 1) * sizeof *v);
    if (!v)
        return fx_nomem(c->err);
    int i = k;
    for (const mlmx_expr *x = e; is_sum(x); x = x->args[0])
        v[--i] = x;
    *links = v;
    *n = k;
    return MLMX_OK;
}

static void name_for_msg(const mlmx_expr *e, char *buf, size_t size)
{
    fx_quote_name(e->name ? e->name : "?", buf, size);
}

static const char *const cov_known[] = {"us", "diag", "cs", "ar1", "toep"};

/* The parser admits only these names around a bar (an unknown one is an
 * "unknown covariance structure" there). */
static int cov_is_known(const char *name)
{
    for (size_t i = 0; i < sizeof cov_known / sizeof *cov_known; i++)
        if (strcmp(name, cov_known[i]) == 0)
            return 1;
    return 0;
}

/* The bar of a covariance structure written around a random-effect term,
 * cs(x | g) (glmmTMB's syntax), or NULL when e is no such call. */
static mlmx_expr *cov_bar(const mlmx_expr *e)
{
    if (e->kind != MLMX_EX_CALL || e->nargs != 1 || !cov_is_known(e->name))
        return NULL;
    mlmx_expr *b = e->args[0];
    return b->kind == MLMX_EX_BINOP && (b->op == '|' || b->op == 'B') ? b : NULL;
}

/* Arguments of a function used as a variable: plain expressions only. */
static mlmx_status check_call_args(xctx *c, const mlmx_expr *call, const mlmx_expr *e)
{
    char fn[64];
    name_for_msg(call, fn, sizeof fn);
    if (e->kind == MLMX_EX_BINOP && (e->op == '|' || e->op == 'B'))
        return fx_error(c->err, c->text, FXC(e)->oppos,
                        "random-effect term cannot appear inside %s()", fn);
    if (e->kind == MLMX_EX_CALL &&
        (strcmp(e->name, "offset") == 0 || strcmp(e->name, "cbind") == 0)) {
        char inner[64];
        name_for_msg(e, inner, sizeof inner);
        return fx_error(c->err, c->text, e->pos, "%s() cannot be used inside %s()", inner, fn);
    }
    for (int i = 0; i < e->nargs; i++) {
        mlmx_status st = check_call_args(c, e->kind == MLMX_EX_CALL ? e : call, e->args[i]);
        if (st != MLMX_OK)
            return st;
    }
    return MLMX_OK;
}

mlmx_status fx_check_args_of(xctx *c, const mlmx_expr *call)
{
    for (int i = 0; i < call->nargs; i++) {
        mlmx_status st = check_call_args(c, call, call->args[i]);
        if (st != MLMX_OK)
            return st;
    }
    return MLMX_OK;
}

/* Record a random-effect summand: a parenthesized bar, or a covariance
 * structure's call around one. */
static mlmx_status push_bar(xctx *c, mlmx_expr *e)
{
    if (c->nbars == c->capbars) {
        int cap = c->capbars ? 2 * c->capbars : 8;
        mlmx_expr **nb = realloc(c->bars, (size_t)cap * sizeof *nb);
        if (!nb)
            return fx_nomem(c->err);
        c->bars = nb;
        c->capbars = cap;
    }
    c->bars[c->nbars++] = e;
    return MLMX_OK;
}

/* R's ExtractVars plus all the checks: numbers variables in order of
 * appearance, collects the random-effect terms and the offset of the
 * fixed part. summand: e is a term of the top-level sum (reached through
 * '+' and the left side of '-' only), where (x | g) and offset() belong. */
static mlmx_status extract(xctx *c, mlmx_expr *e, int summand)
{
    mlmx_status st = MLMX_OK;
    switch (e->kind) {
    case MLMX_EX_NUMBER:
        if (e->number != 0.0 && e->number != 1.0) {
            char num[32];
            mlmx_format_double(e->number, num, sizeof num);
            return fx_error(c->err, c->text, e->pos,
                            "invalid term '%s' (only 0 and 1 may be used as terms)", num);
        }
        return MLMX_OK;
    case MLMX_EX_SYMBOL:
        if (strcmp(e->name, ".") == 0)
            return fx_error(c->err, c->text, e->pos,
                            "'.' (all other columns) is not supported; name the variables");
        return install_var(c, e);
    case MLMX_EX_CALL:
        if (cov_bar(e)) {
            if (c->relhs)
                return fx_error(c->err, c->text, e->pos, "random-effect terms cannot be nested");
            if (!summand)
                return fx_error(c->err, c->text, e->pos,
                                "random-effect term must be added to the formula with '+'");
            return push_bar(c, e);
        }
        if (cov_is_known(e->name))
            return fx_error(c->err, c->text, e->pos,
                            "%s() is a covariance structure: write it around a random-effect "
                            "term, as %s(0 + factor(time) | g)",
                            e->name, e->name);
        if (strcmp(e->name, "offset") == 0) {
            if (c->relhs || !summand)
                return fx_error(c->err, c->text, e->pos,
                                "offset() must be a term of its own in the fixed part");
            if (c->f->offset)
                return fx_error(c->err, c->text, e->pos, "more than one offset() term");
            st = fx_check_args_of(c, e);
            if (st == MLMX_OK)
                c->f->offset = e->args[0];
            return st;
        }
        if (strcmp(e->name, "cbind") == 0)
            return fx_error(c->err, c->text, e->pos,
                            "cbind() can only be used as the response");
        st = fx_check_args_of(c, e);
        if (st != MLMX_OK)
            return st;
        return install_var(c, e);
    case MLMX_EX_UNARY:
        return extract(c, e->args[0], 0);
    case MLMX_EX_BINOP:
        break;
    }

    if (strchr("<>lgen", e->op))
        return fx_error(c->err, c->text, FX(e)->oppos,
                        "a comparison can only be used inside I(), as in I(x > 2)");
    switch (e->op) {
    case '|':
    case 'B':
        if (e->paren == 0)
            return fx_error(c->err, c->text, FX(e)->oppos,
                            "random-effect term must be in parentheses, as in (x | g)");
        if (c->relhs)
            return fx_error(c->err, c->text, FX(e)->oppos,
                            "random-effect terms cannot be nested");
        if (!summand)
            return fx_error(c->err, c->text, FX(e)->oppos,
                            "random-effect term must be added to the formula with '+'");
        return push_bar(c, e);
    case '+':
    case '-': {
        /* the chain's first operand, then each link's right operand; the
         * right of '-' is no summand */
        const mlmx_expr **links;
        int n;
        st = sum_links(c, e, &links, &n);
        if (st != MLMX_OK)
            return st;
        st = extract(c, links[0]->args[0], summand);
        for (int i = 0; i < n && st == MLMX_OK; i++)
            st = extract(c, links[i]->args[1], links[i]->op == '+' ? summand : 0);
        free(links);
        return st;
    }
    case '^': {
        const mlmx_expr *x = e->args[1];
        if (x->kind != MLMX_EX_NUMBER || x->number < 1 || x->number != floor(x->number))
            return fx_error(c->err, c->text, x->pos,
                            "the power of a term must be a positive whole number");
        return extract(c, e->args[0], 0);
    }
    case '~':
        return fx_error(c->err, c->text, FX(e)->oppos, "more than one '~'");
    default: /* ':' '*' '/' 'i' */
        st = extract(c, e->args[0], 0);
        return st != MLMX_OK ? st : extract(c, e->args[1], 0);
    }
}

/* ------------------------------------------------------------------ encode */

static mlmx_status encode(xctx *c, const mlmx_expr *e, tlist *out);

/* Encode both operands (left first: the intercept side effects of 0 and 1
 * happen in text order, as in R). */
static mlmx_status encode2(xctx *c, const mlmx_expr *e, tlist *l, tlist *r)
{
    l->nw = r->nw = c->nw;
    mlmx_status st = encode(c, e->args[0], l);
    if (st != MLMX_OK)
        return st;
    return encode(c, e->args[1], r);
}

/* out = { a | b : a in l, b in r }, l outer, as R's InteractTerms. */
static mlmx_status interact(xctx *c, const tlist *l, const tlist *r, tlist *out,
                            const mlmx_expr *at)
{
    mlmx_status st = tl_reserve(c, out, (long long)l->n * r->n, at);
    if (st != MLMX_OK)
        return st;
    for (int i = 0; i < l->n; i++)
        for (int j = 0; j < r->n; j++) {
            uint64_t *t = tl_push(out);
            const uint64_t *a = tl_at(l, i), *b = tl_at(r, j);
            for (int w = 0; w < c->nw; w++)
                t[w] = a[w] | b[w];
        }
    return MLMX_OK;
}

static mlmx_status append(xctx *c, tlist *out, const tlist *in, const mlmx_expr *at)
{
    mlmx_status st = tl_reserve(c, out, in->n, at);
    if (st != MLMX_OK)
        return st;
    if (in->n)
        memcpy(tl_at(out, out->n), in->b, (size_t)in->n * (size_t)c->nw * sizeof *in->b);
    out->n += in->n;
    return MLMX_OK;
}

/* A chain of '+' (R's PlusTerms) and '-' (DeleteTerms) links, by a loop
 * from its first operand: each right operand is appended, or (on the right
 * of '-', with the intercept parity flipped) removed. Duplicates are
 * trimmed whenever the list has doubled since the last trim and at the
 * end, which gives what trimming after every link gives, in linear time. */
static mlmx_status encode_sum(xctx *c, const mlmx_expr *e, tlist *out)
{
    const mlmx_expr **links;
    int n;
    mlmx_status st = sum_links(c, e, &links, &n);
    if (st != MLMX_OK)
        return st;
    st = encode(c, links[0]->args[0], out);
    if (st == MLMX_OK)
        st = tl_trim(c, out, e);
    int trimmed = out->n;
    for (int i = 0; i < n && st == MLMX_OK; i++) {
        const mlmx_expr *link = links[i];
        tlist r = {NULL, 0, 0, c->nw};
        if (link->op == '+') {
            st = encode(c, link->args[1], &r);
            if (st == MLMX_OK)
                st = append(c, out, &r, link);
            if (st == MLMX_OK && out->n > 2 * trimmed + 64) {
                st = tl_trim(c, out, link);
                trimmed = out->n;
            }
        } else {
            c->parity = !c->parity;
            st = encode(c, link->args[1], &r);
            c->parity = !c->parity;
            if (st == MLMX_OK)
                st = tl_remove(c, out, &r);
            if (st == MLMX_OK) {
                st = tl_trim(c, out, link);
                trimmed = out->n;
            }
        }
        tl_free(&r);
    }
    free(links);
    if (st == MLMX_OK)
        st = tl_trim(c, out, e);
    return st;
}

static mlmx_status encode_binop(xctx *c, const mlmx_expr *e, tlist *out)
{
    tlist l = {NULL, 0, 0, c->nw}, r = {NULL, 0, 0, c->nw};
    mlmx_status st = MLMX_OK;

    switch (e->op) {
    case '|':
    case 'B':
        /* a random-effect summand: contributes nothing to the fixed part */
        return MLMX_OK;
    case '+':
        return encode_sum(c, e, out);
    case ':': /* InteractTerms */
        st = encode2(c, e, &l, &r);
        if (st == MLMX_OK)
            st = interact(c, &l, &r, out, e);
        break;
    case '*': /* CrossTerms: l + r + l:r */
        st = encode2(c, e, &l, &r);
        if (st == MLMX_OK)
            st = append(c, out, &l, e);
        if (st == MLMX_OK)
            st = append(c, out, &r, e);
        if (st == MLMX_OK)
            st = interact(c, &l, &r, out, e);
        break;
    case '/': /* NestTerms: l + (union of l) : each of r */
    case 'i': /* InTerms: each of l : (union of r) */
    {
        st = encode2(c, e, &l, &r);
        if (st != MLMX_OK)
            break;
        const tlist *all = e->op == '/' ? &l : &r;
        tlist *each = e->op == '/' ? &r : &l;
        uint64_t *u = calloc((size_t)c->nw, sizeof *u);
        if (!u) {
            st = fx_nomem(c->err);
            break;
        }
        for (int i = 0; i < all->n; i++)
            for (int w = 0; w < c->nw; w++)
                u[w] |= tl_at(all, i)[w];
        for (int i = 0; i < each->n; i++)
            for (int w = 0; w < c->nw; w++)
                tl_at(each, i)[w] |= u[w];
        free(u);
        if (e->op == '/')
            st = append(c, out, &l, e);
        if (st == MLMX_OK)
            st = append(c, out, each, e);
        break;
    }
    case '^': { /* PowerTerms */
        double pw = e->args[1]->number;
        st = encode(c, e->args[0], &l);
        if (st != MLMX_OK)
            break;
        st = append(c, &r, &l, e);  /* r = the current power */
        /* Crossing with l again changes nothing once the list is a fixed
         * point, which real formulas reach within a few steps; stop there
         * rather than looping (a+b)^1e9 times. The 256 cap only bounds the
         * work for hostile input. */
        for (double k = 1; st == MLMX_OK && k < pw && k < 256; k++) {
            tlist next = {NULL, 0, 0, c->nw};
            st = interact(c, &l, &r, &next, e);
            if (st == MLMX_OK)
                st = tl_trim(c, &next, e);
            if (st != MLMX_OK) {
                tl_free(&next);
                break;
            }
            int same = next.n == r.n &&
                       (r.n == 0 || memcmp(next.b, r.b, (size_t)r.n * (size_t)c->nw *
                                                            sizeof *r.b) == 0);
            tl_free(&r);
            r = next;
            if (same)
                break;
        }
        if (st == MLMX_OK)
            st = append(c, out, &r, e);
        break;
    }
    case '-':
        return encode_sum(c, e, out);
    default:
        st = fx_error(c->err, c->text, FXC(e)->oppos, "unexpected operator in formula");
        break;
    }
    tl_free(&l);
    tl_free(&r);
    if (st == MLMX_OK)
        st = tl_trim(c, out, e);
    return st;
}

/* R's EncodeVars. out must be empty with nw set. */
static mlmx_status encode(xctx *c, const mlmx_expr *e, tlist *out)
{
    out->nw = c->nw;
    switch (e->kind) {
    case MLMX_EX_NUMBER:
        /* extract() allowed only 0 and 1 */
        if (e->number == 1.0)
            c->intercept = c->parity;
        else
            c->intercept = !c->parity;
        return MLMX_OK;
    case MLMX_EX_SYMBOL:
    case MLMX_EX_CALL: {
        if (e->kind == MLMX_EX_CALL && (strcmp(e->name, "offset") == 0 || cov_bar(e)))
            return MLMX_OK;
        mlmx_status st = tl_reserve(c, out, 1, e);
        if (st != MLMX_OK)
            return st;
        int v = FXC(e)->varidx;
        tl_push(out)[v / 64] |= (uint64_t)1 << (v % 64);
        return MLMX_OK;
    }
    case MLMX_EX_UNARY:
        if (e->op == '-') {
            /* -x deletes x from nothing: only its effect on the intercept stays */
            tlist r = {NULL, 0, 0, c->nw};
            c->parity = !c->parity;
            mlmx_status st = encode(c, e->args[0], &r);
            c->parity = !c->parity;
            tl_free(&r);
            return st;
        }
        return encode(c, e->args[0], out);
    case MLMX_EX_BINOP:
        return encode_binop(c, e, out);
    }
    return MLMX_OK;
}

/* ------------------------------------------------------------------ term lists out */

/* Sort by degree (stable) and copy into the arena as mlmx_terms. */
static mlmx_status emit_terms(xctx *c, const tlist *t, mlmx_termlist *out)
{
    out->nterms = 0;
    out->terms = NULL;
    if (t->n == 0)
        return MLMX_OK;
    out->terms = fx_alloc(c->a, (size_t)t->n * sizeof *out->terms);
    if (!out->terms)
        return fx_nomem(c->err);
    int maxdeg = 0;
    for (int i = 0; i < t->n; i++) {
        int d = term_degree(tl_at(t, i), c->nw);
        if (d > maxdeg)
            maxdeg = d;
    }
    for (int deg = 1; deg <= maxdeg; deg++)
        for (int i = 0; i < t->n; i++) {
            const uint64_t *b = tl_at(t, i);
            if (term_degree(b, c->nw) != deg)
                continue;
            mlmx_term *term = &out->terms[out->nterms++];
            term->vars = fx_alloc(c->a, (size_t)deg * sizeof *term->vars);
            if (!term->vars)
                return fx_nomem(c->err);
            for (int v = 0; v < c->nvars; v++)
                if (b[v / 64] >> (v % 64) & 1)
                    term->vars[term->nvars++] = c->vars[v];
        }
    return MLMX_OK;
}

/* Expand one side (the fixed part, or a bar's left side) into out. */
mlmx_status fx_expand_side(xctx *c, mlmx_expr *e, mlmx_termlist *out)
{
    c->nvars = 0;
    mlmx_status st = extract(c, e, 1);
    if (st != MLMX_OK)
        return st;
    c->nw = c->nvars / 64 + 1;
    c->intercept = 1;
    c->parity = 1;
    tlist t = {NULL, 0, 0, c->nw};
    st = encode(c, e, &t);
    if (st == MLMX_OK)
        st = emit_terms(c, &t, out);
    tl_free(&t);
    out->intercept = c->intercept;
    return st;
}

static mlmx_status check_response(xctx *c, const mlmx_expr *e, int top)
{
    if (e->kind == MLMX_EX_BINOP && (e->op == '|' || e->op == 'B'))
        return fx_error(c->err, c->text, FXC(e)->oppos,
                        "random-effect term cannot be part of the response");
    if (e->kind == MLMX_EX_CALL) {
        if (strcmp(e->name, "offset") == 0)
            return fx_error(c->err, c->text, e->pos, "offset() cannot be the response");
        if (strcmp(e->name, "cbind") == 0 && !top)
            return fx_error(c->err, c->text, e->pos,
                            "cbind() can only be used as the whole response");
    }
    for (int i = 0; i < e->nargs; i++) {
        mlmx_status st = check_response(c, e->args[i], 0);
        if (st != MLMX_OK)
            return st;
    }
    return MLMX_OK;
}

/* ------------------------------------------------------------------ entry */

mlmx_status fx_expand(mlmx_formula *f, fx_arena *a, mlmx_error *err)
{
    xctx c;
    memset(&c, 0, sizeof c);
    c.f = f;
    c.a = a;
    c.err = err;
    c.text = f->text;
    c.vars = malloc(FX_MAX_VARS * sizeof *c.vars);
    c.keys = malloc(FX_MAX_VARS * sizeof *c.keys);
    relist re = {NULL, 0, 0};
    mlmx_status st = MLMX_OK;
    if (!c.vars || !c.keys) {
        st = fx_nomem(err);
        goto done;
    }
    if (f->response) {
        st = check_response(&c, f->response, 1);
        if (st != MLMX_OK)
            goto done;
    }
    /* lme4's nobars(): the fixed part is the right side without the bars */
    st = fx_expand_side(&c, a->rhs, &f->fixed);
    if (st != MLMX_OK)
        goto done;
    for (int i = 0; i < c.nbars && st == MLMX_OK; i++)
        st = fx_expand_bar(&c, c.bars[i], &re);
    if (st != MLMX_OK)
        goto done;
    if (re.n) {
        f->re = fx_alloc(a, (size_t)re.n * sizeof *f->re);
        if (!f->re) {
            st = fx_nomem(err);
            goto done;
        }
        memcpy(f->re, re.v, (size_t)re.n * sizeof *f->re);
        f->nre = re.n;
    }
done:
    free(re.v);
    free(c.vars);
    free(c.keys);
    free(c.bars);
    return st;
}
