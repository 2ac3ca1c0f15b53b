/* DEIS (Zhang & Chen 2023), the time-quadratic "tAB" variant as k-diffusion
 * in ComfyUI runs it (sample_deis, deis_mode "tab", from zju-pi's
 * diff-sampler): the PF-ODE dx/dt = ε dσ/dt in the time t of a VP SDE,
 * where σ(t)² + 1 = 1/ᾱ(t) = exp(½ t² (β₁ − β₀) + β₀ t), and the derivative
 * ε = (x − D)/σ extrapolated by the Lagrange polynomial through the last
 * `order` times:
 *   x' = x + Σ_j C_j ε_{i-j},  C_j = ∫_{t_i}^{t_{i+1}} dσ/dt(τ) ℓ_j(τ) dτ.
 * The VP schedule is fixed by EDM's defaults (σ from 0.002 to 80 over
 * t ∈ [ε_s = 1e-3, 1]), whatever the sampled sigmas; the integral is the
 * reference's 10000-point sum (linspace nodes, weight Δt/N), not the exact
 * value, so that the samples agree. */
#include "common.h"

#include <stdlib.h>

#define MAX_ORDER 4
#define N_QUAD 10000

typedef struct vp {
    double beta_min, beta_d; /* β₀ = beta_min, β₁ = beta_min + beta_d */
} vp;

static vp edm_vp(void)
{
    const double eps_s = 1e-3, smin = 0.002, smax = 80;
    vp v;
    v.beta_d = 2 * (log(smin * smin + 1) / eps_s - log(smax * smax + 1)) / (eps_s - 1);
    v.beta_min = log(smax * smax + 1) - 0.5 * v.beta_d;
    return v;
}

static double t_of_sigma(const vp *v, double sigma)
{
    return (sqrt(v->beta_min * v->beta_min + 2 * v->beta_d * log(sigma * sigma + 1)) - v->beta_min) / v->beta_d;
}

/* dσ/dt = −½ (d log ᾱ/dt) / √(ᾱ (1 − ᾱ)). */
static double dsigma_dt(const vp *v, double t)
{
    double e = 0.5 * t * t * v->beta_d + t * v->beta_min; /* −log ᾱ */
    double a = exp(-e), one_minus_a = -expm1(-e);
    return 0.5 * (v->beta_min + t * v->beta_d) / sqrt(a * one_minus_a);
}

/* C_j for the step t[i] -> t[i+1] through t[i], t[i-1], .., t[i-order+1]. */
static void deis_coeffs(const vp *v, const double *t, int i, int order, double *c)
{
    double a = t[i], b = t[i + 1], dtau = (b - a) / N_QUAD, step = (b - a) / (N_QUAD - 1);
    for (int j = 0; j < order; j++) c[j] = 0;
    for (int q = 0; q < N_QUAD; q++) {
        double tau = q < N_QUAD / 2 ? a + step * q : b - step * (N_QUAD - 1 - q); /* torch.linspace */
        double f = dsigma_dt(v, tau);
        for (int j = 0; j < order; j++) {
            double p = 1;
            for (int k = 0; k < order; k++)
                if (k != j) p *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
            c[j] += f * p;
        }
    }
    for (int j = 0; j < order; j++) c[j] *= dtau;
}

static int sample_deis(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                       int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n), max_order = (int)h->option(run, "order"), have = 0;
    vp v = edm_vp();
    double *t = malloc((size_t)n * sizeof *t);
    df_tensor *den = NULL, *hist[MAX_ORDER] = {NULL};
    if (!t) return h->error(run, DF_PLUGIN_ENOMEM, "deis: out of memory for %d times", n);
    for (int i = 0; i < n; i++) t[i] = t_of_sigma(&v, sigmas[i]);
    NEW_LIKE(den, x);
    for (int k = 0; k < max_order; k++) NEW_LIKE(hist[k], x);
    for (int i = 0; i < steps; i++) {
        double s = sigmas[i], sn = sigmas[i + 1];
        /* hist[0] <- the newest derivative */
        df_tensor *last = hist[max_order - 1];
        for (int k = max_order - 1; k > 0; k--) hist[k] = hist[k - 1];
        hist[0] = last;
        TRY(h->denoise(run, x, s, den));
        TRY(to_d(h, hist[0], x, den, s));
        if (have < max_order) have++;
        int order = sn > 0 ? have : 1;
        double c[MAX_ORDER + 1];
        const df_tensor *terms[MAX_ORDER + 1];
        c[0] = 1;
        terms[0] = x;
        if (order == 1) {
            c[1] = sn - s;
        } else {
            deis_coeffs(&v, t, i, order, c + 1);
        }
        for (int k = 0; k < order; k++) terms[k + 1] = hist[k];
        TRY(h->lincomb(x, order + 1, c, terms));
        TRY(h->step(run, i, steps, s, sn, x, den));
    }
done:
    free(t);
    h->free(den);
    for (int k = 0; k < MAX_ORDER; k++) h->free(hist[k]);
    return rc;
}

static const df_sampler_option deis_options[] = {
    {"order", DF_OPT_INT, 3, 1, MAX_ORDER, NULL, "largest number of past derivatives combined"},
};

static const df_sampler_desc deis = {DF_SAMPLER_DESC_INIT,
                                     .name = "deis",
                                     .description = "DEIS (tAB): exponential-integrator multistep in VP time",
                                     .options = deis_options,
                                     .n_options = N_OPTIONS(deis_options),
                                     .sample = sample_deis};

static int init(const df_host_api *h, df_plugin_registrar *reg) { return h->register_sampler(reg, &deis); }

static const df_plugin_desc plugin = {DF_PLUGIN_DESC_INIT, .name = "difusa-deis", .version = "1", .init = init};

DF_PLUGIN_EXPORT const df_plugin_desc *difusa_plugin_entry(void) { return &plugin; }
