/* Images in and out of the pipeline: files to tensors and back (with PNG text
 * chunks, as AUTOMATIC1111 writes its "parameters"), the small pixel-space
 * operations around a generation (grid, bilinear resize, crop), A1111's
 * "parameters" text and its short model hash.
 *
 * Pixel layout everywhere: f32 NCHW. Images are (B, 3, H, W) in [-1, 1]
 * (diffusers' convention: 8-bit value p is p/127.5 - 1); masks are
 * (B, 1, H, W) in [0, 1]. Decoding and encoding use stb_image /
 * stb_image_write. */
#ifndef DF_IMAGE_H
#define DF_IMAGE_H

#include "../tensor.h"

/* ---- files to tensors ---- */

/* Decodes anything stb_image reads (PNG, JPEG, BMP, TGA, GIF's first frame,
 * PSD, HDR, PIC, PNM) into a CPU tensor (1, 3, H, W) in [-1, 1]. Grey is
 * replicated to RGB; an alpha channel is dropped, not composited (PIL's
 * convert("RGB") does the same). 16-bit PNGs keep their high byte. The EXIF
 * orientation of a JPEG is not applied. JPEG decoding is stb's, which can
 * differ from libjpeg's (PIL's) by a few levels. A PNG's structure is checked
 * first as df_image_read_text checks it (stb itself ignores CRCs and a
 * missing IEND). Errors name the file and stb's reason. */
DF_API int df_image_load(const char *path, df_tensor **out);
/* The largest picture df_image_load and df_image_load_mask decode (64 megapixels, 8192 x 8192): larger ones
 * are refused before decoding, so a small malformed file cannot claim gigabytes. */
#define DF_IMAGE_MAX_PIXELS (64 << 20)

/* A mask image -> CPU tensor (1, 1, H, W) in [0, 1]: the luma of the RGB
 * image, L = (19595 R + 38470 G + 7471 B + 32768) >> 16, exactly PIL's
 * convert("L") (ITU-R 601-2), then L / 255 in f32 as diffusers does. Alpha is
 * ignored, as PIL ignores it; a grey image gives its own values. */
DF_API int df_image_load_mask(const char *path, df_tensor **out);

/* A key/value text pair, both UTF-8. */
typedef struct df_image_text {
    const char *key;
    const char *value;
} df_image_text;

/* Writes img (1, 3, H, W), f32 / f16 / bf16 on any backend, as an 8-bit RGB
 * PNG. Pixels are rounded exactly as diffusers' VaeImageProcessor
 * (postprocess, numpy_to_pil) does, in f32: round-half-even of
 * clamp(x·0.5 + 0.5, 0, 1)·255 (NaN becomes 0). A batch is saved with
 * df_image_grid first, or one image at a time with df_tensor_narrow0.
 *
 * `text` (n_text pairs, may be NULL when n_text is 0) becomes text chunks
 * right after IHDR, in the order given (put "parameters" first as A1111
 * does): a value whose characters are all Latin-1 is written as tEXt in
 * Latin-1, any other as an uncompressed iTXt in UTF-8 (what PIL's
 * PngInfo.add_text, and so A1111, does). Keys must be 1-79 Latin-1 printable
 * characters without leading, trailing or double spaces (the PNG rule);
 * values must be valid UTF-8.
 *
 * The file is written to a temporary name beside `path` and renamed into
 * place, so a failure never leaves a truncated image. */
DF_API int df_image_save(const df_tensor *img, const char *path, const df_image_text *text, int n_text);

/* The value of the first text chunk named `key` in the PNG at `path`, as a
 * new UTF-8 string (free it with df_image_string_free): tEXt (Latin-1,
 * converted), zTXt and iTXt, compressed or not (decompressed output is
 * limited to 64 MiB). The whole file is checked first: signature, IHDR
 * first, every chunk's length inside the file and its CRC-32, IEND present;
 * a malformed file is DF_EFORMAT. DF_ENOTFOUND when no chunk has that key. */
DF_API int df_image_read_text(const char *path, const char *key, char **value);

