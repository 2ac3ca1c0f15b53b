/* AUTOMATIC1111's prompt syntax on the CLIP tokenizer, in the order a prompt
 * goes through it:
 *
 *   textual-inversion embeddings (loaded beforehand, matched by name)
 *   parse_prompt_attention (modules/prompt_parser.py): (text) x1.1, [text] /1.1,
 *     (text:w), nesting multiplies, \( escapes, BREAK           -> (text, weight) segments
 *   tokenize_line (modules/sd_hijack_clip.py): each segment tokenised on its
 *     own, its tokens taking its weight, into chunks of 75 with the comma
 *     backtrack, a BREAK closing the chunk, embeddings by name  -> chunks of 77
 *
 * Weights are computed in double, in A1111's order of multiplication, so that
 * its merging of equal neighbours (float ==) and its BREAK test (weight == -1)
 * come out the same. */
#include "tokenizer.h"

#include "../io/json.h"
#include "../io/safetensors.h"
#include "tokenizer_internal.h"
#include "tokenizer_unicode.h"

#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- textual-inversion embeddings ---- */

typedef struct emb_entry {
    char *name;
    int n;               /* 1, or 2 for an SDXL file (clip_l and clip_g) */
    df_tensor *vec[2];   /* f32 (n_vectors, width) */
} emb_entry;

struct df_embeddings {
    emb_entry *e;
    int n, cap;
};

int df_embeddings_new(df_embeddings **out)
{
    if (!out) return df_error(DF_EINVAL, "df_embeddings_new: out is NULL");
    *out = df_calloc(1, sizeof **out);
    return *out ? DF_OK : DF_ENOMEM;
}

void df_embeddings_free(df_embeddings *e)
{
    if (!e) return;
    for (int i = 0; i < e->n; i++) {
        df_free(e->e[i].name);
        for (int k = 0; k < e->e[i].n; k++) df_tensor_free(e->e[i].vec[k]);
    }
    df_free(e->e);
    df_free(e);
}

static const emb_entry *emb_find(const df_embeddings *e, const char *name, size_t len)
{
    for (int i = 0; e && i < e->n; i++)
        if (strlen(e->e[i].name) == len && !memcmp(e->e[i].name, name, len)) return &e->e[i];
    return NULL;
}

static const df_tensor *emb_width(const emb_entry *x, int64_t width)
{
    for (int k = 0; x && k < x->n; k++)
        if (x->vec[k]->shape[1] == width) return x->vec[k];
    return NULL;
}

const df_tensor *df_embeddings_get(const df_embeddings *e, const char *name, int64_t width)
{
    if (!e || !name) return NULL;
    return emb_width(emb_find(e, name, strlen(name)), width);
}

/* One tensor of an embedding file as f32 (n_vectors, width). */
static int emb_tensor(df_safetensors *st, const char *path, const char *tname, df_tensor **out)
{
    *out = NULL;
    df_tensor *t = NULL;
    int rc = df_safetensors_get_f32(st, tname, &t);
    if (rc) return df_error_prefix(rc, "embedding %s", path);
    if (t->ndim == 1) {
        df_tensor *r = NULL;
        rc = df_tensor_reshape(t, 2, (int64_t[]){1, t->shape[0]}, &r);
        df_tensor_free(t);
        if (rc) return rc;
        t = r;
    }
    char s[64];
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1 || t->shape[0] > DF_CLIP_CHUNK) {
        rc = df_error(DF_EFORMAT,
                      "embedding %s: tensor %s has shape %s; expected (vectors, width) with 1 to %d vectors", path,
                      tname, df_tensor_shape_str(t, s, sizeof s), DF_CLIP_CHUNK);
        df_tensor_free(t);
        return rc;
    }
    *out = t;
    return DF_OK;
}

