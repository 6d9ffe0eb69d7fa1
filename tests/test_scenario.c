/* Power-analysis scenario files: the bundled examples parse, every kind of
 * mistake gives a one-line message naming the file and the key, and the
 * design generator builds the rows, unit ids and covariates, reproducibly
 * for a seed. Invalid scenarios are made by editing the slope example with
 * jansson, so each test changes one thing. */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/frame.h"
#include "power/scenario.h"

#define EXAMPLES MLMX_SOURCE_DIR "/data/scenarios/"

static mlmx_scenario *read_ok(const char *path)
{
    mlmx_scenario *sc = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_read(path, &sc, &err), MLMX_OK, "%s", err.msg);
    cr_assert_not_null(sc);
    return sc;
}

/* ---- examples --------------------------------------------------------------- */

Test(scenario, slope_example)
{
    mlmx_scenario *sc = read_ok(EXAMPLES "slope_power.json");
    cr_assert_str_eq(sc->formula, "y ~ x + (x | g)");
    cr_assert_str_eq(sc->response, "y");
    cr_assert_eq(sc->family, MLMX_FAMILY_GAUSSIAN);
    cr_assert_eq(sc->link, MLMX_LINK_DEFAULT);
    cr_assert_eq(sc->method, MLMX_REML);
    cr_assert(sc->has_design);
    cr_assert_eq(sc->nlevels, 2);
    cr_assert_str_eq(sc->levels[0].name, "g");
    cr_assert_eq(sc->levels[0].units, 50);
    cr_assert_str_eq(sc->levels[1].name, "obs");
    cr_assert_eq(sc->levels[1].units, 20);
    cr_assert_eq(sc->levels[1].size, MLMX_SC_SIZE_FIXED);
    cr_assert(sc->levels[0].in_formula);
    cr_assert_not(sc->levels[1].in_formula);
    cr_assert_eq(sc->ncov, 1);
    cr_assert_str_eq(sc->covs[0].name, "x");
    cr_assert_eq(sc->covs[0].level, 1);
    cr_assert_eq(sc->covs[0].dist, MLMX_SC_NORMAL);
    cr_assert_eq(sc->covs[0].a, 0.0);
    cr_assert_eq(sc->covs[0].b, 1.0);
    cr_assert_eq(sc->nfixed, 2);
    cr_assert_str_eq(sc->fixed[0].name, "(Intercept)");
    cr_assert_eq(sc->fixed[0].value, 0.0);
    cr_assert_str_eq(sc->fixed[1].name, "x");
    cr_assert_eq(sc->fixed[1].value, 0.3);
    cr_assert_eq(sc->nrandom, 1);
    const mlmx_sc_random *r = &sc->random[0];
    cr_assert_str_eq(r->group, "g");
    cr_assert_eq(r->ncol, 2);
    cr_assert_str_eq(r->cols[0], "(Intercept)");
    cr_assert_str_eq(r->cols[1], "x");
    cr_assert_eq(r->sd[0], 1.0);
    cr_assert_eq(r->sd[1], 0.5);
    cr_assert_eq(r->cor[0], 1.0);
    cr_assert_eq(r->cor[1], 0.3);
    cr_assert_eq(r->cor[2], 0.3);
    cr_assert_eq(r->cor[3], 1.0);
    cr_assert_eq(sc->sigma, 1.0);
    cr_assert_eq(sc->test, MLMX_SC_WALD_Z);
    cr_assert_str_eq(sc->test_term, "x");
    cr_assert_eq(sc->alpha, 0.05);
    cr_assert_eq(sc->nsim, 1000);
    cr_assert_eq(sc->seed, 1);
    cr_assert_str_eq(sc->curve_level, "g");
    cr_assert_eq(sc->curve_index, 0);
    cr_assert_eq(sc->ncurve, 10);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(sc->curve_units[i], 10 * (i + 1));
    cr_assert_null(sc->pilot_data);
    cr_assert_eq(mlmx_scenario_units(sc, 0, -1), 50);
    cr_assert_eq(mlmx_scenario_units(sc, 0, 2), 30);
    cr_assert_eq(mlmx_scenario_units(sc, 1, 2), 20);
    mlmx_scenario_free(sc);
}

