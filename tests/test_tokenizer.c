/* The CLIP tokenizer and AUTOMATIC1111's prompt syntax.
 *
 * - ids against transformers' CLIPTokenizer (4.57.6, slow, ftfy absent: its
 *   BasicTokenizer path) on the prompts of tests/fixtures/tokenizer_ids.json
 *   (tools/gen_tokenizer_fixtures.py), with the built-in vocabulary and with a
 *   small diffusers-style vocab.json / merges.txt pair;
 * - a vocab.json / merges.txt pair written here;
 * - A1111's parse_prompt_attention on cases written from its documented rules
 *   (each also checked against A1111's own function when the cases were written);
 * - tokenize_line: chunks of 75, comma backtrack, BREAK, weights, padding,
 *   textual-inversion embeddings (files written here with df_safetensors_save);
 * - errors (files named in the message) and out-of-memory paths. */
#include "testutil.h"
#include "tmpdir.h"

#include "io/json.h"
#include "nn/tokenizer.h"

#include <dirent.h>
#include <unistd.h>

/* ---- a temporary directory per test ---- */

static void tmp_setup(void) { tmp_init("df_tok"); }

TestSuite(tokenizer, .init = tmp_setup, .fini = tmp_teardown);

static const char *write_text(const char *name, const char *text)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    fputs(text, f);
    fclose(f);
    return path;
}

static df_tokenizer *default_tok(void)
{
    df_tokenizer *tok = NULL;
    cr_assert_eq(df_tokenizer_new_default(&tok), DF_OK, "%s", df_last_error());
    return tok;
}

/* ---- ids against transformers ---- */

static df_json *read_json(const char *path, char **buf)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)n);
    cr_assert_eq(fread(*buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    df_json *root = NULL;
    cr_assert_eq(df_json_parse(*buf, (size_t)n, &root), DF_OK, "%s: %s", path, df_last_error());
    return root;
}

/* Encodes every prompt of fixture list `key` with tok; returns how many match. */
static int agreement(const df_tokenizer *tok, const df_json *list, const char *key, int *total)
{
    int ok = 0, shown = 0;
    *total = (int)list->n;
    for (size_t i = 0; i < list->n; i++) {
        const char *text = df_json_get(&list->items[i], "text")->str;
        const df_json *want = df_json_get(&list->items[i], "ids");
        int32_t *ids = NULL;
        int n = 0;
        cr_assert_eq(df_tokenizer_encode(tok, text, &ids, &n), DF_OK, "%s[%zu]: %s", key, i, df_last_error());
        bool same = n == (int)want->n;
        for (int k = 0; same && k < n; k++) {
            uint64_t v = 0;
            const char *why;
            cr_assert_eq(df_json_u64(&want->items[k], &v, &why), DF_OK);
            same = (int64_t)v == ids[k];
        }
        if (same) {
            ok++;
        } else if (shown++ < 5) {
            fprintf(stderr, "tokenizer: %s[%zu] differs: %d ids, expected %zu\n", key, i, n, want->n);
        }
        df_free(ids);
    }
    return ok;
}

Test(tokenizer, matches_transformers_on_fixture_prompts)
{
    char *buf;
    df_json *root = read_json(FIXTURE_DIR "/tokenizer_ids.json", &buf);
    const char *ref = df_json_get(root, "reference")->str;
    df_tokenizer *tok = default_tok();
    int total, ok = agreement(tok, df_json_get(root, "standard"), "standard", &total);
    fprintf(stderr, "tokenizer: %d / %d prompts give ids identical to %s (built-in vocabulary)\n", ok, total, ref);
    cr_expect_geq(total, 500);
    cr_expect_eq(ok, total, "%d of %d prompts differ", total - ok, total);
    df_tokenizer_free(tok);

    df_tokenizer *tiny = NULL;
    cr_assert_eq(df_tokenizer_load(FIXTURE_DIR "/tokenizer_tiny_vocab.json", FIXTURE_DIR "/tokenizer_tiny_merges.txt",
                                   &tiny),
                 DF_OK, "%s", df_last_error());
    ok = agreement(tiny, df_json_get(root, "tiny"), "tiny", &total);
    fprintf(stderr, "tokenizer: %d / %d prompts agree on the tiny diffusers-style vocabulary\n", ok, total);
    cr_expect_eq(ok, total);
    df_tokenizer_free(tiny);
    df_json_free(root);
    free(buf);
}

Test(tokenizer, vocabulary)
{
    df_tokenizer *tok = default_tok();
    cr_expect_eq(df_tokenizer_vocab_size(tok), 49408);
    cr_expect_str_eq(df_tokenizer_token(tok, DF_CLIP_BOS), "<|startoftext|>");
    cr_expect_str_eq(df_tokenizer_token(tok, DF_CLIP_EOS), "<|endoftext|>");
    cr_expect_str_eq(df_tokenizer_token(tok, 0), "!");
    cr_expect_str_eq(df_tokenizer_token(tok, 256), "!</w>");
    cr_expect_str_eq(df_tokenizer_token(tok, 320), "a</w>");
    cr_expect_str_eq(df_tokenizer_token(tok, 267), ",</w>");
    cr_expect_null(df_tokenizer_token(tok, 49408));
    cr_expect_null(df_tokenizer_token(tok, -1));
    int32_t *ids;
    int n;
    cr_assert_eq(df_tokenizer_encode(tok, "a photo of a cat", &ids, &n), DF_OK);
    int32_t want[] = {320, 1125, 539, 320, 2368};
    cr_assert_eq(n, 5);
    cr_expect_arr_eq(ids, want, sizeof want);
    df_free(ids);
    cr_assert_eq(df_tokenizer_encode(tok, "", &ids, &n), DF_OK);
    cr_expect_eq(n, 0);
    df_free(ids);
    df_tokenizer_free(tok);
    df_tokenizer_free(NULL);
}

/* A diffusers tokenizer/ pair written here: ids come from vocab.json, merges
 * by rank, a string the vocabulary lacks becomes <|endoftext|>. */
Test(tokenizer, loads_vocab_json_and_merges_txt)
{
    const char *vocab = write_text("vocab.json", "{\"h\": 0, \"e\": 1, \"l\": 2, \"o\": 3, \"he\": 4, \"ll\": 5, "
                                                 "\"hell\": 6, \"hello</w>\": 7, \"o</w>\": 8, \",</w>\": 11, "
                                                 "\"<|startoftext|>\": 9, \"<|endoftext|>\": 10}");
    const char *merges = write_text("merges.txt", "#version: 0.2\r\nh e\r\nl l\r\nhe ll\r\nhell o</w>\r\n");
    df_tokenizer *tok = NULL;
    cr_assert_eq(df_tokenizer_load(vocab, merges, &tok), DF_OK, "%s", df_last_error());
    cr_expect_eq(df_tokenizer_vocab_size(tok), 12);
    cr_expect_str_eq(df_tokenizer_token(tok, 7), "hello</w>");
    int32_t *ids;
    int n;
    cr_assert_eq(df_tokenizer_encode(tok, "Hello hell, o <|endoftext|>", &ids, &n), DF_OK, "%s", df_last_error());
    /* hello</w> | he l l</w>(unknown) | ,</w> | o</w> | <|endoftext|> */
    int32_t want[] = {7, 4, 2, 10, 11, 8, 10};
    cr_assert_eq(n, 7);
    cr_expect_arr_eq(ids, want, sizeof want);
    df_free(ids);
    /* the prompt layer uses this vocabulary's own special ids */
    df_token_chunks *c;
    cr_assert_eq(df_prompt_tokenize(tok, NULL, "hello", NULL, &c), DF_OK, "%s", df_last_error());
    cr_expect_eq(c->ids[0], 9);
    cr_expect_eq(c->ids[1], 7);
    cr_expect_eq(c->ids[2], 10);
    cr_expect_eq(c->ids[76], 10);
    df_token_chunks_free(c);
    df_tokenizer_free(tok);
}

/* ---- invalid UTF-8: an error naming the byte (Python never sees such bytes) ---- */

Test(tokenizer, invalid_utf8_is_an_error)
{
    df_tokenizer *tok = default_tok();
    const char *bad[] = {"caf\xe9", "a\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int32_t *ids = (int32_t *)1;
        int n = 7;
        cr_expect_eq(df_tokenizer_encode(tok, bad[i], &ids, &n), DF_EINVAL, "case %zu", i);
        cr_expect_null(ids);
        cr_expect_eq(n, 0);
        cr_expect(strstr(df_last_error(), "invalid UTF-8 at byte"), "%s", df_last_error());
        df_token_chunks *c = NULL;
        cr_expect_eq(df_prompt_tokenize(tok, NULL, bad[i], NULL, &c), DF_EINVAL);
        cr_expect_null(c);
        char **t;
        float *w;
        int ns;
        cr_expect_eq(df_prompt_parse(bad[i], &t, &w, &ns), DF_EINVAL);
    }
    int32_t *ids;
    int n;
    cr_expect_eq(df_tokenizer_encode(tok, "caf\xe9!", &ids, &n), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "byte 3"), "%s", df_last_error());
    df_tokenizer_free(tok);
}

