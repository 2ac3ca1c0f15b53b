/* Shape and dtype checks for every op, output allocation, dispatch. The
 * backends trust what arrives here. */
#include "ops.h"

#include "backend.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

static const char *const op_names[] = {
    [DF_OP_CONV2D] = "conv2d",
    [DF_OP_LINEAR] = "linear",
    [DF_OP_MATMUL] = "matmul",
    [DF_OP_GROUP_NORM] = "group_norm",
    [DF_OP_LAYER_NORM] = "layer_norm",
    [DF_OP_UNARY] = "unary",
    [DF_OP_GEGLU] = "geglu",
    [DF_OP_BINARY] = "binary",
    [DF_OP_SCALE] = "scale",
    [DF_OP_SOFTMAX] = "softmax",
    [DF_OP_ATTENTION] = "attention",
    [DF_OP_UPSAMPLE_NEAREST2X] = "upsample_nearest2x",
    [DF_OP_CONCAT] = "concat",
    [DF_OP_SLICE] = "slice",
    [DF_OP_PERMUTE] = "permute",
    [DF_OP_REDUCE] = "reduce",
    [DF_OP_TIMESTEP_EMBEDDING] = "timestep_embedding",
    [DF_OP_MODULATE] = "modulate",
    [DF_OP_CAST] = "cast",
};
_Static_assert(sizeof op_names / sizeof op_names[0] == DF_OP_COUNT, "op name table out of step");

const char *df_op_name(df_op op) { return (unsigned)op < DF_OP_COUNT ? op_names[op] : "?"; }

static _Atomic uint64_t flops_done;

uint64_t df_flops(void) { return atomic_load_explicit(&flops_done, memory_order_relaxed); }

void df_flops_reset(void) { atomic_store_explicit(&flops_done, 0, memory_order_relaxed); }

/* 2 * the multiply-adds of a GEMM-like op, counted once its checks pass. */
static void count_flops(int64_t mul_adds)
{
    atomic_fetch_add_explicit(&flops_done, 2 * (uint64_t)mul_adds, memory_order_relaxed);
}

df_conv2d_params df_conv2d_default_params(void) { return (df_conv2d_params){1, 1, 0, 0, 0, 0}; }

/* ---- checking helpers ---- */

#define SHAPE(t, buf) df_tensor_shape_str((t), (buf), sizeof(buf))

static int need(const char *op, const char *arg, const df_tensor *t)
{
    if (!t) return df_error(DF_EINVAL, "%s: argument '%s' is NULL", op, arg);
    return DF_OK;
}

static int need_f32(const char *op, const char *arg, const df_tensor *t)
{
    int rc = need(op, arg, t);
    if (rc) return rc;
    if (t->dtype != DF_F32)
        return df_error(DF_EDTYPE, "%s: '%s' must be F32, got %s", op, arg, df_dtype_name(t->dtype));
    return DF_OK;
}

static int need_float_weight(const char *op, const char *arg, const df_tensor *t)
{
    int rc = need(op, arg, t);
    if (rc) return rc;
    if (t->dtype != DF_F32 && t->dtype != DF_F16 && t->dtype != DF_BF16)
        return df_error(DF_EDTYPE, "%s: '%s' must be F32, F16 or BF16, got %s", op, arg, df_dtype_name(t->dtype));
    return DF_OK;
}

static int need_rank(const char *op, const char *arg, const df_tensor *t, int lo, int hi)
{
    if (t->ndim < lo || t->ndim > hi) {
        char b[64];
        if (lo == hi) return df_error(DF_ESHAPE, "%s: '%s' must have %d dims, got %s", op, arg, lo, SHAPE(t, b));
        return df_error(DF_ESHAPE, "%s: '%s' must have %d to %d dims, got %s", op, arg, lo, hi, SHAPE(t, b));
    }
    return DF_OK;
}

static int same_backend(const char *op, const df_tensor *a, const df_tensor *b)
{
    if (b && df_tensor_backend(a) != df_tensor_backend(b))
        return df_error(DF_EBACKEND, "%s: operands are on different backends (%s and %s)", op,
                        df_tensor_backend(a)->name, df_tensor_backend(b)->name);
    return DF_OK;
}

