/* The episode sampler; the draw order is part of the contract (episodes.h). */
#include "metalign/episodes.h"

#include <math.h>
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

/* ---- FunctionDataset (the later generation); the draw order is episodes.h's ---------------- */

int ml_fn_episode_positives(ml_rng *r, int seq_len) {
    double u1 = 1.0 - ml_rng_double(r), u2 = ml_rng_double(r);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    double x = rint((double)seq_len / 2.0 + (double)seq_len / 20.0 * z);
    if (!(x > 0)) return 0; /* also a NaN, which cannot happen */
    return x > seq_len ? seq_len : (int)x;
}

/* The first k of list (n entries) after a partial Fisher-Yates: k uniform distinct picks. */
static void pick(ml_rng *r, int *list, int n, int k) {
    for (int t = 0; t < k; t++) {
        int j = t + (int)ml_rng_below(r, (uint64_t)(n - t));
        int tmp = list[t];
        list[t] = list[j];
        list[j] = tmp;
    }
}

int ml_fn_episode_sample(const ml_dataset *d, uint64_t seed, int episode, int dim, int seq_len,
                         int *items, int *labels, float *magnitudes, int *scratch) {
    ml_rng r;
    ml_rng_seed(&r, seed, (uint64_t)episode);
    int n = d->n_items, K = d->target_dims;
    float m = d->median[dim];
    int n_pos = ml_fn_episode_positives(&r, seq_len);
    /* positives from the front of scratch, negatives after them, both in item order */
    int P = 0;
    for (int i = 0; i < n; i++)
        if (d->Y[(size_t)i * K + dim] > m) scratch[P++] = i;
    int Q = P;
    for (int i = 0; i < n; i++)
        if (!(d->Y[(size_t)i * K + dim] > m)) scratch[Q++] = i;
    int *pos = scratch, *neg = scratch + P, n_neg = n - P;
    int k_pos = n_pos < P ? n_pos : P, k_neg = seq_len - n_pos < n_neg ? seq_len - n_pos : n_neg;
    pick(&r, pos, P, k_pos);
    pick(&r, neg, n_neg, k_neg);
    int L = k_pos + k_neg;
    memcpy(items, pos, sizeof(int) * (size_t)k_pos);
    memcpy(items + k_pos, neg, sizeof(int) * (size_t)k_neg);
    for (int t = L - 1; t > 0; t--) {
        int j = (int)ml_rng_below(&r, (uint64_t)(t + 1));
        int tmp = items[t];
        items[t] = items[j];
        items[j] = tmp;
    }
    for (int t = 0; t < L; t++) {
        float y = d->Y[(size_t)items[t] * K + dim];
        labels[t] = y > m;
        magnitudes[t] = y - m;
    }
    return L;
}