/* ---- parse_prompt_attention ---- */

typedef struct seg_case {
    const char *prompt;
    int n;
    const char *text[10];
    double weight[10];
} seg_case;

#define R 1.1
#define S (1 / 1.1)

/* Written from A1111's documented rules (its docstring and code): ( ) x1.1,
 * [ ] /1.1, (x:w), unclosed brackets apply at the end, \ escapes, runs of equal
 * weight merge, BREAK (a word, case-sensitive) with the whitespace around it. */
static const seg_case parse_cases[] = {
    {"normal text", 1, {"normal text"}, {1}},
    {"", 1, {""}, {1}},
    {"an (important) word", 3, {"an ", "important", " word"}, {1, R, 1}},
    {"(unbalanced", 1, {"unbalanced"}, {R}},
    {"\\(literal\\]", 1, {"(literal]"}, {1}},
    {"(unnecessary)(parens)", 1, {"unnecessaryparens"}, {R}},
    {"a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     9,
     {"a ", "house", " ", "on", " a ", "hill", ", sun, ", "sky", "."},
     {1, 1.3 * R * R, R, 1, R, 0.5 * R, R, R * R * R * R, R}},
    {"[a]", 1, {"a"}, {S}},
    {"[[a]]", 1, {"a"}, {S * S}},
    {"((a))", 1, {"a"}, {R * R}},
    {"(a:1.5)", 1, {"a"}, {1.5}},
    {"(a:0)", 1, {"a"}, {0}},
    {"(a:-1)", 1, {"a"}, {-1}},
    {"(a:+.5)", 1, {"a"}, {0.5}},
    {"(a:5.)", 1, {"a"}, {5}},
    {"((a:2))", 1, {"a"}, {2 * R}},
    {"([a]:2)", 1, {"a"}, {S * 2}},
    {"((a:1.5) b)", 2, {"a", " b"}, {1.5 * R, R}},
    {"a:b", 1, {"a:b"}, {1}},
    {"(a:b)", 1, {"a:b"}, {R}},
    {"[a:1.5]", 1, {"a:1.5"}, {S}},
    {"a:1.2)", 1, {"a:1.2)"}, {1}},
    {"a)", 1, {"a)"}, {1}},
    {"a]", 1, {"a]"}, {1}},
    {"[a", 1, {"a"}, {S}},
    {"((a)", 1, {"a"}, {R * R}},
    {")(a", 2, {")", "a"}, {1, R}},
    {"(a [b) c]", 3, {"a ", "b", " c"}, {R, R * S, S}},
    {"[a](b)", 2, {"a", "b"}, {S, R}},
    {"x (a:1) y", 1, {"x a y"}, {1}},
    {"(a)(b:1.1)", 1, {"ab"}, {R}},
    {"a (b:1.1) (c)", 4, {"a ", "b", " ", "c"}, {1, R, 1, R}},
    {"\\\\", 1, {"\\"}, {1}},
    {"a\\b", 1, {"ab"}, {1}},
    {"\\", 1, {""}, {1}},
    {"(a\\)b)", 1, {"a)b"}, {R}},
    {"\\[x\\] \\(y\\)", 1, {"[x] (y)"}, {1}},
    {"(a:\xd9\xa1.\xd9\xa5)", 1, {"a"}, {1.5}}, /* Arabic-Indic digits: \d and float() take them */
    {"a BREAK b", 3, {"a", "BREAK", "b"}, {1, -1, 1}},
    {"BREAK", 3, {"", "BREAK", ""}, {1, -1, 1}},
    {"a BREAK", 3, {"a", "BREAK", ""}, {1, -1, 1}},
    {"BREAK a", 3, {"", "BREAK", "a"}, {1, -1, 1}},
    {"a BREAK BREAK b", 5, {"a", "BREAK", "", "BREAK", "b"}, {1, -1, 1, -1, 1}},
    {"a\tBREAK\n b", 3, {"a", "BREAK", "b"}, {1, -1, 1}},
    {"a\xc2\xa0" "BREAK\xe3\x80\x80" "b", 3, {"a", "BREAK", "b"}, {1, -1, 1}}, /* NBSP, ideographic space */
    {"a,BREAK,b", 3, {"a,", "BREAK", ",b"}, {1, -1, 1}},
    {"aBREAK b", 1, {"aBREAK b"}, {1}},
    {"BREAKfast", 1, {"BREAKfast"}, {1}},
    {"a break b", 1, {"a break b"}, {1}},
    {"_BREAK", 1, {"_BREAK"}, {1}},
    {"\xc3\xa9" "BREAK", 1, {"\xc3\xa9" "BREAK"}, {1}},
    {"\xd9\xa3" "BREAK", 1, {"\xd9\xa3" "BREAK"}, {1}},
    {"BREAK(a)", 4, {"", "BREAK", "", "a"}, {1, -1, 1, R}},
    {"(a BREAK b)", 3, {"a", "BREAK", "b"}, {R, -1 * R, R}},
    {"(a) BREAK (b)", 5, {"a", "", "BREAK", "", "b"}, {R, 1, -1, 1, R}},
    {"(BREAK)", 3, {"", "BREAK", ""}, {R, -R, R}},
    {"[(BREAK:1.1)]", 3, {"", "BREAK", ""}, {1.1 * S, -1 * 1.1 * S, 1.1 * S}},
};

