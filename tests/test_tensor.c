/* Tensors: lifetime of views, reshape / narrow rules, half-precision
 * conversion against exact values, and the op argument checks (each bad call
 * must fail with a message naming the op and argument, never crash). */
#include "ops.h"
#include "testutil.h"

static df_tensor *arange(int ndim, const int64_t *shape)
{
    df_tensor *t = df_tensor_new(NULL, DF_F32, ndim, shape);
    cr_assert_not_null(t);
    float *d = df_tensor_data(t);
    for (int64_t i = 0; i < df_tensor_numel(t); i++) d[i] = (float)i;
    return t;
}

Test(tensor, views_share_and_outlive_base)
{
    df_tensor *t = arange(2, (int64_t[]){4, 3}), *r = NULL, *n = NULL;
    cr_assert_eq(df_tensor_reshape(t, 3, (int64_t[]){2, -1, 3}, &r), DF_OK, "%s", df_last_error());
    cr_assert_eq(r->shape[1], 2);
    cr_assert_eq(df_tensor_narrow0(t, 1, 2, &n), DF_OK);
    df_tensor_free(t); /* views keep the buffer alive */
    cr_assert_eq(((float *)df_tensor_data(n))[0], 3.0f);
    cr_assert_eq(((float *)df_tensor_data(r))[11], 11.0f);
    df_tensor_free(r);
    df_tensor_free(n);
}

Test(tensor, reshape_and_narrow_errors)
{
    df_tensor *t = arange(2, (int64_t[]){4, 3}), *r = NULL;
    cr_assert_eq(df_tensor_reshape(t, 2, (int64_t[]){5, 3}, &r), DF_ESHAPE);
    cr_assert(strstr(df_last_error(), "12 elements"), "%s", df_last_error());
    cr_assert_eq(df_tensor_reshape(t, 2, (int64_t[]){-1, -1}, &r), DF_ESHAPE);
    cr_assert_eq(df_tensor_reshape(t, 2, (int64_t[]){5, -1}, &r), DF_ESHAPE);
    cr_assert_eq(df_tensor_reshape(t, 5, (int64_t[]){1, 1, 1, 4, 3}, &r), DF_ESHAPE);
    cr_assert_eq(df_tensor_narrow0(t, 3, 2, &r), DF_ESHAPE);
    cr_assert_null(r);
    cr_assert_null(df_tensor_new(NULL, DF_F32, 2, (int64_t[]){-1, 3}));
    cr_assert_null(df_tensor_new(NULL, DF_F32, 4, (int64_t[]){INT64_MAX / 2, 4, 4, 4}));
    df_tensor_free(t);
}

/* Exact binary16 values: 1, the largest normal, the smallest normal and
 * subnormal, a tie that rounds to even, and overflow to infinity. */
