/* Noise schedules.
 *
 * Training schedules: the betas a discrete (DDPM-style) model was trained
 * with, and what follows from them: alphas_cumprod ᾱ_t and the noise level in
 * the variance-exploding parameterisation every sampler works in,
 * σ_t = √((1 − ᾱ_t) / ᾱ_t), ascending with the timestep t = 0 .. n−1.
 *
 * Step schedules: the decreasing sigmas a sampler visits, usually ending at 0
 * (steps + 1 values). Those named after k-diffusion and ComfyUI reproduce
 * them; the diffusers timestep spacings (leading / trailing / linspace)
 * reproduce diffusers' EulerDiscreteScheduler.set_timesteps.
 *
 * All arithmetic is in double; the references compute some of it in float32,
 * and the differences (≲ 1e-6 relative) are measured by tests/test_sched.c. */
#ifndef DF_SCHED_SCHEDULE_H
#define DF_SCHED_SCHEDULE_H

#include "../df.h"

/* ---- training schedules ---- */

typedef enum {
    DF_BETA_LINEAR = 0,        /* linspace(beta_start, beta_end) (diffusers "linear") */
    DF_BETA_SCALED_LINEAR = 1, /* linspace(√beta_start, √beta_end)² (SD; LDM's "linear") */
    DF_BETA_SQUAREDCOS_CAP_V2 = 2, /* the cosine schedule (Nichol & Dhariwal), betas capped at 0.999 */
    DF_BETA_KIND_COUNT
} df_beta_kind;

/* "linear" / "scaled_linear" / "squaredcos_cap_v2" -> kind; -1 when unknown or NULL. */
DF_API int df_beta_kind_from_name(const char *name);
DF_API const char *df_beta_kind_name(int kind);

typedef struct df_train_schedule_params {
    int kind;          /* df_beta_kind */
    int num_timesteps; /* 1000 */
    double beta_start, beta_end; /* ignored by squaredcos_cap_v2 */
    /* Rescale the betas to zero terminal SNR (Lin et al. 2023, as diffusers'
     * rescale_zero_terminal_snr). ᾱ_{n-1} becomes 0, so σ_{n-1} would be
     * infinite: as diffusers' Euler scheduler does, it is then computed from
     * ᾱ = 2^-24 (σ ≈ 4096), and alphas_cumprod keeps the exact 0. */
    int rescale_zero_terminal_snr;
} df_train_schedule_params;

/* Stable Diffusion 1.x / 2.x / XL: scaled_linear, 1000 steps, 0.00085 .. 0.012. */
DF_API df_train_schedule_params df_train_schedule_default_params(void);

typedef struct df_noise_schedule {
    int n;                  /* number of training timesteps */
    double *betas;          /* (n) */
    double *alphas_cumprod; /* (n) ᾱ_t */
    double *sigmas;         /* (n) σ_t, ascending */
    double *log_sigmas;     /* (n) */
} df_noise_schedule;

DF_API int df_noise_schedule_new(const df_train_schedule_params *p, df_noise_schedule **out);
/* A schedule from given alphas_cumprod (n values, decreasing, in (0, 1]). */
DF_API int df_noise_schedule_from_alphas_cumprod(const double *alphas_cumprod, int n, df_noise_schedule **out);
DF_API void df_noise_schedule_free(df_noise_schedule *s);

DF_API double df_noise_schedule_sigma_min(const df_noise_schedule *s);
DF_API double df_noise_schedule_sigma_max(const df_noise_schedule *s);

/* The model wrapper's conversions (k-diffusion's DiscreteSchedule, ComfyUI's
 * ModelSamplingDiscrete): t -> σ interpolates log σ linearly between the two
 * neighbouring integer timesteps (t clamped to [0, n-1]); σ -> t inverts it
 * (σ outside the table clamps to the ends). */
DF_API double df_noise_schedule_t_to_sigma(const df_noise_schedule *s, double t);
DF_API double df_noise_schedule_sigma_to_t(const df_noise_schedule *s, double sigma);

/* ---- step schedules ---- */

