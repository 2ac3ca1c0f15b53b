/* The CLIP tokenizer, as transformers' (4.x, slow) CLIPTokenizer runs when
 * ftfy is not installed:
 *
 *   text -> split on the literal special tokens "<|startoftext|>" / "<|endoftext|>"
 *        -> each piece through BERT's BasicTokenizer (drop control characters,
 *           whitespace to ' ', spaces around CJK ideographs, NFC, split on
 *           whitespace, Python's lower())
 *        -> the CLIP pattern (IGNORECASE)
 *             <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *        -> each match as UTF-8 bytes, each byte a printable character (bytes_to_unicode)
 *        -> byte-level BPE: the lowest-ranked adjacent pair merged, repeatedly;
 *           the word's last symbol carries "</w>"
 *        -> vocabulary ids (a string the vocabulary lacks is <|endoftext|>, the unknown token).
 *
 * Everything Unicode comes from tables generated from the reference's own
 * Python (tokenizer_unicode.h). */
#include "tokenizer.h"

#include "../io/json.h"
#include "tokenizer_internal.h"
#include "tokenizer_unicode.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* The standard merges file, embedded at build time from data/clip/merges.txt.gz
 * (the Makefile's $(BUILD)/gen/clip_merges.c). */
DF_INTERNAL extern const char df_clip_merges[];
DF_INTERNAL extern const size_t df_clip_merges_len;

#define N_MERGES_USED (49152 - 256 - 2) /* merges CLIP reads after the version line */
#define MAX_ID ((1 << 24) - 1)          /* largest token id accepted from a vocab.json */
#define NONE UINT32_MAX

static const char TOK_BOS[] = "<|startoftext|>";
static const char TOK_EOS[] = "<|endoftext|>";

/* ---- a string pool and a string -> int32 map over it ---- */

typedef struct pool {
    char *data;
    size_t len, cap;
} pool;

/* Appends s[0, n) and a NUL; the offset, or NONE when out of memory. */
static uint32_t pool_add(pool *p, const char *s, size_t n, const char *s2, size_t n2)
{
    size_t need = p->len + n + n2 + 1;
    if (need > UINT32_MAX - 1) {
        df_error(DF_ENOMEM, "tokenizer strings exceed 4 GiB");
        return NONE;
    }
    if (need > p->cap) {
        size_t cap = p->cap ? p->cap : 1 << 16;
        while (cap < need) cap *= 2;
        char *d = df_realloc(p->data, cap);
        if (!d) return NONE;
        p->data = d;
        p->cap = cap;
    }
    uint32_t off = (uint32_t)p->len;
    memcpy(p->data + p->len, s, n);
    if (n2) memcpy(p->data + p->len + n, s2, n2);
    p->data[need - 1] = 0;
    p->len = need;
    return off;
}

typedef struct strmap {
    uint32_t *off; /* pool offsets of the keys, NONE for empty slots */
    uint32_t *klen;
    int32_t *val;
    size_t cap, n;
} strmap;

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void strmap_free(strmap *m)
{
    df_free(m->off);
    df_free(m->klen);
    df_free(m->val);
    memset(m, 0, sizeof *m);
}

/* The slot of key s[0, n): where it is, or the empty slot where it would go. */
static size_t strmap_slot(const strmap *m, const pool *p, const char *s, size_t n)
{
    size_t i = hash_bytes(s, n) & (m->cap - 1);
    while (m->off[i] != NONE && !(m->klen[i] == n && !memcmp(p->data + m->off[i], s, n))) i = (i + 1) & (m->cap - 1);
    return i;
}

static int strmap_grow(strmap *m, const pool *p)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    strmap g = {df_malloc(cap * sizeof *g.off), df_malloc(cap * sizeof *g.klen), df_malloc(cap * sizeof *g.val), cap,
                m->n};
    if (!g.off || !g.klen || !g.val) {
        strmap_free(&g);
        return DF_ENOMEM;
    }
    for (size_t i = 0; i < cap; i++) g.off[i] = NONE;
    for (size_t i = 0; i < m->cap; i++)
        if (m->off[i] != NONE) {
            size_t j = strmap_slot(&g, p, p->data + m->off[i], m->klen[i]);
            g.off[j] = m->off[i];
            g.klen[j] = m->klen[i];
            g.val[j] = m->val[i];
        }
    strmap_free(m);
    *m = g;
    return DF_OK;
}

