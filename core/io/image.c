/* Images: stb_image / stb_image_write (Debian's libstb, linked, not compiled
 * here) for the pixels; the PNG text chunks, their CRC-32, SHA-256 and A1111's
 * infotext are ours.
 *
 * In file order: helpers (host copies of tensors, whole-file reads, byte
 * buffers, UTF-8 / Latin-1), loading, PNG chunks and saving, reading text
 * back, grid / resize / crop, A1111's infotext, SHA-256. */
#include "image.h"

#include "../backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

/* ---- helpers ---- */

static int is_float_dtype(df_dtype t) { return t == DF_F32 || t == DF_F16 || t == DF_BF16 || t == DF_F64; }

/* A host f32 copy of t (any backend, any float dtype), freed with df_free. */
static int host_f32(const df_tensor *t, float **out, const char *what)
{
    *out = NULL;
    int64_t n = df_tensor_numel(t);
    size_t nb = df_tensor_nbytes(t);
    float *f = df_malloc((size_t)n * sizeof(float));
    if (!f) return df_error_prefix(DF_ENOMEM, "%s", what);
    if (t->dtype == DF_F32) {
        int rc = df_tensor_read(t, f, nb);
        if (rc) {
            df_free(f);
            return df_error_prefix(rc, "%s: reading the tensor", what);
        }
    } else {
        void *raw = df_malloc(nb);
        if (!raw) {
            df_free(f);
            return df_error_prefix(DF_ENOMEM, "%s", what);
        }
        int rc = df_tensor_read(t, raw, nb);
        if (!rc) rc = df_convert_to_f32(t->dtype, raw, f, n);
        df_free(raw);
        if (rc) {
            df_free(f);
            return df_error_prefix(rc, "%s: reading the tensor", what);
        }
    }
    *out = f;
    return DF_OK;
}

/* Moves a CPU result onto backend `be` (a no-op for the CPU); takes `host`. */
static int to_backend(df_tensor *host, df_backend *be, df_tensor **out, const char *what)
{
    if (be == df_backend_cpu()) {
        *out = host;
        return DF_OK;
    }
    int rc = df_tensor_to(host, be, out);
    df_tensor_free(host);
    return rc ? df_error_prefix(rc, "%s: uploading the result", what) : DF_OK;
}

/* Checks an image-like operand: 4 dims, a float dtype, no empty dim. */
static int check_nchw(const df_tensor *t, const char *what)
{
    if (!t) return df_error(DF_EINVAL, "%s: NULL tensor", what);
    char s[64];
    if (t->ndim != 4 || t->shape[0] < 1 || t->shape[1] < 1 || t->shape[2] < 1 || t->shape[3] < 1)
        return df_error(DF_ESHAPE, "%s: expected a (B, C, H, W) image, got %s", what,
                        df_tensor_shape_str(t, s, sizeof s));
    if (!is_float_dtype(t->dtype))
        return df_error(DF_EDTYPE, "%s: expected a float tensor, got %s", what, df_dtype_name(t->dtype));
    return DF_OK;
}

