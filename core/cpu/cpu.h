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

/* Scratch memory counted in the stats; df_cpu_scratch_free(NULL) is a no-op. */
DF_INTERNAL void *df_cpu_scratch_alloc(size_t bytes);
DF_INTERNAL void df_cpu_scratch_free(void *p, size_t bytes);

static inline const float *df_cpu_f32(const df_tensor *t) { return (const float *)df_tensor_data(t); }
static inline float *df_cpu_f32_mut(df_tensor *t) { return (float *)df_tensor_data(t); }

/* An f32 view of a weight: the data itself when F32, else a widened scratch
 * copy that *tmp owns (release with df_cpu_scratch_free(*tmp, *tmp_bytes)). */
DF_INTERNAL const float *df_cpu_weight_f32(const df_tensor *w, void **tmp, size_t *tmp_bytes);

/* Kernels (cpu_ops.c, cpu_gemm.c). */
DF_INTERNAL int df_cpu_conv2d(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b,
                              const df_conv2d_params *p, df_tensor *y);
DF_INTERNAL int df_cpu_linear(df_backend *be, const df_tensor *x, const df_tensor *w, const df_tensor *b,
                              df_tensor *y);
DF_INTERNAL int df_cpu_matmul(df_backend *be, const df_tensor *a, const df_tensor *b, int trans_a, int trans_b,
                              int64_t batch, int64_t m, int64_t n, int64_t k, df_tensor *y);
DF_INTERNAL int df_cpu_attention(df_backend *be, const df_tensor *q, const df_tensor *k, const df_tensor *v,
                                 int heads, float scale, df_tensor *y);
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
