/* The plugin loader and the sampler runner: a good plugin, the failure modes
 * of tests/fixtures/sampler_plugins/test_plugin.c (each built as its own .so
 * into build/<flavour>/tests/plugins/), a sampler whose model fails mid-run,
 * options, cancellation, the default search path, and the example
 * out-of-tree plugin of examples/ built against the plugin header alone. */
#include "test_sampler_gmm.h"

#include <limits.h>
#include <unistd.h>

/* build/<flavour>/tests: where this binary is. */
static void test_dir(char *buf, size_t n)
{
    ssize_t l = readlink("/proc/self/exe", buf, n - 1);
    cr_assert_gt(l, 0);
    buf[l] = '\0';
    *strrchr(buf, '/') = '\0';
}

static void plugin_path(char *buf, size_t n, const char *name)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir);
    cr_assert_lt(snprintf(buf, n, "%s/plugins/%s.so", dir, name), (int)n);
}

static df_registry *empty_registry(void)
{
    df_registry *r = NULL;
    cr_assert_eq(df_registry_new(&r), DF_OK);
    return r;
}

/* Loads plugin `name`, expecting failure with a message containing each of
 * the NULL-terminated fragments (and the file's path); nothing registered. */
static void expect_refused(const char *name, int code, const char *const *fragments)
{
    df_registry *r = empty_registry();
    char path[PATH_MAX];
    plugin_path(path, sizeof path, name);
    int rc = df_registry_load(r, path);
    cr_expect_eq(rc, code, "%s: status %d (%s)", name, rc, df_last_error());
    const char *msg = df_last_error();
    cr_expect(strstr(msg, path), "%s: the message does not name the file: %s", name, msg);
    for (const char *const *f = fragments; *f; f++) cr_expect(strstr(msg, *f), "%s: '%s' not in: %s", name, *f, msg);
    cr_expect_eq(df_registry_count(r), 0, "%s: %d samplers registered", name, df_registry_count(r));
    cr_expect_eq(df_registry_failure_count(r), 1);
    cr_expect(strstr(df_registry_failure(r, 0), path));
    df_registry_free(r);
}

Test(plugin, good_plugin_loads_and_runs)
{
    df_registry *r = empty_registry();
    char path[PATH_MAX];
    plugin_path(path, sizeof path, "good");
    cr_assert_eq(df_registry_load(r, path), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_registry_count(r), 2);
    const df_sampler_info *s = df_registry_find(r, "test_scale");
    cr_assert_not_null(s);
    cr_expect_str_eq(s->plugin, "test-plugin");
    cr_expect_str_eq(s->path, path);
    cr_expect_eq(s->n_options, 3);
    char buf[1024];
    df_sampler_describe(s, buf, sizeof buf);
    cr_expect(strstr(buf, "gain = 1  (number in [-10, 10]) multiplies the result"), "%s", buf);
    cr_expect(strstr(buf, "mode = b  (choice: a|b|c)"), "%s", buf);
    cr_expect(strstr(buf, "flag = 0  (bool)"), "%s", buf);
    /* the same file again is not loaded twice */
    cr_expect_eq(df_registry_load(r, path), DF_OK);
    cr_expect_eq(df_registry_count(r), 2);

    /* x = D(x, sigma_0) * gain, with D the identity-ish Gaussian denoiser */
    gauss g = {.c = 1, .plane = 8, .mu = {1.0}, .s = {1.0}};
    df_denoiser den = {.denoise = gauss_denoise, .user = &g};
    float data[8] = {3, 3, 3, 3, -1, -1, -1, -1};
    df_tensor *x = df_tensor_from_data(DF_F32, 2, (int64_t[]){1, 8}, data);
    double sig[2] = {1, 0};
    df_sample_params p = df_sample_default_params();
    p.denoiser = &den;
    p.sigmas = sig;
    p.n_sigmas = 2;
    p.options = "gain=2, mode=c flag=true";
    cr_assert_eq(df_sample(r, "test_scale", &p, x), DF_OK, "%s", df_last_error());
    const float *px = df_tensor_data(x);
    cr_expect_float_eq(px[0], 2 * (1 + 0.5f * 2), 1e-6); /* D(3) = 1 + (3 - 1)/2 = 2, times 2 */
    cr_expect_float_eq(px[7], 0, 1e-6);

    /* option errors name the sampler and the option */
    p.options = "gain=2 speed=3";
    cr_expect_eq(df_sample(r, "test_scale", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "sampler test_scale has no option 'speed' (its options: gain, mode, flag)"), "%s",
              df_last_error());
    p.options = "gain=20";
    cr_expect_eq(df_sample(r, "test_scale", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "option gain = 20 is outside [-10, 10]"), "%s", df_last_error());
    p.options = "mode=d";
    cr_expect_eq(df_sample(r, "test_scale", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "option mode is one of a|b|c"), "%s", df_last_error());
    p.options = "gain";
    cr_expect_eq(df_sample(r, "test_scale", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "needs a value"), "%s", df_last_error());
    p.options = "gain=abc";
    cr_expect_eq(df_sample(r, "test_scale", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "needs a number"), "%s", df_last_error());
    cr_expect_eq(df_sample(r, "nope", &p, x), DF_ENOTFOUND);
    cr_expect(strstr(df_last_error(), "no sampler named 'nope'"), "%s", df_last_error());
    df_tensor_free(x);
    df_registry_free(r);
}

