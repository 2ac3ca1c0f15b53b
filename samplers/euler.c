/* Karras-ODE samplers of k-diffusion: euler, euler_ancestral, heun, dpm_2,
 * dpm_2_ancestral (k_diffusion/sampling.py, sample_*). Each step follows the
 * reference line by line; the comments quote what it computes. */
#include "common.h"

/* Karras et al. churn: raises sigma to sigma_hat by adding noise. */
static int churn(const df_host_api *h, df_sampler_run *run, df_tensor *x, df_tensor *tmp, double sigma, int n_steps,
                 double *sigma_hat)
{
    double s_churn = h->option(run, "s_churn"), tmin = h->option(run, "s_tmin"), tmax = h->option(run, "s_tmax");
    double s_noise = h->option(run, "s_noise");
    *sigma_hat = sigma;
    if (!(s_churn > 0)) return 0;
    double gamma = (tmin <= sigma && sigma <= tmax) ? fmin(s_churn / n_steps, sqrt(2.0) - 1) : 0;
    if (!(gamma > 0)) return 0;
    *sigma_hat = sigma * (gamma + 1);
    int rc = h->randn(run, tmp);
    if (rc) return rc;
    /* x = x + eps * s_noise * (sigma_hat² − sigma²)^½ */
    return h->axpy(x, s_noise * sqrt(*sigma_hat * *sigma_hat - sigma * sigma), tmp);
}

