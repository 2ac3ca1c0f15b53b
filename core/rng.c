/* Seeded Gaussian noise that reproduces torch's generators bit for bit.
 *
 * Bit-exactness rests on doing every float operation the reference does, in
 * the same precision and order, and no other: so no multiply-add may be fused
 * behind our back (the AVX2 emulation calls fmaf exactly where torch's binary
 * has an FMA instruction). GCC ignores the STDC pragma (and warns), hence its
 * own spelling; -std=c11 already means -ffp-contract=off for GCC, and the one
 * place where fusing would change results (df_philox_uniform) also rounds
 * through a volatile, since clang's -ffp-contract=fast overrides any pragma.
 * test_rng checks that place against exact arithmetic. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* sincos / sincosf: the calls torch's build makes */
#endif

#include "rng.h"

#include "rng_internal.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

struct df_rng {
    df_rng_kind kind;
    uint64_t seed;
    /* CPU kinds: torch's CPUGeneratorImpl: an mt19937 and the spare value of
     * the double Box-Muller (torch keeps it in the generator; reseeding drops it). */
    df_mt19937 mt;
    bool has_spare;
    double spare;
    /* CUDA kind: Philox offset, one step per randn call. */
    uint64_t offset;
};

/* ---- kinds ---- */

static const struct {
    const char *name;
    df_rng_kind kind;
} kind_names[] = {
    {"cpu", DF_RNG_CPU},   {"cpu-avx2", DF_RNG_CPU}, {"cpu-scalar", DF_RNG_CPU_SCALAR},
    {"cuda", DF_RNG_CUDA}, {"nv", DF_RNG_CUDA},
};

int df_rng_kind_from_name(const char *name)
{
    if (!name) return -1;
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (!strcmp(kind_names[i].name, name)) return (int)kind_names[i].kind;
    return -1;
}

/* ---- mt19937 (torch's at::mt19937 is the standard generator) ---- */

void df_mt19937_seed(df_mt19937 *mt, uint32_t seed)
{
    mt->state[0] = seed;
    for (uint32_t i = 1; i < DF_MT19937_N; i++) {
        uint32_t prev = mt->state[i - 1];
        mt->state[i] = 1812433253u * (prev ^ (prev >> 30)) + i;
    }
    mt->next = DF_MT19937_N;
}

static void mt19937_twist(df_mt19937 *mt)
{
    uint32_t *s = mt->state;
    for (int i = 0; i < DF_MT19937_N; i++) {
        uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % DF_MT19937_N] & 0x7fffffffu);
        uint32_t v = s[(i + 397) % DF_MT19937_N] ^ (y >> 1);
        s[i] = (y & 1u) ? v ^ 0x9908b0dfu : v;
    }
    mt->next = 0;
}

