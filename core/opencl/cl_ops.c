/* The op table of the OpenCL backend: our kernels for everything elementwise,
 * normalisations, softmax and data movement; CLBlast for every GEMM (linear,
 * batched matmul, convolution after im2col, both products of attention). */
#include "cl_internal.h"

#include "../cpu/cpu.h"

#include <clblast_c.h>
#include <string.h>

/* Kernel arguments as (size, pointer) pairs; compound literals keep the
 * values alive for the enclosing call. */
typedef struct {
    size_t size;
    const void *ptr;
} karg;

#define M(mem) ((karg){sizeof(cl_mem), &(cl_mem){(mem)}})
#define I(v) ((karg){sizeof(cl_int), &(cl_int){(cl_int)(v)}})
#define F(v) ((karg){sizeof(cl_float), &(cl_float){(cl_float)(v)}})
#define I4(a, b, c, d) ((karg){sizeof(cl_int4), &(cl_int4){{(cl_int)(a), (cl_int)(b), (cl_int)(c), (cl_int)(d)}}})
#define T(t) M(df_cl_mem(t)), I(df_cl_off(t)) /* a tensor: buffer + element offset */
#define LAUNCH(o, k, n, groups, ...)                                                                       \
    launch((o), (k), (n), (groups), (int)(sizeof((karg[]){__VA_ARGS__}) / sizeof(karg)), (karg[]){__VA_ARGS__})

static int launch(df_ocl *o, df_cl_kernel k, size_t n, size_t groups, int nargs, const karg *a)
{
    for (int i = 0; i < nargs; i++) {
        int rc = df_cl_set(o, k, i, a[i].size, a[i].ptr);
        if (rc) return rc;
    }
    return df_cl_run(o, k, n, groups);
}

static int blas_fail(df_ocl *o, const char *what, CLBlastStatusCode st)
{
    return df_error(DF_EBACKEND, "opencl (%s): CLBlast %s failed with status %d", o->info.name, what, (int)st);
}

static int dtype_code(df_dtype t) { return t == DF_F32 ? 0 : t == DF_F16 ? 1 : 2; }

/* An f32 view of a weight on the device: the tensor itself, or a widened copy
 * (f16 through vload_half) that the caller releases with release_f32. */
typedef struct {
    cl_mem mem;
    int off;
    cl_mem tmp;
    size_t bytes;
} f32_view;

static int as_f32(df_ocl *o, const df_tensor *w, f32_view *v)
{
    memset(v, 0, sizeof *v);
    if (!w) return DF_OK;
    if (w->dtype == DF_F32) {
        v->mem = df_cl_mem(w);
        v->off = df_cl_off(w);
        return DF_OK;
    }
    int64_t n = df_tensor_numel(w);
    v->bytes = (size_t)n * sizeof(float);
    v->tmp = v->mem = df_cl_scratch(o, v->bytes);
    if (!v->tmp) return DF_ENOMEM;
    return LAUNCH(o, K_CONVERT, (size_t)n, 0, T(w), I(dtype_code(w->dtype)), M(v->tmp), I(0), I(0), I(n));
}

static void release_f32(df_ocl *o, f32_view *v) { df_cl_scratch_free(o, v->tmp, v->bytes); }

/* y[i] = bias[(i / inner) % c], or 0 without a bias. */
static int init_bias(df_ocl *o, cl_mem y, int yo, const f32_view *b, int64_t n, int64_t inner, int64_t c)
{
    if (!b->mem) {
        cl_float zero = 0.0f;
        cl_int err = clEnqueueFillBuffer(o->queue, y, &zero, sizeof zero, (size_t)yo * sizeof(float),
                                         (size_t)n * sizeof(float), 0, NULL, NULL);
        return err == CL_SUCCESS ? DF_OK : df_cl_fail(o, "clEnqueueFillBuffer", err);
    }
    return LAUNCH(o, K_BIAS_FILL, (size_t)n, 0, M(y), I(yo), M(b->mem), I(b->off), I(n), I(inner), I(c));
}

