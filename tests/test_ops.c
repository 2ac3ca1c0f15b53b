/* Every op against torch (tests/fixtures/ops.safetensors, written by
 * tools/gen_op_fixtures.py: torch computes the reference in float64 from the
 * same f32 inputs). Error measure: max |got - ref| / max |ref|.
 *
 * The CPU backend by default; a file that defines TEST_OPENCL before including
 * this one (test_ops_opencl.c) runs the same cases on an OpenCL device: inputs
 * are uploaded with df_tensor_to, outputs downloaded before the comparison. */
#include "backend.h"
#include "cpu/cpu.h"
#include "ops.h"
#include "testutil.h"

#ifdef TEST_OPENCL
#include "opencl.h"
#define SUITE ops_opencl
#else
#define SUITE ops
#endif

#define TOL_F32 1e-5
#define TOL_F16W 2e-3

static df_safetensors *fx;
static df_backend *be_; /* the backend under test when it is not the CPU one */

static df_backend *backend(void) { return be_ ? be_ : df_backend_cpu(); }

#ifdef TEST_OPENCL
/* Skipped only where no OpenCL device exists at all; DIFUSA_REQUIRE_OPENCL=1
 * (for CI) turns that into a failure. */
static void setup(void)
{
    be_ = fx_opencl_backend();
    fx = fx_open("ops.safetensors");
}

static void teardown(void)
{
    df_safetensors_close(fx);
    df_backend_free(be_); /* after every tensor */
}
#else
static void setup(void) { fx = fx_open("ops.safetensors"); }
static void teardown(void) { df_safetensors_close(fx); }
#endif

TestSuite(SUITE, .init = setup, .fini = teardown);

/* t moved to the backend under test (the host copy is freed); NULL stays NULL. */
static df_tensor *dev(df_tensor *t)
{
    if (!t || df_tensor_backend(t) == backend()) return t;
    df_tensor *d = NULL;
    int rc = df_tensor_to(t, backend(), &d);
    cr_assert_eq(rc, DF_OK, "upload to %s: %s", backend()->name, df_last_error());
    df_tensor_free(t);
    return d;
}

/* y moved to the CPU (the device copy is freed), so its data can be read. */
static df_tensor *host(df_tensor *y)
{
    if (!y || df_tensor_backend(y) == df_backend_cpu()) return y;
    df_tensor *h = NULL;
    int rc = df_tensor_to(y, df_backend_cpu(), &h);
    cr_assert_eq(rc, DF_OK, "download from %s: %s", backend()->name, df_last_error());
    df_tensor_free(y);
    return h;
}

/* Iterates cases "<op>.0", "<op>.1", ... while "<op>.<i>.out" exists. */
#define FOR_CASES(op, prefix)                                                                     \
    char prefix[64];                                                                              \
    for (int case_ = 0; snprintf(prefix, sizeof prefix, "%s.%d", (op), case_),                    \
             df_safetensors_find(fx, (snprintf(name_, sizeof name_, "%s.out", prefix), name_)); \
         case_++)

static char name_[96];

static int count_cases(const char *op)
{
    int n = 0;
    FOR_CASES(op, p) n++;
    return n;
}

static void check(df_tensor *got, df_tensor *ref, double tol, const char *what, int rc)
{
    cr_assert_eq(rc, DF_OK, "%s: %s", what, df_last_error());
    got = host(got);
    assert_close(got, ref, tol, what);
    df_tensor_free(got);
    df_tensor_free(ref);
}

static void run_conv(const char *op, double tol)
{
    cr_assert_gt(count_cases(op), 0, "no %s cases in fixture", op);
    FOR_CASES(op, c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *w = dev(fx_get_raw(fx, c, "w")), *b = dev(fx_get_opt(fx, c, "b"));
        df_conv2d_params p = {(int)fx_param(fx, c, "stride_h", 1), (int)fx_param(fx, c, "stride_w", 1),
                              (int)fx_param(fx, c, "pad_h", 0), (int)fx_param(fx, c, "pad_w", 0),
                              (int)fx_param(fx, c, "pad_bottom", 0), (int)fx_param(fx, c, "pad_right", 0)};
        df_tensor *y = NULL;
        int rc = df_conv2d(x, w, b, &p, &y);
        check(y, fx_get(fx, c, "out"), tol, c, rc);
        df_tensor_free(x);
        df_tensor_free(w);
        df_tensor_free(b);
    }
}

