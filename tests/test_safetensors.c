/* safetensors reader and writer: round trips, the lifetime of zero-copy
 * tensors, malformed files (generated here into a temporary directory), and
 * out-of-memory paths; plus the JSON reader underneath. */
#include "testutil.h"
#include "tmpdir.h"

#include "io/json.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a temporary directory per test ---- */

static void tmp_setup(void) { tmp_init("df_st"); }

TestSuite(safetensors, .init = tmp_setup, .fini = tmp_teardown);

/* A file whose header length prefix is `hlen`, followed by `header` and
 * `data_len` bytes of data (0, 1, 2, ...). */
static const char *write_file_len(const char *name, uint64_t hlen, const char *header, size_t data_len)
{
    size_t h = strlen(header), n = 8 + h + data_len;
    unsigned char *b = malloc(n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (unsigned char)i;
    const char *path = write_bytes(name, b, n);
    free(b);
    return path;
}

static const char *write_file(const char *name, const char *header, size_t data_len)
{
    return write_file_len(name, strlen(header), header, data_len);
}

/* Opening `path` fails, with a message naming the file and containing `phrase`. */
static void expect_bad(const char *path, const char *phrase)
{
    df_safetensors *st = (df_safetensors *)0x1;
    df_clear_error();
    int rc = df_safetensors_open(path, &st);
    const char *err = df_last_error();
    cr_assert_neq(rc, DF_OK, "%s opened although malformed (expected \"%s\")", path, phrase);
    cr_assert_null(st, "out not cleared on failure");
    cr_assert_not_null(strstr(err, path), "message does not name the file: %s", err);
    cr_assert_not_null(strstr(err, phrase), "message lacks \"%s\": %s", phrase, err);
    cr_log_info("%s", err);
}

static df_safetensors *open_ok(const char *path)
{
    df_safetensors *st = NULL;
    int rc = df_safetensors_open(path, &st);
    cr_assert_eq(rc, DF_OK, "open %s: %s", path, df_last_error());
    return st;
}

/* ---- round trips ---- */

static void fill_bytes(df_tensor *t, unsigned seed)
{
    unsigned char *p = df_tensor_data(t);
    for (size_t i = 0; i < df_tensor_nbytes(t); i++) p[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 8));
}

