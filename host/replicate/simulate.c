#define _POSIX_C_SOURCE 200809L
/* Simulated responses from a fit (lme4's simulate()): response r is drawn
 * from the fit's estimates with the Philox key (seed, r), exactly as a
 * bootstrap replicate is, by workspaces on CPU threads or by a batch
 * engine's simulation kernel on the GPU. Written in blocks to a replicate
 * file (HDF5: group "y", one row per simulation, resumable) or, whole, to
 * a CSV file (one row per observation, columns sim_1..sim_N). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_internal.h"
#include "output/repstore.h"
#include "replicate/batch.h"
#include "replicate/replicate.h"
#include "util/sha256.h"
#include "util/strbuf.h"

#define SIM_BLOCK_DOUBLES ((size_t)1 << 22) /* a block's responses: 32 MiB */
#define SIM_CSV_MAX_DOUBLES ((size_t)100000000) /* a CSV is built in memory */
#define SIM_AUTO_MIN 1000

struct mlmx_simulate {
    mlmx_problem *P;
    mlmx_batch_engine *E; /* the GPU's engine, or NULL: workspaces */
    size_t n;
    uint64_t nsim, n_done;
    int complete, threads;
    char device[256], note[768];
};

void mlmx_simulate_options_default(mlmx_simulate_options *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->threads = 1;
}

void mlmx_simulate_free(mlmx_simulate *s)
{
    if (!s)
        return;
    mlmx_batch_engine_free(s->E);
    mlmx_problem_free(s->P);
    free(s);
}

uint64_t mlmx_simulate_n_done(const mlmx_simulate *s) { return s ? s->n_done : 0; }
int mlmx_simulate_complete(const mlmx_simulate *s) { return s ? s->complete : 0; }
const char *mlmx_simulate_device(const mlmx_simulate *s) { return s ? s->device : ""; }
const char *mlmx_simulate_device_note(const mlmx_simulate *s) { return s ? s->note : ""; }

static int is_h5(const char *p)
{
    size_t n = strlen(p);
    return (n > 3 && strcmp(p + n - 3, ".h5") == 0) || (n > 5 && strcmp(p + n - 5, ".hdf5") == 0);
}

/* ---------------------------------------------------------------- device */

/* Where the draws run; fills s->E, s->device, s->note. */
static mlmx_status choose(mlmx_simulate *s, mlmx_device dev, mlmx_error *err)
{
    snprintf(s->device, sizeof s->device, "cpu: workspaces, %d thread%s", s->threads,
             s->threads == 1 ? "" : "s");
    if (dev == MLMX_DEVICE_CPU)
        return MLMX_OK;
    char why[512] = "";
    mlmx_error e2;
    mlmx_err_clear(&e2);
    mlmx_batch_engine *E = NULL;
    if (mlmx_batch_engine_create(s->P, &E, &e2) != MLMX_OK)
        snprintf(why, sizeof why, "no device engine covers the model: %.400s", e2.msg);
    else if (!E->gpu_sim)
        snprintf(why, sizeof why, "the %s engine has no device simulation", E->name);
    else if (mlmx_device_describe(why, sizeof why) == MLMX_OK)
        why[0] = '\0';
    if (!why[0] && dev == MLMX_DEVICE_AUTO && s->nsim < SIM_AUTO_MIN)
        snprintf(why, sizeof why, "%llu simulations (the GPU is chosen from %d)",
                 (unsigned long long)s->nsim, SIM_AUTO_MIN);
    if (why[0]) {
        mlmx_batch_engine_free(E);
        if (dev == MLMX_DEVICE_GPU)
            return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "--device gpu: %s", why);
        snprintf(s->note, sizeof s->note, "device auto: running on the CPU: %s", why);
        return MLMX_OK;
    }
    s->E = E;
    char d[200];
    mlmx_device_describe(d, sizeof d);
    snprintf(s->device, sizeof s->device, "gpu: %s, engine %s", d, E->name);
    return MLMX_OK;
}

