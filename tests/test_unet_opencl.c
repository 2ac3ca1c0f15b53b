#define TEST_OPENCL
#include "test_unet.c"
