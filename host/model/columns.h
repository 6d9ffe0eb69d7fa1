/* Model columns from a term list (internal to host/model): the fixed part's
 * X, a random-effect term's Z rows, and the same columns on new data
 * through a saved recipe (columns.c). */
#ifndef MLMX_MODEL_COLUMNS_H
#define MLMX_MODEL_COLUMNS_H
#include "model/model.h"

typedef struct colset {
    int ncol, cap;
    double **cols; /* each n values */
    char **names;
    int **cells;   /* fixed part: each column's term and levels (fixef_cell) */
} colset;

/* The recipe at work while columns are built: variables are recorded into
 * rec (fitting) or recoded by apply (new data); both NULL: neither. */
typedef struct recipe_ctx {
    mlmx_recipe *rec;
    const mlmx_recipe *apply;
} recipe_ctx;

void mlmx_colset_free(colset *c);
/* The columns of a term list (R's model.matrix: treatment contrasts, R's
 * names and order) at the given rows. cx: the recipe hook (NULL: none).
 * meta (the fixed part only; NULL otherwise): tl->nterms zeroed entries,
 * filled with each term's structure, and each column's cell recorded in
 * out->cells. */
mlmx_status mlmx_build_columns(const mlmx_termlist *tl, const mlmx_data *d, const size_t *rows,
                               size_t n, const recipe_ctx *cx, colset *out, mlmx_fixterm *meta,
                               mlmx_error *err);
/* Drop each column that lies in the span of the columns before it (R's
 * pivoting QR keeps the earlier one); their names in *dropped. */
mlmx_status mlmx_drop_collinear(colset *c, size_t n, char ***dropped, int *ndropped,
                                mlmx_error *err);
#endif
