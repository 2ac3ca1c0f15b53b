#include "tensor.h"

#include "backend.h"

#include <stdio.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [DF_F32] = {"F32", 4}, [DF_F16] = {"F16", 2}, [DF_BF16] = {"BF16", 2}, [DF_F64] = {"F64", 8},
    [DF_I8] = {"I8", 1},   [DF_U8] = {"U8", 1},   [DF_I16] = {"I16", 2},   [DF_I32] = {"I32", 4},
    [DF_I64] = {"I64", 8}, [DF_BOOL] = {"BOOL", 1},
};
_Static_assert(sizeof dtype_info / sizeof dtype_info[0] == DF_DTYPE_COUNT, "dtype table out of step");

size_t df_dtype_size(df_dtype t) { return (unsigned)t < DF_DTYPE_COUNT ? dtype_info[t].size : 0; }

const char *df_dtype_name(df_dtype t) { return (unsigned)t < DF_DTYPE_COUNT ? dtype_info[t].name : "?"; }

int df_dtype_from_name(const char *name)
{
    for (int i = 0; i < DF_DTYPE_COUNT; i++)
        if (!strcmp(dtype_info[i].name, name)) return i;
    return -1;
}

/* ---- buffers ---- */

void df_buffer_retain(df_buffer *b) { atomic_fetch_add(&b->refcount, 1); }

void df_buffer_release(df_buffer *b)
{
    if (!b || atomic_fetch_sub(&b->refcount, 1) != 1) return;
    if (b->release || !b->backend) {
        if (b->release) b->release(b->owner);
        df_free(b);
    } else {
        b->backend->buffer_free(b->backend, b);
    }
}

/* ---- tensors ---- */

static int check_shape(int ndim, const int64_t *shape, df_dtype dtype, size_t *nbytes)
{
    if (ndim < 0 || ndim > DF_MAX_DIMS)
        return df_error(DF_ESHAPE, "tensor rank %d not supported (at most %d dims)", ndim, DF_MAX_DIMS);
    if ((unsigned)dtype >= DF_DTYPE_COUNT) return df_error(DF_EDTYPE, "unknown dtype %d", (int)dtype);
    size_t n = df_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return df_error(DF_ESHAPE, "negative dimension %lld", (long long)shape[i]);
        if (shape[i] && n > SIZE_MAX / 2 / (size_t)shape[i])
            return df_error(DF_ESHAPE, "tensor size overflows");
        n *= (size_t)shape[i];
    }
    *nbytes = n;
    return DF_OK;
}

static df_tensor *tensor_header(df_dtype dtype, int ndim, const int64_t *shape)
{
    df_tensor *t = df_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    return t;
}

df_tensor *df_tensor_new(df_backend *be, df_dtype dtype, int ndim, const int64_t *shape)
{
    size_t nbytes;
    if (check_shape(ndim, shape, dtype, &nbytes) != DF_OK) return NULL;
    if (!be) be = df_backend_cpu();
    if (!be) return NULL;
    df_tensor *t = tensor_header(dtype, ndim, shape);
    if (!t) return NULL;
    if (be->buffer_alloc(be, nbytes, &t->buf) != DF_OK) {
        df_free(t);
        return NULL;
    }
    return t;
}

df_tensor *df_tensor_zeros(df_backend *be, df_dtype dtype, int ndim, const int64_t *shape)
{
    df_tensor *t = df_tensor_new(be, dtype, ndim, shape);
    if (!t) return NULL;
    df_backend *b = t->buf->backend;
    if (b->fill(b, t, 0.0f) != DF_OK) {
        df_tensor_free(t);
        return NULL;
    }
    return t;
}

df_tensor *df_tensor_from_data(df_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    df_tensor *t = df_tensor_new(NULL, dtype, ndim, shape);
    if (t && data) memcpy(df_tensor_data(t), data, df_tensor_nbytes(t));
    return t;
}

df_tensor *df_tensor_wrap(df_dtype dtype, int ndim, const int64_t *shape, void *data,
                          void (*release)(void *owner), void *owner)
{
    size_t nbytes;
    if (check_shape(ndim, shape, dtype, &nbytes) != DF_OK) return NULL;
    df_tensor *t = tensor_header(dtype, ndim, shape);
    df_buffer *b = t ? df_calloc(1, sizeof *b) : NULL;
    if (!b) {
        df_free(t);
        return NULL;
    }
    b->backend = df_backend_cpu();
    b->data = data;
    b->size = nbytes;
    atomic_init(&b->refcount, 1);
    b->release = release;
    b->owner = owner;
    t->buf = b;
    return t;
}

void df_tensor_free(df_tensor *t)
{
    if (!t) return;
    df_buffer_release(t->buf);
    df_free(t);
}

df_tensor *df_tensor_ref(const df_tensor *t)
{
    df_tensor *r = tensor_header(t->dtype, t->ndim, t->shape);
    if (!r) return NULL;
    r->buf = t->buf;
    r->offset = t->offset;
    df_buffer_retain(r->buf);
    return r;
}

