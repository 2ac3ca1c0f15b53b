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

/* The training timestep of sigma (0 for sigma 0), rounded when it is one. */
static double timestep_of(const df_host_api *h, df_sampler_run *run, double sigma)
{
    if (!(sigma > 0)) return 0;
    double t = h->sigma_to_t(run, sigma);
    if (fabs(t - nearbyint(t)) < 1e-3) t = nearbyint(t);
    return t;
}

/* PNDM's Runge–Kutta step (diffusers' step_prk) from σ_a to σ_b, ε1 given:
 * RK4 in ε with the midpoint at half the timestep interval. diffusers
 * rounds the half down and takes the first half step to t_a − half but
 * evaluates the model at t_b + half (different for odd intervals): a VP
 * model sees that sample at the other timestep, x·√((1 + σ_m²)/(1 + σ₁²)) in
 * sigma space. */
static int prk_step(const df_host_api *h, df_sampler_run *run, df_tensor *x, double sa, double sb,
                    const df_tensor *eps1, df_tensor *den, df_tensor *xt, df_tensor *e, df_tensor *acc)
{
    int rc = 0;
    double ta = timestep_of(h, run, sa), tb = timestep_of(h, run, sb);
    if (isnan(ta) || isnan(tb)) return DF_PLUGIN_EINVAL; /* the host's message: no schedule */
    double half = floor((ta - tb) / 2);
    double s1 = h->t_to_sigma(run, ta - half), sm = h->t_to_sigma(run, tb + half);
    /* acc = ε1/6 + ε2/3 + ε3/3 + ε4/6 */
    TRY(h->lincomb(acc, 1, (const double[]){1.0 / 6}, (const df_tensor *const[]){eps1}));
    TRY(h->lincomb(xt, 2, (const double[]){1, s1 - sa}, (const df_tensor *const[]){x, eps1}));
    if (s1 != sm) TRY(h->scale(xt, sqrt((1 + sm * sm) / (1 + s1 * s1))));
    TRY(h->denoise(run, xt, sm, den));
    TRY(to_d(h, e, xt, den, sm));
    TRY(h->axpy(acc, 1.0 / 3, e));
    TRY(h->lincomb(xt, 2, (const double[]){1, sm - sa}, (const df_tensor *const[]){x, e}));
    TRY(h->denoise(run, xt, sm, den));
    TRY(to_d(h, e, xt, den, sm));
    TRY(h->axpy(acc, 1.0 / 3, e));
    TRY(h->lincomb(xt, 2, (const double[]){1, sb - sa}, (const df_tensor *const[]){x, e}));
    TRY(h->denoise(run, xt, sb, den));
    TRY(to_d(h, e, xt, den, sb));
    TRY(h->axpy(acc, 1.0 / 6, e));
    TRY(h->axpy(x, sb - sa, acc));
done:
    return rc;
}

/* PLMS: the first step is Heun's in ε (two evaluations; the second is not
 * kept), then Adams–Bashforth of growing order up to 4 on the ε of the
 * previous steps. diffusers evaluates the model steps + 1 times. With the
 * `prk` option (diffusers' skip_prk_steps=False, PNDM proper) the first
 * three steps are Runge–Kutta steps instead (4 evaluations each; their
 * first ε go to the history), so Adams–Bashforth starts at order 4. */
static int sample_plms(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                       int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n), have = 0, prk = h->option(run, "prk") != 0;
    df_tensor *den = NULL, *x2 = NULL, *e = NULL, *acc = NULL, *hist[MAX_ORDER] = {NULL};
    if (prk && (!DF_HOST_HAS(h, sigma_to_t) || !DF_HOST_HAS(h, t_to_sigma)))
        return h->error(run, DF_PLUGIN_EINVAL, "prk: the host (ABI %u.%u) cannot map sigmas to timesteps (needs 1.1)",
                        h->abi_version >> 16, h->abi_version & 0xffff);
    NEW_LIKE(den, x);
    NEW_LIKE(x2, x);
    for (int k = 0; k < MAX_ORDER; k++) NEW_LIKE(hist[k], x);
    if (prk) {
        NEW_LIKE(e, x);
        NEW_LIKE(acc, x);
    }
    for (int i = 0; i < steps; i++) {
        double s = sigmas[i], sn = sigmas[i + 1];
        push(hist, MAX_ORDER);
        TRY(h->denoise(run, x, s, den));
        TRY(to_d(h, hist[0], x, den, s));
        if (have < MAX_ORDER) have++;
        if (prk && i < MAX_ORDER - 1 && sn > 0) {
            TRY(prk_step(h, run, x, s, sn, hist[0], den, x2, e, acc));
        } else if (i == 0 && steps > 1 && !prk) {
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
    h->free(e);
    h->free(acc);
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

static const df_sampler_option plms_options[] = {
    {"prk", DF_OPT_BOOL, 0, 0, 1, NULL,
     "PNDM's Runge-Kutta warm-up (diffusers' skip_prk_steps=False): 3 RK4 steps; needs the model's schedule"},
};

static const df_sampler_desc samplers[] = {
    {DF_SAMPLER_DESC_INIT, .name = "plms",
     .description = "PLMS / PNDM (diffusers PNDMScheduler): a Heun first step (prk=1: three RK4 steps), then "
                    "4th-order Adams-Bashforth",
     .options = plms_options, .n_options = N_OPTIONS(plms_options), .sample = sample_plms},
    {DF_SAMPLER_DESC_INIT, .name = "ipndm", .description = "improved PNDM: Adams-Bashforth on the PF-ODE in sigma",
     .options = ipndm_options, .n_options = N_OPTIONS(ipndm_options), .sample = sample_ipndm},
    {DF_SAMPLER_DESC_INIT, .name = "ipndm_v", .description = "improved PNDM with variable-step weights",
     .options = ipndm_options, .n_options = N_OPTIONS(ipndm_options), .sample = sample_ipndm_v},
};

DF_SAMPLER_PLUGIN("difusa-pndm", samplers)