Test(scenario, binomial_example)
{
    mlmx_scenario *sc = read_ok(EXAMPLES "binomial_power.json");
    cr_assert_eq(sc->family, MLMX_FAMILY_BINOMIAL);
    cr_assert_eq(sc->link, MLMX_LINK_LOGIT);
    cr_assert_eq(sc->method, MLMX_ML);
    cr_assert_eq(sc->levels[0].units, 40);
    cr_assert_eq(sc->levels[1].units, 15);
    cr_assert_eq(sc->fixed[0].value, -0.5);
    cr_assert_eq(sc->fixed[1].value, 0.25);
    cr_assert_eq(sc->random[0].ncol, 1);
    cr_assert_eq(sc->random[0].sd[0], 1.0);
    cr_assert(isnan(sc->sigma));
    cr_assert_eq(sc->test, MLMX_SC_WALD_Z);
    cr_assert_eq(sc->nsim, 1000);
    cr_assert_null(sc->curve_level);
    cr_assert_eq(sc->ncurve, 0);
    mlmx_scenario_free(sc);
}

Test(scenario, ordinal_example)
{
    mlmx_scenario *sc = read_ok(EXAMPLES "ordinal_power.json");
    cr_assert_eq(sc->family, MLMX_FAMILY_ORDINAL);
    cr_assert_eq(sc->levels[0].units, 30);
    cr_assert_eq(sc->levels[1].units, 10);
    cr_assert_eq(sc->nthresholds, 3);
    cr_assert_eq(sc->thresholds[0], -1.0);
    cr_assert_eq(sc->thresholds[1], 0.0);
    cr_assert_eq(sc->thresholds[2], 1.2);
    cr_assert_eq(sc->nfixed, 1);
    cr_assert_str_eq(sc->fixed[0].name, "x");
    cr_assert_eq(sc->fixed[0].value, 0.3);
    cr_assert_eq(sc->random[0].sd[0], 0.8);
    mlmx_scenario_free(sc);
}

/* ---- errors ----------------------------------------------------------------- */

static json_t *slope_json(void)
{
    json_error_t je;
    json_t *j = json_load_file(EXAMPLES "slope_power.json", 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    return j;
}

/* The object at a dotted path with [i] indexes, e.g. "design.levels[0]". */
static json_t *at(json_t *root, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = root;
    for (char *tok = strtok(buf, "."); tok; tok = strtok(NULL, ".")) {
        char *br = strchr(tok, '[');
        if (br)
            *br = '\0';
        cur = json_object_get(cur, tok);
        cr_assert_not_null(cur, "no %s in the example", path);
        if (br)
            cur = json_array_get(cur, (size_t)atoi(br + 1));
    }
    return cur;
}

/* Parse j (consumed) as "scenario.json"; expect status and a one-line
 * message starting with the file name and containing want. */
static void expect_error(json_t *j, mlmx_status status, const char *want)
{
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    cr_assert_not_null(text);
    mlmx_scenario *sc = (mlmx_scenario *)1;
    mlmx_error err = {0};
    mlmx_status st = mlmx_scenario_parse(text, strlen(text), "scenario.json", &sc, &err);
    free(text);
    cr_assert_eq(st, status, "status %d, message: %s", st, err.msg);
    cr_assert_null(sc);
    cr_assert(strncmp(err.msg, "scenario.json", 13) == 0, "message does not name the file: %s",
              err.msg);
    cr_assert(strchr(err.msg, '\n') == NULL, "message spans lines: %s", err.msg);
    cr_assert(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
}

static void expect_text_error(const char *text, mlmx_status status, const char *want)
{
    mlmx_scenario *sc = (mlmx_scenario *)1;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_parse(text, strlen(text), "scenario.json", &sc, &err), status,
                 "%s", err.msg);
    cr_assert_null(sc);
    cr_assert(strchr(err.msg, '\n') == NULL, "message spans lines: %s", err.msg);
    cr_assert(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
}

Test(scenario_errors, syntax_error_has_line_and_column)
{
    expect_text_error("{\n  \"nsim\": 10,\n  \"alpha\": 0.05\n  \"formula\": \"y ~ x\"\n}\n",
                      MLMX_ERR_PARSE, "scenario.json:4:");
    expect_text_error("{\"nsim\": 10,}", MLMX_ERR_PARSE, "scenario.json:1:");
    expect_text_error("", MLMX_ERR_PARSE, "scenario.json");
    /* duplicate keys are rejected, not silently overwritten */
    expect_text_error("{\"nsim\": 10, \"nsim\": 20}", MLMX_ERR_PARSE, "duplicate");
    expect_text_error("[1, 2]", MLMX_ERR_PARSE, "must be a JSON object");
}

Test(scenario_errors, missing_file)
{
    mlmx_scenario *sc = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_read(EXAMPLES "no_such_file.json", &sc, &err), MLMX_ERR_IO);
    cr_assert(strstr(err.msg, "no_such_file.json") != NULL, "%s", err.msg);
}

Test(scenario_errors, nsim_must_be_positive)
{
    json_t *j = slope_json();
    json_object_set_new(j, "nsim", json_integer(0));
    expect_error(j, MLMX_ERR_PARSE, "scenario.json: nsim must be positive (got 0)");
    j = slope_json();
    json_object_set_new(j, "nsim", json_real(2.5));
    expect_error(j, MLMX_ERR_PARSE, "nsim must be a whole number (got 2.5)");
}

Test(scenario_errors, nsim_defaults_to_1000_and_alpha_to_005)
{
    json_t *j = slope_json();
    json_object_del(j, "nsim");
    json_object_del(j, "alpha");
    char *text = json_dumps(j, 0);
    json_decref(j);
    mlmx_scenario *sc = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_parse(text, strlen(text), "s.json", &sc, &err), MLMX_OK, "%s",
                 err.msg);
    free(text);
    cr_assert_eq(sc->nsim, 1000);
    cr_assert_eq(sc->alpha, 0.05);
    mlmx_scenario_free(sc);
}

