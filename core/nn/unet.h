/* The Stable Diffusion UNet (diffusers' UNet2DConditionModel): SD1.x, SD2.x,
 * SDXL and inpainting variants in one implementation, configured from the
 * checkpoint's tensor names and shapes. Weights come from a diffusers unet/
 * folder or a single-file checkpoint's model.diffusion_model.* (the original
 * LDM names are mapped onto diffusers' at load). */
#ifndef DF_UNET_H
#define DF_UNET_H

#include "../ops.h"
#include "weights.h"

#define DF_UNET_MAX_LEVELS 4

typedef struct df_unet_config {
    int in_channels, out_channels;
    int levels, layers_per_block;
    int channels[DF_UNET_MAX_LEVELS];
    int attention[DF_UNET_MAX_LEVELS];   /* level has cross-attention transformers */
    int heads[DF_UNET_MAX_LEVELS];       /* attention heads per level (mid block: the last level's) */
    int context_dim;
    int linear_proj;                     /* proj_in/out are linear (SD2, SDXL) or 1x1 convs (SD1) */
    int groups;
    float eps;
    int flip_sin_to_cos;
    float freq_shift;
    int time_embed_dim;                  /* 4 x channels[0] */
    int adm_in;                          /* SDXL's text_time embedding input (2816), 0 without */
    int addition_time_embed_dim;         /* per size/crop value (256) */
    int sample_size;                     /* the latent size it was trained at (config.json), 0: not said */
} df_unet_config;

typedef struct df_unet df_unet;

typedef struct df_unet_load_params {
    /* A diffusers unet config.json to take what shapes cannot tell (heads,
     * norm groups) from, as diffusers' from_single_file(config=) does; NULL:
     * the folder's own config.json, else the SD conventions (8 heads with a
     * 768-wide context, 64-wide heads otherwise; 32 groups). */
    const char *config_path;
} df_unet_load_params;

DF_API df_unet_load_params df_unet_load_default_params(void);

/* `prefix`: "" for a diffusers unet/ folder, "model.diffusion_model." for a
 * single-file checkpoint (detected when NULL). `w` is not modified except for
 * the name aliases the LDM layout needs; it must outlive the UNet only while
 * loading (weights are copied or referenced, never held twice). */
DF_API int df_unet_load(df_weights *w, const char *prefix, df_backend *be, const df_unet_load_params *p,
                        df_unet **out);
DF_API void df_unet_free(df_unet *u);
DF_API const df_unet_config *df_unet_get_config(const df_unet *u);

/* SDXL's extra conditioning: pooled text embedding (B, P) and the six size
 * values (B, 6): original h, w, crop top, left, target h, w. */
typedef struct df_unet_extra {
    const df_tensor *text_embeds;
    const df_tensor *time_ids;
} df_unet_extra;

/* x (B, in, H, W) latents; timesteps: B values (one per sample, as CFG
 * batches need); context (B, M, context_dim); extra NULL unless SDXL.
 * -> (B, out, H, W) on the UNet's backend. Inputs may live on any backend
 * (they are moved when they are elsewhere). */
DF_API int df_unet_forward(const df_unet *u, const df_tensor *x, const float *timesteps, const df_tensor *context,
                           const df_unet_extra *extra, df_tensor **out);

#endif
