#define TEST_OPENCL
#include "test_dit.c"
