/* AutoencoderKL: config, LDM name mapping, encoder, sampling, decoder. */
#include "vae.h"

#include "../backend.h"
#include "../io/json.h"
#include "blocks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vae_level {
    nn_resnet res[4];
    df_tensor *sample_w, *sample_b;
} vae_level;

typedef struct vae_half { /* encoder or decoder */
    df_tensor *conv_in_w, *conv_in_b, *norm_out_w, *norm_out_b, *conv_out_w, *conv_out_b;
    vae_level level[DF_VAE_MAX_LEVELS];
    nn_resnet mid_res[2];
    nn_spatial_attn mid_attn;
} vae_half;

struct df_vae {
    df_vae_config cfg;
    df_backend *be;
    vae_half enc, dec;
    df_tensor *quant_w, *quant_b, *post_quant_w, *post_quant_b;
};

const df_vae_config *df_vae_get_config(const df_vae *v) { return &v->cfg; }

df_vae_load_params df_vae_load_default_params(void) { return (df_vae_load_params){0.18215f, NULL}; }

#define EPS 1e-6f
#define LDM "first_stage_model."
#define NS "vae."

/* ---- the original (LDM) names, mapped onto diffusers' ---- */

/* diffusers' name for an LDM VAE name (after "first_stage_model."), or 0. */
static int ldm_to_diffusers(const char *s, int levels, char *out, size_t n)
{
    static const char *const parts[][2] = {{"nin_shortcut.", "conv_shortcut."}, {"norm.", "group_norm."},
                                           {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."},
                                           {"proj_out.", "to_out.0."}};
    char half[16], rest[300];
    int a, b, used = 0;
    const char *r;
    if (!strncmp(s, "quant_conv.", 11) || !strncmp(s, "post_quant_conv.", 16)) return snprintf(out, n, "%s", s), 1;
    if (sscanf(s, "%15[a-z].%n", half, &used) != 1 || !used || (strcmp(half, "encoder") && strcmp(half, "decoder")))
        return 0;
    r = s + used;
    int dec = half[0] == 'd';
    if (!strncmp(r, "norm_out.", 9)) return snprintf(out, n, "%s.conv_norm_out.%s", half, r + 9), 1;
    if (!strncmp(r, "conv_in.", 8) || !strncmp(r, "conv_out.", 9)) return snprintf(out, n, "%s.%s", half, r), 1;
    const char *tail = NULL;
    char where[200];
    used = 0;
    if (sscanf(r, dec ? "up.%d.block.%d.%n" : "down.%d.block.%d.%n", &a, &b, &used) == 2 && used) {
        snprintf(where, sizeof where, "%s.%s.%d.resnets.%d.", half, dec ? "up_blocks" : "down_blocks",
                 dec ? levels - 1 - a : a, b);
        tail = r + used;
    } else if ((used = 0, sscanf(r, dec ? "up.%d.upsample.conv.%n" : "down.%d.downsample.conv.%n", &a, &used)) == 1 &&
               used) {
        return snprintf(out, n, "%s.%s.%d.%s.0.conv.%s", half, dec ? "up_blocks" : "down_blocks", dec ? levels - 1 - a : a,
                        dec ? "upsamplers" : "downsamplers", r + used),
               1;
    } else if ((used = 0, sscanf(r, "mid.block_%d.%n", &a, &used)) == 1 && used) {
        snprintf(where, sizeof where, "%s.mid_block.resnets.%d.", half, a - 1);
        tail = r + used;
    } else if (!strncmp(r, "mid.attn_1.", 11)) {
        snprintf(where, sizeof where, "%s.mid_block.attentions.0.", half);
        tail = r + 11;
    } else {
        return 0;
    }
    snprintf(rest, sizeof rest, "%s", tail);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t l = strlen(parts[i][0]);
        if (!strncmp(tail, parts[i][0], l)) {
            snprintf(rest, sizeof rest, "%s%s", parts[i][1], tail + l);
            break;
        }
    }
    return snprintf(out, n, "%.190s%.200s", where, rest), 1;
}

