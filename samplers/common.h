/* Helpers shared by the built-in sampler plugins (header-only: every plugin
 * is its own shared object and sees nothing but difusa_plugin.h). */
#ifndef DF_SAMPLERS_COMMON_H
#define DF_SAMPLERS_COMMON_H

#include "difusa_plugin.h"

#include <math.h>
#include <stddef.h>

/* `rc` must be declared and a `done:` label must free the temporaries. */
#define TRY(expr)                                                                                                      \
    do {                                                                                                               \
        if ((rc = (expr)) != 0) goto done;                                                                             \
    } while (0)

/* Allocates `t` like `like`, or fails the sampler with the host's message. */
#define NEW_LIKE(t, like)                                                                                              \
    do {                                                                                                               \
        if (!((t) = h->new_like(like))) {                                                                              \
            rc = DF_PLUGIN_ENOMEM;                                                                                     \
            goto done;                                                                                                 \
        }                                                                                                              \
    } while (0)

#define N_OPTIONS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* A samplers file's plugin entry: registers every descriptor of the array
 * `list` (the first failure stops the plugin's init). */
#define DF_SAMPLER_PLUGIN(plugin_name, list)                                                                    \
    static int plugin_init(const df_host_api *h, df_plugin_registrar *reg)                                      \
    {                                                                                                           \
        for (int i = 0; i < N_OPTIONS(list); i++) {                                                             \
            int rc = h->register_sampler(reg, &(list)[i]);                                                      \
            if (rc) return rc;                                                                                  \
        }                                                                                                       \
        return 0;                                                                                               \
    }                                                                                                           \
    static const df_plugin_desc plugin = {DF_PLUGIN_DESC_INIT, .name = plugin_name, .version = "1",              \
                                          .init = plugin_init};                                                 \
    DF_PLUGIN_EXPORT const df_plugin_desc *difusa_plugin_entry(void) { return &plugin; }

/* Options most samplers share. */
#define OPTION_ETA(def)                                                                                                \
    {"eta", DF_OPT_NUMBER, (def), 0, 100, NULL, "amount of noise added back per step (0: deterministic)"}
#define OPTION_S_NOISE {"s_noise", DF_OPT_NUMBER, 1, 0, 100, NULL, "scale of the noise added per step"}
#define OPTIONS_CHURN                                                                                                  \
    {"s_churn", DF_OPT_NUMBER, 0, 0, INFINITY, NULL, "Karras et al. stochasticity: noise added before each step"},     \
        {"s_tmin", DF_OPT_NUMBER, 0, 0, INFINITY, NULL, "churn only where sigma >= s_tmin"},                           \
        {"s_tmax", DF_OPT_NUMBER, INFINITY, 0, INFINITY, NULL, "churn only where sigma <= s_tmax"}, OPTION_S_NOISE

/* k-diffusion get_ancestral_step: the sigma to step down to deterministically
 * and the noise to add, so that sigma_down² + sigma_up² = sigma_to². */
static inline void ancestral_step(double sigma_from, double sigma_to, double eta, double *down, double *up)
{
    if (eta == 0) {
        *down = sigma_to;
        *up = 0;
        return;
    }
    double u = eta * sqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) /
                          (sigma_from * sigma_from));
    *up = u < sigma_to ? u : sigma_to;
    *down = sqrt(sigma_to * sigma_to - *up * *up);
}

/* d = (x − denoised) / sigma: the Karras ODE derivative. */
static inline int to_d(const df_host_api *h, df_tensor *d, const df_tensor *x, const df_tensor *denoised, double sigma)
{
    return h->lincomb(d, 2, (const double[]){1 / sigma, -1 / sigma}, (const df_tensor *const[]){x, denoised});
}

/* The number of steps of a schedule. */
static inline int n_steps_of(int n_sigmas) { return n_sigmas - 1; }

#endif