int df_embeddings_load(df_embeddings *e, const char *path, const char *name)
{
    if (!e || !path) return df_error(DF_EINVAL, "df_embeddings_load: %s is NULL", e ? "path" : "embeddings");
    /* the default name: the base name without its extension (os.path.splitext) */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t nlen = strlen(base);
    if (name) {
        nlen = strlen(name);
    } else {
        const char *dot = strrchr(base, '.');
        const char *p = base;
        while (p < dot && *p == '.') p++;
        if (dot && p < dot) nlen = (size_t)(dot - base);
        name = base;
    }
    if (!nlen || !df_json_utf8_valid(name, nlen))
        return df_error(DF_EINVAL, "embedding %s: the name \"%.*s\" is empty or not UTF-8", path, (int)nlen, name);
    if (emb_find(e, name, nlen))
        return df_error(DF_EINVAL, "embedding %s: an embedding named \"%.*s\" is already loaded", path, (int)nlen,
                        name);

    df_safetensors *st = NULL;
    int rc = df_safetensors_open(path, &st);
    if (rc) return rc;
    emb_entry x = {0};
    const char *names[2];
    int count = df_safetensors_count(st);
    if (df_safetensors_find(st, "clip_l") && df_safetensors_find(st, "clip_g")) {
        names[0] = "clip_l";
        names[1] = "clip_g";
        x.n = 2;
    } else if (count == 1) {
        names[0] = df_safetensors_info(st, 0)->name;
        x.n = 1;
    } else {
        rc = df_error(DF_EFORMAT,
                      "embedding %s: expected one tensor (e.g. emb_params), or clip_l and clip_g; the file has %d "
                      "tensors%s%s",
                      path, count, count ? ", the first " : "", count ? df_safetensors_info(st, 0)->name : "");
    }
    for (int k = 0; rc == DF_OK && k < x.n; k++) rc = emb_tensor(st, path, names[k], &x.vec[k]);
    if (rc == DF_OK && x.n == 2) {
        if (x.vec[0]->shape[0] != x.vec[1]->shape[0])
            rc = df_error(DF_EFORMAT, "embedding %s: clip_l has %lld vectors, clip_g %lld", path,
                          (long long)x.vec[0]->shape[0], (long long)x.vec[1]->shape[0]);
        else if (x.vec[0]->shape[1] == x.vec[1]->shape[1])
            rc = df_error(DF_EFORMAT, "embedding %s: clip_l and clip_g have the same width %lld", path,
                          (long long)x.vec[0]->shape[1]);
    }
    df_safetensors_close(st);
    if (rc == DF_OK && !(x.name = df_malloc(nlen + 1))) rc = DF_ENOMEM;
    if (rc == DF_OK && e->n == e->cap) {
        int cap = e->cap ? e->cap * 2 : 8;
        emb_entry *v = df_realloc(e->e, (size_t)cap * sizeof *v);
        if (!v) {
            rc = DF_ENOMEM;
        } else {
            e->e = v;
            e->cap = cap;
        }
    }
    if (rc) {
        df_free(x.name);
        for (int k = 0; k < x.n; k++) df_tensor_free(x.vec[k]);
        return rc;
    }
    memcpy(x.name, name, nlen);
    x.name[nlen] = 0;
    e->e[e->n++] = x;
    return DF_OK;
}

/* ---- parse_prompt_attention ---- */

typedef struct seg {
    char *text;
    size_t len;
    double w;
} seg;

typedef struct segs {
    seg *v;
    size_t n, cap;
} segs;

static void segs_free(segs *s)
{
    for (size_t i = 0; i < s->n; i++) df_free(s->v[i].text);
    df_free(s->v);
    memset(s, 0, sizeof *s);
}

static int segs_push(segs *s, const char *text, size_t len, double w)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        seg *v = df_realloc(s->v, cap * sizeof *v);
        if (!v) return DF_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    char *t = df_malloc(len + 1);
    if (!t) return DF_ENOMEM;
    memcpy(t, text, len);
    t[len] = 0;
    s->v[s->n++] = (seg){t, len, w};
    return DF_OK;
}

typedef struct stack {
    size_t *v;
    size_t n, cap;
} stack;

static int stack_push(stack *s, size_t x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        size_t *v = df_realloc(s->v, cap * sizeof *v);
        if (!v) return DF_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return DF_OK;
}

/* res[start:] weights *= m (multiply_range) */
static void multiply_range(segs *res, size_t start, double m)
{
    for (size_t p = start; p < res->n; p++) res->v[p].w *= m;
}

/* The code point at s[i] of valid UTF-8, and the index after it. */
static uint32_t cp_at(const char *s, size_t n, size_t i, size_t *next)
{
    unsigned char c = (unsigned char)s[i];
    size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (l > n - i) l = n - i;
    uint32_t cp = l == 1 ? c : (uint32_t)(c & (0xFF >> (l + 1)));
    for (size_t j = 1; j < l; j++) cp = cp << 6 | ((unsigned char)s[i + j] & 0x3Fu);
    *next = i + l;
    return cp;
}