static int vec_of(const char *op, const char *arg, const df_tensor *t, int64_t n)
{
    int rc = need_float_weight(op, arg, t);
    if (rc) return rc;
    if (t->ndim != 1 || t->shape[0] != n) {
        char b[64];
        return df_error(DF_ESHAPE, "%s: '%s' must have shape (%lld), got %s", op, arg, (long long)n, SHAPE(t, b));
    }
    return DF_OK;
}

/* BLAS takes int sizes and leading dimensions. */
static int fits_blas(const char *op, const char *what, int64_t v)
{
    if (v > INT32_MAX)
        return df_error(DF_ESHAPE, "%s: %s of %lld exceeds the BLAS limit of %d", op, what, (long long)v, INT32_MAX);
    return DF_OK;
}

static int wrap_dim(const char *op, int dim, int ndim, int *out)
{
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim) return df_error(DF_EINVAL, "%s: dim %d out of range for %d dims", op, dim, ndim);
    *out = d;
    return DF_OK;
}

/* Allocates y on x's backend and runs `call`; frees y on failure. */
#define RUN(x, ndim_, shape_, dtype_, call)                                                        \
    do {                                                                                           \
        *out = NULL;                                                                               \
        df_backend *be = df_tensor_backend(x);                                                     \
        df_tensor *y = df_tensor_new(be, (dtype_), (ndim_), (shape_));                             \
        if (!y) return DF_ENOMEM;                                                                  \
        int rc_ = (call);                                                                          \
        if (rc_ != DF_OK) {                                                                        \
            df_tensor_free(y);                                                                     \
            return rc_;                                                                            \
        }                                                                                          \
        *out = y;                                                                                  \
        return DF_OK;                                                                              \
    } while (0)

/* ---- ops ---- */

int df_conv2d(const df_tensor *x, const df_tensor *w, const df_tensor *b, const df_conv2d_params *p,
              df_tensor **out)
{
    const char *op = "conv2d";
    df_conv2d_params dp = df_conv2d_default_params();
    if (!p) p = &dp;
    int rc;
    *out = NULL;
    if ((rc = need_f32(op, "x", x)) || (rc = need_float_weight(op, "weight", w)) ||
        (rc = need_rank(op, "x", x, 4, 4)) || (rc = need_rank(op, "weight", w, 4, 4)) ||
        (rc = same_backend(op, x, w)) || (rc = same_backend(op, x, b)))
        return rc;
    char b1[64], b2[64];
    if (w->shape[1] != x->shape[1])
        return df_error(DF_ESHAPE, "conv2d: weight %s expects %lld input channels, x %s has %lld", SHAPE(w, b1),
                        (long long)w->shape[1], SHAPE(x, b2), (long long)x->shape[1]);
    if (b && (rc = vec_of(op, "bias", b, w->shape[0]))) return rc;
    if (p->stride_h < 1 || p->stride_w < 1 || p->pad_h < 0 || p->pad_w < 0 || p->pad_bottom < 0 || p->pad_right < 0)
        return df_error(DF_EINVAL, "conv2d: stride (%d, %d) must be >= 1 and padding (%d, %d, +%d, +%d) >= 0",
                        p->stride_h, p->stride_w, p->pad_h, p->pad_w, p->pad_bottom, p->pad_right);
    int64_t ho = (x->shape[2] + 2 * p->pad_h + p->pad_bottom - w->shape[2]);
    int64_t wo = (x->shape[3] + 2 * p->pad_w + p->pad_right - w->shape[3]);
    if (ho < 0 || wo < 0)
        return df_error(DF_ESHAPE, "conv2d: kernel %lldx%lld larger than padded input %s", (long long)w->shape[2],
                        (long long)w->shape[3], SHAPE(x, b1));
    int64_t shape[4] = {x->shape[0], w->shape[0], ho / p->stride_h + 1, wo / p->stride_w + 1};
    if ((rc = fits_blas(op, "output plane", shape[2] * shape[3])) ||
        (rc = fits_blas(op, "input plane", x->shape[2] * x->shape[3])) ||
        (rc = fits_blas(op, "kernel volume", w->shape[1] * w->shape[2] * w->shape[3])))
        return rc;
    count_flops(shape[0] * shape[1] * shape[2] * shape[3] * w->shape[1] * w->shape[2] * w->shape[3]);
    RUN(x, 4, shape, DF_F32, be->conv2d(be, x, w, b, p, y));
}

