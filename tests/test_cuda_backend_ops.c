/* Backend parity in the style of ggml's test-backend-ops: every slot of
 * mlmx_backend is run on the CPU backend (the oracle) and on every other
 * backend the registry offers, on the same inputs, and the outputs are
 * compared. The inputs are captured from real models: the LMM evaluation
 * runs once on a recording backend that snapshots each slot's arguments
 * (sleepstudy, random slopes; Penicillin, crossed; Pastes and a simulated
 * 4-level data set, nested with stages, one with a q = 2 nested term),
 * plus random SPD matrices for dense_chol and broken (not positive
 * definite) inputs for every slot's failure path.
 *
 * Tolerances (TOL = 1e-12):
 *  - cluster_factor, dense_chol: normwise, max|a - b| <= TOL * max|b| for
 *    each output array; logdiag |a - b| <= TOL * max(|b|, 1).
 *  - schur_downdate, stage_chol: per entry, |a - b| <= TOL * max(mag, max|b|)
 *    where mag = |S_in| + sum of |terms| subtracted into that entry (from
 *    the oracle's quantities): the backends may sum the levels in another
 *    order (the GPU uses atomics), which moves each entry by up to a few
 *    eps times mag.
 *  - statuses and fail_col must agree exactly.
 * Skipped (cr_skip_test, never passed) when no backend besides the CPU is
 * available, with each backend's reason. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "lmm/lmm.h"
#include "mlmx.h"

#define TOL 1e-12
#define MAXSTAGE 8
#define MAXBE 8

/* ---------------------------------------------------------- the recorder */

typedef struct recording {
    const double *S_base; /* the workspace's S, to locate dense_chol's block */
    int m;
    mlmx_cluster_batch b;
    const double *const *tmats;
    double *L21_in;        /* copy, schur_downdate's input */
    double *S_schur;       /* copy of S before schur_downdate */
    int nstage;
    const mlmx_block_stage *stage[MAXSTAGE];
    double *S_stage[MAXSTAGE];
    double *S_dense;       /* copy of the whole S before dense_chol */
    size_t dense_off;
    int dense_n, dense_lda;
} recording;

static recording rec;

static double *copy_of(const double *x, size_t n)
{
    double *c = malloc((n ? n : 1) * sizeof *c);
    cr_assert_not_null(c);
    memcpy(c, x, n * sizeof *c);
    return c;
}

static mlmx_status rec_cluster_factor(const mlmx_cluster_batch *b, const double *const *tmats,
                                      double *L11, double *L21, double *logdiag)
{
    rec.b = *b;
    rec.tmats = tmats;
    return mlmx_backend_cpu()->cluster_factor(b, tmats, L11, L21, logdiag);
}

static mlmx_status rec_schur(const mlmx_cluster_batch *b, const double *L21, double *S)
{
    rec.L21_in = copy_of(L21, b->row_ptr[b->nblk] * (size_t)b->q);
    rec.S_schur = copy_of(S, (size_t)b->m * (size_t)b->m);
    return mlmx_backend_cpu()->schur_downdate(b, L21, S);
}

static mlmx_status rec_stage(const mlmx_block_stage *st, int m, double *S, double *scratch,
                             int *fail_col)
{
    cr_assert_lt(rec.nstage, MAXSTAGE);
    rec.stage[rec.nstage] = st;
    rec.S_stage[rec.nstage++] = copy_of(S, (size_t)m * (size_t)m);
    return mlmx_backend_cpu()->stage_chol(st, m, S, scratch, fail_col);
}

static mlmx_status rec_dense(int n, double *S, int lda, int *fail_col)
{
    rec.S_dense = copy_of(rec.S_base, (size_t)rec.m * (size_t)rec.m);
    rec.dense_off = (size_t)(S - rec.S_base);
    rec.dense_n = n;
    rec.dense_lda = lda;
    return mlmx_backend_cpu()->dense_chol(n, S, lda, fail_col);
}

