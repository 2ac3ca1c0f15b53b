/* What the prompt parser (tokenizer_prompt.c) needs from the tokenizer
 * (tokenizer.c) beyond the public API. */
#ifndef DF_TOKENIZER_INTERNAL_H
#define DF_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

typedef struct df_tokenizer_ids {
    int32_t bos, eos; /* <|startoftext|>, <|endoftext|> */
    int32_t comma;    /* ",</w>", or -1 when the vocabulary has none */
} df_tokenizer_ids;

DF_INTERNAL df_tokenizer_ids df_tokenizer_special_ids(const df_tokenizer *tok);

/* df_tokenizer_encode on text[0, n) (not NUL-terminated); `what` names the
 * text in error messages ("prompt"). */
DF_INTERNAL int df_tokenizer_encode_n(const df_tokenizer *tok, const char *text, size_t n, const char *what,
                                      int32_t **ids, int *n_ids);

#endif