Test(scenario_errors, alpha_outside_0_1)
{
    json_t *j = slope_json();
    json_object_set_new(j, "alpha", json_real(1.5));
    expect_error(j, MLMX_ERR_PARSE, "scenario.json: alpha must be in (0, 1) (got 1.5)");
    j = slope_json();
    json_object_set_new(j, "alpha", json_integer(0));
    expect_error(j, MLMX_ERR_PARSE, "alpha must be in (0, 1) (got 0)");
}

Test(scenario_errors, negative_sd_names_term_and_column)
{
    json_t *j = slope_json();
    json_object_set_new(at(j, "random[0].sd"), "x", json_real(-0.5));
    expect_error(j, MLMX_ERR_PARSE,
                 "scenario.json: random[0].sd.x is negative (-0.5): a negative SD for column 'x' "
                 "of group 'g'");
}

Test(scenario_errors, negative_variance_names_term_and_column)
{
    json_t *j = slope_json();
    json_t *r = at(j, "random[0]");
    json_object_del(r, "sd");
    json_t *var = json_object();
    json_object_set_new(var, "(Intercept)", json_real(-1.0));
    json_object_set_new(var, "x", json_real(0.25));
    json_object_set_new(r, "var", var);
    expect_error(j, MLMX_ERR_PARSE,
                 "random[0].var.(Intercept) is negative (-1): a negative variance for column "
                 "'(Intercept)' of group 'g'");
}

Test(scenario_errors, variances_become_sds)
{
    json_t *j = slope_json();
    json_t *r = at(j, "random[0]");
    json_object_del(r, "sd");
    json_t *var = json_object();
    json_object_set_new(var, "(Intercept)", json_real(4.0));
    json_object_set_new(var, "x", json_real(0.25));
    json_object_set_new(r, "var", var);
    char *text = json_dumps(j, 0);
    json_decref(j);
    mlmx_scenario *sc = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_parse(text, strlen(text), "s.json", &sc, &err), MLMX_OK, "%s",
                 err.msg);
    free(text);
    cr_assert_eq(sc->random[0].sd[0], 2.0);
    cr_assert_eq(sc->random[0].sd[1], 0.5);
    cr_assert(sc->random[0].given_var);
    mlmx_scenario_free(sc);
}

