/* make bench: throughput of the heavy ops on the CPU backend, each against a
 * bare BLAS sgemm of the equivalent GEMM shape timed in the same run, and the
 * extra memory of the attention op as the sequence grows.
 * Timings are the best of several runs after a warm-up. */
#include "cpu/cpu.h"
#include "opencl.h"
#include "ops.h"

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <cblas.h>
#include <clblast_c.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static df_backend *bench_be; /* the backend under test */

static void sync(void)
{
    if (bench_be != df_backend_cpu()) df_opencl_finish(bench_be);
}

static df_tensor *rand_tensor(int ndim, const int64_t *shape, float scale)
{
    df_tensor *t = df_tensor_new(NULL, DF_F32, ndim, shape);
    if (!t) {
        fprintf(stderr, "bench: %s\n", df_last_error());
        exit(1);
    }
    float *d = df_tensor_data(t);
    uint32_t s = 12345;
    for (int64_t i = 0; i < df_tensor_numel(t); i++) {
        s = s * 1664525u + 1013904223u;
        d[i] = scale * ((float)(s >> 8) / 16777216.0f - 0.5f);
    }
    if (bench_be == df_backend_cpu()) return t;
    df_tensor *dev = NULL;
    if (df_tensor_to(t, bench_be, &dev) != DF_OK) {
        fprintf(stderr, "bench: %s\n", df_last_error());
        exit(1);
    }
    df_tensor_free(t);
    return dev;
}

/* Best wall time of `reps` runs of a bare sgemm (row-major, no transposes) on
 * the backend under test: the BLAS on the CPU, CLBlast on OpenCL. */
static double time_sgemm(int m, int n, int k, int reps)
{
    df_tensor *a = rand_tensor(2, (int64_t[]){m, k}, 1.0f), *b = rand_tensor(2, (int64_t[]){k, n}, 1.0f);
    df_tensor *c = rand_tensor(2, (int64_t[]){m, n}, 1.0f);
    int cpu = bench_be == df_backend_cpu();
    cl_command_queue q = NULL;
    if (!cpu) { /* the queue the backend uses is private; CLBlast gets one of its own on the same context */
        cl_mem mem = (cl_mem)a->buf->data;
        cl_context ctx;
        cl_device_id dev;
        clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof ctx, &ctx, NULL);
        clGetContextInfo(ctx, CL_CONTEXT_DEVICES, sizeof dev, &dev, NULL);
        q = clCreateCommandQueue(ctx, dev, 0, NULL);
    }
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        if (cpu) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, df_tensor_data(a), k,
                        df_tensor_data(b), n, 0.0f, df_tensor_data(c), n);
        } else {
            CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, (size_t)m, (size_t)n,
                         (size_t)k, 1.0f, (cl_mem)a->buf->data, 0, (size_t)k, (cl_mem)b->buf->data, 0, (size_t)n, 0.0f,
                         (cl_mem)c->buf->data, 0, (size_t)n, &q, NULL);
            clFinish(q);
        }
        double t = now() - t0;
        if (r && t < best) best = t; /* run 0 warms up */
    }
    if (q) clReleaseCommandQueue(q);
    df_tensor_free(a);
    df_tensor_free(b);
    df_tensor_free(c);
    return best;
}

static void row(const char *name, double flops, double t, double t_ref)
{
    printf("%-44s %9.2f ms %8.1f GFLOP/s", name, t * 1e3, flops / t * 1e-9);
    if (t_ref > 0)
        printf("   %s %8.1f GFLOP/s   ratio %.2fx\n", bench_be == df_backend_cpu() ? "sgemm  " : "CLBlast",
               flops / t_ref * 1e-9, t_ref / t);
    else
        printf("\n");
}

#define TIME_OP(reps, call, best)                                                                  \
    do {                                                                                           \
        best = 1e30;                                                                               \
        for (int r_ = 0; r_ <= (reps); r_++) {                                                     \
            df_tensor *y_ = NULL;                                                                  \
            double t0_ = now();                                                                    \
            if ((call) != DF_OK) {                                                                 \
                fprintf(stderr, "bench: %s\n", df_last_error());                                   \
                exit(1);                                                                           \
            }                                                                                      \
            sync();                                                                                \
            double t_ = now() - t0_;                                                               \
            df_tensor_free(y_);                                                                    \
            if (r_ && t_ < best) best = t_;                                                        \
        }                                                                                          \
    } while (0)

static void bench_conv(int64_t n, int64_t c, int64_t hw, int reps)
{
    df_tensor *x = rand_tensor(4, (int64_t[]){n, c, hw, hw}, 2.0f);
    df_tensor *w = rand_tensor(4, (int64_t[]){c, c, 3, 3}, 0.1f);
    df_tensor *b = rand_tensor(1, (int64_t[]){c}, 0.1f);
    df_conv2d_params p = {1, 1, 1, 1, 0, 0};
    double t, m = (double)c, k = (double)c * 9, cols = (double)(n * hw * hw);
    TIME_OP(reps, df_conv2d(x, w, b, &p, &y_), t);
    double t_ref = time_sgemm((int)m, (int)cols, (int)k, reps);
    char name[96];
    snprintf(name, sizeof name, "conv2d 3x3 %lld->%lld on %lldx%lldx%lldx%lld", (long long)c, (long long)c,
             (long long)n, (long long)c, (long long)hw, (long long)hw);
    row(name, 2 * m * k * cols, t, t_ref);
    df_tensor_free(x);
    df_tensor_free(w);
    df_tensor_free(b);
}

