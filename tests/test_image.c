/* core/io/image: loading and saving (pixel round trips, diffusers' rounding),
 * PNG text chunks (written and read back, PNGs written by PIL, PNGs built by
 * hand here, malformed files), grid / resize (against torch) / crop, A1111's
 * infotext and short hash, SHA-256 (FIPS 180-4 vectors), out-of-memory paths. */
#include "testutil.h"
#include "tmpdir.h"

#include "backend.h"
#include "io/image.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

/* Exported by libstb, declared only in stb_image_write's implementation part. */
unsigned char *stbi_zlib_compress(unsigned char *data, int data_len, int *out_len, int quality);

/* ---- a temporary directory per test ---- */

static void tmp_setup(void) { tmp_init("df_img"); }

TestSuite(image, .init = tmp_setup, .fini = tmp_teardown);

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* A failure with a message naming `path` and containing `phrase`. */
static void expect_error(int rc, int want, const char *path, const char *phrase)
{
    const char *err = df_last_error();
    cr_assert_eq(rc, want, "expected %s, got %s: %s", df_status_name(want), df_status_name(rc), err);
    if (path) cr_assert_not_null(strstr(err, path), "message does not name %s: %s", path, err);
    if (phrase) cr_assert_not_null(strstr(err, phrase), "message lacks \"%s\": %s", phrase, err);
    cr_log_info("%s", err);
}

static df_tensor *image_new(int64_t b, int64_t c, int64_t h, int64_t w)
{
    df_tensor *t = df_tensor_new(NULL, DF_F32, 4, (int64_t[]){b, c, h, w});
    cr_assert_not_null(t);
    return t;
}

/* (1, 3, H, W) on the 8-bit grid: channel c at (y, x) holds level (x + W·y + 85·c) mod 256. */
static df_tensor *grid_image(int h, int w)
{
    df_tensor *t = image_new(1, 3, h, w);
    float *d = df_tensor_data(t);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < h * w; i++) d[c * h * w + i] = (float)((i + 85 * c) % 256) / 127.5f - 1.0f;
    return t;
}

/* Raw 8-bit RGB of a file, through stb directly. */
static unsigned char *raw_rgb(const char *path, int *w, int *h)
{
    int c;
    unsigned char *p = stbi_load(path, w, h, &c, 3);
    cr_assert_not_null(p, "stb cannot read %s: %s", path, stbi_failure_reason());
    return p;
}

/* A raw U8 fixture tensor from tests/fixtures/images/images.safetensors. */
static const unsigned char *fx_u8(df_safetensors *st, const char *name, size_t *n)
{
    const df_st_info *info = df_safetensors_find(st, name);
    cr_assert_not_null(info, "fixture %s missing", name);
    cr_assert_eq(info->dtype, DF_U8);
    *n = info->nbytes;
    return df_safetensors_data(st, info);
}

/* ---- loading and saving pixels ---- */

Test(image, save_load_round_trip_is_exact_on_the_8bit_grid)
{
    df_tensor *img = grid_image(16, 20);
    const char *path = tmp_path("grid.png");
    cr_assert_eq(df_image_save(img, path, NULL, 0), DF_OK, "%s", df_last_error());

    int w, h;
    unsigned char *raw = raw_rgb(path, &w, &h);
    cr_assert_eq(w, 20);
    cr_assert_eq(h, 16);
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < 3; c++)
            cr_assert_eq(raw[3 * i + c], (i + 85 * c) % 256, "pixel %d channel %d", i, c);
    stbi_image_free(raw);

    df_tensor *back = NULL;
    cr_assert_eq(df_image_load(path, &back), DF_OK, "%s", df_last_error());
    cr_assert(df_tensor_same_shape(back, img));
    cr_assert_eq(back->dtype, DF_F32);
    cr_assert_eq(memcmp(df_tensor_data(back), df_tensor_data(img), df_tensor_nbytes(img)), 0,
                 "load(save(x)) != x on the 8-bit grid");
    df_tensor_free(back);
    df_tensor_free(img);
}

Test(image, save_rounds_like_diffusers_postprocess)
{
    df_safetensors *st = fx_open("images/images.safetensors");
    df_tensor *x = fx_get(st, "save", "input");
    size_t n;
    const unsigned char *want = fx_u8(st, "save.expected", &n);
    const char *path = tmp_path("ties.png");
    cr_assert_eq(df_image_save(x, path, NULL, 0), DF_OK, "%s", df_last_error());
    int w, h;
    unsigned char *raw = raw_rgb(path, &w, &h);
    cr_assert_eq((size_t)(w * h * 3), n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += raw[i] != want[i];
    cr_assert_eq(bad, 0, "%d of %zu pixels differ from diffusers' numpy_to_pil", bad, n);
    stbi_image_free(raw);
    df_tensor_free(x);
    df_safetensors_close(st);
}

Test(image, save_clamps_and_maps_nan_to_zero)
{
    df_tensor *img = image_new(1, 3, 1, 4);
    float *d = df_tensor_data(img);
    float v[4] = {-5.0f, 7.0f, NAN, INFINITY};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 4; i++) d[c * 4 + i] = v[i];
    const char *path = tmp_path("clamp.png");
    cr_assert_eq(df_image_save(img, path, NULL, 0), DF_OK, "%s", df_last_error());
    int w, h;
    unsigned char *raw = raw_rgb(path, &w, &h);
    unsigned char want[4] = {0, 255, 0, 255};
    for (int i = 0; i < 4; i++) cr_assert_eq(raw[3 * i], want[i], "value %g", (double)v[i]);
    stbi_image_free(raw);
    df_tensor_free(img);
}

Test(image, save_reads_f16_tensors)
{
    df_tensor *img = grid_image(4, 4), *h16 = NULL;
    cr_assert_eq(df_cast(img, DF_F16, &h16), DF_OK);
    const char *a = tmp_path("f32.png"), *b = tmp_path("f16.png");
    cr_assert_eq(df_image_save(img, a, NULL, 0), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_image_save(h16, b, NULL, 0), DF_OK, "%s", df_last_error());
    int w, h;
    unsigned char *ra = raw_rgb(a, &w, &h), *rb = raw_rgb(b, &w, &h);
    /* f16 keeps 11 significant bits: every level survives */
    cr_assert_eq(memcmp(ra, rb, 48), 0);
    stbi_image_free(ra);
    stbi_image_free(rb);
    df_tensor_free(h16);
    df_tensor_free(img);
}

