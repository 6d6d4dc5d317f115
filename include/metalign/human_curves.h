/* The humans' p(correct) learning curves, aggregated the way the notebook's pandas/seaborn
 * code does (src/analysis/human_curves.c). */
#ifndef METALIGN_HUMAN_CURVES_H
#define METALIGN_HUMAN_CURVES_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/curve.h"
#include "metalign/err.h"
#include "metalign/human_csv.h"

#define ML_HUMAN_MAX_TRIAL_LIMIT 100000 /* largest max_trial accepted */
#define ML_HUMAN_MAX_DIMENSIONS 1024    /* most distinct dimensions accepted */

/* One curve over trials 0..max_trial, built from the rows with trial <= max_trial (as the
 * notebook's `human_data[human_data.trial <= 99]`). p_correct[t] is the mean of `correct` over
 * the rows at trial t (every row is an observation, as in pandas' groupby-mean and seaborn's
 * lineplot); ci_low/ci_high the seeded percentile-bootstrap interval of that mean (stats.h).
 * A trial without rows has curve.n[t] == 0 and NaN values: callers must test it. */
typedef struct ml_human_curve {
    int dimension;        /* -1 for the overall curve */
    size_t participants;  /* distinct participants with a row at trial <= max_trial */
    size_t rows;          /* rows at trial <= max_trial */
    ml_curve curve;       /* n: rows at each trial */
} ml_human_curve;

typedef struct ml_human_curves {
    int max_trial;
    int n_trials;         /* max_trial + 1 */
    uint64_t seed;
    int n_boot;
    ml_human_curve overall;
    int n_dims;
    ml_human_curve *by_dim; /* (n_dims), one per dimension present, ascending */
} ml_human_curves;

/* Bootstrap draws for curve c at trial t come from ml_rng_seed(seed, stream) with
 * stream = t for the overall curve and ((dimension + 1) << 32) | t for a dimension, so a
 * curve's interval does not depend on which other dimensions are present. Intervals are at
 * ML_CI_LEVEL; n_boot = 0 gives none (NaN bounds). 0 <= max_trial <= ML_HUMAN_MAX_TRIAL_LIMIT,
 * 0 <= n_boot <= ML_N_BOOT_MAX. */
int ml_human_curves_compute(const ml_human_data *d, int max_trial, uint64_t seed, int n_boot,
                            ml_human_curves *out, ml_err *err);
void ml_human_curves_free(ml_human_curves *c);

#endif
