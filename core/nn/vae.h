/* The Stable Diffusion VAE (diffusers' AutoencoderKL, KL-f8): encoder to
 * the latent distribution's mean and log-variance, sampling, decoder. From a
 * diffusers vae/ folder, a single-file checkpoint's first_stage_model.*, or a
 * standalone VAE file in either layout. */
#ifndef DF_VAE_H
#define DF_VAE_H

#include "../ops.h"
#include "../rng.h"
#include "weights.h"

#define DF_VAE_MAX_LEVELS 4

typedef struct df_vae_config {
    int image_channels, latent_channels;
    int levels, layers_per_block;
    int channels[DF_VAE_MAX_LEVELS];
    int groups;
    float scaling_factor;  /* 0.18215 (SD1/2), 0.13025 (SDXL): from config.json or metadata, else the load parameter */
} df_vae_config;

typedef struct df_vae df_vae;

typedef struct df_vae_load_params {
    float scaling_factor;     /* used when the checkpoint does not say (default 0.18215) */
    const char *config_path;  /* a diffusers vae config.json for a single file (groups,
                                 scaling factor), as from_single_file(config=); NULL: none */
} df_vae_load_params;

DF_API df_vae_load_params df_vae_load_default_params(void);

/* prefix: "" (diffusers folder, or a standalone diffusers-layout file),
 * "first_stage_model." (single-file checkpoint); NULL: detected. */
DF_API int df_vae_load(df_weights *w, const char *prefix, df_backend *be, const df_vae_load_params *p, df_vae **out);
DF_API void df_vae_free(df_vae *v);
DF_API const df_vae_config *df_vae_get_config(const df_vae *v);

/* img (B, 3, H, W) in [-1, 1] -> moments (B, 2·latent, H/8, W/8): mean, then log-variance. */
DF_API int df_vae_encode(const df_vae *v, const df_tensor *img, df_tensor **moments);
/* A latent from moments: the mean when rng is NULL, else mean + σ·noise with
 * σ = exp(½·clamp(logvar, -30, 20)) and noise from rng (torch's order). Not scaled. */
DF_API int df_vae_sample(const df_tensor *moments, df_rng *rng, df_tensor **latent);
/* z (B, latent, h, w), unscaled -> (B, 3, 8h, 8w), roughly in [-1, 1]. */
DF_API int df_vae_decode(const df_vae *v, const df_tensor *z, df_tensor **img);

/* Tiled decoding and encoding for large images, as diffusers' enable_tiling():
 * tiles of `tile` latents (decode) or pixels (encode) at a stride of
 * tile·(1 − overlap), each run alone, seams blended linearly over
 * overlap·(output tile) rows and columns, then cropped and joined. Memory is
 * bounded by one tile's activations. tile <= 0: 64 latents / 512 pixels;
 * overlap <= 0: 0.25. */
DF_API int df_vae_decode_tiled(const df_vae *v, const df_tensor *z, int tile, float overlap, df_tensor **img);
DF_API int df_vae_encode_tiled(const df_vae *v, const df_tensor *img, int tile, float overlap, df_tensor **moments);

#endif