Test(scenario_errors, correlation_outside_minus1_1)
{
    json_t *j = slope_json();
    json_object_set_new(at(j, "random[0].cor"), "(Intercept):x", json_real(1.5));
    expect_error(j, MLMX_ERR_PARSE, "random[0].cor.(Intercept):x must be in [-1, 1] (got 1.5)");
    j = slope_json();
    json_t *cor = at(j, "random[0].cor");
    json_object_del(cor, "(Intercept):x");
    json_object_set_new(cor, "(Intercept):z", json_real(0.2));
    expect_error(j, MLMX_ERR_PARSE, "'(Intercept):z' is not two columns of group 'g'");
}

Test(scenario_errors, correlations_must_form_a_correlation_matrix)
{
    /* three columns, pairwise valid, jointly impossible */
    json_t *j = slope_json();
    json_object_set_new(j, "formula", json_string("y ~ x + z + (x + z | g)"));
    json_t *cov = json_object();
    json_object_set_new(cov, "name", json_string("z"));
    json_object_set_new(cov, "level", json_string("obs"));
    json_object_set_new(cov, "binary", json_pack("{s:f}", "p", 0.5));
    json_array_append_new(at(j, "design.covariates"), cov);
    json_object_set_new(at(j, "fixed"), "z", json_real(0.1));
    json_object_set_new(at(j, "random[0].sd"), "z", json_real(0.2));
    json_t *c = at(j, "random[0].cor");
    json_object_set_new(c, "(Intercept):x", json_real(0.9));
    json_object_set_new(c, "(Intercept):z", json_real(0.9));
    json_object_set_new(c, "x:z", json_real(-0.9));
    expect_error(j, MLMX_ERR_PARSE, "not positive semi-definite");
}

Test(scenario_errors, zero_clusters_names_the_level)
{
    json_t *j = slope_json();
    json_object_set_new(at(j, "design.levels[0]"), "units", json_integer(0));
    expect_error(j, MLMX_ERR_PARSE,
                 "scenario.json: design.levels[0].units must be at least 1 (got 0; level 'g' "
                 "would have no units)");
    j = slope_json();
    json_array_set_new(at(j, "curve.units"), 3, json_integer(0));
    expect_error(j, MLMX_ERR_PARSE, "curve.units[3] must be at least 1 (got 0; level 'g'");
}

Test(scenario_errors, thresholds_must_increase)
{
    json_t *j = json_load_file(EXAMPLES "ordinal_power.json", 0, NULL);
    cr_assert_not_null(j);
    json_array_set_new(json_object_get(j, "thresholds"), 2, json_real(-0.5));
    expect_error(j, MLMX_ERR_PARSE,
                 "thresholds must increase: thresholds[2] = -0.5 is not above thresholds[1] = 0");
    j = slope_json();
    json_object_set_new(j, "thresholds", json_pack("[f,f]", 0.0, 1.0));
    expect_error(j, MLMX_ERR_PARSE, "thresholds apply to ordinal models only (family is gaussian)");
}

Test(scenario_errors, unknown_family_link_method_and_test)
{
    json_t *j = slope_json();
    json_object_set_new(j, "family", json_string("gamma"));
    expect_error(j, MLMX_ERR_PARSE,
                 "family 'gamma' is not known (gaussian, binomial, poisson, negbin, ordinal)");
    j = slope_json();
    json_object_set_new(j, "link", json_string("logit"));
    expect_error(j, MLMX_ERR_PARSE, "link 'logit' does not go with family gaussian");
    j = slope_json();
    json_object_set_new(j, "method", json_string("LS"));
    expect_error(j, MLMX_ERR_PARSE, "method 'LS' is not known (REML or ML)");
    j = json_load_file(EXAMPLES "binomial_power.json", 0, NULL);
    json_object_set_new(j, "method", json_string("ML"));
    expect_error(j, MLMX_ERR_PARSE, "method applies to gaussian models only");
    j = slope_json();
    json_object_set_new(at(j, "test"), "type", json_string("score"));
    expect_error(j, MLMX_ERR_PARSE, "test.type 'score' is not known (wald_z, wald_t or lrt)");
    j = json_load_file(EXAMPLES "binomial_power.json", 0, NULL);
    json_object_set_new(at(j, "test"), "type", json_string("wald_t"));
    expect_error(j, MLMX_ERR_PARSE, "wald_t applies to gaussian models only");
}

