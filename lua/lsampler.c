/* Samplers from Lua: the plugin registry (difusa.samplers, difusa.plugins),
 * difusa.sampler(name, opts) callables, samplers written in Lua
 * (difusa.sampler.register), sigma schedules, denoisers (Lua functions,
 * model denoisers, difusa.cfg compositions). */
#include "ldifusa.h"

#include "plugins/registry.h"
#include "sched/schedule.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define LD_REGISTRY "difusa.registry"
#define LD_SAMPLERS_LUA "difusa.lua_samplers"

/* ---- denoisers ---- */

static int den_gc(lua_State *L)
{
    ldenoiser *d = luaL_checkudata(L, 1, LD_DENOISER);
    if (d->free) d->free(d->den.user);
    d->free = NULL;
    d->den.user = NULL;
    return 0;
}

ldenoiser *ld_push_denoiser(lua_State *L, df_denoise_fn fn, void *user, void (*free_fn)(void *), int keep)
{
    if (keep < 0) keep = lua_gettop(L) + keep + 1;
    ldenoiser *d = lua_newuserdatauv(L, sizeof *d, 1);
    d->den.denoise = fn;
    d->den.user = user;
    d->den.schedule = NULL;
    d->den.uncond = NULL;
    d->free = free_fn;
    luaL_setmetatable(L, LD_DENOISER);
    if (keep) {
        lua_pushvalue(L, keep);
        lua_setiuservalue(L, -2, 1);
    }
    return d;
}

/* A Lua function as a denoiser: fn(x, sigma) -> tensor, called under
 * lua_pcall; an error is kept and re-raised after the sampler returns. */
typedef struct lua_den {
    lua_State *L;
    int fn;        /* registry reference */
    int err;       /* registry reference to the error value, or LUA_NOREF */
} lua_den;

static int lua_denoise(void *user, const df_tensor *x, double sigma, df_tensor **out)
{
    lua_den *d = user;
    lua_State *L = d->L;
    *out = NULL;
    if (!lua_checkstack(L, 4)) return df_error(DF_ENOMEM, "Lua stack overflow in a denoiser");
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->fn);
    df_tensor *xr = df_tensor_ref(x);
    if (!xr) {
        lua_pop(L, 1);
        return DF_ENOMEM;
    }
    ld_push_tensor(L, xr);
    lua_pushnumber(L, sigma);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        d->err = luaL_ref(L, LUA_REGISTRYINDEX);
        return df_error(DF_EINVAL, "denoiser raised an error");
    }
    ltensor *b = luaL_testudata(L, -1, LD_TENSOR);
    if (!b || !b->t) {
        lua_pop(L, 1);
        return df_error(DF_EINVAL, "denoiser returned %s, not a tensor", b ? "a freed tensor" : "something else");
    }
    *out = df_tensor_ref(b->t);
    lua_pop(L, 1);
    return *out ? DF_OK : DF_ENOMEM;
}

/* The denoiser at stack index idx: a denoiser userdata, or a Lua function
 * wrapped into `lf` (which the caller releases with release_lua_den). */
static const df_denoiser *get_denoiser(lua_State *L, int idx, lua_den *lf, df_denoiser *tmp)
{
    ldenoiser *u = luaL_testudata(L, idx, LD_DENOISER);
    if (u) return &u->den;
    luaL_checktype(L, idx, LUA_TFUNCTION);
    lf->L = L;
    lua_pushvalue(L, idx);
    lf->fn = luaL_ref(L, LUA_REGISTRYINDEX);
    lf->err = LUA_NOREF;
    tmp->denoise = lua_denoise;
    tmp->user = lf;
    tmp->schedule = NULL;
    tmp->uncond = NULL;
    return tmp;
}

static void release_lua_den(lua_State *L, lua_den *lf)
{
    if (lf->L) luaL_unref(L, LUA_REGISTRYINDEX, lf->fn);
}

