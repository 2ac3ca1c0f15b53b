/* DPM-Solver++ samplers of k-diffusion (Lu et al. 2022): dpmpp_2s_ancestral,
 * dpmpp_sde, dpmpp_2m, dpmpp_2m_sde (midpoint / heun), dpmpp_3m_sde. They
 * work in t = −log σ; the SDE variants take their noise from host->noise
 * (a Brownian tree unless the host injects noise), as k-diffusion's
 * BrownianTreeNoiseSampler does. */
#include "common.h"

static double t_of(double sigma) { return -log(sigma); }
static double sigma_of(double t) { return exp(-t); }

static int sample_dpmpp_2s_ancestral(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                                     const double *sigmas, int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise");
    df_tensor *den = NULL, *x2 = NULL, *d2 = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(x2, x);
    NEW_LIKE(d2, x);
    for (int i = 0; i < steps; i++) {
        double down, up;
        TRY(h->denoise(run, x, sigmas[i], den));
        ancestral_step(sigmas[i], sigmas[i + 1], eta, &down, &up);
        if (down == 0) {
            /* Euler: x + d (σ_down − σ) with d = (x − D)/σ, σ_down = 0 gives D */
            TRY(to_d(h, d2, x, den, sigmas[i]));
            TRY(h->axpy(x, down - sigmas[i], d2));
        } else {
            /* DPM-Solver++(2S) */
            double t = t_of(sigmas[i]), t_next = t_of(down), hh = t_next - t, s = t + 0.5 * hh;
            /* x_2 = (σ(s)/σ(t)) x − expm1(−h r) D */
            TRY(h->lincomb(x2, 2, (const double[]){sigma_of(s) / sigma_of(t), -expm1(-hh * 0.5)},
                           (const df_tensor *const[]){x, den}));
            TRY(h->denoise(run, x2, sigma_of(s), d2));
            /* x = (σ(t_next)/σ(t)) x − expm1(−h) D_2 */
            TRY(h->lincomb(x, 2, (const double[]){sigma_of(t_next) / sigma_of(t), -expm1(-hh)},
                           (const df_tensor *const[]){x, d2}));
        }
        if (sigmas[i + 1] > 0) {
            TRY(h->randn(run, d2));
            TRY(h->axpy(x, s_noise * up, d2));
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    h->free(x2);
    h->free(d2);
    return rc;
}

static int sample_dpmpp_sde(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                            const double *sigmas, int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise"), r = h->option(run, "r");
    df_tensor *den = NULL, *x2 = NULL, *d2 = NULL, *z = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(x2, x);
    NEW_LIKE(d2, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < steps; i++) {
        TRY(h->denoise(run, x, sigmas[i], den));
        if (sigmas[i + 1] == 0) {
            TRY(to_d(h, d2, x, den, sigmas[i]));
            TRY(h->axpy(x, sigmas[i + 1] - sigmas[i], d2));
        } else {
            double t = t_of(sigmas[i]), t_next = t_of(sigmas[i + 1]), hh = t_next - t, s = t + hh * r;
            double fac = 1 / (2 * r), sd, su;
            /* step 1: to s, with noise */
            ancestral_step(sigma_of(t), sigma_of(s), eta, &sd, &su);
            double s_ = t_of(sd);
            TRY(h->lincomb(x2, 2, (const double[]){sigma_of(s_) / sigma_of(t), -expm1(t - s_)},
                           (const df_tensor *const[]){x, den}));
            TRY(h->noise(run, z, sigma_of(t), sigma_of(s)));
            TRY(h->axpy(x2, s_noise * su, z));
            TRY(h->denoise(run, x2, sigma_of(s), d2));
            /* step 2: to t_next from the blend of the two denoised */
            ancestral_step(sigma_of(t), sigma_of(t_next), eta, &sd, &su);
            double tn_ = t_of(sd);
            double a = sigma_of(tn_) / sigma_of(t), b = -expm1(t - tn_);
            TRY(h->lincomb(x, 3, (const double[]){a, b * (1 - fac), b * fac}, (const df_tensor *const[]){x, den, d2}));
            TRY(h->noise(run, z, sigma_of(t), sigma_of(t_next)));
            TRY(h->axpy(x, s_noise * su, z));
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    h->free(x2);
    h->free(d2);
    h->free(z);
    return rc;
}

static int sample_dpmpp_2m(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                           int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n);
    df_tensor *den = NULL, *old = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(old, x);
    for (int i = 0; i < steps; i++) {
        TRY(h->denoise(run, x, sigmas[i], den));
        double t = t_of(sigmas[i]), t_next = t_of(sigmas[i + 1]), hh = t_next - t;
        double a = sigma_of(t_next) / sigma_of(t), b = -expm1(-hh);
        if (i == 0 || sigmas[i + 1] == 0) {
            TRY(h->lincomb(x, 2, (const double[]){a, b}, (const df_tensor *const[]){x, den}));
        } else {
            double h_last = t - t_of(sigmas[i - 1]), rr = h_last / hh;
            /* D_d = (1 + 1/(2r)) D − 1/(2r) D_old */
            TRY(h->lincomb(x, 3, (const double[]){a, b * (1 + 1 / (2 * rr)), -b / (2 * rr)},
                           (const df_tensor *const[]){x, den, old}));
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
        df_tensor *tmp = old;
        old = den;
        den = tmp;
    }
done:
    h->free(den);
    h->free(old);
    return rc;
}

static int sample_dpmpp_2m_sde(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                               const double *sigmas, int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n), heun = h->option(run, "solver_type") == 1;
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise"), h_last = 0;
    int have_old = 0;
    df_tensor *den = NULL, *old = NULL, *z = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(old, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < steps; i++) {
        TRY(h->denoise(run, x, sigmas[i], den));
        double hh = 0;
        if (sigmas[i + 1] == 0) {
            TRY(h->copy(x, den)); /* denoising step */
        } else {
            double t = -log(sigmas[i]), s = -log(sigmas[i + 1]);
            hh = s - t;
            double eta_h = eta * hh, ph = -expm1(-hh - eta_h);
            double c_x = sigmas[i + 1] / sigmas[i] * exp(-eta_h), c_d = ph, c_old = 0;
            if (have_old) {
                double rr = h_last / hh;
                double k = heun ? (ph / (-hh - eta_h) + 1) * (1 / rr) : 0.5 * ph * (1 / rr);
                c_d += k;
                c_old = -k;
            }
            if (have_old)
                TRY(h->lincomb(x, 3, (const double[]){c_x, c_d, c_old}, (const df_tensor *const[]){x, den, old}));
            else
                TRY(h->lincomb(x, 2, (const double[]){c_x, c_d}, (const df_tensor *const[]){x, den}));
            if (eta != 0) {
                TRY(h->noise(run, z, sigmas[i], sigmas[i + 1]));
                TRY(h->axpy(x, sigmas[i + 1] * sqrt(-expm1(-2 * eta_h)) * s_noise, z));
            }
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
        df_tensor *tmp = old;
        old = den;
        den = tmp;
        have_old = 1;
        h_last = hh;
    }
done:
    h->free(den);
    h->free(old);
    h->free(z);
    return rc;
}

static int sample_dpmpp_3m_sde(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                               const double *sigmas, int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n), have1 = 0, have2 = 0;
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise"), h1 = 0, h2 = 0;
    df_tensor *den = NULL, *den1 = NULL, *den2 = NULL, *z = NULL;
    NEW_LIKE(den, x);
    NEW_LIKE(den1, x);
    NEW_LIKE(den2, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < steps; i++) {
        TRY(h->denoise(run, x, sigmas[i], den));
        double hh = 0;
        if (sigmas[i + 1] == 0) {
            TRY(h->copy(x, den));
        } else {
            double t = -log(sigmas[i]), s = -log(sigmas[i + 1]);
            hh = s - t;
            double h_eta = hh * (eta + 1);
            double c_x = exp(-h_eta), c0 = -expm1(-h_eta), c1 = 0, c2 = 0;
            double phi_2 = expm1(-h_eta) / h_eta + 1;
            if (have2) {
                double r0 = h1 / hh, r1 = h2 / hh, phi_3 = phi_2 / h_eta - 0.5;
                /* d1_0 = (D − D1)/r0, d1_1 = (D1 − D2)/r1
                 * d1 = d1_0 + (d1_0 − d1_1) r0/(r0 + r1), d2 = (d1_0 − d1_1)/(r0 + r1)
                 * x += φ2 d1 − φ3 d2, expanded into coefficients of D, D1, D2 */
                double a = r0 / (r0 + r1), b = 1 / (r0 + r1);
                /* d1_0 coefficients: D: 1/r0, D1: −1/r0; d1_1: D1: 1/r1, D2: −1/r1 */
                double d10[3] = {1 / r0, -1 / r0, 0}, d11[3] = {0, 1 / r1, -1 / r1}, k[3];
                for (int j = 0; j < 3; j++) {
                    double d1 = d10[j] + (d10[j] - d11[j]) * a, d2 = (d10[j] - d11[j]) * b;
                    k[j] = phi_2 * d1 - phi_3 * d2;
                }
                c0 += k[0];
                c1 = k[1];
                c2 = k[2];
            } else if (have1) {
                double r = h1 / hh;
                c0 += phi_2 / r;
                c1 = -phi_2 / r;
            }
            if (have2)
                TRY(h->lincomb(x, 4, (const double[]){c_x, c0, c1, c2}, (const df_tensor *const[]){x, den, den1, den2}));
            else if (have1)
                TRY(h->lincomb(x, 3, (const double[]){c_x, c0, c1}, (const df_tensor *const[]){x, den, den1}));
            else
                TRY(h->lincomb(x, 2, (const double[]){c_x, c0}, (const df_tensor *const[]){x, den}));
            if (eta != 0) {
                TRY(h->noise(run, z, sigmas[i], sigmas[i + 1]));
                TRY(h->axpy(x, sigmas[i + 1] * sqrt(-expm1(-2 * hh * eta)) * s_noise, z));
            }
        }
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
        /* denoised_1, denoised_2 = denoised, denoised_1; h_1, h_2 = h, h_1 */
        df_tensor *tmp = den2;
        den2 = den1;
        den1 = den;
        den = tmp;
        have2 = have1;
        have1 = 1;
        h2 = h1;
        h1 = hh;
    }
done:
    h->free(den);
    h->free(den1);
    h->free(den2);
    h->free(z);
    return rc;
}

static const df_sampler_option ancestral_options[] = {OPTION_ETA(1), OPTION_S_NOISE};
static const df_sampler_option sde_options[] = {
    OPTION_ETA(1), OPTION_S_NOISE, {"r", DF_OPT_NUMBER, 0.5, 0.01, 1, NULL, "position of the intermediate step in log sigma"}};
static const df_sampler_option sde2m_options[] = {
    OPTION_ETA(1), OPTION_S_NOISE, {"solver_type", DF_OPT_CHOICE, 0, 0, 1, "midpoint|heun", "second-order correction"}};
static const df_sampler_option sde3m_options[] = {OPTION_ETA(1), OPTION_S_NOISE};

static const df_sampler_desc samplers[] = {
    {DF_SAMPLER_DESC_INIT, .name = "dpmpp_2s_ancestral", .description = "DPM-Solver++(2S) with ancestral noise",
     .options = ancestral_options, .n_options = N_OPTIONS(ancestral_options), .flags = DF_SAMPLER_STOCHASTIC,
     .sample = sample_dpmpp_2s_ancestral},
    {DF_SAMPLER_DESC_INIT, .name = "dpmpp_sde", .description = "DPM-Solver++ stochastic, two evaluations per step",
     .options = sde_options, .n_options = N_OPTIONS(sde_options),
     .flags = DF_SAMPLER_STOCHASTIC | DF_SAMPLER_BROWNIAN, .sample = sample_dpmpp_sde},
    {DF_SAMPLER_DESC_INIT, .name = "dpmpp_2m", .description = "DPM-Solver++(2M), multistep, deterministic",
     .sample = sample_dpmpp_2m},
    {DF_SAMPLER_DESC_INIT, .name = "dpmpp_2m_sde", .description = "DPM-Solver++(2M) SDE",
     .options = sde2m_options, .n_options = N_OPTIONS(sde2m_options),
     .flags = DF_SAMPLER_STOCHASTIC | DF_SAMPLER_BROWNIAN, .sample = sample_dpmpp_2m_sde},
    {DF_SAMPLER_DESC_INIT, .name = "dpmpp_3m_sde", .description = "DPM-Solver++(3M) SDE",
     .options = sde3m_options, .n_options = N_OPTIONS(sde3m_options),
     .flags = DF_SAMPLER_STOCHASTIC | DF_SAMPLER_BROWNIAN, .sample = sample_dpmpp_3m_sde},
};

DF_SAMPLER_PLUGIN("difusa-dpmpp", samplers)