Test(tokenizer, parse_prompt_attention)
{
    int n_cases = (int)(sizeof parse_cases / sizeof *parse_cases);
    cr_assert_geq(n_cases, 50);
    for (int i = 0; i < n_cases; i++) {
        const seg_case *c = &parse_cases[i];
        char **t;
        float *w;
        int n;
        cr_assert_eq(df_prompt_parse(c->prompt, &t, &w, &n), DF_OK, "\"%s\": %s", c->prompt, df_last_error());
        cr_expect_eq(n, c->n, "\"%s\": %d segments, expected %d", c->prompt, n, c->n);
        for (int k = 0; k < n && k < c->n; k++) {
            cr_expect_str_eq(t[k], c->text[k], "\"%s\" segment %d", c->prompt, k);
            cr_expect_float_eq(w[k], (float)c->weight[k], 1e-6, "\"%s\" segment %d: weight %.9g, expected %.9g",
                               c->prompt, k, w[k], c->weight[k]);
        }
        df_prompt_segments_free(t, w, n);
    }
}

Test(tokenizer, parse_errors)
{
    /* float() raises on these in A1111 */
    const char *bad[] = {"(a:1.2.3)", "a (b:.) c", "(x:+.)"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char **t = (char **)1;
        float *w;
        int n = 3;
        cr_expect_eq(df_prompt_parse(bad[i], &t, &w, &n), DF_EINVAL, "%s", bad[i]);
        cr_expect_null(t);
        cr_expect_eq(n, 0);
        cr_expect(strstr(df_last_error(), "emphasis weight"), "%s", df_last_error());
    }
    char **t;
    float *w;
    int n;
    cr_expect_eq(df_prompt_parse(NULL, &t, &w, &n), DF_EINVAL);
    cr_expect_eq(df_prompt_parse("x", NULL, &w, &n), DF_EINVAL);
    df_prompt_segments_free(NULL, NULL, 0);
}

/* ---- tokenize_line ---- */

static df_token_chunks *chunks(const df_tokenizer *tok, const df_embeddings *emb, const char *prompt,
                               const df_prompt_params *p)
{
    df_token_chunks *c = NULL;
    cr_assert_eq(df_prompt_tokenize(tok, emb, prompt, p, &c), DF_OK, "\"%.40s\": %s", prompt, df_last_error());
    return c;
}

