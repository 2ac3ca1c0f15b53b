/* The OpenCL backend checked against the CPU backend, in the spirit of ggml's
 * test-backend-ops: every op of ops.h runs on a grid of shapes (odd sizes,
 * 1x1 spatial, batch > 1, broadcasts) with the same deterministic random
 * inputs on both backends, and the outputs must agree:
 *   max |cpu - opencl| / max |cpu| <= 1e-5 (f32), bit for bit for copies and
 *   casts.
 * Every other case of a family runs with its OpenCL inputs as views at an odd
 * element offset into a larger buffer (narrow0 + reshape) whose other elements
 * are NaN, so a kernel that ignores the offset, or reads past its tensor,
 * shows. Each family ends by checking that the backend holds no tensor memory.
 *
 * Then the device and error paths: selection, $DIFUSA_DEVICE, allocations the
 * device cannot hold, build logs, mixed backends, the on-disk program cache.
 *
 * Each Test() runs in its own process and creates its own backend, so the
 * families are grouped into a few tests (OpenCL and CLBlast setup is slow on
 * PoCL). Without any OpenCL device the suites are skipped, unless
 * DIFUSA_REQUIRE_OPENCL=1 (for CI), which makes that a failure. */
#include "backend.h"
#include "opencl.h"
#include "ops.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL 1e-5

/* ---- suites ---- */

static df_backend *ocl;

/* Skips (or, with DIFUSA_REQUIRE_OPENCL set, fails) where there is no device. */
static void need_device(void)
{
    df_opencl_device_info *devs = NULL;
    int n = 0, rc = df_opencl_list_devices(&devs, &n);
    df_opencl_free_devices(devs);
    cr_assert_eq(rc, DF_OK, "listing OpenCL devices: %s", df_last_error());
    if (n > 0) return;
    const char *req = getenv("DIFUSA_REQUIRE_OPENCL");
    cr_assert(!(req && *req && strcmp(req, "0")), "DIFUSA_REQUIRE_OPENCL is set but there is no OpenCL device: %s",
              df_last_error());
    cr_skip_test("no OpenCL device (%s): skipping", df_last_error());
}

static void setup(void)
{
    need_device();
    int rc = df_backend_opencl_create(NULL, &ocl);
    cr_assert_eq(rc, DF_OK, "creating the OpenCL backend: %s", df_last_error());
}

static void teardown(void)
{
    df_backend_free(ocl);
    ocl = NULL;
}

TestSuite(opencl, .init = setup, .fini = teardown);
TestSuite(opencl_device, .init = need_device);

/* ---- deterministic inputs ---- */

static uint64_t lcg;

static void seed(uint64_t s) { lcg = s * 0x9E3779B97F4A7C15ull + 12345; }

static uint32_t rand32(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(lcg >> 32);
}

static float urand(float lo, float hi) { return lo + (hi - lo) * (float)((rand32() >> 8) / 16777216.0); }

/* ---- the case being run, for messages ---- */

static char what[320];
static int view_mode; /* OpenCL inputs are offset views (see mk) */

static void case_name(const char *fmt, ...) DF_PRINTF(1, 2);
static void case_name(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (view_mode && n > 0 && (size_t)n < sizeof what)
        snprintf(what + n, sizeof what - (size_t)n, " [offset-view inputs]");
}

static void ok(int rc, const char *side)
{
    cr_assert_eq(rc, DF_OK, "%s on %s: %s: %s", what, side, df_status_name(rc), df_last_error());
}

/* ---- tensor pairs: the same values on the CPU (h) and on OpenCL (d) ---- */

typedef struct pair {
    df_tensor *h, *d;
} pair;

static const pair none; /* an absent optional operand */

#define VIEW_PAD 3 /* elements of NaN before and after an offset view */

/* The OpenCL copy of host tensor h: a plain upload, or in view mode a view
 * [VIEW_PAD, VIEW_PAD + numel) of a flat buffer whose other bytes are 0xff (a
 * NaN in F32, F16 and BF16), reshaped to h's shape. */
static pair pair_of(df_tensor *h)
{
    pair p = {h, NULL};
    if (!view_mode) {
        ok(df_tensor_to(h, ocl, &p.d), "upload");
        return p;
    }
    int64_t n = df_tensor_numel(h), total = n + 2 * VIEW_PAD;
    size_t es = df_dtype_size(h->dtype);
    df_tensor *flat = df_tensor_new(ocl, h->dtype, 1, &total), *row = NULL;
    cr_assert_not_null(flat, "%s: allocating %lld elements: %s", what, (long long)total, df_last_error());
    unsigned char *tmp = malloc((size_t)total * es);
    cr_assert_not_null(tmp);
    memset(tmp, 0xff, (size_t)total * es);
    memcpy(tmp + VIEW_PAD * es, df_tensor_data(h), (size_t)n * es);
    ok(df_tensor_write(flat, tmp, (size_t)total * es), "write");
    free(tmp);
    ok(df_tensor_narrow0(flat, VIEW_PAD, n, &row), "narrow0");
    ok(df_tensor_reshape(row, h->ndim, h->shape, &p.d), "reshape");
    df_tensor_free(row);
    df_tensor_free(flat);
    cr_assert_neq(p.d->offset, 0);
    return p;
}

/* A CPU tensor of uniform values in [lo, hi), stored as dtype dt (rounded from f32). */
static df_tensor *host_rand(df_dtype dt, float lo, float hi, int nd, const int64_t *shape)
{
    df_tensor *h = df_tensor_new(NULL, dt, nd, shape);
    cr_assert_not_null(h, "%s: %s", what, df_last_error());
    int64_t n = df_tensor_numel(h);
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    cr_assert_not_null(f);
    for (int64_t i = 0; i < n; i++) f[i] = urand(lo, hi);
    cr_assert_eq(df_convert_from_f32(dt, f, df_tensor_data(h), n), DF_OK);
    free(f);
    return h;
}

static pair mk(df_dtype dt, float lo, float hi, int nd, const int64_t *shape)
{
    return pair_of(host_rand(dt, lo, hi, nd, shape));
}

/* A pair from explicit f32 values. */
static pair mk_from(const float *v, int nd, const int64_t *shape)
{
    df_tensor *h = df_tensor_from_data(DF_F32, nd, shape, v);
    cr_assert_not_null(h);
    return pair_of(h);
}

static void pair_free(pair *p)
{
    df_tensor_free(p->h);
    df_tensor_free(p->d);
    p->h = p->d = NULL;
}

#define DIMS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

static df_tensor *download(const df_tensor *d)
{
    df_tensor *h = NULL;
    ok(df_tensor_to(d, df_backend_cpu(), &h), "download");
    return h;
}

/* ---- comparison ---- */

typedef struct family {
    const char *name;
    int cases;
    double worst;
    char worst_case[320];
} family;