/* ---------------------------------------------------------------- draws */

typedef struct sim_part {
    const mlmx_problem *P;
    uint64_t seed, r0;
    size_t count, n;
    double *y;
    mlmx_status st;
    char msg[256]; /* the worker's error (the library's message is per thread) */
} sim_part;

static void *sim_part_run(void *arg)
{
    sim_part *a = arg;
    mlmx_workspace *W = NULL;
    a->st = mlmx_workspace_create(a->P, &W);
    for (size_t i = 0; i < a->count && !a->st; i++)
        a->st = mlmx_workspace_simulate(W, a->seed, a->r0 + i, a->y + i * a->n);
    if (a->st)
        snprintf(a->msg, sizeof a->msg, "%s", mlmx_last_error());
    mlmx_workspace_free(W);
    return NULL;
}

/* Responses r0 .. r0+count-1 into y (count*n), on the chosen device. */
static mlmx_status draw_block(mlmx_simulate *s, uint64_t seed, uint64_t r0, size_t count,
                              double *y, uint64_t *reps, mlmx_error *err)
{
    if (s->E) {
        for (size_t i = 0; i < count; i++)
            reps[i] = r0 + i;
        return s->E->gpu_sim(s->E->impl, seed, reps, count, y, err);
    }
    int nt = s->threads < (int)count ? s->threads : (int)count;
    sim_part part[64];
    pthread_t tid[64];
    if (nt > 64)
        nt = 64;
    int started = 0;
    for (int t = 0; t < nt; t++) {
        size_t a = count * (size_t)t / (size_t)nt, b = count * (size_t)(t + 1) / (size_t)nt;
        part[t] = (sim_part){s->P, seed, r0 + a, b - a, s->n, y + a * s->n, MLMX_OK, ""};
    }
    for (int t = 1; t < nt; t++, started++)
        if (pthread_create(&tid[t], NULL, sim_part_run, &part[t]) != 0)
            break;
    sim_part_run(&part[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(tid[t], NULL);
    for (int t = started + 1; t < nt; t++)
        sim_part_run(&part[t]); /* a thread that could not start: its share here */
    for (int t = 0; t < nt; t++)
        if (part[t].st)
            return mlmx_err_set(err, part[t].st, "simulation failed: %s", part[t].msg);
    return MLMX_OK;
}

/* ---------------------------------------------------------------- output */

typedef struct sim_out {
    mlmx_repstore *h5;
    char **colnames;   /* HDF5: "1".."n" */
    double *all;       /* CSV: every response, nsim*n, written at the end */
} sim_out;

static void out_free(sim_out *k, size_t n)
{
    for (size_t i = 0; k->colnames && i < n; i++)
        free(k->colnames[i]);
    free(k->colnames);
    free(k->all);
}

static mlmx_status open_h5(mlmx_simulate *s, const mlmx_fit *f, const mlmx_simulate_options *o,
                           sim_out *k, mlmx_error *err)
{
    if (s->n > (size_t)0x7fffffff)
        return mlmx_err_set(err, MLMX_ERR_ARG, "too many observations for a replicate file");
    if (!(k->colnames = calloc(s->n ? s->n : 1, sizeof *k->colnames)))
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++)
        if (!(k->colnames[i] = mlmx_asprintf("%zu", i + 1)))
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    const mlmx_model *md = f->model;
    char *sha = o->data_file ? mlmx_file_sha256(o->data_file) : NULL;
    /* "simulate|": a bootstrap file of the same model is another run */
    char *key = mlmx_asprintf("simulate|%s|%s|%s|nagq=%d|%s", md->formula,
                              mlmx_family_name(f->family), f->method == MLMX_ML ? "ML" : "REML",
                              f->nagq, sha ? sha : "");
    mlmx_repstore_meta meta = {md->formula, mlmx_family_name(f->family),
                               f->family != MLMX_FAMILY_GAUSSIAN ? (f->nagq <= 1 ? "Laplace"
                                                                                 : "AGQ")
                               : f->method == MLMX_ML            ? "ML"
                                                                 : "REML",
                               o->data_file, sha, NULL, o->seed, s->nsim, 0, s->nsim, key};
    mlmx_repstore_group g = {"y", (int)s->n, (const char *const *)k->colnames};
    mlmx_status st = key ? (o->resume ? mlmx_repstore_open(o->out_path, &meta, 1, &g, &k->h5, err)
                                      : mlmx_repstore_create(o->out_path, &meta, 1, &g, &k->h5,
                                                             err))
                         : mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    free(sha);
    free(key);
    return st;
}

/* The CSV: a header, then one row per observation (its model row number
 * and sim_1..sim_N), written to a temporary name and renamed. */
static mlmx_status write_csv(const mlmx_simulate *s, const double *all, const char *path,
                             mlmx_error *err)
{
    char *tmp = mlmx_asprintf("%s.tmp-%ld", path, (long)getpid());
    FILE *fp = tmp ? fopen(tmp, "w") : NULL;
    if (!fp) {
        free(tmp);
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot write '%s'", path);
    }
    fputs("obs", fp);
    for (uint64_t r = 0; r < s->nsim; r++)
        fprintf(fp, ",sim_%llu", (unsigned long long)r + 1);
    fputc('\n', fp);
    for (size_t i = 0; i < s->n; i++) {
        fprintf(fp, "%zu", i + 1);
        for (uint64_t r = 0; r < s->nsim; r++)
            fprintf(fp, ",%.17g", all[(size_t)r * s->n + i]);
        fputc('\n', fp);
    }
    int bad = ferror(fp) != 0;
    bad |= fclose(fp) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        free(tmp);
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot write '%s'", path);
    }
    free(tmp);
    return MLMX_OK;
}