/* The value of key s[0, n), or -1. */
static int32_t strmap_get(const strmap *m, const pool *p, const char *s, size_t n)
{
    if (!m->cap) return -1;
    size_t i = strmap_slot(m, p, s, n);
    return m->off[i] == NONE ? -1 : m->val[i];
}


/* The value of key s ++ s2; when absent, adds it with value v. -1 with the
 * error set when out of memory. `off` (may be NULL) receives the key's offset. */
static int32_t strmap_add(strmap *m, pool *p, const char *s, size_t n, const char *s2, size_t n2, int32_t v,
                          bool *added, uint32_t *off)
{
    if (added) *added = false;
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m, p) != DF_OK) return -1;
    char stack[512], *key = stack;
    if (n + n2 > sizeof stack && !(key = df_malloc(n + n2))) return -1;
    memcpy(key, s, n);
    if (n2) memcpy(key + n, s2, n2);
    size_t i = strmap_slot(m, p, key, n + n2);
    if (key != stack) df_free(key);
    if (m->off[i] != NONE) {
        if (off) *off = m->off[i];
        return m->val[i];
    }
    uint32_t o = pool_add(p, s, n, s2, n2);
    if (o == NONE) return -1;
    m->off[i] = o;
    m->klen[i] = (uint32_t)(n + n2);
    m->val[i] = v;
    m->n++;
    if (off) *off = o;
    if (added) *added = true;
    return v;
}

/* Sets the value of an existing key at pool offset `off` (length n). */
static void strmap_set(strmap *m, const pool *p, uint32_t off, size_t n, int32_t v)
{
    size_t i = strmap_slot(m, p, p->data + off, n);
    if (m->off[i] != NONE) m->val[i] = v;
}

/* ---- (symbol, symbol) -> (rank, merged symbol) ---- */

typedef struct pairmap {
    uint64_t *key; /* a << 32 | b; UINT64_MAX empty */
    int32_t *rank, *merged;
    size_t cap, n;
} pairmap;

static void pairmap_free(pairmap *m)
{
    df_free(m->key);
    df_free(m->rank);
    df_free(m->merged);
    memset(m, 0, sizeof *m);
}

static size_t pair_slot(const pairmap *m, uint64_t k)
{
    size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
    while (m->key[i] != UINT64_MAX && m->key[i] != k) i = (i + 1) & (m->cap - 1);
    return i;
}

static int pairmap_put(pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        pairmap g = {df_malloc(cap * sizeof *g.key), df_malloc(cap * sizeof *g.rank),
                     df_malloc(cap * sizeof *g.merged), cap, m->n};
        if (!g.key || !g.rank || !g.merged) {
            pairmap_free(&g);
            return DF_ENOMEM;
        }
        for (size_t i = 0; i < cap; i++) g.key[i] = UINT64_MAX;
        for (size_t i = 0; i < m->cap; i++)
            if (m->key[i] != UINT64_MAX) {
                size_t j = pair_slot(&g, m->key[i]);
                g.key[j] = m->key[i];
                g.rank[j] = m->rank[i];
                g.merged[j] = m->merged[i];
            }
        pairmap_free(m);
        *m = g;
    }
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = pair_slot(m, k);
    if (m->key[i] == UINT64_MAX) m->n++;
    m->key[i] = k; /* a repeated pair takes its later rank, as Python's dict() does */
    m->rank[i] = rank;
    m->merged[i] = merged;
    return DF_OK;
}

