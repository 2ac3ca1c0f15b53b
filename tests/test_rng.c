/* Random noise: every generator bit-identical to its reference on every case
 * of tests/fixtures/rng.safetensors (torch's CPU kernels, tools/philox_ref.py),
 * the raw generators against published known answers, the Philox uniform
 * against exact arithmetic (no fused multiply-add may creep in), moments of a
 * million samples, reseeding, names and argument errors. */
#include "rng.h"
#include "rng_internal.h"
#include "testutil.h"

#include <inttypes.h>

/* ---- fixtures ---- */

/* Metadata "kind=<kind> seed=<seed> sizes=<n1>,<n2>,...": consecutive randn
 * calls on one generator whose outputs the tensor holds back to back. */
typedef struct {
    char kind[32];
    uint64_t seed;
    int ncalls;
    int64_t sizes[8];
} rng_case;

static void parse_case(const char *name, const char *meta, rng_case *c)
{
    cr_assert_not_null(meta, "%s: no metadata entry", name);
    memset(c, 0, sizeof *c);
    const char *k = strstr(meta, "kind="), *s = strstr(meta, "seed="), *z = strstr(meta, "sizes=");
    cr_assert(k && s && z, "%s: bad metadata \"%s\"", name, meta);
    k += 5;
    size_t kl = strcspn(k, " ");
    cr_assert(kl < sizeof c->kind, "%s: kind too long", name);
    memcpy(c->kind, k, kl);
    c->seed = strtoull(s + 5, NULL, 10);
    for (const char *p = z + 6; *p && *p != ' ';) {
        cr_assert(c->ncalls < 8, "%s: too many calls", name);
        char *end;
        c->sizes[c->ncalls++] = strtoll(p, &end, 10);
        cr_assert(end != p, "%s: bad sizes in \"%s\"", name, meta);
        p = *end == ',' ? end + 1 : end;
    }
}

/* memcmp of n floats; on a difference logs the first index and both values
 * and returns false. */
static bool same_bits(const char *what, const float *got, const float *want, int64_t n)
{
    if (!memcmp(got, want, (size_t)n * sizeof(float))) return true;
    int64_t i = 0;
    while (!memcmp(&got[i], &want[i], sizeof(float))) i++;
    int64_t count = 0;
    for (int64_t j = i; j < n; j++) count += memcmp(&got[j], &want[j], sizeof(float)) != 0;
    cr_log_error("%s: %" PRId64 " of %" PRId64 " values differ; first at %" PRId64 ": got %.9g (%a), expected %.9g (%a)",
                 what, count, n, i, (double)got[i], (double)got[i], (double)want[i], (double)want[i]);
    return false;
}

/* FNV-1a 64 over the float bit patterns as 32-bit words (gen_rng_fixtures.py). */
static uint64_t fnv1a(const float *v, int64_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (int64_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &v[i], sizeof w);
        h = (h ^ w) * UINT64_C(0x100000001b3);
    }
    return h;
}

/* A ".digest" entry: one call too big to store, as a hash per block. */
static bool check_digest(df_safetensors *st, const df_st_info *info, const rng_case *c, df_rng_kind kind)
{
    const char *block_s = strstr(df_safetensors_metadata(st, info->name), "block=");
    cr_assert(block_s && c->ncalls == 1 && info->dtype == DF_I64, "%s: bad digest entry", info->name);
    int64_t block = strtoll(block_s + 6, NULL, 10), n = c->sizes[0];
    int64_t nblocks = (int64_t)(info->nbytes / sizeof(uint64_t));
    cr_assert(block > 0 && nblocks * block == n, "%s: %" PRId64 " blocks of %" PRId64, info->name, nblocks, block);
    float *got = malloc((size_t)n * sizeof(float));
    cr_assert_not_null(got);
    df_rng *r = df_rng_new(kind, c->seed);
    cr_assert_eq(df_rng_randn(r, got, n), DF_OK, "%s", df_last_error());
    const char *want = df_safetensors_data(st, info);
    int64_t bad = 0, first = -1;
    for (int64_t b = 0; b < nblocks; b++) {
        uint64_t w;
        memcpy(&w, want + b * (int64_t)sizeof w, sizeof w);
        if (fnv1a(got + b * block, block) != w) {
            bad++;
            if (first < 0) first = b;
        }
    }
    if (bad)
        cr_log_error("%s: %" PRId64 " of %" PRId64 " blocks differ; first: values [%" PRId64 ", %" PRId64
                     ") (regenerate with torch to see them)",
                     info->name, bad, nblocks, first * block, (first + 1) * block);
    df_rng_free(r);
    free(got);
    return bad == 0;
}

