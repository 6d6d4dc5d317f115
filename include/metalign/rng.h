/* The service's documented random number generator: xoshiro256** (Blackman & Vigna), seeded
 * through splitmix64. Every random choice the service makes (episodes, bootstrap resamples)
 * comes from a stream named by (seed, stream), so results are the same on every machine and do
 * not depend on how work is split into batches or threads.
 *
 * The exact recipe, so that anyone can reimplement it (tests/reference/make_stats_fixtures.py
 * does, in Python); all arithmetic is modulo 2^64:
 *
 *   splitmix64(x):  x += 0x9E3779B97F4A7C15; z = x;
 *                   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *                   z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *                   return z ^ (z >> 31)          (x is updated in place)
 *
 *   ml_rng_seed(seed, stream):
 *                   x = seed;  x = splitmix64(x) ^ stream;
 *                   s[0..3] = four successive splitmix64(x)
 *
 *   ml_rng_next:    result = rotl(s[1] * 5, 7) * 9;  t = s[1] << 17;
 *                   s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
 *                   s[2] ^= t; s[3] = rotl(s[3], 45);  return result
 *
 * Mixing the seed through splitmix64 before the stream is folded in (rather than
 * seed ^ stream * constant) keeps structured pairs apart: (seed, stream) and (seed', stream')
 * share a state only if splitmix64(seed) ^ stream == splitmix64(seed') ^ stream', which small
 * seeds and streams never meet. The four state words are distinct splitmix64 outputs (a
 * bijection of distinct counters), so the state is never all zero. */
#ifndef METALIGN_RNG_H
#define METALIGN_RNG_H

#include <stdint.h>

typedef struct ml_rng {
    uint64_t s[4];
} ml_rng;

/* State from splitmix64 applied to seed and stream (e.g. the episode index), as above. */
void ml_rng_seed(ml_rng *r, uint64_t seed, uint64_t stream);
uint64_t ml_rng_next(ml_rng *r);
/* Uniform integer in [0, n), n >= 1, without modulo bias (Lemire's nearly divisionless
 * method): m = next * n (128-bit); if low64(m) < n, redraw while low64(m) < (2^64 - n) % n;
 * the answer is high64(m). n == 0 returns 0 without drawing. */
uint64_t ml_rng_below(ml_rng *r, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits: (next >> 11) * 2^-53. */
double ml_rng_double(ml_rng *r);

#endif
