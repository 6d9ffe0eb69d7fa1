#define _POSIX_C_SOURCE 200809L
/* The parametric bootstrap: replicates simulated from a fit and refitted
 * on a prepared problem by the replicate runner (runner.h: a batch engine
 * on the GPU or CPU threads, or workspaces), in blocks; each block
 * is written to the replicate file (HDF5 or CSV) and flushed before the
 * next, so an interrupted run keeps every finished replicate. A result
 * depends only on (seed, replicate): any thread count or split of the
 * range gives the same numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_internal.h"
#include "output/plots.h"
#include "output/repstore.h"
#include "replicate/replicate.h"
#include "replicate/runner.h"
#include "glmm_math.h"
#include "util/sha256.h"
#include "util/strbuf.h"

struct mlmx_boot {
    mlmx_problem *P;
    int np;
    uint64_t begin, end, nsim;
    double level;
    double *vals;          /* (end - begin) * np */
    double *crit;
    signed char *conv, *sing, *status; /* status: 0 missing, 1 done, 2 failed */
    int *nev;
    uint64_t n_done, n_failed, n_nonconv, n_singular;
    char device[256], note[768];
    size_t peak_dev;
};

void mlmx_boot_options_default(mlmx_boot_options *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->threads = 1;
    o->level = 0.95;
}

void mlmx_boot_free(mlmx_boot *b)
{
    if (!b)
        return;
    mlmx_problem_free(b->P);
    free(b->vals);
    free(b->crit);
    free(b->conv);
    free(b->sing);
    free(b->status);
    free(b->nev);
    free(b);
}

/* ---------------------------------------------------------------- output */

typedef struct sink {
    mlmx_repstore *h5;
    FILE *csv;
    char *csv_tmp;
    const char *path;
    int ngroups;
    mlmx_repstore_group groups[3];
    int goff[4];
} sink;

static int is_h5(const char *p)
{
    size_t n = strlen(p);
    return (n > 3 && strcmp(p + n - 3, ".h5") == 0) || (n > 5 && strcmp(p + n - 5, ".hdf5") == 0);
}


/* Parameter groups: fixed effects, variance components (and sigma), the
 * family's extra parameters. */
static void make_groups(const mlmx_boot *b, sink *k)
{
    const mlmx_problem *P = b->P;
    int nfix = 0;
    while (nfix < P->nparams && strncmp(P->param_names[nfix], "sd_", 3) != 0)
        nfix++;
    const int nextra = P->glmm ? P->nextra : 0;
    const char *names[3] = {"fixef", "varcorr", P->family == MLMX_FAMILY_NEGBIN ? "size"
                                                                                 : "thresholds"};
    int cnt[3] = {nfix, P->nparams - nfix - nextra, nextra};
    k->ngroups = 0;
    int off = 0;
    for (int g = 0; g < 3; g++) {
        if (cnt[g] == 0 && g == 2)
            continue;
        k->goff[k->ngroups] = off;
        k->groups[k->ngroups].name = names[g];
        k->groups[k->ngroups].ncol = cnt[g];
        k->groups[k->ngroups].colnames = (const char *const *)P->param_names + off;
        k->ngroups++;
        off += cnt[g];
    }
    k->goff[k->ngroups] = off;
}

