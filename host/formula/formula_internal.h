/* Private to host/formula: the arena that owns a parsed formula, the
 * parser's node wrapper and the error formatter shared by the parser and
 * the term expansion. */
#ifndef MLMX_FORMULA_INTERNAL_H
#define MLMX_FORMULA_INTERNAL_H
#include <stddef.h>
#include "formula/formula.h"

/* Hard limits. They exist so that hostile input (the parser is fuzzed)
 * fails cleanly instead of exhausting the stack or memory; real lme4
 * formulas are far below all of them. */
#define FX_MAX_TEXT 100000     /* bytes of formula text */
#define FX_MAX_NEST 200        /* nested parentheses / unary operators / calls */
#define FX_MAX_DEPTH 1000      /* expression tree depth; the left spine of a chain
                                  a + b - c + ... on the right side outside calls is not
                                  counted: every walk over it loops (terms.c) */
#define FX_MAX_VARS 4096       /* distinct variables in one term list */
#define FX_MAX_TERMS 4096      /* terms in one term list after removing duplicates */
#define FX_MAX_PRODUCT 65536   /* terms formed by one interaction before deduplication */
#define FX_MAX_WORK (1L << 23) /* 64-bit words of terms formed while expanding a formula,
                                  which bounds the time spent on repetitive hostile input */

/* ------------------------------------------------------------------ arena */

typedef struct fx_block fx_block;

/* Everything a formula owns lives in one arena, so freeing is a walk over
 * a block list and error paths never have to unwind partial trees. */
typedef struct fx_arena {
    fx_block *head;
    mlmx_expr *rhs;  /* the whole right side as parsed (for mlmx_formula_variables) */
} fx_arena;

void *fx_alloc(fx_arena *a, size_t n);  /* zeroed; NULL on OOM */
char *fx_strndup(fx_arena *a, const char *s, size_t n);
void fx_arena_free(fx_arena *a);

/* ------------------------------------------------------------------ nodes */

/* The parser allocates every mlmx_expr inside one of these, so the parser
 * and the expansion can keep bookkeeping that consumers never see. Only
 * nodes made by the parser may be passed to FX(). */
typedef struct fx_node {
    mlmx_expr e;  /* first member: an mlmx_expr* of a parsed node points here */
    int oppos;    /* BINOP/UNARY: the operator; CALL: the function name */
    int depth;    /* height of the subtree, 1 for a leaf */
    int varidx;   /* index in the variable table of the expansion in progress */
} fx_node;

#define FX(ex) ((fx_node *)(void *)(ex))
#define FXC(ex) ((const fx_node *)(const void *)(ex))

/* ------------------------------------------------------------------ errors */

/* Sets MLMX_ERR_FORMULA with the standard message
 *   formula: <what> at position P:\n  <text>\n  <caret>
 * where pos is a 0-based byte offset (may equal strlen(text)). */
mlmx_status fx_error(mlmx_error *err, const char *text, int pos, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
mlmx_status fx_nomem(mlmx_error *err);

/* A short printable rendering of a name for messages (truncated). */
void fx_quote_name(const char *name, char *buf, size_t size);

/* ------------------------------------------------------------------ phases */

/* Text -> tree. *lhs is NULL for a one-sided formula. */
mlmx_status fx_parse_text(const char *text, fx_arena *a, mlmx_expr **lhs, mlmx_expr **rhs,
                          mlmx_error *err);

/* Tree -> fixed terms, offset and random-effect terms (fills f). */
mlmx_status fx_expand(mlmx_formula *f, fx_arena *a, mlmx_error *err);

/* Deparse into an arena string (NULL on OOM). */
char *fx_deparse_arena(fx_arena *a, const mlmx_expr *e);

/* Is s a syntactic R name (no backquotes needed)? */
int fx_is_syntactic(const char *s);

#endif
