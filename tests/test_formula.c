/* Formula parsing and expansion (host/formula) and variable evaluation
 * (host/model/eval). The expected expansions were produced by R 4.2.2 with
 * lme4 1.1-31: terms(nobars(f)) for the fixed part and, for each term of
 * findbars(expandDoubleVerts(f)), terms(~ lhs) and deparse(group). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/frame.h"
#include "formula/formula.h"
#include "formula/formula_internal.h"
#include "model/eval.h"

/* ---- rendering ------------------------------------------------------------- */

typedef struct strbuf {
    char s[4096];
    size_t n;
} strbuf;

static void put(strbuf *b, const char *s)
{
    size_t k = strlen(s);
    cr_assert_lt(b->n + k, sizeof b->s, "render buffer overflow");
    memcpy(b->s + b->n, s, k + 1);
    b->n += k;
}

static void put_expr(strbuf *b, const mlmx_expr *e)
{
    char *s = mlmx_expr_deparse(e);
    cr_assert_not_null(s);
    put(b, s);
    free(s);
}

/* "1 + x + x:f" as R's intercept + term.labels */
static void put_termlist(strbuf *b, const mlmx_termlist *t)
{
    put(b, t->intercept ? "1" : "0");
    for (int i = 0; i < t->nterms; i++) {
        put(b, " + ");
        for (int j = 0; j < t->terms[i].nvars; j++) {
            if (j)
                put(b, ":");
            put_expr(b, t->terms[i].vars[j]);
        }
    }
}

static void render_fixed(const mlmx_formula *f, strbuf *b)
{
    b->n = 0;
    b->s[0] = '\0';
    put_termlist(b, &f->fixed);
}

/* "(1 + x | g) (1 | b:a)" */
static void render_re(const mlmx_formula *f, strbuf *b)
{
    b->n = 0;
    b->s[0] = '\0';
    for (int k = 0; k < f->nre; k++) {
        if (k)
            put(b, " ");
        put(b, "(");
        put_termlist(b, &f->re[k].lhs);
        put(b, " | ");
        put(b, f->re[k].label);
        put(b, ")");
    }
}

static mlmx_formula *parse_ok(const char *text)
{
    mlmx_formula *f = NULL;
    mlmx_error err = {0};
    mlmx_status st = mlmx_formula_parse(text, &f, &err);
    cr_assert_eq(st, MLMX_OK, "parse failed for \"%s\": %s", text, err.msg);
    cr_assert_not_null(f);
    return f;
}

/* ---- expansion, checked against R/lme4 ---------------------------------------- */

typedef struct expansion_case {
    const char *formula;
    const char *fixed;
    const char *re;
} expansion_case;

static const expansion_case expansions[] = {
    {"y ~ 1 + x + f + x:f + x*z + a*(b + c) - 1 + (1|g) + (1 + x|g) + (0 + x|g) + (x||g) + "
     "(1|g1/g2) + (1|g1:g2)",
     "0 + x + f + z + a + b + c + x:f + x:z + a:b + a:c",
     "(1 | g) (1 + x | g) (0 + x | g) (1 | g) (0 + x | g) (1 | g2:g1) (1 | g1) (1 | g1:g2)"},
    {"y ~ factor(x) + log(z) + exp(w) + sqrt(v) + I(x^2)",
     "1 + factor(x) + log(z) + exp(w) + sqrt(v) + I(x^2)", ""},
    {"y ~ abs(x) + I(x * 2) + I(x/2 + 1) + I(-x) + log(x + 1)",
     "1 + abs(x) + I(x * 2) + I(x/2 + 1) + I(-x) + log(x + 1)", ""},
    {"Reaction ~ Days + (Days|Subject)", "1 + Days", "(1 + Days | Subject)"},
    {"Reaction ~ Days + (1|Subject) + (0+Days|Subject)", "1 + Days",
     "(1 | Subject) (0 + Days | Subject)"},
    {"strength ~ 1 + (1|batch/cask)", "1", "(1 | cask:batch) (1 | batch)"},
    {"mathach ~ meanses*cses + sector*cses + (1 + cses|school)",
     "1 + meanses + cses + sector + meanses:cses + cses:sector", "(1 + cses | school)"},
    {"gcf ~ time*(base_gcf + cda + age) + (time|patient) + (1|patient:tooth)",
     "1 + time + base_gcf + cda + age + time:base_gcf + time:cda + time:age",
     "(1 + time | patient) (1 | patient:tooth)"},
    {"y ~ service + (1|s) + (1|d) + (1|dept:service)", "1 + service",
     "(1 | s) (1 | d) (1 | dept:service)"},
    {"y ~ x*z + (x*z||g)", "1 + x + z + x:z", "(1 | g) (0 + x | g) (0 + z | g) (0 + x:z | g)"},
    {"y ~ (0 + x + z||g)", "1", "(0 + x | g) (0 + z | g)"},
    {"y ~ x + (x||a/b)", "1 + x", "(1 | b:a) (1 | a) (0 + x | b:a) (0 + x | a)"},
    {"y ~ (a+b)^2", "1 + a + b + a:b", ""},
    {"y ~ (a+b+c)^3 - a:b:c", "1 + a + b + c + a:b + a:c + b:c", ""},
    {"y ~ a/b", "1 + a + a:b", ""},
    {"y ~ (a+b)/c", "1 + a + b + a:b:c", ""},
    {"y ~ a/(b+c)", "1 + a + a:b + a:c", ""},
    {"y ~ a %in% b", "1 + a:b", ""},
    {"y ~ a:a + b:a + a:b", "1 + a + a:b", ""},
    {"y ~ a*b - a", "1 + b + a:b", ""},
    {"y ~ a*b - a:b - 1", "0 + a + b", ""},
    {"y ~ 0 + x", "0 + x", ""},
    {"y ~ x + 0", "0 + x", ""},
    {"y ~ -1 + x", "0 + x", ""},
    {"y ~ x - 1 + 1", "1 + x", ""},
    {"y ~ 1", "1", ""},
    {"y ~ 0", "0", ""},
    {"y ~ (z|g) + z + x:z", "1 + z + z:x", "(1 + z | g)"},
    {"y ~ (a+b):(c+d)", "1 + a:c + a:d + b:c + b:d", ""},
    {"y ~ (a + b + c + d)^2 - (a + b)^2", "1 + c + d + a:c + a:d + b:c + b:d + c:d", ""},
    {"y ~ a*b*c", "1 + a + b + c + a:b + a:c + b:c + a:b:c", ""},
    {"y ~ (a)", "1 + a", ""},
    {"~ x + (1|g)", "1 + x", "(1 | g)"},
    {"y ~ .x + `a b` + x.1 + x_y", "1 + .x + `a b` + x.1 + x_y", ""},
    {"y ~ (log(x)|g) + factor(g)", "1 + factor(g)", "(1 + log(x) | g)"},
    {"y ~ 1 + (1|g) + (1|h)", "1", "(1 | g) (1 | h)"},
    {"y ~ x + ((1|g))", "1 + x", "(1 | g)"},
    /* checked by hand rather than by R (see notes in formula.h) */
    {"y ~ (1|a/b/c)", "1", "(1 | c:(b:a)) (1 | b:a) (1 | a)"}, /* as lme4 labels them */
    {"y ~ (1|a:b/c)", "1", "(1 | c:a:b) (1 | a:b)"},
    {"y ~ (1|g) - 1", "0", "(1 | g)"}, /* lme4's nobars() would keep the intercept */
    {"y ~ x + ((1|g) + (1|h))", "1 + x", "(1 | g) (1 | h)"},
    {"y ~ (a+b)^1000000000", "1 + a + b + a:b", ""},
    {"y ~ x**2 + I(x**2)", "1 + x + I(x^2)", ""},
    {"y\t~\nx +\r\n(1 |\tg)", "1 + x", "(1 | g)"},
    /* chains of '+' and '-' (walked by a loop), checked against R 4.2.2 */
    {"y ~ x + z - x + x", "1 + z + x", ""},
    {"y ~ a + b - a + a - b", "1 + a", ""},
    {"y ~ a*b - a - 1 + 1 + a", "1 + b + a + a:b", ""},
    {"y ~ 0 + a - 0 + b", "1 + a + b", ""},
};