Test(image, save_rejects_bad_tensors_and_paths)
{
    df_tensor *b2 = image_new(2, 3, 4, 4), *c4 = image_new(1, 4, 4, 4);
    const char *path = tmp_path("x.png");
    expect_error(df_image_save(b2, path, NULL, 0), DF_ESHAPE, path, "df_image_grid");
    expect_error(df_image_save(c4, path, NULL, 0), DF_ESHAPE, path, "(1, 4, 4, 4)");
    df_tensor *i32 = df_tensor_new(NULL, DF_I32, 4, (int64_t[]){1, 3, 2, 2});
    expect_error(df_image_save(i32, path, NULL, 0), DF_EDTYPE, path, NULL);
    df_tensor *ok = grid_image(2, 2);
    expect_error(df_image_save(ok, path, NULL, 2), DF_EINVAL, path, NULL);
    const char *nodir = tmp_path("no/such/dir.png");
    expect_error(df_image_save(ok, nodir, NULL, 0), DF_EIO, nodir, "No such file");
    cr_assert_eq(count_files(), 0, "a failed save left a file");
    df_tensor_free(ok);
    df_tensor_free(i32);
    df_tensor_free(b2);
    df_tensor_free(c4);
}

Test(image, save_replaces_an_existing_file_atomically)
{
    const char *path = write_bytes("out.png", "old contents", 12);
    df_tensor *img = grid_image(3, 3);
    cr_assert_eq(df_image_save(img, path, NULL, 0), DF_OK, "%s", df_last_error());
    cr_assert_eq(count_files(), 1, "temporary file left behind");
    int w, h;
    stbi_image_free(raw_rgb(path, &w, &h));
    /* a failing save (bad key) leaves the old file as it was */
    df_image_text bad = {"", "x"};
    size_t n0, n1;
    unsigned char *before = read_bytes(path, &n0);
    expect_error(df_image_save(img, path, &bad, 1), DF_EINVAL, path, "key");
    unsigned char *after = read_bytes(path, &n1);
    cr_assert(n0 == n1 && !memcmp(before, after, n0));
    cr_assert_eq(count_files(), 1);
    free(before);
    free(after);
    df_tensor_free(img);
}

Test(image, load_errors_name_the_file_and_the_reason)
{
    df_tensor *t = (df_tensor *)0x1;
    const char *missing = tmp_path("missing.png");
    expect_error(df_image_load(missing, &t), DF_EIO, missing, "No such file");
    cr_assert_null(t);
    const char *txt = write_bytes("notes.png", "this is not an image", 20);
    expect_error(df_image_load(txt, &t), DF_EFORMAT, txt, "cannot decode");
    cr_assert_gt(strlen(strstr(df_last_error(), "decode image: ")), strlen("decode image: "), "no stb reason");
    const char *empty = write_bytes("empty.png", "", 0);
    expect_error(df_image_load_mask(empty, &t), DF_EFORMAT, empty, NULL);
    expect_error(df_image_load(tmp_dir, &t), DF_EIO, tmp_dir, "not a regular file");
    cr_assert_eq(df_image_load(NULL, &t), DF_EINVAL);
}

/* PNGs written by PIL: pixels as PIL's convert("RGB") gives them, masks as its convert("L"). */
Test(image, loads_pil_pngs_as_pil_converts_them)
{
    df_safetensors *st = fx_open("images/images.safetensors");
    const char *files[] = {"pil_text.png", "pil_grey.png", "pil_rgba.png", "pil_palette.png"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[256], name[64];
        snprintf(path, sizeof path, "%s/images/%s", FIXTURE_DIR, files[f]);
        size_t n, nl;
        snprintf(name, sizeof name, "%s.rgb", files[f]);
        const unsigned char *rgb = fx_u8(st, name, &n);
        snprintf(name, sizeof name, "%s.L", files[f]);
        const unsigned char *lum = fx_u8(st, name, &nl);

        df_tensor *img = NULL, *mask = NULL;
        cr_assert_eq(df_image_load(path, &img), DF_OK, "%s", df_last_error());
        cr_assert_eq(df_image_load_mask(path, &mask), DF_OK, "%s", df_last_error());
        int64_t H = img->shape[2], W = img->shape[3];
        cr_assert_eq((size_t)(H * W * 3), n, "%s: size", files[f]);
        cr_assert_eq(mask->shape[1], 1);
        cr_assert(mask->shape[2] == H && mask->shape[3] == W);
        const float *d = df_tensor_data(img), *m = df_tensor_data(mask);
        for (int64_t i = 0; i < H * W; i++) {
            for (int c = 0; c < 3; c++)
                cr_assert_eq(d[c * H * W + i], (float)rgb[3 * i + c] / 127.5f - 1.0f, "%s: pixel %lld channel %d",
                             files[f], (long long)i, c);
            cr_assert_eq(m[i], (float)lum[i] / 255.0f, "%s: mask pixel %lld: %g vs PIL L %d", files[f], (long long)i,
                         (double)m[i] * 255, lum[i]);
        }
        df_tensor_free(img);
        df_tensor_free(mask);
    }
    df_safetensors_close(st);
}

Test(image, mask_luma_matches_pil_on_every_grey_and_primary)
{
    /* PIL: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16; grey stays grey */
    unsigned char px[256 * 3 + 9];
    for (int i = 0; i < 256; i++) px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = (unsigned char)i;
    unsigned char prim[9] = {255, 0, 0, 0, 255, 0, 0, 0, 255};
    memcpy(px + 768, prim, 9);
    const char *path = tmp_path("greys.png");
    cr_assert(stbi_write_png(path, 259, 1, 3, px, 259 * 3));
    df_tensor *m = NULL;
    cr_assert_eq(df_image_load_mask(path, &m), DF_OK, "%s", df_last_error());
    const float *d = df_tensor_data(m);
    for (int i = 0; i < 256; i++) cr_assert_eq(d[i], (float)i / 255.0f);
    cr_assert_eq(d[256], 76.0f / 255.0f);  /* PIL: Image.new("RGB", (1, 1), (255, 0, 0)).convert("L") */
    cr_assert_eq(d[257], 150.0f / 255.0f); /* green */
    cr_assert_eq(d[258], 29.0f / 255.0f);  /* blue */
    df_tensor_free(m);
}

Test(image, loads_bmp_and_tga_exactly)
{
    unsigned char px[5 * 3 * 3];
    for (int i = 0; i < 45; i++) px[i] = (unsigned char)(i * 37 + 5);
    const char *bmp = tmp_path("a.bmp"), *tga = tmp_path("a.tga");
    cr_assert(stbi_write_bmp(bmp, 5, 3, 3, px));
    cr_assert(stbi_write_tga(tga, 5, 3, 3, px));
    const char *files[] = {bmp, tga};
    for (int f = 0; f < 2; f++) {
        df_tensor *t = NULL;
        cr_assert_eq(df_image_load(files[f], &t), DF_OK, "%s", df_last_error());
        cr_assert(t->shape[2] == 3 && t->shape[3] == 5);
        const float *d = df_tensor_data(t);
        for (int i = 0; i < 15; i++)
            for (int c = 0; c < 3; c++) cr_assert_eq(d[c * 15 + i], (float)px[3 * i + c] / 127.5f - 1.0f);
        df_tensor_free(t);
    }
}