/* den:__call(x, sigma) -> x0 */
static int den_call(lua_State *L)
{
    ldenoiser *d = luaL_checkudata(L, 1, LD_DENOISER);
    df_tensor *x = ld_check_tensor(L, 2), *y = NULL;
    if (!d->den.user && d->free) return luaL_error(L, "attempt to use a freed denoiser");
    if (df_denoiser_call(&d->den, x, luaL_checknumber(L, 3), &y)) return ld_raise(L, "denoiser");
    ld_push_tensor(L, y);
    return 1;
}

/* difusa.cfg(cond_denoiser, uncond_denoiser, scale): D = Du + s·(Dc − Du).
 * It keeps the last Du (for CFG++ samplers) and takes the conditional
 * denoiser's training schedule as its own. */
typedef struct cfg_den {
    lua_State *L;
    lua_den lc, lu;
    df_denoiser c, u, tc, tu;
    const df_denoiser *pc, *pu;
    float scale;
    df_tensor *last_u; /* Du of the last call */
} cfg_den;

static int cfg_denoise(void *user, const df_tensor *x, double sigma, df_tensor **out)
{
    cfg_den *d = user;
    df_tensor *c = NULL, *u = NULL, *diff = NULL, *g = NULL;
    int rc = df_denoiser_call(d->pc, x, sigma, &c);
    if (!rc) rc = df_denoiser_call(d->pu, x, sigma, &u);
    if (!rc) rc = df_sub(c, u, &diff);
    if (!rc) rc = df_scale(diff, d->scale, 0.0f, &g);
    if (!rc) rc = df_add(u, g, out);
    df_tensor_free(d->last_u);
    d->last_u = rc ? NULL : u;
    if (rc) df_tensor_free(u);
    df_tensor_free(c), df_tensor_free(diff), df_tensor_free(g);
    return rc;
}

static int cfg_uncond(void *user, df_tensor **out)
{
    cfg_den *d = user;
    *out = NULL;
    if (!d->last_u) return df_error(DF_EINVAL, "cfg denoiser: not called yet, no unconditional estimate");
    *out = df_tensor_ref(d->last_u);
    return *out ? DF_OK : DF_ENOMEM;
}

static void cfg_free(void *user)
{
    cfg_den *d = user;
    release_lua_den(d->L, &d->lc);
    release_lua_den(d->L, &d->lu);
    df_tensor_free(d->last_u);
    df_free(d);
}

static int l_cfg(lua_State *L)
{
    float scale = (float)luaL_checknumber(L, 3);
    cfg_den *d = df_calloc(1, sizeof *d);
    if (!d) return ld_raise(L, "cfg");
    d->L = L;
    d->scale = scale;
    lua_createtable(L, 2, 0); /* keeps both denoisers alive */
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2);
    ldenoiser *ld = ld_push_denoiser(L, cfg_denoise, d, cfg_free, lua_gettop(L));
    d->pc = get_denoiser(L, 1, &d->lc, &d->tc);
    d->pu = get_denoiser(L, 2, &d->lu, &d->tu);
    ld->den.schedule = d->pc->schedule;
    ld->den.uncond = cfg_uncond;
    return 1;
}

/* ---- the registry ---- */

typedef struct lreg {
    df_registry *r;
    int loaded;
} lreg;

static int reg_gc(lua_State *L)
{
    lreg *r = lua_touserdata(L, 1);
    df_registry_free(r->r);
    r->r = NULL;
    return 0;
}

/* Loaded by the stock interpreter, the executable is lua5.4's: look for the
 * samplers relative to this module instead (build/<flavour>/lua/difusa.so ->
 * build/<flavour>/samplers; <libdir>/lua/5.4/difusa.so -> <libdir>/difusa/samplers; in a LuaRocks tree
 * <tree>/lib/lua/5.4/difusa.so -> <tree>/lib/lua/5.4/difusa/samplers). */