int df_linear(const df_tensor *x, const df_tensor *w, const df_tensor *b, df_tensor **out)
{
    const char *op = "linear";
    int rc;
    *out = NULL;
    if ((rc = need_f32(op, "x", x)) || (rc = need_float_weight(op, "weight", w)) ||
        (rc = need_rank(op, "x", x, 1, 4)) || (rc = need_rank(op, "weight", w, 2, 2)) ||
        (rc = same_backend(op, x, w)) || (rc = same_backend(op, x, b)))
        return rc;
    char b1[64], b2[64];
    if (x->shape[x->ndim - 1] != w->shape[1])
        return df_error(DF_ESHAPE, "linear: weight %s expects %lld input features, x %s has %lld", SHAPE(w, b1),
                        (long long)w->shape[1], SHAPE(x, b2), (long long)x->shape[x->ndim - 1]);
    if (b && (rc = vec_of(op, "bias", b, w->shape[0]))) return rc;
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->shape[0];
    if ((rc = fits_blas(op, "row count", df_tensor_numel(x) / (w->shape[1] ? w->shape[1] : 1))) ||
        (rc = fits_blas(op, "feature count", w->shape[0] > w->shape[1] ? w->shape[0] : w->shape[1])))
        return rc;
    count_flops(df_tensor_numel(x) * w->shape[0]);
    RUN(x, x->ndim, shape, DF_F32, be->linear(be, x, w, b, y));
}

int df_matmul(const df_tensor *a, const df_tensor *b, int trans_a, int trans_b, df_tensor **out)
{
    const char *op = "matmul";
    int rc;
    *out = NULL;
    if ((rc = need_f32(op, "a", a)) || (rc = need_f32(op, "b", b)) || (rc = need_rank(op, "a", a, 2, 3)) ||
        (rc = need_rank(op, "b", b, 2, 3)) || (rc = same_backend(op, a, b)))
        return rc;
    int64_t ba = a->ndim == 3 ? a->shape[0] : 1, bb = b->ndim == 3 ? b->shape[0] : 1;
    const int64_t *sa = a->shape + (a->ndim - 2), *sb = b->shape + (b->ndim - 2);
    int64_t m = trans_a ? sa[1] : sa[0], ka = trans_a ? sa[0] : sa[1];
    int64_t kb = trans_b ? sb[1] : sb[0], n = trans_b ? sb[0] : sb[1];
    char b1[64], b2[64];
    if (ka != kb || (ba != bb && ba != 1 && bb != 1))
        return df_error(DF_ESHAPE, "matmul: cannot multiply %s%s by %s%s", SHAPE(a, b1), trans_a ? "ᵀ" : "",
                        SHAPE(b, b2), trans_b ? "ᵀ" : "");
    int64_t batch = ba > bb ? ba : bb;
    int64_t shape[3] = {batch, m, n};
    if ((rc = fits_blas(op, "dimension", m > n ? (m > ka ? m : ka) : (n > ka ? n : ka)))) return rc;
    count_flops(batch * m * n * ka);
    RUN(a, 3, shape, DF_F32, be->matmul(be, a, b, trans_a, trans_b, batch, m, n, ka, y));
}

int df_group_norm(const df_tensor *x, int groups, const df_tensor *gamma, const df_tensor *beta, float eps,
                  int fuse_silu, df_tensor **out)
{
    const char *op = "group_norm";
    int rc;
    *out = NULL;
    if ((rc = need_f32(op, "x", x)) || (rc = need_rank(op, "x", x, 2, 4)) || (rc = same_backend(op, x, gamma)) ||
        (rc = same_backend(op, x, beta)))
        return rc;
    int64_t c = x->shape[1];
    if (groups < 1 || c % groups)
        return df_error(DF_EINVAL, "group_norm: %lld channels not divisible into %d groups", (long long)c, groups);
    if ((gamma && (rc = vec_of(op, "weight", gamma, c))) || (beta && (rc = vec_of(op, "bias", beta, c)))) return rc;
    if (!(eps >= 0)) return df_error(DF_EINVAL, "group_norm: eps must be >= 0");
    RUN(x, x->ndim, x->shape, DF_F32, be->group_norm(be, x, groups, gamma, beta, eps, fuse_silu, y));
}