static uint32_t cp_before(const char *s, size_t i)
{
    size_t k = i - 1, next;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return cp_at(s, i, k, &next);
}

/* Plain text: re.split(r"\s*\bBREAK\b\s*", text), a BREAK (-1) between the parts. */
static int push_text(segs *res, const char *t, size_t n)
{
    size_t part = 0, search = 0, nx;
    while (search + 5 <= n) {
        const char *b = memchr(t + search, 'B', n - search);
        if (!b) break;
        size_t i = (size_t)(b - t);
        if (i + 5 > n) break;
        bool ok = !memcmp(t + i, "BREAK", 5) && (i == 0 || !(df_uc_props(cp_before(t, i)) & DF_UC_PYWORD)) &&
                  (i + 5 == n || !(df_uc_props(cp_at(t, n, i + 5, &nx)) & DF_UC_PYWORD));
        if (!ok) {
            search = i + 1;
            continue;
        }
        size_t s = i, e = i + 5;
        while (s > part && (df_uc_props(cp_before(t, s)) & DF_UC_PYSPACE)) {
            size_t k = s - 1;
            while (k > part && ((unsigned char)t[k] & 0xC0) == 0x80) k--;
            s = k;
        }
        while (e < n) {
            uint32_t c = cp_at(t, n, e, &nx);
            if (!(df_uc_props(c) & DF_UC_PYSPACE)) break;
            e = nx;
        }
        int rc = segs_push(res, t + part, s - part, 1.0);
        if (rc == DF_OK) rc = segs_push(res, "BREAK", 5, -1.0);
        if (rc) return rc;
        part = search = e;
    }
    return segs_push(res, t + part, n - part, 1.0);
}

/* float() of A1111's weight group [+-]?[.\d]+ (\d: any decimal digit): an
 * error when it is not a number ("1.2.3", "."), as float() raises. */
static int parse_weight(const char *g, size_t n, size_t at, double *out)
{
    char buf[512];
    size_t k = 0, digits = 0, dots = 0, nx;
    const char *dp = localeconv()->decimal_point;
    for (size_t i = 0; i < n && k + 8 < sizeof buf; i = nx) {
        uint32_t c = cp_at(g, n, i, &nx);
        if (c == '+' || c == '-') {
            buf[k++] = (char)c;
        } else if (c == '.') {
            dots++;
            for (const char *d = dp && *dp ? dp : "."; *d; d++) buf[k++] = *d;
        } else {
            buf[k++] = (char)('0' + df_uc_digit(c));
            digits++;
        }
    }
    buf[k] = 0;
    if (!digits || dots > 1 || k + 8 >= sizeof buf)
        return df_error(DF_EINVAL, "prompt: invalid emphasis weight \"%.*s\" at byte %zu (a number is expected)",
                        (int)n, g, at);
    *out = strtod(buf, NULL);
    return DF_OK;
}

