/* One call to open a model as users have it — a single-file checkpoint
 * (SD1.x / SD2.x / SDXL, original LDM names) or a diffusers model folder —
 * and get whichever of text encoder(s), UNet and VAE it holds, with the
 * family recognised from the tensors. */
#ifndef DF_BUNDLE_H
#define DF_BUNDLE_H

#include "text_encoder.h"
#include "unet.h"
#include "vae.h"

typedef struct df_bundle {
    df_text_family family;
    const char *family_name;   /* "sd1", "sd2", "sdxl" */
    df_text_encoder *text;     /* NULL when the checkpoint has none */
    df_unet *unet;
    df_vae *vae;
    /* "epsilon" or "v_prediction": from the checkpoint's metadata or the
     * folder's scheduler config, else the load parameter. */
    char prediction[16];
    float vae_scale;           /* the latent scaling factor */
    int ignored_tensors;       /* tensors of no known component (EMA copies, ...) */
    /* internal */
    df_weights *weights[4];
} df_bundle;

typedef struct df_bundle_params {
    const char *prediction;    /* used when the checkpoint does not say (default "epsilon"; SD2.x
                                  768 models need "v_prediction") */
    const char *vae_path;      /* a standalone VAE (file or folder) replacing the checkpoint's */
    int text, unet, vae;       /* which components to load (default all 1) */
    /* diffusers config.json files for a single file's UNet / VAE, for what
     * the tensors cannot tell (as diffusers' from_single_file(config=)) */
    const char *unet_config, *vae_config;
} df_bundle_params;

DF_API df_bundle_params df_bundle_default_params(void);
DF_API int df_bundle_load(const char *path, df_backend *be, const df_bundle_params *p, df_bundle **out);
DF_API void df_bundle_free(df_bundle *b);

#endif