typedef struct logged {
    int n, level;
    char msg[256];
} logged;

static void core_log(df_log_level level, const char *msg, void *ud)
{
    logged *l = ud;
    l->n++;
    l->level = (int)level;
    snprintf(l->msg, sizeof l->msg, "%s", msg);
}

static void run_log(void *user, int level, const char *msg) { core_log((df_log_level)level, msg, user); }

/* host->log goes to the run's log_fn, else to the library's log (df_log). */
Test(plugin, sampler_log_goes_to_core_log)
{
    df_registry *r = empty_registry();
    char path[PATH_MAX];
    plugin_path(path, sizeof path, "good");
    cr_assert_eq(df_registry_load(r, path), DF_OK, "%s", df_last_error());
    gauss g = {.c = 1, .plane = 8, .mu = {1.0}, .s = {1.0}};
    df_denoiser den = {.denoise = gauss_denoise, .user = &g};
    df_tensor *x = df_tensor_zeros(NULL, DF_F32, 2, (int64_t[]){1, 8});
    double sig[2] = {1, 0};
    df_sample_params p = df_sample_default_params();
    p.denoiser = &den;
    p.sigmas = sig;
    p.n_sigmas = 2;
    p.options = "gain=2";
    logged core = {0}, own = {0};
    df_log_set_handler(core_log, &core);
    df_log_set_level(DF_LOG_INFO);
    cr_expect_eq(df_sample(r, "test_scale", &p, x), DF_OK, "%s", df_last_error());
    cr_expect_eq(core.n, 1);
    cr_expect_eq(core.level, DF_LOG_INFO);
    cr_expect_str_eq(core.msg, "sampler test_scale: gain 2");
    /* below the library's level: dropped */
    df_log_set_level(DF_LOG_WARN);
    cr_expect_eq(df_sample(r, "test_scale", &p, x), DF_OK, "%s", df_last_error());
    cr_expect_eq(core.n, 1);
    /* the run's own handler takes precedence, unprefixed */
    p.log_fn = run_log;
    p.log_user = &own;
    cr_expect_eq(df_sample(r, "test_scale", &p, x), DF_OK, "%s", df_last_error());
    cr_expect_eq(core.n, 1);
    cr_expect_eq(own.n, 1);
    cr_expect_str_eq(own.msg, "gain 2");
    df_log_set_handler(NULL, NULL);
    df_tensor_free(x);
    df_registry_free(r);
}

Test(plugin, wrong_abi_is_refused_naming_both_versions)
{
    const char *const f[] = {"plugin ABI version 99.0", "this host speaks 1.", NULL};
    expect_refused("bad_abi", DF_EFORMAT, f);
}

Test(plugin, missing_entry_symbol)
{
    const char *const f[] = {"not a difusa plugin: no symbol difusa_plugin_entry", NULL};
    expect_refused("no_entry", DF_EFORMAT, f);
}

Test(plugin, descriptor_too_small)
{
    const char *const f[] = {"struct_size 8 is smaller than", NULL};
    expect_refused("small_desc", DF_EFORMAT, f);
}

Test(plugin, init_failure_drops_what_it_registered)
{
    const char *const f[] = {"plugin test-plugin: init failed (status -1)", NULL};
    expect_refused("init_fail", DF_EINVAL, f);
}

Test(plugin, malformed_sampler_descriptor)
{
    const char *const f[] = {"sampler test_bad: option eta has a default outside its range", NULL};
    expect_refused("bad_sampler", DF_EINVAL, f);
}