/* Chunk k's 77 ids: BOS, want[0, n), then `pad` to the end with EOS at n + 1. */
static void expect_chunk(const df_token_chunks *c, int k, const int32_t *want, int n, int32_t pad)
{
    const int32_t *ids = c->ids + (size_t)k * DF_CLIP_CONTEXT;
    cr_expect_eq(ids[0], DF_CLIP_BOS, "chunk %d starts with %d", k, ids[0]);
    for (int i = 0; i < n; i++) cr_expect_eq(ids[1 + i], want[i], "chunk %d token %d: %d, expected %d", k, i, ids[1 + i], want[i]);
    for (int i = n + 1; i < DF_CLIP_CONTEXT; i++) {
        int32_t e = i == n + 1 ? DF_CLIP_EOS : pad;
        cr_expect_eq(ids[i], e, "chunk %d position %d: %d, expected %d", k, i, ids[i], e);
    }
}

static char *repeat(const char *word, int n)
{
    size_t l = strlen(word);
    char *s = malloc(l * (size_t)n + 1);
    for (int i = 0; i < n; i++) memcpy(s + l * (size_t)i, word, l);
    s[l * (size_t)n] = 0;
    return s;
}

enum { A = 320, B = 321, CAT = 2368, COMMA = 267 }; /* "a</w>" "b</w>" "cat</w>" ",</w>" */

Test(tokenizer, chunks_and_padding)
{
    df_tokenizer *tok = default_tok();
    df_prompt_params p = df_prompt_default_params();
    cr_expect_eq(p.pad_with_eos, 1);
    cr_expect_eq(p.comma_backtrack, 20);
    cr_expect_eq(p.emphasis, 1);

    df_token_chunks *c = chunks(tok, NULL, "", &p); /* one chunk of BOS and EOS */
    cr_expect_eq(c->n_chunks, 1);
    expect_chunk(c, 0, NULL, 0, DF_CLIP_EOS);
    for (int i = 0; i < DF_CLIP_CONTEXT; i++) cr_expect_eq(c->weights[i], 1.0f);
    cr_expect_eq(c->n_custom, 0);
    df_token_chunks_free(c);

    c = chunks(tok, NULL, "a cat", &p);
    expect_chunk(c, 0, (int32_t[]){A, CAT}, 2, DF_CLIP_EOS);
    df_token_chunks_free(c);

    p.pad_with_eos = 0; /* OpenCLIP: 0 after the first EOS */
    c = chunks(tok, NULL, "a cat", &p);
    expect_chunk(c, 0, (int32_t[]){A, CAT}, 2, 0);
    df_token_chunks_free(c);
    c = chunks(tok, NULL, "", &p);
    expect_chunk(c, 0, NULL, 0, 0);
    df_token_chunks_free(c);
    p.pad_with_eos = 1;

    /* 75 tokens fill one chunk, 76 need two */
    int32_t as[75];
    for (int i = 0; i < 75; i++) as[i] = A;
    char *s = repeat("a ", 75);
    c = chunks(tok, NULL, s, &p);
    cr_expect_eq(c->n_chunks, 1);
    expect_chunk(c, 0, as, 75, DF_CLIP_EOS);
    df_token_chunks_free(c);
    free(s);
    s = repeat("a ", 76);
    c = chunks(tok, NULL, s, &p);
    cr_expect_eq(c->n_chunks, 2);
    expect_chunk(c, 0, as, 75, DF_CLIP_EOS);
    expect_chunk(c, 1, as, 1, DF_CLIP_EOS);
    df_token_chunks_free(c);
    free(s);
    s = repeat("a ", 300); /* 4 full chunks */
    c = chunks(tok, NULL, s, &p);
    cr_expect_eq(c->n_chunks, 4);
    expect_chunk(c, 3, as, 75, DF_CLIP_EOS);
    df_token_chunks_free(c);
    free(s);
    df_tokenizer_free(tok);
}

Test(tokenizer, comma_backtrack)
{
    df_tokenizer *tok = default_tok();
    df_prompt_params p = df_prompt_default_params();
    /* 70 a, a comma, 10 b: at the 76th token the comma is 5 back (<= 20), so
     * the 4 b after it move to the next chunk */
    char *a70 = repeat("a ", 70), *b10 = repeat("b ", 10), prompt[512];
    snprintf(prompt, sizeof prompt, "%s, %s", a70, b10);
    int32_t want0[75], bs[10];
    for (int i = 0; i < 70; i++) want0[i] = A;
    want0[70] = COMMA;
    for (int i = 0; i < 10; i++) bs[i] = B;
    df_token_chunks *c = chunks(tok, NULL, prompt, &p);
    cr_expect_eq(c->n_chunks, 2);
    expect_chunk(c, 0, want0, 71, DF_CLIP_EOS);
    expect_chunk(c, 1, bs, 10, DF_CLIP_EOS);
    df_token_chunks_free(c);

    p.comma_backtrack = 0; /* off: the chunk is filled to 75 */
    for (int i = 71; i < 75; i++) want0[i] = B;
    c = chunks(tok, NULL, prompt, &p);
    cr_expect_eq(c->n_chunks, 2);
    expect_chunk(c, 0, want0, 75, DF_CLIP_EOS);
    expect_chunk(c, 1, bs, 6, DF_CLIP_EOS);
    df_token_chunks_free(c);

    p.comma_backtrack = 4; /* the comma is 5 back: too far */
    c = chunks(tok, NULL, prompt, &p);
    expect_chunk(c, 0, want0, 75, DF_CLIP_EOS);
    df_token_chunks_free(c);
    p.comma_backtrack = 5;
    c = chunks(tok, NULL, prompt, &p);
    expect_chunk(c, 0, want0, 71, DF_CLIP_EOS);
    df_token_chunks_free(c);

    /* a comma that is itself the 76th token starts the next chunk */
    char *a75 = repeat("a ", 75);
    snprintf(prompt, sizeof prompt, "%s, b", a75);
    p.comma_backtrack = 20;
    c = chunks(tok, NULL, prompt, &p);
    cr_expect_eq(c->n_chunks, 2);
    expect_chunk(c, 1, (int32_t[]){COMMA, B}, 2, DF_CLIP_EOS);
    df_token_chunks_free(c);
    free(a70);
    free(b10);
    free(a75);
    df_tokenizer_free(tok);
}

