/* OpenCL backend internals shared by cl_backend.c (device, memory, program)
 * and cl_ops.c (the op kernels and CLBlast calls). */
#ifndef DF_CL_INTERNAL_H
#define DF_CL_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "../opencl.h"

/* Every kernel of the program, by name; the table in cl_backend.c is kept in
 * step with a _Static_assert. */
typedef enum {
    K_FILL,
    K_CONVERT,
    K_UNARY,
    K_GEGLU,
    K_BINARY,
    K_SCALE,
    K_BIAS_FILL,
    K_MODULATE,
    K_GROUP_NORM,
    K_LAYER_NORM,
    K_SOFTMAX,
    K_REDUCE,
    K_IM2COL,
    K_UPSAMPLE2X,
    K_COPY_BLOCK_4,
    K_COPY_BLOCK_2,
    K_COPY_BLOCK_1,
    K_PERMUTE_4,
    K_PERMUTE_2,
    K_PERMUTE_1,
    K_COUNT
} df_cl_kernel;

#define DF_CL_WG 64       /* work-group size of the row-reduction kernels (DF_WG in 20_norm.cl) */
#define DF_CL_CACHE_SLOTS 64

typedef struct df_ocl {
    df_backend be; /* first: a df_backend * is a df_ocl * */
    df_opencl_device_info info;
    cl_platform_id platform;
    cl_device_id device;
    cl_context ctx;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernels[K_COUNT];
    /* caching allocator: freed buffers by size class */
    cl_mem cache_mem[DF_CL_CACHE_SLOTS];
    size_t cache_size[DF_CL_CACHE_SLOTS];
    df_opencl_stats stats;
} df_ocl;

static inline df_ocl *df_ocl_of(df_backend *be) { return (df_ocl *)be; }
static inline cl_mem df_cl_mem(const df_tensor *t) { return (cl_mem)t->buf->data; }
/* The tensor's offset in elements of its dtype. */
static inline int df_cl_off(const df_tensor *t) { return (int)(t->offset / df_dtype_size(t->dtype)); }

DF_INTERNAL const char *df_cl_error_name(cl_int err);
DF_INTERNAL int df_cl_fail(df_ocl *o, const char *what, cl_int err);
/* Enqueues kernel k over `n` work-items (rounded up to the work-group size
 * `wg`, or DF_CL_WG groups of work-items when groups > 0). */
DF_INTERNAL int df_cl_run(df_ocl *o, df_cl_kernel k, size_t n, size_t groups);
DF_INTERNAL int df_cl_set(df_ocl *o, df_cl_kernel k, int idx, size_t size, const void *val);
/* Scratch device memory through the caching allocator. */
DF_INTERNAL cl_mem df_cl_scratch(df_ocl *o, size_t bytes);
DF_INTERNAL void df_cl_scratch_free(df_ocl *o, cl_mem m, size_t bytes);

/* The op table entries (cl_ops.c). */
DF_INTERNAL void df_cl_install_ops(df_backend *be);

/* The embedded kernel source (generated from the .cl files at build). */
DF_INTERNAL extern const char df_cl_source[];

#endif