static mlmx_status sink_open(mlmx_boot *b, const mlmx_fit *f, const mlmx_boot_options *o,
                             sink *k, mlmx_error *err)
{
    memset(k, 0, sizeof *k);
    k->path = o->out_path;
    if (!o->out_path)
        return MLMX_OK;
    make_groups(b, k);
    if (is_h5(o->out_path)) {
        const mlmx_model *md = f->model;
        char *sha = o->data_file ? mlmx_file_sha256(o->data_file) : NULL;
        char *key = mlmx_asprintf("%s|%s|%s|nagq=%d|%s", md->formula, mlmx_family_name(f->family),
                                  f->method == MLMX_ML ? "ML" : "REML", f->nagq, sha ? sha : "");
        mlmx_repstore_meta meta = {md->formula, mlmx_family_name(f->family),
                                   f->family != MLMX_FAMILY_GAUSSIAN ? (f->nagq <= 1 ? "Laplace"
                                                                                     : "AGQ")
                                   : f->method == MLMX_ML            ? "ML"
                                                                     : "REML",
                                   o->data_file, sha, NULL, o->seed, b->nsim, b->begin, b->end,
                                   key};
        mlmx_status st = o->resume ? mlmx_repstore_open(o->out_path, &meta, k->ngroups, k->groups,
                                                        &k->h5, err)
                                   : mlmx_repstore_create(o->out_path, &meta, k->ngroups,
                                                          k->groups, &k->h5, err);
        free(sha);
        free(key);
        return st;
    }
    if (o->resume)
        return mlmx_err_set(err, MLMX_ERR_ARG, "--resume needs an HDF5 replicate file (.h5)");
    k->csv_tmp = mlmx_asprintf("%s.tmp-%ld", o->out_path, (long)getpid());
    k->csv = k->csv_tmp ? fopen(k->csv_tmp, "w") : NULL;
    if (!k->csv)
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot write '%s'", o->out_path);
    fputs("replicate,status", k->csv);
    for (int j = 0; j < b->np; j++) {
        const char *nm = b->P->param_names[j];
        fputc(',', k->csv);
        if (strpbrk(nm, ",\"")) {
            fputc('"', k->csv);
            for (const char *c = nm; *c; c++) {
                if (*c == '"')
                    fputc('"', k->csv);
                fputc(*c, k->csv);
            }
            fputc('"', k->csv);
        } else {
            fputs(nm, k->csv);
        }
    }
    fputs(",criterion,converged,singular,n_evaluations\n", k->csv);
    return MLMX_OK;
}

static mlmx_status sink_block(mlmx_boot *b, sink *k, const uint64_t *todo, size_t n,
                              mlmx_error *err)
{
    if (k->h5) {
        /* consecutive runs of replicates, one block write each */
        size_t a = 0;
        while (a < n) {
            size_t e = a + 1;
            while (e < n && todo[e] == todo[e - 1] + 1)
                e++;
            size_t i0 = (size_t)(todo[a] - b->begin), cnt = e - a;
            double *cols[3];
            double *tmp = malloc(cnt * (size_t)b->np * sizeof *tmp);
            if (!tmp)
                return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
            double *t = tmp;
            for (int g = 0; g < k->ngroups; g++) {
                int c0 = k->goff[g], nc = k->goff[g + 1] - c0;
                cols[g] = t;
                for (size_t r = 0; r < cnt; r++)
                    for (int c = 0; c < nc; c++)
                        t[r * (size_t)nc + (size_t)c] = b->vals[(i0 + r) * (size_t)b->np + (size_t)(c0 + c)];
                t += cnt * (size_t)nc;
            }
            mlmx_status st = mlmx_repstore_write_block(
                k->h5, todo[a], cnt, (const double *const *)cols, b->crit + i0, b->conv + i0,
                b->sing + i0, b->nev + i0, b->status + i0, err);
            free(tmp);
            if (st)
                return st;
            a = e;
        }
        return mlmx_repstore_flush(k->h5, err);
    }
    if (k->csv) {
        for (size_t a = 0; a < n; a++) {
            size_t i = (size_t)(todo[a] - b->begin);
            fprintf(k->csv, "%llu,%s", (unsigned long long)todo[a],
                    b->status[i] == 1 ? "ok" : "failed");
            for (int j = 0; j < b->np; j++)
                fprintf(k->csv, ",%.17g", b->vals[i * (size_t)b->np + (size_t)j]);
            fprintf(k->csv, ",%.17g,%d,%d,%d\n", b->crit[i], b->conv[i], b->sing[i], b->nev[i]);
        }
        if (fflush(k->csv) != 0)
            return mlmx_err_set(err, MLMX_ERR_IO, "cannot write '%s'", k->path);
    }
    return MLMX_OK;
}