static mlmx_status rec_inverse(int n, double *S, int lda)
{
    return mlmx_backend_cpu()->dense_inverse(n, S, lda);
}

static const mlmx_backend recorder = {"recorder", rec_cluster_factor, rec_schur, rec_stage,
                                      rec_dense, rec_inverse};

static void rec_free(void)
{
    free(rec.L21_in);
    free(rec.S_schur);
    for (int k = 0; k < rec.nstage; k++)
        free(rec.S_stage[k]);
    free(rec.S_dense);
    memset(&rec, 0, sizeof rec);
}

/* ------------------------------------------------------------- backends */

/* Self-check backend: the CPU's slots, except that the downdates run over
 * the levels in reverse order (as a GPU's atomics may), so the summed
 * tolerances are exercised on machines without a GPU. */
static mlmx_status rev_schur(const mlmx_cluster_batch *b, const double *L21, double *S)
{
    const size_t m = (size_t)b->m;
    for (int j = b->nblk - 1; j >= 0; j--)
        for (size_t ra = b->row_ptr[j + 1]; ra-- > b->row_ptr[j];)
            for (size_t rb = b->row_ptr[j]; rb <= ra; rb++) {
                double d = 0.0;
                for (int i = b->q - 1; i >= 0; i--)
                    d += L21[ra * (size_t)b->q + (size_t)i] * L21[rb * (size_t)b->q + (size_t)i];
                S[(size_t)b->row_col[ra] + (size_t)b->row_col[rb] * m] -= d;
            }
    return MLMX_OK;
}

static mlmx_status rev_stage(const mlmx_block_stage *st, int m, double *S, double *scratch,
                             int *fail_col)
{
    /* the levels in reverse, one at a time through the CPU slot; like the
     * GPU, every level runs and the first failing one is reported */
    mlmx_status res = MLMX_OK;
    for (int l = st->nblk - 1; l >= 0; l--) {
        mlmx_block_stage one = *st;
        int f = -1;
        one.nblk = 1;
        one.c0 = st->c0 + l * st->q;
        one.col_ptr = st->col_ptr + l;
        mlmx_status r = mlmx_backend_cpu()->stage_chol(&one, m, S, scratch, &f);
        if (r) {
            res = r;
            if (fail_col)
                *fail_col = f;
        }
    }
    return res;
}

static mlmx_backend reversed;

/* The available backends other than the CPU; their count, or skip the
 * test with every backend's reason when there is none. With the
 * environment variable MLMX_TEST_BACKEND_SELF=1 the CPU is compared with
 * itself, which checks this harness on machines without a GPU. */
static int other_backends(const mlmx_backend **out)
{
    char why[1024] = "";
    int n = 0;
    const char *self = getenv("MLMX_TEST_BACKEND_SELF");
    for (int i = 0; i < mlmx_backend_count(); i++) {
        const char *name = mlmx_backend_name(i);
        if (strcmp(name, "cpu") == 0 && !(self && strcmp(self, "1") == 0))
            continue;
        if (strcmp(name, "cpu") == 0 && n + 1 < MAXBE) {
            reversed = *mlmx_backend_cpu();
            reversed.name = "cpu-reversed";
            reversed.schur_downdate = rev_schur;
            reversed.stage_chol = rev_stage;
            out[n++] = &reversed;
        }
        const mlmx_backend *be = mlmx_backend_get(name);
        if (be && n < MAXBE) {
            out[n++] = be;
        } else {
            size_t used = strlen(why);
            snprintf(why + used, sizeof why - used, "%s%s: %s", used ? "; " : "", name,
                     mlmx_backend_unavailable_reason(name));
        }
    }
    if (n == 0)
        cr_skip_test("no backend besides the CPU is available (%s)", why);
    return n;
}

/* ------------------------------------------------------------ comparing */

static double max_abs(const double *x, size_t n)
{
    double mx = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > mx)
            mx = fabs(x[i]);
    return mx;
}