/* parse_prompt_attention(text) into res. */
static int parse_attention(const char *p, size_t n, segs *res)
{
    static const double round_mult = 1.1, square_mult = 1 / 1.1;
    stack round = {0}, square = {0};
    int rc = DF_OK;
    for (size_t i = 0; i < n && rc == DF_OK;) {
        char c = p[i];
        if (c == '\\') { /* \( \) \[ \] \\ give the character, a lone \ nothing */
            bool esc = i + 1 < n && strchr("()[]\\", p[i + 1]);
            rc = segs_push(res, p + i + 1, esc ? 1 : 0, 1.0);
            i += esc ? 2 : 1;
        } else if (c == '(') {
            rc = stack_push(&round, res->n);
            i++;
        } else if (c == '[') {
            rc = stack_push(&square, res->n);
            i++;
        } else if (c == ':') { /* :([+-]?[.\d]+)\) or a plain ':' */
            size_t j = i + 1, k, nx;
            if (j < n && (p[j] == '+' || p[j] == '-')) j++;
            for (k = j; k < n; k = nx) {
                uint32_t d = cp_at(p, n, k, &nx);
                if (d != '.' && df_uc_digit(d) < 0) break;
            }
            if (k > j && k < n && p[k] == ')') {
                if (round.n) {
                    double w = 1.0;
                    rc = parse_weight(p + i + 1, k - i - 1, i + 1, &w);
                    if (rc == DF_OK) multiply_range(res, round.v[--round.n], w);
                } else {
                    rc = push_text(res, p + i, k + 1 - i);
                }
                i = k + 1;
            } else {
                rc = push_text(res, p + i, 1);
                i++;
            }
        } else if (c == ')' && round.n) {
            multiply_range(res, round.v[--round.n], round_mult);
            i++;
        } else if (c == ']' && square.n) {
            multiply_range(res, square.v[--square.n], square_mult);
            i++;
        } else if (c == ')' || c == ']') {
            rc = push_text(res, p + i, 1);
            i++;
        } else { /* [^\\()\[\]:]+ */
            size_t e = i;
            while (e < n && !strchr("\\()[]:", p[e])) e++;
            rc = push_text(res, p + i, e - i);
            i = e;
        }
    }
    for (size_t k = 0; k < round.n; k++) multiply_range(res, round.v[k], round_mult);
    for (size_t k = 0; k < square.n; k++) multiply_range(res, square.v[k], square_mult);
    df_free(round.v);
    df_free(square.v);
    if (rc) return rc;
    if (res->n == 0 && (rc = segs_push(res, "", 0, 1.0))) return rc;
    /* merge runs of identical weights */
    size_t w = 0;
    for (size_t r = 1; r < res->n; r++) {
        if (res->v[r].w == res->v[w].w) {
            seg *a = &res->v[w], *b = &res->v[r];
            char *t = df_realloc(a->text, a->len + b->len + 1);
            if (!t) {
                /* keep the list consistent for segs_free: move the rest down */
                for (size_t k = r; k < res->n; k++) res->v[++w] = res->v[k];
                res->n = w + 1;
                return DF_ENOMEM;
            }
            memcpy(t + a->len, b->text, b->len + 1);
            a->text = t;
            a->len += b->len;
            df_free(b->text);
        } else {
            res->v[++w] = res->v[r];
        }
    }
    res->n = w + 1;
    return DF_OK;
}

/* Checks the prompt is UTF-8: DF_EINVAL naming the byte otherwise. */
static int check_utf8(const char *prompt, size_t n)
{
    uint32_t *cps;
    size_t ncp, bad;
    int rc = df_utf8_decode(prompt, n, &cps, &ncp, &bad);
    df_free(cps);
    if (rc == DF_EINVAL) return df_error(DF_EINVAL, "prompt: invalid UTF-8 at byte %zu", bad);
    return rc;
}

int df_prompt_parse(const char *prompt, char ***texts, float **weights, int *n)
{
    if (!texts || !weights || !n) return df_error(DF_EINVAL, "df_prompt_parse: an output is NULL");
    *texts = NULL;
    *weights = NULL;
    *n = 0;
    if (!prompt) return df_error(DF_EINVAL, "df_prompt_parse: prompt is NULL");
    size_t len = strlen(prompt);
    segs res = {0};
    int rc = check_utf8(prompt, len);
    if (rc == DF_OK) rc = parse_attention(prompt, len, &res);
    if (rc == DF_OK && res.n > (size_t)INT_MAX) rc = df_error(DF_EINVAL, "prompt: too many segments");
    char **t = NULL;
    float *w = NULL;
    if (rc == DF_OK && (!(t = df_calloc(res.n, sizeof *t)) || !(w = df_malloc(res.n * sizeof *w)))) rc = DF_ENOMEM;
    if (rc) {
        df_free(t);
        segs_free(&res);
        return rc;
    }
    for (size_t i = 0; i < res.n; i++) {
        t[i] = res.v[i].text; /* ownership moves to the caller */
        w[i] = (float)res.v[i].w;
    }
    df_free(res.v);
    *texts = t;
    *weights = w;
    *n = (int)res.n;
    return DF_OK;
}

void df_prompt_segments_free(char **texts, float *weights, int n)
{
    for (int i = 0; texts && i < n; i++) df_free(texts[i]);
    df_free(texts);
    df_free(weights);
}

/* ---- tokenize_line: chunks of 75 ---- */

/* One embedding reference waiting in a chunk: vectors at [offset, offset + n). */
typedef struct fix {
    int offset, n;
    const char *name;
} fix;

