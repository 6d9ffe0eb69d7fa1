/* mlmx power: power analysis by simulation from a scenario file (a thin
 * client of mlmx_power_run). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mlmx.h"
#include "power_cmd.h"

static const char *usage_power =
    "usage: mlmx power --scenario FILE.json [--model FIT.h5] [options]\n"
    "\n"
    "Estimate the power of a test in a mixed model by simulation: simulate nsim\n"
    "data sets from the scenario's model, design and true parameters, refit each,\n"
    "test, and report the share of rejections with a Clopper-Pearson interval and\n"
    "the counts of failed and singular fits; with a curve, at every design point\n"
    "(docs/power.md; the scenario format is in docs/scenarios.md).\n"
    "\n"
    "  --scenario FILE    scenario file (JSON): formula, family, design or pilot,\n"
    "                     true parameters, test, alpha, nsim, seed, curve\n"
    "  --model FIT.h5     a model saved by mlmx fit --save as the pilot (replaces\n"
    "                     the scenario's pilot.model): its formula (the scenario's\n"
    "                     may be left out), its data file (pilot.data, else the\n"
    "                     recorded one, checked by SHA-256) and its saved\n"
    "                     estimates as the truth, without a refit; LMMs only\n"
    "  --nsim N           simulations per design point (default: the scenario's)\n"
    "  --threads T        worker threads (default 1); results do not depend on T\n"
    "  --device D         cpu (default), gpu or auto: where the refits of a Wald\n"
    "                     test run; auto takes the GPU when it covers the model and\n"
    "                     nsim >= 1000 (docs/gpu.md); an LRT runs on the CPU\n"
    "  --seed S           random seed (default: the scenario's): simulation r is\n"
    "                     drawn from the Philox key (S, r)\n"
    "  --level L          level of the Clopper-Pearson interval (default 0.95)\n"
    "  --json PATH        write the results as JSON (keys power, ci_lower, ci_upper,\n"
    "                     nsim, n_failed, n_singular, ...; curve: one per point)\n"
    "  --csv PATH         write one row per design point as CSV\n"
    "  --plot PATH        draw the power curve (.svg, .png or .pdf)\n"
    "  --quiet            print neither the table nor progress\n"
    "  -h, --help         show this help\n"
    "\n"
    "Output paths are checked before the first simulation, and every file is\n"
    "written whole or not at all.\n"
    "\n"
    "Exit status: 0 on success, 1 when the scenario, data or fits fail, 2 on usage\n"
    "errors.\n";

typedef struct progress {
    double start, last;
    int on, shown;
} progress;

static void show(void *ctx, int point, int npoints, long done, long nsim)
{
    progress *p = ctx;
    double t = mlmx_cli_now();
    if (!p->on || (t - p->last < 0.2 && done < nsim))
        return;
    p->last = t;
    p->shown = 1;
    if (npoints > 1)
        fprintf(stderr, "\rmlmx power: point %d/%d, %ld/%ld simulations, %.1f s   ", point + 1,
                npoints, done, nsim, t - p->start);
    else
        fprintf(stderr, "\rmlmx power: %ld/%ld simulations, %.1f s   ", done, nsim,
                t - p->start);
    fflush(stderr);
}

static int parse_u64(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ') {
        fprintf(stderr, "mlmx power: %s '%s' is not a whole number >= 0\n", opt, s);
        return 2;
    }
    *out = v;
    return 0;
}

typedef struct power_args {
    const char *scenario, *nsim, *threads, *seed, *level, *json, *csv, *plot, *device, *model;
    int quiet;
} power_args;

/* 0, 1 (help shown: exit 0) or 2 (usage error, printed). */
static int parse_args(int argc, char **argv, power_args *a)
{
    memset(a, 0, sizeof *a);
    static const char *const names[] = {"--scenario", "--nsim", "--threads", "--seed", "--level",
                                        "--json",     "--csv",  "--plot",    "--device",
                                        "--model"};
    const char **slots[] = {&a->scenario, &a->nsim, &a->threads, &a->seed,  &a->level,
                            &a->json,     &a->csv,  &a->plot,    &a->device,
                            &a->model};
    const int nnames = (int)(sizeof names / sizeof names[0]);
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fputs(usage_power, stdout);
            return 1;
        }
        if (strcmp(s, "--quiet") == 0 || strcmp(s, "-q") == 0) {
            a->quiet = 1;
            continue;
        }
        const char **t = NULL;
        for (int k = 0; k < nnames && !t; k++)
            if (strcmp(s, names[k]) == 0)
                t = slots[k];
        if (!t) {
            fprintf(stderr, "mlmx power: unknown option '%s' (see mlmx power --help)\n", s);
            return 2;
        }
        if (mlmx_cli_take_value("power", argc, argv, &i, t))
            return 2;
    }
    if (!a->scenario) {
        fprintf(stderr, "mlmx power: --scenario is required (see mlmx power --help)\n");
        return 2;
    }
    const char *outs[] = {a->json, a->csv, a->plot};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (outs[i] && outs[j] && strcmp(outs[i], outs[j]) == 0) {
                fprintf(stderr, "mlmx power: '%s' is named as two outputs\n", outs[i]);
                return 2;
            }
    return 0;
}

