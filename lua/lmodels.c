/* difusa.load and the model objects: clip:encode, unet:forward,
 * unet:denoiser (classifier-free guidance as one batch), vae:encode/decode. */
#include "ldifusa.h"

#include "sched/schedule.h"

#include <math.h>
#include <string.h>

void ld_open_dit(lua_State *L);

#define LD_BUNDLE "difusa.bundle"
#define LD_CLIP "difusa.clip"
#define LD_UNET "difusa.unet"
#define LD_VAE "difusa.vae"

typedef struct lbundle {
    df_bundle *b;
} lbundle;

/* Model objects borrow from their bundle, which they hold as user value 1. */
typedef struct lmodel {
    df_bundle *b;
} lmodel;

static int bundle_gc(lua_State *L)
{
    lbundle *lb = luaL_checkudata(L, 1, LD_BUNDLE);
    df_bundle_free(lb->b);
    lb->b = NULL;
    return 0;
}

static df_bundle *check_model(lua_State *L, int idx, const char *type)
{
    lmodel *m = luaL_checkudata(L, idx, type);
    return m->b;
}

static void push_model(lua_State *L, df_bundle *b, const char *type, int bundle_idx)
{
    lmodel *m = lua_newuserdatauv(L, sizeof *m, 1);
    m->b = b;
    luaL_setmetatable(L, type);
    lua_pushvalue(L, bundle_idx);
    lua_setiuservalue(L, -2, 1);
}

static const char *opt_string(lua_State *L, int t, const char *key)
{
    if (!lua_istable(L, t)) return NULL;
    lua_getfield(L, t, key);
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the string stays alive: it is in the options table */
    return s;
}

static lua_Number opt_number(lua_State *L, int t, const char *key, lua_Number dflt)
{
    if (!lua_istable(L, t)) return dflt;
    lua_getfield(L, t, key);
    lua_Number v = lua_isnil(L, -1) ? dflt : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The guidance scale of a denoiser's option table (default 1); NaN and infinities (also a finite value beyond
 * float's range) are refused by name, as "nan" / "inf" / "-inf" rather than printf's sign-carrying "-nan". */
static float opt_cfg(lua_State *L, int t)
{
    float v = (float)opt_number(L, t, "cfg", 1.0);
    if (isfinite(v)) return v;
    const char *what = isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
    return (float)luaL_error(L, "denoiser: cfg = %s is not a finite number", what);
}

static int opt_bool(lua_State *L, int t, const char *key, int dflt)
{
    if (!lua_istable(L, t)) return dflt;
    lua_getfield(L, t, key);
    int v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* difusa.load(path, {device=, prediction=, vae=, unet_config=, vae_config=})
 * -> {clip=, unet=, vae=, family=, prediction=, vae_scale=} or nil, message */
static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    df_bundle_params p = df_bundle_default_params();
    const char *pred = opt_string(L, 2, "prediction");
    if (pred) p.prediction = pred;
    p.vae_path = opt_string(L, 2, "vae");
    p.unet_config = opt_string(L, 2, "unet_config");
    p.vae_config = opt_string(L, 2, "vae_config");
    df_backend *be = df_backend_cpu();
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "device");
        be = ld_backend_opt(L, lua_gettop(L));
    } else {
        be = ld_backend_opt(L, 0);
    }
    lbundle *lb = lua_newuserdatauv(L, sizeof *lb, 0);
    lb->b = NULL;
    luaL_setmetatable(L, LD_BUNDLE);
    int bi = lua_gettop(L);
    if (df_bundle_load(path, be, &p, &lb->b) != DF_OK) {
        luaL_pushfail(L);
        lua_pushstring(L, df_last_error());
        return 2;
    }
    df_bundle *b = lb->b;
    lua_newtable(L);
    if (b->text) push_model(L, b, LD_CLIP, bi), lua_setfield(L, -2, "clip");
    if (b->unet) push_model(L, b, LD_UNET, bi), lua_setfield(L, -2, "unet");
    if (b->vae) push_model(L, b, LD_VAE, bi), lua_setfield(L, -2, "vae");
    lua_pushstring(L, b->family_name);
    lua_setfield(L, -2, "family");
    lua_pushstring(L, b->prediction);
    lua_setfield(L, -2, "prediction");
    lua_pushnumber(L, b->vae_scale);
    lua_setfield(L, -2, "vae_scale");
    if (b->vae) {
        const df_vae_config *vc = df_vae_get_config(b->vae);
        lua_pushinteger(L, 1 << (vc->levels - 1));
        lua_setfield(L, -2, "latent_factor");
        lua_pushinteger(L, vc->latent_channels);
        lua_setfield(L, -2, "latent_channels");
    }
    if (b->unet) {
        const df_unet_config *uc = df_unet_get_config(b->unet);
        lua_pushinteger(L, uc->in_channels);
        lua_setfield(L, -2, "unet_channels");
        /* the picture size it was trained at: the UNet config's sample_size in pixels, else the family's */
        int size = !strcmp(b->family_name, "sdxl") ? 1024 : !strcmp(b->family_name, "sd2") &&
                   !strcmp(b->prediction, "v_prediction") ? 768 : 512;
        if (uc->sample_size > 0 && b->vae) size = uc->sample_size << (df_vae_get_config(b->vae)->levels - 1);
        lua_pushinteger(L, size);
        lua_setfield(L, -2, "size");
    }
    lua_pushstring(L, be->name);
    lua_setfield(L, -2, "device");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    return 1;
}