static int alias_names(df_weights *w, const char *prefix, int ldm)
{
    int levels = 0;
    if (ldm)
        while (df_weights_findf(w, "%sencoder.down.%d.block.0.conv1.weight", prefix, levels)) levels++;
    /* diffusers' older attention names, still in some vae/ folders */
    static const char *const old[][2] = {{"query.", "to_q."}, {"key.", "to_k."}, {"value.", "to_v."}, {"proj_attn.", "to_out.0."}};
    int n = df_weights_count(w), unknown = 0, rc = DF_OK;
    size_t pl = strlen(prefix);
    char first[160] = "";
    for (int i = 0; i < n && !rc; i++) {
        const char *name = df_weights_at(w, i)->name;
        if (strncmp(name, prefix, pl)) continue;
        char d[400], full[420];
        if (ldm) {
            if (!ldm_to_diffusers(name + pl, levels, d, sizeof d)) {
                if (!unknown++) snprintf(first, sizeof first, "%s", name);
                continue;
            }
        } else {
            snprintf(d, sizeof d, "%s", name + pl);
            for (size_t k = 0; k < sizeof old / sizeof old[0]; k++) {
                char *at = strstr(d, old[k][0]);
                if (at && strstr(d, "attentions.")) {
                    char tmp[400];
                    snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(at - d), d, old[k][1], at + strlen(old[k][0]));
                    snprintf(d, sizeof d, "%s", tmp);
                }
            }
        }
        snprintf(full, sizeof full, NS "%s", d);
        rc = df_weights_add_alias(w, full, name);
    }
    if (!rc && unknown)
        rc = df_error(DF_EFORMAT, "%s: %d VAE tensors with unknown names, e.g. %s", df_weights_path(w), unknown, first);
    return rc;
}

/* ---- loading ---- */

static void load_half(nn_loader *L, const df_vae_config *c, vae_half *h, int dec)
{
    const char *hn = dec ? NS "decoder." : NS "encoder.";
    h->conv_in_w = nn_get(L, 0, "%sconv_in.weight", hn);
    h->conv_in_b = nn_get(L, 0, "%sconv_in.bias", hn);
    h->norm_out_w = nn_get(L, 0, "%sconv_norm_out.weight", hn);
    h->norm_out_b = nn_get(L, 0, "%sconv_norm_out.bias", hn);
    h->conv_out_w = nn_get(L, 0, "%sconv_out.weight", hn);
    h->conv_out_b = nn_get(L, 0, "%sconv_out.bias", hn);
    nn_expect(L, h->conv_in_w, hn, "conv_in.weight", 4, -1, dec ? c->latent_channels : c->image_channels, 3, 3);
    nn_expect(L, h->conv_out_w, hn, "conv_out.weight", 4, dec ? c->image_channels : 2 * c->latent_channels, -1, 3, 3);
    if (!L->rc) nn_expect(L, h->norm_out_w, hn, "conv_norm_out.weight", 1, (int)h->conv_out_w->shape[1]);
    char p[300];
    int nres = dec ? c->layers_per_block + 1 : c->layers_per_block;
    for (int i = 0; i < c->levels; i++) {
        vae_level *lv = &h->level[i];
        for (int j = 0; j < nres; j++) {
            snprintf(p, sizeof p, "%s%s.%d.resnets.%d.", hn, dec ? "up_blocks" : "down_blocks", i, j);
            nn_resnet_load(L, &lv->res[j], p, c->groups, EPS);
        }
        if (i < c->levels - 1) {
            lv->sample_w = nn_get(L, 0, dec ? "%sup_blocks.%d.upsamplers.0.conv.weight" : "%sdown_blocks.%d.downsamplers.0.conv.weight", hn, i);
            lv->sample_b = nn_get(L, 0, dec ? "%sup_blocks.%d.upsamplers.0.conv.bias" : "%sdown_blocks.%d.downsamplers.0.conv.bias", hn, i);
        }
    }
    for (int j = 0; j < 2; j++) {
        snprintf(p, sizeof p, "%smid_block.resnets.%d.", hn, j);
        nn_resnet_load(L, &h->mid_res[j], p, c->groups, EPS);
    }
    snprintf(p, sizeof p, "%smid_block.attentions.0.", hn);
    nn_spatial_attn_load(L, &h->mid_attn, p, c->groups);
}

