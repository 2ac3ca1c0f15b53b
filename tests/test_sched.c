/* Noise schedules and the model wrapper against diffusers, k-diffusion and
 * ComfyUI's formulas (tests/fixtures/sched.safetensors, written by
 * tools/gen_sampler_fixtures.py). The references compute in float32 where
 * users run them so; difusa in double: the tolerances are float32's. */
#include "../plugins/registry.h"
#include "sched/brownian.h"
#include "sched/denoiser.h"
#include "sched/schedule.h"
#include "test_sampler_gmm.h"

static df_safetensors *fx;
static df_noise_schedule *sd; /* SD 1.x: scaled_linear 0.00085 .. 0.012 */

static void setup(void)
{
    fx = fx_open("sched.safetensors");
    df_train_schedule_params p = df_train_schedule_default_params();
    cr_assert_eq(df_noise_schedule_new(&p, &sd), DF_OK, "%s", df_last_error());
}

static void teardown(void)
{
    df_noise_schedule_free(sd);
    df_safetensors_close(fx);
}

TestSuite(sched, .init = setup, .fini = teardown);

/* Elementwise relative deviation (for values spanning decades). */
static double elem_rel_dev(const double *a, const double *b, int64_t n)
{
    double md = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / (fabs(b[i]) > 1e-12 ? fabs(b[i]) : 1);
        if (!(d <= md)) md = d;
    }
    return md;
}

static double worst_sched_dev; /* reported by the summary test */

static void check_train(const char *name, df_train_schedule_params p, double tol)
{
    df_noise_schedule *s = NULL;
    cr_assert_eq(df_noise_schedule_new(&p, &s), DF_OK, "%s: %s", name, df_last_error());
    char key[128];
    snprintf(key, sizeof key, "train.%s.alphas_cumprod", name);
    int64_t n;
    const double *ref = fx_f64(fx, key, &n);
    cr_assert_eq(n, s->n);
    double e = elem_rel_dev(s->alphas_cumprod, ref, n - (p.rescale_zero_terminal_snr ? 1 : 0));
    cr_log_info("train %s: max elementwise rel dev %.3g", name, e);
    cr_expect(e <= tol, "train %s: alphas_cumprod deviate by %.3g (tol %g)", name, e, tol);
    if (p.rescale_zero_terminal_snr) cr_expect_eq(s->alphas_cumprod[n - 1], 0.0);
    df_noise_schedule_free(s);
}

Test(sched, training_schedules)
{
    df_train_schedule_params p = df_train_schedule_default_params();
    /* diffusers accumulates the product of 1000 float32 factors */
    check_train("scaled_linear", p, 2e-5);
    p.kind = DF_BETA_LINEAR, p.beta_start = 0.0001, p.beta_end = 0.02;
    check_train("linear", p, 1e-4); /* ᾱ reaches 4e-5 here: float32's relative error grows */
    p.kind = DF_BETA_SQUAREDCOS_CAP_V2;
    check_train("squaredcos_cap_v2", p, 1e-4);
    p = df_train_schedule_default_params();
    p.rescale_zero_terminal_snr = 1;
    check_train("scaled_linear_zsnr", p, 2e-4);
    /* float64 (ComfyUI's arithmetic): agrees to rounding */
    int64_t n;
    const double *ac64 = fx_f64(fx, "train.scaled_linear.alphas_cumprod64", &n);
    double e = elem_rel_dev(sd->alphas_cumprod, ac64, n);
    cr_expect(e < 1e-12, "scaled_linear in float64 deviates by %.3g", e);
    /* zero terminal SNR: diffusers' Euler sigmas, the last from ᾱ = 2^-24 */
    df_noise_schedule *z = NULL;
    cr_assert_eq(df_noise_schedule_new(&p, &z), DF_OK);
    const double *zs = fx_f64(fx, "train.scaled_linear_zsnr.sigmas", &n);
    e = elem_rel_dev(z->sigmas, zs, n);
    cr_expect(e < 2e-4, "zsnr sigmas deviate by %.3g", e);
    cr_expect(fabs(z->sigmas[n - 1] - 4096.0) < 1, "zsnr sigma_max %g", z->sigmas[n - 1]);
    df_noise_schedule_free(z);
}

