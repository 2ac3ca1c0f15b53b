/* The UNet and the VAE against diffusers (tests/fixtures/unet, vae, written
 * by tools/gen_unet_vae_fixtures.py), in both weight layouts: diffusers
 * folders, and single-file LDM checkpoints whose name mapping diffusers' own
 * from_single_file was checked to reproduce. Compiled twice: on the CPU, and
 * with TEST_OPENCL on the OpenCL backend. */
#include "nn/bundle.h"
#include "nn/unet.h"
#include "nn/vae.h"
#include "testutil.h"
#include "tmpdir.h"

#ifdef TEST_OPENCL
#define SUITE unet_opencl
#else
#define SUITE unet
#endif

#define TOL 1e-4
#define UDIR FIXTURE_DIR "/unet/"
#define VDIR FIXTURE_DIR "/vae/"

static df_backend *be;

#ifdef TEST_OPENCL
static void setup(void) { be = fx_opencl_backend(); }
static void teardown(void) { df_backend_free(be); }
#else
static void setup(void) { be = NULL; }
static void teardown(void) {}
#endif

TestSuite(SUITE, .init = setup, .fini = teardown);

static df_tensor *get(df_safetensors *ex, const char *name)
{
    df_tensor *t = NULL;
    cr_assert_eq(df_safetensors_get_f32(ex, name, &t), DF_OK, "%s", df_last_error());
    return t;
}

static void compare(df_tensor *got, df_safetensors *ex, const char *name, const char *what)
{
    df_tensor *host = NULL, *ref = get(ex, name);
    cr_assert_eq(df_tensor_to(got, NULL, &host), DF_OK);
    char label[128];
    snprintf(label, sizeof label, "%s %s", what, name);
    assert_close(host, ref, TOL, label);
    df_tensor_free(host);
    df_tensor_free(ref);
}

/* One UNet case: `weights` is the folder or single file, `config` the
 * diffusers config for a single file (heads and groups are not stored). */
static void unet_case(const char *cas, const char *weights, const char *config)
{
    char path[256];
    snprintf(path, sizeof path, UDIR "%s.expected.safetensors", cas);
    df_safetensors *ex = NULL;
    cr_assert_eq(df_safetensors_open(path, &ex), DF_OK, "%s", df_last_error());
    df_weights *w = NULL;
    df_unet *u = NULL;
    cr_assert_eq(df_weights_open(weights, &w), DF_OK, "%s", df_last_error());
    df_unet_load_params lp = df_unet_load_default_params();
    lp.config_path = config;
    cr_assert_eq(df_unet_load(w, NULL, be, &lp, &u), DF_OK, "%s", df_last_error());
    df_tensor *x = get(ex, "x"), *t = get(ex, "t"), *ctx = get(ex, "context"), *y = NULL;
    df_tensor *te = df_safetensors_find(ex, "text_embeds") ? get(ex, "text_embeds") : NULL;
    df_tensor *ti = df_safetensors_find(ex, "time_ids") ? get(ex, "time_ids") : NULL;
    df_unet_extra extra = {te, ti};
    int rc = df_unet_forward(u, x, df_tensor_data(t), ctx, te ? &extra : NULL, &y);
    cr_assert_eq(rc, DF_OK, "%s: %s", weights, df_last_error());
    compare(y, ex, "out", weights);
    df_tensor_free(x), df_tensor_free(t), df_tensor_free(ctx), df_tensor_free(te), df_tensor_free(ti),
        df_tensor_free(y);
    df_unet_free(u);
    df_weights_free(w);
    df_safetensors_close(ex);
}

Test(SUITE, sd1)
{
    unet_case("sd1", UDIR "sd1/unet", NULL);
    unet_case("sd1", UDIR "sd1.safetensors", UDIR "sd1/unet/config.json");
}

Test(SUITE, sd2_linear_projection)
{
    unet_case("sd2", UDIR "sd2/unet", NULL);
    unet_case("sd2", UDIR "sd2.safetensors", UDIR "sd2/unet/config.json");
}

Test(SUITE, sdxl_text_time)
{
    unet_case("sdxl", UDIR "sdxl/unet", NULL);
    unet_case("sdxl", UDIR "sdxl.safetensors", UDIR "sdxl/unet/config.json");
}

Test(SUITE, inpaint_nine_channels)
{
    unet_case("inpaint", UDIR "inpaint/unet", NULL);
    unet_case("inpaint", UDIR "inpaint.safetensors", UDIR "inpaint/unet/config.json");
}

Test(SUITE, config_inferred_from_shapes)
{
    df_weights *w = NULL;
    df_unet *u = NULL;
    cr_assert_eq(df_weights_open(UDIR "sdxl/unet", &w), DF_OK);
    cr_assert_eq(df_unet_load(w, NULL, be, NULL, &u), DF_OK, "%s", df_last_error());
    const df_unet_config *c = df_unet_get_config(u);
    cr_assert_eq(c->levels, 2);
    cr_assert_eq(c->attention[0], 0);
    cr_assert_eq(c->attention[1], 1);
    cr_assert_eq(c->context_dim, 64);
    cr_assert_eq(c->linear_proj, 1);
    cr_assert_eq(c->adm_in, 80);
    cr_assert_eq(c->addition_time_embed_dim, 8);
    df_unet_free(u);
    df_weights_free(w);
}

