/* Inside host/formula: the expansion state shared by terms.c (the term
 * algebra, the fixed part) and bars.c (the random-effect terms). */
#ifndef MLMX_FORMULA_TERMS_INTERNAL_H
#define MLMX_FORMULA_TERMS_INTERNAL_H
#include "formula/formula_internal.h"

typedef struct xctx {
    mlmx_formula *f;
    fx_arena *a;
    mlmx_error *err;
    const char *text;
    int relhs;      /* expanding the left side of a bar: no bars or offsets allowed */
    mlmx_expr **vars;  /* variable table: first node seen for each distinct variable */
    char **keys;       /* their deparsed forms, which define identity */
    int nvars, nw;
    int intercept, parity;
    long work;         /* words of terms formed so far (FX_MAX_WORK) */
    mlmx_expr **bars;  /* fixed part: parenthesized bar summands, in order */
    int nbars, capbars;
} xctx;

/* The random-effect terms found so far. */
typedef struct relist {
    mlmx_reterm *v;
    int n, cap;
} relist;

/* Expand one side (the fixed part, or a bar's left side) into out. */
mlmx_status fx_expand_side(xctx *c, mlmx_expr *e, mlmx_termlist *out);
/* Check the arguments of a call (no bars or offsets inside). */
mlmx_status fx_check_args_of(xctx *c, const mlmx_expr *call);
/* Expand a bar (or a structure's call around one) into terms of out. */
mlmx_status fx_expand_bar(xctx *c, mlmx_expr *bar, relist *out);

#endif