Test(image, loads_jpeg)
{
    /* a smooth 32x24 image through stb's JPEG writer at quality 95 */
    enum { W = 32, H = 24 };
    unsigned char px[W * H * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            px[3 * (y * W + x)] = (unsigned char)(x * 7 + 10);
            px[3 * (y * W + x) + 1] = (unsigned char)(y * 9 + 20);
            px[3 * (y * W + x) + 2] = (unsigned char)(128 + x * 2 - y * 3);
        }
    const char *path = tmp_path("smooth.jpg");
    cr_assert(stbi_write_jpg(path, W, H, 3, px, 95));
    df_tensor *t = NULL;
    cr_assert_eq(df_image_load(path, &t), DF_OK, "%s", df_last_error());
    cr_assert(t->shape[0] == 1 && t->shape[1] == 3 && t->shape[2] == H && t->shape[3] == W);
    const float *d = df_tensor_data(t);
    double worst = 0;
    for (int i = 0; i < W * H; i++)
        for (int c = 0; c < 3; c++) {
            double e = fabs(((double)d[c * W * H + i] + 1) * 127.5 - px[3 * i + c]);
            if (e > worst) worst = e;
        }
    cr_log_info("JPEG q95 round trip: max error %.2f levels", worst);
    cr_assert_leq(worst, 6.0, "max error %.2f levels", worst);
    df_tensor_free(t);

    /* a JPEG written by PIL, against PIL's (libjpeg's) own decode: stb's IDCT
     * and chroma upsampling differ from libjpeg's by a few levels */
    df_safetensors *st = fx_open("images/images.safetensors");
    size_t n;
    const unsigned char *ref = fx_u8(st, "pil_q90.jpg.rgb", &n);
    cr_assert_eq(df_image_load(FIXTURE_DIR "/images/pil_q90.jpg", &t), DF_OK, "%s", df_last_error());
    int64_t hw = t->shape[2] * t->shape[3];
    cr_assert_eq((size_t)hw * 3, n);
    d = df_tensor_data(t);
    worst = 0;
    double sum = 0;
    for (int64_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            double e = fabs(((double)d[c * hw + i] + 1) * 127.5 - ref[3 * i + c]);
            sum += e;
            if (e > worst) worst = e;
        }
    cr_log_info("PIL JPEG: stb vs libjpeg max %.2f, mean %.3f levels", worst, sum / (double)(3 * hw));
    cr_assert_leq(worst, 8.0, "stb vs libjpeg: max %.2f levels", worst);
    df_tensor_free(t);
    df_safetensors_close(st);
}

/* ---- text chunks ---- */

/* The chunk types of a PNG file in order, "IHDR tEXt ..." */
static void chunk_list(const char *path, char *out, size_t cap)
{
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    out[0] = '\0';
    for (size_t pos = 8; pos + 12 <= n;) {
        uint32_t len = (uint32_t)b[pos] << 24 | (uint32_t)b[pos + 1] << 16 | (uint32_t)b[pos + 2] << 8 | b[pos + 3];
        size_t k = strlen(out);
        snprintf(out + k, cap - k, "%s%.4s", k ? " " : "", (const char *)b + pos + 4);
        pos += 12 + len;
    }
    free(b);
}

static void expect_text(const char *path, const char *key, const char *want)
{
    char *v = NULL;
    int rc = df_image_read_text(path, key, &v);
    cr_assert_eq(rc, DF_OK, "read '%s': %s", key, df_last_error());
    cr_assert_str_eq(v, want, "text '%s'", key);
    df_image_string_free(v);
}

Test(image, text_chunks_round_trip)
{
    size_t big_n = 200000;
    char *big = malloc(big_n + 1);
    for (size_t i = 0; i < big_n; i++) big[i] = (char)('a' + i % 26);
    big[big_n] = '\0';
    df_image_text text[] = {
        {"parameters", "a cat\nNegative prompt: dog\nSteps: 20, Seed: 1"},
        {"latin", "café crème, 5 µm, ©"},             /* Latin-1: tEXt */
        {"utf8", "猫の絵 — ✓ 🐈"},                     /* not Latin-1: iTXt */
        {"empty", ""},
        {"long", big},
        {"Kéy with spaces", "v"},                       /* Latin-1 keyword */
    };
    df_tensor *img = grid_image(2, 3);
    const char *path = tmp_path("text.png");
    cr_assert_eq(df_image_save(img, path, text, 6), DF_OK, "%s", df_last_error());
    for (int i = 0; i < 6; i++) expect_text(path, text[i].key, text[i].value);

    /* parameters first, right after IHDR; the UTF-8 value as iTXt */
    char chunks[256];
    chunk_list(path, chunks, sizeof chunks);
    cr_assert_str_eq(chunks, "IHDR tEXt tEXt iTXt tEXt tEXt tEXt IDAT IEND", "%s", chunks);
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    cr_assert_eq(memcmp(b + 33 + 8, "parameters\0a cat", 16), 0);
    /* Latin-1 on disk: "café" is 63 61 66 e9 */
    cr_assert_not_null(memmem(b, n, "latin\0caf\xe9 cr\xe8me, 5 \xb5m, \xa9", 25));
    /* iTXt: keyword, 0, 0 (uncompressed, method 0), "" language, "" translated keyword, UTF-8 */
    cr_assert_not_null(memmem(b, n, "utf8\0\0\0\0\0\xe7\x8c\xab", 12));
    free(b);

    /* pixels unaffected */
    df_tensor *back = NULL;
    cr_assert_eq(df_image_load(path, &back), DF_OK, "%s", df_last_error());
    cr_assert_eq(memcmp(df_tensor_data(back), df_tensor_data(img), df_tensor_nbytes(img)), 0);
    df_tensor_free(back);

    char *v = (char *)0x1;
    expect_error(df_image_read_text(path, "absent", &v), DF_ENOTFOUND, path, "absent");
    cr_assert_null(v);
    expect_error(df_image_read_text(path, "Parameters", &v), DF_ENOTFOUND, path, NULL); /* keys are case-sensitive */
    df_tensor_free(img);
    free(big);
}