static void load_beside_module(df_registry *reg)
{
    Dl_info info;
    if (!dladdr((void *)load_beside_module, &info) || !info.dli_fname) return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", info.dli_fname);
    char *slash = strrchr(dir, '/');
    if (!slash) return;
    *slash = '\0';
    const char *rel[] = {"/../samplers", "/../../difusa/samplers", "/difusa/samplers"};
    for (int i = 0; i < 3; i++) {
        char path[4200];
        struct stat st;
        snprintf(path, sizeof path, "%s%s", dir, rel[i]);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (df_registry_load(reg, path) != DF_OK) df_log(DF_LOG_WARN, "%s", df_last_error());
            return;
        }
    }
}

/* The state's registry, loading the default plugins on first use. */
static df_registry *registry(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LD_REGISTRY);
    lreg *r = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!r->loaded) {
        r->loaded = 1;
        if (df_registry_load_default(r->r) != DF_OK) df_log(DF_LOG_WARN, "%s", df_last_error());
        if (df_registry_count(r->r) == 0) load_beside_module(r->r);
    }
    return r->r;
}

/* difusa.plugins.load(path) -> true or nil, message */
static int l_plugins_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    df_registry *r = registry(L);
    if (df_registry_load(r, path) != DF_OK) {
        luaL_pushfail(L);
        lua_pushstring(L, df_last_error());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* difusa.samplers() -> list of {name=, description=, options=, plugin=, lua=} */
static int l_samplers(lua_State *L)
{
    df_registry *r = registry(L);
    lua_newtable(L);
    int k = 0;
    for (int i = 0; i < df_registry_count(r); i++) {
        const df_sampler_info *s = df_registry_get(r, i);
        char opts[2048];
        df_sampler_describe(s, opts, sizeof opts);
        lua_newtable(L);
        lua_pushstring(L, s->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, s->description ? s->description : "");
        lua_setfield(L, -2, "description");
        lua_pushstring(L, opts);
        lua_setfield(L, -2, "options");
        lua_pushstring(L, s->plugin ? s->plugin : "");
        lua_setfield(L, -2, "plugin");
        lua_rawseti(L, -2, ++k);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, LD_SAMPLERS_LUA);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_newtable(L);
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, "name");
        lua_pushliteral(L, "written in Lua");
        lua_setfield(L, -2, "description");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "lua");
        lua_rawseti(L, -5, ++k);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 1;
}

/* ---- sigma schedules ---- */

static double *read_sigmas(lua_State *L, int idx, int *n)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (int)lua_rawlen(L, idx);
    if (*n < 2) luaL_error(L, "sigmas: at least 2 values, got %d", *n);
    double *s = lua_newuserdatauv(L, (size_t)*n * sizeof *s, 0); /* freed by the GC */
    for (int i = 0; i < *n; i++) {
        lua_rawgeti(L, idx, i + 1);
        s[i] = luaL_checknumber(L, -1);
        lua_pop(L, 1);
    }
    return s;
}