/* ---- clip ---- */

/* clip:encode(prompt | {prompts}, {clip_skip=, emphasis=}) -> cond, pooled
 * A list is encoded as one batch; shorter prompts are padded with the
 * encoding of an empty chunk to the longest one's length, as A1111 does. */
static int clip_encode(lua_State *L)
{
    df_bundle *b = check_model(L, 1, LD_CLIP);
    df_text_encode_params p = df_text_encode_default_params();
    p.clip_skip = (int)opt_number(L, 3, "clip_skip", 1);
    p.emphasis = opt_bool(L, 3, "emphasis", 1);
    int n = lua_istable(L, 2) ? (int)lua_rawlen(L, 2) : 1;
    if (n < 1 || n > 32) return luaL_argerror(L, 2, "1 to 32 prompts");
    df_tensor *cond[32] = {0}, *pooled[32] = {0}, *pad = NULL, *c = NULL, *pl = NULL;
    int rc = DF_OK;
    int64_t longest = 0;
    for (int i = 0; i < n && !rc; i++) {
        const char *prompt;
        if (lua_istable(L, 2)) {
            lua_rawgeti(L, 2, i + 1);
            prompt = luaL_checkstring(L, -1);
            lua_pop(L, 1);
        } else {
            prompt = luaL_checkstring(L, 2);
        }
        rc = df_text_encoder_encode(b->text, prompt, &p, &cond[i], &pooled[i]);
        if (!rc && cond[i]->shape[1] > longest) longest = cond[i]->shape[1];
    }
    for (int i = 0; i < n && !rc; i++) {
        while (!rc && cond[i]->shape[1] < longest) {
            if (!pad) rc = df_text_encoder_encode(b->text, "", &p, &pad, NULL);
            df_tensor *ext = NULL;
            if (!rc) rc = df_concat(2, (const df_tensor *const[]){cond[i], pad}, 1, &ext);
            df_tensor_free(cond[i]);
            cond[i] = ext;
        }
    }
    if (!rc) rc = df_concat(n, (const df_tensor *const *)cond, 0, &c);
    if (!rc && pooled[0]) rc = df_concat(n, (const df_tensor *const *)pooled, 0, &pl);
    for (int i = 0; i < n; i++) df_tensor_free(cond[i]), df_tensor_free(pooled[i]);
    df_tensor_free(pad);
    if (rc) return ld_raise(L, "clip:encode");
    ld_push_tensor(L, c);
    if (pl) ld_push_tensor(L, pl);
    else lua_pushnil(L);
    return 2;
}

/* ---- unet ---- */