Test(sched, bad_training_params)
{
    df_noise_schedule *s = (df_noise_schedule *)1;
    df_train_schedule_params p = df_train_schedule_default_params();
    p.num_timesteps = 1;
    cr_expect_eq(df_noise_schedule_new(&p, &s), DF_EINVAL);
    cr_expect_null(s);
    cr_expect(strstr(df_last_error(), "num_timesteps"), "%s", df_last_error());
    p = df_train_schedule_default_params();
    p.beta_end = 1.5;
    cr_expect_eq(df_noise_schedule_new(&p, &s), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "beta_end"), "%s", df_last_error());
    double ac[3] = {0.9, 0.95, 0.5};
    cr_expect_eq(df_noise_schedule_from_alphas_cumprod(ac, 3, &s), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "alphas_cumprod[1]"), "%s", df_last_error());
    cr_expect_eq(df_beta_kind_from_name("squaredcos_cap_v2"), DF_BETA_SQUAREDCOS_CAP_V2);
    cr_expect_eq(df_beta_kind_from_name("cosine"), -1);
}

Test(sched, sigma_timestep_conversion)
{
    int64_t n;
    const double *sig = fx_f64(fx, "k.sigma_to_t.sigma", &n), *t = fx_f64(fx, "k.sigma_to_t.t", NULL);
    for (int64_t i = 0; i < n; i++) {
        double got = df_noise_schedule_sigma_to_t(sd, sig[i]);
        cr_expect(fabs(got - t[i]) < 2e-3, "sigma_to_t(%g) = %.6f, k-diffusion %.6f", sig[i], got, t[i]);
    }
    const double *tt = fx_f64(fx, "k.t_to_sigma.t", &n), *ss = fx_f64(fx, "k.t_to_sigma.sigma", NULL);
    for (int64_t i = 0; i < n; i++) {
        double got = df_noise_schedule_t_to_sigma(sd, tt[i]);
        cr_expect(fabs(got - ss[i]) <= 2e-6 * ss[i], "t_to_sigma(%g) = %.8g, k-diffusion %.8g", tt[i], got, ss[i]);
    }
    /* round trip */
    for (double t0 = 0; t0 <= 999; t0 += 37.25) {
        double s = df_noise_schedule_t_to_sigma(sd, t0);
        cr_expect(fabs(df_noise_schedule_sigma_to_t(sd, s) - t0) < 1e-9, "round trip at t = %g", t0);
    }
}

/* Against the formulas evaluated in float64 (k-diffusion's under a float64
 * default dtype, diffusers' on float64 alphas_cumprod; ComfyUI's from float32
 * sigma tables) the differences are float32 roundings of the inputs; the
 * float32 runs users get are further off by float32's own error: 2.5e-4 in
 * k-diffusion's VP schedule (exp(x) - 1 near 0), ~1e-5 in diffusers' (ᾱ
 * as a product of 1000 float32 factors). */
#define TIGHT 1e-6

typedef struct {
    const char *fixture; /* "k.karras" */
    int kind;
    double rho;
    double tol;
} sched_case;

