/* Evaluate formula variables against a data frame: the bridge between
 * host/formula and host/data, used to build model matrices. */
#ifndef MLMX_MODEL_EVAL_H
#define MLMX_MODEL_EVAL_H
#include "data/frame.h"
#include "formula/formula.h"

/* Is this variable a factor? (factor column, factor(...) call, or an
 * interaction a:b used as a grouping factor). Returns 1/0, or -1 and sets
 * err when a symbol names no column. */
int mlmx_var_is_factor(const mlmx_expr *e, const mlmx_data *d, mlmx_error *err);

/* Numeric value of a variable for every row: a numeric column, a number,
 * arithmetic (+ - * / ^, unary -) inside I(), log(), exp(), sqrt(), abs().
 * out: nrow doubles (caller allocated); NAN where an input is missing.
 * A non-finite result from finite inputs (log(0), sqrt(-1)) is an error
 * naming the expression and the first offending row. */
mlmx_status mlmx_var_eval_numeric(const mlmx_expr *e, const mlmx_data *d, double *out,
                                  mlmx_error *err);

/* A factor-valued variable: a factor column, or factor(numeric column)
 * whose levels are the distinct values sorted numerically and printed as R
 * prints them ("1", "2.5"). codes: nrow ints (caller allocated), -1 =
 * missing. *levels: malloc'd array of malloc'd strings (caller frees with
 * mlmx_levels_free). */
mlmx_status mlmx_var_eval_factor(const mlmx_expr *e, const mlmx_data *d, int *codes,
                                 char ***levels, int *nlevels, mlmx_error *err);

/* The interaction of several factor variables (a grouping factor g1:g2):
 * codes over the observed combinations only, levels labelled "a:b" with
 * the components in the order given. Same ownership as above. */
mlmx_status mlmx_group_eval(mlmx_expr *const *vars, int nvars, const mlmx_data *d,
                            int *codes, char ***levels, int *nlevels, mlmx_error *err);

void mlmx_levels_free(char **levels, int nlevels);

#endif