Test(image, text_keys_and_values_are_checked)
{
    df_tensor *img = grid_image(2, 2);
    const char *path = tmp_path("bad.png");
    char k80[81];
    memset(k80, 'k', 80);
    k80[80] = '\0';
    struct {
        df_image_text t;
        const char *phrase;
    } bad[] = {
        {{"", "v"}, "1 to 79"},
        {{k80, "v"}, "1 to 79"},
        {{" lead", "v"}, "space"},
        {{"trail ", "v"}, "space"},
        {{"dou  ble", "v"}, "space"},
        {{"tab\there", "v"}, "not allowed"},
        {{"ключ", "v"}, "not Latin-1"},
        {{"bad\xff", "v"}, "UTF-8"},
        {{"key", "bad \xc3\x28 utf8"}, "UTF-8"},
        {{"key", "\xed\xa0\x80 surrogate"}, "UTF-8"},
        {{"key", "\xc0\xaf overlong"}, "UTF-8"},
        {{NULL, "v"}, "NULL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_error(df_image_save(img, path, &bad[i].t, 1), DF_EINVAL, path, bad[i].phrase);
        cr_assert_eq(count_files(), 0);
    }
    /* 79 characters is the limit; a NULL value is "" */
    k80[79] = '\0';
    df_image_text ok[] = {{k80, NULL}};
    cr_assert_eq(df_image_save(img, path, ok, 1), DF_OK, "%s", df_last_error());
    expect_text(path, k80, "");
    char *v = NULL;
    expect_error(df_image_read_text(path, "", &v), DF_EINVAL, path, NULL);
    df_tensor_free(img);
}

Test(image, reads_text_written_by_pil)
{
    const char *path = FIXTURE_DIR "/images/pil_text.png";
    expect_text(path, "parameters",
                "a café at dusk, (oil painting:1.2)\nNegative prompt: blurry, lowres\n"
                "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
                "Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly");
    expect_text(path, "comment", "日本語のコメント ✓");
    char want[512] = "";
    for (int i = 0; i < 20; i++) strcat(want, "compressed text, ");
    expect_text(path, "zipped", want); /* zTXt */
    want[0] = '\0';
    for (int i = 0; i < 10; i++) strcat(want, "ünïcödé ✓ ");
    expect_text(path, "itxt_zip", want); /* compressed iTXt */
    char chunks[256];
    chunk_list(path, chunks, sizeof chunks);
    cr_assert_str_eq(chunks, "IHDR tEXt iTXt zTXt iTXt IDAT IEND", "%s", chunks);
}

/* ---- PNGs built by hand ---- */

typedef struct {
    unsigned char d[1 << 16];
    size_t n;
} png_buf;

static uint32_t ref_crc(const unsigned char *p, size_t n) /* bit by bit, independent of the library's table */
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
    p[3] = (unsigned char)v;
}

static void chunk(png_buf *b, const char *type, const void *data, size_t n)
{
    cr_assert_lt(b->n + n + 12, sizeof b->d);
    put32(b->d + b->n, (uint32_t)n);
    memcpy(b->d + b->n + 4, type, 4);
    if (n) memcpy(b->d + b->n + 8, data, n);
    put32(b->d + b->n + 8 + n, ref_crc(b->d + b->n + 4, n + 4));
    b->n += n + 12;
}

/* A zlib stream of stored (uncompressed) deflate blocks. */
static size_t zlib_stored(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t k = 0;
    out[k++] = 0x78, out[k++] = 0x01;
    size_t pos = 0;
    do {
        size_t len = n - pos > 65535 ? 65535 : n - pos;
        out[k++] = pos + len == n ? 1 : 0;
        out[k++] = (unsigned char)len, out[k++] = (unsigned char)(len >> 8);
        out[k++] = (unsigned char)~len, out[k++] = (unsigned char)(~len >> 8);
        memcpy(out + k, s + pos, len);
        k += len, pos += len;
    } while (pos < n);
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) a = (a + s[i]) % 65521, b = (b + a) % 65521;
    put32(out + k, b << 16 | a);
    return k + 4;
}

/* signature + IHDR (1x1 RGB 8-bit); add chunks, then finish with png_end. */
static void png_begin(png_buf *b)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    memcpy(b->d, sig, 8);
    b->n = 8;
    unsigned char ihdr[13] = {0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0};
    chunk(b, "IHDR", ihdr, 13);
}

static void png_end(png_buf *b)
{
    unsigned char row[4] = {0, 10, 20, 30}, z[64];
    chunk(b, "IDAT", z, zlib_stored(row, 4, z));
    chunk(b, "IEND", NULL, 0);
}

static void text_chunk(png_buf *b, const char *type, const char *key, const void *body, size_t n)
{
    unsigned char d[1024];
    size_t kl = strlen(key);
    memcpy(d, key, kl + 1);
    memcpy(d + kl + 1, body, n);
    chunk(b, type, d, kl + 1 + n);
}

Test(image, reads_hand_made_text_chunks)
{
    static png_buf b;
    png_begin(&b);
    text_chunk(&b, "tEXt", "latin", "caf\xe9", 4);
    unsigned char z[256], body[300];
    size_t zn = zlib_stored((const unsigned char *)"hello zTXt", 10, z);
    body[0] = 0; /* method: deflate */
    memcpy(body + 1, z, zn);
    text_chunk(&b, "zTXt", "ztxt", body, zn + 1);
    /* iTXt with a language tag and a translated keyword, uncompressed */
    text_chunk(&b, "iTXt", "itxt", "\0\0en\0Schl\xc3\xbcssel\0Gr\xc3\xbc\xc3\x9f" "e", 23);
    /* compressed iTXt */
    zn = zlib_stored((const unsigned char *)"\xe2\x9c\x93 ok", 6, z);
    memcpy(body, "\1\0\0\0", 4);
    memcpy(body + 4, z, zn);
    text_chunk(&b, "iTXt", "itxt_z", body, zn + 4);
    text_chunk(&b, "tEXt", "latin", "second", 6); /* the first chunk of a key wins */
    chunk(&b, "prVt", "private", 7);              /* unknown ancillary chunk */
    png_end(&b);
    const char *path = write_bytes("hand.png", b.d, b.n);
    expect_text(path, "latin", "café");
    expect_text(path, "ztxt", "hello zTXt");
    expect_text(path, "itxt", "Grüße");
    expect_text(path, "itxt_z", "✓ ok");
    df_tensor *t = NULL;
    cr_assert_eq(df_image_load(path, &t), DF_OK, "%s", df_last_error());
    const float *d = df_tensor_data(t);
    cr_assert(d[0] == 10 / 127.5f - 1 && d[1] == 20 / 127.5f - 1 && d[2] == 30 / 127.5f - 1);
    df_tensor_free(t);
}

