/* Thread safety: two OS threads, each with its own Lua state (and so its own models, registry and run),
 * generate at the same time; each must get exactly the picture that the same generation gives alone.
 * `make tsan-test` runs this under ThreadSanitizer (one OpenMP thread per team), built with THREADS_MAIN. */

#ifndef THREADS_MAIN
#include <criterion/criterion.h>
#endif
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lua/ldifusa.h"

int luaopen_difusa(lua_State *L);

/* A tiny txt2img (tests/fixtures/pipeline/tiny-sd, 8 x 8 latents, 4 Euler-ancestral steps with CFG). */
static const char *const CHUNK =
    "local difusa = require 'difusa'\n"
    "local seed, prompt = ...\n"
    "local m = assert(difusa.load('tests/fixtures/pipeline/tiny-sd'))\n"
    "local both = m.clip:encode({ prompt, '' })\n"
    "local den = m.unet:denoiser { cond = both:slice(1, 1), uncond = both:slice(1, 2), cfg = 5 }\n"
    "local sigmas = difusa.sigmas(m, 4, 'leading', { steps_offset = 1 })\n"
    "local g = difusa.generator(seed)\n"
    "local x = difusa.randn { 1, 4, 8, 8, generator = g } * math.sqrt(sigmas[1] ^ 2 + 1)\n"
    "return m.vae:decode(difusa.sampler('euler_ancestral')(den, x, sigmas, { generator = g }))\n";

typedef struct {
    int seed;
    const char *prompt;
    int repeats;
    float *pixels; /* malloc'd copy of the last picture */
    int64_t n;
    char error[512];
} job;

static int generate(job *j)
{
    lua_State *L = luaL_newstate();
    if (!L) return snprintf(j->error, sizeof j->error, "no Lua state"), 1;
    luaL_openlibs(L);
    luaL_requiref(L, "difusa", luaopen_difusa, 0);
    lua_pop(L, 1);
    int bad = 0;
    for (int r = 0; r < j->repeats && !bad; r++) {
        if (luaL_loadstring(L, CHUNK) != LUA_OK) {
            snprintf(j->error, sizeof j->error, "%s", lua_tostring(L, -1));
            bad = 1;
            break;
        }
        lua_pushinteger(L, j->seed);
        lua_pushstring(L, j->prompt);
        if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
            snprintf(j->error, sizeof j->error, "%s", lua_tostring(L, -1));
            bad = 1;
            break;
        }
        df_tensor *t = ld_check_tensor(L, -1);
        float *p = realloc(j->pixels, (size_t)df_tensor_numel(t) * sizeof *p);
        if (!p) {
            snprintf(j->error, sizeof j->error, "out of memory");
            bad = 1;
            break;
        }
        j->pixels = p;
        j->n = df_tensor_numel(t);
        memcpy(p, df_tensor_data(t), (size_t)j->n * sizeof *p);
        lua_pop(L, 1);
    }
    lua_close(L);
    return bad;
}

static void *thread_main(void *arg)
{
    generate(arg);
    return NULL;
}

/* The check itself; returns 0, or 1 with the reason in msg. */
static int two_threads_as_alone(char *msg, size_t size)
{
    int bad = 0;
    job alone[2] = {{.seed = 1, .prompt = "a red circle", .repeats = 1},
                    {.seed = 2, .prompt = "a blue square on the left", .repeats = 1}};
    job both[2] = {{.seed = 1, .prompt = "a red circle", .repeats = 3},
                   {.seed = 2, .prompt = "a blue square on the left", .repeats = 3}};
    for (int i = 0; i < 2 && !bad; i++)
        if (generate(&alone[i])) bad = snprintf(msg, size, "alone: %s", alone[i].error) > 0;
    if (!bad && (alone[0].n != alone[1].n || !memcmp(alone[0].pixels, alone[1].pixels, (size_t)alone[0].n * 4)))
        bad = snprintf(msg, size, "the two jobs must draw different pictures for the test to mean something") > 0;
    if (!bad) {
        pthread_t th[2];
        int started = 0;
        for (int i = 0; i < 2; i++) started += pthread_create(&th[i], NULL, thread_main, &both[i]) == 0;
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
        if (started < 2) bad = snprintf(msg, size, "pthread_create failed") > 0;
    }
    for (int i = 0; i < 2 && !bad; i++) {
        if (both[i].error[0]) bad = snprintf(msg, size, "thread %d: %s", i, both[i].error) > 0;
        else if (both[i].n != alone[i].n || memcmp(both[i].pixels, alone[i].pixels, (size_t)alone[i].n * 4))
            bad = snprintf(msg, size, "thread %d drew another picture than alone", i) > 0;
    }
    for (int i = 0; i < 2; i++) free(both[i].pixels), free(alone[i].pixels);
    return bad;
}

#ifdef THREADS_MAIN /* make tsan-test: Criterion's shared arena does not run under ThreadSanitizer */
int main(void)
{
    char msg[600] = "";
    int bad = two_threads_as_alone(msg, sizeof msg);
    printf("%s%sthreads: %d passed, %d failed\n", msg, bad ? "\n" : "", !bad, bad);
    return bad;
}
#else
Test(threads, two_lua_states_generate_concurrently_as_they_do_alone)
{
    char msg[600] = "";
    cr_assert_eq(two_threads_as_alone(msg, sizeof msg), 0, "%s", msg);
}
#endif
