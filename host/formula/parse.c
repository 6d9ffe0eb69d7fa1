/* Lexer and recursive-descent parser for R formula syntax. Produces a
 * plain expression tree; what the operators mean (terms, random effects)
 * is decided in terms.c. Precedence follows R's ?Syntax, lowest first:
 *   ~   |  ||   + - (binary)   * /   %in%   :   unary + -   ^ (right)
 * then calls and parentheses. */
#include "formula/formula_internal.h"

#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum tk_kind {
    TK_EOF = 0,
    TK_NAME,
    TK_NUM,
    TK_OP,     /* op: ~ + - * / : ^ | B(||) i(%in%) */
    TK_LPAREN,
    TK_RPAREN,
    TK_COMMA
} tk_kind;

typedef struct token {
    tk_kind kind;
    char op;
    int pos, len;
    double num;
    char *name;  /* TK_NAME: the name without backquotes (arena) */
} token;

typedef struct parser {
    const char *text;
    fx_arena *a;
    mlmx_error *err;
    token *toks;
    int ntok, i;
    int nest;  /* current recursion depth of parse_unary */
    int chains; /* parsing the right side outside calls: '+' '-' chains are flat */
    int calls;  /* calls being parsed (their arguments are ordinary expressions) */
} parser;

/* ------------------------------------------------------------------ lexer */

static int is_name_start(unsigned char c)
{
    /* Bytes >= 0x80 are accepted as letters so UTF-8 column names work
     * without backquotes, as they do in R in a UTF-8 locale. */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c >= 0x80;
}

static int is_name_char(unsigned char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '_';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* strtod honours LC_NUMERIC, but formulas always use '.', so convert the
 * token with the current locale's decimal point when it differs. */
static double to_double(const char *s, size_t n)
{
    char buf[128];
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && dp[1] == '\0') {
        char *dot = strchr(buf, '.');
        if (dot)
            *dot = dp[0];
    }
    return strtod(buf, NULL);
}

