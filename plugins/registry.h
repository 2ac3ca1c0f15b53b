/* The sampler registry and the sampler runner: what a host (the difusa
 * executable, the Lua module, a C program) uses to load sampler plugins, list
 * them with their options, and run one on a denoiser.
 *
 *   df_registry *reg;
 *   df_registry_new(&reg);
 *   df_registry_load_default(reg);            // the build's or install's samplers, then $DIFUSA_PLUGIN_PATH
 *   for (int i = 0; i < df_registry_count(reg); i++) puts(df_registry_get(reg, i)->name);
 *
 *   df_sample_params p = df_sample_default_params();
 *   p.denoiser = &den; p.sigmas = sigmas; p.n_sigmas = n; p.rng = rng; p.options = "eta=0.5";
 *   df_sample(reg, "dpmpp_2m_sde", &p, x);    // x: x0 + sigmas[0]·noise in, the sample out
 *
 * Plugins are native code: they are loaded from the folders named here, never
 * from the current directory. A plugin that fails to load (missing symbol,
 * other ABI major version, descriptor too small, init failure, a sampler name
 * already taken) is skipped with a message naming its file; the others load. */
#ifndef DF_PLUGINS_REGISTRY_H
#define DF_PLUGINS_REGISTRY_H

#include "difusa_plugin.h"
#include "rng.h"
#include "sched/denoiser.h"
#include "tensor.h"

typedef struct df_registry df_registry;

/* What the registry knows about one sampler (borrowed from the registry;
 * valid until the next load or df_registry_free). */
typedef struct df_sampler_info {
    const char *name;
    const char *description;
    const df_sampler_option *options;
    int n_options;
    uint32_t flags;      /* DF_SAMPLER_* */
    const char *plugin;  /* the plugin's name */
    const char *path;    /* the file it came from */
} df_sampler_info;

DF_API int df_registry_new(df_registry **out);
/* Unloads every plugin (calling its fini) after freeing the registry's data. */
DF_API void df_registry_free(df_registry *r);

/* Loads one plugin file, or every "*.so" in a folder (sorted by name). A
 * file that fails is recorded (df_registry_failure) and the rest still load;
 * the return is DF_OK when everything loaded, else the last failure's status
 * with a message naming the file(s). */
DF_API int df_registry_load(df_registry *r, const char *path);
/* The default folder (df_registry_default_dir), then each folder of
 * $DIFUSA_PLUGIN_PATH (':'-separated). A default folder that does not exist
 * is not an error. */
DF_API int df_registry_load_default(df_registry *r);
/* The samplers folder next to the running executable: <exe dir>/samplers or
 * <exe dir>/../samplers in a build tree (build/release/samplers), else
 * <exe dir>/../lib/difusa/samplers (an install), else the folder next to
 * libdifusa.so (<libdir>/difusa/samplers). DF_ENOTFOUND when none exists. */
DF_API int df_registry_default_dir(char *buf, size_t size);

DF_API int df_registry_count(const df_registry *r);
DF_API const df_sampler_info *df_registry_get(const df_registry *r, int i);
DF_API const df_sampler_info *df_registry_find(const df_registry *r, const char *name);

/* Load failures so far, each "path: message". */
DF_API int df_registry_failure_count(const df_registry *r);
DF_API const char *df_registry_failure(const df_registry *r, int i);

/* One line per option, "  name = default  (type[, range]) help", into buf
 * (truncated to size); returns the length it needed. For --list-samplers. */
DF_API size_t df_sampler_describe(const df_sampler_info *s, char *buf, size_t size);

/* ---- running a sampler ---- */

/* A per-step hook: x (at sigma_next, after the step) may be modified in
 * place. Nonzero stops the run with that status (the hook sets the message). */
typedef int (*df_step_fn)(void *user, int i, int n_steps, double sigma, double sigma_next, df_tensor *x,
                          const df_tensor *denoised);

/* Supplies the noise a sampler asks for instead of the generator (tests
 * inject a reference's noise this way). brownian: 1 for host->noise (an SDE
 * interval sigma -> sigma_next), 0 for host->randn (sigmas are then NaN). */
typedef int (*df_noise_fn)(void *user, df_tensor *out, double sigma, double sigma_next, int brownian);

typedef struct df_sample_params {
    const df_denoiser *denoiser; /* required */
    const double *sigmas;        /* required: n_sigmas values, decreasing, >= 0 */
    int n_sigmas;                /* >= 2 */
    /* The run's generator, for samplers that draw noise (required by those,
     * unless noise_fn is set); the Brownian tree's seed is drawn from it too. */
    df_rng *rng;
    /* Options, "name=value" separated by spaces or commas ("eta=0.5
     * solver_type=heun"); a choice takes its name or index. Unknown names and
     * values out of range are refused, naming the sampler and the option. */
    const char *options;

    df_step_fn on_step;
    void *step_user;

    /* Inpainting: after every step, x = mask·x + (1 − mask)·(init + σ_next·noise)
     * where mask is 1 where the sample is generated; all three the shape of x
     * (noise NULL: zeros). Set mask and init together, or neither. */
    const df_tensor *mask, *init, *noise;

    df_noise_fn noise_fn;
    void *noise_user;

    /* The Brownian tree of host->noise covers [0, brownian_t1] (<= 0: the
     * largest sigma of the run) and has this seed when brownian_seed_set
     * (else one drawn from rng). */
    double brownian_t1;
    uint64_t brownian_seed;
    int brownian_seed_set;

    /* Messages from the sampler (host->log); NULL sends them to the library's
     * log (df_log_set_handler / df_log_set_level), prefixed "sampler <name>: ". */
    void (*log_fn)(void *user, int level, const char *msg);
    void *log_user;
} df_sample_params;

DF_API df_sample_params df_sample_default_params(void);

/* Runs sampler `name` on x in place (f32, any backend). On failure x holds
 * whatever the sampler had reached and the status comes with a message
 * naming the sampler. */
DF_API int df_sample(const df_registry *r, const char *name, const df_sample_params *p, df_tensor *x);

/* x = init + sigma·noise (init NULL: zeros), the starting point of a run at
 * sigma; with max_denoise, noise is scaled by √(1 + σ²) instead of σ (the
 * variance of a VP model's pure noise in this parameterisation: what
 * diffusers' init_noise_sigma and ComfyUI do when starting at σ_max). */
DF_API int df_sample_start(const df_tensor *init, const df_tensor *noise, double sigma, int max_denoise,
                           df_tensor **out);

#endif