static void free_half(vae_half *h)
{
    nn_free_tensors(&h->conv_in_w, 6);
    for (int i = 0; i < DF_VAE_MAX_LEVELS; i++) {
        for (int j = 0; j < 4; j++) nn_resnet_free(&h->level[i].res[j]);
        nn_free_tensors(&h->level[i].sample_w, 2);
    }
    nn_resnet_free(&h->mid_res[0]);
    nn_resnet_free(&h->mid_res[1]);
    nn_spatial_attn_free(&h->mid_attn);
}

void df_vae_free(df_vae *v)
{
    if (!v) return;
    free_half(&v->enc);
    free_half(&v->dec);
    nn_free_tensors(&v->quant_w, 4);
    df_free(v);
}

static const df_st_info *findns(const df_weights *w, const char *fmt, int a)
{
    char name[300];
    snprintf(name, sizeof name, fmt, a);
    return df_weights_findf(w, NS "%s", name);
}

static void read_config(const df_weights *w, const char *text, df_vae_config *c)
{
    df_json *root = NULL;
    if (text && df_json_parse(text, strlen(text), &root) == DF_OK) {
        const df_json *v = df_json_get(root, "scaling_factor");
        double d;
        if (v && v->type == DF_JSON_NUMBER && df_json_double(v, &d) == DF_OK) c->scaling_factor = (float)d;
        v = df_json_get(root, "norm_num_groups");
        if (v && v->type == DF_JSON_NUMBER && df_json_double(v, &d) == DF_OK) c->groups = (int)d;
        df_json_free(root);
    }
    df_clear_error();
    const char *meta = df_weights_metadata(w, "modelspec.vae_scaling_factor");
    if (meta) c->scaling_factor = strtof(meta, NULL);
}

int df_vae_load(df_weights *w, const char *prefix, df_backend *be, const df_vae_load_params *p, df_vae **out)
{
    *out = NULL;
    df_vae_load_params dp = df_vae_load_default_params();
    if (!p) p = &dp;
    if (!prefix) prefix = df_weights_find(w, LDM "encoder.conv_in.weight") || df_weights_find(w, LDM "decoder.conv_in.weight") ? LDM : "";
    int ldm = df_weights_findf(w, "%sencoder.down.0.block.0.conv1.weight", prefix) != NULL ||
              df_weights_findf(w, "%sdecoder.up.0.block.0.conv1.weight", prefix) != NULL;
    int rc;
    if (!df_weights_find(w, NS "decoder.conv_in.weight") && (rc = alias_names(w, prefix, ldm))) return rc;
    df_vae *v = df_calloc(1, sizeof *v);
    if (!v) return DF_ENOMEM;
    v->be = be ? be : df_backend_cpu();
    df_vae_config *c = &v->cfg;
    const df_st_info *ci = findns(w, "decoder.conv_out.weight", 0), *pq = findns(w, "post_quant_conv.weight", 0);
    if (!ci || !pq) {
        df_free(v);
        return df_error(DF_ENOTFOUND, "%s: no VAE under '%s' (decoder.conv_out / post_quant_conv missing)",
                        df_weights_path(w), prefix);
    }
    c->image_channels = (int)ci->shape[0];
    c->latent_channels = (int)pq->shape[0];
    while (c->levels < DF_VAE_MAX_LEVELS && findns(w, "decoder.up_blocks.%d.resnets.0.conv1.weight", c->levels)) c->levels++;
    for (int i = 0; i < c->levels; i++)
        c->channels[c->levels - 1 - i] = (int)findns(w, "decoder.up_blocks.%d.resnets.0.conv1.weight", i)->shape[0];
    while (findns(w, "decoder.up_blocks.0.resnets.%d.conv1.weight", c->layers_per_block + 1)) c->layers_per_block++;
    if (c->layers_per_block > 3) {
        df_free(v);
        return df_error(DF_EFORMAT, "%s: %d resnets per VAE block (at most 4)", df_weights_path(w), c->layers_per_block + 1);
    }
    c->groups = 32;
    c->scaling_factor = p->scaling_factor;
    if (p->config_path) {
        char *text = df_read_text_file(p->config_path, 16 << 20);
        if (!text) {
            df_vae_free(v);
            return df_error(DF_EIO, "%s: cannot read the VAE config", p->config_path);
        }
        read_config(w, text, c);
        df_free(text);
    } else {
        read_config(w, df_weights_config(w), c);
    }
    nn_loader L = {w, v->be, DF_OK};
    if (findns(w, "encoder.conv_in.weight", 0)) {
        load_half(&L, c, &v->enc, 0);
        v->quant_w = nn_get(&L, 0, NS "quant_conv.weight");
        v->quant_b = nn_get(&L, 0, NS "quant_conv.bias");
    }
    load_half(&L, c, &v->dec, 1);
    v->post_quant_w = nn_get(&L, 0, NS "post_quant_conv.weight");
    v->post_quant_b = nn_get(&L, 0, NS "post_quant_conv.bias");
    if ((rc = L.rc)) {
        df_vae_free(v);
        return rc;
    }
    *out = v;
    return DF_OK;
}

