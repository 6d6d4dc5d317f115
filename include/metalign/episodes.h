/* The episode sampler of ThingsFunctionLearning (MODEL.md section 4), on the service's own
 * generator so that any episode can be replayed alone.
 *
 * Episode e of a request with seed s draws from the stream ml_rng_seed(r, s, e) only, so it
 * does not depend on batching, threads or the other episodes. The exact draw order:
 *
 *   1. items: a partial Fisher-Yates shuffle of 0 .. n-1 (n = d->n_items):
 *          scratch[i] = i for all i;
 *          for t = 0 .. seq_len-1:  j = t + ml_rng_below(r, n - t);
 *                                   swap(scratch[t], scratch[j]);  items[t] = scratch[t]
 *      (seq_len draws; seq_len distinct items, every ordered selection equally likely)
 *   2. labels[t] = Y[items[t], dim] >= median[dim] ? 1 : 0        (no draws)
 *   3. one more draw: flip = ml_rng_next(r) >> 63; if flip, labels[t] = 1 - labels[t] for
 *      every t (the whole episode, probability 1/2).
 *
 * The episode's dimension is the caller's choice (the service uses dims[e % n_dims]). */
#ifndef METALIGN_EPISODES_H
#define METALIGN_EPISODES_H

#include <stdint.h>

#include "metalign/dataset.h"
#include "metalign/err.h"

/* 0 when ml_episode_sample may be called with (dim, seq_len) on d; else -1 and err says
 * which bound is broken (dim in [0, K), seq_len in [1, n_items]). */
int ml_episode_check(const ml_dataset *d, int dim, int seq_len, ml_err *err);

/* Samples episode `episode` as described above: items and labels get seq_len ints; scratch
 * holds d->n_items ints. Preconditions: ml_episode_check(d, dim, seq_len) == 0 and
 * episode >= 0; the function reads nothing outside d's arrays when they hold. */
void ml_episode_sample(const ml_dataset *d, uint64_t seed, int episode, int dim, int seq_len,
                       int *items, int *labels, int *scratch);

/* The dense model input of an episode, as the research code builds it (MODEL.md section 2):
 * out (S, 2 + D), row t = [onehot(labels[t-1]) (2), X[items[t]] (D)], row 0 gets [0, 0].
 * X is (n, D): d->X or d->X_std. For replaying an episode through a plain forward pass. */
void ml_episode_inputs(const float *X, int D, const int *items, const int *labels, int S,
                       float *out);

#endif
