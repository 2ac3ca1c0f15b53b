/* df_tensor: a dtype, up to 4 dims in NCHW order (row-major, contiguous), and a
 * refcounted buffer owned by one backend. A tensor object has one owner; views
 * (reshape, contiguous slices of the first dim) are new tensor objects that hold
 * a reference to the same buffer. */
#ifndef DF_TENSOR_H
#define DF_TENSOR_H

#include "df.h"

#include <stdatomic.h>
#include <stdbool.h>

#define DF_MAX_DIMS 4

typedef enum {
    DF_F32 = 0,
    DF_F16,
    DF_BF16,
    DF_F64,
    DF_I8,
    DF_U8,
    DF_I16,
    DF_I32,
    DF_I64,
    DF_BOOL,
    DF_DTYPE_COUNT
} df_dtype;

DF_API size_t df_dtype_size(df_dtype t);
DF_API const char *df_dtype_name(df_dtype t);
/* Parses a safetensors dtype name ("F32", "F16", "BF16", ...); -1 when unknown. */
DF_API int df_dtype_from_name(const char *name);

typedef struct df_backend df_backend;

typedef struct df_buffer {
    df_backend *backend;
    void *data;              /* host pointer (CPU) or backend handle */
    size_t size;             /* bytes */
    atomic_int refcount;
    /* External memory (e.g. an mmap'd file): released through this instead of
     * the backend's allocator. */
    void (*release)(void *owner);
    void *owner;
} df_buffer;

typedef struct df_tensor {
    df_dtype dtype;
    int ndim;
    int64_t shape[DF_MAX_DIMS];
    df_buffer *buf;
    size_t offset; /* bytes into buf */
} df_tensor;

/* A new uninitialised tensor on `be` (NULL: the CPU backend). */
DF_API df_tensor *df_tensor_new(df_backend *be, df_dtype dtype, int ndim, const int64_t *shape);
DF_API df_tensor *df_tensor_zeros(df_backend *be, df_dtype dtype, int ndim, const int64_t *shape);
/* A CPU tensor holding a copy of `data` (numel floats / elements of dtype). */
DF_API df_tensor *df_tensor_from_data(df_dtype dtype, int ndim, const int64_t *shape, const void *data);
/* A CPU tensor over external memory, which stays alive until `release(owner)`
 * is called when the last view goes (release may be NULL). */
DF_API df_tensor *df_tensor_wrap(df_dtype dtype, int ndim, const int64_t *shape, void *data,
                                 void (*release)(void *owner), void *owner);
DF_API void df_tensor_free(df_tensor *t);

/* A new tensor object sharing t's buffer (refcount +1), same shape. */
DF_API df_tensor *df_tensor_ref(const df_tensor *t);

DF_API int64_t df_tensor_numel(const df_tensor *t);
DF_API size_t df_tensor_nbytes(const df_tensor *t);
/* Host-visible data pointer, or NULL when the backend's memory is not host memory. */
DF_API void *df_tensor_data(const df_tensor *t);
DF_API df_backend *df_tensor_backend(const df_tensor *t);
DF_API bool df_tensor_same_shape(const df_tensor *a, const df_tensor *b);
/* "(2, 4, 64, 64)" into buf. */
DF_API const char *df_tensor_shape_str(const df_tensor *t, char *buf, size_t n);

/* Copies between a tensor and host memory (any backend). */
DF_API int df_tensor_write(df_tensor *t, const void *src, size_t nbytes);
DF_API int df_tensor_read(const df_tensor *t, void *dst, size_t nbytes);
/* A copy of t on backend `be` (the transfer op). */
DF_API int df_tensor_to(const df_tensor *t, df_backend *be, df_tensor **out);

/* Views. reshape: same numel, one dim may be -1. narrow0: rows [start, start+len)
 * of the first dim (contiguous, so a view). */
DF_API int df_tensor_reshape(const df_tensor *t, int ndim, const int64_t *shape, df_tensor **out);
DF_API int df_tensor_narrow0(const df_tensor *t, int64_t start, int64_t len, df_tensor **out);

/* Half-precision conversion (round-to-nearest-even), used by loaders and ops. */
DF_API float df_f16_to_f32(uint16_t h);
DF_API uint16_t df_f32_to_f16(float f);
DF_API float df_bf16_to_f32(uint16_t h);
DF_API uint16_t df_f32_to_bf16(float f);
/* Converts n elements of a float dtype (F32/F16/BF16/F64) to f32. */
DF_API int df_convert_to_f32(df_dtype src_type, const void *src, float *dst, int64_t n);
DF_API int df_convert_from_f32(df_dtype dst_type, const float *src, void *dst, int64_t n);

/* Internal: buffer lifetime. */
DF_INTERNAL void df_buffer_retain(df_buffer *b);
DF_INTERNAL void df_buffer_release(df_buffer *b);

#endif
