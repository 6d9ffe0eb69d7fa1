/* The data frame behind the public mlmx_data handle. Knows nothing of
 * formulas or models. Missing values: NAN in numeric columns (real NaN/Inf
 * are rejected at input, so NAN always means "missing"), -1 in factor codes. */
#ifndef MLMX_DATA_FRAME_H
#define MLMX_DATA_FRAME_H
#include <stddef.h>
#include "mlmx.h"
#include "util/error.h"

typedef enum mlmx_col_type { MLMX_COL_NUMERIC = 0, MLMX_COL_FACTOR = 1 } mlmx_col_type;

typedef struct mlmx_column {
    char *name;
    mlmx_col_type type;
    double *num;    /* numeric: nrow values, NAN = missing; NULL for factors */
    int *codes;     /* factor: nrow codes in [0, nlevels), -1 = missing */
    char **levels;  /* factor: nlevels labels in sorted (byte) order */
    int nlevels;
} mlmx_column;

struct mlmx_data {
    size_t nrow;
    int ncol, cap;
    mlmx_column *cols;
    char *source; /* file the data came from, for messages ("" for arrays) */
};

/* Column names appear in one-line error messages and formulas, so control
 * characters (bytes below 0x20, and 0x7F) are refused in them. Returns the
 * first such byte in name, or -1 if there is none. */
int mlmx_name_control_char(const char *name);

/* Column index by exact name, or -1. */
int mlmx_frame_find(const mlmx_data *d, const char *name);

/* Internal constructors used by the readers and by the public API. */
mlmx_status mlmx_frame_new(size_t nrow, const char *source, mlmx_data **out, mlmx_error *err);
/* Frees the frame and everything it owns (names, arrays, levels, source).
 * Accepts NULL. */
void mlmx_frame_free(mlmx_data *d);
/* Takes ownership of num (nrow doubles; NAN = missing), also on failure. */
mlmx_status mlmx_frame_add_numeric_owned(mlmx_data *d, const char *name, double *num,
                                         mlmx_error *err);
/* Builds a factor from nrow strings (NULL = missing), levels byte-sorted. */
mlmx_status mlmx_frame_add_factor_strings(mlmx_data *d, const char *name,
                                          const char *const *s, mlmx_error *err);

mlmx_status mlmx_csv_read(const char *path, mlmx_data **out, mlmx_error *err);
mlmx_status mlmx_hdf5_read(const char *path, const char *group, mlmx_data **out,
                           mlmx_error *err);

#endif
