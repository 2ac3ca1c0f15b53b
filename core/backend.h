/* The backend interface: buffer management, transfers and one entry per op.
 * ops.c checks shapes and dtypes before dispatching, so a backend's kernels do
 * no argument checking; they may still fail (out of memory, device error) and
 * then return a status with the message set. Outputs arrive allocated. */
#ifndef DF_BACKEND_H
#define DF_BACKEND_H

#include "ops.h"
#include "tensor.h"

struct df_backend {
    const char *name;
    int is_host; /* buffers are host memory: df_tensor_data works */

    int (*buffer_alloc)(df_backend *be, size_t size, df_buffer **out);
    void (*buffer_free)(df_backend *be, df_buffer *buf);
    int (*upload)(df_backend *be, df_buffer *dst, size_t offset, const void *src, size_t n);
    int (*download)(df_backend *be, const df_buffer *src, size_t offset, void *dst, size_t n);
    int (*fill)(df_backend *be, df_tensor *x, float value);

    int (*conv2d)(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b,
                  const df_conv2d_params *p, df_tensor *y);
    int (*linear)(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b, df_tensor *y);
    /* a, b as df_matmul; batch_a / batch_b are 1 when broadcast. */
    int (*matmul)(df_backend *be, const df_tensor *a, const df_tensor *b, int trans_a, int trans_b,
                  int64_t batch, int64_t m, int64_t n, int64_t k, df_tensor *y);
    int (*group_norm)(df_backend *be, const df_tensor *x, int groups, const df_tensor *gamma,
                      const df_tensor *beta, float eps, int fuse_silu, df_tensor *y);
    int (*layer_norm)(df_backend *be, const df_tensor *x, const df_tensor *gamma, const df_tensor *beta,
                      float eps, df_tensor *y);
    int (*unary)(df_backend *be, df_unary_op op, const df_tensor *x, df_tensor *y);
    int (*geglu)(df_backend *be, const df_tensor *x, df_tensor *y);
    /* a, b already broadcast-compatible with y; shapes padded to 4 dims. */
    int (*binary)(df_backend *be, df_binary_op op, const df_tensor *a, const df_tensor *b, df_tensor *y);
    int (*scale)(df_backend *be, const df_tensor *x, float s, float bias, df_tensor *y);
    int (*softmax)(df_backend *be, const df_tensor *x, float scale, df_tensor *y);
    int (*attention)(df_backend *be, const df_tensor *q, const df_tensor *k, const df_tensor *v, int heads,
                     float scale, int causal, df_tensor *y);
    int (*upsample_nearest2x)(df_backend *be, const df_tensor *x, df_tensor *y);
    /* Copies x into y at `offset` along dim (used by concat and slice): y[..., off:off+x.dim, ...] = x
     * when `into`; else y = x[..., off:off+y.dim, ...]. */
    int (*copy_dim)(df_backend *be, const df_tensor *x, int dim, int64_t offset, int into, df_tensor *y);
    int (*permute)(df_backend *be, const df_tensor *x, const int *perm, df_tensor *y);
    int (*reduce)(df_backend *be, df_reduce_op op, const df_tensor *x, int dim, int unbiased, df_tensor *y);
    int (*timestep_embedding)(df_backend *be, const df_tensor *t, int flip_sin_to_cos, float shift,
                              float scale, float max_period, df_tensor *y);
    int (*modulate)(df_backend *be, const df_tensor *x, const df_tensor *shift, const df_tensor *scale,
                    df_tensor *y);
    int (*cast)(df_backend *be, const df_tensor *x, df_tensor *y);

    void (*destroy)(df_backend *be);
    void *impl;
};

/* The process-wide CPU backend (created on first use; never freed). */
DF_API df_backend *df_backend_cpu(void);

#endif