uint32_t df_mt19937_next(df_mt19937 *mt)
{
    if (mt->next >= DF_MT19937_N) mt19937_twist(mt);
    uint32_t y = mt->state[mt->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* ---- CPU kinds: torch's normal_kernel ---- */

/* at::uniform_real_distribution<float>(0, 1): 24 random bits. */
static float uniform_f24(df_rng *r) { return (float)(df_mt19937_next(&r->mt) & 0xffffffu) * 0x1p-24f; }

/* at::uniform_real_distribution<double>(0, 1): 53 of random64()'s bits, where
 * random64 puts the first draw in the high word. */
static double uniform_d53(df_rng *r)
{
    uint64_t hi = df_mt19937_next(&r->mt);
    uint64_t lo = df_mt19937_next(&r->mt);
    return (double)(((hi << 32) | lo) & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
}

static const double two_pi_d = 6.283185307179586; /* 2 * c10::pi<double> */

static void sincos_d(double x, double *s, double *c)
{
#if defined(__GLIBC__)
    sincos(x, s, c);
#else
    *s = sin(x);
    *c = cos(x);
#endif
}

static void sincos_f(float x, float *s, float *c)
{
#if defined(__GLIBC__)
    sincosf(x, s, c);
#else
    *s = sinf(x);
    *c = cosf(x);
#endif
}

/* Fewer than 16 elements: at::normal_distribution<double> per element (u1 ->
 * angle, u2 -> radius), the sine half kept for the next draw; then a cast. */
static float normal_double(df_rng *r)
{
    const double mean = 0.0, std = 1.0;
    double ret;
    if (r->has_spare) {
        r->has_spare = false;
        ret = r->spare;
    } else {
        double u1 = uniform_d53(r);
        double u2 = uniform_d53(r);
        double radius = sqrt(-2.0 * log1p(-u2));
        double theta = two_pi_d * u1, s, c;
        sincos_d(theta, &s, &c);
        r->spare = radius * s;
        r->has_spare = true;
        ret = radius * c;
    }
    return (float)(ret * std + mean);
}

/* 16 or more: the uniforms are drawn first, then transformed 16 at a time by
 * one of these (d[j], d[j + 8]) -> two normals, j < 8. */
typedef void (*normal16_fn)(float *d);

/* torch's portable normal_fill_16<float>: float log / sincos from the C
 * library, the angle computed in double and rounded. */
static void normal16_scalar(float *d)
{
    const float mean = 0.0f, std = 1.0f;
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * logf(u1));
        float theta = (float)(two_pi_d * (double)u2);
        float s, c;
        sincos_f(theta, &s, &c);
        d[j] = radius * c * std + mean;
        d[j + 8] = radius * s * std + mean;
    }
}

/* torch's normal_fill_16_AVX2, one lane at a time. The log and sincos are
 * avx_mathfun.h's cephes polynomials as torch's x86-64 wheels compiled them:
 * GCC fused most multiply-adds into FMAs; every fmaf below is one of those
 * instructions and every other operation is a separately rounded one. The
 * constants are avx_mathfun's double literals rounded to float. */
static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static const float two_pi_f = (float)6.283185307179586; /* _mm256_set1_ps(2.0f * pi<double>) */

static const float log_sqrthf = (float)0.707106781186547524;
static const float log_p[9] = {
    (float)7.0376836292E-2,  (float)-1.1514610310E-1, (float)1.1676998740E-1,
    (float)-1.2420140846E-1, (float)1.4249322787E-1,  (float)-1.6668057665E-1,
    (float)2.0000714765E-1,  (float)-2.4999993993E-1, (float)3.3333331174E-1,
};
static const float log_q1 = (float)-2.12194440e-4;
static const float log_q2 = (float)0.693359375;

static const float minus_dp1 = (float)-0.78515625;
static const float minus_dp2 = (float)-2.4187564849853515625e-4;
static const float minus_dp3 = (float)-3.77489497744594108e-8;
static const float sincof_p[3] = {(float)-1.9515295891E-4, (float)8.3321608736E-3, (float)-1.6666654611E-1};
static const float coscof_p[3] = {(float)2.443315711809948E-005, (float)-1.388731625493765E-003,
                                  (float)4.166664568298827E-002};
static const float four_over_pi = (float)1.27323954473516;

/* log256_ps, one lane. */
static float avx2_log(float v)
{
    bool invalid = v <= 0.0f;            /* _CMP_LE_OS */
    float x = v > FLT_MIN ? v : FLT_MIN; /* max_ps(x, min_norm_pos) */
    uint32_t bits = f2u(x);
    int32_t exponent = (int32_t)(bits >> 23) - 0x7f;
    x = u2f((bits & ~0x7f800000u) | f2u(0.5f));
    float e = (float)exponent + 1.0f;

    bool below = x < log_sqrthf;
    float tmp = below ? x : 0.0f;
    x = x - 1.0f;
    e = e - (below ? 1.0f : 0.0f);
    float e_q1 = e * log_q1;
    x = x + tmp;

    float y = log_p[0];
    for (int i = 1; i < 9; i++) y = fmaf(y, x, log_p[i]);
    float z = x * x;
    y = y * x;
    y = fmaf(y, z, e_q1);
    y = fmaf(-0.5f, z, y);
    x = x + y;
    x = fmaf(e, log_q2, x);
    return invalid ? u2f(0xffffffffu) : x;
}

/* sincos256_ps, one lane, for 0 <= v < 2 pi (the angles normal16 makes). */
static void avx2_sincos(float v, float *sin_out, float *cos_out)
{
    uint32_t sign_sin = f2u(v) & 0x80000000u;
    float x = u2f(f2u(v) & 0x7fffffffu);

    int32_t j = (int32_t)(x * four_over_pi); /* cvttps2dq */
    j = (j + 1) & ~1;
    float y = (float)j;
    uint32_t swap_sin = ((uint32_t)j & 4u) << 29;
    bool sin_poly = (j & 2) == 0;
    uint32_t sign_cos = (~(uint32_t)(j - 2) & 4u) << 29;
    sign_sin ^= swap_sin;

    /* x - y * pi/4 in three parts */
    x = fmaf(y, minus_dp1, x);
    x = fmaf(y, minus_dp2, x);
    x = fmaf(y, minus_dp3, x);

    float z = x * x;
    float yc = coscof_p[0];
    yc = fmaf(yc, z, coscof_p[1]);
    yc = fmaf(yc, z, coscof_p[2]);
    float half_z = z * 0.5f;
    yc = yc * z;
    yc = fmaf(yc, z, -half_z);
    yc = yc + 1.0f;

    float ys = sincof_p[0];
    ys = fmaf(ys, z, sincof_p[1]);
    ys = fmaf(ys, z, sincof_p[2]);
    ys = ys * z;
    ys = fmaf(ys, x, x);

    /* both polynomials are kept; the masks pick and the subtractions clear */
    float sin_from_s = sin_poly ? ys : 0.0f;
    float sin_from_c = sin_poly ? 0.0f : yc;
    ys = ys - sin_from_s;
    yc = yc - sin_from_c;
    *sin_out = u2f(f2u(sin_from_c + sin_from_s) ^ sign_sin);
    *cos_out = u2f(f2u(yc + ys) ^ sign_cos);
}

static void normal16_avx2(float *d)
{
    const float mean = 0.0f, std = 1.0f;
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float theta = two_pi_f * d[j + 8];
        float radius = sqrtf(-2.0f * avx2_log(u1));
        float s, c;
        avx2_sincos(theta, &s, &c);
        d[j] = fmaf(radius * c, std, mean);
        d[j + 8] = fmaf(radius * s, std, mean);
    }
}