/* normwise: max|a - b| <= TOL * max|b| */
static void expect_normwise(const char *be, const char *what, const double *a, const double *b,
                            size_t n)
{
    double scale = max_abs(b, n), worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= worst) || isnan(a[i]) != isnan(b[i])) {
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
    }
    cr_expect(worst <= TOL * scale, "%s %s: max error %.3g at %zu (%.17g vs cpu %.17g), scale %.3g",
              be, what, worst, at, n ? a[at] : 0.0, n ? b[at] : 0.0, scale);
}

/* per entry: |a - b| <= TOL * max(mag, max|b|) */
static void expect_summed(const char *be, const char *what, const double *a, const double *b,
                          const double *mag, size_t n)
{
    double scale = max_abs(b, n);
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++) {
        double tol = TOL * (mag[i] > scale ? mag[i] : scale);
        double d = fabs(a[i] - b[i]);
        if (!(d <= tol)) {
            bad++;
            cr_expect(0, "%s %s[%zu]: %.17g vs cpu %.17g (error %.3g, allowed %.3g)", be, what, i,
                      a[i], b[i], d, tol);
        }
    }
}

/* ---------------------------------------------------------- slot checks */

static void check_cluster_factor(const mlmx_backend *be, const mlmx_cluster_batch *b,
                                 const double *const *tmats)
{
    const mlmx_backend *cpu = mlmx_backend_cpu();
    size_t nl = (size_t)b->nblk * (size_t)b->q * (size_t)b->q;
    size_t nr = b->row_ptr[b->nblk] * (size_t)b->q;
    double *L11a = calloc(nl + 1, sizeof(double)), *L11b = calloc(nl + 1, sizeof(double));
    double *L21a = calloc(nr + 1, sizeof(double)), *L21b = calloc(nr + 1, sizeof(double));
    double lda = 0.0, ldb = 0.0;
    cr_assert(L11a && L11b && L21a && L21b);
    mlmx_status sa = cpu->cluster_factor(b, tmats, L11a, L21a, &lda);
    mlmx_status sb = be->cluster_factor(b, tmats, L11b, L21b, &ldb);
    cr_expect_eq(sb, sa, "%s cluster_factor: status %d, cpu %d", be->name, sb, sa);
    if (sa == MLMX_OK && sb == MLMX_OK) {
        expect_normwise(be->name, "L11", L11b, L11a, nl);
        expect_normwise(be->name, "L21", L21b, L21a, nr);
        cr_expect(fabs(ldb - lda) <= TOL * fmax(fabs(lda), 1.0), "%s logdiag %.17g vs cpu %.17g",
                  be->name, ldb, lda);
    }
    free(L11a);
    free(L11b);
    free(L21a);
    free(L21b);
}

static void check_schur(const mlmx_backend *be, const mlmx_cluster_batch *b, const double *L21,
                        const double *S)
{
    const mlmx_backend *cpu = mlmx_backend_cpu();
    size_t mm = (size_t)b->m * (size_t)b->m, nr = b->row_ptr[b->nblk] * (size_t)b->q;
    double *Sa = copy_of(S, mm), *Sb = copy_of(S, mm), *mag = copy_of(S, mm);
    double *L21abs = copy_of(L21, nr);
    cr_expect_eq(cpu->schur_downdate(b, L21, Sa), MLMX_OK);
    cr_expect_eq(be->schur_downdate(b, L21, Sb), MLMX_OK, "%s schur_downdate failed", be->name);
    /* mag = |S| + sum |v_a| |v_b|: the oracle downdating -|S| by |L21| */
    for (size_t i = 0; i < mm; i++)
        mag[i] = -fabs(mag[i]);
    for (size_t i = 0; i < nr; i++)
        L21abs[i] = fabs(L21abs[i]);
    cr_expect_eq(cpu->schur_downdate(b, L21abs, mag), MLMX_OK);
    for (size_t i = 0; i < mm; i++)
        mag[i] = -mag[i];
    expect_summed(be->name, "schur S", Sb, Sa, mag, mm);
    free(Sa);
    free(Sb);
    free(mag);
    free(L21abs);
}