Test(image, reads_large_compressed_text)
{
    /* 300 kB that deflates to a few kB: the output buffer has to grow */
    size_t n = 300000;
    unsigned char *s = malloc(n);
    for (size_t i = 0; i < n; i++) s[i] = (unsigned char)("parameters, "[i % 12]);
    int zn;
    unsigned char *z = stbi_zlib_compress(s, (int)n, &zn, 8);
    cr_assert_not_null(z);
    cr_assert_lt(zn, 4000, "%d", zn);
    static png_buf b;
    png_begin(&b);
    unsigned char body[4096];
    body[0] = 0;
    memcpy(body + 1, z, (size_t)zn);
    unsigned char d[4200];
    memcpy(d, "big", 4);
    memcpy(d + 4, body, (size_t)zn + 1);
    chunk(&b, "zTXt", d, (size_t)zn + 5);
    png_end(&b);
    const char *path = write_bytes("bigz.png", b.d, b.n);
    char *v = NULL;
    cr_assert_eq(df_image_read_text(path, "big", &v), DF_OK, "%s", df_last_error());
    cr_assert_eq(strlen(v), n);
    cr_assert_eq(memcmp(v, s, n), 0);
    df_image_string_free(v);
    free(z);
    free(s);
}

/* A malformed file: df_image_read_text fails with `phrase`, never crashes. */
static void expect_bad_png(const char *name, const void *bytes, size_t n, const char *phrase)
{
    const char *path = write_bytes(name, bytes, n);
    char *v = (char *)0x1;
    expect_error(df_image_read_text(path, "k", &v), DF_EFORMAT, path, phrase);
    cr_assert_null(v);
}

Test(image, malformed_pngs_are_errors)
{
    static png_buf good, b;
    png_begin(&good);
    text_chunk(&good, "tEXt", "k", "value", 5);
    png_end(&good);
    expect_text(write_bytes("good.png", good.d, good.n), "k", "value");

    /* every truncation */
    for (size_t n = 0; n < good.n; n++) {
        char name[32];
        snprintf(name, sizeof name, "trunc%zu.png", n);
        const char *path = write_bytes(name, good.d, n);
        char *v = (char *)0x1;
        int rc = df_image_read_text(path, "k", &v);
        cr_assert_eq(rc, DF_EFORMAT, "truncated at %zu: %s", n, df_last_error());
        cr_assert_null(v);
        if (n >= 8) cr_assert(strstr(df_last_error(), "truncated") || strstr(df_last_error(), "past the end"),
                              "at %zu: %s", n, df_last_error());
        df_tensor *t = (df_tensor *)0x1;
        cr_assert_neq(df_image_load(path, &t), DF_OK, "truncated at %zu loaded", n);
        cr_assert_null(t);
        unlink(path);
    }

    /* a flipped bit anywhere: every byte after the signature is under a CRC,
     * a length, or a type */
    for (size_t i = 8; i < good.n; i++) {
        b = good;
        b.d[i] ^= 0x10;
        const char *path = write_bytes("flip.png", b.d, b.n);
        char *v = NULL;
        int rc = df_image_read_text(path, "k", &v);
        cr_assert_eq(rc, DF_EFORMAT, "flip at %zu accepted (%s)", i, v ? v : "");
        df_tensor *t = NULL;
        cr_assert_eq(df_image_load(path, &t), DF_EFORMAT, "flip at %zu loaded", i);
    }

    b = good;
    b.d[0] = 'X';
    expect_bad_png("sig.png", b.d, b.n, "not a PNG");

    b = good;
    b.d[8 + 8 + 13] ^= 1; /* IHDR CRC */
    expect_bad_png("crc.png", b.d, b.n, "bad CRC");

    b = good; /* length beyond 2^31-1 */
    put32(b.d + 33, 0x80000001u);
    expect_bad_png("len31.png", b.d, b.n, "2^31-1");

    b = good; /* length beyond the file */
    put32(b.d + 33, 1000);
    expect_bad_png("lenbig.png", b.d, b.n, "past the end");

    b = good; /* drop IEND */
    expect_bad_png("noiend.png", b.d, b.n - 12, "no IEND");

    png_begin(&b); /* IHDR of the wrong size */
    b.n = 8;
    chunk(&b, "IHDR", "\0\0\0\1\0\0\0\1\10\2\0\0", 12);
    png_end(&b);
    expect_bad_png("ihdr.png", b.d, b.n, "IHDR");

    b.n = 8; /* text before IHDR */
    text_chunk(&b, "tEXt", "k", "v", 1);
    expect_bad_png("order.png", b.d, b.n, "IHDR");

    png_begin(&b); /* bad chunk type */
    chunk(&b, "t3Xt", "k\0v", 3);
    png_end(&b);
    expect_bad_png("type.png", b.d, b.n, "chunk type");

    png_begin(&b); /* keyword without its NUL */
    chunk(&b, "tEXt", "kv", 2);
    png_end(&b);
    expect_bad_png("nokw.png", b.d, b.n, "keyword");

    png_begin(&b); /* empty keyword */
    chunk(&b, "tEXt", "\0v", 2);
    png_end(&b);
    expect_bad_png("emptykw.png", b.d, b.n, "keyword");

    png_begin(&b); /* zTXt with a corrupt stream (valid CRC) */
    text_chunk(&b, "zTXt", "k", "\0\x78\x01garbage", 10);
    png_end(&b);
    expect_bad_png("zcorrupt.png", b.d, b.n, "corrupt");

    png_begin(&b); /* zTXt with an unknown method */
    text_chunk(&b, "zTXt", "k", "\1\x78\x01", 3);
    png_end(&b);
    expect_bad_png("zmethod.png", b.d, b.n, "compression method");

    png_begin(&b); /* iTXt with a bad compression flag */
    text_chunk(&b, "iTXt", "k", "\2\0\0\0v", 5);
    png_end(&b);
    expect_bad_png("iflag.png", b.d, b.n, "compression flag");

    png_begin(&b); /* iTXt missing its translated keyword's NUL */
    text_chunk(&b, "iTXt", "k", "\0\0en\0v", 6);
    png_end(&b);
    expect_bad_png("itrunc.png", b.d, b.n, "truncated");

    png_begin(&b); /* iTXt that is not UTF-8 */
    text_chunk(&b, "iTXt", "k", "\0\0\0\0caf\xe9", 8);
    png_end(&b);
    expect_bad_png("iutf8.png", b.d, b.n, "UTF-8");

    png_begin(&b); /* NUL inside a zTXt's text */
    unsigned char z[64], body[80];
    size_t zn = zlib_stored((const unsigned char *)"a\0b", 3, z);
    body[0] = 0;
    memcpy(body + 1, z, zn);
    text_chunk(&b, "zTXt", "k", body, zn + 1);
    png_end(&b);
    expect_bad_png("znul.png", b.d, b.n, "NUL");
}