/* Frees a string returned by this module (NULL is a no-op). */
DF_API void df_image_string_free(char *s);

/* ---- pixel-space operations (outputs on the input's backend, f32) ---- */

/* (B, C, H, W) -> (1, C, rows·H, cols·W) with rows = ceil(B / cols): image i
 * at row i / cols, column i % cols (row-major); empty cells are -1 (black).
 * cols >= 1; cols larger than B is allowed. */
DF_API int df_image_grid(const df_tensor *batch, int cols, df_tensor **out);

/* (B, C, H, W) -> (B, C, height, width), bilinear as
 * torch.nn.functional.interpolate(size=(height, width), mode="bilinear",
 * align_corners=False, antialias=False) computes it in f32 (no antialiasing:
 * a large downscale aliases exactly as torch's does). */
DF_API int df_image_resize(const df_tensor *img, int width, int height, df_tensor **out);

/* (B, C, H, W) -> (B, C, h, w): the window at column x, row y, which must lie
 * inside the image. */
DF_API int df_image_crop(const df_tensor *img, int x, int y, int w, int h, df_tensor **out);

/* ---- AUTOMATIC1111's generation parameters ---- */

/* The fields of A1111's infotext that difusa knows. Strings are UTF-8; a NULL
 * or "" string leaves its field out. */
typedef struct df_a1111_params {
    const char *prompt;
    const char *negative;       /* no "Negative prompt:" line when empty */
    int steps;
    const char *sampler;        /* "Sampler", e.g. "DPM++ 2M" */
    const char *scheduler;      /* "Schedule type", e.g. "Karras" */
    double cfg;                 /* "CFG scale" */
    int64_t seed;
    int width, height;          /* "Size: <width>x<height>" */
    const char *model_hash;     /* "Model hash": df_file_hash_a1111's 10 digits */
    const char *model_name;     /* "Model" */
    double denoising_strength;  /* "Denoising strength"; left out when < 0 */
    int clip_skip;              /* "Clip skip"; left out when <= 1 */
    /* More "key: value" fields, in order, after Clip skip and before
     * Version (where A1111 puts extra_generation_params), merged as A1111's
     * dict literal merges them: an extra whose key is one of the fields above
     * replaces that field's value in place (a NULL value leaves it out), and
     * `version` below wins over an extra named "Version". */
    const df_image_text *extra;
    int n_extra;
    const char *version;        /* "Version"; the default is "difusa <version>" */
} df_a1111_params;

/* prompt "", negative NULL, steps 20, sampler and scheduler NULL, cfg 7,
 * seed 0, 512x512, no model, denoising_strength -1, clip_skip 1, no extras,
 * version "difusa " DF_VERSION. */
DF_API df_a1111_params df_a1111_default_params(void);

/* A1111's infotext (create_infotext in modules/processing.py):
 *   <prompt>[\nNegative prompt: <negative>]\n<k>: <v>, <k>: <v>, ...
 * with the fields in A1111's order: Steps, Sampler, Schedule type, CFG scale,
 * Seed, Size, Model hash, Model, Denoising strength, Clip skip, the extras,
 * Version. A value containing ',', ':' or a newline is written as a JSON
 * string (A1111's quote(): json.dumps with ensure_ascii=False); a field whose
 * value equals its key is written as the key alone. Numbers print as Python
 * prints them, except that an integral CFG scale or denoising strength
 * prints without ".0" (the UI's sliders hand A1111 ints: "CFG scale: 7").
 * The whole text is stripped of leading and trailing whitespace (Python's
 * str.strip). The result is a new string (df_image_string_free). */
DF_API int df_image_a1111_parameters(const df_a1111_params *p, char **out);

/* A1111's short model hash ("Model hash"): the first 10 lowercase hex digits
 * of the SHA-256 of the whole file, NUL-terminated in out. */
DF_API int df_file_hash_a1111(const char *path, char out[11]);

/* SHA-256 (FIPS 180-4) of n bytes, and of a whole file. */
DF_API void df_sha256(const void *data, size_t n, unsigned char digest[32]);
DF_API int df_file_sha256(const char *path, unsigned char digest[32]);

#endif