Test(formula, expansions_match_r)
{
    strbuf b;
    for (size_t i = 0; i < sizeof expansions / sizeof expansions[0]; i++) {
        const expansion_case *c = &expansions[i];
        mlmx_formula *f = parse_ok(c->formula);
        render_fixed(f, &b);
        cr_expect_str_eq(b.s, c->fixed, "fixed part of \"%s\"", c->formula);
        render_re(f, &b);
        cr_expect_str_eq(b.s, c->re, "random effects of \"%s\"", c->formula);
        mlmx_formula_free(f);
    }
}

Test(formula, response_offset_and_positions)
{
    mlmx_formula *f = parse_ok("log(y) ~ x + offset(log(n)) + (1 + x | g)");
    cr_assert_not_null(f->response);
    char *s = mlmx_expr_deparse(f->response);
    cr_expect_str_eq(s, "log(y)");
    free(s);
    cr_assert_not_null(f->offset);
    s = mlmx_expr_deparse(f->offset);
    cr_expect_str_eq(s, "log(n)");
    free(s);
    cr_expect_eq(f->fixed.nterms, 1);
    cr_assert_eq(f->nre, 1);
    cr_expect_eq(f->re[0].pos, 30); /* the '(' */
    cr_expect_eq(f->fixed.terms[0].vars[0]->pos, 9);
    cr_expect_str_eq(f->text, "log(y) ~ x + offset(log(n)) + (1 + x | g)");
    mlmx_formula_free(f);

    f = parse_ok("~ x");
    cr_expect_null(f->response);
    cr_expect_null(f->offset);
    cr_expect_eq(f->nre, 0);
    mlmx_formula_free(f);

    f = parse_ok("cbind(succ, fail) ~ x + (1 | g)");
    cr_assert_eq(f->response->kind, MLMX_EX_CALL);
    cr_expect_str_eq(f->response->name, "cbind");
    cr_expect_eq(f->response->nargs, 2);
    mlmx_formula_free(f);
}

Test(formula, group_variables_in_label_order)
{
    mlmx_formula *f = parse_ok("y ~ (1 | g1/g2) + (1 | a:b/c)");
    cr_assert_eq(f->nre, 4);
    /* (1|g1/g2) -> "g2:g1" with group {g2, g1}, then "g1" */
    cr_expect_str_eq(f->re[0].label, "g2:g1");
    cr_assert_eq(f->re[0].ngroup, 2);
    cr_expect_str_eq(f->re[0].group[0]->name, "g2");
    cr_expect_str_eq(f->re[0].group[1]->name, "g1");
    cr_expect_str_eq(f->re[1].label, "g1");
    cr_assert_eq(f->re[1].ngroup, 1);
    cr_expect_str_eq(f->re[1].group[0]->name, "g1");
    /* (1|a:b/c) -> "c:a:b" {c, a, b}, then "a:b" {a, b} */
    cr_expect_str_eq(f->re[2].label, "c:a:b");
    cr_assert_eq(f->re[2].ngroup, 3);
    cr_expect_str_eq(f->re[2].group[0]->name, "c");
    cr_expect_str_eq(f->re[2].group[1]->name, "a");
    cr_expect_str_eq(f->re[2].group[2]->name, "b");
    cr_expect_str_eq(f->re[3].label, "a:b");
    cr_expect_eq(f->re[3].ngroup, 2);
    mlmx_formula_free(f);

    f = parse_ok("y ~ (1 | factor(site))");
    cr_expect_str_eq(f->re[0].label, "factor(site)");
    cr_expect_eq(f->re[0].group[0]->kind, MLMX_EX_CALL);
    mlmx_formula_free(f);
}

Test(formula, variables_in_order_of_appearance)
{
    mlmx_formula *f =
        parse_ok("log(Reaction) ~ Days*x + offset(w) + I(Days^2) + (Days | Subject) + (1|a/b)");
    const char **names = NULL;
    int n = 0;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_formula_variables(f, &names, &n, &err), MLMX_OK);
    const char *want[] = {"Reaction", "Days", "x", "w", "Subject", "a", "b"};
    cr_assert_eq(n, 7);
    for (int i = 0; i < n; i++)
        cr_expect_str_eq(names[i], want[i]);
    free(names);
    mlmx_formula_free(f);
}