static void check_steps(const sched_case *c)
{
    static const int steps_list[] = {1, 2, 7, 20, 33};
    for (size_t si = 0; si < sizeof steps_list / sizeof steps_list[0]; si++) {
        int steps = steps_list[si];
        char key[128];
        snprintf(key, sizeof key, "%s.steps%d", c->fixture, steps);
        int64_t n;
        const double *ref = fx_f64(fx, key, &n);
        df_sigmas_params p = df_sigmas_default_params();
        p.kind = c->kind;
        p.steps = steps;
        p.rho = c->rho;
        if (c->kind == DF_SIGMAS_LEADING) p.steps_offset = 1;
        double *sig = NULL;
        int m = 0;
        int rc = df_sigmas_new(sd, &p, &sig, &m);
        cr_assert_eq(rc, DF_OK, "%s: %s", key, df_last_error());
        cr_expect_eq(m, n, "%s: %d sigmas, reference %lld", key, m, (long long)n);
        if (m == n) {
            double e = elem_rel_dev(sig, ref, n);
            if (e > worst_sched_dev && c->tol <= TIGHT) worst_sched_dev = e;
            cr_log_info("%s: max rel dev %.3g", key, e);
            cr_expect(e <= c->tol, "%s: max rel dev %.3g > %g", key, e, c->tol);
            for (int i = 1; i < m; i++) cr_expect(sig[i] <= sig[i - 1], "%s: sigmas[%d] increases", key, i);
        }
        df_sigmas_free(sig);
    }
}


Test(sched, step_schedules)
{
    const sched_case cases[] = {
        {"k.karras64", DF_SIGMAS_KARRAS, 7, 1e-7},
        {"k.karras_rho364", DF_SIGMAS_KARRAS, 3, 1e-7},
        {"k.exponential64", DF_SIGMAS_EXPONENTIAL, 0, 1e-7},
        {"k.polyexponential64", DF_SIGMAS_POLYEXPONENTIAL, 2, 1e-7},
        {"k.vp64", DF_SIGMAS_VP, 0, 1e-7},
        {"k.karras", DF_SIGMAS_KARRAS, 7, 2e-6},
        {"k.karras_rho3", DF_SIGMAS_KARRAS, 3, 2e-6},
        {"k.exponential", DF_SIGMAS_EXPONENTIAL, 0, 2e-6},
        {"k.polyexponential", DF_SIGMAS_POLYEXPONENTIAL, 2, 2e-6},
        {"k.vp", DF_SIGMAS_VP, 0, 3e-4},
        {"comfy.normal", DF_SIGMAS_NORMAL, 0, TIGHT},
        {"comfy.sgm_uniform", DF_SIGMAS_SGM_UNIFORM, 0, TIGHT},
        {"comfy.simple", DF_SIGMAS_SIMPLE, 0, TIGHT},
        {"comfy.ddim_uniform", DF_SIGMAS_DDIM_UNIFORM, 0, TIGHT},
        {"comfy.beta", DF_SIGMAS_BETA, 0, TIGHT},
        {"comfy.kl_optimal", DF_SIGMAS_KL_OPTIMAL, 0, TIGHT},
        {"comfy.ays_sd15", DF_SIGMAS_AYS_SD15, 0, 1e-7},
        {"comfy.ays_sdxl", DF_SIGMAS_AYS_SDXL, 0, 1e-7},
        {"comfy.linear_quadratic", DF_SIGMAS_LINEAR_QUADRATIC, 0, TIGHT},
        {"diffusers.leading64", DF_SIGMAS_LEADING, 0, TIGHT},
        {"diffusers.trailing64", DF_SIGMAS_TRAILING, 0, TIGHT},
        {"diffusers.linspace64", DF_SIGMAS_LINSPACE, 0, TIGHT},
        {"diffusers.leading", DF_SIGMAS_LEADING, 0, 2e-5},
        {"diffusers.trailing", DF_SIGMAS_TRAILING, 0, 2e-5},
        {"diffusers.linspace", DF_SIGMAS_LINSPACE, 0, 2e-5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_steps(&cases[i]);
    fprintf(stderr, "  step schedules: max elementwise rel dev from the references %.2e (float64 formulas)\n",
            worst_sched_dev);
}

Test(sched, schedule_names_and_errors)
{
    for (int k = 0; k < DF_SIGMAS_KIND_COUNT; k++)
        cr_expect_eq(df_sigmas_kind_from_name(df_sigmas_kind_name(k)), k, "%s", df_sigmas_kind_name(k));
    cr_expect_eq(df_sigmas_kind_from_name("discrete"), DF_SIGMAS_NORMAL);
    cr_expect_eq(df_sigmas_kind_from_name("ays"), DF_SIGMAS_AYS_SD15);
    cr_expect_eq(df_sigmas_kind_from_name("nope"), -1);
    double *s = NULL;
    int n = 0;
    df_sigmas_params p = df_sigmas_default_params();
    p.kind = DF_SIGMAS_NORMAL;
    cr_expect_eq(df_sigmas_new(NULL, &p, &s, &n), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "normal schedule: needs the model's training schedule"), "%s", df_last_error());
    p.kind = DF_SIGMAS_KARRAS;
    p.steps = 0;
    cr_expect_eq(df_sigmas_new(sd, &p, &s, &n), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "steps 0"), "%s", df_last_error());
    p.steps = 10;
    p.sigma_min = 5, p.sigma_max = 1;
    cr_expect_eq(df_sigmas_new(NULL, &p, &s, &n), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "sigma_min < sigma_max"), "%s", df_last_error());
    /* karras without a schedule, from an explicit range */
    p.sigma_min = 0.002, p.sigma_max = 80;
    cr_assert_eq(df_sigmas_new(NULL, &p, &s, &n), DF_OK);
    cr_expect_eq(n, 11);
    cr_expect(fabs(s[0] - 80) < 1e-12 && fabs(s[9] - 0.002) < 1e-15 && s[10] == 0);
    df_sigmas_free(s);
}