static void show_index(char *buf, size_t n, const df_tensor *t, int64_t flat)
{
    int64_t idx[DF_MAX_DIMS] = {0};
    for (int i = t->ndim - 1; i >= 0; i--) {
        int64_t s = t->shape[i] ? t->shape[i] : 1;
        idx[i] = flat % s;
        flat /= s;
    }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)idx[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Compares yh (CPU) with yd (OpenCL) and frees both. F32 outputs: relative
 * error <= tol (NaN only where the CPU has NaN); other dtypes: bit for bit
 * (a NaN may carry another payload). */
static void compare(family *f, df_tensor *yh, df_tensor *yd, double tol)
{
    char s1[64], s2[64], at[64] = "";
    cr_assert_not_null(yh, "%s: no CPU output", what);
    cr_assert_not_null(yd, "%s: no OpenCL output", what);
    cr_assert_eq(df_tensor_backend(yd), ocl, "%s: output is not on the OpenCL backend", what);
    cr_assert_eq(yd->dtype, yh->dtype, "%s: dtype %s, CPU gives %s", what, df_dtype_name(yd->dtype),
                 df_dtype_name(yh->dtype));
    cr_assert(df_tensor_same_shape(yh, yd), "%s: shape %s, CPU gives %s", what, df_tensor_shape_str(yd, s1, 64),
              df_tensor_shape_str(yh, s2, 64));
    df_tensor *got = download(yd);
    int64_t n = df_tensor_numel(yh);
    double err = 0;
    if (yh->dtype == DF_F32) {
        const float *a = df_tensor_data(yh), *b = df_tensor_data(got);
        double maxref = 0, maxd = 0;
        int64_t worst = -1;
        for (int64_t i = 0; i < n; i++) {
            if (isnan(a[i]) || isnan(b[i])) {
                if (isnan(a[i]) && isnan(b[i])) continue;
                maxd = INFINITY;
                worst = i;
                break;
            }
            if (a[i] == b[i]) continue; /* infinities too */
            double d = fabs((double)a[i] - (double)b[i]);
            if (d > maxd) {
                maxd = d;
                worst = i;
            }
        }
        for (int64_t i = 0; i < n; i++)
            if (isfinite(a[i]) && fabs(a[i]) > maxref) maxref = fabs(a[i]);
        err = maxd == 0 ? 0 : maxd / (maxref > 0 ? maxref : 1e-30);
        if (worst >= 0) show_index(at, sizeof at, yh, worst);
        cr_assert(err <= tol, "%s: max|cpu-opencl|/max|cpu| = %.3g > %.1g; worst at %s of %s: cpu %.9g, opencl %.9g",
                  what, err, tol, at, df_tensor_shape_str(yh, s1, 64), worst >= 0 ? (double)a[worst] : 0.0,
                  worst >= 0 ? (double)b[worst] : 0.0);
    } else {
        size_t es = df_dtype_size(yh->dtype);
        const unsigned char *a = df_tensor_data(yh), *b = df_tensor_data(got);
        for (int64_t i = 0; i < n; i++) {
            if (!memcmp(a + (size_t)i * es, b + (size_t)i * es, es)) continue;
            uint16_t ua = 0, ub = 0;
            if (es == 2) {
                memcpy(&ua, a + (size_t)i * 2, 2);
                memcpy(&ub, b + (size_t)i * 2, 2);
                float fa = yh->dtype == DF_F16 ? df_f16_to_f32(ua) : df_bf16_to_f32(ua);
                float fb = yh->dtype == DF_F16 ? df_f16_to_f32(ub) : df_bf16_to_f32(ub);
                if (isnan(fa) && isnan(fb)) continue;
            }
            show_index(at, sizeof at, yh, i);
            cr_assert_fail("%s: %s element %s of %s differs: cpu 0x%04x, opencl 0x%04x", what,
                           df_dtype_name(yh->dtype), at, df_tensor_shape_str(yh, s1, 64), ua, ub);
        }
    }
    f->cases++;
    if (err > f->worst || !f->worst_case[0]) {
        f->worst = err > f->worst ? err : f->worst;
        snprintf(f->worst_case, sizeof f->worst_case, "%s", what);
    }
    df_tensor_free(got);
    df_tensor_free(yh);
    df_tensor_free(yd);
}

/* Logs the family's worst case and checks that no tensor memory is held. */
static void family_end(family *f)
{
    cr_log_info("%-20s %3d cases, worst max|cpu-opencl|/max|cpu| = %.3g (%s)", f->name, f->cases, f->worst,
                f->worst_case);
    df_opencl_stats st = df_opencl_get_stats(ocl);
    cr_assert_eq(st.bytes_in_use, 0, "%s: %zu bytes still in use after freeing every tensor", f->name,
                 st.bytes_in_use);
    view_mode = 0;
}

/* ---- conv2d ---- */

static void conv2d_family(void)
{
    static const struct {
        int n, ci, h, w, co, kh, kw, sh, sw, ph, pw, bias;
        df_dtype wt;
    } g[] = {
        {1, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1, 1, DF_F32},    {2, 4, 13, 9, 8, 3, 3, 2, 2, 1, 1, 1, DF_F32},
        {1, 8, 1, 1, 16, 1, 1, 1, 1, 0, 0, 1, DF_F32},   {2, 16, 8, 8, 33, 1, 1, 1, 1, 0, 0, 0, DF_F32},
        {1, 3, 33, 17, 7, 5, 5, 1, 1, 2, 2, 1, DF_F32},  {1, 4, 10, 12, 6, 3, 1, 1, 1, 1, 0, 1, DF_F32},
        {1, 5, 7, 11, 3, 1, 7, 1, 2, 0, 3, 0, DF_F32},   {1, 2, 2, 2, 3, 3, 3, 1, 1, 1, 1, 1, DF_F32},
        {3, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0, 1, DF_F32},    {1, 32, 16, 16, 64, 3, 3, 1, 1, 1, 1, 1, DF_F32},
        {1, 13, 9, 7, 77, 3, 3, 2, 1, 1, 0, 1, DF_F32},  {1, 8, 16, 16, 8, 3, 3, 2, 2, 0, 0, 1, DF_F32},
        {1, 4, 64, 64, 4, 3, 3, 1, 1, 1, 1, 1, DF_F32},  {1, 320, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, DF_F32},
        {2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, DF_F16},  {1, 4, 13, 9, 8, 3, 3, 2, 2, 1, 1, 1, DF_F16},
        {1, 8, 1, 1, 16, 1, 1, 1, 1, 0, 0, 0, DF_F16},   {1, 3, 7, 5, 33, 1, 3, 1, 1, 0, 1, 1, DF_F16},
        {2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, DF_BF16}, {1, 3, 33, 17, 7, 5, 5, 1, 1, 2, 2, 1, DF_BF16},
        {1, 16, 7, 7, 7, 1, 1, 1, 1, 0, 0, 1, DF_BF16},  {2, 5, 9, 9, 3, 3, 3, 2, 2, 1, 1, 0, DF_BF16},
    };
    family f = {.name = "conv2d"};
    seed(1);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        df_conv2d_params p = {g[i].sh, g[i].sw, g[i].ph, g[i].pw, 0, 0};
        case_name("conv2d x (%d, %d, %d, %d) w (%d, %d, %d, %d) %s stride (%d, %d) pad (%d, %d)%s", g[i].n, g[i].ci,
                  g[i].h, g[i].w, g[i].co, g[i].ci, g[i].kh, g[i].kw, df_dtype_name(g[i].wt), g[i].sh, g[i].sw,
                  g[i].ph, g[i].pw, g[i].bias ? " bias" : "");
        pair x = mk(DF_F32, -1, 1, DIMS(g[i].n, g[i].ci, g[i].h, g[i].w));
        pair w = mk(g[i].wt, -0.5f, 0.5f, DIMS(g[i].co, g[i].ci, g[i].kh, g[i].kw));
        pair b = g[i].bias ? mk(g[i].wt, -1, 1, DIMS(g[i].co)) : none;
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_conv2d(x.h, w.h, b.h, &p, &yh), "cpu");
        ok(df_conv2d(x.d, w.d, b.d, &p, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&x);
        pair_free(&w);
        pair_free(&b);
    }
    family_end(&f);
}

Test(opencl, conv2d) { conv2d_family(); }

/* ---- linear and matmul ---- */

static void linear_family(void)
{
    static const struct {
        int nd;
        int64_t xs[4];
        int out, bias;
        df_dtype wt;
    } g[] = {
        {2, {1, 1}, 1, 1, DF_F32},         {2, {3, 7}, 13, 1, DF_F32},       {3, {2, 77, 33}, 16, 0, DF_F32},
        {4, {1, 4, 5, 64}, 77, 1, DF_F32}, {2, {77, 768}, 320, 1, DF_F16},   {3, {2, 1, 320}, 1280, 1, DF_F32},
        {2, {1, 3}, 1, 0, DF_F32},         {2, {13, 48}, 7, 1, DF_BF16},     {1, {33}, 9, 1, DF_F32},
        {3, {1, 1024, 40}, 40, 1, DF_F32}, {3, {2, 7, 320}, 640, 1, DF_F16}, {3, {1, 77, 13}, 3, 0, DF_BF16},
        {2, {5, 1}, 17, 1, DF_F16},
    };
    family f = {.name = "linear"};
    seed(2);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        int64_t in = g[i].xs[g[i].nd - 1];
        char s[64];
        pair x = mk(DF_F32, -1, 1, g[i].nd, g[i].xs);
        case_name("linear x %s w (%d, %lld) %s%s", df_tensor_shape_str(x.h, s, sizeof s), g[i].out, (long long)in,
                  df_dtype_name(g[i].wt), g[i].bias ? " bias" : "");
        pair w = mk(g[i].wt, -0.5f, 0.5f, DIMS(g[i].out, in));
        pair b = g[i].bias ? mk(g[i].wt, -1, 1, DIMS(g[i].out)) : none;
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_linear(x.h, w.h, b.h, &yh), "cpu");
        ok(df_linear(x.d, w.d, b.d, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&x);
        pair_free(&w);
        pair_free(&b);
    }
    family_end(&f);
}

static void matmul_family(void)
{
    /* ba / bb: batch of a / b, 0 for a 2-D operand */
    static const struct {
        int ba, bb, m, k, n;
    } g[] = {
        {0, 0, 1, 1, 1},   {0, 0, 3, 7, 13},   {2, 2, 33, 17, 9}, {3, 3, 64, 80, 77},   {1, 3, 13, 8, 5},
        {3, 1, 7, 9, 11},  {0, 3, 16, 33, 4},  {4, 0, 5, 3, 7},   {2, 2, 77, 40, 77},   {1, 1, 128, 64, 96},
        {2, 2, 1, 600, 40}, {1, 0, 9, 1, 9},
    };
    family f = {.name = "matmul"};
    seed(3);
    int c = 0;
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        for (int t = 0; t < 4; t++, c++) {
            int ta = t & 1, tb = t >> 1;
            view_mode = c & 1;
            int64_t sa[3], sb[3];
            int na = 0, nb = 0;
            if (g[i].ba) sa[na++] = g[i].ba;
            sa[na++] = ta ? g[i].k : g[i].m;
            sa[na++] = ta ? g[i].m : g[i].k;
            if (g[i].bb) sb[nb++] = g[i].bb;
            sb[nb++] = tb ? g[i].n : g[i].k;
            sb[nb++] = tb ? g[i].k : g[i].n;
            pair a = mk(DF_F32, -1, 1, na, sa), b = mk(DF_F32, -1, 1, nb, sb);
            char s1[64], s2[64];
            case_name("matmul a %s%s b %s%s", df_tensor_shape_str(a.h, s1, 64), ta ? "ᵀ" : "",
                      df_tensor_shape_str(b.h, s2, 64), tb ? "ᵀ" : "");
            df_tensor *yh = NULL, *yd = NULL;
            ok(df_matmul(a.h, b.h, ta, tb, &yh), "cpu");
            ok(df_matmul(a.d, b.d, ta, tb, &yd), "opencl");
            compare(&f, yh, yd, TOL);
            pair_free(&a);
            pair_free(&b);
        }
    family_end(&f);
}

Test(opencl, linear) { linear_family(); }
Test(opencl, matmul) { matmul_family(); }

/* ---- normalisation ---- */

/* Uniform in [off - 1, off + 1): off far from 0 catches a variance computed
 * as E[x²] - E[x]² in f32. */
static void group_norm_family(void)
{
    static const struct {
        int nd;
        int64_t s[4];
        int groups, affine, silu;
        float eps, off;
    } g[] = {
        {4, {1, 32, 8, 8}, 32, 1, 0, 1e-5f, 0},   {4, {2, 64, 7, 5}, 32, 1, 1, 1e-6f, 0},
        {4, {1, 6, 3, 3}, 3, 0, 0, 1e-5f, 0},     {2, {2, 4}, 2, 1, 0, 1e-5f, 0},
        {3, {1, 8, 13}, 4, 1, 1, 1e-5f, 0},       {4, {1, 320, 1, 1}, 32, 1, 1, 1e-5f, 0},
        {4, {1, 64, 33, 17}, 32, 1, 1, 1e-6f, 0}, {4, {2, 3, 7, 13}, 1, 0, 1, 1e-5f, 0},
        {4, {1, 12, 5, 5}, 12, 1, 0, 1e-5f, 0},   {4, {1, 32, 16, 16}, 32, 1, 0, 1e-5f, 30},
        {4, {1, 128, 64, 64}, 32, 1, 1, 1e-6f, 0}, {3, {2, 96, 77}, 32, 0, 0, 1e-5f, 0},
        {4, {1, 4, 1, 1}, 2, 1, 1, 1e-5f, 0},     {4, {2, 32, 9, 9}, 8, 1, 1, 1e-5f, 30},
    };
    family f = {.name = "group_norm"};
    seed(4);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        int64_t c = g[i].s[1];
        pair x = mk(DF_F32, g[i].off - 1, g[i].off + 1, g[i].nd, g[i].s);
        pair gm = g[i].affine ? mk(DF_F32, 0.5f, 1.5f, DIMS(c)) : none;
        pair bt = g[i].affine ? mk(DF_F32, -1, 1, DIMS(c)) : none;
        char s[64];
        case_name("group_norm x %s (values %g ± 1) groups %d eps %g%s%s", df_tensor_shape_str(x.h, s, 64),
                  (double)g[i].off, g[i].groups, (double)g[i].eps, g[i].affine ? " affine" : "",
                  g[i].silu ? " +silu" : "");
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_group_norm(x.h, g[i].groups, gm.h, bt.h, g[i].eps, g[i].silu, &yh), "cpu");
        ok(df_group_norm(x.d, g[i].groups, gm.d, bt.d, g[i].eps, g[i].silu, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&x);
        pair_free(&gm);
        pair_free(&bt);
    }
    family_end(&f);
}