Test(safetensors, round_trip_dtypes_and_shapes)
{
    struct {
        const char *name;
        df_dtype dtype;
        int ndim;
        int64_t shape[4];
    } cases[] = {
        {"f32.matrix", DF_F32, 2, {2, 3}},
        {"f16.vector", DF_F16, 1, {5}},
        {"bf16.cube", DF_BF16, 3, {2, 3, 3}},
        {"i32.4d", DF_I32, 4, {3, 1, 2, 1}},
        {"f32.scalar", DF_F32, 0, {0}},
        {"f16.empty", DF_F16, 2, {0, 5}},
        {"f32.empty", DF_F32, 3, {4, 0, 2}},
        {"u8.odd", DF_U8, 1, {3}},
        {"f64.vec", DF_F64, 1, {3}},
        {"i64.vec", DF_I64, 2, {1, 2}},
        {"i8.vec", DF_I8, 1, {7}},
        {"i16.vec", DF_I16, 1, {3}},
        {"bool.vec", DF_BOOL, 1, {5}},
        {"bf16.scalar", DF_BF16, 0, {0}},
        {"f32.nchw", DF_F32, 4, {2, 4, 3, 5}},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    const char *names[N];
    df_tensor *ts[N];
    for (int i = 0; i < N; i++) {
        names[i] = cases[i].name;
        ts[i] = df_tensor_new(NULL, cases[i].dtype, cases[i].ndim, cases[i].shape);
        cr_assert_not_null(ts[i], "%s", df_last_error());
        fill_bytes(ts[i], (unsigned)i);
    }
    const char *path = tmp_path("rt.safetensors");
    int rc = df_safetensors_save(path, N, names, (const df_tensor *const *)ts, 0, NULL, NULL);
    cr_assert_eq(rc, DF_OK, "save: %s", df_last_error());
    cr_assert_eq(count_files(), 1, "temporary file left behind");

    /* the header is space-padded to a multiple of 8 */
    FILE *f = fopen(path, "rb");
    unsigned char len8[8];
    cr_assert_eq(fread(len8, 1, 8, f), 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    cr_assert_eq(hlen % 8, 0, "header length %llu not a multiple of 8", (unsigned long long)hlen);
    char *hdr = calloc(1, hlen + 1);
    cr_assert_eq(fread(hdr, 1, hlen, f), hlen);
    fclose(f);
    cr_assert_eq(hdr[0], '{');
    size_t end = strlen(hdr);
    while (end > 0 && hdr[end - 1] == ' ') end--;
    cr_assert_eq(hdr[end - 1], '}', "header: %s", hdr);
    free(hdr);

    df_safetensors *st = open_ok(path);
    cr_assert_str_eq(df_safetensors_path(st), path);
    cr_assert_eq(df_safetensors_count(st), N);
    cr_assert_eq(df_safetensors_metadata_count(st), 0);
    cr_assert_null(df_safetensors_metadata(st, "anything"));

    /* info is ordered by offset and the data area is covered contiguously */
    size_t next = 0;
    for (int i = 0; i < N; i++) {
        const df_st_info *inf = df_safetensors_info(st, i);
        cr_assert_eq(inf->offset, next, "%s at %zu, expected %zu", inf->name, inf->offset, next);
        next += inf->nbytes;
    }
    cr_assert_null(df_safetensors_info(st, N));
    cr_assert_null(df_safetensors_info(st, -1));

    for (int i = 0; i < N; i++) {
        const df_st_info *inf = df_safetensors_find(st, names[i]);
        cr_assert_not_null(inf, "%s missing", names[i]);
        cr_assert_str_eq(inf->name, names[i]);
        cr_assert_eq(inf->dtype, cases[i].dtype, "%s dtype", names[i]);
        cr_assert_eq(inf->ndim, cases[i].ndim, "%s ndim", names[i]);
        for (int d = 0; d < inf->ndim; d++) cr_assert_eq(inf->shape[d], cases[i].shape[d]);
        cr_assert_eq(inf->nbytes, df_tensor_nbytes(ts[i]));

        df_tensor *t = NULL;
        rc = df_safetensors_get(st, names[i], &t);
        cr_assert_eq(rc, DF_OK, "get %s: %s", names[i], df_last_error());
        cr_assert(df_tensor_same_shape(t, ts[i]), "%s shape", names[i]);
        cr_assert_eq(t->dtype, cases[i].dtype);
        cr_assert_eq(memcmp(df_tensor_data(t), df_tensor_data(ts[i]), inf->nbytes), 0, "%s data", names[i]);
        /* the writer aligns every tensor, so all of them are zero-copy */
        if (inf->nbytes) cr_assert_eq(df_tensor_data(t), df_safetensors_data(st, inf), "%s not zero-copy", names[i]);
        df_tensor_free(t);
    }
    cr_assert_null(df_safetensors_find(st, "nope"));

    /* get_f32 converts the float dtypes */
    df_tensor *t = NULL;
    rc = df_safetensors_get_f32(st, "f16.vector", &t);
    cr_assert_eq(rc, DF_OK, "%s", df_last_error());
    cr_assert_eq(t->dtype, DF_F32);
    const uint16_t *h = df_tensor_data(ts[1]);
    for (int i = 0; i < 5; i++) {
        float a = ((float *)df_tensor_data(t))[i], b = df_f16_to_f32(h[i]);
        cr_assert(memcmp(&a, &b, 4) == 0, "f16[%d]", i);
    }
    df_tensor_free(t);
    rc = df_safetensors_get_f32(st, "bf16.cube", &t);
    cr_assert_eq(rc, DF_OK, "%s", df_last_error());
    const uint16_t *bh = df_tensor_data(ts[2]);
    for (int i = 0; i < 18; i++) {
        float a = ((float *)df_tensor_data(t))[i], b = df_bf16_to_f32(bh[i]);
        cr_assert(memcmp(&a, &b, 4) == 0, "bf16[%d]", i);
    }
    df_tensor_free(t);
    rc = df_safetensors_get_f32(st, "f32.scalar", &t);
    cr_assert_eq(rc, DF_OK, "%s", df_last_error());
    cr_assert_eq(t->ndim, 0);
    cr_assert_eq(memcmp(df_tensor_data(t), df_tensor_data(ts[4]), 4), 0);
    cr_assert_neq(df_tensor_data(t), df_safetensors_data(st, df_safetensors_find(st, "f32.scalar")),
                  "get_f32 returns a fresh copy");
    df_tensor_free(t);
    rc = df_safetensors_get_f32(st, "f16.empty", &t);
    cr_assert_eq(rc, DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tensor_numel(t), 0);
    df_tensor_free(t);

    /* integer dtypes do not convert; missing names are reported */
    rc = df_safetensors_get_f32(st, "i32.4d", &t);
    cr_assert_eq(rc, DF_EDTYPE);
    cr_assert_null(t);
    cr_assert_not_null(strstr(df_last_error(), "'i32.4d'"), "%s", df_last_error());
    rc = df_safetensors_get(st, "missing.weight", &t);
    cr_assert_eq(rc, DF_ENOTFOUND);
    cr_assert_not_null(strstr(df_last_error(), "'missing.weight'"), "%s", df_last_error());
    cr_assert_not_null(strstr(df_last_error(), path), "%s", df_last_error());

    df_safetensors_close(st);
    for (int i = 0; i < N; i++) df_tensor_free(ts[i]);
}

Test(safetensors, f64_converts_to_f32)
{
    double v[3] = {1.5, -2.25, 1e10};
    int64_t shape[1] = {3};
    df_tensor *t = df_tensor_from_data(DF_F64, 1, shape, v);
    const char *name = "d";
    const char *path = tmp_path("f64.safetensors");
    cr_assert_eq(df_safetensors_save(path, 1, &name, (const df_tensor *const *)&t, 0, NULL, NULL), DF_OK, "%s",
                 df_last_error());
    df_tensor_free(t);
    df_safetensors *st = open_ok(path);
    cr_assert_eq(df_safetensors_get_f32(st, "d", &t), DF_OK, "%s", df_last_error());
    const float *f = df_tensor_data(t);
    for (int i = 0; i < 3; i++) cr_assert_eq(f[i], (float)v[i]);
    df_tensor_free(t);
    df_safetensors_close(st);
}

Test(safetensors, metadata_round_trip_with_special_characters)
{
    const char *keys[] = {"format", "quote\"d", "back\\slash", "unicode \xc3\xa9\xe2\x9c\x93 \xf0\x9f\x98\x80",
                          "ctl\n\t\r\b\f\x01\x1f", "", "z last"};
    const char *vals[] = {"pt", "say \"hi\"", "C:\\path\\to", "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\xa8",
                          "line1\nline2\x7f", "empty key", ""};
    enum { M = sizeof keys / sizeof keys[0] };
    float x = 3.0f;
    df_tensor *t = df_tensor_from_data(DF_F32, 0, NULL, &x);
    const char *name = "tensor \"with\" \\ odd \xc3\xa9 name";
    const char *path = tmp_path("meta.safetensors");
    int rc = df_safetensors_save(path, 1, &name, (const df_tensor *const *)&t, M, keys, vals);
    cr_assert_eq(rc, DF_OK, "save: %s", df_last_error());
    df_tensor_free(t);

    df_safetensors *st = open_ok(path);
    cr_assert_eq(df_safetensors_metadata_count(st), M);
    for (int i = 0; i < M; i++) {
        const char *v = df_safetensors_metadata(st, keys[i]);
        cr_assert_not_null(v, "key %d missing", i);
        cr_assert_str_eq(v, vals[i], "value %d", i);
        const char *k2, *v2;
        df_safetensors_metadata_at(st, i, &k2, &v2); /* file order */
        cr_assert_str_eq(k2, keys[i]);
        cr_assert_str_eq(v2, vals[i]);
    }
    const char *k2 = "x", *v2 = "y";
    df_safetensors_metadata_at(st, M, &k2, &v2);
    cr_assert_null(k2);
    cr_assert_null(v2);
    cr_assert_null(df_safetensors_metadata(st, "absent"));
    cr_assert_not_null(df_safetensors_find(st, name));
    df_safetensors_close(st);
}

Test(safetensors, reads_hand_written_file_with_escapes_and_padding)
{
    /* \u escapes (BMP and a surrogate pair), whitespace everywhere, unknown
     * fields ignored, a gap between tensors, trailing padding spaces */
    const char *hdr =
        " {\n\t\"__metadata__\" : {\"a\\u00e9\\ud83d\\ude00\\/\" : \"\\\"v\\\\\"} ,\r\n"
        "  \"w\\u0041\": {\"shape\": [2], \"dtype\": \"F32\", \"data_offsets\": [0, 8], \"extra\": [null, true, "
        "false, -1.5e+3, {}]},"
        "  \"b\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [12, 13]}}        ";
    const char *path = write_file("hand.safetensors", hdr, 13);
    df_safetensors *st = open_ok(path);
    cr_assert_eq(df_safetensors_count(st), 2);
    cr_assert_str_eq(df_safetensors_metadata(st, "a\xc3\xa9\xf0\x9f\x98\x80/"), "\"v\\");
    cr_assert_not_null(df_safetensors_find(st, "wA"));
    const df_st_info *b = df_safetensors_find(st, "b");
    cr_assert_not_null(b);
    cr_assert_eq(b->ndim, 0);
    cr_assert_eq(*(const unsigned char *)df_safetensors_data(st, b), 12);
    cr_assert_str_eq(df_safetensors_info(st, 0)->name, "wA");
    cr_assert_str_eq(df_safetensors_info(st, 1)->name, "b");
    df_safetensors_close(st);
}

/* ---- lifetime and alignment ---- */

/* Whether `path` is mapped into this process (1), not (0), or unknown (-1). */
static int is_mapped(const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, path) != NULL;
    fclose(f);
    return found;
}

Test(safetensors, tensor_outlives_close)
{
    float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    df_tensor *src = df_tensor_from_data(DF_F32, 2, shape, v);
    const char *names[2] = {"a", "b"};
    const df_tensor *ts[2] = {src, src};
    const char *path = tmp_path("life.safetensors");
    cr_assert_eq(df_safetensors_save(path, 2, names, ts, 0, NULL, NULL), DF_OK, "%s", df_last_error());
    df_tensor_free(src);

    df_safetensors *st = open_ok(path);
    df_tensor *a = NULL, *b = NULL;
    cr_assert_eq(df_safetensors_get(st, "a", &a), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_safetensors_get(st, "b", &b), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tensor_data(a), df_safetensors_data(st, df_safetensors_find(st, "a")), "not zero-copy");
    df_tensor *view = NULL;
    cr_assert_eq(df_tensor_reshape(a, 1, (int64_t[]){6}, &view), DF_OK);
    int maps = is_mapped(path);
    cr_assert_neq(maps, 0, "the file is not mapped while open");
    df_safetensors_close(st);
    unlink(path); /* the mapping does not need the name either */
    if (maps > 0) cr_assert_eq(is_mapped(path), 1, "unmapped although tensors still use it");

    const float *f = df_tensor_data(a);
    for (int i = 0; i < 6; i++) cr_assert_eq(f[i], v[i]);
    df_tensor_free(a);
    f = df_tensor_data(view); /* the view keeps the buffer, which keeps the mapping */
    for (int i = 0; i < 6; i++) cr_assert_eq(f[i], v[i]);
    df_tensor_free(view);
    /* writing into a zero-copy tensor is allowed (private pages) */
    ((float *)df_tensor_data(b))[0] = 42.0f;
    cr_assert_eq(((float *)df_tensor_data(b))[5], 6.0f);
    df_tensor_free(b);
    if (maps > 0) cr_assert_eq(is_mapped(path), 0, "mapping not released after the last tensor");
}

Test(safetensors, misaligned_tensor_is_copied)
{
    /* the data area starts 8-aligned; U8 [3] pushes the F32 and F16 tensors off alignment */
    const char *hdr = "{\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                      "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
                      "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[11,15]}}";
    char padded[512];
    snprintf(padded, sizeof padded, "%-*s", (int)((strlen(hdr) + 7) / 8 * 8), hdr);
    float fv[2] = {1.25f, -7.5f};
    uint16_t hv[2] = {df_f32_to_f16(0.5f), df_f32_to_f16(-3.0f)};
    unsigned char data[15] = {9, 8, 7};
    memcpy(data + 3, fv, 8);
    memcpy(data + 11, hv, 4);
    size_t hl = strlen(padded);
    unsigned char file[600];
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(file + 8, padded, hl);
    memcpy(file + 8 + hl, data, sizeof data);
    const char *path = write_bytes("mis.safetensors", file, 8 + hl + sizeof data);

    df_safetensors *st = open_ok(path);
    df_tensor *f = NULL, *h = NULL;
    cr_assert_eq(df_safetensors_get(st, "f", &f), DF_OK, "%s", df_last_error());
    cr_assert_neq(df_tensor_data(f), df_safetensors_data(st, df_safetensors_find(st, "f")), "expected a copy");
    cr_assert_eq(((uintptr_t)df_tensor_data(f)) % 4, 0);
    cr_assert_eq(memcmp(df_tensor_data(f), fv, 8), 0);
    cr_assert_eq(df_safetensors_get_f32(st, "h", &h), DF_OK, "%s", df_last_error());
    cr_assert_eq(((float *)df_tensor_data(h))[0], 0.5f);
    cr_assert_eq(((float *)df_tensor_data(h))[1], -3.0f);
    df_safetensors_close(st);
    cr_assert_eq(((float *)df_tensor_data(f))[1], -7.5f);
    df_tensor_free(f);
    df_tensor_free(h);
}

Test(safetensors, more_than_four_dims_opens_but_get_fails)
{
    const char *path = write_file("5d.safetensors",
                                  "{\"five\":{\"dtype\":\"F32\",\"shape\":[1,2,1,2,1],\"data_offsets\":[0,16]}}", 16);
    df_safetensors *st = open_ok(path);
    const df_st_info *inf = df_safetensors_find(st, "five");
    cr_assert_eq(inf->ndim, 5);
    df_tensor *t = (df_tensor *)0x1;
    cr_assert_eq(df_safetensors_get(st, "five", &t), DF_ESHAPE);
    cr_assert_null(t);
    cr_assert_not_null(strstr(df_last_error(), "'five' has 5 dims"), "%s", df_last_error());
    cr_assert_eq(df_safetensors_get_f32(st, "five", &t), DF_ESHAPE);
    df_safetensors_close(st);
}

Test(safetensors, many_tensors_find)
{
    enum { N = 3000 };
    static char namebuf[N][32];
    const char *names[N];
    const df_tensor *ts[N];
    int64_t shape[1] = {1};
    for (int i = 0; i < N; i++) {
        snprintf(namebuf[i], sizeof namebuf[i], "model.layer.%d.weight", (i * 7919) % N);
        names[i] = namebuf[i];
        float v = (float)((i * 7919) % N);
        ts[i] = df_tensor_from_data(DF_F32, 1, shape, &v);
    }
    const char *path = tmp_path("many.safetensors");
    cr_assert_eq(df_safetensors_save(path, N, names, ts, 0, NULL, NULL), DF_OK, "%s", df_last_error());
    for (int i = 0; i < N; i++) df_tensor_free((df_tensor *)ts[i]);
    df_safetensors *st = open_ok(path);
    cr_assert_eq(df_safetensors_count(st), N);
    for (int i = 0; i < N; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "model.layer.%d.weight", i);
        const df_st_info *inf = df_safetensors_find(st, nm);
        cr_assert_not_null(inf, "%s", nm);
        cr_assert_eq(*(const float *)df_safetensors_data(st, inf), (float)i);
    }
    df_safetensors_close(st);
}

