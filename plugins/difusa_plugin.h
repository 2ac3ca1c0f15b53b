/* difusa's plugin ABI: the only header a sampler plugin includes. A plugin is a
 * shared object that exports one symbol, difusa_plugin_entry, and never links
 * against libdifusa: everything it may do goes through the host table it is
 * handed (SQLite's extension API table is the model).
 *
 *   static const df_sampler_desc euler = {DF_SAMPLER_DESC_INIT, .name = "euler", ..., .sample = run_euler};
 *   static int init(const df_host_api *h, df_plugin_registrar *reg)
 *   {
 *       return h->register_sampler(reg, &euler);
 *   }
 *   static const df_plugin_desc desc = {DF_PLUGIN_DESC_INIT, .name = "my-samplers", .init = init};
 *   DF_PLUGIN_EXPORT const df_plugin_desc *difusa_plugin_entry(void) { return &desc; }
 *
 * Versioning. The host table, the plugin descriptor and the sampler descriptor
 * each begin with abi_version and struct_size; fields are only ever appended.
 * The major version (abi_version >> 16) changes only when a layout changes
 * incompatibly: the host refuses a plugin built for another major version,
 * naming both. Within a major version the host accepts any struct_size at
 * least as large as that of version <major>.0, and reads appended fields only
 * when struct_size says they are there; a plugin does the same with the host
 * table (DF_HOST_HAS(h, field)). df_sampler_option is an array element and so
 * is frozen for a major version.
 *
 * Tensors are opaque here: f32, contiguous, on whatever backend the run uses
 * (CPU memory or an OpenCL device). A sampler allocates the tensors it needs
 * with new_like, combines them with the host's arithmetic and frees them.
 * Every fallible host call returns 0 on success or a negative status with the
 * message already set; a sampler returns that status unchanged after freeing
 * its temporaries. Sigmas are in the variance-exploding parameterisation of
 * Karras et al. (EDM): the run's denoiser maps x = x0 + sigma * noise to an
 * estimate of x0, whatever the model behind it predicts. */
#ifndef DIFUSA_PLUGIN_H
#define DIFUSA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define DF_PLUGIN_ABI_MAJOR 1
#define DF_PLUGIN_ABI_MINOR 1
#define DF_PLUGIN_ABI_VERSION ((uint32_t)((DF_PLUGIN_ABI_MAJOR << 16) | DF_PLUGIN_ABI_MINOR))

/* The symbol every plugin exports, of type df_plugin_entry_fn. */
#define DF_PLUGIN_ENTRY_SYMBOL "difusa_plugin_entry"

#if defined(__GNUC__)
#define DF_PLUGIN_EXPORT __attribute__((visibility("default")))
#define DF_PLUGIN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DF_PLUGIN_EXPORT
#define DF_PLUGIN_PRINTF(a, b)
#endif

typedef struct df_tensor df_tensor;                   /* opaque: a tensor of the run */
typedef struct df_sampler_run df_sampler_run;         /* opaque: one call of a sampler */
typedef struct df_plugin_registrar df_plugin_registrar; /* opaque: where init registers */
typedef struct df_host_api df_host_api;

/* Log levels for host->log (the same values as the core's df_log_level). */
enum { DF_PLUGIN_LOG_ERROR = 0, DF_PLUGIN_LOG_WARN = 1, DF_PLUGIN_LOG_INFO = 2, DF_PLUGIN_LOG_DEBUG = 3 };

/* ---- sampler options ---- */

typedef enum {
    DF_OPT_NUMBER = 0, /* a real number in [min, max] */
    DF_OPT_INT = 1,    /* an integer in [min, max] */
    DF_OPT_BOOL = 2,   /* 0 or 1 */
    DF_OPT_CHOICE = 3, /* one of `choices` ("midpoint|heun"); the value is its index */
} df_option_type;

