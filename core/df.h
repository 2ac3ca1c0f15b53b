/* difusa — status codes, the per-thread error message, and the allocator every
 * part of the library goes through (so tests can make the Nth allocation fail). */
#ifndef DF_H
#define DF_H

#include <stddef.h>
#include <stdint.h>

#define DF_VERSION_MAJOR 0
#define DF_VERSION_MINOR 1
#define DF_VERSION_PATCH 0
#define DF_VERSION "0.1.0"

#if defined(__GNUC__)
#define DF_API __attribute__((visibility("default")))
#define DF_INTERNAL __attribute__((visibility("hidden")))
#define DF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DF_API
#define DF_INTERNAL
#define DF_PRINTF(a, b)
#endif

/* Every fallible function returns one of these (DF_OK or a negative code) and
 * leaves a message naming the file / tensor / argument in df_last_error(). */
enum {
    DF_OK = 0,
    DF_EINVAL = -1,       /* bad argument */
    DF_ENOMEM = -2,       /* allocation failed */
    DF_EIO = -3,          /* file could not be opened / read / written */
    DF_EFORMAT = -4,      /* malformed file contents */
    DF_ESHAPE = -5,       /* shapes do not fit the op */
    DF_EDTYPE = -6,       /* dtype not supported by the op */
    DF_EBACKEND = -7,     /* tensors on different backends, or backend failure */
    DF_ENOTFOUND = -8,    /* a named tensor / key is missing */
};

/* The message of the last failure on this thread ("" when none). */
DF_API const char *df_last_error(void);
DF_API void df_clear_error(void);
DF_API const char *df_status_name(int status);

/* Sets this thread's message and returns `code` (so `return df_error(...)` reads well). */
DF_INTERNAL int df_error(int code, const char *fmt, ...) DF_PRINTF(2, 3);
/* Prefixes the current message with more context: "loading x.safetensors: <old>". */
DF_INTERNAL int df_error_prefix(int code, const char *fmt, ...) DF_PRINTF(2, 3);

/* Messages that are not errors: notes while loading, fallbacks, progress.
 * By default warnings and errors go to stderr; a host installs its own
 * handler (and level) to route them elsewhere. */
typedef enum { DF_LOG_ERROR = 0, DF_LOG_WARN, DF_LOG_INFO, DF_LOG_DEBUG } df_log_level;
typedef void (*df_log_fn)(df_log_level level, const char *msg, void *ud);
/* NULL restores the default stderr handler. */
DF_API void df_log_set_handler(df_log_fn fn, void *ud);
/* Messages above `max` are dropped (default DF_LOG_WARN). */
DF_API void df_log_set_level(df_log_level max);
DF_INTERNAL void df_log(df_log_level level, const char *fmt, ...) DF_PRINTF(2, 3);

/* Allocation. All library allocations go through these; a failure sets the
 * error message and returns NULL. */
DF_INTERNAL void *df_malloc(size_t size);
DF_INTERNAL void *df_calloc(size_t n, size_t size);
DF_INTERNAL void *df_realloc(void *p, size_t size);
DF_INTERNAL void *df_aligned_alloc(size_t size); /* 64-byte aligned; free with df_free */
DF_INTERNAL void df_free(void *p);
DF_INTERNAL char *df_strdup(const char *s);
/* For allocators that reuse memory: counts as an allocation for fault
 * injection and returns nonzero (message set) when this one must fail. */
DF_INTERNAL int df_alloc_fail_injected(void);

/* Fault injection for tests: the Nth allocation from now on (1-based) and every
 * later one fail; 0 disables. Returns the number of allocations made since the
 * last call, so a test can learn how many a piece of work needs. */
DF_API long df_alloc_fail_after(long n);

#endif