typedef struct chunker {
    const df_prompt_params *p;
    df_tokenizer_ids sp;
    /* the chunk being filled (A1111's PromptChunk, without BOS/EOS) */
    int32_t tok[DF_CLIP_CHUNK];
    double mult[DF_CLIP_CHUNK];
    fix fixes[DF_CLIP_CHUNK];
    int len, n_fixes, last_comma;
    /* the result */
    df_token_chunks *out;
    int cap_chunks, cap_custom;
} chunker;

/* next_chunk(): pads the chunk with EOS, adds BOS and EOS, and appends it. */
static int next_chunk(chunker *c)
{
    df_token_chunks *o = c->out;
    if (o->n_chunks == c->cap_chunks) {
        int cap = c->cap_chunks ? c->cap_chunks * 2 : 2;
        if (cap > INT_MAX / DF_CLIP_CONTEXT) return df_error(DF_EINVAL, "prompt: too many chunks");
        int32_t *ids = df_realloc(o->ids, (size_t)cap * DF_CLIP_CONTEXT * sizeof *ids);
        if (!ids) return DF_ENOMEM;
        o->ids = ids;
        float *w = df_realloc(o->weights, (size_t)cap * DF_CLIP_CONTEXT * sizeof *w);
        if (!w) return DF_ENOMEM;
        o->weights = w;
        c->cap_chunks = cap;
    }
    int32_t *ids = o->ids + (size_t)o->n_chunks * DF_CLIP_CONTEXT;
    float *w = o->weights + (size_t)o->n_chunks * DF_CLIP_CONTEXT;
    ids[0] = c->sp.bos;
    w[0] = 1.0f;
    for (int i = 0; i < DF_CLIP_CHUNK; i++) {
        ids[1 + i] = i < c->len ? c->tok[i] : c->sp.eos;
        w[1 + i] = i < c->len ? (float)c->mult[i] : 1.0f;
    }
    ids[DF_CLIP_CONTEXT - 1] = c->sp.eos;
    w[DF_CLIP_CONTEXT - 1] = 1.0f;
    if (!c->p->pad_with_eos) { /* process_tokens: everything after the first EOS becomes 0 */
        int k = 0;
        while (ids[k] != c->sp.eos) k++;
        for (k++; k < DF_CLIP_CONTEXT; k++) ids[k] = 0;
    }
    for (int f = 0; f < c->n_fixes; f++)
        for (int v = 0; v < c->fixes[f].n; v++) {
            if (o->n_custom == c->cap_custom) {
                int cap = c->cap_custom ? c->cap_custom * 2 : 16;
                struct df_custom_token *cu = df_realloc(o->custom, (size_t)cap * sizeof *cu);
                if (!cu) return DF_ENOMEM;
                o->custom = cu;
                c->cap_custom = cap;
            }
            o->custom[o->n_custom++] = (struct df_custom_token){o->n_chunks, 1 + c->fixes[f].offset + v,
                                                                c->fixes[f].name, v};
        }
    o->n_chunks++;
    c->len = c->n_fixes = 0;
    c->last_comma = -1;
    return DF_OK;
}

/* The comma padding backtrack: the tokens after the chunk's last comma move
 * to a new chunk (with the embeddings among them: A1111 leaves those behind). */
static int backtrack(chunker *c)
{
    int at = c->last_comma + 1, n = c->len - at, nf = 0;
    int32_t tok[DF_CLIP_CHUNK];
    double mult[DF_CLIP_CHUNK];
    fix fixes[DF_CLIP_CHUNK];
    memcpy(tok, c->tok + at, (size_t)n * sizeof *tok);
    memcpy(mult, c->mult + at, (size_t)n * sizeof *mult);
    int keep = 0;
    for (int f = 0; f < c->n_fixes; f++) {
        if (c->fixes[f].offset >= at) {
            fixes[nf] = c->fixes[f];
            fixes[nf++].offset -= at;
        } else {
            c->fixes[keep++] = c->fixes[f];
        }
    }
    c->n_fixes = keep;
    c->len = at;
    int rc = next_chunk(c);
    if (rc) return rc;
    memcpy(c->tok, tok, (size_t)n * sizeof *tok);
    memcpy(c->mult, mult, (size_t)n * sizeof *mult);
    memcpy(c->fixes, fixes, (size_t)nf * sizeof *fixes);
    c->len = n;
    c->n_fixes = nf;
    return DF_OK;
}

/* An embedding as the parser matches it: its name's tokens (A1111's ids_lookup). */
typedef struct emb_match {
    const char *name;
    int n_vectors;
    int32_t *ids;
    int n_ids;
} emb_match;