static int read_timesteps(lua_State *L, int idx, int64_t batch, float *t)
{
    if (lua_istable(L, idx)) {
        if ((int64_t)lua_rawlen(L, idx) != batch) return luaL_error(L, "unet: %d timesteps for a batch of %d", (int)lua_rawlen(L, idx), (int)batch);
        for (int64_t i = 0; i < batch; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i + 1);
            t[i] = (float)luaL_checknumber(L, -1);
            lua_pop(L, 1);
        }
    } else {
        float v = (float)luaL_checknumber(L, idx);
        for (int64_t i = 0; i < batch; i++) t[i] = v;
    }
    return 0;
}

/* unet:forward(x, t, cond, {text_embeds=, time_ids=}) */
static int unet_forward(lua_State *L)
{
    df_bundle *b = check_model(L, 1, LD_UNET);
    df_tensor *x = ld_check_tensor(L, 2), *ctx = ld_check_tensor(L, 4), *y = NULL;
    float t[64];
    if (x->ndim < 1 || x->shape[0] > 64) return luaL_argerror(L, 2, "batch of 1 to 64");
    read_timesteps(L, 3, x->shape[0], t);
    df_unet_extra extra = {NULL, NULL};
    if (lua_istable(L, 5)) {
        lua_getfield(L, 5, "text_embeds");
        extra.text_embeds = ld_opt_tensor(L, -1);
        lua_getfield(L, 5, "time_ids");
        extra.time_ids = ld_opt_tensor(L, -1);
    }
    if (df_unet_forward(b->unet, x, t, ctx, extra.text_embeds ? &extra : NULL, &y)) return ld_raise(L, "unet:forward");
    ld_push_tensor(L, y);
    return 1;
}

/* The denoiser of unet:denoiser: the model wrapper (σ -> t, input scaling,
 * prediction conversion) over a UNet call that batches cond and uncond. */
typedef struct unet_den {
    df_model_wrapper mw;
    df_noise_schedule *sched;
    const df_unet *unet;
    df_tensor *cond, *uncond, *pooled, *upooled, *time_ids;
    df_tensor *concat; /* extra input channels (inpainting UNets: mask, masked image latents) */
    float cfg;
} unet_den;

static void unet_den_free(void *user)
{
    unet_den *d = user;
    df_noise_schedule_free(d->sched);
    df_tensor_free(d->cond), df_tensor_free(d->uncond), df_tensor_free(d->pooled), df_tensor_free(d->upooled),
        df_tensor_free(d->time_ids), df_tensor_free(d->concat);
    df_free(d);
}

/* n copies of the rows of a (1 or n, ...) tensor, then m of b's: (n+m, ...). */
static int stack(const df_tensor *a, int64_t n, const df_tensor *b, int64_t m, df_tensor **out)
{
    const df_tensor *parts[128];
    int k = 0;
    for (int64_t i = 0; i < n && k < 128; i++) parts[k++] = a;
    for (int64_t i = 0; b && i < m && k < 128; i++) parts[k++] = b;
    if (a->shape[0] != 1) { /* already per sample */
        if (!b) return df_tensor_reshape(a, a->ndim, a->shape, out);
        return df_concat(2, (const df_tensor *const[]){a, b}, 0, out);
    }
    return df_concat(k, parts, 0, out);
}

