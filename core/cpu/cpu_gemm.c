/* The GEMM-shaped kernels of the CPU backend: conv2d (1x1 as a plain GEMM,
 * 3x3 stride 1 by Winograd (cpu_winograd.c), others as im2col in bounded
 * column tiles feeding sgemm), linear, batched
 * matmul and blockwise attention. All GEMMs go through the tuned BLAS. */
#include "cpu.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* im2col tile budget: the column buffer never exceeds this many bytes. */
#define IM2COL_BYTES (32u << 20)
/* Attention: queries per block; scratch is threads x block x Nk floats. */
#define ATTN_BLOCK 128

/* out[co, :] = bias[co] (or 0), for every image plane. */
static void init_bias(float *y, const float *bias, int64_t cout, int64_t plane)
{
#pragma omp parallel for schedule(static) if (cout * plane > 65536)
    for (int64_t co = 0; co < cout; co++) {
        float v = bias ? bias[co] : 0.0f, *d = y + co * plane;
        for (int64_t i = 0; i < plane; i++) d[i] = v;
    }
}

/* Columns [p0, p0+np) of the im2col matrix of one image into col (K x np):
 * row (ci, ky, kx), column p = output pixel (oy, ox). */
static void im2col_tile(const float *x, int64_t cin, int64_t h, int64_t w, int64_t kh, int64_t kw,
                        const df_conv2d_params *p, int64_t wo, int64_t p0, int64_t np, float *col)
{
    int64_t k_rows = cin * kh * kw;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < k_rows; r++) {
        int64_t ci = r / (kh * kw), ky = (r / kw) % kh, kx = r % kw;
        const float *src = x + ci * h * w;
        float *dst = col + r * np;
        int64_t j = 0;
        while (j < np) {
            int64_t pix = p0 + j, oy = pix / wo, ox = pix % wo;
            int64_t run = wo - ox < np - j ? wo - ox : np - j; /* rest of this output row */
            int64_t iy = oy * p->stride_h - p->pad_h + ky;
            float *d = dst + j;
            if (iy < 0 || iy >= h) {
                memset(d, 0, (size_t)run * sizeof(float));
            } else {
                const float *srow = src + iy * w;
                int64_t ix0 = ox * p->stride_w - p->pad_w + kx;
                if (p->stride_w == 1 && ix0 >= 0 && ix0 + run <= w) {
                    memcpy(d, srow + ix0, (size_t)run * sizeof(float));
                } else {
                    for (int64_t t = 0; t < run; t++) {
                        int64_t ix = ix0 + t * p->stride_w;
                        d[t] = (ix >= 0 && ix < w) ? srow[ix] : 0.0f;
                    }
                }
            }
            j += run;
        }
    }
}