/* ---- deparse ------------------------------------------------------------------- */

Test(formula, deparse_like_r)
{
    /* each right side is a single variable; the expected strings are R's
     * deparse() of the same expression */
    static const struct {
        const char *formula, *want;
    } cases[] = {
        {"y ~ log(x)", "log(x)"},
        {"y ~ I(x^2)", "I(x^2)"},
        {"y ~ I(x*2)", "I(x * 2)"},
        {"y ~ I(x/2+1)", "I(x/2 + 1)"},
        {"y ~ I((x+1)^2)", "I((x + 1)^2)"},
        {"y ~ I(2^-1*x)", "I(2^-1 * x)"},
        {"y ~ I(-x^2)", "I(-x^2)"},
        {"y ~ I(x - -1)", "I(x - -1)"},
        {"y ~ I(x*1e5)", "I(x * 1e+05)"},
        {"y ~ I(x*1e-3)", "I(x * 0.001)"},
        {"y ~ I(x*2.50)", "I(x * 2.5)"},
        {"y ~ I(x*123456)", "I(x * 123456)"},
        /* comparisons (R deparses them with spaces; they bind below + and -) */
        {"y ~ I(x>2)", "I(x > 2)"},
        {"y ~ I(x+1>=2*z)", "I(x + 1 >= 2 * z)"},
        {"y ~ I(x!=0)", "I(x != 0)"},
        {"y ~ I((x<1)+(z==2))", "I((x < 1) + (z == 2))"},
        {"y ~ I(x * .5)", "I(x * 0.5)"},
        {"y ~ factor(g)", "factor(g)"},
        {"y ~ exp( x )", "exp(x)"},
        {"y ~ sqrt(abs(x))", "sqrt(abs(x))"},
        {"y ~ `odd name`", "`odd name`"},
        {"y ~ `if`", "`if`"},
        {"y ~ `x`", "x"},
        {"y ~ log(`2x`)", "log(`2x`)"},
        {"y ~ I(((x)))", "I(((x)))"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mlmx_formula *f = parse_ok(cases[i].formula);
        cr_assert_eq(f->fixed.nterms, 1, "%s", cases[i].formula);
        cr_assert_eq(f->fixed.terms[0].nvars, 1, "%s", cases[i].formula);
        char *s = mlmx_expr_deparse(f->fixed.terms[0].vars[0]);
        cr_expect_str_eq(s, cases[i].want, "deparse of %s", cases[i].formula);
        free(s);
        mlmx_formula_free(f);
    }
}

Test(formula, format_double_like_r)
{
    /* R 4.2: as.character(c(...)) */
    static const struct {
        double x;
        const char *want;
    } cases[] = {
        {1, "1"},
        {10, "10"},
        {2.5, "2.5"},
        {-1.5, "-1.5"},
        {-0.0, "0"},
        {100000, "1e+05"},
        {123456, "123456"},
        {0.0001, "1e-04"},
        {0.00012, "0.00012"},
        {0.1 + 0.2, "0.3"},
        {1.0 / 3, "0.333333333333333"},
        {2.0 / 3, "0.666666666666667"},
        {1e15, "1e+15"},
        {123456789012345, "123456789012345"},
        {1234567890123456, "1234567890123456"},
        {9007199254740992.0, "9007199254740992"},
        {123456789.123456789, "123456789.123457"},
        {100000.1, "100000.1"},
        {1e-5, "1e-05"},
        {1e100, "1e+100"},
        {1.5e-300, "1.5e-300"},
        {3.14159265358979, "3.14159265358979"},
        {0.000123456789012345678, "0.000123456789012346"},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mlmx_format_double(cases[i].x, buf, sizeof buf);
        cr_expect_str_eq(buf, cases[i].want, "format of %.17g", cases[i].x);
    }
}

/* ---- errors -------------------------------------------------------------------- */

typedef struct error_case {
    const char *formula;
    const char *what;
    int pos; /* 0-based byte offset the caret must point at */
} error_case;

static const error_case errors[] = {
    {"", "empty formula", 0},
    {"   ", "empty formula", 0},
    {"y x", "missing '~' (a formula looks like y ~ x + (1 | g))", 0},
    {"y ~ x ~ z", "more than one '~'", 6},
    {"y ~ (x + z", "unmatched '('", 4},
    {"y ~ log(x", "unmatched '('", 7},
    {"y ~ x + z)", "unmatched ')'", 9},
    {"y ~ x +", "missing term after '+'", 7},
    {"y ~ x + z - ", "missing term after '-'", 12},
    {"y ~ x * * z", "missing term between '*' and '*'", 8},
    {"y ~", "missing right-hand side after '~'", 3},
    {"y ~ x z", "unexpected name 'z' (missing operator?)", 6},
    {"y ~ x > 2 + (1|g)", "a comparison can only be used inside I(), as in I(x > 2)", 6},
    {"y ~ x = 2", "unexpected character '='", 6},
    {"y ~ x 2", "unexpected number (missing operator?)", 6},
    {"y ~ x $ z", "unexpected character '$'", 6},
    {"y ~ ()", "empty parentheses", 4},
    {"y ~ x + ,", "missing term after '+'", 8},
    {"y ~ I(x,)", "missing argument after ','", 8},
    {"y ~ foo(x)",
     "unknown function 'foo' (known: log, exp, sqrt, abs, I, factor, offset, cbind)", 4},
    {"y ~ x + poly(x, 2)",
     "unknown function 'poly' (known: log, exp, sqrt, abs, I, factor, offset, cbind)", 8},
    {"y ~ log(x, 2)", "log() takes exactly 1 argument", 4},
    {"y ~ log()", "log() takes exactly 1 argument", 4},
    {"y ~ x | g", "random-effect term must be in parentheses, as in (x | g)", 6},
    {"y ~ x + 1 || g", "random-effect term must be in parentheses, as in (x | g)", 10},
    {"y ~ x + (1 | )", "empty grouping factor after '|'", 13},
    {"y ~ x + (1 || )", "empty grouping factor after '||'", 14},
    {"y ~ x + (1 |", "empty grouping factor after '|'", 12},
    {"y ~ x + (1 | a + b)",
     "grouping factor must be a variable or an interaction of variables (g, g1:g2, g1/g2)", 13},
    {"y ~ (1 | log(g))",
     "grouping factor must be a variable or an interaction of variables (g, g1:g2, g1/g2)", 9},
    {"y ~ log((1 | g))", "random-effect term cannot appear inside log()", 11},
    {"y ~ I(x + (1 | g))", "random-effect term cannot appear inside I()", 13},
    {"y ~ x * (1 | g)", "random-effect term must be added to the formula with '+'", 11},
    {"y ~ x - (1 | g)", "random-effect term must be added to the formula with '+'", 11},
    {"y ~ ((1 | g) | h)", "random-effect terms cannot be nested", 8},
    {"(1 | g) ~ x", "random-effect term cannot be part of the response", 3},
    {"y ~ (0 | g)", "random-effect term has no columns (its left side is empty)", 4},
    {"y ~ (0 || g)", "random-effect term has no columns (its left side is empty)", 4},
    {"y ~ x + 2", "invalid term '2' (only 0 and 1 may be used as terms)", 8},
    {"y ~ 0.5 + x", "invalid term '0.5' (only 0 and 1 may be used as terms)", 4},
    {"y ~ (2 | g)", "invalid term '2' (only 0 and 1 may be used as terms)", 5},
    {"y ~ `abc", "unterminated backquote", 4},
    {"y ~ x + ``", "empty name", 8},
    {"y ~ 1e", "malformed number", 4},
    {"y ~ 2x", "malformed number", 4},
    {"y ~ 1.2.3", "malformed number", 4},
    {"y ~ x %o% z", "unknown operator '%o%'", 6},
    {"y ~ (a + b)^x", "the power of a term must be a positive whole number", 12},
    {"y ~ (a + b)^2.5", "the power of a term must be a positive whole number", 12},
    {"y ~ (a + b)^0", "the power of a term must be a positive whole number", 12},
    {"y ~ .", "'.' (all other columns) is not supported; name the variables", 4},
    {"y ~ x + offset(a) + offset(b)", "more than one offset() term", 20},
    {"y ~ x:offset(a)", "offset() must be a term of its own in the fixed part", 6},
    {"y ~ (offset(a) | g)", "offset() must be a term of its own in the fixed part", 5},
    {"y ~ log(offset(a))", "offset() cannot be used inside log()", 8},
    {"y ~ cbind(a, b)", "cbind() can only be used as the response", 4},
    {"log(cbind(a, b)) ~ x", "cbind() can only be used as the whole response", 4},
    {"offset(y) ~ x", "offset() cannot be the response", 0},
    {"y ~ x + (1 | g", "unmatched '('", 8},
    {"y ~ x + \x01", "unexpected character (byte 0x01)", 8},
};

/* The exact message layout: what, 1-based position, the text, a caret. */
static void expect_error(const char *text, const char *what, int pos)
{
    mlmx_formula *f = (mlmx_formula *)0x1;
    mlmx_error err = {0};
    mlmx_status st = mlmx_formula_parse(text, &f, &err);
    cr_assert_eq(st, MLMX_ERR_FORMULA, "\"%s\" should fail (got %d)", text, (int)st);
    cr_expect_eq(err.code, MLMX_ERR_FORMULA);
    cr_expect_null(f, "no formula is returned on error");
    char shown[512];
    size_t k = 0;
    for (const char *p = text; *p && k + 1 < sizeof shown; p++)
        shown[k++] = ((unsigned char)*p < 0x20) ? ' ' : *p;
    shown[k] = '\0';
    char want[1024];
    snprintf(want, sizeof want, "formula: %s at position %d:\n  %s\n  %*s^", what, pos + 1,
             shown, pos, "");
    cr_expect_str_eq(err.msg, want, "message for \"%s\"", text);
}

Test(formula, errors_have_message_and_caret)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        expect_error(errors[i].formula, errors[i].what, errors[i].pos);
}

