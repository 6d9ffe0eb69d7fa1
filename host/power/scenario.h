/* Power-analysis scenario files (JSON, docs/scenarios.md): what to
 * simulate (formula, family, design, parameters), how to test, and how
 * often. Reading validates everything that needs no data or fitted model;
 * the design generator builds the data set that simulations fill in.
 *
 * Every message is one line and names the file: syntax errors give
 * "file:line:column: what" (jansson's position), the others the key path,
 * e.g. "slope.json: design.levels[0].units must be at least 1 (got 0; level
 * 'g' would have no units)". */
#ifndef MLMX_POWER_SCENARIO_H
#define MLMX_POWER_SCENARIO_H
#include <stddef.h>
#include <stdint.h>

#include "mlmx.h"
#include "util/error.h"

/* How many units of a level each unit of the level above has. */
typedef enum mlmx_sc_size {
    MLMX_SC_SIZE_FIXED = 0,   /* exactly `units` */
    MLMX_SC_SIZE_POISSON = 1, /* Poisson(size_mean), a draw of 0 drawn again */
    MLMX_SC_SIZE_UNIFORM = 2  /* uniform on the integers size_min .. size_max */
} mlmx_sc_size;

typedef struct mlmx_sc_level {
    char *name;
    long units;          /* FIXED: units per unit of the level above (first level:
                            the total); 0 when the size is drawn */
    mlmx_sc_size size;   /* always FIXED for the first level */
    double size_mean;    /* POISSON */
    long size_min, size_max; /* UNIFORM */
    int in_formula;      /* the formula or a random group names this level */
} mlmx_sc_level;

typedef enum mlmx_sc_dist {
    MLMX_SC_NORMAL = 0,  /* a = mean, b = sd */
    MLMX_SC_BINARY = 1,  /* 0/1 with P(1) = a */
    MLMX_SC_UNIFORM = 2, /* continuous uniform on [a, b] */
    MLMX_SC_SEQUENCE = 3 /* a + b * (position of the unit within its parent, from 0) */
} mlmx_sc_dist;

typedef struct mlmx_sc_covariate {
    char *name;
    int level;           /* index into levels: one value per unit of that level */
    mlmx_sc_dist dist;
    double a, b;
} mlmx_sc_covariate;

typedef struct mlmx_sc_coef {
    char *name;          /* coefficient name as mlmx and lme4 print it: "(Intercept)", "x" */
    double value;
} mlmx_sc_coef;

/* One random-effect group: SDs of its columns and their correlations. */
typedef struct mlmx_sc_random {
    char *group;         /* grouping factor label as in the formula: "g", "class:school" */
    int ncol;
    char **cols;         /* column names in the order given */
    double *sd;          /* ncol SDs (given as "sd", or the square roots of "var") */
    double *cor;         /* ncol x ncol correlations, symmetric, unit diagonal, 0
                            where not given; positive semi-definite */
    int given_var;       /* 1 if the file gave variances ("var") rather than SDs */
} mlmx_sc_random;

typedef enum mlmx_sc_test {
    MLMX_SC_WALD_Z = 0,  /* Wald z = estimate / SE of `term`, normal reference */
    MLMX_SC_WALD_T = 1,  /* the same against a t distribution (gaussian only) */
    MLMX_SC_LRT = 2      /* likelihood ratio test dropping `drop` (ML fits) */
} mlmx_sc_test;

typedef struct mlmx_scenario {
    char *source;        /* file name, for messages */
    char *formula;
    char *response;      /* the formula's response (a column name) */
    mlmx_family family;
    mlmx_link link;      /* MLMX_LINK_DEFAULT unless "link" is given */
    mlmx_method method;  /* gaussian: REML (default) or ML; others: ML */

    int has_design;      /* 0: the pilot's data are the design */
    int nlevels;
    mlmx_sc_level *levels;   /* coarsest first */
    int ncov;
    mlmx_sc_covariate *covs;

    int has_fixed;       /* "fixed" given (required without a pilot) */
    int nfixed;
    mlmx_sc_coef *fixed;
    int has_random;
    int nrandom;
    mlmx_sc_random *random;
    double sigma;        /* gaussian residual SD; NAN when not given */
    int nthresholds;     /* ordinal: K - 1 increasing thresholds; 0 otherwise */
    double *thresholds;
    double nb_size;      /* negbin: NB2 size (theta); NAN when not given */

    /* "residual" (gaussian only; scenario_resid.c): nlme's correlation= and
     * weights= as mlmx_model_set_residual takes them, and the structure's
     * parameters by name (mlmx_model_resid_par_name) on nlme's scale */
    int has_resid;
    char *resid_corr;    /* NULL: no correlation structure */
    char *resid_var;     /* NULL: no variance function */
    int nresid;
    char **resid_names;
    double *resid_values;

    mlmx_sc_test test;
    char *test_term;     /* Wald tests: the coefficient tested */
    int ndrop;           /* LRT: fixed-effect terms dropped in the null model */
    char **drop;

    double alpha;        /* default 0.05 */
    long nsim;           /* default 1000 */
    uint64_t seed;       /* default 1 */

    char *curve_level;   /* NULL: no power curve; else the level (or pilot group)
                            whose units vary */
    int curve_index;     /* index into levels, or -1 (pilot group, no design) */
    int ncurve;
    long *curve_units;   /* ncurve values */

    char *pilot_data;    /* NULL: no pilot; else a CSV path as given */
    char *pilot_group;   /* NULL: the pilot is not extended */
    long pilot_units;    /* extend pilot_group to this many units */
    char *pilot_model;   /* NULL, or the saved model (--model, or pilot.model): the
                            pilot whose saved estimates are the truth; pilot_data is
                            then its data file (pilot.data, or the recorded one) */
    mlmx_model_file *model; /* that file, read */
} mlmx_scenario;

