/* Internal: the raw generators and the one rounding-sensitive step behind
 * df_rng, exposed so the tests can check them against known answers
 * (std::mt19937's, Random123's Philox vectors, exact arithmetic). */
#ifndef DF_RNG_INTERNAL_H
#define DF_RNG_INTERNAL_H

#include "df.h"

#define DF_MT19937_N 624

typedef struct df_mt19937 {
    uint32_t state[DF_MT19937_N];
    int next; /* index of the next state word; DF_MT19937_N: twist first */
} df_mt19937;

/* Knuth's initialisation, as std::mt19937(seed) and torch's engine do it. */
DF_INTERNAL void df_mt19937_seed(df_mt19937 *mt, uint32_t seed);
DF_INTERNAL uint32_t df_mt19937_next(df_mt19937 *mt);

/* One Philox4x32-10 block: counter (c0, c1, c2, c3), key (k0, k1) -> 4 words. */
DF_INTERNAL void df_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* The Box-Muller input of the CUDA kind: x * scale + scale / 2 in double, with a
 * rounding after the product (AUTOMATIC1111's numpy code never fuses the two). */
DF_INTERNAL double df_philox_uniform(uint32_t x, float scale);

#endif
