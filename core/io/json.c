/* A strict JSON reader (RFC 8259) building a small tree, and writer helpers.
 * The reader: parser state, strings, numbers, literals, arrays and objects,
 * then the entry point; the writer follows. */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s;
    size_t len;
    size_t pos;
} parser;

static int fail(size_t pos, const char *what)
{
    return df_error(DF_EFORMAT, "invalid JSON at byte %zu: %s", pos, what);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* Frees what v owns (children, key, string), leaving v zeroed. */
static void node_clear(df_json *v)
{
    for (size_t i = 0; i < v->n; i++) node_clear(&v->items[i]);
    df_free(v->items);
    df_free(v->key);
    df_free(v->str);
    memset(v, 0, sizeof *v);
}

/* ---- UTF-8 ---- */

/* Length of the well-formed UTF-8 sequence at s (n bytes available), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;      /* overlong */
        else if (b == 0xED) hi = 0x9F; /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;      /* overlong */
        else if (b == 0xF4) hi = 0x8F; /* > U+10FFFF */
    } else
        return 0;
    if (n < need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return need;
}

bool df_json_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

static size_t utf8_put(char *d, uint32_t cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- strings ---- */

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* p->pos is at the opening quote; on success *out is the decoded string and
 * p->pos is past the closing quote. Decoding never grows the text, so the raw
 * length bounds the buffer. */
static int parse_string(parser *p, char **out)
{
    size_t start = p->pos + 1, end = start;
    while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len) return fail(p->pos, "unterminated string");

    char *d = df_malloc(end - start + 1);
    if (!d) return DF_ENOMEM;
    size_t n = 0;
    const unsigned char *u = (const unsigned char *)p->s;
    for (size_t i = start; i < end;) {
        unsigned char c = u[i];
        if (c < 0x20) {
            df_free(d);
            return fail(i, "control character in a string (must be escaped)");
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(u + i, end - i);
            if (!k) {
                df_free(d);
                return fail(i, "invalid UTF-8 in a string");
            }
            memcpy(d + n, u + i, k);
            n += k, i += k;
            continue;
        }
        if (c != '\\') {
            d[n++] = (char)c;
            i++;
            continue;
        }
        /* an escape: end - i >= 2 (the scan above skipped pairs) */
        static const char esc[] = "\"\\/bfnrt", val[] = "\"\\/\b\f\n\r\t";
        char e = p->s[i + 1];
        const char *simple = e ? strchr(esc, e) : NULL;
        if (simple) {
            d[n++] = val[simple - esc];
            i += 2;
            continue;
        }
        if (e != 'u') {
            df_free(d);
            return fail(i, "invalid escape in a string");
        }
        uint32_t cp, lo;
        if (end - i < 6 || hex4(p->s + i + 2, &cp)) {
            df_free(d);
            return fail(i, "invalid \\u escape (needs 4 hex digits)");
        }
        size_t used = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - i < 12 || p->s[i + 6] != '\\' || p->s[i + 7] != 'u' ||
                hex4(p->s + i + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                df_free(d);
                return fail(i, "unpaired surrogate in a \\u escape");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            used = 12;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            df_free(d);
            return fail(i, "unpaired surrogate in a \\u escape");
        } else if (cp == 0) {
            df_free(d);
            return fail(i, "\\u0000 in a string is not supported");
        }
        n += utf8_put(d + n, cp);
        i += used;
    }
    d[n] = '\0';
    p->pos = end + 1;
    *out = d;
    return DF_OK;
}

