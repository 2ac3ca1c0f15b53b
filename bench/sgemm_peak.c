/* The BLAS sgemm rate this machine reaches, for make bench-full's bound: the
 * best of several square row-major products (after a warm-up) at each size,
 * and the best over the sizes, on the threads OMP_NUM_THREADS gives. A UNet
 * step's FLOPs (difusa.flops) over this rate is the time the step would take
 * if every FLOP ran at GEMM speed. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void)
{
    static const int sizes[] = {1024, 2048, 3072};
    double best_rate = 0;
    int best_n = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s];
        float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
              *c = malloc(sizeof(float) * (size_t)n * n);
        if (!a || !b || !c) {
            fprintf(stderr, "sgemm_peak: out of memory at %d x %d\n", n, n);
            return 1;
        }
        for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = (float)(i % 17) / 17.0f - 0.5f;
        double best = 1e30;
        for (int r = 0; r < 6; r++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            double t = now() - t0;
            if (r > 0 && t < best) best = t;
        }
        double rate = 2.0 * n * n * n / best / 1e9;
        printf("sgemm %d^3: %.1f GFLOP/s\n", n, rate);
        if (rate > best_rate) best_rate = rate, best_n = n;
        free(a);
        free(b);
        free(c);
    }
    printf("sgemm_peak gflops=%.2f n=%d\n", best_rate, best_n);
    return 0;
}
