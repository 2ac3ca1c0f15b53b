/* The CLIP byte-level BPE tokenizer (as OpenAI CLIP / transformers'
 * CLIPTokenizer) and AUTOMATIC1111's prompt syntax on top of it: emphasis
 * weights, BREAK, chunks of 75 tokens, textual-inversion embeddings. */
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
/* vocab.json + merges.txt, e.g. a diffusers folder's tokenizer/. */
DF_API int df_tokenizer_load(const char *vocab_json, const char *merges_txt, df_tokenizer **out);
DF_API void df_tokenizer_free(df_tokenizer *tok);

/* Plain tokenisation (no BOS/EOS, no emphasis parsing), exactly as
 * CLIPTokenizer(text, add_special_tokens=False). *ids is allocated (df_free),
 * *n its length. */
DF_API int df_tokenizer_encode(const df_tokenizer *tok, const char *text, int32_t **ids, int *n);
/* The token string of an id ("a</w>"), or NULL. */
DF_API const char *df_tokenizer_token(const df_tokenizer *tok, int32_t id);

/* Textual-inversion embeddings known to the prompt parser: name -> vectors
 * for each encoder width present in the file ("emb_params" / "clip_l" 768,
 * "clip_g" 1280, or a single unnamed tensor). */
typedef struct df_embeddings df_embeddings;
DF_API int df_embeddings_new(df_embeddings **out);
DF_API void df_embeddings_free(df_embeddings *e);
/* Loads one .safetensors embedding under `name` (default: the file's base
 * name without extension). */
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
     * instead of the token table: ids[] holds a placeholder there. */
    int n_custom;
    struct df_custom_token {
        int chunk, pos;        /* where */
        const char *name;      /* embedding name (borrowed from the df_embeddings) */
        int vector;            /* row of that embedding */
    } *custom;
} df_token_chunks;

typedef struct df_prompt_params {
    int pad_with_eos;          /* 1: pad with EOS (CLIP ViT-L); 0: pad with 0 (OpenCLIP) */
    int comma_backtrack;       /* A1111's comma padding backtrack (default 20; 0 off) */
    int emphasis;              /* 1: parse A1111 emphasis syntax (default); 0: literal text */
    int64_t embedding_width;   /* which textual-inversion vectors to use (768 / 1280); 0: none */
} df_prompt_params;

DF_API df_prompt_params df_prompt_default_params(void);

/* Parses `prompt` with A1111's rules and tokenises it into chunks. `emb` may be
 * NULL. Free the result with df_token_chunks_free. */
DF_API int df_prompt_tokenize(const df_tokenizer *tok, const df_embeddings *emb, const char *prompt,
                              const df_prompt_params *p, df_token_chunks **out);
DF_API void df_token_chunks_free(df_token_chunks *c);

/* A1111's emphasis parser alone: the prompt as (text, weight) segments, a
 * BREAK as a segment with text "BREAK" and weight -1. *texts / *weights are
 * allocated arrays of *n entries (free with df_prompt_segments_free). */
DF_API int df_prompt_parse(const char *prompt, char ***texts, float **weights, int *n);
DF_API void df_prompt_segments_free(char **texts, float *weights, int n);

#endif
