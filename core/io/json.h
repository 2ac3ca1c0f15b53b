/* A small strict JSON reader (RFC 8259) and writer helpers, internal to the
 * library: safetensors headers, diffusers config.json files.
 *
 * The reader builds a tree. Strings are decoded (escapes, \uXXXX with
 * surrogate pairs) into NUL-terminated UTF-8; raw input must be valid UTF-8.
 * Numbers keep their text so integers are read exactly (df_json_u64). Any
 * malformation is a DF_EFORMAT error "invalid JSON at byte N: <what>". */
#ifndef DF_JSON_H
#define DF_JSON_H

#include "../df.h"

#include <stdbool.h>

/* Nesting deeper than this is refused (the parser recurses). */
#define DF_JSON_MAX_DEPTH 64

typedef enum {
    DF_JSON_NULL = 0,
    DF_JSON_FALSE,
    DF_JSON_TRUE,
    DF_JSON_NUMBER,
    DF_JSON_STRING,
    DF_JSON_ARRAY,
    DF_JSON_OBJECT
} df_json_type;

typedef struct df_json df_json;
struct df_json {
    df_json_type type;
    char *key;          /* the member name when this value sits in an object, else NULL */
    char *str;          /* STRING: decoded text */
    const char *num;    /* NUMBER: its text inside the parsed input (not NUL-terminated) */
    size_t num_len;
    df_json *items;     /* ARRAY / OBJECT: the n elements / members, in input order */
    size_t n;
    size_t pos;         /* byte offset of the value in the input */
};

/* Parses exactly one value from text[0, len) (whitespace around it allowed,
 * anything else after it is an error). NUMBER nodes point into `text`, which
 * must outlive the tree. */
DF_INTERNAL int df_json_parse(const char *text, size_t len, df_json **out);
DF_INTERNAL void df_json_free(df_json *v);

/* The first member named `key` of an object; NULL when absent or not an object. */
DF_INTERNAL const df_json *df_json_get(const df_json *obj, const char *key);

/* A NUMBER that is a plain integer (no fraction or exponent) in [0, 2^64).
 * DF_OK, or DF_EFORMAT with *why set to "is negative", "is not an integer",
 * "is too large" (no error message is set: the caller names the field). */
DF_INTERNAL int df_json_u64(const df_json *v, uint64_t *out, const char **why);
/* A NUMBER as a double (strtod). */
DF_INTERNAL int df_json_double(const df_json *v, double *out);

/* Whether s[0, n) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
DF_INTERNAL bool df_json_utf8_valid(const char *s, size_t n);

/* Writer: a growable text buffer. A failed allocation sets `failed` (and the
 * error message) and later appends do nothing, so callers check once at the end. */
typedef struct df_json_buf {
    char *data;
    size_t len, cap;
    bool failed;
} df_json_buf;

DF_INTERNAL void df_json_buf_raw(df_json_buf *b, const char *s, size_t n);
DF_INTERNAL void df_json_buf_printf(df_json_buf *b, const char *fmt, ...) DF_PRINTF(2, 3);
/* `s` as a quoted JSON string: '"' '\\' and control characters escaped,
 * other bytes (UTF-8) copied as they are. */
DF_INTERNAL void df_json_buf_string(df_json_buf *b, const char *s);
DF_INTERNAL void df_json_buf_free(df_json_buf *b);

#endif
