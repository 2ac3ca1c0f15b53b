/* Elementwise kernels: one work-item per output element; the global size is
 * rounded up, so each kernel checks its bound. */

__kernel void df_fill(__global float *y, int yo, int n, float v)
{
    int i = get_global_id(0);
    if (i < n) y[yo + i] = v;
}

/* Any of F32 / F16 / BF16 to any: f16 through vload_half / vstore_half_rte,
 * so devices without cl_khr_fp16 work. */
__kernel void df_convert(__global const uchar *src, int so, int st, __global uchar *dst, int dof, int dt, int n)
{
    int i = get_global_id(0);
    if (i >= n) return;
    float v;
    if (st == DF_F32) v = ((__global const float *)src)[so + i];
    else if (st == DF_F16) v = vload_half(so + i, (__global const half *)src);
    else v = df_bf16_load((__global const ushort *)src, so + i);
    if (dt == DF_F32) ((__global float *)dst)[dof + i] = v;
    else if (dt == DF_F16) vstore_half_rte(v, dof + i, (__global half *)dst);
    else ((__global ushort *)dst)[dof + i] = df_bf16_round(v);
}

#define DF_SILU 0
#define DF_GELU 1
#define DF_GELU_TANH 2
#define DF_QUICK_GELU 3

inline float df_gelu(float x) { return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f)); }

__kernel void df_unary(__global const float *x, int xo, __global float *y, int yo, int n, int op)
{
    int i = get_global_id(0);
    if (i >= n) return;
    float v = x[xo + i], r;
    if (op == DF_SILU) r = v * df_sigmoid(v);
    else if (op == DF_GELU) r = df_gelu(v);
    else if (op == DF_GELU_TANH) r = v * df_sigmoid(2.0f * 0.79788456080286536f * (v + 0.044715f * v * v * v));
    else r = v * df_sigmoid(1.702f * v);
    y[yo + i] = r;
}

/* x (rows, 2c) -> y (rows, c): first half · gelu(second half). */
__kernel void df_geglu(__global const float *x, int xo, __global float *y, int yo, int rows, int c)
{
    int i = get_global_id(0);
    if (i >= rows * c) return;
    int r = i / c, j = i - r * c;
    __global const float *h = x + xo + r * 2 * c;
    y[yo + i] = h[j] * df_gelu(h[c + j]);
}

/* y = a op b with both operands broadcast into y's 4-d shape through strides
 * (0 on broadcast dims). */
__kernel void df_binary(__global const float *a, int ao, __global const float *b, int bo, __global float *y, int yo,
                        int op, int4 shape, int4 sa, int4 sb)
{
    int i = get_global_id(0);
    int n = shape.x * shape.y * shape.z * shape.w;
    if (i >= n) return;
    int i3 = i % shape.w, t = i / shape.w;
    int i2 = t % shape.z;
    t /= shape.z;
    int i1 = t % shape.y, i0 = t / shape.y;
    float va = a[ao + i0 * sa.x + i1 * sa.y + i2 * sa.z + i3 * sa.w];
    float vb = b[bo + i0 * sb.x + i1 * sb.y + i2 * sb.z + i3 * sb.w];
    float r;
    if (op == 0) r = va + vb;
    else if (op == 1) r = va - vb;
    else if (op == 2) r = va * vb;
    else r = va / vb;
    y[yo + i] = r;
}

__kernel void df_scale(__global const float *x, int xo, __global float *y, int yo, int n, float s, float bias)
{
    int i = get_global_id(0);
    if (i < n) y[yo + i] = x[xo + i] * s + bias;
}

/* y[i] = b[(i / inner) % c]: bias rows for linear (inner 1) and planes for conv. */
__kernel void df_bias_fill(__global float *y, int yo, __global const float *b, int bo, int n, int inner, int c)
{
    int i = get_global_id(0);
    if (i < n) y[yo + i] = b[bo + (i / inner) % c];
}

/* x (B, N, C), shift / scale (B, C): x·(1 + scale) + shift. */
__kernel void df_modulate(__global const float *x, int xo, __global const float *sh, int sho, __global const float *sc,
                          int sco, __global float *y, int yo, int n_tok, int c, int total)
{
    int i = get_global_id(0);
    if (i >= total) return;
    int j = i % c, bidx = i / (n_tok * c);
    y[yo + i] = x[xo + i] * (1.0f + sc[sco + bidx * c + j]) + sh[sho + bidx * c + j];
}
