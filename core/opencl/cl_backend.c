/* OpenCL backend: device discovery and selection, context and in-order queue,
 * the caching buffer allocator, transfers, and the program (built once per
 * device and driver, then loaded from the on-disk binary cache). */
#include "cl_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const kernel_names[] = {
    [K_FILL] = "df_fill",
    [K_CONVERT] = "df_convert",
    [K_UNARY] = "df_unary",
    [K_GEGLU] = "df_geglu",
    [K_BINARY] = "df_binary",
    [K_SCALE] = "df_scale",
    [K_BIAS_FILL] = "df_bias_fill",
    [K_MODULATE] = "df_modulate",
    [K_GROUP_NORM] = "df_group_norm",
    [K_LAYER_NORM] = "df_layer_norm",
    [K_SOFTMAX] = "df_softmax",
    [K_REDUCE] = "df_reduce",
    [K_IM2COL] = "df_im2col",
    [K_UPSAMPLE2X] = "df_upsample2x",
    [K_COPY_BLOCK_4] = "df_copy_block_4",
    [K_COPY_BLOCK_2] = "df_copy_block_2",
    [K_COPY_BLOCK_1] = "df_copy_block_1",
    [K_PERMUTE_4] = "df_permute_4",
    [K_PERMUTE_2] = "df_permute_2",
    [K_PERMUTE_1] = "df_permute_1",
};
_Static_assert(sizeof kernel_names / sizeof kernel_names[0] == K_COUNT, "kernel name table out of step");

const char *df_cl_error_name(cl_int err)
{
    switch (err) {
#define E(x) \
    case x: return #x;
        E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
        E(CL_BUILD_PROGRAM_FAILURE) E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE) E(CL_INVALID_BINARY)
        E(CL_INVALID_BUFFER_SIZE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_ARG_INDEX)
        E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE) E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_CONTEXT)
        E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_OPERATION) E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "CL error";
    }
}

int df_cl_fail(df_ocl *o, const char *what, cl_int err)
{
    return df_error(DF_EBACKEND, "opencl (%s): %s failed: %s (%d)", o ? o->info.name : "no device", what,
                    df_cl_error_name(err), (int)err);
}

/* ---- discovery ---- */

/* A device string, truncated to fit buf (drivers' version strings can be long). */
static void info_string(cl_device_id d, cl_device_info what, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, 0, NULL, &len) != CL_SUCCESS || len == 0) return;
    char *tmp = malloc(len + 1);
    if (!tmp) return;
    if (clGetDeviceInfo(d, what, len, tmp, NULL) == CL_SUCCESS) {
        tmp[len] = '\0';
        snprintf(buf, n, "%s", tmp);
    }
    free(tmp);
}

static void fill_info(cl_platform_id p, cl_device_id d, int index, df_opencl_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->index = index;
    if (clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof info->platform, info->platform, NULL) != CL_SUCCESS)
        info->platform[0] = '\0';
    info->platform[sizeof info->platform - 1] = '\0';
    info_string(d, CL_DEVICE_NAME, info->name, sizeof info->name);
    info_string(d, CL_DEVICE_VERSION, info->version, sizeof info->version);
    info_string(d, CL_DRIVER_VERSION, info->driver, sizeof info->driver);
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    info->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
    cl_ulong mem = 0, max_alloc = 0;
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
    info->global_mem = mem;
    info->max_alloc = max_alloc;
    cl_uint cu = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    info->compute_units = (int)cu;
    size_t ext_len = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len) == CL_SUCCESS && ext_len) {
        char *ext = malloc(ext_len + 1);
        if (ext && clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, ext_len, ext, NULL) == CL_SUCCESS) {
            ext[ext_len] = '\0';
            info->has_fp16 = strstr(ext, "cl_khr_fp16") != NULL;
        }
        free(ext);
    }
}

/* Calls fn for every device of every platform, in selector order. */
typedef int (*device_fn)(cl_platform_id p, cl_device_id d, int index, void *ud);

static int for_each_device(device_fn fn, void *ud, int *count)
{
    cl_uint np = 0;
    *count = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err != CL_SUCCESS || np == 0) {
        df_error(DF_ENOTFOUND, "opencl: no OpenCL platform found (%s); install an ICD such as pocl-opencl-icd",
                 err == CL_SUCCESS ? "none registered" : df_cl_error_name(err));
        return DF_OK;
    }
    cl_platform_id plats[16];
    if (np > 16) np = 16;
    if ((err = clGetPlatformIDs(np, plats, NULL)) != CL_SUCCESS) return df_cl_fail(NULL, "clGetPlatformIDs", err);
    int index = 0;
    for (cl_uint i = 0; i < np; i++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
        cl_device_id devs[32];
        if (nd > 32) nd = 32;
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, nd, devs, NULL) != CL_SUCCESS) continue;
        for (cl_uint j = 0; j < nd; j++) {
            int rc = fn(plats[i], devs[j], index++, ud);
            if (rc) {
                *count = index;
                return rc > 0 ? DF_OK : rc;
            }
        }
    }
    *count = index;
    return DF_OK;
}