Test(formula, error_column_counts_characters)
{
    /* "é" is two bytes but one column: the caret stays under the '+' */
    mlmx_formula *f = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_formula_parse("y ~ \xc3\xa9 + ", &f, &err), MLMX_ERR_FORMULA);
    cr_expect_str_eq(err.msg, "formula: missing term after '+' at position 9:\n"
                              "  y ~ \xc3\xa9 + \n"
                              "          ^");
}

Test(formula, invalid_arguments)
{
    mlmx_formula *f = NULL;
    mlmx_error err = {0};
    cr_expect_eq(mlmx_formula_parse(NULL, &f, &err), MLMX_ERR_ARG);
    cr_expect_eq(mlmx_formula_parse("y ~ x", NULL, &err), MLMX_ERR_ARG);
    /* a NULL error pointer is allowed */
    cr_expect_eq(mlmx_formula_parse("y ~ ", &f, NULL), MLMX_ERR_FORMULA);
    mlmx_formula_free(NULL);
}

/* ---- limits: hostile input fails cleanly ------------------------------------------ */

static char *repeat_formula(const char *head, const char *unit, int n, const char *tail)
{
    size_t len = strlen(head) + strlen(unit) * (size_t)n + strlen(tail) + 1;
    char *s = malloc(len);
    cr_assert_not_null(s);
    size_t o = 0, hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    memcpy(s, head, hl);
    o += hl;
    for (int i = 0; i < n; i++, o += ul)
        memcpy(s + o, unit, ul);
    memcpy(s + o, tail, tl + 1);
    return s;
}

