/* CPU kernels for everything that is not a GEMM: norms, activations,
 * broadcasting arithmetic, softmax, data movement, reductions, embeddings.
 * Loops are written to auto-vectorise and are split across threads with
 * OpenMP when the work is large enough to pay for it. */
#include "cpu.h"

#include <math.h>
#include <string.h>

#define PAR_MIN 32768 /* elements below which a loop stays on one thread */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + df_cpu_expf(-x)); }

int df_cpu_fill(df_backend *be, df_tensor *x, float value)
{
    (void)be;
    int64_t n = df_tensor_numel(x);
    if (x->dtype != DF_F32 || value == 0.0f) {
        if (value != 0.0f) return df_error(DF_EDTYPE, "fill: only F32 tensors take a nonzero value");
        memset(df_tensor_data(x), 0, df_tensor_nbytes(x));
        return DF_OK;
    }
    float *d = df_cpu_f32_mut(x);
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) d[i] = value;
    return DF_OK;
}

/* ---- normalisation ---- */

/* Mean and 1/std of n values, two passes in double (stable for large means). */
static void moments(const float *x, int64_t n, double *mean, double *var)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    double m = s / (double)n, v = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - m;
        v += d * d;
    }
    *mean = m;
    *var = v / (double)n;
}

int df_cpu_group_norm(df_backend *be, const df_tensor *x, int groups, const df_tensor *gamma,
                      const df_tensor *beta, float eps, int fuse_silu, df_tensor *y)
{
    (void)be;
    int64_t n = x->shape[0], c = x->shape[1], spatial = 1;
    for (int i = 2; i < x->ndim; i++) spatial *= x->shape[i];
    int64_t cg = c / groups, gsize = cg * spatial;
    const float *xd = df_cpu_f32(x);
    float *yd = df_cpu_f32_mut(y);
    void *tg = NULL, *tb = NULL;
    size_t ng = 0, nb = 0;
    const float *g = gamma ? df_cpu_weight_f32(gamma, &tg, &ng) : NULL;
    const float *bt = beta ? df_cpu_weight_f32(beta, &tb, &nb) : NULL;
    if ((gamma && !g) || (beta && !bt)) {
        df_cpu_scratch_free(tg, ng);
        return DF_ENOMEM;
    }
#pragma omp parallel for schedule(dynamic, 1) if (n * c * spatial > PAR_MIN)
    for (int64_t ng_i = 0; ng_i < n * groups; ng_i++) {
        const float *src = xd + ng_i * gsize;
        float *dst = yd + ng_i * gsize;
        double mean, var;
        moments(src, gsize, &mean, &var);
        float m = (float)mean, rstd = (float)(1.0 / sqrt(var + eps));
        int64_t c0 = (ng_i % groups) * cg;
        for (int64_t ci = 0; ci < cg; ci++) {
            float a = rstd * (g ? g[c0 + ci] : 1.0f);
            float b = (bt ? bt[c0 + ci] : 0.0f) - m * a;
            const float *s = src + ci * spatial;
            float *d = dst + ci * spatial;
            if (fuse_silu) {
#pragma omp simd
                for (int64_t i = 0; i < spatial; i++) {
                    float v = s[i] * a + b;
                    d[i] = v * sigmoidf(v);
                }
            } else {
#pragma omp simd
                for (int64_t i = 0; i < spatial; i++) d[i] = s[i] * a + b;
            }
        }
    }
    df_cpu_scratch_free(tg, ng);
    df_cpu_scratch_free(tb, nb);
    return DF_OK;
}