/* One VAE: encode (moments), the mean and a sampled latent, decode. */
static void vae_case(const char *cas, const char *weights, const char *config)
{
    char path[256];
    snprintf(path, sizeof path, VDIR "%s.expected.safetensors", cas);
    df_safetensors *ex = NULL;
    cr_assert_eq(df_safetensors_open(path, &ex), DF_OK, "%s", df_last_error());
    df_weights *w = NULL;
    df_vae *v = NULL;
    cr_assert_eq(df_weights_open(weights, &w), DF_OK, "%s", df_last_error());
    df_vae_load_params lp = df_vae_load_default_params();
    lp.config_path = config;
    cr_assert_eq(df_vae_load(w, NULL, be, &lp, &v), DF_OK, "%s", df_last_error());
    const char *sf = df_safetensors_metadata(ex, "scaling_factor");
    cr_assert(sf && fabsf(df_vae_get_config(v)->scaling_factor - strtof(sf, NULL)) < 1e-7f, "scaling factor %g vs %s",
              df_vae_get_config(v)->scaling_factor, sf ? sf : "?");
    df_tensor *img = get(ex, "image"), *mom = NULL, *mean = NULL, *z = get(ex, "z"), *dec = NULL;
    cr_assert_eq(df_vae_encode(v, img, &mom), DF_OK, "%s", df_last_error());
    compare(mom, ex, "moments", weights);
    cr_assert_eq(df_vae_sample(mom, NULL, &mean), DF_OK, "%s", df_last_error());
    compare(mean, ex, "mean", weights);
    cr_assert_eq(df_vae_decode(v, z, &dec), DF_OK, "%s", df_last_error());
    compare(dec, ex, "decoded", weights);
    df_tensor_free(img), df_tensor_free(mom), df_tensor_free(mean), df_tensor_free(z), df_tensor_free(dec);
    df_vae_free(v);
    df_weights_free(w);
    df_safetensors_close(ex);
}

Test(SUITE, vae_sd)
{
    vae_case("sd", VDIR "sd/vae", NULL);
    vae_case("sd", UDIR "sd1.safetensors", VDIR "sd/vae/config.json"); /* first_stage_model.* of a checkpoint */
}

Test(SUITE, vae_sdxl)
{
    vae_case("sdxl", VDIR "sdxl/vae", NULL);
    vae_case("sdxl", VDIR "sdxl.safetensors", VDIR "sdxl/vae/config.json"); /* a standalone LDM VAE file */
}

/* diffusers' tiled decode and encode (tile 8 latents / 16 pixels, overlap
 * 0.25 on a 12x20 latent), seams blended as diffusers blends them. */
Test(SUITE, vae_tiled)
{
    df_safetensors *ex = NULL;
    cr_assert_eq(df_safetensors_open(VDIR "sd.expected.safetensors", &ex), DF_OK);
    const char *tiling = df_safetensors_metadata(ex, "tiling");
    cr_assert(tiling && strstr(tiling, "\"tile_latent_min_size\": 8") && strstr(tiling, "0.25"), "%s", tiling);
    df_weights *w = NULL;
    df_vae *v = NULL;
    cr_assert_eq(df_weights_open(VDIR "sd/vae", &w), DF_OK);
    cr_assert_eq(df_vae_load(w, NULL, be, NULL, &v), DF_OK, "%s", df_last_error());
    df_tensor *z = get(ex, "tiled.z"), *img = get(ex, "tiled.image"), *dec = NULL, *mom = NULL;
    cr_assert_eq(df_vae_decode_tiled(v, z, 8, 0.25f, &dec), DF_OK, "%s", df_last_error());
    compare(dec, ex, "tiled.decoded", "tiled");
    cr_assert_eq(df_vae_encode_tiled(v, img, 16, 0.25f, &mom), DF_OK, "%s", df_last_error());
    compare(mom, ex, "tiled.moments", "tiled");
    df_tensor_free(z), df_tensor_free(img), df_tensor_free(dec), df_tensor_free(mom);
    df_vae_free(v);
    df_weights_free(w);
    df_safetensors_close(ex);
}