typedef struct {
    df_opencl_device_info *list;
    int cap;
} list_ud;

static int collect(cl_platform_id p, cl_device_id d, int index, void *ud)
{
    list_ud *l = ud;
    if (index >= l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        df_opencl_device_info *n = df_realloc(l->list, (size_t)cap * sizeof *n);
        if (!n) return DF_ENOMEM;
        l->list = n;
        l->cap = cap;
    }
    fill_info(p, d, index, &l->list[index]);
    return 0;
}

int df_opencl_list_devices(df_opencl_device_info **out, int *count)
{
    list_ud l = {NULL, 0};
    *out = NULL;
    int rc = for_each_device(collect, &l, count);
    if (rc != DF_OK) {
        df_free(l.list);
        *count = 0;
        return rc;
    }
    *out = l.list;
    return DF_OK;
}

void df_opencl_free_devices(df_opencl_device_info *devices) { df_free(devices); }

static int ci_contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return 1;
    }
    return n == 0;
}

typedef struct {
    const char *selector;
    int by_index, want_index, want_gpu;
    cl_platform_id p;
    cl_device_id d;
    int found;
} select_ud;

static int pick(cl_platform_id p, cl_device_id d, int index, void *ud)
{
    select_ud *s = ud;
    int match;
    if (s->by_index) {
        match = index == s->want_index;
    } else if (s->selector) {
        df_opencl_device_info info;
        fill_info(p, d, index, &info);
        char full[300];
        snprintf(full, sizeof full, "%s %s", info.platform, info.name);
        match = ci_contains(full, s->selector);
    } else {
        cl_device_type type = 0;
        clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
        match = s->want_gpu ? (type & CL_DEVICE_TYPE_GPU) != 0 : 1;
    }
    if (!match) return 0;
    s->p = p;
    s->d = d;
    s->found = 1;
    return 1;
}

/* The message for an unknown selector lists what there is. */
static int no_such_device(const char *selector)
{
    df_opencl_device_info *devs = NULL;
    int n = 0;
    char list[600] = "";
    if (df_opencl_list_devices(&devs, &n) == DF_OK) {
        size_t k = 0;
        for (int i = 0; i < n && k < sizeof list; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s[%d] %s / %s", i ? ", " : "", devs[i].index,
                                  devs[i].platform, devs[i].name);
    }
    df_opencl_free_devices(devs);
    if (n == 0) return df_error(DF_ENOTFOUND, "opencl: no OpenCL device found for '%s' (no platform installed)", selector);
    return df_error(DF_EINVAL, "opencl: no device matches '%s'; available: %s", selector, list);
}

/* ---- memory ---- */

/* Size classes: 4 steps per power of two above 4 KiB, so freed buffers are
 * reusable by requests of a similar size. */
static size_t size_class(size_t n)
{
    if (n <= 4096) return 4096;
    size_t p = 4096;
    while (p < n / 2 + 1 && p < SIZE_MAX / 4) p *= 2;
    size_t step = p / 4;
    return (n + step - 1) / step * step;
}

static void cache_trim(df_ocl *o)
{
    for (int i = 0; i < DF_CL_CACHE_SLOTS; i++)
        if (o->cache_mem[i]) {
            clReleaseMemObject(o->cache_mem[i]);
            o->cache_mem[i] = NULL;
            o->stats.bytes_cached -= o->cache_size[i];
        }
}

