/* The analytic denoiser of the sampler tests: the exact x0-predictor of a
 * Gaussian mixture, computed as tools/gmm_ref.py computes it (float64 from the
 * float32 input, one rounding to float32), so C and the references run on the
 * same function. Each item of the batch (first dim) is one D-dimensional
 * point; D is the product of the other dims. */
#ifndef TEST_SAMPLER_GMM_H
#define TEST_SAMPLER_GMM_H

#include "../plugins/registry.h"
#include "testutil.h"

#define GMM_MAX_K 8

typedef struct gmm {
    int k;
    int64_t d;
    double w[GMM_MAX_K], s[GMM_MAX_K];
    double *mu; /* (k, d) */
    int calls;  /* denoiser evaluations */
    int fail_at; /* > 0: the fail_at-th call fails (tests of a failing model) */
} gmm;

static inline int gmm_denoise(void *user, const df_tensor *x, double sigma, df_tensor **out)
{
    gmm *g = user;
    *out = NULL;
    g->calls++;
    if (g->fail_at > 0 && g->calls == g->fail_at) {
        return df_error(DF_EBACKEND, "test model: injected failure at call %d (sigma %g)", g->calls, sigma);
    }
    int64_t n = df_tensor_numel(x), b = x->shape[0], d = n / b;
    if (d != g->d) return df_error(DF_ESHAPE, "gmm: items of %lld values, the mixture has %lld", (long long)d, (long long)g->d);
    df_tensor *y = df_tensor_new(NULL, DF_F32, x->ndim, x->shape);
    if (!y) return DF_ENOMEM;
    const float *px = df_tensor_data(x);
    float *py = df_tensor_data(y);
    double var[GMM_MAX_K], logp[GMM_MAX_K];
    for (int k = 0; k < g->k; k++) var[k] = g->s[k] * g->s[k] + sigma * sigma;
    for (int64_t i = 0; i < b; i++) {
        const float *xi = px + i * d;
        double mx = -INFINITY;
        for (int k = 0; k < g->k; k++) {
            const double *m = g->mu + k * d;
            double d2 = 0;
            for (int64_t j = 0; j < d; j++) {
                double t = (double)xi[j] - m[j];
                d2 += t * t;
            }
            logp[k] = log(g->w[k]) - 0.5 * (double)d * log(var[k]) - 0.5 * d2 / var[k];
            if (logp[k] > mx) mx = logp[k];
        }
        double r[GMM_MAX_K], rs = 0;
        for (int k = 0; k < g->k; k++) rs += r[k] = exp(logp[k] - mx);
        for (int64_t j = 0; j < d; j++) {
            double acc = 0;
            for (int k = 0; k < g->k; k++) {
                double m = g->mu[k * d + j];
                acc += r[k] / rs * (m + g->s[k] * g->s[k] / var[k] * ((double)xi[j] - m));
            }
            py[i * d + j] = (float)acc;
        }
    }
    *out = y;
    return DF_OK;
}

/* max |a - ref| / max |ref| over n floats (NaN counts as a deviation). */
static inline double rel_err_f32(const float *a, const float *ref, int64_t n)
{
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return md / (mr > 0 ? mr : 1);
}

/* Raw F64 values of a fixture tensor (borrowed from the mapping). */
static inline const double *fx_f64(df_safetensors *st, const char *name, int64_t *n)
{
    const df_st_info *info = df_safetensors_find(st, name);
    cr_assert_not_null(info, "fixture tensor %s missing", name);
    cr_assert_eq(info->dtype, DF_F64, "fixture tensor %s is not F64", name);
    if (n) *n = (int64_t)(info->nbytes / 8);
    return df_safetensors_data(st, info);
}

/* The mixture of sampler_ref.safetensors. */
static inline void gmm_from_fixture(df_safetensors *st, gmm *g)
{
    int64_t nk, nmu;
    const double *w = fx_f64(st, "gmm.weights", &nk), *s = fx_f64(st, "gmm.stds", NULL);
    const double *mu = fx_f64(st, "gmm.means", &nmu);
    memset(g, 0, sizeof *g);
    g->k = (int)nk;
    g->d = nmu / nk;
    for (int k = 0; k < g->k; k++) g->w[k] = w[k], g->s[k] = s[k];
    g->mu = (double *)mu;
}

/* A single Gaussian N(mu_c, s_c²) per channel (dim 1) of items of shape
 * (C, H, W) as a one-component "mixture" per channel would be wrong (the
 * components share nothing): the exact denoiser of independent channels. */
typedef struct gauss {
    int c;          /* channels */
    int64_t plane;  /* values per channel */
    double mu[16], s[16];
    int calls;
    /* Return the consistency function instead (the probability-flow ODE's map
     * to sigma 0, mu + s/sqrt(s² + σ²)·(x − mu)): what a consistency model
     * (LCM) learns, where the denoiser is the posterior mean. */
    int consistency;
} gauss;

static inline int gauss_denoise(void *user, const df_tensor *x, double sigma, df_tensor **out)
{
    gauss *g = user;
    *out = NULL;
    g->calls++;
    df_tensor *y = df_tensor_new(NULL, DF_F32, x->ndim, x->shape);
    if (!y) return DF_ENOMEM;
    const float *px = df_tensor_data(x);
    float *py = df_tensor_data(y);
    int64_t n = df_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        int c = (int)((i / g->plane) % g->c);
        double s2 = g->s[c] * g->s[c];
        double k = g->consistency ? g->s[c] / sqrt(s2 + sigma * sigma) : s2 / (s2 + sigma * sigma);
        py[i] = (float)(g->mu[c] + k * ((double)px[i] - g->mu[c]));
    }
    *out = y;
    return DF_OK;
}

/* The registry with the built samplers (build/<flavour>/samplers, found next to
 * the test binary). */
static inline df_registry *load_samplers(void)
{
    df_registry *r = NULL;
    cr_assert_eq(df_registry_new(&r), DF_OK);
    int rc = df_registry_load_default(r);
    cr_assert_eq(rc, DF_OK, "loading the samplers: %s", df_last_error());
    cr_assert_gt(df_registry_count(r), 0, "no samplers found");
    return r;
}

#endif