Test(SUITE, bundle_single_file_and_folder)
{
    df_bundle_params bp = df_bundle_default_params();
    bp.unet_config = UDIR "sd1/unet/config.json";
    bp.vae_config = VDIR "sd/vae/config.json";
    df_bundle *b = NULL;
    cr_assert_eq(df_bundle_load(UDIR "sd1.safetensors", be, &bp, &b), DF_OK, "%s", df_last_error());
    cr_assert_not_null(b->unet);
    cr_assert_not_null(b->vae);
    cr_assert_null(b->text, "the fixture holds no text encoder");
    cr_assert_str_eq(b->family_name, "sd1");
    cr_assert_str_eq(b->prediction, "epsilon");
    cr_assert_eq(b->ignored_tensors, 0);
    cr_assert_float_eq(b->vae_scale, 0.18215f, 1e-7f);
    df_bundle_free(b);
    /* a folder holding only unet/, with a standalone VAE file replacing the missing one */
    bp = df_bundle_default_params();
    bp.prediction = "v_prediction";
    bp.vae_path = VDIR "sdxl.safetensors";
    bp.vae_config = VDIR "sdxl/vae/config.json";
    cr_assert_eq(df_bundle_load(UDIR "sdxl", be, &bp, &b), DF_OK, "%s", df_last_error());
    cr_assert_str_eq(b->family_name, "sdxl", "text_time embeddings make it SDXL");
    cr_assert_str_eq(b->prediction, "v_prediction");
    cr_assert_float_eq(b->vae_scale, 0.13025f, 1e-7f);
    cr_assert_not_null(b->unet);
    cr_assert_not_null(b->vae);
    df_bundle_free(b);
    cr_assert_eq(df_bundle_load(VDIR "nothing-here", be, NULL, &b), DF_EIO);
    cr_assert(strstr(df_last_error(), "nothing-here"), "%s", df_last_error());
}

/* A wrong shape in a single LDM file is named as the file stores it, not by the diffusers name it is read as. */
Test(SUITE, single_file_shape_error_names_the_stored_tensor)
{
    FILE *f = fopen(UDIR "sd1.safetensors", "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc(n + 2), *o = malloc(n + 2);
    cr_assert(s && o);
    cr_assert_eq(fread(s, 1, n, f), n);
    fclose(f);
    /* the mid block's norm2 weight, (32) in the file, declared (2, 16): the header grows by two bytes */
    const char *key = "\"model.diffusion_model.middle_block.0.out_layers.0.weight\":{\"dtype\":\"F16\",\"shape\":[32]";
    char *hit = memmem(s, n, key, strlen(key));
    cr_assert_not_null(hit, "the fixture's mid-block norm2 header entry");
    size_t at = (size_t)(hit - s) + strlen(key) - 4, len = 0;
    memcpy(&len, s, 8); /* little-endian u64, as the machine */
    memcpy(o, s, at);
    memcpy(o + at, "[2,16]", 6);
    memcpy(o + at + 6, s + at + 4, n - at - 4);
    len += 2;
    memcpy(o, &len, 8);
    free(s);
    tmp_init("unet_shape");
    const char *path = write_bytes("sd1.safetensors", o, n + 2);
    free(o);
    df_weights *w = NULL;
    df_unet *u = NULL;
    cr_assert_eq(df_weights_open(path, &w), DF_OK, "%s", df_last_error());
    df_unet_load_params lp = df_unet_load_default_params();
    lp.config_path = UDIR "sd1/unet/config.json";
    cr_assert_eq(df_unet_load(w, NULL, be, &lp, &u), DF_ESHAPE, "%s", df_last_error());
    cr_assert_null(u);
    cr_assert(strstr(df_last_error(),
                     "tensor 'model.diffusion_model.middle_block.0.out_layers.0.weight' has shape (2, 16), expected (32)"),
              "%s", df_last_error());
    df_weights_free(w);
    tmp_teardown();
}

Test(SUITE, errors_name_the_problem)
{
    df_weights *w = NULL;
    df_unet *u = NULL;
    df_vae *v = NULL;
    cr_assert_eq(df_weights_open(VDIR "sd/vae", &w), DF_OK);
    cr_assert_eq(df_unet_load(w, NULL, be, NULL, &u), DF_ENOTFOUND);
    cr_assert(strstr(df_last_error(), "no UNet"), "%s", df_last_error());
    df_weights_free(w);
    cr_assert_eq(df_weights_open(UDIR "sd2/unet", &w), DF_OK);
    cr_assert_eq(df_vae_load(w, NULL, be, NULL, &v), DF_ENOTFOUND);
    cr_assert(strstr(df_last_error(), "no VAE"), "%s", df_last_error());
    cr_assert_eq(df_unet_load(w, NULL, be, NULL, &u), DF_OK, "%s", df_last_error());
    df_tensor *x = df_tensor_zeros(NULL, DF_F32, 4, (int64_t[]){1, 4, 7, 6}), *ctx = NULL, *y = NULL;
    float t = 1;
    cr_assert_eq(df_unet_forward(u, x, &t, NULL, NULL, &y), DF_ESHAPE);
    cr_assert(strstr(df_last_error(), "multiple of 2"), "%s", df_last_error());
    df_tensor_free(x);
    x = df_tensor_zeros(NULL, DF_F32, 4, (int64_t[]){1, 4, 8, 8});
    ctx = df_tensor_zeros(NULL, DF_F32, 3, (int64_t[]){1, 5, 7});
    cr_assert_eq(df_unet_forward(u, x, &t, ctx, NULL, &y), DF_ESHAPE);
    cr_assert(strstr(df_last_error(), "context must be (1, tokens, 48)"), "%s", df_last_error());
    cr_assert_null(y);
    df_tensor_free(x);
    df_tensor_free(ctx);
    df_unet_free(u);
    df_weights_free(w);
}