/* ---- writer errors ---- */

Test(safetensors, save_rejects_bad_arguments)
{
    float v = 1;
    df_tensor *t = df_tensor_from_data(DF_F32, 0, NULL, &v);
    const df_tensor *ts[2] = {t, t};
    const char *dup[2] = {"x", "x"};
    const char *path = tmp_path("bad_save.safetensors");

    cr_assert_eq(df_safetensors_save(path, 2, dup, ts, 0, NULL, NULL), DF_EINVAL);
    cr_assert_not_null(strstr(df_last_error(), "duplicate tensor name 'x'"), "%s", df_last_error());
    cr_assert_not_null(strstr(df_last_error(), path), "%s", df_last_error());

    const char *reserved[1] = {"__metadata__"};
    cr_assert_eq(df_safetensors_save(path, 1, reserved, ts, 0, NULL, NULL), DF_EINVAL);
    cr_assert_not_null(strstr(df_last_error(), "reserved"), "%s", df_last_error());

    const char *bad_utf8[1] = {"a\xff"};
    cr_assert_eq(df_safetensors_save(path, 1, bad_utf8, ts, 0, NULL, NULL), DF_EINVAL);
    cr_assert_not_null(strstr(df_last_error(), "UTF-8"), "%s", df_last_error());

    const char *ok[1] = {"y"}, *mk[2] = {"k", "k"}, *mv[2] = {"1", "2"};
    cr_assert_eq(df_safetensors_save(path, 1, ok, ts, 2, mk, mv), DF_EINVAL);
    cr_assert_not_null(strstr(df_last_error(), "duplicate metadata key 'k'"), "%s", df_last_error());
    cr_assert_eq(count_files(), 0);

    /* a missing directory: an i/o error naming the path, nothing left behind */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir/out.safetensors", tmp_dir);
    cr_assert_eq(df_safetensors_save(missing, 1, ok, ts, 0, NULL, NULL), DF_EIO);
    cr_assert_not_null(strstr(df_last_error(), missing), "%s", df_last_error());
    cr_assert_eq(count_files(), 0);
    df_tensor_free(t);
}