static int make_options(const power_args *a, mlmx_power_options *o)
{
    mlmx_power_options_default(o);
    int v = 0;
    if (a->nsim) {
        if (mlmx_cli_int_option("power", "--nsim", a->nsim, 1, 1000000000L,
                                "simulations per design point, at least 1", &v))
            return 2;
        o->nsim = v;
    }
    if (a->threads) {
        if (mlmx_cli_int_option("power", "--threads", a->threads, 1, 1024, "1 to 1024 threads",
                                &v))
            return 2;
        o->threads = v;
    }
    if (a->device && mlmx_cli_device_option("power", a->device, &o->device))
        return 2;
    if (a->seed) {
        if (parse_u64("--seed", a->seed, &o->seed))
            return 2;
        o->seed_given = 1;
    }
    if (a->level) {
        char *end;
        o->conf_level = strtod(a->level, &end);
        if (end == a->level || *end || !(o->conf_level > 0.0 && o->conf_level < 1.0)) {
            fprintf(stderr, "mlmx power: --level '%s' must be a number between 0 and 1\n",
                    a->level);
            return 2;
        }
    }
    return 0;
}

/* Every output or none: a failure removes the files written before it. */
static int write_outputs(const power_args *a, const mlmx_power_result *r)
{
    const char *written[3];
    int nw = 0, rc = 0;
    if (a->json && !rc)
        rc = mlmx_power_write_json(r, a->json) ? 1 : (written[nw++] = a->json, 0);
    if (a->csv && !rc)
        rc = mlmx_power_write_csv(r, a->csv) ? 1 : (written[nw++] = a->csv, 0);
    if (a->plot && !rc)
        rc = mlmx_power_write_plot(r, a->plot) ? 1 : (written[nw++] = a->plot, 0);
    if (rc) {
        mlmx_cli_fail();
        for (int i = 0; i < nw; i++)
            remove(written[i]);
    }
    return rc;
}

int mlmx_cmd_power(int argc, char **argv)
{
    power_args a;
    mlmx_power_options o;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    if ((rc = make_options(&a, &o)))
        return rc;
    /* before any work: the outputs can be written */
    if ((a.json && mlmx_power_check_output(a.json, 0)) ||
        (a.csv && mlmx_power_check_output(a.csv, 0)) ||
        (a.plot && mlmx_power_check_output(a.plot, 1)))
        return mlmx_cli_fail();
    progress pr = {mlmx_cli_now(), 0.0, !a.quiet && isatty(STDERR_FILENO), 0};
    o.progress = show;
    o.progress_ctx = &pr;
    mlmx_power_result *r = NULL;
    mlmx_status st = mlmx_power_run_model(a.scenario, a.model, &o, &r);
    if (pr.shown)
        fputs("\r\033[K", stderr); /* clear the progress line */
    if (st)
        return mlmx_cli_fail();
    const double secs = mlmx_cli_now() - pr.start;
    if (!a.quiet) {
        char *text = NULL;
        if (mlmx_power_summary(r, &text) != MLMX_OK) {
            mlmx_power_result_free(r);
            return mlmx_cli_fail();
        }
        fputs(text, stdout);
        mlmx_string_free(text);
        printf("Time: %.2f s on %d thread%s\n", secs, o.threads, o.threads == 1 ? "" : "s");
    }
    rc = write_outputs(&a, r);
    mlmx_power_result_free(r);
    return rc;
}