/* One item of a segment: a token, or (id -1) an embedding written as embedding:name. */
typedef struct item {
    int32_t id;
    const emb_match *emb;
} item;

/* find_embedding_at_position: the longest name whose tokens start at pos
 * (the first loaded among equals). */
static const emb_match *find_embedding(const emb_match *m, int nm, const item *it, int n, int pos, int *len)
{
    const emb_match *best = NULL;
    for (int k = 0; k < nm; k++) {
        if (!m[k].n_ids || m[k].n_ids > n - pos || (best && m[k].n_ids <= best->n_ids)) continue;
        int j = 0;
        while (j < m[k].n_ids && it[pos + j].id == m[k].ids[j]) j++;
        if (j == m[k].n_ids) best = &m[k];
    }
    if (best) *len = best->n_ids;
    return best;
}

/* The tokens of one segment's text into c (tokenize_line's inner loop). */
static int chunk_segment(chunker *c, const item *it, int n, double weight, const emb_match *m, int nm)
{
    int rc = DF_OK;
    for (int pos = 0; pos < n && rc == DF_OK;) {
        int32_t token = it[pos].id;
        if (token == c->sp.comma && token >= 0) {
            c->last_comma = c->len;
        } else if (c->p->comma_backtrack != 0 && c->len == DF_CLIP_CHUNK && c->last_comma != -1 &&
                   c->len - c->last_comma <= c->p->comma_backtrack) {
            if ((rc = backtrack(c))) break;
        }
        if (c->len == DF_CLIP_CHUNK && (rc = next_chunk(c))) break;
        int used = 1;
        const emb_match *e = it[pos].emb ? it[pos].emb : find_embedding(m, nm, it, n, pos, &used);
        if (!e) {
            c->tok[c->len] = token;
            c->mult[c->len++] = weight;
            pos++;
            continue;
        }
        if (c->len + e->n_vectors > DF_CLIP_CHUNK && (rc = next_chunk(c))) break;
        c->fixes[c->n_fixes++] = (fix){c->len, e->n_vectors, e->name};
        for (int v = 0; v < e->n_vectors; v++) {
            c->tok[c->len] = 0;
            c->mult[c->len++] = weight;
        }
        pos += used;
    }
    return rc;
}

/* Appends the tokens of text[0, n) to *items. */
static int add_tokens(const df_tokenizer *tok, const char *text, size_t n, item **items, int *n_items, int *cap)
{
    int32_t *ids;
    int k;
    int rc = df_tokenizer_encode_n(tok, text, n, "prompt", &ids, &k);
    if (rc) return rc;
    if (k > INT_MAX - *n_items) rc = df_error(DF_EINVAL, "prompt: too many tokens");
    if (rc == DF_OK && *n_items + k > *cap) {
        int c2 = *cap ? *cap : 64;
        while (c2 < *n_items + k) c2 = c2 > INT_MAX / 2 ? INT_MAX : c2 * 2;
        item *v = df_realloc(*items, (size_t)c2 * sizeof *v);
        if (!v) {
            rc = DF_ENOMEM;
        } else {
            *items = v;
            *cap = c2;
        }
    }
    for (int i = 0; rc == DF_OK && i < k; i++) (*items)[(*n_items)++] = (item){ids[i], NULL};
    df_free(ids);
    return rc;
}

/* One segment's items: its text's tokens, with each "embedding:NAME" (NAME
 * running to whitespace or a comma) one embedding item when embeddings are in use. */