/* ---- numbers and literals ---- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, df_json *v)
{
    size_t i = p->pos;
    const char *s = p->s;
    if (i < p->len && s[i] == '-') i++;
    if (i >= p->len || !is_digit(s[i])) return fail(p->pos, "invalid number");
    if (s[i] == '0') {
        i++;
        if (i < p->len && is_digit(s[i])) return fail(p->pos, "leading zero in a number");
    } else
        while (i < p->len && is_digit(s[i])) i++;
    if (i < p->len && s[i] == '.') {
        i++;
        if (i >= p->len || !is_digit(s[i])) return fail(p->pos, "invalid number (digits must follow '.')");
        while (i < p->len && is_digit(s[i])) i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || !is_digit(s[i])) return fail(p->pos, "invalid number (bad exponent)");
        while (i < p->len && is_digit(s[i])) i++;
    }
    v->type = DF_JSON_NUMBER;
    v->num = s + p->pos;
    v->num_len = i - p->pos;
    p->pos = i;
    return DF_OK;
}

static int parse_literal(parser *p, df_json *v)
{
    static const struct {
        const char *word;
        df_json_type type;
    } lits[] = {{"true", DF_JSON_TRUE}, {"false", DF_JSON_FALSE}, {"null", DF_JSON_NULL}};
    for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
        size_t n = strlen(lits[k].word);
        if (p->len - p->pos >= n && !memcmp(p->s + p->pos, lits[k].word, n)) {
            v->type = lits[k].type;
            p->pos += n;
            return DF_OK;
        }
    }
    return fail(p->pos, "invalid literal");
}

/* ---- arrays and objects ---- */

static int parse_value(parser *p, df_json *v, int depth);

static int push_item(df_json *v, size_t *cap, df_json *item)
{
    if (v->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        df_json *ni = df_realloc(v->items, nc * sizeof *ni);
        if (!ni) return DF_ENOMEM;
        v->items = ni;
        *cap = nc;
    }
    v->items[v->n++] = *item;
    return DF_OK;
}

/* p->pos is at '[' or '{'. */
static int parse_container(parser *p, df_json *v, int depth)
{
    bool is_obj = p->s[p->pos] == '{';
    char close = is_obj ? '}' : ']';
    if (depth >= DF_JSON_MAX_DEPTH) return fail(p->pos, "nested too deeply");
    v->type = is_obj ? DF_JSON_OBJECT : DF_JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return DF_OK;
    }
    size_t cap = 0;
    for (;;) {
        df_json item = {0};
        int rc;
        skip_ws(p);
        if (is_obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail(p->pos, "expected a string key");
            if ((rc = parse_string(p, &item.key))) return rc;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                df_free(item.key);
                return fail(p->pos, "expected ':' after an object key");
            }
            p->pos++;
        }
        if ((rc = parse_value(p, &item, depth + 1)) || (rc = push_item(v, &cap, &item))) {
            node_clear(&item);
            return rc;
        }
        skip_ws(p);
        if (p->pos >= p->len) return fail(p->pos, is_obj ? "unterminated object" : "unterminated array");
        char c = p->s[p->pos++];
        if (c == close) return DF_OK;
        if (c != ',') return fail(p->pos - 1, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

/* Parses into v (whose key, if any, is already set). On failure v keeps only
 * its key and the caller clears it. */
static int parse_value(parser *p, df_json *v, int depth)
{
    skip_ws(p);
    if (p->pos >= p->len) return fail(p->pos, "unexpected end of input");
    v->pos = p->pos;
    char c = p->s[p->pos];
    int rc;
    switch (c) {
    case '{':
    case '[':
        rc = parse_container(p, v, depth);
        break;
    case '"':
        v->type = DF_JSON_STRING;
        rc = parse_string(p, &v->str);
        break;
    case 't':
    case 'f':
    case 'n':
        rc = parse_literal(p, v);
        break;
    default:
        if (c == '-' || is_digit(c)) rc = parse_number(p, v);
        else rc = fail(p->pos, "unexpected character");
    }
    if (rc) {
        char *key = v->key;
        v->key = NULL;
        node_clear(v);
        v->key = key;
    }
    return rc;
}

int df_json_parse(const char *text, size_t len, df_json **out)
{
    *out = NULL;
    parser p = {text, len, 0};
    df_json *v = df_calloc(1, sizeof *v);
    if (!v) return DF_ENOMEM;
    int rc = parse_value(&p, v, 0);
    if (rc == DF_OK) {
        skip_ws(&p);
        if (p.pos != len) rc = fail(p.pos, "trailing characters after the value");
    }
    if (rc) {
        df_json_free(v);
        return rc;
    }
    *out = v;
    return DF_OK;
}

void df_json_free(df_json *v)
{
    if (!v) return;
    node_clear(v);
    df_free(v);
}

const df_json *df_json_get(const df_json *obj, const char *key)
{
    if (!obj || obj->type != DF_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->items[i].key, key)) return &obj->items[i];
    return NULL;
}