static void bench_matmul(int64_t m, int64_t n, int64_t k, int reps)
{
    df_tensor *a = rand_tensor(2, (int64_t[]){m, k}, 1.0f), *b = rand_tensor(2, (int64_t[]){k, n}, 1.0f);
    double t;
    TIME_OP(reps, df_matmul(a, b, 0, 0, &y_), t);
    double t_ref = time_sgemm((int)m, (int)n, (int)k, reps);
    char name[96];
    snprintf(name, sizeof name, "matmul %lldx%lldx%lld", (long long)m, (long long)n, (long long)k);
    row(name, 2.0 * (double)m * (double)n * (double)k, t, t_ref);
    df_tensor_free(a);
    df_tensor_free(b);
}

/* Returns the peak bytes the op allocated beyond its inputs (output included). */
static size_t bench_attention(int64_t tokens, int heads, int64_t d, int reps, int print)
{
    df_tensor *q = rand_tensor(3, (int64_t[]){1, tokens, heads * d}, 2.0f);
    df_tensor *k = rand_tensor(3, (int64_t[]){1, tokens, heads * d}, 2.0f);
    df_tensor *v = rand_tensor(3, (int64_t[]){1, tokens, heads * d}, 2.0f);
    int cpu = bench_be == df_backend_cpu();
    size_t base = cpu ? df_cpu_mem_stats_get().current : df_opencl_get_stats(bench_be).bytes_in_use;
    if (cpu)
        df_cpu_mem_stats_reset_peak();
    else
        df_opencl_reset_peak(bench_be);
    double t;
    TIME_OP(reps, df_attention(q, k, v, heads, 0, &y_), t);
    size_t extra = (cpu ? df_cpu_mem_stats_get().peak : df_opencl_get_stats(bench_be).peak_bytes) - base;
    if (print) {
        char name[96];
        snprintf(name, sizeof name, "attention %lld tokens, %d heads, dim %lld", (long long)tokens, heads,
                 (long long)d);
        row(name, 4.0 * heads * (double)tokens * (double)tokens * (double)d, t, 0);
    }
    df_tensor_free(q);
    df_tensor_free(k);
    df_tensor_free(v);
    return extra;
}

static void suite(const char *label, int reps, int big_reps)
{
    printf("%s\n", label);
    printf("%-44s %12s %16s\n", "op", "best time", "achieved");
    bench_conv(1, 320, 64, reps);
    bench_conv(2, 640, 32, reps);
    bench_matmul(4096, 4096, 320, reps);
    bench_attention(4096, 8, 40, big_reps, 1);

    printf("\nattention extra memory (8 heads, dim 40): peak bytes allocated by the op beyond its inputs\n");
    printf("%8s %14s %14s %14s\n", "tokens", "extra MiB", "output MiB", "scratch MiB");
    const int64_t ns[] = {1024, 4096, 16384};
    for (int i = 0; i < 3; i++) {
        size_t extra = bench_attention(ns[i], 8, 40, 0, 0);
        double out_mib = (double)(ns[i] * 8 * 40 * 4) / (1 << 20);
        printf("%8lld %14.2f %14.2f %14.2f\n", (long long)ns[i], (double)extra / (1 << 20), out_mib,
               (double)extra / (1 << 20) - out_mib);
    }
    double naive = 16384.0 * 16384.0 * 8 * 4 / (1 << 20);
    printf("(a full score matrix at 16384 tokens would be %.0f MiB)\n\n", naive);
}

/* bench_ops [cpu|opencl|all]: the backends to measure (default all; OpenCL
 * is skipped with a message when no device exists). */
int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "all";
    printf("difusa %s\n\n", DF_VERSION);
    if (!strcmp(which, "cpu") || !strcmp(which, "all")) {
        bench_be = df_backend_cpu();
        char label[64];
        snprintf(label, sizeof label, "CPU backend, %d threads", df_cpu_threads());
        suite(label, 5, 3);
    }
    if (!strcmp(which, "opencl") || !strcmp(which, "all")) {
        df_backend *be = NULL;
        if (df_backend_opencl_create(NULL, &be) != DF_OK) {
            printf("OpenCL: skipped (%s)\n", df_last_error());
            return strcmp(which, "opencl") ? 0 : 1;
        }
        bench_be = be;
        char label[300];
        snprintf(label, sizeof label, "OpenCL backend: %s / %s", df_opencl_device(be)->platform,
                 df_opencl_device(be)->name);
        suite(label, 2, 1);
        df_backend_free(be);
    }
    return 0;
}
