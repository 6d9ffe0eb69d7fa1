/* mlmx boot and mlmx merge: the parametric bootstrap from the command line
 * (a thin client of mlmx_boot_run). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mlmx.h"
#ifdef MLMX_HAVE_MPI
#include <mpi.h>
#endif

static const char *usage_boot =
    "usage: mlmx boot --data FILE --formula 'FORMULA' [fit options] --nsim N [options]\n"
    "\n"
    "Parametric bootstrap: fit the model, simulate N responses from the estimates,\n"
    "refit each from the estimates, and print percentile, basic and normal\n"
    "intervals for every parameter (fixed effects, SDs and correlations, sigma,\n"
    "thresholds, NB size), with the counts of failed, non-converged and singular\n"
    "refits.\n"
    "\n"
    "  fit options        --family, --link, --nagq, --weights, --reml/--ml, --group,\n"
    "                     --optimizer, --correlation, --variance: as mlmx fit\n"
    "                     (residual structures: correlated draws, CPU refits)\n"
    "  --model FILE.h5    start from a model saved by mlmx fit --save (a linear\n"
    "                     mixed model): its formula and estimates, on its data file\n"
    "                     (or --data, whose SHA-256 must be the recorded one)\n"
    "  --nsim N           replicates of the whole run (required)\n"
    "  --threads T        worker threads (default 1); results do not depend on T\n"
    "  --device D         cpu (default), gpu or auto: where the refits run; auto\n"
    "                     takes the GPU when it covers the model and nsim >= 1000\n"
    "                     (docs/gpu.md); the choice is printed with the summary\n"
    "  --seed S           random seed (default 1): replicate r is drawn from the\n"
    "                     Philox key (S, r), so any split gives the same numbers\n"
    "  --replicates A:B   compute replicates A..B-1 only (a slice)\n"
    "  --shard i/K        compute the i-th of K equal slices (i = 0..K-1), for job\n"
    "                     arrays; join the files with mlmx merge\n"
    "  --out FILE         replicate file: .h5 (HDF5, one dataset per parameter\n"
    "                     group, resumable) or .csv (one row per replicate)\n"
    "  --resume FILE.h5   continue an interrupted run: compute only the missing\n"
    "                     replicates of FILE (same model, data, seed and nsim)\n"
    "  --level L          interval level (default 0.95)\n"
    "  --plot PATH        histograms of the bootstrap distributions with the\n"
    "                     intervals marked (.svg, .png or .pdf)\n"
    "  --quiet            print neither the summary nor progress\n"
    "\n"
    "Ctrl-C or SIGTERM stops after the current block: the HDF5 file keeps every\n"
    "finished replicate and is marked incomplete.\n";

static const char *usage_merge =
    "usage: mlmx merge --out FILE.h5 SHARD.h5 [SHARD.h5 ...]\n"
    "\n"
    "Join the shard files of one bootstrap run (mlmx boot --shard i/K) into one\n"
    "file, identical in its datasets to a single run.\n";

static volatile int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int parse_u64(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-') {
        fprintf(stderr, "mlmx boot: %s: '%s' is not a whole number\n", opt, s);
        return 2;
    }
    *out = v;
    return 0;
}

/* A:B or i/K into [begin, end) of nsim. */
static int parse_range(const char *rep, const char *shard, uint64_t nsim, uint64_t *b,
                       uint64_t *e)
{
    if (rep && shard) {
        fprintf(stderr, "mlmx boot: --replicates and --shard conflict: give one\n");
        return 2;
    }
    const char *s = rep ? rep : shard;
    if (!s)
        return 0;
    const char *sep = strchr(s, rep ? ':' : '/');
    if (!sep) {
        fprintf(stderr, "mlmx boot: %s '%s' must look like %s\n", rep ? "--replicates" : "--shard",
                s, rep ? "A:B" : "i/K");
        return 2;
    }
    char a[32], c[32];
    size_t la = (size_t)(sep - s);
    if (la == 0 || la >= sizeof a || strlen(sep + 1) >= sizeof c) {
        fprintf(stderr, "mlmx boot: malformed range '%s'\n", s);
        return 2;
    }
    memcpy(a, s, la);
    a[la] = '\0';
    strcpy(c, sep + 1);
    uint64_t x, y;
    if (parse_u64(rep ? "--replicates" : "--shard", a, &x) ||
        parse_u64(rep ? "--replicates" : "--shard", c, &y))
        return 2;
    if (rep) {
        if (x >= y || y > nsim) {
            fprintf(stderr, "mlmx boot: --replicates %s is empty or beyond --nsim %llu\n", s,
                    (unsigned long long)nsim);
            return 2;
        }
        *b = x;
        *e = y;
    } else {
        if (y == 0 || x >= y || y > nsim) {
            fprintf(stderr,
                    "mlmx boot: --shard %s is out of range: the index must be 0..K-1 and K at "
                    "most --nsim\n",
                    s);
            return 2;
        }
        *b = nsim * x / y;
        *e = nsim * (x + 1) / y;
    }
    return 0;
}