Test(tokenizer, break_and_weights)
{
    df_tokenizer *tok = default_tok();
    df_prompt_params p = df_prompt_default_params();
    df_token_chunks *c = chunks(tok, NULL, "a BREAK cat", &p);
    cr_expect_eq(c->n_chunks, 2);
    expect_chunk(c, 0, (int32_t[]){A}, 1, DF_CLIP_EOS);
    expect_chunk(c, 1, (int32_t[]){CAT}, 1, DF_CLIP_EOS);
    df_token_chunks_free(c);

    c = chunks(tok, NULL, "BREAK a", &p); /* an empty first chunk */
    cr_expect_eq(c->n_chunks, 2);
    expect_chunk(c, 0, NULL, 0, DF_CLIP_EOS);
    expect_chunk(c, 1, (int32_t[]){A}, 1, DF_CLIP_EOS);
    df_token_chunks_free(c);

    c = chunks(tok, NULL, "a BREAK", &p); /* nothing after it: no chunk */
    cr_expect_eq(c->n_chunks, 1);
    df_token_chunks_free(c);
    c = chunks(tok, NULL, "BREAK", &p);
    cr_expect_eq(c->n_chunks, 1);
    expect_chunk(c, 0, NULL, 0, DF_CLIP_EOS);
    df_token_chunks_free(c);

    c = chunks(tok, NULL, "a BREAK BREAK cat", &p); /* double: an empty chunk between */
    cr_expect_eq(c->n_chunks, 3);
    expect_chunk(c, 1, NULL, 0, DF_CLIP_EOS);
    expect_chunk(c, 2, (int32_t[]){CAT}, 1, DF_CLIP_EOS);
    df_token_chunks_free(c);

    /* inside brackets a BREAK's weight is no longer -1: A1111 then encodes the word */
    c = chunks(tok, NULL, "(a BREAK cat)", &p);
    cr_expect_eq(c->n_chunks, 1);
    expect_chunk(c, 0, (int32_t[]){A, 2568, CAT}, 3, DF_CLIP_EOS); /* "break</w>" */
    cr_expect_float_eq(c->weights[2], -1.1f, 1e-6);
    df_token_chunks_free(c);
    c = chunks(tok, NULL, "[(a BREAK cat:1.1)]", &p); /* -1 * 1.1 / 1.1 is -1 again */
    cr_expect_eq(c->n_chunks, 2);
    df_token_chunks_free(c);

    /* weights per token; BOS, EOS and padding weigh 1 */
    c = chunks(tok, NULL, "(a) cat [a] (cat:1.5)", &p);
    expect_chunk(c, 0, (int32_t[]){A, CAT, A, CAT}, 4, DF_CLIP_EOS);
    float want[] = {1, 1.1f, 1, (float)(1 / 1.1), 1.5f, 1, 1};
    for (int i = 0; i < 7; i++) cr_expect_float_eq(c->weights[i], want[i], 1e-6, "weight %d: %g", i, c->weights[i]);
    for (int i = 7; i < DF_CLIP_CONTEXT; i++) cr_expect_eq(c->weights[i], 1.0f);
    df_token_chunks_free(c);

    /* a weight spans every token of its text, across a chunk boundary too */
    char *s = repeat("a ", 80), prompt[256];
    snprintf(prompt, sizeof prompt, "(%s:0.5)", s);
    c = chunks(tok, NULL, prompt, &p);
    cr_expect_eq(c->n_chunks, 2);
    cr_expect_float_eq(c->weights[75], 0.5f, 1e-6);
    cr_expect_float_eq(c->weights[77 + 5], 0.5f, 1e-6);
    cr_expect_eq(c->weights[77 + 6], 1.0f);
    df_token_chunks_free(c);
    free(s);

    p.emphasis = 0; /* literal text: brackets are tokens, BREAK a word */
    c = chunks(tok, NULL, "(a) BREAK", &p);
    cr_expect_eq(c->n_chunks, 1);
    expect_chunk(c, 0, (int32_t[]){263, A, 264, 2568}, 4, DF_CLIP_EOS); /* "(" "a</w>" ")</w>" "break</w>" */
    for (int i = 0; i < DF_CLIP_CONTEXT; i++) cr_expect_eq(c->weights[i], 1.0f);
    df_token_chunks_free(c);
    df_tokenizer_free(tok);
}

/* ---- textual-inversion embeddings ---- */

/* Writes an embedding file: tensors `names` of shapes (rows[i], widths[i]),
 * values k + 0.001 * j. */
static const char *write_embedding(const char *file, int n, const char *const *names, const int64_t *rows,
                                   const int64_t *widths)
{
    df_tensor *t[2];
    for (int i = 0; i < n; i++) {
        t[i] = df_tensor_new(NULL, DF_F32, rows[i] ? 2 : 1, rows[i] ? (int64_t[]){rows[i], widths[i]} : &widths[i]);
        float *d = df_tensor_data(t[i]);
        for (int64_t j = 0; j < df_tensor_numel(t[i]); j++) d[j] = (float)i + 0.001f * (float)j;
    }
    const char *path = tmp_path(file);
    cr_assert_eq(df_safetensors_save(path, n, names, (const df_tensor *const *)t, 0, NULL, NULL), DF_OK, "%s",
                 df_last_error());
    for (int i = 0; i < n; i++) df_tensor_free(t[i]);
    return path;
}