/* One option a sampler accepts (frozen layout within a major version). */
typedef struct df_sampler_option {
    const char *name;     /* "eta" */
    int type;             /* df_option_type */
    double default_value; /* for a choice, the index of the default */
    double min_value, max_value;
    const char *choices; /* DF_OPT_CHOICE only: names separated by '|' */
    const char *help;    /* one line */
} df_sampler_option;

/* ---- samplers ---- */

enum {
    DF_SAMPLER_STOCHASTIC = 1u << 0,  /* draws noise during sampling */
    DF_SAMPLER_ADAPTIVE = 1u << 1,    /* chooses its own steps: uses only sigmas[0] and the last
                                       * nonzero sigma (and whether the schedule ends at 0) */
    DF_SAMPLER_BROWNIAN = 1u << 2,    /* its noise comes from host->noise (a Brownian tree by
                                       * default), so results hold when the step count changes */
    DF_SAMPLER_NEEDS_STEP_PAIRS = 1u << 3, /* second-order sampler for which hosts usually request
                                       * one more step and drop the penultimate sigma */
};

/* Runs the sampler: x holds the starting point (x0 + sigmas[0] * noise) and
 * receives the result. sigmas has n_sigmas values, decreasing, usually ending
 * at 0 (n_sigmas - 1 steps). `user` is the descriptor's user pointer. */
typedef int (*df_sample_fn)(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                            const double *sigmas, int n_sigmas);

typedef struct df_sampler_desc {
    uint32_t abi_version; /* DF_PLUGIN_ABI_VERSION */
    uint32_t struct_size; /* sizeof(df_sampler_desc) */
    const char *name;     /* unique across plugins: [a-z0-9_]+ */
    const char *description;
    const df_sampler_option *options;
    int n_options;
    uint32_t flags; /* DF_SAMPLER_* */
    df_sample_fn sample;
    void *user;
} df_sampler_desc;

#define DF_SAMPLER_DESC_INIT .abi_version = DF_PLUGIN_ABI_VERSION, .struct_size = sizeof(df_sampler_desc)

/* ---- the plugin ---- */

typedef struct df_plugin_desc {
    uint32_t abi_version; /* DF_PLUGIN_ABI_VERSION */
    uint32_t struct_size; /* sizeof(df_plugin_desc) */
    const char *name;     /* "difusa-euler" */
    const char *version;  /* free-form */
    /* Registers the plugin's samplers with h->register_sampler; a nonzero
     * return makes the host drop the plugin (and whatever it registered). */
    int (*init)(const df_host_api *h, df_plugin_registrar *reg);
    /* Called before the host unloads the plugin; may be NULL. */
    void (*fini)(void);
} df_plugin_desc;

#define DF_PLUGIN_DESC_INIT .abi_version = DF_PLUGIN_ABI_VERSION, .struct_size = sizeof(df_plugin_desc)

typedef const df_plugin_desc *(*df_plugin_entry_fn)(void);

/* ---- the host table ---- */

struct df_host_api {
    uint32_t abi_version; /* the host's DF_PLUGIN_ABI_VERSION */
    uint32_t struct_size; /* sizeof(df_host_api) in the host */

    /* Registration (during init only). Refuses a malformed descriptor or a
     * name already registered, with a message naming both plugins. */
    int (*register_sampler)(df_plugin_registrar *reg, const df_sampler_desc *desc);

    /* Tensors. new_like: a new uninitialised tensor of t's shape on t's
     * backend, NULL (message set) on failure. free(NULL) is a no-op. */
    df_tensor *(*new_like)(const df_tensor *t);
    void (*free)(df_tensor *t);
    int64_t (*numel)(const df_tensor *t);
    /* The dims into dims[4]; returns the rank. */
    int (*shape)(const df_tensor *t, int64_t dims[4]);