static void layer_norm_family(void)
{
    static const struct {
        int nd;
        int64_t s[4];
        int affine;
        float eps, off;
    } g[] = {
        {2, {3, 7}, 1, 1e-5f, 0},       {3, {2, 77, 33}, 1, 1e-5f, 0},  {4, {1, 4, 5, 64}, 0, 1e-5f, 0},
        {1, {13}, 1, 1e-5f, 0},         {3, {1, 1024, 320}, 1, 1e-5f, 0}, {3, {2, 1, 1}, 1, 1e-5f, 0},
        {2, {5, 1152}, 0, 1e-6f, 0},    {3, {1, 77, 768}, 1, 1e-5f, 30}, {2, {2, 4099}, 1, 1e-5f, 0},
        {2, {7, 3}, 0, 1e-5f, 30},
    };
    family f = {.name = "layer_norm"};
    seed(5);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        int64_t c = g[i].s[g[i].nd - 1];
        pair x = mk(DF_F32, g[i].off - 1, g[i].off + 1, g[i].nd, g[i].s);
        pair gm = g[i].affine ? mk(DF_F32, 0.5f, 1.5f, DIMS(c)) : none;
        pair bt = g[i].affine ? mk(DF_F32, -1, 1, DIMS(c)) : none;
        char s[64];
        case_name("layer_norm x %s (values %g ± 1) eps %g%s", df_tensor_shape_str(x.h, s, 64), (double)g[i].off,
                  (double)g[i].eps, g[i].affine ? " affine" : "");
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_layer_norm(x.h, gm.h, bt.h, g[i].eps, &yh), "cpu");
        ok(df_layer_norm(x.d, gm.d, bt.d, g[i].eps, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&x);
        pair_free(&gm);
        pair_free(&bt);
    }
    family_end(&f);
}

Test(opencl, group_norm) { group_norm_family(); }
Test(opencl, layer_norm) { layer_norm_family(); }

/* ---- elementwise ---- */

static void unary_family(void)
{
    static const char *const names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};
    static const struct {
        int nd;
        int64_t s[4];
        float range;
    } g[] = {
        {1, {1}, 8}, {1, {7}, 8}, {2, {33, 13}, 8}, {4, {2, 3, 7, 13}, 8}, {2, {1, 4099}, 8}, {1, {1000}, 90},
    };
    family f = {.name = "unary"};
    seed(6);
    int c = 0;
    for (int u = 0; u < DF_UNARY_COUNT; u++)
        for (size_t i = 0; i < sizeof g / sizeof g[0]; i++, c++) {
            view_mode = c & 1;
            pair x = mk(DF_F32, -g[i].range, g[i].range, g[i].nd, g[i].s);
            char s[64];
            case_name("%s x %s in ±%g", names[u], df_tensor_shape_str(x.h, s, 64), (double)g[i].range);
            df_tensor *yh = NULL, *yd = NULL;
            ok(df_unary((df_unary_op)u, x.h, &yh), "cpu");
            ok(df_unary((df_unary_op)u, x.d, &yd), "opencl");
            compare(&f, yh, yd, TOL);
            pair_free(&x);
        }
    family_end(&f);
}

static void geglu_family(void)
{
    static const struct {
        int nd;
        int64_t s[4];
    } g[] = {{2, {1, 2}}, {2, {3, 14}}, {3, {2, 77, 66}}, {3, {1, 13, 640}}, {4, {2, 3, 5, 10}}, {1, {2}}};
    family f = {.name = "geglu"};
    seed(7);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        pair x = mk(DF_F32, -4, 4, g[i].nd, g[i].s);
        char s[64];
        case_name("geglu x %s", df_tensor_shape_str(x.h, s, 64));
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_geglu(x.h, &yh), "cpu");
        ok(df_geglu(x.d, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&x);
    }
    family_end(&f);
}

Test(opencl, unary_geglu)
{
    unary_family();
    geglu_family();
}

/* b in ±[0.5, 2): safe to divide by. */
static pair mk_divisor(int nd, const int64_t *shape)
{
    df_tensor *h = host_rand(DF_F32, 0.5f, 2, nd, shape);
    float *v = df_tensor_data(h);
    for (int64_t i = 0; i < df_tensor_numel(h); i++)
        if (rand32() & 1) v[i] = -v[i];
    return pair_of(h);
}

static void binary_family(void)
{
    static const char *const names[] = {"add", "sub", "mul", "div"};
    static const struct {
        int na;
        int64_t a[4];
        int nb;
        int64_t b[4];
    } g[] = {
        {4, {2, 3, 7, 13}, 4, {2, 3, 7, 13}}, {4, {2, 3, 7, 13}, 1, {13}},     {4, {2, 3, 7, 13}, 2, {7, 1}},
        {4, {2, 3, 7, 13}, 3, {3, 1, 1}},     {4, {2, 3, 7, 13}, 1, {1}},      {4, {2, 3, 7, 13}, 4, {2, 3, 1, 1}},
        {2, {3, 1}, 2, {1, 4}},               {4, {1, 5, 1, 7}, 4, {3, 1, 6, 1}}, {3, {2, 77, 320}, 3, {2, 1, 320}},
        {1, {13}, 4, {2, 3, 7, 13}},          {4, {2, 320, 8, 8}, 4, {2, 320, 1, 1}}, {1, {1}, 1, {1}},
        {3, {1, 4097, 3}, 2, {4097, 1}},
    };
    family f = {.name = "binary"};
    seed(8);
    int c = 0;
    for (int op = 0; op < DF_BINARY_COUNT; op++)
        for (size_t i = 0; i < sizeof g / sizeof g[0]; i++, c++) {
            view_mode = c & 1;
            pair a = mk(DF_F32, -2, 2, g[i].na, g[i].a), b = mk_divisor(g[i].nb, g[i].b);
            char s1[64], s2[64];
            case_name("%s a %s b %s", names[op], df_tensor_shape_str(a.h, s1, 64), df_tensor_shape_str(b.h, s2, 64));
            df_tensor *yh = NULL, *yd = NULL;
            ok(df_binary((df_binary_op)op, a.h, b.h, &yh), "cpu");
            ok(df_binary((df_binary_op)op, a.d, b.d, &yd), "opencl");
            compare(&f, yh, yd, TOL);
            /* and with the operands swapped (the broadcast goes the other way) */
            case_name("%s a %s b %s", names[op], df_tensor_shape_str(b.h, s1, 64), df_tensor_shape_str(a.h, s2, 64));
            ok(df_binary((df_binary_op)op, b.h, a.h, &yh), "cpu");
            ok(df_binary((df_binary_op)op, b.d, a.d, &yd), "opencl");
            compare(&f, yh, yd, TOL);
            pair_free(&a);
            pair_free(&b);
        }
    family_end(&f);
}

Test(opencl, binary) { binary_family(); }

static void scale_family(void)
{
    static const float sb[][2] = {{0.18215f, 0}, {1 / 0.18215f, 0.5f}, {-2, 1}, {0, 3}, {1, 0}, {0.5f, -0.25f}};
    static const struct {
        int nd;
        int64_t s[4];
    } g[] = {{1, {7}}, {4, {2, 4, 13, 9}}, {4, {1, 4, 64, 64}}, {1, {1}}};
    family f = {.name = "scale"};
    seed(9);
    int c = 0;
    for (size_t k = 0; k < sizeof sb / sizeof sb[0]; k++)
        for (size_t i = 0; i < sizeof g / sizeof g[0]; i++, c++) {
            view_mode = c & 1;
            pair x = mk(DF_F32, -3, 3, g[i].nd, g[i].s);
            char s[64];
            case_name("scale x %s · %g + %g", df_tensor_shape_str(x.h, s, 64), (double)sb[k][0], (double)sb[k][1]);
            df_tensor *yh = NULL, *yd = NULL;
            ok(df_scale(x.h, sb[k][0], sb[k][1], &yh), "cpu");
            ok(df_scale(x.d, sb[k][0], sb[k][1], &yd), "opencl");
            compare(&f, yh, yd, TOL);
            pair_free(&x);
        }
    family_end(&f);
}

static void softmax_family(void)
{
    static const struct {
        int nd;
        int64_t s[4];
        float scale, range;
    } g[] = {
        {2, {1, 1}, 1, 10},      {2, {3, 7}, 1, 10},         {3, {2, 4, 77}, 0.125f, 10}, {4, {2, 8, 77, 77}, 1, 10},
        {3, {1, 1, 4097}, 1, 10}, {2, {5, 1}, -1, 10},       {2, {3, 7}, -0.5f, 10},      {3, {2, 13, 33}, 0, 10},
        {2, {4, 600}, 3, 10},    {1, {13}, -1, 10},          {2, {2, 1000}, 1, 60},       {3, {3, 5, 64}, 0.125f, 100},
        {2, {3, 50}, 1, 200},    {2, {3, 50}, -2, 200}, /* exp overflows unless the max is subtracted */
    };
    family f = {.name = "softmax"};
    seed(10);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        pair x = mk(DF_F32, -g[i].range, g[i].range, g[i].nd, g[i].s);
        char s[64];
        case_name("softmax x %s in ±%g scale %g", df_tensor_shape_str(x.h, s, 64), (double)g[i].range,
                  (double)g[i].scale);
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_softmax(x.h, g[i].scale, &yh), "cpu");
        ok(df_softmax(x.d, g[i].scale, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&x);
    }
    family_end(&f);
}

Test(opencl, scale_softmax)
{
    scale_family();
    softmax_family();
}

/* ---- attention ---- */