int df_cpu_layer_norm(df_backend *be, const df_tensor *x, const df_tensor *gamma, const df_tensor *beta,
                      float eps, df_tensor *y)
{
    (void)be;
    int64_t c = x->shape[x->ndim - 1], rows = c ? df_tensor_numel(x) / c : 0;
    const float *xd = df_cpu_f32(x);
    float *yd = df_cpu_f32_mut(y);
    void *tg = NULL, *tb = NULL;
    size_t ng = 0, nb = 0;
    const float *g = gamma ? df_cpu_weight_f32(gamma, &tg, &ng) : NULL;
    const float *bt = beta ? df_cpu_weight_f32(beta, &tb, &nb) : NULL;
    if ((gamma && !g) || (beta && !bt)) {
        df_cpu_scratch_free(tg, ng);
        return DF_ENOMEM;
    }
#pragma omp parallel for schedule(static) if (rows * c > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *s = xd + r * c;
        float *d = yd + r * c;
        double mean, var;
        moments(s, c, &mean, &var);
        float m = (float)mean, rstd = (float)(1.0 / sqrt(var + eps));
#pragma omp simd
        for (int64_t i = 0; i < c; i++) {
            float v = (s[i] - m) * rstd;
            if (g) v *= g[i];
            if (bt) v += bt[i];
            d[i] = v;
        }
    }
    df_cpu_scratch_free(tg, ng);
    df_cpu_scratch_free(tb, nb);
    return DF_OK;
}

/* ---- activations ---- */

/* erf in plain arithmetic, so the GELU loops vectorise (glibc's erff does
 * not): |x| <= 1: x·P(x²); 1 < |x| < 4: 1 - exp(-x²)·Q(|x| - 2.5); beyond, ±1.
 * P and Q are least-squares fits on Chebyshev nodes in double (fit error
 * 1e-9 and 2e-8, below float rounding); worst error ~1e-7 absolute. */
static inline float erf_approx(float x)
{
    float a = x < 0 ? -x : x, x2 = x * x;
    float p = 7.933351374e-05f;
    p = p * x2 - 8.034809430e-04f;
    p = p * x2 + 5.191214848e-03f;
    p = p * x2 - 2.685539800e-02f;
    p = p * x2 + 1.128362570e-01f;
    p = p * x2 - 3.761262988e-01f;
    p = p * x2 + 1.128379167e+00f;
    float u = a - 2.5f, q = 1.6718429396e-06f;
    q = q * u - 6.3862509684e-06f;
    q = q * u + 1.4353454228e-05f;
    q = q * u - 5.3585065370e-05f;
    q = q * u + 2.1297244482e-04f;
    q = q * u - 7.3899866585e-04f;
    q = q * u + 2.4659821013e-03f;
    q = q * u - 7.9993450071e-03f;
    q = q * u + 2.4938203800e-02f;
    q = q * u - 7.4347601010e-02f;
    q = q * u + 2.1080635753e-01f;
    float tail = 1.0f - q * df_cpu_expf(-x2);
    tail = a >= 4.0f ? 1.0f : tail;
    tail = x < 0 ? -tail : tail;
    return a <= 1.0f ? x * p : tail;
}

static inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erf_approx(x * 0.70710678118654752f)); }

/* 0.5·x·(1 + tanh(z)) = x·σ(2z): the same function without tanhf. */
static inline float gelu_tanh(float x)
{
    const float k = 0.79788456080286536f; /* sqrt(2/pi) */
    return x * sigmoidf(2.0f * k * (x + 0.044715f * x * x * x));
}

int df_cpu_unary(df_backend *be, df_unary_op op, const df_tensor *x, df_tensor *y)
{
    (void)be;
    int64_t n = df_tensor_numel(x);
    const float *s = df_cpu_f32(x);
    float *d = df_cpu_f32_mut(y);
    switch (op) {
    case DF_SILU:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) d[i] = s[i] * sigmoidf(s[i]);
        break;
    case DF_GELU:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) d[i] = gelu_erf(s[i]);
        break;
    case DF_GELU_TANH:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) d[i] = gelu_tanh(s[i]);
        break;
    case DF_QUICK_GELU:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) d[i] = s[i] * sigmoidf(1.702f * s[i]);
        break;
    default:
        return df_error(DF_EINVAL, "unary: unknown op %d", (int)op);
    }
    return DF_OK;
}

