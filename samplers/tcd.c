/* Trajectory Consistency Distillation (Zheng et al. 2024), as diffusers'
 * TCDScheduler.step runs it. A TCD model predicts x0 at the timestep t of
 * σ_i; the step goes to the earlier timestep s = ⌊(1 − γ)·t'⌋, t' the
 * timestep of σ_{i+1}, along the predicted noise, then (γ > 0) noises the
 * result forward to σ_{i+1}. In sigma space, with ε = (x − D)/σ_i:
 *
 *   x_s     = D + σ_s ε                        (σ_s = σ(s), the model's table)
 *   x_{i+1} = x_s + √(σ_{i+1}² − σ_s²) z       (not on the last step)
 *
 * As diffusers: the timestep after the last one is 0 (so the result is the
 * sample at training timestep 0, D + σ(0)·ε, whatever the schedule's last
 * sigma), the last step draws no noise, and (1 − γ)·t' is formed in float32
 * (torch's arithmetic) before the floor. Timesteps come from the run's
 * denoiser (host->sigma_to_t): a sigma within 1e-3 of a training timestep is
 * taken as that timestep. With γ = 0 the step is DDIM's deterministic one and
 * lands on σ_{i+1} itself. */
#include "common.h"

/* The training timestep of sigma (0 for sigma 0), rounded when it is one. */
static double timestep_of(const df_host_api *h, df_sampler_run *run, double sigma)
{
    if (!(sigma > 0)) return 0;
    double t = h->sigma_to_t(run, sigma);
    if (fabs(t - nearbyint(t)) < 1e-3) t = nearbyint(t);
    return t;
}

static int sample_tcd(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                      int n)
{
    (void)user;
    if (!DF_HOST_HAS(h, sigma_to_t) || !DF_HOST_HAS(h, t_to_sigma))
        return h->error(run, DF_PLUGIN_EINVAL, "the host (ABI %u.%u) cannot map sigmas to timesteps (needs 1.1)",
                        h->abi_version >> 16, h->abi_version & 0xffff);
    int rc = 0, steps = n_steps_of(n);
    double gamma = h->option(run, "eta");
    df_tensor *den = NULL, *z = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < steps; i++) {
        double s_i = sigmas[i], s_next = sigmas[i + 1];
        int last = i == steps - 1;
        double t_next = timestep_of(h, run, s_next);
        if (isnan(t_next)) {
            rc = DF_PLUGIN_EINVAL; /* the host's message: no schedule */
            goto done;
        }
        double sigma_s;
        if (gamma == 0 && s_next > 0)
            sigma_s = s_next;
        else
            sigma_s = h->t_to_sigma(run, floorf((float)(1 - gamma) * (float)t_next));
        TRY(h->denoise(run, x, s_i, den));
        /* x_s = D + σ_s (x − D)/σ_i */
        TRY(h->lincomb(x, 2, (const double[]){sigma_s / s_i, 1 - sigma_s / s_i}, (const df_tensor *const[]){x, den}));
        if (gamma > 0 && !last) {
            double v = s_next * s_next - sigma_s * sigma_s;
            TRY(h->randn(run, z));
            TRY(h->axpy(x, v > 0 ? sqrt(v) : 0, z));
        }
        TRY(h->step(run, i, steps, s_i, s_next, x, den));
    }
done:
    h->free(den);
    h->free(z);
    return rc;
}

static const df_sampler_option tcd_options[] = {
    {"eta", DF_OPT_NUMBER, 0.3, 0, 1, NULL,
     "TCD's gamma (diffusers' eta): 0 deterministic, 1 every step renoised from the x0 estimate"},
};

static const df_sampler_desc tcd = {DF_SAMPLER_DESC_INIT,
                                    .name = "tcd",
                                    .description = "trajectory consistency distillation (diffusers' TCDScheduler; "
                                                   "needs a model with a discrete schedule)",
                                    .options = tcd_options,
                                    .n_options = N_OPTIONS(tcd_options),
                                    .flags = DF_SAMPLER_STOCHASTIC,
                                    .sample = sample_tcd};

static int init(const df_host_api *h, df_plugin_registrar *reg) { return h->register_sampler(reg, &tcd); }

static const df_plugin_desc plugin = {DF_PLUGIN_DESC_INIT, .name = "difusa-tcd", .version = "1", .init = init};

DF_PLUGIN_EXPORT const df_plugin_desc *difusa_plugin_entry(void) { return &plugin; }