static int sample_euler(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                        int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    df_tensor *den = NULL, *d = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(d, x);
    for (int i = 0; i < steps; i++) {
        double sigma_hat;
        TRY(churn(h, run, x, d, sigmas[i], steps, &sigma_hat));
        TRY(h->denoise(run, x, sigma_hat, den));
        TRY(to_d(h, d, x, den, sigma_hat));
        TRY(h->axpy(x, sigmas[i + 1] - sigma_hat, d)); /* x = x + d * dt */
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    h->free(d);
    return rc;
}

static int sample_euler_ancestral(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                                  const double *sigmas, int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise");
    df_tensor *den = NULL, *d = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(d, x);
    for (int i = 0; i < steps; i++) {
        double down, up;
        TRY(h->denoise(run, x, sigmas[i], den));
        ancestral_step(sigmas[i], sigmas[i + 1], eta, &down, &up);
        TRY(to_d(h, d, x, den, sigmas[i]));
        TRY(h->axpy(x, down - sigmas[i], d));
        if (sigmas[i + 1] > 0) {
            TRY(h->randn(run, d));
            TRY(h->axpy(x, s_noise * up, d));
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    h->free(d);
    return rc;
}

static int sample_heun(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                       int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    df_tensor *den = NULL, *d = NULL, *x2 = NULL, *d2 = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(d, x);
    NEW_LIKE(x2, x);
    NEW_LIKE(d2, x);
    for (int i = 0; i < steps; i++) {
        double sigma_hat;
        TRY(churn(h, run, x, d, sigmas[i], steps, &sigma_hat));
        TRY(h->denoise(run, x, sigma_hat, den));
        TRY(to_d(h, d, x, den, sigma_hat));
        double dt = sigmas[i + 1] - sigma_hat;
        if (sigmas[i + 1] == 0) {
            TRY(h->axpy(x, dt, d)); /* Euler method */
        } else {
            /* Heun's method: x_2 = x + d dt; d_2 = to_d(x_2, σ_next, D(x_2, σ_next)); x += (d + d_2)/2 dt */
            TRY(h->copy(x2, x));
            TRY(h->axpy(x2, dt, d));
            TRY(h->denoise(run, x2, sigmas[i + 1], d2));
            TRY(to_d(h, d2, x2, d2, sigmas[i + 1]));
            TRY(h->axpy(d, 1, d2));
            TRY(h->axpy(x, dt / 2, d));
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    h->free(d);
    h->free(x2);
    h->free(d2);
    return rc;
}

/* One DPM-Solver-2 step from sigma to sigma_to: the midpoint in log sigma. */
static int dpm2_step(const df_host_api *h, df_sampler_run *run, df_tensor *x, const df_tensor *d, df_tensor *x2,
                     df_tensor *d2, double sigma, double sigma_to)
{
    int rc;
    double sigma_mid = exp(0.5 * (log(sigma) + log(sigma_to)));
    if ((rc = h->copy(x2, x)) || (rc = h->axpy(x2, sigma_mid - sigma, d))) return rc;
    if ((rc = h->denoise(run, x2, sigma_mid, d2)) || (rc = to_d(h, d2, x2, d2, sigma_mid))) return rc;
    return h->axpy(x, sigma_to - sigma, d2);
}

static int sample_dpm_2(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                        int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    df_tensor *den = NULL, *d = NULL, *x2 = NULL, *d2 = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(d, x);
    NEW_LIKE(x2, x);
    NEW_LIKE(d2, x);
    for (int i = 0; i < steps; i++) {
        double sigma_hat;
        TRY(churn(h, run, x, d, sigmas[i], steps, &sigma_hat));
        TRY(h->denoise(run, x, sigma_hat, den));
        TRY(to_d(h, d, x, den, sigma_hat));
        if (sigmas[i + 1] == 0) TRY(h->axpy(x, sigmas[i + 1] - sigma_hat, d));
        else TRY(dpm2_step(h, run, x, d, x2, d2, sigma_hat, sigmas[i + 1]));
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    h->free(d);
    h->free(x2);
    h->free(d2);
    return rc;
}

static int sample_dpm_2_ancestral(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                                  const double *sigmas, int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise");
    df_tensor *den = NULL, *d = NULL, *x2 = NULL, *d2 = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(d, x);
    NEW_LIKE(x2, x);
    NEW_LIKE(d2, x);
    for (int i = 0; i < steps; i++) {
        double down, up;
        TRY(h->denoise(run, x, sigmas[i], den));
        ancestral_step(sigmas[i], sigmas[i + 1], eta, &down, &up);
        TRY(to_d(h, d, x, den, sigmas[i]));
        if (down == 0) {
            TRY(h->axpy(x, down - sigmas[i], d));
        } else {
            TRY(dpm2_step(h, run, x, d, x2, d2, sigmas[i], down));
            TRY(h->randn(run, d));
            TRY(h->axpy(x, s_noise * up, d));
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    h->free(d);
    h->free(x2);
    h->free(d2);
    return rc;
}

static const df_sampler_option churn_options[] = {OPTIONS_CHURN};
static const df_sampler_option ancestral_options[] = {OPTION_ETA(1), OPTION_S_NOISE};

static const df_sampler_desc samplers[] = {
    {DF_SAMPLER_DESC_INIT, .name = "euler", .description = "Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2)",
     .options = churn_options, .n_options = N_OPTIONS(churn_options), .sample = sample_euler},
    {DF_SAMPLER_DESC_INIT, .name = "euler_ancestral", .description = "Euler steps with ancestral noise (k-diffusion)",
     .options = ancestral_options, .n_options = N_OPTIONS(ancestral_options), .flags = DF_SAMPLER_STOCHASTIC,
     .sample = sample_euler_ancestral},
    {DF_SAMPLER_DESC_INIT, .name = "heun", .description = "Heun's second-order method (Karras et al. 2022, Algorithm 2)",
     .options = churn_options, .n_options = N_OPTIONS(churn_options), .sample = sample_heun},
    {DF_SAMPLER_DESC_INIT, .name = "dpm_2", .description = "DPM-Solver-2-inspired midpoint steps in log sigma (k-diffusion)",
     .options = churn_options, .n_options = N_OPTIONS(churn_options), .flags = DF_SAMPLER_NEEDS_STEP_PAIRS,
     .sample = sample_dpm_2},
    {DF_SAMPLER_DESC_INIT, .name = "dpm_2_ancestral", .description = "dpm_2 steps with ancestral noise (k-diffusion)",
     .options = ancestral_options, .n_options = N_OPTIONS(ancestral_options),
     .flags = DF_SAMPLER_STOCHASTIC | DF_SAMPLER_NEEDS_STEP_PAIRS, .sample = sample_dpm_2_ancestral},
};

DF_SAMPLER_PLUGIN("difusa-euler", samplers)
