/* Counter-based random numbers and samplers, written once and compiled
 * both as C for the CPU backend and as CUDA device code (like
 * cluster_math.h), so a draw depends only on its key and its position in
 * its stream, never on a thread, a schedule or global state.
 *
 * Generator: Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", SC11), the block function of Random123.
 * Keying: key = seed (low, high 32 bits); counter = (replicate low,
 * replicate high, stream, block index from 0). Each block gives four 32-bit
 * words, handed out in order; a stream holds 2^32 blocks (2^34 words), after
 * which the block index wraps around.
 *
 * Samplers (docs/random.md gives the details and references):
 *   uniform   53 random bits, k * 2^-53 for k in 1 .. 2^53-1 (k = 0 redrawn)
 *   normal    Box-Muller, the cosine output (two uniforms per draw);
 *             mlmx_rng_normal2 returns both outputs of one pair
 *   gamma     Marsaglia and Tsang (2000), with the U^(1/a) boost for a < 1
 *   poisson   inversion (chop-down search) for mu < 10, Hormann's PTRS
 *             (1993) for mu >= 10
 *   binomial  inversion for n*min(p,1-p) < 10, Hormann's BTRS (1993)
 *             otherwise
 *   negbin    NB2 as the gamma-Poisson mixture
 *   categorical  inversion of a cumulative table
 * The acceptance tests of PTRS and BTRS evaluate the log probabilities with
 * Loader's saddle-point forms (stirlerr and bd0), which keep full relative
 * accuracy for huge means, so the samplers stay exact there.
 *
 * Bad arguments (non-finite, negative, p outside [0,1], n not an integer in
 * [0, 2^53]) give NAN; categorical gives -1. Every loop is bounded: the
 * rejection loops stop after MLMX_RNG_MAX_TRIES tries (each accepts with
 * probability > 0.5, so the bound is never reached in practice) and return
 * NAN if it were. No allocation, no library calls beyond <math.h>. */
#ifndef MLMX_RANDOM_H
#define MLMX_RANDOM_H

#include <math.h>
#include <stdint.h>

/* The same definition as in cluster_math.h (an identical redefinition is
 * allowed, the guard only spares the duplicate). */
#ifndef MLMX_HD
#if defined(__CUDACC__)
#define MLMX_HD static __host__ __device__ __forceinline__
#else
#define MLMX_HD static inline
#endif
#endif

#define MLMX_RNG_MAX_TRIES 10000

typedef struct mlmx_rng {
    uint32_t key[2]; /* seed low, high */
    uint32_t ctr[4]; /* replicate low, high; stream; next block index */
    uint32_t buf[4]; /* the current block's output */
    int avail;       /* words of buf not yet handed out (they are the last ones) */
} mlmx_rng;

/* ------------------------------------------------------------ Philox4x32 */

/* Philox4x32 with a given number of rounds (10 is the standard; 7 is also
 * in the published known-answer vectors). */
