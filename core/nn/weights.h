/* A checkpoint's tensors by name: one single-file .safetensors checkpoint, or
 * the .safetensors files of a diffusers component folder (text_encoder/,
 * unet/, ...), with that folder's config.json when present. Models read their
 * weights through this and get tensors on the backend they run on: zero-copy
 * views of the mmap on the CPU, one upload per tensor elsewhere. */
#ifndef DF_WEIGHTS_H
#define DF_WEIGHTS_H

#include "../io/safetensors.h"
#include "../tensor.h"

typedef struct df_weights df_weights;

/* `path` is a .safetensors file or a folder; a folder's files are read in
 * name order, preferring full-precision files (model.safetensors over
 * model.fp16.safetensors) when both exist. */
DF_API int df_weights_open(const char *path, df_weights **out);
DF_API void df_weights_free(df_weights *w);
DF_API const char *df_weights_path(const df_weights *w);

/* NULL when absent. */
DF_API const df_st_info *df_weights_find(const df_weights *w, const char *name);
/* printf-style name. */
DF_API const df_st_info *df_weights_findf(const df_weights *w, const char *fmt, ...) DF_PRINTF(2, 3);
/* Iteration over every tensor of every file. */
DF_API int df_weights_count(const df_weights *w);
DF_API const df_st_info *df_weights_at(const df_weights *w, int i);
/* A metadata value from any of the files, or NULL. */
DF_API const char *df_weights_metadata(const df_weights *w, const char *key);
/* The folder's config.json text, or NULL (single files have none). */
DF_API const char *df_weights_config(const df_weights *w);

/* A whole text file (at most max_bytes) as a NUL-terminated string the caller
 * frees with df_free; NULL when unreadable. */
DF_INTERNAL char *df_read_text_file(const char *path, long max_bytes);

/* Makes `alias` another name for the stored tensor `real` (loaders map the
 * original LDM names onto diffusers' this way, then read diffusers names
 * only). Aliases are looked up before stored names. */
DF_API int df_weights_add_alias(df_weights *w, const char *alias, const char *real);

/* Tensor `name` on backend `be` (NULL: CPU) in its stored dtype, or with
 * `want_f32` converted to f32. A missing tensor is DF_ENOTFOUND naming the
 * tensor and the checkpoint. */
DF_API int df_weights_get(const df_weights *w, const char *name, df_backend *be, int want_f32, df_tensor **out);

#endif