static int cl_fill(df_backend *be, df_tensor *x, float value)
{
    df_ocl *o = df_ocl_of(be);
    size_t bytes = df_tensor_nbytes(x);
    if (!bytes) return DF_OK;
    cl_int err;
    if (x->dtype == DF_F32) {
        cl_float v = value;
        err = clEnqueueFillBuffer(o->queue, df_cl_mem(x), &v, sizeof v, x->offset, bytes, 0, NULL, NULL);
    } else {
        if (value != 0.0f) return df_error(DF_EDTYPE, "fill: only F32 tensors take a nonzero value");
        cl_uchar z = 0;
        err = clEnqueueFillBuffer(o->queue, df_cl_mem(x), &z, 1, x->offset, bytes, 0, NULL, NULL);
    }
    return err == CL_SUCCESS ? DF_OK : df_cl_fail(o, "clEnqueueFillBuffer", err);
}

/* ---- GEMM ops ---- */

#define IM2COL_BYTES ((size_t)64 << 20)

static int cl_conv2d(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b,
                     const df_conv2d_params *p, df_tensor *y)
{
    df_ocl *o = df_ocl_of(be);
    int64_t n = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3];
    int64_t cout = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    int64_t wo = y->shape[3], plane = y->shape[2] * wo, k = cin * kh * kw;
    int direct = kh == 1 && kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0 &&
                 p->pad_bottom == 0 && p->pad_right == 0;
    f32_view wf, bf;
    int rc = as_f32(o, w, &wf);
    if (!rc) rc = as_f32(o, b, &bf);
    else memset(&bf, 0, sizeof bf);
    int64_t tile = plane;
    cl_mem col = NULL;
    size_t col_bytes = 0;
    if (!rc && !direct && plane && k) {
        tile = (int64_t)(IM2COL_BYTES / sizeof(float)) / k;
        if (tile < 64) tile = 64;
        if (tile > plane) tile = plane;
        col_bytes = (size_t)(k * tile) * sizeof(float);
        if (!(col = df_cl_scratch(o, col_bytes))) rc = DF_ENOMEM;
    }
    cl_mem xm = df_cl_mem(x), ym = df_cl_mem(y);
    for (int64_t i = 0; !rc && i < n; i++) {
        int xo = df_cl_off(x) + (int)(i * cin * h * wd), yo = df_cl_off(y) + (int)(i * cout * plane);
        if ((rc = init_bias(o, ym, yo, &bf, cout * plane, plane, cout)) || !plane) continue;
        if (direct) { /* (Cout, Cin) x (Cin, HW) */
            CLBlastStatusCode st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                                                (size_t)cout, (size_t)plane, (size_t)cin, 1.0f, wf.mem,
                                                (size_t)wf.off, (size_t)cin, xm, (size_t)xo, (size_t)plane, 1.0f, ym,
                                                (size_t)yo, (size_t)plane, &o->queue, NULL);
            if (st != CLBlastSuccess) rc = blas_fail(o, "sgemm (conv 1x1)", st);
            continue;
        }
        for (int64_t p0 = 0; !rc && p0 < plane; p0 += tile) {
            int64_t np = plane - p0 < tile ? plane - p0 : tile;
            rc = LAUNCH(o, K_IM2COL, (size_t)(k * np), 0, M(xm), I(xo), M(col), I(cin), I(h), I(wd), I(kh), I(kw),
                        I(p->stride_h), I(p->stride_w), I(p->pad_h), I(p->pad_w), I(wo), I(p0), I(np));
            if (rc) break;
            CLBlastStatusCode st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                                                (size_t)cout, (size_t)np, (size_t)k, 1.0f, wf.mem, (size_t)wf.off,
                                                (size_t)k, col, 0, (size_t)np, 1.0f, ym, (size_t)(yo + p0),
                                                (size_t)plane, &o->queue, NULL);
            if (st != CLBlastSuccess) rc = blas_fail(o, "sgemm (conv)", st);
        }
    }
    df_cl_scratch_free(o, col, col_bytes);
    release_f32(o, &wf);
    release_f32(o, &bf);
    return rc;
}