/* Runs stage st on copies of S on the CPU and on be; compares statuses,
 * fail_col and (on success) S. */
static void check_stage(const mlmx_backend *be, const mlmx_block_stage *st, int m,
                        const double *S, size_t scratch_len)
{
    const mlmx_backend *cpu = mlmx_backend_cpu();
    const size_t mm = (size_t)m * (size_t)m, ld = (size_t)m;
    double *Sa = copy_of(S, mm), *Sb = copy_of(S, mm), *mag = copy_of(S, mm);
    double *scr = calloc(scratch_len + 1, sizeof(double));
    int fa = -1, fb = -1;
    cr_assert_not_null(scr);
    mlmx_status sa = cpu->stage_chol(st, m, Sa, scr, &fa);
    mlmx_status sb = be->stage_chol(st, m, Sb, scr, &fb);
    cr_expect_eq(sb, sa, "%s stage_chol: status %d, cpu %d", be->name, sb, sa);
    cr_expect_eq(fb, fa, "%s stage_chol: fail_col %d, cpu %d", be->name, fb, fa);
    if (sa == MLMX_OK && sb == MLMX_OK) {
        /* mag = |S| + sum over levels of |x_a| |x_b|, x the solved rows
         * the oracle left in the level's columns */
        for (size_t i = 0; i < mm; i++)
            mag[i] = fabs(mag[i]);
        for (int l = 0; l < st->nblk; l++) {
            const size_t c = (size_t)st->c0 + (size_t)l * (size_t)st->q;
            for (size_t rb = st->col_ptr[l]; rb < st->col_ptr[l + 1]; rb++)
                for (size_t ra = rb; ra < st->col_ptr[l + 1]; ra++) {
                    size_t ia = (size_t)st->col[ra], ib = (size_t)st->col[rb];
                    for (int i = 0; i < st->q; i++)
                        mag[ia + ib * ld] += fabs(Sa[ia + (c + (size_t)i) * ld]) *
                                             fabs(Sa[ib + (c + (size_t)i) * ld]);
                }
        }
        expect_summed(be->name, "stage S", Sb, Sa, mag, mm);
    }
    free(Sa);
    free(Sb);
    free(mag);
    free(scr);
}

/* the n*n block at S (leading dimension lda), packed */
static double *block_of(const double *S, int n, int lda)
{
    double *c = malloc(((size_t)n * (size_t)n + 1) * sizeof *c);
    cr_assert_not_null(c);
    for (int j = 0; j < n; j++)
        memcpy(c + (size_t)j * (size_t)n, S + (size_t)j * (size_t)lda, (size_t)n * sizeof *c);
    return c;
}

/* dense_chol on copies of the lda-strided n*n block at offset off of S
 * (len doubles): statuses, fail_col and the blocks must agree, and the
 * rest of S must be untouched. */
static void check_dense(const mlmx_backend *be, const double *S, size_t len, size_t off, int n,
                        int lda)
{
    const mlmx_backend *cpu = mlmx_backend_cpu();
    double *Sa = copy_of(S, len), *Sb = copy_of(S, len);
    int fa = -1, fb = -1;
    mlmx_status sa = cpu->dense_chol(n, Sa + off, lda, &fa);
    mlmx_status sb = be->dense_chol(n, Sb + off, lda, &fb);
    cr_expect_eq(sb, sa, "%s dense_chol: status %d, cpu %d", be->name, sb, sa);
    cr_expect_eq(fb, fa, "%s dense_chol: fail_col %d, cpu %d", be->name, fb, fa);
    if (sa == MLMX_OK && sb == MLMX_OK) {
        double *ba = block_of(Sa + off, n, lda), *bb = block_of(Sb + off, n, lda);
        expect_normwise(be->name, "dense_chol block", bb, ba, (size_t)n * (size_t)n);
        free(ba);
        free(bb);
        /* outside the block (and in its upper triangle): untouched */
        for (size_t i = 0; i < len; i++) {
            size_t r = (i - off) % (size_t)lda, cj = (i - off) / (size_t)lda;
            int inside = i >= off && r < (size_t)n && cj < (size_t)n && r >= cj;
            if (!inside)
                cr_expect(Sb[i] == S[i], "%s dense_chol wrote outside the lower block at %zu",
                          be->name, i);
        }
    }
    free(Sa);
    free(Sb);
}

