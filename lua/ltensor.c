/* difusa's Lua binding: tensors. Each userdata box holds one df_tensor
 * reference; __gc and __close release it and null the pointer, so a closed
 * tensor raises "attempt to use a freed tensor" instead of crashing. */
#include "ldifusa.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- boxes ---- */

ltensor *ld_tensor_box(lua_State *L)
{
    ltensor *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->t = NULL;
    luaL_setmetatable(L, LD_TENSOR);
    return b;
}

/* Lua sees only the small box, not the tensor's memory: without help its collector would let a loop of
 * temporaries (a denoiser written in Lua, say) pile up hundreds of MB before running. Each new tensor
 * advances the collector as an allocation of its size would. */
static void account(lua_State *L, const df_tensor *t)
{
    int64_t kib = df_tensor_numel(t) * (int64_t)df_dtype_size(t->dtype) / 1024;
    if (kib > 0) lua_gc(L, LUA_GCSTEP, (int)(kib < (1 << 20) ? kib : (1 << 20)));
}

void ld_push_tensor(lua_State *L, df_tensor *t)
{
    ltensor *b = ld_tensor_box(L);
    b->t = t;
    if (t) account(L, t);
}

df_tensor *ld_check_tensor(lua_State *L, int idx)
{
    ltensor *b = luaL_checkudata(L, idx, LD_TENSOR);
    if (!b->t) luaL_error(L, "attempt to use a freed tensor (argument #%d)", idx);
    return b->t;
}

df_tensor *ld_opt_tensor(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : ld_check_tensor(L, idx);
}

int ld_is_tensor(lua_State *L, int idx) { return luaL_testudata(L, idx, LD_TENSOR) != NULL; }

/* Raises the library's last error, freeing nothing: callers free their
 * temporaries before calling. */
int ld_raise(lua_State *L, const char *what)
{
    return luaL_error(L, "%s: %s", what, df_last_error());
}

/* Pushes the result of an op or raises. */
static int ret(lua_State *L, int rc, df_tensor *t, const char *what)
{
    if (rc != DF_OK) return ld_raise(L, what);
    ld_push_tensor(L, t);
    return 1;
}

/* ---- shapes ---- */

int ld_read_shape(lua_State *L, int idx, int64_t shape[DF_MAX_DIMS])
{
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = (int)lua_rawlen(L, idx);
    if (n < 1 || n > DF_MAX_DIMS) luaL_error(L, "shape must have 1 to %d dimensions, got %d", DF_MAX_DIMS, n);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || v < 0) luaL_error(L, "shape entry %d must be a non-negative integer", i + 1);
        shape[i] = v;
    }
    return n;
}

/* ---- constructors ---- */

static df_tensor *filled(lua_State *L, int idx, float value, int *ndim_out)
{
    int64_t shape[DF_MAX_DIMS];
    int nd = ld_read_shape(L, idx, shape);
    df_backend *be = ld_backend_opt(L, idx + 1);
    ltensor *b = ld_tensor_box(L);
    b->t = df_tensor_new(be, DF_F32, nd, shape);
    if (!b->t || df_fill(b->t, value) != DF_OK) ld_raise(L, "difusa.tensor");
    if (ndim_out) *ndim_out = nd;
    return b->t;
}

static int t_zeros(lua_State *L) { return filled(L, 1, 0.0f, NULL), 1; }
static int t_ones(lua_State *L) { return filled(L, 1, 1.0f, NULL), 1; }

static int t_full(lua_State *L)
{
    float v = (float)luaL_checknumber(L, 2);
    lua_remove(L, 2);
    return filled(L, 1, v, NULL), 1;
}

/* difusa.from_table(values, shape) */
static int t_from_table(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t shape[DF_MAX_DIMS];
    int nd;
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (lua_isnoneornil(L, 2)) {
        nd = 1;
        shape[0] = n;
    } else {
        nd = ld_read_shape(L, 2, shape);
    }
    int64_t numel = 1;
    for (int i = 0; i < nd; i++) numel *= shape[i];
    if (numel != n) return luaL_error(L, "from_table: %d values do not fill the shape (%d elements)", (int)n, (int)numel);
    ltensor *b = ld_tensor_box(L);
    b->t = df_tensor_new(NULL, DF_F32, nd, shape);
    if (!b->t) return ld_raise(L, "from_table");
    float *d = df_tensor_data(b->t);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        int ok;
        lua_Number v = lua_tonumberx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) return luaL_error(L, "from_table: value %d is not a number", (int)(i + 1));
        d[i] = (float)v;
    }
    return 1;
}