static cl_mem mem_get(df_ocl *o, size_t bytes, size_t *cap)
{
    if (bytes > (size_t)INT32_MAX) { /* kernels index with int */
        df_error(DF_ENOMEM,
                 "opencl (%s): a %.1f GiB tensor exceeds the backend's 2 GiB limit per tensor (the device has "
                 "%.0f MiB of global memory)",
                 o->info.name, (double)bytes / 1073741824.0, (double)o->info.global_mem / 1048576.0);
        return NULL;
    }
    size_t cls = size_class(bytes ? bytes : 1);
    for (int i = 0; i < DF_CL_CACHE_SLOTS; i++)
        if (o->cache_mem[i] && o->cache_size[i] == cls) {
            if (df_alloc_fail_injected()) return NULL;
            cl_mem m = o->cache_mem[i];
            o->cache_mem[i] = NULL;
            o->stats.bytes_cached -= cls;
            *cap = cls;
            return m;
        }
    if (cls > o->info.max_alloc || o->stats.bytes_in_use + cls > o->info.global_mem) {
        cache_trim(o);
        if (cls > o->info.max_alloc || o->stats.bytes_in_use + cls > o->info.global_mem) {
            df_error(DF_ENOMEM,
                     "opencl (%s): allocating %.1f MiB does not fit: the device has %.0f MiB of global memory "
                     "(%.1f MiB in use, largest single buffer %.0f MiB)",
                     o->info.name, (double)bytes / 1048576.0, (double)o->info.global_mem / 1048576.0,
                     (double)o->stats.bytes_in_use / 1048576.0, (double)o->info.max_alloc / 1048576.0);
            return NULL;
        }
    }
    if (df_alloc_fail_injected()) return NULL;
    cl_int err;
    cl_mem m = clCreateBuffer(o->ctx, CL_MEM_READ_WRITE, cls, NULL, &err);
    if (err != CL_SUCCESS) {
        cache_trim(o);
        m = clCreateBuffer(o->ctx, CL_MEM_READ_WRITE, cls, NULL, &err);
        if (err != CL_SUCCESS) {
            df_cl_fail(o, "clCreateBuffer", err);
            return NULL;
        }
    }
    *cap = cls;
    return m;
}

static void mem_put(df_ocl *o, cl_mem m, size_t cap)
{
    size_t limit = o->info.global_mem / 4;
    if (o->stats.bytes_cached + cap <= limit)
        for (int i = 0; i < DF_CL_CACHE_SLOTS; i++)
            if (!o->cache_mem[i]) {
                o->cache_mem[i] = m;
                o->cache_size[i] = cap;
                o->stats.bytes_cached += cap;
                return;
            }
    clReleaseMemObject(m);
}

static void account(df_ocl *o, long long delta)
{
    o->stats.bytes_in_use = (size_t)((long long)o->stats.bytes_in_use + delta);
    if (o->stats.bytes_in_use > o->stats.peak_bytes) o->stats.peak_bytes = o->stats.bytes_in_use;
}

cl_mem df_cl_scratch(df_ocl *o, size_t bytes)
{
    size_t cap;
    cl_mem m = mem_get(o, bytes, &cap);
    if (m) account(o, (long long)cap);
    return m;
}

void df_cl_scratch_free(df_ocl *o, cl_mem m, size_t bytes)
{
    if (!m) return;
    size_t cap = size_class(bytes ? bytes : 1);
    account(o, -(long long)cap);
    mem_put(o, m, cap);
}

static int ocl_buffer_alloc(df_backend *be, size_t size, df_buffer **out)
{
    df_ocl *o = df_ocl_of(be);
    df_buffer *b = df_calloc(1, sizeof *b);
    if (!b) return DF_ENOMEM;
    size_t cap;
    cl_mem m = mem_get(o, size, &cap);
    if (!m) { /* mem_get said why */
        df_free(b);
        return DF_ENOMEM;
    }
    account(o, (long long)cap);
    b->backend = be;
    b->data = m;
    b->size = size;
    atomic_init(&b->refcount, 1);
    *out = b;
    return DF_OK;
}

static void ocl_buffer_free(df_backend *be, df_buffer *b)
{
    df_cl_scratch_free(df_ocl_of(be), (cl_mem)b->data, b->size);
    df_free(b);
}

static int ocl_upload(df_backend *be, df_buffer *dst, size_t off, const void *src, size_t n)
{
    df_ocl *o = df_ocl_of(be);
    if (!n) return DF_OK;
    cl_int err = clEnqueueWriteBuffer(o->queue, (cl_mem)dst->data, CL_TRUE, off, n, src, 0, NULL, NULL);
    return err == CL_SUCCESS ? DF_OK : df_cl_fail(o, "upload", err);
}

static int ocl_download(df_backend *be, const df_buffer *src, size_t off, void *dst, size_t n)
{
    df_ocl *o = df_ocl_of(be);
    if (!n) return DF_OK;
    cl_int err = clEnqueueReadBuffer(o->queue, (cl_mem)src->data, CL_TRUE, off, n, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? DF_OK : df_cl_fail(o, "download", err);
}

/* ---- kernels ---- */

int df_cl_set(df_ocl *o, df_cl_kernel k, int idx, size_t size, const void *val)
{
    cl_int err = clSetKernelArg(o->kernels[k], (cl_uint)idx, size, val);
    if (err != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "setting argument %d of %s", idx, kernel_names[k]);
        return df_cl_fail(o, what, err);
    }
    return DF_OK;
}