/* dense_inverse of the CPU's Cholesky factor of the block (as check_dense
 * takes it): the lower triangles must agree normwise, and the padding
 * rows below the block must be untouched. */
static void check_inverse(const mlmx_backend *be, const double *S, size_t len, size_t off, int n,
                          int lda)
{
    const mlmx_backend *cpu = mlmx_backend_cpu();
    double *F = copy_of(S, len);
    int f = -1;
    if (n > 0 && cpu->dense_chol(n, F + off, lda, &f) != MLMX_OK) {
        free(F);
        return; /* not positive definite: no factor to invert */
    }
    double *Fa = copy_of(F, len), *Fb = copy_of(F, len);
    mlmx_status sa = cpu->dense_inverse(n, Fa + off, lda);
    mlmx_status sb = be->dense_inverse(n, Fb + off, lda);
    cr_expect_eq(sb, sa, "%s dense_inverse: status %d, cpu %d", be->name, sb, sa);
    if (sa == MLMX_OK && sb == MLMX_OK && n > 0) {
        double *la = malloc((size_t)n * (size_t)n * sizeof *la);
        double *lb = malloc((size_t)n * (size_t)n * sizeof *lb);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++) {
                const size_t k = off + (size_t)i + (size_t)j * (size_t)lda;
                la[i + (size_t)j * n] = i >= j ? Fa[k] : 0.0;
                lb[i + (size_t)j * n] = i >= j ? Fb[k] : 0.0;
            }
        expect_normwise(be->name, "dense_inverse block", lb, la, (size_t)n * (size_t)n);
        free(la);
        free(lb);
        for (size_t i = 0; i < len; i++) {
            size_t r = (i - off) % (size_t)lda, cj = (i - off) / (size_t)lda;
            int inside = i >= off && r < (size_t)n && cj < (size_t)n;
            if (!inside)
                cr_expect(Fb[i] == F[i], "%s dense_inverse wrote outside the block at %zu",
                          be->name, i);
        }
    }
    free(F);
    free(Fa);
    free(Fb);
}

/* ------------------------------------------------------- model captures */

typedef struct captured {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_lmm_stats *s;
    mlmx_lmm_work *w;
} captured;

/* Fit-free capture: one REML evaluation at a fixed theta (diagonal entries
 * 0.6 + 0.3 k for term k, off-diagonal 0.1) on the recording backend. */
static void capture(captured *c, const char *file, const char *formula)
{
    char path[1024];
    mlmx_error e;
    mlmx_err_clear(&e);
    memset(c, 0, sizeof *c);
    rec_free();
    snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, file);
    cr_assert_eq(mlmx_data_read_csv(path, &c->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(c->d, formula, &c->m), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_lmm_stats_build(c->m, &c->s, &e), MLMX_OK, "%s", e.msg);
    cr_assert_eq(mlmx_lmm_work_alloc(c->s, &c->w, &e), MLMX_OK, "%s", e.msg);
    double theta[64];
    cr_assert_leq(c->m->ntheta, 64);
    for (int k = 0; k < c->m->K; k++) {
        int q = c->m->re[k].q, t = c->m->re[k].theta_offset;
        for (int j = 0; j < q; j++)
            for (int i = j; i < q; i++)
                theta[t++] = i == j ? 0.6 + 0.3 * k : 0.1;
    }
    rec.S_base = c->w->S;
    rec.m = c->s->m;
    double crit = 0.0;
    cr_assert_eq(mlmx_lmm_eval(c->s, &recorder, theta, 1, c->w, &crit, &e), MLMX_OK, "%s", e.msg);
    cr_assert(isfinite(crit));
    cr_assert_eq(rec.nstage, c->s->nchain);
    cr_assert_not_null(rec.S_schur);
    cr_assert_not_null(rec.S_dense);
}

