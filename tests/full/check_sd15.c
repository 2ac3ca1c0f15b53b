/* make check-full: a full-size random-weight SD1.5 UNet (one CFG-batch step
 * at 64x64 latents) and VAE (one 64x64-latent decode), written by
 * tools/gen_full_checks.py into build/check-full, against diffusers. */
#include "nn/unet.h"
#include "nn/vae.h"
#include "testutil.h"

#define DIR "build/check-full/sd15/"

static df_tensor *get(df_safetensors *ex, const char *name)
{
    df_tensor *t = NULL;
    cr_assert_eq(df_safetensors_get_f32(ex, name, &t), DF_OK, "%s (run make check-full)", df_last_error());
    return t;
}

static void compare(df_tensor *got, df_safetensors *ex, const char *name)
{
    df_tensor *host = NULL, *ref = get(ex, name);
    df_tensor_to(got, NULL, &host);
    assert_close(host, ref, 1e-3, name);
    df_tensor_free(host);
    df_tensor_free(ref);
}

static void run(df_backend *be)
{
    df_safetensors *ex = NULL;
    cr_assert_eq(df_safetensors_open(DIR "expected.safetensors", &ex), DF_OK, "%s", df_last_error());
    df_weights *uw = NULL, *vw = NULL;
    df_unet *u = NULL;
    df_vae *v = NULL;
    cr_assert_eq(df_weights_open(DIR "unet", &uw), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_unet_load(uw, NULL, be, NULL, &u), DF_OK, "%s", df_last_error());
    df_tensor *x = get(ex, "x"), *t = get(ex, "t"), *ctx = get(ex, "context"), *y = NULL;
    cr_assert_eq(df_unet_forward(u, x, df_tensor_data(t), ctx, NULL, &y), DF_OK, "%s", df_last_error());
    compare(y, ex, "out");
    df_tensor_free(x), df_tensor_free(t), df_tensor_free(ctx), df_tensor_free(y);
    df_unet_free(u);
    df_weights_free(uw);
    cr_assert_eq(df_weights_open(DIR "vae", &vw), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_vae_load(vw, NULL, be, NULL, &v), DF_OK, "%s", df_last_error());
    df_tensor *z = get(ex, "z"), *img = NULL;
    cr_assert_eq(df_vae_decode(v, z, &img), DF_OK, "%s", df_last_error());
    compare(img, ex, "decoded");
    df_tensor_free(z), df_tensor_free(img);
    df_vae_free(v);
    df_weights_free(vw);
    df_safetensors_close(ex);
}

Test(check_full, sd15_unet_vae_cpu, .timeout = 1200) { run(NULL); }

Test(check_full, sd15_unet_vae_opencl, .timeout = 2400)
{
    df_backend *be = fx_opencl_backend();
    run(be);
    df_backend_free(be);
}