int df_cl_run(df_ocl *o, df_cl_kernel k, size_t n, size_t groups)
{
    size_t local = 64, global;
    if (groups) {
        local = DF_CL_WG;
        global = groups * DF_CL_WG;
    } else {
        if (!n) return DF_OK;
        global = (n + local - 1) / local * local;
    }
    cl_int err = clEnqueueNDRangeKernel(o->queue, o->kernels[k], 1, NULL, &global, &local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return df_cl_fail(o, kernel_names[k], err);
    return DF_OK;
}

/* ---- the program and its on-disk cache ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static const char *build_options(const df_ocl *o) { return o->info.has_fp16 ? "-DDF_HAS_FP16=1" : ""; }

/* <cache>/difusa/opencl/<key>.bin; 0 when no cache directory can be made. */
static int cache_path(const df_ocl *o, const char *source, char *path, size_t n)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[400];
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/difusa/opencl", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/difusa/opencl", home);
    else
        return 0;
    /* mkdir -p */
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST) return 0;
            *p = '/';
        }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    const char *parts[] = {o->info.platform, o->info.name, o->info.version, o->info.driver, build_options(o), source};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) h = fnv1a(h, parts[i], strlen(parts[i]) + 1);
    snprintf(path, n, "%s/%016llx.bin", dir, (unsigned long long)h);
    return 1;
}

static char *build_log(df_ocl *o, cl_program p)
{
    size_t n = 0;
    clGetProgramBuildInfo(p, o->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = df_malloc(n + 1);
    if (!log) return NULL;
    if (clGetProgramBuildInfo(p, o->device, CL_PROGRAM_BUILD_LOG, n, log, NULL) != CL_SUCCESS) n = 0;
    log[n] = '\0';
    return log;
}

static cl_program load_cached(df_ocl *o, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cl_program p = NULL;
    unsigned char *bin = NULL;
    long len = (fseek(f, 0, SEEK_END) == 0) ? ftell(f) : -1;
    if (len > 0 && fseek(f, 0, SEEK_SET) == 0 && (bin = malloc((size_t)len)) && fread(bin, 1, (size_t)len, f) == (size_t)len) {
        size_t sz = (size_t)len;
        const unsigned char *bins[1] = {bin};
        cl_int status = CL_SUCCESS, err;
        p = clCreateProgramWithBinary(o->ctx, 1, &o->device, &sz, bins, &status, &err);
        if (err != CL_SUCCESS || status != CL_SUCCESS ||
            clBuildProgram(p, 1, &o->device, build_options(o), NULL, NULL) != CL_SUCCESS) {
            if (p) clReleaseProgram(p);
            p = NULL;
        }
    }
    free(bin);
    fclose(f);
    return p;
}

static void save_cached(cl_program p, const char *path)
{
    size_t sz = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof sz, &sz, NULL) != CL_SUCCESS || !sz) return;
    unsigned char *bin = malloc(sz);
    if (!bin) return;
    unsigned char *bins[1] = {bin};
    char tmp[640];
    snprintf(tmp, sizeof tmp, "%.600s.tmp.%ld", path, (long)getpid());
    if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS) {
        FILE *f = fopen(tmp, "wb");
        if (f) {
            int ok = fwrite(bin, 1, sz, f) == sz;
            ok = (fclose(f) == 0) && ok;
            if (!ok || rename(tmp, path) != 0) remove(tmp);
        }
    }
    free(bin);
}

/* Builds `source` for o's device: from the binary cache when present and
 * valid, else compiled (and then cached). On a compile error the message
 * carries the device's build log. */
static int build_program(df_ocl *o, const char *source, cl_program *out)
{
    char path[600];
    int cacheable = cache_path(o, source, path, sizeof path);
    cl_program p = cacheable ? load_cached(o, path) : NULL;
    if (p) {
        o->stats.programs_from_cache++;
        *out = p;
        return DF_OK;
    }
    cl_int err;
    p = clCreateProgramWithSource(o->ctx, 1, &source, NULL, &err);
    if (err != CL_SUCCESS) return df_cl_fail(o, "clCreateProgramWithSource", err);
    err = clBuildProgram(p, 1, &o->device, build_options(o), NULL, NULL);
    if (err != CL_SUCCESS) {
        char *log = build_log(o, p);
        clReleaseProgram(p);
        int rc = df_error(DF_EBACKEND, "opencl (%s): kernel build failed (%s); build log:\n%.700s", o->info.name,
                          df_cl_error_name(err), log ? log : "(unavailable)");
        df_free(log);
        return rc;
    }
    o->stats.programs_compiled++;
    if (cacheable) save_cached(p, path);
    *out = p;
    return DF_OK;
}