Test(tensor, half_conversion_exact)
{
    cr_assert_eq(df_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(df_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(df_f32_to_f16(65520.0f), 0x7c00);
    cr_assert_eq(df_f32_to_f16(ldexpf(1, -14)), 0x0400);
    cr_assert_eq(df_f32_to_f16(ldexpf(1, -24)), 0x0001);
    cr_assert_eq(df_f32_to_f16(ldexpf(1, -25)), 0x0000);           /* tie to even: 0 */
    cr_assert_eq(df_f32_to_f16(ldexpf(3, -25)), 0x0002);           /* 1.5 ulp: tie to even: 2 */
    cr_assert_eq(df_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);    /* tie to even */
    cr_assert_eq(df_f32_to_f16(1.0f + ldexpf(3, -11)), 0x3c02);    /* tie to even, up */
    cr_assert_eq(df_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(df_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(df_f16_to_f32(0x0001), ldexpf(1, -24));
    cr_assert_eq(df_f16_to_f32(0x03ff), ldexpf(1023, -24));
    cr_assert_eq(df_f16_to_f32(0x7bff), 65504.0f);
    cr_assert(isinf(df_f16_to_f32(0xfc00)) && df_f16_to_f32(0xfc00) < 0);
    cr_assert(isnan(df_f16_to_f32(0x7e00)));
    cr_assert(isnan(df_f16_to_f32(df_f32_to_f16(NAN))));
    /* every finite half survives a round trip */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        cr_assert_eq(df_f32_to_f16(df_f16_to_f32((uint16_t)h)), h, "0x%04x", h);
    }
    /* the bulk conversion (vectorised where the CPU has F16C) agrees bit for bit */
    static uint16_t all[65536];
    static float wide[65536];
    for (uint32_t h = 0; h < 0x10000; h++) all[h] = (uint16_t)h;
    cr_assert_eq(df_convert_to_f32(DF_F16, all, wide, 65536), DF_OK);
    for (uint32_t h = 0; h < 0x10000; h++) {
        float e = df_f16_to_f32((uint16_t)h);
        uint32_t a, b;
        memcpy(&a, &wide[h], 4);
        memcpy(&b, &e, 4);
        if (isnan(e)) cr_assert(isnan(wide[h]), "0x%04x", h);
        else cr_assert_eq(a, b, "0x%04x: bulk 0x%08x, scalar 0x%08x", h, a, b);
    }
    cr_assert_eq(df_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(df_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80); /* tie to even */
    cr_assert_eq(df_f32_to_bf16(1.0f + ldexpf(3, -8)), 0x3f82);
    cr_assert_eq(df_bf16_to_f32(0xc040), -3.0f);
}

#define EXPECT_FAIL(call, code, phrase)                                                         \
    do {                                                                                        \
        df_tensor *o_ = (df_tensor *)1;                                                         \
        int rc_ = call(&o_);                                                                    \
        cr_assert_eq(rc_, (code), "%s: rc %d (%s)", #call, rc_, df_last_error());              \
        cr_assert_null(o_);                                                                     \
        cr_assert(strstr(df_last_error(), (phrase)), "message '%s' lacks '%s'", df_last_error(), \
                  (phrase));                                                                    \
    } while (0)

Test(tensor, op_argument_errors)
{
    df_tensor *x = arange(4, (int64_t[]){1, 3, 4, 4}), *w = arange(4, (int64_t[]){8, 2, 3, 3});
    df_tensor *w2 = arange(2, (int64_t[]){5, 7}), *a = arange(2, (int64_t[]){2, 3});
    df_tensor *b = arange(2, (int64_t[]){4, 3}), *q = arange(3, (int64_t[]){1, 4, 6});
    df_tensor *h = df_tensor_new(NULL, DF_F16, 2, (int64_t[]){2, 3});
    df_tensor *i32 = df_tensor_new(NULL, DF_I32, 1, (int64_t[]){5});
    df_conv2d_params p = df_conv2d_default_params();
#define CONV(o) df_conv2d(x, w, NULL, &p, o)
    EXPECT_FAIL(CONV, DF_ESHAPE, "input channels");
#define LIN(o) df_linear(a, w2, NULL, o)
    EXPECT_FAIL(LIN, DF_ESHAPE, "input features");
#define ADD(o) df_add(a, b, o)
    EXPECT_FAIL(ADD, DF_ESHAPE, "do not broadcast");
#define ATT(o) df_attention(q, q, q, 4, 0, o)
    EXPECT_FAIL(ATT, DF_ESHAPE, "4 heads");
#define HALF(o) df_unary(DF_SILU, h, o)
    EXPECT_FAIL(HALF, DF_EDTYPE, "must be F32");
#define NUL(o) df_layer_norm(NULL, NULL, NULL, 1e-5f, o)
    EXPECT_FAIL(NUL, DF_EINVAL, "'x' is NULL");
#define GN(o) df_group_norm(x, 2, NULL, NULL, 1e-5f, 0, o)
    EXPECT_FAIL(GN, DF_EINVAL, "not divisible into 2 groups");
#define SL(o) df_slice(a, 1, 2, 5, o)
    EXPECT_FAIL(SL, DF_EINVAL, "outside dim 1");
#define MM(o) df_matmul(a, a, 0, 0, o)
    EXPECT_FAIL(MM, DF_ESHAPE, "cannot multiply");
#define PERM(o) df_permute(a, (int[]){0, 0}, o)
    EXPECT_FAIL(PERM, DF_EINVAL, "not a permutation");
#define CAST(o) df_cast(i32, DF_F16, o)
    EXPECT_FAIL(CAST, DF_EDTYPE, "I32");
    df_conv2d_params bad = {0, 1, 0, 0, 0, 0};
#define CONV0(o) df_conv2d(x, x, NULL, &bad, o)
    EXPECT_FAIL(CONV0, DF_EINVAL, "stride");
    df_tensor *ts[] = {x, w, w2, a, b, q, h, i32};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) df_tensor_free(ts[i]);
}

/* The injected allocation failure reaches the caller as DF_ENOMEM and leaks nothing. */
Test(tensor, allocation_failure_is_reported)
{
    df_tensor *x = arange(4, (int64_t[]){1, 2, 6, 6}), *w = arange(4, (int64_t[]){3, 2, 3, 3}), *y = NULL;
    df_conv2d_params p = {1, 1, 1, 1, 0, 0};
    for (long n = 1; n <= 3; n++) {
        df_alloc_fail_after(n);
        int rc = df_conv2d(x, w, NULL, &p, &y);
        df_alloc_fail_after(0);
        cr_assert_eq(rc, DF_ENOMEM, "failure at allocation %ld not reported", n);
        cr_assert_null(y);
        cr_assert(strstr(df_last_error(), "out of memory"), "%s", df_last_error());
    }
    cr_assert_eq(df_conv2d(x, w, NULL, &p, &y), DF_OK);
    df_tensor_free(y);
    df_tensor_free(x);
    df_tensor_free(w);
}
