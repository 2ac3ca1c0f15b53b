/* CPU backend internals: kernels over host memory, threaded with OpenMP,
 * GEMMs through the tuned BLAS. */
#ifndef DF_CPU_H
#define DF_CPU_H

#include "../backend.h"

/* Memory accounting of the CPU backend (tensor buffers and kernel scratch). */
typedef struct df_cpu_mem_stats {
    size_t current;  /* bytes allocated now */
    size_t peak;     /* high-water mark since the last reset */
} df_cpu_mem_stats;

DF_API df_cpu_mem_stats df_cpu_mem_stats_get(void);
DF_API void df_cpu_mem_stats_reset_peak(void);
DF_API int df_cpu_threads(void);
/* The scratch budgets of the Winograd convolution: the transformed weights of one block of output
 * channels, and the transformed inputs and products of one chunk of tiles (0: the defaults, 48 and
 * 32 MB). For tests, which make them small to run the blocking and chunking on small shapes. */
DF_API void df_cpu_winograd_set_budget(size_t u_bytes, size_t tile_bytes);
/* Frees the blocks the CPU backend keeps for reuse. */
DF_API void df_cpu_cache_trim(void);

/* Scratch memory counted in the stats; df_cpu_scratch_free(NULL) is a no-op. */
DF_INTERNAL void *df_cpu_scratch_alloc(size_t bytes);
DF_INTERNAL void df_cpu_scratch_free(void *p, size_t bytes);

static inline const float *df_cpu_f32(const df_tensor *t) { return (const float *)df_tensor_data(t); }
static inline float *df_cpu_f32_mut(df_tensor *t) { return (float *)df_tensor_data(t); }

/* An f32 view of a weight: the data itself when F32, else a widened scratch
 * copy that *tmp owns (release with df_cpu_scratch_free(*tmp, *tmp_bytes)). */
DF_INTERNAL const float *df_cpu_weight_f32(const df_tensor *w, void **tmp, size_t *tmp_bytes);

/* exp(x) to ~2 ulp in plain arithmetic, so loops calling it vectorise
 * (glibc's expf does not): 2^n · p(r), r = x - n·ln2 split in two parts,
 * p the Cephes minimax polynomial. Exactly 0 below ln(FLT_MIN). */
static inline float df_cpu_expf(float x)
{
    float xc = x > 88.3762626647949f ? 88.3762626647949f : x;
    xc = xc < -87.3365447505531f ? -87.3365447505531f : xc;
    /* round to nearest by adding and removing 1.5·2^23 (vectorises, unlike floorf) */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)(n == n ? n : 0.0f) + 127) << 23; /* NaN: any scale (p is NaN), no undefined cast */
    float sc;
    __builtin_memcpy(&sc, &bits, sizeof sc);
    float y = p * sc;
    return x < -87.3365447505531f ? 0.0f : y;
}

/* Kernels (cpu_ops.c, cpu_gemm.c). */
DF_INTERNAL int df_cpu_conv2d(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b,
                              const df_conv2d_params *p, df_tensor *y);
/* Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions (cpu_winograd.c): whether it takes this one
 * (DIFUSA_CONV=im2col turns it off), and the kernel on f32 views of the weights. */
DF_INTERNAL int df_cpu_winograd_applies(const df_tensor *w, const df_conv2d_params *p, const df_tensor *y);
DF_INTERNAL int df_cpu_conv2d_winograd(const float *x, const float *w, const float *bias, const df_tensor *xt,
                                       const df_tensor *wt, const df_conv2d_params *p, df_tensor *yt);
DF_INTERNAL int df_cpu_linear(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b,
                              df_tensor *y);
DF_INTERNAL int df_cpu_matmul(df_backend *be, const df_tensor *a, const df_tensor *b, int trans_a, int trans_b,
                              int64_t batch, int64_t m, int64_t n, int64_t k, df_tensor *y);
DF_INTERNAL int df_cpu_attention(df_backend *be, const df_tensor *q, const df_tensor *k, const df_tensor *v,
                                 int heads, float scale, int causal, df_tensor *y);
DF_INTERNAL int df_cpu_group_norm(df_backend *be, const df_tensor *x, int groups, const df_tensor *gamma,
                                  const df_tensor *beta, float eps, int fuse_silu, df_tensor *y);
DF_INTERNAL int df_cpu_layer_norm(df_backend *be, const df_tensor *x, const df_tensor *gamma,
                                  const df_tensor *beta, float eps, df_tensor *y);
DF_INTERNAL int df_cpu_unary(df_backend *be, df_unary_op op, const df_tensor *x, df_tensor *y);
DF_INTERNAL int df_cpu_geglu(df_backend *be, const df_tensor *x, df_tensor *y);
DF_INTERNAL int df_cpu_binary(df_backend *be, df_binary_op op, const df_tensor *a, const df_tensor *b,
                              df_tensor *y);
DF_INTERNAL int df_cpu_scale(df_backend *be, const df_tensor *x, float s, float bias, df_tensor *y);
DF_INTERNAL int df_cpu_softmax(df_backend *be, const df_tensor *x, float scale, df_tensor *y);
DF_INTERNAL void df_cpu_softmax_rows(float *x, int64_t rows, int64_t n, float scale);
DF_INTERNAL int df_cpu_upsample_nearest2x(df_backend *be, const df_tensor *x, df_tensor *y);
DF_INTERNAL int df_cpu_copy_dim(df_backend *be, const df_tensor *x, int dim, int64_t offset, int into,
                                df_tensor *y);
DF_INTERNAL int df_cpu_permute(df_backend *be, const df_tensor *x, const int *perm, df_tensor *y);
DF_INTERNAL int df_cpu_reduce(df_backend *be, df_reduce_op op, const df_tensor *x, int dim, int unbiased,
                              df_tensor *y);
DF_INTERNAL int df_cpu_timestep_embedding(df_backend *be, const df_tensor *t, int flip_sin_to_cos, float shift,
                                          float scale, float max_period, df_tensor *y);
DF_INTERNAL int df_cpu_modulate(df_backend *be, const df_tensor *x, const df_tensor *shift,
                                const df_tensor *scale, df_tensor *y);
DF_INTERNAL int df_cpu_cast(df_backend *be, const df_tensor *x, df_tensor *y);
DF_INTERNAL int df_cpu_fill(df_backend *be, df_tensor *x, float value);

#endif