int df_opencl_build_check(df_backend *be, const char *source)
{
    if (!be || !source) return df_error(DF_EINVAL, "opencl: build_check needs a backend and a source");
    cl_program p = NULL;
    int rc = build_program(df_ocl_of(be), source, &p);
    if (p) clReleaseProgram(p);
    return rc;
}

/* ---- lifetime ---- */

static void ocl_destroy(df_backend *be)
{
    df_ocl *o = df_ocl_of(be);
    if (o->queue) clFinish(o->queue);
    cache_trim(o);
    for (int i = 0; i < K_COUNT; i++)
        if (o->kernels[i]) clReleaseKernel(o->kernels[i]);
    if (o->program) clReleaseProgram(o->program);
    if (o->queue) clReleaseCommandQueue(o->queue);
    if (o->ctx) clReleaseContext(o->ctx);
    df_free(o);
}

void df_backend_free(df_backend *be)
{
    if (be && be != df_backend_cpu() && be->destroy) be->destroy(be);
}

const df_opencl_device_info *df_opencl_device(const df_backend *be) { return &((const df_ocl *)be)->info; }

df_opencl_stats df_opencl_get_stats(const df_backend *be) { return ((const df_ocl *)be)->stats; }

void df_opencl_reset_peak(df_backend *be)
{
    df_ocl *o = df_ocl_of(be);
    o->stats.peak_bytes = o->stats.bytes_in_use;
}

int df_opencl_finish(df_backend *be)
{
    df_ocl *o = df_ocl_of(be);
    cl_int err = clFinish(o->queue);
    return err == CL_SUCCESS ? DF_OK : df_cl_fail(o, "clFinish", err);
}

int df_backend_opencl_create(const char *selector, df_backend **out)
{
    *out = NULL;
    if (!selector || !*selector) selector = getenv("DIFUSA_DEVICE");
    if (selector && !*selector) selector = NULL;
    select_ud s = {.selector = selector};
    if (selector) {
        char *end;
        long idx = strtol(selector, &end, 10);
        if (*end == '\0' && idx >= 0) {
            s.by_index = 1;
            s.want_index = (int)idx;
        }
    }
    int count = 0, rc;
    if (!selector) { /* the first GPU, else the first device */
        s.want_gpu = 1;
        if ((rc = for_each_device(pick, &s, &count))) return rc;
        s.want_gpu = 0;
    }
    if (!s.found && (rc = for_each_device(pick, &s, &count))) return rc;
    if (!s.found) {
        if (count == 0 && !selector) return df_error_prefix(DF_ENOTFOUND, "opencl: cannot create a backend");
        return no_such_device(selector ? selector : "(default)");
    }

    df_ocl *o = df_calloc(1, sizeof *o);
    if (!o) return DF_ENOMEM;
    o->platform = s.p;
    o->device = s.d;
    fill_info(s.p, s.d, 0, &o->info);
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)s.p, 0};
    o->ctx = clCreateContext(props, 1, &o->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        rc = df_cl_fail(o, "clCreateContext", err);
        goto fail;
    }
    o->queue = clCreateCommandQueue(o->ctx, o->device, 0, &err);
    if (err != CL_SUCCESS) {
        rc = df_cl_fail(o, "clCreateCommandQueue", err);
        goto fail;
    }
    if ((rc = build_program(o, df_cl_source, &o->program))) goto fail;
    for (int i = 0; i < K_COUNT; i++) {
        o->kernels[i] = clCreateKernel(o->program, kernel_names[i], &err);
        if (err != CL_SUCCESS) {
            rc = df_cl_fail(o, kernel_names[i], err);
            goto fail;
        }
    }
    o->be.name = "opencl";
    o->be.is_host = 0;
    o->be.buffer_alloc = ocl_buffer_alloc;
    o->be.buffer_free = ocl_buffer_free;
    o->be.upload = ocl_upload;
    o->be.download = ocl_download;
    o->be.destroy = ocl_destroy;
    o->be.impl = o;
    df_cl_install_ops(&o->be);
    *out = &o->be;
    return DF_OK;
fail:
    ocl_destroy(&o->be);
    return rc;
}