/* Under mpirun (an MPI launcher's environment), rank r of K computes the
 * r-th slice of the replicate range into a shard file beside the output;
 * rank 0 merges the shards into the output (mlmx_boot_merge: the datasets
 * are those of a single run) and prints the summary from it. */
static int mpi_size(void)
{
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    if (!s)
        s = getenv("PMI_SIZE");
    return s ? atoi(s) : 1;
}

#ifdef MLMX_HAVE_MPI
static int boot_mpi(const mlmx_fit *f, mlmx_boot_options *bo, int quiet)
{
    int rank = 0, size = 1;
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (bo->device != MLMX_DEVICE_CPU) {
        /* one GPU per rank: the rank's number on its node picks the device
         * (without a device the runner reports why, as without MPI) */
        MPI_Comm node;
        int local = 0;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL,
                                &node) == MPI_SUCCESS) {
            MPI_Comm_rank(node, &local);
            MPI_Comm_free(&node);
        }
        (void)mlmx_device_select(local);
    }
    const char *out = bo->out_path;
    uint64_t b0 = bo->rep_begin, e0 = bo->rep_end ? bo->rep_end : bo->nsim, len = e0 - b0;
    char *shard = malloc(strlen(out) + 32);
    int rc = 0;
    if (!shard) {
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    sprintf(shard, "%s.rank%d.h5", out, rank);
    mlmx_boot_options o = *bo;
    o.rep_begin = b0 + len * (uint64_t)rank / (uint64_t)size;
    o.rep_end = b0 + len * (uint64_t)(rank + 1) / (uint64_t)size;
    o.out_path = shard;
    o.resume = 0;
    if (rank != 0)
        o.progress = NULL;
    mlmx_boot *b = NULL;
    int ok = o.rep_begin < o.rep_end ? mlmx_boot_run(f, &o, &b) == MLMX_OK : 1;
    if (!ok)
        fprintf(stderr, "mlmx: error (rank %d): %s\n", rank, mlmx_last_error());
    ok = ok && (!b || mlmx_boot_complete(b));
    mlmx_boot_free(b);
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rank == 0) {
        char **names = calloc((size_t)size, sizeof *names);
        int n = 0;
        for (int r = 0; names && r < size; r++) {
            names[n] = malloc(strlen(out) + 32);
            if (names[n]) {
                sprintf(names[n], "%s.rank%d.h5", out, r);
                uint64_t rb = b0 + len * (uint64_t)r / (uint64_t)size,
                         re = b0 + len * (uint64_t)(r + 1) / (uint64_t)size;
                if (rb < re)
                    n++;
                else
                    free(names[n]);
            }
        }
        rc = 1;
        if (all && names && mlmx_boot_merge((const char *const *)names, n, out) == MLMX_OK) {
            /* the summary from the merged file: nothing left to compute */
            mlmx_boot_options lo = *bo;
            lo.resume = 1;
            lo.progress = NULL;
            if (mlmx_boot_run(f, &lo, &b) == MLMX_OK) {
                char *txt = NULL;
                if (!quiet && mlmx_boot_summary_text(b, &txt) == MLMX_OK)
                    fputs(txt, stdout);
                mlmx_string_free(txt);
                rc = 0;
            }
            mlmx_boot_free(b);
        }
        if (rc)
            fprintf(stderr, "mlmx: error: %s\n",
                    all ? mlmx_last_error() : "a rank failed; the shards are kept");
        for (int r = 0; names && r < n; r++) {
            if (all)
                remove(names[r]);
            free(names[r]);
        }
        free(names);
    }
    free(shard);
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
#endif