Test(plugin, duplicate_name_keeps_the_first_and_drops_the_plugin)
{
    df_registry *r = load_samplers();
    int before = df_registry_count(r);
    const df_sampler_info *e = df_registry_find(r, "euler");
    cr_assert_not_null(e);
    char path[PATH_MAX];
    plugin_path(path, sizeof path, "dup_name");
    cr_expect_eq(df_registry_load(r, path), DF_EINVAL);
    const char *msg = df_last_error();
    cr_expect(strstr(msg, path) && strstr(msg, "sampler name euler") && strstr(msg, "already registered") &&
                  strstr(msg, "plugin difusa-euler"),
              "%s", msg);
    cr_expect_eq(df_registry_count(r), before);
    cr_expect_null(df_registry_find(r, "test_dup_first"), "the refused plugin's other sampler stayed");
    cr_expect_str_eq(df_registry_find(r, "euler")->plugin, "difusa-euler");
    df_registry_free(r);
}

Test(plugin, folder_loads_the_good_and_names_the_bad)
{
    df_registry *r = empty_registry();
    char dir[PATH_MAX], pdir[PATH_MAX];
    test_dir(dir, sizeof dir);
    cr_assert_lt(snprintf(pdir, sizeof pdir, "%s/plugins", dir), (int)sizeof pdir);
    int rc = df_registry_load(r, pdir);
    cr_expect_neq(rc, DF_OK);
    const char *msg = df_last_error();
    /* dup_name loads here: this registry has no "euler" yet */
    cr_expect(strstr(msg, "5 of 7 plugins"), "%s", msg);
    const char *bad[] = {"bad_abi.so", "bad_sampler.so", "init_fail.so", "no_entry.so", "small_desc.so"};
    for (int i = 0; i < 5; i++) cr_expect(strstr(msg, bad[i]), "%s not named in: %s", bad[i], msg);
    cr_expect_eq(df_registry_failure_count(r), 5);
    cr_expect_not_null(df_registry_find(r, "test_scale"));
    cr_expect_not_null(df_registry_find(r, "test_dup_first"));
    cr_expect_eq(df_registry_count(r), 4);
    df_registry_free(r);
}

Test(plugin, missing_path)
{
    df_registry *r = empty_registry();
    cr_expect_eq(df_registry_load(r, "/nonexistent/x.so"), DF_EIO);
    cr_expect(strstr(df_last_error(), "/nonexistent/x.so: no such file or folder"), "%s", df_last_error());
    cr_expect_eq(df_registry_load(r, "tests/fixtures/sched.safetensors"), DF_EIO); /* not a shared object */
    cr_expect(strstr(df_last_error(), "sched.safetensors"), "%s", df_last_error());
    df_registry_free(r);
}

/* The mixture as a denoiser with everything a sampler may ask for: SD's
 * training schedule (tcd, plms prk=1) and an unconditional estimate (the
 * CFG++ samplers; here the last output itself, guidance of scale 1). */
typedef struct full_den {
    gmm *g;
    df_tensor *last;
} full_den;

static int full_denoise(void *user, const df_tensor *x, double sigma, df_tensor **out)
{
    full_den *f = user;
    int rc = gmm_denoise(f->g, x, sigma, out);
    df_tensor_free(f->last);
    f->last = rc ? NULL : df_tensor_ref(*out);
    return rc;
}

static int full_uncond(void *user, df_tensor **out)
{
    full_den *f = user;
    *out = f->last ? df_tensor_ref(f->last) : NULL;
    return *out ? DF_OK : df_error(DF_EINVAL, "test denoiser: not called yet");
}

/* A denoiser that fails on its third call stops every sampler cleanly: the
 * model's message comes back, prefixed with the sampler's name. */