Test(sched, strength_truncates_the_schedule)
{
    df_sigmas_params p = df_sigmas_default_params();
    p.steps = 10;
    double *full = NULL, *part = NULL;
    int nf = 0, np_ = 0;
    p.steps = 20;
    cr_assert_eq(df_sigmas_new(sd, &p, &full, &nf), DF_OK);
    p.steps = 10;
    cr_assert_eq(df_sigmas_new_for_strength(sd, &p, 0.5, &part, &np_), DF_OK);
    cr_assert_eq(np_, 11);
    for (int i = 0; i < 11; i++) cr_expect_eq(part[i], full[10 + i]);
    df_sigmas_free(full);
    df_sigmas_free(part);
    cr_expect_eq(df_sigmas_new_for_strength(sd, &p, 0, &part, &np_), DF_EINVAL);
}

Test(sched, beta_quantile)
{
    /* scipy.stats.beta.ppf(q, 0.6, 0.6) at a few q, and symmetry */
    double q[] = {0.05, 0.25, 0.5, 0.9};
    for (int i = 0; i < 4; i++) {
        double x = df_betaincinv(0.6, 0.6, q[i]);
        cr_expect(fabs(df_betainc(0.6, 0.6, x) - q[i]) < 1e-12, "I(ppf(%g)) = %.15g", q[i], df_betainc(0.6, 0.6, x));
        cr_expect(fabs(df_betaincinv(0.6, 0.6, 1 - q[i]) - (1 - x)) < 1e-12);
    }
    cr_expect(fabs(df_betaincinv(0.6, 0.6, 0.5) - 0.5) < 1e-14);
    cr_expect(fabs(df_betainc(2, 3, 0.4) - 0.5248) < 1e-12); /* closed form: 1 - (1-x)^3 (1 + 3x) */
}

/* ---- model wrapper ---- */

/* The inner model of the fixture: tanh(x_in) (1 + t/1000) + 0.1 sin(t), in double. */
static int inner_model(void *user, const df_tensor *x_in, double t, df_tensor **out)
{
    (void)user;
    df_tensor *y = df_tensor_new(NULL, DF_F32, x_in->ndim, x_in->shape);
    if (!y) return DF_ENOMEM;
    const float *px = df_tensor_data(x_in);
    float *py = df_tensor_data(y);
    for (int64_t i = 0; i < df_tensor_numel(y); i++) py[i] = (float)(tanh((double)px[i]) * (1 + t / 1000) + 0.1 * sin(t));
    *out = y;
    return DF_OK;
}