int64_t df_tensor_numel(const df_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t df_tensor_nbytes(const df_tensor *t) { return (size_t)df_tensor_numel(t) * df_dtype_size(t->dtype); }

void *df_tensor_data(const df_tensor *t)
{
    if (!t->buf->backend || !t->buf->backend->is_host) return NULL;
    return (char *)t->buf->data + t->offset;
}

df_backend *df_tensor_backend(const df_tensor *t) { return t->buf->backend; }

bool df_tensor_same_shape(const df_tensor *a, const df_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *df_tensor_shape_str(const df_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

int df_tensor_write(df_tensor *t, const void *src, size_t nbytes)
{
    if (nbytes != df_tensor_nbytes(t))
        return df_error(DF_EINVAL, "tensor write of %zu bytes into a %zu-byte tensor", nbytes, df_tensor_nbytes(t));
    df_backend *be = t->buf->backend;
    return be->upload(be, t->buf, t->offset, src, nbytes);
}

int df_tensor_read(const df_tensor *t, void *dst, size_t nbytes)
{
    if (nbytes != df_tensor_nbytes(t))
        return df_error(DF_EINVAL, "tensor read of %zu bytes from a %zu-byte tensor", nbytes, df_tensor_nbytes(t));
    df_backend *be = t->buf->backend;
    return be->download(be, t->buf, t->offset, dst, nbytes);
}

int df_tensor_to(const df_tensor *t, df_backend *be, df_tensor **out)
{
    *out = NULL;
    if (!be) be = df_backend_cpu();
    df_tensor *r = df_tensor_new(be, t->dtype, t->ndim, t->shape);
    if (!r) return df_error_prefix(DF_ENOMEM, "copying tensor to backend %s", be->name);
    size_t n = df_tensor_nbytes(t);
    int rc;
    void *src = df_tensor_data(t);
    if (src) {
        rc = be->upload(be, r->buf, r->offset, src, n);
    } else {
        void *tmp = df_malloc(n);
        rc = tmp ? df_tensor_read(t, tmp, n) : DF_ENOMEM;
        if (rc == DF_OK) rc = be->upload(be, r->buf, r->offset, tmp, n);
        df_free(tmp);
    }
    if (rc != DF_OK) {
        df_tensor_free(r);
        return rc;
    }
    *out = r;
    return DF_OK;
}

int df_tensor_reshape(const df_tensor *t, int ndim, const int64_t *shape, df_tensor **out)
{
    *out = NULL;
    if (ndim < 0 || ndim > DF_MAX_DIMS)
        return df_error(DF_ESHAPE, "reshape: rank %d not supported (at most %d dims)", ndim, DF_MAX_DIMS);
    int64_t s[DF_MAX_DIMS], known = 1, numel = df_tensor_numel(t);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1) {
            if (infer >= 0) return df_error(DF_ESHAPE, "reshape: more than one -1 dimension");
            infer = i;
        } else if (s[i] < 0) {
            return df_error(DF_ESHAPE, "reshape: negative dimension %lld", (long long)s[i]);
        } else {
            known *= s[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || numel % known)
            return df_error(DF_ESHAPE, "reshape: cannot infer -1 for %lld elements", (long long)numel);
        s[infer] = numel / known;
        known = numel;
    }
    if (known != numel) {
        char b[64];
        return df_error(DF_ESHAPE, "reshape: %s has %lld elements, target has %lld",
                        df_tensor_shape_str(t, b, sizeof b), (long long)numel, (long long)known);
    }
    df_tensor *r = df_tensor_ref(t);
    if (!r) return DF_ENOMEM;
    r->ndim = ndim;
    for (int i = 0; i < DF_MAX_DIMS; i++) r->shape[i] = i < ndim ? s[i] : 0;
    *out = r;
    return DF_OK;
}

int df_tensor_narrow0(const df_tensor *t, int64_t start, int64_t len, df_tensor **out)
{
    *out = NULL;
    if (t->ndim < 1) return df_error(DF_ESHAPE, "narrow: scalar tensor has no first dimension");
    if (start < 0 || len < 0 || start + len > t->shape[0])
        return df_error(DF_ESHAPE, "narrow: rows [%lld, %lld) outside first dimension %lld", (long long)start,
                        (long long)(start + len), (long long)t->shape[0]);
    df_tensor *r = df_tensor_ref(t);
    if (!r) return DF_ENOMEM;
    size_t row = df_tensor_nbytes(t) / (t->shape[0] ? (size_t)t->shape[0] : 1);
    r->offset += (size_t)start * row;
    r->shape[0] = len;
    *out = r;
    return DF_OK;
}

/* ---- half precision ---- */

float df_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t df_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) /* inf / nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23); /* 14..24 */
        uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx - 0x38000000u) >> 13);
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float df_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t df_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

int df_convert_to_f32(df_dtype src_type, const void *src, float *dst, int64_t n)
{
    switch (src_type) {
    case DF_F32:
        memmove(dst, src, (size_t)n * 4);
        return DF_OK;
    case DF_F16: {
#if defined(__F16C__)
        /* the hardware conversion (F16C), exact like df_f16_to_f32, 8 at a time */
        const uint16_t *s = src;
        int64_t blocks = n / 8;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t b = 0; b < blocks; b++)
            _mm256_storeu_ps(dst + 8 * b, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 8 * b))));
        for (int64_t i = 8 * blocks; i < n; i++) dst[i] = df_f16_to_f32(s[i]);
#else
        const uint16_t *s = src;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = df_f16_to_f32(s[i]);
#endif
        return DF_OK;
    }
    case DF_BF16: {
        const uint16_t *s = src;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = df_bf16_to_f32(s[i]);
        return DF_OK;
    }
    case DF_F64: {
        const double *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return DF_OK;
    }
    default:
        return df_error(DF_EDTYPE, "cannot convert %s to F32", df_dtype_name(src_type));
    }
}

int df_convert_from_f32(df_dtype dst_type, const float *src, void *dst, int64_t n)
{
    switch (dst_type) {
    case DF_F32:
        memmove(dst, src, (size_t)n * 4);
        return DF_OK;
    case DF_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = df_f32_to_f16(src[i]);
        return DF_OK;
    }
    case DF_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = df_f32_to_bf16(src[i]);
        return DF_OK;
    }
    case DF_F64: {
        double *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = src[i];
        return DF_OK;
    }
    default:
        return df_error(DF_EDTYPE, "cannot convert F32 to %s", df_dtype_name(dst_type));
    }
}
