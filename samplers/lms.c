/* Linear multistep (k-diffusion sample_lms): x += Σ_j c_j d_{i-j}, where c_j
 * integrates the Lagrange basis polynomial of the last `order` sigmas over
 * [σ_i, σ_i+1]. k-diffusion integrates with scipy's quad; the integrand is a
 * polynomial of degree < 4, which 4-point Gauss–Legendre integrates exactly. */
#include "common.h"

#define MAX_ORDER 4

static double lms_coeff(int order, const double *t, int i, int j)
{
    static const double gx[4] = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526};
    static const double gw[4] = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538};
    double a = t[i], b = t[i + 1], half = 0.5 * (b - a), mid = 0.5 * (a + b), s = 0;
    for (int q = 0; q < 4; q++) {
        double tau = mid + half * gx[q], prod = 1;
        for (int k = 0; k < order; k++)
            if (k != j) prod *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
        s += gw[q] * prod;
    }
    return s * half;
}

static int sample_lms(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                      int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n), order = (int)h->option(run, "order");
    df_tensor *den = NULL, *ds[MAX_ORDER] = {NULL}; /* ds[k]: the derivative of step i - k (ring) */
    NEW_LIKE(den, x);
    for (int k = 0; k < order; k++) NEW_LIKE(ds[k], x);
    for (int i = 0; i < steps; i++) {
        df_tensor *d = ds[i % order];
        TRY(h->denoise(run, x, sigmas[i], den));
        TRY(to_d(h, d, x, den, sigmas[i]));
        int cur = i + 1 < order ? i + 1 : order;
        double c[MAX_ORDER + 1];
        const df_tensor *terms[MAX_ORDER + 1];
        c[0] = 1;
        terms[0] = x;
        for (int j = 0; j < cur; j++) {
            c[j + 1] = lms_coeff(cur, sigmas, i, j);
            terms[j + 1] = ds[(i - j) % order];
        }
        TRY(h->lincomb(x, cur + 1, c, terms));
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, den));
    }
done:
    h->free(den);
    for (int k = 0; k < MAX_ORDER; k++) h->free(ds[k]);
    return rc;
}

static const df_sampler_option lms_options[] = {
    {"order", DF_OPT_INT, 4, 1, MAX_ORDER, NULL, "number of past derivatives combined"},
};

static const df_sampler_desc lms = {DF_SAMPLER_DESC_INIT,
                                    .name = "lms",
                                    .description = "linear multistep on the probability-flow ODE (k-diffusion)",
                                    .options = lms_options,
                                    .n_options = N_OPTIONS(lms_options),
                                    .sample = sample_lms};

static int init(const df_host_api *h, df_plugin_registrar *reg) { return h->register_sampler(reg, &lms); }

static const df_plugin_desc plugin = {DF_PLUGIN_DESC_INIT, .name = "difusa-lms", .version = "1", .init = init};

DF_PLUGIN_EXPORT const df_plugin_desc *difusa_plugin_entry(void) { return &plugin; }
