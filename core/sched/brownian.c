/* Virtual Brownian tree: see brownian.h. Each node of the bisection has a
 * 64-bit key derived from its parent's (splitmix64), which seeds the normal
 * vector of its midpoint. The last two values asked for are cached: samplers
 * ask for (σ_i, σ_i+1) and then (σ_i+1, σ_i+2). */
#include "brownian.h"

#include <math.h>
#include <string.h>

#define BROWNIAN_DEPTH 20

struct df_brownian {
    uint64_t seed;
    double t0, t1;
    int64_t n;
    float *w_lo, *w_hi, *w_mid, *noise; /* scratch (n each) */
    float *root;                          /* W(t1) */
    struct {
        int valid;
        double t;
        float *w;
    } cache[2];
    int next_slot;
};

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t child_key(uint64_t key, int right)
{
    uint64_t s = key ^ (right ? 0x5851F42D4C957F2Dull : 0x14057B7EF767814Full);
    return splitmix64(&s);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* n standard normals from key (xoshiro256** seeded by splitmix64, Box–Muller in double). */
static void normals(uint64_t key, float *out, int64_t n)
{
    uint64_t sm = key, s[4];
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&sm);
    for (int64_t i = 0; i < n; i += 2) {
        double u[2];
        for (int j = 0; j < 2; j++) {
            uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
            s[2] ^= s[0];
            s[3] ^= s[1];
            s[1] ^= s[2];
            s[0] ^= s[3];
            s[2] ^= t;
            s[3] = rotl(s[3], 45);
            u[j] = ((r >> 11) + 0.5) * 0x1.0p-53; /* (0, 1) */
        }
        double rad = sqrt(-2 * log(u[0])), th = 2 * M_PI * u[1];
        out[i] = (float)(rad * cos(th));
        if (i + 1 < n) out[i + 1] = (float)(rad * sin(th));
    }
}

int df_brownian_new(uint64_t seed, double t0, double t1, int64_t numel, df_brownian **out)
{
    if (!out) return df_error(DF_EINVAL, "brownian tree: 'out' is NULL");
    *out = NULL;
    if (!(t0 < t1) || !isfinite(t0) || !isfinite(t1))
        return df_error(DF_EINVAL, "brownian tree: need a finite interval t0 < t1, got [%g, %g]", t0, t1);
    if (numel < 1) return df_error(DF_EINVAL, "brownian tree: numel %lld must be >= 1", (long long)numel);
    df_brownian *b = df_calloc(1, sizeof *b);
    if (!b) return DF_ENOMEM;
    b->seed = seed;
    b->t0 = t0;
    b->t1 = t1;
    b->n = numel;
    size_t sz = (size_t)numel * sizeof(float);
    b->w_lo = df_malloc(sz);
    b->w_hi = df_malloc(sz);
    b->w_mid = df_malloc(sz);
    b->noise = df_malloc(sz);
    b->root = df_malloc(sz);
    b->cache[0].w = df_malloc(sz);
    b->cache[1].w = df_malloc(sz);
    if (!b->w_lo || !b->w_hi || !b->w_mid || !b->noise || !b->root || !b->cache[0].w || !b->cache[1].w) {
        df_brownian_free(b);
        return DF_ENOMEM;
    }
    uint64_t s = seed;
    normals(splitmix64(&s), b->root, numel);
    float sd = (float)sqrt(t1 - t0);
    for (int64_t i = 0; i < numel; i++) b->root[i] *= sd;
    *out = b;
    return DF_OK;
}

void df_brownian_free(df_brownian *b)
{
    if (!b) return;
    df_free(b->w_lo);
    df_free(b->w_hi);
    df_free(b->w_mid);
    df_free(b->noise);
    df_free(b->root);
    df_free(b->cache[0].w);
    df_free(b->cache[1].w);
    df_free(b);
}

int df_brownian_value(df_brownian *b, double t, float *out)
{
    if (!b || !out) return df_error(DF_EINVAL, "brownian tree: NULL argument");
    if (!(t > b->t0)) t = b->t0;
    if (t > b->t1) t = b->t1;
    for (int c = 0; c < 2; c++)
        if (b->cache[c].valid && b->cache[c].t == t) {
            memcpy(out, b->cache[c].w, (size_t)b->n * sizeof(float));
            return DF_OK;
        }
    int64_t n = b->n;
    double a = b->t0, z = b->t1;
    float *lo = b->w_lo, *hi = b->w_hi, *mid = b->w_mid;
    memset(lo, 0, (size_t)n * sizeof(float));
    memcpy(hi, b->root, (size_t)n * sizeof(float));
    uint64_t s = b->seed ^ 0xA0761D6478BD642Full, key = splitmix64(&s);
    for (int depth = 0; depth < BROWNIAN_DEPTH && t != a && t != z; depth++) {
        double m = 0.5 * (a + z);
        /* bridge: W(m) | W(a), W(z) ~ N((W(a) + W(z)) / 2, (z - a) / 4) */
        normals(key, b->noise, n);
        float sd = (float)(0.5 * sqrt(z - a));
        for (int64_t i = 0; i < n; i++) mid[i] = 0.5f * (lo[i] + hi[i]) + sd * b->noise[i];
        int right = t >= m;
        key = child_key(key, right);
        float *tmp;
        if (right) {
            a = m;
            tmp = lo, lo = mid, mid = tmp;
        } else {
            z = m;
            tmp = hi, hi = mid, mid = tmp;
        }
    }
    double w = z > a ? (t - a) / (z - a) : 0;
    for (int64_t i = 0; i < n; i++) out[i] = (float)(lo[i] + w * (hi[i] - lo[i]));
    /* the three scratch buffers were permuted: keep owning all three */
    b->w_lo = lo;
    b->w_hi = hi;
    b->w_mid = mid;
    int c = b->next_slot;
    b->next_slot ^= 1;
    b->cache[c].valid = 1;
    b->cache[c].t = t;
    memcpy(b->cache[c].w, out, (size_t)n * sizeof(float));
    return DF_OK;
}

int df_brownian_increment(df_brownian *b, double ta, double tb, float *out)
{
    if (!b || !out) return df_error(DF_EINVAL, "brownian tree: NULL argument");
    int64_t n = b->n;
    if (ta == tb) {
        memset(out, 0, (size_t)n * sizeof(float));
        return DF_OK;
    }
    float *wa = df_malloc((size_t)n * sizeof(float));
    if (!wa) return DF_ENOMEM;
    int rc = df_brownian_value(b, ta, wa);
    if (!rc) rc = df_brownian_value(b, tb, out);
    if (!rc) {
        double inv = 1 / sqrt(fabs(tb - ta));
        for (int64_t i = 0; i < n; i++) out[i] = (float)((out[i] - wa[i]) * inv);
    }
    df_free(wa);
    return rc;
}
