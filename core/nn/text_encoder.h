/* Prompt conditioning for the Stable Diffusion families: the text encoder(s)
 * of a checkpoint with their tokenizer, turning an AUTOMATIC1111-style prompt
 * into the cross-attention context (and SDXL's pooled embedding).
 *
 *   SD1.x  CLIP ViT-L/14: last hidden state after the final norm, pad with EOS
 *   SD2.x  OpenCLIP ViT-H/14: penultimate hidden state, then the final norm, pad 0
 *          (diffusers' converted folder stores 23 of the 24 layers: its last one)
 *   SDXL   ViT-L penultimate ++ bigG penultimate (no final norm) = 2048 wide;
 *          pooled: bigG's final-normed EOS state through its text projection
 *
 * clip_skip N (A1111's setting; 1 = the default) moves N-1 layers further up. */
#ifndef DF_TEXT_ENCODER_H
#define DF_TEXT_ENCODER_H

#include "clip.h"

typedef enum { DF_FAMILY_SD1 = 1, DF_FAMILY_SD2 = 2, DF_FAMILY_SDXL = 3 } df_text_family;

typedef struct df_text_encoder df_text_encoder;

/* From an opened single-file checkpoint (`root_dir` NULL), or from a diffusers
 * model folder `root_dir` (text_encoder/, text_encoder_2/, tokenizer/; `w`
 * NULL). The family is recognised from the tensors. */
DF_API int df_text_encoder_load(const df_weights *w, const char *root_dir, df_backend *be, df_text_encoder **out);
DF_API void df_text_encoder_free(df_text_encoder *te);
DF_API df_text_family df_text_encoder_family(const df_text_encoder *te);
DF_API const df_clip *df_text_encoder_clip(const df_text_encoder *te, int i); /* 0, 1 (SDXL); NULL past the end */
DF_API int64_t df_text_encoder_width(const df_text_encoder *te);          /* 768 / 1024 / 2048 */

typedef struct df_text_encode_params {
    int clip_skip;                 /* 1 (default): the family's usual layer */
    int emphasis;                  /* A1111 emphasis weights (default 1) */
    const df_embeddings *embeddings; /* textual inversion, or NULL */
} df_text_encode_params;

DF_API df_text_encode_params df_text_encode_default_params(void);

/* cond: (1, 77·chunks, width) on the encoder's backend; pooled (SDXL only,
 * else NULL): (1, projection dim). `pooled` may be NULL. */
DF_API int df_text_encoder_encode(const df_text_encoder *te, const char *prompt, const df_text_encode_params *p,
                                  df_tensor **cond, df_tensor **pooled);

#endif