static void release(captured *c)
{
    rec_free();
    mlmx_lmm_work_free(c->w);
    mlmx_lmm_stats_free(c->s);
    mlmx_model_free(c->m);
    mlmx_data_free(c->d);
}

/* Every slot of every other backend on the captured inputs. */
static void check_all_slots(const captured *c, const mlmx_backend *const *others, int nb)
{
    const size_t mm = (size_t)c->s->m * (size_t)c->s->m;
    for (int i = 0; i < nb; i++) {
        check_cluster_factor(others[i], &rec.b, rec.tmats);
        check_schur(others[i], &rec.b, rec.L21_in, rec.S_schur);
        for (int k = 0; k < rec.nstage; k++)
            check_stage(others[i], rec.stage[k], c->s->m, rec.S_stage[k],
                        c->s->maxcols * (size_t)rec.stage[k]->q);
        check_dense(others[i], rec.S_dense, mm, rec.dense_off, rec.dense_n, rec.dense_lda);
        check_inverse(others[i], rec.S_dense, mm, rec.dense_off, rec.dense_n, rec.dense_lda);
    }
}

static void model_case(const char *file, const char *formula, int want_groups, int want_stages)
{
    const mlmx_backend *others[MAXBE];
    int nb = other_backends(others);
    captured c;
    capture(&c, file, formula);
    if (want_groups)
        cr_assert_gt(rec.b.ngrp, 0, "expected grouped (crossed) levels in %s", formula);
    cr_assert_geq(rec.nstage, want_stages, "expected nested stages in %s", formula);
    check_all_slots(&c, others, nb);
    release(&c);
}

Test(backend_ops, sleepstudy_random_slopes)
{
    model_case("sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", 0, 0);
}

Test(backend_ops, penicillin_crossed)
{
    model_case("penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)", 1, 0);
}

Test(backend_ops, pastes_nested)
{
    model_case("pastes.csv", "strength ~ 1 + (1|batch/cask)", 0, 1);
}

Test(backend_ops, nested4_vector_stage)
{
    model_case("sim_nested4.csv", "y ~ ses + (1|class) + (ses|school) + (1|district)", 0, 2);
}

/* ------------------------------------------------------ synthetic inputs */

/* deterministic pseudo-random numbers in [-1, 1) */
static double rnd(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (double)(*state >> 8) / (double)(1u << 23) - 1.0;
}

/* S (n*n inside leading dimension lda, lda*n doubles) = G G^T / n + I, well
 * conditioned; the padding rows hold a marker the slots must not touch. */
static double *random_spd(int n, int lda, unsigned seed)
{
    double *G = malloc((size_t)n * (size_t)n * sizeof *G);
    double *S = malloc((size_t)lda * (size_t)n * sizeof *S);
    cr_assert(G && S);
    for (size_t i = 0; i < (size_t)n * (size_t)n; i++)
        G[i] = rnd(&seed);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < lda; i++) {
            double v = -7.0;
            if (i < n) {
                v = i == j ? 1.0 : 0.0;
                for (int k = 0; k < n; k++)
                    v += G[i + (size_t)k * n] * G[j + (size_t)k * n] / n;
            }
            S[i + (size_t)j * lda] = v;
        }
    free(G);
    return S;
}

Test(backend_ops, dense_chol_random_spd)
{
    const mlmx_backend *others[MAXBE];
    int nb = other_backends(others);
    const int sizes[] = {1, 2, 7, 64, 300};
    for (int t = 0; t < 5; t++) {
        int n = sizes[t], lda = n + 3;
        double *S = random_spd(n, lda, 12345u + (unsigned)t);
        for (int i = 0; i < nb; i++) {
            check_dense(others[i], S, (size_t)lda * (size_t)n, 0, n, lda);
            check_inverse(others[i], S, (size_t)lda * (size_t)n, 0, n, lda);
        }
        free(S);
    }
    /* n = 0: nothing to do, MLMX_OK on every backend */
    double dummy = 3.0;
    for (int i = 0; i < nb; i++)
        check_dense(others[i], &dummy, 1, 0, 0, 1);
}