    /* Arithmetic. All tensors of one call have the same shape; an output may
     * be the same tensor as any input. */
    int (*copy)(df_tensor *dst, const df_tensor *src);
    int (*fill)(df_tensor *x, double value);
    int (*scale)(df_tensor *x, double a);                                  /* x = a x */
    int (*axpy)(df_tensor *y, double a, const df_tensor *x);               /* y = y + a x */
    int (*axpby)(df_tensor *y, double a, const df_tensor *x, double b);    /* y = a x + b y */
    /* out = sum_i c[i] xs[i], n >= 1. */
    int (*lincomb)(df_tensor *out, int n, const double *c, const df_tensor *const *xs);
    int (*mul)(df_tensor *out, const df_tensor *a, const df_tensor *b);    /* elementwise */
    /* sum of squares over everything (per_item 0: out[0]) or over each item of
     * the first dim (per_item 1: out[0 .. dims[0]-1]), accumulated in double. */
    int (*sum_squares)(const df_tensor *x, int per_item, double *out);
    /* The error norm of adaptive solvers: sqrt(mean(((a - b) / tol)^2)) with
     * tol = atol + rtol * max(|c|, |d|) (scipy's RK45), or with use_max
     * tol = max(atol, rtol * max(|c|, |d|)) (k-diffusion's DPM-Solver); d may
     * be NULL. Accumulated in double. */
    int (*error_norm)(const df_tensor *a, const df_tensor *b, const df_tensor *c, const df_tensor *d, double atol,
                      double rtol, int use_max, double *out);

    /* The run. */
    /* out = D(x, sigma): the denoiser's estimate of the clean sample. May fail
     * (the model's error, or cancellation); the sampler then returns. */
    int (*denoise)(df_sampler_run *run, const df_tensor *x, double sigma, df_tensor *out);
    /* out = standard normal noise from the run's generator (torch.randn_like). */
    int (*randn)(df_sampler_run *run, df_tensor *out);
    /* Standard normal noise for the interval sigma -> sigma_next of an SDE
     * sampler: by default (W(sigma_next) - W(sigma)) / sqrt|sigma_next - sigma|
     * of a Brownian motion W the run fixes once (a Brownian tree), so the noise
     * a path sees does not depend on the step count. */
    int (*noise)(df_sampler_run *run, df_tensor *out, double sigma, double sigma_next);
    /* After each step: reports progress, applies the host's per-step hooks
     * (an inpainting mask blend) to x in place. A nonzero return (cancelled,
     * or the hook failed) ends the run with that status. */
    int (*step)(df_sampler_run *run, int i, int n_steps, double sigma, double sigma_next, df_tensor *x,
                const df_tensor *denoised);
    /* A declared option's value (its default when the caller gave none);
     * NaN (message set) for an undeclared name. */
    double (*option)(df_sampler_run *run, const char *name);
    /* Logging, and setting the run's error message: returns `code`. */
    void (*log)(df_sampler_run *run, int level, const char *fmt, ...) DF_PLUGIN_PRINTF(3, 4);
    int (*error)(df_sampler_run *run, int code, const char *fmt, ...) DF_PLUGIN_PRINTF(3, 4);

    /* ---- ABI 1.1 (check with DF_HOST_HAS) ---- */

    /* The run's model timesteps: sigma -> the (fractional) timestep t of the
     * denoiser's discrete training schedule, by log-sigma interpolation
     * (sigma 0 gives 0), and back (t clamped to [0, n-1]). NaN, with the
     * message set, when the run's denoiser has no discrete schedule. */
    double (*sigma_to_t)(df_sampler_run *run, double sigma);
    double (*t_to_sigma)(df_sampler_run *run, double t);
    /* out = the unconditional x0 estimate of the last denoise call of a guided
     * (CFG) denoiser; an error when the run's denoiser has no guidance or has
     * not been called yet. */
    int (*denoised_uncond)(df_sampler_run *run, df_tensor *out);
};

/* Whether the host table has `field` (it was appended after the plugin's
 * minimum and the running host is new enough). */
#define DF_HOST_HAS(h, field) ((h)->struct_size >= offsetof(df_host_api, field) + sizeof((h)->field))

/* Status codes a plugin may return itself (the host's codes pass through). */
enum { DF_PLUGIN_OK = 0, DF_PLUGIN_EINVAL = -1, DF_PLUGIN_ENOMEM = -2 };

#endif