static int cl_linear(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b, df_tensor *y)
{
    df_ocl *o = df_ocl_of(be);
    int64_t in = w->shape[1], outf = w->shape[0], rows = df_tensor_numel(y) / (outf ? outf : 1);
    f32_view wf, bf;
    int rc = as_f32(o, w, &wf);
    if (!rc) rc = as_f32(o, b, &bf);
    else memset(&bf, 0, sizeof bf);
    if (!rc) rc = init_bias(o, df_cl_mem(y), df_cl_off(y), &bf, rows * outf, 1, outf);
    if (!rc && rows && outf && in) { /* (rows, in) x (out, in)ᵀ */
        CLBlastStatusCode st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                                            (size_t)rows, (size_t)outf, (size_t)in, 1.0f, df_cl_mem(x),
                                            (size_t)df_cl_off(x), (size_t)in, wf.mem, (size_t)wf.off, (size_t)in, 1.0f,
                                            df_cl_mem(y), (size_t)df_cl_off(y), (size_t)outf, &o->queue, NULL);
        if (st != CLBlastSuccess) rc = blas_fail(o, "sgemm (linear)", st);
    }
    release_f32(o, &wf);
    release_f32(o, &bf);
    return rc;
}

static int cl_matmul(df_backend *be, const df_tensor *a, const df_tensor *b, int trans_a, int trans_b,
                     int64_t batch, int64_t m, int64_t n, int64_t k, df_tensor *y)
{
    df_ocl *o = df_ocl_of(be);
    if (!m || !n) return DF_OK;
    if (!k) return cl_fill(be, y, 0.0f);
    int64_t ba = a->ndim == 3 ? a->shape[0] : 1, bb = b->ndim == 3 ? b->shape[0] : 1;
    CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    size_t lda = (size_t)(trans_a ? m : k), ldb = (size_t)(trans_b ? k : n);
    for (int64_t i = 0; i < batch; i++) {
        CLBlastStatusCode st = CLBlastSgemm(
            CLBlastLayoutRowMajor, ta, tb, (size_t)m, (size_t)n, (size_t)k, 1.0f, df_cl_mem(a),
            (size_t)(df_cl_off(a) + (ba > 1 ? i : 0) * m * k), lda, df_cl_mem(b),
            (size_t)(df_cl_off(b) + (bb > 1 ? i : 0) * k * n), ldb, 0.0f, df_cl_mem(y),
            (size_t)(df_cl_off(y) + i * m * n), (size_t)n, &o->queue, NULL);
        if (st != CLBlastSuccess) return blas_fail(o, "sgemm (matmul)", st);
    }
    return DF_OK;
}

/* Per batch and block of queries: S = Q Kᵀ for all heads in one strided
 * batched GEMM (heads are d apart within a row), softmax of S·scale in place,
 * then O = S V, written straight into the heads' columns of y. Scratch is
 * heads · block · Nk floats with the block sized to 64 MiB (at least 16
 * queries): bounded, and linear in the sequence length beyond that. */
#define ATTN_SCRATCH ((size_t)64 << 20)