/* The rank of pair (a, b) and its merged symbol; INT32_MAX when not a merge. */
static int32_t pair_rank(const pairmap *m, int32_t a, int32_t b, int32_t *merged)
{
    if (a < 0 || b < 0 || !m->cap) return INT32_MAX;
    size_t i = pair_slot(m, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    if (m->key[i] == UINT64_MAX) return INT32_MAX;
    *merged = m->merged[i];
    return m->rank[i];
}

/* ---- UTF-8 of validated text ---- */

/* The code point at s[i] (s valid UTF-8) and its length. */
static uint32_t cp_at(const char *s, size_t n, size_t i, size_t *len)
{
    unsigned char c = (unsigned char)s[i];
    size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (l > n - i) l = n - i;
    uint32_t cp = l == 1 ? c : (uint32_t)(c & (0xFF >> (l + 1)));
    for (size_t j = 1; j < l; j++) cp = cp << 6 | ((unsigned char)s[i + j] & 0x3Fu);
    *len = l;
    return cp;
}

/* ---- the tokenizer object ---- */

struct df_tokenizer {
    pool strings;
    /* vocabulary: token -> id, id -> token */
    strmap vocab;
    uint32_t *id_token; /* pool offset of each id's token; NONE where no token has the id */
    int32_t n_ids;      /* largest id + 1 */
    int32_t unk;        /* <|endoftext|>, what CLIPTokenizer gives for a string outside the vocabulary */
    df_tokenizer_ids special;
    /* merges: symbols (strings) are numbered, pairs of them ranked */
    strmap symbols;
    int32_t n_symbols;
    pairmap pairs;
    /* bytes_to_unicode: each byte's character as UTF-8 (1 or 2 bytes), and
     * its symbol number alone and with "</w>" (-1: in no merge) */
    char byte_chr[256][2];
    uint8_t byte_len[256];
    int32_t byte_sym[256][2];
};

void df_tokenizer_free(df_tokenizer *tok)
{
    if (!tok) return;
    df_free(tok->strings.data);
    strmap_free(&tok->vocab);
    df_free(tok->id_token);
    strmap_free(&tok->symbols);
    pairmap_free(&tok->pairs);
    df_free(tok);
}

static bool byte_printable(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* GPT-2 / CLIP bytes_to_unicode: printable Latin-1 bytes stand for
 * themselves, the other 68 for U+0100 upwards in byte order. */
static df_tokenizer *tokenizer_alloc(void)
{
    df_tokenizer *tok = df_calloc(1, sizeof *tok);
    if (!tok) return NULL;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = byte_printable(b) ? (uint32_t)b : (uint32_t)(256 + n++);
        char buf[4];
        tok->byte_len[b] = (uint8_t)df_utf8_put(cp, buf);
        memcpy(tok->byte_chr[b], buf, tok->byte_len[b]);
    }
    tok->unk = tok->special.bos = tok->special.eos = tok->special.comma = -1;
    return tok;
}

/* ---- merges ---- */

/* The number of symbol s ++ s2, numbering it when new; -1 when out of memory. */
static int32_t symbol(df_tokenizer *tok, const char *s, size_t n, const char *s2, size_t n2)
{
    bool added;
    int32_t v = strmap_add(&tok->symbols, &tok->strings, s, n, s2, n2, tok->n_symbols, &added, NULL);
    if (added) tok->n_symbols++;
    return v;
}

/* vocab[s ++ s2] = id, a later value replacing an earlier one (Python's dict). */
static int vocab_put(df_tokenizer *tok, const char *s, size_t n, const char *s2, size_t n2, int32_t id, bool *added)
{
    bool new_key;
    uint32_t off;
    int32_t v = strmap_add(&tok->vocab, &tok->strings, s, n, s2, n2, id, &new_key, &off);
    if (v < 0) return DF_ENOMEM;
    if (!new_key) strmap_set(&tok->vocab, &tok->strings, off, n + n2, id);
    if (added) *added = new_key;
    return DF_OK;
}

/* Reads the merges CLIP uses from text[0, n): the file stripped of surrounding
 * whitespace, split into lines, the first line (the version) skipped, then
 * 48 894 lines of two symbols each (as CLIPTokenizer and SimpleTokenizer read
 * them; later lines are ignored). `what` names the file. The merges' ranks are
 * their order; with `derive_vocab` (the built-in data) the vocabulary is
 * derived from them as SimpleTokenizer does: the byte characters, the same
 * with "</w>", the merges joined, <|startoftext|>, <|endoftext|>. */
static int load_merges(df_tokenizer *tok, const char *text, size_t n, const char *what, bool derive_vocab)
{
    size_t bad;
    uint32_t *cps = NULL;
    size_t ncp;
    int rc = df_utf8_decode(text, n, &cps, &ncp, &bad);
    if (rc == DF_EINVAL) return df_error(DF_EFORMAT, "%s: invalid UTF-8 at byte %zu", what, bad);
    if (rc) return df_error_prefix(rc, "%s", what);
    df_free(cps);

    /* str.strip() of the whole text */
    size_t b = 0, e = n, l;
    while (b < e && (df_uc_props(cp_at(text, n, b, &l)) & DF_UC_PYSPACE)) b += l;
    while (e > b) {
        size_t k = e - 1;
        while (k > b && ((unsigned char)text[k] & 0xC0) == 0x80) k--;
        if (!(df_uc_props(cp_at(text, n, k, &l)) & DF_UC_PYSPACE)) break;
        e = k;
    }

    if (derive_vocab) { /* the 256 byte characters, then each with "</w>" */
        int32_t id = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int printable = 1; printable >= 0; printable--)
                for (int c = 0; c < 256; c++) {
                    if (byte_printable(c) != printable) continue;
                    if (vocab_put(tok, tok->byte_chr[c], tok->byte_len[c], "</w>", pass ? 4 : 0, id++, NULL) != DF_OK)
                        return DF_ENOMEM;
                }
    }

    int32_t rank = 0;
    size_t line = 0;
    for (size_t i = b; i < e && rank < N_MERGES_USED; line++) {
        size_t j = i;
        while (j < e && text[j] != '\n' && text[j] != '\r') j++;
        size_t next = j < e ? j + (text[j] == '\r' && j + 1 < e && text[j + 1] == '\n' ? 2 : 1) : e;
        if (line > 0) { /* line 0 is the version */
            size_t off[2] = {0, 0}, len[2] = {0, 0};
            int fields = 0;
            /* str.split(): maximal runs of non-whitespace */
            for (size_t p = i; p < j;) {
                size_t cl;
                bool space = df_uc_props(cp_at(text, n, p, &cl)) & DF_UC_PYSPACE;
                if (!space) {
                    size_t start = p;
                    while (p < j && !(df_uc_props(cp_at(text, n, p, &cl)) & DF_UC_PYSPACE)) p += cl;
                    if (fields < 2) {
                        off[fields] = start;
                        len[fields] = p - start;
                    }
                    fields++;
                } else {
                    p += cl;
                }
            }
            if (fields != 2)
                return df_error(DF_EFORMAT, "%s: line %zu: expected two symbols separated by a space, found %d",
                                what, line + 1, fields);
            int32_t a = symbol(tok, text + off[0], len[0], NULL, 0);
            int32_t c = symbol(tok, text + off[1], len[1], NULL, 0);
            int32_t m = symbol(tok, text + off[0], len[0], text + off[1], len[1]);
            if (a < 0 || c < 0 || m < 0 || pairmap_put(&tok->pairs, a, c, rank, m) != DF_OK) return DF_ENOMEM;
            if (derive_vocab && vocab_put(tok, text + off[0], len[0], text + off[1], len[1], 512 + rank, NULL) != DF_OK)
                return DF_ENOMEM;
            rank++;
        }
        i = next;
    }
    if (derive_vocab) {
        if (rank != N_MERGES_USED)
            return df_error(DF_EFORMAT, "%s: %d merges, CLIP needs %d", what, (int)rank, N_MERGES_USED);
        if (vocab_put(tok, TOK_BOS, strlen(TOK_BOS), NULL, 0, 512 + rank, NULL) != DF_OK ||
            vocab_put(tok, TOK_EOS, strlen(TOK_EOS), NULL, 0, 513 + rank, NULL) != DF_OK)
            return DF_ENOMEM;
    }
    /* the symbols words start from */
    for (int c = 0; c < 256; c++) {
        char buf[8];
        memcpy(buf, tok->byte_chr[c], tok->byte_len[c]);
        tok->byte_sym[c][0] = strmap_get(&tok->symbols, &tok->strings, buf, tok->byte_len[c]);
        memcpy(buf + tok->byte_len[c], "</w>", 4);
        tok->byte_sym[c][1] = strmap_get(&tok->symbols, &tok->strings, buf, tok->byte_len[c] + 4u);
    }
    return DF_OK;
}

