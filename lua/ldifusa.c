/* require "difusa": the module table, devices and the per-state data
 * (OpenCL backend, sampler registry) freed when the Lua state closes. */
#include "ldifusa.h"

#include <string.h>

volatile int ld_interrupted;

typedef struct lstate {
    df_backend *opencl;
    df_backend *current;
} lstate;

static lstate *get_state(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LD_STATE);
    lstate *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
}

static int state_gc(lua_State *L)
{
    lstate *s = lua_touserdata(L, 1);
    df_backend_free(s->opencl);
    s->opencl = NULL;
    return 0;
}

static df_backend *opencl_backend(lua_State *L, const char *selector)
{
    lstate *s = get_state(L);
    if (!s->opencl && df_backend_opencl_create(selector, &s->opencl) != DF_OK)
        luaL_error(L, "opencl: %s", df_last_error());
    return s->opencl;
}

df_backend *ld_backend_opt(lua_State *L, int idx)
{
    if (idx == 0 || lua_isnoneornil(L, idx)) { /* 0: no argument at all */
        lstate *s = get_state(L);
        return s->current ? s->current : df_backend_cpu();
    }
    const char *name = luaL_checkstring(L, idx);
    if (!strcmp(name, "cpu")) return df_backend_cpu();
    if (!strncmp(name, "opencl", 6) && (name[6] == '\0' || name[6] == ':'))
        return opencl_backend(L, name[6] == ':' ? name + 7 : NULL);
    luaL_argerror(L, idx, lua_pushfstring(L, "unknown device '%s' (cpu, opencl, opencl:<name or index>)", name));
    return NULL;
}

/* difusa.device([name]) -> the current device's name (after switching to name) */
static int l_device(lua_State *L)
{
    lstate *s = get_state(L);
    if (!lua_isnoneornil(L, 1)) s->current = ld_backend_opt(L, 1);
    lua_pushstring(L, (s->current ? s->current : df_backend_cpu())->name);
    return 1;
}

/* difusa.devices() -> list of {index, platform, name, gpu, memory} */
static int l_devices(lua_State *L)
{
    df_opencl_device_info *devs = NULL;
    int n = 0;
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "cpu");
    lua_setfield(L, -2, "name");
    lua_pushliteral(L, "cpu");
    lua_setfield(L, -2, "device");
    lua_rawseti(L, -2, 1);
    if (df_opencl_list_devices(&devs, &n) != DF_OK) n = 0;
    for (int i = 0; i < n; i++) {
        lua_newtable(L);
        lua_pushfstring(L, "opencl:%d", devs[i].index);
        lua_setfield(L, -2, "device");
        lua_pushstring(L, devs[i].name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, devs[i].platform);
        lua_setfield(L, -2, "platform");
        lua_pushboolean(L, devs[i].is_gpu);
        lua_setfield(L, -2, "gpu");
        lua_pushinteger(L, (lua_Integer)devs[i].global_mem);
        lua_setfield(L, -2, "memory");
        lua_rawseti(L, -2, i + 2);
    }
    df_opencl_free_devices(devs);
    return 1;
}

static int l_log_level(lua_State *L)
{
    static const char *const names[] = {"error", "warn", "info", "debug", NULL};
    df_log_set_level((df_log_level)luaL_checkoption(L, 1, NULL, names));
    return 0;
}

#include <unistd.h>

#include <time.h>

/* difusa.clock() -> seconds on a monotonic clock (for rates and ETAs) */
static int l_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
    return 1;
}

/* difusa.flops([reset]) -> the FLOPs the GEMM-like ops have run in this process (2 per multiply-add, from
 * their shapes; see df_flops); with reset true, zeroes the count after reading it. For benchmarks. */
static int l_flops(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)df_flops());
    if (lua_toboolean(L, 1)) df_flops_reset();
    return 1;
}

/* difusa.isatty(fd) */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 2)));
    return 1;
}

/* difusa._fail_alloc_after(n) -> allocations made since the last call. For tests: the Nth library allocation
 * from now on (1-based) and every later one fail, as out of memory; 0 turns it off. Lua's own memory is not
 * affected, so a script can report the failure and go on. */
static int l_fail_alloc_after(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "must be 0 or more");
    lua_pushinteger(L, (lua_Integer)df_alloc_fail_after((long)n));
    return 1;
}

static const luaL_Reg funcs[] = {
    {"_fail_alloc_after", l_fail_alloc_after},
    {"isatty", l_isatty},
    {"clock", l_clock},
    {"flops", l_flops},
    {"device", l_device},
    {"devices", l_devices},
    {"log_level", l_log_level},
    {NULL, NULL},
};

DF_API int luaopen_difusa(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LD_STATE);
    int have = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!have) {
        lstate *s = lua_newuserdatauv(L, sizeof *s, 0);
        memset(s, 0, sizeof *s);
        luaL_newmetatable(L, LD_STATE "_mt");
        lua_pushcfunction(L, state_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, LD_STATE);
    }
    luaL_newlib(L, funcs);
    lua_pushliteral(L, "difusa " DF_VERSION);
    lua_setfield(L, -2, "_VERSION");
    ld_open_tensor(L);
    ld_open_models(L);
    ld_open_samplers(L);
    ld_open_image(L);
    return 1;
}
