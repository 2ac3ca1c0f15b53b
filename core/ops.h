/* The op set every model uses, forward only. Each op checks shapes and dtypes
 * once, allocates its output on the inputs' backend and dispatches to that
 * backend's kernel. Outputs are new tensors the caller owns. Activations are
 * f32; weight operands of conv2d / linear may be F16 or BF16 (widened inside).
 *
 * Shapes follow torch: NCHW for images, (B, N, C) for token sequences. */
#ifndef DF_OPS_H
#define DF_OPS_H

#include "tensor.h"

typedef enum {
    DF_OP_CONV2D,
    DF_OP_LINEAR,
    DF_OP_MATMUL,
    DF_OP_GROUP_NORM,
    DF_OP_LAYER_NORM,
    DF_OP_UNARY,
    DF_OP_GEGLU,
    DF_OP_BINARY,
    DF_OP_SCALE,
    DF_OP_SOFTMAX,
    DF_OP_ATTENTION,
    DF_OP_UPSAMPLE_NEAREST2X,
    DF_OP_CONCAT,
    DF_OP_SLICE,
    DF_OP_PERMUTE,
    DF_OP_REDUCE,
    DF_OP_TIMESTEP_EMBEDDING,
    DF_OP_MODULATE,
    DF_OP_CAST,
    DF_OP_COUNT
} df_op;

DF_API const char *df_op_name(df_op op);

/* The multiply-add work the ops have run in this process, as FLOPs (2 per
 * multiply-add) over conv2d, linear, matmul and attention (QKᵀ and AV),
 * counted from the shapes each call was given, on any backend. For
 * benchmarks: one UNet step's count divided by the measured GEMM rate is the
 * step's time bound. Process-wide and atomic; df_flops_reset() zeroes it. */
DF_API uint64_t df_flops(void);
DF_API void df_flops_reset(void);

typedef enum { DF_SILU, DF_GELU, DF_GELU_TANH, DF_QUICK_GELU, DF_UNARY_COUNT } df_unary_op;
typedef enum { DF_ADD, DF_SUB, DF_MUL, DF_DIV, DF_BINARY_COUNT } df_binary_op;
typedef enum { DF_REDUCE_MEAN, DF_REDUCE_VAR } df_reduce_op;

typedef struct df_conv2d_params {
    int stride_h, stride_w;
    int pad_h, pad_w;           /* zero padding on every side */
    int pad_bottom, pad_right;  /* extra padding on the far sides only (diffusers'
                                   Downsample2D with padding 0 pads (0, 1, 0, 1)) */
} df_conv2d_params;

DF_API df_conv2d_params df_conv2d_default_params(void); /* stride 1, padding 0 */

/* x (N, Cin, H, W), w (Cout, Cin, kh, kw), b (Cout) or NULL -> (N, Cout, Ho, Wo),
 * Ho = (H + 2 pad_h + pad_bottom - kh) / stride_h + 1. */
DF_API int df_conv2d(const df_tensor *x, const df_tensor *w, const df_tensor *b,
                     const df_conv2d_params *p, df_tensor **out);

/* x (..., in), w (out, in), b (out) or NULL -> (..., out): x wᵀ + b. */
DF_API int df_linear(const df_tensor *x, const df_tensor *w, const df_tensor *b, df_tensor **out);

/* Batched a·b with optional transposes of the last two dims: a (B, M, K) (or
 * (B, K, M) with trans_a), b (B, K, N) (or (B, N, K) with trans_b) -> (B, M, N).
 * 2-D operands are batch 1; a batch of 1 broadcasts against the other. */
DF_API int df_matmul(const df_tensor *a, const df_tensor *b, int trans_a, int trans_b, df_tensor **out);

/* x (N, C, ...) normalised over groups of C/groups channels and the rest;
 * gamma, beta (C) or NULL. fuse_silu applies SiLU to the result (GroupNorm+SiLU
 * in one pass, as every ResNet block does). */
DF_API int df_group_norm(const df_tensor *x, int groups, const df_tensor *gamma, const df_tensor *beta,
                         float eps, int fuse_silu, df_tensor **out);

/* Over the last dim; gamma, beta (C) or NULL. */
DF_API int df_layer_norm(const df_tensor *x, const df_tensor *gamma, const df_tensor *beta, float eps,
                         df_tensor **out);