/* ---- vocabulary ---- */

/* The id -> token table, and the ids the prompt parser needs. */
static int finish_vocab(df_tokenizer *tok, const char *what)
{
    int32_t max = -1;
    for (size_t i = 0; i < tok->vocab.cap; i++)
        if (tok->vocab.off[i] != NONE && tok->vocab.val[i] > max) max = tok->vocab.val[i];
    tok->n_ids = max + 1;
    if (!(tok->id_token = df_malloc(((size_t)tok->n_ids + 1) * sizeof *tok->id_token))) return DF_ENOMEM;
    for (int32_t i = 0; i < tok->n_ids; i++) tok->id_token[i] = NONE;
    for (size_t i = 0; i < tok->vocab.cap; i++)
        if (tok->vocab.off[i] != NONE) tok->id_token[tok->vocab.val[i]] = tok->vocab.off[i];
    tok->special.bos = strmap_get(&tok->vocab, &tok->strings, TOK_BOS, strlen(TOK_BOS));
    tok->special.eos = strmap_get(&tok->vocab, &tok->strings, TOK_EOS, strlen(TOK_EOS));
    tok->special.comma = strmap_get(&tok->vocab, &tok->strings, ",</w>", 5);
    tok->unk = tok->special.eos;
    if (tok->special.bos < 0 || tok->special.eos < 0)
        return df_error(DF_EFORMAT, "%s: the vocabulary has no %s token", what,
                        tok->special.bos < 0 ? TOK_BOS : TOK_EOS);
    return DF_OK;
}