Test(sched, model_wrapper_eps_and_v)
{
    int64_t ns, nac;
    const double *sig = fx_f64(fx, "wrap.sigmas", &ns);
    df_tensor *x = fx_get(fx, "wrap", "x");
    const char *preds[2] = {"eps", "v"};
    for (int pi = 0; pi < 2; pi++) {
        char key[64];
        snprintf(key, sizeof key, "wrap.%s.alphas_cumprod", preds[pi]);
        const double *ac = fx_f64(fx, key, &nac);
        df_noise_schedule *s = NULL;
        cr_assert_eq(df_noise_schedule_from_alphas_cumprod(ac, (int)nac, &s), DF_OK, "%s", df_last_error());
        df_model_wrapper w = df_model_wrapper_default();
        w.model = inner_model;
        w.prediction = pi == 0 ? DF_PRED_EPS : DF_PRED_V;
        w.schedule = s;
        df_denoiser d = df_model_wrapper_denoiser(&w);
        snprintf(key, sizeof key, "wrap.%s", preds[pi]);
        df_tensor *ref = fx_get(fx, key, "out");
        int64_t numel = df_tensor_numel(x);
        for (int i = 0; i < ns; i++) {
            df_tensor *y = NULL;
            cr_assert_eq(df_denoiser_call(&d, x, sig[i], &y), DF_OK, "%s", df_last_error());
            double e = rel_err_f32(df_tensor_data(y), (const float *)df_tensor_data(ref) + i * numel, numel);
            /* k-diffusion's wrapper runs in float32: t(σ) to ~1e-4, c_in, c_out to float32 */
            cr_expect(e < 3e-5, "%s prediction at sigma %g: max rel dev %.3g", preds[pi], sig[i], e);
            df_tensor_free(y);
        }
        df_tensor_free(ref);
        df_noise_schedule_free(s);
    }
    df_tensor_free(x);
}

/* x0 and score predictions, checked against their definitions. */
Test(sched, model_wrapper_x0_and_score)
{
    int64_t shape[2] = {2, 8};
    float data[16];
    for (int i = 0; i < 16; i++) data[i] = (float)(0.3 * i - 2);
    df_tensor *x = df_tensor_from_data(DF_F32, 2, shape, data);
    df_model_wrapper w = df_model_wrapper_default();
    w.model = inner_model;
    w.prediction = DF_PRED_SCORE; /* VE: t = sigma, x unscaled: D = x + σ² s */
    df_denoiser d = df_model_wrapper_denoiser(&w);
    df_tensor *y = NULL;
    double sigma = 2.5;
    cr_assert_eq(df_denoiser_call(&d, x, sigma, &y), DF_OK, "%s", df_last_error());
    const float *py = df_tensor_data(y);
    for (int i = 0; i < 16; i++) {
        double s = tanh(data[i]) * (1 + sigma / 1000) + 0.1 * sin(sigma);
        cr_expect(fabs(py[i] - (data[i] + sigma * sigma * s)) < 1e-5, "score at %d", i);
    }
    df_tensor_free(y);
    cr_expect_eq(df_model_wrapper_timestep(&w, 3.0), 3.0);
    /* x0 on a discrete schedule: the model's output, input scaled by 1/√(σ²+1) */
    w.prediction = DF_PRED_X0;
    w.schedule = sd;
    cr_assert_eq(df_denoiser_call(&d, x, sigma, &y), DF_OK);
    py = df_tensor_data(y);
    double t = df_noise_schedule_sigma_to_t(sd, sigma);
    for (int i = 0; i < 16; i++) {
        double v = tanh(data[i] / sqrt(sigma * sigma + 1)) * (1 + t / 1000) + 0.1 * sin(t);
        cr_expect(fabs(py[i] - v) < 1e-5, "x0 at %d", i);
    }
    df_tensor_free(y);
    /* quantized timesteps are integers */
    w.quantize = 1;
    cr_expect_eq(df_model_wrapper_timestep(&w, sigma), nearbyint(t));
    /* a score model refuses a training schedule; sigma must be positive */
    w.prediction = DF_PRED_SCORE;
    cr_expect_eq(df_denoiser_call(&d, x, sigma, &y), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "score model"), "%s", df_last_error());
    w.prediction = DF_PRED_EPS;
    cr_expect_eq(df_denoiser_call(&d, x, 0, &y), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "sigma 0"), "%s", df_last_error());
    cr_expect_eq(df_prediction_from_name("v_prediction"), DF_PRED_V);
    cr_expect_eq(df_prediction_from_name("epsilon"), DF_PRED_EPS);
    cr_expect_eq(df_prediction_from_name("flow"), -1);
    df_tensor_free(x);
}

