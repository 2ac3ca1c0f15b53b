/* The torch op fixtures of test_ops.c, run on the OpenCL backend (the default
 * device: $DIFUSA_DEVICE, else the first GPU, else the first device). */
#define TEST_OPENCL
#include "test_ops.c"