/* vocab.json: one object, token -> non-negative integer id. A repeated token
 * keeps its last id (json.load); when two tokens share an id, decoding gives
 * the one listed later, as CLIPTokenizer's decoder does. */
static int load_vocab_json(df_tokenizer *tok, const char *text, size_t n, const char *what)
{
    df_json *root = NULL;
    int rc = df_json_parse(text, n, &root);
    if (rc) return df_error_prefix(rc, "%s", what);
    if (root->type != DF_JSON_OBJECT) {
        df_json_free(root);
        return df_error(DF_EFORMAT, "%s: expected a JSON object of token -> id", what);
    }
    bool *first = df_calloc(root->n + 1, sizeof *first); /* the member is its token's first appearance */
    if (!first) rc = DF_ENOMEM;
    for (size_t i = 0; i < root->n && rc == DF_OK; i++) {
        const df_json *m = &root->items[i];
        uint64_t id;
        const char *why = "is not a number";
        if (m->type != DF_JSON_NUMBER || df_json_u64(m, &id, &why) != DF_OK) {
            rc = df_error(DF_EFORMAT, "%s: the id of token \"%s\" %s", what, m->key, why);
        } else if (id > MAX_ID) {
            rc = df_error(DF_EFORMAT, "%s: the id of token \"%s\" is %llu (at most %d)", what, m->key,
                          (unsigned long long)id, MAX_ID);
        } else {
            rc = vocab_put(tok, m->key, strlen(m->key), NULL, 0, (int32_t)id, &first[i]);
        }
    }
    if (rc == DF_OK) rc = finish_vocab(tok, what);
    /* decoder order: keys in first-appearance order, later ones winning */
    for (size_t i = 0; i < root->n && rc == DF_OK; i++) {
        if (!first[i]) continue;
        const char *k = root->items[i].key;
        size_t slot = strmap_slot(&tok->vocab, &tok->strings, k, strlen(k));
        tok->id_token[tok->vocab.val[slot]] = tok->vocab.off[slot];
    }
    df_free(first);
    df_json_free(root);
    return rc;
}