/* Every fixture tensor of `kind`: df_rng_randn call by call, and for a single
 * call also df_rng_randn_tensor on a tensor of the fixture's shape. */
static void check_fixtures(const char *kind, int min_cases)
{
    int k = df_rng_kind_from_name(kind);
    cr_assert_geq(k, 0, "kind %s", kind);
    df_safetensors *st = fx_open("rng.safetensors");
    size_t kl = strlen(kind);
    int cases = 0, failed = 0;
    for (int i = 0; i < df_safetensors_count(st); i++) {
        const df_st_info *info = df_safetensors_info(st, i);
        if (strncmp(info->name, kind, kl) || info->name[kl] != '.') continue;
        rng_case c;
        parse_case(info->name, df_safetensors_metadata(st, info->name), &c);
        cr_assert_str_eq(c.kind, kind, "%s", info->name);
        cases++;
        if (strstr(info->name, ".digest")) {
            failed += !check_digest(st, info, &c, (df_rng_kind)k);
            continue;
        }
        cr_assert_eq(info->dtype, DF_F32, "%s", info->name);
        int64_t n = (int64_t)(info->nbytes / sizeof(float)), total = 0;
        for (int j = 0; j < c.ncalls; j++) total += c.sizes[j];
        cr_assert_eq(total, n, "%s: sizes add up to %" PRId64 ", tensor has %" PRId64, info->name, total, n);

        float *want = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
        cr_assert(want && got);
        memcpy(want, df_safetensors_data(st, info), (size_t)n * sizeof(float));

        df_rng *r = df_rng_new((df_rng_kind)k, c.seed);
        cr_assert_not_null(r, "%s", df_last_error());
        cr_assert_eq(df_rng_get_kind(r), (df_rng_kind)k);
        for (int j = 0, off = 0; j < c.ncalls; off += (int)c.sizes[j++])
            cr_assert_eq(df_rng_randn(r, got + off, c.sizes[j]), DF_OK, "%s", df_last_error());
        failed += !same_bits(info->name, got, want, n);

        if (c.ncalls == 1) {
            df_tensor *t = df_tensor_new(NULL, DF_F32, info->ndim, info->shape);
            cr_assert_not_null(t);
            df_rng_seed(r, c.seed);
            cr_assert_eq(df_rng_randn_tensor(r, t), DF_OK, "%s", df_last_error());
            char what[300];
            snprintf(what, sizeof what, "%s (randn_tensor)", info->name);
            failed += !same_bits(what, df_tensor_data(t), want, n);
            df_tensor_free(t);
        }
        df_rng_free(r);
        free(want);
        free(got);
    }
    df_safetensors_close(st);
    cr_log_info("%s: %d fixture cases", kind, cases);
    cr_assert_geq(cases, min_cases, "only %d %s cases in rng.safetensors", cases, kind);
    cr_assert_eq(failed, 0, "%d %s comparisons differ (see the log)", failed, kind);
}

Test(rng, cpu_matches_torch_avx2) { check_fixtures("cpu", 6); }

Test(rng, cpu_scalar_matches_torch_default) { check_fixtures("cpu-scalar", 6); }

Test(rng, cuda_matches_philox_reference) { check_fixtures("cuda", 6); }

/* ---- known answers ---- */

/* The C++ standard's check for std::mt19937: default seed 5489, the 10000th
 * output is 4123659995 (the first is 3499211612). */
Test(rng, mt19937_known_answer)
{
    df_mt19937 mt;
    df_mt19937_seed(&mt, 5489);
    cr_assert_eq(df_mt19937_next(&mt), 3499211612u);
    uint32_t v = 0;
    for (int i = 1; i < 10000; i++) v = df_mt19937_next(&mt);
    cr_assert_eq(v, 4123659995u);
}

/* Random123's known-answer vectors for Philox4x32-10. */
Test(rng, philox_known_answers)
{
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        df_philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int j = 0; j < 4; j++)
            cr_assert_eq(out[j], kat[i].out[j], "vector %zu word %d: %08x, expected %08x", i, j, out[j],
                         kat[i].out[j]);
    }
}