Test(plugin, model_failure_mid_run)
{
    df_registry *r = load_samplers();
    char path[PATH_MAX];
    plugin_path(path, sizeof path, "good");
    cr_assert_eq(df_registry_load(r, path), DF_OK, "%s", df_last_error());
    gmm g;
    df_safetensors *fx = fx_open("sampler_ref.safetensors");
    gmm_from_fixture(fx, &g);
    df_train_schedule_params tp = df_train_schedule_default_params();
    df_noise_schedule *sd = NULL;
    cr_assert_eq(df_noise_schedule_new(&tp, &sd), DF_OK);
    full_den fd = {.g = &g};
    df_denoiser den = {.denoise = full_denoise, .user = &fd, .schedule = sd, .uncond = full_uncond};
    double sig[6] = {10, 5, 2, 1, 0.5, 0};
    df_rng *rng = df_rng_new(DF_RNG_CPU, 1);
    for (int i = 0; i < df_registry_count(r); i++) {
        const df_sampler_info *s = df_registry_get(r, i);
        if (!strcmp(s->name, "test_scale")) continue; /* calls the model once */
        df_tensor *x = df_tensor_zeros(NULL, DF_F32, 2, (int64_t[]){2, g.d});
        df_sample_params p = df_sample_default_params();
        p.denoiser = &den;
        p.sigmas = sig;
        p.n_sigmas = 6;
        p.rng = rng;
        g.calls = 0;
        g.fail_at = 3;
        int rc = df_sample(r, s->name, &p, x);
        cr_expect_eq(rc, DF_EBACKEND, "%s: status %d (%s)", s->name, rc, df_last_error());
        char want[64];
        snprintf(want, sizeof want, "sampler %s: ", s->name);
        cr_expect(strstr(df_last_error(), want) && strstr(df_last_error(), "injected failure at call 3"), "%s: %s",
                  s->name, df_last_error());
        cr_expect_eq(g.calls, 3, "%s: the model was called again after failing", s->name);
        df_tensor_free(x);
    }
    df_tensor_free(fd.last);
    df_noise_schedule_free(sd);
    df_rng_free(rng);
    df_safetensors_close(fx);
    df_registry_free(r);
}

static int cancel_at_2(void *user, int i, int n, double s, double sn, df_tensor *x, const df_tensor *den)
{
    (void)n, (void)s, (void)sn, (void)x, (void)den;
    int *count = user;
    ++*count;
    return i == 2 ? df_error(DF_EINVAL, "cancelled by the user") : DF_OK;
}

Test(plugin, step_hook_cancels)
{
    df_registry *r = load_samplers();
    gauss g = {.c = 1, .plane = 4, .mu = {0}, .s = {1}};
    df_denoiser den = {.denoise = gauss_denoise, .user = &g};
    double sig[6] = {10, 5, 2, 1, 0.5, 0};
    df_tensor *x = df_tensor_zeros(NULL, DF_F32, 2, (int64_t[]){1, 4});
    int count = 0;
    df_sample_params p = df_sample_default_params();
    p.denoiser = &den;
    p.sigmas = sig;
    p.n_sigmas = 6;
    p.on_step = cancel_at_2;
    p.step_user = &count;
    cr_expect_eq(df_sample(r, "dpmpp_2m", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "sampler dpmpp_2m: cancelled by the user"), "%s", df_last_error());
    cr_expect_eq(count, 3);
    cr_expect_eq(g.calls, 3);
    df_tensor_free(x);
    df_registry_free(r);
}

Test(plugin, bad_run_parameters)
{
    df_registry *r = load_samplers();
    gauss g = {.c = 1, .plane = 4, .mu = {0}, .s = {1}};
    df_denoiser den = {.denoise = gauss_denoise, .user = &g};
    double up[3] = {1, 5, 0}, one[1] = {1};
    df_tensor *x = df_tensor_zeros(NULL, DF_F32, 2, (int64_t[]){1, 4});
    df_sample_params p = df_sample_default_params();
    p.denoiser = &den;
    p.sigmas = up;
    p.n_sigmas = 3;
    cr_expect_eq(df_sample(r, "euler", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "sampler euler: sigmas must not increase (sigmas[1] = 5 > sigmas[0] = 1)"), "%s",
              df_last_error());
    p.sigmas = one;
    p.n_sigmas = 1;
    cr_expect_eq(df_sample(r, "euler", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "need at least 2 sigmas"), "%s", df_last_error());
    /* a stochastic sampler without a generator says so */
    double sig[3] = {2, 1, 0};
    p.sigmas = sig;
    p.n_sigmas = 3;
    cr_expect_eq(df_sample(r, "euler_ancestral", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "sampler euler_ancestral: randn: the run has no generator"), "%s",
              df_last_error());
    /* a mask without init */
    df_tensor *m = df_tensor_zeros(NULL, DF_F32, 2, (int64_t[]){1, 4});
    p.mask = m;
    cr_expect_eq(df_sample(r, "euler", &p, x), DF_EINVAL);
    cr_expect(strstr(df_last_error(), "mask and init go together"), "%s", df_last_error());
    df_tensor_free(m);
    df_tensor_free(x);
    df_registry_free(r);
}

/* The example plugin in examples/, compiled with -I pointing at a copy of
 * the plugin header alone, loads and samples. */