/* silu x·σ(x); gelu 0.5x(1+erf(x/√2)); gelu_tanh; quick_gelu x·σ(1.702x). */
DF_API int df_unary(df_unary_op op, const df_tensor *x, df_tensor **out);

/* x (..., 2C) -> (..., C): first half · gelu(second half) (diffusers' GEGLU). */
DF_API int df_geglu(const df_tensor *x, df_tensor **out);

/* Elementwise with numpy/torch broadcasting (shapes aligned at the right). */
DF_API int df_binary(df_binary_op op, const df_tensor *a, const df_tensor *b, df_tensor **out);
DF_API int df_add(const df_tensor *a, const df_tensor *b, df_tensor **out);
DF_API int df_sub(const df_tensor *a, const df_tensor *b, df_tensor **out);
DF_API int df_mul(const df_tensor *a, const df_tensor *b, df_tensor **out);
DF_API int df_div(const df_tensor *a, const df_tensor *b, df_tensor **out);

/* x·s + bias. */
DF_API int df_scale(const df_tensor *x, float s, float bias, df_tensor **out);

/* Softmax over the last dim, x·scale first. */
DF_API int df_softmax(const df_tensor *x, float scale, df_tensor **out);

/* Multi-head scaled-dot-product attention in the tokens-major layout models
 * produce: q (B, Nq, H·D), k (B, Nk, H·D), v (B, Nk, H·Dv) -> (B, Nq, H·Dv);
 * softmax(q kᵀ · scale) v per head; scale <= 0 means 1/√D. Computed per block
 * of queries, so memory is O(block · Nk), never Nq × Nk. */
DF_API int df_attention(const df_tensor *q, const df_tensor *k, const df_tensor *v, int heads, float scale,
                        df_tensor **out);
/* The same with a causal mask: query i attends to keys j <= i (torch's
 * is_causal, top-left aligned when Nq != Nk), as CLIP's text encoder needs. */
DF_API int df_attention_causal(const df_tensor *q, const df_tensor *k, const df_tensor *v, int heads, float scale,
                               df_tensor **out);

/* (N, C, H, W) -> (N, C, 2H, 2W), nearest. */
DF_API int df_upsample_nearest2x(const df_tensor *x, df_tensor **out);

/* Concatenates n tensors along `dim` (negative counts from the end). */
DF_API int df_concat(int n, const df_tensor *const *xs, int dim, df_tensor **out);
/* x[..., start:end, ...] along `dim` (a copy; df_tensor_narrow0 gives a view of dim 0). */
DF_API int df_slice(const df_tensor *x, int dim, int64_t start, int64_t end, df_tensor **out);
/* out.shape[i] = x.shape[perm[i]] (a copy). */
DF_API int df_permute(const df_tensor *x, const int *perm, df_tensor **out);
/* A view with the same data; see df_tensor_reshape. */
DF_API int df_reshape(const df_tensor *x, int ndim, const int64_t *shape, df_tensor **out);

/* Mean or variance along `dim` (keepdim); var with `unbiased` uses n-1. */
DF_API int df_reduce(df_reduce_op op, const df_tensor *x, int dim, int unbiased, df_tensor **out);

/* Sinusoidal embedding of timesteps t (N) -> (N, dim), as diffusers'
 * get_timestep_embedding: exponent = -ln(max_period)·i / (half - shift);
 * emb = scale·t·exp(exponent); [sin, cos] or [cos, sin] with flip_sin_to_cos;
 * zero-padded when dim is odd. */
DF_API int df_timestep_embedding(const df_tensor *t, int dim, int flip_sin_to_cos, float downscale_freq_shift,
                                 float scale, float max_period, df_tensor **out);

/* adaLN: x (B, N, C), shift and scale (B, C) -> x·(1 + scale) + shift. */
DF_API int df_modulate(const df_tensor *x, const df_tensor *shift, const df_tensor *scale, df_tensor **out);

/* A copy converted to dtype (F32/F16/BF16). */
DF_API int df_cast(const df_tensor *x, df_dtype dtype, df_tensor **out);

/* Fills an f32 tensor with a value (any backend). */
DF_API int df_fill(df_tensor *x, float value);

#endif