static int cl_attention(df_backend *be, const df_tensor *q, const df_tensor *k, const df_tensor *v, int heads,
                        float scale, int causal, df_tensor *y)
{
    df_ocl *o = df_ocl_of(be);
    int64_t bsz = q->shape[0], nq = q->shape[1], nk = k->shape[1];
    int64_t hd = q->shape[2], hdv = v->shape[2], d = hd / heads, dv = hdv / heads;
    if (!nq || !hdv) return DF_OK;
    if (!nk) return cl_fill(be, y, 0.0f);
    int64_t block = (int64_t)(ATTN_SCRATCH / sizeof(float)) / (heads * nk);
    if (block < 16) block = 16;
    if (block > nq) block = nq;
    size_t bytes = (size_t)(heads * block * nk) * sizeof(float);
    cl_mem s = df_cl_scratch(o, bytes);
    if (!s) return df_error_prefix(DF_ENOMEM, "attention: score blocks for %lld keys", (long long)nk);
    int rc = DF_OK;
    for (int64_t bi = 0; !rc && bi < bsz; bi++) {
        for (int64_t q0 = 0; !rc && q0 < nq; q0 += block) {
            int64_t nb = nq - q0 < block ? nq - q0 : block;
            CLBlastStatusCode st = CLBlastSgemmStridedBatched(
                CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, (size_t)nb, (size_t)nk, (size_t)d,
                1.0f, df_cl_mem(q), (size_t)(df_cl_off(q) + (bi * nq + q0) * hd), (size_t)hd, (size_t)d,
                df_cl_mem(k), (size_t)(df_cl_off(k) + bi * nk * hd), (size_t)hd, (size_t)d, 0.0f, s, 0, (size_t)nk,
                (size_t)(nb * nk), (size_t)heads, &o->queue, NULL);
            if (st != CLBlastSuccess) {
                rc = blas_fail(o, "batched sgemm (attention scores)", st);
                break;
            }
            rc = LAUNCH(o, K_SOFTMAX, 0, (size_t)(heads * nb), M(s), I(0), M(s), I(0), I(nk), F(scale), I(causal),
                        I(q0), I(nb));
            if (rc) break;
            st = CLBlastSgemmStridedBatched(
                CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, (size_t)nb, (size_t)dv, (size_t)nk,
                1.0f, s, 0, (size_t)nk, (size_t)(nb * nk), df_cl_mem(v), (size_t)(df_cl_off(v) + bi * nk * hdv),
                (size_t)hdv, (size_t)dv, 0.0f, df_cl_mem(y), (size_t)(df_cl_off(y) + (bi * nq + q0) * hdv),
                (size_t)hdv, (size_t)dv, (size_t)heads, &o->queue, NULL);
            if (st != CLBlastSuccess) rc = blas_fail(o, "batched sgemm (attention values)", st);
        }
    }
    df_cl_scratch_free(o, s, bytes);
    return rc;
}

/* ---- normalisation, activations, arithmetic ---- */

static int cl_group_norm(df_backend *be, const df_tensor *x, int groups, const df_tensor *gamma,
                         const df_tensor *beta, float eps, int fuse_silu, df_tensor *y)
{
    df_ocl *o = df_ocl_of(be);
    int64_t n = x->shape[0], c = x->shape[1], spatial = 1;
    for (int i = 2; i < x->ndim; i++) spatial *= x->shape[i];
    f32_view g, b;
    int rc = as_f32(o, gamma, &g);
    if (!rc) rc = as_f32(o, beta, &b);
    else memset(&b, 0, sizeof b);
    cl_mem dummy = df_cl_mem(x);
    if (!rc && n > 0)
        rc = LAUNCH(o, K_GROUP_NORM, 0, (size_t)(n * groups), T(x), T(y), M(g.mem ? g.mem : dummy), I(g.off),
                    M(b.mem ? b.mem : dummy), I(b.off), I(g.mem != NULL), I(b.mem != NULL), I(groups), I(c / groups),
                    I(spatial), F(eps), I(fuse_silu));
    release_f32(o, &g);
    release_f32(o, &b);
    return rc;
}

static int cl_layer_norm(df_backend *be, const df_tensor *x, const df_tensor *gamma, const df_tensor *beta,
                         float eps, df_tensor *y)
{
    df_ocl *o = df_ocl_of(be);
    int64_t c = x->shape[x->ndim - 1], rows = c ? df_tensor_numel(x) / c : 0;
    f32_view g, b;
    int rc = as_f32(o, gamma, &g);
    if (!rc) rc = as_f32(o, beta, &b);
    else memset(&b, 0, sizeof b);
    cl_mem dummy = df_cl_mem(x);
    if (!rc && rows)
        rc = LAUNCH(o, K_LAYER_NORM, 0, (size_t)rows, T(x), T(y), M(g.mem ? g.mem : dummy), I(g.off),
                    M(b.mem ? b.mem : dummy), I(b.off), I(g.mem != NULL), I(b.mem != NULL), I(c), F(eps));
    release_f32(o, &g);
    release_f32(o, &b);
    return rc;
}

static int cl_unary(df_backend *be, df_unary_op op, const df_tensor *x, df_tensor *y)
{
    int64_t n = df_tensor_numel(x);
    return LAUNCH(df_ocl_of(be), K_UNARY, (size_t)n, 0, T(x), T(y), I(n), I(op));
}