MLMX_HD void mlmx_philox4x32(int rounds, const uint32_t ctr[4], const uint32_t key[2],
                             uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < rounds; r++) {
        if (r > 0) { /* the Weyl key schedule */
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Philox4x32-10 block function: out = philox(ctr, key). */
MLMX_HD void mlmx_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    mlmx_philox4x32(10, ctr, key, out);
}

/* ------------------------------------------------------------ streams */

/* Stream keyed by (seed, replicate, stream), positioned at its start. */
MLMX_HD void mlmx_rng_init(mlmx_rng *r, uint64_t seed, uint64_t replicate, uint32_t stream)
{
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = (uint32_t)replicate;
    r->ctr[1] = (uint32_t)(replicate >> 32);
    r->ctr[2] = stream;
    r->ctr[3] = 0;
    for (int i = 0; i < 4; i++)
        r->buf[i] = 0;
    r->avail = 0;
}

/* Position the stream at the start of block `block` (word 4*block). */
MLMX_HD void mlmx_rng_seek(mlmx_rng *r, uint32_t block)
{
    r->ctr[3] = block;
    r->avail = 0;
}

/* The next 32-bit word of the stream. */
MLMX_HD uint32_t mlmx_rng_u32(mlmx_rng *r)
{
    if (r->avail <= 0) {
        mlmx_philox4x32_10(r->ctr, r->key, r->buf);
        r->ctr[3]++;
        r->avail = 4;
    }
    return r->buf[4 - r->avail--];
}

/* k * 2^-53 from the top 27 bits of a and the top 26 bits of b. */
MLMX_HD double mlmx_rngi_u53(uint32_t a, uint32_t b)
{
    uint64_t k = ((uint64_t)(a >> 5) << 26) | (uint64_t)(b >> 6);
    return (double)k * (1.0 / 9007199254740992.0);
}

/* Uniform on (0,1): k * 2^-53, k uniform on 1 .. 2^53-1 (two words per
 * try; k = 0 is drawn again, which happens with probability 2^-53). */
MLMX_HD double mlmx_rng_uniform(mlmx_rng *r)
{
    double u = 0.0;
    for (int t = 0; t < MLMX_RNG_MAX_TRIES && u == 0.0; t++) {
        uint32_t a = mlmx_rng_u32(r);
        uint32_t b = mlmx_rng_u32(r);
        u = mlmx_rngi_u53(a, b);
    }
    return u == 0.0 ? NAN : u;
}

/* ------------------------------------------------------------ normal */

#define MLMX_RNG_TWO_PI 6.283185307179586476925286766559
#define MLMX_RNG_LN_SQRT_2PI 0.918938533204672741780329736406

/* Box-Muller (1958): both outputs of one pair of uniforms. */
MLMX_HD void mlmx_rng_normal2(mlmx_rng *r, double out[2])
{
    double u1 = mlmx_rng_uniform(r);
    double u2 = mlmx_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    double th = MLMX_RNG_TWO_PI * u2;
    out[0] = rad * cos(th);
    out[1] = rad * sin(th);
}

/* N(0,1): the cosine output of Box-Muller (two uniforms per draw). */
MLMX_HD double mlmx_rng_normal(mlmx_rng *r)
{
    double u1 = mlmx_rng_uniform(r);
    double u2 = mlmx_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(MLMX_RNG_TWO_PI * u2);
}

/* ------------------------------------------------------------ gamma */

/* Marsaglia and Tsang's squeeze for shape d + 1/3 >= 1 (d = shape - 1/3). */
MLMX_HD double mlmx_rngi_gamma_mt(mlmx_rng *r, double shape)
{
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (int t = 0; t < MLMX_RNG_MAX_TRIES; t++) {
        double x = mlmx_rng_normal(r);
        double v = 1.0 + c * x;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        double u = mlmx_rng_uniform(r);
        double x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2)
            return d * v;
        if (log(u) < 0.5 * x2 + d * (1.0 - v + log(v)))
            return d * v;
    }
    return NAN;
}

/* Gamma(shape, scale 1). shape 0 gives 0 (the degenerate limit); negative
 * or non-finite shape gives NAN. */
MLMX_HD double mlmx_rng_gamma(mlmx_rng *r, double shape)
{
    if (!(shape >= 0.0) || !isfinite(shape))
        return NAN;
    if (shape == 0.0)
        return 0.0;
    if (shape >= 1.0)
        return mlmx_rngi_gamma_mt(r, shape);
    /* Gamma(a) = Gamma(a+1) U^(1/a) */
    double g = mlmx_rngi_gamma_mt(r, shape + 1.0);
    double u = mlmx_rng_uniform(r);
    return g * exp(log(u) / shape);
}

/* ------------------------------------------------------------ log pmfs */

