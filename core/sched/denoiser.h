/* Denoisers: what every sampler sees. A denoiser maps a noisy sample
 * x = x0 + σ·ε (variance-exploding parameterisation) to an estimate of x0,
 * D(x, σ) (Karras et al. 2022; k-diffusion's "denoiser" models).
 *
 * The model wrapper turns a network trained in its own parameterisation into
 * one: a discrete VP model (DDPM / Stable Diffusion) gets the timestep t(σ)
 * by log-sigma interpolation over its training schedule and the input scaled
 * by 1/√(σ²+1), and its eps / v / x0 prediction is converted; a VE score
 * model s(x, σ) ≈ ∇ log p_σ(x) gets x and σ unchanged, D = x + σ² s. */
#ifndef DF_SCHED_DENOISER_H
#define DF_SCHED_DENOISER_H

#include "../tensor.h"
#include "schedule.h"

/* x (any shape) at noise level sigma -> *out, a new tensor of x's shape on
 * x's backend that the caller owns. A failure returns a status with the
 * message set (and leaves *out NULL). */
typedef int (*df_denoise_fn)(void *user, const df_tensor *x, double sigma, df_tensor **out);

/* The unconditional estimate of x0 of the denoiser's last call (a guided
 * denoiser: D = D_u + s·(D_c − D_u)) -> *out, a new tensor the caller owns. */
typedef int (*df_uncond_fn)(void *user, df_tensor **out);

typedef struct df_denoiser {
    df_denoise_fn denoise;
    void *user;
    /* Optional, NULL when there is none: the discrete training schedule of
     * the model behind the denoiser (borrowed), whose timesteps samplers that
     * work in timesteps (TCD) read through the plugin host. */
    const df_noise_schedule *schedule;
    /* Optional, NULL for an unguided denoiser: the unconditional x0 of the
     * last call (CFG++ samplers). */
    df_uncond_fn uncond;
} df_denoiser;

/* Calls d; checks the result's shape against x. */
DF_API int df_denoiser_call(const df_denoiser *d, const df_tensor *x, double sigma, df_tensor **out);

/* ---- the model wrapper ---- */

typedef enum {
    DF_PRED_EPS = 0, /* the noise ε: D = x − σ·ε */
    DF_PRED_V = 1,   /* v = α ε − σ_vp x0 (Salimans & Ho): D = x/(σ²+1) − σ/√(σ²+1)·v */
    DF_PRED_X0 = 2,  /* x0 itself ("sample") */
    DF_PRED_SCORE = 3, /* the score ∇ log p_σ(x) of a VE model: D = x + σ²·s */
    DF_PRED_COUNT
} df_prediction;

/* "epsilon" (alias "eps"), "v_prediction" (alias "v"), "sample" (alias "x0"),
 * "score" -> kind; -1 when unknown or NULL. */
DF_API int df_prediction_from_name(const char *name);
DF_API const char *df_prediction_name(int pred);

/* The network: input (already scaled for VP models) and its timestep ->
 * *out (new tensor, same shape) in the model's parameterisation. */
typedef int (*df_model_fn)(void *user, const df_tensor *x_in, double t, df_tensor **out);

typedef struct df_model_wrapper {
    df_model_fn model;
    void *user;
    int prediction; /* df_prediction */
    /* Discrete VP model: σ -> t over this schedule (borrowed; must outlive
     * the wrapper), input scaled by 1/√(σ²+1). NULL: a VE model, called with
     * the unscaled x and t = σ. */
    const df_noise_schedule *schedule;
    /* Round t to the nearest training timestep (k-diffusion's quantize=True,
     * ComfyUI's behaviour) instead of interpolating. */
    int quantize;
    /* Consistency models (LCM; diffusers' LCMScheduler
     * get_scalings_for_boundary_condition_discrete): the estimate becomes
     * c_skip(t)·x/√(σ²+1) + c_out(t)·D with, for τ = timestep_scaling·t,
     * c_skip = σ_d²/(τ² + σ_d²) and c_out = τ/√(τ² + σ_d²), t the timestep
     * the model gets. Needs a schedule. timestep_scaling (0: 10) and
     * sigma_data σ_d (0: 0.5) as diffusers' defaults. */
    int consistency;
    double timestep_scaling, sigma_data;
} df_model_wrapper;

DF_API df_model_wrapper df_model_wrapper_default(void);

/* The denoiser of a wrapper (which must outlive it), with the wrapper's
 * schedule. */
DF_API df_denoiser df_model_wrapper_denoiser(const df_model_wrapper *w);

/* The wrapper's denoise function itself (user = the wrapper). */
DF_API int df_model_wrapper_denoise(void *wrapper, const df_tensor *x, double sigma, df_tensor **out);

/* The timestep the wrapper passes the model at σ. */
DF_API double df_model_wrapper_timestep(const df_model_wrapper *w, double sigma);

#endif