Test(plugin, example_out_of_tree_plugin)
{
    df_registry *r = empty_registry();
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof dir);
    cr_assert_lt(snprintf(path, sizeof path, "%s/examples/example_midpoint.so", dir), (int)sizeof path);
    cr_assert_eq(df_registry_load(r, path), DF_OK, "%s", df_last_error());
    gauss g = {.c = 1, .plane = 64, .mu = {0.5}, .s = {0.8}};
    df_denoiser den = {.denoise = gauss_denoise, .user = &g};
    double *sig = NULL;
    int n = 0;
    df_sigmas_params sp = df_sigmas_default_params();
    sp.steps = 30;
    sp.sigma_min = 0.01, sp.sigma_max = 20;
    cr_assert_eq(df_sigmas_new(NULL, &sp, &sig, &n), DF_OK);
    /* starts exactly on the noised data distribution: the ODE maps it onto N(0.5, 0.8²) */
    df_tensor *x = df_tensor_new(NULL, DF_F32, 2, (int64_t[]){1, 64});
    df_rng *rng = df_rng_new(DF_RNG_CPU, 7);
    df_rng_randn_tensor(rng, x);
    float *px = df_tensor_data(x);
    double sd = sqrt(0.64 + 400);
    for (int i = 0; i < 64; i++) px[i] = (float)(0.5 + sd * px[i]);
    float start[64];
    memcpy(start, px, sizeof start);
    df_sample_params p = df_sample_default_params();
    p.denoiser = &den;
    p.sigmas = sig;
    p.n_sigmas = n;
    cr_assert_eq(df_sample(r, "example_midpoint", &p, x), DF_OK, "%s", df_last_error());
    /* the exact flow: x(0) = μ + (x_T − μ) s / √(s² + σ_T²) */
    for (int i = 0; i < 64; i++) {
        double want = 0.5 + (start[i] - 0.5) * 0.8 / sd;
        cr_expect(fabs(px[i] - want) < 2e-2, "value %d: %g, the exact flow gives %g", i, px[i], want);
    }
    df_rng_free(rng);
    df_sigmas_free(sig);
    df_tensor_free(x);
    df_registry_free(r);
}

Test(plugin, default_dir_and_plugin_path)
{
    char dir[PATH_MAX];
    cr_assert_eq(df_registry_default_dir(dir, sizeof dir), DF_OK, "%s", df_last_error());
    cr_expect(strstr(dir, "/samplers"), "%s", dir);
    /* $DIFUSA_PLUGIN_PATH adds folders after the default one */
    char tdir[PATH_MAX], edir[PATH_MAX];
    test_dir(tdir, sizeof tdir);
    cr_assert_lt(snprintf(edir, sizeof edir, "/nonexistent-folder:%s/examples", tdir), (int)sizeof edir);
    setenv("DIFUSA_PLUGIN_PATH", edir, 1);
    df_registry *r = empty_registry();
    int rc = df_registry_load_default(r);
    unsetenv("DIFUSA_PLUGIN_PATH");
    cr_expect_eq(rc, DF_EIO, "%s", df_last_error()); /* the missing folder is reported ... */
    cr_expect(strstr(df_last_error(), "/nonexistent-folder"), "%s", df_last_error());
    cr_expect_not_null(df_registry_find(r, "example_midpoint")); /* ... and the rest loads */
    cr_expect_not_null(df_registry_find(r, "euler"));
    cr_expect_not_null(df_registry_find(r, "dpmpp_2m"));
    df_registry_free(r);
}

/* Every built-in sampler is listed with a description, and its options
 * describe themselves (what --list-samplers prints). */
Test(plugin, builtin_samplers_listed)
{
    df_registry *r = load_samplers();
    const char *expected[] = {"euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast",
                              "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde",
                              "dpmpp_3m_sde", "ddim", "ddpm"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const df_sampler_info *s = df_registry_find(r, expected[i]);
        cr_expect_not_null(s, "%s not registered", expected[i]);
        if (!s) continue;
        cr_expect(s->description && *s->description, "%s has no description", s->name);
        size_t need = df_sampler_describe(s, NULL, 0);
        char *buf = malloc(need + 1);
        cr_expect_eq(df_sampler_describe(s, buf, need + 1), need);
        for (int o = 0; o < s->n_options; o++) cr_expect(strstr(buf, s->options[o].name), "%s: %s", s->name, buf);
        free(buf);
    }
    cr_expect_eq(df_registry_failure_count(r), 0);
    df_registry_free(r);
}
