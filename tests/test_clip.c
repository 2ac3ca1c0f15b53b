/* The CLIP text encoders against transformers (tests/fixtures/clip, written
 * by tools/gen_clip_fixtures.py): every weight layout difusa reads, the hidden
 * states SD1 / SD2 / SDXL use, pooling and projections, and A1111 emphasis.
 * Compiled twice: on the CPU, and with TEST_OPENCL on the OpenCL backend. */
#include "nn/clip.h"
#include "testutil.h"

#ifdef TEST_OPENCL
#include "opencl.h"
#define SUITE clip_opencl
#else
#define SUITE clip
#endif

#define TOL 1e-4
#define DIR FIXTURE_DIR "/clip/"

static df_safetensors *ex;
static df_backend *be;
static const int32_t *ids;

static void setup(void)
{
    ex = fx_open("clip/expected.safetensors");
    const df_st_info *info = df_safetensors_find(ex, "ids");
    cr_assert_not_null(info);
    ids = df_safetensors_data(ex, info);
#ifdef TEST_OPENCL
    be = fx_opencl_backend();
#else
    be = NULL;
#endif
}

static void teardown(void)
{
    df_safetensors_close(ex);
#ifdef TEST_OPENCL
    df_backend_free(be);
#endif
}

TestSuite(SUITE, .init = setup, .fini = teardown);

static df_tensor *expected(const char *name)
{
    df_tensor *t = NULL;
    cr_assert_eq(df_safetensors_get(ex, name, &t), DF_OK, "%s", df_last_error());
    return t;
}

static df_clip *load(const char *path, const char *prefix, df_weights **w)
{
    cr_assert_eq(df_weights_open(path, w), DF_OK, "%s", df_last_error());
    df_clip *m = NULL;
    cr_assert_eq(df_clip_load(*w, prefix, be, &m), DF_OK, "%s", df_last_error());
    return m;
}

/* Runs the encoder on the fixture ids and compares one hidden state (and the
 * pooled output when `pooled_name` is given). */
static void expect(df_clip *m, int layer, int final_norm, const char *hidden_name, const char *pooled_name)
{
    df_tensor *x = NULL, *h = NULL, *p = NULL, *hh = NULL, *ph = NULL;
    cr_assert_eq(df_clip_embed_ids(m, ids, 2, 77, &x), DF_OK, "%s", df_last_error());
    df_clip_forward_params fp = {layer, final_norm, pooled_name != NULL};
    cr_assert_eq(df_clip_forward(m, x, ids, &fp, &h, pooled_name ? &p : NULL), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tensor_to(h, NULL, &hh), DF_OK);
    df_tensor *ref = expected(hidden_name);
    assert_close(hh, ref, TOL, hidden_name);
    df_tensor_free(ref);
    if (pooled_name) {
        cr_assert_eq(df_tensor_to(p, NULL, &ph), DF_OK);
        ref = expected(pooled_name);
        assert_close(ph, ref, TOL, pooled_name);
        df_tensor_free(ref);
    }
    df_tensor_free(x), df_tensor_free(h), df_tensor_free(p), df_tensor_free(hh), df_tensor_free(ph);
}

Test(SUITE, diffusers_folder_clip_text_model)
{
    df_weights *w;
    df_clip *m = load(DIR "hf/text_encoder", "text_model.", &w);
    const df_clip_config *c = df_clip_get_config(m);
    cr_assert_eq(c->layout, DF_CLIP_LAYOUT_HF);
    cr_assert_eq(c->heads, 4, "heads from config.json");
    cr_assert_eq(c->act, DF_QUICK_GELU);
    cr_assert_eq(c->layers, 2);
    cr_assert_eq(c->proj_dim, 0);
    expect(m, -1, 1, "hf.last", "hf.pooled");
    expect(m, -2, 0, "hf.penult", NULL);
    expect(m, -2, 1, "hf.penult_ln", NULL);
    df_clip_free(m);
    df_weights_free(w);
}

Test(SUITE, diffusers_folder_with_projection)
{
    df_weights *w;
    df_clip *m = load(DIR "hf_proj/text_encoder_2", "text_model.", &w);
    const df_clip_config *c = df_clip_get_config(m);
    cr_assert_eq(c->act, DF_GELU, "hidden_act from config.json");
    cr_assert_eq(c->proj_dim, 48);
    /* SDXL: penultimate hidden state without the final norm; pooled projected */
    expect(m, -2, 0, "hf_proj.penult", "hf_proj.pooled");
    expect(m, -1, 1, "hf_proj.last", NULL);
    df_clip_free(m);
    df_weights_free(w);
}