int df_layer_norm(const df_tensor *x, const df_tensor *gamma, const df_tensor *beta, float eps, df_tensor **out)
{
    const char *op = "layer_norm";
    int rc;
    *out = NULL;
    if ((rc = need_f32(op, "x", x)) || (rc = need_rank(op, "x", x, 1, 4)) || (rc = same_backend(op, x, gamma)) ||
        (rc = same_backend(op, x, beta)))
        return rc;
    int64_t c = x->shape[x->ndim - 1];
    if ((gamma && (rc = vec_of(op, "weight", gamma, c))) || (beta && (rc = vec_of(op, "bias", beta, c)))) return rc;
    if (!(eps >= 0)) return df_error(DF_EINVAL, "layer_norm: eps must be >= 0");
    RUN(x, x->ndim, x->shape, DF_F32, be->layer_norm(be, x, gamma, beta, eps, y));
}

int df_unary(df_unary_op uop, const df_tensor *x, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((unsigned)uop >= DF_UNARY_COUNT) return df_error(DF_EINVAL, "unary: unknown op %d", (int)uop);
    if ((rc = need_f32("unary", "x", x))) return rc;
    RUN(x, x->ndim, x->shape, DF_F32, be->unary(be, uop, x, y));
}

int df_geglu(const df_tensor *x, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((rc = need_f32("geglu", "x", x)) || (rc = need_rank("geglu", "x", x, 1, 4))) return rc;
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    if (shape[x->ndim - 1] % 2) {
        char b[64];
        return df_error(DF_ESHAPE, "geglu: last dim of %s must be even", SHAPE(x, b));
    }
    shape[x->ndim - 1] /= 2;
    RUN(x, x->ndim, shape, DF_F32, be->geglu(be, x, y));
}

int df_binary(df_binary_op bop, const df_tensor *a, const df_tensor *b, df_tensor **out)
{
    static const char *const names[] = {"add", "sub", "mul", "div"};
    int rc;
    *out = NULL;
    if ((unsigned)bop >= DF_BINARY_COUNT) return df_error(DF_EINVAL, "binary: unknown op %d", (int)bop);
    const char *op = names[bop];
    if ((rc = need_f32(op, "a", a)) || (rc = need_f32(op, "b", b)) || (rc = same_backend(op, a, b))) return rc;
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[4];
    for (int i = 0; i < nd; i++) {
        int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char b1[64], b2[64];
            return df_error(DF_ESHAPE, "%s: shapes %s and %s do not broadcast", op, SHAPE(a, b1), SHAPE(b, b2));
        }
        shape[i] = da == 1 ? db : da;
    }
    RUN(a, nd, shape, DF_F32, be->binary(be, bop, a, b, y));
}

int df_add(const df_tensor *a, const df_tensor *b, df_tensor **out) { return df_binary(DF_ADD, a, b, out); }
int df_sub(const df_tensor *a, const df_tensor *b, df_tensor **out) { return df_binary(DF_SUB, a, b, out); }
int df_mul(const df_tensor *a, const df_tensor *b, df_tensor **out) { return df_binary(DF_MUL, a, b, out); }
int df_div(const df_tensor *a, const df_tensor *b, df_tensor **out) { return df_binary(DF_DIV, a, b, out); }

int df_scale(const df_tensor *x, float s, float bias, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((rc = need_f32("scale", "x", x))) return rc;
    RUN(x, x->ndim, x->shape, DF_F32, be->scale(be, x, s, bias, y));
}

int df_softmax(const df_tensor *x, float scale, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((rc = need_f32("softmax", "x", x)) || (rc = need_rank("softmax", "x", x, 1, 4))) return rc;
    RUN(x, x->ndim, x->shape, DF_F32, be->softmax(be, x, scale, y));
}