static int cl_geglu(df_backend *be, const df_tensor *x, df_tensor *y)
{
    int64_t c = y->shape[y->ndim - 1], rows = c ? df_tensor_numel(y) / c : 0;
    return LAUNCH(df_ocl_of(be), K_GEGLU, (size_t)(rows * c), 0, T(x), T(y), I(rows), I(c));
}

/* Strides of t right-aligned in a 4-d frame, 0 on broadcast dims. */
static void strides4(const df_tensor *t, int64_t st[4])
{
    int64_t s = 1;
    for (int i = 3; i >= 0; i--) {
        int ti = t->ndim - (4 - i);
        int64_t dim = ti >= 0 ? t->shape[ti] : 1;
        st[i] = dim == 1 ? 0 : s;
        s *= dim;
    }
}

static int cl_binary(df_backend *be, df_binary_op op, const df_tensor *a, const df_tensor *b, df_tensor *y)
{
    int64_t ys[4], sa[4], sb[4];
    for (int i = 0; i < 4; i++) {
        int yi = y->ndim - (4 - i);
        ys[i] = yi >= 0 ? y->shape[yi] : 1;
    }
    strides4(a, sa);
    strides4(b, sb);
    return LAUNCH(df_ocl_of(be), K_BINARY, (size_t)df_tensor_numel(y), 0, T(a), T(b), T(y), I(op),
                  I4(ys[0], ys[1], ys[2], ys[3]), I4(sa[0], sa[1], sa[2], sa[3]), I4(sb[0], sb[1], sb[2], sb[3]));
}

static int cl_scale(df_backend *be, const df_tensor *x, float s, float bias, df_tensor *y)
{
    int64_t n = df_tensor_numel(x);
    return LAUNCH(df_ocl_of(be), K_SCALE, (size_t)n, 0, T(x), T(y), I(n), F(s), F(bias));
}

static int cl_softmax(df_backend *be, const df_tensor *x, float scale, df_tensor *y)
{
    int64_t n = x->shape[x->ndim - 1], rows = n ? df_tensor_numel(x) / n : 0;
    if (!rows) return DF_OK;
    return LAUNCH(df_ocl_of(be), K_SOFTMAX, 0, (size_t)rows, T(x), T(y), I(n), F(scale), I(0), I(0), I(1));
}

static int cl_modulate(df_backend *be, const df_tensor *x, const df_tensor *shift, const df_tensor *scale,
                       df_tensor *y)
{
    int64_t total = df_tensor_numel(x);
    return LAUNCH(df_ocl_of(be), K_MODULATE, (size_t)total, 0, T(x), T(shift), T(scale), T(y), I(x->shape[1]),
                  I(x->shape[2]), I(total));
}

static int cl_reduce(df_backend *be, df_reduce_op op, const df_tensor *x, int dim, int unbiased, df_tensor *y)
{
    int64_t outer = 1, inner = 1, n = x->shape[dim];
    for (int i = 0; i < dim; i++) outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
    return LAUNCH(df_ocl_of(be), K_REDUCE, (size_t)(outer * inner), 0, T(x), T(y), I(outer), I(n), I(inner),
                  I(op == DF_REDUCE_VAR), I(unbiased));
}

/* The embedding is a few hundred values computed in double: done on the
 * host, exactly as the CPU backend does, and uploaded. */
static int cl_timestep_embedding(df_backend *be, const df_tensor *t, int flip_sin_to_cos, float shift, float scale,
                                 float max_period, df_tensor *y)
{
    df_tensor *th = NULL, *yh = df_tensor_new(NULL, DF_F32, y->ndim, y->shape);
    int rc = yh ? df_tensor_to(t, NULL, &th) : DF_ENOMEM;
    if (!rc) rc = df_cpu_timestep_embedding(df_backend_cpu(), th, flip_sin_to_cos, shift, scale, max_period, yh);
    if (!rc) rc = df_tensor_write(y, df_tensor_data(yh), df_tensor_nbytes(yh));
    (void)be;
    df_tensor_free(th);
    df_tensor_free(yh);
    return rc;
}

