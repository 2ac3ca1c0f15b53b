/* make check-full: a full-size random-weight CLIP ViT-L/14 text encoder
 * (written by tools/gen_full_checks.py into build/check-full) against
 * transformers, on the CPU and on OpenCL. */
#include "nn/clip.h"
#include "testutil.h"

#define DIR "build/check-full/clip_vitl/"

static void run(df_backend *be)
{
    df_safetensors *ex = NULL;
    cr_assert_eq(df_safetensors_open(DIR "expected.safetensors", &ex), DF_OK, "%s (run make check-full)",
                 df_last_error());
    const int32_t *ids = df_safetensors_data(ex, df_safetensors_find(ex, "ids"));
    df_weights *w = NULL;
    df_clip *m = NULL;
    cr_assert_eq(df_weights_open(DIR "text_encoder", &w), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_clip_load(w, "text_model.", be, &m), DF_OK, "%s", df_last_error());
    const char *names[] = {"last", "penult_ln"};
    for (int i = 0; i < 2; i++) {
        df_tensor *x = NULL, *h = NULL, *p = NULL, *hh = NULL, *ph = NULL, *ref = NULL;
        df_clip_forward_params fp = {i == 0 ? -1 : -2, 1, 1};
        cr_assert_eq(df_clip_embed_ids(m, ids, 2, 77, &x), DF_OK);
        cr_assert_eq(df_clip_forward(m, x, ids, &fp, &h, &p), DF_OK, "%s", df_last_error());
        df_tensor_to(h, NULL, &hh);
        df_tensor_to(p, NULL, &ph);
        df_safetensors_get(ex, names[i], &ref);
        assert_close(hh, ref, 1e-4, names[i]);
        df_tensor_free(ref);
        df_safetensors_get(ex, "pooled", &ref);
        assert_close(ph, ref, 1e-4, "pooled");
        df_tensor_free(ref), df_tensor_free(x), df_tensor_free(h), df_tensor_free(p), df_tensor_free(hh),
            df_tensor_free(ph);
    }
    df_clip_free(m);
    df_weights_free(w);
    df_safetensors_close(ex);
}

Test(check_full, clip_vit_l_cpu) { run(NULL); }

Test(check_full, clip_vit_l_opencl, .timeout = 600)
{
    df_backend *be = fx_opencl_backend();
    run(be);
    df_backend_free(be);
}