/* ---- properties ---- */

static int m_shape(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int m_dtype(lua_State *L)
{
    lua_pushstring(L, df_dtype_name(ld_check_tensor(L, 1)->dtype));
    return 1;
}

static int m_device(lua_State *L)
{
    lua_pushstring(L, df_tensor_backend(ld_check_tensor(L, 1))->name);
    return 1;
}

static int m_numel(lua_State *L)
{
    lua_pushinteger(L, df_tensor_numel(ld_check_tensor(L, 1)));
    return 1;
}

static int m_to(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1);
    df_backend *be = ld_backend_opt(L, 2);
    if (lua_type(L, 2) == LUA_TSTRING && !strcmp(lua_tostring(L, 2), "f16")) {
        df_tensor *y = NULL;
        int rc_ = df_cast(t, DF_F16, &y);
    return ret(L, rc_, y, "to");
    }
    df_tensor *y = NULL;
    if (df_tensor_backend(t) == be) return lua_settop(L, 1), 1;
    int rc_ = df_tensor_to(t, be, &y);
    return ret(L, rc_, y, "to");
}

static int m_clone(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1), *y = NULL;
    int rc_ = df_tensor_to(t, df_tensor_backend(t), &y);
    return ret(L, rc_, y, "clone");
}

/* A host copy as f32 (the caller frees). */
static df_tensor *host_f32(lua_State *L, df_tensor *t)
{
    df_tensor *h = NULL, *f = NULL;
    int rc = df_tensor_to(t, NULL, &h);
    if (!rc && h->dtype != DF_F32) {
        rc = df_cast(h, DF_F32, &f);
        df_tensor_free(h);
        h = f;
    }
    if (rc) ld_raise(L, "reading a tensor");
    return h;
}

static int m_table(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1);
    int64_t n = df_tensor_numel(t);
    if (n > (1 << 24)) return luaL_error(L, "table: tensor too large (%d elements)", (int)n);
    df_tensor *h = host_f32(L, t);
    const float *d = df_tensor_data(h);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushnumber(L, d[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    df_tensor_free(h);
    return 1;
}

static int m_item(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1);
    if (df_tensor_numel(t) != 1) return luaL_error(L, "item: tensor has %d elements, not 1", (int)df_tensor_numel(t));
    df_tensor *h = host_f32(L, t);
    lua_pushnumber(L, ((const float *)df_tensor_data(h))[0]);
    df_tensor_free(h);
    return 1;
}

static int m_tostring(lua_State *L)
{
    ltensor *b = luaL_checkudata(L, 1, LD_TENSOR);
    if (!b->t) {
        lua_pushliteral(L, "tensor (freed)");
        return 1;
    }
    char shape[80];
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    lua_pushfstring(L, "tensor%s %s on %s", df_tensor_shape_str(b->t, shape, sizeof shape), df_dtype_name(b->t->dtype),
                    df_tensor_backend(b->t)->name);
    luaL_addvalue(&buf);
    if (b->t->dtype == DF_F32 || b->t->dtype == DF_F16 || b->t->dtype == DF_BF16) {
        df_tensor *h = host_f32(L, b->t);
        const float *d = df_tensor_data(h);
        int64_t n = df_tensor_numel(h);
        luaL_addstring(&buf, " [");
        for (int64_t i = 0; i < n && i < 6; i++) {
            char v[32];
            snprintf(v, sizeof v, i ? ", %.4g" : "%.4g", (double)d[i]);
            luaL_addstring(&buf, v);
        }
        luaL_addstring(&buf, n > 6 ? ", ...]" : "]");
        df_tensor_free(h);
    }
    luaL_pushresult(&buf);
    return 1;
}

static int m_free(lua_State *L)
{
    ltensor *b = luaL_checkudata(L, 1, LD_TENSOR);
    df_tensor_free(b->t);
    b->t = NULL;
    return 0;
}

/* ---- arithmetic ---- */