/* Reads a whole regular file into a new buffer (df_free). */
static int read_file(const char *path, unsigned char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return df_error(DF_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return df_error(DF_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return df_error(DF_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = df_malloc(n ? n : 1);
    if (!b) {
        close(fd);
        return df_error_prefix(DF_ENOMEM, "%s: reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            df_free(b);
            return df_error(DF_EIO, "%s: read failed: %s", path, e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    *data = b;
    *len = n;
    return DF_OK;
}

static int write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A growable byte buffer; `failed` is sticky (the message is set once). */
typedef struct bytes {
    unsigned char *data;
    size_t len, cap;
    int failed;
} bytes;

static int bytes_reserve(bytes *b, size_t extra)
{
    if (b->failed) return -1;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        df_error(DF_ENOMEM, "buffer of %zu + %zu bytes overflows", b->len, extra);
        return -1;
    }
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *d = df_realloc(b->data, cap);
    if (!d) {
        b->failed = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

static void bytes_put(bytes *b, const void *p, size_t n)
{
    if (!n || bytes_reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void bytes_putc(bytes *b, unsigned char c) { bytes_put(b, &c, 1); }
static void bytes_puts(bytes *b, const char *s) { bytes_put(b, s, strlen(s)); }

static void bytes_printf(bytes *b, const char *fmt, ...) DF_PRINTF(2, 3);
static void bytes_printf(bytes *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) bytes_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void bytes_be32(bytes *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    bytes_put(b, x, 4);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Decodes one UTF-8 sequence at s (n bytes left): the code point, or -1 for
 * an invalid sequence (overlong, surrogate, beyond U+10FFFF, truncated). */
static long utf8_next(const unsigned char *s, size_t n, size_t *used)
{
    unsigned c = s[0];
    size_t len;
    long cp, min;
    if (c < 0x80) {
        *used = 1;
        return c;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if (len > n) return -1;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    *used = len;
    return cp;
}

/* Largest code point of a UTF-8 string, or -1 when it is not valid UTF-8. */
static long utf8_max(const char *s, size_t n)
{
    long mx = 0;
    for (size_t i = 0; i < n;) {
        size_t used;
        long cp = utf8_next((const unsigned char *)s + i, n - i, &used);
        if (cp < 0) return -1;
        if (cp > mx) mx = cp;
        i += used;
    }
    return mx;
}

/* UTF-8 whose code points are all <= U+00FF -> Latin-1 bytes (dst holds n). */
static size_t utf8_to_latin1(const char *s, size_t n, unsigned char *dst)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t used;
        long cp = utf8_next((const unsigned char *)s + i, n - i, &used);
        dst[k++] = (unsigned char)cp;
        i += used;
    }
    return k;
}

static void latin1_to_utf8(bytes *b, const unsigned char *s, size_t n)
{
    if (bytes_reserve(b, 2 * n)) return;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80) {
            b->data[b->len++] = s[i];
        } else {
            b->data[b->len++] = (unsigned char)(0xC0 | s[i] >> 6);
            b->data[b->len++] = (unsigned char)(0x80 | (s[i] & 0x3F));
        }
    }
}

/* A PNG keyword from a UTF-8 key: 1-79 Latin-1 characters in 32-126 or
 * 161-255, no leading, trailing or consecutive spaces. Returns its length in
 * kw[80], or a negative status with the message set. */
static int png_keyword(const char *key, unsigned char kw[80], const char *path)
{
    if (!key) return df_error(DF_EINVAL, "%s: NULL text key", path);
    size_t n = strlen(key);
    long mx = utf8_max(key, n);
    if (mx < 0) return df_error(DF_EINVAL, "%s: text key '%s' is not valid UTF-8", path, key);
    if (mx > 0xFF) return df_error(DF_EINVAL, "%s: text key '%s' is not Latin-1 (PNG keywords are)", path, key);
    if (n > 2 * 79) return df_error(DF_EINVAL, "%s: text key '%.40s...' is longer than 79 characters", path, key);
    size_t k = utf8_to_latin1(key, n, kw);
    if (k < 1 || k > 79)
        return df_error(DF_EINVAL, "%s: text key '%s' must be 1 to 79 characters long (has %zu)", path, key, k);
    for (size_t i = 0; i < k; i++) {
        unsigned c = kw[i];
        if (!((c >= 32 && c <= 126) || c >= 161))
            return df_error(DF_EINVAL, "%s: text key '%s' has a character not allowed in a PNG keyword", path, key);
        if (c == ' ' && (i == 0 || i == k - 1 || kw[i - 1] == ' '))
            return df_error(DF_EINVAL, "%s: text key '%s' has a leading, trailing or double space", path, key);
    }
    return (int)k;
}

/* ---- PNG structure ---- */

static void crc_table(uint32_t t[256])
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[n] = c;
    }
}

/* CRC-32 (ISO 3309, as PNG uses it) of n bytes. */
static uint32_t crc32_of(const uint32_t t[256], const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static int is_text_chunk(const unsigned char *t)
{
    return !memcmp(t, "tEXt", 4) || !memcmp(t, "zTXt", 4) || !memcmp(t, "iTXt", 4);
}

static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

/* Checks the structure of the PNG f (n bytes): signature, IHDR first, every
 * chunk's length (<= 2^31-1, inside the file), type (letters) and CRC, a
 * keyword in every text chunk, IEND present. With kl > 0 also finds the
 * first text chunk whose keyword is kw (kl bytes): *hit points at its type,
 * its data follows, *hit_len bytes. */
static int png_walk(const char *path, const unsigned char *f, size_t n, const unsigned char *kw, int kl,
                    const unsigned char **hit, size_t *hit_len)
{
    uint32_t crc[256];
    crc_table(crc);
    int rc = DF_OK, seen_iend = 0;
    size_t pos = 8;
    *hit = NULL;
    *hit_len = 0;
    if (n < 8 || memcmp(f, png_sig, 8)) rc = df_error(DF_EFORMAT, "%s: not a PNG file (bad signature)", path);
    for (int idx = 0; !rc && !seen_iend; idx++) {
        if (n - pos < 12) {
            rc = df_error(DF_EFORMAT, "%s: truncated PNG: %s at offset %zu", path,
                          pos == n ? "no IEND chunk" : "partial chunk header", pos);
            break;
        }
        uint32_t len = be32(f + pos);
        const unsigned char *type = f + pos + 4, *data = f + pos + 8;
        char tname[5] = {0};
        int letters = 1;
        for (int i = 0; i < 4; i++) {
            int c = type[i];
            letters &= (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
            tname[i] = (char)c;
        }
        if (!letters) {
            rc = df_error(DF_EFORMAT, "%s: bad chunk type at offset %zu", path, pos);
            break;
        }
        if (len > 0x7FFFFFFFu) {
            rc = df_error(DF_EFORMAT, "%s: chunk '%s' at offset %zu has length %u (more than 2^31-1)", path, tname,
                          pos, len);
            break;
        }
        if ((size_t)len > n - pos - 12) {
            rc = df_error(DF_EFORMAT, "%s: chunk '%s' at offset %zu (length %u) runs past the end of the %zu-byte "
                          "file (truncated?)", path, tname, pos, len, n);
            break;
        }
        uint32_t want = be32(data + len), got = crc32_of(crc, type, 4 + (size_t)len);
        if (want != got) {
            rc = df_error(DF_EFORMAT, "%s: chunk '%s' at offset %zu has a bad CRC (0x%08x, computed 0x%08x)", path,
                          tname, pos, want, got);
            break;
        }
        if (idx == 0 && (memcmp(type, "IHDR", 4) || len != 13)) {
            rc = df_error(DF_EFORMAT, "%s: the first chunk is '%s' of %u bytes, not a 13-byte IHDR", path, tname, len);
            break;
        }
        if (!memcmp(type, "IEND", 4)) seen_iend = 1;
        if (is_text_chunk(type)) {
            const unsigned char *z = memchr(data, 0, len < 80 ? len : 80);
            if (!z || z == data) {
                rc = df_error(DF_EFORMAT, "%s: %s chunk at offset %zu has no valid keyword", path, tname, pos);
                break;
            }
            if (kl && !*hit && (size_t)(z - data) == (size_t)kl && !memcmp(data, kw, (size_t)kl)) {
                *hit = type;
                *hit_len = len;
            }
        }
        pos += 12 + (size_t)len;
    }
    return rc;
}

/* ---- loading ---- */

/* Decodes path into 8-bit RGB (stb's buffer: stbi_image_free). */
static int decode_rgb(const char *path, unsigned char **pix, int *w, int *h)
{
    *pix = NULL;
    if (!path) return df_error(DF_EINVAL, "image load: NULL path");
    unsigned char *file;
    size_t len;
    int rc = read_file(path, &file, &len);
    if (rc) return rc;
    if (len > INT_MAX) {
        df_free(file);
        return df_error(DF_EFORMAT, "%s: file of %zu bytes is too large to decode", path, len);
    }
    /* stb ignores CRCs and a missing IEND: check a PNG's structure first */
    if (len >= 8 && !memcmp(file, png_sig, 8)) {
        const unsigned char *hit;
        size_t hit_len;
        if ((rc = png_walk(path, file, len, NULL, 0, &hit, &hit_len))) {
            df_free(file);
            return rc;
        }
    }
    int comp;
    /* the size a header claims, before anything that large is allocated: a few bytes can claim gigapixels */
    if (stbi_info_from_memory(file, (int)len, w, h, &comp) && (int64_t)*w * *h > DF_IMAGE_MAX_PIXELS) {
        df_free(file);
        return df_error(DF_EFORMAT, "%s: a %d x %d picture is larger than the %d megapixels difusa loads", path, *w,
                        *h, DF_IMAGE_MAX_PIXELS >> 20);
    }
    *pix = stbi_load_from_memory(file, (int)len, w, h, &comp, 3);
    df_free(file);
    if (!*pix) {
        const char *why = stbi_failure_reason();
        return df_error(DF_EFORMAT, "%s: cannot decode image: %s", path, why ? why : "unknown reason");
    }
    return DF_OK;
}

int df_image_load(const char *path, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "df_image_load: NULL out");
    *out = NULL;
    unsigned char *pix;
    int w, h, rc = decode_rgb(path, &pix, &w, &h);
    if (rc) return rc;
    df_tensor *t = df_tensor_new(NULL, DF_F32, 4, (int64_t[]){1, 3, h, w});
    if (!t) {
        stbi_image_free(pix);
        return df_error_prefix(DF_ENOMEM, "%s: load", path);
    }
    /* (H, W, 3) u8 -> (1, 3, H, W): p / 127.5 - 1, the same f32 value as
     * diffusers' 2 * (p / 255) - 1 (scaling by 2 is exact). */
    float *d = df_tensor_data(t);
    size_t hw = (size_t)w * (size_t)h;
    for (size_t i = 0; i < hw; i++)
        for (size_t c = 0; c < 3; c++) d[c * hw + i] = (float)pix[3 * i + c] / 127.5f - 1.0f;
    stbi_image_free(pix);
    *out = t;
    return DF_OK;
}

int df_image_load_mask(const char *path, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "df_image_load_mask: NULL out");
    *out = NULL;
    unsigned char *pix;
    int w, h, rc = decode_rgb(path, &pix, &w, &h);
    if (rc) return rc;
    df_tensor *t = df_tensor_new(NULL, DF_F32, 4, (int64_t[]){1, 1, h, w});
    if (!t) {
        stbi_image_free(pix);
        return df_error_prefix(DF_ENOMEM, "%s: load mask", path);
    }
    float *d = df_tensor_data(t);
    size_t hw = (size_t)w * (size_t)h;
    for (size_t i = 0; i < hw; i++) {
        const unsigned char *p = pix + 3 * i;
        uint32_t l = (19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16; /* PIL's "L" */
        d[i] = (float)l / 255.0f;
    }
    stbi_image_free(pix);
    *out = t;
    return DF_OK;
}

/* ---- PNG chunks and saving ---- */

/* Appends one chunk (length, type, data, CRC over type and data). */
static void put_chunk(bytes *b, const uint32_t crc[256], const char type[4], const bytes *data)
{
    size_t start = b->len;
    bytes_be32(b, (uint32_t)data->len);
    bytes_put(b, type, 4);
    bytes_put(b, data->data, data->len);
    if (!b->failed) bytes_be32(b, crc32_of(crc, b->data + start + 4, 4 + data->len));
}

/* The text chunks for `text`, one after the other, into `out`. */
static int build_text_chunks(const char *path, const df_image_text *text, int n_text, bytes *out)
{
    uint32_t crc[256];
    crc_table(crc);
    bytes data = {0};
    int rc = DF_OK;
    for (int i = 0; i < n_text && !rc; i++) {
        unsigned char kw[80];
        int kl = png_keyword(text[i].key, kw, path);
        if (kl < 0) {
            rc = kl;
            break;
        }
        const char *v = text[i].value ? text[i].value : "";
        size_t vn = strlen(v);
        long mx = utf8_max(v, vn);
        if (mx < 0) {
            rc = df_error(DF_EINVAL, "%s: the value of text key '%s' is not valid UTF-8", path, text[i].key);
            break;
        }
        if (vn > 0x7FFFFFFFu - 100) {
            rc = df_error(DF_EINVAL, "%s: the value of text key '%s' is too long for a PNG chunk (%zu bytes)", path,
                          text[i].key, vn);
            break;
        }
        data.len = 0;
        bytes_put(&data, kw, (size_t)kl);
        bytes_putc(&data, 0);
        if (mx <= 0xFF) { /* tEXt: keyword NUL Latin-1 text */
            if (!bytes_reserve(&data, vn)) data.len += utf8_to_latin1(v, vn, data.data + data.len);
            put_chunk(out, crc, "tEXt", &data);
        } else { /* iTXt: keyword NUL, uncompressed, method 0, no language, no translated keyword, UTF-8 */
            static const unsigned char hdr[4] = {0, 0, 0, 0};
            bytes_put(&data, hdr, 4);
            bytes_put(&data, v, vn);
            put_chunk(out, crc, "iTXt", &data);
        }
        if (data.failed || out->failed) rc = df_error_prefix(DF_ENOMEM, "%s: building text chunk '%s'", path,
                                                             text[i].key);
    }
    df_free(data.data);
    return rc;
}

static void png_sink(void *ctx, void *data, int size)
{
    if (size > 0) bytes_put(ctx, data, (size_t)size);
}

static atomic_uint tmp_counter;

/* Writes n bytes to path through a temporary file renamed into place. */
static int write_file_atomic(const char *path, const void *data, size_t n)
{
    size_t tlen = strlen(path) + 48;
    char *tmp = df_malloc(tlen);
    if (!tmp) return df_error_prefix(DF_ENOMEM, "%s: save", path);
    snprintf(tmp, tlen, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
    int rc = DF_OK, fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        rc = df_error(DF_EIO, "%s: cannot create '%s': %s", path, tmp, strerror(errno));
        df_free(tmp);
        return rc;
    }
    if (write_all(fd, data, n)) rc = df_error(DF_EIO, "%s: write failed: %s", path, strerror(errno));
    if (!rc && fsync(fd) != 0) rc = df_error(DF_EIO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc) rc = df_error(DF_EIO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = df_error(DF_EIO, "%s: cannot rename '%s' into place: %s", path, tmp, strerror(errno));
    if (rc) unlink(tmp);
    df_free(tmp);
    return rc;
}

/* diffusers' float -> 8 bit, in f32: round-half-even(clamp(x/2 + 0.5, 0, 1) * 255). */
static unsigned char to_u8(float x)
{
    float v = x * 0.5f + 0.5f; /* x*0.5 is exact, so a fused multiply-add gives the same value */
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v > 1.0f) v = 1.0f;
    return (unsigned char)nearbyintf(v * 255.0f); /* the default rounding mode: half to even */
}

int df_image_save(const df_tensor *img, const char *path, const df_image_text *text, int n_text)
{
    if (!path) return df_error(DF_EINVAL, "df_image_save: NULL path");
    int rc = check_nchw(img, path);
    if (rc) return rc;
    char s[64];
    if (img->shape[0] != 1 || img->shape[1] != 3)
        return df_error(DF_ESHAPE, "%s: expected a (1, 3, H, W) image, got %s (save a batch with df_image_grid)",
                        path, df_tensor_shape_str(img, s, sizeof s));
    int64_t H = img->shape[2], W = img->shape[3];
    if (W > (INT_MAX / 2 - 1) / 3 || H > (INT_MAX / 2) / (3 * W + 1))
        return df_error(DF_ESHAPE, "%s: image %s is too large for the PNG writer", path,
                        df_tensor_shape_str(img, s, sizeof s));
    if (n_text < 0 || (n_text > 0 && !text))
        return df_error(DF_EINVAL, "%s: bad text list (%d entries%s)", path, n_text, text ? "" : ", NULL");

    bytes chunks = {0}, png = {0};
    float *f = NULL;
    unsigned char *pix = NULL;
    rc = build_text_chunks(path, text, n_text, &chunks);
    if (!rc) rc = host_f32(img, &f, path);
    if (!rc && !(pix = df_malloc((size_t)(H * W * 3)))) rc = df_error_prefix(DF_ENOMEM, "%s: save", path);
    if (!rc) {
        size_t hw = (size_t)(H * W);
        for (size_t i = 0; i < hw; i++)
            for (size_t c = 0; c < 3; c++) pix[3 * i + c] = to_u8(f[c * hw + i]);
        if (!stbi_write_png_to_func(png_sink, &png, (int)W, (int)H, 3, pix, (int)(3 * W)) || png.failed)
            rc = png.failed ? df_error_prefix(DF_ENOMEM, "%s: encoding PNG", path)
                            : df_error(DF_EIO, "%s: stb_image_write failed to encode the PNG", path);
    }
    /* stb writes signature, IHDR, IDAT, IEND: the text goes in after IHDR. */
    const size_t after_ihdr = 8 + 12 + 13;
    if (!rc && (png.len < after_ihdr || memcmp(png.data, png_sig, 8) || memcmp(png.data + 12, "IHDR", 4)))
        rc = df_error(DF_EFORMAT, "%s: unexpected PNG layout from stb_image_write", path);
    if (!rc && chunks.len) {
        if (bytes_reserve(&png, chunks.len)) {
            rc = df_error_prefix(DF_ENOMEM, "%s: save", path);
        } else {
            memmove(png.data + after_ihdr + chunks.len, png.data + after_ihdr, png.len - after_ihdr);
            memcpy(png.data + after_ihdr, chunks.data, chunks.len);
            png.len += chunks.len;
        }
    }
    if (!rc) rc = write_file_atomic(path, png.data, png.len);
    df_free(png.data);
    df_free(pix);
    df_free(f);
    df_free(chunks.data);
    return rc;
}

/* ---- reading text back ---- */

#define MAX_INFLATE ((size_t)64 << 20)

/* zlib stream -> new buffer, at most MAX_INFLATE bytes. */
static int inflate_bounded(const char *path, const char *key, const unsigned char *in, size_t n, bytes *out)
{
    size_t cap = n < 1024 ? 4096 : 4 * n;
    for (;;) {
        if (cap > MAX_INFLATE) cap = MAX_INFLATE;
        out->len = 0;
        if (bytes_reserve(out, cap)) return df_error_prefix(DF_ENOMEM, "%s: inflating text '%s'", path, key);
        int r = stbi_zlib_decode_buffer((char *)out->data, (int)cap, (const char *)in, (int)n);
        if (r >= 0) {
            out->len = (size_t)r;
            return DF_OK;
        }
        /* stb says "output buffer limit" when the data is fine but does not fit */
        const char *why = stbi_failure_reason();
        if (!why || strcmp(why, "output buffer limit"))
            return df_error(DF_EFORMAT, "%s: compressed text '%s' is corrupt (%s)", path, key, why ? why : "?");
        if (cap == MAX_INFLATE)
            return df_error(DF_EFORMAT, "%s: compressed text '%s' inflates to more than %zu MiB", path, key,
                            MAX_INFLATE >> 20);
        cap *= 2;
    }
}

/* The value of one tEXt / zTXt / iTXt chunk (data of n bytes, keyword
 * already matched, kl bytes + NUL) as UTF-8 into out. */
static int text_value(const char *path, const char *key, const char type[4], const unsigned char *d, size_t n,
                      size_t kl, bytes *out)
{
    const unsigned char *p = d + kl + 1, *end = d + n;
    bytes raw = {0};
    int rc = DF_OK, latin1 = 1;
    if (!memcmp(type, "tEXt", 4)) {
        bytes_put(&raw, p, (size_t)(end - p));
    } else if (!memcmp(type, "zTXt", 4)) {
        if (p >= end || *p != 0) return df_error(DF_EFORMAT, "%s: zTXt '%s': unknown compression method", path, key);
        rc = inflate_bounded(path, key, p + 1, (size_t)(end - p - 1), &raw);
    } else { /* iTXt */
        latin1 = 0;
        if (end - p < 2) return df_error(DF_EFORMAT, "%s: iTXt '%s' is truncated", path, key);
        int compressed = p[0], method = p[1];
        if (compressed > 1 || (compressed && method != 0))
            return df_error(DF_EFORMAT, "%s: iTXt '%s': bad compression flag %d / method %d", path, key, compressed,
                            method);
        p += 2;
        for (int field = 0; field < 2; field++) { /* language tag, translated keyword */
            const unsigned char *z = memchr(p, 0, (size_t)(end - p));
            if (!z) return df_error(DF_EFORMAT, "%s: iTXt '%s' is truncated", path, key);
            p = z + 1;
        }
        if (compressed)
            rc = inflate_bounded(path, key, p, (size_t)(end - p), &raw);
        else
            bytes_put(&raw, p, (size_t)(end - p));
    }
    if (!rc && raw.failed) rc = df_error_prefix(DF_ENOMEM, "%s: reading text '%s'", path, key);
    if (!rc && raw.len && memchr(raw.data, 0, raw.len))
        rc = df_error(DF_EFORMAT, "%s: text '%s' contains a NUL byte", path, key);
    if (!rc && !latin1 && utf8_max((const char *)raw.data, raw.len) < 0)
        rc = df_error(DF_EFORMAT, "%s: iTXt '%s' is not valid UTF-8", path, key);
    if (!rc) {
        if (latin1)
            latin1_to_utf8(out, raw.data, raw.len);
        else
            bytes_put(out, raw.data, raw.len);
        bytes_putc(out, 0);
        if (out->failed) rc = df_error_prefix(DF_ENOMEM, "%s: reading text '%s'", path, key);
    }
    df_free(raw.data);
    return rc;
}

int df_image_read_text(const char *path, const char *key, char **value)
{
    if (!value) return df_error(DF_EINVAL, "df_image_read_text: NULL value");
    *value = NULL;
    if (!path) return df_error(DF_EINVAL, "df_image_read_text: NULL path");
    unsigned char kw[80];
    int kl = png_keyword(key, kw, path);
    if (kl < 0) return kl;

    unsigned char *f;
    size_t n;
    int rc = read_file(path, &f, &n);
    if (rc) return rc;
    const unsigned char *hit = NULL;
    size_t hit_len = 0;
    rc = png_walk(path, f, n, kw, kl, &hit, &hit_len);
    if (!rc && !hit) rc = df_error(DF_ENOTFOUND, "%s: no text chunk '%s'", path, key);
    if (!rc) {
        bytes out = {0};
        rc = text_value(path, key, (const char *)hit, hit + 4, hit_len, (size_t)kl, &out);
        if (rc)
            df_free(out.data);
        else
            *value = (char *)out.data;
    }
    df_free(f);
    return rc;
}

void df_image_string_free(char *s) { df_free(s); }

/* ---- grid, resize, crop ---- */

int df_image_grid(const df_tensor *batch, int cols, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "df_image_grid: NULL out");
    *out = NULL;
    int rc = check_nchw(batch, "df_image_grid");
    if (rc) return rc;
    if (cols < 1) return df_error(DF_EINVAL, "df_image_grid: cols must be >= 1, got %d", cols);
    int64_t B = batch->shape[0], C = batch->shape[1], H = batch->shape[2], W = batch->shape[3];
    int64_t rows = (B + cols - 1) / cols;
    if (rows * H > INT32_MAX || (int64_t)cols * W > INT32_MAX)
        return df_error(DF_ESHAPE, "df_image_grid: a %lld x %d grid of %lldx%lld images is too large", (long long)rows,
                        cols, (long long)H, (long long)W);
    float *src;
    if ((rc = host_f32(batch, &src, "df_image_grid"))) return rc;
    int64_t GH = rows * H, GW = (int64_t)cols * W;
    df_tensor *g = df_tensor_new(NULL, DF_F32, 4, (int64_t[]){1, C, GH, GW});
    if (!g) {
        df_free(src);
        return df_error_prefix(DF_ENOMEM, "df_image_grid");
    }
    float *d = df_tensor_data(g);
    for (int64_t i = 0; i < C * GH * GW; i++) d[i] = -1.0f;
    /* image b (C, H, W) -> channel c, rows (b / cols)·H.., columns (b % cols)·W.. */
    for (int64_t b = 0; b < B; b++) {
        int64_t r0 = b / cols * H, c0 = b % cols * W;
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                memcpy(d + (c * GH + r0 + y) * GW + c0, src + ((b * C + c) * H + y) * W, (size_t)W * sizeof(float));
    }
    df_free(src);
    return to_backend(g, df_tensor_backend(batch), out, "df_image_grid");
}

/* torch's source index and weights for one output position along a dim of
 * `in` samples (upsample_bilinear2d, align_corners=False, in f32). */
static void lin_index(int64_t dst, int64_t in, int64_t out, float scale, int64_t *i0, int64_t *i1, float *w0,
                      float *w1)
{
    if (in == out) { /* torch copies */
        *i0 = *i1 = dst;
        *w0 = 1.0f;
        *w1 = 0.0f;
        return;
    }
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    int64_t i = (int64_t)floorf(src);
    if (i > in - 1) i = in - 1;
    float l = src - (float)i;
    if (l < 0.0f) l = 0.0f;
    if (l > 1.0f) l = 1.0f;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *w1 = l;
    *w0 = 1.0f - l;
}

int df_image_resize(const df_tensor *img, int width, int height, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "df_image_resize: NULL out");
    *out = NULL;
    int rc = check_nchw(img, "df_image_resize");
    if (rc) return rc;
    if (width < 1 || height < 1)
        return df_error(DF_EINVAL, "df_image_resize: target size %dx%d must be at least 1x1", width, height);
    int64_t B = img->shape[0], C = img->shape[1], H = img->shape[2], W = img->shape[3];
    float *src;
    if ((rc = host_f32(img, &src, "df_image_resize"))) return rc;
    df_tensor *r = df_tensor_new(NULL, DF_F32, 4, (int64_t[]){B, C, height, width});
    int64_t *ix = df_malloc((size_t)width * 2 * sizeof(int64_t));
    float *wx = df_malloc((size_t)width * 2 * sizeof(float));
    if (!r || !ix || !wx) {
        df_tensor_free(r);
        df_free(ix);
        df_free(wx);
        df_free(src);
        return df_error_prefix(DF_ENOMEM, "df_image_resize");
    }
    /* torch: scale = in / out as f32 when only the size is given. */
    float sh = (float)H / (float)height, sw = (float)W / (float)width;
    for (int x = 0; x < width; x++) lin_index(x, W, width, sw, &ix[2 * x], &ix[2 * x + 1], &wx[2 * x], &wx[2 * x + 1]);
    float *d = df_tensor_data(r);
    for (int64_t p = 0; p < B * C; p++) {
        const float *s = src + p * H * W;
        for (int y = 0; y < height; y++) {
            int64_t y0, y1;
            float wy0, wy1;
            lin_index(y, H, height, sh, &y0, &y1, &wy0, &wy1);
            const float *r0 = s + y0 * W, *r1 = s + y1 * W;
            float *o = d + (p * height + y) * width;
            for (int x = 0; x < width; x++) {
                int64_t x0 = ix[2 * x], x1 = ix[2 * x + 1];
                float a = wx[2 * x], b = wx[2 * x + 1];
                /* torch's order: height weight outside, width inside */
                float t0 = a * r0[x0] + b * r0[x1];
                float t1 = a * r1[x0] + b * r1[x1];
                o[x] = t0 * wy0 + t1 * wy1;
            }
        }
    }
    df_free(ix);
    df_free(wx);
    df_free(src);
    return to_backend(r, df_tensor_backend(img), out, "df_image_resize");
}

int df_image_crop(const df_tensor *img, int x, int y, int w, int h, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "df_image_crop: NULL out");
    *out = NULL;
    int rc = check_nchw(img, "df_image_crop");
    if (rc) return rc;
    int64_t B = img->shape[0], C = img->shape[1], H = img->shape[2], W = img->shape[3];
    if (w < 1 || h < 1 || x < 0 || y < 0 || x > W - w || y > H - h)
        return df_error(DF_EINVAL, "df_image_crop: window %dx%d at (%d, %d) is not inside the %lldx%lld image", w, h,
                        x, y, (long long)W, (long long)H);
    float *src;
    if ((rc = host_f32(img, &src, "df_image_crop"))) return rc;
    df_tensor *r = df_tensor_new(NULL, DF_F32, 4, (int64_t[]){B, C, h, w});
    if (!r) {
        df_free(src);
        return df_error_prefix(DF_ENOMEM, "df_image_crop");
    }
    float *d = df_tensor_data(r);
    for (int64_t p = 0; p < B * C; p++)
        for (int64_t j = 0; j < h; j++)
            memcpy(d + (p * h + j) * w, src + (p * H + y + j) * W + x, (size_t)w * sizeof(float));
    df_free(src);
    return to_backend(r, df_tensor_backend(img), out, "df_image_crop");
}

/* ---- AUTOMATIC1111's infotext ---- */

df_a1111_params df_a1111_default_params(void)
{
    return (df_a1111_params){
        .prompt = "",
        .steps = 20,
        .cfg = 7.0,
        .width = 512,
        .height = 512,
        .denoising_strength = -1.0,
        .clip_skip = 1,
        .version = "difusa " DF_VERSION,
    };
}

/* Python's repr(float) (shortest round-trip digits; exponent form below 1e-4
 * and from 1e16), or the integer when `int_if_integral` and v is one. */
static void py_float(double v, int int_if_integral, char *out, size_t n)
{
    if (isnan(v)) {
        snprintf(out, n, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, v < 0 ? "-inf" : "inf");
        return;
    }
    if (int_if_integral && v == floor(v) && fabs(v) < 1e16) {
        snprintf(out, n, "%.0f", v + 0.0); /* + 0.0: -0.0 prints as 0 */
        return;
    }
    char e[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v) break; /* same locale both ways */
    }
    /* e: [-]d[<point>ddd]e(+|-)xx -> sign, digits, decimal exponent. */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *p = e + neg;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < 20) digits[nd++] = *p;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    size_t k = 0;
    char buf[64];
    if (neg) buf[k++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 >= 0) {
            for (int i = 0; i <= exp10; i++) buf[k++] = i < nd ? digits[i] : '0';
            buf[k++] = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++) buf[k++] = digits[i];
            else
                buf[k++] = '0';
        } else {
            buf[k++] = '0';
            buf[k++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) buf[k++] = '0';
            for (int i = 0; i < nd; i++) buf[k++] = digits[i];
        }
        buf[k] = '\0';
    } else {
        buf[k++] = digits[0];
        if (nd > 1) {
            buf[k++] = '.';
            for (int i = 1; i < nd; i++) buf[k++] = digits[i];
        }
        snprintf(buf + k, sizeof buf - k, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    snprintf(out, n, "%s", buf);
}

/* A1111's quote(): json.dumps(v, ensure_ascii=False) when v holds ',', ':'
 * or a newline, else v as is. */
static void put_quoted(bytes *b, const char *v)
{
    if (!strpbrk(v, ",:\n")) {
        bytes_puts(b, v);
        return;
    }
    bytes_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        switch (*p) {
        case '"': bytes_puts(b, "\\\""); break;
        case '\\': bytes_puts(b, "\\\\"); break;
        case '\n': bytes_puts(b, "\\n"); break;
        case '\r': bytes_puts(b, "\\r"); break;
        case '\t': bytes_puts(b, "\\t"); break;
        case '\b': bytes_puts(b, "\\b"); break;
        case '\f': bytes_puts(b, "\\f"); break;
        default:
            if (*p < 0x20)
                bytes_printf(b, "\\u%04x", *p);
            else
                bytes_putc(b, *p);
        }
    }
    bytes_putc(b, '"');
}