/* --level: a number strictly between 0 and 1; 0, or 2 (printed). */
static int parse_level(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    if (*end || !(*out > 0.0 && *out < 1.0)) {
        fprintf(stderr, "mlmx boot: --level '%s' must be a number between 0 and 1\n", s);
        return 2;
    }
    return 0;
}

int mlmx_cmd_boot(int argc, char **argv)
{
    mlmx_cli_model mo;
    mlmx_cli_model_init(&mo);
    const char *nsim_s = NULL, *threads_s = NULL, *seed_s = NULL, *rep = NULL, *shard = NULL;
    const char *out = NULL, *resume = NULL, *level_s = NULL, *plot = NULL, *device = NULL;
    int quiet = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        int r = mlmx_cli_model_option(&mo, "boot", argc, argv, &i);
        if (r == 1)
            continue;
        if (r == 2)
            return 2;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_boot, stdout);
            return 0;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
            continue;
        } else if (strcmp(a, "--nsim") == 0) {
            target = &nsim_s;
        } else if (strcmp(a, "--threads") == 0) {
            target = &threads_s;
        } else if (strcmp(a, "--seed") == 0) {
            target = &seed_s;
        } else if (strcmp(a, "--replicates") == 0) {
            target = &rep;
        } else if (strcmp(a, "--shard") == 0) {
            target = &shard;
        } else if (strcmp(a, "--out") == 0) {
            target = &out;
        } else if (strcmp(a, "--resume") == 0) {
            target = &resume;
        } else if (strcmp(a, "--level") == 0) {
            target = &level_s;
        } else if (strcmp(a, "--plot") == 0) {
            target = &plot;
        } else if (strcmp(a, "--device") == 0) {
            target = &device;
        } else {
            fprintf(stderr, "mlmx boot: unknown option '%s' (see mlmx boot --help)\n", a);
            return 2;
        }
        if (mlmx_cli_take_value("boot", argc, argv, &i, target))
            return 2;
    }
    mlmx_boot_options bo;
    mlmx_boot_options_default(&bo);
    if (!nsim_s) {
        fprintf(stderr, "mlmx boot: --nsim is required (see mlmx boot --help)\n");
        return 2;
    }
    uint64_t t64 = 1;
    if (parse_u64("--nsim", nsim_s, &bo.nsim) || (seed_s && parse_u64("--seed", seed_s, &bo.seed)) ||
        (threads_s && parse_u64("--threads", threads_s, &t64)))
        return 2;
    if (bo.nsim == 0) {
        fprintf(stderr, "mlmx boot: --nsim must be at least 1\n");
        return 2;
    }
    if (t64 < 1 || t64 > 1024) {
        fprintf(stderr, "mlmx boot: --threads must be 1..1024\n");
        return 2;
    }
    bo.threads = (int)t64;
    if (device && mlmx_cli_device_option("boot", device, &bo.device))
        return 2;
    if (level_s && parse_level(level_s, &bo.level))
        return 2;
    if (parse_range(rep, shard, bo.nsim, &bo.rep_begin, &bo.rep_end))
        return 2;
    if (resume && out && strcmp(resume, out) != 0) {
        fprintf(stderr, "mlmx boot: --resume writes into its own file; drop --out or make it "
                        "the same file\n");
        return 2;
    }
    bo.out_path = resume ? resume : out;
    bo.resume = resume != NULL;
    bo.data_file = mo.data;
    mlmx_fit_options fo;
    int rc = mlmx_cli_model_options(&mo, "boot", &fo);
    if (rc)
        return rc;
    mlmx_fit *f = NULL;
    fo.conditional_variances = 0;
    rc = mlmx_cli_model_build(&mo, quiet);
    bo.data_file = mo.data; /* --model: the model file's data file */
    if (!rc)
        rc = mlmx_cli_model_fit(&mo, &fo, &f);
    if (rc) {
        mlmx_cli_model_free(&mo, f);
        return rc;
    }
    mlmx_cli_progress pr;
    mlmx_cli_progress_init(&pr, "boot", "replicates", !quiet && isatty(2));
    bo.progress = mlmx_cli_progress_show;
    bo.progress_ctx = &pr;
    if (mpi_size() > 1) {
#ifdef MLMX_HAVE_MPI
        if (!bo.out_path || bo.resume || strstr(bo.out_path, ".h5") == NULL) {
            fprintf(stderr, "mlmx boot: under mpirun, --out FILE.h5 is required (and --resume "
                            "is not available)\n");
            mlmx_cli_model_free(&mo, f);
            return 2;
        }
        int mrc = boot_mpi(f, &bo, quiet);
        mlmx_cli_model_free(&mo, f);
        return mrc;
#else
        fprintf(stderr, "mlmx boot: this mlmx was built without MPI (cmake -DMLMX_MPI=ON)\n");
        mlmx_cli_model_free(&mo, f);
        return 2;
#endif
    }
    bo.stop = &stop_flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    mlmx_boot *b = NULL;
    mlmx_status st = mlmx_boot_run(f, &bo, &b);
    if (pr.shown)
        fputc('\n', stderr);
    if (st) {
        fprintf(stderr, "mlmx: error: %s\n", mlmx_last_error());
        mlmx_cli_model_free(&mo, f);
        return 1;
    }
    if (!quiet) {
        char *txt = NULL;
        if (mlmx_boot_summary_text(b, &txt) == MLMX_OK)
            fputs(txt, stdout);
        mlmx_string_free(txt);
    }
    int complete = mlmx_boot_complete(b);
    if (plot && mlmx_boot_write_plot(b, plot) != MLMX_OK) {
        fprintf(stderr, "mlmx: error: %s\n", mlmx_last_error());
        mlmx_boot_free(b);
        mlmx_cli_model_free(&mo, f);
        return 1;
    }
    if (!complete)
        fprintf(stderr, "mlmx boot: interrupted after %llu replicates; %s\n",
                (unsigned long long)mlmx_boot_n_done(b),
                bo.out_path ? "the file holds them (continue with --resume)" : "nothing saved");
    mlmx_boot_free(b);
    mlmx_cli_model_free(&mo, f);
    return complete ? 0 : 130;
}

int mlmx_cmd_merge(int argc, char **argv)
{
    const char *out = NULL;
    const char **in = calloc((size_t)(argc > 0 ? argc : 1), sizeof *in);
    int nin = 0;
    if (!in)
        return 1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_merge, stdout);
            free(in);
            return 0;
        }
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc && !out)
            out = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "mlmx merge: unknown option '%s' (see mlmx merge --help)\n", argv[i]);
            free(in);
            return 2;
        } else
            in[nin++] = argv[i];
    }
    if (!out || nin == 0) {
        fprintf(stderr, "mlmx merge: --out FILE and at least one shard are required\n");
        free(in);
        return 2;
    }
    mlmx_status st = mlmx_boot_merge(in, nin, out);
    free(in);
    if (st) {
        fprintf(stderr, "mlmx: error: %s\n", mlmx_last_error());
        return 1;
    }
    return 0;
}