int df_cpu_geglu(df_backend *be, const df_tensor *x, df_tensor *y)
{
    (void)be;
    int64_t c = y->shape[y->ndim - 1], rows = c ? df_tensor_numel(y) / c : 0;
    const float *s = df_cpu_f32(x);
    float *d = df_cpu_f32_mut(y);
#pragma omp parallel for schedule(static) if (rows * c > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *h = s + r * 2 * c, *gate = h + c;
        float *o = d + r * c;
#pragma omp simd
        for (int64_t i = 0; i < c; i++) o[i] = h[i] * gelu_erf(gate[i]);
    }
    return DF_OK;
}

/* ---- broadcasting arithmetic ---- */

static void strides4(const df_tensor *t, int nd, int64_t shape_out[4], int64_t st[4])
{
    /* Right-align t's dims in a 4-d frame; broadcast dims get stride 0. */
    int64_t s = 1;
    for (int i = 3; i >= 0; i--) {
        int ti = t->ndim - (4 - i);
        int64_t dim = ti >= 0 ? t->shape[ti] : 1;
        st[i] = dim == 1 ? 0 : s;
        s *= dim;
    }
    (void)nd;
    (void)shape_out;
}

static inline float apply(df_binary_op op, float a, float b)
{
    switch (op) {
    case DF_ADD: return a + b;
    case DF_SUB: return a - b;
    case DF_MUL: return a * b;
    default: return a / b;
    }
}

int df_cpu_binary(df_backend *be, df_binary_op op, const df_tensor *a, const df_tensor *b, df_tensor *y)
{
    (void)be;
    const float *ad = df_cpu_f32(a), *bd = df_cpu_f32(b);
    float *yd = df_cpu_f32_mut(y);
    int64_t n = df_tensor_numel(y);
    if (df_tensor_same_shape(a, b)) {
#define FLAT(OPX)                                                                                  \
    _Pragma("omp parallel for simd schedule(static) if (n > PAR_MIN)") for (int64_t i = 0; i < n; i++) \
        yd[i] = ad[i] OPX bd[i];
        switch (op) {
        case DF_ADD: FLAT(+) break;
        case DF_SUB: FLAT(-) break;
        case DF_MUL: FLAT(*) break;
        default: FLAT(/) break;
        }
#undef FLAT
        return DF_OK;
    }
    int64_t ys[4], sa[4], sb[4];
    for (int i = 0; i < 4; i++) {
        int yi = y->ndim - (4 - i);
        ys[i] = yi >= 0 ? y->shape[yi] : 1;
    }
    strides4(a, 4, ys, sa);
    strides4(b, 4, ys, sb);
    int64_t outer = ys[0] * ys[1] * ys[2], inner = ys[3];
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        int64_t i2 = o % ys[2], i1 = (o / ys[2]) % ys[1], i0 = o / (ys[2] * ys[1]);
        const float *pa = ad + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        const float *pb = bd + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        float *py = yd + o * inner;
        int64_t ia = sa[3], ib = sb[3];
        for (int64_t i = 0; i < inner; i++) py[i] = apply(op, pa[i * ia], pb[i * ib]);
    }
    return DF_OK;
}

int df_cpu_scale(df_backend *be, const df_tensor *x, float s, float bias, df_tensor *y)
{
    (void)be;
    int64_t n = df_tensor_numel(x);
    const float *xd = df_cpu_f32(x);
    float *yd = df_cpu_f32_mut(y);
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) yd[i] = xd[i] * s + bias;
    return DF_OK;
}

/* ---- softmax ---- */

void df_cpu_softmax_rows(float *x, int64_t rows, int64_t n, float scale)
{
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * n;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int64_t i = 0; i < n; i++) mx = row[i] > mx ? row[i] : mx;
        float sum = 0, ms = mx * scale;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < n; i++) {
            float e = df_cpu_expf(row[i] * scale - ms);
            row[i] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) row[i] *= inv;
    }
}

int df_cpu_softmax(df_backend *be, const df_tensor *x, float scale, df_tensor *y)
{
    (void)be;
    int64_t n = x->shape[x->ndim - 1], rows = n ? df_tensor_numel(x) / n : 0;
    float *yd = df_cpu_f32_mut(y);
    memcpy(yd, df_cpu_f32(x), df_tensor_nbytes(x));
    if (scale < 0) { /* the max trick needs max of x·scale; flip the sign once */
#pragma omp parallel for simd schedule(static) if (rows * n > PAR_MIN)
        for (int64_t i = 0; i < rows * n; i++) yd[i] = -yd[i];
        scale = -scale;
    }
#pragma omp parallel for schedule(static) if (rows * n > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) df_cpu_softmax_rows(yd + r * n, 1, n, scale);
    return DF_OK;
}