Test(formula, deep_nesting_is_an_error)
{
    mlmx_error err = {0};
    mlmx_formula *f = NULL;
    char *s = repeat_formula("y ~ ", "(", 5000, "x");
    cr_expect_eq(mlmx_formula_parse(s, &f, &err), MLMX_ERR_FORMULA);
    cr_expect(strstr(err.msg, "nested too deeply") != NULL, "%s", err.msg);
    free(s);

    s = repeat_formula("y ~ ", "-", 5000, "x");
    cr_expect_eq(mlmx_formula_parse(s, &f, &err), MLMX_ERR_FORMULA);
    cr_expect(strstr(err.msg, "nested too deeply") != NULL, "%s", err.msg);
    free(s);

    s = repeat_formula("y ~ x", "^x", 5000, "");
    cr_expect_eq(mlmx_formula_parse(s, &f, &err), MLMX_ERR_FORMULA);
    free(s);

    /* 150 levels of parentheses are fine */
    char *open = repeat_formula("y ~ ", "(", 150, "x");
    char *full = repeat_formula(open, ")", 150, "");
    f = parse_ok(full);
    cr_expect_eq(f->fixed.nterms, 1);
    mlmx_formula_free(f);
    free(open);
    free(full);
}

Test(formula, long_formulas)
{
    /* 500 summands of one variable are one term */
    mlmx_formula *f = NULL;
    mlmx_error err = {0};
    char *s = repeat_formula("y ~ x", " + x", 500, "");
    f = parse_ok(s);
    cr_expect_eq(f->fixed.nterms, 1);
    mlmx_formula_free(f);
    free(s);

    /* a long chain is looped over, not recursed into: 20,000 summands */
    s = repeat_formula("y ~ x", " + x", 20000, " - x + (1|g)");
    f = parse_ok(s);
    cr_expect_eq(f->fixed.nterms, 0);
    cr_expect_eq(f->fixed.intercept, 1);
    cr_expect_eq(f->nre, 1);
    mlmx_formula_free(f);
    free(s);

    /* inside a call and in the response every level counts (the evaluator
     * recurses there) */
    s = repeat_formula("y ~ I(x", " + x", 3000, ")");
    cr_expect_eq(mlmx_formula_parse(s, &f, &err), MLMX_ERR_FORMULA);
    cr_expect(strstr(err.msg, "nested too deeply") != NULL, "%s", err.msg);
    /* the message shows a window of the text and still fits */
    cr_expect(strlen(err.msg) < sizeof err.msg - 1);
    cr_expect(strstr(err.msg, "...") != NULL);
    cr_expect(strchr(err.msg, '^') != NULL);
    free(s);
    s = repeat_formula("x", " + x", 3000, " ~ z");
    cr_expect_eq(mlmx_formula_parse(s, &f, &err), MLMX_ERR_FORMULA);
    cr_expect(strstr(err.msg, "nested too deeply") != NULL, "%s", err.msg);
    free(s);
    /* and true nesting on the right side is still bounded: a sum nested in
     * the right operands of a sum */
    s = repeat_formula("y ~ x", " + (x", 150, "");
    char *t = repeat_formula(s, ")", 150, "");
    f = parse_ok(t);
    mlmx_formula_free(f);
    free(s);
    free(t);
    /* only '+' and '-' chains are flat: a long ':' chain still counts */
    s = repeat_formula("y ~ x", ":x", 1200, "");
    cr_expect_eq(mlmx_formula_parse(s, &f, &err), MLMX_ERR_FORMULA);
    cr_expect(strstr(err.msg, "nested too deeply") != NULL, "%s", err.msg);
    free(s);
    s = repeat_formula("y ~ x", " + -x", 1200, "");
    f = parse_ok(s); /* -x deletes x from nothing: x stays, as in R */
    cr_expect_eq(f->fixed.nterms, 1);
    mlmx_formula_free(f);
    free(s);

    s = repeat_formula("y ~ ", "x", 200000, "");
    cr_expect_eq(mlmx_formula_parse(s, &f, &err), MLMX_ERR_FORMULA);
    cr_expect(strstr(err.msg, "too long") != NULL, "%s", err.msg);
    free(s);
}

/* A user's model with 2,000 covariates (a 10,000-character formula): every
 * term, in order, in the fixed part, in a random-effect term, and in the
 * variable list; its deparse round-trips. */
Test(formula, two_thousand_terms)
{
    enum { N = 2000 };
    char *s = malloc(16 * N + 64);
    cr_assert_not_null(s);
    size_t o = (size_t)sprintf(s, "y ~ x1");
    for (int k = 2; k <= N; k++)
        o += (size_t)sprintf(s + o, " + x%d", k);
    size_t rhs_end = o;
    sprintf(s + o, " + (1 + x1 + x2 | g)");
    cr_expect_gt(strlen(s), 10000);
    mlmx_formula *f = parse_ok(s);
    cr_assert_eq(f->fixed.nterms, N);
    cr_expect_eq(f->fixed.intercept, 1);
    for (int k = 0; k < N; k++) {
        char want[16];
        snprintf(want, sizeof want, "x%d", k + 1);
        cr_assert_eq(f->fixed.terms[k].nvars, 1);
        cr_assert_str_eq(f->fixed.terms[k].vars[0]->name, want);
    }
    cr_expect_eq(f->nre, 1);
    cr_expect_eq(f->re[0].lhs.nterms, 2);
    const char **names = NULL;
    int nn = 0;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_formula_variables(f, &names, &nn, &err), MLMX_OK, "%s", err.msg);
    cr_expect_eq(nn, N + 2); /* y, x1..x2000, g */
    cr_expect_str_eq(names[0], "y");
    cr_expect_str_eq(names[N], "x2000");
    cr_expect_str_eq(names[N + 1], "g");
    free(names);
    mlmx_formula_free(f);

    /* as a random-effect term's left side, and with '-' links */
    char *r = malloc(16 * N + 64);
    cr_assert_not_null(r);
    o = (size_t)sprintf(r, "y ~ (1");
    for (int k = 1; k <= N; k++)
        o += (size_t)sprintf(r + o, " + x%d", k);
    sprintf(r + o, " - x7 | g)");
    f = parse_ok(r);
    cr_expect_eq(f->fixed.nterms, 0);
    cr_assert_eq(f->nre, 1);
    cr_expect_eq(f->re[0].lhs.nterms, N - 1);
    cr_expect_str_eq(f->re[0].lhs.terms[6].vars[0]->name, "x8");
    mlmx_formula_free(f);
    free(r);

    /* the deparse of the whole sum (by a loop) gives the text back */
    s[rhs_end] = '\0';
    f = parse_ok(s);
    char *d = mlmx_expr_deparse(((const fx_arena *)f->arena)->rhs);
    cr_assert_not_null(d);
    cr_expect_str_eq(d, s + 4);
    free(d);
    mlmx_formula_free(f);
    free(s);
    const char *kept = "((a + b) + c) - (d + e) + ((f)) + I(g + h - i)";
    f = parse_ok("y ~ ((a + b) + c) - (d + e) + ((f)) + I(g + h - i)");
    d = mlmx_expr_deparse(((const fx_arena *)f->arena)->rhs);
    cr_assert_not_null(d);
    cr_expect_str_eq(d, kept);
    free(d);
    mlmx_formula_free(f);
}