static void attention_family(void)
{
    static const struct {
        int b, nq, nk, h, d, dv;
        float scale, qrange;
    } g[] = {
        {1, 13, 13, 1, 8, 8, 0, 1},     {2, 77, 77, 8, 40, 40, 0, 1},  {2, 64, 77, 8, 40, 40, 0, 1},
        {1, 16, 9, 2, 16, 24, 0, 1},    {1, 1, 600, 4, 32, 32, 0, 1},  {1, 33, 577, 3, 17, 17, 0, 1},
        {1, 7, 1, 1, 3, 3, 0, 1},       {2, 5, 5, 2, 8, 8, 0.3f, 1},   {3, 256, 256, 1, 64, 64, 0, 1},
        {1, 1, 1, 1, 1, 1, 0, 1},       {1, 1024, 77, 5, 64, 64, 0, 1}, {1, 13, 600, 2, 8, 3, 0, 1},
        {2, 100, 33, 4, 16, 16, 0, 4},  {1, 600, 600, 1, 40, 40, 0, 1}, {1, 1, 7, 3, 5, 7, 0.5f, 1},
        {1, 17, 45, 2, 64, 64, 0, 30}, /* logits beyond exp's range */
    };
    family f = {.name = "attention"};
    seed(11);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        int h = g[i].h;
        pair q = mk(DF_F32, -g[i].qrange, g[i].qrange, DIMS(g[i].b, g[i].nq, h * g[i].d));
        pair k = mk(DF_F32, -1, 1, DIMS(g[i].b, g[i].nk, h * g[i].d));
        pair v = mk(DF_F32, -1, 1, DIMS(g[i].b, g[i].nk, h * g[i].dv));
        case_name("attention B %d Nq %d Nk %d heads %d D %d Dv %d scale %g%s", g[i].b, g[i].nq, g[i].nk, h, g[i].d,
                  g[i].dv, (double)g[i].scale, g[i].qrange > 1 ? " (peaky q)" : "");
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_attention(q.h, k.h, v.h, h, g[i].scale, &yh), "cpu");
        ok(df_attention(q.d, k.d, v.d, h, g[i].scale, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&q);
        pair_free(&k);
        pair_free(&v);
    }
    family_end(&f);
}

Test(opencl, attention) { attention_family(); }

/* ---- data movement: exact, in F32 and F16 (BF16 for permute) ---- */

static void upsample_family(void)
{
    static const int64_t g[][4] = {{1, 1, 1, 1}, {2, 3, 7, 13}, {1, 4, 32, 33}, {1, 320, 8, 8}, {3, 1, 1, 5}};
    family f = {.name = "upsample_nearest2x"};
    seed(12);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        pair x = mk(DF_F32, -1, 1, 4, g[i]);
        char s[64];
        case_name("upsample_nearest2x x %s", df_tensor_shape_str(x.h, s, 64));
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_upsample_nearest2x(x.h, &yh), "cpu");
        ok(df_upsample_nearest2x(x.d, &yd), "opencl");
        compare(&f, yh, yd, 0);
        pair_free(&x);
    }
    family_end(&f);
}

static void concat_family(void)
{
    static const int64_t base[4][4] = {{7}, {3, 5}, {2, 3, 7}, {2, 3, 5, 7}};
    static const int64_t along[3] = {1, 4, 2};
    family f = {.name = "concat"};
    seed(13);
    int c = 0;
    for (int nd = 1; nd <= 4; nd++)
        for (int dim = -1; dim < nd; dim++) /* -1: counted from the end */
            for (int n = 1; n <= 3; n++, c++) {
                view_mode = c & 1;
                df_dtype dt = (c % 3 == 2) ? DF_F16 : DF_F32;
                int d = dim < 0 ? nd - 1 : dim;
                pair xs[3];
                const df_tensor *hs[3], *ds[3];
                for (int i = 0; i < n; i++) {
                    int64_t s[4];
                    memcpy(s, base[nd - 1], sizeof s);
                    s[d] = along[i];
                    xs[i] = mk(dt, -1, 1, nd, s);
                    hs[i] = xs[i].h;
                    ds[i] = xs[i].d;
                }
                char s[64];
                case_name("concat %d × %s %s along dim %d (sizes 1, 4, 2)", n, df_dtype_name(dt),
                          df_tensor_shape_str(xs[0].h, s, 64), dim);
                df_tensor *yh = NULL, *yd = NULL;
                ok(df_concat(n, hs, dim, &yh), "cpu");
                ok(df_concat(n, ds, dim, &yd), "opencl");
                compare(&f, yh, yd, 0);
                for (int i = 0; i < n; i++) pair_free(&xs[i]);
            }
    family_end(&f);
}

static void slice_family(void)
{
    static const int64_t base[4][4] = {{13}, {5, 7}, {3, 5, 7}, {2, 3, 5, 7}};
    family f = {.name = "slice"};
    seed(14);
    int c = 0;
    for (int nd = 1; nd <= 4; nd++)
        for (int d = 0; d < nd; d++) {
            int64_t len = base[nd - 1][d];
            const int64_t ranges[][2] = {{0, 1}, {1, len > 2 ? len - 1 : 2}, {len - 1, len}, {0, len}};
            for (int r = 0; r < 4; r++, c++) {
                view_mode = c & 1;
                df_dtype dt = (c % 3 == 2) ? DF_F16 : DF_F32;
                pair x = mk(dt, -1, 1, nd, base[nd - 1]);
                int dim = (r == 3) ? d - nd : d; /* negative dims too */
                char s[64];
                case_name("slice %s %s dim %d [%lld, %lld)", df_dtype_name(dt), df_tensor_shape_str(x.h, s, 64), dim,
                          (long long)ranges[r][0], (long long)ranges[r][1]);
                df_tensor *yh = NULL, *yd = NULL;
                ok(df_slice(x.h, dim, ranges[r][0], ranges[r][1], &yh), "cpu");
                ok(df_slice(x.d, dim, ranges[r][0], ranges[r][1], &yd), "opencl");
                compare(&f, yh, yd, 0);
                pair_free(&x);
            }
        }
    family_end(&f);
}

Test(opencl, upsample_concat_slice)
{
    upsample_family();
    concat_family();
    slice_family();
}

/* Calls fn on every permutation of n elements (Heap's algorithm). */
static void each_perm(int n, int *p, int k, void (*fn)(const int *p, int n, void *ctx), void *ctx)
{
    if (k == 1) {
        fn(p, n, ctx);
        return;
    }
    for (int i = 0; i < k; i++) {
        each_perm(n, p, k - 1, fn, ctx);
        int j = (k % 2) ? 0 : i, t = p[j];
        p[j] = p[k - 1];
        p[k - 1] = t;
    }
}

typedef struct perm_ctx {
    family *f;
    const int64_t *shape;
    int c;
} perm_ctx;

static void permute_one(const int *p, int n, void *vctx)
{
    perm_ctx *ctx = vctx;
    static const df_dtype dts[3] = {DF_F32, DF_F16, DF_BF16};
    view_mode = ctx->c & 1;
    df_dtype dt = dts[ctx->c % 3];
    ctx->c++;
    pair x = mk(dt, -1, 1, n, ctx->shape);
    char s[64], ps[32];
    size_t k = 0;
    for (int i = 0; i < n; i++) k += (size_t)snprintf(ps + k, sizeof ps - k, i ? ", %d" : "%d", p[i]);
    case_name("permute %s %s by (%s)", df_dtype_name(dt), df_tensor_shape_str(x.h, s, 64), ps);
    df_tensor *yh = NULL, *yd = NULL;
    ok(df_permute(x.h, p, &yh), "cpu");
    ok(df_permute(x.d, p, &yd), "opencl");
    compare(ctx->f, yh, yd, 0);
    pair_free(&x);
}

Test(opencl, permute)
{
    family f = {.name = "permute"};
    seed(15);
    perm_ctx ctx = {&f, NULL, 0};
    static const int64_t s1[] = {13}, s2[] = {3, 7}, s3[] = {2, 5, 7}, s4[] = {2, 3, 5, 7};
    const int64_t *shapes[] = {s1, s2, s3, s4};
    for (int n = 1; n <= 4; n++) {
        int p[4] = {0, 1, 2, 3};
        ctx.shape = shapes[n - 1];
        each_perm(n, p, n, permute_one, &ctx);
    }
    /* model-sized: the head split of attention, NCHW -> NHWC, and a 1-wide dim */
    static const struct {
        int64_t s[4];
        int p[4];
    } g[] = {{{2, 77, 8, 40}, {0, 2, 1, 3}}, {{1, 320, 8, 9}, {0, 2, 3, 1}}, {{1, 1, 33, 17}, {0, 3, 1, 2}},
             {{4, 1, 1, 1}, {3, 2, 1, 0}}};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        ctx.shape = g[i].s;
        permute_one(g[i].p, 4, &ctx);
    }
    family_end(&f);
}

/* ---- reductions ---- */

Test(opencl, reduce)
{
    static const struct {
        int nd;
        int64_t s[4];
        float off;
    } g[] = {
        {4, {2, 3, 7, 13}, 0}, {3, {5, 33, 4}, 0}, {1, {33}, 0},     {2, {5, 1}, 0},
        {2, {1, 4099}, 0},     {2, {3, 1024}, 0},  {3, {2, 77, 64}, 30}, {4, {1, 1, 1, 1}, 0},
    };
    family f = {.name = "reduce"};
    seed(16);
    int c = 0;
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        for (int dim = -1; dim < g[i].nd; dim++)
            for (int op = 0; op < 3; op++, c++) { /* mean, var, unbiased var */
                view_mode = c & 1;
                df_reduce_op r = op ? DF_REDUCE_VAR : DF_REDUCE_MEAN;
                int unbiased = op == 2;
                pair x = mk(DF_F32, g[i].off - 1, g[i].off + 1, g[i].nd, g[i].s);
                char s[64];
                case_name("reduce %s x %s (values %g ± 1) dim %d", op == 0 ? "mean" : op == 1 ? "var" : "var unbiased",
                          df_tensor_shape_str(x.h, s, 64), (double)g[i].off, dim);
                df_tensor *yh = NULL, *yd = NULL;
                ok(df_reduce(r, x.h, dim, unbiased, &yh), "cpu");
                ok(df_reduce(r, x.d, dim, unbiased, &yd), "opencl");
                compare(&f, yh, yd, TOL);
                pair_free(&x);
            }
    family_end(&f);
}

/* ---- embeddings, modulation ---- */

