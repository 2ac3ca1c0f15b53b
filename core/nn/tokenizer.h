/* The CLIP byte-level BPE tokenizer (as OpenAI CLIP / transformers'
 * CLIPTokenizer) and AUTOMATIC1111's prompt syntax on top of it: emphasis
 * weights, BREAK, chunks of 75 tokens, textual-inversion embeddings.
 *
 * Text is cleaned as transformers 4.x's CLIPTokenizer does without ftfy (its
 * BasicTokenizer: control and format characters dropped, whitespace runs to
 * one space, spaces around CJK ideographs, NFC, Python's lower()); the
 * Unicode tables come from the reference's Python (Unicode 14.0). Text is
 * UTF-8: invalid UTF-8 (a C caller can pass bytes Python never sees) is
 * DF_EINVAL, "…invalid UTF-8 at byte N", from every function taking text. */
#ifndef DF_TOKENIZER_H
#define DF_TOKENIZER_H

#include "../tensor.h"

#define DF_CLIP_BOS 49406
#define DF_CLIP_EOS 49407
#define DF_CLIP_CONTEXT 77      /* tokens per chunk including BOS and EOS */
#define DF_CLIP_CHUNK 75        /* prompt tokens per chunk */

typedef struct df_tokenizer df_tokenizer;

/* The standard CLIP vocabulary shipped with difusa (no files needed). */
DF_API int df_tokenizer_new_default(df_tokenizer **out);
/* vocab.json + merges.txt, e.g. a diffusers folder's tokenizer/. ids come
 * from vocab.json, which must hold <|startoftext|> and <|endoftext|> (the
 * unknown token); merges.txt's first line is skipped and at most 48 894
 * merges are read, as CLIPTokenizer does. A missing or malformed file is
 * DF_EIO / DF_EFORMAT with a message naming it. */
DF_API int df_tokenizer_load(const char *vocab_json, const char *merges_txt, df_tokenizer **out);
DF_API void df_tokenizer_free(df_tokenizer *tok);

/* Plain tokenisation (no BOS/EOS, no emphasis parsing), exactly as
 * CLIPTokenizer(text, add_special_tokens=False). *ids is allocated (df_free),
 * *n its length. */
DF_API int df_tokenizer_encode(const df_tokenizer *tok, const char *text, int32_t **ids, int *n);
/* The token string of an id ("a</w>"), or NULL. */
DF_API const char *df_tokenizer_token(const df_tokenizer *tok, int32_t id);
/* Largest id + 1 (49408 for the standard vocabulary): every id the
 * tokenizer produces is below it. */
DF_API int df_tokenizer_vocab_size(const df_tokenizer *tok);

/* Textual-inversion embeddings known to the prompt parser: name -> vectors
 * for each encoder width present in the file ("emb_params" / "clip_l" 768,
 * "clip_g" 1280, or a single unnamed tensor). */
typedef struct df_embeddings df_embeddings;
DF_API int df_embeddings_new(df_embeddings **out);
DF_API void df_embeddings_free(df_embeddings *e);
/* Loads one .safetensors embedding under `name` (default: the file's base
 * name without its last extension, as A1111 names them). The file holds one
 * tensor (any name, e.g. "emb_params"; (n_vectors, width) or (width)), or
 * "clip_l" and "clip_g" (SDXL) with the same number of vectors; 1 to 75
 * vectors. Anything else, or a name already loaded, is an error naming the file. */
DF_API int df_embeddings_load(df_embeddings *e, const char *path, const char *name);
/* Vectors of embedding `name` for encoder width `width`: an f32 CPU tensor
 * (n_vectors, width) borrowed from e, or NULL when absent. */
DF_API const df_tensor *df_embeddings_get(const df_embeddings *e, const char *name, int64_t width);

/* A parsed and tokenised prompt, ready for a text encoder: n_chunks chunks of
 * DF_CLIP_CONTEXT tokens (BOS, up to 75 prompt tokens, EOS, padding). */
typedef struct df_token_chunks {
    int n_chunks;
    int32_t *ids;      /* n_chunks x 77 */
    float *weights;    /* n_chunks x 77: emphasis multiplier per token (1 for BOS/EOS/padding) */
    /* Positions whose input embedding comes from a textual-inversion vector
     * instead of the token table: ids[] holds a placeholder there (0, as in
     * A1111). One entry per vector; pos counts BOS, so it is 1 to 75. */
    int n_custom;
    struct df_custom_token {
        int chunk, pos;        /* where */
        const char *name;      /* embedding name (borrowed from the df_embeddings) */
        int vector;            /* row of that embedding */
    } *custom;
} df_token_chunks;

typedef struct df_prompt_params {
    int pad_with_eos;          /* 1: pad with EOS (CLIP ViT-L); 0: pad with 0 (OpenCLIP): as A1111,
                                  every id after a chunk's first EOS becomes 0 */
    int comma_backtrack;       /* A1111's comma padding backtrack (default 20; 0 off) */
    int emphasis;              /* 1: parse A1111 emphasis syntax (default); 0: literal text */
    int64_t embedding_width;   /* which textual-inversion vectors to use (768 / 1280); 0: none */
} df_prompt_params;

/* {pad_with_eos 1, comma_backtrack 20, emphasis 1, embedding_width 768}: SD1.x. */
DF_API df_prompt_params df_prompt_default_params(void);

/* Parses `prompt` with A1111's rules and tokenises it into chunks (at least
 * one), as A1111's tokenize_line: each segment tokenised on its own, a chunk
 * closed at 75 tokens (after the last comma when it is at most
 * comma_backtrack tokens back), a BREAK closing the chunk. `emb` may be NULL;
 * with embeddings (and embedding_width > 0) those with vectors of that width
 * are matched as A1111 does, by their name's tokens anywhere in a segment's
 * tokens (longest name first), and "embedding:NAME" (NAME up to whitespace or
 * a comma) names one explicitly: DF_ENOTFOUND when no such embedding has
 * vectors of that width. Embedding vectors never straddle chunks. Unlike A1111,
 * vectors moved by the comma backtrack keep their positions right. An emphasis
 * weight float() rejects ("(x:1.2.3)") is DF_EINVAL, as A1111 raises. `p` NULL:
 * the defaults. Free the result with df_token_chunks_free. */
DF_API int df_prompt_tokenize(const df_tokenizer *tok, const df_embeddings *emb, const char *prompt,
                              const df_prompt_params *p, df_token_chunks **out);
DF_API void df_token_chunks_free(df_token_chunks *c);

/* A1111's emphasis parser alone (parse_prompt_attention): the prompt as
 * (text, weight) segments, a BREAK as a segment with text "BREAK" and weight
 * -1. Weights are A1111's double products, rounded to float; as in A1111 a
 * BREAK inside brackets is multiplied too ("(a BREAK b)" gives -1.1) and is
 * then no BREAK but the word. *texts / *weights are allocated arrays of *n
 * entries (free with df_prompt_segments_free). */
DF_API int df_prompt_parse(const char *prompt, char ***texts, float **weights, int *n);
DF_API void df_prompt_segments_free(char **texts, float *weights, int n);

#endif
