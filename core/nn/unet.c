/* UNet2DConditionModel: config from the checkpoint, LDM name mapping,
 * loading, forward. Reads in the order it runs. */
#include "unet.h"

#include "../backend.h"
#include "../io/json.h"
#include "blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct unet_level {
    nn_resnet res[3];           /* down: layers_per_block; up: layers_per_block + 1 */
    nn_transformer attn[3];
    df_tensor *sample_w, *sample_b; /* downsampler (down) / upsampler conv (up), or NULL */
} unet_level;

struct df_unet {
    df_unet_config cfg;
    df_backend *be;
    df_tensor *conv_in_w, *conv_in_b;
    df_tensor *time1_w, *time1_b, *time2_w, *time2_b;
    df_tensor *add1_w, *add1_b, *add2_w, *add2_b;
    unet_level down[DF_UNET_MAX_LEVELS], up[DF_UNET_MAX_LEVELS];
    nn_resnet mid_res[2];
    nn_transformer mid_attn;
    df_tensor *norm_out_w, *norm_out_b, *conv_out_w, *conv_out_b;
};

const df_unet_config *df_unet_get_config(const df_unet *u) { return &u->cfg; }

df_unet_load_params df_unet_load_default_params(void) { return (df_unet_load_params){NULL}; }

/* ---- the original (LDM) names, mapped onto diffusers' ---- */

#define LDM "model.diffusion_model."
#define NS "unet." /* where the aliases live, so a single file's VAE names cannot collide */

static const char *resnet_part(const char *rest, char *buf, size_t n)
{
    static const char *const map[][2] = {{"in_layers.0.", "norm1."},      {"in_layers.2.", "conv1."},
                                         {"emb_layers.1.", "time_emb_proj."}, {"out_layers.0.", "norm2."},
                                         {"out_layers.3.", "conv2."},     {"skip_connection.", "conv_shortcut."}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t l = strlen(map[i][0]);
        if (!strncmp(rest, map[i][0], l)) {
            snprintf(buf, n, "%s%s", map[i][1], rest + l);
            return buf;
        }
    }
    return NULL;
}

/* diffusers' name for an LDM UNet name (after "model.diffusion_model."), or 0. */
static int ldm_to_diffusers(const char *s, int L, char *out, size_t n)
{
    int a, b, used = 0;
    char part[300];
    const char *r;
    if (sscanf(s, "time_embed.%d.%n", &a, &used) == 1 && used)
        return snprintf(out, n, "time_embedding.linear_%d.%s", a == 0 ? 1 : 2, s + used), 1;
    if (sscanf(s, "label_emb.0.%d.%n", &a, &used) == 1 && used)
        return snprintf(out, n, "add_embedding.linear_%d.%s", a == 0 ? 1 : 2, s + used), 1;
    if (sscanf(s, "out.%d.%n", &a, &used) == 1 && used)
        return snprintf(out, n, "%s.%s", a == 0 ? "conv_norm_out" : "conv_out", s + used), 1;
    if (sscanf(s, "input_blocks.%d.%d.%n", &a, &b, &used) == 2 && used) {
        r = s + used;
        if (a == 0) return snprintf(out, n, "conv_in.%s", r), 1;
        int lv = (a - 1) / (L + 1), j = (a - 1) % (L + 1);
        if (b == 0 && !strncmp(r, "op.", 3)) return snprintf(out, n, "down_blocks.%d.downsamplers.0.conv.%s", lv, r + 3), 1;
        if (b == 0 && resnet_part(r, part, sizeof part))
            return snprintf(out, n, "down_blocks.%d.resnets.%d.%s", lv, j, part), 1;
        if (b == 1) return snprintf(out, n, "down_blocks.%d.attentions.%d.%s", lv, j, r), 1;
        return 0;
    }
    if (sscanf(s, "middle_block.%d.%n", &a, &used) == 1 && used) {
        r = s + used;
        if (a == 1) return snprintf(out, n, "mid_block.attentions.0.%s", r), 1;
        if (resnet_part(r, part, sizeof part)) return snprintf(out, n, "mid_block.resnets.%d.%s", a / 2, part), 1;
        return 0;
    }
    if (sscanf(s, "output_blocks.%d.%d.%n", &a, &b, &used) == 2 && used) {
        r = s + used;
        int lv = a / (L + 1), j = a % (L + 1);
        if (b == 0 && resnet_part(r, part, sizeof part))
            return snprintf(out, n, "up_blocks.%d.resnets.%d.%s", lv, j, part), 1;
        if (b >= 1 && !strncmp(r, "conv.", 5)) return snprintf(out, n, "up_blocks.%d.upsamplers.0.conv.%s", lv, r + 5), 1;
        if (b == 1) return snprintf(out, n, "up_blocks.%d.attentions.%d.%s", lv, j, r), 1;
        return 0;
    }
    return 0;
}