static df_embeddings *test_embeddings(void)
{
    df_embeddings *e = NULL;
    cr_assert_eq(df_embeddings_new(&e), DF_OK);
    /* "mystyle": 2 vectors of 768 (emb_params); "sdxlthing": clip_l 3 x 768 and clip_g 3 x 1280;
     * "bad-hands-5": one 1-D vector (a single unnamed tensor) */
    cr_assert_eq(df_embeddings_load(e, write_embedding("mystyle.safetensors", 1, (const char *[]){"emb_params"},
                                                       (int64_t[]){2}, (int64_t[]){768}),
                                    NULL),
                 DF_OK, "%s", df_last_error());
    cr_assert_eq(df_embeddings_load(e, write_embedding("x.safetensors", 2, (const char *[]){"clip_g", "clip_l"},
                                                       (int64_t[]){3, 3}, (int64_t[]){1280, 768}),
                                    "sdxlthing"),
                 DF_OK, "%s", df_last_error());
    cr_assert_eq(df_embeddings_load(e, write_embedding("bad-hands-5.v2.safetensors", 1, (const char *[]){"*"},
                                                       (int64_t[]){0}, (int64_t[]){768}),
                                    NULL),
                 DF_OK, "%s", df_last_error());
    return e;
}

Test(tokenizer, embeddings_load)
{
    df_embeddings *e = test_embeddings();
    const df_tensor *t = df_embeddings_get(e, "mystyle", 768);
    cr_assert_not_null(t);
    cr_expect_eq(t->ndim, 2);
    cr_expect_eq(t->shape[0], 2);
    cr_expect_eq(t->shape[1], 768);
    cr_expect_float_eq(((const float *)df_tensor_data(t))[769], 0.769f, 1e-6);
    cr_expect_null(df_embeddings_get(e, "mystyle", 1280));
    t = df_embeddings_get(e, "sdxlthing", 1280);
    cr_assert_not_null(t);
    cr_expect_eq(t->shape[0], 3);
    cr_expect_float_eq(((const float *)df_tensor_data(t))[0], 0.0f, 1e-6); /* clip_g was written first */
    t = df_embeddings_get(e, "sdxlthing", 768);
    cr_assert_not_null(t);
    cr_expect_float_eq(((const float *)df_tensor_data(t))[0], 1.0f, 1e-6);
    t = df_embeddings_get(e, "bad-hands-5.v2", 768); /* only the last extension goes */
    cr_assert_not_null(t);
    cr_expect_eq(t->shape[0], 1);
    cr_expect_null(df_embeddings_get(e, "nope", 768));
    /* a name is loaded once */
    cr_expect_eq(df_embeddings_load(e, tmp_path("mystyle.safetensors"), NULL), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "already loaded"), "%s", df_last_error());
    df_embeddings_free(e);
    df_embeddings_free(NULL);
}

Test(tokenizer, embeddings_in_prompts)
{
    df_tokenizer *tok = default_tok();
    df_embeddings *e = test_embeddings();
    df_prompt_params p = df_prompt_default_params();
    cr_expect_eq(p.embedding_width, 768);

    /* by name, as A1111 matches it: the name's tokens in the prompt's tokens */
    df_token_chunks *c = chunks(tok, e, "a mystyle cat", &p);
    expect_chunk(c, 0, (int32_t[]){A, 0, 0, CAT}, 4, DF_CLIP_EOS);
    cr_assert_eq(c->n_custom, 2);
    cr_expect_eq(c->custom[0].chunk, 0);
    cr_expect_eq(c->custom[0].pos, 2);
    cr_expect_str_eq(c->custom[0].name, "mystyle");
    cr_expect_eq(c->custom[0].vector, 0);
    cr_expect_eq(c->custom[1].pos, 3);
    cr_expect_eq(c->custom[1].vector, 1);
    df_token_chunks_free(c);

    /* written embedding:name; weights apply to its vectors */
    c = chunks(tok, e, "(embedding:mystyle), cat", &p);
    expect_chunk(c, 0, (int32_t[]){0, 0, COMMA, CAT}, 4, DF_CLIP_EOS);
    cr_expect_eq(c->n_custom, 2);
    cr_expect_eq(c->custom[0].pos, 1);
    cr_expect_float_eq(c->weights[1], 1.1f, 1e-6);
    cr_expect_float_eq(c->weights[2], 1.1f, 1e-6);
    df_token_chunks_free(c);

    /* a name of several tokens, one vector */
    c = chunks(tok, e, "bad-hands-5.v2", &p);
    expect_chunk(c, 0, (int32_t[]){0}, 1, DF_CLIP_EOS);
    cr_expect_eq(c->n_custom, 1);
    df_token_chunks_free(c);

    /* vectors never straddle chunks: 74 tokens then 2 vectors open a new chunk */
    char *s = repeat("a ", 74), prompt[256];
    snprintf(prompt, sizeof prompt, "%smystyle", s);
    c = chunks(tok, e, prompt, &p);
    cr_expect_eq(c->n_chunks, 2);
    cr_expect_eq(c->ids[74], A);
    cr_expect_eq(c->ids[75], DF_CLIP_EOS);
    cr_expect_eq(c->n_custom, 2);
    cr_expect_eq(c->custom[0].chunk, 1);
    cr_expect_eq(c->custom[0].pos, 1);
    df_token_chunks_free(c);
    free(s);

    /* moved by the comma backtrack together with their tokens (A1111 leaves the
     * vectors' positions behind: a bug this does not copy) */
    s = repeat("a ", 70);
    snprintf(prompt, sizeof prompt, "%s, b mystyle b b", s);
    c = chunks(tok, e, prompt, &p);
    cr_expect_eq(c->n_chunks, 2);
    expect_chunk(c, 1, (int32_t[]){B, 0, 0, B, B}, 5, DF_CLIP_EOS);
    cr_expect_eq(c->n_custom, 2);
    cr_expect_eq(c->custom[0].chunk, 1);
    cr_expect_eq(c->custom[0].pos, 2);
    df_token_chunks_free(c);
    free(s);

    /* the 1280 vectors: only embeddings that have them are matched */
    p.embedding_width = 1280;
    p.pad_with_eos = 0;
    c = chunks(tok, e, "sdxlthing mystyle", &p);
    cr_expect_eq(c->n_custom, 3);
    cr_expect_str_eq(c->custom[2].name, "sdxlthing");
    cr_expect_eq(c->custom[2].vector, 2);
    cr_expect_neq(c->ids[4], 0); /* "mystyle" stays text */
    df_token_chunks_free(c);

    /* an unknown embedding:name is an error naming it; without embeddings it is text */
    df_token_chunks *bad = NULL;
    cr_expect_eq(df_prompt_tokenize(tok, e, "a embedding:nope b", &p, &bad), DF_ENOTFOUND);
    cr_expect_null(bad);
    cr_expect(strstr(df_last_error(), "embedding:nope"), "%s", df_last_error());
    cr_expect_eq(df_prompt_tokenize(tok, e, "embedding:mystyle", &p, &bad), DF_ENOTFOUND); /* no 1280 vectors */
    p.embedding_width = 0;
    c = chunks(tok, e, "embedding:nope mystyle", &p);
    cr_expect_eq(c->n_custom, 0);
    df_token_chunks_free(c);
    c = chunks(tok, NULL, "embedding:nope", NULL);
    cr_expect_eq(c->n_custom, 0);
    df_token_chunks_free(c);

    df_embeddings_free(e);
    df_tokenizer_free(tok);
}