/* ---- data movement ---- */

int df_cpu_upsample_nearest2x(df_backend *be, const df_tensor *x, df_tensor *y)
{
    (void)be;
    int64_t planes = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    const float *xd = df_cpu_f32(x);
    float *yd = df_cpu_f32_mut(y);
#pragma omp parallel for schedule(static) if (planes * h * w > PAR_MIN / 4)
    for (int64_t p = 0; p < planes; p++) {
        for (int64_t i = 0; i < h; i++) {
            const float *s = xd + (p * h + i) * w;
            float *d0 = yd + (p * 2 * h + 2 * i) * 2 * w;
            for (int64_t j = 0; j < w; j++) d0[2 * j] = d0[2 * j + 1] = s[j];
            memcpy(d0 + 2 * w, d0, (size_t)(2 * w) * sizeof(float));
        }
    }
    return DF_OK;
}

int df_cpu_copy_dim(df_backend *be, const df_tensor *x, int dim, int64_t offset, int into, df_tensor *y)
{
    (void)be;
    /* View both as (outer, dim, inner). */
    const df_tensor *big = into ? y : x, *small = into ? x : y;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= small->shape[i];
    for (int i = dim + 1; i < small->ndim; i++) inner *= small->shape[i];
    size_t es = df_dtype_size(x->dtype);
    size_t chunk = (size_t)(small->shape[dim] * inner) * es;
    size_t big_row = (size_t)(big->shape[dim] * inner) * es, off = (size_t)(offset * inner) * es;
    char *bd = df_tensor_data(big), *sd = df_tensor_data(small);
    for (int64_t o = 0; o < outer; o++) {
        char *bp = bd + (size_t)o * big_row + off, *sp = sd + (size_t)o * chunk;
        if (into)
            memcpy(bp, sp, chunk);
        else
            memcpy(sp, bp, chunk);
    }
    return DF_OK;
}

int df_cpu_permute(df_backend *be, const df_tensor *x, const int *perm, df_tensor *y)
{
    (void)be;
    int nd = x->ndim;
    int64_t xst[DF_MAX_DIMS], st[4] = {0, 0, 0, 0}, ys[4] = {1, 1, 1, 1};
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        xst[i] = s;
        s *= x->shape[i];
    }
    for (int i = 0; i < nd; i++) { /* right-align in a 4-d frame */
        st[4 - nd + i] = xst[perm[i]];
        ys[4 - nd + i] = y->shape[i];
    }
    size_t es = df_dtype_size(x->dtype);
    const char *xd = df_tensor_data(x);
    char *yd = df_tensor_data(y);
    int64_t outer = ys[0] * ys[1] * ys[2];
#pragma omp parallel for schedule(static) if (df_tensor_numel(x) > PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        int64_t i2 = o % ys[2], i1 = (o / ys[2]) % ys[1], i0 = o / (ys[2] * ys[1]);
        int64_t base = i0 * st[0] + i1 * st[1] + i2 * st[2];
        char *d = yd + (size_t)(o * ys[3]) * es;
        if (es == 4) {
            const float *sx = (const float *)xd;
            float *dy = (float *)d;
            for (int64_t j = 0; j < ys[3]; j++) dy[j] = sx[base + j * st[3]];
        } else {
            for (int64_t j = 0; j < ys[3]; j++) memcpy(d + (size_t)j * es, xd + (size_t)(base + j * st[3]) * es, es);
        }
    }
    return DF_OK;
}