/* ---- forward ---- */

/* The mid block: resnet, attention, resnet. Takes h. */
static int mid_block(const vae_half *hf, df_tensor *h, df_tensor **out)
{
    int rc = DF_OK;
    NN_STEP(rc, h, nn_resnet_forward(&hf->mid_res[0], h, NULL, &next_));
    NN_STEP(rc, h, nn_spatial_attn_forward(&hf->mid_attn, h, &next_));
    NN_STEP(rc, h, nn_resnet_forward(&hf->mid_res[1], h, NULL, &next_));
    *out = rc ? NULL : h;
    if (rc) df_tensor_free(h);
    return rc;
}

static int norm_conv_out(const vae_half *hf, const df_vae_config *c, df_tensor *h, df_tensor **out)
{
    df_conv2d_params same = {1, 1, 1, 1, 0, 0};
    int rc = DF_OK;
    NN_STEP(rc, h, df_group_norm(h, c->groups, hf->norm_out_w, hf->norm_out_b, EPS, 1, &next_));
    NN_STEP(rc, h, df_conv2d(h, hf->conv_out_w, hf->conv_out_b, &same, &next_));
    *out = rc ? NULL : h;
    if (rc) df_tensor_free(h);
    return rc;
}

int df_vae_encode(const df_vae *v, const df_tensor *img, df_tensor **moments)
{
    *moments = NULL;
    const df_vae_config *c = &v->cfg;
    char b[64];
    if (!v->enc.conv_in_w) return df_error(DF_EINVAL, "vae: this VAE has no encoder (decoder-only weights)");
    int64_t f = (int64_t)1 << (c->levels - 1);
    if (!img || img->ndim != 4 || img->shape[1] != c->image_channels || img->dtype != DF_F32 || img->shape[2] % f ||
        img->shape[3] % f)
        return df_error(DF_ESHAPE, "vae encode: image must be (B, %d, H, W) F32 with H, W multiples of %lld, got %s",
                        c->image_channels, (long long)f, img ? df_tensor_shape_str(img, b, 64) : "NULL");
    df_conv2d_params same = {1, 1, 1, 1, 0, 0}, down = {2, 2, 0, 0, 1, 1}, one = df_conv2d_default_params();
    df_tensor *h = NULL, *x = NULL;
    int rc = nn_on(v->be, img, &x);
    if (!rc) rc = df_conv2d(x, v->enc.conv_in_w, v->enc.conv_in_b, &same, &h);
    df_tensor_free(x);
    for (int i = 0; i < c->levels && !rc; i++) {
        const vae_level *lv = &v->enc.level[i];
        for (int j = 0; j < c->layers_per_block; j++) NN_STEP(rc, h, nn_resnet_forward(&lv->res[j], h, NULL, &next_));
        if (lv->sample_w) NN_STEP(rc, h, df_conv2d(h, lv->sample_w, lv->sample_b, &down, &next_));
    }
    if (!rc) rc = mid_block(&v->enc, h, &h);
    if (!rc) rc = norm_conv_out(&v->enc, c, h, &h);
    NN_STEP(rc, h, df_conv2d(h, v->quant_w, v->quant_b, &one, &next_));
    *moments = rc ? NULL : h;
    if (rc) df_tensor_free(h);
    return rc;
}