/* ---- grid, resize, crop ---- */

Test(image, grid_tiles_in_row_major_order)
{
    enum { B = 5, C = 3, H = 2, W = 3 };
    df_tensor *batch = image_new(B, C, H, W);
    float *s = df_tensor_data(batch);
    for (int i = 0; i < B * C * H * W; i++) s[i] = (float)i / 1000.0f; /* every value distinct */
    for (int cols = 1; cols <= 7; cols++) {
        df_tensor *g = NULL;
        cr_assert_eq(df_image_grid(batch, cols, &g), DF_OK, "%s", df_last_error());
        int rows = (B + cols - 1) / cols;
        cr_assert(g->shape[0] == 1 && g->shape[1] == C && g->shape[2] == rows * H && g->shape[3] == cols * W,
                  "cols %d", cols);
        const float *d = df_tensor_data(g);
        int GH = rows * H, GW = cols * W;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < GH; y++)
                for (int x = 0; x < GW; x++) {
                    int b = y / H * cols + x / W;
                    float want = b < B ? s[((b * C + c) * H + y % H) * W + x % W] : -1.0f;
                    cr_assert_eq(d[(c * GH + y) * GW + x], want, "cols %d: (%d, %d, %d)", cols, c, y, x);
                }
        df_tensor_free(g);
    }
    df_tensor *g = (df_tensor *)0x1;
    expect_error(df_image_grid(batch, 0, &g), DF_EINVAL, NULL, "cols");
    cr_assert_null(g);
    df_tensor_free(batch);
}

Test(image, resize_matches_torch_bilinear)
{
    df_safetensors *st = fx_open("images/images.safetensors");
    int cases = 0;
    for (int k = 0;; k++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "resize.%d", k);
        df_tensor *x = fx_get_opt(st, prefix, "input");
        if (!x) break;
        df_tensor *y = fx_get(st, prefix, "output"), *y64 = fx_get(st, prefix, "output64"), *r = NULL;
        int w = (int)fx_param(st, prefix, "w", 0), h = (int)fx_param(st, prefix, "h", 0);
        cr_assert_eq(df_image_resize(x, w, h, &r), DF_OK, "%s", df_last_error());
        cr_assert(df_tensor_same_shape(r, y), "%s: shape", prefix);
        const float *a = df_tensor_data(r), *b = df_tensor_data(y), *b64 = df_tensor_data(y64);
        double e32 = 0, e64 = 0;
        for (int64_t i = 0; i < df_tensor_numel(y); i++) {
            e32 = fmax(e32, fabs((double)a[i] - b[i]));
            e64 = fmax(e64, fabs((double)a[i] - b64[i]));
        }
        cr_log_info("%s -> %dx%d: max |diff| %.3g vs torch f32, %.3g vs torch f64", prefix, w, h, e32, e64);
        /* inputs in [-1, 1]: torch's f32 kernel may fuse its multiply-adds */
        cr_assert_leq(e32, 1e-6, "%s: %.3g vs torch f32", prefix, e32);
        cr_assert_leq(e64, 2e-6, "%s: %.3g vs torch f64", prefix, e64);
        df_tensor_free(r);
        df_tensor_free(x);
        df_tensor_free(y);
        df_tensor_free(y64);
        cases++;
    }
    cr_assert_geq(cases, 9);
    df_safetensors_close(st);

    df_tensor *img = grid_image(4, 4), *r = (df_tensor *)0x1;
    expect_error(df_image_resize(img, 0, 4, &r), DF_EINVAL, NULL, "0x4");
    cr_assert_null(r);
    df_tensor *flat = df_tensor_new(NULL, DF_F32, 2, (int64_t[]){4, 4});
    expect_error(df_image_resize(flat, 2, 2, &r), DF_ESHAPE, "df_image_resize", "(B, C, H, W)");
    df_tensor_free(flat);
    df_tensor_free(img);
}

