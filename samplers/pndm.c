/* Pseudo linear multistep samplers: plms (diffusers' PNDMScheduler with
 * skip_prk_steps, the PLMS of Liu et al. 2022 as Stable Diffusion runs it),
 * ipndm and ipndm_v (the improved PNDM of Zhang & Chen 2023, k-diffusion as
 * ComfyUI ships it). All three combine past derivatives d = (x − D)/σ, which
 * is the model's ε, with Adams–Bashforth weights: in sigma space PNDM's
 * transfer x_t−δ = √(ᾱ'/ᾱ) x_t − (ᾱ' − ᾱ) ε / (ᾱ √(1 − ᾱ') + √(ᾱ (1 − ᾱ) ᾱ'))
 * is exactly x' = x + (σ' − σ) ε. */
#include "common.h"

#define MAX_ORDER 4

/* Adams–Bashforth weights on equal steps: ab[order - 1][k] weighs d_{i-k}. */
static const double ab[MAX_ORDER][MAX_ORDER] = {
    {1, 0, 0, 0},
    {3.0 / 2, -1.0 / 2, 0, 0},
    {23.0 / 12, -16.0 / 12, 5.0 / 12, 0},
    {55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24},
};

/* x += (σ' − σ) Σ_k c[k] hist[k], hist[0] the newest derivative. */
static int ab_step(const df_host_api *h, df_tensor *x, double dt, int order, const double *c, df_tensor *const *hist)
{
    double w[MAX_ORDER + 1];
    const df_tensor *t[MAX_ORDER + 1];
    w[0] = 1;
    t[0] = x;
    for (int k = 0; k < order; k++) {
        w[k + 1] = dt * c[k];
        t[k + 1] = hist[k];
    }
    return h->lincomb(x, order + 1, w, t);
}

/* Rotates the derivative history: hist[0] <- the newest, older ones shift. */
static void push(df_tensor **hist, int n)
{
    df_tensor *last = hist[n - 1];
    for (int k = n - 1; k > 0; k--) hist[k] = hist[k - 1];
    hist[0] = last;
}

/* PLMS: the first step is Heun's in ε (two evaluations; the second is not
 * kept), then Adams–Bashforth of growing order up to 4 on the ε of the
 * previous steps. diffusers evaluates the model steps + 1 times. */
static int sample_plms(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                       int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n), have = 0;
    df_tensor *den = NULL, *x2 = NULL, *hist[MAX_ORDER] = {NULL};
    NEW_LIKE(den, x);
    NEW_LIKE(x2, x);
    for (int k = 0; k < MAX_ORDER; k++) NEW_LIKE(hist[k], x);
    for (int i = 0; i < steps; i++) {
        double s = sigmas[i], sn = sigmas[i + 1];
        push(hist, MAX_ORDER);
        TRY(h->denoise(run, x, s, den));
        TRY(to_d(h, hist[0], x, den, s));
        if (have < MAX_ORDER) have++;
        if (i == 0 && steps > 1) {
            /* x' = x + (σ' − σ)(ε + ε₂)/2, ε₂ at the Euler prediction */
            TRY(h->lincomb(x2, 2, (const double[]){1, sn - s}, (const df_tensor *const[]){x, hist[0]}));
            TRY(h->denoise(run, x2, sn, den));
            TRY(to_d(h, x2, x2, den, sn));
            TRY(h->lincomb(x, 3, (const double[]){1, 0.5 * (sn - s), 0.5 * (sn - s)},
                           (const df_tensor *const[]){x, hist[0], x2}));
        } else {
            TRY(ab_step(h, x, sn - s, have, ab[have - 1], hist));
        }
        TRY(h->step(run, i, steps, s, sn, x, den));
    }
done:
    h->free(den);
    h->free(x2);
    for (int k = 0; k < MAX_ORDER; k++) h->free(hist[k]);
    return rc;
}

/* iPNDM-v's weights for variable steps (σ as the time), order 1 .. 4:
 * hn the step, h1 .. h3 the previous steps, all as σ differences. */