Test(backend_ops, dense_chol_not_positive_definite)
{
    const mlmx_backend *others[MAXBE];
    int nb = other_backends(others);
    const int n = 200, lda = 200, bad[] = {0, 77, 199};
    for (int t = 0; t < 3; t++) {
        double *S = random_spd(n, lda, 999u);
        /* a negative diagonal entry: the leading minors fail first there */
        S[bad[t] + (size_t)bad[t] * lda] = -1.0;
        for (int i = 0; i < nb; i++) {
            int f = -1;
            double *c = copy_of(S, (size_t)lda * n);
            cr_expect_eq(others[i]->dense_chol(n, c, lda, &f), MLMX_ERR_NUMERIC, "%s",
                         others[i]->name);
            cr_expect_eq(f, bad[t], "%s: fail_col %d, expected %d", others[i]->name, f, bad[t]);
            free(c);
            check_dense(others[i], S, (size_t)lda * n, 0, n, lda);
        }
        free(S);
    }
}

Test(backend_ops, cluster_factor_not_positive_definite)
{
    const mlmx_backend *others[MAXBE];
    int nb = other_backends(others);
    captured c;
    capture(&c, "sleepstudy.csv", "Reaction ~ Days + (Days|Subject)");
    const int q = rec.b.q;
    double *A = copy_of(rec.b.A, (size_t)rec.b.nblk * q * q);
    A[5 * q * q] = -1e6; /* level 5: T^T A T + I is not positive definite */
    mlmx_cluster_batch b = rec.b;
    b.A = A;
    for (int i = 0; i < nb; i++)
        check_cluster_factor(others[i], &b, rec.tmats);
    double *L11 = calloc((size_t)b.nblk * q * q, sizeof *L11);
    double *L21 = calloc(b.row_ptr[b.nblk] * (size_t)q + 1, sizeof *L21), ld = 0.0;
    cr_assert(L11 && L21);
    for (int i = 0; i < nb; i++)
        cr_expect_eq(others[i]->cluster_factor(&b, rec.tmats, L11, L21, &ld), MLMX_ERR_NUMERIC,
                     "%s", others[i]->name);
    free(L11);
    free(L21);
    free(A);
    release(&c);
}

Test(backend_ops, stage_chol_not_positive_definite)
{
    const mlmx_backend *others[MAXBE];
    int nb = other_backends(others);
    captured c;
    capture(&c, "pastes.csv", "strength ~ 1 + (1|batch/cask)");
    cr_assert_geq(rec.nstage, 1);
    const mlmx_block_stage *st = rec.stage[0];
    const size_t m = (size_t)c.s->m;
    double *S = copy_of(rec.S_stage[0], m * m);
    /* levels 3 and 6 broken: every backend must report level 3's column */
    size_t c3 = (size_t)st->c0 + 3 * (size_t)st->q, c6 = (size_t)st->c0 + 6 * (size_t)st->q;
    S[c3 + c3 * m] = -1.0;
    S[c6 + c6 * m] = -1.0;
    for (int i = 0; i < nb; i++) {
        check_stage(others[i], st, c.s->m, S, c.s->maxcols * (size_t)st->q);
        double *S2 = copy_of(S, m * m), *scr = calloc(c.s->maxcols * (size_t)st->q + 1, 8);
        int f = -1;
        cr_assert_not_null(scr);
        cr_expect_eq(others[i]->stage_chol(st, c.s->m, S2, scr, &f), MLMX_ERR_NUMERIC, "%s",
                     others[i]->name);
        cr_expect_eq(f, (int)c3, "%s: fail_col %d, expected %zu", others[i]->name, f, c3);
        free(S2);
        free(scr);
    }
    free(S);
    release(&c);
}
