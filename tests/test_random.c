/* The counter-based generator and samplers (kernels/random.h).
 *
 * 1. Philox4x32 known-answer vectors, 10 rounds and 7 rounds, from
 *    Random123's tests/kat_vectors (bit-exact), and the keying scheme
 *    (seed, replicate, stream, block) checked against the same vectors.
 * 2. Goodness of fit, 10^6 draws per distribution and fixed seeds:
 *    continuous laws by the probability integral transform, with a
 *    chi-square test on 100 equiprobable cells and a Kolmogorov-Smirnov
 *    test; discrete laws by a chi-square test on cells pooled left to right
 *    until each expects >= 5 draws. Pass: every p-value > 1e-4.
 * 3. Reproducibility and stream independence (exact equality).
 * 4. Edge cases and bad arguments (exact values, NAN), huge means. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "random.h"

#define NDRAW 1000000
#define PMIN 1e-4
#define SEED 0x5EED2024u

/* ------------------------------------------------------------ reference math */

/* log of the gamma-function prefactor x^a e^-x / Gamma(a) */
static double gam_pref(double a, double x)
{
    return exp(a * log(x) - x - lgamma(a));
}

/* Regularized upper incomplete gamma Q(a, x): the series for P when
 * x < a + 1, a continued fraction (modified Lentz) for Q otherwise. */
static double gamma_q(double a, double x)
{
    if (x <= 0.0)
        return 1.0;
    if (x < a + 1.0) {
        double term = 1.0 / a, sum = term;
        for (int n = 1; n < 100000; n++) {
            term *= x / (a + n);
            sum += term;
            if (term < sum * 1e-17)
                break;
        }
        return 1.0 - sum * gam_pref(a, x);
    }
    const double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-16)
            break;
    }
    return gam_pref(a, x) * h;
}

/* Regularized lower incomplete gamma P(a, x) (the Gamma(a) cdf). */
static double gamma_p(double a, double x)
{
    if (x <= 0.0)
        return 0.0;
    if (x < a + 1.0) {
        double term = 1.0 / a, sum = term;
        for (int n = 1; n < 100000; n++) {
            term *= x / (a + n);
            sum += term;
            if (term < sum * 1e-17)
                break;
        }
        return sum * gam_pref(a, x);
    }
    return 1.0 - gamma_q(a, x);
}

static double chisq_pvalue(double stat, int df)
{
    return gamma_q(0.5 * df, 0.5 * stat);
}