/* ---------------------------------------------------------------- driver */

static mlmx_status check_options(const mlmx_simulate_options *o, mlmx_error *err)
{
    if (o->nsim == 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "--nsim must be at least 1");
    if (o->threads < 1 || o->threads > 1024)
        return mlmx_err_set(err, MLMX_ERR_ARG, "threads must be 1 to 1024 (got %d)", o->threads);
    if (!o->out_path || !o->out_path[0])
        return mlmx_err_set(err, MLMX_ERR_ARG, "an output file (--out FILE.csv or .h5) is needed");
    if (o->device != MLMX_DEVICE_CPU && o->device != MLMX_DEVICE_GPU &&
        o->device != MLMX_DEVICE_AUTO)
        return mlmx_err_set(err, MLMX_ERR_ARG, "unknown device %d", (int)o->device);
    if (o->resume && !is_h5(o->out_path))
        return mlmx_err_set(err, MLMX_ERR_ARG, "--resume needs an HDF5 file (.h5)");
    return MLMX_OK;
}

/* Every block in order: skipped when a resumed file has it, else drawn,
 * written and flushed; the stop flag is polled between blocks. */
static mlmx_status run_blocks(mlmx_simulate *s, const mlmx_simulate_options *o, sim_out *k,
                              mlmx_error *err)
{
    const size_t n = s->n ? s->n : 1;
    size_t B = SIM_BLOCK_DOUBLES / n;
    B = B < 1 ? 1 : B > s->nsim ? (size_t)s->nsim : B;
    signed char *done = k->h5 ? calloc((size_t)s->nsim, 1) : NULL;
    signed char *ones = malloc(B);
    uint64_t *reps = malloc(B * sizeof *reps);
    double *buf = k->all ? NULL : malloc(B * n * sizeof *buf);
    mlmx_status st = (k->h5 && !done) || !ones || !reps || (!k->all && !buf)
                         ? mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory")
                         : MLMX_OK;
    if (!st && k->h5 && o->resume)
        st = mlmx_repstore_status(k->h5, done, err);
    if (ones)
        memset(ones, 1, B);
    for (uint64_t r0 = 0; !st && r0 < s->nsim && !(o->stop && *o->stop); r0 += B) {
        const size_t cnt = s->nsim - r0 < B ? (size_t)(s->nsim - r0) : B;
        size_t have = 0;
        while (done && have < cnt && done[r0 + have])
            have++;
        if (have < cnt) {
            double *y = k->all ? k->all + (size_t)r0 * s->n : buf;
            st = draw_block(s, o->seed, r0, cnt, y, reps, err);
            if (!st && k->h5) {
                const double *cols[1] = {y};
                st = mlmx_repstore_write_block(k->h5, r0, cnt, cols, NULL, NULL, NULL, NULL, ones,
                                               err);
                if (!st)
                    st = mlmx_repstore_flush(k->h5, err);
            }
        }
        if (!st) {
            s->n_done += cnt;
            if (o->progress)
                o->progress(o->progress_ctx, s->n_done, s->nsim);
        }
    }
    free(done);
    free(ones);
    free(reps);
    free(buf);
    return st;
}