Test(SUITE, conv2d) { run_conv("conv2d", TOL_F32); }
#ifndef TEST_OPENCL
/* The Winograd path with budgets small enough that the 20 output channels go in blocks of 16 and the
 * 144 tiles in chunks of 16, against the same torch references. */
Test(SUITE, conv2d_winograd_blocks_and_chunks)
{
    df_cpu_winograd_set_budget(1, 1);
    run_conv("conv2d", TOL_F32);
    df_cpu_winograd_set_budget(0, 0);
}
#endif
Test(SUITE, conv2d_f16_weights) { run_conv("conv2d_f16", TOL_F16W); }
Test(SUITE, conv2d_bf16_weights) { run_conv("conv2d_bf16", TOL_F16W); }

static void run_linear(const char *op, double tol)
{
    cr_assert_gt(count_cases(op), 0, "no %s cases in fixture", op);
    FOR_CASES(op, c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *w = dev(fx_get_raw(fx, c, "w")), *b = dev(fx_get_opt(fx, c, "b"));
        df_tensor *y = NULL;
        int rc = df_linear(x, w, b, &y);
        check(y, fx_get(fx, c, "out"), tol, c, rc);
        df_tensor_free(x);
        df_tensor_free(w);
        df_tensor_free(b);
    }
}

Test(SUITE, linear) { run_linear("linear", TOL_F32); }
Test(SUITE, linear_f16_weights) { run_linear("linear_f16", TOL_F16W); }

