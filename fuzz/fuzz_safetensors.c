/* libFuzzer: the safetensors reader (header JSON, dtypes, shapes, offsets, metadata), then every tensor read
 * back as it is and widened to F32. */
#include "fuzz_util.h"

#include "df.h"
#include "io/safetensors.h"
#include "tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    df_safetensors *st = NULL;
    if (df_safetensors_open(path, &st) == DF_OK) {
        for (int i = 0; i < df_safetensors_count(st); i++) {
            const df_st_info *info = df_safetensors_info(st, i);
            if (info->nbytes > (64u << 20)) continue;
            df_tensor *t = NULL;
            if (df_safetensors_get(st, info->name, &t) == DF_OK) df_tensor_free(t);
            t = NULL;
            if (df_safetensors_get_f32(st, info->name, &t) == DF_OK) df_tensor_free(t);
        }
        for (int i = 0; i < df_safetensors_metadata_count(st); i++) {
            const char *k = NULL, *v = NULL;
            df_safetensors_metadata_at(st, i, &k, &v);
            if (k) (void)df_safetensors_metadata(st, k);
        }
        df_safetensors_close(st);
    }
    close(fd);
    return 0;
}
