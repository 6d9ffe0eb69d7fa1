/* R-style deparse of formula expressions and R's formatting of doubles.
 * These strings become coefficient and term names, so they must match
 * what R prints: spaces around + - * | || ~ %in%, none around / ^ :, the
 * user's own parentheses kept, 15 significant digits for numbers. */
#include "formula/formula_internal.h"
#include "util/strbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ numbers */

void mlmx_format_double(double x, char *buf, size_t size)
{
    if (size == 0)
        return;
    if (isnan(x)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(x)) {
        snprintf(buf, size, x > 0 ? "Inf" : "-Inf");
        return;
    }
    if (x == 0) {  /* also -0, which R prints as 0 */
        snprintf(buf, size, "0");
        return;
    }
    /* R's formatReal with digits = 15: find the significant digits needed
     * (at most 15) and the decimal exponent, then choose fixed notation
     * unless it is wider than scientific. */
    char sci[40];
    snprintf(sci, sizeof sci, "%.14e", x);
    const char *m = sci + (sci[0] == '-');
    const char *e = strchr(m, 'e');
    int kp = e ? atoi(e + 1) : 0;
    int nsig = 15;
    /* mantissa digits are m[0] and m[2..15]; drop trailing zeros */
    while (nsig > 1 && m[nsig] == '0')
        nsig--;
    int neg = x < 0;
    int rgt = nsig - kp - 1;
    if (rgt < 0)
        rgt = 0;
    int left = kp >= 0 ? kp + 1 : 1;
    int fixed_w = neg + left + (rgt > 0 ? rgt + 1 : 0);
    int sci_w = neg + (nsig > 1 ? nsig + 1 : 1) + (kp >= 100 || kp <= -100 ? 5 : 4);
    if (fixed_w <= sci_w)
        snprintf(buf, size, "%.*f", rgt, x);
    else
        snprintf(buf, size, "%.*e", nsig - 1, x);
}

/* ------------------------------------------------------------------ names */

int fx_is_syntactic(const char *s)
{
    static const char *const reserved[] = {
        "if",   "else", "repeat", "while", "function", "for", "next", "break", "TRUE",
        "FALSE", "NULL", "Inf",   "NaN",  "NA",       "NA_integer_", "NA_real_",
        "NA_character_", "NA_complex_", "in", "..."};
    const unsigned char *u = (const unsigned char *)s;
    if (!u[0])
        return 0;
    if (!((u[0] >= 'a' && u[0] <= 'z') || (u[0] >= 'A' && u[0] <= 'Z') || u[0] == '.' ||
          u[0] >= 0x80))
        return 0;
    if (u[0] == '.' && u[1] >= '0' && u[1] <= '9')
        return 0;
    for (size_t i = 1; u[i]; i++)
        if (!((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
              (u[i] >= '0' && u[i] <= '9') || u[i] == '.' || u[i] == '_' || u[i] >= 0x80))
            return 0;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(s, reserved[i]) == 0)
            return 0;
    return 1;
}

/* ------------------------------------------------------------------ deparse */

/* Binding strength, higher binds tighter (R's ?Syntax). */
enum { P_TILDE = 1, P_OR, P_CMP, P_SUM, P_PROD, P_SPECIAL, P_COLON, P_UNARY, P_POWER, P_ATOM };

static int binop_prec(char op)
{
    switch (op) {
    case '~': return P_TILDE;
    case '|':
    case 'B': return P_OR;
    case '+':
    case '-': return P_SUM;
    case '*':
    case '/': return P_PROD;
    case 'i': return P_SPECIAL;
    case ':': return P_COLON;
    case '^': return P_POWER;
    case '<':
    case '>':
    case 'l':
    case 'g':
    case 'e':
    case 'n': return P_CMP;
    default: return P_ATOM;
    }
}

static int prec_of(const mlmx_expr *e)
{
    if (e->paren)
        return P_ATOM;
    if (e->kind == MLMX_EX_BINOP)
        return binop_prec(e->op);
    if (e->kind == MLMX_EX_UNARY)
        return P_UNARY;
    return P_ATOM;
}

static const char *binop_text(char op)
{
    switch (op) {
    case '~': return " ~ ";
    case '|': return " | ";
    case 'B': return " || ";
    case '+': return " + ";
    case '-': return " - ";
    case '*': return " * ";
    case '/': return "/";
    case 'i': return " %in% ";
    case ':': return ":";
    case '^': return "^";
    case '<': return " < ";
    case '>': return " > ";
    case 'l': return " <= ";
    case 'g': return " >= ";
    case 'e': return " == ";
    case 'n': return " != ";
    default: return " ? ";
    }
}