Test(formula, term_explosion_is_an_error)
{
    mlmx_formula *f = NULL;
    mlmx_error err = {0};
    cr_expect_eq(mlmx_formula_parse("y ~ (a+b+c+d+e+f+g+h+i+j+k+l+m)^13", &f, &err),
                 MLMX_ERR_FORMULA);
    cr_expect(strstr(err.msg, "too many terms") != NULL, "%s", err.msg);
    cr_expect_eq(mlmx_formula_parse("y ~ a*b*c*d*e*f*g*h*i*j*k*l*m", &f, &err),
                 MLMX_ERR_FORMULA);
    /* repeating an expensive expansion hits the work limit, not a long wait */
    char *s = repeat_formula("y ~ (a+b+c+d+e+f+g+h+i+j+k+l)^12", " + (a+b+c+d+e+f+g+h+i+j+k+l)^12",
                             900, "");
    cr_expect_eq(mlmx_formula_parse(s, &f, &err), MLMX_ERR_FORMULA);
    cr_expect(strstr(err.msg, "too complex") != NULL, "%s", err.msg);
    free(s);
    /* 2^10 - 1 terms is fine */
    f = parse_ok("y ~ a*b*c*d*e*f*g*h*i*j");
    cr_expect_eq(f->fixed.nterms, 1023);
    cr_expect_eq(f->fixed.terms[1022].nvars, 10);
    mlmx_formula_free(f);
}

/* ---- evaluation against a data frame ------------------------------------------- */

/*   row  x    z       f    g1  g2   n
 *   1    1    100000  b    a   10   0
 *   2    2    0.5     a    a   2    1
 *   3    10   123456  b    b   1    2
 *   4    2    NA      NA   b   10   3
 *   5    NA   0.5     a    a   10   4  */
static mlmx_data *frame(void)
{
    mlmx_error err = {0};
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_frame_new(5, "", &d, &err), MLMX_OK, "%s", err.msg);
    const double x[] = {1, 2, 10, 2, NAN}, z[] = {100000, 0.5, 123456, NAN, 0.5},
                 g2[] = {10, 2, 1, 10, 10}, n[] = {0, 1, 2, 3, 4};
    const struct {
        const char *name;
        const double *v;
    } num[] = {{"x", x}, {"z", z}, {"g2", g2}, {"n", n}};
    for (size_t k = 0; k < sizeof num / sizeof num[0]; k++) {
        double *v = malloc(5 * sizeof *v);
        cr_assert_not_null(v);
        memcpy(v, num[k].v, 5 * sizeof *v);
        cr_assert_eq(mlmx_frame_add_numeric_owned(d, num[k].name, v, &err), MLMX_OK, "%s",
                     err.msg);
    }
    const char *f[] = {"b", "a", "b", NULL, "a"};
    const char *g1[] = {"a", "a", "b", "b", "a"};
    cr_assert_eq(mlmx_frame_add_factor_strings(d, "f", f, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_frame_add_factor_strings(d, "g1", g1, &err), MLMX_OK, "%s", err.msg);
    return d;
}

/* The single variable of the single fixed term of y ~ <rhs>. */
static const mlmx_expr *var_of(const mlmx_formula *f)
{
    cr_assert_eq(f->fixed.nterms, 1);
    cr_assert_eq(f->fixed.terms[0].nvars, 1);
    return f->fixed.terms[0].vars[0];
}

static void expect_numeric(const mlmx_data *d, const char *formula, const double *want)
{
    mlmx_formula *f = parse_ok(formula);
    double out[5];
    mlmx_error err = {0};
    cr_assert_eq(mlmx_var_eval_numeric(var_of(f), d, out, &err), MLMX_OK, "%s: %s", formula,
                 err.msg);
    for (int i = 0; i < 5; i++) {
        if (isnan(want[i]))
            cr_expect(isnan(out[i]), "%s row %d: want missing, got %g", formula, i + 1, out[i]);
        else
            cr_expect_float_eq(out[i], want[i], 1e-12, "%s row %d", formula, i + 1);
    }
    mlmx_formula_free(f);
}

Test(eval, numeric_expressions)
{
    mlmx_data *d = frame();
    expect_numeric(d, "y ~ x", (const double[]){1, 2, 10, 2, NAN});
    expect_numeric(d, "y ~ log(x)", (const double[]){0, log(2), log(10), log(2), NAN});
    expect_numeric(d, "y ~ I(x^2)", (const double[]){1, 4, 100, 4, NAN});
    expect_numeric(d, "y ~ I(-x/2 + 1)", (const double[]){0.5, 0, -4, 0, NAN});
    expect_numeric(d, "y ~ exp(x)", (const double[]){exp(1), exp(2), exp(10), exp(2), NAN});
    expect_numeric(d, "y ~ sqrt(x)", (const double[]){1, sqrt(2), sqrt(10), sqrt(2), NAN});
    expect_numeric(d, "y ~ abs(I(1 - x))", (const double[]){0, 1, 9, 1, NAN});
    expect_numeric(d, "y ~ I(x * z)", (const double[]){100000, 1, 1234560, NAN, NAN});
    /* comparisons are 1 or 0 (R's TRUE/FALSE in arithmetic); missing stays missing */
    expect_numeric(d, "y ~ I(x >= 2)", (const double[]){0, 1, 1, 1, NAN});
    expect_numeric(d, "y ~ I(x < 2)", (const double[]){1, 0, 0, 0, NAN});
    expect_numeric(d, "y ~ I(x == 2)", (const double[]){0, 1, 0, 1, NAN});
    expect_numeric(d, "y ~ I(x != 2)", (const double[]){1, 0, 1, 0, NAN});
    expect_numeric(d, "y ~ I(x + 1 > 2)", (const double[]){0, 1, 1, 1, NAN});
    expect_numeric(d, "y ~ I(x <= 1)", (const double[]){1, 0, 0, 0, NAN});

    mlmx_error err = {0};
    mlmx_formula *f = parse_ok("y ~ x");
    cr_expect_eq(mlmx_var_is_factor(var_of(f), d, &err), 0);
    mlmx_formula_free(f);
    f = parse_ok("y ~ f");
    cr_expect_eq(mlmx_var_is_factor(var_of(f), d, &err), 1);
    mlmx_formula_free(f);
    f = parse_ok("y ~ factor(x)");
    cr_expect_eq(mlmx_var_is_factor(var_of(f), d, &err), 1);
    mlmx_formula_free(f);
    mlmx_frame_free(d);
}

