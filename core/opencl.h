/* The OpenCL backend: any OpenCL 1.2+ device, GEMMs through CLBlast, every
 * other op in our kernels (the .cl files in core/opencl/kernels, embedded at build).
 *
 * Device selection: a selector string is either a device index as listed by
 * df_opencl_list_devices ("0", "1", ...) or a case-insensitive substring of
 * "<platform name> <device name>". NULL or "" uses $DIFUSA_DEVICE when set,
 * else the first GPU, else the first device of any kind.
 *
 * Compiled programs are cached on disk under $XDG_CACHE_HOME/difusa/opencl
 * (~/.cache/difusa/opencl when XDG_CACHE_HOME is unset), keyed by device,
 * driver version and kernel source hash, so a second run does not recompile. */
#ifndef DF_OPENCL_H
#define DF_OPENCL_H

#include "backend.h"

typedef struct df_opencl_device_info {
    int index;                /* the selector index */
    char platform[128];
    char name[128];
    char version[64];         /* CL_DEVICE_VERSION */
    char driver[64];          /* CL_DRIVER_VERSION */
    int is_gpu;
    int has_fp16;             /* cl_khr_fp16 */
    uint64_t global_mem;      /* bytes */
    uint64_t max_alloc;       /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    int compute_units;
} df_opencl_device_info;

/* All devices of all platforms, in selector order. *out is an array the caller
 * frees with df_opencl_free_devices. No platform at all is not an error: the
 * count is 0 (df_last_error() says why). */
DF_API int df_opencl_list_devices(df_opencl_device_info **out, int *count);
DF_API void df_opencl_free_devices(df_opencl_device_info *devices);

/* Creates a backend on the selected device; free it with df_backend_free.
 * Errors: no OpenCL platform, unknown selector (the message lists the
 * devices), context or program build failure (the message carries the
 * device's build log). */
DF_API int df_backend_opencl_create(const char *selector, df_backend **out);
DF_API const df_opencl_device_info *df_opencl_device(const df_backend *be);

/* How the backend's program was obtained: compiled from source, or loaded
 * from the on-disk binary cache. */
typedef struct df_opencl_stats {
    int programs_compiled;
    int programs_from_cache;
    size_t bytes_in_use;      /* device buffers held by tensors */
    size_t bytes_cached;      /* freed buffers kept for reuse */
    size_t peak_bytes;        /* high-water mark of bytes_in_use since creation or the last reset */
} df_opencl_stats;
DF_API df_opencl_stats df_opencl_get_stats(const df_backend *be);
DF_API void df_opencl_reset_peak(df_backend *be);

/* Builds `source` through the same path as the backend's own kernels (cache
 * included) and discards the result: for tests and for checking user kernels.
 * A compile error returns DF_EBACKEND with the device's build log. */
DF_API int df_opencl_build_check(df_backend *be, const char *source);

/* Waits for all queued work on the backend. */
DF_API int df_opencl_finish(df_backend *be);

/* Any backend but the process-wide CPU one; NULL is a no-op. Tensors must be
 * freed before their backend. */
DF_API void df_backend_free(df_backend *be);

#endif