static mlmx_status lex(parser *p)
{
    const char *t = p->text;
    size_t len = strlen(t);
    /* at most one token per byte, plus EOF */
    p->toks = fx_alloc(p->a, (len + 1) * sizeof *p->toks);
    if (!p->toks)
        return fx_nomem(p->err);
    int n = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)t[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            i++;
            continue;
        }
        token *k = &p->toks[n];
        k->pos = (int)i;
        size_t s = i;
        if (is_digit(c) || (c == '.' && i + 1 < len && is_digit((unsigned char)t[i + 1]))) {
            while (i < len && is_digit((unsigned char)t[i]))
                i++;
            if (i < len && t[i] == '.') {
                i++;
                while (i < len && is_digit((unsigned char)t[i]))
                    i++;
            }
            if (i < len && (t[i] == 'e' || t[i] == 'E')) {
                size_t e = i + 1;
                if (e < len && (t[e] == '+' || t[e] == '-'))
                    e++;
                if (e >= len || !is_digit((unsigned char)t[e]))
                    return fx_error(p->err, t, (int)s, "malformed number");
                i = e;
                while (i < len && is_digit((unsigned char)t[i]))
                    i++;
            }
            /* "2x" is not a number followed by a name in R either */
            if (i < len && is_name_char((unsigned char)t[i]) && t[i] != '.')
                return fx_error(p->err, t, (int)s, "malformed number");
            if (i < len && t[i] == '.')
                return fx_error(p->err, t, (int)s, "malformed number");
            k->kind = TK_NUM;
            k->num = to_double(t + s, i - s);
            if (!isfinite(k->num))
                return fx_error(p->err, t, (int)s, "number out of range");
        } else if (is_name_start(c)) {
            while (i < len && is_name_char((unsigned char)t[i]))
                i++;
            k->kind = TK_NAME;
            k->name = fx_strndup(p->a, t + s, i - s);
            if (!k->name)
                return fx_nomem(p->err);
        } else if (c == '`') {
            i++;
            while (i < len && t[i] != '`')
                i++;
            if (i >= len)
                return fx_error(p->err, t, (int)s, "unterminated backquote");
            if (i == s + 1)
                return fx_error(p->err, t, (int)s, "empty name");
            k->kind = TK_NAME;
            k->name = fx_strndup(p->a, t + s + 1, i - s - 1);
            if (!k->name)
                return fx_nomem(p->err);
            i++;
        } else if (c == '(') {
            k->kind = TK_LPAREN;
            i++;
        } else if (c == ')') {
            k->kind = TK_RPAREN;
            i++;
        } else if (c == ',') {
            k->kind = TK_COMMA;
            i++;
        } else if (c == '|') {
            k->kind = TK_OP;
            if (i + 1 < len && t[i + 1] == '|') {
                k->op = 'B';
                i += 2;
            } else {
                k->op = '|';
                i++;
            }
        } else if (c == '*' && i + 1 < len && t[i + 1] == '*') {
            k->kind = TK_OP; /* R reads ** as ^ */
            k->op = '^';
            i += 2;
        } else if (c == '<' || c == '>' || ((c == '=' || c == '!') && i + 1 < len &&
                                              t[i + 1] == '=')) {
            /* comparisons, for I(x > 2) and a response such as I(score >= 5) */
            int eq = i + 1 < len && t[i + 1] == '=';
            k->kind = TK_OP;
            k->op = c == '<' ? (eq ? 'l' : '<') : c == '>' ? (eq ? 'g' : '>') : c == '=' ? 'e' : 'n';
            i += eq ? 2 : 1;
        } else if (strchr("~+-*/:^", (int)c)) {
            k->kind = TK_OP;
            k->op = (char)c;
            i++;
        } else if (c == '%') {
            size_t e = i + 1;
            while (e < len && t[e] != '%' && t[e] != '\n')
                e++;
            if (e < len && t[e] == '%' && e - i == 3 && t[i + 1] == 'i' && t[i + 2] == 'n') {
                k->kind = TK_OP;
                k->op = 'i';
                i = e + 1;
            } else if (e < len && t[e] == '%') {
                char nm[64];
                char raw[64];
                size_t m = e - i + 1 < sizeof raw ? e - i + 1 : sizeof raw - 1;
                memcpy(raw, t + i, m);
                raw[m] = '\0';
                fx_quote_name(raw, nm, sizeof nm);
                return fx_error(p->err, t, (int)s, "unknown operator '%s'", nm);
            } else {
                return fx_error(p->err, t, (int)s, "unterminated operator '%%'");
            }
        } else {
            if (c >= 0x21 && c < 0x7f)
                return fx_error(p->err, t, (int)s, "unexpected character '%c'", (char)c);
            return fx_error(p->err, t, (int)s, "unexpected character (byte 0x%02x)", c);
        }
        k->len = (int)(i - s);
        n++;
    }
    p->toks[n].kind = TK_EOF;
    p->toks[n].pos = (int)len;
    p->ntok = n;
    return MLMX_OK;
}

/* ------------------------------------------------------------------ tree */

static const token *peek(const parser *p)
{
    return &p->toks[p->i];
}

static const char *op_text(char op)
{
    switch (op) {
    case 'B': return "||";
    case 'i': return "%in%";
    case '~': return "~";
    case '+': return "+";
    case '-': return "-";
    case '*': return "*";
    case '/': return "/";
    case ':': return ":";
    case '^': return "^";
    case '|': return "|";
    case '<': return "<";
    case '>': return ">";
    case 'l': return "<=";
    case 'g': return ">=";
    case 'e': return "==";
    case 'n': return "!=";
    default: return "?";
    }
}

static mlmx_expr *new_node(parser *p, mlmx_expr_kind kind, int pos, int nargs)
{
    fx_node *n = fx_alloc(p->a, sizeof *n);
    if (!n)
        return NULL;
    n->e.kind = kind;
    n->e.pos = pos;
    n->e.nargs = nargs;
    n->depth = 1;
    n->oppos = pos;
    n->varidx = -1;
    if (nargs > 0) {
        n->e.args = fx_alloc(p->a, (size_t)nargs * sizeof *n->e.args);
        if (!n->e.args)
            return NULL;
    }
    return &n->e;
}

