/* mlmx predict: predictions of a saved model (mlmx fit --save) for new data
 * (a thin client of mlmx_model_file_read and mlmx_predict). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mlmx.h"

static const char *usage_predict =
    "usage: mlmx predict --model FILE.h5 --newdata FILE [options]\n"
    "\n"
    "Predict from a model saved by mlmx fit --save, as lme4's predict(fit, newdata):\n"
    "one row per row of the new data.\n"
    "\n"
    "  --model FILE.h5    the saved model (required)\n"
    "  --newdata FILE     CSV (header row) or HDF5 (.h5, .hdf5) table (required); it\n"
    "                     need not hold the response\n"
    "  --group NAME       HDF5 group holding the new data's columns (default /)\n"
    "  --re all|none      with the conditional modes (default, lme4's re.form =\n"
    "                     NULL; a level the model did not see gets the\n"
    "                     population-level prediction, with a note counting the\n"
    "                     rows) or fixed effects only (re.form = NA)\n"
    "  --type link|response  the linear predictor (default) or the mean (the\n"
    "                     inverse link: a binomial model's probability)\n"
    "  --se               add the column se.fit: the standard error of the\n"
    "                     fixed-effect part (link scale; response: delta method)\n"
    "  --out FILE         write the CSV there (default: standard output)\n"
    "  --quiet            no notes on standard error\n"
    "\n"
    "Output: CSV with the column fit (and se.fit); NA where a row has a missing\n"
    "value in a variable it needs. Exit status: 0 on success, 1 when the model\n"
    "file, the data or the prediction fail, 2 on usage errors.\n";

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static void put_num(FILE *fp, double v)
{
    if (isnan(v))
        fputs("NA", fp);
    else
        fprintf(fp, "%.17g", v);
}

/* The CSV to out (stdout when NULL): to a temporary name and renamed, so a
 * failure leaves no file. 0 or 1. */
static int write_csv(const char *out, const double *fit, const double *se, size_t n)
{
    char *tmp = NULL;
    FILE *fp = stdout;
    if (out) {
        size_t len = strlen(out) + 32;
        tmp = malloc(len);
        if (!tmp) {
            fputs("mlmx predict: error: out of memory\n", stderr);
            return 1;
        }
        snprintf(tmp, len, "%s.tmp.%ld", out, (long)getpid());
        fp = fopen(tmp, "w");
        if (!fp) {
            fprintf(stderr, "mlmx predict: error: cannot write '%s'\n", out);
            free(tmp);
            return 1;
        }
    }
    fputs(se ? "fit,se.fit\n" : "fit\n", fp);
    for (size_t i = 0; i < n; i++) {
        put_num(fp, fit[i]);
        if (se) {
            fputc(',', fp);
            put_num(fp, se[i]);
        }
        fputc('\n', fp);
    }
    int bad = ferror(fp);
    if (out) {
        bad |= fclose(fp) != 0;
        if (!bad && rename(tmp, out) != 0)
            bad = 1;
        if (bad) {
            remove(tmp);
            fprintf(stderr, "mlmx predict: error: cannot write '%s'\n", out);
        }
        free(tmp);
    } else {
        bad |= fflush(fp) != 0;
        if (bad)
            fputs("mlmx predict: error: cannot write to standard output\n", stderr);
    }
    return bad ? 1 : 0;
}

typedef struct pred_args {
    const char *model, *newdata, *group, *re, *type, *out;
    int se, quiet;
} pred_args;

static int parse_args(int argc, char **argv, pred_args *a, mlmx_predict_options *o)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char **target = NULL;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fputs(usage_predict, stdout);
            return -1;
        } else if (strcmp(s, "--se") == 0) {
            a->se = 1;
        } else if (strcmp(s, "--quiet") == 0 || strcmp(s, "-q") == 0) {
            a->quiet = 1;
        } else if (strcmp(s, "--model") == 0) {
            target = &a->model;
        } else if (strcmp(s, "--newdata") == 0) {
            target = &a->newdata;
        } else if (strcmp(s, "--group") == 0) {
            target = &a->group;
        } else if (strcmp(s, "--re") == 0) {
            target = &a->re;
        } else if (strcmp(s, "--type") == 0) {
            target = &a->type;
        } else if (strcmp(s, "--out") == 0) {
            target = &a->out;
        } else {
            fprintf(stderr, "mlmx predict: unknown option '%s' (see mlmx predict --help)\n", s);
            return 2;
        }
        if (target && mlmx_cli_take_value("predict", argc, argv, &i, target))
            return 2;
    }
    if (!a->model || !a->newdata) {
        fprintf(stderr, "mlmx predict: --model and --newdata are required (see mlmx predict "
                        "--help)\n");
        return 2;
    }
    mlmx_predict_options_default(o);
    if (a->re && strcmp(a->re, "none") == 0)
        o->re = MLMX_PREDICT_RE_NONE;
    else if (a->re && strcmp(a->re, "all") != 0) {
        fprintf(stderr, "mlmx predict: --re '%s' must be all or none\n", a->re);
        return 2;
    }
    if (a->type && strcmp(a->type, "response") == 0)
        o->type = MLMX_PREDICT_RESPONSE;
    else if (a->type && strcmp(a->type, "link") != 0) {
        fprintf(stderr, "mlmx predict: --type '%s' must be link or response\n", a->type);
        return 2;
    }
    return 0;
}

int mlmx_cmd_predict(int argc, char **argv)
{
    pred_args a = {0};
    mlmx_predict_options o;
    int urc = parse_args(argc, argv, &a, &o);
    if (urc)
        return urc < 0 ? 0 : urc;
    mlmx_model_file *mf = NULL;
    mlmx_data *d = NULL;
    double *fit = NULL, *se = NULL;
    int rc = 0;
    if (mlmx_model_file_read(a.model, &mf) != MLMX_OK) {
        fprintf(stderr, "mlmx predict: error: %s\n", mlmx_last_error());
        return 1;
    }
    if (!a.quiet && strcmp(mlmx_model_file_version(mf), mlmx_version()) != 0)
        fprintf(stderr, "mlmx predict: note: '%s' was written by mlmx %s (this is mlmx %s)\n",
                a.model, mlmx_model_file_version(mf), mlmx_version());
    mlmx_status st = has_suffix(a.newdata, ".h5") || has_suffix(a.newdata, ".hdf5")
                         ? mlmx_data_read_hdf5(a.newdata, a.group, &d)
                         : mlmx_data_read_csv(a.newdata, &d);
    size_t n = d ? mlmx_data_nrow(d) : 0, nnew = 0;
    if (!st) {
        fit = malloc((n ? n : 1) * sizeof *fit);
        se = a.se ? malloc((n ? n : 1) * sizeof *se) : NULL;
        if (!fit || (a.se && !se)) {
            fputs("mlmx predict: error: out of memory\n", stderr);
            rc = 1;
        }
    }
    if (!st && !rc)
        st = mlmx_predict(mf, d, &o, fit, se, &nnew);
    if (st) {
        fprintf(stderr, "mlmx predict: error: %s\n", mlmx_last_error());
        rc = 1;
    }
    if (!rc && nnew && !a.quiet && o.re == MLMX_PREDICT_RE_ALL)
        fprintf(stderr, "mlmx predict: note: %zu of %zu rows have a grouping level the model "
                        "did not see; they get the population-level prediction (b = 0) for "
                        "that term\n", nnew, n);
    if (!rc)
        rc = write_csv(a.out, fit, se, n);
    free(fit);
    free(se);
    mlmx_data_free(d);
    mlmx_model_file_free(mf);
    return rc;
}