Test(SUITE, single_file_sd1_layout)
{
    df_weights *w;
    df_clip *m = load(DIR "sd1.safetensors", "cond_stage_model.transformer.text_model.", &w);
    cr_assert_eq(df_clip_get_config(m)->heads, 1, "width 64 / head dim 64");
    expect(m, -1, 1, "sd1.last", "sd1.pooled");
    expect(m, -2, 1, "sd1.penult_ln", NULL); /* clip_skip 2 as A1111 does it */
    df_clip_free(m);
    df_weights_free(w);
}

Test(SUITE, single_file_openclip_layout)
{
    df_weights *w;
    df_clip *m = load(DIR "openclip.safetensors", "cond_stage_model.model.", &w);
    const df_clip_config *c = df_clip_get_config(m);
    cr_assert_eq(c->layout, DF_CLIP_LAYOUT_OPENCLIP);
    cr_assert_eq(c->act, DF_GELU);
    cr_assert_eq(c->heads, 2);
    cr_assert_eq(c->proj_dim, 96);
    expect(m, -2, 1, "openclip.penult_ln", "openclip.pooled"); /* SD2: penultimate + final norm */
    expect(m, -2, 0, "openclip.penult", NULL);                 /* SDXL bigG */
    expect(m, -1, 1, "openclip.last", NULL);
    df_clip_free(m);
    df_weights_free(w);
}

Test(SUITE, emphasis_restores_the_mean)
{
    df_weights *w;
    df_clip *m = load(DIR "sd1.safetensors", "cond_stage_model.transformer.text_model.", &w);
    df_tensor *x = NULL, *h = NULL, *z = NULL, *zh = NULL;
    cr_assert_eq(df_clip_embed_ids(m, ids, 2, 77, &x), DF_OK);
    cr_assert_eq(df_clip_forward(m, x, ids, NULL, &h, NULL), DF_OK, "%s", df_last_error());
    df_tensor *wt = expected("emphasis.weights"), *ref = expected("emphasis.out");
    cr_assert_eq(df_clip_apply_emphasis(h, df_tensor_data(wt), &z), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tensor_to(z, NULL, &zh), DF_OK);
    assert_close(zh, ref, TOL, "emphasis");
    df_tensor_free(x), df_tensor_free(h), df_tensor_free(z), df_tensor_free(zh), df_tensor_free(wt),
        df_tensor_free(ref);
    df_clip_free(m);
    df_weights_free(w);
}

Test(SUITE, errors_name_the_problem)
{
    df_weights *w;
    cr_assert_eq(df_weights_open(DIR "sd1.safetensors", &w), DF_OK);
    df_clip *m = NULL;
    cr_assert_eq(df_clip_load(w, "nothing.here.", be, &m), DF_ENOTFOUND);
    cr_assert(strstr(df_last_error(), "nothing.here.") && strstr(df_last_error(), "sd1.safetensors"), "%s",
              df_last_error());
    cr_assert_eq(df_clip_load(w, "cond_stage_model.transformer.text_model.", be, &m), DF_OK);
    int32_t bad[3] = {510, 9999, 511};
    df_tensor *x = NULL, *h = NULL;
    cr_assert_eq(df_clip_embed_ids(m, bad, 1, 3, &x), DF_EINVAL);
    cr_assert(strstr(df_last_error(), "9999"), "%s", df_last_error());
    cr_assert_eq(df_clip_embed_ids(m, bad, 1, 1, &x), DF_OK);
    df_clip_forward_params fp = {-3, 1, 0};
    cr_assert_eq(df_clip_forward(m, x, bad, &fp, &h, NULL), DF_EINVAL);
    cr_assert(strstr(df_last_error(), "layer -3"), "%s", df_last_error());
    cr_assert_null(h);
    df_tensor_free(x);
    df_clip_free(m);
    df_weights_free(w);
    cr_assert_eq(df_weights_open(DIR "no-such-file.safetensors", &w), DF_EIO);
    cr_assert(strstr(df_last_error(), "no-such-file"), "%s", df_last_error());
}