/* Every allocation failure during save leaves the old file intact and no
 * temporary file; during open it fails cleanly (ASan checks for leaks). */
Test(safetensors, out_of_memory_paths)
{
    float v[4] = {1, 2, 3, 4};
    int64_t shape[2] = {2, 2};
    df_tensor *t = df_tensor_from_data(DF_F32, 2, shape, v);
    df_tensor *h = df_tensor_new(NULL, DF_F16, 1, (int64_t[]){3});
    fill_bytes(h, 5);
    const char *names[2] = {"t", "h"}, *mk[1] = {"k"}, *mv[1] = {"v"};
    const df_tensor *ts[2] = {t, h};
    const char *path = write_bytes("oom.safetensors", "old contents", 12);

    int failures = 0;
    for (long n = 1;; n++) {
        df_alloc_fail_after(n);
        int rc = df_safetensors_save(path, 2, names, ts, 1, mk, mv);
        df_alloc_fail_after(0);
        if (rc == DF_OK) break;
        failures++;
        cr_assert_eq(rc, DF_ENOMEM, "allocation %ld: %s", n, df_last_error());
        cr_assert_not_null(strstr(df_last_error(), path), "%s", df_last_error());
        cr_assert_eq(count_files(), 1, "temporary file left after failure %ld", n);
        FILE *f = fopen(path, "rb");
        char buf[16] = {0};
        cr_assert_eq(fread(buf, 1, sizeof buf, f), 12);
        fclose(f);
        cr_assert_str_eq(buf, "old contents");
        cr_assert(n < 1000);
    }
    cr_assert_gt(failures, 0);
    cr_assert_eq(count_files(), 1);

    for (long n = 1;; n++) {
        df_safetensors *st = NULL;
        df_alloc_fail_after(n);
        int rc = df_safetensors_open(path, &st);
        df_alloc_fail_after(0);
        if (rc == DF_OK) {
            df_tensor *g = NULL;
            df_alloc_fail_after(1);
            rc = df_safetensors_get(st, "t", &g);
            df_alloc_fail_after(0);
            cr_assert_eq(rc, DF_ENOMEM);
            cr_assert_null(g);
            for (long k = 1;; k++) {
                df_alloc_fail_after(k);
                rc = df_safetensors_get_f32(st, "h", &g);
                df_alloc_fail_after(0);
                if (rc == DF_OK) break;
                cr_assert_eq(rc, DF_ENOMEM, "%s", df_last_error());
                cr_assert_null(g);
                cr_assert(k < 100);
            }
            df_tensor_free(g);
            df_safetensors_close(st);
            break;
        }
        cr_assert_eq(rc, DF_ENOMEM, "allocation %ld: %s", n, df_last_error());
        cr_assert_null(st);
        cr_assert_not_null(strstr(df_last_error(), path), "%s", df_last_error());
        cr_assert(n < 1000);
    }
    df_tensor_free(t);
    df_tensor_free(h);
}