/* Set the depth from the children; error if the tree got too deep. */
static mlmx_status finish_node(parser *p, mlmx_expr *e)
{
    int d = 0;
    for (int k = 0; k < e->nargs; k++)
        if (FX(e->args[k])->depth > d)
            d = FX(e->args[k])->depth;
    FX(e)->depth = d + 1;
    if (d + 1 > FX_MAX_DEPTH)
        return fx_error(p->err, p->text, FX(e)->oppos,
                        "formula is nested too deeply (more than %d levels)", FX_MAX_DEPTH);
    return MLMX_OK;
}

/* Is e a link of a chain a + b - c + ...? */
static int is_sum(const mlmx_expr *e)
{
    return e->kind == MLMX_EX_BINOP && (e->op == '+' || e->op == '-');
}

static mlmx_status binop(parser *p, char op, int oppos, mlmx_expr *l, mlmx_expr *r,
                         mlmx_expr **out)
{
    mlmx_expr *e = new_node(p, MLMX_EX_BINOP, l->pos, 2);
    if (!e)
        return fx_nomem(p->err);
    e->op = op;
    e->args[0] = l;
    e->args[1] = r;
    FX(e)->oppos = oppos;
    *out = e;
    /* A sum of many terms (y ~ x1 + x2 + ... + x2000) is a left-deep tree,
     * but every walk over the right side (terms.c, formula.c, deparse.c)
     * follows such a chain by a loop, not by recursion: the chain's left
     * spine then adds nothing to the depth, which keeps bounding the real
     * nesting (parentheses, calls, right operands). Inside calls and in the
     * response, where the evaluator recurses, every level counts. */
    if (p->chains && p->calls == 0 && is_sum(e) && is_sum(l)) {
        int dl = FX(l)->depth, dr = FX(r)->depth + 1;
        FX(e)->depth = dl > dr ? dl : dr;
        if (FX(e)->depth > FX_MAX_DEPTH)
            return fx_error(p->err, p->text, oppos,
                            "formula is nested too deeply (more than %d levels)", FX_MAX_DEPTH);
        return MLMX_OK;
    }
    return finish_node(p, e);
}

/* ------------------------------------------------------------------ grammar */

static mlmx_status parse_bar(parser *p, mlmx_expr **out);
static mlmx_status parse_unary(parser *p, mlmx_expr **out);

/* The current token cannot start an operand: say why as precisely as we can. */
static mlmx_status operand_error(parser *p)
{
    const token *k = peek(p);
    const token *prev = p->i > 0 ? &p->toks[p->i - 1] : NULL;
    if (prev && prev->kind == TK_OP && (prev->op == '|' || prev->op == 'B') &&
        (k->kind == TK_RPAREN || k->kind == TK_EOF))
        return fx_error(p->err, p->text, k->pos, "empty grouping factor after '%s'",
                        op_text(prev->op));
    if (prev && prev->kind == TK_OP && k->kind != TK_OP)
        return fx_error(p->err, p->text, k->pos, "missing term after '%s'",
                        op_text(prev->op));
    if (prev && prev->kind == TK_COMMA && (k->kind == TK_RPAREN || k->kind == TK_COMMA))
        return fx_error(p->err, p->text, k->pos, "missing argument after ','");
    if (prev && prev->kind == TK_LPAREN && k->kind == TK_RPAREN)
        return fx_error(p->err, p->text, prev->pos, "empty parentheses");
    switch (k->kind) {
    case TK_EOF:
        return fx_error(p->err, p->text, k->pos, "unexpected end of formula");
    case TK_OP:
        if (prev && prev->kind == TK_OP)
            return fx_error(p->err, p->text, k->pos, "missing term between '%s' and '%s'",
                            op_text(prev->op), op_text(k->op));
        return fx_error(p->err, p->text, k->pos, "missing term before '%s'", op_text(k->op));
    case TK_RPAREN:
        return fx_error(p->err, p->text, k->pos, "unexpected ')'");
    case TK_COMMA:
        return fx_error(p->err, p->text, k->pos, "unexpected ','");
    default:
        return fx_error(p->err, p->text, k->pos, "unexpected token");
    }
}