int df_cpu_reduce(df_backend *be, df_reduce_op op, const df_tensor *x, int dim, int unbiased, df_tensor *y)
{
    (void)be;
    int64_t outer = 1, inner = 1, n = x->shape[dim];
    for (int i = 0; i < dim; i++) outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
    const float *xd = df_cpu_f32(x);
    float *yd = df_cpu_f32_mut(y);
#pragma omp parallel for schedule(static) if (df_tensor_numel(x) > PAR_MIN)
    for (int64_t o = 0; o < outer * inner; o++) {
        const float *s = xd + (o / inner) * n * inner + (o % inner);
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += s[i * inner];
        double mean = n ? sum / (double)n : NAN;
        if (op == DF_REDUCE_MEAN) {
            yd[o] = (float)mean;
            continue;
        }
        double v = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = s[i * inner] - mean;
            v += d * d;
        }
        int64_t den = unbiased ? n - 1 : n;
        yd[o] = den > 0 ? (float)(v / (double)den) : NAN;
    }
    return DF_OK;
}

/* ---- embeddings and modulation ---- */

int df_cpu_timestep_embedding(df_backend *be, const df_tensor *t, int flip_sin_to_cos, float shift, float scale,
                              float max_period, df_tensor *y)
{
    (void)be;
    int64_t n = t->shape[0], dim = y->shape[1], half = dim / 2;
    const float *td = df_cpu_f32(t);
    float *yd = df_cpu_f32_mut(y);
    /* Frequencies and arguments in double: the exact value of the formula.
     * diffusers computes it in f32, which at t near 1000 is off by up to ~6e-5
     * (its rounding of t·freq); the weights cannot tell the difference. */
    for (int64_t r = 0; r < n; r++) {
        float *row = yd + r * dim;
        for (int64_t i = 0; i < half; i++) {
            double freq = exp(-log((double)max_period) * (double)i / ((double)half - (double)shift));
            double arg = (double)scale * (double)td[r] * freq;
            float sv = (float)sin(arg), cv = (float)cos(arg);
            row[i] = flip_sin_to_cos ? cv : sv;
            row[half + i] = flip_sin_to_cos ? sv : cv;
        }
        if (dim % 2) row[dim - 1] = 0.0f;
    }
    return DF_OK;
}

int df_cpu_modulate(df_backend *be, const df_tensor *x, const df_tensor *shift, const df_tensor *scale,
                    df_tensor *y)
{
    (void)be;
    int64_t b = x->shape[0], n = x->shape[1], c = x->shape[2];
    const float *xd = df_cpu_f32(x), *sh = df_cpu_f32(shift), *sc = df_cpu_f32(scale);
    float *yd = df_cpu_f32_mut(y);
#pragma omp parallel for schedule(static) if (b * n * c > PAR_MIN)
    for (int64_t r = 0; r < b * n; r++) {
        const float *s = xd + r * c, *shb = sh + (r / n) * c, *scb = sc + (r / n) * c;
        float *d = yd + r * c;
#pragma omp simd
        for (int64_t i = 0; i < c; i++) d[i] = s[i] * (1.0f + scb[i]) + shb[i];
    }
    return DF_OK;
}

int df_cpu_cast(df_backend *be, const df_tensor *x, df_tensor *y)
{
    (void)be;
    int64_t n = df_tensor_numel(x);
    if (x->dtype == y->dtype) {
        memcpy(df_tensor_data(y), df_tensor_data(x), df_tensor_nbytes(x));
        return DF_OK;
    }
    if (x->dtype == DF_F32) return df_convert_from_f32(y->dtype, df_cpu_f32(x), df_tensor_data(y), n);
    if (y->dtype == DF_F32) return df_convert_to_f32(x->dtype, df_tensor_data(x), df_cpu_f32_mut(y), n);
    /* F16 <-> BF16 through f32, in chunks. */
    float buf[1024];
    size_t xs = df_dtype_size(x->dtype), ys = df_dtype_size(y->dtype);
    for (int64_t i = 0; i < n; i += 1024) {
        int64_t m = n - i < 1024 ? n - i : 1024;
        df_convert_to_f32(x->dtype, (const char *)df_tensor_data(x) + (size_t)i * xs, buf, m);
        df_convert_from_f32(y->dtype, buf, (char *)df_tensor_data(y) + (size_t)i * ys, m);
    }
    return DF_OK;
}
