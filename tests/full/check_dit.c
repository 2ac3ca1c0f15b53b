/* make check-full: a full-size random-weight DiT-XL/2-256 (written by
 * tools/gen_full_checks.py into build/check-full/dit_xl2) against diffusers,
 * one batch-2 forward, with the step time logged. */
#include "nn/dit.h"
#include "testutil.h"

#include <time.h>

#define DIR "build/check-full/dit_xl2/"

static void run(df_backend *be, const char *what)
{
    df_safetensors *ex = NULL;
    cr_assert_eq(df_safetensors_open(DIR "expected.safetensors", &ex), DF_OK, "%s (run make check-full)",
                 df_last_error());
    df_weights *w = NULL;
    df_dit *m = NULL;
    cr_assert_eq(df_weights_open(DIR "transformer", &w), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dit_load(w, be, NULL, &m), DF_OK, "%s", df_last_error());
    df_tensor *x = NULL, *t = NULL, *y = NULL, *ref = NULL, *out = NULL, *host = NULL;
    cr_assert_eq(df_safetensors_get_f32(ex, "x", &x), DF_OK);
    cr_assert_eq(df_safetensors_get_f32(ex, "t", &t), DF_OK);
    cr_assert_eq(df_safetensors_get(ex, "y", &y), DF_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(df_dit_forward(m, x, df_tensor_data(t), df_tensor_data(y), &out), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tensor_to(out, NULL, &host), DF_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_log_info("DiT-XL/2-256 forward, batch 2, %s: %.2f s", what,
                (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    cr_assert_eq(df_safetensors_get_f32(ex, "out", &ref), DF_OK);
    assert_close(host, ref, 1e-4, "DiT-XL/2 out");
    df_tensor_free(x), df_tensor_free(t), df_tensor_free(y), df_tensor_free(ref), df_tensor_free(out),
        df_tensor_free(host);
    df_dit_free(m);
    df_weights_free(w);
    df_safetensors_close(ex);
}

Test(check_full, dit_xl2_cpu, .timeout = 1200) { run(NULL, "cpu"); }

Test(check_full, dit_xl2_opencl, .timeout = 2400)
{
    df_backend *be = fx_opencl_backend();
    run(be, "opencl");
    df_backend_free(be);
}
