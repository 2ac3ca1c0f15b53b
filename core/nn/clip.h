/* The CLIP text transformer of Stable Diffusion's text encoders: OpenAI
 * CLIP ViT-L/14 (SD1.x, SDXL's first encoder), OpenCLIP ViT-H/14 (SD2.x) and
 * ViT-bigG/14 (SDXL's second, with its text projection). One implementation,
 * configured from the checkpoint: the weight layout (transformers'
 * CLIPTextModel names or OpenCLIP's, with fused attention projections) and
 * the sizes are read from the tensors themselves. */
#ifndef DF_CLIP_H
#define DF_CLIP_H

#include "../ops.h"
#include "tokenizer.h"
#include "weights.h"

typedef enum { DF_CLIP_LAYOUT_HF = 0, DF_CLIP_LAYOUT_OPENCLIP = 1 } df_clip_layout;

typedef struct df_clip_config {
    df_clip_layout layout;
    int64_t vocab, width, layers, heads, context, ff;
    int64_t proj_dim;   /* text projection output size; 0 when the checkpoint has none */
    df_unary_op act;    /* DF_QUICK_GELU (OpenAI CLIP) or DF_GELU (OpenCLIP) */
    float eps;
} df_clip_config;

typedef struct df_clip df_clip;

/* Loads the encoder whose tensors start with `prefix` in `w` (e.g.
 * "cond_stage_model.transformer.text_model.", "conditioner.embedders.1.model.",
 * or "text_model." in a diffusers text_encoder folder) onto backend `be`
 * (NULL: CPU). Missing or misshapen tensors are errors naming the tensor. */
DF_API int df_clip_load(const df_weights *w, const char *prefix, df_backend *be, df_clip **out);
DF_API void df_clip_free(df_clip *m);
DF_API const df_clip_config *df_clip_get_config(const df_clip *m);

/* Input embeddings (token + position) for `batch` rows of `len` ids:
 * (batch, len, width) on the model's backend. */
DF_API int df_clip_embed_ids(const df_clip *m, const int32_t *ids, int batch, int len, df_tensor **out);
/* The same for tokenised prompt chunks, with textual-inversion vectors put in
 * at their placeholder positions: (n_chunks, 77, width). */
DF_API int df_clip_embed_chunks(const df_clip *m, const df_token_chunks *c, const df_embeddings *emb,
                                df_tensor **out);

typedef struct df_clip_forward_params {
    int layer;       /* which hidden state: -1 the last layer's output, -2 the penultimate, ... */
    int final_norm;  /* apply the final layer norm to it */
    int pooled;      /* also compute the pooled output */
} df_clip_forward_params;

DF_API df_clip_forward_params df_clip_forward_default_params(void); /* -1, final norm, no pooled */

/* x (B, L, width) from df_clip_embed_*; ids (B x L) locate the EOS token for
 * pooling. hidden: (B, L, width). pooled (if asked): the final-layer-normed
 * last hidden state at each row's first EOS, through the text projection when
 * the model has one: (B, proj_dim or width). */
DF_API int df_clip_forward(const df_clip *m, const df_tensor *x, const int32_t *ids,
                           const df_clip_forward_params *p, df_tensor **hidden, df_tensor **pooled);

/* AUTOMATIC1111's emphasis: z (n_chunks, 77, W) multiplied per token by
 * weights (n_chunks x 77), then rescaled per chunk so its mean is what it was. */
DF_API int df_clip_apply_emphasis(df_tensor *z, const float *weights, df_tensor **out);

#endif
