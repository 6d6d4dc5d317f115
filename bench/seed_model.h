/* A seed-size model for the benchmarks (In = 2306, C = 768, H = 12, I = 3072, L = 6, RoPE, no
 * biases, logit bias) with random weights, as a safetensors file in memory so it is loaded
 * through the real path; and the random numbers the benchmarks fill their inputs with. */
#ifndef METALIGN_BENCH_SEED_MODEL_H
#define METALIGN_BENCH_SEED_MODEL_H

#include <stddef.h>

enum { SEED_IN = 2306, SEED_C = 768, SEED_H = 12, SEED_FF = 3072, SEED_L = 6 };

/* uniform in [-1, 1), one fixed stream */
float bench_frand(void);
/* x (n) = scale * bench_frand() */
void bench_fill(float *x, size_t n, float scale);
/* The seed-size model as safetensors bytes (malloc'd, *len bytes), weights scaled so
 * activations stay O(1). */
unsigned char *bench_seed_model_file(size_t *len);

#endif