Test(scenario_errors, unknown_keys_are_named)
{
    json_t *j = slope_json();
    json_object_set_new(j, "nsims", json_integer(10));
    expect_error(j, MLMX_ERR_PARSE, "unknown key 'nsims' at the top level (did you mean 'nsim'?");
    j = slope_json();
    json_object_set_new(at(j, "design.levels[1]"), "unit", json_integer(10));
    expect_error(j, MLMX_ERR_PARSE,
                 "unknown key 'unit' in design.levels[1] (did you mean 'units'? known keys: name, "
                 "units, size)");
    j = slope_json();
    json_object_set_new(at(j, "random[0]"), "corr", json_object());
    expect_error(j, MLMX_ERR_PARSE, "unknown key 'corr' in random[0]");
}

Test(scenario_errors, wrong_types_name_the_key_path)
{
    json_t *j = slope_json();
    json_object_set_new(j, "nsim", json_string("1000"));
    expect_error(j, MLMX_ERR_PARSE, "scenario.json: nsim must be a number (got a string)");
    j = slope_json();
    json_object_set_new(j, "formula", json_integer(3));
    expect_error(j, MLMX_ERR_PARSE, "formula must be a string (got a number)");
    j = slope_json();
    json_object_set_new(at(j, "design.levels[1]"), "name", json_integer(7));
    expect_error(j, MLMX_ERR_PARSE, "design.levels[1].name must be a string (got a number)");
    j = slope_json();
    json_object_set_new(at(j, "random[0].sd"), "x", json_string("0.5"));
    expect_error(j, MLMX_ERR_PARSE, "random[0].sd.x must be a number (got a string)");
    j = slope_json();
    json_object_set_new(at(j, "design"), "levels", json_object());
    expect_error(j, MLMX_ERR_PARSE, "design.levels must be an array (got an object)");
}

Test(scenario_errors, formula_errors_are_one_line)
{
    json_t *j = slope_json();
    json_object_set_new(j, "formula", json_string("y ~ x + (x | )"));
    expect_error(j, MLMX_ERR_FORMULA, "in 'y ~ x + (x | )'");
}

Test(scenario_errors, formula_design_and_parameters_must_agree)
{
    json_t *j = slope_json();
    json_object_set_new(j, "formula", json_string("y ~ x + w + (x | g)"));
    json_object_set_new(at(j, "fixed"), "w", json_real(0.1));
    expect_error(j, MLMX_ERR_PARSE, "formula: 'w' is neither a covariate nor a level of the design");
    j = slope_json();
    json_object_set_new(at(j, "fixed"), "z", json_real(0.1));
    expect_error(j, MLMX_ERR_PARSE,
                 "fixed: 'z' is not a coefficient of the formula (coefficients: (Intercept), x)");
    j = slope_json();
    json_object_del(at(j, "fixed"), "x");
    expect_error(j, MLMX_ERR_PARSE, "fixed: no value for the coefficient 'x'");
    j = slope_json();
    json_object_del(at(j, "random[0].sd"), "x");
    expect_error(j, MLMX_ERR_PARSE, "random[0].sd: no SD for column 'x' of group 'g'");
    j = slope_json();
    json_object_set_new(at(j, "random[0]"), "group", json_string("h"));
    expect_error(j, MLMX_ERR_PARSE, "random[0].group 'h' is not a grouping factor of the formula");
    j = slope_json();
    json_object_set_new(at(j, "test"), "term", json_string("z"));
    expect_error(j, MLMX_ERR_PARSE, "test.term 'z' is not a coefficient of the formula");
    j = slope_json();
    json_object_set_new(at(j, "curve"), "level", json_string("school"));
    expect_error(j, MLMX_ERR_PARSE, "curve.level 'school' is not a level of the design");
    j = slope_json();
    json_object_del(j, "sigma");
    expect_error(j, MLMX_ERR_PARSE, "sigma is missing");
    j = slope_json();
    json_object_set_new(at(j, "design.covariates[0]"), "level", json_string("class"));
    expect_error(j, MLMX_ERR_PARSE,
                 "design.covariates[0].level 'class' is not a level of the design (levels: g, obs)");
}