static void cpu_randn(df_rng *r, float *out, int64_t n)
{
    if (n < 16) {
        for (int64_t i = 0; i < n; i++) out[i] = normal_double(r);
        return;
    }
    normal16_fn fill16 = r->kind == DF_RNG_CPU ? normal16_avx2 : normal16_scalar;
    for (int64_t i = 0; i < n; i++) out[i] = uniform_f24(r);
    for (int64_t i = 0; i + 16 <= n; i += 16) fill16(out + i);
    if (n % 16) {
        /* torch redraws the last 16 (overlapping the last full block) */
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform_f24(r);
        fill16(tail);
    }
}

/* ---- CUDA kind: Philox4x32-10 as AUTOMATIC1111's rng_philox.py uses it ---- */

void df_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)c0 * 0xD2511F53u;
        uint64_t p1 = (uint64_t)c2 * 0xCD9E8D57u;
        c0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        c1 = (uint32_t)p1;
        c2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c3 = (uint32_t)p0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* rng_philox.py's float32 constants (curand's 2^-32 and 2^-32 * 2 pi); numpy
 * promotes uint32 * float32-array to float64, so the rest runs in double. */
static const float philox_scale_u = (float)2.3283064e-10;
static const float philox_scale_v = (float)(2.3283064e-10 * 6.2831855);

