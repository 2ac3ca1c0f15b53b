/* An out-of-tree sampler plugin: the explicit midpoint method on the
 * probability-flow ODE dx/dσ = (x − D(x, σ))/σ, midpoint taken in log σ.
 * It needs nothing from difusa but the installed plugin header:
 *
 *   cc -std=c11 -O2 -fPIC -shared $(pkg-config --cflags difusa) \
 *      -o example_midpoint.so example_midpoint.c -lm
 *   DIFUSA_PLUGIN_PATH=$PWD difusa --list-samplers
 *
 * (see Makefile next to this file). */
#include <difusa/difusa_plugin.h>

#include <math.h>

static int sample(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas, int n)
{
    (void)user;
    double s_mid = h->option(run, "midpoint");
    df_tensor *den = h->new_like(x), *d = h->new_like(x), *xm = h->new_like(x);
    int rc = (!den || !d || !xm) ? DF_PLUGIN_ENOMEM : 0;
    for (int i = 0; i < n - 1 && !rc; i++) {
        double s = sigmas[i], sn = sigmas[i + 1];
        rc = h->denoise(run, x, s, den);
        /* d = (x − D)/σ */
        if (!rc) rc = h->lincomb(d, 2, (const double[]){1 / s, -1 / s}, (const df_tensor *const[]){x, den});
        if (!rc && sn == 0) {
            rc = h->copy(x, den); /* the last step: x = D */
        } else if (!rc) {
            double sm = exp((1 - s_mid) * log(s) + s_mid * log(sn));
            rc = h->copy(xm, x);
            if (!rc) rc = h->axpy(xm, sm - s, d);
            if (!rc) rc = h->denoise(run, xm, sm, d);
            if (!rc) rc = h->lincomb(d, 2, (const double[]){1 / sm, -1 / sm}, (const df_tensor *const[]){xm, d});
            if (!rc) rc = h->axpy(x, sn - s, d);
        }
        if (!rc) rc = h->step(run, i, n - 1, s, sn, x, den);
    }
    h->free(den);
    h->free(d);
    h->free(xm);
    return rc;
}

static const df_sampler_option options[] = {
    {"midpoint", DF_OPT_NUMBER, 0.5, 0.01, 0.99, NULL, "where the midpoint lies between sigma and the next, in log sigma"},
};

static const df_sampler_desc midpoint = {
    DF_SAMPLER_DESC_INIT,
    .name = "example_midpoint",
    .description = "explicit midpoint steps in log sigma (an example plugin)",
    .options = options,
    .n_options = 1,
    .sample = sample,
};

static int init(const df_host_api *h, df_plugin_registrar *reg)
{
    if (h->abi_version >> 16 != DF_PLUGIN_ABI_MAJOR) return -1;
    return h->register_sampler(reg, &midpoint);
}

static const df_plugin_desc plugin = {DF_PLUGIN_DESC_INIT, .name = "example-midpoint", .version = "1.0", .init = init};

DF_PLUGIN_EXPORT const df_plugin_desc *difusa_plugin_entry(void) { return &plugin; }