/* Kolmogorov's limiting distribution with Stephens' small-n correction. */
static double ks_pvalue(double d, long n)
{
    double sn = sqrt((double)n);
    double lam = (sn + 0.12 + 0.11 / sn) * d;
    if (lam < 0.2)
        return 1.0;
    double s = 0.0;
    for (int j = 1; j <= 100; j++) {
        double t = exp(-2.0 * j * j * lam * lam);
        s += (j % 2 ? 2.0 : -2.0) * t;
        if (t < 1e-18)
            break;
    }
    return s < 0.0 ? 0.0 : s > 1.0 ? 1.0 : s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* u: n probability-integral-transform values, which must be uniform on
 * [0,1]. Chi-square on 100 equiprobable cells and KS; both p > PMIN. */
static void check_pit(const char *what, double *u, long n)
{
    long cell[100] = {0};
    for (long i = 0; i < n; i++) {
        cr_assert(u[i] >= 0.0 && u[i] <= 1.0, "%s: PIT value %g at %ld", what, u[i], i);
        int c = (int)(u[i] * 100.0);
        cell[c > 99 ? 99 : c]++;
    }
    double e = (double)n / 100.0, x2 = 0.0;
    for (int c = 0; c < 100; c++)
        x2 += (cell[c] - e) * (cell[c] - e) / e;
    double pchi = chisq_pvalue(x2, 99);

    qsort(u, (size_t)n, sizeof *u, cmp_double);
    double d = 0.0;
    for (long i = 0; i < n; i++) {
        double lo = u[i] - (double)i / n, hi = (double)(i + 1) / n - u[i];
        if (lo > d)
            d = lo;
        if (hi > d)
            d = hi;
    }
    double pks = ks_pvalue(d, n);
    cr_log_info("%-28s chi2(99) = %8.2f p = %.4f   KS D = %.2e p = %.4f", what, x2, pchi, d, pks);
    cr_expect(pchi > PMIN, "%s: chi-square p-value %g", what, pchi);
    cr_expect(pks > PMIN, "%s: KS p-value %g", what, pks);
}

/* Discrete chi-square: prob[0..ncat-1] the model probabilities of the
 * values lo..lo+ncat-1 (the tails beyond carry < 1e-10 and are lumped into
 * the end cells), obs the counts of n draws. Cells are pooled left to right
 * until each expects >= emin draws (5, unless stated); a short last cell
 * joins the one before. */
static double check_counts(const char *what, const double *prob, const long *obs, int ncat, long n,
                           double emin)
{
    double x2 = 0.0, ecell = 0.0, ocell = 0.0, elast = 0.0, olast = 0.0, psum = 0.0;
    int ncell = 0;
    for (int i = 0; i < ncat; i++) {
        psum += prob[i];
        ecell += prob[i] * (double)n;
        ocell += (double)obs[i];
        if (ecell >= emin) {
            if (ncell > 0)
                x2 += (olast - elast) * (olast - elast) / elast;
            elast = ecell;
            olast = ocell;
            ncell++;
            ecell = ocell = 0.0;
        }
    }
    elast += ecell; /* a short tail joins the last cell */
    olast += ocell;
    x2 += (olast - elast) * (olast - elast) / elast;
    cr_assert(ncell >= 2, "%s: only %d cells", what, ncell);
    cr_assert(fabs(psum - 1.0) < 1e-6, "%s: the probabilities sum to %.15g", what, psum);
    double p = chisq_pvalue(x2, ncell - 1);
    cr_log_info("%-28s chi2(%d) = %8.2f p = %.4f", what, ncell - 1, x2, p);
    cr_expect(p > PMIN, "%s: chi-square p-value %g", what, p);
    return p;
}

/* Counts of integer draws into lo..lo+ncat-1 (clamped at the ends); every
 * draw must be an integer within [minv, maxv]. */
static void tally(const char *what, double x, double minv, double maxv, long *obs, int lo, int ncat)
{
    if (!(x >= minv && x <= maxv && x == floor(x)))
        cr_assert_fail("%s: bad draw %.17g", what, x);
    double i = x - lo;
    if (i < 0)
        i = 0;
    if (i > ncat - 1)
        i = ncat - 1;
    obs[(int)i]++;
}

static double lpois_ref(double k, double mu)
{
    return -mu + k * log(mu) - lgamma(k + 1.0);
}

static double lbinom_ref(double k, double n, double p)
{
    return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0) + k * log(p) +
           (n - k) * log1p(-p);
}