/* difusa.sigmas(model_or_nil, steps, kind, {sigma_min=, sigma_max=, rho=, strength=, steps_offset=}) */
static int l_sigmas(lua_State *L)
{
    int steps = (int)luaL_checkinteger(L, 2);
    const char *kind = luaL_optstring(L, 3, "karras");
    int k = df_sigmas_kind_from_name(kind);
    if (k < 0) return luaL_argerror(L, 3, lua_pushfstring(L, "unknown schedule '%s'", kind));
    df_sigmas_params p = df_sigmas_default_params();
    p.kind = k;
    p.steps = steps;
    double strength = 1.0;
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "sigma_min");
        p.sigma_min = luaL_optnumber(L, -1, p.sigma_min);
        lua_getfield(L, 4, "sigma_max");
        p.sigma_max = luaL_optnumber(L, -1, p.sigma_max);
        lua_getfield(L, 4, "rho");
        p.rho = luaL_optnumber(L, -1, p.rho);
        lua_getfield(L, 4, "steps_offset");
        p.steps_offset = (int)luaL_optinteger(L, -1, p.steps_offset);
        lua_getfield(L, 4, "strength");
        strength = luaL_optnumber(L, -1, 1.0);
        lua_pop(L, 5);
    }
    df_noise_schedule *s = NULL;
    if (!lua_isnil(L, 1)) { /* a model: Stable Diffusion's training schedule, or DiT's linear one */
        df_train_schedule_params tp = df_train_schedule_default_params();
        if (luaL_testudata(L, 1, "difusa.dit")) {
            tp.kind = DF_BETA_LINEAR;
            tp.beta_start = 0.0001;
            tp.beta_end = 0.02;
        }
        if (df_noise_schedule_new(&tp, &s)) return ld_raise(L, "sigmas");
    }
    double *out = NULL;
    int n = 0;
    int rc = strength < 1.0 ? df_sigmas_new_for_strength(s, &p, strength, &out, &n) : df_sigmas_new(s, &p, &out, &n);
    df_noise_schedule_free(s);
    if (rc) return ld_raise(L, "sigmas");
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushnumber(L, out[i]);
        lua_rawseti(L, -2, i + 1);
    }
    df_sigmas_free(out);
    return 1;
}

/* ---- running a sampler ---- */

typedef struct run_ctx {
    lua_State *L;
    int callback;  /* stack index of the callback, or 0 */
    int err;       /* registry ref of a callback error, or LUA_NOREF */
} run_ctx;

static int on_step(void *user, int i, int n, double sigma, double sigma_next, df_tensor *x, const df_tensor *denoised)
{
    run_ctx *c = user;
    if (ld_interrupted) return df_error(DF_EINVAL, "interrupted at step %d of %d", i + 1, n);
    if (!c->callback) return DF_OK;
    lua_State *L = c->L;
    lua_pushvalue(L, c->callback);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, i + 1);
    lua_setfield(L, -2, "i");
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    lua_pushnumber(L, sigma);
    lua_setfield(L, -2, "sigma");
    lua_pushnumber(L, sigma_next);
    lua_setfield(L, -2, "sigma_next");
    df_tensor *xr = df_tensor_ref(x), *dr = denoised ? df_tensor_ref(denoised) : NULL;
    if (!xr || (denoised && !dr)) { /* out of memory: not a callback without its tensors */
        df_tensor_free(xr), df_tensor_free(dr);
        lua_pop(L, 2);
        return DF_ENOMEM;
    }
    ld_push_tensor(L, xr), lua_setfield(L, -2, "x");
    if (dr) ld_push_tensor(L, dr), lua_setfield(L, -2, "denoised");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        c->err = luaL_ref(L, LUA_REGISTRYINDEX);
        return df_error(DF_EINVAL, "callback raised an error");
    }
    lua_pop(L, 1);
    return DF_OK;
}

/* Raises a Lua error value kept in the registry (from a callback or a Lua denoiser). */
static int reraise(lua_State *L, int ref)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return lua_error(L);
}

/* A run that ends in NaN or Inf (non-finite weights or inputs, a diverging sampler) is an error, not a
 * picture: counts the values that are not finite (on a CPU copy: a latent is small). */
static int check_finite(const df_tensor *t, const char *name)
{
    df_tensor *c = NULL;
    int rc = df_tensor_to(t, df_backend_cpu(), &c);
    if (rc) return rc;
    const float *v = df_tensor_data(c);
    int64_t n = df_tensor_numel(c), bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(v[i]);
    df_tensor_free(c);
    if (bad)
        return df_error(DF_EFORMAT, "sampler %s: %lld of the %lld values of the result are not finite (NaN or Inf: "
                        "from non-finite model weights or inputs, or a diverging sampler)", name, (long long)bad,
                        (long long)n);
    return DF_OK;
}

