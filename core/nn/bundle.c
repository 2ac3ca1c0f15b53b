#include "bundle.h"

#include "../io/json.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

df_bundle_params df_bundle_default_params(void) { return (df_bundle_params){"epsilon", NULL, 1, 1, 1, NULL, NULL}; }

void df_bundle_free(df_bundle *b)
{
    if (!b) return;
    df_text_encoder_free(b->text);
    df_unet_free(b->unet);
    df_vae_free(b->vae);
    for (int i = 0; i < 4; i++) df_weights_free(b->weights[i]);
    df_free(b);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *family_name(df_text_family f)
{
    return f == DF_FAMILY_SDXL ? "sdxl" : f == DF_FAMILY_SD2 ? "sd2" : "sd1";
}

/* "epsilon" / "v_prediction" from safetensors metadata or a scheduler config. */
static void set_prediction(df_bundle *b, const char *value)
{
    if (!value) return;
    if (!strcmp(value, "v") || !strcmp(value, "v_prediction") || !strcmp(value, "v-prediction"))
        snprintf(b->prediction, sizeof b->prediction, "v_prediction");
    else if (!strcmp(value, "epsilon") || !strcmp(value, "eps"))
        snprintf(b->prediction, sizeof b->prediction, "epsilon");
}

static void prediction_from_scheduler(df_bundle *b, const char *root)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", root);
    char *text = df_read_text_file(path, 1 << 20);
    df_json *j = NULL;
    if (text && df_json_parse(text, strlen(text), &j) == DF_OK) {
        const df_json *p = df_json_get(j, "prediction_type");
        if (p && p->type == DF_JSON_STRING) set_prediction(b, p->str);
    }
    df_json_free(j);
    df_free(text);
    df_clear_error();
}

/* Tensors of a single file that belong to no component: noted, not loaded. */
static int count_ignored(const df_weights *w, char *example, size_t n)
{
    static const char *const known[] = {"model.diffusion_model.", "first_stage_model.", "cond_stage_model.",
                                        "conditioner.embedders."};
    int ignored = 0, count = df_weights_count(w);
    for (int i = 0; i < count; i++) {
        const char *name = df_weights_at(w, i)->name;
        int ok = 0;
        for (size_t k = 0; k < sizeof known / sizeof known[0] && !ok; k++) ok = !strncmp(name, known[k], strlen(known[k]));
        if (!ok && !ignored++) snprintf(example, n, "%s", name);
    }
    return ignored;
}

static int open_component(df_bundle *b, int slot, const char *root, const char *sub, df_weights **out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, sub);
    if (!is_dir(path)) {
        *out = NULL;
        return DF_OK;
    }
    int rc = df_weights_open(path, &b->weights[slot]);
    *out = b->weights[slot];
    return rc;
}

int df_bundle_load(const char *path, df_backend *be, const df_bundle_params *p, df_bundle **out)
{
    *out = NULL;
    df_bundle_params dp = df_bundle_default_params();
    if (!p) p = &dp;
    df_bundle *b = df_calloc(1, sizeof *b);
    if (!b) return DF_ENOMEM;
    set_prediction(b, p->prediction ? p->prediction : "epsilon");
    int rc = DF_OK, folder = is_dir(path);
    df_weights *uw = NULL, *vw = NULL;
    if (folder) {
        if (!rc && p->unet) rc = open_component(b, 0, path, "unet", &uw);
        if (!rc && p->vae && !p->vae_path) rc = open_component(b, 1, path, "vae", &vw);
        if (!rc && p->text) {
            char te[4096];
            snprintf(te, sizeof te, "%s/text_encoder", path);
            if (is_dir(te)) rc = df_text_encoder_load(NULL, path, be, &b->text);
        }
        if (!rc) prediction_from_scheduler(b, path);
        if (!rc && !uw && !vw && !b->text) { /* a component folder itself (vae/, unet/) */
            rc = df_weights_open(path, &b->weights[3]);
            if (!rc && p->vae && df_weights_find(b->weights[3], "decoder.conv_in.weight")) vw = b->weights[3];
            if (!rc && p->unet && df_weights_find(b->weights[3], "down_blocks.0.resnets.0.conv1.weight")) uw = b->weights[3];
        }
    } else {
        rc = df_weights_open(path, &b->weights[0]);
        uw = vw = b->weights[0];
        if (!rc) {
            set_prediction(b, df_weights_metadata(uw, "modelspec.prediction_type"));
            char example[200] = "";
            b->ignored_tensors = count_ignored(uw, example, sizeof example);
            if (b->ignored_tensors)
                df_log(DF_LOG_INFO, "%s: ignored %d tensors of no known component (e.g. %s)", path, b->ignored_tensors,
                       example);
        }
        if (!rc && p->text &&
            (df_weights_find(uw, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight") ||
             df_weights_find(uw, "cond_stage_model.model.token_embedding.weight") ||
             df_weights_find(uw, "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight")))
            rc = df_text_encoder_load(uw, NULL, be, &b->text);
        if (rc || !p->unet || !df_weights_find(uw, "model.diffusion_model.input_blocks.0.0.weight")) uw = NULL;
        int in_checkpoint = !rc && df_weights_find(vw, "first_stage_model.decoder.conv_in.weight");
        int standalone = !rc && !uw && !b->text &&
                         (df_weights_find(vw, "decoder.conv_in.weight") || df_weights_find(vw, "decoder.up.0.block.0.conv1.weight"));
        if (rc || !p->vae || p->vae_path || !(in_checkpoint || standalone)) vw = NULL;
    }
    if (!rc && p->vae && p->vae_path) {
        rc = df_weights_open(p->vae_path, &b->weights[2]);
        vw = b->weights[2];
    }
    if (!rc && uw) {
        df_unet_load_params up = df_unet_load_default_params();
        up.config_path = p->unet_config;
        rc = df_unet_load(uw, NULL, be, &up, &b->unet);
    }
    /* the family: the text side when present, else the UNet's context width */
    if (b->text) {
        b->family = df_text_encoder_family(b->text);
    } else if (b->unet) {
        int ctx = df_unet_get_config(b->unet)->context_dim;
        b->family = df_unet_get_config(b->unet)->adm_in ? DF_FAMILY_SDXL : ctx == 1024 ? DF_FAMILY_SD2 : DF_FAMILY_SD1;
    } else {
        b->family = DF_FAMILY_SD1;
    }
    if (!rc && vw) {
        df_vae_load_params vp = df_vae_load_default_params();
        vp.scaling_factor = b->family == DF_FAMILY_SDXL ? 0.13025f : 0.18215f;
        vp.config_path = p->vae_config;
        rc = df_vae_load(vw, NULL, be, &vp, &b->vae);
    }
    if (!rc && !b->text && !b->unet && !b->vae)
        rc = df_error(DF_ENOTFOUND, "%s: no text encoder, UNet or VAE found", path);
    if (rc) {
        df_bundle_free(b);
        return rc;
    }
    b->family_name = family_name(b->family);
    b->vae_scale = b->vae ? df_vae_get_config(b->vae)->scaling_factor : (b->family == DF_FAMILY_SDXL ? 0.13025f : 0.18215f);
    df_log(DF_LOG_INFO, "%s: %s model (%s%s%s), %s", path, b->family_name, b->text ? "text encoder " : "",
           b->unet ? "unet " : "", b->vae ? "vae" : "", b->prediction);
    *out = b;
    return DF_OK;
}