int df_vae_sample(const df_tensor *moments, df_rng *rng, df_tensor **latent)
{
    *latent = NULL;
    char b[64];
    if (!moments || moments->ndim != 4 || moments->shape[1] % 2 || moments->dtype != DF_F32)
        return df_error(DF_ESHAPE, "vae sample: moments must be (B, 2·C, h, w) F32, got %s",
                        moments ? df_tensor_shape_str(moments, b, 64) : "NULL");
    int64_t B = moments->shape[0], C = moments->shape[1] / 2, plane = moments->shape[2] * moments->shape[3];
    df_tensor *m = NULL, *z = df_tensor_new(NULL, DF_F32, 4, (int64_t[]){B, C, moments->shape[2], moments->shape[3]});
    float *noise = NULL;
    int rc = z ? df_tensor_to(moments, NULL, &m) : DF_ENOMEM;
    if (!rc && rng && !(noise = df_malloc((size_t)(B * C * plane) * sizeof(float)))) rc = DF_ENOMEM;
    if (!rc && rng) rc = df_rng_randn(rng, noise, B * C * plane);
    if (!rc) {
        const float *md = df_tensor_data(m);
        float *zd = df_tensor_data(z);
        for (int64_t bi = 0; bi < B; bi++)
            for (int64_t i = 0; i < C * plane; i++) {
                float mean = md[bi * 2 * C * plane + i], logvar = md[bi * 2 * C * plane + C * plane + i];
                logvar = logvar < -30.0f ? -30.0f : logvar > 20.0f ? 20.0f : logvar;
                zd[bi * C * plane + i] = noise ? mean + expf(0.5f * logvar) * noise[bi * C * plane + i] : mean;
            }
    }
    df_free(noise);
    df_tensor_free(m);
    if (!rc && df_tensor_backend(moments) != df_tensor_backend(z)) {
        df_tensor *d = NULL;
        rc = df_tensor_to(z, df_tensor_backend(moments), &d);
        df_tensor_free(z);
        z = d;
    }
    if (rc) {
        df_tensor_free(z);
        return rc;
    }
    *latent = z;
    return DF_OK;
}

static int decode_tiled_fallback(const df_vae *v, const df_tensor *z, df_tensor **img);