/* sampler(denoise, x, sigmas, {callback=, generator=, seed=, options=, mask=, init=, noise=}) -> sample
 * upvalues: 1 name, 2 options string */
static int sampler_call(lua_State *L)
{
    /* index 1 is the sampler object itself (__call) */
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    df_tensor *x = ld_check_tensor(L, 3);
    int n;
    double *sigmas = read_sigmas(L, 4, &n);
    df_sample_params p = df_sample_default_params();
    lua_den lf = {0};
    df_denoiser tmp;
    p.denoiser = get_denoiser(L, 2, &lf, &tmp);
    p.sigmas = sigmas;
    p.n_sigmas = n;
    p.options = lua_tostring(L, lua_upvalueindex(2));
    run_ctx ctx = {L, 0, LUA_NOREF};
    df_rng *own = NULL;
    lua_Integer seed = 0;
    int have_seed = 0;
    if (lua_istable(L, 5)) {
        lua_getfield(L, 5, "callback");
        if (!lua_isnil(L, -1)) {
            luaL_checktype(L, -1, LUA_TFUNCTION);
            ctx.callback = lua_gettop(L);
        } else {
            lua_pop(L, 1);
        }
        lua_getfield(L, 5, "generator");
        p.rng = ld_opt_generator(L, -1);
        lua_getfield(L, 5, "seed");
        if (!lua_isnil(L, -1)) {
            seed = luaL_checkinteger(L, -1);
            have_seed = 1;
        }
        lua_getfield(L, 5, "options");
        if (!lua_isnil(L, -1)) p.options = luaL_checkstring(L, -1);
        lua_getfield(L, 5, "mask");
        p.mask = ld_opt_tensor(L, -1);
        lua_getfield(L, 5, "init");
        p.init = ld_opt_tensor(L, -1);
        lua_getfield(L, 5, "noise");
        p.noise = ld_opt_tensor(L, -1);
    }
    p.on_step = on_step;
    p.step_user = &ctx;
    ltensor *out = ld_tensor_box(L); /* the last thing that can raise before the run */
    if (!p.rng && !(p.rng = own = df_rng_new(DF_RNG_CPU, have_seed ? (uint64_t)seed : 0))) {
        release_lua_den(L, &lf);
        return ld_raise(L, name);
    }
    int rc = df_tensor_to(x, df_tensor_backend(x), &out->t);
    if (!rc) rc = df_sample(registry(L), name, &p, out->t);
    if (!rc) rc = check_finite(out->t, name);
    df_rng_free(own);
    int lerr = lf.L ? lf.err : LUA_NOREF;
    release_lua_den(L, &lf);
    if (ctx.err != LUA_NOREF) return reraise(L, ctx.err);
    if (lerr != LUA_NOREF) return reraise(L, lerr);
    if (rc) return ld_raise(L, name);
    return 1;
}

/* A sampler written in Lua, called as sampler(denoise, x, sigmas, extra):
 * upvalue 1 the function, 2 the options given to difusa.sampler. */
static int lua_sampler_call(lua_State *L)
{
    int top = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    for (int i = 2; i <= 4; i++) lua_pushvalue(L, i);
    if (top >= 5) lua_pushvalue(L, 5);
    else lua_newtable(L);
    if (!lua_isnil(L, lua_upvalueindex(2))) { /* options the sampler was made with, unless given again */
        lua_pushnil(L);
        while (lua_next(L, lua_upvalueindex(2))) {
            lua_pushvalue(L, -2);
            lua_rawget(L, -4);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, -4);
            } else {
                lua_pop(L, 2);
            }
        }
    }
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L) - top;
}