Test(tokenizer, bad_embedding_files)
{
    df_embeddings *e = NULL;
    cr_assert_eq(df_embeddings_new(&e), DF_OK);
    const char *path = write_text("garbage.safetensors", "this is not a safetensors file");
    cr_expect_neq(df_embeddings_load(e, path, NULL), DF_OK);
    cr_expect(strstr(df_last_error(), "garbage.safetensors"), "%s", df_last_error());

    path = tmp_path("missing.safetensors");
    cr_expect_eq(df_embeddings_load(e, path, NULL), DF_EIO);
    cr_expect(strstr(df_last_error(), "missing.safetensors"), "%s", df_last_error());

    path = write_embedding("two.safetensors", 2, (const char *[]){"a", "b"}, (int64_t[]){1, 1}, (int64_t[]){8, 8});
    cr_expect_eq(df_embeddings_load(e, path, NULL), DF_EFORMAT);
    cr_expect(strstr(df_last_error(), "two.safetensors"), "%s", df_last_error());

    path = write_embedding("many.safetensors", 1, (const char *[]){"emb_params"}, (int64_t[]){76}, (int64_t[]){8});
    cr_expect_eq(df_embeddings_load(e, path, NULL), DF_EFORMAT);
    cr_expect(strstr(df_last_error(), "many.safetensors"), "%s", df_last_error());

    path = write_embedding("mismatch.safetensors", 2, (const char *[]){"clip_l", "clip_g"}, (int64_t[]){2, 3},
                           (int64_t[]){768, 1280});
    cr_expect_eq(df_embeddings_load(e, path, NULL), DF_EFORMAT);
    cr_expect(strstr(df_last_error(), "mismatch.safetensors"), "%s", df_last_error());

    df_tensor *t = df_tensor_zeros(NULL, DF_I32, 2, (int64_t[]){1, 8});
    path = tmp_path("int.safetensors");
    cr_assert_eq(df_safetensors_save(path, 1, (const char *[]){"emb_params"}, (const df_tensor *[]){t}, 0, NULL, NULL),
                 DF_OK);
    df_tensor_free(t);
    cr_expect_neq(df_embeddings_load(e, path, NULL), DF_OK);
    cr_expect(strstr(df_last_error(), "int.safetensors"), "%s", df_last_error());

    t = df_tensor_zeros(NULL, DF_F32, 3, (int64_t[]){1, 2, 8});
    path = tmp_path("3d.safetensors");
    cr_assert_eq(df_safetensors_save(path, 1, (const char *[]){"emb_params"}, (const df_tensor *[]){t}, 0, NULL, NULL),
                 DF_OK);
    df_tensor_free(t);
    cr_expect_eq(df_embeddings_load(e, path, NULL), DF_EFORMAT);
    cr_expect(strstr(df_last_error(), "3d.safetensors"), "%s", df_last_error());

    path = write_embedding("ok.safetensors", 1, (const char *[]){"emb_params"}, (int64_t[]){1}, (int64_t[]){8});
    cr_expect_eq(df_embeddings_load(e, path, ""), DF_EINVAL); /* an empty name */
    cr_expect_eq(df_embeddings_load(e, path, "\xff"), DF_EINVAL);
    cr_expect_eq(df_embeddings_load(NULL, path, NULL), DF_EINVAL);
    cr_expect_eq(df_embeddings_load(e, path, NULL), DF_OK, "%s", df_last_error());
    df_embeddings_free(e);
}

/* ---- vocabulary file errors name the file ---- */