static void expect_eval_error(const mlmx_data *d, const char *formula, const char *want)
{
    mlmx_formula *f = parse_ok(formula);
    double out[5];
    mlmx_error err = {0};
    cr_expect_eq(mlmx_var_eval_numeric(var_of(f), d, out, &err), MLMX_ERR_DATA, "%s", formula);
    cr_expect_str_eq(err.msg, want, "%s", formula);
    mlmx_formula_free(f);
}

Test(eval, numeric_errors)
{
    mlmx_data *d = frame();
    expect_eval_error(d, "y ~ nope", "unknown column 'nope' (formula position 5)");
    expect_eval_error(d, "y ~ log(x + nope)", "unknown column 'nope' (formula position 13)");
    expect_eval_error(d, "y ~ log(f)",
                      "column 'f' is a factor and cannot be used as a number (formula "
                      "position 9)");
    expect_eval_error(d, "y ~ I(f * 2)",
                      "column 'f' is a factor and cannot be used as a number (formula "
                      "position 7)");
    expect_eval_error(d, "y ~ log(n)",
                      "'log(n)' is not finite at row 1 of the data (formula position 5)");
    expect_eval_error(d, "y ~ I(1/n)",
                      "'1/n' is not finite at row 1 of the data (formula position 7)");
    expect_eval_error(d, "y ~ sqrt(I(-x))",
                      "'sqrt(I(-x))' is not finite at row 1 of the data (formula position 5)");
    expect_eval_error(d, "y ~ factor(x)", "'factor(x)' is not numeric (formula position 5)");

    mlmx_error err = {0};
    mlmx_formula *f = parse_ok("y ~ nope");
    cr_expect_eq(mlmx_var_is_factor(var_of(f), d, &err), -1);
    cr_expect_eq(err.code, MLMX_ERR_DATA);
    cr_expect_str_eq(err.msg, "unknown column 'nope' (formula position 5)");
    mlmx_formula_free(f);
    mlmx_frame_free(d);
}

static void expect_factor(const mlmx_data *d, const mlmx_expr *e, const char *const *levels,
                          int nlevels, const int *codes)
{
    int got[5];
    char **lv = NULL;
    int nl = -1;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_var_eval_factor(e, d, got, &lv, &nl, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(nl, nlevels);
    for (int l = 0; l < nl; l++)
        cr_expect_str_eq(lv[l], levels[l], "level %d", l);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(got[i], codes[i], "row %d", i + 1);
    mlmx_levels_free(lv, nl);
}

Test(eval, factors)
{
    mlmx_data *d = frame();
    mlmx_formula *f = parse_ok("y ~ factor(x)");
    /* numeric order, R's labels: "1" "2" "10", not "1" "10" "2" */
    expect_factor(d, var_of(f), (const char *[]){"1", "2", "10"}, 3,
                  (const int[]){0, 1, 2, 1, -1});
    mlmx_formula_free(f);

    f = parse_ok("y ~ factor(z)");
    expect_factor(d, var_of(f), (const char *[]){"0.5", "1e+05", "123456"}, 3,
                  (const int[]){1, 0, 2, -1, 0});
    mlmx_formula_free(f);

    f = parse_ok("y ~ factor(I(z/10))");
    expect_factor(d, var_of(f), (const char *[]){"0.05", "10000", "12345.6"}, 3,
                  (const int[]){1, 0, 2, -1, 0});
    mlmx_formula_free(f);

    f = parse_ok("y ~ f");
    expect_factor(d, var_of(f), (const char *[]){"a", "b"}, 2, (const int[]){1, 0, 1, -1, 0});
    mlmx_formula_free(f);

    f = parse_ok("y ~ factor(f)");
    expect_factor(d, var_of(f), (const char *[]){"a", "b"}, 2, (const int[]){1, 0, 1, -1, 0});
    mlmx_formula_free(f);

    /* a numeric column used where a factor is needed behaves like factor(x) */
    f = parse_ok("y ~ g2");
    expect_factor(d, var_of(f), (const char *[]){"1", "2", "10"}, 3,
                  (const int[]){2, 1, 0, 2, 2});
    mlmx_formula_free(f);

    f = parse_ok("y ~ log(x)");
    int codes[5];
    char **lv = NULL;
    int nl = 0;
    mlmx_error err = {0};
    cr_expect_eq(mlmx_var_eval_factor(var_of(f), d, codes, &lv, &nl, &err), MLMX_ERR_DATA);
    cr_expect_str_eq(err.msg, "'log(x)' is not a factor (formula position 5)");
    mlmx_formula_free(f);
    mlmx_frame_free(d);
}

static void expect_group(const mlmx_data *d, const mlmx_reterm *t, const char *const *levels,
                         int nlevels, const int *codes)
{
    int got[5];
    char **lv = NULL;
    int nl = -1;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_group_eval(t->group, t->ngroup, d, got, &lv, &nl, &err), MLMX_OK, "%s",
                 err.msg);
    cr_assert_eq(nl, nlevels, "levels of %s", t->label);
    for (int l = 0; l < nl; l++)
        cr_expect_str_eq(lv[l], levels[l], "%s level %d", t->label, l);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(got[i], codes[i], "%s row %d", t->label, i + 1);
    mlmx_levels_free(lv, nl);
}