int df_vae_decode(const df_vae *v, const df_tensor *z, df_tensor **img)
{
    *img = NULL;
    const df_vae_config *c = &v->cfg;
    char b[64];
    if (!z || z->ndim != 4 || z->shape[1] != c->latent_channels || z->dtype != DF_F32)
        return df_error(DF_ESHAPE, "vae decode: latents must be (B, %d, h, w) F32, got %s", c->latent_channels,
                        z ? df_tensor_shape_str(z, b, 64) : "NULL");
    df_conv2d_params same = {1, 1, 1, 1, 0, 0}, one = df_conv2d_default_params();
    df_tensor *h = NULL, *x = NULL;
    int rc = nn_on(v->be, z, &x);
    if (!rc) rc = df_conv2d(x, v->post_quant_w, v->post_quant_b, &one, &h);
    df_tensor_free(x);
    NN_STEP(rc, h, df_conv2d(h, v->dec.conv_in_w, v->dec.conv_in_b, &same, &next_));
    if (!rc) rc = mid_block(&v->dec, h, &h);
    for (int i = 0; i < c->levels && !rc; i++) {
        const vae_level *lv = &v->dec.level[i];
        for (int j = 0; j <= c->layers_per_block; j++) NN_STEP(rc, h, nn_resnet_forward(&lv->res[j], h, NULL, &next_));
        if (lv->sample_w) {
            NN_STEP(rc, h, df_upsample_nearest2x(h, &next_));
            NN_STEP(rc, h, df_conv2d(h, lv->sample_w, lv->sample_b, &same, &next_));
        }
    }
    if (!rc) rc = norm_conv_out(&v->dec, c, h, &h);
    *img = rc ? NULL : h;
    if (rc) df_tensor_free(h);
    if (rc == DF_ENOMEM && z->shape[0] == 1 && (z->shape[2] > 64 || z->shape[3] > 64))
        return decode_tiled_fallback(v, z, img);
    return rc;
}

/* ---- tiling (diffusers' tiled_decode / tiled_encode) ---- */

typedef int (*tile_fn)(const df_vae *v, const df_tensor *in, df_tensor **out);

/* b's first e rows (vertical) or columns blended with a's last e, in place,
 * weighted as diffusers does: a·(1 − y/e) + b·(y/e). Both host f32 (1, C, H, W). */
static void blend(const df_tensor *a, df_tensor *b, int64_t e, int vertical)
{
    int64_t C = b->shape[1], Hb = b->shape[2], Wb = b->shape[3], Ha = a->shape[2], Wa = a->shape[3];
    const float *ad = df_tensor_data(a);
    float *bd = df_tensor_data(b);
    for (int64_t y = 0; y < e; y++) {
        float wa = (float)(1.0 - (double)y / (double)e), wb = (float)((double)y / (double)e);
        for (int64_t c = 0; c < C; c++) {
            if (vertical) {
                const float *ar = ad + (c * Ha + Ha - e + y) * Wa;
                float *br = bd + (c * Hb + y) * Wb;
                for (int64_t x = 0; x < Wb && x < Wa; x++) br[x] = ar[x] * wa + br[x] * wb;
            } else {
                for (int64_t r = 0; r < Hb && r < Ha; r++)
                    bd[(c * Hb + r) * Wb + y] = ad[(c * Ha + r) * Wa + Wa - e + y] * wa + bd[(c * Hb + r) * Wb + y] * wb;
            }
        }
    }
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int run_tiled(const df_vae *v, const df_tensor *in, int64_t t_in, int64_t t_out, float overlap, tile_fn fn,
                     df_tensor **out)
{
    *out = NULL;
    if (in->shape[0] != 1) return df_error(DF_EINVAL, "vae tiling: batch 1 only, got %lld", (long long)in->shape[0]);
    int64_t H = in->shape[2], W = in->shape[3];
    int64_t stride = (int64_t)((double)t_in * (1.0 - overlap)), ext = (int64_t)((double)t_out * overlap);
    int64_t limit = t_out - ext;
    if (stride < 1 || limit < 1) return df_error(DF_EINVAL, "vae tiling: tile %lld with overlap %g leaves no stride", (long long)t_in, overlap);
    int64_t rows = (H + stride - 1) / stride, cols = (W + stride - 1) / stride;
    df_tensor **grid = df_calloc((size_t)(rows * cols), sizeof *grid);
    if (!grid) return DF_ENOMEM;
    int rc = DF_OK;
    for (int64_t r = 0; r < rows && !rc; r++)
        for (int64_t c = 0; c < cols && !rc; c++) {
            df_tensor *a = NULL, *tile = NULL, *res = NULL;
            int64_t i = r * stride, j = c * stride;
            rc = df_slice(in, 2, i, min64(i + t_in, H), &a);
            if (!rc) rc = df_slice(a, 3, j, min64(j + t_in, W), &tile);
            if (!rc) rc = fn(v, tile, &res);
            if (!rc) rc = df_tensor_to(res, NULL, &grid[r * cols + c]);
            df_tensor_free(a), df_tensor_free(tile), df_tensor_free(res);
            if (rc) break;
            df_tensor *cur = grid[r * cols + c];
            if (r > 0) blend(grid[(r - 1) * cols + c], cur, min64(min64(grid[(r - 1) * cols + c]->shape[2], cur->shape[2]), ext), 1);
            if (c > 0) blend(grid[r * cols + c - 1], cur, min64(min64(grid[r * cols + c - 1]->shape[3], cur->shape[3]), ext), 0);
        }
    /* crop every tile to its top-left limit x limit and join */
    int64_t OH = 0, OW = 0, C = 0;
    if (!rc) {
        C = grid[0]->shape[1];
        for (int64_t r = 0; r < rows; r++) OH += min64(grid[r * cols]->shape[2], limit);
        for (int64_t c = 0; c < cols; c++) OW += min64(grid[c]->shape[3], limit);
    }
    df_tensor *res = rc ? NULL : df_tensor_new(NULL, DF_F32, 4, (int64_t[]){1, C, OH, OW});
    if (!rc && !res) rc = DF_ENOMEM;
    if (!rc) {
        float *od = df_tensor_data(res);
        int64_t y0 = 0;
        for (int64_t r = 0; r < rows; r++) {
            int64_t x0 = 0, th = min64(grid[r * cols]->shape[2], limit);
            for (int64_t c = 0; c < cols; c++) {
                const df_tensor *t = grid[r * cols + c];
                int64_t tw = min64(t->shape[3], limit);
                const float *td = df_tensor_data(t);
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t y = 0; y < th; y++)
                        memcpy(od + (ch * OH + y0 + y) * OW + x0, td + (ch * t->shape[2] + y) * t->shape[3],
                               (size_t)tw * sizeof(float));
                x0 += tw;
            }
            y0 += th;
        }
    }
    for (int64_t k = 0; k < rows * cols; k++) df_tensor_free(grid[k]);
    df_free(grid);
    if (!rc && v->be != df_backend_cpu()) {
        rc = df_tensor_to(res, v->be, out);
        df_tensor_free(res);
        return rc;
    }
    if (rc) df_tensor_free(res);
    else *out = res;
    return rc;
}