static void ipndm_v_coeffs(const double *sg, int i, int order, double *c)
{
    double hn = sg[i + 1] - sg[i];
    if (order == 1) {
        c[0] = 1;
        return;
    }
    double h1 = sg[i] - sg[i - 1];
    if (order == 2) {
        c[0] = (2 + hn / h1) / 2;
        c[1] = -(hn / h1) / 2;
        return;
    }
    double h2 = sg[i - 1] - sg[i - 2];
    double t1 = (1 - hn / (3 * (hn + h1)) * (hn * (hn + h1)) / (h1 * (h1 + h2))) / 2;
    if (order == 3) {
        c[0] = (2 + hn / h1) / 2 + t1;
        c[1] = -(hn / h1) / 2 - (1 + h1 / h2) * t1;
        c[2] = t1 * h1 / h2;
        return;
    }
    double h3 = sg[i - 2] - sg[i - 3];
    double t2 = ((1 - hn / (3 * (hn + h1))) / 2 + (1 - hn / (2 * (hn + h1))) * hn / (6 * (hn + h1 + h2))) *
                (hn * (hn + h1) * (hn + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3));
    double q = h1 * (h1 + h2) / (h2 * (h2 + h3));
    c[0] = (2 + hn / h1) / 2 + t1 + t2;
    c[1] = -(hn / h1) / 2 - (1 + h1 / h2) * t1 - (1 + h1 / h2 + q) * t2;
    c[2] = t1 * h1 / h2 + (h1 / h2 + q * (1 + h2 / h3)) * t2;
    c[3] = -t2 * q * h1 / h2;
}

/* iPNDM: Euler, then Adams–Bashforth of growing order (fixed weights, or
 * with `variable` the weights of the actual step ratios); the step to σ = 0
 * returns the denoised sample. */
static int run_ipndm(const df_host_api *h, df_sampler_run *run, df_tensor *x, const double *sigmas, int n,
                     int variable)
{
    int rc = 0, steps = n_steps_of(n), max_order = (int)h->option(run, "order"), have = 0;
    df_tensor *den = NULL, *hist[MAX_ORDER] = {NULL};
    NEW_LIKE(den, x);
    for (int k = 0; k < max_order; k++) NEW_LIKE(hist[k], x);
    for (int i = 0; i < steps; i++) {
        double s = sigmas[i], sn = sigmas[i + 1];
        push(hist, max_order);
        TRY(h->denoise(run, x, s, den));
        TRY(to_d(h, hist[0], x, den, s));
        if (have < max_order) have++;
        if (sn == 0) {
            TRY(h->copy(x, den));
        } else {
            double c[MAX_ORDER];
            if (variable) ipndm_v_coeffs(sigmas, i, have, c);
            TRY(ab_step(h, x, sn - s, have, variable ? c : ab[have - 1], hist));
        }
        TRY(h->step(run, i, steps, s, sn, x, den));
    }
done:
    h->free(den);
    for (int k = 0; k < MAX_ORDER; k++) h->free(hist[k]);
    return rc;
}

static int sample_ipndm(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                        int n)
{
    (void)user;
    return run_ipndm(h, run, x, sigmas, n, 0);
}

static int sample_ipndm_v(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                          int n)
{
    (void)user;
    return run_ipndm(h, run, x, sigmas, n, 1);
}

static const df_sampler_option ipndm_options[] = {
    {"order", DF_OPT_INT, 4, 1, MAX_ORDER, NULL, "largest number of past derivatives combined"},
};

static const df_sampler_desc samplers[] = {
    {DF_SAMPLER_DESC_INIT, .name = "plms",
     .description = "PLMS (diffusers PNDMScheduler, skip_prk_steps): Heun first step, then 4th-order Adams-Bashforth",
     .sample = sample_plms},
    {DF_SAMPLER_DESC_INIT, .name = "ipndm", .description = "improved PNDM: Adams-Bashforth on the PF-ODE in sigma",
     .options = ipndm_options, .n_options = N_OPTIONS(ipndm_options), .sample = sample_ipndm},
    {DF_SAMPLER_DESC_INIT, .name = "ipndm_v", .description = "improved PNDM with variable-step weights",
     .options = ipndm_options, .n_options = N_OPTIONS(ipndm_options), .sample = sample_ipndm_v},
};

DF_SAMPLER_PLUGIN("difusa-pndm", samplers)