int df_json_u64(const df_json *v, uint64_t *out, const char **why)
{
    if (!v || v->type != DF_JSON_NUMBER) {
        *why = "is not a number";
        return DF_EFORMAT;
    }
    for (size_t i = 0; i < v->num_len; i++)
        if (!is_digit(v->num[i]) && v->num[i] != '-') {
            *why = "is not an integer";
            return DF_EFORMAT;
        }
    if (v->num[0] == '-') {
        *why = "is negative";
        return DF_EFORMAT;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < v->num_len; i++) {
        uint64_t d = (uint64_t)(v->num[i] - '0');
        if (x > (UINT64_MAX - d) / 10) {
            *why = "is too large";
            return DF_EFORMAT;
        }
        x = x * 10 + d;
    }
    *out = x;
    return DF_OK;
}

int df_json_double(const df_json *v, double *out)
{
    if (!v || v->type != DF_JSON_NUMBER) return df_error(DF_EFORMAT, "JSON value is not a number");
    char small[64], *buf = small;
    if (v->num_len >= sizeof small && !(buf = df_malloc(v->num_len + 1))) return DF_ENOMEM;
    memcpy(buf, v->num, v->num_len);
    buf[v->num_len] = '\0';
    *out = strtod(buf, NULL);
    if (buf != small) df_free(buf);
    return DF_OK;
}

/* ---- writer ---- */

static bool buf_reserve(df_json_buf *b, size_t extra)
{
    if (b->failed) return false;
    if (extra > SIZE_MAX / 2 - b->len) {
        df_error(DF_ENOMEM, "JSON text too large");
        b->failed = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < need) nc *= 2;
    char *nd = df_realloc(b->data, nc);
    if (!nd) {
        b->failed = true;
        return false;
    }
    b->data = nd;
    b->cap = nc;
    return true;
}

void df_json_buf_raw(df_json_buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void df_json_buf_printf(df_json_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && buf_reserve(b, (size_t)n)) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void df_json_buf_string(df_json_buf *b, const char *s)
{
    df_json_buf_raw(b, "\"", 1);
    const char *run = s;
    for (const char *q = s;; q++) {
        unsigned char c = (unsigned char)*q;
        if (c && c >= 0x20 && c != '"' && c != '\\') continue;
        df_json_buf_raw(b, run, (size_t)(q - run));
        if (!c) break;
        switch (c) {
        case '"': df_json_buf_raw(b, "\\\"", 2); break;
        case '\\': df_json_buf_raw(b, "\\\\", 2); break;
        case '\n': df_json_buf_raw(b, "\\n", 2); break;
        case '\r': df_json_buf_raw(b, "\\r", 2); break;
        case '\t': df_json_buf_raw(b, "\\t", 2); break;
        case '\b': df_json_buf_raw(b, "\\b", 2); break;
        case '\f': df_json_buf_raw(b, "\\f", 2); break;
        default: df_json_buf_printf(b, "\\u%04x", c);
        }
        run = q + 1;
    }
    df_json_buf_raw(b, "\"", 1);
}

void df_json_buf_free(df_json_buf *b)
{
    df_free(b->data);
    memset(b, 0, sizeof *b);
}