static void expect_load_error(const char *vocab, const char *merges, int code, const char *named)
{
    df_tokenizer *tok = (df_tokenizer *)1;
    int rc = df_tokenizer_load(vocab, merges, &tok);
    cr_expect_eq(rc, code, "%s + %s: %d (%s), expected %d", vocab, merges, rc, df_last_error(), code);
    cr_expect_null(tok);
    cr_expect(strstr(df_last_error(), named), "message \"%s\" does not name %s", df_last_error(), named);
}

Test(tokenizer, vocabulary_file_errors)
{
    char good_v[512], good_m[512]; /* tmp_path's buffers are reused */
    snprintf(good_v, sizeof good_v, "%s", write_text("v.json", "{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}"));
    snprintf(good_m, sizeof good_m, "%s", write_text("m.txt", "#version: 0.2\n"));
    df_tokenizer *tok = NULL;
    cr_assert_eq(df_tokenizer_load(good_v, good_m, &tok), DF_OK, "%s", df_last_error());
    df_tokenizer_free(tok);

    expect_load_error(tmp_path("absent.json"), good_m, DF_EIO, "absent.json");
    expect_load_error(good_v, tmp_path("absent.txt"), DF_EIO, "absent.txt");
    expect_load_error(write_text("bad1.json", "{\"a\": 0,"), good_m, DF_EFORMAT, "bad1.json");
    expect_load_error(write_text("bad2.json", "[1, 2]"), good_m, DF_EFORMAT, "bad2.json");
    expect_load_error(write_text("bad3.json", "{\"a\": \"x\", \"<|endoftext|>\": 2}"), good_m, DF_EFORMAT, "bad3.json");
    expect_load_error(write_text("bad4.json", "{\"a\": -1}"), good_m, DF_EFORMAT, "bad4.json");
    expect_load_error(write_text("bad5.json", "{\"a\": 1.5}"), good_m, DF_EFORMAT, "bad5.json");
    expect_load_error(write_text("bad6.json", "{\"a\": 99999999999}"), good_m, DF_EFORMAT, "bad6.json");
    expect_load_error(write_text("bad7.json", "{\"a\": 0}"), good_m, DF_EFORMAT, "bad7.json"); /* no specials */
    expect_load_error(write_text("bad8.json", "{\"a\xff\": 0}"), good_m, DF_EFORMAT, "bad8.json");
    expect_load_error(good_v, write_text("bad1.txt", "#version: 0.2\na b c\n"), DF_EFORMAT, "bad1.txt");
    expect_load_error(good_v, write_text("bad2.txt", "#version: 0.2\nab\n"), DF_EFORMAT, "bad2.txt");
    expect_load_error(good_v, write_text("bad3.txt", "#version: 0.2\na \xff\n"), DF_EFORMAT, "bad3.txt");
    cr_expect(strstr(df_last_error(), "line 2") || strstr(df_last_error(), "UTF-8"), "%s", df_last_error());
    cr_expect_eq(df_tokenizer_load(NULL, good_m, &tok), DF_EINVAL);
    cr_expect_eq(df_tokenizer_load(good_v, good_m, NULL), DF_EINVAL);
    cr_expect_eq(df_tokenizer_new_default(NULL), DF_EINVAL);
}

/* ---- out of memory: every allocation failing in turn fails cleanly ---- */

Test(tokenizer, out_of_memory)
{
    df_tokenizer *tok = default_tok();
    df_embeddings *e = test_embeddings();
    const char *prompt = "(masterpiece:1.2), a mystyle cat BREAK [blurry], \xe4\xbd\xa0\xe5\xa5\xbd caf\xc3\xa9";
    df_prompt_params p = df_prompt_default_params();
    int done = 0;
    for (long k = 1; k < 100000 && !done; k++) {
        df_alloc_fail_after(k);
        df_token_chunks *c = NULL;
        int rc = df_prompt_tokenize(tok, e, prompt, &p, &c);
        df_alloc_fail_after(0);
        if (rc == DF_OK) {
            cr_expect_gt(c->n_chunks, 1);
            df_token_chunks_free(c);
            done = 1;
        } else {
            cr_assert_eq(rc, DF_ENOMEM, "allocation %ld: %d %s", k, rc, df_last_error());
            cr_assert_null(c);
        }
    }
    cr_expect(done);
    for (long k = 1; k < 100000; k++) {
        df_alloc_fail_after(k);
        df_tokenizer *t = NULL;
        int rc = df_tokenizer_load(FIXTURE_DIR "/tokenizer_tiny_vocab.json", FIXTURE_DIR "/tokenizer_tiny_merges.txt",
                                   &t);
        df_alloc_fail_after(0);
        if (rc == DF_OK) {
            df_tokenizer_free(t);
            break;
        }
        cr_assert_eq(rc, DF_ENOMEM, "allocation %ld: %d %s", k, rc, df_last_error());
    }
    for (long k = 1; k < 100000; k++) {
        df_alloc_fail_after(k);
        df_tokenizer *t = NULL;
        int rc = df_tokenizer_new_default(&t);
        df_alloc_fail_after(0);
        if (rc == DF_OK) {
            df_tokenizer_free(t);
            break;
        }
        cr_assert_eq(rc, DF_ENOMEM, "allocation %ld: %d %s", k, rc, df_last_error());
    }
    for (long k = 1; k < 1000; k++) {
        df_alloc_fail_after(k);
        df_embeddings *x = NULL;
        int rc = df_embeddings_new(&x);
        if (rc == DF_OK) rc = df_embeddings_load(x, tmp_path("x.safetensors"), "y");
        df_alloc_fail_after(0);
        df_embeddings_free(x);
        if (rc == DF_OK) break;
        cr_assert_eq(rc, DF_ENOMEM, "allocation %ld: %d %s", k, rc, df_last_error());
    }
    df_embeddings_free(e);
    df_tokenizer_free(tok);
}