static int arith(lua_State *L, df_binary_op op, const char *name)
{
    int ta = ld_is_tensor(L, 1), tb = ld_is_tensor(L, 2);
    df_tensor *y = NULL;
    int rc;
    if (ta && tb) {
        rc = df_binary(op, ld_check_tensor(L, 1), ld_check_tensor(L, 2), &y);
    } else if (ta) {
        df_tensor *a = ld_check_tensor(L, 1);
        float s = (float)luaL_checknumber(L, 2);
        switch (op) {
        case DF_ADD: rc = df_scale(a, 1.0f, s, &y); break;
        case DF_SUB: rc = df_scale(a, 1.0f, -s, &y); break;
        case DF_MUL: rc = df_scale(a, s, 0.0f, &y); break;
        default: rc = df_scale(a, 1.0f / s, 0.0f, &y); break;
        }
    } else {
        df_tensor *b = ld_check_tensor(L, 2);
        float s = (float)luaL_checknumber(L, 1);
        if (op == DF_ADD || op == DF_MUL) {
            rc = op == DF_ADD ? df_scale(b, 1.0f, s, &y) : df_scale(b, s, 0.0f, &y);
        } else if (op == DF_SUB) {
            rc = df_scale(b, -1.0f, s, &y);
        } else { /* s / b */
            df_tensor *num = df_tensor_new(df_tensor_backend(b), DF_F32, 1, (int64_t[]){1});
            rc = num ? df_fill(num, s) : DF_ENOMEM;
            if (!rc) rc = df_div(num, b, &y);
            df_tensor_free(num);
        }
    }
    return ret(L, rc, y, name);
}

static int m_add(lua_State *L) { return arith(L, DF_ADD, "add"); }
static int m_sub(lua_State *L) { return arith(L, DF_SUB, "sub"); }
static int m_mul(lua_State *L) { return arith(L, DF_MUL, "mul"); }
static int m_div(lua_State *L) { return arith(L, DF_DIV, "div"); }

static int m_unm(lua_State *L)
{
    df_tensor *y = NULL;
    int rc_ = df_scale(ld_check_tensor(L, 1), -1.0f, 0.0f, &y);
    return ret(L, rc_, y, "unm");
}

/* a:lerp(b, w) = a + w·(b − a) */
static int m_lerp(lua_State *L)
{
    df_tensor *a = ld_check_tensor(L, 1), *b = ld_check_tensor(L, 2), *d = NULL, *wd = NULL, *y = NULL;
    float w = (float)luaL_checknumber(L, 3);
    int rc = df_sub(b, a, &d);
    if (!rc) rc = df_scale(d, w, 0.0f, &wd);
    if (!rc) rc = df_add(a, wd, &y);
    df_tensor_free(d);
    df_tensor_free(wd);
    return ret(L, rc, y, "lerp");
}

/* Whole-tensor mean / std (torch's unbiased std) as numbers. */
static int moments(lua_State *L, int want_std)
{
    df_tensor *t = ld_check_tensor(L, 1), *flat = NULL, *r = NULL;
    int rc = df_tensor_reshape(t, 1, (int64_t[]){df_tensor_numel(t)}, &flat);
    if (!rc) rc = df_reduce(want_std ? DF_REDUCE_VAR : DF_REDUCE_MEAN, flat, 0, 1, &r);
    df_tensor_free(flat);
    if (rc) return ld_raise(L, want_std ? "std" : "mean");
    float v;
    rc = df_tensor_read(r, &v, sizeof v);
    df_tensor_free(r);
    if (rc) return ld_raise(L, "reading a reduction");
    lua_pushnumber(L, want_std ? sqrt(v) : v);
    return 1;
}

static int m_mean(lua_State *L) { return moments(L, 0); }
static int m_std(lua_State *L) { return moments(L, 1); }

/* Element-wise clamp on the host (any backend: moved there and back). */
static int m_clamp(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1);
    float lo = (float)luaL_optnumber(L, 2, -HUGE_VAL), hi = (float)luaL_optnumber(L, 3, HUGE_VAL);
    df_tensor *h = host_f32(L, t), *y = NULL;
    float *d = df_tensor_data(h);
    for (int64_t i = 0; i < df_tensor_numel(h); i++) d[i] = d[i] < lo ? lo : d[i] > hi ? hi : d[i];
    int rc = df_tensor_to(h, df_tensor_backend(t), &y);
    df_tensor_free(h);
    return ret(L, rc, y, "clamp");
}

