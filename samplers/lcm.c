/* Latent consistency models (Luo et al. 2023): each step takes the
 * consistency function's output D(x, σ) as the sample and noises it again
 * to the next sigma. In sigma space diffusers' LCMScheduler step
 *   x_{t'} = √ᾱ' D + √(1 − ᾱ') z
 * is x' = D + σ' z. The consistency boundary condition (c_skip, c_out of
 * the timestep, diffusers' get_scalings_for_boundary_condition_discrete)
 * belongs to the model and so to its denoiser, as in ComfyUI: the model
 * wrapper's `consistency` flag (unet:denoiser{consistency = true} in Lua). */
#include "common.h"

static int sample_lcm(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                      int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    double s_noise = h->option(run, "s_noise");
    df_tensor *den = NULL, *z = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < steps; i++) {
        TRY(h->denoise(run, x, sigmas[i], den));
        TRY(h->copy(x, den));
        if (sigmas[i + 1] > 0) {
            TRY(h->randn(run, z));
            TRY(h->axpy(x, sigmas[i + 1] * s_noise, z));
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    h->free(z);
    return rc;
}

static const df_sampler_option lcm_options[] = {OPTION_S_NOISE};

static const df_sampler_desc lcm = {DF_SAMPLER_DESC_INIT,
                                    .name = "lcm",
                                    .description = "latent consistency model sampling (denoise, then renoise)",
                                    .options = lcm_options,
                                    .n_options = N_OPTIONS(lcm_options),
                                    .flags = DF_SAMPLER_STOCHASTIC,
                                    .sample = sample_lcm};

static int init(const df_host_api *h, df_plugin_registrar *reg) { return h->register_sampler(reg, &lcm); }

static const df_plugin_desc plugin = {DF_PLUGIN_DESC_INIT, .name = "difusa-lcm", .version = "1", .init = init};

DF_PLUGIN_EXPORT const df_plugin_desc *difusa_plugin_entry(void) { return &plugin; }
