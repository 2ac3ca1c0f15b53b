/* The model wrapper: σ -> timestep, input scaling, and the conversion of
 * eps / v / x0 / score predictions into a denoiser's x0 estimate (k-diffusion's
 * CompVisDenoiser / CompVisVDenoiser, and D = x + σ² s for score models). */
#include "denoiser.h"

#include "../backend.h"
#include "../ops.h"

#include <math.h>
#include <string.h>

int df_denoiser_call(const df_denoiser *d, const df_tensor *x, double sigma, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "denoiser: 'out' is NULL");
    *out = NULL;
    if (!d || !d->denoise) return df_error(DF_EINVAL, "denoiser: no denoise function");
    if (!x) return df_error(DF_EINVAL, "denoiser: 'x' is NULL");
    df_tensor *y = NULL;
    df_clear_error();
    int rc = d->denoise(d->user, x, sigma, &y);
    if (rc) {
        df_tensor_free(y);
        if (!df_last_error()[0]) df_error(rc, "denoiser failed at sigma %g (%s)", sigma, df_status_name(rc));
        return rc;
    }
    if (!y) return df_error(DF_EINVAL, "denoiser returned no tensor at sigma %g", sigma);
    if (!df_tensor_same_shape(x, y) || y->dtype != DF_F32 || df_tensor_backend(y) != df_tensor_backend(x)) {
        char a[64], b[64];
        df_error(DF_ESHAPE, "denoiser returned %s %s on %s for x %s on %s", df_dtype_name(y->dtype),
                 df_tensor_shape_str(y, a, sizeof a), df_tensor_backend(y)->name, df_tensor_shape_str(x, b, sizeof b),
                 df_tensor_backend(x)->name);
        df_tensor_free(y);
        return DF_ESHAPE;
    }
    *out = y;
    return DF_OK;
}

static const char *const pred_names[DF_PRED_COUNT] = {
    [DF_PRED_EPS] = "epsilon", [DF_PRED_V] = "v_prediction", [DF_PRED_X0] = "sample", [DF_PRED_SCORE] = "score"};

int df_prediction_from_name(const char *name)
{
    if (!name) return -1;
    if (!strcmp(name, "eps")) return DF_PRED_EPS;
    if (!strcmp(name, "v")) return DF_PRED_V;
    if (!strcmp(name, "x0")) return DF_PRED_X0;
    for (int i = 0; i < DF_PRED_COUNT; i++)
        if (!strcmp(name, pred_names[i])) return i;
    return -1;
}

const char *df_prediction_name(int pred) { return (unsigned)pred < DF_PRED_COUNT ? pred_names[pred] : "?"; }

df_model_wrapper df_model_wrapper_default(void)
{
    df_model_wrapper w;
    memset(&w, 0, sizeof w);
    w.prediction = DF_PRED_EPS;
    return w;
}

df_denoiser df_model_wrapper_denoiser(const df_model_wrapper *w)
{
    return (df_denoiser){df_model_wrapper_denoise, (void *)w, w ? w->schedule : NULL, NULL};
}

double df_model_wrapper_timestep(const df_model_wrapper *w, double sigma)
{
    if (!w->schedule) return sigma;
    double t = df_noise_schedule_sigma_to_t(w->schedule, sigma);
    return w->quantize ? nearbyint(t) : t;
}

/* out = a·x + b·y, all f32 on one backend (ops allocate). */
static int axpby_new(const df_tensor *x, double a, const df_tensor *y, double b, df_tensor **out)
{
    df_tensor *ax = NULL, *by = NULL;
    int rc = df_scale(x, (float)a, 0, &ax);
    if (!rc) rc = df_scale(y, (float)b, 0, &by);
    if (!rc) rc = df_add(ax, by, out);
    df_tensor_free(ax);
    df_tensor_free(by);
    return rc;
}

int df_model_wrapper_denoise(void *wrapper, const df_tensor *x, double sigma, df_tensor **out)
{
    const df_model_wrapper *w = wrapper;
    *out = NULL;
    if (!w || !w->model) return df_error(DF_EINVAL, "model wrapper: no model function");
    if ((unsigned)w->prediction >= DF_PRED_COUNT)
        return df_error(DF_EINVAL, "model wrapper: unknown prediction type %d", w->prediction);
    if (!(sigma > 0) || !isfinite(sigma))
        return df_error(DF_EINVAL, "model wrapper: sigma %g must be positive and finite", sigma);
    if (w->prediction == DF_PRED_SCORE && w->schedule)
        return df_error(DF_EINVAL, "model wrapper: a score model is a VE model and takes no training schedule");
    if (w->consistency && !w->schedule)
        return df_error(DF_EINVAL, "model wrapper: the consistency boundary condition needs a training schedule");

    double t = df_model_wrapper_timestep(w, sigma);
    double c_in = w->schedule ? 1 / sqrt(sigma * sigma + 1) : 1;
    df_tensor *x_in = NULL, *y = NULL;
    int rc = DF_OK;
    if (c_in != 1) rc = df_scale(x, (float)c_in, 0, &x_in);
    if (!rc) rc = w->model(w->user, x_in ? x_in : x, t, &y);
    df_tensor_free(x_in);
    if (rc) {
        df_tensor_free(y);
        return rc;
    }
    if (!y || !df_tensor_same_shape(x, y) || y->dtype != DF_F32 || df_tensor_backend(y) != df_tensor_backend(x)) {
        char a[64], b[64];
        if (y) df_tensor_shape_str(y, a, sizeof a);
        else strcpy(a, "nothing");
        df_error(DF_ESHAPE, "model wrapper: the model returned %s for input %s at t = %g", a,
                 df_tensor_shape_str(x, b, sizeof b), t);
        df_tensor_free(y);
        return DF_ESHAPE;
    }
    double s2 = sigma * sigma;
    switch (w->prediction) {
    case DF_PRED_EPS: rc = axpby_new(y, -sigma, x, 1, out); break;
    case DF_PRED_V:
        /* k-diffusion CompVisVDenoiser (sigma_data 1): c_skip = 1/(σ²+1), c_out = −σ/√(σ²+1) */
        rc = axpby_new(y, -sigma / sqrt(s2 + 1), x, 1 / (s2 + 1), out);
        break;
    case DF_PRED_X0: *out = y; y = NULL; break;
    default: rc = axpby_new(y, s2, x, 1, out); break;
    }
    df_tensor_free(y);
    if (!rc && w->consistency) {
        /* diffusers: c_skip·x_t + c_out·x0 with x_t = x/√(σ²+1) the VP sample */
        double ts = (w->timestep_scaling > 0 ? w->timestep_scaling : 10) * t;
        double sd = w->sigma_data > 0 ? w->sigma_data : 0.5;
        double c_skip = sd * sd / (ts * ts + sd * sd), c_out = ts / sqrt(ts * ts + sd * sd);
        df_tensor *d = *out;
        *out = NULL;
        rc = axpby_new(d, c_out, x, c_skip * c_in, out);
        df_tensor_free(d);
    }
    return rc;
}