static mlmx_status sink_close(mlmx_boot *b, sink *k, int ok, mlmx_error *err)
{
    mlmx_status st = MLMX_OK;
    if (k->h5) {
        if (ok)
            st = mlmx_repstore_set_complete(k->h5, mlmx_boot_complete(b), err);
        mlmx_status s2 = mlmx_repstore_close(k->h5, err);
        st = st ? st : s2;
    }
    if (k->csv) {
        /* a CSV is all or nothing: renamed into place only when complete */
        int bad = fclose(k->csv) != 0;
        if (ok && !bad && mlmx_boot_complete(b)) {
            if (rename(k->csv_tmp, k->path) != 0)
                st = mlmx_err_set(err, MLMX_ERR_IO, "cannot write '%s'", k->path);
        } else {
            remove(k->csv_tmp);
            if (ok && bad)
                st = mlmx_err_set(err, MLMX_ERR_IO, "cannot write '%s'", k->path);
        }
    }
    free(k->csv_tmp);
    k->csv_tmp = NULL;
    return st;
}

/* ---------------------------------------------------------------- driver */

static mlmx_status boot_alloc(mlmx_boot *b, mlmx_error *err)
{
    size_t n = (size_t)(b->end - b->begin);
    b->vals = malloc(n * (size_t)b->np * sizeof *b->vals);
    b->crit = malloc(n * sizeof *b->crit);
    b->conv = calloc(n, 1);
    b->sing = calloc(n, 1);
    b->status = calloc(n, 1);
    b->nev = calloc(n, sizeof *b->nev);
    if (!b->vals || !b->crit || !b->conv || !b->sing || !b->status || !b->nev)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory for %zu replicates", n);
    for (size_t i = 0; i < n * (size_t)b->np; i++)
        b->vals[i] = NAN;
    for (size_t i = 0; i < n; i++)
        b->crit[i] = NAN;
    return MLMX_OK;
}

/* The replicates a resumed file already holds: read back into b. */
static mlmx_status load_done(mlmx_boot *b, sink *k, mlmx_error *err)
{
    size_t n = (size_t)(b->end - b->begin);
    mlmx_status st = mlmx_repstore_status(k->h5, b->status, err);
    if (st)
        return st;
    double *tmp = malloc(n * (size_t)b->np * sizeof *tmp);
    if (!tmp)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    double *cols[3];
    double *t = tmp;
    for (int g = 0; g < k->ngroups; g++) {
        cols[g] = t;
        t += n * (size_t)(k->goff[g + 1] - k->goff[g]);
    }
    st = mlmx_repstore_read_block(k->h5, b->begin, n, cols, b->crit, b->conv, b->sing, b->nev,
                                  b->status, err);
    for (int g = 0; !st && g < k->ngroups; g++) {
        int c0 = k->goff[g], nc = k->goff[g + 1] - c0;
        for (size_t r = 0; r < n; r++)
            for (int c = 0; c < nc; c++)
                b->vals[r * (size_t)b->np + (size_t)(c0 + c)] = cols[g][r * (size_t)nc + (size_t)c];
    }
    free(tmp);
    return st;
}

/* One block's rows from the runner, scattered to the replicates' places. */
typedef struct block_rows {
    mlmx_runner_rows r;
    uint64_t *todo;
} block_rows;

static void block_rows_free(block_rows *br)
{
    free(br->todo);
    free(br->r.params);
    free(br->r.crit);
    free(br->r.nev);
    free(br->r.conv);
    free(br->r.sing);
    free(br->r.status);
}

static mlmx_status block_rows_alloc(block_rows *br, size_t n, int np, mlmx_error *err)
{
    memset(br, 0, sizeof *br);
    br->todo = malloc(n * sizeof *br->todo);
    br->r.params = malloc(n * (size_t)(np > 0 ? np : 1) * sizeof *br->r.params);
    br->r.crit = malloc(n * sizeof *br->r.crit);
    br->r.nev = malloc(n * sizeof *br->r.nev);
    br->r.conv = malloc(n);
    br->r.sing = malloc(n);
    br->r.status = malloc(n);
    if (!br->todo || !br->r.params || !br->r.crit || !br->r.nev || !br->r.conv || !br->r.sing ||
        !br->r.status)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory for %zu replicate rows", n);
    return MLMX_OK;
}

