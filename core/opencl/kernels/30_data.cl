/* Data movement: im2col for convolutions, nearest upsampling, block copies
 * (concat / slice) and permutes for 4-, 2- and 1-byte elements. */

/* Columns [p0, p0+np) of one image's im2col matrix: col[r][j], r = (ci, ky, kx). */
__kernel void df_im2col(__global const float *x, int xo, __global float *col, int cin, int h, int w, int kh, int kw,
                        int sh, int sw, int ph, int pw, int wo, int p0, int np)
{
    int idx = get_global_id(0);
    if (idx >= cin * kh * kw * np) return;
    int r = idx / np, j = idx - r * np;
    int ci = r / (kh * kw), ky = (r / kw) % kh, kx = r % kw;
    int pix = p0 + j, oy = pix / wo, ox = pix - oy * wo;
    int iy = oy * sh - ph + ky, ix = ox * sw - pw + kx;
    col[idx] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[xo + (ci * h + iy) * w + ix] : 0.0f;
}

__kernel void df_upsample2x(__global const float *x, int xo, __global float *y, int yo, int planes, int h, int w)
{
    int i = get_global_id(0);
    if (i >= planes * 4 * h * w) return;
    int ox = i % (2 * w), t = i / (2 * w);
    int oy = t % (2 * h), p = t / (2 * h);
    y[yo + i] = x[xo + (p * h + oy / 2) * w + ox / 2];
}

/* dst[o·dst_row + j] = src[o·src_row + j] for j < chunk (element units). */
#define DF_COPY_KERNELS(T, SUFFIX)                                                                        \
    __kernel void df_copy_block_##SUFFIX(__global const T *src, int so, __global T *dst, int dof, int outer, \
                                         int chunk, int src_row, int dst_row)                             \
    {                                                                                                     \
        int i = get_global_id(0);                                                                         \
        if (i >= outer * chunk) return;                                                                   \
        int o = i / chunk, j = i - o * chunk;                                                             \
        dst[dof + o * dst_row + j] = src[so + o * src_row + j];                                           \
    }                                                                                                     \
    __kernel void df_permute_##SUFFIX(__global const T *x, int xo, __global T *y, int yo, int4 shape, int4 st)  \
    {                                                                                                     \
        int i = get_global_id(0);                                                                         \
        if (i >= shape.x * shape.y * shape.z * shape.w) return;                                           \
        int i3 = i % shape.w, t = i / shape.w;                                                            \
        int i2 = t % shape.z;                                                                             \
        t /= shape.z;                                                                                     \
        int i1 = t % shape.y, i0 = t / shape.y;                                                           \
        y[yo + i] = x[xo + i0 * st.x + i1 * st.y + i2 * st.z + i3 * st.w];                                \
    }

DF_COPY_KERNELS(uint, 4)
DF_COPY_KERNELS(ushort, 2)
DF_COPY_KERNELS(uchar, 1)
