/* DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers"): the
 * class-conditional latent transformer — patch embedding, timestep and class
 * embedders (the last class is the null class used for guidance), adaLN-Zero
 * blocks, final layer, unpatchify — for every size (S/B/L/XL, patch 2/4/8),
 * configured from the checkpoint's shapes. Weights: the original checkpoint
 * layout (facebookresearch/DiT's state dict, as .safetensors) or a diffusers
 * DiTTransformer2DModel / Transformer2DModel folder (mapped onto the
 * original names). */
#ifndef DF_DIT_H
#define DF_DIT_H

#include "../ops.h"
#include "weights.h"

typedef struct df_dit_config {
    int in_channels, out_channels;  /* out = 2 x in with learned sigma */
    int hidden, depth, heads, patch, mlp_hidden;
    int num_classes;                /* without the null class (which is index num_classes) */
    int learn_sigma;
    /* The two places where diffusers' DiT computes another function than the
     * original DiT: its timestep embedding divides by half - 1 (shift 1, not
     * 0) and its MLP LayerNorm has eps 1e-5 (not 1e-6). Each layout gets its
     * own semantics: original checkpoints the original's, diffusers folders
     * diffusers'. */
    float time_shift, mlp_eps;
} df_dit_config;

typedef struct df_dit df_dit;

typedef struct df_dit_load_params {
    int heads; /* 0: from a diffusers config, else the DiT sizes' (S 6, B 12, L 16, XL 16), else 64-wide heads */
} df_dit_load_params;

DF_API df_dit_load_params df_dit_load_default_params(void);
DF_API int df_dit_load(df_weights *w, df_backend *be, const df_dit_load_params *p, df_dit **out);
DF_API void df_dit_free(df_dit *m);
DF_API const df_dit_config *df_dit_get_config(const df_dit *m);

/* x (B, in, H, W) latents (H, W multiples of the patch), timesteps and class
 * labels (B values each; label num_classes is the null class) ->
 * (B, out, H, W): the noise prediction, then the learned variance half when
 * the model has one. */
DF_API int df_dit_forward(const df_dit *m, const df_tensor *x, const float *timesteps, const int32_t *labels,
                          df_tensor **out);

#endif