double df_philox_uniform(uint32_t x, float scale)
{
    /* The volatile store rounds the product even where a compiler is told to
     * fuse regardless of pragmas (clang -ffp-contract=fast). */
    volatile double product = (double)x * (double)scale;
    return product + (double)(scale / 2.0f);
}

static void cuda_randn(df_rng *r, float *out, int64_t n)
{
    /* counter (offset, 0, i, 0) per element i; the high words only matter past
     * 2^32 calls or elements, where rng_philox.py stops. */
    const uint32_t key[2] = {(uint32_t)r->seed, (uint32_t)(r->seed >> 32)};
    for (int64_t i = 0; i < n; i++) {
        const uint32_t ctr[4] = {(uint32_t)r->offset, (uint32_t)(r->offset >> 32), (uint32_t)i,
                                 (uint32_t)((uint64_t)i >> 32)};
        uint32_t g[4];
        df_philox4x32_10(ctr, key, g);
        double u = df_philox_uniform(g[0], philox_scale_u);
        double v = df_philox_uniform(g[1], philox_scale_v);
        out[i] = (float)(sqrt(-2.0 * log(u)) * sin(v));
    }
    r->offset++;
}

/* ---- API ---- */

df_rng *df_rng_new(df_rng_kind kind, uint64_t seed)
{
    if (kind != DF_RNG_CPU && kind != DF_RNG_CPU_SCALAR && kind != DF_RNG_CUDA) {
        df_error(DF_EINVAL, "df_rng_new: unknown generator kind %d", (int)kind);
        return NULL;
    }
    df_rng *r = df_malloc(sizeof *r);
    if (!r) return NULL;
    r->kind = kind;
    df_rng_seed(r, seed);
    return r;
}

void df_rng_free(df_rng *r) { df_free(r); }

void df_rng_seed(df_rng *r, uint64_t seed)
{
    if (!r) return;
    r->seed = seed;
    df_mt19937_seed(&r->mt, (uint32_t)seed);
    r->has_spare = false;
    r->spare = 0.0;
    r->offset = 0;
}

df_rng_kind df_rng_get_kind(const df_rng *r) { return r ? r->kind : DF_RNG_CPU; }

int df_rng_randn(df_rng *r, float *out, int64_t n)
{
    if (!r) return df_error(DF_EINVAL, "df_rng_randn: no generator");
    if (n < 0) return df_error(DF_EINVAL, "df_rng_randn: negative count %lld", (long long)n);
    if (!out && n > 0) return df_error(DF_EINVAL, "df_rng_randn: no output buffer");
    if (r->kind == DF_RNG_CUDA)
        cuda_randn(r, out, n);
    else
        cpu_randn(r, out, n);
    return DF_OK;
}

int df_rng_randn_tensor(df_rng *r, df_tensor *t)
{
    if (!r || !t) return df_error(DF_EINVAL, "df_rng_randn_tensor: %s", r ? "no tensor" : "no generator");
    if (t->dtype != DF_F32)
        return df_error(DF_EDTYPE, "df_rng_randn_tensor: tensor is %s, randn fills F32", df_dtype_name(t->dtype));
    int64_t n = df_tensor_numel(t);
    float *host = df_tensor_data(t);
    if (host || n == 0) return df_rng_randn(r, host, n);
    /* device memory: generate on the host, then upload (the buffer first, so a
     * failed allocation leaves the generator where it was) */
    size_t nbytes = df_tensor_nbytes(t);
    float *tmp = df_malloc(nbytes);
    if (!tmp) return DF_ENOMEM;
    int rc = df_rng_randn(r, tmp, n);
    if (rc == DF_OK) rc = df_tensor_write(t, tmp, nbytes);
    df_free(tmp);
    return rc;
}
