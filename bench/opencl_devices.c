/* Lists the OpenCL devices difusa sees, in selector order (what
 * DIFUSA_DEVICE=<index> picks). Run by make bench before the timings. */
#include "opencl.h"

#include <stdio.h>

int main(void)
{
    df_opencl_device_info *devs = NULL;
    int n = 0;
    if (df_opencl_list_devices(&devs, &n) != DF_OK) {
        fprintf(stderr, "opencl: %s\n", df_last_error());
        return 1;
    }
    if (n == 0) printf("OpenCL devices: none (%s)\n", df_last_error());
    for (int i = 0; i < n; i++)
        printf("OpenCL device %d: %s / %s (%s, driver %s) %s, %.0f MiB, %d compute units%s\n", devs[i].index,
               devs[i].platform, devs[i].name, devs[i].version, devs[i].driver, devs[i].is_gpu ? "GPU" : "not a GPU",
               (double)devs[i].global_mem / 1048576.0, devs[i].compute_units, devs[i].has_fp16 ? ", fp16" : "");
    df_opencl_free_devices(devs);
    return 0;
}