Test(SUITE, matmul)
{
    cr_assert_gt(count_cases("matmul"), 0);
    FOR_CASES("matmul", c)
    {
        df_tensor *a = dev(fx_get(fx, c, "a")), *b = dev(fx_get(fx, c, "b")), *y = NULL;
        int rc = df_matmul(a, b, (int)fx_param(fx, c, "trans_a", 0), (int)fx_param(fx, c, "trans_b", 0), &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(a);
        df_tensor_free(b);
    }
}

Test(SUITE, group_norm)
{
    cr_assert_gt(count_cases("group_norm"), 0);
    FOR_CASES("group_norm", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *g = dev(fx_get_opt(fx, c, "gamma")),
                  *b = dev(fx_get_opt(fx, c, "beta"));
        df_tensor *y = NULL;
        int rc = df_group_norm(x, (int)fx_param(fx, c, "groups", 32), g, b, (float)fx_param(fx, c, "eps", 1e-5),
                               (int)fx_param(fx, c, "silu", 0), &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(x);
        df_tensor_free(g);
        df_tensor_free(b);
    }
}

Test(SUITE, layer_norm)
{
    cr_assert_gt(count_cases("layer_norm"), 0);
    FOR_CASES("layer_norm", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *g = dev(fx_get_opt(fx, c, "gamma")),
                  *b = dev(fx_get_opt(fx, c, "beta"));
        df_tensor *y = NULL;
        int rc = df_layer_norm(x, g, b, (float)fx_param(fx, c, "eps", 1e-5), &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(x);
        df_tensor_free(g);
        df_tensor_free(b);
    }
}

/* Elementwise too: |got - ref| <= 1e-6 · max(1, |ref|), so small outputs next
 * to large ones (gelu(-3) beside gelu(50)) are held to the same standard. */
static void check_elementwise(const df_tensor *got, const df_tensor *ref, const char *what)
{
    const float *a = df_tensor_data(got), *b = df_tensor_data(ref);
    double worst = 0;
    for (int64_t i = 0; i < df_tensor_numel(ref); i++) {
        double e = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        cr_assert(e <= 1e-6, "%s[%lld]: %.9g, torch %.9g", what, (long long)i, a[i], b[i]);
        worst = fmax(worst, e);
    }
    cr_log_info("%s: worst elementwise err %.3g", what, worst);
}

static void run_unary(const char *op, df_unary_op u)
{
    cr_assert_gt(count_cases(op), 0, "no %s cases", op);
    FOR_CASES(op, c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *y = NULL, *ref = fx_get(fx, c, "out");
        int rc = df_unary(u, x, &y);
        cr_assert_eq(rc, DF_OK, "%s: %s", c, df_last_error());
        y = host(y);
        check_elementwise(y, ref, c);
        check(y, ref, TOL_F32, c, rc);
        df_tensor_free(x);
    }
}

Test(SUITE, silu) { run_unary("silu", DF_SILU); }
Test(SUITE, gelu) { run_unary("gelu", DF_GELU); }
Test(SUITE, gelu_tanh) { run_unary("gelu_tanh", DF_GELU_TANH); }
Test(SUITE, quick_gelu) { run_unary("quick_gelu", DF_QUICK_GELU); }

Test(SUITE, geglu)
{
    cr_assert_gt(count_cases("geglu"), 0);
    FOR_CASES("geglu", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *y = NULL, *ref = fx_get(fx, c, "out");
        int rc = df_geglu(x, &y);
        cr_assert_eq(rc, DF_OK, "%s: %s", c, df_last_error());
        y = host(y);
        check_elementwise(y, ref, c);
        check(y, ref, TOL_F32, c, rc);
        df_tensor_free(x);
    }
}

static void run_binary(const char *op, df_binary_op bop)
{
    cr_assert_gt(count_cases(op), 0, "no %s cases", op);
    FOR_CASES(op, c)
    {
        df_tensor *a = dev(fx_get(fx, c, "a")), *b = dev(fx_get(fx, c, "b")), *y = NULL;
        int rc = df_binary(bop, a, b, &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(a);
        df_tensor_free(b);
    }
}

Test(SUITE, add) { run_binary("add", DF_ADD); }
Test(SUITE, sub) { run_binary("sub", DF_SUB); }
Test(SUITE, mul) { run_binary("mul", DF_MUL); }
Test(SUITE, div) { run_binary("div", DF_DIV); }

Test(SUITE, scale)
{
    cr_assert_gt(count_cases("scale"), 0);
    FOR_CASES("scale", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *y = NULL;
        int rc = df_scale(x, (float)fx_param(fx, c, "s", 1), (float)fx_param(fx, c, "bias", 0), &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(x);
    }
}

Test(SUITE, softmax)
{
    cr_assert_gt(count_cases("softmax"), 0);
    FOR_CASES("softmax", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *y = NULL;
        int rc = df_softmax(x, (float)fx_param(fx, c, "scale", 1), &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(x);
    }
}

Test(SUITE, attention)
{
    cr_assert_gt(count_cases("attention"), 0);
    FOR_CASES("attention", c)
    {
        df_tensor *q = dev(fx_get(fx, c, "q")), *k = dev(fx_get(fx, c, "k")), *v = dev(fx_get(fx, c, "v")), *y = NULL;
        int rc = df_attention(q, k, v, (int)fx_param(fx, c, "heads", 1), (float)fx_param(fx, c, "scale", 0), &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(q);
        df_tensor_free(k);
        df_tensor_free(v);
    }
}

Test(SUITE, attention_causal)
{
    cr_assert_gt(count_cases("attention_causal"), 0);
    FOR_CASES("attention_causal", c)
    {
        df_tensor *q = dev(fx_get(fx, c, "q")), *k = dev(fx_get(fx, c, "k")), *v = dev(fx_get(fx, c, "v")), *y = NULL;
        int rc = df_attention_causal(q, k, v, (int)fx_param(fx, c, "heads", 1), (float)fx_param(fx, c, "scale", 0),
                                     &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(q);
        df_tensor_free(k);
        df_tensor_free(v);
    }
}

Test(SUITE, upsample_nearest2x)
{
    cr_assert_gt(count_cases("upsample"), 0);
    FOR_CASES("upsample", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *y = NULL;
        int rc = df_upsample_nearest2x(x, &y);
        check(y, fx_get(fx, c, "out"), 0, c, rc);
        df_tensor_free(x);
    }
}

Test(SUITE, concat)
{
    cr_assert_gt(count_cases("concat"), 0);
    FOR_CASES("concat", c)
    {
        int n = (int)fx_param(fx, c, "n", 2);
        df_tensor *xs[8];
        for (int i = 0; i < n; i++) {
            char role[16];
            snprintf(role, sizeof role, "x%d", i);
            xs[i] = dev(fx_get(fx, c, role));
        }
        df_tensor *y = NULL;
        int rc = df_concat(n, (const df_tensor *const *)xs, (int)fx_param(fx, c, "dim", 0), &y);
        check(y, fx_get(fx, c, "out"), 0, c, rc);
        for (int i = 0; i < n; i++) df_tensor_free(xs[i]);
    }
}

Test(SUITE, slice)
{
    cr_assert_gt(count_cases("slice"), 0);
    FOR_CASES("slice", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *y = NULL;
        int rc = df_slice(x, (int)fx_param(fx, c, "dim", 0), (int64_t)fx_param(fx, c, "start", 0),
                          (int64_t)fx_param(fx, c, "end", 0), &y);
        check(y, fx_get(fx, c, "out"), 0, c, rc);
        df_tensor_free(x);
    }
}

Test(SUITE, permute)
{
    cr_assert_gt(count_cases("permute"), 0);
    FOR_CASES("permute", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *y = NULL;
        int perm[4];
        for (int i = 0; i < x->ndim; i++) {
            char key[16];
            snprintf(key, sizeof key, "p%d", i);
            perm[i] = (int)fx_param(fx, c, key, -1);
        }
        int rc = df_permute(x, perm, &y);
        check(y, fx_get(fx, c, "out"), 0, c, rc);
        df_tensor_free(x);
    }
}

static void run_reduce(const char *op, df_reduce_op r)
{
    cr_assert_gt(count_cases(op), 0, "no %s cases", op);
    FOR_CASES(op, c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *y = NULL;
        int rc = df_reduce(r, x, (int)fx_param(fx, c, "dim", 0), (int)fx_param(fx, c, "unbiased", 0), &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(x);
    }
}

Test(SUITE, mean) { run_reduce("mean", DF_REDUCE_MEAN); }
Test(SUITE, var) { run_reduce("var", DF_REDUCE_VAR); }

Test(SUITE, timestep_embedding)
{
    cr_assert_gt(count_cases("timestep_embedding"), 0);
    FOR_CASES("timestep_embedding", c)
    {
        df_tensor *t = dev(fx_get(fx, c, "t")), *y = NULL;
        int rc = df_timestep_embedding(t, (int)fx_param(fx, c, "dim", 0), (int)fx_param(fx, c, "flip", 0),
                                       (float)fx_param(fx, c, "shift", 1), (float)fx_param(fx, c, "scale", 1),
                                       (float)fx_param(fx, c, "max_period", 10000), &y);
        cr_assert_eq(rc, DF_OK, "%s: %s", c, df_last_error());
        y = host(y);
        /* diffusers' own f32 arithmetic rounds t·freq: up to ~6e-5 at t = 999 */
        df_tensor *ref = fx_get(fx, c, "out");
        assert_close(y, ref, 1e-4, c);
        df_tensor_free(ref);
        check(y, fx_get(fx, c, "out_f64"), TOL_F32, c, rc);
        df_tensor_free(t);
    }
}

Test(SUITE, modulate)
{
    cr_assert_gt(count_cases("modulate"), 0);
    FOR_CASES("modulate", c)
    {
        df_tensor *x = dev(fx_get(fx, c, "x")), *sh = dev(fx_get(fx, c, "shift")),
                  *sc = dev(fx_get(fx, c, "scale")), *y = NULL;
        int rc = df_modulate(x, sh, sc, &y);
        check(y, fx_get(fx, c, "out"), TOL_F32, c, rc);
        df_tensor_free(x);
        df_tensor_free(sh);
        df_tensor_free(sc);
    }
}

/* f32 -> f16 / bf16 must round exactly as torch does (bit comparison). */
static void run_cast(const char *c, const char *role, df_dtype dt)
{
    df_tensor *x = fx_get(fx, c, "x"), *xd = dev(df_tensor_ref(x)), *ref = fx_get_raw(fx, c, role), *y = NULL;
    cr_assert_eq(ref->dtype, dt);
    cr_assert_eq(df_cast(xd, dt, &y), DF_OK, "%s", df_last_error());
    /* and back: widening is exact */
    df_tensor *back = NULL;
    cr_assert_eq(df_cast(y, DF_F32, &back), DF_OK, "%s", df_last_error());
    y = host(y);
    back = host(back);
    const uint16_t *a = df_tensor_data(y), *b = df_tensor_data(ref);
    for (int64_t i = 0; i < df_tensor_numel(x); i++)
        cr_assert_eq(a[i], b[i], "%s %s[%lld]: %g -> 0x%04x, torch 0x%04x", c, role, (long long)i,
                     (double)((const float *)df_tensor_data(x))[i], a[i], b[i]);
    for (int64_t i = 0; i < df_tensor_numel(x); i++) {
        float f = ((const float *)df_tensor_data(back))[i];
        float e = dt == DF_F16 ? df_f16_to_f32(b[i]) : df_bf16_to_f32(b[i]);
        cr_assert(f == e || (isnan(f) && isnan(e)), "%s %s back to F32 [%lld]: %g, expected %g", c, role,
                  (long long)i, (double)f, (double)e);
    }
    df_tensor_free(back);
    df_tensor_free(x);
    df_tensor_free(xd);
    df_tensor_free(y);
    df_tensor_free(ref);
}

Test(SUITE, cast)
{
    cr_assert_gt(count_cases("cast") + (df_safetensors_find(fx, "cast.0.out_f16") != NULL), 0);
    run_cast("cast.0", "out_f16", DF_F16);
    run_cast("cast.0", "out_bf16", DF_BF16);
}

static df_tensor *zeros(int ndim, const int64_t *shape)
{
    df_tensor *t = df_tensor_new(NULL, DF_F32, ndim, shape);
    cr_assert(t && df_fill(t, 0.0f) == DF_OK);
    return dev(t);
}

/* df_flops: 2 per multiply-add of conv2d, linear, matmul and attention, from the shapes alone. */
Test(SUITE, flops_count_the_multiply_adds)
{
    df_tensor *x = zeros(4, (int64_t[]){2, 3, 5, 7}), *w = zeros(4, (int64_t[]){4, 3, 3, 3}),
              *a = zeros(3, (int64_t[]){2, 6, 8}), *lw = zeros(2, (int64_t[]){5, 8}), *y = NULL;
    df_conv2d_params p = df_conv2d_default_params();
    p.pad_h = p.pad_w = 1;
    df_flops_reset();
    cr_assert_eq(df_conv2d(x, w, NULL, &p, &y), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_flops(), 2ull * 2 * 4 * 5 * 7 * 3 * 3 * 3, "conv2d: %llu", (unsigned long long)df_flops());
    df_tensor_free(y);
    df_flops_reset();
    cr_assert_eq(df_linear(a, lw, NULL, &y), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_flops(), 2ull * 12 * 8 * 5, "linear: %llu", (unsigned long long)df_flops());
    df_tensor_free(y);
    df_flops_reset();
    cr_assert_eq(df_matmul(a, a, 0, 1, &y), DF_OK, "%s", df_last_error()); /* (2, 6, 8) x (2, 6, 8)ᵀ */
    cr_assert_eq(df_flops(), 2ull * 2 * 6 * 6 * 8, "matmul: %llu", (unsigned long long)df_flops());
    df_tensor_free(y);
    df_flops_reset();
    cr_assert_eq(df_attention(a, a, a, 2, 0.0f, &y), DF_OK, "%s", df_last_error()); /* QKᵀ and AV */
    cr_assert_eq(df_flops(), 2ull * 2 * 6 * 6 * (8 + 8), "attention: %llu", (unsigned long long)df_flops());
    df_tensor_free(y);
    /* a call that fails its checks counts nothing */
    df_flops_reset();
    cr_assert_neq(df_linear(x, lw, NULL, &y), DF_OK);
    cr_assert_eq(df_flops(), 0);
    df_tensor_free(x);
    df_tensor_free(w);
    df_tensor_free(a);
    df_tensor_free(lw);
}