static int unet_model(void *user, const df_tensor *x, double t, df_tensor **out)
{
    unet_den *d = user;
    *out = NULL;
    if (ld_interrupted) return df_error(DF_EINVAL, "interrupted");
    int64_t B = x->shape[0];
    int guided = d->uncond && d->cfg != 1.0f;
    int64_t N = guided ? 2 * B : B;
    if (N > 64) return df_error(DF_EINVAL, "unet denoiser: batch %lld too large", (long long)B);
    float ts[64];
    for (int64_t i = 0; i < N; i++) ts[i] = (float)t;
    df_tensor *xx = NULL, *ctx = NULL, *te = NULL, *ti = NULL, *y = NULL, *c = NULL, *u = NULL, *diff = NULL, *g = NULL;
    df_tensor *xc = NULL;
    /* the extra channels join the already scaled input, as diffusers' inpainting pipeline does */
    int rc = d->concat ? df_concat(2, (const df_tensor *const[]){x, d->concat}, 1, &xc) : DF_OK;
    const df_tensor *xin = xc ? xc : x;
    if (!rc) rc = guided ? df_concat(2, (const df_tensor *const[]){xin, xin}, 0, &xx) : df_tensor_reshape(xin, xin->ndim, xin->shape, &xx);
    df_tensor_free(xc);
    if (!rc) rc = stack(d->cond, B, guided ? d->uncond : NULL, B, &ctx);
    if (!rc && d->pooled) rc = stack(d->pooled, B, guided ? (d->upooled ? d->upooled : d->pooled) : NULL, B, &te);
    if (!rc && d->time_ids) rc = stack(d->time_ids, N, NULL, 0, &ti);
    df_unet_extra extra = {te, ti};
    if (!rc) rc = df_unet_forward(d->unet, xx, ts, ctx, te ? &extra : NULL, &y);
    if (!rc && guided) { /* uncond + cfg·(cond − uncond) */
        rc = df_tensor_narrow0(y, 0, B, &c);
        if (!rc) rc = df_tensor_narrow0(y, B, B, &u);
        if (!rc) rc = df_sub(c, u, &diff);
        if (!rc) rc = df_scale(diff, d->cfg, 0.0f, &g);
        if (!rc) rc = df_add(u, g, out);
    } else if (!rc) {
        *out = y;
        y = NULL;
    }
    df_tensor_free(xx), df_tensor_free(ctx), df_tensor_free(te), df_tensor_free(ti), df_tensor_free(y);
    df_tensor_free(c), df_tensor_free(u), df_tensor_free(diff), df_tensor_free(g);
    return rc;
}

/* A new reference to the tensor t[key], NULL when absent; raises when the reference cannot be made (out of
 * memory), which must not pass for "not given". */
static df_tensor *opt_ref(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    df_tensor *v = ld_opt_tensor(L, -1);
    lua_pop(L, 1);
    if (!v) return NULL;
    df_tensor *r = df_tensor_ref(v);
    if (!r) ld_raise(L, key);
    return r;
}

/* unet:denoiser{cond=, uncond=, cfg=7.5, pooled=, uncond_pooled=, time_ids=, prediction=, quantize=,
 * consistency=false, timestep_scaling=10} */
static int unet_denoiser(lua_State *L)
{
    df_bundle *b = check_model(L, 1, LD_UNET);
    luaL_checktype(L, 2, LUA_TTABLE);
    unet_den *d = df_calloc(1, sizeof *d);
    if (!d) return ld_raise(L, "unet:denoiser");
    ld_push_denoiser(L, df_model_wrapper_denoise, &d->mw, NULL, 1);
    /* the userdata owns d from here: its free function is set below */
    ldenoiser *ld = lua_touserdata(L, -1);
    ld->free = unet_den_free;
    ld->den.user = d; /* df_model_wrapper_denoise's user is the wrapper: first member of d */
    d->unet = b->unet;
    d->cond = opt_ref(L, 2, "cond");
    d->uncond = opt_ref(L, 2, "uncond");
    d->pooled = opt_ref(L, 2, "pooled");
    d->upooled = opt_ref(L, 2, "uncond_pooled");
    d->time_ids = opt_ref(L, 2, "time_ids");
    d->concat = opt_ref(L, 2, "concat");
    d->cfg = opt_cfg(L, 2);
    if (!d->cond) return luaL_error(L, "unet:denoiser: 'cond' is required");
    const char *pred = opt_string(L, 2, "prediction");
    int k = df_prediction_from_name(pred ? pred : b->prediction);
    if (k < 0) return luaL_error(L, "unet:denoiser: unknown prediction '%s'", pred);
    df_train_schedule_params tp = df_train_schedule_default_params();
    if (df_noise_schedule_new(&tp, &d->sched)) return ld_raise(L, "unet:denoiser");
    d->mw = df_model_wrapper_default();
    d->mw.model = unet_model;
    d->mw.user = d;
    d->mw.prediction = k;
    d->mw.schedule = d->sched;
    d->mw.quantize = opt_bool(L, 2, "quantize", 1); /* integer timesteps, as diffusers' schedulers give */
    /* LCM models: the consistency boundary condition (diffusers' LCMScheduler) */
    d->mw.consistency = opt_bool(L, 2, "consistency", 0);
    d->mw.timestep_scaling = opt_number(L, 2, "timestep_scaling", 10);
    if (!(d->mw.timestep_scaling > 0)) return luaL_error(L, "unet:denoiser: timestep_scaling must be positive");
    ld->den.schedule = d->sched;
    return 1;
}

