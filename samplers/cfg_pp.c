/* CFG++ (Chung et al. 2024) as ComfyUI's k-diffusion runs it
 * (sample_euler_cfg_pp, sample_euler_ancestral_cfg_pp): the step follows
 * the guided x0 estimate D but renoises along the *unconditional* noise,
 *
 *   d = (x − D_u)/σ_i,   x_{i+1} = D + σ_down d  (+ s_noise σ_up z)
 *
 * with (σ_down, σ_up) k-diffusion's ancestral split of σ_{i+1} (euler_cfg_pp:
 * σ_down = σ_{i+1}, no noise), D_u the guided denoiser's unconditional
 * estimate of the same call (host->denoised_uncond), and x = D on the last
 * step. This is ComfyUI's form for variance-exploding (eps / v) models, where
 * its α_s, α_t are 1. Guidance scales are meant to be small (CFG++'s λ in
 * [0, 1] corresponds to ComfyUI's cfg of about 1 to 2). */
#include "common.h"

static int cfg_pp(const df_host_api *h, df_sampler_run *run, df_tensor *x, const double *sigmas, int n, double eta,
                  double s_noise)
{
    if (!DF_HOST_HAS(h, denoised_uncond))
        return h->error(run, DF_PLUGIN_EINVAL, "the host (ABI %u.%u) cannot give the unconditional estimate (needs 1.1)",
                        h->abi_version >> 16, h->abi_version & 0xffff);
    int rc = 0, steps = n_steps_of(n);
    df_tensor *den = NULL, *unc = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(unc, x);
    for (int i = 0; i < steps; i++) {
        double s = sigmas[i], sn = sigmas[i + 1], down, up;
        TRY(h->denoise(run, x, s, den));
        TRY(h->denoised_uncond(run, unc));
        if (sn == 0) {
            TRY(h->copy(x, den));
        } else {
            ancestral_step(s, sn, eta, &down, &up);
            /* x = D + down (x − D_u)/σ */
            TRY(h->lincomb(x, 3, (const double[]){down / s, 1, -down / s}, (const df_tensor *const[]){x, den, unc}));
            if (eta > 0 && s_noise > 0) {
                TRY(h->randn(run, unc));
                TRY(h->axpy(x, s_noise * up, unc));
            }
        }
        TRY(h->step(run, i, steps, s, sn, x, den));
    }
done:
    h->free(den);
    h->free(unc);
    return rc;
}

static int sample_euler_cfg_pp(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                               const double *sigmas, int n)
{
    (void)user;
    return cfg_pp(h, run, x, sigmas, n, 0, 0);
}

static int sample_euler_ancestral_cfg_pp(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                                         const double *sigmas, int n)
{
    (void)user;
    return cfg_pp(h, run, x, sigmas, n, h->option(run, "eta"), h->option(run, "s_noise"));
}

static const df_sampler_option ancestral_options[] = {OPTION_ETA(1), OPTION_S_NOISE};

static const df_sampler_desc samplers[] = {
    {DF_SAMPLER_DESC_INIT, .name = "euler_cfg_pp",
     .description = "Euler steps renoised along the unconditional prediction (CFG++; needs a guided denoiser)",
     .sample = sample_euler_cfg_pp},
    {DF_SAMPLER_DESC_INIT, .name = "euler_ancestral_cfg_pp",
     .description = "euler_cfg_pp with ancestral noise (CFG++; needs a guided denoiser)", .options = ancestral_options,
     .n_options = N_OPTIONS(ancestral_options), .flags = DF_SAMPLER_STOCHASTIC, .sample = sample_euler_ancestral_cfg_pp},
};

DF_SAMPLER_PLUGIN("difusa-cfg-pp", samplers)
