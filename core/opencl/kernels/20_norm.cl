/* Normalisation and softmax: one work-group of DF_WG work-items per row or
 * group, reductions in local memory, two passes for the variance. */
#define DF_WG 64

inline float df_wg_sum(__local float *tmp, float v)
{
    int l = get_local_id(0);
    tmp[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = DF_WG / 2; s > 0; s >>= 1) {
        if (l < s) tmp[l] += tmp[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = tmp[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

inline float df_wg_max(__local float *tmp, float v)
{
    int l = get_local_id(0);
    tmp[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = DF_WG / 2; s > 0; s >>= 1) {
        if (l < s) tmp[l] = fmax(tmp[l], tmp[l + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = tmp[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* One group per (n, g): x (N, C, S) viewed as N·groups blocks of cg·S values. */
__kernel void df_group_norm(__global const float *x, int xo, __global float *y, int yo, __global const float *gamma,
                            int go, __global const float *beta, int bo, int has_gamma, int has_beta, int groups,
                            int cg, int spatial, float eps, int silu)
{
    __local float tmp[DF_WG];
    int blk = get_group_id(0), l = get_local_id(0);
    int size = cg * spatial;
    __global const float *src = x + xo + blk * size;
    __global float *dst = y + yo + blk * size;
    float s = 0.0f;
    for (int i = l; i < size; i += DF_WG) s += src[i];
    float mean = df_wg_sum(tmp, s) / (float)size;
    float v = 0.0f;
    for (int i = l; i < size; i += DF_WG) {
        float d = src[i] - mean;
        v += d * d;
    }
    float rstd = rsqrt(df_wg_sum(tmp, v) / (float)size + eps);
    int c0 = (blk % groups) * cg;
    for (int i = l; i < size; i += DF_WG) {
        int c = c0 + i / spatial;
        float a = rstd * (has_gamma ? gamma[go + c] : 1.0f);
        float r = (src[i] - mean) * a + (has_beta ? beta[bo + c] : 0.0f);
        dst[i] = silu ? r * df_sigmoid(r) : r;
    }
}

/* One group per row of length c. */
__kernel void df_layer_norm(__global const float *x, int xo, __global float *y, int yo, __global const float *gamma,
                            int go, __global const float *beta, int bo, int has_gamma, int has_beta, int c, float eps)
{
    __local float tmp[DF_WG];
    int row = get_group_id(0), l = get_local_id(0);
    __global const float *src = x + xo + row * c;
    __global float *dst = y + yo + row * c;
    float s = 0.0f;
    for (int i = l; i < c; i += DF_WG) s += src[i];
    float mean = df_wg_sum(tmp, s) / (float)c;
    float v = 0.0f;
    for (int i = l; i < c; i += DF_WG) {
        float d = src[i] - mean;
        v += d * d;
    }
    float rstd = rsqrt(df_wg_sum(tmp, v) / (float)c + eps);
    for (int i = l; i < c; i += DF_WG) {
        float r = (src[i] - mean) * rstd;
        if (has_gamma) r *= gamma[go + i];
        if (has_beta) r += beta[bo + i];
        dst[i] = r;
    }
}

/* softmax(x·scale) over rows of length n; in place when x == y. A negative
 * scale flips which element is the maximum of x·scale, so the max is taken of
 * the scaled values. With `causal`, rows are attention scores of queries
 * q0 + (row % rows_per_block): keys past the query get probability 0. */
__kernel void df_softmax(__global const float *x, int xo, __global float *y, int yo, int n, float scale, int causal,
                         int q0, int rows_per_block)
{
    __local float tmp[DF_WG];
    int row = get_group_id(0), l = get_local_id(0);
    __global const float *src = x + xo + (size_t)row * n;
    __global float *dst = y + yo + (size_t)row * n;
    int valid = causal ? min(n, q0 + row % rows_per_block + 1) : n;
    float m = -INFINITY;
    for (int i = l; i < valid; i += DF_WG) m = fmax(m, src[i] * scale);
    m = df_wg_max(tmp, m);
    float s = 0.0f;
    for (int i = l; i < n; i += DF_WG) {
        float e = i < valid ? exp(src[i] * scale - m) : 0.0f;
        dst[i] = e;
        s += e;
    }
    float inv = 1.0f / df_wg_sum(tmp, s);
    for (int i = l; i < n; i += DF_WG) dst[i] *= inv;
}

/* Mean / variance along one dim of (outer, n, inner): one work-item per output. */
__kernel void df_reduce(__global const float *x, int xo, __global float *y, int yo, int outer, int n, int inner, int var,
                        int unbiased)
{
    int o = get_global_id(0);
    if (o >= outer * inner) return;
    __global const float *s = x + xo + (o / inner) * n * inner + (o % inner);
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += s[i * inner];
    float mean = sum / (float)n;
    if (!var) {
        y[yo + o] = mean;
        return;
    }
    float v = 0.0f;
    for (int i = 0; i < n; i++) {
        float d = s[i * inner] - mean;
        v += d * d;
    }
    int den = unbiased ? n - 1 : n;
    y[yo + o] = den > 0 ? v / (float)den : NAN;
}