/* x * scale rounded to double, by integer arithmetic (round half to even), so
 * no compiler setting can fuse it with what follows. */
static double exact_product(uint32_t x, float scale)
{
    int e;
    float f = frexpf(scale, &e); /* scale = f * 2^e, f in [0.5, 1) */
    uint64_t m = (uint64_t)ldexpf(f, 24), p = (uint64_t)x * m;
    int shift = 0;
    while ((p >> shift) >= (UINT64_C(1) << 53)) shift++;
    uint64_t q = p >> shift;
    if (shift) {
        uint64_t rem = p & ((UINT64_C(1) << shift) - 1), half = UINT64_C(1) << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
    }
    return ldexp((double)q, shift + e - 24);
}

/* rng_philox.py rounds x * scale before adding scale / 2; a fused
 * multiply-add (what -ffp-contract=fast and -mfma would make of it) rounds
 * once and gives other doubles for many x. */
Test(rng, philox_uniform_is_not_fused)
{
    const float scales[2] = {(float)2.3283064e-10, (float)(2.3283064e-10 * 6.2831855)};
    int fused_differs = 0;
    uint32_t x = 12345;
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 4096; i++) {
            x = x * 1664525u + 1013904223u;
            uint32_t xi = i == 0 ? 0 : i == 1 ? 0xffffffffu : x;
            double want = exact_product(xi, scales[s]) + (double)(scales[s] / 2.0f);
            double fused = fma((double)xi, (double)scales[s], (double)(scales[s] / 2.0f));
            fused_differs += fused != want;
            double got = df_philox_uniform(xi, scales[s]);
            cr_assert_eq(got, want, "x = %u: %a, expected %a%s", xi, got, want,
                         got == fused ? " (a fused multiply-add)" : "");
        }
    }
    cr_assert_gt(fused_differs, 100, "the check has no teeth: fused and unfused agree");
}

/* ---- properties ---- */

/* Mean and variance of 10^6 samples within 5 standard errors of 0 and 1. */
static void check_moments(df_rng_kind kind, int64_t call_size)
{
    const int64_t n = 1000000;
    float *v = malloc((size_t)n * sizeof(float));
    cr_assert_not_null(v);
    df_rng *r = df_rng_new(kind, 1234);
    cr_assert_not_null(r);
    for (int64_t i = 0; i < n; i += call_size)
        cr_assert_eq(df_rng_randn(r, v + i, n - i < call_size ? n - i : call_size), DF_OK);
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(isfinite(v[i]), "kind %d: value %" PRId64 " is %g", (int)kind, i, (double)v[i]);
        sum += v[i];
    }
    double mean = sum / (double)n;
    for (int64_t i = 0; i < n; i++) sq += (v[i] - mean) * (v[i] - mean);
    double var = sq / (double)(n - 1);
    double mean_tol = 5.0 / sqrt((double)n), var_tol = 5.0 * sqrt(2.0 / (double)(n - 1));
    cr_log_info("kind %d, calls of %" PRId64 ": mean %.3g, var %.6f", (int)kind, call_size, mean, var);
    cr_assert(fabs(mean) < mean_tol, "kind %d: mean %g, allowed +-%g", (int)kind, mean, mean_tol);
    cr_assert(fabs(var - 1.0) < var_tol, "kind %d: variance %g, allowed 1 +- %g", (int)kind, var, var_tol);
    df_rng_free(r);
    free(v);
}

Test(rng, moments_of_a_million)
{
    check_moments(DF_RNG_CPU, 1000000);
    check_moments(DF_RNG_CPU_SCALAR, 1000000);
    check_moments(DF_RNG_CUDA, 1000000);
    check_moments(DF_RNG_CPU, 7);     /* torch's double Box-Muller path */
    check_moments(DF_RNG_CUDA, 4000); /* many Philox offsets */
}

Test(rng, reseed_restarts_the_stream)
{
    const df_rng_kind kinds[] = {DF_RNG_CPU, DF_RNG_CPU_SCALAR, DF_RNG_CUDA};
    for (int k = 0; k < 3; k++) {
        df_rng *r = df_rng_new(kinds[k], 77);
        float a[45], b[45];
        cr_assert_eq(df_rng_randn(r, a, 1), DF_OK); /* CPU: leaves a cached half */
        cr_assert_eq(df_rng_randn(r, a + 1, 44), DF_OK);
        df_rng_seed(r, 77); /* must drop that cache too */
        cr_assert_eq(df_rng_randn(r, b, 1), DF_OK);
        cr_assert_eq(df_rng_randn(r, b + 1, 44), DF_OK);
        cr_assert(same_bits("reseed", b, a, 45), "kind %d", (int)kinds[k]);
        df_rng_free(r);
    }
}

