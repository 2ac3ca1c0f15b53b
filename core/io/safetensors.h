/* safetensors: an mmap'd reader that validates the whole header before any
 * tensor is touched, and an atomic writer.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the data area; offsets are relative to the start of the data area. */
#ifndef DF_SAFETENSORS_H
#define DF_SAFETENSORS_H

#include "../tensor.h"

#define DF_ST_MAX_DIMS 8

typedef struct df_safetensors df_safetensors;

typedef struct df_st_info {
    const char *name;
    df_dtype dtype;
    int ndim;
    int64_t shape[DF_ST_MAX_DIMS];
    size_t offset; /* bytes from the start of the data area */
    size_t nbytes;
} df_st_info;

/* Opens and validates `path`. Every malformed file gives an error naming the
 * file and the problem (df_last_error()). */
DF_API int df_safetensors_open(const char *path, df_safetensors **out);
/* Closes the file; tensors obtained with df_safetensors_get keep the mapping
 * alive until they are freed. NULL is a no-op. */
DF_API void df_safetensors_close(df_safetensors *st);

DF_API const char *df_safetensors_path(const df_safetensors *st);
DF_API int df_safetensors_count(const df_safetensors *st);
/* The i-th tensor, in file (data offset) order. */
DF_API const df_st_info *df_safetensors_info(const df_safetensors *st, int i);
/* NULL when absent. */
DF_API const df_st_info *df_safetensors_find(const df_safetensors *st, const char *name);
/* Raw bytes of a tensor inside the mapping (valid while the file is open). */
DF_API const void *df_safetensors_data(const df_safetensors *st, const df_st_info *info);

/* `__metadata__` entries: NULL when absent. */
DF_API const char *df_safetensors_metadata(const df_safetensors *st, const char *key);
DF_API int df_safetensors_metadata_count(const df_safetensors *st);
DF_API void df_safetensors_metadata_at(const df_safetensors *st, int i, const char **key,
                                       const char **value);

/* A CPU tensor of the stored dtype: zero-copy over the mapping when aligned,
 * a copy otherwise. More than 4 dims is an error naming the tensor. */
DF_API int df_safetensors_get(df_safetensors *st, const char *name, df_tensor **out);
/* A CPU f32 copy (F32/F16/BF16/F64 converted); other dtypes are an error. */
DF_API int df_safetensors_get_f32(df_safetensors *st, const char *name, df_tensor **out);

/* Writes tensors (any backend; read back through df_tensor_read) and optional
 * metadata key/value pairs to `path` atomically (a temporary file renamed into
 * place), so a failed write never leaves a truncated file behind. */
DF_API int df_safetensors_save(const char *path, int n, const char *const *names,
                               const df_tensor *const *tensors, int n_meta,
                               const char *const *meta_keys, const char *const *meta_values);

#endif
