/* The episode samplers of both generations, on the service's own generator so that any
 * episode can be replayed alone: ThingsFunctionLearning (the seed's, MODEL.md section 4) and
 * FunctionDataset (the later generation's, section 7; ml_fn_episode_sample below).
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
#include "metalign/rng.h"

/* 0 when ml_episode_sample or ml_fn_episode_sample may be called with (dim, seq_len) on d;
 * else -1 and err says which bound is broken (dim in [0, K), seq_len in [1, n_items]). */
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

/* ---- The later generation: FunctionDataset (MODEL.md section 7) ----------------------------
 *
 * For dimension dim with lower median m = d->median[dim]: the positives are the items with
 * Y[i, dim] > m, the negatives those with Y[i, dim] <= m, each list in item order. Episode e
 * of a request with seed s draws from the stream ml_rng_seed(r, s, e) only, in this order:
 *
 *   1. the number of positives, a normal draw by Box-Muller on two uniforms:
 *          u1 = 1 - ml_rng_double(r)            (in (0, 1], so log(u1) is finite)
 *          u2 = ml_rng_double(r)
 *          z  = sqrt(-2 log u1) * cos(2 pi u2)  (double precision)
 *          n_pos = rint(S/2 + (S/20) z)         (round half to even, as Python's round and
 *                                                torch.round), clamped to [0, S]
 *   2. k_pos = min(n_pos, #pos) positives: a partial Fisher-Yates over the positive list,
 *          for t = 0 .. k_pos-1: j = t + ml_rng_below(r, #pos - t); swap(pos[t], pos[j])
 *   3. k_neg = min(S - n_pos, #neg) negatives: the same over the negative list
 *   4. the episode pos[0 .. k_pos) followed by neg[0 .. k_neg), L = k_pos + k_neg trials,
 *      shuffled: for t = L-1 down to 1: j = ml_rng_below(r, t + 1); swap(ep[t], ep[j])
 *   5. labels[t] = Y[items[t], dim] > m; magnitudes[t] = Y[items[t], dim] - m (float32);
 *      no draws, no flipping. The features are the raw X (the model takes them unscaled).
 *
 * L is S unless one side runs out (fewer than n_pos positives or S - n_pos negatives), so
 * items, labels and magnitudes need room for S entries; L >= 1 (at least half the items are
 * at or below the lower median). The model is fed magnitudes[t - 1] at trial t. */

/* Samples FunctionDataset episode `episode` as above and returns its length L; scratch holds
 * d->n_items ints. Preconditions as for ml_episode_sample. */
int ml_fn_episode_sample(const ml_dataset *d, uint64_t seed, int episode, int dim, int seq_len,
                         int *items, int *labels, float *magnitudes, int *scratch);

/* Step 1 alone: the number of positives n_pos for sequences of seq_len trials, drawn from r
 * (two draws). */
int ml_fn_episode_positives(ml_rng *r, int seq_len);

#endif