/* Reads a whole file; `what` names it in errors. */
static int read_file(const char *path, const char *what, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return df_error(DF_EIO, "%s %s: %s", what, path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = df_malloc(cap);
    while (buf) {
        if (len == cap) {
            char *b = cap > SIZE_MAX / 2 ? NULL : df_realloc(buf, cap * 2);
            if (!b) {
                df_free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return DF_ENOMEM;
    if (err) {
        df_free(buf);
        return df_error(DF_EIO, "%s %s: read error", what, path);
    }
    *out = buf;
    *n = len;
    return DF_OK;
}

int df_tokenizer_new_default(df_tokenizer **out)
{
    if (!out) return df_error(DF_EINVAL, "df_tokenizer_new_default: out is NULL");
    *out = NULL;
    df_tokenizer *tok = tokenizer_alloc();
    if (!tok) return DF_ENOMEM;
    int rc = load_merges(tok, df_clip_merges, df_clip_merges_len, "built-in CLIP merges", true);
    if (rc == DF_OK) rc = finish_vocab(tok, "built-in CLIP vocabulary");
    if (rc) {
        df_tokenizer_free(tok);
        return rc;
    }
    *out = tok;
    return DF_OK;
}

int df_tokenizer_load(const char *vocab_json, const char *merges_txt, df_tokenizer **out)
{
    if (!out) return df_error(DF_EINVAL, "df_tokenizer_load: out is NULL");
    *out = NULL;
    if (!vocab_json || !merges_txt) return df_error(DF_EINVAL, "df_tokenizer_load: a path is NULL");
    df_tokenizer *tok = tokenizer_alloc();
    if (!tok) return DF_ENOMEM;
    char *text = NULL, what[64 + 4096];
    size_t n;
    snprintf(what, sizeof what, "vocabulary %s", vocab_json);
    int rc = read_file(vocab_json, "vocabulary", &text, &n);
    if (rc == DF_OK) rc = load_vocab_json(tok, text, n, what);
    df_free(text);
    text = NULL;
    if (rc == DF_OK) {
        snprintf(what, sizeof what, "merges %s", merges_txt);
        rc = read_file(merges_txt, "merges", &text, &n);
        if (rc == DF_OK) rc = load_merges(tok, text, n, what, false);
        df_free(text);
    }
    if (rc) {
        df_tokenizer_free(tok);
        return rc;
    }
    *out = tok;
    return DF_OK;
}

const char *df_tokenizer_token(const df_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || id >= tok->n_ids || tok->id_token[id] == NONE) return NULL;
    return tok->strings.data + tok->id_token[id];
}

int df_tokenizer_vocab_size(const df_tokenizer *tok)
{
    return tok ? tok->n_ids : 0;
}

df_tokenizer_ids df_tokenizer_special_ids(const df_tokenizer *tok)
{
    return tok->special;
}

/* ---- encoding ---- */

/* A growable id list. */
typedef struct ids {
    int32_t *v;
    size_t n, cap;
} ids;

static int ids_push(ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        if (cap > (size_t)INT_MAX) return df_error(DF_ENOMEM, "more than %d tokens", INT_MAX);
        int32_t *v = df_realloc(a->v, cap * sizeof *v);
        if (!v) return DF_ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return DF_OK;
}

/* Scratch buffers reused across the words of one call. */
typedef struct scratch {
    char *mapped;     /* the word's byte characters, concatenated */
    size_t *sym_at;   /* per symbol: start offset in mapped */
    int32_t *sym;     /* per symbol: its number (-1: in no merge) */
    size_t cap_bytes; /* capacity of mapped (bytes) and of the symbol arrays (count) */
    char *tokbuf;     /* a symbol's string plus "</w>" for the vocabulary lookup */
} scratch;

static void scratch_free(scratch *s)
{
    df_free(s->mapped);
    df_free(s->sym_at);
    df_free(s->sym);
    df_free(s->tokbuf);
}

static int scratch_reserve(scratch *s, size_t nbytes)
{
    if (nbytes <= s->cap_bytes) return DF_OK;
    size_t cap = s->cap_bytes ? s->cap_bytes : 64;
    while (cap < nbytes) cap *= 2;
    scratch g = {df_malloc(2 * cap), df_malloc((cap + 1) * sizeof(size_t)), df_malloc((cap + 1) * sizeof(int32_t)),
                 cap, df_malloc(2 * cap + 8)};
    if (!g.mapped || !g.sym_at || !g.sym || !g.tokbuf) {
        scratch_free(&g);
        return DF_ENOMEM;
    }
    scratch_free(s);
    *s = g;
    return DF_OK;
}

/* Byte-level BPE of one pre-token (UTF-8 bytes w[0, n), n > 0), appending its ids. */
static int bpe_word(const df_tokenizer *tok, const unsigned char *w, size_t n, scratch *s, ids *out)
{
    int rc = scratch_reserve(s, n);
    if (rc) return rc;
    size_t mlen = 0;
    for (size_t i = 0; i < n; i++) {
        s->sym_at[i] = mlen;
        s->sym[i] = tok->byte_sym[w[i]][i == n - 1];
        memcpy(s->mapped + mlen, tok->byte_chr[w[i]], tok->byte_len[w[i]]);
        mlen += tok->byte_len[w[i]];
    }
    s->sym_at[n] = mlen;
    /* the special tokens stand for themselves (CLIPTokenizer's BPE cache) */
    if ((mlen == strlen(TOK_BOS) && !memcmp(s->mapped, TOK_BOS, mlen)) ||
        (mlen == strlen(TOK_EOS) && !memcmp(s->mapped, TOK_EOS, mlen))) {
        int32_t id = strmap_get(&tok->vocab, &tok->strings, s->mapped, mlen);
        return ids_push(out, id >= 0 ? id : tok->unk);
    }
    size_t ns = n;
    while (ns > 1) {
        int32_t best = INT32_MAX, a = -1, b = -1, merged = -1;
        for (size_t i = 0; i + 1 < ns; i++) {
            int32_t m, r = pair_rank(&tok->pairs, s->sym[i], s->sym[i + 1], &m);
            if (r < best) {
                best = r;
                a = s->sym[i];
                b = s->sym[i + 1];
                merged = m;
            }
        }
        if (best == INT32_MAX) break;
        size_t k = 0;
        for (size_t i = 0; i < ns; k++) {
            s->sym_at[k] = s->sym_at[i];
            if (i + 1 < ns && s->sym[i] == a && s->sym[i + 1] == b) {
                s->sym[k] = merged;
                i += 2;
            } else {
                s->sym[k] = s->sym[i];
                i++;
            }
        }
        s->sym_at[k] = mlen;
        ns = k;
    }
    for (size_t i = 0; i < ns; i++) {
        size_t len = s->sym_at[i + 1] - s->sym_at[i];
        memcpy(s->tokbuf, s->mapped + s->sym_at[i], len);
        if (i == ns - 1) {
            memcpy(s->tokbuf + len, "</w>", 4);
            len += 4;
        }
        int32_t id = strmap_get(&tok->vocab, &tok->strings, s->tokbuf, len);
        if ((rc = ids_push(out, id >= 0 ? id : tok->unk))) return rc;
    }
    return DF_OK;
}

/* BasicTokenizer._is_chinese_char: the CJK ideograph blocks it spaces out. */
static bool is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Python's lower() of w[0, n) into out (room for 2n), with its final-sigma rule:
 * U+03A3 becomes U+03C2 after a cased letter (case-ignorable ones between)
 * and not before one. */
static size_t py_lower(const uint32_t *w, size_t n, uint32_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] == 0x3A3) {
            size_t j = i;
            while (j > 0 && (df_uc_props(w[j - 1]) & DF_UC_CASEIGN)) j--;
            bool fin = j > 0 && (df_uc_props(w[j - 1]) & DF_UC_CASED);
            if (fin) {
                j = i + 1;
                while (j < n && (df_uc_props(w[j]) & DF_UC_CASEIGN)) j++;
                fin = j == n || !(df_uc_props(w[j]) & DF_UC_CASED);
            }
            out[m++] = fin ? 0x3C2 : 0x3C3;
            continue;
        }
        m += (size_t)df_uc_lower(w[i], out + m);
    }
    return m;
}