/* ---- vae ---- */

/* vae:encode(img, {generator=}) -> latent, scaled by the model's factor
 * (the mean without a generator, a sample with one). */
static int vae_encode(lua_State *L)
{
    df_bundle *b = check_model(L, 1, LD_VAE);
    df_tensor *img = ld_check_tensor(L, 2), *mom = NULL, *z = NULL, *s = NULL;
    df_rng *rng = NULL;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "generator");
        rng = ld_opt_generator(L, -1);
    }
    int tiled = opt_bool(L, 3, "tiled", 0);
    int rc = tiled ? df_vae_encode_tiled(b->vae, img, (int)opt_number(L, 3, "tile", 0), (float)opt_number(L, 3, "overlap", 0), &mom)
                   : df_vae_encode(b->vae, img, &mom);
    if (!rc) rc = df_vae_sample(mom, rng, &z);
    if (!rc) rc = df_scale(z, b->vae_scale, 0.0f, &s);
    df_tensor_free(mom);
    df_tensor_free(z);
    if (rc) return ld_raise(L, "vae:encode");
    ld_push_tensor(L, s);
    return 1;
}

/* vae:decode(latent, {tiled=, tile=, overlap=}) -> image in [-1, 1] */
static int vae_decode(lua_State *L)
{
    df_bundle *b = check_model(L, 1, LD_VAE);
    df_tensor *lat = ld_check_tensor(L, 2), *z = NULL, *img = NULL;
    int rc = df_scale(lat, 1.0f / b->vae_scale, 0.0f, &z);
    if (!rc && opt_bool(L, 3, "tiled", 0))
        rc = df_vae_decode_tiled(b->vae, z, (int)opt_number(L, 3, "tile", 0), (float)opt_number(L, 3, "overlap", 0), &img);
    else if (!rc)
        rc = df_vae_decode(b->vae, z, &img);
    df_tensor_free(z);
    if (rc) return ld_raise(L, "vae:decode");
    ld_push_tensor(L, img);
    return 1;
}

static void new_type(lua_State *L, const char *name, const luaL_Reg *methods)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

void ld_open_models(lua_State *L)
{
    static const luaL_Reg clip_m[] = {{"encode", clip_encode}, {NULL, NULL}};
    static const luaL_Reg unet_m[] = {{"forward", unet_forward}, {"denoiser", unet_denoiser}, {NULL, NULL}};
    static const luaL_Reg vae_m[] = {{"encode", vae_encode}, {"decode", vae_decode}, {NULL, NULL}};
    luaL_newmetatable(L, LD_BUNDLE);
    lua_pushcfunction(L, bundle_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    new_type(L, LD_CLIP, clip_m);
    new_type(L, LD_UNET, unet_m);
    new_type(L, LD_VAE, vae_m);
    lua_pushcfunction(L, l_load);
    lua_setfield(L, -2, "load");
    ld_open_dit(L);
}

/* ---- DiT ---- */

#include "nn/dit.h"

#define LD_DIT "difusa.dit"

typedef struct ldit {
    df_dit *dit;
    df_weights *w;
} ldit;

static int dit_gc(lua_State *L)
{
    ldit *d = luaL_checkudata(L, 1, LD_DIT);
    df_dit_free(d->dit);
    df_weights_free(d->w);
    d->dit = NULL;
    d->w = NULL;
    return 0;
}

static ldit *check_dit(lua_State *L, int idx)
{
    ldit *d = luaL_checkudata(L, idx, LD_DIT);
    if (!d->dit) luaL_error(L, "attempt to use a freed DiT");
    return d;
}

/* difusa.load_dit(path, {device=, heads=}) -> dit or nil, message */
static int l_load_dit(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    df_backend *be = df_backend_cpu();
    df_dit_load_params p = df_dit_load_default_params();
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "device");
        be = ld_backend_opt(L, lua_gettop(L));
        p.heads = (int)opt_number(L, 2, "heads", 0);
    } else {
        be = ld_backend_opt(L, 0);
    }
    ldit *d = lua_newuserdatauv(L, sizeof *d, 0);
    d->dit = NULL;
    d->w = NULL;
    luaL_setmetatable(L, LD_DIT);
    if (df_weights_open(path, &d->w) != DF_OK || df_dit_load(d->w, be, &p, &d->dit) != DF_OK) {
        luaL_pushfail(L);
        lua_pushstring(L, df_last_error());
        return 2;
    }
    return 1;
}

