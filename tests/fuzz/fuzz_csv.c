/* libFuzzer harness for the CSV reader. The reader takes a path, so each
 * input is written to a temporary file (one name per process) and read back; on
 * success the frame's invariants are checked so that the fuzzer also finds
 * wrong results, not only crashes. See tests/fuzz/README.md. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void check_frame(const mlmx_data *d)
{
    if (d->nrow == 0 || d->ncol <= 0)
        abort();
    for (int j = 0; j < d->ncol; j++) {
        const mlmx_column *c = &d->cols[j];
        if (!c->name[0])
            abort();
        for (int k = 0; k < j; k++)
            if (strcmp(d->cols[k].name, c->name) == 0)
                abort();
        if (c->type == MLMX_COL_NUMERIC) {
            for (size_t r = 0; r < d->nrow; r++)
                if (isinf(c->num[r]))
                    abort();
        } else {
            for (int k = 1; k < c->nlevels; k++)
                if (strcmp(c->levels[k - 1], c->levels[k]) >= 0)
                    abort();
            for (size_t r = 0; r < d->nrow; r++)
                if (c->codes[r] < -1 || c->codes[r] >= c->nlevels)
                    abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/mlmx_fuzz_csv_XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0)
            abort();
        close(fd);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);

    mlmx_error err;
    mlmx_err_clear(&err);
    mlmx_data *d = NULL;
    mlmx_status st = mlmx_csv_read(path, &d, &err);
    /* libFuzzer ends with _Exit, so atexit cleanup would never run. */
    unlink(path);
    if (st == MLMX_OK) {
        if (!d)
            abort();
        check_frame(d);
    } else if (d || !err.msg[0] || strchr(err.msg, '\n')) {
        abort(); /* failures leave no object and carry a one-line message */
    }
    mlmx_frame_free(d);
    return 0;
}