/* Whether w[i, n) starts with the ASCII `lit` under the pattern's IGNORECASE. */
static bool ci_prefix(const uint32_t *w, size_t i, size_t n, const char *lit)
{
    for (; *lit; lit++, i++) {
        if (i >= n) return false;
        char c = *lit;
        if (c >= 'a' && c <= 'z' ? !df_uc_ci_eq(w[i], c) : w[i] != (uint32_t)(unsigned char)c) return false;
    }
    return true;
}

/* The CLIP pattern over one lowercased word w[0, n): BPE of each match. */
static int clip_pattern(const df_tokenizer *tok, const uint32_t *w, size_t n, scratch *s, ids *out)
{
    static const char *const fixed[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    char buf[256], *bytes = buf;
    size_t cap = sizeof buf;
    int rc = DF_OK;
    for (size_t i = 0; i < n && rc == DF_OK;) {
        size_t e = i;
        for (size_t k = 0; k < sizeof fixed / sizeof *fixed && e == i; k++)
            if (ci_prefix(w, i, n, fixed[k])) e = i + strlen(fixed[k]);
        if (e == i) {
            unsigned p = df_uc_props(w[i]);
            if (p & DF_UC_L)
                while (e < n && (df_uc_props(w[e]) & DF_UC_L)) e++;
            else if (p & DF_UC_N)
                e = i + 1;
            else if (p & DF_UC_O)
                while (e < n && (df_uc_props(w[e]) & DF_UC_O)) e++;
        }
        if (e == i) { /* matched by nothing (U+0345): skipped, as findall does */
            i++;
            continue;
        }
        if ((e - i) * 4 > cap) {
            cap = (e - i) * 4;
            char *b = df_malloc(cap);
            if (!b) {
                rc = DF_ENOMEM;
                break;
            }
            if (bytes != buf) df_free(bytes);
            bytes = b;
        }
        size_t nb = 0;
        for (size_t k = i; k < e; k++) nb += (size_t)df_utf8_put(w[k], bytes + nb);
        rc = bpe_word(tok, (const unsigned char *)bytes, nb, s, out);
        i = e;
    }
    if (bytes != buf) df_free(bytes);
    return rc;
}

/* One piece of text between special tokens, t[0, n): BasicTokenizer (clean,
 * CJK spacing, NFC, whitespace split, lower()), then the pattern per word. */
static int encode_piece(const df_tokenizer *tok, const uint32_t *t, size_t n, scratch *s, ids *out)
{
    if (n > (SIZE_MAX / sizeof(uint32_t) - 1) / 3) return df_error(DF_ENOMEM, "prompt too long");
    uint32_t *a = df_malloc((3 * n + 1) * sizeof *a), *nfc = NULL, *low = NULL;
    if (!a) return DF_ENOMEM;
    size_t m = 0, nn = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned p = df_uc_props(t[i]);
        if (p & DF_UC_REMOVE) continue;
        if (p & DF_UC_TOSPACE) {
            a[m++] = ' ';
        } else if (is_cjk(t[i])) {
            a[m++] = ' ';
            a[m++] = t[i];
            a[m++] = ' ';
        } else {
            a[m++] = t[i];
        }
    }
    int rc = df_uc_nfc(a, m, &nfc, &nn);
    df_free(a);
    if (rc) return rc;
    if (!(low = df_malloc((2 * nn + 1) * sizeof *low))) rc = DF_ENOMEM;
    for (size_t i = 0; i < nn && rc == DF_OK;) {
        if (df_uc_props(nfc[i]) & DF_UC_PYSPACE) {
            i++;
            continue;
        }
        size_t e = i;
        while (e < nn && !(df_uc_props(nfc[e]) & DF_UC_PYSPACE)) e++;
        size_t nl = py_lower(nfc + i, e - i, low);
        rc = clip_pattern(tok, low, nl, s, out);
        i = e;
    }
    df_free(nfc);
    df_free(low);
    return rc;
}