static void read_labels(lua_State *L, int idx, int64_t n, int32_t *out)
{
    if (lua_istable(L, idx)) {
        if ((int64_t)lua_rawlen(L, idx) != n) luaL_error(L, "dit: %d labels for a batch of %d", (int)lua_rawlen(L, idx), (int)n);
        for (int64_t i = 0; i < n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i + 1);
            out[i] = (int32_t)luaL_checkinteger(L, -1);
            lua_pop(L, 1);
        }
    } else {
        int32_t v = (int32_t)luaL_checkinteger(L, idx);
        for (int64_t i = 0; i < n; i++) out[i] = v;
    }
}

/* dit:forward(x, t, labels) */
static int dit_forward(lua_State *L)
{
    ldit *d = check_dit(L, 1);
    df_tensor *x = ld_check_tensor(L, 2), *y = NULL;
    if (x->ndim < 1 || x->shape[0] > 64) return luaL_argerror(L, 2, "batch of 1 to 64");
    float t[64];
    int32_t labels[64];
    read_timesteps(L, 3, x->shape[0], t);
    read_labels(L, 4, x->shape[0], labels);
    if (df_dit_forward(d->dit, x, t, labels, &y)) return ld_raise(L, "dit:forward");
    ld_push_tensor(L, y);
    return 1;
}

static int dit_info(lua_State *L)
{
    const df_dit_config *c = df_dit_get_config(check_dit(L, 1)->dit);
    lua_newtable(L);
    lua_pushinteger(L, c->num_classes);
    lua_setfield(L, -2, "num_classes");
    lua_pushinteger(L, c->in_channels);
    lua_setfield(L, -2, "in_channels");
    lua_pushinteger(L, c->patch);
    lua_setfield(L, -2, "patch");
    lua_pushinteger(L, c->hidden);
    lua_setfield(L, -2, "hidden");
    lua_pushinteger(L, c->depth);
    lua_setfield(L, -2, "depth");
    lua_pushboolean(L, c->learn_sigma);
    lua_setfield(L, -2, "learn_sigma");
    return 1;
}

/* The DiT denoiser: eps prediction through DiT's linear training schedule;
 * guidance as the original sampler applies it (forward_with_cfg): on the
 * first `guide` latent channels (3 by default), the other channels from the
 * conditional half. */
typedef struct dit_den {
    df_model_wrapper mw;
    df_noise_schedule *sched;
    const df_dit *dit;
    int32_t labels[32];
    int n;
    float cfg;
    int guide;
} dit_den;

static void dit_den_free(void *user)
{
    dit_den *d = user;
    df_noise_schedule_free(d->sched);
    df_free(d);
}

