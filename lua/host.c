/* difusa: the host executable, Lua 5.4 with the difusa module preloaded.
 *   difusa script.lua [args...]   run a script (args in `arg`, as lua does)
 *   difusa -e 'code'              run a chunk
 *   difusa                        an interactive prompt
 *   difusa --version | --list-devices | --list-samplers | --help
 * Ctrl-C stops a running sampler at its next step with a message. */
#include "ldifusa.h"

#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int luaopen_difusa(lua_State *L);

static void on_sigint(int sig)
{
    (void)sig;
    if (ld_interrupted) _exit(130); /* a second Ctrl-C: leave now */
    ld_interrupted = 1;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Runs the function on the stack top with n args; reports an error. */
static int docall(lua_State *L, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (rc != LUA_OK) {
        fprintf(stderr, "difusa: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return rc;
}

static void usage(FILE *f)
{
    fputs("usage: difusa [script.lua [args...]] | -e 'code' | --version | --list-devices | --list-samplers | --help\n"
          "  script.lua args...  run a Lua script with the difusa module (args in `arg`)\n"
          "  -e 'code'           run a chunk of Lua\n"
          "  (nothing)           an interactive prompt\n"
          "  --version           print the version\n"
          "  --list-devices      list the devices (cpu and every OpenCL device)\n"
          "  --list-samplers     list the samplers with their options\n"
          "Pipelines: scripts/txt2img.lua, scripts/img2img.lua, scripts/inpaint.lua (--help each).\n",
          f);
}

static const char *const list_devices =
    "local d = require 'difusa'\n"
    "for _, dev in ipairs(d.devices()) do\n"
    "  if dev.device == 'cpu' then print('cpu')\n"
    "  else print(string.format('%s  %s / %s%s, %d MiB', dev.device, dev.platform, dev.name,\n"
    "    dev.gpu and ' (GPU)' or '', dev.memory // 1048576)) end\n"
    "end\n";

static const char *const list_samplers =
    "local d = require 'difusa'\n"
    "for _, s in ipairs(d.samplers()) do\n"
    "  print(s.name .. '  ' .. (s.description or ''))\n"
    "  if s.options and #s.options > 0 then io.write(s.options) end\n"
    "end\n";

static int run_string(lua_State *L, const char *code, const char *name)
{
    if (luaL_loadbuffer(L, code, strlen(code), name) != LUA_OK) {
        fprintf(stderr, "difusa: %s\n", lua_tostring(L, -1));
        return 1;
    }
    return docall(L, 0, 0) != LUA_OK;
}

static void repl(lua_State *L)
{
    char line[4096];
    printf("difusa %s (Lua 5.4) — require 'difusa' is preloaded as `difusa`; Ctrl-D quits\n", DF_VERSION);
    for (;;) {
        fputs("> ", stdout);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        /* an expression first ("return <line>"), then a statement */
        lua_pushfstring(L, "return %s", line);
        if (luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=stdin") != LUA_OK) {
            lua_pop(L, 2);
            if (luaL_loadbuffer(L, line, strlen(line), "=stdin") != LUA_OK) {
                fprintf(stderr, "%s\n", lua_tostring(L, -1));
                lua_pop(L, 1);
                continue;
            }
        } else {
            lua_remove(L, -2);
        }
        int top = lua_gettop(L) - 1;
        if (docall(L, 0, LUA_MULTRET) == LUA_OK) {
            int n = lua_gettop(L) - top;
            for (int i = 1; i <= n; i++) {
                const char *s = luaL_tolstring(L, top + i, NULL);
                printf(i < n ? "%s\t" : "%s\n", s);
                lua_pop(L, 1);
            }
            lua_settop(L, top);
        }
        ld_interrupted = 0;
    }
    putchar('\n');
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("difusa %s (%s)\n", DF_VERSION, LUA_RELEASE);
        return 0;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        fputs("difusa: cannot create a Lua state (out of memory)\n", stderr);
        return 1;
    }
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_difusa);
    lua_setfield(L, -2, "difusa");
    lua_pop(L, 1);
    signal(SIGINT, on_sigint);
    int status = 0;
    if (argc > 1 && (!strcmp(argv[1], "--list-devices") || !strcmp(argv[1], "--list-samplers"))) {
        status = run_string(L, argv[1][7] == 'd' ? list_devices : list_samplers, "=difusa");
    } else if (argc > 1 && !strcmp(argv[1], "-e")) {
        if (argc < 3) {
            usage(stderr);
            status = 2;
        } else {
            status = run_string(L, "difusa = require 'difusa'", "=difusa") || run_string(L, argv[2], "=(command line)");
        }
    } else if (argc > 1 && argv[1][0] == '-' && argv[1][1]) {
        fprintf(stderr, "difusa: unknown option '%s'\n", argv[1]);
        usage(stderr);
        status = 2;
    } else if (argc > 1) {
        /* arg[0] = script, arg[1..] = its arguments, arg[-1] = the host: as lua does */
        lua_createtable(L, argc - 2, 2);
        for (int i = 0; i < argc; i++) {
            lua_pushstring(L, argv[i]);
            lua_rawseti(L, -2, i - 1);
        }
        lua_setglobal(L, "arg");
        if (luaL_loadfile(L, argv[1]) != LUA_OK) {
            fprintf(stderr, "difusa: %s\n", lua_tostring(L, -1));
            status = 1;
        } else {
            for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
            status = docall(L, argc - 2, 0) != LUA_OK;
        }
    } else {
        run_string(L, "difusa = require 'difusa'", "=difusa");
        if (isatty(0)) repl(L);
        else status = run_string(L, "local src = io.read('a'); assert(load(src, '=stdin'))()", "=stdin");
    }
    lua_close(L);
    return status;
}
