#define TEST_OPENCL
#include "test_clip.c"
