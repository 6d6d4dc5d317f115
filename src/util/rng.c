/* xoshiro256** seeded through splitmix64; the recipe is spelled out in rng.h. */
#include "metalign/rng.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void ml_rng_seed(ml_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed;
    x = splitmix64(&x) ^ stream;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t ml_rng_next(ml_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t ml_rng_below(ml_rng *r, uint64_t n) {
    if (n == 0) return 0;
    __uint128_t m = (__uint128_t)ml_rng_next(r) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        /* (2^64 - n) % n: the size of the short bucket that must be rejected. */
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = (__uint128_t)ml_rng_next(r) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double ml_rng_double(ml_rng *r) { return (double)(ml_rng_next(r) >> 11) * 0x1.0p-53; }