/* ---- malformed files: each names the file and the problem ---- */

static const char ENTRY[] = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

Test(safetensors, bad_missing_file)
{
    expect_bad(tmp_path("does_not_exist.safetensors"), "cannot open");
}

Test(safetensors, bad_directory)
{
    expect_bad(tmp_dir, "not a regular file");
}

Test(safetensors, bad_empty_file)
{
    expect_bad(write_bytes("empty.safetensors", "", 0), "file too short");
}

Test(safetensors, bad_truncated_length)
{
    expect_bad(write_bytes("short.safetensors", "\x10\0\0\0\0", 5), "file too short");
}

Test(safetensors, bad_header_past_end_of_file)
{
    expect_bad(write_file_len("past.safetensors", 4096, "{}", 10), "extends past the end of the file");
    /* exactly 8 bytes: any nonzero length is past the end */
    expect_bad(write_bytes("only8.safetensors", "\x02\0\0\0\0\0\0\0", 8), "extends past the end of the file");
}

Test(safetensors, bad_huge_header_length)
{
    expect_bad(write_file_len("huge.safetensors", (uint64_t)1 << 63, "{}", 0), "header too large");
    expect_bad(write_file_len("huge2.safetensors", UINT64_MAX, "{}", 0), "header too large");
}

Test(safetensors, bad_empty_header)
{
    expect_bad(write_bytes("nohdr.safetensors", "\0\0\0\0\0\0\0\0", 8), "unexpected end of input");
}