/* Loader's stirlerr(n) = log(n!) - log(sqrt(2 pi n) (n/e)^n), integer n >= 1. */
MLMX_HD double mlmx_rngi_stirlerr(double n)
{
    if (n <= 15.0)
        return lgamma(n + 1.0) - (n + 0.5) * log(n) + n - MLMX_RNG_LN_SQRT_2PI;
    double nn = n * n;
    return (1.0 / 12.0 -
            (1.0 / 360.0 - (1.0 / 1260.0 - (1.0 / 1680.0 - (1.0 / 1188.0) / nn) / nn) / nn) / nn) /
           n;
}

/* Loader's bd0(x, m) = x log(x/m) + m - x, accurate when x is near m. */
MLMX_HD double mlmx_rngi_bd0(double x, double m)
{
    if (x == 0.0)
        return m;
    if (fabs(x - m) < 0.1 * (x + m)) {
        double v = (x - m) / (x + m);
        double s = (x - m) * v;
        double ej = 2.0 * x * v;
        double v2 = v * v;
        for (int j = 1; j < 100; j++) {
            ej *= v2;
            double s1 = s + ej / (double)(2 * j + 1);
            if (s1 == s)
                break;
            s = s1;
        }
        return s;
    }
    return x * log(x / m) + m - x;
}

/* log P(X = k) for X ~ Poisson(mu), integer k >= 0, mu > 0. */
MLMX_HD double mlmx_rngi_lpois(double k, double mu)
{
    if (k == 0.0)
        return -mu;
    return -mlmx_rngi_stirlerr(k) - mlmx_rngi_bd0(k, mu) - 0.5 * log(MLMX_RNG_TWO_PI * k);
}

/* log P(X = k) for X ~ Binomial(n, p), integer 0 <= k <= n, 0 < p < 1, q = 1-p. */
MLMX_HD double mlmx_rngi_lbinom(double k, double n, double p, double q)
{
    if (k == 0.0)
        return n * log1p(-p);
    if (k == n)
        return n * log(p);
    double nk = n - k;
    return mlmx_rngi_stirlerr(n) - mlmx_rngi_stirlerr(k) - mlmx_rngi_stirlerr(nk) -
           mlmx_rngi_bd0(k, n * p) - mlmx_rngi_bd0(nk, n * q) +
           0.5 * log(n / (MLMX_RNG_TWO_PI * k * nk));
}

/* ------------------------------------------------------------ Poisson */

/* Poisson(mu). mu = 0 gives 0; negative or non-finite mu gives NAN. */
MLMX_HD double mlmx_rng_poisson(mlmx_rng *r, double mu)
{
    if (!(mu >= 0.0) || !isfinite(mu))
        return NAN;
    if (mu == 0.0)
        return 0.0;
    if (mu < 10.0) {
        /* inversion by chop-down search from 0; stops when the pmf
         * underflows (k a few hundred at most) */
        double pk = exp(-mu);
        double u = mlmx_rng_uniform(r);
        double k = 0.0;
        while (u > pk && pk > 0.0) {
            u -= pk;
            k += 1.0;
            pk *= mu / k;
        }
        return k;
    }
    /* PTRS: transformed rejection with squeeze (Hormann 1993) */
    double smu = sqrt(mu);
    double b = 0.931 + 2.53 * smu;
    double a = -0.059 + 0.02483 * b;
    double linva = log(1.1239 + 1.1328 / (b - 3.4));
    double vr = 0.9277 - 3.6224 / (b - 2.0);
    for (int t = 0; t < MLMX_RNG_MAX_TRIES; t++) {
        double u = mlmx_rng_uniform(r) - 0.5;
        double v = mlmx_rng_uniform(r);
        double us = 0.5 - fabs(u);
        double k = floor((2.0 * a / us + b) * u + mu + 0.43);
        if (!(k >= 0.0) || !isfinite(k))
            continue;
        if (us >= 0.07 && v <= vr)
            return k;
        if (us < 0.013 && v > us)
            continue;
        if (log(v) + linva - log(a / (us * us) + b) <= mlmx_rngi_lpois(k, mu))
            return k;
    }
    return NAN;
}