int df_tokenizer_encode_n(const df_tokenizer *tok, const char *text, size_t n, const char *what, int32_t **ids_out,
                          int *n_out)
{
    *ids_out = NULL;
    *n_out = 0;
    uint32_t *cp;
    size_t ncp, bad;
    int rc = df_utf8_decode(text, n, &cp, &ncp, &bad);
    if (rc == DF_EINVAL) return df_error(DF_EINVAL, "%s: invalid UTF-8 at byte %zu", what, bad);
    if (rc) return rc;
    ids out = {0};
    scratch s = {0};
    /* the literal special tokens split the text first (PreTrainedTokenizer's
     * added-token trie), and stand for their ids */
    static const char *const specials[] = {TOK_BOS, TOK_EOS};
    size_t start = 0;
    for (size_t i = 0; i <= ncp && rc == DF_OK; i++) {
        int hit = -1;
        for (int k = 0; k < 2 && i < ncp; k++) {
            size_t L = strlen(specials[k]), j = 0;
            while (j < L && i + j < ncp && cp[i + j] == (uint32_t)specials[k][j]) j++;
            if (j == L) hit = k;
        }
        if (hit < 0 && i < ncp) continue;
        if (i > start) rc = encode_piece(tok, cp + start, i - start, &s, &out);
        if (hit >= 0 && rc == DF_OK) {
            rc = ids_push(&out, hit == 0 ? tok->special.bos : tok->special.eos);
            i += strlen(specials[hit]) - 1;
        }
        start = i + 1;
    }
    df_free(cp);
    scratch_free(&s);
    if (rc) {
        df_free(out.v);
        return rc;
    }
    if (!out.v && !(out.v = df_malloc(sizeof *out.v))) return DF_ENOMEM;
    *ids_out = out.v;
    *n_out = (int)out.n;
    return DF_OK;
}

int df_tokenizer_encode(const df_tokenizer *tok, const char *text, int32_t **ids_out, int *n)
{
    if (!ids_out || !n) return df_error(DF_EINVAL, "df_tokenizer_encode: ids or n is NULL");
    *ids_out = NULL;
    *n = 0;
    if (!tok || !text) return df_error(DF_EINVAL, "df_tokenizer_encode: %s is NULL", tok ? "text" : "tokenizer");
    return df_tokenizer_encode_n(tok, text, strlen(text), "text", ids_out, n);
}