/* Aliases every model.diffusion_model.* tensor under its diffusers name in NS;
 * names that map to nothing are listed (first few) in the error. */
static int alias_ldm(df_weights *w)
{
    int L = -1;
    for (int a = 1; a < 64 && L < 0; a++)
        if (df_weights_findf(w, LDM "input_blocks.%d.0.op.weight", a)) L = a - 1;
    if (L < 0) { /* a single level: every input block after conv_in is one */
        int a = 1;
        while (df_weights_findf(w, LDM "input_blocks.%d.0.in_layers.0.weight", a)) a++;
        L = a - 1;
    }
    int n = df_weights_count(w), unknown = 0, rc = DF_OK;
    char first[3][160] = {"", "", ""};
    for (int i = 0; i < n && !rc; i++) {
        const char *name = df_weights_at(w, i)->name;
        if (strncmp(name, LDM, strlen(LDM))) continue;
        char d[400], full[420];
        if (!ldm_to_diffusers(name + strlen(LDM), L, d, sizeof d)) {
            if (unknown < 3) snprintf(first[unknown], sizeof first[0], "%s", name);
            unknown++;
            continue;
        }
        snprintf(full, sizeof full, NS "%s", d);
        rc = df_weights_add_alias(w, full, name);
    }
    if (!rc && unknown)
        rc = df_error(DF_EFORMAT, "%s: %d UNet tensors with unknown names, e.g. %s%s%s%s%s", df_weights_path(w), unknown,
                      first[0], unknown > 1 ? ", " : "", first[1], unknown > 2 ? ", " : "", first[2]);
    return rc;
}

/* ---- configuration ---- */

static const df_json *json_at(const df_json *v, int i)
{
    if (!v) return NULL;
    if (v->type == DF_JSON_ARRAY) return (size_t)i < v->n ? &v->items[i] : NULL;
    return v;
}

static int json_int(const df_json *v, int *out)
{
    double d;
    if (!v || v->type != DF_JSON_NUMBER || df_json_double(v, &d) != DF_OK) return 0;
    *out = (int)d;
    return 1;
}

/* Heads and norms from a diffusers config.json (text or NULL). diffusers
 * reads attention_head_dim as the number of heads when num_attention_heads is
 * null (a naming quirk it keeps for SD1 compatibility). */
static int apply_config(df_unet_config *c, const char *text, const char *what)
{
    if (!text) return DF_OK;
    df_json *root = NULL;
    if (df_json_parse(text, strlen(text), &root) != DF_OK) return df_error_prefix(DF_EFORMAT, "%s", what);
    const df_json *heads = df_json_get(root, "num_attention_heads");
    if (!heads || heads->type == DF_JSON_NULL) heads = df_json_get(root, "attention_head_dim");
    for (int i = 0; i < c->levels; i++) json_int(json_at(heads, i), &c->heads[i]);
    json_int(df_json_get(root, "norm_num_groups"), &c->groups);
    const df_json *v = df_json_get(root, "norm_eps");
    double d;
    if (v && v->type == DF_JSON_NUMBER && df_json_double(v, &d) == DF_OK) c->eps = (float)d;
    v = df_json_get(root, "flip_sin_to_cos");
    if (v && (v->type == DF_JSON_TRUE || v->type == DF_JSON_FALSE)) c->flip_sin_to_cos = v->type == DF_JSON_TRUE;
    v = df_json_get(root, "freq_shift");
    if (v && v->type == DF_JSON_NUMBER && df_json_double(v, &d) == DF_OK) c->freq_shift = (float)d;
    json_int(df_json_get(root, "addition_time_embed_dim"), &c->addition_time_embed_dim);
    json_int(df_json_get(root, "sample_size"), &c->sample_size);
    df_json_free(root);
    return DF_OK;
}