static void scatter(mlmx_boot *b, const block_rows *br, size_t cnt)
{
    for (size_t a = 0; a < cnt; a++) {
        const size_t i = (size_t)(br->todo[a] - b->begin);
        memcpy(b->vals + i * (size_t)b->np, br->r.params + a * (size_t)b->np,
               (size_t)b->np * sizeof *b->vals);
        b->crit[i] = br->r.crit[a];
        b->conv[i] = br->r.conv[a];
        b->sing[i] = br->r.sing[a];
        b->nev[i] = br->r.nev[a];
        b->status[i] = br->r.status[a];
    }
}

static mlmx_status run_blocks(mlmx_boot *b, const mlmx_boot_options *o, sink *k,
                              mlmx_runner *R, mlmx_error *err)
{
    const size_t n = (size_t)(b->end - b->begin), block = mlmx_runner_block(R);
    block_rows br;
    mlmx_status st = block_rows_alloc(&br, block, b->np, err);
    size_t i = 0;
    uint64_t done = 0;
    for (size_t a = 0; a < n; a++)
        done += b->status[a] != 0;
    while (!st && i < n && !(o->stop && *o->stop)) {
        size_t cnt = 0;
        for (; i < n && cnt < block; i++)
            if (b->status[i] == 0)
                br.todo[cnt++] = b->begin + i;
        if (cnt == 0)
            break;
        st = mlmx_runner_run(R, o->seed, br.todo, cnt, &br.r, err);
        if (st)
            break;
        scatter(b, &br, cnt);
        st = sink_block(b, k, br.todo, cnt, err);
        done += cnt;
        if (o->progress)
            o->progress(o->progress_ctx, done, n);
    }
    block_rows_free(&br);
    return st;
}

static void count(mlmx_boot *b)
{
    size_t n = (size_t)(b->end - b->begin);
    b->n_done = b->n_failed = b->n_nonconv = b->n_singular = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->status[i] == 0)
            continue;
        b->n_done++;
        if (b->status[i] == 2) {
            b->n_failed++;
            continue;
        }
        b->n_nonconv += !b->conv[i];
        b->n_singular += b->sing[i] != 0;
    }
}

static mlmx_status boot_run(const mlmx_fit *f, const mlmx_boot_options *o, mlmx_boot *b,
                            mlmx_error *err)
{
    if (o->nsim == 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "--nsim must be at least 1");
    b->nsim = o->nsim;
    b->begin = o->rep_begin;
    b->end = o->rep_end ? o->rep_end : o->nsim;
    b->level = o->level > 0 && o->level < 1 ? o->level : 0.95;
    if (b->begin >= b->end || b->end > b->nsim)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "replicate range %llu:%llu is empty or beyond --nsim %llu",
                            (unsigned long long)b->begin, (unsigned long long)b->end,
                            (unsigned long long)b->nsim);
    if (mlmx_problem_create(f, &b->P) != MLMX_OK)
        return mlmx_err_set(err, MLMX_ERR_MODEL, "%s", mlmx_last_error());
    b->np = b->P->nparams;
    mlmx_status st = boot_alloc(b, err);
    if (st)
        return st;
    /* the device first: a --device gpu that cannot run leaves no file */
    mlmx_runner *R = NULL;
    st = mlmx_runner_create(b->P, o->device, o->threads, b->end - b->begin, &R, err);
    if (st)
        return st;
    sink k;
    st = sink_open(b, f, o, &k, err); /* checks the path before any replicate */
    if (st) {
        mlmx_runner_free(R);
        mlmx_error e2;
        mlmx_err_clear(&e2);
        sink_close(b, &k, 0, &e2);
        return st;
    }
    if (k.h5 && o->resume)
        st = load_done(b, &k, err);
    snprintf(b->device, sizeof b->device, "%s", mlmx_runner_device(R));
    if (!st)
        st = run_blocks(b, o, &k, R, err);
    /* a GPU failure under auto changes the device mid-run */
    snprintf(b->device, sizeof b->device, "%s", mlmx_runner_device(R));
    snprintf(b->note, sizeof b->note, "%s", mlmx_runner_note(R));
    b->peak_dev = mlmx_runner_peak_device_bytes(R);
    mlmx_runner_free(R);
    count(b);
    mlmx_status s2 = sink_close(b, &k, st == MLMX_OK, err);
    return st ? st : s2;
}

