/* Shared helpers for the Criterion tests: fixture loading and closeness checks
 * against reference outputs (torch / diffusers, written by tools/). */
#ifndef DF_TESTUTIL_H
#define DF_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "opencl.h"
#include "tensor.h"

#define FIXTURE_DIR "tests/fixtures"

static inline df_safetensors *fx_open(const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, file);
    df_safetensors *st = NULL;
    int rc = df_safetensors_open(path, &st);
    cr_assert_eq(rc, DF_OK, "open %s: %s", path, df_last_error());
    return st;
}

/* An f32 copy of fixture tensor "<prefix>.<role>"; NULL when absent and optional. */
static inline df_tensor *fx_get_opt(df_safetensors *st, const char *prefix, const char *role)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", prefix, role);
    if (!df_safetensors_find(st, name)) return NULL;
    df_tensor *t = NULL;
    int rc = df_safetensors_get_f32(st, name, &t);
    cr_assert_eq(rc, DF_OK, "get %s: %s", name, df_last_error());
    return t;
}

static inline df_tensor *fx_get(df_safetensors *st, const char *prefix, const char *role)
{
    df_tensor *t = fx_get_opt(st, prefix, role);
    cr_assert_not_null(t, "fixture tensor %s.%s missing", prefix, role);
    return t;
}

/* The stored dtype (f16 weights stay f16). */
static inline df_tensor *fx_get_raw(df_safetensors *st, const char *prefix, const char *role)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", prefix, role);
    df_tensor *t = NULL;
    int rc = df_safetensors_get(st, name, &t);
    cr_assert_eq(rc, DF_OK, "get %s: %s", name, df_last_error());
    return t;
}

/* Integer parameter `key` of case `prefix` from the metadata entry
 * "<prefix>" = "key=value key=value ...". */
static inline double fx_param(df_safetensors *st, const char *prefix, const char *key, double dflt)
{
    const char *m = df_safetensors_metadata(st, prefix);
    if (!m) return dflt;
    size_t kl = strlen(key);
    for (const char *p = m; *p;) {
        while (*p == ' ') p++;
        if (!strncmp(p, key, kl) && p[kl] == '=') return strtod(p + kl + 1, NULL);
        while (*p && *p != ' ') p++;
    }
    return dflt;
}

/* An OpenCL backend for a suite that runs on OpenCL. Skips the test only
 * where no OpenCL device exists at all; DIFUSA_REQUIRE_OPENCL=1 (set by
 * `make test` under CI) turns that into a failure. */
static inline df_backend *fx_opencl_backend(void)
{
    df_opencl_device_info *devs = NULL;
    int ndev = 0, rc = df_opencl_list_devices(&devs, &ndev);
    df_opencl_free_devices(devs);
    cr_assert_eq(rc, DF_OK, "listing OpenCL devices: %s", df_last_error());
    if (ndev == 0) {
        const char *req = getenv("DIFUSA_REQUIRE_OPENCL");
        cr_assert(!(req && *req && strcmp(req, "0")), "DIFUSA_REQUIRE_OPENCL is set but there is no OpenCL device: %s",
                  df_last_error());
        cr_skip_test("no OpenCL device (%s): skipping the OpenCL tests", df_last_error());
    }
    df_backend *be = NULL;
    rc = df_backend_opencl_create(NULL, &be);
    cr_assert_eq(rc, DF_OK, "creating the OpenCL backend: %s", df_last_error());
    return be;
}

/* max |a-b| / max(|ref|, tiny): the error measure the issue names. */
static inline double rel_max_err(const df_tensor *got, const df_tensor *ref)
{
    const float *a = df_tensor_data(got), *b = df_tensor_data(ref);
    int64_t n = df_tensor_numel(ref);
    double maxref = 0, maxd = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= maxd)) maxd = d; /* NaN propagates */
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return maxd / (maxref > 1e-30 ? maxref : 1e-30);
}

#define assert_close(got, ref, tol, what)                                                     \
    do {                                                                                       \
        char s1_[64], s2_[64];                                                                 \
        cr_assert(df_tensor_same_shape((got), (ref)), "%s: shape %s, expected %s", (what),     \
                  df_tensor_shape_str((got), s1_, 64), df_tensor_shape_str((ref), s2_, 64));   \
        double e_ = rel_max_err((got), (ref));                                                 \
        cr_log_info("%s: max rel err %.3g", (what), e_);                                       \
        cr_assert(e_ <= (tol), "%s: max rel err %.3g > %.3g", (what), e_, (double)(tol));      \
    } while (0)

#endif
