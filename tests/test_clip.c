/* The CLIP text encoders against transformers (tests/fixtures/clip, written
 * by tools/gen_clip_fixtures.py): every weight layout difusa reads, the hidden
 * states SD1 / SD2 / SDXL use, pooling and projections, and A1111 emphasis.
 * Compiled twice: on the CPU, and with TEST_OPENCL on the OpenCL backend. */
#include "nn/clip.h"
#include "nn/text_encoder.h"
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

/* Prompt -> conditioning through the whole text side (tokenizer, A1111
 * emphasis and chunking, the family's hidden states), against the same
 * computation done with transformers' tokenizer and models in
 * tools/gen_clip_fixtures.py. */
static const char *const prompts[] = {
    "a photo of a cat",
    "a (red:1.5) cat, [blue] sky",
    "((masterpiece)) dog BREAK green field",
    "cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat "
    "cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat "
    "cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat "
    "cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat ",
};

static void conditioning(const char *file, const char *family, df_text_family want)
{
    df_safetensors *cx = NULL;
    cr_assert_eq(df_safetensors_open(DIR "cond.expected.safetensors", &cx), DF_OK);
    const char *listed = df_safetensors_metadata(cx, "prompts");
    df_weights *w = NULL;
    df_text_encoder *te = NULL;
    cr_assert_eq(df_weights_open(file, &w), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_text_encoder_load(w, NULL, be, &te), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_text_encoder_family(te), want);
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
        char quoted[1024], name[64];
        snprintf(quoted, sizeof quoted, "\"%s\"", prompts[i]);
        cr_assert(listed && strstr(listed, quoted), "prompt %zu not in the fixture's list", i);
        df_tensor *cond = NULL, *pooled = NULL, *host = NULL, *ref = NULL;
        int rc = df_text_encoder_encode(te, prompts[i], NULL, &cond, want == DF_FAMILY_SDXL ? &pooled : NULL);
        cr_assert_eq(rc, DF_OK, "%s: %s", prompts[i], df_last_error());
        snprintf(name, sizeof name, "cond.%zu.%s", i, family);
        cr_assert_eq(df_safetensors_get_f32(cx, name, &ref), DF_OK);
        df_tensor_to(cond, NULL, &host);
        assert_close(host, ref, TOL, name);
        df_tensor_free(host), df_tensor_free(ref);
        if (pooled) {
            snprintf(name, sizeof name, "cond.%zu.sdxl_pooled", i);
            cr_assert_eq(df_safetensors_get_f32(cx, name, &ref), DF_OK);
            df_tensor_to(pooled, NULL, &host);
            assert_close(host, ref, TOL, name);
            df_tensor_free(host), df_tensor_free(ref);
        }
        df_tensor_free(cond), df_tensor_free(pooled);
    }
    df_text_encoder_free(te);
    df_weights_free(w);
    df_safetensors_close(cx);
}

Test(SUITE, prompt_conditioning_sd1) { conditioning(DIR "cond_sd1.safetensors", "sd1", DF_FAMILY_SD1); }
Test(SUITE, prompt_conditioning_sdxl) { conditioning(DIR "cond_sdxl.safetensors", "sdxl", DF_FAMILY_SDXL); }