/* Read and validate a scenario file. *out is NULL on failure. Errors:
 * MLMX_ERR_IO (cannot read), MLMX_ERR_PARSE (syntax, types, unknown keys,
 * values out of range), MLMX_ERR_FORMULA (the formula does not parse).
 * Allocates; free with mlmx_scenario_free. */
mlmx_status mlmx_scenario_read(const char *path, mlmx_scenario **out, mlmx_error *err);
/* The same from text; source names it in messages. */
mlmx_status mlmx_scenario_parse(const char *text, size_t len, const char *source,
                                mlmx_scenario **out, mlmx_error *err);
void mlmx_scenario_free(mlmx_scenario *sc);
/* The same with a saved model as the pilot (model_path: --model; NULL: the
 * file's pilot.model, if any). The command line's model replaces the
 * file's. The model gives the formula (a scenario formula must equal it up
 * to white space) and, without pilot.data, the data file. Errors as above,
 * and the model file's (MLMX_ERR_IO, MLMX_ERR_PARSE), MLMX_ERR_UNSUPPORTED
 * (a GLMM), MLMX_ERR_ARG (another formula, no data file recorded). */
mlmx_status mlmx_scenario_read_model(const char *path, const char *model_path,
                                     mlmx_scenario **out, mlmx_error *err);
mlmx_status mlmx_scenario_parse_model(const char *text, size_t len, const char *source,
                                      const char *model_path, mlmx_scenario **out,
                                      mlmx_error *err);
/* Read the saved model at path into sc (scenario_model.c): sc->model,
 * pilot_model, formula (formula: the scenario's, or NULL) and pilot_data
 * when NULL. */
mlmx_status mlmx_sc_take_model(mlmx_scenario *sc, const char *path, const char *formula,
                               mlmx_error *err);

/* The "residual" key (v: its value) into sc (scenario_resid.c); called
 * by the parser after the family. Errors: MLMX_ERR_PARSE. */
struct json_t;
mlmx_status mlmx_sc_parse_residual(mlmx_scenario *sc, struct json_t *v, mlmx_error *err);
void mlmx_sc_free_residual(mlmx_scenario *sc);
/* Every key of obj must be in known (NULL-terminated): an error naming the
 * key and path, with the known keys (scenario.c). */
mlmx_status mlmx_sc_check_keys(const char *src, struct json_t *obj, const char *path,
                               const char *const *known, mlmx_error *err);

/* Units of level `level` per unit of the level above at a curve point
 * (-1: the base design); 0 for a drawn size. */
long mlmx_scenario_units(const mlmx_scenario *sc, int level, int curve_point);

/* Build the design as a data set: one factor column per level except the
 * last (unit ids "<level><k>", k counting from 1 across the whole level,
 * so ids are unique: "class17"), the last level too when the formula
 * names it, then the covariates in file order, then the response (named as
 * in the formula) filled with 0. Rows are the units of the last level in
 * nesting order. curve_point: -1 for the base design, else 0 .. ncurve-1
 * (the curve level gets curve_units[curve_point] units).
 * Random draws (drawn sizes, covariates) come from the Philox generator
 * keyed by seed with replicate 0xFFFFFFFF: covariate i uses stream i and
 * the size of level k stream 0x10000 + k, so the design is a function of
 * the seed alone, and units keep their values across curve points.
 * Errors: MLMX_ERR_ARG (no design, curve point out of range, more than
 * 2^31 - 1 rows), MLMX_ERR_NOMEM. Allocates; free with mlmx_data_free. */
mlmx_status mlmx_scenario_design(const mlmx_scenario *sc, int curve_point, uint64_t seed,
                                 mlmx_data **out, mlmx_error *err);

const char *mlmx_sc_test_name(mlmx_sc_test t); /* "wald_z", "wald_t", "lrt" */

#endif