/* torch.manual_seed keeps the low 32 bits on the CPU; the Philox key takes all 64. */
Test(rng, seed_width)
{
    float a[20], b[20];
    df_rng *r1 = df_rng_new(DF_RNG_CPU, (UINT64_C(1) << 40) + 5), *r2 = df_rng_new(DF_RNG_CPU, 5);
    df_rng_randn(r1, a, 20);
    df_rng_randn(r2, b, 20);
    cr_assert(same_bits("cpu seed 2^40+5 vs 5", a, b, 20));
    df_rng_free(r1);
    df_rng_free(r2);
    r1 = df_rng_new(DF_RNG_CUDA, (UINT64_C(1) << 40) + 5);
    r2 = df_rng_new(DF_RNG_CUDA, 5);
    df_rng_randn(r1, a, 20);
    df_rng_randn(r2, b, 20);
    cr_assert(memcmp(a, b, sizeof a), "cuda: seed 2^40+5 acted as 5");
    df_rng_free(r1);
    df_rng_free(r2);
}

Test(rng, kind_names)
{
    cr_assert_eq(df_rng_kind_from_name("cpu"), DF_RNG_CPU);
    cr_assert_eq(df_rng_kind_from_name("cpu-avx2"), DF_RNG_CPU);
    cr_assert_eq(df_rng_kind_from_name("cpu-scalar"), DF_RNG_CPU_SCALAR);
    cr_assert_eq(df_rng_kind_from_name("cuda"), DF_RNG_CUDA);
    cr_assert_eq(df_rng_kind_from_name("nv"), DF_RNG_CUDA);
    cr_assert_eq(df_rng_kind_from_name("CPU"), -1);
    cr_assert_eq(df_rng_kind_from_name("gpu"), -1);
    cr_assert_eq(df_rng_kind_from_name(""), -1);
    cr_assert_eq(df_rng_kind_from_name(NULL), -1);
}

Test(rng, argument_errors)
{
    df_clear_error();
    cr_assert_null(df_rng_new((df_rng_kind)7, 0));
    cr_assert(strstr(df_last_error(), "kind 7"), "%s", df_last_error());

    df_rng *r = df_rng_new(DF_RNG_CPU, 0);
    float v[4];
    cr_assert_eq(df_rng_randn(NULL, v, 4), DF_EINVAL);
    cr_assert_eq(df_rng_randn(r, v, -1), DF_EINVAL);
    cr_assert(strstr(df_last_error(), "negative"), "%s", df_last_error());
    cr_assert_eq(df_rng_randn(r, NULL, 4), DF_EINVAL);
    cr_assert_eq(df_rng_randn(r, NULL, 0), DF_OK);

    df_tensor *h = df_tensor_new(NULL, DF_F16, 1, (int64_t[]){4});
    cr_assert_eq(df_rng_randn_tensor(r, h), DF_EDTYPE);
    cr_assert(strstr(df_last_error(), "F16"), "%s", df_last_error());
    cr_assert_eq(df_rng_randn_tensor(r, NULL), DF_EINVAL);
    cr_assert_eq(df_rng_randn_tensor(NULL, h), DF_EINVAL);
    df_tensor_free(h);

    /* failed calls leave the stream where it was */
    float a[4], b[4];
    cr_assert_eq(df_rng_randn(r, a, 4), DF_OK);
    df_rng_seed(r, 0);
    cr_assert_eq(df_rng_randn(r, b, 4), DF_OK);
    cr_assert(same_bits("after errors", a, b, 4));
    df_rng_free(r);
    df_rng_free(NULL);
    df_rng_seed(NULL, 1);
}

Test(rng, out_of_memory)
{
    df_alloc_fail_after(1);
    df_rng *r = df_rng_new(DF_RNG_CUDA, 1);
    long made = df_alloc_fail_after(0);
    cr_assert_null(r);
    cr_assert_geq(made, 1);
    cr_assert_neq(df_last_error()[0], '\0');
}