/* ---- layout ---- */

/* t:slice(dim, first, last): 1-based, inclusive, like string.sub */
static int m_slice(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1), *y = NULL;
    int dim = (int)luaL_checkinteger(L, 2);
    lua_Integer first = luaL_checkinteger(L, 3), last = luaL_optinteger(L, 4, first);
    if (dim < 1 || dim > t->ndim) return luaL_argerror(L, 2, "dimension out of range");
    int rc_ = df_slice(t, dim - 1, first - 1, last, &y);
    return ret(L, rc_, y, "slice");
}

static int m_reshape(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1), *y = NULL;
    int64_t shape[DF_MAX_DIMS];
    int nd;
    if (lua_istable(L, 2)) {
        nd = ld_read_shape_signed(L, 2, shape);
    } else {
        nd = lua_gettop(L) - 1;
        if (nd < 1 || nd > DF_MAX_DIMS) return luaL_error(L, "reshape: 1 to %d dimensions", DF_MAX_DIMS);
        for (int i = 0; i < nd; i++) shape[i] = luaL_checkinteger(L, i + 2);
    }
    int rc_ = df_reshape(t, nd, shape, &y);
    return ret(L, rc_, y, "reshape");
}

int ld_read_shape_signed(lua_State *L, int idx, int64_t shape[DF_MAX_DIMS])
{
    int n = (int)lua_rawlen(L, idx);
    if (n < 1 || n > DF_MAX_DIMS) luaL_error(L, "shape must have 1 to %d dimensions, got %d", DF_MAX_DIMS, n);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        shape[i] = luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    return n;
}

static int m_permute(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1), *y = NULL;
    int perm[DF_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) perm[i] = (int)luaL_checkinteger(L, i + 2) - 1;
    int rc_ = df_permute(t, perm, &y);
    return ret(L, rc_, y, "permute");
}

/* difusa.cat({a, b, ...}, dim) and a:cat(b, dim) */
static int cat_list(lua_State *L, int list, int dim)
{
    int n = (int)lua_rawlen(L, list);
    if (n < 1 || n > 64) return luaL_error(L, "cat: 1 to 64 tensors, got %d", n);
    df_tensor *ts[64];
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, list, i + 1);
        ts[i] = ld_check_tensor(L, -1);
        lua_pop(L, 1);
    }
    df_tensor *y = NULL;
    int rc_ = df_concat(n, (const df_tensor *const *)ts, dim > 0 ? dim - 1 : dim, &y);
    return ret(L, rc_, y, "cat");
}

static int t_cat(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    return cat_list(L, 1, (int)luaL_optinteger(L, 2, 1));
}

static int m_cat(lua_State *L)
{
    ld_check_tensor(L, 1);
    ld_check_tensor(L, 2);
    int dim = (int)luaL_optinteger(L, 3, 1);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2);
    return cat_list(L, lua_gettop(L), dim);
}

/* ---- files ---- */

static int m_save(lua_State *L)
{
    df_tensor *t = ld_check_tensor(L, 1);
    const char *path = luaL_checkstring(L, 2);
    const char *name = luaL_optstring(L, 3, "tensor");
    const df_tensor *ts[1] = {t};
    const char *names[1] = {name};
    if (df_safetensors_save(path, 1, names, ts, 0, NULL, NULL) != DF_OK) return luaL_fileresult(L, 0, df_last_error());
    lua_pushboolean(L, 1);
    return 1;
}

/* difusa.load_tensors(path) -> {name = tensor} or nil, message */
static int t_load_tensors(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    df_safetensors *st = NULL;
    if (df_safetensors_open(path, &st) != DF_OK) {
        luaL_pushfail(L);
        lua_pushstring(L, df_last_error());
        return 2;
    }
    lua_newtable(L);
    for (int i = 0; i < df_safetensors_count(st); i++) {
        const df_st_info *info = df_safetensors_info(st, i);
        ltensor *b = ld_tensor_box(L);
        if (df_safetensors_get(st, info->name, &b->t) != DF_OK) {
            df_safetensors_close(st);
            return ld_raise(L, "load_tensors");
        }
        lua_setfield(L, -2, info->name);
    }
    df_safetensors_close(st);
    return 1;
}

/* ---- noise ---- */