Test(scenario_errors, lrt_and_pilot)
{
    json_t *j = slope_json();
    json_object_set_new(j, "test", json_pack("{s:s, s:[s]}", "type", "lrt", "drop", "x"));
    char *text = json_dumps(j, 0);
    json_decref(j);
    mlmx_scenario *sc = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_parse(text, strlen(text), "s.json", &sc, &err), MLMX_OK, "%s",
                 err.msg);
    free(text);
    cr_assert_eq(sc->test, MLMX_SC_LRT);
    cr_assert_eq(sc->ndrop, 1);
    cr_assert_str_eq(sc->drop[0], "x");
    mlmx_scenario_free(sc);

    j = slope_json();
    json_object_set_new(j, "test", json_pack("{s:s, s:[s]}", "type", "lrt", "drop", "q"));
    expect_error(j, MLMX_ERR_PARSE, "test.drop: 'q' is not a fixed-effect term of the formula");

    /* a pilot replaces the design and makes the parameters optional */
    const char *pilot =
        "{\"formula\": \"Reaction ~ Days + (Days | Subject)\","
        " \"pilot\": {\"data\": \"data/sleepstudy.csv\", \"extend\": {\"group\": \"Subject\", "
        "\"units\": 40}},"
        " \"fixed\": {\"Days\": 5},"
        " \"test\": {\"type\": \"wald_t\", \"term\": \"Days\"},"
        " \"curve\": {\"level\": \"Subject\", \"units\": [20, 30, 40]}}";
    cr_assert_eq(mlmx_scenario_parse(pilot, strlen(pilot), "p.json", &sc, &err), MLMX_OK, "%s",
                 err.msg);
    cr_assert_str_eq(sc->pilot_data, "data/sleepstudy.csv");
    cr_assert_str_eq(sc->pilot_group, "Subject");
    cr_assert_eq(sc->pilot_units, 40);
    cr_assert_not(sc->has_design);
    cr_assert_not(sc->has_random);
    cr_assert(isnan(sc->sigma));
    cr_assert_eq(sc->nfixed, 1);
    cr_assert_eq(sc->curve_index, -1);
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_scenario_design(sc, -1, 1, &d, &err), MLMX_ERR_ARG);
    cr_assert_null(d);
    mlmx_scenario_free(sc);
}

/* ---- designs ---------------------------------------------------------------- */

static const mlmx_column *col(const mlmx_data *d, const char *name)
{
    int j = mlmx_frame_find(d, name);
    cr_assert_geq(j, 0, "no column %s", name);
    return &d->cols[j];
}

static mlmx_scenario *parse_json(json_t *j)
{
    char *text = json_dumps(j, 0);
    json_decref(j);
    mlmx_scenario *sc = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_parse(text, strlen(text), "s.json", &sc, &err), MLMX_OK, "%s",
                 err.msg);
    free(text);
    return sc;
}

