/* libFuzzer: loading a picture (PNG, JPEG, ... through stb_image, as an image and as a mask) and difusa's own
 * PNG text-chunk reader (tEXt / iTXt / zTXt, AUTOMATIC1111's "parameters"). */
#include "fuzz_util.h"

#include "df.h"
#include "io/image.h"
#include "tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    df_tensor *t = NULL;
    if (df_image_load(path, &t) == DF_OK) df_tensor_free(t);
    t = NULL;
    if (df_image_load_mask(path, &t) == DF_OK) df_tensor_free(t);
    char *v = NULL;
    if (df_image_read_text(path, "parameters", &v) == DF_OK) df_image_string_free(v);
    close(fd);
    return 0;
}
