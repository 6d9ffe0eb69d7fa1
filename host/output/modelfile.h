/* A saved model (docs/model-file.md): what mlmx_fit_save writes and
 * mlmx_model_file_read returns, everything prediction needs without the
 * data. Written and read by host/output/modelfile.c, used by
 * host/infer/predict.c. */
#ifndef MLMX_OUTPUT_MODELFILE_H
#define MLMX_OUTPUT_MODELFILE_H
#include <stddef.h>

#include "mlmx.h"
#include "model/model.h"

/* The format version this build writes and reads. */
#define MLMX_MODEL_FILE_FORMAT 1

typedef struct mlmx_mf_term {
    char *group;       /* "Subject", "cask:batch" */
    char *name;        /* the variance table's name ("Subject.1" for a second term) */
    int formula_index; /* which bar of the formula, in the formula's order */
    int q, nlevels;
    char **colnames;   /* q */
    char **levels;     /* nlevels */
    double *modes;     /* nlevels * q, level-major */
    double *condsd;    /* nlevels * q, or NULL when the fit did not compute them */
} mlmx_mf_term;

struct mlmx_model_file {
    int format_version;
    char *mlmx_version;  /* the writer's */
    char *formula, *response, *weights; /* weights: "" when none */
    char *data_file, *data_sha256;      /* "" when not recorded */
    mlmx_family family;
    mlmx_link link;
    mlmx_method method;
    int nagq;
    double nobs;
    double sigma, nb_size, criterion;
    int p;
    char **fixef_names;
    double *beta, *vcov; /* p, p*p column-major */
    int ntheta;
    char **theta_names;
    double *theta;
    int nthr;            /* ordinal thresholds */
    char **thr_names;
    double *thr;
    int K;
    mlmx_mf_term *terms;
    mlmx_recipe recipe;
};

/* mlmx_fit_save with the format version to record (the tests write a file
 * of another version with it). */
mlmx_status mlmx_model_file_write(const mlmx_fit *f, const char *path, const char *data_path,
                                  int version);

#endif