int df_vae_decode_tiled(const df_vae *v, const df_tensor *z, int tile, float overlap, df_tensor **img)
{
    *img = NULL;
    if (!z || z->ndim != 4) return df_error(DF_ESHAPE, "vae decode: latents must be (1, C, h, w)");
    int64_t f = (int64_t)1 << (v->cfg.levels - 1);
    if (tile <= 0) tile = 64;
    if (overlap <= 0) overlap = 0.25f;
    return run_tiled(v, z, tile, tile * f, overlap, df_vae_decode, img);
}

int df_vae_encode_tiled(const df_vae *v, const df_tensor *img, int tile, float overlap, df_tensor **moments)
{
    *moments = NULL;
    if (!img || img->ndim != 4) return df_error(DF_ESHAPE, "vae encode: image must be (1, 3, H, W)");
    int64_t f = (int64_t)1 << (v->cfg.levels - 1);
    if (tile <= 0) tile = 512;
    if (overlap <= 0) overlap = 0.25f;
    if (tile % f) return df_error(DF_EINVAL, "vae encode: tile %d is not a multiple of %lld", tile, (long long)f);
    return run_tiled(v, img, tile, tile / f, overlap, df_vae_encode, moments);
}

/* Out of memory on a large decode: retry in 64-latent tiles, saying so. */
static int decode_tiled_fallback(const df_vae *v, const df_tensor *z, df_tensor **img)
{
    df_log(DF_LOG_WARN, "vae: decoding %lldx%lld latents ran out of memory (%s); retrying in tiles",
           (long long)z->shape[2], (long long)z->shape[3], df_last_error());
    return df_vae_decode_tiled(v, z, 64, 0.25f, img);
}