mlmx_status mlmx_boot_run(const mlmx_fit *f, const mlmx_boot_options *o, mlmx_boot **out)
{
    mlmx_api_clear();
    if (!f || !o || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_boot_run: NULL argument");
    *out = NULL;
    if (f->family != MLMX_FAMILY_GAUSSIAN &&
        mlmx_api_require_unstructured(f->model, "the parametric bootstrap of a GLMM (mlmx boot)"))
        return MLMX_ERR_UNSUPPORTED;
    mlmx_boot *b = calloc(1, sizeof *b);
    if (!b)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = boot_run(f, o, b, &e);
    if (st) {
        mlmx_boot_free(b);
        return mlmx_api_fail(&e);
    }
    *out = b;
    return MLMX_OK;
}

const char *mlmx_boot_device(const mlmx_boot *b) { return b ? b->device : ""; }
const char *mlmx_boot_device_note(const mlmx_boot *b) { return b ? b->note : ""; }
size_t mlmx_boot_device_peak_bytes(const mlmx_boot *b) { return b ? b->peak_dev : 0; }
int mlmx_boot_nparams(const mlmx_boot *b) { return b ? b->np : 0; }
const char *mlmx_boot_param_name(const mlmx_boot *b, int j)
{
    return b ? mlmx_problem_param_name(b->P, j) : NULL;
}
uint64_t mlmx_boot_n_done(const mlmx_boot *b) { return b ? b->n_done : 0; }
uint64_t mlmx_boot_n_failed(const mlmx_boot *b) { return b ? b->n_failed : 0; }
uint64_t mlmx_boot_n_nonconverged(const mlmx_boot *b) { return b ? b->n_nonconv : 0; }
uint64_t mlmx_boot_n_singular(const mlmx_boot *b) { return b ? b->n_singular : 0; }
int mlmx_boot_complete(const mlmx_boot *b) { return b && b->n_done == b->end - b->begin; }
const double *mlmx_boot_values(const mlmx_boot *b) { return b ? b->vals : NULL; }

mlmx_status mlmx_boot_merge(const char *const *inputs, int ninputs, const char *output)
{
    mlmx_api_clear();
    mlmx_error e;
    mlmx_err_clear(&e);
    if (mlmx_repstore_merge(inputs, ninputs, output, &e) != MLMX_OK)
        return mlmx_api_fail(&e);
    return MLMX_OK;
}

/* ---------------------------------------------------------------- summaries */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* R's quantile type 7 of sorted x[0..n). */
static double quantile7(const double *x, size_t n, double p)
{
    double h = (double)(n - 1) * p;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n)
        return x[n - 1];
    return x[lo] + (h - (double)lo) * (x[lo + 1] - x[lo]);
}

mlmx_status mlmx_boot_param_summary(const mlmx_boot *b, int j, mlmx_boot_summary *s)
{
    mlmx_api_clear();
    if (!b || !s || j < 0 || j >= b->np)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_boot_param_summary: bad argument");
    const size_t n = (size_t)(b->end - b->begin);
    double *x = malloc((n ? n : 1) * sizeof *x);
    if (!x)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    size_t m = 0;
    double sum = 0.0;
    for (size_t r = 0; r < n; r++) {
        double v = b->vals[r * (size_t)b->np + (size_t)j];
        if (b->status[r] == 1 && isfinite(v)) {
            x[m++] = v;
            sum += v;
        }
    }
    memset(s, 0, sizeof *s);
    s->estimate = b->P->params[j];
    s->n = m;
    double a = 0.5 * (1.0 - b->level);
    if (m < 2) {
        s->mean = m ? sum : NAN;
        s->sd = s->perc_lo = s->perc_hi = s->basic_lo = s->basic_hi = s->norm_lo = s->norm_hi = NAN;
        free(x);
        return MLMX_OK;
    }
    s->mean = sum / (double)m;
    double ss = 0.0;
    for (size_t r = 0; r < m; r++)
        ss += (x[r] - s->mean) * (x[r] - s->mean);
    s->sd = sqrt(ss / (double)(m - 1));
    qsort(x, m, sizeof *x, cmp_dbl);
    s->perc_lo = quantile7(x, m, a);
    s->perc_hi = quantile7(x, m, 1.0 - a);
    s->basic_lo = 2.0 * s->estimate - s->perc_hi;
    s->basic_hi = 2.0 * s->estimate - s->perc_lo;
    /* boot.ci's normal interval: bias-corrected, t0 - bias -+ z sd */
    double z = mlmx_gm_qnorm(1.0 - a), c = 2.0 * s->estimate - s->mean;
    s->norm_lo = c - z * s->sd;
    s->norm_hi = c + z * s->sd;
    free(x);
    return MLMX_OK;
}