/* Pushes "k=v k=v" from an options table (or the string itself, or ""). */
static const char *options_string(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) {
        lua_pushliteral(L, "");
        return "";
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushvalue(L, idx);
        return lua_tostring(L, -1);
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "sampler options: keys must be names");
        const char *k = lua_tostring(L, -2);
        const char *v = luaL_tolstring(L, -1, NULL); /* pushes */
        lua_pushfstring(L, "%s=%s ", k, v);
        lua_remove(L, -2);  /* the tolstring copy */
        lua_insert(L, -3);  /* the "k=v " under key and value */
        lua_pop(L, 1);      /* the value: key stays for lua_next */
        n++;
    }
    if (n == 0) lua_pushliteral(L, "");
    else lua_concat(L, n);
    return lua_tostring(L, -1);
}

/* difusa.sampler(name, options) -> callable sampler(denoise, x, sigmas, extra).
 * Samplers registered from Lua come first, then the plugins'. */
static int l_sampler_new(lua_State *L)
{
    const char *name = luaL_checkstring(L, 2); /* 1 is the difusa.sampler table (__call) */
    lua_settop(L, 3);
    lua_newtable(L); /* the sampler object */
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    int obj = lua_gettop(L);
    lua_newtable(L); /* its metatable */
    lua_getfield(L, LUA_REGISTRYINDEX, LD_SAMPLERS_LUA);
    lua_getfield(L, -1, name);
    if (!lua_isnil(L, -1)) {
        lua_pushvalue(L, 3);
        lua_pushcclosure(L, lua_sampler_call, 2);
        lua_setfield(L, obj + 1, "__call");
        lua_pop(L, 1);
    } else {
        lua_pop(L, 2);
        df_registry *r = registry(L);
        if (!df_registry_find(r, name)) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; i < df_registry_count(r); i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, df_registry_get(r, i)->name);
            }
            luaL_pushresult(&b);
            return luaL_error(L, "unknown sampler '%s' (known: %s)", name, lua_tostring(L, -1));
        }
        lua_pushstring(L, name);
        options_string(L, 3);
        lua_pushcclosure(L, sampler_call, 2);
        lua_setfield(L, obj + 1, "__call");
    }
    lua_setmetatable(L, obj);
    lua_settop(L, obj);
    return 1;
}

/* difusa.sampler.register(name, fn): a sampler written in Lua,
 * fn(denoise, x, sigmas, extra) -> sample. */
static int l_sampler_register(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (df_registry_find(registry(L), name))
        return luaL_error(L, "sampler.register: '%s' is already a built-in or plugin sampler", name);
    lua_getfield(L, LUA_REGISTRYINDEX, LD_SAMPLERS_LUA);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, name);
    return 0;
}

void ld_open_samplers(lua_State *L)
{
    luaL_newmetatable(L, LD_DENOISER);
    lua_pushcfunction(L, den_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, den_call);
    lua_setfield(L, -2, "__call");
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LD_REGISTRY);
    if (lua_isnil(L, -1)) {
        lreg *r = lua_newuserdatauv(L, sizeof *r, 0);
        r->r = NULL;
        r->loaded = 0;
        lua_newtable(L);
        lua_pushcfunction(L, reg_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        if (df_registry_new(&r->r) != DF_OK) luaL_error(L, "difusa: %s", df_last_error());
        lua_setfield(L, LUA_REGISTRYINDEX, LD_REGISTRY);
        lua_newtable(L);
        lua_setfield(L, LUA_REGISTRYINDEX, LD_SAMPLERS_LUA);
    }
    lua_pop(L, 1);
    /* difusa.sampler: callable table with .register */
    lua_newtable(L);
    lua_pushcfunction(L, l_sampler_register);
    lua_setfield(L, -2, "register");
    lua_newtable(L);
    lua_pushcfunction(L, l_sampler_new);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "sampler");
    lua_newtable(L);
    lua_pushcfunction(L, l_plugins_load);
    lua_setfield(L, -2, "load");
    lua_setfield(L, -2, "plugins");
    static const luaL_Reg f[] = {{"samplers", l_samplers}, {"sigmas", l_sigmas}, {"cfg", l_cfg}, {NULL, NULL}};
    luaL_setfuncs(L, f, 0);
}