/* Functions a formula may call. Anything else is rejected here, so that a
 * typo fails at parse time with a position rather than at evaluation. */
static const struct {
    const char *name;
    int minargs, maxargs;
} known_functions[] = {
    {"log", 1, 1},    {"exp", 1, 1},    {"sqrt", 1, 1},   {"abs", 1, 1},
    {"I", 1, 1},      {"factor", 1, 1}, {"offset", 1, 1}, {"cbind", 1, 1 << 20},
    /* covariance structures around a random-effect term: cs(x | g) */
    {"us", 1, 1},     {"diag", 1, 1},   {"cs", 1, 1},     {"ar1", 1, 1},
    {"toep", 1, 1},
};

/* Does the call whose '(' is token `open` hold a '|' or '||' at its own
 * parenthesis depth? Then an unknown name is a covariance structure. */
static int call_has_bar(const parser *p, int open)
{
    int depth = 0;
    for (int i = open; i < p->ntok && p->toks[i].kind != TK_EOF; i++) {
        const token *k = &p->toks[i];
        if (k->kind == TK_LPAREN)
            depth++;
        else if (k->kind == TK_RPAREN && --depth == 0)
            return 0;
        else if (depth == 1 && k->kind == TK_OP && (k->op == '|' || k->op == 'B'))
            return 1;
    }
    return 0;
}

static mlmx_status parse_args(parser *p, const token *name, int fi, const char *nm, int open,
                              mlmx_expr **out);

static mlmx_status parse_call(parser *p, const token *name, mlmx_expr **out)
{
    int fi = -1;
    for (size_t k = 0; k < sizeof known_functions / sizeof known_functions[0]; k++)
        if (strcmp(known_functions[k].name, name->name) == 0)
            fi = (int)k;
    char nm[64];
    fx_quote_name(name->name, nm, sizeof nm);
    if (fi < 0 && call_has_bar(p, p->i))
        return fx_error(p->err, p->text, name->pos,
                        "unknown covariance structure '%s' (known: us, diag, cs, ar1, toep)", nm);
    if (fi < 0)
        return fx_error(p->err, p->text, name->pos,
                        "unknown function '%s' (known: log, exp, sqrt, abs, I, factor, "
                        "offset, cbind)",
                        nm);
    int open = peek(p)->pos;
    p->i++; /* '(' */
    p->calls++;
    mlmx_status st = parse_args(p, name, fi, nm, open, out);
    p->calls--;
    return st;
}

static mlmx_status parse_args(parser *p, const token *name, int fi, const char *nm, int open,
                              mlmx_expr **out)
{
    /* Arguments go into a growing array; count them first would need a
     * second pass over nested parentheses, so just grow. */
    mlmx_expr **args = NULL;
    int nargs = 0, cap = 0;
    mlmx_status st = MLMX_OK;
    if (peek(p)->kind != TK_RPAREN) {
        for (;;) {
            mlmx_expr *arg = NULL;
            st = parse_bar(p, &arg);
            if (st != MLMX_OK)
                return st;
            if (nargs == cap) {
                cap = cap ? 2 * cap : 4;
                mlmx_expr **na = fx_alloc(p->a, (size_t)cap * sizeof *na);
                if (!na)
                    return fx_nomem(p->err);
                if (nargs)
                    memcpy(na, args, (size_t)nargs * sizeof *na);
                args = na;
            }
            args[nargs++] = arg;
            if (peek(p)->kind == TK_COMMA) {
                p->i++;
                continue;
            }
            break;
        }
    }
    if (peek(p)->kind != TK_RPAREN) {
        if (peek(p)->kind == TK_EOF)
            return fx_error(p->err, p->text, open, "unmatched '('");
        return fx_error(p->err, p->text, peek(p)->pos, "expected ',' or ')' in call to %s()",
                        nm);
    }
    p->i++;
    if (nargs < known_functions[fi].minargs || nargs > known_functions[fi].maxargs) {
        if (known_functions[fi].minargs == known_functions[fi].maxargs)
            return fx_error(p->err, p->text, name->pos, "%s() takes exactly %d argument%s",
                            nm, known_functions[fi].minargs,
                            known_functions[fi].minargs == 1 ? "" : "s");
        return fx_error(p->err, p->text, name->pos, "%s() needs at least %d argument%s", nm,
                        known_functions[fi].minargs,
                        known_functions[fi].minargs == 1 ? "" : "s");
    }
    mlmx_expr *e = new_node(p, MLMX_EX_CALL, name->pos, 0);
    if (!e)
        return fx_nomem(p->err);
    e->name = name->name;
    e->args = args;
    e->nargs = nargs;
    FX(e)->oppos = name->pos;
    *out = e;
    return finish_node(p, e);
}