static void timestep_family(void)
{
    static const struct {
        int n;
        float t[5]; /* < 0: random in [0, 1000) */
        int dim, flip;
        float shift, scale, max_period;
    } g[] = {
        {1, {999}, 320, 1, 0, 1, 10000},          {2, {0, 500.5f}, 256, 0, 1, 1, 10000},
        {5, {-1, -1, -1, -1, -1}, 7, 1, 1, 1, 10000}, {1, {1}, 1, 0, 0, 1, 10000},
        {3, {0.25f, 0.5f, 1}, 64, 0, 0, 1000, 10000}, {4, {-1, -1, -1, -1}, 33, 1, 1, 1, 2000},
        {2, {999, 1}, 1280, 1, 0, 1, 10000},       {1, {17}, 2, 0, 0, 1, 10000},
    };
    family f = {.name = "timestep_embedding"};
    seed(17);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        float t[5];
        for (int k = 0; k < g[i].n; k++) t[k] = g[i].t[k] < 0 ? urand(0, 1000) : g[i].t[k];
        pair x = mk_from(t, DIMS(g[i].n));
        case_name("timestep_embedding %d timesteps (first %g) dim %d flip %d shift %g scale %g max_period %g", g[i].n,
                  (double)t[0], g[i].dim, g[i].flip, (double)g[i].shift, (double)g[i].scale,
                  (double)g[i].max_period);
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_timestep_embedding(x.h, g[i].dim, g[i].flip, g[i].shift, g[i].scale, g[i].max_period, &yh), "cpu");
        ok(df_timestep_embedding(x.d, g[i].dim, g[i].flip, g[i].shift, g[i].scale, g[i].max_period, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&x);
    }
    family_end(&f);
}

