/* The CKA bootstrap done the slow, obvious way, for checking ml_cka_bootstrap. */
#ifndef METALIGN_TESTS_BOOT_BY_HAND_H
#define METALIGN_TESTS_BOOT_BY_HAND_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/cka.h"
#include "metalign/rng.h"
#include "metalign/stats.h"

/* The interval by hand: draw each resample exactly as cka.h documents, gather the drawn rows
 * of X and Y, take the direct CKA of each and numpy-percentile them. */
static void bootstrap_by_hand(const float *X, int n, int p, const float *Yt, int q, int B,
                              double level, uint64_t seed, double *lo, double *hi) {
    float *Xb = malloc(sizeof(float) * (size_t)n * p), *Yb = malloc(sizeof(float) * n * q);
    double *vals = malloc(sizeof(double) * B);
    for (int b = 0; b < B; b++) {
        ml_rng r;
        ml_rng_seed(&r, seed, ML_CKA_STREAM_BOOT + (uint64_t)b);
        /* the weights: counts per item; rows are laid out item by item */
        int *w = calloc((size_t)n, sizeof(int));
        for (int i = 0; i < n; i++) w[ml_rng_below(&r, (uint64_t)n)]++;
        int row = 0;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < w[i]; c++, row++) {
                memcpy(Xb + (size_t)row * p, X + (size_t)i * p, sizeof(float) * p);
                memcpy(Yb + (size_t)row * q, Yt + (size_t)i * q, sizeof(float) * q);
            }
        free(w);
        vals[b] = ml_cka_linear_direct(Xb, n, p, Yb, q);
    }
    *lo = ml_percentile(vals, (size_t)B, (100 - level) / 2);
    *hi = ml_percentile(vals, (size_t)B, 100 - (100 - level) / 2);
    free(Xb);
    free(Yb);
    free(vals);
}

#endif
