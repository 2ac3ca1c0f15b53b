/* The CPU backend: host buffers (64-byte aligned, counted), plain-memcpy
 * transfers, and the kernel table. */
#include "cpu.h"

#include <omp.h>
#include <stdatomic.h>
#include <string.h>

static atomic_size_t mem_current, mem_peak;

static void mem_add(size_t n)
{
    size_t cur = atomic_fetch_add(&mem_current, n) + n;
    size_t peak = atomic_load(&mem_peak);
    while (cur > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, cur)) {
    }
}

static void mem_sub(size_t n) { atomic_fetch_sub(&mem_current, n); }

df_cpu_mem_stats df_cpu_mem_stats_get(void)
{
    return (df_cpu_mem_stats){atomic_load(&mem_current), atomic_load(&mem_peak)};
}

void df_cpu_mem_stats_reset_peak(void) { atomic_store(&mem_peak, atomic_load(&mem_current)); }

int df_cpu_threads(void) { return omp_get_max_threads(); }

/* A small cache of freed large blocks, reused by best fit: diffusion runs the
 * same shapes step after step, and reusing memory avoids the kernel faulting
 * in fresh pages for every op (a third of PyTorch's CPU time on a UNet). */
#define CACHE_MIN (256u << 10)   /* blocks below this go straight to malloc */
#define CACHE_SLOTS 64
/* 512 MiB: at 1 GiB, blocks the UNet left (f16 weights widened per op among
 * them) sat in SD1.5 512²'s peak while the VAE decoded, 450 MiB more. */
#define CACHE_MAX_BYTES ((size_t)512 << 20)

static struct {
    omp_lock_t lock;
    int ready;
    void *ptr[CACHE_SLOTS];
    size_t size[CACHE_SLOTS];
    size_t total;
} cache;

static void cache_init(void)
{
#pragma omp critical(df_cpu_cache_init)
    if (!cache.ready) {
        omp_init_lock(&cache.lock);
        cache.ready = 1;
    }
}

/* A cached block of at least `bytes` and at most 1.25x that, or NULL. */
static void *cache_take(size_t bytes, size_t *got)
{
    int best = -1;
    omp_set_lock(&cache.lock);
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache.ptr[i] && cache.size[i] >= bytes && cache.size[i] <= bytes + bytes / 4 &&
            (best < 0 || cache.size[i] < cache.size[best]))
            best = i;
    void *p = NULL;
    if (best >= 0) {
        p = cache.ptr[best];
        *got = cache.size[best];
        cache.ptr[best] = NULL;
        cache.total -= *got;
    }
    omp_unset_lock(&cache.lock);
    return p;
}

/* Keeps a block for reuse; returns 0 when the cache is full (caller frees). */
static int cache_put(void *p, size_t bytes)
{
    int kept = 0;
    omp_set_lock(&cache.lock);
    if (cache.total + bytes <= CACHE_MAX_BYTES)
        for (int i = 0; i < CACHE_SLOTS && !kept; i++)
            if (!cache.ptr[i]) {
                cache.ptr[i] = p;
                cache.size[i] = bytes;
                cache.total += bytes;
                kept = 1;
            }
    omp_unset_lock(&cache.lock);
    return kept;
}

void df_cpu_cache_trim(void)
{
    cache_init();
    omp_set_lock(&cache.lock);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        df_free(cache.ptr[i]);
        cache.ptr[i] = NULL;
    }
    cache.total = 0;
    omp_unset_lock(&cache.lock);
}

/* Block sizes are rounded up so that the cache can match them; the header
 * before each block records the real size. */
#define HDR 64

void *df_cpu_scratch_alloc(size_t bytes)
{
    cache_init();
    size_t cap = bytes;
    char *p = bytes >= CACHE_MIN ? cache_take(bytes, &cap) : NULL;
    if (!p) {
        if (bytes > SIZE_MAX - HDR) {
            df_error(DF_ENOMEM, "allocation of %zu bytes overflows", bytes);
            return NULL;
        }
        cap = bytes;
        p = df_aligned_alloc(cap + HDR);
        if (!p) return NULL;
    } else if (df_alloc_fail_injected()) {
        cache_put(p, cap);
        return NULL;
    }
    memcpy(p, &cap, sizeof cap);
    mem_add(bytes);
    return p + HDR;
}

void df_cpu_scratch_free(void *q, size_t bytes)
{
    if (!q) return;
    char *p = (char *)q - HDR;
    size_t cap;
    memcpy(&cap, p, sizeof cap);
    mem_sub(bytes);
    if (cap < CACHE_MIN || !cache_put(p, cap)) df_free(p);
}

const float *df_cpu_weight_f32(const df_tensor *w, void **tmp, size_t *tmp_bytes)
{
    *tmp = NULL;
    *tmp_bytes = 0;
    if (w->dtype == DF_F32) return df_cpu_f32(w);
    int64_t n = df_tensor_numel(w);
    float *f = df_cpu_scratch_alloc((size_t)n * sizeof(float));
    if (!f) return NULL;
    df_convert_to_f32(w->dtype, df_tensor_data(w), f, n);
    *tmp = f;
    *tmp_bytes = (size_t)n * sizeof(float);
    return f;
}

static int cpu_buffer_alloc(df_backend *be, size_t size, df_buffer **out)
{
    df_buffer *b = df_calloc(1, sizeof *b);
    if (!b) return DF_ENOMEM;
    b->data = df_cpu_scratch_alloc(size);
    if (!b->data) {
        df_free(b);
        return df_error_prefix(DF_ENOMEM, "cpu: allocating a %zu-byte tensor", size);
    }
    b->backend = be;
    b->size = size;
    atomic_init(&b->refcount, 1);
    *out = b;
    return DF_OK;
}

static void cpu_buffer_free(df_backend *be, df_buffer *b)
{
    (void)be;
    df_cpu_scratch_free(b->data, b->size);
    df_free(b);
}

static int cpu_upload(df_backend *be, df_buffer *dst, size_t off, const void *src, size_t n)
{
    (void)be;
    if (n) memcpy((char *)dst->data + off, src, n);
    return DF_OK;
}

static int cpu_download(df_backend *be, const df_buffer *src, size_t off, void *dst, size_t n)
{
    (void)be;
    if (n) memcpy(dst, (const char *)src->data + off, n);
    return DF_OK;
}

static void cpu_destroy(df_backend *be) { (void)be; }

static df_backend cpu_backend = {
    .name = "cpu",
    .is_host = 1,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .fill = df_cpu_fill,
    .conv2d = df_cpu_conv2d,
    .linear = df_cpu_linear,
    .matmul = df_cpu_matmul,
    .group_norm = df_cpu_group_norm,
    .layer_norm = df_cpu_layer_norm,
    .unary = df_cpu_unary,
    .geglu = df_cpu_geglu,
    .binary = df_cpu_binary,
    .scale = df_cpu_scale,
    .softmax = df_cpu_softmax,
    .attention = df_cpu_attention,
    .upsample_nearest2x = df_cpu_upsample_nearest2x,
    .copy_dim = df_cpu_copy_dim,
    .permute = df_cpu_permute,
    .reduce = df_cpu_reduce,
    .timestep_embedding = df_cpu_timestep_embedding,
    .modulate = df_cpu_modulate,
    .cast = df_cpu_cast,
    .destroy = cpu_destroy,
};

df_backend *df_backend_cpu(void) { return &cpu_backend; }