mlmx_status mlmx_boot_summary_text(const mlmx_boot *b, char **text)
{
    mlmx_api_clear();
    if (!b || !text)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_boot_summary_text: NULL argument");
    mlmx_strbuf sb = {0};
    const int pct = (int)lround(100.0 * b->level);
    mlmx_sb_printf(&sb, "Parametric bootstrap: %llu of %llu replicates (%llu..%llu)\n",
                   (unsigned long long)b->n_done, (unsigned long long)(b->end - b->begin),
                   (unsigned long long)b->begin, (unsigned long long)b->end - 1);
    mlmx_sb_printf(&sb, "  failed %llu, not converged %llu, singular %llu\n",
                   (unsigned long long)b->n_failed, (unsigned long long)b->n_nonconv,
                   (unsigned long long)b->n_singular);
    mlmx_sb_printf(&sb, "  device: %s\n", b->device[0] ? b->device : "none (nothing to do)");
    if (b->peak_dev)
        mlmx_sb_printf(&sb, "  peak GPU memory: %.1f MiB\n", (double)b->peak_dev / 1048576.0);
    if (b->note[0])
        mlmx_sb_printf(&sb, "  note: %s\n", b->note);
    mlmx_sb_printf(&sb, "\n");
    int w = 9;
    for (int j = 0; j < b->np; j++) {
        int l = (int)strlen(mlmx_problem_param_name(b->P, j));
        w = l > w ? l : w;
    }
    mlmx_sb_printf(&sb, "%-*s %11s %11s %10s  %-23s %-23s %-23s\n", w, "Parameter", "Estimate",
                   "Boot mean", "Boot SD", "", "", "");
    mlmx_sb_printf(&sb, "%-*s %11s %11s %10s  %2d%% percentile          %2d%% basic               %2d%% normal\n",
                   w, "", "", "", "", pct, pct, pct);
    for (int j = 0; j < b->np; j++) {
        mlmx_boot_summary s;
        mlmx_boot_param_summary(b, j, &s);
        mlmx_sb_printf(&sb, "%-*s %11.5g %11.5g %10.4g  [%9.5g, %9.5g]  [%9.5g, %9.5g]  [%9.5g, %9.5g]\n",
                       w, mlmx_problem_param_name(b->P, j), s.estimate, s.mean, s.sd, s.perc_lo,
                       s.perc_hi, s.basic_lo, s.basic_hi, s.norm_lo, s.norm_hi);
    }
    if (!sb.s)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    *text = sb.s;
    return MLMX_OK;
}

mlmx_status mlmx_boot_write_plot(const mlmx_boot *b, const char *path)
{
    mlmx_api_clear();
    if (!b || !path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_boot_write_plot: NULL argument");
    const int np = b->np;
    double *est = malloc(3 * (size_t)np * sizeof *est);
    if (!est)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    double *lo = est + np, *hi = lo + np;
    for (int j = 0; j < np; j++) {
        mlmx_boot_summary s;
        mlmx_boot_param_summary(b, j, &s);
        est[j] = s.estimate;
        lo[j] = s.perc_lo;
        hi[j] = s.perc_hi;
    }
    char *title = mlmx_asprintf("Parametric bootstrap, %llu replicates (%d%% percentile intervals)",
                                (unsigned long long)b->n_done, (int)lround(100.0 * b->level));
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = mlmx_plot_boot(path, np, (const char *const *)b->P->param_names,
                                    (size_t)(b->end - b->begin), b->vals, est, lo, hi, title, &e);
    free(title);
    free(est);
    return st ? mlmx_api_fail(&e) : MLMX_OK;
}