/* ---- Brownian tree ---- */

Test(sched, brownian_tree_is_consistent_and_gaussian)
{
    const int64_t n = 20000;
    df_brownian *b = NULL;
    cr_assert_eq(df_brownian_new(42, 0, 10, n, &b), DF_OK);
    float *w1 = malloc(n * sizeof(float)), *w2 = malloc(n * sizeof(float)), *w3 = malloc(n * sizeof(float));
    /* the same point gives the same value whatever was asked in between */
    cr_assert_eq(df_brownian_value(b, 3.7, w1), DF_OK);
    df_brownian_value(b, 9.1, w2);
    df_brownian_value(b, 0.2, w2);
    df_brownian_value(b, 5.5, w2);
    cr_assert_eq(df_brownian_value(b, 3.7, w2), DF_OK);
    cr_expect_eq(memcmp(w1, w2, n * sizeof(float)), 0);
    /* increments are standard normal, and disjoint ones uncorrelated;
     * W(c) - W(a) = (W(b) - W(a)) + (W(c) - W(b)) */
    df_brownian_increment(b, 7.0, 4.0, w1);
    df_brownian_increment(b, 4.0, 1.5, w2);
    df_brownian_increment(b, 7.0, 1.5, w3);
    double m = 0, v = 0, c = 0, sum_err = 0;
    for (int64_t i = 0; i < n; i++) {
        m += w1[i];
        v += (double)w1[i] * w1[i];
        c += (double)w1[i] * w2[i];
        double lhs = w3[i] * sqrt(5.5), rhs = w1[i] * sqrt(3.0) + w2[i] * sqrt(2.5);
        sum_err = fmax(sum_err, fabs(lhs - rhs));
    }
    m /= n, v = v / n - m * m, c /= n;
    cr_expect(fabs(m) < 4 / sqrt(n), "mean %g", m);
    cr_expect(fabs(v - 1) < 4 * sqrt(2.0 / n), "variance %g", v);
    cr_expect(fabs(c) < 4 / sqrt(n), "correlation of disjoint increments %g", c);
    cr_expect(sum_err < 1e-4, "increments do not add up: %g", sum_err);
    /* another seed, other noise */
    df_brownian *b2 = NULL;
    cr_assert_eq(df_brownian_new(43, 0, 10, n, &b2), DF_OK);
    df_brownian_value(b2, 3.7, w2);
    df_brownian_value(b, 3.7, w1);
    cr_expect_neq(memcmp(w1, w2, n * sizeof(float)), 0);
    df_brownian_free(b2);
    df_brownian_free(b);
    free(w1), free(w2), free(w3);
    cr_expect_eq(df_brownian_new(1, 1, 1, 4, &b), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "t0 < t1"), "%s", df_last_error());
}
