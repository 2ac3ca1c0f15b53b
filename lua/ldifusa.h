/* Internal header of difusa's Lua binding (lua/): the module is built over
 * the public df_* API only. */
#ifndef LDIFUSA_H
#define LDIFUSA_H

#include <lauxlib.h>
#include <lua.h>

#include "nn/bundle.h"
#include "opencl.h"
#include "ops.h"
#include "rng.h"

#define LD_TENSOR "difusa.tensor"
#define LD_GENERATOR "difusa.generator"
#define LD_STATE "difusa.state"

typedef struct ltensor {
    df_tensor *t;
} ltensor;

/* tensors (ltensor.c) */
ltensor *ld_tensor_box(lua_State *L);
void ld_push_tensor(lua_State *L, df_tensor *t); /* takes t */
df_tensor *ld_check_tensor(lua_State *L, int idx);
df_tensor *ld_opt_tensor(lua_State *L, int idx);
int ld_is_tensor(lua_State *L, int idx);
int ld_raise(lua_State *L, const char *what);
int ld_read_shape(lua_State *L, int idx, int64_t shape[DF_MAX_DIMS]);
int ld_read_shape_signed(lua_State *L, int idx, int64_t shape[DF_MAX_DIMS]);
df_rng *ld_opt_generator(lua_State *L, int idx);
void ld_open_tensor(lua_State *L);

/* devices (ldifusa.c): "cpu", "opencl", "opencl:<selector>"; nil: the
 * module's current device (difusa.device()). */
df_backend *ld_backend_opt(lua_State *L, int idx);

/* models and samplers (lmodels.c, lsampler.c) */
void ld_open_models(lua_State *L);
void ld_open_samplers(lua_State *L);
void ld_open_image(lua_State *L);

/* Set by the host's SIGINT handler; samplers stop at the next step. */
extern volatile int ld_interrupted;



/* A denoiser as Lua sees it (lsampler.c): the C denoiser plus who owns its
 * data. Models make them (unet:denoiser), samplers call them. */
#define LD_DENOISER "difusa.denoiser"
#include "sched/denoiser.h"
typedef struct ldenoiser {
    df_denoiser den;
    void (*free)(void *user);
} ldenoiser;
/* A new denoiser userdata on the stack; `keep` (a stack index, or 0) is held
 * as its user value so what the denoiser borrows stays alive. */
ldenoiser *ld_push_denoiser(lua_State *L, df_denoise_fn fn, void *user, void (*free_fn)(void *), int keep);
#endif