/* Python's str.isspace() for one code point. */
static int py_space(long cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

typedef struct kv {
    const char *key, *value;
} kv;

/* Python dict semantics: a key seen before keeps its place, takes the value. */
static void dict_set(kv *d, int *n, const char *key, const char *value)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(d[i].key, key)) {
            d[i].value = value;
            return;
        }
    d[*n].key = key;
    d[*n].value = value;
    (*n)++;
}

static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

int df_image_a1111_parameters(const df_a1111_params *p, char **out)
{
    if (!out) return df_error(DF_EINVAL, "df_image_a1111_parameters: NULL out");
    *out = NULL;
    if (!p) return df_error(DF_EINVAL, "df_image_a1111_parameters: NULL params");
    if (p->n_extra < 0 || (p->n_extra > 0 && !p->extra))
        return df_error(DF_EINVAL, "df_image_a1111_parameters: bad extra list (%d entries)", p->n_extra);
    for (int i = 0; i < p->n_extra; i++)
        if (!p->extra[i].key || !*p->extra[i].key)
            return df_error(DF_EINVAL, "df_image_a1111_parameters: extra %d has no key", i);
    const char *strs[][2] = {{"prompt", p->prompt},         {"negative", p->negative},
                             {"sampler", p->sampler},       {"scheduler", p->scheduler},
                             {"model_hash", p->model_hash}, {"model_name", p->model_name},
                             {"version", p->version}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i][1] && utf8_max(strs[i][1], strlen(strs[i][1])) < 0)
            return df_error(DF_EINVAL, "df_image_a1111_parameters: %s is not valid UTF-8", strs[i][0]);
    for (int i = 0; i < p->n_extra; i++) {
        const char *k = p->extra[i].key, *v = p->extra[i].value;
        if (utf8_max(k, strlen(k)) < 0 || (v && utf8_max(v, strlen(v)) < 0))
            return df_error(DF_EINVAL, "df_image_a1111_parameters: extra '%s' is not valid UTF-8", k);
    }

    char steps[24], cfg[40], seed[24], size[32], dn[40], cs[24];
    snprintf(steps, sizeof steps, "%d", p->steps);
    py_float(p->cfg, 1, cfg, sizeof cfg);
    snprintf(seed, sizeof seed, "%lld", (long long)p->seed);
    snprintf(size, sizeof size, "%dx%d", p->width, p->height);
    py_float(p->denoising_strength, 1, dn, sizeof dn);
    snprintf(cs, sizeof cs, "%d", p->clip_skip);

    kv *d = df_malloc((size_t)(11 + p->n_extra) * sizeof *d);
    if (!d) return df_error_prefix(DF_ENOMEM, "df_image_a1111_parameters");
    int n = 0;
    dict_set(d, &n, "Steps", steps);
    dict_set(d, &n, "Sampler", nonempty(p->sampler));
    dict_set(d, &n, "Schedule type", nonempty(p->scheduler));
    dict_set(d, &n, "CFG scale", cfg);
    dict_set(d, &n, "Seed", seed);
    dict_set(d, &n, "Size", size);
    dict_set(d, &n, "Model hash", nonempty(p->model_hash));
    dict_set(d, &n, "Model", nonempty(p->model_name));
    dict_set(d, &n, "Denoising strength", p->denoising_strength < 0 ? NULL : dn);
    dict_set(d, &n, "Clip skip", p->clip_skip <= 1 ? NULL : cs);
    for (int i = 0; i < p->n_extra; i++) dict_set(d, &n, p->extra[i].key, p->extra[i].value);
    dict_set(d, &n, "Version", nonempty(p->version));

    bytes b = {0};
    bytes_puts(&b, p->prompt ? p->prompt : "");
    if (p->negative && *p->negative) {
        bytes_puts(&b, "\nNegative prompt: ");
        bytes_puts(&b, p->negative);
    }
    bytes_putc(&b, '\n');
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (!d[i].value) continue;
        if (!first) bytes_puts(&b, ", ");
        first = 0;
        bytes_puts(&b, d[i].key);
        if (strcmp(d[i].key, d[i].value)) { /* A1111 writes a field equal to its key as the key alone */
            bytes_puts(&b, ": ");
            put_quoted(&b, d[i].value);
        }
    }
    bytes_putc(&b, 0);
    df_free(d);
    if (b.failed) {
        df_free(b.data);
        return df_error_prefix(DF_ENOMEM, "df_image_a1111_parameters");
    }

    /* .strip(): Python whitespace at both ends (the text is valid UTF-8). */
    char *s = (char *)b.data;
    size_t len = b.len - 1, start = 0, end = len;
    while (start < end) {
        size_t used;
        long cp = utf8_next((const unsigned char *)s + start, end - start, &used);
        if (cp < 0 || !py_space(cp)) break;
        start += used;
    }
    while (end > start) {
        size_t q = end - 1;
        while (q > start && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
        size_t used;
        long cp = utf8_next((const unsigned char *)s + q, end - q, &used);
        if (cp < 0 || !py_space(cp)) break;
        end = q;
    }
    memmove(s, s + start, end - start);
    s[end - start] = '\0';
    *out = s;
    return DF_OK;
}