static int cl_cast(df_backend *be, const df_tensor *x, df_tensor *y)
{
    int64_t n = df_tensor_numel(x);
    return LAUNCH(df_ocl_of(be), K_CONVERT, (size_t)n, 0, M(df_cl_mem(x)), I(df_cl_off(x)), I(dtype_code(x->dtype)),
                  M(df_cl_mem(y)), I(df_cl_off(y)), I(dtype_code(y->dtype)), I(n));
}

/* ---- data movement ---- */

static int cl_upsample(df_backend *be, const df_tensor *x, df_tensor *y)
{
    int64_t planes = x->shape[0] * x->shape[1];
    return LAUNCH(df_ocl_of(be), K_UPSAMPLE2X, (size_t)df_tensor_numel(y), 0, T(x), T(y), I(planes), I(x->shape[2]),
                  I(x->shape[3]));
}

static df_cl_kernel by_size(df_cl_kernel k4, size_t es)
{
    return es == 4 ? k4 : es == 2 ? (df_cl_kernel)(k4 + 1) : (df_cl_kernel)(k4 + 2);
}

static int cl_copy_dim(df_backend *be, const df_tensor *x, int dim, int64_t offset, int into, df_tensor *y)
{
    const df_tensor *big = into ? y : x, *small = into ? x : y;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= small->shape[i];
    for (int i = dim + 1; i < small->ndim; i++) inner *= small->shape[i];
    int64_t chunk = small->shape[dim] * inner, big_row = big->shape[dim] * inner, off = offset * inner;
    size_t es = df_dtype_size(x->dtype);
    if (es != 4 && es != 2 && es != 1) return df_error(DF_EDTYPE, "opencl: copy of %s not supported", df_dtype_name(x->dtype));
    df_cl_kernel k = by_size(K_COPY_BLOCK_4, es);
    if (into)
        return LAUNCH(df_ocl_of(be), k, (size_t)(outer * chunk), 0, T(x), M(df_cl_mem(y)), I(df_cl_off(y) + off),
                      I(outer), I(chunk), I(chunk), I(big_row));
    return LAUNCH(df_ocl_of(be), k, (size_t)(outer * chunk), 0, M(df_cl_mem(x)), I(df_cl_off(x) + off), T(y), I(outer),
                  I(chunk), I(big_row), I(chunk));
}

static int cl_permute(df_backend *be, const df_tensor *x, const int *perm, df_tensor *y)
{
    int nd = x->ndim;
    int64_t xst[DF_MAX_DIMS], st[4] = {0, 0, 0, 0}, ys[4] = {1, 1, 1, 1}, s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        xst[i] = s;
        s *= x->shape[i];
    }
    for (int i = 0; i < nd; i++) {
        st[4 - nd + i] = xst[perm[i]];
        ys[4 - nd + i] = y->shape[i];
    }
    size_t es = df_dtype_size(x->dtype);
    if (es != 4 && es != 2 && es != 1) return df_error(DF_EDTYPE, "opencl: permute of %s not supported", df_dtype_name(x->dtype));
    return LAUNCH(df_ocl_of(be), by_size(K_PERMUTE_4, es), (size_t)df_tensor_numel(y), 0, T(x), T(y),
                  I4(ys[0], ys[1], ys[2], ys[3]), I4(st[0], st[1], st[2], st[3]));
}

void df_cl_install_ops(df_backend *be)
{
    be->fill = cl_fill;
    be->conv2d = cl_conv2d;
    be->linear = cl_linear;
    be->matmul = cl_matmul;
    be->group_norm = cl_group_norm;
    be->layer_norm = cl_layer_norm;
    be->unary = cl_unary;
    be->geglu = cl_geglu;
    be->binary = cl_binary;
    be->scale = cl_scale;
    be->softmax = cl_softmax;
    be->attention = cl_attention;
    be->upsample_nearest2x = cl_upsample;
    be->copy_dim = cl_copy_dim;
    be->permute = cl_permute;
    be->reduce = cl_reduce;
    be->timestep_embedding = cl_timestep_embedding;
    be->modulate = cl_modulate;
    be->cast = cl_cast;
}