Test(safetensors, bad_json)
{
    struct {
        const char *header, *phrase;
    } cases[] = {
        {"{\"a\":", "unexpected end of input"},
        {"{\"a", "unterminated string"},
        {"{\"a\":{}", "unterminated object"},
        {"{\"a\":[1,2}", "expected ',' or ']'"},
        {"{\"a\" {}}", "expected ':'"},
        {"{\"a\":{\"dtype\":\"F32\"},}", "expected a string key"},
        {"{a:1}", "expected a string key"},
        {"{\"a\":{}} x", "trailing characters"},
        {"{}{}", "trailing characters"},
        {"{\"a\\q\":{}}", "invalid escape"},
        {"{\"a\\u12\":{}}", "invalid \\u escape"},
        {"{\"a\\ud800\":{}}", "unpaired surrogate"},
        {"{\"a\\udc00x\":{}}", "unpaired surrogate"},
        {"{\"a\\u0000\":{}}", "\\u0000"},
        {"{\"a\tb\":{}}", "control character"},
        {"{\"a\xff\":{}}", "invalid UTF-8"},
        {"{\"a\xc0\xaf\":{}}", "invalid UTF-8"},       /* overlong '/' */
        {"{\"a\xed\xa0\x80\":{}}", "invalid UTF-8"},   /* encoded surrogate */
        {"{\"a\":{\"shape\":[01]}}", "leading zero"},
        {"{\"a\":{\"shape\":[1.]}}", "digits must follow '.'"},
        {"{\"a\":{\"shape\":[1e]}}", "bad exponent"},
        {"{\"a\":{\"shape\":[-]}}", "invalid number"},
        {"{\"a\":{\"shape\":[+1]}}", "unexpected character"},
        {"{\"a\":tru}", "invalid literal"},
        {"{\"a\":'x'}", "unexpected character"},
        {"\xef\xbb\xbf{}", "unexpected character"}, /* a byte-order mark */
        {"[1,2]", "header is not a JSON object"},
        {"\"str\"", "header is not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "json%zu.safetensors", i);
        expect_bad(write_file(name, cases[i].header, 0), cases[i].phrase);
    }
    /* the byte position is reported */
    expect_bad(write_file("pos.safetensors", "{\"a\" {}}", 0), "invalid JSON at byte 5");
}

Test(safetensors, bad_json_nesting)
{
    char hdr[400] = "{\"a\":";
    for (int i = 0; i < 100; i++) strcat(hdr, "[");
    expect_bad(write_file("deep.safetensors", hdr, 0), "nested too deeply");
}

Test(safetensors, bad_overlapping_ranges)
{
    expect_bad(write_file("overlap.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                          24),
               "overlap");
    /* a later range inside an earlier, longer one */
    expect_bad(write_file("inside.safetensors",
                          "{\"a\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},"
                          "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
                          "\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[20,24]}}",
                          32),
               "'a' [0, 32) and 'b' [4, 8) overlap");
    /* empty ranges overlap nothing */
    df_safetensors_close(open_ok(write_file("empty_inside.safetensors",
                                            "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                                            "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                                            8)));
}

Test(safetensors, bad_size_mismatch)
{
    expect_bad(write_file("mismatch.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24),
               "tensor 'w': size mismatch");
    expect_bad(write_file("mismatch0.safetensors", "{\"w\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,0]}}", 8),
               "size mismatch");
}

Test(safetensors, bad_offsets_past_data_area)
{
    expect_bad(write_file("pastdata.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8),
               "tensor 'w': data_offsets [8, 16] go past the end of the data area");
    expect_bad(write_file("pastdata2.safetensors",
                          "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9,9]}}", 8),
               "past the end of the data area");
    expect_bad(write_file("bigoff.safetensors",
                          "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18446744073709551615,"
                          "18446744073709551616]}}",
                          8),
               "data_offsets end is too large");
}

Test(safetensors, bad_overflowing_shape)
{
    expect_bad(write_file("ovf.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,0]}}", 0),
               "tensor 'w': shape overflows");
    /* fits in int64 elements, but not in bytes */
    expect_bad(write_file("ovf2.safetensors",
                          "{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}", 0),
               "shape overflows");
    expect_bad(write_file("ovf3.safetensors",
                          "{\"w\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,0]}}", 0),
               "dimension 0 is too large");
    expect_bad(write_file("ovf4.safetensors",
                          "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,99999999999999999999999],\"data_offsets\":[0,0]}}", 0),
               "dimension 1 is too large");
    /* a zero dim makes the product zero however large the rest */
    df_safetensors_close(open_ok(write_file(
        "zero_big.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[0,0]}}",
        0)));
}

Test(safetensors, bad_dims)
{
    expect_bad(write_file("neg.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8),
               "tensor 'w': dimension 1 is negative");
    expect_bad(write_file("frac.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8),
               "dimension 0 is not an integer");
    expect_bad(write_file("strdim.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8),
               "dimension 0 is not a number");
    expect_bad(write_file("ninedims.safetensors",
                          "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 8),
               "tensor 'w': too many dimensions (9; at most 8)");
    expect_bad(write_file("shapeobj.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,8]}}", 8),
               "'shape' is not an array");
}

Test(safetensors, bad_unknown_dtype)
{
    expect_bad(write_file("dtype.safetensors", "{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "tensor 'w': unknown dtype 'F33'");
    expect_bad(write_file("dtype2.safetensors", "{\"w\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "unknown dtype 'f32'");
    expect_bad(write_file("dtype3.safetensors", "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "'dtype' is not a string");
}

Test(safetensors, bad_duplicate_name)
{
    char hdr[512];
    snprintf(hdr, sizeof hdr, "{\"w\":%s,\"x\":%s,\"w\":%s}", ENTRY,
             "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}",
             "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}");
    expect_bad(write_file("dup.safetensors", hdr, 24), "duplicate tensor name 'w'");
    /* identical entries: still reported as a duplicate, not an overlap */
    snprintf(hdr, sizeof hdr, "{\"w\":%s,\"w\":%s}", ENTRY, ENTRY);
    expect_bad(write_file("dup2.safetensors", hdr, 8), "duplicate tensor name 'w'");
    expect_bad(write_file("dupfield.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "tensor 'w': duplicate 'dtype'");
}

Test(safetensors, bad_missing_fields)
{
    expect_bad(write_file("nooff.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8),
               "tensor 'w': missing 'data_offsets'");
    expect_bad(write_file("noshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8),
               "tensor 'w': missing 'shape'");
    expect_bad(write_file("nodtype.safetensors", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "tensor 'w': missing 'dtype'");
    expect_bad(write_file("notobj.safetensors", "{\"w\":[1,2]}", 8), "tensor 'w': entry is not a JSON object");
    expect_bad(write_file("off3.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8),
               "'data_offsets' is not an array of two integers");
    expect_bad(write_file("offneg.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8),
               "data_offsets begin is negative");
}

Test(safetensors, bad_metadata)
{
    char hdr[512];
    snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"ok\":\"yes\",\"k\":1},\"w\":%s}", ENTRY);
    expect_bad(write_file("meta.safetensors", hdr, 8), "'__metadata__' value for key 'k' is not a string");
    snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"k\":null}}");
    expect_bad(write_file("meta2.safetensors", hdr, 0), "value for key 'k' is not a string");
    snprintf(hdr, sizeof hdr, "{\"__metadata__\":[\"k\"]}");
    expect_bad(write_file("meta3.safetensors", hdr, 0), "'__metadata__' is not a JSON object");
    snprintf(hdr, sizeof hdr, "{\"__metadata__\":{},\"__metadata__\":{}}");
    expect_bad(write_file("meta4.safetensors", hdr, 0), "duplicate '__metadata__'");
    snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}");
    expect_bad(write_file("meta5.safetensors", hdr, 0), "duplicate '__metadata__' key 'k'");
}

Test(safetensors, bad_end_before_begin)
{
    expect_bad(write_file("endbegin.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8),
               "tensor 'w': data_offsets end 0 is before begin 8");
}

Test(safetensors, edge_files_that_are_valid)
{
    /* no tensors at all; a header of spaces after the object; data after the last tensor */
    df_safetensors *st = open_ok(write_file("empty_obj.safetensors", "{}      ", 0));
    cr_assert_eq(df_safetensors_count(st), 0);
    cr_assert_null(df_safetensors_find(st, "x"));
    df_safetensors_close(st);
    st = open_ok(write_file("slack.safetensors", "{\"w\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 100));
    cr_assert_eq(df_safetensors_count(st), 1);
    df_safetensors_close(st);
    df_safetensors_close(NULL);

    /* saving nothing gives a valid, empty file */
    const char *path = tmp_path("none.safetensors");
    cr_assert_eq(df_safetensors_save(path, 0, NULL, NULL, 0, NULL, NULL), DF_OK, "%s", df_last_error());
    st = open_ok(path);
    cr_assert_eq(df_safetensors_count(st), 0);
    cr_assert_eq(df_safetensors_metadata_count(st), 0);
    df_safetensors_close(st);
}

/* ---- the JSON reader and writer ---- */

Test(json, parses_values_and_escapes)
{
    const char *text = "{\"s\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u4e16\\ud83d\\ude00\","
                       "\"n\":[0,-0,12,-3.5e-2,1E+2,18446744073709551615,18446744073709551616],"
                       "\"l\":[true,false,null],\"o\":{\"x\":{}},\"e\":[]}";
    df_json *v = NULL;
    cr_assert_eq(df_json_parse(text, strlen(text), &v), DF_OK, "%s", df_last_error());
    cr_assert_eq(v->type, DF_JSON_OBJECT);
    cr_assert_eq(v->n, 5);
    const df_json *s = df_json_get(v, "s");
    cr_assert_str_eq(s->str, "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe4\xb8\x96\xf0\x9f\x98\x80");
    const df_json *n = df_json_get(v, "n");
    cr_assert_eq(n->n, 7);
    uint64_t u;
    const char *why = NULL;
    cr_assert_eq(df_json_u64(&n->items[2], &u, &why), DF_OK);
    cr_assert_eq(u, 12);
    cr_assert_eq(df_json_u64(&n->items[1], &u, &why), DF_EFORMAT);
    cr_assert_str_eq(why, "is negative");
    cr_assert_eq(df_json_u64(&n->items[3], &u, &why), DF_EFORMAT);
    cr_assert_str_eq(why, "is not an integer");
    cr_assert_eq(df_json_u64(&n->items[4], &u, &why), DF_EFORMAT);
    cr_assert_str_eq(why, "is not an integer");
    cr_assert_eq(df_json_u64(&n->items[5], &u, &why), DF_OK);
    cr_assert_eq(u, UINT64_MAX);
    cr_assert_eq(df_json_u64(&n->items[6], &u, &why), DF_EFORMAT);
    cr_assert_str_eq(why, "is too large");
    double d;
    cr_assert_eq(df_json_double(&n->items[3], &d), DF_OK);
    cr_assert_float_eq(d, -0.035, 1e-12);
    cr_assert_eq(df_json_double(&n->items[4], &d), DF_OK);
    cr_assert_eq(d, 100.0);
    const df_json *l = df_json_get(v, "l");
    cr_assert_eq(l->items[0].type, DF_JSON_TRUE);
    cr_assert_eq(l->items[1].type, DF_JSON_FALSE);
    cr_assert_eq(l->items[2].type, DF_JSON_NULL);
    cr_assert_eq(df_json_get(df_json_get(v, "o"), "x")->type, DF_JSON_OBJECT);
    cr_assert_eq(df_json_get(v, "e")->n, 0);
    cr_assert_null(df_json_get(v, "missing"));
    cr_assert_null(df_json_get(l, "x"));
    df_json_free(v);

    /* the parser reads only [0, len): no terminator needed */
    char buf[3] = {'1', '2', '3'};
    cr_assert_eq(df_json_parse(buf, 2, &v), DF_OK);
    cr_assert_eq(df_json_u64(v, &u, &why), DF_OK);
    cr_assert_eq(u, 12);
    df_json_free(v);
}

Test(json, writer_round_trips_every_byte)
{
    char s[256];
    for (int i = 1; i < 256; i++) s[i - 1] = (char)i;
    s[255] = '\0';
    /* only the ASCII part: bytes >= 0x80 alone are not UTF-8 */
    s[127] = '\0';
    df_json_buf b = {0};
    df_json_buf_string(&b, s);
    df_json_buf_printf(&b, " %d", 7);
    cr_assert(!b.failed);
    df_json *v = NULL;
    cr_assert_eq(df_json_parse(b.data, b.len - 2, &v), DF_OK, "%s: %s", df_last_error(), b.data);
    cr_assert_str_eq(v->str, s);
    df_json_free(v);
    cr_assert_str_eq(b.data + b.len - 2, " 7");
    df_json_buf_free(&b);
    cr_assert(df_json_utf8_valid("\xf4\x8f\xbf\xbf", 4));
    cr_assert(!df_json_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    cr_assert(!df_json_utf8_valid("\xe2\x82", 2));         /* truncated */
}

Test(json, out_of_memory_is_clean)
{
    const char *text = "{\"a\":[1,2,{\"b\":\"c\\u00e9\"}],\"d\":\"e\",\"f\":[[],[[]]]}";
    for (long n = 1;; n++) {
        df_json *v = NULL;
        df_alloc_fail_after(n);
        int rc = df_json_parse(text, strlen(text), &v);
        df_alloc_fail_after(0);
        if (rc == DF_OK) {
            df_json_free(v);
            break;
        }
        cr_assert_eq(rc, DF_ENOMEM);
        cr_assert_null(v);
        cr_assert(n < 1000);
    }
}
