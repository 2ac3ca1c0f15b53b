/* A virtual Brownian tree (Li et al. 2020, as torchsde's BrownianTree): a
 * Brownian motion W on [t0, t1], W(t0) = 0, fixed by a seed and evaluated at
 * any t without storing the path. W(t1) is drawn first; each midpoint of an
 * interval is drawn from the Brownian bridge between its ends with noise
 * seeded from the interval's position in the tree, down to a resolution of
 * (t1 - t0) / 2^20 (linear inside). So W(t) is the same whichever points were
 * asked before, and an SDE sampler's noise over an interval does not depend on
 * how the rest of the range is cut into steps.
 *
 * The noise is difusa's own (splitmix64 / xoshiro256** with a double
 * Box–Muller); it is not torchsde's. */
#ifndef DF_SCHED_BROWNIAN_H
#define DF_SCHED_BROWNIAN_H

#include "../df.h"

typedef struct df_brownian df_brownian;

/* A tree over [t0, t1] (t0 < t1) for vectors of `numel` values. */
DF_API int df_brownian_new(uint64_t seed, double t0, double t1, int64_t numel, df_brownian **out);
DF_API void df_brownian_free(df_brownian *b);

/* W(t) into out (numel floats); t is clamped to [t0, t1]. */
DF_API int df_brownian_value(df_brownian *b, double t, float *out);

/* (W(tb) - W(ta)) / √|tb - ta| into out: standard normal when ta != tb, as
 * k-diffusion's BrownianTreeNoiseSampler(sigma, sigma_next); zeros when equal. */
DF_API int df_brownian_increment(df_brownian *b, double ta, double tb, float *out);

#endif
