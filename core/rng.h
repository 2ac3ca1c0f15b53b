/* Seeded Gaussian noise, bit-compatible with the generators users know
 * (checked against torch 2.5.1):
 *   DF_RNG_CPU         torch.manual_seed(s); torch.randn(shape) as a stock torch
 *                      gives it on an x86-64 CPU with AVX2 (mt19937; the scalar
 *                      Box-Muller in double it takes for < 16 elements, and its
 *                      16-wide AVX2 kernel, avx_mathfun's log/sincos with the
 *                      FMAs the compiler fused, for >= 16). AVX-512 machines give
 *                      the same values: torch runs its AVX2 normal_ kernel there.
 *   DF_RNG_CPU_SCALAR  the same with torch's portable kernel for >= 16 elements
 *                      (logf/sincosf from the C library, so it matches torch on
 *                      the same machine): what torch gives under
 *                      ATEN_CPU_CAPABILITY=default, on x86 CPUs without AVX2 and
 *                      on builds without the AVX2 kernel (aarch64, Apple silicon:
 *                      not checked here). Below 16 elements both CPU kinds agree.
 *   DF_RNG_CUDA        torch's CUDA Philox4x32-10 generator, as AUTOMATIC1111's
 *                      "NV" seeds reproduce it (bit-exact to its numpy version;
 *                      stable-diffusion.cpp's --rng cuda does the Box-Muller in
 *                      float and differs from it by up to ~6e-5).
 * The CPU kinds use the low 32 bits of the seed, as torch.manual_seed does; the
 * CUDA kind uses all 64. A generator keeps its state across calls, as torch's
 * does (the CPU kinds also keep the spare Box-Muller value of the < 16 path). */
#ifndef DF_RNG_H
#define DF_RNG_H

#include "tensor.h"

typedef enum { DF_RNG_CPU = 0, DF_RNG_CUDA = 1, DF_RNG_CPU_SCALAR = 2 } df_rng_kind;

typedef struct df_rng df_rng;

DF_API df_rng *df_rng_new(df_rng_kind kind, uint64_t seed);
DF_API void df_rng_free(df_rng *r);
DF_API void df_rng_seed(df_rng *r, uint64_t seed);
DF_API df_rng_kind df_rng_get_kind(const df_rng *r);
/* "cpu" (alias "cpu-avx2") / "cpu-scalar" / "cuda" (alias "nv") -> kind;
 * -1 when unknown or NULL. */
DF_API int df_rng_kind_from_name(const char *name);

/* n standard normal floats, as torch.randn(n) on this generator would give
 * (the values of torch.randn(shape) for any shape with n elements). */
DF_API int df_rng_randn(df_rng *r, float *out, int64_t n);
/* Fills an f32 tensor (any backend). */
DF_API int df_rng_randn_tensor(df_rng *r, df_tensor *t);

#endif
