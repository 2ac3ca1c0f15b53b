/* difusa.image: files to tensors and back, PNG text chunks (A1111's
 * "parameters"), grids, resizing, cropping, the A1111 infotext and model hash. */
#include "ldifusa.h"

#include "io/image.h"

#include <string.h>

static int fail(lua_State *L)
{
    luaL_pushfail(L);
    lua_pushstring(L, df_last_error());
    return 2;
}

static int push_or_fail(lua_State *L, int rc, df_tensor *t)
{
    if (rc) return fail(L);
    ld_push_tensor(L, t);
    return 1;
}

/* difusa.image.load(path) -> (1, 3, H, W) in [-1, 1], or nil, message */
static int l_load(lua_State *L)
{
    df_tensor *t = NULL;
    int rc = df_image_load(luaL_checkstring(L, 1), &t);
    return push_or_fail(L, rc, t);
}

static int l_load_mask(lua_State *L)
{
    df_tensor *t = NULL;
    int rc = df_image_load_mask(luaL_checkstring(L, 1), &t);
    return push_or_fail(L, rc, t);
}

/* difusa.image.save(img, path, {metadata = {parameters = "...", key = "value"}})
 * -> true or nil, message. "parameters" is written first, as A1111 does. */
static int l_save(lua_State *L)
{
    df_tensor *img = ld_check_tensor(L, 1);
    const char *path = luaL_checkstring(L, 2);
    df_image_text text[32];
    int n = 0;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "metadata");
        if (lua_istable(L, -1)) {
            int m = lua_gettop(L);
            lua_getfield(L, m, "parameters");
            if (lua_isstring(L, -1)) text[n++] = (df_image_text){"parameters", lua_tostring(L, -1)};
            lua_pop(L, 1);
            lua_pushnil(L);
            while (lua_next(L, m) && n < 32) {
                if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "parameters") && lua_isstring(L, -1))
                    text[n++] = (df_image_text){lua_tostring(L, -2), lua_tostring(L, -1)};
                lua_pop(L, 1);
            }
        }
    }
    if (df_image_save(img, path, text, n)) return fail(L); /* strings live in the metadata table */
    lua_pushboolean(L, 1);
    return 1;
}

static int l_read_text(lua_State *L)
{
    char *v = NULL;
    if (df_image_read_text(luaL_checkstring(L, 1), luaL_optstring(L, 2, "parameters"), &v)) return fail(L);
    lua_pushstring(L, v);
    df_image_string_free(v);
    return 1;
}

static int l_grid(lua_State *L)
{
    df_tensor *t = NULL;
    int rc = df_image_grid(ld_check_tensor(L, 1), (int)luaL_optinteger(L, 2, 4), &t);
    if (rc) return ld_raise(L, "image.grid");
    ld_push_tensor(L, t);
    return 1;
}

static int l_resize(lua_State *L)
{
    df_tensor *t = NULL;
    int rc = df_image_resize(ld_check_tensor(L, 1), (int)luaL_checkinteger(L, 2), (int)luaL_checkinteger(L, 3), &t);
    if (rc) return ld_raise(L, "image.resize");
    ld_push_tensor(L, t);
    return 1;
}

static int l_crop(lua_State *L)
{
    df_tensor *t = NULL;
    int rc = df_image_crop(ld_check_tensor(L, 1), (int)luaL_checkinteger(L, 2), (int)luaL_checkinteger(L, 3),
                           (int)luaL_checkinteger(L, 4), (int)luaL_checkinteger(L, 5), &t);
    if (rc) return ld_raise(L, "image.crop");
    ld_push_tensor(L, t);
    return 1;
}

static const char *field_s(lua_State *L, const char *k)
{
    lua_getfield(L, 1, k);
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1);
    return s;
}

static lua_Number field_n(lua_State *L, const char *k, lua_Number d)
{
    lua_getfield(L, 1, k);
    lua_Number v = lua_isnil(L, -1) ? d : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* difusa.image.parameters{prompt=, negative=, steps=, sampler=, scheduler=, cfg=, seed=,
 * width=, height=, model_hash=, model=, strength=, clip_skip=} -> A1111's infotext */
static int l_parameters(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    df_a1111_params p = df_a1111_default_params();
    p.prompt = field_s(L, "prompt");
    p.negative = field_s(L, "negative");
    p.steps = (int)field_n(L, "steps", p.steps);
    p.sampler = field_s(L, "sampler");
    p.scheduler = field_s(L, "scheduler");
    p.cfg = field_n(L, "cfg", p.cfg);
    p.seed = (int64_t)field_n(L, "seed", 0);
    p.width = (int)field_n(L, "width", p.width);
    p.height = (int)field_n(L, "height", p.height);
    p.model_hash = field_s(L, "model_hash");
    p.model_name = field_s(L, "model");
    p.denoising_strength = field_n(L, "strength", -1);
    p.clip_skip = (int)field_n(L, "clip_skip", 1);
    char *s = NULL;
    if (df_image_a1111_parameters(&p, &s)) return ld_raise(L, "image.parameters");
    lua_pushstring(L, s);
    df_image_string_free(s);
    return 1;
}

static int l_model_hash(lua_State *L)
{
    char h[11];
    if (df_file_hash_a1111(luaL_checkstring(L, 1), h)) return fail(L);
    lua_pushstring(L, h);
    return 1;
}

void ld_open_image(lua_State *L)
{
    static const luaL_Reg f[] = {
        {"load", l_load},   {"load_mask", l_load_mask}, {"save", l_save}, {"read_text", l_read_text},
        {"grid", l_grid},   {"resize", l_resize},       {"crop", l_crop}, {"parameters", l_parameters},
        {"model_hash", l_model_hash}, {NULL, NULL},
    };
    lua_newtable(L);
    luaL_setfuncs(L, f, 0);
    lua_setfield(L, -2, "image");
}