Test(scenario_design, fixed_sizes_rows_and_unit_ids)
{
    mlmx_scenario *sc = read_ok(EXAMPLES "slope_power.json");
    mlmx_data *d = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_design(sc, -1, 42, &d, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(d->nrow, 1000);
    cr_assert_eq(d->ncol, 3, "columns: g, x, y (obs is not in the formula)");
    cr_assert_str_eq(d->cols[0].name, "g");
    cr_assert_str_eq(d->cols[1].name, "x");
    cr_assert_str_eq(d->cols[2].name, "y");
    const mlmx_column *g = col(d, "g");
    cr_assert_eq(g->type, MLMX_COL_FACTOR);
    cr_assert_eq(g->nlevels, 50);
    /* rows in nesting order: 20 rows of g1, then 20 of g2, ... */
    for (size_t r = 0; r < d->nrow; r++) {
        char want[32];
        snprintf(want, sizeof want, "g%zu", r / 20 + 1);
        cr_assert_str_eq(g->levels[g->codes[r]], want, "row %zu", r);
        cr_assert_eq(col(d, "y")->num[r], 0.0);
    }
    /* x ~ N(0, 1) per observation */
    double s = 0, ss = 0;
    const double *x = col(d, "x")->num;
    for (size_t r = 0; r < d->nrow; r++) {
        s += x[r];
        ss += x[r] * x[r];
    }
    double m = s / 1000, sd = sqrt(ss / 1000 - m * m);
    cr_assert(fabs(m) < 0.15 && fabs(sd - 1) < 0.1, "mean %g sd %g", m, sd);
    mlmx_data_free(d);

    /* a curve point changes the number of clusters; units keep their values */
    mlmx_data *d3 = NULL, *d5 = NULL;
    cr_assert_eq(mlmx_scenario_design(sc, 2, 42, &d3, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_scenario_design(sc, 4, 42, &d5, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(d3->nrow, 600);
    cr_assert_eq(col(d3, "g")->nlevels, 30);
    cr_assert_eq(d5->nrow, 1000);
    for (size_t r = 0; r < 600; r++)
        cr_assert_eq(col(d3, "x")->num[r], col(d5, "x")->num[r]);
    mlmx_data_free(d3);
    mlmx_data_free(d5);
    cr_assert_eq(mlmx_scenario_design(sc, 10, 42, &d, &err), MLMX_ERR_ARG);
    mlmx_scenario_free(sc);
}

Test(scenario_design, three_levels_unique_ids_and_covariate_levels)
{
    json_t *j = slope_json();
    json_object_set_new(j, "formula", json_string("y ~ x + trt + t + (1 | school) + (1 | class)"));
    json_t *lv = json_pack("[{s:s, s:i}, {s:s, s:i}, {s:s, s:i}]", "name", "school", "units", 6,
                           "name", "class", "units", 4, "name", "pupil", "units", 5);
    json_t *cv = json_pack("[{s:s, s:s, s:{s:f, s:f}}, {s:s, s:s, s:{s:f}},"
                           " {s:s, s:s, s:{s:f, s:f}}]",
                           "name", "x", "level", "pupil", "uniform", "min", 20.0, "max", 60.0,
                           "name", "trt", "level", "school", "binary", "p", 0.5, "name", "t",
                           "level", "pupil", "sequence", "start", 0.0, "step", 2.0);
    json_object_set_new(at(j, "design"), "levels", lv);
    json_object_set_new(at(j, "design"), "covariates", cv);
    json_object_set_new(at(j, "fixed"), "trt", json_real(0.5));
    json_object_set_new(at(j, "fixed"), "t", json_real(0.1));
    json_object_set_new(j, "random",
                        json_pack("[{s:s, s:{s:f}}, {s:s, s:{s:f}}]", "group", "school", "sd",
                                  "(Intercept)", 1.0, "group", "class", "sd", "(Intercept)", 0.5));
    json_object_set_new(at(j, "curve"), "level", json_string("class"));
    mlmx_scenario *sc = parse_json(j);
    mlmx_data *d = NULL;
    mlmx_error err = {0};
    cr_assert_eq(mlmx_scenario_design(sc, -1, 7, &d, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(d->nrow, 6 * 4 * 5);
    cr_assert_lt(mlmx_frame_find(d, "pupil"), 0, "the last level is not in the formula");
    const mlmx_column *school = col(d, "school"), *klass = col(d, "class"), *x = col(d, "x"),
                      *trt = col(d, "trt"), *t = col(d, "t");
    cr_assert_eq(school->nlevels, 6);
    cr_assert_eq(klass->nlevels, 24, "class ids are unique across schools");
    for (size_t r = 0; r < d->nrow; r++) {
        char want[32];
        snprintf(want, sizeof want, "class%zu", r / 5 + 1);
        cr_assert_str_eq(klass->levels[klass->codes[r]], want);
        snprintf(want, sizeof want, "school%zu", r / 20 + 1);
        cr_assert_str_eq(school->levels[school->codes[r]], want);
        cr_assert(x->num[r] >= 20 && x->num[r] <= 60);
        cr_assert(trt->num[r] == 0 || trt->num[r] == 1);
        cr_assert_eq(trt->num[r], trt->num[(r / 20) * 20], "trt is constant within a school");
        cr_assert_eq(t->num[r], 2.0 * (double)(r % 5), "t is the pupil's position x 2");
    }
    mlmx_data_free(d);
    /* curve over classes per school */
    cr_assert_eq(mlmx_scenario_design(sc, 0, 7, &d, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(d->nrow, 6 * 10 * 5);
    cr_assert_eq(col(d, "class")->nlevels, 60);
    mlmx_data_free(d);
    mlmx_scenario_free(sc);
}

static void expect_same_data(const mlmx_data *a, const mlmx_data *b)
{
    cr_assert_eq(a->nrow, b->nrow);
    cr_assert_eq(a->ncol, b->ncol);
    for (int j = 0; j < a->ncol; j++) {
        const mlmx_column *p = &a->cols[j], *q = &b->cols[j];
        cr_assert_str_eq(p->name, q->name);
        cr_assert_eq(p->type, q->type);
        for (size_t r = 0; r < a->nrow; r++) {
            if (p->type == MLMX_COL_NUMERIC)
                cr_assert_eq(p->num[r], q->num[r]);
            else
                cr_assert_str_eq(p->levels[p->codes[r]], q->levels[q->codes[r]]);
        }
    }
}

Test(scenario_design, drawn_sizes_are_reproducible_for_a_seed)
{
    for (int kind = 0; kind < 2; kind++) {
        json_t *j = slope_json();
        json_t *l1 = at(j, "design.levels[1]");
        json_object_del(l1, "units");
        json_object_set_new(l1, "size", kind == 0 ? json_pack("{s:f}", "poisson", 8.0)
                                                  : json_pack("{s:[i,i]}", "uniform", 3, 12));
        json_object_del(j, "curve");
        mlmx_scenario *sc = parse_json(j);
        cr_assert_eq(sc->levels[1].size, kind == 0 ? MLMX_SC_SIZE_POISSON : MLMX_SC_SIZE_UNIFORM);
        mlmx_data *a = NULL, *b = NULL, *c = NULL;
        mlmx_error err = {0};
        cr_assert_eq(mlmx_scenario_design(sc, -1, 2024, &a, &err), MLMX_OK, "%s", err.msg);
        cr_assert_eq(mlmx_scenario_design(sc, -1, 2024, &b, &err), MLMX_OK, "%s", err.msg);
        cr_assert_eq(mlmx_scenario_design(sc, -1, 2025, &c, &err), MLMX_OK, "%s", err.msg);
        expect_same_data(a, b);
        /* another seed, other sizes (or at least other covariates) */
        int differs = a->nrow != c->nrow;
        for (size_t r = 0; !differs && r < a->nrow; r++)
            differs = col(a, "x")->num[r] != col(c, "x")->num[r];
        cr_assert(differs);
        /* every cluster is there, sizes within the distribution's support */
        const mlmx_column *g = col(a, "g");
        cr_assert_eq(g->nlevels, 50);
        int *count = calloc(50, sizeof *count);
        for (size_t r = 0; r < a->nrow; r++)
            count[g->codes[r]]++;
        int distinct = 0;
        for (int k = 0; k < 50; k++) {
            cr_assert_geq(count[k], kind == 0 ? 1 : 3);
            if (kind == 1)
                cr_assert_leq(count[k], 12);
            distinct += k > 0 && count[k] != count[0];
        }
        cr_assert_gt(distinct, 0, "the sizes are drawn, not all equal");
        free(count);
        cr_assert(a->nrow > 50 * 3 && a->nrow < 50 * 13, "rows %zu", a->nrow);
        mlmx_data_free(a);
        mlmx_data_free(b);
        mlmx_data_free(c);
        mlmx_scenario_free(sc);
    }
}

Test(scenario_design, drawn_size_on_the_first_level_or_curve_is_an_error)
{
    json_t *j = slope_json();
    json_t *l0 = at(j, "design.levels[0]");
    json_object_del(l0, "units");
    json_object_set_new(l0, "size", json_pack("{s:f}", "poisson", 8.0));
    expect_error(j, MLMX_ERR_PARSE, "the first level's units are a total and cannot be drawn");
    j = slope_json();
    json_t *l1 = at(j, "design.levels[1]");
    json_object_del(l1, "units");
    json_object_set_new(l1, "size", json_pack("{s:f}", "poisson", 8.0));
    json_object_set_new(at(j, "curve"), "level", json_string("obs"));
    expect_error(j, MLMX_ERR_PARSE, "curve.level 'obs' has a drawn size");
}