Test(image, crop_takes_the_window)
{
    df_tensor *img = image_new(2, 3, 5, 7);
    float *s = df_tensor_data(img);
    for (int i = 0; i < 2 * 3 * 5 * 7; i++) s[i] = (float)i;
    df_tensor *c = NULL;
    cr_assert_eq(df_image_crop(img, 2, 1, 4, 3, &c), DF_OK, "%s", df_last_error());
    cr_assert(c->shape[0] == 2 && c->shape[1] == 3 && c->shape[2] == 3 && c->shape[3] == 4);
    const float *d = df_tensor_data(c);
    for (int p = 0; p < 6; p++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 4; x++) cr_assert_eq(d[(p * 3 + y) * 4 + x], s[(p * 5 + y + 1) * 7 + x + 2]);
    df_tensor_free(c);
    cr_assert_eq(df_image_crop(img, 0, 0, 7, 5, &c), DF_OK); /* whole image */
    cr_assert_eq(memcmp(df_tensor_data(c), s, df_tensor_nbytes(img)), 0);
    df_tensor_free(c);
    int bad[][4] = {{-1, 0, 2, 2}, {0, -1, 2, 2}, {6, 0, 2, 2}, {0, 4, 2, 2}, {0, 0, 0, 2}, {0, 0, 8, 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = (df_tensor *)0x1;
        expect_error(df_image_crop(img, bad[i][0], bad[i][1], bad[i][2], bad[i][3], &c), DF_EINVAL, "df_image_crop",
                     "not inside");
        cr_assert_null(c);
    }
    df_tensor_free(img);
}

Test(image, ops_keep_the_opencl_backend)
{
    df_backend *be = fx_opencl_backend();
    df_tensor *host = grid_image(6, 8), *dev = NULL, *g = NULL, *r = NULL, *c = NULL;
    cr_assert_eq(df_tensor_to(host, be, &dev), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_image_grid(dev, 1, &g), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_image_resize(dev, 4, 3, &r), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_image_crop(dev, 1, 1, 2, 2, &c), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tensor_backend(g), be);
    cr_assert_eq(df_tensor_backend(r), be);
    cr_assert_eq(df_tensor_backend(c), be);
    /* save downloads */
    const char *path = tmp_path("dev.png");
    cr_assert_eq(df_image_save(dev, path, NULL, 0), DF_OK, "%s", df_last_error());
    df_tensor *back = NULL;
    cr_assert_eq(df_image_load(path, &back), DF_OK, "%s", df_last_error());
    cr_assert_eq(memcmp(df_tensor_data(back), df_tensor_data(host), df_tensor_nbytes(host)), 0);
    df_tensor *rh = NULL, *rcpu = NULL;
    cr_assert_eq(df_tensor_to(r, NULL, &rh), DF_OK);
    cr_assert_eq(df_image_resize(host, 4, 3, &rcpu), DF_OK);
    cr_assert_eq(memcmp(df_tensor_data(rh), df_tensor_data(rcpu), df_tensor_nbytes(rcpu)), 0);
    df_tensor_free(rh);
    df_tensor_free(rcpu);
    df_tensor_free(back);
    df_tensor_free(c);
    df_tensor_free(r);
    df_tensor_free(g);
    df_tensor_free(dev);
    df_tensor_free(host);
    df_backend_free(be);
}

/* ---- A1111 infotext ---- */

static void expect_params(const df_a1111_params *p, const char *want)
{
    char *s = NULL;
    int rc = df_image_a1111_parameters(p, &s);
    cr_assert_eq(rc, DF_OK, "%s", df_last_error());
    cr_assert_str_eq(s, want, "\ngot:  [%s]\nwant: [%s]", s, want);
    df_image_string_free(s);
}

Test(image, a1111_parameters_layout)
{
    df_a1111_params p = df_a1111_default_params();
    p.prompt = "a cat";
    p.negative = "blurry";
    p.steps = 20;
    p.sampler = "DPM++ 2M";
    p.scheduler = "Karras";
    p.cfg = 7.5;
    p.seed = 42;
    p.model_hash = "abcdef1234";
    p.model_name = "name";
    expect_params(&p, "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, "
                      "CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: abcdef1234, Model: name, "
                      "Version: difusa " DF_VERSION);

    /* no negative line; integral CFG without ".0"; img2img's denoising; clip skip; extras */
    df_image_text extra[] = {{"Hires upscale", "2"}, {"Lora hashes", "add_detail: 7c6bad76eb54"}};
    p = df_a1111_default_params();
    p.prompt = "portrait, (masterpiece:1.2)";
    p.sampler = "Euler a";
    p.cfg = 7;
    p.seed = 3735928559LL;
    p.width = 768;
    p.height = 512;
    p.denoising_strength = 0.75;
    p.clip_skip = 2;
    p.extra = extra;
    p.n_extra = 2;
    p.version = NULL;
    expect_params(&p, "portrait, (masterpiece:1.2)\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 3735928559, "
                      "Size: 768x512, Denoising strength: 0.75, Clip skip: 2, Hires upscale: 2, "
                      "Lora hashes: \"add_detail: 7c6bad76eb54\"");

    /* the bare minimum: an empty prompt strips away with its newline */
    p = df_a1111_default_params();
    p.version = "";
    p.negative = "";
    p.seed = -1;
    p.clip_skip = 1;
    p.denoising_strength = 1.0;
    expect_params(&p, "Steps: 20, CFG scale: 7, Seed: -1, Size: 512x512, Denoising strength: 1");
}

Test(image, a1111_parameters_quoting)
{
    /* quote(): json.dumps(ensure_ascii=False) when the value has ',' ':' or a newline */
    df_image_text extra[] = {
        {"Plain", "no \"quotes\" needed \\ here"},     /* '"' alone does not quote */
        {"Comma", "a, b"},
        {"Colon", "key: value"},
        {"Newline", "line1\nline2"},
        {"Escapes", "q\"b\\s/t\tc\x01r\r, f\f b\b"},
        {"Unicode", "café, 猫"},                         /* non-ASCII stays raw */
        {"Tiling", "Tiling"},                            /* value == key: the key alone */
    };
    df_a1111_params p = df_a1111_default_params();
    p.prompt = "p";
    p.model_name = "my,model";
    p.extra = extra;
    p.n_extra = sizeof extra / sizeof extra[0];
    p.version = "v1.10.1";
    expect_params(&p, "p\nSteps: 20, CFG scale: 7, Seed: 0, Size: 512x512, Model: \"my,model\", "
                      "Plain: no \"quotes\" needed \\ here, Comma: \"a, b\", Colon: \"key: value\", "
                      "Newline: \"line1\\nline2\", Escapes: \"q\\\"b\\\\s/t\\tc\\u0001r\\r, f\\f b\\b\", "
                      "Unicode: \"café, 猫\", Tiling, Version: v1.10.1");
}

Test(image, a1111_parameters_merge_extras_like_a_dict)
{
    df_image_text extra[] = {
        {"Clip skip", "3"},   /* a known field: takes its place */
        {"Model", NULL},      /* None: left out */
        {"ENSD", "31337"},
        {"Version", "x"},     /* the version field comes later and wins */
        {"ENSD", "1"},        /* a repeated key keeps its first place, takes the last value */
    };
    df_a1111_params p = df_a1111_default_params();
    p.prompt = "p";
    p.model_name = "m";
    p.extra = extra;
    p.n_extra = 5;
    expect_params(&p, "p\nSteps: 20, CFG scale: 7, Seed: 0, Size: 512x512, Clip skip: 3, ENSD: 1, "
                      "Version: difusa " DF_VERSION);
    p.version = NULL; /* None overrides the extra too */
    expect_params(&p, "p\nSteps: 20, CFG scale: 7, Seed: 0, Size: 512x512, Clip skip: 3, ENSD: 1");
}

Test(image, a1111_parameters_numbers_and_strip)
{
    struct {
        double cfg;
        const char *want;
    } cases[] = {
        {7.5, "7.5"},         {0.1, "0.1"},          {1e-05, "1e-05"},          {2.5e-7, "2.5e-07"},
        {0.0001, "0.0001"},   {123.456, "123.456"},  {12345678.9, "12345678.9"}, {1e16, "1e+16"},
        {-3.25, "-3.25"},     {-0.0, "0"},           {1.0 / 3, "0.3333333333333333"},
        {1.5e300, "1.5e+300"}, {NAN, "nan"},         {INFINITY, "inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        df_a1111_params p = df_a1111_default_params();
        p.prompt = "x";
        p.cfg = cases[i].cfg;
        p.version = NULL;
        char want[128];
        snprintf(want, sizeof want, "x\nSteps: 20, CFG scale: %s, Seed: 0, Size: 512x512", cases[i].want);
        expect_params(&p, want);
    }
    df_a1111_params p = df_a1111_default_params();
    p.prompt = "\xe3\x80\x80  \t a cat  "; /* U+3000 IDEOGRAPHIC SPACE is whitespace to Python */
    p.negative = "dog \n";
    p.version = "difusa\xc2\xa0"; /* U+00A0 at the very end */
    p.seed = INT64_MIN;
    expect_params(&p, "a cat  \nNegative prompt: dog \n\nSteps: 20, CFG scale: 7, Seed: -9223372036854775808, "
                      "Size: 512x512, Version: difusa");

    char *s = (char *)0x1;
    p = df_a1111_default_params();
    p.prompt = "bad \xff";
    expect_error(df_image_a1111_parameters(&p, &s), DF_EINVAL, NULL, "prompt");
    cr_assert_null(s);
    p.prompt = "ok";
    df_image_text nokey = {NULL, "v"};
    p.extra = &nokey;
    p.n_extra = 1;
    expect_error(df_image_a1111_parameters(&p, &s), DF_EINVAL, NULL, "key");
    expect_error(df_image_a1111_parameters(NULL, &s), DF_EINVAL, NULL, NULL);
}

Test(image, a1111_parameters_saved_as_text)
{
    df_a1111_params p = df_a1111_default_params();
    p.prompt = "a cat";
    p.negative = "猫";
    char *params = NULL;
    cr_assert_eq(df_image_a1111_parameters(&p, &params), DF_OK);
    df_tensor *img = grid_image(2, 2);
    const char *path = tmp_path("a1111.png");
    df_image_text text = {"parameters", params};
    cr_assert_eq(df_image_save(img, path, &text, 1), DF_OK, "%s", df_last_error());
    expect_text(path, "parameters", params);
    char chunks[64];
    chunk_list(path, chunks, sizeof chunks);
    cr_assert_str_eq(chunks, "IHDR iTXt IDAT IEND"); /* not Latin-1: iTXt, as A1111 (PIL) writes it */
    df_image_string_free(params);
    df_tensor_free(img);
}

/* ---- SHA-256 and the A1111 hash ---- */

static void hex(const unsigned char *d, char *out)
{
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void expect_sha(const void *data, size_t n, const char *want)
{
    unsigned char d[32];
    char h[65];
    df_sha256(data, n, d);
    hex(d, h);
    cr_assert_str_eq(h, want, "SHA-256 of %zu bytes", n);
}

Test(image, sha256_fips_vectors)
{
    /* FIPS 180-4 examples (NIST CSRC "SHA256.pdf", SHA2_Additional) */
    expect_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect_sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
               "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    expect_sha("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
               "mnopqrstnopqrstu",
               112, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    expect_sha(a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* padding around the block boundary (hashlib) */
    struct {
        size_t n;
        const char *h;
    } edge[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
        {1000, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"},
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) expect_sha(a, edge[i].n, edge[i].h);
    free(a);
}

Test(image, file_hash_a1111)
{
    char h[11];
    const char *abc = write_bytes("abc.safetensors", "abc", 3);
    cr_assert_eq(df_file_hash_a1111(abc, h), DF_OK, "%s", df_last_error());
    cr_assert_str_eq(h, "ba7816bf8f");

    /* several read blocks: 3 MiB + 5 bytes (hashlib) */
    size_t n = 3 * 1024 * 1024 + 5;
    unsigned char *d = malloc(n);
    for (size_t i = 0; i < n; i++) d[i] = (unsigned char)((i * 7 + 3) % 251);
    const char *big = write_bytes("big.safetensors", d, n);
    unsigned char dg[32];
    char hx[65];
    cr_assert_eq(df_file_sha256(big, dg), DF_OK);
    hex(dg, hx);
    cr_assert_str_eq(hx, "3e15fcba816eb2091bac2e2bd8a58ff56345daa9d4c8112777c9fbfae3257799");
    cr_assert_eq(df_file_hash_a1111(big, h), DF_OK);
    cr_assert_str_eq(h, "3e15fcba81");
    free(d);

    const char *missing = tmp_path("missing.ckpt");
    expect_error(df_file_hash_a1111(missing, h), DF_EIO, missing, "No such file");
    cr_assert_str_eq(h, "");
    expect_error(df_file_hash_a1111(tmp_dir, h), DF_EIO, tmp_dir, NULL);
}

/* ---- out of memory ---- */

/* Runs `call` with the Nth allocation failing for N = 1, 2, ... until it
 * succeeds: every failure is DF_ENOMEM and leaks nothing (ASan checks). */
#define OOM_LOOP(call, cleanup)                                                                   \
    do {                                                                                          \
        int failures_ = 0;                                                                        \
        for (long n_ = 1;; n_++) {                                                                \
            df_alloc_fail_after(n_);                                                              \
            int rc_ = (call);                                                                     \
            df_alloc_fail_after(0);                                                               \
            if (rc_ == DF_OK) break;                                                              \
            failures_++;                                                                          \
            cr_assert_eq(rc_, DF_ENOMEM, "%s, allocation %ld: %s", #call, n_, df_last_error());   \
            cr_assert(n_ < 1000);                                                                 \
        }                                                                                         \
        cr_assert_gt(failures_, 0, "%s never allocated", #call);                                  \
        cleanup;                                                                                  \
    } while (0)

Test(image, out_of_memory_fails_cleanly)
{
    df_tensor *img = grid_image(5, 6), *t = NULL;
    const char *path = tmp_path("oom.png");
    df_image_text text[] = {{"parameters", "a, b"}, {"u", "✓"}};
    OOM_LOOP(df_image_save(img, path, text, 2), (void)0);
    cr_assert_eq(count_files(), 1, "temporary files left");
    OOM_LOOP(df_image_load(path, &t), df_tensor_free(t));
    OOM_LOOP(df_image_load_mask(path, &t), df_tensor_free(t));
    char *v = NULL;
    OOM_LOOP(df_image_read_text(path, "u", &v), df_image_string_free(v));
    OOM_LOOP(df_image_read_text(FIXTURE_DIR "/images/pil_text.png", "zipped", &v), df_image_string_free(v));
    df_tensor *batch = image_new(3, 3, 4, 4);
    df_fill(batch, 0.5f);
    OOM_LOOP(df_image_grid(batch, 2, &t), df_tensor_free(t));
    OOM_LOOP(df_image_resize(batch, 7, 3, &t), df_tensor_free(t));
    OOM_LOOP(df_image_crop(batch, 1, 1, 2, 2, &t), df_tensor_free(t));
    df_a1111_params p = df_a1111_default_params();
    p.prompt = "x";
    OOM_LOOP(df_image_a1111_parameters(&p, &v), df_image_string_free(v));
    char h[11];
    OOM_LOOP(df_file_hash_a1111(path, h), (void)0);
    df_tensor_free(batch);
    df_tensor_free(img);
}