static int attention(const df_tensor *q, const df_tensor *k, const df_tensor *v, int heads, float scale, int causal,
                     df_tensor **out)
{
    const char *op = "attention";
    int rc;
    *out = NULL;
    if ((rc = need_f32(op, "q", q)) || (rc = need_f32(op, "k", k)) || (rc = need_f32(op, "v", v)) ||
        (rc = need_rank(op, "q", q, 3, 3)) || (rc = need_rank(op, "k", k, 3, 3)) ||
        (rc = need_rank(op, "v", v, 3, 3)) || (rc = same_backend(op, q, k)) || (rc = same_backend(op, q, v)))
        return rc;
    char b1[64], b2[64], b3[64];
    if (heads < 1 || q->shape[2] % heads || v->shape[2] % heads || q->shape[0] != k->shape[0] ||
        k->shape[0] != v->shape[0] || q->shape[2] != k->shape[2] || k->shape[1] != v->shape[1])
        return df_error(DF_ESHAPE, "attention: q %s, k %s, v %s do not fit %d heads", SHAPE(q, b1), SHAPE(k, b2),
                        SHAPE(v, b3), heads);
    if (!isfinite(scale)) return df_error(DF_EINVAL, "attention: scale is not finite");
    if ((rc = fits_blas(op, "row width", q->shape[2] > v->shape[2] ? q->shape[2] : v->shape[2])) ||
        (rc = fits_blas(op, "key count", k->shape[1])))
        return rc;
    if (scale <= 0) scale = 1.0f / sqrtf((float)(q->shape[2] / heads));
    int64_t shape[3] = {q->shape[0], q->shape[1], v->shape[2]};
    count_flops(q->shape[0] * q->shape[1] * k->shape[1] * (q->shape[2] + v->shape[2]));
    RUN(q, 3, shape, DF_F32, be->attention(be, q, k, v, heads, scale, causal, y));
}

int df_attention(const df_tensor *q, const df_tensor *k, const df_tensor *v, int heads, float scale,
                 df_tensor **out)
{
    return attention(q, k, v, heads, scale, 0, out);
}

int df_attention_causal(const df_tensor *q, const df_tensor *k, const df_tensor *v, int heads, float scale,
                        df_tensor **out)
{
    return attention(q, k, v, heads, scale, 1, out);
}

int df_upsample_nearest2x(const df_tensor *x, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((rc = need_f32("upsample_nearest2x", "x", x)) || (rc = need_rank("upsample_nearest2x", "x", x, 4, 4)))
        return rc;
    int64_t shape[4] = {x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]};
    RUN(x, 4, shape, DF_F32, be->upsample_nearest2x(be, x, y));
}

int df_concat(int n, const df_tensor *const *xs, int dim, df_tensor **out)
{
    const char *op = "concat";
    int rc, d = 0;
    *out = NULL;
    if (n < 1 || !xs) return df_error(DF_EINVAL, "concat: needs at least one tensor");
    for (int i = 0; i < n; i++)
        if ((rc = need(op, "tensors", xs[i])) || (rc = same_backend(op, xs[0], xs[i]))) return rc;
    if ((rc = wrap_dim(op, dim, xs[0]->ndim, &d))) return rc;
    int64_t shape[4];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const df_tensor *t = xs[i];
        char b1[64], b2[64];
        if (t->ndim != xs[0]->ndim || t->dtype != xs[0]->dtype)
            return df_error(DF_ESHAPE, "concat: tensor %d %s %s does not match tensor 0 %s %s", i,
                            df_dtype_name(t->dtype), SHAPE(t, b1), df_dtype_name(xs[0]->dtype), SHAPE(xs[0], b2));
        for (int j = 0; j < t->ndim; j++)
            if (j != d && t->shape[j] != xs[0]->shape[j])
                return df_error(DF_ESHAPE, "concat: tensor %d %s does not match tensor 0 %s outside dim %d", i,
                                SHAPE(t, b1), SHAPE(xs[0], b2), d);
        shape[d] += t->shape[d];
    }
    df_backend *be = df_tensor_backend(xs[0]);
    df_tensor *y = df_tensor_new(be, xs[0]->dtype, xs[0]->ndim, shape);
    if (!y) return DF_ENOMEM;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        if ((rc = be->copy_dim(be, xs[i], d, off, 1, y))) {
            df_tensor_free(y);
            return rc;
        }
        off += xs[i]->shape[d];
    }
    *out = y;
    return DF_OK;
}

int df_slice(const df_tensor *x, int dim, int64_t start, int64_t end, df_tensor **out)
{
    int rc, d = 0;
    *out = NULL;
    if ((rc = need("slice", "x", x)) || (rc = wrap_dim("slice", dim, x->ndim, &d))) return rc;
    if (start < 0 || end < start || end > x->shape[d]) {
        char b[64];
        return df_error(DF_EINVAL, "slice: range [%lld, %lld) outside dim %d of %s", (long long)start,
                        (long long)end, d, SHAPE(x, b));
    }
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = end - start;
    RUN(x, x->ndim, shape, x->dtype, be->copy_dim(be, x, d, start, 0, y));
}