Test(eval, grouping_factors)
{
    mlmx_data *d = frame();
    mlmx_formula *f = parse_ok("y ~ (1 | g1:g2) + (1 | g1/g2) + (1 | f:g1) + (1 | g2)");
    cr_assert_eq(f->nre, 5);
    /* g1:g2: observed combinations ordered as R's factor(g1:g2): g1 slowest,
     * then g2 in its own (numeric) level order, so "a:2" before "a:10" */
    expect_group(d, &f->re[0], (const char *[]){"a:2", "a:10", "b:1", "b:10"}, 4,
                 (const int[]){1, 0, 2, 3, 1});
    /* g1/g2 -> "g2:g1" then "g1" */
    cr_expect_str_eq(f->re[1].label, "g2:g1");
    expect_group(d, &f->re[1], (const char *[]){"1:b", "2:a", "10:a", "10:b"}, 4,
                 (const int[]){2, 1, 0, 3, 2});
    expect_group(d, &f->re[2], (const char *[]){"a", "b"}, 2, (const int[]){0, 0, 1, 1, 0});
    /* a missing component makes the combination missing */
    expect_group(d, &f->re[3], (const char *[]){"a:a", "b:a", "b:b"}, 3,
                 (const int[]){1, 0, 2, -1, 0});
    expect_group(d, &f->re[4], (const char *[]){"1", "2", "10"}, 3,
                 (const int[]){2, 1, 0, 2, 2});

    int codes[5];
    char **lv = NULL;
    int nl = 0;
    mlmx_error err = {0};
    mlmx_formula_free(f);
    f = parse_ok("y ~ (1 | nope:g1)");
    cr_expect_eq(mlmx_group_eval(f->re[0].group, f->re[0].ngroup, d, codes, &lv, &nl, &err),
                 MLMX_ERR_DATA);
    cr_expect_str_eq(err.msg, "unknown column 'nope' (formula position 10)");
    cr_expect_null(lv);
    mlmx_formula_free(f);
    mlmx_frame_free(d);
}

/* ---- model matrices: coefficient names as lme4 writes them ---------------------- */

/* The fixed-effect names of a model of sleepstudy, "|"-joined. */
static void expect_fixef_names(const mlmx_data *d, const char *formula, const char *want)
{
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s: %s", formula,
                 mlmx_last_error());
    char got[1024] = "";
    for (int j = 0; j < mlmx_model_nfixef(m); j++) {
        if (j)
            strcat(got, "|");
        strcat(got, mlmx_model_fixef_name(m, j));
    }
    cr_expect_str_eq(got, want, "%s", formula);
    mlmx_model_free(m);
}

/* R's model.matrix codes a logical (a comparison in I(), or factor() of
 * one) as a factor with levels FALSE and TRUE; lme4 names the columns so.
 * Expected names from R 4.2.2 / lme4 1.1-31 on sleepstudy. */
Test(model, logical_terms_named_as_lme4)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK);
    expect_fixef_names(d, "Reaction ~ I(Days > 2) + (1|Subject)", "(Intercept)|I(Days > 2)TRUE");
    expect_fixef_names(d, "Reaction ~ 0 + I(Days > 2) + (1|Subject)",
                       "I(Days > 2)FALSE|I(Days > 2)TRUE");
    expect_fixef_names(d, "Reaction ~ Days:I(Days > 2) + (1|Subject)",
                       "(Intercept)|Days:I(Days > 2)FALSE|Days:I(Days > 2)TRUE");
    expect_fixef_names(d, "Reaction ~ I(Days > 2)*Days + (1|Subject)",
                       "(Intercept)|I(Days > 2)TRUE|Days|I(Days > 2)TRUE:Days");
    expect_fixef_names(d, "Reaction ~ factor(Days > 2) + (1|Subject)",
                       "(Intercept)|factor(Days > 2)TRUE");
    expect_fixef_names(d, "Reaction ~ I(Days == 3) + I(Days != 3) + (1|Subject)",
                       "(Intercept)|I(Days == 3)TRUE");  /* the second is collinear */
    /* numeric I() terms keep their plain names */
    expect_fixef_names(d, "Reaction ~ I(Days^2) + I((Days > 2) * 1) + (1|Subject)",
                       "(Intercept)|I(Days^2)|I((Days > 2) * 1)");

    /* a random-effect column of that kind, and its theta names */
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (I(Days > 2) | Subject)", &m), MLMX_OK,
                 "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_term_q(m, 0), 2);
    cr_expect_str_eq(mlmx_model_term_column(m, 0, 0), "(Intercept)");
    cr_expect_str_eq(mlmx_model_term_column(m, 0, 1), "I(Days > 2)TRUE");
    cr_expect_str_eq(mlmx_model_theta_name(m, 1), "Subject.I(Days > 2)TRUE.(Intercept)");
    cr_expect_str_eq(mlmx_model_theta_name(m, 2), "Subject.I(Days > 2)TRUE");
    mlmx_model_free(m);
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ 1 + (1 | factor(Days < 5))", &m), MLMX_OK,
                 "%s", mlmx_last_error());
    cr_expect_str_eq(mlmx_model_term_level(m, 0, 0), "FALSE");
    cr_expect_str_eq(mlmx_model_term_level(m, 0, 1), "TRUE");
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* The library's own message for a weights column that is not there (the
 * command names its option instead: tests/test_cli_errors.c). */
Test(model, unknown_weights_column)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/cbpp.csv", &d), MLMX_OK);
    cr_expect_eq(mlmx_model_create_weighted(d, "incidence ~ period + (1|herd)", "nosuch", &m),
                 MLMX_ERR_DATA);
    cr_expect_null(m);
    cr_expect(strstr(mlmx_last_error(), "weights: no column 'nosuch' in ") != NULL, "%s",
              mlmx_last_error());
    cr_expect(strstr(mlmx_last_error(), "cbpp.csv") != NULL, "%s", mlmx_last_error());
    mlmx_data_free(d);
}