/* ------------------------------------------------------------ binomial */

/* Binomial(n, p), 0 <= p <= 1 (p <= 1/2 after reflection). */
MLMX_HD double mlmx_rngi_binomial_low(mlmx_rng *r, double n, double p)
{
    double q = 1.0 - p;
    if (n * p < 10.0) {
        /* inversion by chop-down search from 0 */
        double rr = p / q;
        double pk = exp(n * log1p(-p));
        double u = mlmx_rng_uniform(r);
        double k = 0.0;
        while (u > pk && pk > 0.0 && k < n) {
            u -= pk;
            k += 1.0;
            pk *= rr * (n - k + 1.0) / k;
        }
        return k;
    }
    /* BTRS: transformed rejection with squeeze (Hormann 1993) */
    double spq = sqrt(n * p * q);
    double b = 1.15 + 2.53 * spq;
    double a = -0.0873 + 0.0248 * b + 0.01 * p;
    double c = n * p + 0.5;
    double alpha = (2.83 + 5.1 / b) * spq;
    double vr = 0.92 - 4.2 / b;
    double m = floor((n + 1.0) * p);
    double lfm = mlmx_rngi_lbinom(m, n, p, q);
    for (int t = 0; t < MLMX_RNG_MAX_TRIES; t++) {
        double u = mlmx_rng_uniform(r) - 0.5;
        double v = mlmx_rng_uniform(r);
        double us = 0.5 - fabs(u);
        double k = floor((2.0 * a / us + b) * u + c);
        if (!(k >= 0.0 && k <= n))
            continue;
        if (us >= 0.07 && v <= vr)
            return k;
        if (log(v * alpha / (a / (us * us) + b)) <= mlmx_rngi_lbinom(k, n, p, q) - lfm)
            return k;
    }
    return NAN;
}

/* Binomial(n, p) for integer-valued 0 <= n <= 2^53 and 0 <= p <= 1;
 * anything else (NaN included) gives NAN. */
MLMX_HD double mlmx_rng_binomial(mlmx_rng *r, double n, double p)
{
    if (!(n >= 0.0 && n <= 9007199254740992.0) || floor(n) != n || !(p >= 0.0 && p <= 1.0))
        return NAN;
    if (n == 0.0 || p == 0.0)
        return 0.0;
    if (p == 1.0)
        return n;
    if (p > 0.5)
        return n - mlmx_rngi_binomial_low(r, n, 1.0 - p);
    return mlmx_rngi_binomial_low(r, n, p);
}

/* ------------------------------------------------------------ NB2, categorical */

/* Negative binomial, NB2 parametrization (mean mu, Var = mu + mu^2/size), as
 * Poisson(mu * G / size) with G ~ Gamma(size). mu = 0 or size = 0 gives 0;
 * negative or non-finite arguments give NAN (so does a mixing mean that
 * overflows). */
MLMX_HD double mlmx_rng_negbin(mlmx_rng *r, double mu, double size)
{
    if (!(mu >= 0.0) || !isfinite(mu) || !(size >= 0.0) || !isfinite(size))
        return NAN;
    if (mu == 0.0 || size == 0.0)
        return 0.0;
    double g = mlmx_rng_gamma(r, size);
    return mlmx_rng_poisson(r, mu * (g / size));
}

/* One of 0..k-1 by inversion of cdf[0..k-2] (increasing cumulative
 * probabilities, the last one, 1, implied): the first i with u < cdf[i],
 * else k-1. Always one uniform per draw. k <= 0 gives -1. */
MLMX_HD int mlmx_rng_categorical(mlmx_rng *r, int k, const double *cdf)
{
    if (k <= 0)
        return -1;
    double u = mlmx_rng_uniform(r);
    for (int i = 0; i < k - 1; i++)
        if (u < cdf[i])
            return i;
    return k - 1;
}

#endif
