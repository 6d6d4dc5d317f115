/* The episode sampler; the draw order is part of the contract (episodes.h). */
#include "metalign/episodes.h"

#include <string.h>

#include "metalign/rng.h"

int ml_episode_check(const ml_dataset *d, int dim, int seq_len, ml_err *err) {
    if (dim < 0 || dim >= d->target_dims)
        return ml_errf(err, "dimension %d is out of range: the targets have %d dimensions "
                       "(0 .. %d)", dim, d->target_dims, d->target_dims - 1);
    if (seq_len < 1 || seq_len > d->n_items)
        return ml_errf(err, "sequence length %d is out of range: an episode holds 1 .. %d "
                       "distinct items", seq_len, d->n_items);
    return 0;
}

void ml_episode_sample(const ml_dataset *d, uint64_t seed, int episode, int dim, int seq_len,
                       int *items, int *labels, int *scratch) {
    ml_rng r;
    ml_rng_seed(&r, seed, (uint64_t)episode);
    int n = d->n_items, K = d->target_dims;
    for (int i = 0; i < n; i++) scratch[i] = i;
    for (int t = 0; t < seq_len; t++) {
        int j = t + (int)ml_rng_below(&r, (uint64_t)(n - t));
        int tmp = scratch[t];
        scratch[t] = scratch[j];
        scratch[j] = tmp;
        items[t] = scratch[t];
    }
    float med = d->median[dim];
    for (int t = 0; t < seq_len; t++)
        labels[t] = d->Y[(size_t)items[t] * (size_t)K + (size_t)dim] >= med;
    int flip = (int)(ml_rng_next(&r) >> 63);
    if (flip)
        for (int t = 0; t < seq_len; t++) labels[t] = 1 - labels[t];
}

void ml_episode_inputs(const float *X, int D, const int *items, const int *labels, int S,
                       float *out) {
    size_t W = (size_t)D + 2;
    for (int t = 0; t < S; t++) {
        float *row = out + (size_t)t * W;
        row[0] = t > 0 && labels[t - 1] == 0 ? 1.0f : 0.0f;
        row[1] = t > 0 && labels[t - 1] == 1 ? 1.0f : 0.0f;
        memcpy(row + 2, X + (size_t)items[t] * (size_t)D, sizeof(float) * (size_t)D);
    }
}
