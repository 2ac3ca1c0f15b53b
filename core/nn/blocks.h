/* Building blocks shared by the UNet and the VAE, over diffusers' module
 * names: ResnetBlock2D, Transformer2DModel (BasicTransformerBlock with self-
 * and cross-attention and a GEGLU feed-forward), the VAE's spatial attention,
 * and down/up sampling. Internal to the library. */
#ifndef DF_NN_BLOCKS_H
#define DF_NN_BLOCKS_H

#include "../ops.h"
#include "weights.h"

/* Reads weights onto a backend; the first failure sticks in `rc` and later
 * calls do nothing, so a loader checks once at the end. */
typedef struct nn_loader {
    const df_weights *w;
    df_backend *be;
    int rc;
} nn_loader;

/* Tensor named by the printf-style name; NULL (and rc set) when missing,
 * unless `optional`. Stored dtype (f16 weights stay f16). */
DF_INTERNAL df_tensor *nn_get(nn_loader *L, int optional, const char *fmt, ...) DF_PRINTF(3, 4);
DF_INTERNAL int nn_has(const nn_loader *L, const char *fmt, ...) DF_PRINTF(2, 3);
/* When `t` is loaded (not NULL, rc clear) and its shape is not the `ndim`
 * sizes that follow (ints; -1: any size), sets rc to an error naming the
 * tensor prefix + name as the file stores it (an alias resolved), with both
 * shapes. */
DF_INTERNAL void nn_expect(nn_loader *L, const df_tensor *t, const char *prefix, const char *name, int ndim, ...);
/* A linear layer's `name`.weight (out, in) and `name`.bias (out); -1: any size. */
DF_INTERNAL void nn_expect_linear(nn_loader *L, const df_tensor *w, const df_tensor *b, const char *prefix,
                                  const char *name, int out, int in);
/* A 1x1-conv weight (C, C, 1, 1) viewed as a linear one (C, C); others unchanged. */
DF_INTERNAL df_tensor *nn_as_linear(nn_loader *L, df_tensor *w);

/* ResnetBlock2D: GN-SiLU-conv, + time embedding projection, GN-SiLU-conv,
 * 1x1 shortcut when the channel count changes. */
typedef struct nn_resnet {
    df_tensor *norm1_w, *norm1_b, *conv1_w, *conv1_b, *temb_w, *temb_b;
    df_tensor *norm2_w, *norm2_b, *conv2_w, *conv2_b, *short_w, *short_b;
    int groups;
    float eps;
} nn_resnet;

DF_INTERNAL void nn_resnet_load(nn_loader *L, nn_resnet *r, const char *prefix, int groups, float eps);
DF_INTERNAL void nn_resnet_free(nn_resnet *r);
/* x (B, C, H, W); temb (B, T) already through SiLU, or NULL. */
DF_INTERNAL int nn_resnet_forward(const nn_resnet *r, const df_tensor *x, const df_tensor *temb, df_tensor **out);

/* Attention (to_q/k/v, to_out.0) over token-major tensors. */
typedef struct nn_attn {
    df_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
} nn_attn;

DF_INTERNAL void nn_attn_load(nn_loader *L, nn_attn *a, const char *prefix);
DF_INTERNAL void nn_attn_free(nn_attn *a);
/* x (B, N, C), ctx (B, M, Cc) or NULL for self-attention. */
DF_INTERNAL int nn_attn_forward(const nn_attn *a, const df_tensor *x, const df_tensor *ctx, int heads, df_tensor **out);

typedef struct nn_tblock {
    df_tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b, *ln3_w, *ln3_b;
    nn_attn attn1, attn2;
    df_tensor *ff_in_w, *ff_in_b, *ff_out_w, *ff_out_b;
} nn_tblock;

/* Transformer2DModel: GN, proj_in (1x1 conv or linear), `depth` blocks,
 * proj_out, residual. */
typedef struct nn_transformer {
    df_tensor *norm_w, *norm_b, *in_w, *in_b, *out_w, *out_b;
    int linear_proj, depth, heads, groups;
    nn_tblock *blocks;
} nn_transformer;

DF_INTERNAL void nn_transformer_load(nn_loader *L, nn_transformer *t, const char *prefix, int heads, int groups);
DF_INTERNAL void nn_transformer_free(nn_transformer *t);
/* x (B, C, H, W), ctx (B, M, Cc). */
DF_INTERNAL int nn_transformer_forward(const nn_transformer *t, const df_tensor *x, const df_tensor *ctx,
                                       df_tensor **out);

/* The VAE's mid-block attention: GN, single-head self-attention over the
 * pixels, residual. */
typedef struct nn_spatial_attn {
    df_tensor *norm_w, *norm_b;
    nn_attn attn;
    int groups;
} nn_spatial_attn;

DF_INTERNAL void nn_spatial_attn_load(nn_loader *L, nn_spatial_attn *a, const char *prefix, int groups);
DF_INTERNAL void nn_spatial_attn_free(nn_spatial_attn *a);
DF_INTERNAL int nn_spatial_attn_forward(const nn_spatial_attn *a, const df_tensor *x, df_tensor **out);

/* x + y, freeing both (a residual connection); y may alias nothing else. */
DF_INTERNAL int nn_add_free(df_tensor *x, df_tensor *y, df_tensor **out);
/* Replaces *x by f's result, freeing the old one. */
#define NN_STEP(rc, x, call_with_out)                                                                              \
    do {                                                                                                           \
        if (!(rc)) {                                                                                               \
            df_tensor *next_ = NULL;                                                                               \
            (rc) = (call_with_out);                                                                                \
            df_tensor_free(x);                                                                                     \
            (x) = next_;                                                                                           \
        }                                                                                                          \
    } while (0)

DF_INTERNAL void nn_free_tensors(df_tensor **ts, int n);
/* t on backend be: a new reference when it is there already, else a copy. */
DF_INTERNAL int nn_on(df_backend *be, const df_tensor *t, df_tensor **out);

#endif