static mlmx_status sim_run(const mlmx_fit *f, const mlmx_simulate_options *o, mlmx_simulate *s,
                           mlmx_error *err)
{
    mlmx_status st = check_options(o, err);
    if (st)
        return st;
    s->nsim = o->nsim;
    s->threads = o->threads;
    if (mlmx_problem_create(f, &s->P) != MLMX_OK)
        return mlmx_err_set(err, MLMX_ERR_MODEL, "%s", mlmx_last_error());
    s->n = f->model->n;
    const int h5 = is_h5(o->out_path);
    if (!h5 && (double)s->n * (double)s->nsim > (double)SIM_CSV_MAX_DOUBLES)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%llu simulations of %zu observations are too many for a CSV file "
                            "(at most %zu values): use --out FILE.h5",
                            (unsigned long long)s->nsim, s->n, SIM_CSV_MAX_DOUBLES);
    if ((st = choose(s, o->device, err))) /* before the file: a refused gpu leaves none */
        return st;
    sim_out k;
    memset(&k, 0, sizeof k);
    if (h5)
        st = open_h5(s, f, o, &k, err);
    else if (!(k.all = malloc((size_t)s->nsim * (s->n ? s->n : 1) * sizeof *k.all)))
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory for %llu x %zu responses",
                          (unsigned long long)s->nsim, s->n);
    if (!st)
        st = run_blocks(s, o, &k, err);
    s->complete = !st && s->n_done == s->nsim;
    if (k.h5) {
        mlmx_error e2;
        mlmx_err_clear(&e2);
        mlmx_status s2 = st ? MLMX_OK : mlmx_repstore_set_complete(k.h5, s->complete, err);
        mlmx_status s3 = mlmx_repstore_close(k.h5, st || s2 ? &e2 : err);
        st = st ? st : s2 ? s2 : s3;
    } else if (!st && s->complete) {
        st = write_csv(s, k.all, o->out_path, err); /* all or nothing */
    }
    out_free(&k, s->n);
    return st;
}

mlmx_status mlmx_simulate_run(const mlmx_fit *f, const mlmx_simulate_options *o,
                              mlmx_simulate **out)
{
    mlmx_api_clear();
    if (!f || !o || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_simulate_run: NULL argument");
    *out = NULL;
    if (f->family != MLMX_FAMILY_GAUSSIAN &&
        mlmx_api_require_unstructured(f->model, "simulation of a GLMM (mlmx simulate)"))
        return MLMX_ERR_UNSUPPORTED;
    mlmx_simulate *s = calloc(1, sizeof *s);
    if (!s)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = sim_run(f, o, s, &e);
    if (st) {
        mlmx_simulate_free(s);
        return mlmx_api_fail(&e);
    }
    *out = s;
    return MLMX_OK;
}