static double lnb_ref(double k, double mu, double size)
{
    return lgamma(k + size) - lgamma(size) - lgamma(k + 1.0) + size * log(size / (size + mu)) +
           k * log(mu / (size + mu));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ 1. KAT */

/* Random123 tests/kat_vectors: counter[4], key[2], expected output[4]. */
struct kat {
    int rounds;
    uint32_t ctr[4], key[2], out[4];
};
static const struct kat kats[] = {
    {10, {0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {10,
     {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {10,
     {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    {7, {0, 0, 0, 0}, {0, 0}, {0x5f6fb709u, 0x0d893f64u, 0x4f121f81u, 0x4f730a48u}},
    {7,
     {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x5207ddc2u, 0x45165e59u, 0x4d8ee751u, 0x8c52f662u}},
    {7,
     {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0x4dfccabau, 0x190a87f0u, 0xc47362bau, 0xb6b5242au}},
};

Test(random_kat, philox4x32_known_answers)
{
    for (size_t t = 0; t < sizeof kats / sizeof kats[0]; t++) {
        uint32_t out[4];
        if (kats[t].rounds == 10)
            mlmx_philox4x32_10(kats[t].ctr, kats[t].key, out);
        else
            mlmx_philox4x32(kats[t].rounds, kats[t].ctr, kats[t].key, out);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(out[i], kats[t].out[i], "vector %zu word %d: %08x, expected %08x", t, i,
                         out[i], kats[t].out[i]);
    }
}

/* The stream words are the Philox blocks of (seed, replicate, stream, block). */
Test(random_kat, keying_scheme)
{
    mlmx_rng r;
    mlmx_rng_init(&r, 0, 0, 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(mlmx_rng_u32(&r), kats[0].out[i]);

    mlmx_rng_init(&r, UINT64_MAX, UINT64_MAX, UINT32_MAX);
    mlmx_rng_seek(&r, UINT32_MAX);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(mlmx_rng_u32(&r), kats[1].out[i]);

    /* key (a4093822, 299f31d0), counter (243f6a88, 85a308d3, 13198a2e, 03707344) */
    mlmx_rng_init(&r, 0x299f31d0a4093822ull, 0x85a308d3243f6a88ull, 0x13198a2eu);
    mlmx_rng_seek(&r, 0x03707344u);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(mlmx_rng_u32(&r), kats[2].out[i]);

    /* the block index counts up from 0: words 4..7 are block 1 */
    uint32_t ctr[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 1}, key[2] = {0x9u, 0x7u}, out[4];
    mlmx_philox4x32_10(ctr, key, out);
    mlmx_rng_init(&r, 0x0000000700000009ull, 0x85a308d3243f6a88ull, 0x13198a2eu);
    for (int i = 0; i < 4; i++)
        (void)mlmx_rng_u32(&r);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(mlmx_rng_u32(&r), out[i]);
}

/* ------------------------------------------------------------ 2. goodness of fit */

Test(random_gof, uniform)
{
    double *u = malloc(NDRAW * sizeof *u);
    cr_assert(u);
    mlmx_rng r;
    mlmx_rng_init(&r, SEED, 0, 1);
    double mn = 1.0, mx = 0.0;
    for (long i = 0; i < NDRAW; i++) {
        u[i] = mlmx_rng_uniform(&r);
        mn = u[i] < mn ? u[i] : mn;
        mx = u[i] > mx ? u[i] : mx;
    }
    cr_assert(mn > 0.0 && mx < 1.0, "uniform range [%g, %g]", mn, mx);
    check_pit("uniform", u, NDRAW);
    free(u);
    /* the extreme bit patterns stay inside (0,1) */
    cr_assert_eq(mlmx_rngi_u53(0u, 0u), 0.0); /* redrawn by mlmx_rng_uniform */
    cr_assert_eq(mlmx_rngi_u53(0u, 0x40u), 0x1p-53);
    cr_assert_eq(mlmx_rngi_u53(0xffffffffu, 0xffffffffu), 1.0 - 0x1p-53);
}

Test(random_gof, normal)
{
    double *u = malloc(NDRAW * sizeof *u);
    cr_assert(u);
    mlmx_rng r;
    mlmx_rng_init(&r, SEED, 0, 2);
    for (long i = 0; i < NDRAW; i++)
        u[i] = 0.5 * erfc(-mlmx_rng_normal(&r) / sqrt(2.0));
    check_pit("normal", u, NDRAW);
    /* both Box-Muller outputs */
    mlmx_rng_init(&r, SEED, 1, 2);
    for (long i = 0; i < NDRAW; i += 2) {
        double z[2];
        mlmx_rng_normal2(&r, z);
        u[i] = 0.5 * erfc(-z[0] / sqrt(2.0));
        u[i + 1] = 0.5 * erfc(-z[1] / sqrt(2.0));
    }
    check_pit("normal2 (both outputs)", u, NDRAW);
    free(u);
}

static void gamma_gof(double shape, uint32_t stream)
{
    double *u = malloc(NDRAW * sizeof *u);
    cr_assert(u);
    mlmx_rng r;
    mlmx_rng_init(&r, SEED, 0, stream);
    for (long i = 0; i < NDRAW; i++) {
        double g = mlmx_rng_gamma(&r, shape);
        cr_assert(g >= 0.0 && isfinite(g), "gamma(%g) draw %g", shape, g);
        u[i] = gamma_p(shape, g);
    }
    char what[64];
    snprintf(what, sizeof what, "gamma shape %g", shape);
    check_pit(what, u, NDRAW);
    free(u);
}

Test(random_gof, gamma_0_5) { gamma_gof(0.5, 3); }
Test(random_gof, gamma_1) { gamma_gof(1.0, 4); }
Test(random_gof, gamma_3_7) { gamma_gof(3.7, 5); }

static void poisson_gof(double mu, long ndraw, double emin, uint32_t stream)
{
    int lo = (int)fmax(0.0, floor(mu - 10.0 * sqrt(mu) - 10.0));
    int hi = (int)ceil(mu + 12.0 * sqrt(mu) + 40.0);
    int ncat = hi - lo + 1;
    double *prob = calloc((size_t)ncat, sizeof *prob);
    long *obs = calloc((size_t)ncat, sizeof *obs);
    cr_assert(prob && obs);
    for (int i = 0; i < ncat; i++)
        prob[i] = exp(lpois_ref(lo + i, mu));
    mlmx_rng r;
    mlmx_rng_init(&r, SEED, 0, stream);
    double t0 = now();
    for (long i = 0; i < ndraw; i++)
        tally("poisson", mlmx_rng_poisson(&r, mu), 0.0, INFINITY, obs, lo, ncat);
    double dt = now() - t0;
    char what[64];
    snprintf(what, sizeof what, "poisson mu %g", mu);
    check_counts(what, prob, obs, ncat, ndraw, emin);
    cr_log_info("%-28s %.0f ns per draw", what, 1e9 * dt / (double)ndraw);
    free(prob);
    free(obs);
}

Test(random_gof, poisson_0_5) { poisson_gof(0.5, NDRAW, 5.0, 6); }
Test(random_gof, poisson_4) { poisson_gof(4.0, NDRAW, 5.0, 7); }
Test(random_gof, poisson_30) { poisson_gof(30.0, NDRAW, 5.0, 8); }
Test(random_gof, poisson_1000) { poisson_gof(1000.0, NDRAW, 5.0, 9); }
/* the switch from inversion to PTRS, both sides */
Test(random_gof, poisson_9_99) { poisson_gof(9.99, NDRAW, 5.0, 10); }
Test(random_gof, poisson_10) { poisson_gof(10.0, NDRAW, 5.0, 11); }
/* huge mean: 10^5 draws, cells pooled to >= 50 expected */
Test(random_gof, poisson_1e7) { poisson_gof(1e7, 100000, 50.0, 12); }

static void binomial_gof(double n, double p, uint32_t stream)
{
    double sd = sqrt(n * p * (1.0 - p));
    int lo = (int)fmax(0.0, floor(n * p - 10.0 * sd - 10.0));
    int hi = (int)fmin(n, ceil(n * p + 10.0 * sd + 20.0));
    int ncat = hi - lo + 1;
    double *prob = calloc((size_t)ncat, sizeof *prob);
    long *obs = calloc((size_t)ncat, sizeof *obs);
    cr_assert(prob && obs);
    for (int i = 0; i < ncat; i++)
        prob[i] = exp(lbinom_ref(lo + i, n, p));
    mlmx_rng r;
    mlmx_rng_init(&r, SEED, 0, stream);
    for (long i = 0; i < NDRAW; i++)
        tally("binomial", mlmx_rng_binomial(&r, n, p), 0.0, n, obs, lo, ncat);
    char what[64];
    snprintf(what, sizeof what, "binomial n %g p %g", n, p);
    check_counts(what, prob, obs, ncat, NDRAW, 5.0);
    free(prob);
    free(obs);
}

Test(random_gof, binomial_1_0_3) { binomial_gof(1, 0.3, 13); }
Test(random_gof, binomial_20_0_5) { binomial_gof(20, 0.5, 14); }
Test(random_gof, binomial_1000_0_01) { binomial_gof(1000, 0.01, 15); }
Test(random_gof, binomial_500_0_7) { binomial_gof(500, 0.7, 16); }
/* inversion below n min(p, 1-p) = 10, on both sides of p = 1/2, and BTRS at a large n */
Test(random_gof, binomial_60_0_1) { binomial_gof(60, 0.1, 17); }
Test(random_gof, binomial_12_0_8) { binomial_gof(12, 0.8, 18); }
Test(random_gof, binomial_1e6_0_3) { binomial_gof(1e6, 0.3, 19); }

Test(random_gof, negbin_3_1_5)
{
    const double mu = 3.0, size = 1.5;
    const int ncat = 200;
    double prob[200];
    long obs[200] = {0};
    for (int i = 0; i < ncat; i++)
        prob[i] = exp(lnb_ref(i, mu, size));
    mlmx_rng r;
    mlmx_rng_init(&r, SEED, 0, 20);
    for (long i = 0; i < NDRAW; i++)
        tally("negbin", mlmx_rng_negbin(&r, mu, size), 0.0, INFINITY, obs, 0, ncat);
    check_counts("negbin mu 3 size 1.5", prob, obs, ncat, NDRAW, 5.0);
}

Test(random_gof, categorical_4)
{
    const double prob[4] = {0.1, 0.2, 0.3, 0.4};
    const double cdf[3] = {0.1, 0.3, 0.6};
    long obs[4] = {0};
    mlmx_rng r;
    mlmx_rng_init(&r, SEED, 0, 21);
    for (long i = 0; i < NDRAW; i++) {
        int c = mlmx_rng_categorical(&r, 4, cdf);
        cr_assert(c >= 0 && c < 4);
        obs[c]++;
    }
    check_counts("categorical 4", prob, obs, 4, NDRAW, 5.0);
}

/* ------------------------------------------------------------ 3. reproducibility */

/* A mixed draw sequence, in chunks of 10: every sampler in turn. */
#define CHUNK 10
static void mixed(mlmx_rng *r, double *out, int n)
{
    static const double cdf[2] = {0.25, 0.5};
    for (int i = 0; i + CHUNK <= n; i += CHUNK) {
        out[i] = mlmx_rng_uniform(r);
        out[i + 1] = mlmx_rng_normal(r);
        out[i + 2] = mlmx_rng_gamma(r, 0.7);
        out[i + 3] = mlmx_rng_gamma(r, 2.5);
        out[i + 4] = mlmx_rng_poisson(r, 3.0);
        out[i + 5] = mlmx_rng_poisson(r, 300.0);
        out[i + 6] = mlmx_rng_binomial(r, 40, 0.4);
        out[i + 7] = mlmx_rng_negbin(r, 5.0, 2.0);
        out[i + 8] = mlmx_rng_categorical(r, 3, cdf);
        out[i + 9] = (double)mlmx_rng_u32(r);
    }
}

Test(random_repro, same_key_same_sequence)
{
    double a[800], b[800];
    mlmx_rng r1, r2;
    mlmx_rng_init(&r1, 42, 7, 3);
    mlmx_rng_init(&r2, 42, 7, 3);
    mixed(&r1, a, 800);
    mixed(&r2, b, 800);
    cr_assert(memcmp(a, b, sizeof a) == 0);
}

Test(random_repro, different_keys_differ)
{
    const uint64_t seeds[] = {42, 43, 42, 42, 42, 42};
    const uint64_t reps[] = {7, 7, 8, 7, 7, (uint64_t)7 << 32};
    const uint32_t streams[] = {3, 3, 3, 4, 0x80000003u, 3};
    uint32_t w[6][16];
    for (int s = 0; s < 6; s++) {
        mlmx_rng r;
        mlmx_rng_init(&r, seeds[s], reps[s], streams[s]);
        for (int i = 0; i < 16; i++)
            w[s][i] = mlmx_rng_u32(&r);
    }
    for (int s = 0; s < 6; s++)
        for (int t = s + 1; t < 6; t++) {
            int same = 0;
            for (int i = 0; i < 16; i++)
                same += w[s][i] == w[t][i];
            cr_assert(same < 2, "keys %d and %d share %d of 16 words", s, t, same);
        }
}

/* Position i of a stream does not depend on other streams being used in
 * between, nor on how the earlier words were consumed; seek gives the
 * same words as reading up to the block. */
Test(random_repro, streams_are_independent)
{
    double alone[400], inter[400], other[400];
    mlmx_rng a, b, c;
    mlmx_rng_init(&a, 9, 1, 5);
    mixed(&a, alone, 400);

    mlmx_rng_init(&a, 9, 1, 5);
    mlmx_rng_init(&b, 9, 1, 6);
    mlmx_rng_init(&c, 9, 2, 5);
    for (int i = 0; i < 400; i += CHUNK) {
        mixed(&a, inter + i, CHUNK);
        mixed(&b, other, 400);
        mixed(&c, other, 2 * CHUNK);
    }
    cr_assert(memcmp(alone, inter, sizeof alone) == 0);

    uint32_t w[64];
    mlmx_rng_init(&a, 9, 1, 5);
    for (int i = 0; i < 64; i++)
        w[i] = mlmx_rng_u32(&a);
    for (uint32_t blk = 0; blk < 16; blk++) {
        mlmx_rng_init(&a, 9, 1, 5);
        mlmx_rng_seek(&a, blk);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(mlmx_rng_u32(&a), w[4 * blk + (uint32_t)i]);
    }
}

/* ------------------------------------------------------------ 4. edge cases */

Test(random_edge, degenerate_and_bad_arguments)
{
    mlmx_rng r;
    mlmx_rng_init(&r, 1, 2, 3);
    const double bad[] = {-1.0, -1e-300, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert(isnan(mlmx_rng_poisson(&r, bad[i])));
        cr_assert(isnan(mlmx_rng_gamma(&r, bad[i])));
        cr_assert(isnan(mlmx_rng_negbin(&r, bad[i], 2.0)));
        cr_assert(isnan(mlmx_rng_negbin(&r, 2.0, bad[i])));
        cr_assert(isnan(mlmx_rng_binomial(&r, bad[i], 0.5)));
        cr_assert(isnan(mlmx_rng_binomial(&r, 10, bad[i])));
    }
    cr_assert(isnan(mlmx_rng_binomial(&r, 10, 1.0000001)));
    cr_assert(isnan(mlmx_rng_binomial(&r, 2.5, 0.5)));
    cr_assert(isnan(mlmx_rng_binomial(&r, 0x1p54, 0.5)));
    cr_assert_eq(mlmx_rng_categorical(&r, 0, NULL), -1);

    for (int i = 0; i < 100; i++) {
        cr_assert_eq(mlmx_rng_poisson(&r, 0.0), 0.0);
        cr_assert_eq(mlmx_rng_gamma(&r, 0.0), 0.0);
        cr_assert_eq(mlmx_rng_negbin(&r, 0.0, 2.0), 0.0);
        cr_assert_eq(mlmx_rng_negbin(&r, 2.0, 0.0), 0.0);
        cr_assert_eq(mlmx_rng_binomial(&r, 0, 0.3), 0.0);
        cr_assert_eq(mlmx_rng_binomial(&r, 17, 0.0), 0.0);
        cr_assert_eq(mlmx_rng_binomial(&r, 17, 1.0), 17.0);
        cr_assert_eq(mlmx_rng_binomial(&r, 1e15, 1.0), 1e15);
        cr_assert_eq(mlmx_rng_categorical(&r, 1, NULL), 0);
        double x = mlmx_rng_poisson(&r, 1e-300);
        cr_assert(x == 0.0 || x == 1.0);
        x = mlmx_rng_binomial(&r, 5, 1e-300);
        cr_assert(x == 0.0 || x == 1.0);
        x = mlmx_rng_gamma(&r, 1e-3);
        cr_assert(x >= 0.0 && isfinite(x));
    }
}

/* Means and variances at extreme parameters: z-scores within 5 (the
 * variance's standard error from the law's excess kurtosis). */
static void check_moments(const char *what, const double *x, long n, double mean, double var,
                          double kurt)
{
    double s = 0.0, ss = 0.0;
    for (long i = 0; i < n; i++)
        s += x[i] - mean;
    double m = s / (double)n;
    for (long i = 0; i < n; i++)
        ss += (x[i] - mean - m) * (x[i] - mean - m);
    double v = ss / (double)(n - 1);
    double zm = m / sqrt(var / (double)n);
    double zv = (v - var) / (var * sqrt((2.0 + kurt) / (double)n));
    cr_log_info("%-28s z(mean) = %+.2f z(var) = %+.2f", what, zm, zv);
    cr_expect(fabs(zm) < 5.0, "%s: mean %.17g, expected %.17g", what, mean + m, mean);
    cr_expect(fabs(zv) < 5.0, "%s: variance %.17g, expected %.17g", what, v, var);
}

Test(random_edge, huge_means)
{
    enum { N = 100000 };
    static double x[N];
    mlmx_rng r;
    mlmx_rng_init(&r, SEED, 0, 30);
    double t0 = now();
    for (long i = 0; i < N; i++) {
        x[i] = mlmx_rng_poisson(&r, 1e12);
        cr_assert(x[i] == floor(x[i]));
    }
    double dt = now() - t0;
    cr_log_info("poisson mu 1e12: %.0f ns per draw", 1e9 * dt / N);
    cr_expect(dt < 2.0, "poisson(1e12): %g s for %d draws", dt, N);
    check_moments("poisson mu 1e12", x, N, 1e12, 1e12, 1e-12);
    for (long i = 0; i < N; i++)
        x[i] = mlmx_rng_binomial(&r, 1e15, 0.3);
    check_moments("binomial n 1e15 p 0.3", x, N, 3e14, 1e15 * 0.3 * 0.7, 0.0);
    for (long i = 0; i < N; i++)
        x[i] = mlmx_rng_binomial(&r, 1e12, 1e-11);
    check_moments("binomial n 1e12 p 1e-11", x, N, 10.0, 10.0 * (1.0 - 1e-11), 0.1);
    for (long i = 0; i < N; i++)
        x[i] = mlmx_rng_gamma(&r, 1e-2);
    check_moments("gamma shape 0.01", x, N, 0.01, 0.01, 600.0);
    for (long i = 0; i < N; i++)
        x[i] = mlmx_rng_gamma(&r, 1e8);
    check_moments("gamma shape 1e8", x, N, 1e8, 1e8, 6e-8);
    for (long i = 0; i < N; i++)
        x[i] = mlmx_rng_negbin(&r, 1e6, 0.5);
    check_moments("negbin mu 1e6 size 0.5", x, N, 1e6, 1e6 + 1e12 / 0.5, 12.0);
}