static mlmx_status parse_primary(parser *p, mlmx_expr **out)
{
    const token *k = peek(p);
    switch (k->kind) {
    case TK_NAME:
        p->i++;
        if (peek(p)->kind == TK_LPAREN)
            return parse_call(p, k, out);
        {
            mlmx_expr *e = new_node(p, MLMX_EX_SYMBOL, k->pos, 0);
            if (!e)
                return fx_nomem(p->err);
            e->name = k->name;
            *out = e;
        }
        return MLMX_OK;
    case TK_NUM: {
        p->i++;
        mlmx_expr *e = new_node(p, MLMX_EX_NUMBER, k->pos, 0);
        if (!e)
            return fx_nomem(p->err);
        e->number = k->num;
        *out = e;
        return MLMX_OK;
    }
    case TK_LPAREN: {
        p->i++;
        mlmx_expr *e = NULL;
        mlmx_status st = parse_bar(p, &e);
        if (st != MLMX_OK)
            return st;
        if (peek(p)->kind != TK_RPAREN) {
            if (peek(p)->kind == TK_EOF)
                return fx_error(p->err, p->text, k->pos, "unmatched '('");
            return fx_error(p->err, p->text, peek(p)->pos, "expected ')' to match '(' at position %d",
                            k->pos + 1);
        }
        p->i++;
        e->paren++;
        e->pos = k->pos;
        *out = e;
        return MLMX_OK;
    }
    default:
        return operand_error(p);
    }
}

/* power := primary ('^' unary)?  -- right associative, and the exponent
 * may carry a sign (2^-1), as in R. */
static mlmx_status parse_power(parser *p, mlmx_expr **out)
{
    mlmx_expr *base = NULL;
    mlmx_status st = parse_primary(p, &base);
    if (st != MLMX_OK)
        return st;
    if (peek(p)->kind == TK_OP && peek(p)->op == '^') {
        int oppos = peek(p)->pos;
        p->i++;
        mlmx_expr *ex = NULL;
        st = parse_unary(p, &ex);
        if (st != MLMX_OK)
            return st;
        return binop(p, '^', oppos, base, ex, out);
    }
    *out = base;
    return MLMX_OK;
}

static mlmx_status parse_unary(parser *p, mlmx_expr **out)
{
    const token *k = peek(p);
    if (++p->nest > FX_MAX_NEST) {
        p->nest--;
        return fx_error(p->err, p->text, k->pos,
                        "formula is nested too deeply (more than %d levels)", FX_MAX_NEST);
    }
    mlmx_status st;
    if (k->kind == TK_OP && (k->op == '-' || k->op == '+')) {
        p->i++;
        mlmx_expr *arg = NULL;
        st = parse_unary(p, &arg);
        if (st == MLMX_OK) {
            mlmx_expr *e = new_node(p, MLMX_EX_UNARY, k->pos, 1);
            if (!e) {
                st = fx_nomem(p->err);
            } else {
                e->op = k->op;
                e->args[0] = arg;
                *out = e;
                st = finish_node(p, e);
            }
        }
    } else {
        st = parse_power(p, out);
    }
    p->nest--;
    return st;
}

typedef mlmx_status (*level_fn)(parser *, mlmx_expr **);

