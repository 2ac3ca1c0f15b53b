/* DiT against diffusers and the original DiT (tests/fixtures/dit, written by
 * tools/gen_dit_fixtures.py): the transformer in both weight layouts, each
 * with its own semantics (diffusers folders as diffusers computes them,
 * original checkpoints as facebookresearch/DiT does), on CPU and OpenCL. */
#include "nn/dit.h"
#include "testutil.h"

#ifdef TEST_OPENCL
#define SUITE dit_opencl
#else
#define SUITE dit
#endif

#define DDIR FIXTURE_DIR "/dit/"

static df_backend *be;

#ifdef TEST_OPENCL
static void setup(void) { be = fx_opencl_backend(); }
static void teardown(void) { df_backend_free(be); }
#else
static void setup(void) { be = NULL; }
static void teardown(void) {}
#endif

TestSuite(SUITE, .init = setup, .fini = teardown);

static void forward_case(const char *cas, const char *weights, const char *expected_name, int heads)
{
    char path[256];
    snprintf(path, sizeof path, DDIR "%s.expected.safetensors", cas);
    df_safetensors *ex = NULL;
    cr_assert_eq(df_safetensors_open(path, &ex), DF_OK, "%s", df_last_error());
    df_weights *w = NULL;
    df_dit *m = NULL;
    cr_assert_eq(df_weights_open(weights, &w), DF_OK, "%s", df_last_error());
    df_dit_load_params lp = df_dit_load_default_params();
    lp.heads = heads;
    cr_assert_eq(df_dit_load(w, be, &lp, &m), DF_OK, "%s", df_last_error());
    df_tensor *x = NULL, *t = NULL, *y = NULL, *ref = NULL, *out = NULL, *host = NULL;
    cr_assert_eq(df_safetensors_get_f32(ex, "x", &x), DF_OK);
    cr_assert_eq(df_safetensors_get_f32(ex, "t", &t), DF_OK);
    cr_assert_eq(df_safetensors_get(ex, "y", &y), DF_OK);
    cr_assert_eq(y->dtype, DF_I32);
    cr_assert_eq(df_dit_forward(m, x, df_tensor_data(t), df_tensor_data(y), &out), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tensor_to(out, NULL, &host), DF_OK);
    cr_assert_eq(df_safetensors_get_f32(ex, expected_name, &ref), DF_OK);
    char what[160];
    snprintf(what, sizeof what, "%s vs %s", weights, expected_name);
    assert_close(host, ref, 1e-4, what);
    df_tensor_free(x), df_tensor_free(t), df_tensor_free(y), df_tensor_free(ref), df_tensor_free(out),
        df_tensor_free(host);
    df_dit_free(m);
    df_weights_free(w);
    df_safetensors_close(ex);
}

Test(SUITE, patch2_diffusers_folder) { forward_case("p2", DDIR "p2/transformer", "out", 0); }
Test(SUITE, patch2_original_layout) { forward_case("p2", DDIR "p2.safetensors", "orig.out", 2); }
Test(SUITE, patch4_legacy_transformer2d_folder) { forward_case("p4", DDIR "p4/transformer", "out", 0); }
Test(SUITE, patch4_original_layout) { forward_case("p4", DDIR "p4.safetensors", "orig.out", 2); }

Test(SUITE, config_and_errors)
{
    df_weights *w = NULL;
    df_dit *m = NULL;
    cr_assert_eq(df_weights_open(DDIR "p4.safetensors", &w), DF_OK);
    df_dit_load_params lp = {2};
    cr_assert_eq(df_dit_load(w, be, &lp, &m), DF_OK, "%s", df_last_error());
    const df_dit_config *c = df_dit_get_config(m);
    cr_assert_eq(c->patch, 4);
    cr_assert_eq(c->num_classes, 10);
    cr_assert(c->learn_sigma);
    cr_assert_eq(c->depth, 2);
    df_tensor *x = df_tensor_zeros(NULL, DF_F32, 4, (int64_t[]){1, 4, 16, 16}), *y = NULL;
    float t = 10;
    int32_t bad = 11;
    cr_assert_eq(df_dit_forward(m, x, &t, &bad, &y), DF_EINVAL);
    cr_assert(strstr(df_last_error(), "class label 11"), "%s", df_last_error());
    df_tensor_free(x);
    x = df_tensor_zeros(NULL, DF_F32, 4, (int64_t[]){1, 4, 14, 16});
    int32_t ok = 3;
    cr_assert_eq(df_dit_forward(m, x, &t, &ok, &y), DF_ESHAPE);
    df_tensor_free(x);
    df_dit_free(m);
    df_weights_free(w);
    cr_assert_eq(df_weights_open(DDIR "p2/vae", &w), DF_OK);
    cr_assert_eq(df_dit_load(w, be, NULL, &m), DF_ENOTFOUND);
    cr_assert(strstr(df_last_error(), "no DiT"), "%s", df_last_error());
    df_weights_free(w);
}