/* ---- SHA-256 (FIPS 180-4) ---- */

typedef struct sha256 {
    uint32_t h[8];
    uint64_t len; /* bytes */
    unsigned char block[64];
    size_t used;
} sha256;

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return x >> n | x << (32 - n); }

static void sha256_init(sha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->used = 0;
}

static void sha256_block(sha256 *s, const unsigned char *b)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = be32(b + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6],
             h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = bb, bb = a, a = t1 + t2;
    }
    s->h[0] += a, s->h[1] += bb, s->h[2] += c, s->h[3] += d;
    s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_update(sha256 *s, const unsigned char *p, size_t n)
{
    s->len += n;
    if (s->used) {
        size_t k = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, k);
        s->used += k, p += k, n -= k;
        if (s->used < 64) return;
        sha256_block(s, s->block);
        s->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(s, p);
    memcpy(s->block, p, n);
    s->used = n;
}

static void sha256_final(sha256 *s, unsigned char digest[32])
{
    uint64_t bits = s->len * 8;
    static const unsigned char pad[64] = {0x80};
    size_t padn = s->used < 56 ? 56 - s->used : 120 - s->used;
    sha256_update(s, pad, padn);
    unsigned char l[8];
    for (int i = 0; i < 8; i++) l[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(s, l, 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (unsigned char)(s->h[i] >> (24 - 8 * j));
}

void df_sha256(const void *data, size_t n, unsigned char digest[32])
{
    sha256 s;
    sha256_init(&s);
    sha256_update(&s, data, n);
    sha256_final(&s, digest);
}

int df_file_sha256(const char *path, unsigned char digest[32])
{
    if (!path || !digest) return df_error(DF_EINVAL, "df_file_sha256: NULL %s", path ? "digest" : "path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return df_error(DF_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        return df_error(DF_EIO, "%s: %s", path, e ? strerror(e) : "not a regular file");
    }
    size_t cap = (size_t)1 << 20;
    unsigned char *buf = df_malloc(cap);
    if (!buf) {
        close(fd);
        return df_error_prefix(DF_ENOMEM, "%s: hashing", path);
    }
    sha256 s;
    sha256_init(&s);
    int rc = DF_OK;
    for (;;) {
        ssize_t r = read(fd, buf, cap);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = df_error(DF_EIO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        sha256_update(&s, buf, (size_t)r);
    }
    close(fd);
    df_free(buf);
    if (!rc) sha256_final(&s, digest);
    return rc;
}

int df_file_hash_a1111(const char *path, char out[11])
{
    if (!out) return df_error(DF_EINVAL, "df_file_hash_a1111: NULL out");
    out[0] = '\0';
    unsigned char dg[32];
    int rc = df_file_sha256(path, dg);
    if (rc) return rc;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 10; i++) out[i] = hex[i % 2 ? dg[i / 2] & 15 : dg[i / 2] >> 4];
    out[10] = '\0';
    return DF_OK;
}
