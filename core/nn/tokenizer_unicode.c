/* Code point properties, Python's lower(), NFC and UTF-8 for the CLIP
 * tokenizer, over the generated tables in tokenizer_unicode_data.c. */
#include "tokenizer_unicode.h"

#include <string.h>

/* ---- lookups ---- */

/* Index of the last element <= key in an ascending array, or -1. */
static int upper_index(const uint32_t *a, int n, uint32_t key)
{
    int lo = 0, hi = n; /* answer in [lo - 1, hi - 1] */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (a[mid] <= key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

unsigned df_uc_props(uint32_t cp)
{
    if (cp > 0x10FFFF) return DF_UC_REMOVE;
    int i = upper_index(df_uc_prop_start, df_uc_prop_count, cp);
    return i < 0 ? 0 : df_uc_prop_bits[i];
}

int df_uc_digit(uint32_t cp)
{
    if (!(df_uc_props(cp) & DF_UC_DIGIT)) return -1;
    int i = upper_index(df_uc_digit_zero, df_uc_digit_count, cp);
    return i < 0 ? -1 : (int)(cp - df_uc_digit_zero[i]);
}

int df_uc_ccc(uint32_t cp)
{
    /* Ranges are keyed (first << 8 | ccc): the last key <= (cp << 8 | 255). */
    if (cp > 0x10FFFF) return 0;
    int i = upper_index(df_uc_ccc_ranges, df_uc_ccc_count, cp << 8 | 255u);
    if (i < 0 || cp > df_uc_ccc_ranges[df_uc_ccc_count + i]) return 0;
    return (int)(df_uc_ccc_ranges[i] & 255u);
}

int df_uc_lower(uint32_t cp, uint32_t out[2])
{
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    if (cp == 0x3A3) {
        out[0] = 0x3C3;
        return 1;
    }
    int i = upper_index(df_uc_lower_cp, df_uc_lower_count, cp);
    if (i < 0 || df_uc_lower_cp[i] != cp) {
        out[0] = cp;
        return 1;
    }
    out[0] = df_uc_lower_1[i];
    if (!df_uc_lower_2[i]) return 1;
    out[1] = df_uc_lower_2[i];
    return 2;
}

bool df_uc_ci_eq(uint32_t cp, char c)
{
    if (cp == (uint32_t)c || (c >= 'a' && c <= 'z' && cp == (uint32_t)(c - 32))) return true;
    for (int i = 0; i < df_uc_fold_count; i++)
        if (df_uc_fold[2 * i] == (uint32_t)c && df_uc_fold[2 * i + 1] == cp) return true;
    return false;
}

/* ---- NFC (UAX #15: full canonical decomposition, canonical ordering,
 * canonical composition) ---- */

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7 };
enum { L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

static int decompose(uint32_t cp, uint32_t out[DF_UC_MAX_DECOMP])
{
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (s % T_COUNT == 0) return 2;
        out[2] = T_BASE + s % T_COUNT;
        return 3;
    }
    if (cp >= 0xC0) {
        int i = upper_index(df_uc_decomp_cp, df_uc_decomp_count, cp);
        if (i >= 0 && df_uc_decomp_cp[i] == cp) {
            uint32_t off = df_uc_decomp_off[i] >> 3, len = df_uc_decomp_off[i] & 7u;
            memcpy(out, df_uc_decomp_pool + off, len * sizeof *out);
            return (int)len;
        }
    }
    out[0] = cp;
    return 1;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    int lo = 0, hi = df_uc_comp_count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        uint32_t ma = df_uc_comp[3 * mid], mb = df_uc_comp[3 * mid + 1];
        if (ma == a && mb == b) return df_uc_comp[3 * mid + 2];
        if (ma < a || (ma == a && mb < b))
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

int df_uc_nfc(const uint32_t *s, size_t n, uint32_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (n > SIZE_MAX / (DF_UC_MAX_DECOMP * sizeof(uint32_t)) - 1) return df_error(DF_ENOMEM, "text too long");
    uint32_t *b = df_malloc((n * DF_UC_MAX_DECOMP + 1) * sizeof *b);
    int *cc = df_malloc((n * DF_UC_MAX_DECOMP + 1) * sizeof *cc);
    if (!b || !cc) {
        df_free(b);
        df_free(cc);
        return DF_ENOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t d[DF_UC_MAX_DECOMP];
        int k = decompose(s[i], d);
        for (int j = 0; j < k; j++) {
            /* canonical ordering: insert behind non-starters of a higher class */
            int c = df_uc_ccc(d[j]);
            size_t p = m;
            if (c)
                while (p > 0 && cc[p - 1] > c) {
                    b[p] = b[p - 1];
                    cc[p] = cc[p - 1];
                    p--;
                }
            b[p] = d[j];
            cc[p] = c;
            m++;
        }
    }
    /* composition; `last` is the class of the last character kept after the
     * starter (256 when the text starts with a non-starter: nothing composes) */
    size_t starter = 0, w = m ? 1 : 0;
    int last = m && cc[0] ? 256 : 0;
    for (size_t r = 1; r < m; r++) {
        uint32_t ch = b[r];
        int c = cc[r];
        uint32_t comp = last == 256 ? 0 : compose(b[starter], ch);
        if (comp && (last < c || last == 0)) {
            b[starter] = comp;
            continue;
        }
        if (c == 0) {
            starter = w;
            last = 0;
        } else {
            last = c;
        }
        b[w] = ch;
        cc[w] = c;
        w++;
    }
    df_free(cc);
    *out = b;
    *n_out = w;
    return DF_OK;
}

/* ---- UTF-8 ---- */

int df_utf8_decode(const char *str, size_t n, uint32_t **out, size_t *n_out, size_t *bad_at)
{
    const unsigned char *s = (const unsigned char *)str;
    *out = NULL;
    *n_out = 0;
    uint32_t *o = df_malloc((n + 1) * sizeof *o);
    if (!o) return DF_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) {
            cp = c;
            len = 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1F;
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0F;
            len = 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            cp = c & 0x07;
            len = 4;
        } else {
            goto bad;
        }
        if (len > n - i) goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) goto bad;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            goto bad;
        o[m++] = cp;
        i += len;
        continue;
    bad:
        df_free(o);
        if (bad_at) *bad_at = i;
        return DF_EINVAL;
    }
    *out = o;
    *n_out = m;
    return DF_OK;
}

int df_utf8_put(uint32_t cp, char *buf)
{
    unsigned char *b = (unsigned char *)buf;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | cp >> 18);
    b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}
