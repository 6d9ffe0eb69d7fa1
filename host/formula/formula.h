/* lme4 formula syntax: parse to an expression tree, then expand into the
 * fixed-effect term list and the random-effect terms. Knows nothing of
 * data or models. Positions are 0-based byte offsets into the text. */
#ifndef MLMX_FORMULA_H
#define MLMX_FORMULA_H
#include "mlmx.h"
#include "util/error.h"

typedef enum mlmx_expr_kind {
    MLMX_EX_SYMBOL = 0, /* a column name: x, `odd name` */
    MLMX_EX_NUMBER,     /* 1, 0, 2.5 */
    MLMX_EX_CALL,       /* name(args...): log, exp, sqrt, I, factor, offset, cbind, ... */
    MLMX_EX_BINOP,      /* args[0] op args[1] */
    MLMX_EX_UNARY       /* op args[0], op is '-' or '+' */
} mlmx_expr_kind;

/* BINOP operators: '~' '+' '-' '*' '/' ':' '^' '|', 'B' for "||" and 'i'
 * for "%in%". The parser writes "**" as '^', as R does. */
typedef struct mlmx_expr {
    mlmx_expr_kind kind;
    char op;
    char *name;               /* SYMBOL: column name; CALL: function name */
    double number;            /* NUMBER */
    struct mlmx_expr **args;  /* CALL: nargs arguments; BINOP: 2; UNARY: 1 */
    int nargs;
    int pos;                  /* where this expression starts in the text (at its
                                 opening parenthesis when it is parenthesized) */
    int paren;                /* parentheses written directly around it: 0 if none,
                                 2 for ((x)); deparse reproduces them */
} mlmx_expr;

/* An interaction of one or more variables (x, log(x), factor(g), I(x^2)),
 * e.g. time:base_gcf. vars are in order of first appearance in the formula. */
typedef struct mlmx_term {
    mlmx_expr **vars;
    int nvars;
} mlmx_term;

/* Terms of one side: an intercept flag and terms ordered as R orders them
 * (by degree, then order of appearance), duplicates removed. */
typedef struct mlmx_termlist {
    int intercept;
    mlmx_term *terms;
    int nterms;
} mlmx_termlist;

/* One random-effects term (lhs | group), after expanding '||' and '/' the
 * way lme4 (expandDoubleVerts, findbars) does, in lme4's order:
 *   (x || g)   -> (1|g), (0 + x|g)          one term per column term
 *   (1 | a/b)  -> (1|b:a), (1|a)            the nested term first
 *   (1 | a/b/c)-> (1|c:(b:a)), (1|b:a), (1|a), labelled as lme4 labels them
 *   (x || a/b) -> (1|b:a), (1|a), (0 + x|b:a), (0 + x|a)
 * group holds the variables in label order: label "b:a" has group {b, a},
 * and mlmx_group_eval then builds level strings "b_level:a_level" ordered
 * as R orders factor(b:a) (the first variable varying slowest). Terms
 * produced from one parenthesized bar share its lhs arrays and pos. */
typedef struct mlmx_reterm {
    mlmx_termlist lhs;
    mlmx_expr **group;  /* the grouping factor is the interaction of these */
    int ngroup;
    char *label;        /* group name as lme4 prints it: "Subject", "cask:batch" */
    int pos;            /* position of the '(' in the text */
    const char *cov;    /* structured covariance written around the bar: "cs", "ar1" or
                           "toep" (cs(x | g)); NULL when unstructured. diag(x | g) is
                           expanded as (x || g) and us(x | g) as (x | g) */
} mlmx_reterm;

typedef struct mlmx_formula {
    char *text;
    mlmx_expr *response;       /* NULL if the formula has no left side */
    mlmx_termlist fixed;
    mlmx_expr *offset;         /* offset(...) argument, or NULL */
    mlmx_reterm *re;
    int nre;
    void *arena;               /* owns every node */
} mlmx_formula;

/* Parse and expand. Errors (MLMX_ERR_FORMULA) carry a message of the form
 *   formula: <what> at position P:\n  <text>\n  <caret under P>
 * (P is the 1-based column, counted in UTF-8 characters; formulas longer
 * than 380 bytes are shown as a window around P). The left side is
 * optional ("~ x"). (lhs | g) terms must be summands of the right side
 * (joined by '+', or left of '-'); unlike lme4's nobars(), "(1|g) - 1"
 * therefore removes the intercept, and "x * (1|g)" is an error. Hostile
 * input fails cleanly: see the limits in formula/formula_internal.h.
 * On failure *out is NULL. Allocates; free with mlmx_formula_free. */
mlmx_status mlmx_formula_parse(const char *text, mlmx_formula **out, mlmx_error *err);
void mlmx_formula_free(mlmx_formula *f);

/* R-style deparse, used for coefficient names: "log(x)", "I(x^2)",
 * "factor(g)". Returns a malloc'd string (caller frees), NULL on OOM. */
char *mlmx_expr_deparse(const mlmx_expr *e);

/* A double as R's as.character() and deparse() print it: 15 significant
 * digits, fixed or scientific notation whichever is narrower ("1", "2.5",
 * "1e+05", "0.333333333333333", "123456"). buf: at least 32 bytes. */
void mlmx_format_double(double x, char *buf, size_t size);

/* Names of the data columns the formula refers to (symbols that are not
 * function names), each once, in order of appearance. *names is a malloc'd
 * array of pointers into the formula (free the array only). */
mlmx_status mlmx_formula_variables(const mlmx_formula *f, const char ***names, int *n,
                                   mlmx_error *err);

#endif