static int dit_model(void *user, const df_tensor *x, double t, df_tensor **out)
{
    dit_den *d = user;
    *out = NULL;
    if (ld_interrupted) return df_error(DF_EINVAL, "interrupted");
    const df_dit_config *c = df_dit_get_config(d->dit);
    int64_t B = x->shape[0], C = c->in_channels;
    if (B != d->n) return df_error(DF_ESHAPE, "dit denoiser: %d labels for a batch of %lld", d->n, (long long)B);
    int guided = d->cfg != 1.0f;
    int64_t N = guided ? 2 * B : B;
    float ts[64];
    int32_t labels[64];
    for (int64_t i = 0; i < N; i++) {
        ts[i] = (float)t;
        labels[i] = i < B ? d->labels[i] : c->num_classes; /* the null class for the second half */
    }
    df_tensor *xx = NULL, *y = NULL, *yc = NULL, *yu = NULL, *ec = NULL, *eu = NULL, *diff = NULL, *g = NULL;
    df_tensor *gc = NULL, *gu = NULL, *rest = NULL, *guided_part = NULL;
    int rc = guided ? df_concat(2, (const df_tensor *const[]){x, x}, 0, &xx) : df_tensor_reshape(x, x->ndim, x->shape, &xx);
    if (!rc) rc = df_dit_forward(d->dit, xx, ts, labels, &y);
    if (!rc) rc = df_tensor_narrow0(y, 0, B, &yc);
    if (!rc) rc = df_slice(yc, 1, 0, C, &ec);  /* eps of the conditional half */
    if (!rc && !guided) {
        *out = ec;
        ec = NULL;
    } else if (!rc) {
        int64_t gch = d->guide > 0 && d->guide < C ? d->guide : C;
        rc = df_tensor_narrow0(y, B, B, &yu);
        if (!rc) rc = df_slice(yu, 1, 0, gch, &gu);
        if (!rc) rc = df_slice(ec, 1, 0, gch, &gc);
        if (!rc) rc = df_sub(gc, gu, &diff);
        if (!rc) rc = df_scale(diff, d->cfg, 0.0f, &g);
        if (!rc) rc = df_add(gu, g, &guided_part);
        if (!rc && gch < C) {
            rc = df_slice(ec, 1, gch, C, &rest);
            if (!rc) rc = df_concat(2, (const df_tensor *const[]){guided_part, rest}, 1, out);
        } else if (!rc) {
            *out = guided_part;
            guided_part = NULL;
        }
    }
    df_tensor *all[] = {xx, y, yc, yu, ec, eu, diff, g, gc, gu, rest, guided_part};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) df_tensor_free(all[i]);
    return rc;
}

/* dit:denoiser{labels = {207, 360}, cfg = 4, guide_channels = 3} */
static int dit_denoiser(lua_State *L)
{
    ldit *ld = check_dit(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    dit_den *d = df_calloc(1, sizeof *d);
    if (!d) return ld_raise(L, "dit:denoiser");
    ldenoiser *u = ld_push_denoiser(L, df_model_wrapper_denoise, d, dit_den_free, 1);
    d->dit = ld->dit;
    lua_getfield(L, 2, "labels");
    int n = (int)lua_rawlen(L, -1);
    if (!lua_istable(L, -1) || n < 1 || n > 32) return luaL_error(L, "dit:denoiser: 'labels' must be a list of 1 to 32 classes");
    const df_dit_config *c = df_dit_get_config(d->dit);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        lua_Integer v = luaL_checkinteger(L, -1);
        lua_pop(L, 1);
        if (v < 0 || v > c->num_classes) return luaL_error(L, "dit:denoiser: class %d outside 0..%d", (int)v, c->num_classes);
        d->labels[i] = (int32_t)v;
    }
    lua_pop(L, 1);
    d->n = n;
    d->cfg = opt_cfg(L, 2);
    d->guide = (int)opt_number(L, 2, "guide_channels", 3);
    /* DiT's training schedule: linear betas 1e-4 .. 0.02 over 1000 steps */
    df_train_schedule_params tp = df_train_schedule_default_params();
    tp.kind = DF_BETA_LINEAR;
    tp.beta_start = 0.0001;
    tp.beta_end = 0.02;
    if (df_noise_schedule_new(&tp, &d->sched)) return ld_raise(L, "dit:denoiser");
    d->mw = df_model_wrapper_default();
    d->mw.model = dit_model;
    d->mw.user = d;
    d->mw.prediction = DF_PRED_EPS;
    d->mw.schedule = d->sched;
    d->mw.quantize = opt_bool(L, 2, "quantize", 1);
    u->den.schedule = d->sched;
    return 1;
}

void ld_open_dit(lua_State *L)
{
    static const luaL_Reg dit_m[] = {{"forward", dit_forward}, {"denoiser", dit_denoiser}, {"info", dit_info}, {NULL, NULL}};
    luaL_newmetatable(L, LD_DIT);
    lua_pushcfunction(L, dit_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    luaL_setfuncs(L, dit_m, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_load_dit);
    lua_setfield(L, -2, "load_dit");
}