static const df_st_info *find(const df_weights *w, const char *np, const char *fmt, int a, int b)
{
    char name[400], full[420];
    snprintf(name, sizeof name, fmt, a, b);
    snprintf(full, sizeof full, "%s%s", np, name);
    return df_weights_find(w, full);
}

static int infer_config(const df_weights *w, const char *np, df_unet_config *c)
{
    const df_st_info *ci = find(w, np, "conv_in.weight", 0, 0), *co = find(w, np, "conv_out.weight", 0, 0);
    if (!ci || !co || ci->ndim != 4)
        return df_error(DF_ENOTFOUND, "%s: no UNet here (conv_in / conv_out missing)", df_weights_path(w));
    c->in_channels = (int)ci->shape[1];
    c->out_channels = (int)co->shape[0];
    while (c->levels < DF_UNET_MAX_LEVELS && find(w, np, "down_blocks.%d.resnets.0.conv1.weight", c->levels, 0)) {
        c->channels[c->levels] = (int)find(w, np, "down_blocks.%d.resnets.0.conv1.weight", c->levels, 0)->shape[0];
        c->attention[c->levels] = find(w, np, "down_blocks.%d.attentions.0.proj_in.weight", c->levels, 0) != NULL;
        c->levels++;
    }
    if (!c->levels) return df_error(DF_ENOTFOUND, "%s: UNet has no down blocks", df_weights_path(w));
    while (find(w, np, "down_blocks.0.resnets.%d.conv1.weight", c->layers_per_block, 0)) c->layers_per_block++;
    if (c->layers_per_block > 3)
        return df_error(DF_EFORMAT, "%s: %d resnets per UNet block (at most 3)", df_weights_path(w), c->layers_per_block);
    const df_st_info *k = find(w, np, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", 0, 0);
    for (int i = 0; !k && i < c->levels; i++) k = find(w, np, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight", i, 0);
    c->context_dim = k ? (int)k->shape[1] : 0;
    const df_st_info *pin = find(w, np, "mid_block.attentions.0.proj_in.weight", 0, 0);
    c->linear_proj = pin && pin->ndim == 2;
    c->time_embed_dim = (int)(find(w, np, "time_embedding.linear_1.weight", 0, 0) ? find(w, np, "time_embedding.linear_1.weight", 0, 0)->shape[0] : 0);
    const df_st_info *add = find(w, np, "add_embedding.linear_1.weight", 0, 0);
    c->adm_in = add ? (int)add->shape[1] : 0;
    c->addition_time_embed_dim = 256;
    c->groups = 32;
    c->eps = 1e-5f;
    c->flip_sin_to_cos = 1;
    c->freq_shift = 0;
    /* SD1 (768-wide context): 8 heads; SD2 / SDXL: 64-wide heads */
    for (int i = 0; i < c->levels; i++) c->heads[i] = c->context_dim == 768 ? 8 : (c->channels[i] / 64 > 0 ? c->channels[i] / 64 : 1);
    return DF_OK;
}

/* ---- loading ---- */

static void load_level(nn_loader *L, const df_unet_config *c, unet_level *lv, const char *np, int up, int i)
{
    int n = up ? c->layers_per_block + 1 : c->layers_per_block, level = up ? c->levels - 1 - i : i;
    const char *kind = up ? "up_blocks" : "down_blocks";
    char p[300];
    for (int j = 0; j < n; j++) {
        snprintf(p, sizeof p, "%s%s.%d.resnets.%d.", np, kind, i, j);
        nn_resnet_load(L, &lv->res[j], p, c->groups, c->eps);
        if (c->attention[level]) {
            snprintf(p, sizeof p, "%s%s.%d.attentions.%d.", np, kind, i, j);
            nn_transformer_load(L, &lv->attn[j], p, c->heads[level], c->groups);
        }
    }
    int last = i == c->levels - 1;
    if (!last) {
        lv->sample_w = nn_get(L, 0, up ? "%sup_blocks.%d.upsamplers.0.conv.weight" : "%sdown_blocks.%d.downsamplers.0.conv.weight", np, i);
        lv->sample_b = nn_get(L, 0, up ? "%sup_blocks.%d.upsamplers.0.conv.bias" : "%sdown_blocks.%d.downsamplers.0.conv.bias", np, i);
    }
}

static void free_level(unet_level *lv)
{
    for (int j = 0; j < 3; j++) {
        nn_resnet_free(&lv->res[j]);
        nn_transformer_free(&lv->attn[j]);
    }
    df_tensor_free(lv->sample_w);
    df_tensor_free(lv->sample_b);
}

void df_unet_free(df_unet *u)
{
    if (!u) return;
    nn_free_tensors(&u->conv_in_w, 10);
    for (int i = 0; i < DF_UNET_MAX_LEVELS; i++) {
        free_level(&u->down[i]);
        free_level(&u->up[i]);
    }
    nn_resnet_free(&u->mid_res[0]);
    nn_resnet_free(&u->mid_res[1]);
    nn_transformer_free(&u->mid_attn);
    nn_free_tensors(&u->norm_out_w, 4);
    df_free(u);
}

int df_unet_load(df_weights *w, const char *prefix, df_backend *be, const df_unet_load_params *p, df_unet **out)
{
    *out = NULL;
    df_unet_load_params dp = df_unet_load_default_params();
    if (!p) p = &dp;
    if (!prefix) prefix = df_weights_find(w, LDM "input_blocks.0.0.weight") ? LDM : "";
    int rc = DF_OK;
    const char *np = prefix;
    if (!strcmp(prefix, LDM)) {
        if (!df_weights_find(w, NS "conv_in.weight") && (rc = alias_ldm(w))) return rc;
        np = NS;
    }
    df_unet *u = df_calloc(1, sizeof *u);
    if (!u) return DF_ENOMEM;
    u->be = be ? be : df_backend_cpu();
    df_unet_config *c = &u->cfg;
    if ((rc = infer_config(w, np, c))) goto fail;
    if (p->config_path) {
        char *text = df_read_text_file(p->config_path, 16 << 20);
        if (!text) {
            rc = df_error(DF_EIO, "%s: cannot read the UNet config", p->config_path);
            goto fail;
        }
        rc = apply_config(c, text, p->config_path);
        df_free(text);
    } else if (!*np) {
        rc = apply_config(c, df_weights_config(w), df_weights_path(w));
    }
    if (rc) goto fail;
    for (int i = 0; i < c->levels; i++)
        if (c->attention[i] && (c->heads[i] < 1 || c->channels[i] % c->heads[i])) {
            rc = df_error(DF_EFORMAT, "%s: %d channels at UNet level %d do not split into %d heads", df_weights_path(w),
                          c->channels[i], i, c->heads[i]);
            goto fail;
        }
    nn_loader L = {w, u->be, DF_OK};
    u->conv_in_w = nn_get(&L, 0, "%sconv_in.weight", np);
    u->conv_in_b = nn_get(&L, 0, "%sconv_in.bias", np);
    u->time1_w = nn_get(&L, 0, "%stime_embedding.linear_1.weight", np);
    u->time1_b = nn_get(&L, 0, "%stime_embedding.linear_1.bias", np);
    u->time2_w = nn_get(&L, 0, "%stime_embedding.linear_2.weight", np);
    u->time2_b = nn_get(&L, 0, "%stime_embedding.linear_2.bias", np);
    if (c->adm_in) {
        u->add1_w = nn_get(&L, 0, "%sadd_embedding.linear_1.weight", np);
        u->add1_b = nn_get(&L, 0, "%sadd_embedding.linear_1.bias", np);
        u->add2_w = nn_get(&L, 0, "%sadd_embedding.linear_2.weight", np);
        u->add2_b = nn_get(&L, 0, "%sadd_embedding.linear_2.bias", np);
    }
    for (int i = 0; i < c->levels; i++) {
        load_level(&L, c, &u->down[i], np, 0, i);
        load_level(&L, c, &u->up[i], np, 1, i);
    }
    char q[300];
    for (int j = 0; j < 2; j++) {
        snprintf(q, sizeof q, "%smid_block.resnets.%d.", np, j);
        nn_resnet_load(&L, &u->mid_res[j], q, c->groups, c->eps);
    }
    snprintf(q, sizeof q, "%smid_block.attentions.0.", np);
    if (nn_has(&L, "%sproj_in.weight", q)) nn_transformer_load(&L, &u->mid_attn, q, c->heads[c->levels - 1], c->groups);
    u->norm_out_w = nn_get(&L, 0, "%sconv_norm_out.weight", np);
    u->norm_out_b = nn_get(&L, 0, "%sconv_norm_out.bias", np);
    u->conv_out_w = nn_get(&L, 0, "%sconv_out.weight", np);
    u->conv_out_b = nn_get(&L, 0, "%sconv_out.bias", np);
    int c0 = c->channels[0], ted = c->time_embed_dim;
    nn_expect(&L, u->conv_in_w, np, "conv_in.weight", 4, c0, c->in_channels, 3, 3);
    nn_expect(&L, u->conv_in_b, np, "conv_in.bias", 1, c0);
    nn_expect(&L, u->time1_w, np, "time_embedding.linear_1.weight", 2, ted, c0);
    nn_expect(&L, u->time1_b, np, "time_embedding.linear_1.bias", 1, ted);
    nn_expect(&L, u->time2_w, np, "time_embedding.linear_2.weight", 2, ted, ted);
    nn_expect(&L, u->time2_b, np, "time_embedding.linear_2.bias", 1, ted);
    nn_expect(&L, u->norm_out_w, np, "conv_norm_out.weight", 1, c0);
    nn_expect(&L, u->norm_out_b, np, "conv_norm_out.bias", 1, c0);
    nn_expect(&L, u->conv_out_w, np, "conv_out.weight", 4, c->out_channels, c0, 3, 3);
    nn_expect(&L, u->conv_out_b, np, "conv_out.bias", 1, c->out_channels);
    if ((rc = L.rc)) goto fail;
    *out = u;
    return DF_OK;
fail:
    df_unet_free(u);
    return rc;
}

/* ---- forward ---- */

/* emb = linear_2(silu(linear_1(x))); returns silu(emb) too when asked. */
static int mlp_embed(const df_tensor *x, const df_tensor *w1, const df_tensor *b1, const df_tensor *w2,
                     const df_tensor *b2, df_tensor **out)
{
    df_tensor *h = NULL;
    int rc = df_linear(x, w1, b1, &h);
    NN_STEP(rc, h, df_unary(DF_SILU, h, &next_));
    NN_STEP(rc, h, df_linear(h, w2, b2, &next_));
    *out = rc ? NULL : h;
    if (rc) df_tensor_free(h);
    return rc;
}

/* The time embedding, plus SDXL's text_time one, through SiLU (every resnet
 * takes silu(emb)). */
static int time_embedding(const df_unet *u, const float *timesteps, int64_t B, const df_unet_extra *extra,
                          df_tensor **out)
{
    const df_unet_config *c = &u->cfg;
    df_tensor *th = df_tensor_from_data(DF_F32, 1, (int64_t[]){B}, timesteps), *t = NULL, *te = NULL, *emb = NULL;
    int rc = th ? df_tensor_to(th, u->be, &t) : DF_ENOMEM;
    if (!rc) rc = df_timestep_embedding(t, c->channels[0], c->flip_sin_to_cos, c->freq_shift, 1.0f, 10000.0f, &te);
    if (!rc) rc = mlp_embed(te, u->time1_w, u->time1_b, u->time2_w, u->time2_b, &emb);
    df_tensor_free(th), df_tensor_free(t), df_tensor_free(te);
    if (!rc && c->adm_in) {
        df_tensor *ids = NULL, *flat = NULL, *tp = NULL, *tp2 = NULL, *cat = NULL, *aug = NULL;
        if (!extra || !extra->text_embeds || !extra->time_ids) {
            rc = df_error(DF_EINVAL, "unet: this UNet (SDXL) needs text_embeds and time_ids");
        } else if (extra->time_ids->ndim != 2 || extra->time_ids->shape[0] != B || extra->text_embeds->ndim != 2 ||
                   extra->text_embeds->shape[0] != B ||
                   extra->text_embeds->shape[1] + extra->time_ids->shape[1] * c->addition_time_embed_dim != c->adm_in) {
            char b1[64], b2[64];
            rc = df_error(DF_ESHAPE, "unet: text_embeds %s and time_ids %s do not make the %d-wide added embedding",
                          df_tensor_shape_str(extra->text_embeds, b1, 64), df_tensor_shape_str(extra->time_ids, b2, 64),
                          c->adm_in);
        }
        if (!rc) rc = nn_on(u->be, extra->time_ids, &ids);
        if (!rc) rc = df_tensor_reshape(ids, 1, (int64_t[]){df_tensor_numel(ids)}, &flat);
        if (!rc)
            rc = df_timestep_embedding(flat, c->addition_time_embed_dim, c->flip_sin_to_cos, c->freq_shift, 1.0f,
                                       10000.0f, &tp);
        if (!rc) rc = df_tensor_reshape(tp, 2, (int64_t[]){B, -1}, &tp2);
        df_tensor *te2 = NULL;
        if (!rc) rc = nn_on(u->be, extra->text_embeds, &te2);
        if (!rc) rc = df_concat(2, (const df_tensor *const[]){te2, tp2}, 1, &cat);
        if (!rc) rc = mlp_embed(cat, u->add1_w, u->add1_b, u->add2_w, u->add2_b, &aug);
        if (!rc) rc = nn_add_free(emb, aug, &emb), aug = NULL;
        df_tensor_free(ids), df_tensor_free(flat), df_tensor_free(tp), df_tensor_free(tp2), df_tensor_free(te2),
            df_tensor_free(cat), df_tensor_free(aug);
    }
    NN_STEP(rc, emb, df_unary(DF_SILU, emb, &next_));
    *out = rc ? NULL : emb;
    if (rc) df_tensor_free(emb);
    return rc;
}

int df_unet_forward(const df_unet *u, const df_tensor *x, const float *timesteps, const df_tensor *context,
                    const df_unet_extra *extra, df_tensor **out)
{
    *out = NULL;
    const df_unet_config *c = &u->cfg;
    char b1[64];
    if (!x || x->ndim != 4 || x->shape[1] != c->in_channels || x->dtype != DF_F32)
        return df_error(DF_ESHAPE, "unet: x must be (B, %d, H, W) F32, got %s", c->in_channels,
                        x ? df_tensor_shape_str(x, b1, 64) : "NULL");
    int64_t down = (int64_t)1 << (c->levels - 1);
    if (x->shape[2] % down || x->shape[3] % down)
        return df_error(DF_ESHAPE, "unet: latent size %lldx%lld is not a multiple of %lld", (long long)x->shape[2],
                        (long long)x->shape[3], (long long)down);
    if (!timesteps) return df_error(DF_EINVAL, "unet: timesteps missing");
    if (c->context_dim && (!context || context->ndim != 3 || context->shape[0] != x->shape[0] ||
                           context->shape[2] != c->context_dim))
        return df_error(DF_ESHAPE, "unet: context must be (%lld, tokens, %d), got %s", (long long)x->shape[0],
                        c->context_dim, context ? df_tensor_shape_str(context, b1, 64) : "NULL");
    int64_t B = x->shape[0];
    df_tensor *emb = NULL, *h = NULL, *ctx = NULL, *skips[1 + DF_UNET_MAX_LEVELS * 4] = {0};
    int ns = 0;
    df_conv2d_params same = {1, 1, 1, 1, 0, 0}, down2 = {2, 2, 1, 1, 0, 0};
    df_tensor *xin = NULL;
    int rc = time_embedding(u, timesteps, B, extra, &emb);
    if (!rc && context) rc = nn_on(u->be, context, &ctx);
    if (!rc) rc = nn_on(u->be, x, &xin);
    if (!rc) rc = df_conv2d(xin, u->conv_in_w, u->conv_in_b, &same, &h);
    df_tensor_free(xin);
    if (!rc && !(skips[ns++] = df_tensor_ref(h))) rc = DF_ENOMEM;
    for (int i = 0; i < c->levels && !rc; i++) {
        const unet_level *lv = &u->down[i];
        for (int j = 0; j < c->layers_per_block && !rc; j++) {
            NN_STEP(rc, h, nn_resnet_forward(&lv->res[j], h, emb, &next_));
            if (c->attention[i]) NN_STEP(rc, h, nn_transformer_forward(&lv->attn[j], h, ctx, &next_));
            if (!rc && !(skips[ns++] = df_tensor_ref(h))) rc = DF_ENOMEM;
        }
        if (lv->sample_w) {
            NN_STEP(rc, h, df_conv2d(h, lv->sample_w, lv->sample_b, &down2, &next_));
            if (!rc && !(skips[ns++] = df_tensor_ref(h))) rc = DF_ENOMEM;
        }
    }
    NN_STEP(rc, h, nn_resnet_forward(&u->mid_res[0], h, emb, &next_));
    if (u->mid_attn.blocks) NN_STEP(rc, h, nn_transformer_forward(&u->mid_attn, h, ctx, &next_));
    NN_STEP(rc, h, nn_resnet_forward(&u->mid_res[1], h, emb, &next_));
    for (int i = 0; i < c->levels && !rc; i++) {
        const unet_level *lv = &u->up[i];
        int level = c->levels - 1 - i;
        for (int j = 0; j <= c->layers_per_block && !rc; j++) {
            df_tensor *skip = skips[--ns];
            skips[ns] = NULL;
            NN_STEP(rc, h, df_concat(2, (const df_tensor *const[]){h, skip}, 1, &next_));
            df_tensor_free(skip);
            NN_STEP(rc, h, nn_resnet_forward(&lv->res[j], h, emb, &next_));
            if (c->attention[level]) NN_STEP(rc, h, nn_transformer_forward(&lv->attn[j], h, ctx, &next_));
        }
        if (lv->sample_w) {
            NN_STEP(rc, h, df_upsample_nearest2x(h, &next_));
            NN_STEP(rc, h, df_conv2d(h, lv->sample_w, lv->sample_b, &same, &next_));
        }
    }
    NN_STEP(rc, h, df_group_norm(h, c->groups, u->norm_out_w, u->norm_out_b, c->eps, 1, &next_));
    NN_STEP(rc, h, df_conv2d(h, u->conv_out_w, u->conv_out_b, &same, &next_));
    for (int i = 0; i < ns; i++) df_tensor_free(skips[i]);
    df_tensor_free(emb);
    df_tensor_free(ctx);
    if (rc) {
        df_tensor_free(h);
        return rc;
    }
    *out = h;
    return DF_OK;
}