static int segment_items(const df_tokenizer *tok, const seg *s, const emb_match *m, int nm, int64_t width,
                         item **items, int *n_items, int *cap)
{
    static const char key[] = "embedding:";
    const size_t kl = sizeof key - 1;
    size_t from = 0, nx;
    *n_items = 0;
    for (size_t i = 0; width > 0 && i + kl < s->len; i++) {
        if (memcmp(s->text + i, key, kl) || (i > 0 && (df_uc_props(cp_before(s->text, i)) & DF_UC_PYWORD))) continue;
        size_t e = i + kl;
        while (e < s->len && s->text[e] != ',' && !(df_uc_props(cp_at(s->text, s->len, e, &nx)) & DF_UC_PYSPACE))
            e = nx;
        if (e == i + kl) continue;
        const emb_match *found = NULL;
        for (int k = 0; k < nm && !found; k++)
            if (strlen(m[k].name) == e - i - kl && !memcmp(m[k].name, s->text + i + kl, e - i - kl)) found = &m[k];
        if (!found)
            return df_error(DF_ENOTFOUND, "prompt: embedding:%.*s names no loaded embedding with vectors of width %lld",
                            (int)(e - i - kl), s->text + i + kl, (long long)width);
        int rc = add_tokens(tok, s->text + from, i - from, items, n_items, cap);
        if (rc == DF_OK && *n_items == *cap) {
            int c2 = *cap ? *cap * 2 : 64;
            item *v = df_realloc(*items, (size_t)c2 * sizeof *v);
            if (!v) return DF_ENOMEM;
            *items = v;
            *cap = c2;
        }
        if (rc) return rc;
        (*items)[(*n_items)++] = (item){-1, found};
        from = e;
        i = e - 1;
    }
    return add_tokens(tok, s->text + from, s->len - from, items, n_items, cap);
}

df_prompt_params df_prompt_default_params(void)
{
    return (df_prompt_params){.pad_with_eos = 1, .comma_backtrack = 20, .emphasis = 1, .embedding_width = 768};
}

void df_token_chunks_free(df_token_chunks *c)
{
    if (!c) return;
    df_free(c->ids);
    df_free(c->weights);
    df_free(c->custom);
    df_free(c);
}

int df_prompt_tokenize(const df_tokenizer *tok, const df_embeddings *emb, const char *prompt,
                       const df_prompt_params *p, df_token_chunks **out)
{
    if (!out) return df_error(DF_EINVAL, "df_prompt_tokenize: out is NULL");
    *out = NULL;
    if (!tok || !prompt) return df_error(DF_EINVAL, "df_prompt_tokenize: %s is NULL", tok ? "prompt" : "tokenizer");
    df_prompt_params defaults = df_prompt_default_params();
    if (!p) p = &defaults;
    size_t len = strlen(prompt);
    int rc = check_utf8(prompt, len);
    if (rc) return rc;

    /* the embeddings in play and their names' tokens */
    emb_match *m = NULL;
    int nm = 0;
    bool use_emb = emb && p->embedding_width > 0;
    if (use_emb && emb->n && !(m = df_calloc((size_t)emb->n, sizeof *m))) return DF_ENOMEM;
    for (int i = 0; use_emb && i < emb->n && rc == DF_OK; i++) {
        const df_tensor *v = emb_width(&emb->e[i], p->embedding_width);
        if (!v) continue;
        emb_match *x = &m[nm];
        x->name = emb->e[i].name;
        x->n_vectors = (int)v->shape[0];
        rc = df_tokenizer_encode_n(tok, x->name, strlen(x->name), "embedding name", &x->ids, &x->n_ids);
        nm++; /* a name without tokens (n_ids 0) matches nowhere */
    }

    segs res = {0};
    if (rc == DF_OK) rc = p->emphasis ? parse_attention(prompt, len, &res) : segs_push(&res, prompt, len, 1.0);

    chunker *c = NULL;
    if (rc == DF_OK && (!(c = df_calloc(1, sizeof *c)) || !(c->out = df_calloc(1, sizeof *c->out)))) rc = DF_ENOMEM;
    item *items = NULL;
    int cap = 0;
    if (rc == DF_OK) {
        c->p = p;
        c->sp = df_tokenizer_special_ids(tok);
        c->last_comma = -1;
        for (size_t s = 0; s < res.n && rc == DF_OK; s++) {
            if (res.v[s].w == -1.0 && !strcmp(res.v[s].text, "BREAK")) {
                rc = next_chunk(c);
                continue;
            }
            int n_items = 0;
            rc = segment_items(tok, &res.v[s], m, nm, use_emb ? p->embedding_width : 0, &items, &n_items, &cap);
            if (rc == DF_OK) rc = chunk_segment(c, items, n_items, res.v[s].w, m, nm);
        }
        if (rc == DF_OK && (c->len > 0 || c->out->n_chunks == 0)) rc = next_chunk(c);
    }
    df_free(items);
    segs_free(&res);
    for (int i = 0; i < nm; i++) df_free(m[i].ids);
    df_free(m);
    if (rc) {
        if (c) df_token_chunks_free(c->out);
        df_free(c);
        return rc;
    }
    *out = c->out;
    df_free(c);
    return DF_OK;
}
