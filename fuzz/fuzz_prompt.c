/* libFuzzer: the prompt path: AUTOMATIC1111 emphasis parsing ((x:1.2), [x], BREAK, escapes), the CLIP
 * tokenizer (text cleanup, UTF-8, byte-level BPE) and chunking, on the shipped CLIP vocabulary. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "df.h"
#include "nn/tokenizer.h"

static df_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return df_tokenizer_new_default(&tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok || size > 4096) return 0;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char **texts = NULL;
    float *weights = NULL;
    int n = 0;
    if (df_prompt_parse(s, &texts, &weights, &n) == DF_OK) df_prompt_segments_free(texts, weights, n);
    int32_t *ids = NULL;
    int nid = 0;
    if (df_tokenizer_encode(tok, s, &ids, &nid) == DF_OK) {
        for (int i = 0; i < nid; i++) (void)df_tokenizer_token(tok, ids[i]);
        df_free(ids);
    }
    df_token_chunks *c = NULL;
    df_prompt_params p = df_prompt_default_params();
    p.comma_backtrack = size & 1 ? 20 : 0;
    p.emphasis = !(size & 2);
    if (df_prompt_tokenize(tok, NULL, s, &p, &c) == DF_OK) df_token_chunks_free(c);
    free(s);
    return 0;
}
