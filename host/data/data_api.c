/* Public data-set entry points (include/mlmx.h): argument checks, then the
 * internal frame functions; errors become the thread's last error. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "api_internal.h"
#include "data/frame.h"
#include "mlmx.h"

mlmx_status mlmx_data_read_csv(const char *path, mlmx_data **out)
{
    mlmx_api_clear();
    if (!out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_read_csv: out is NULL");
    *out = NULL;
    if (!path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_read_csv: path is NULL");
    mlmx_error err;
    mlmx_err_clear(&err);
    mlmx_data *d = NULL;
    if (mlmx_csv_read(path, &d, &err) != MLMX_OK) {
        mlmx_frame_free(d);
        return mlmx_api_fail(&err);
    }
    *out = d;
    return MLMX_OK;
}

mlmx_status mlmx_data_read_hdf5(const char *path, const char *group, mlmx_data **out)
{
    mlmx_api_clear();
    if (!out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_read_hdf5: out is NULL");
    *out = NULL;
    if (!path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_read_hdf5: path is NULL");
    mlmx_error err;
    mlmx_err_clear(&err);
    mlmx_data *d = NULL;
    if (mlmx_hdf5_read(path, (group && group[0]) ? group : "/", &d, &err) != MLMX_OK) {
        mlmx_frame_free(d);
        return mlmx_api_fail(&err);
    }
    *out = d;
    return MLMX_OK;
}

mlmx_status mlmx_data_create(size_t nrow, mlmx_data **out)
{
    mlmx_api_clear();
    if (!out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_create: out is NULL");
    *out = NULL;
    mlmx_error err;
    mlmx_err_clear(&err);
    if (mlmx_frame_new(nrow, "", out, &err) != MLMX_OK)
        return mlmx_api_fail(&err);
    return MLMX_OK;
}

mlmx_status mlmx_data_add_numeric(mlmx_data *d, const char *name, const double *x,
                                  const unsigned char *missing)
{
    mlmx_api_clear();
    if (!d)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_add_numeric: data set is NULL");
    if (!name || !name[0])
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_add_numeric: column name is %s",
                              name ? "empty" : "NULL");
    if (!x && d->nrow > 0)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_add_numeric: values for column '%s' are NULL",
                              name);
    if (mlmx_frame_find(d, name) >= 0)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_add_numeric: column name '%s' is already used",
                              name);
    if (d->nrow > SIZE_MAX / sizeof(double))
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory adding column '%s'", name);
    double *num = malloc((d->nrow ? d->nrow : 1) * sizeof *num);
    if (!num)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory adding column '%s'", name);
    for (size_t i = 0; i < d->nrow; i++) {
        if (missing && missing[i]) {
            num[i] = NAN;
        } else if (!isfinite(x[i])) {
            /* NAN is the frame's missing marker; an unflagged NaN or Inf is
             * far more often a bug upstream than an intended missing value. */
            free(num);
            return mlmx_api_failf(MLMX_ERR_DATA,
                                  "column '%s': x[%zu] is %s; flag missing values in the "
                                  "missing array instead",
                                  name, i, isnan(x[i]) ? "NaN" : (x[i] > 0 ? "Inf" : "-Inf"));
        } else {
            num[i] = x[i];
        }
    }
    mlmx_error err;
    mlmx_err_clear(&err);
    if (mlmx_frame_add_numeric_owned(d, name, num, &err) != MLMX_OK)
        return mlmx_api_fail(&err);
    return MLMX_OK;
}

mlmx_status mlmx_data_add_strings(mlmx_data *d, const char *name, const char *const *x)
{
    mlmx_api_clear();
    if (!d)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_add_strings: data set is NULL");
    if (!name || !name[0])
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_add_strings: column name is %s",
                              name ? "empty" : "NULL");
    if (!x && d->nrow > 0)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_add_strings: values for column '%s' are NULL",
                              name);
    if (mlmx_frame_find(d, name) >= 0)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_data_add_strings: column name '%s' is already used",
                              name);
    mlmx_error err;
    mlmx_err_clear(&err);
    if (mlmx_frame_add_factor_strings(d, name, x, &err) != MLMX_OK)
        return mlmx_api_fail(&err);
    return MLMX_OK;
}

size_t mlmx_data_nrow(const mlmx_data *d) { return d ? d->nrow : 0; }

int mlmx_data_ncol(const mlmx_data *d) { return d ? d->ncol : 0; }

const char *mlmx_data_column_name(const mlmx_data *d, int j)
{
    if (!d || j < 0 || j >= d->ncol)
        return NULL;
    return d->cols[j].name;
}

int mlmx_data_column_is_factor(const mlmx_data *d, int j)
{
    if (!d || j < 0 || j >= d->ncol)
        return -1;
    return d->cols[j].type == MLMX_COL_FACTOR;
}

int mlmx_data_column_nlevels(const mlmx_data *d, int j)
{
    if (!d || j < 0 || j >= d->ncol || d->cols[j].type != MLMX_COL_FACTOR)
        return 0;
    return d->cols[j].nlevels;
}

void mlmx_data_free(mlmx_data *d) { mlmx_frame_free(d); }