/* One left-associative binary level: next (op next)* */
static mlmx_status parse_level(parser *p, level_fn next, const char *ops, mlmx_expr **out)
{
    mlmx_expr *l = NULL;
    mlmx_status st = next(p, &l);
    if (st != MLMX_OK)
        return st;
    while (peek(p)->kind == TK_OP && strchr(ops, peek(p)->op)) {
        char op = peek(p)->op;
        int oppos = peek(p)->pos;
        p->i++;
        mlmx_expr *r = NULL;
        st = next(p, &r);
        if (st != MLMX_OK)
            return st;
        st = binop(p, op, oppos, l, r, &l);
        if (st != MLMX_OK)
            return st;
    }
    *out = l;
    return MLMX_OK;
}

static mlmx_status parse_colon(parser *p, mlmx_expr **out)
{
    return parse_level(p, parse_unary, ":", out);
}

static mlmx_status parse_in(parser *p, mlmx_expr **out)
{
    return parse_level(p, parse_colon, "i", out);
}

static mlmx_status parse_prod(parser *p, mlmx_expr **out)
{
    return parse_level(p, parse_in, "*/", out);
}

static mlmx_status parse_sum(parser *p, mlmx_expr **out)
{
    return parse_level(p, parse_prod, "+-", out);
}

/* comparisons bind more loosely than + and -, as in R */
static mlmx_status parse_cmp(parser *p, mlmx_expr **out)
{
    return parse_level(p, parse_sum, "<>lgen", out);
}

static mlmx_status parse_bar(parser *p, mlmx_expr **out)
{
    return parse_level(p, parse_cmp, "|B", out);
}

/* Whatever is left after a complete expression. */
static mlmx_status trailing_error(parser *p)
{
    const token *k = peek(p);
    char nm[64];
    switch (k->kind) {
    case TK_RPAREN:
        return fx_error(p->err, p->text, k->pos, "unmatched ')'");
    case TK_NAME:
        fx_quote_name(k->name, nm, sizeof nm);
        return fx_error(p->err, p->text, k->pos, "unexpected name '%s' (missing operator?)", nm);
    case TK_NUM:
        return fx_error(p->err, p->text, k->pos, "unexpected number (missing operator?)");
    case TK_LPAREN:
        return fx_error(p->err, p->text, k->pos, "unexpected '(' (missing operator?)");
    case TK_COMMA:
        return fx_error(p->err, p->text, k->pos, "unexpected ','");
    case TK_OP:
        return fx_error(p->err, p->text, k->pos, "unexpected '%s'", op_text(k->op));
    default:
        return fx_error(p->err, p->text, k->pos, "unexpected token");
    }
}

mlmx_status fx_parse_text(const char *text, fx_arena *a, mlmx_expr **lhs, mlmx_expr **rhs,
                          mlmx_error *err)
{
    parser p = {text, a, err, NULL, 0, 0, 0, 0, 0};
    *lhs = NULL;
    *rhs = NULL;
    mlmx_status st = lex(&p);
    if (st != MLMX_OK)
        return st;
    if (p.ntok == 0)
        return fx_error(err, text, 0, "empty formula");

    /* The '~' count is checked on the tokens, before parsing, so that
     * "a ~ b ~ c" reports the second '~' rather than an odd parse error. */
    int ntilde = 0, first = -1;
    for (int k = 0; k < p.ntok; k++)
        if (p.toks[k].kind == TK_OP && p.toks[k].op == '~') {
            if (++ntilde == 2)
                return fx_error(err, text, p.toks[k].pos, "more than one '~'");
            first = k;
        }
    if (ntilde == 0)
        return fx_error(err, text, 0, "missing '~' (a formula looks like y ~ x + (1 | g))");

    if (first > 0) {
        st = parse_bar(&p, lhs);
        if (st != MLMX_OK)
            return st;
        if (p.i != first)
            return trailing_error(&p);
    }
    /* The '~' itself is not kept in the tree: consumers want the two sides. */
    p.i = first + 1;
    p.chains = 1;
    if (peek(&p)->kind == TK_EOF)
        return fx_error(err, text, peek(&p)->pos, "missing right-hand side after '~'");
    st = parse_bar(&p, rhs);
    if (st != MLMX_OK)
        return st;
    if (peek(&p)->kind != TK_EOF)
        return trailing_error(&p);
    return MLMX_OK;
}
