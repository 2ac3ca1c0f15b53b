#include "df.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *df_last_error(void) { return last_error; }

void df_clear_error(void) { last_error[0] = '\0'; }

const char *df_status_name(int status)
{
    switch (status) {
    case DF_OK: return "ok";
    case DF_EINVAL: return "invalid argument";
    case DF_ENOMEM: return "out of memory";
    case DF_EIO: return "i/o error";
    case DF_EFORMAT: return "malformed data";
    case DF_ESHAPE: return "shape mismatch";
    case DF_EDTYPE: return "unsupported dtype";
    case DF_EBACKEND: return "backend error";
    case DF_ENOTFOUND: return "not found";
    default: return "unknown error";
    }
}

int df_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

int df_error_prefix(int code, const char *fmt, ...)
{
    char old[sizeof last_error];
    memcpy(old, last_error, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n + 2 < sizeof last_error && old[0]) { /* append ": <old>", truncated */
        size_t at = (size_t)n, room = sizeof last_error - at - 3, len = strlen(old);
        if (len > room) len = room;
        memcpy(last_error + at, ": ", 2);
        memcpy(last_error + at + 2, old, len);
        last_error[at + 2 + len] = '\0';
    }
    return code;
}

/* ---- log ---- */

static df_log_fn log_fn;
static void *log_ud;
static df_log_level log_max = DF_LOG_WARN;

void df_log_set_handler(df_log_fn fn, void *ud)
{
    log_fn = fn;
    log_ud = ud;
}

void df_log_set_level(df_log_level max) { log_max = max; }

void df_log(df_log_level level, const char *fmt, ...)
{
    if (level > log_max) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fn) {
        log_fn(level, msg, log_ud);
        return;
    }
    static const char *const names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "difusa: %s: %s\n", names[level], msg);
}

/* Fault injection: counts allocations; once `fail_at` is reached every call fails. */
static atomic_long alloc_count;
static atomic_long fail_at;

long df_alloc_fail_after(long n)
{
    long made = atomic_exchange(&alloc_count, 0);
    atomic_store(&fail_at, n);
    return made;
}

static int alloc_should_fail(size_t size)
{
    long c = atomic_fetch_add(&alloc_count, 1) + 1;
    long f = atomic_load(&fail_at);
    if (f > 0 && c >= f) {
        df_error(DF_ENOMEM, "out of memory (injected failure at allocation %ld, %zu bytes)", c, size);
        return 1;
    }
    return 0;
}

int df_alloc_fail_injected(void) { return alloc_should_fail(0); }

void *df_malloc(size_t size)
{
    if (alloc_should_fail(size)) return NULL;
    void *p = malloc(size ? size : 1);
    if (!p) df_error(DF_ENOMEM, "out of memory allocating %zu bytes", size);
    return p;
}

void *df_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        df_error(DF_ENOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    if (alloc_should_fail(n * size)) return NULL;
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) df_error(DF_ENOMEM, "out of memory allocating %zu bytes", n * size);
    return p;
}

void *df_realloc(void *q, size_t size)
{
    if (alloc_should_fail(size)) return NULL;
    void *p = realloc(q, size ? size : 1);
    if (!p) df_error(DF_ENOMEM, "out of memory allocating %zu bytes", size);
    return p;
}

void *df_aligned_alloc(size_t size)
{
    if (alloc_should_fail(size)) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 64) != 0) {
        df_error(DF_ENOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    return p;
}

void df_free(void *p) { free(p); }

char *df_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = df_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