typedef struct lgen {
    df_rng *rng;
} lgen;

static lgen *check_gen(lua_State *L, int idx)
{
    lgen *g = luaL_checkudata(L, idx, LD_GENERATOR);
    if (!g->rng) luaL_error(L, "attempt to use a freed generator");
    return g;
}

df_rng *ld_opt_generator(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    return check_gen(L, idx)->rng;
}

/* difusa.generator(seed, kind) */
static int t_generator(lua_State *L)
{
    lua_Integer seed = luaL_checkinteger(L, 1);
    const char *kind = luaL_optstring(L, 2, "cpu");
    int k = df_rng_kind_from_name(kind);
    if (k < 0) return luaL_argerror(L, 2, "unknown generator (cpu, cpu-scalar, cuda)");
    lgen *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->rng = NULL;
    luaL_setmetatable(L, LD_GENERATOR);
    if (!(g->rng = df_rng_new((df_rng_kind)k, (uint64_t)seed))) return ld_raise(L, "generator");
    return 1;
}

static int g_free(lua_State *L)
{
    lgen *g = luaL_checkudata(L, 1, LD_GENERATOR);
    df_rng_free(g->rng);
    g->rng = NULL;
    return 0;
}

/* difusa.randn{1, 4, 64, 64, seed=42, rng="cpu", generator=g, device="opencl"} */
static int t_randn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t shape[DF_MAX_DIMS];
    int nd = ld_read_shape(L, 1, shape);
    lua_getfield(L, 1, "generator");
    df_rng *rng = ld_opt_generator(L, -1), *own = NULL;
    if (!rng) {
        lua_getfield(L, 1, "seed");
        lua_Integer seed = lua_isnil(L, -1) ? 0 : luaL_checkinteger(L, -1);
        lua_getfield(L, 1, "rng");
        const char *kind = luaL_optstring(L, -1, "cpu");
        int k = df_rng_kind_from_name(kind);
        if (k < 0) return luaL_error(L, "randn: unknown rng '%s' (cpu, cpu-scalar, cuda)", kind);
        if (!(own = rng = df_rng_new((df_rng_kind)k, (uint64_t)seed))) return ld_raise(L, "randn");
    }
    lua_getfield(L, 1, "device");
    df_backend *be = ld_backend_opt(L, -1);
    ltensor *b = ld_tensor_box(L);
    b->t = df_tensor_new(be, DF_F32, nd, shape);
    int rc = b->t ? df_rng_randn_tensor(rng, b->t) : DF_ENOMEM;
    df_rng_free(own);
    if (rc) return ld_raise(L, "randn");
    return 1;
}

/* ---- registration ---- */

static const luaL_Reg tensor_methods[] = {
    {"shape", m_shape},   {"dtype", m_dtype},     {"device", m_device}, {"numel", m_numel},
    {"to", m_to},         {"clone", m_clone},     {"table", m_table},   {"item", m_item},
    {"lerp", m_lerp},     {"mean", m_mean},       {"std", m_std},       {"clamp", m_clamp},
    {"slice", m_slice},   {"reshape", m_reshape}, {"permute", m_permute}, {"cat", m_cat},
    {"save", m_save},     {"free", m_free},       {NULL, NULL},
};

static const luaL_Reg tensor_meta[] = {
    {"__gc", m_free},  {"__close", m_free}, {"__tostring", m_tostring}, {"__add", m_add}, {"__sub", m_sub},
    {"__mul", m_mul},  {"__div", m_div},    {"__unm", m_unm},           {NULL, NULL},
};

static const luaL_Reg tensor_funcs[] = {
    {"zeros", t_zeros}, {"ones", t_ones}, {"full", t_full},         {"from_table", t_from_table}, {"randn", t_randn},
    {"cat", t_cat},     {"generator", t_generator}, {"load_tensors", t_load_tensors}, {NULL, NULL},
};

void ld_open_tensor(lua_State *L)
{
    luaL_newmetatable(L, LD_TENSOR);
    luaL_setfuncs(L, tensor_meta, 0);
    luaL_newlib(L, tensor_methods);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "tensor");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    luaL_newmetatable(L, LD_GENERATOR);
    lua_pushcfunction(L, g_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, g_free);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    luaL_setfuncs(L, tensor_funcs, 0); /* into the module table on top */
}