int df_cpu_conv2d(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b,
                  const df_conv2d_params *p, df_tensor *y)
{
    (void)be;
    int64_t n = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3];
    int64_t cout = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    int64_t ho = y->shape[2], wo = y->shape[3], plane = ho * wo, k = cin * kh * kw;
    void *tw = NULL, *tb = NULL;
    size_t nw = 0, nb = 0;
    const float *wf = df_cpu_weight_f32(w, &tw, &nw);
    const float *bf = wf && b ? df_cpu_weight_f32(b, &tb, &nb) : NULL;
    if (!wf || (b && !bf)) {
        df_cpu_scratch_free(tw, nw);
        return DF_ENOMEM;
    }
    const float *xd = df_cpu_f32(x);
    float *yd = df_cpu_f32_mut(y);
    if (df_cpu_winograd_applies(w, p, y)) {
        int rc = df_cpu_conv2d_winograd(xd, wf, bf, x, w, p, y);
        df_cpu_scratch_free(tw, nw);
        df_cpu_scratch_free(tb, nb);
        return rc;
    }
    int direct = kh == 1 && kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0 &&
                 p->pad_bottom == 0 && p->pad_right == 0;
    int64_t tile = 0;
    float *col = NULL;
    size_t col_bytes = 0;
    if (!direct && plane > 0 && k > 0) {
        tile = (int64_t)(IM2COL_BYTES / sizeof(float)) / k;
        if (tile < 64) tile = 64;
        if (tile > plane) tile = plane;
        col_bytes = (size_t)(k * tile) * sizeof(float);
        col = df_cpu_scratch_alloc(col_bytes);
        if (!col) {
            df_cpu_scratch_free(tw, nw);
            df_cpu_scratch_free(tb, nb);
            return DF_ENOMEM;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const float *xi = xd + i * cin * h * wd;
        float *yi = yd + i * cout * plane;
        init_bias(yi, bf, cout, plane);
        if (plane == 0) continue;
        if (direct) { /* (Cout, Cin) x (Cin, HW) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)plane, (int)cin, 1.0f, wf,
                        (int)cin, xi, (int)plane, 1.0f, yi, (int)plane);
            continue;
        }
        for (int64_t p0 = 0; p0 < plane; p0 += tile) {
            int64_t np = plane - p0 < tile ? plane - p0 : tile;
            im2col_tile(xi, cin, h, wd, kh, kw, p, wo, p0, np, col);
            /* (Cout, K) x (K, np) accumulated into columns p0.. of (Cout, HW) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)np, (int)k, 1.0f, wf, (int)k, col,
                        (int)np, 1.0f, yi + p0, (int)plane);
        }
    }
    df_cpu_scratch_free(col, col_bytes);
    df_cpu_scratch_free(tw, nw);
    df_cpu_scratch_free(tb, nb);
    return DF_OK;
}

int df_cpu_linear(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b, df_tensor *y)
{
    (void)be;
    int64_t in = w->shape[1], outf = w->shape[0], rows = in ? df_tensor_numel(x) / in : 0;
    if (!in) rows = df_tensor_numel(y) / (outf ? outf : 1);
    void *tw = NULL, *tb = NULL;
    size_t nw = 0, nb = 0;
    const float *wf = df_cpu_weight_f32(w, &tw, &nw);
    const float *bf = wf && b ? df_cpu_weight_f32(b, &tb, &nb) : NULL;
    if (!wf || (b && !bf)) {
        df_cpu_scratch_free(tw, nw);
        return DF_ENOMEM;
    }
    float *yd = df_cpu_f32_mut(y);
#pragma omp parallel for schedule(static) if (rows * outf > 65536)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < outf; o++) yd[r * outf + o] = bf ? bf[o] : 0.0f;
    if (rows && outf && in) /* (rows, in) x (out, in)ᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)outf, (int)in, 1.0f, df_cpu_f32(x),
                    (int)in, wf, (int)in, 1.0f, yd, (int)outf);
    df_cpu_scratch_free(tw, nw);
    df_cpu_scratch_free(tb, nb);
    return DF_OK;
}

int df_cpu_matmul(df_backend *be, const df_tensor *a, const df_tensor *b, int trans_a, int trans_b,
                  int64_t batch, int64_t m, int64_t n, int64_t k, df_tensor *y)
{
    (void)be;
    int64_t ba = a->ndim == 3 ? a->shape[0] : 1, bb = b->ndim == 3 ? b->shape[0] : 1;
    const float *ad = df_cpu_f32(a), *bd = df_cpu_f32(b);
    float *yd = df_cpu_f32_mut(y);
    int lda = (int)(trans_a ? m : k), ldb = (int)(trans_b ? k : n);
    if (!m || !n) return DF_OK;
    if (!k) {
        memset(yd, 0, df_tensor_nbytes(y));
        return DF_OK;
    }
    CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    /* Many small products: one per thread, each GEMM single-threaded (OpenBLAS
     * runs serially inside an OpenMP region). Few large ones: BLAS threads. */
    int small = batch >= omp_get_max_threads() && m * n * k < (1 << 21);
#pragma omp parallel for schedule(dynamic, 1) if (small)
    for (int64_t i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0f, ad + (ba > 1 ? i : 0) * m * k, lda,
                    bd + (bb > 1 ? i : 0) * k * n, ldb, 0.0f, yd + i * m * n, (int)n);
    return DF_OK;
}

int df_cpu_attention(df_backend *be, const df_tensor *q, const df_tensor *k, const df_tensor *v, int heads,
                     float scale, int causal, df_tensor *y)
{
    (void)be;
    int64_t bsz = q->shape[0], nq = q->shape[1], nk = k->shape[1];
    int64_t hd = q->shape[2], hdv = v->shape[2], d = hd / heads, dv = hdv / heads;
    const float *qd = df_cpu_f32(q), *kd = df_cpu_f32(k), *vd = df_cpu_f32(v);
    float *yd = df_cpu_f32_mut(y);
    if (!nq || !hdv) return DF_OK;
    if (!nk) {
        memset(yd, 0, df_tensor_nbytes(y));
        return DF_OK;
    }
    int64_t nblocks = (nq + ATTN_BLOCK - 1) / ATTN_BLOCK, tasks = bsz * heads * nblocks;
    int threads = omp_get_max_threads();
    if (threads > tasks) threads = (int)tasks;
    size_t per_thread = (size_t)(ATTN_BLOCK * nk), bytes = (size_t)threads * per_thread * sizeof(float);
    float *scores = df_cpu_scratch_alloc(bytes);
    if (!scores) return df_error_prefix(DF_ENOMEM, "attention: score blocks for %lld keys", (long long)nk);
#pragma omp parallel num_threads(threads)
    {
        float *s = scores + (size_t)omp_get_thread_num() * per_thread;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t blk = t % nblocks, h = (t / nblocks) % heads, bi = t / (nblocks * heads);
            int64_t q0 = blk * ATTN_BLOCK, nb = nq - q0 < ATTN_BLOCK ? nq - q0 : ATTN_BLOCK;
            const float *qb = qd + (bi * nq + q0) * hd + h * d;
            const float *kb = kd + bi * nk * hd + h * d;
            const float *vb = vd + bi * nk * hdv + h * dv;
            float *ob = yd + (bi * nq + q0) * hdv + h * dv;
            /* S = Q Kᵀ: (nb, d) x (nk, d)ᵀ; softmax rows with the scale; O = S V. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)nk, (int)d, 1.0f, qb, (int)hd, kb,
                        (int)hd, 0.0f, s, (int)nk);
            if (causal) /* query q0 + r sees keys 0 ..= q0 + r */
                for (int64_t r = 0; r < nb; r++)
                    for (int64_t j = q0 + r + 1; j < nk; j++) s[r * nk + j] = -INFINITY;
            df_cpu_softmax_rows(s, nb, nk, scale);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)dv, (int)nk, 1.0f, s, (int)nk, vb,
                        (int)hdv, 0.0f, ob, (int)hdv);
        }
    }
    df_cpu_scratch_free(scores, bytes);
    return DF_OK;
}