typedef enum {
    DF_SIGMAS_NORMAL = 0,     /* ComfyUI "normal": timesteps linspace(t(σ_max), t(σ_min), steps) (also "discrete") */
    DF_SIGMAS_KARRAS,         /* Karras et al.: (σ_max^(1/ρ) + i/(n-1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ */
    DF_SIGMAS_EXPONENTIAL,    /* uniform in log σ */
    DF_SIGMAS_POLYEXPONENTIAL, /* polynomial (ρ) in log σ */
    DF_SIGMAS_SIMPLE,         /* ComfyUI "simple": every (n/steps)-th training sigma from the top */
    DF_SIGMAS_SGM_UNIFORM,    /* linspace(t(σ_max), t(σ_min), steps + 1) without its last point */
    DF_SIGMAS_DDIM_UNIFORM,   /* ComfyUI "ddim_uniform": training sigmas 1, 1+k, 1+2k, .. (k = n // steps) */
    DF_SIGMAS_BETA,           /* ComfyUI "beta" (Lee et al. 2024): timesteps at Beta(α, β) quantiles */
    DF_SIGMAS_KL_OPTIMAL,     /* tan(linspace(atan σ_max, atan σ_min)) */
    DF_SIGMAS_AYS_SD15,       /* Align Your Steps, SD 1.5 table (log-linear interpolated to steps) */
    DF_SIGMAS_AYS_SDXL,       /* Align Your Steps, SDXL table */
    DF_SIGMAS_LEADING,        /* diffusers timestep_spacing="leading" (with steps_offset) */
    DF_SIGMAS_TRAILING,       /* diffusers timestep_spacing="trailing" */
    DF_SIGMAS_LINSPACE,       /* diffusers timestep_spacing="linspace" */
    DF_SIGMAS_VP,             /* k-diffusion's continuous VP schedule (beta_d, beta_min, eps_s) */
    DF_SIGMAS_LINEAR_QUADRATIC, /* ComfyUI "linear_quadratic" (Mochi), scaled by σ_max */
    DF_SIGMAS_KIND_COUNT
} df_sigmas_kind;

/* "normal" (alias "discrete"), "karras", "exponential", "polyexponential",
 * "simple", "sgm_uniform", "ddim_uniform", "beta", "kl_optimal", "ays_sd15"
 * (alias "ays"), "ays_sdxl", "leading", "trailing", "linspace", "vp",
 * "linear_quadratic" -> kind; -1 when unknown or NULL. */
DF_API int df_sigmas_kind_from_name(const char *name);
DF_API const char *df_sigmas_kind_name(int kind);
/* Whether the kind reads the training schedule (normal, simple, sgm_uniform,
 * ddim_uniform, beta, leading, trailing, linspace need one; the rest take
 * sigma_min / sigma_max, from the schedule when there is one). */
DF_API int df_sigmas_kind_needs_schedule(int kind);

typedef struct df_sigmas_params {
    int kind;  /* df_sigmas_kind */
    int steps; /* >= 1 */
    /* Range for karras, exponential, polyexponential, kl_optimal,
     * linear_quadratic (σ_max only); <= 0 takes it from the schedule. */
    double sigma_min, sigma_max;
    double rho;          /* karras (7) and polyexponential (1); <= 0 picks that default */
    double alpha, beta;  /* beta schedule: 0.6, 0.6 */
    int steps_offset;    /* leading: added to every timestep (SD configs: 1) */
    double beta_d, beta_min, eps_s; /* vp: 19.9, 0.1, 1e-3 */
    double threshold_noise; /* linear_quadratic: 0.025 */
    int linear_steps;       /* linear_quadratic: <= 0 means steps / 2 */
} df_sigmas_params;

DF_API df_sigmas_params df_sigmas_default_params(void);

/* The sigmas of `p` on schedule `s` (may be NULL for kinds that do not need
 * one and have sigma_min / sigma_max set). *out is a new array of *n values
 * (free with df_sigmas_free), decreasing, normally ending at 0. Some kinds
 * give fewer values than steps + 1 (beta drops repeated timesteps). */
DF_API int df_sigmas_new(const df_noise_schedule *s, const df_sigmas_params *p, double **out, int *n);
DF_API void df_sigmas_free(double *sigmas);

/* Individual schedules (steps + 1 values into out, the last one 0). */
DF_API int df_sigmas_karras(int steps, double sigma_min, double sigma_max, double rho, double *out);
DF_API int df_sigmas_exponential(int steps, double sigma_min, double sigma_max, double *out);
DF_API int df_sigmas_polyexponential(int steps, double sigma_min, double sigma_max, double rho, double *out);

/* The last `steps` + 1 sigmas of a schedule built for steps / strength steps,
 * as img2img with strength (denoise) in (0, 1] uses them (ComfyUI's KSampler):
 * a new array like df_sigmas_new's. */
DF_API int df_sigmas_new_for_strength(const df_noise_schedule *s, const df_sigmas_params *p, double strength,
                                      double **out, int *n);

/* The regularised incomplete beta function I_x(a, b) and its inverse (the
 * Beta(a, b) quantile), as scipy.special.betainc / scipy.stats.beta.ppf. */
DF_API double df_betainc(double a, double b, double x);
DF_API double df_betaincinv(double a, double b, double p);

#endif