static void modulate_family(void)
{
    static const int g[][3] = {{1, 1, 1}, {2, 77, 33}, {3, 7, 1152}, {1, 1024, 320}, {2, 1, 5}};
    family f = {.name = "modulate"};
    seed(18);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        view_mode = (int)(i & 1);
        pair x = mk(DF_F32, -2, 2, DIMS(g[i][0], g[i][1], g[i][2]));
        pair sh = mk(DF_F32, -1, 1, DIMS(g[i][0], g[i][2])), sc = mk(DF_F32, -1, 1, DIMS(g[i][0], g[i][2]));
        case_name("modulate x (%d, %d, %d)", g[i][0], g[i][1], g[i][2]);
        df_tensor *yh = NULL, *yd = NULL;
        ok(df_modulate(x.h, sh.h, sc.h, &yh), "cpu");
        ok(df_modulate(x.d, sh.d, sc.d, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        pair_free(&x);
        pair_free(&sh);
        pair_free(&sc);
    }
    family_end(&f);
}

Test(opencl, timestep_embedding_modulate)
{
    timestep_family();
    modulate_family();
}

/* ---- cast and fill ---- */

static float bits_f32(uint32_t u)
{
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* F32 values that exercise rounding to F16 and BF16: specials, overflow,
 * subnormal halves, exact ties (round half to even) and near-ties, then random
 * values over a wide exponent range. */
static df_tensor *cast_source_f32(int64_t n)
{
    float *v = malloc((size_t)n * sizeof *v);
    cr_assert_not_null(v);
    int64_t k = 0;
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.99f, 65520.0f,
                              1e5f, -1e9f, 3.4e38f, 6.1e-5f, 6.0e-8f, 2.9e-8f, 3.0e-8f, 1e-10f, -5.96e-8f,
                              1.0f, -1.0f, 0.1f, 1.0f / 3.0f, 1e-38f, 1e-45f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) v[k++] = specials[i];
    /* ties and neighbours for F16 (13 dropped bits) and BF16 (16 dropped bits) */
    for (int i = 0; i < 64 && k + 6 <= n; i++) {
        uint32_t base = (rand32() & 0x8fffffffu) | 0x3c000000u; /* around 2^-7 .. 2^8 */
        base &= ~0x1fffu;
        v[k++] = bits_f32(base | 0x1000u);
        v[k++] = bits_f32(base | 0x1001u);
        v[k++] = bits_f32(base | 0x0fffu);
        base &= ~0xffffu;
        v[k++] = bits_f32(base | 0x8000u);
        v[k++] = bits_f32(base | 0x18000u);
        v[k++] = bits_f32(base | 0x7fffu);
    }
    while (k < n) { /* random sign, exponent 2^-30 .. 2^20, mantissa */
        uint32_t e = 97 + rand32() % 51, bits = (rand32() & 0x80000000u) | e << 23 | (rand32() & 0x7fffffu);
        v[k++] = bits_f32(bits);
    }
    df_tensor *t = df_tensor_from_data(DF_F32, DIMS(n), v);
    free(v);
    return t;
}

/* Every 16-bit pattern. */
static df_tensor *cast_source_16(df_dtype dt)
{
    uint16_t *v = malloc(65536 * sizeof *v);
    cr_assert_not_null(v);
    for (uint32_t i = 0; i < 65536; i++) v[i] = (uint16_t)i;
    df_tensor *t = df_tensor_from_data(dt, DIMS(256, 256), v);
    free(v);
    return t;
}

static void cast_family(void)
{
    static const df_dtype dts[3] = {DF_F32, DF_F16, DF_BF16};
    family f = {.name = "cast"};
    seed(19);
    int c = 0;
    for (int s = 0; s < 3; s++)
        for (int d = 0; d < 3; d++, c++) {
            view_mode = c & 1;
            df_tensor *src = dts[s] == DF_F32 ? cast_source_f32(4099) : cast_source_16(dts[s]);
            pair x = pair_of(src);
            case_name("cast %s -> %s (%s)", df_dtype_name(dts[s]), df_dtype_name(dts[d]),
                      dts[s] == DF_F32 ? "specials, ties, random" : "every bit pattern");
            df_tensor *yh = NULL, *yd = NULL;
            ok(df_cast(x.h, dts[d], &yh), "cpu");
            ok(df_cast(x.d, dts[d], &yd), "opencl");
            compare(&f, yh, yd, 0);
            pair_free(&x);
        }
    family_end(&f);
}

static void fill_family(void)
{
    static const float values[] = {0.0f, -1.5f, 3.4e38f, -INFINITY, 1e-42f};
    static const struct {
        int nd;
        int64_t s[4];
    } g[] = {{1, {1}}, {1, {7}}, {4, {2, 3, 7, 13}}, {1, {4099}}, {3, {1, 1, 1}}};
    family f = {.name = "fill"};
    int c = 0;
    for (size_t v = 0; v < sizeof values / sizeof values[0]; v++)
        for (size_t i = 0; i < sizeof g / sizeof g[0]; i++, c++) {
            view_mode = c & 1;
            pair x = mk(DF_F32, -1, 1, g[i].nd, g[i].s);
            char s[64];
            case_name("fill %s with %g", df_tensor_shape_str(x.h, s, 64), (double)values[v]);
            ok(df_fill(x.h, values[v]), "cpu");
            ok(df_fill(x.d, values[v]), "opencl");
            compare(&f, x.h, x.d, 0);
        }
    /* NaN, and df_tensor_zeros */
    view_mode = 0;
    case_name("fill (4099) with NaN");
    pair x = mk(DF_F32, -1, 1, DIMS(4099));
    ok(df_fill(x.h, NAN), "cpu");
    ok(df_fill(x.d, NAN), "opencl");
    compare(&f, x.h, x.d, 0);
    case_name("df_tensor_zeros (3, 77, 5)");
    df_tensor *zh = df_tensor_zeros(NULL, DF_F32, DIMS(3, 77, 5)), *zd = df_tensor_zeros(ocl, DF_F32, DIMS(3, 77, 5));
    cr_assert_not_null(zd, "%s: %s", what, df_last_error());
    compare(&f, zh, zd, 0);
    family_end(&f);
}

Test(opencl, cast_fill)
{
    cast_family();
    fill_family();
}

/* ---- views as they occur in models: row offsets from narrow0 ---- */

static float *host_floats(const df_tensor *d)
{
    size_t n = df_tensor_nbytes(d);
    float *v = malloc(n ? n : 4);
    cr_assert_not_null(v);
    ok(df_tensor_read(d, v, n), "read");
    return v;
}

Test(opencl, views)
{
    family f = {.name = "views"};
    seed(20);
    char s[64];

    /* the CFG batch split: both halves of a (2B, C, H, W) batch into conv2d and group_norm */
    pair big = mk(DF_F32, -1, 1, DIMS(4, 8, 9, 7));
    pair w = mk(DF_F16, -0.5f, 0.5f, DIMS(16, 8, 3, 3)), b = mk(DF_F32, -1, 1, DIMS(16));
    for (int half = 0; half < 2; half++) {
        df_tensor *xh = NULL, *xd = NULL, *yh = NULL, *yd = NULL;
        ok(df_tensor_narrow0(big.h, 2 * half, 2, &xh), "cpu");
        ok(df_tensor_narrow0(big.d, 2 * half, 2, &xd), "opencl");
        df_conv2d_params p = {1, 1, 1, 1, 0, 0};
        case_name("conv2d on rows [%d, %d) of %s", 2 * half, 2 * half + 2, df_tensor_shape_str(big.h, s, 64));
        ok(df_conv2d(xh, w.h, b.h, &p, &yh), "cpu");
        ok(df_conv2d(xd, w.d, b.d, &p, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        case_name("group_norm on rows [%d, %d) of %s", 2 * half, 2 * half + 2, df_tensor_shape_str(big.h, s, 64));
        ok(df_group_norm(xh, 4, NULL, NULL, 1e-5f, 1, &yh), "cpu");
        ok(df_group_norm(xd, 4, NULL, NULL, 1e-5f, 1, &yd), "opencl");
        compare(&f, yh, yd, TOL);
        case_name("upsample + cast + permute on rows [%d, %d)", 2 * half, 2 * half + 2);
        ok(df_upsample_nearest2x(xh, &yh), "cpu");
        ok(df_upsample_nearest2x(xd, &yd), "opencl");
        compare(&f, yh, yd, 0);
        ok(df_cast(xh, DF_F16, &yh), "cpu");
        ok(df_cast(xd, DF_F16, &yd), "opencl");
        compare(&f, yh, yd, 0);
        ok(df_permute(xh, (const int[]){0, 2, 3, 1}, &yh), "cpu");
        ok(df_permute(xd, (const int[]){0, 2, 3, 1}, &yd), "opencl");
        compare(&f, yh, yd, 0);
        df_tensor_free(xh);
        df_tensor_free(xd);
    }
    pair_free(&big);
    pair_free(&w);
    pair_free(&b);

    /* q, k, v as rows of one (3, B·N, H·D) projection, reshaped to (B, N, H·D) */
    pair qkv = mk(DF_F32, -1, 1, DIMS(3, 2 * 13, 4 * 8));
    df_tensor *th[3], *td[3];
    for (int i = 0; i < 3; i++) {
        df_tensor *r = NULL;
        ok(df_tensor_narrow0(qkv.h, i, 1, &r), "cpu");
        ok(df_tensor_reshape(r, DIMS(2, 13, 32), &th[i]), "cpu");
        df_tensor_free(r);
        ok(df_tensor_narrow0(qkv.d, i, 1, &r), "opencl");
        ok(df_tensor_reshape(r, DIMS(2, 13, 32), &td[i]), "opencl");
        df_tensor_free(r);
    }
    pair_free(&qkv); /* the views keep the buffer alive */
    df_tensor *yh = NULL, *yd = NULL;
    case_name("attention on q, k, v views of one (3, 26, 32) buffer");
    ok(df_attention(th[0], th[1], th[2], 4, 0, &yh), "cpu");
    ok(df_attention(td[0], td[1], td[2], 4, 0, &yd), "opencl");
    compare(&f, yh, yd, TOL);
    case_name("linear, matmul, softmax, layer_norm, binary, reduce, concat, slice on views");
    pair lw = mk(DF_F32, -0.5f, 0.5f, DIMS(7, 32));
    ok(df_linear(th[1], lw.h, NULL, &yh), "cpu");
    ok(df_linear(td[1], lw.d, NULL, &yd), "opencl");
    compare(&f, yh, yd, TOL);
    pair_free(&lw);
    ok(df_matmul(th[0], th[1], 0, 1, &yh), "cpu");
    ok(df_matmul(td[0], td[1], 0, 1, &yd), "opencl");
    compare(&f, yh, yd, TOL);
    ok(df_softmax(th[2], 0.5f, &yh), "cpu");
    ok(df_softmax(td[2], 0.5f, &yd), "opencl");
    compare(&f, yh, yd, TOL);
    ok(df_layer_norm(th[2], NULL, NULL, 1e-5f, &yh), "cpu");
    ok(df_layer_norm(td[2], NULL, NULL, 1e-5f, &yd), "opencl");
    compare(&f, yh, yd, TOL);
    ok(df_mul(th[1], th[2], &yh), "cpu");
    ok(df_mul(td[1], td[2], &yd), "opencl");
    compare(&f, yh, yd, TOL);
    ok(df_reduce(DF_REDUCE_VAR, th[2], 1, 1, &yh), "cpu");
    ok(df_reduce(DF_REDUCE_VAR, td[2], 1, 1, &yd), "opencl");
    compare(&f, yh, yd, TOL);
    ok(df_concat(3, (const df_tensor *const *)th, 1, &yh), "cpu");
    ok(df_concat(3, (const df_tensor *const *)td, 1, &yd), "opencl");
    compare(&f, yh, yd, 0);
    ok(df_slice(th[2], 2, 3, 29, &yh), "cpu");
    ok(df_slice(td[2], 2, 3, 29, &yd), "opencl");
    compare(&f, yh, yd, 0);
    ok(df_geglu(th[0], &yh), "cpu");
    ok(df_geglu(td[0], &yd), "opencl");
    compare(&f, yh, yd, TOL);
    for (int i = 0; i < 3; i++) {
        df_tensor_free(th[i]);
        df_tensor_free(td[i]);
    }

    /* fill and write through a view touch only the view's elements */
    case_name("fill / write / read through a narrow0 view");
    float init[100], back[100];
    for (int i = 0; i < 100; i++) init[i] = (float)i;
    df_tensor *flat = df_tensor_new(ocl, DF_F32, DIMS(100)), *v = NULL;
    cr_assert_not_null(flat, "%s", df_last_error());
    ok(df_tensor_write(flat, init, sizeof init), "write");
    ok(df_tensor_narrow0(flat, 17, 33, &v), "narrow0");
    ok(df_fill(v, -7.0f), "fill");
    ok(df_tensor_read(flat, back, sizeof back), "read");
    for (int i = 0; i < 100; i++)
        cr_assert_eq(back[i], (i >= 17 && i < 50) ? -7.0f : (float)i, "fill of view [17, 50): element %d is %g", i,
                     (double)back[i]);
    float vals[33];
    for (int i = 0; i < 33; i++) vals[i] = 1000.0f + (float)i;
    ok(df_tensor_write(v, vals, sizeof vals), "write");
    ok(df_tensor_read(flat, back, sizeof back), "read");
    for (int i = 0; i < 100; i++)
        cr_assert_eq(back[i], (i >= 17 && i < 50) ? 1000.0f + (float)(i - 17) : (float)i,
                     "write into view [17, 50): element %d is %g", i, (double)back[i]);
    float *rv = host_floats(v);
    for (int i = 0; i < 33; i++) cr_assert_eq(rv[i], 1000.0f + (float)i, "read of view: element %d", i);
    free(rv);
    df_tensor_free(flat);
    df_tensor_free(v);
    family_end(&f);
}

/* ---- transfers ---- */

Test(opencl, transfers)
{
    float v[37];
    for (int i = 0; i < 37; i++) v[i] = (float)i * 0.5f - 3.0f;
    df_tensor *h = df_tensor_from_data(DF_F32, DIMS(37), v), *d = NULL, *d2 = NULL, *back = NULL;
    ok(df_tensor_to(h, ocl, &d), "upload");
    cr_assert_eq(df_tensor_backend(d), ocl);
    cr_assert_null(df_tensor_data(d), "device memory must not be host-visible");
    ok(df_tensor_to(d, ocl, &d2), "device-to-device copy");
    ok(df_tensor_to(d2, NULL, &back), "download");
    cr_assert_eq(memcmp(df_tensor_data(back), v, sizeof v), 0);
    float small[3];
    cr_assert_neq(df_tensor_read(d, small, sizeof small), DF_OK, "a short read must fail");
    cr_assert_neq(df_tensor_write(d, small, sizeof small), DF_OK, "a short write must fail");
    /* 16-bit dtypes and an empty tensor */
    uint16_t hv[5] = {0x3c00, 0x7e00, 0x8001, 0xffff, 0x1234};
    df_tensor *h16 = df_tensor_from_data(DF_BF16, DIMS(5), hv), *d16 = NULL, *b16 = NULL;
    ok(df_tensor_to(h16, ocl, &d16), "upload bf16");
    ok(df_tensor_to(d16, NULL, &b16), "download bf16");
    cr_assert_eq(memcmp(df_tensor_data(b16), hv, sizeof hv), 0);
    ok(df_opencl_finish(ocl), "finish");
    df_tensor *e = df_tensor_new(ocl, DF_F32, DIMS(0, 5));
    cr_assert_not_null(e, "an empty tensor: %s", df_last_error());
    df_tensor_free(e);
    df_tensor_free(h);
    df_tensor_free(d);
    df_tensor_free(d2);
    df_tensor_free(back);
    df_tensor_free(h16);
    df_tensor_free(d16);
    df_tensor_free(b16);
    cr_assert_eq(df_opencl_get_stats(ocl).bytes_in_use, 0);
}

/* ---- empty tensors: a zero-length dim is legal everywhere ---- */

Test(opencl, empty_tensors)
{
    family f = {.name = "empty"};
    seed(25);
    pair x = mk(DF_F32, -1, 1, DIMS(2, 3, 5));
    df_tensor *yh = NULL, *yd = NULL, *eh = NULL, *ed = NULL;
    case_name("slice (2, 3, 5) dim 1 [1, 1)");
    ok(df_slice(x.h, 1, 1, 1, &eh), "cpu");
    ok(df_slice(x.d, 1, 1, 1, &ed), "opencl");
    case_name("unary on (2, 0, 5)");
    ok(df_unary(DF_SILU, eh, &yh), "cpu");
    ok(df_unary(DF_SILU, ed, &yd), "opencl");
    compare(&f, yh, yd, 0);
    case_name("concat (2, 3, 5) with (2, 0, 5)");
    const df_tensor *hs[2] = {x.h, eh}, *ds[2] = {x.d, ed};
    ok(df_concat(2, hs, 1, &yh), "cpu");
    ok(df_concat(2, ds, 1, &yd), "opencl");
    compare(&f, yh, yd, 0);
    case_name("fill / download of (2, 0, 5)");
    ok(df_fill(ed, 1), "opencl");
    compare(&f, eh, ed, 0);
    pair_free(&x);
    family_end(&f);
}

/* ---- memory: the caching allocator ---- */

Test(opencl, memory)
{
    df_opencl_stats st = df_opencl_get_stats(ocl);
    cr_assert_eq(st.bytes_in_use, 0, "a new backend holds %zu bytes", st.bytes_in_use);
    df_tensor *t = df_tensor_new(ocl, DF_F32, DIMS(256, 1024));
    cr_assert_not_null(t, "%s", df_last_error());
    st = df_opencl_get_stats(ocl);
    cr_assert_geq(st.bytes_in_use, (size_t)1 << 20, "a 1 MiB tensor: bytes_in_use %zu", st.bytes_in_use);
    cr_assert_geq(st.peak_bytes, st.bytes_in_use);
    df_tensor *v = NULL;
    ok(df_tensor_narrow0(t, 10, 20, &v), "narrow0");
    cr_assert_eq(df_opencl_get_stats(ocl).bytes_in_use, st.bytes_in_use, "a view must not allocate");
    df_tensor_free(t); /* the view keeps the buffer */
    ok(df_fill(v, 2.0f), "fill through a view whose base was freed");
    cr_assert_eq(df_opencl_get_stats(ocl).bytes_in_use, st.bytes_in_use);
    df_tensor_free(v);
    cr_assert_eq(df_opencl_get_stats(ocl).bytes_in_use, 0);

    /* the same shapes step after step, as a sampler runs them: freed buffers
     * come back, nothing leaks, the cache stops growing */
    size_t cached_after[40];
    seed(21);
    pair x = mk(DF_F32, -1, 1, DIMS(1, 4, 32, 32)), w = mk(DF_F32, -1, 1, DIMS(8, 4, 3, 3));
    size_t inputs = df_opencl_get_stats(ocl).bytes_in_use;
    cr_assert_geq(inputs, df_tensor_nbytes(x.d) + df_tensor_nbytes(w.d));
    for (int it = 0; it < 40; it++) {
        df_tensor *a = NULL, *b = NULL, *c = NULL;
        df_conv2d_params p = {1, 1, 1, 1, 0, 0};
        ok(df_conv2d(x.d, w.d, NULL, &p, &a), "conv2d");
        ok(df_group_norm(a, 4, NULL, NULL, 1e-5f, 1, &b), "group_norm");
        ok(df_add(a, b, &c), "add");
        df_tensor_free(a);
        df_tensor_free(b);
        df_tensor_free(c);
        st = df_opencl_get_stats(ocl);
        cached_after[it] = st.bytes_cached;
        cr_assert_eq(st.bytes_in_use, inputs, "iteration %d: %zu bytes in use, expected only the inputs' %zu", it,
                     st.bytes_in_use, inputs);
    }
    pair_free(&x);
    pair_free(&w);
    st = df_opencl_get_stats(ocl);
    cr_log_info("memory: after 40 steps in use %zu, cached %zu (after step 2: %zu), peak %zu", st.bytes_in_use,
                st.bytes_cached, cached_after[1], st.peak_bytes);
    cr_assert_eq(st.bytes_in_use, 0);
    cr_assert_leq(cached_after[39], 2 * cached_after[1] + 4096,
                  "the buffer cache keeps growing: %zu after step 2, %zu after step 40", cached_after[1],
                  cached_after[39]);
}

/* ---- out of host memory (fault injection): no crash, no leaked device memory ---- */

Test(opencl, alloc_failures)
{
    seed(22);
    pair x = mk(DF_F32, -1, 1, DIMS(2, 8, 9, 9)), w = mk(DF_F16, -1, 1, DIMS(4, 8, 3, 3));
    pair q = mk(DF_F32, -1, 1, DIMS(1, 33, 16)), k = mk(DF_F32, -1, 1, DIMS(1, 20, 16));
    size_t base = df_opencl_get_stats(ocl).bytes_in_use;
    static const char *const names[] = {"conv2d", "attention", "group_norm", "concat", "cast"};
    for (int op = 0; op < 5; op++) {
        int failures = 0;
        for (long n = 1; n <= 400; n++) {
            df_tensor *y = NULL;
            df_alloc_fail_after(n);
            df_conv2d_params p = {1, 1, 1, 1, 0, 0};
            const df_tensor *two[2] = {x.d, x.d};
            int rc = op == 0   ? df_conv2d(x.d, w.d, NULL, &p, &y)
                     : op == 1 ? df_attention(q.d, k.d, k.d, 2, 0, &y)
                     : op == 2 ? df_group_norm(x.d, 4, NULL, NULL, 1e-5f, 1, &y)
                     : op == 3 ? df_concat(2, two, 1, &y)
                               : df_cast(x.d, DF_BF16, &y);
            df_alloc_fail_after(0);
            if (rc == DF_OK) {
                cr_assert_not_null(y);
                df_tensor_free(y);
                break;
            }
            failures++;
            cr_assert_null(y, "%s: failed (%s) but returned a tensor", names[op], df_last_error());
            cr_assert_neq(df_last_error()[0], '\0', "%s: failed without a message", names[op]);
            cr_assert_eq(df_opencl_get_stats(ocl).bytes_in_use, base,
                         "%s with allocation %ld failing: %zu bytes in use, %zu before (%s)", names[op], n,
                         df_opencl_get_stats(ocl).bytes_in_use, base, df_last_error());
        }
        cr_log_info("alloc_failures: %s survived %d injected failures", names[op], failures);
    }
    pair_free(&x);
    pair_free(&w);
    pair_free(&q);
    pair_free(&k);
    cr_assert_eq(df_opencl_get_stats(ocl).bytes_in_use, 0);
}

/* ---- mixed backends ---- */

static void expect_mixed(int rc, df_tensor *y, const char *op)
{
    cr_assert_neq(rc, DF_OK, "%s with operands on two backends succeeded", op);
    cr_assert_null(y, "%s failed but returned a tensor", op);
    cr_assert(strstr(df_last_error(), "different backends"), "%s: message '%s' does not say 'different backends'", op,
              df_last_error());
}

Test(opencl, mixed_backends)
{
    seed(23);
    pair a = mk(DF_F32, -1, 1, DIMS(2, 4, 6, 6)), w = mk(DF_F32, -1, 1, DIMS(3, 4, 3, 3));
    pair lw = mk(DF_F32, -1, 1, DIMS(3, 6));
    pair m = mk(DF_F32, -1, 1, DIMS(2, 6, 6)), c4 = mk(DF_F32, -1, 1, DIMS(4)), sh = mk(DF_F32, -1, 1, DIMS(2, 6));
    df_tensor *y = NULL;
    df_conv2d_params p = df_conv2d_default_params();
    expect_mixed(df_add(a.h, a.d, &y), y, "add(cpu, opencl)");
    expect_mixed(df_mul(a.d, a.h, &y), y, "mul(opencl, cpu)");
    expect_mixed(df_conv2d(a.d, w.h, NULL, &p, &y), y, "conv2d(x opencl, w cpu)");
    expect_mixed(df_conv2d(a.d, w.d, c4.h, &p, &y), y, "conv2d(bias cpu)");
    expect_mixed(df_matmul(m.h, m.d, 0, 0, &y), y, "matmul");
    expect_mixed(df_linear(m.d, lw.h, NULL, &y), y, "linear(w cpu)");
    expect_mixed(df_linear(m.d, lw.d, c4.h, &y), y, "linear(bias cpu)");
    expect_mixed(df_attention(m.d, m.h, m.d, 1, 0, &y), y, "attention(k cpu)");
    expect_mixed(df_attention(m.d, m.d, m.h, 1, 0, &y), y, "attention(v cpu)");
    expect_mixed(df_group_norm(a.d, 2, c4.h, NULL, 1e-5f, 0, &y), y, "group_norm(gamma cpu)");
    expect_mixed(df_layer_norm(a.d, NULL, c4.h, 1e-5f, &y), y, "layer_norm(beta cpu)");
    expect_mixed(df_modulate(m.d, sh.h, sh.d, &y), y, "modulate(shift cpu)");
    const df_tensor *cat[2] = {m.d, m.h};
    expect_mixed(df_concat(2, cat, 0, &y), y, "concat");
    /* two OpenCL backends are two backends too */
    df_backend *other = NULL;
    ok(df_backend_opencl_create(NULL, &other), "second backend");
    df_tensor *o = NULL;
    ok(df_tensor_to(m.h, other, &o), "upload");
    expect_mixed(df_add(m.d, o, &y), y, "add(backend 1, backend 2)");
    df_tensor_free(o);
    cr_assert_eq(df_opencl_get_stats(other).bytes_in_use, 0);
    df_backend_free(other);
    pair_free(&a);
    pair_free(&w);
    pair_free(&lw);
    pair_free(&m);
    pair_free(&c4);
    pair_free(&sh);
    cr_assert_eq(df_opencl_get_stats(ocl).bytes_in_use, 0);
}

/* ---- devices and selection ---- */

static df_opencl_device_info *devices(int *n)
{
    df_opencl_device_info *d = NULL;
    ok(df_opencl_list_devices(&d, n), "list devices");
    cr_assert_geq(*n, 1);
    return d;
}

/* What a device test holds, released even when an assertion ends it early
 * (so a failure does not also show up as a leak under ASan). */
static df_backend *dev_be;
static df_opencl_device_info *dev_list;

static void device_cleanup(void)
{
    df_backend_free(dev_be);
    dev_be = NULL;
    df_opencl_free_devices(dev_list);
    dev_list = NULL;
}

Test(opencl_device, list, .fini = device_cleanup)
{
    int n = 0;
    df_opencl_device_info *d = dev_list = devices(&n);
    for (int i = 0; i < n; i++) {
        cr_log_info("device %d: %s / %s, %s, driver %s, %s, %d CUs, %.1f GiB (max alloc %.1f GiB)%s", d[i].index,
                    d[i].platform, d[i].name, d[i].version, d[i].driver, d[i].is_gpu ? "GPU" : "not a GPU",
                    d[i].compute_units, (double)d[i].global_mem / (1 << 30), (double)d[i].max_alloc / (1 << 30),
                    d[i].has_fp16 ? ", fp16" : "");
        cr_assert_eq(d[i].index, i);
        cr_assert_neq(d[i].name[0], '\0', "device %d has no name", i);
        cr_assert_gt(d[i].global_mem, 0, "device %d (%s): global_mem 0", i, d[i].name);
        cr_assert_gt(d[i].max_alloc, 0, "device %d (%s): max_alloc 0", i, d[i].name);
        cr_assert_leq(d[i].max_alloc, d[i].global_mem, "device %d (%s)", i, d[i].name);
        cr_assert_geq(d[i].compute_units, 1, "device %d (%s)", i, d[i].name);
        cr_assert(!strncmp(d[i].version, "OpenCL ", 7), "device %d version '%s'", i, d[i].version);
    }
    df_opencl_free_devices(NULL);
    df_backend_free(NULL);
}

static void expect_unknown(const char *selector, const df_opencl_device_info *d, int n)
{
    df_backend *be = (df_backend *)&be; /* must come back NULL */
    int rc = df_backend_opencl_create(selector, &be);
    const char *msg = df_last_error();
    cr_log_info("selector '%s': %s", selector, msg);
    cr_assert_neq(rc, DF_OK, "selector '%s' selected a device", selector);
    cr_assert_null(be, "selector '%s': failed but *out was not cleared", selector);
    cr_assert(strstr(msg, selector), "selector '%s': message does not name it: %s", selector, msg);
    for (int i = 0; i < n; i++)
        cr_assert(strstr(msg, d[i].name), "selector '%s': message does not list device %d (%s): %s", selector, i,
                  d[i].name, msg);
}

Test(opencl_device, unknown_selector)
{
    int n = 0;
    df_opencl_device_info *d = devices(&n);
    expect_unknown("no-such-device-xyz", d, n);
    char idx[16];
    snprintf(idx, sizeof idx, "%d", n + 6);
    expect_unknown(idx, d, n);
    df_opencl_free_devices(d);
}

static void select_ok(const char *selector, const df_opencl_device_info *want)
{
    df_backend *be = NULL;
    int rc = df_backend_opencl_create(selector, &be);
    cr_assert_eq(rc, DF_OK, "selector '%s': %s", selector, df_last_error());
    const df_opencl_device_info *got = df_opencl_device(be);
    cr_assert_not_null(got);
    cr_assert_eq(got->index, want->index, "selector '%s' chose device %d (%s), expected %d (%s)", selector, got->index,
                 got->name, want->index, want->name);
    cr_assert_str_eq(got->name, want->name);
    /* and it works */
    df_tensor *t = df_tensor_new(be, DF_F32, DIMS(5));
    cr_assert_not_null(t, "%s", df_last_error());
    ok(df_fill(t, 1.25f), "fill");
    float v[5];
    ok(df_tensor_read(t, v, sizeof v), "read");
    cr_assert_eq(v[4], 1.25f);
    df_tensor_free(t);
    df_backend_free(be);
}

Test(opencl_device, selectors)
{
    int n = 0;
    df_opencl_device_info *d = devices(&n);
    unsetenv("DIFUSA_DEVICE");
    select_ok("0", &d[0]);
    /* a case-changed piece of the name selects the first device whose
     * "<platform> <name>" contains it */
    char sub[128];
    snprintf(sub, sizeof sub, "%s", d[0].name);
    size_t len = strlen(sub);
    if (len > 12) memmove(sub, sub + 2, len - 2 + 1), sub[8] = '\0';
    for (char *p = sub; *p; p++) *p = (char)(islower((unsigned char)*p) ? toupper(*p) : tolower(*p));
    int first = -1;
    for (int i = 0; i < n && first < 0; i++) {
        char full[300];
        snprintf(full, sizeof full, "%s %s", d[i].platform, d[i].name);
        if (strcasestr(full, sub)) first = i;
    }
    cr_assert_geq(first, 0);
    cr_log_info("selector '%s' -> device %d", sub, first);
    select_ok(sub, &d[first]);
    if (n > 1) select_ok("1", &d[1]);
    df_opencl_free_devices(d);
}

Test(opencl_device, env_var)
{
    int n = 0;
    df_opencl_device_info *d = devices(&n);
    setenv("DIFUSA_DEVICE", "no-such-device-xyz", 1);
    expect_unknown("no-such-device-xyz", d, n); /* explicit, for the message */
    df_backend *be = NULL;
    cr_assert_neq(df_backend_opencl_create(NULL, &be), DF_OK, "NULL selector ignored DIFUSA_DEVICE");
    cr_assert(strstr(df_last_error(), "no-such-device-xyz"), "message: %s", df_last_error());
    cr_assert_neq(df_backend_opencl_create("", &be), DF_OK, "\"\" selector ignored DIFUSA_DEVICE");
    select_ok("0", &d[0]); /* an explicit selector wins */
    setenv("DIFUSA_DEVICE", "0", 1);
    select_ok(NULL, &d[0]);
    if (n > 1) {
        setenv("DIFUSA_DEVICE", "1", 1);
        select_ok(NULL, &d[1]);
    }
    unsetenv("DIFUSA_DEVICE");
    df_opencl_free_devices(d);
}

/* ---- allocations the device cannot hold ---- */

static int mentions_memory(const char *msg) { return strcasestr(msg, "memory") != NULL; }

Test(opencl_device, huge_allocation, .fini = device_cleanup)
{
    ok(df_backend_opencl_create(NULL, &dev_be), "create");
    df_backend *be = dev_be;
    const df_opencl_device_info *info = df_opencl_device(be);
    /* twice the device memory (elements of 4 bytes), still a valid size_t */
    int64_t big = (int64_t)(info->global_mem / 2) + 1;
    df_tensor *t = df_tensor_new(be, DF_F32, DIMS(big));
    cr_log_info("tensor of %lld f32 (device memory %llu bytes): %s", (long long)big,
                (unsigned long long)info->global_mem, df_last_error());
    cr_assert_null(t, "a %lld-byte tensor on a device with %llu bytes was allocated", (long long)big * 4,
                   (unsigned long long)info->global_mem);
    cr_assert(mentions_memory(df_last_error()), "message does not mention the memory: %s", df_last_error());
    cr_assert_null(df_tensor_zeros(be, DF_F32, DIMS(4, big / 4 + 1)));
    /* above the largest single allocation the device allows */
    if (info->max_alloc < info->global_mem) {
        int64_t n = (int64_t)(info->max_alloc / 4) + 1024;
        t = df_tensor_new(be, DF_F32, DIMS(n));
        cr_log_info("tensor of %lld bytes (max alloc %llu): %s", (long long)n * 4,
                    (unsigned long long)info->max_alloc, df_last_error());
        cr_assert_null(t, "a tensor above CL_DEVICE_MAX_MEM_ALLOC_SIZE was allocated");
        cr_assert(mentions_memory(df_last_error()) || strcasestr(df_last_error(), "alloc"), "message: %s",
                  df_last_error());
    }
    /* the backend still works */
    cr_assert_eq(df_opencl_get_stats(be).bytes_in_use, 0);
    df_tensor *s = df_tensor_new(be, DF_F32, DIMS(3, 3));
    cr_assert_not_null(s, "a small allocation after the failures: %s", df_last_error());
    ok(df_fill(s, 1), "fill");
    df_tensor_free(s);
}

/* ---- build errors ---- */

Test(opencl_device, build_check, .fini = device_cleanup)
{
    ok(df_backend_opencl_create(NULL, &dev_be), "create");
    df_backend *be = dev_be;
    int rc = df_opencl_build_check(be, "__kernel void df_test_fine(__global float *y) { y[get_global_id(0)] = 1.0f; }");
    cr_assert_eq(rc, DF_OK, "a valid kernel: %s", df_last_error());
    const char *broken = "__kernel void df_test_broken(__global float *y)\n"
                         "{\n"
                         "    y[get_global_id(0)] = df_no_such_identifier_42 * 2.0f;\n"
                         "}\n";
    for (int pass = 0; pass < 2; pass++) { /* the failure must not be cached as a success */
        rc = df_opencl_build_check(be, broken);
        cr_log_info("broken kernel (pass %d): %s", pass, df_last_error());
        cr_assert_neq(rc, DF_OK, "a kernel using an undeclared identifier built (pass %d)", pass);
        cr_assert_eq(rc, DF_EBACKEND, "status %s", df_status_name(rc));
        cr_assert(strstr(df_last_error(), "df_no_such_identifier_42"), "the message lacks the build log: %s",
                  df_last_error());
    }
    rc = df_opencl_build_check(be, "this is not OpenCL C at all {");
    cr_assert_neq(rc, DF_OK);
    /* the backend is unharmed */
    df_tensor *t = df_tensor_new(be, DF_F32, DIMS(4));
    ok(df_fill(t, 3), "fill after a failed build");
    df_tensor_free(t);
}

/* ---- the on-disk program cache ---- */

static char cache_dir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_cache_dir(void)
{
    if (cache_dir[0]) nftw(cache_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    cache_dir[0] = '\0';
    unsetenv("XDG_CACHE_HOME");
}

static int cache_files, garbage_mode;

static int visit_cache_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_F) return 0;
    cache_files++;
    if (garbage_mode) {
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f, "rewriting %s", path);
        for (off_t i = 0; i < (sb->st_size > 64 ? sb->st_size : 64); i++) fputc((int)(rand32() & 0xff), f);
        fclose(f);
    }
    return 0;
}

static int count_cache_files(int garbage)
{
    cache_files = 0;
    garbage_mode = garbage;
    nftw(cache_dir, visit_cache_file, 16, FTW_PHYS);
    return cache_files;
}

/* Creates a backend, runs one op (so a lazily built program is built) and
 * returns its stats. */
static df_opencl_stats create_and_run(const char *step)
{
    df_backend *be = NULL;
    int rc = df_backend_opencl_create(NULL, &be);
    cr_assert_eq(rc, DF_OK, "%s: %s", step, df_last_error());
    float v[6] = {1, 2, 3, 4, 5, 6}, out[6];
    df_tensor *h = df_tensor_from_data(DF_F32, DIMS(2, 3), v), *d = NULL, *y = NULL;
    ok(df_tensor_to(h, be, &d), step);
    ok(df_scale(d, 2, 1, &y), step);
    ok(df_tensor_read(y, out, sizeof out), step);
    for (int i = 0; i < 6; i++) cr_assert_eq(out[i], v[i] * 2 + 1, "%s: wrong result", step);
    df_tensor_free(h);
    df_tensor_free(d);
    df_tensor_free(y);
    df_opencl_stats st = df_opencl_get_stats(be);
    cr_log_info("%s: %d programs compiled, %d from the cache", step, st.programs_compiled, st.programs_from_cache);
    df_backend_free(be);
    return st;
}

Test(opencl_device, program_cache, .fini = remove_cache_dir)
{
    snprintf(cache_dir, sizeof cache_dir, "%s/difusa-test-cache-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(cache_dir), "mkdtemp: %s", strerror(errno));
    setenv("XDG_CACHE_HOME", cache_dir, 1);
    seed(24);

    df_opencl_stats st = create_and_run("empty cache");
    cr_assert_geq(st.programs_compiled, 1);
    cr_assert_eq(st.programs_from_cache, 0);
    int files = count_cache_files(0);
    cr_assert_geq(files, 1, "nothing was written under %s", cache_dir);

    st = create_and_run("warm cache");
    cr_assert_eq(st.programs_compiled, 0, "the cached program was compiled again");
    cr_assert_geq(st.programs_from_cache, 1);

    cr_assert_eq(count_cache_files(1), files); /* overwrite them all with garbage */
    st = create_and_run("corrupted cache");
    cr_assert_geq(st.programs_compiled, 1, "a corrupted cache entry was used");

    st = create_and_run("after the corrupted cache");
    if (st.programs_from_cache < 1)
        cr_log_warn("the cache entry was not rewritten after the corrupted one was rejected (compiled %d again)",
                    st.programs_compiled);
}

Test(opencl_device, unwritable_cache, .fini = remove_cache_dir)
{
    snprintf(cache_dir, sizeof cache_dir, "%s/difusa-test-cache-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(cache_dir), "mkdtemp: %s", strerror(errno));
    char file[300];
    snprintf(file, sizeof file, "%s/not-a-directory", cache_dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("x", f);
    fclose(f);
    setenv("XDG_CACHE_HOME", file, 1); /* the cache directory cannot be created */
    df_opencl_stats st = create_and_run("unwritable cache");
    cr_assert_geq(st.programs_compiled, 1);
}
