/* DDIM (Song et al. 2021) and DDPM ancestral sampling (Ho et al. 2020),
 * written in sigma space: a VP sample x_t = √ᾱ (x0 + σ ε) is the VE sample
 * x = x0 + σ ε scaled by √ᾱ, with ᾱ = 1/(1 + σ²), so each step is taken on
 * x and the denoiser's D(x, σ) plays the model's x0 prediction. On the same
 * sigmas they reproduce diffusers' DDIMScheduler (eta; no clipping or
 * thresholding) and DDPMScheduler (variance "fixed_small"). */
#include "common.h"

/* DDIM: x' = D + s_down (x − D)/σ + s_up z, where s_up = eta·σ'·√(1 − σ'²/σ²)
 * is DDIM's σ_t(eta) divided by √ᾱ', and s_down = √(σ'² − s_up²). */
static int sample_ddim(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                       int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise");
    df_tensor *den = NULL, *z = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < steps; i++) {
        double s = sigmas[i], sn = sigmas[i + 1], down, up;
        TRY(h->denoise(run, x, s, den));
        ancestral_step(s, sn, eta, &down, &up);
        TRY(h->lincomb(x, 2, (const double[]){down / s, 1 - down / s}, (const df_tensor *const[]){x, den}));
        if (up > 0) {
            TRY(h->randn(run, z));
            TRY(h->axpy(x, up * s_noise, z));
        }
        TRY(h->step(run, i, steps, s, sn, x, den));
    }
done:
    h->free(den);
    h->free(z);
    return rc;
}

/* DDPM: the posterior q(x_{t'} | x_t, x0) in VP space,
 *   mean = √ᾱ' β/(1 − ᾱ) x0 + √α (1 − ᾱ')/(1 − ᾱ) x_t,  var = (1 − ᾱ')/(1 − ᾱ) β,
 * with α = ᾱ/ᾱ', β = 1 − α, then back to VE by 1/√ᾱ'. */
static int sample_ddpm(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                       int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    double s_noise = h->option(run, "s_noise");
    df_tensor *den = NULL, *z = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < steps; i++) {
        double s = sigmas[i], sn = sigmas[i + 1];
        TRY(h->denoise(run, x, s, den));
        double ac = 1 / (1 + s * s), acp = 1 / (1 + sn * sn), alpha = ac / acp, beta = 1 - alpha;
        double c0 = sqrt(acp) * beta / (1 - ac), ct = sqrt(alpha) * (1 - acp) / (1 - ac);
        double var = (1 - acp) / (1 - ac) * beta, to_ve = 1 / sqrt(acp);
        /* x_vp = x √ᾱ; x' = (c0 D + ct x_vp) / √ᾱ' (+ noise) */
        TRY(h->lincomb(x, 2, (const double[]){ct * sqrt(ac) * to_ve, c0 * to_ve}, (const df_tensor *const[]){x, den}));
        if (sn > 0) {
            if (var < 1e-20) var = 1e-20;
            TRY(h->randn(run, z));
            TRY(h->axpy(x, sqrt(var) * to_ve * s_noise, z));
        }
        TRY(h->step(run, i, steps, s, sn, x, den));
    }
done:
    h->free(den);
    h->free(z);
    return rc;
}

static const df_sampler_option ddim_options[] = {OPTION_ETA(0), OPTION_S_NOISE};
static const df_sampler_option ddpm_options[] = {OPTION_S_NOISE};

static const df_sampler_desc samplers[] = {
    {DF_SAMPLER_DESC_INIT, .name = "ddim", .description = "DDIM (eta 0: deterministic; eta 1: DDPM-like)",
     .options = ddim_options, .n_options = N_OPTIONS(ddim_options), .flags = DF_SAMPLER_STOCHASTIC,
     .sample = sample_ddim},
    {DF_SAMPLER_DESC_INIT, .name = "ddpm", .description = "DDPM ancestral sampling with the posterior variance",
     .options = ddpm_options, .n_options = N_OPTIONS(ddpm_options), .flags = DF_SAMPLER_STOCHASTIC,
     .sample = sample_ddpm},
};

DF_SAMPLER_PLUGIN("difusa-ddim", samplers)