int df_permute(const df_tensor *x, const int *perm, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((rc = need("permute", "x", x))) return rc;
    int seen[DF_MAX_DIMS] = {0};
    int64_t shape[4];
    for (int i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]]++)
            return df_error(DF_EINVAL, "permute: not a permutation of %d dims", x->ndim);
        shape[i] = x->shape[perm[i]];
    }
    RUN(x, x->ndim, shape, x->dtype, be->permute(be, x, perm, y));
}

int df_reshape(const df_tensor *x, int ndim, const int64_t *shape, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((rc = need("reshape", "x", x))) return rc;
    return df_tensor_reshape(x, ndim, shape, out);
}

int df_reduce(df_reduce_op rop, const df_tensor *x, int dim, int unbiased, df_tensor **out)
{
    int rc, d = 0;
    *out = NULL;
    if ((rc = need_f32("reduce", "x", x)) || (rc = wrap_dim("reduce", dim, x->ndim, &d))) return rc;
    if (rop != DF_REDUCE_MEAN && rop != DF_REDUCE_VAR) return df_error(DF_EINVAL, "reduce: unknown op %d", rop);
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = 1;
    RUN(x, x->ndim, shape, DF_F32, be->reduce(be, rop, x, d, unbiased, y));
}

int df_timestep_embedding(const df_tensor *t, int dim, int flip_sin_to_cos, float downscale_freq_shift,
                          float scale, float max_period, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((rc = need_f32("timestep_embedding", "t", t)) || (rc = need_rank("timestep_embedding", "t", t, 1, 1)))
        return rc;
    if (dim < 1) return df_error(DF_EINVAL, "timestep_embedding: dim %d must be >= 1", dim);
    if (dim / 2 > 0 && (float)(dim / 2) - downscale_freq_shift == 0)
        return df_error(DF_EINVAL, "timestep_embedding: half dim equals the frequency shift");
    if (!(max_period > 0)) return df_error(DF_EINVAL, "timestep_embedding: max_period must be > 0");
    int64_t shape[2] = {t->shape[0], dim};
    RUN(t, 2, shape, DF_F32,
        be->timestep_embedding(be, t, flip_sin_to_cos, downscale_freq_shift, scale, max_period, y));
}

int df_modulate(const df_tensor *x, const df_tensor *shift, const df_tensor *scale, df_tensor **out)
{
    const char *op = "modulate";
    int rc;
    *out = NULL;
    if ((rc = need_f32(op, "x", x)) || (rc = need_f32(op, "shift", shift)) || (rc = need_f32(op, "scale", scale)) ||
        (rc = need_rank(op, "x", x, 3, 3)) || (rc = same_backend(op, x, shift)) || (rc = same_backend(op, x, scale)))
        return rc;
    char b1[64], b2[64], b3[64];
    if (shift->ndim != 2 || scale->ndim != 2 || shift->shape[0] != x->shape[0] || scale->shape[0] != x->shape[0] ||
        shift->shape[1] != x->shape[2] || scale->shape[1] != x->shape[2])
        return df_error(DF_ESHAPE, "modulate: x %s needs shift and scale (%lld, %lld), got %s and %s", SHAPE(x, b1),
                        (long long)x->shape[0], (long long)x->shape[2], SHAPE(shift, b2), SHAPE(scale, b3));
    RUN(x, 3, x->shape, DF_F32, be->modulate(be, x, shift, scale, y));
}

int df_cast(const df_tensor *x, df_dtype dtype, df_tensor **out)
{
    int rc;
    *out = NULL;
    if ((rc = need_float_weight("cast", "x", x))) return rc;
    if (dtype != DF_F32 && dtype != DF_F16 && dtype != DF_BF16)
        return df_error(DF_EDTYPE, "cast: target dtype %s not supported (F32, F16, BF16)", df_dtype_name(dtype));
    RUN(x, x->ndim, x->shape, dtype, be->cast(be, x, y));
}

int df_fill(df_tensor *x, float value)
{
    int rc;
    if ((rc = need_f32("fill", "x", x))) return rc;
    df_backend *be = df_tensor_backend(x);
    return be->fill(be, x, value);
}
