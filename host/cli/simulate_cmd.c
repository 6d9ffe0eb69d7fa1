/* mlmx simulate: responses simulated from a fitted model (a thin client of
 * mlmx_simulate_run). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mlmx.h"

static const char *usage_simulate =
    "usage: mlmx simulate --data FILE --formula 'FORMULA' [fit options] --nsim N --out FILE\n"
    "\n"
    "Fit the model, then draw N responses from its estimates (lme4's simulate()):\n"
    "random effects and observations from the Philox key (seed, r), so response r\n"
    "is the one bootstrap replicate r is refitted to.\n"
    "\n"
    "  fit options        --family, --link, --nagq, --weights, --reml/--ml, --group,\n"
    "                     --optimizer, --correlation, --variance: as mlmx fit\n"
    "                     (residual structures: correlated draws, CPU refits)\n"
    "  --model FILE.h5    start from a model saved by mlmx fit --save (a linear\n"
    "                     mixed model): its formula and estimates, on its data file\n"
    "                     (or --data, whose SHA-256 must be the recorded one)\n"
    "  --nsim N           responses to draw (required)\n"
    "  --out FILE         .csv: one row per observation, columns obs, sim_1..sim_N\n"
    "                     (at most 10^8 values, written whole at the end); .h5: a\n"
    "                     replicate file, group \"y\", one row per response, written\n"
    "                     block by block (required)\n"
    "  --resume FILE.h5   continue an interrupted run into FILE\n"
    "  --seed S           random seed (default 1)\n"
    "  --threads T        CPU threads (default 1); the draws do not depend on T\n"
    "  --device D         cpu (default), gpu or auto: where the draws run; gpu uses\n"
    "                     a batch engine's simulation kernel (docs/gpu.md)\n"
    "  --quiet            print neither the summary nor progress\n"
    "\n"
    "Responses are on the model's scale: y; binomial successes of the model's\n"
    "trials; counts; ordinal category codes 0..K-1. Ctrl-C stops after the current\n"
    "block: an HDF5 file keeps what is done, a CSV file is not written.\n";

static volatile int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

typedef struct sim_args {
    const char *nsim, *out, *resume, *seed, *threads, *device;
    int quiet;
} sim_args;

static int parse_u64(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ') {
        fprintf(stderr, "mlmx simulate: %s: '%s' is not a whole number\n", opt, s);
        return 2;
    }
    *out = v;
    return 0;
}

/* argv into mo and a: 0, 1 (help shown) or 2 (usage error, printed). */
static int parse_args(int argc, char **argv, mlmx_cli_model *mo, sim_args *a)
{
    static const char *const names[] = {"--nsim", "--out",     "--resume",
                                        "--seed", "--threads", "--device"};
    const char **slots[] = {&a->nsim, &a->out, &a->resume, &a->seed, &a->threads, &a->device};
    for (int i = 0; i < argc; i++) {
        int r = mlmx_cli_model_option(mo, "simulate", argc, argv, &i);
        if (r == 1)
            continue;
        if (r == 2)
            return 2;
        const char *s = argv[i];
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fputs(usage_simulate, stdout);
            return 1;
        }
        if (strcmp(s, "--quiet") == 0 || strcmp(s, "-q") == 0) {
            a->quiet = 1;
            continue;
        }
        const char **t = NULL;
        for (int k = 0; k < 6 && !t; k++)
            if (strcmp(s, names[k]) == 0)
                t = slots[k];
        if (!t) {
            fprintf(stderr, "mlmx simulate: unknown option '%s' (see mlmx simulate --help)\n", s);
            return 2;
        }
        if (mlmx_cli_take_value("simulate", argc, argv, &i, t))
            return 2;
    }
    return 0;
}

/* a into o: 0 or 2 (printed). */
static int make_options(const sim_args *a, const char *data, mlmx_simulate_options *o)
{
    mlmx_simulate_options_default(o);
    if (!a->nsim || (!a->out && !a->resume)) {
        fprintf(stderr, "mlmx simulate: --nsim and --out are required (see mlmx simulate "
                        "--help)\n");
        return 2;
    }
    if (parse_u64("--nsim", a->nsim, &o->nsim) || (a->seed && parse_u64("--seed", a->seed, &o->seed)))
        return 2;
    if (o->nsim == 0) {
        fprintf(stderr, "mlmx simulate: --nsim must be at least 1\n");
        return 2;
    }
    int t = 1;
    if (a->threads && mlmx_cli_int_option("simulate", "--threads", a->threads, 1, 1024,
                                          "1 to 1024 threads", &t))
        return 2;
    o->threads = t;
    if (a->device && mlmx_cli_device_option("simulate", a->device, &o->device))
        return 2;
    if (a->resume && a->out && strcmp(a->resume, a->out) != 0) {
        fprintf(stderr, "mlmx simulate: --resume writes into its own file; drop --out or make "
                        "it the same file\n");
        return 2;
    }
    o->out_path = a->resume ? a->resume : a->out;
    o->resume = a->resume != NULL;
    o->data_file = data;
    return 0;
}

static int is_h5(const char *p)
{
    size_t n = strlen(p);
    return (n > 3 && strcmp(p + n - 3, ".h5") == 0) || (n > 5 && strcmp(p + n - 5, ".hdf5") == 0);
}

int mlmx_cmd_simulate(int argc, char **argv)
{
    mlmx_cli_model mo;
    mlmx_cli_model_init(&mo);
    sim_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &mo, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    mlmx_simulate_options so;
    mlmx_fit_options fo;
    if ((rc = make_options(&a, mo.data, &so)) || (rc = mlmx_cli_model_options(&mo, "simulate", &fo)))
        return rc;
    fo.conditional_variances = 0;
    mlmx_fit *f = NULL;
    int brc = mlmx_cli_model_build(&mo, a.quiet);
    so.data_file = mo.data; /* --model: the model file's data file */
    if (brc || mlmx_cli_model_fit(&mo, &fo, &f)) {
        mlmx_cli_model_free(&mo, f);
        return 1;
    }
    mlmx_cli_progress pr;
    mlmx_cli_progress_init(&pr, "simulate", "responses", !a.quiet && isatty(STDERR_FILENO));
    so.progress = mlmx_cli_progress_show;
    so.progress_ctx = &pr;
    so.stop = &stop_flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    mlmx_simulate *s = NULL;
    mlmx_status st = mlmx_simulate_run(f, &so, &s);
    mlmx_cli_progress_end(&pr);
    if (st) {
        mlmx_cli_model_free(&mo, f);
        return mlmx_cli_fail();
    }
    const int complete = mlmx_simulate_complete(s);
    if (!a.quiet) {
        printf("Simulated %llu responses of %s to %s\ndevice: %s\n",
               (unsigned long long)mlmx_simulate_n_done(s), mo.formula,
               so.out_path, mlmx_simulate_device(s));
        if (mlmx_simulate_device_note(s)[0])
            printf("note: %s\n", mlmx_simulate_device_note(s));
        printf("Time: %.2f s\n", mlmx_cli_now() - pr.start);
    }
    if (!complete)
        fprintf(stderr, "mlmx simulate: interrupted after %llu responses; %s\n",
                (unsigned long long)mlmx_simulate_n_done(s),
                is_h5(so.out_path) ? "the file holds them (continue with --resume)"
                                   : "nothing saved (a CSV file is written whole)");
    mlmx_simulate_free(s);
    mlmx_cli_model_free(&mo, f);
    return complete ? 0 : 130;
}