static void dp(mlmx_strbuf *b, const mlmx_expr *e);

/* Emit a child, adding parentheses only where the tree (not the user's
 * text) needs them: parsed trees already carry their parentheses, but an
 * expression assembled by hand should still deparse to valid R. */
static void dp_child(mlmx_strbuf *b, const mlmx_expr *child, int need)
{
    int wrap = prec_of(child) < need;
    if (wrap)
        mlmx_sb_puts(b, "(");
    dp(b, child);
    if (wrap)
        mlmx_sb_puts(b, ")");
}

static int is_sum(const mlmx_expr *e)
{
    return e->kind == MLMX_EX_BINOP && (e->op == '+' || e->op == '-');
}

/* A chain a + b - c + ... by a loop over its left spine rather than by
 * recursion (the parser lets such chains be long); e's own parentheses
 * are written by the caller, those of the links below it here. */
static void dp_sum(mlmx_strbuf *b, const mlmx_expr *e)
{
    int k = 0;
    for (const mlmx_expr *x = e; is_sum(x); x = x->args[0])
        k++;
    const mlmx_expr **links = malloc((size_t)k * sizeof *links);
    if (!links) {
        b->oom = 1;
        return;
    }
    int i = k;
    for (const mlmx_expr *x = e; is_sum(x); x = x->args[0])
        links[--i] = x;
    for (i = k - 2; i >= 0; i--)
        for (int j = 0; j < links[i]->paren; j++)
            mlmx_sb_puts(b, "(");
    dp_child(b, links[0]->args[0], P_SUM);
    for (i = 0; i < k; i++) {
        mlmx_sb_puts(b, binop_text(links[i]->op));
        dp_child(b, links[i]->args[1], P_SUM + 1);
        if (i < k - 1)
            for (int j = 0; j < links[i]->paren; j++)
                mlmx_sb_puts(b, ")");
    }
    free(links);
}

static void dp(mlmx_strbuf *b, const mlmx_expr *e)
{
    for (int i = 0; i < e->paren; i++)
        mlmx_sb_puts(b, "(");
    switch (e->kind) {
    case MLMX_EX_SYMBOL:
        if (fx_is_syntactic(e->name)) {
            mlmx_sb_puts(b, e->name);
        } else {
            mlmx_sb_puts(b, "`");
            mlmx_sb_puts(b, e->name);
            mlmx_sb_puts(b, "`");
        }
        break;
    case MLMX_EX_NUMBER: {
        char num[40];
        mlmx_format_double(e->number, num, sizeof num);
        mlmx_sb_puts(b, num);
        break;
    }
    case MLMX_EX_CALL:
        mlmx_sb_puts(b, e->name);
        mlmx_sb_puts(b, "(");
        for (int i = 0; i < e->nargs; i++) {
            if (i)
                mlmx_sb_puts(b, ", ");
            dp(b, e->args[i]);
        }
        mlmx_sb_puts(b, ")");
        break;
    case MLMX_EX_UNARY:
        mlmx_sb_putn(b, &e->op, 1);
        dp_child(b, e->args[0], P_UNARY);
        break;
    case MLMX_EX_BINOP: {
        if (is_sum(e) && is_sum(e->args[0])) {
            dp_sum(b, e);
            break;
        }
        int p = binop_prec(e->op);
        int right_assoc = e->op == '^';
        dp_child(b, e->args[0], right_assoc ? p + 1 : p);
        mlmx_sb_puts(b, binop_text(e->op));
        /* R writes 2^-1 without parentheses: a signed exponent is fine */
        if (e->op == '^' && e->args[1]->kind == MLMX_EX_UNARY)
            dp(b, e->args[1]);
        else
            dp_child(b, e->args[1], right_assoc ? p : p + 1);
        break;
    }
    }
    for (int i = 0; i < e->paren; i++)
        mlmx_sb_puts(b, ")");
}

char *mlmx_expr_deparse(const mlmx_expr *e)
{
    mlmx_strbuf b = {0};
    if (!e)
        mlmx_sb_puts(&b, "");
    else
        dp(&b, e);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    if (!b.s)
        mlmx_sb_puts(&b, "");
    return b.s;
}

char *fx_deparse_arena(fx_arena *a, const mlmx_expr *e)
{
    char *s = mlmx_expr_deparse(e);
    if (!s)
        return NULL;
    char *r = fx_strndup(a, s, strlen(s));
    free(s);
    return r;
}
