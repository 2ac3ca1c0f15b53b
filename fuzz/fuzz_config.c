/* libFuzzer: a diffusers config.json, as the UNet loader reads it (df_unet_load with config_path, over the
 * tiny test UNet's weights, opened once), and the JSON parser and its accessors on their own. */
#include "fuzz_util.h"

#include <string.h>

#include "df.h"
#include "io/json.h"
#include "nn/unet.h"
#include "nn/weights.h"

static df_weights *w;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    df_log_set_level(DF_LOG_ERROR);
    return df_weights_open("tests/fixtures/pipeline/tiny-sd/unet", &w) == DF_OK ? 0 : 1;
}

static void walk(const df_json *v, int depth)
{
    if (!v || depth > 64) return;
    double d;
    uint64_t u;
    const char *why;
    if (v->type == DF_JSON_NUMBER) {
        (void)df_json_double(v, &d);
        (void)df_json_u64(v, &u, &why);
    }
    if (v->type == DF_JSON_OBJECT && v->n) (void)df_json_get(v, v->items[v->n - 1].key);
    for (size_t i = 0; i < v->n; i++) walk(&v->items[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!w) return 0;
    df_json *root = NULL;
    if (df_json_parse((const char *)data, size, &root) == DF_OK) walk(root, 0);
    df_json_free(root);
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    df_unet_load_params p = df_unet_load_default_params();
    p.config_path = path;
    df_unet *u = NULL;
    if (df_unet_load(w, "", NULL, &p, &u) == DF_OK) df_unet_free(u);
    close(fd);
    df_clear_error();
    return 0;
}
