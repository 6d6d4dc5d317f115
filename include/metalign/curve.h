/* A learning curve: p(correct) at every trial with its interval and the number of
 * observations behind it (episodes for the model, rows for the humans). The model's, the
 * humans' and the comparison's curves are all this one type. A trial without observations has
 * n[t] == 0 and NaN values; a curve asked for without intervals (n_boot = 0) has NaN bounds. */
#ifndef METALIGN_CURVE_H
#define METALIGN_CURVE_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/rng.h"

#define ML_CI_LEVEL 95.0        /* every interval the service reports (seaborn's default) */
#define ML_N_BOOT_DEFAULT 1000  /* bootstrap resamples unless asked otherwise (seaborn's) */
#define ML_N_BOOT_MAX 100000

typedef struct ml_curve {
    int n_trials;
    int64_t *n;         /* (n_trials) observations at each trial */
    double *p_correct;  /* (n_trials) */
    double *ci_low;     /* (n_trials) */
    double *ci_high;    /* (n_trials) */
} ml_curve;

/* n_trials trials with no observations yet (n = 0, values NaN). 0 or -1 (out of memory). */
int ml_curve_alloc(ml_curve *c, int n_trials);
void ml_curve_free(ml_curve *c);

/* Trial t from k ones of n observations: p = k / n and, with n_boot >= 1, the percentile
 * bootstrap interval of the mean (stats.h ml_proportion_ci) drawn from r; scratch holds n_boot
 * doubles. n == 0 leaves the trial undefined. */
void ml_curve_set(ml_curve *c, int t, int64_t k, int64_t n, int n_boot, ml_rng *r,
                  double *scratch);

/* Figures comparing two curves over their first n_trials trials: each one's mean p(correct)
 * weighted by observations (what the notebook's bar plot shows), and the RMSE and Pearson r
 * over the trials where both have observations. */
typedef struct ml_curve_comparison {
    double mean_a, mean_b; /* NaN without observations */
    double rmse;           /* NaN when no trial is shared */
    double pearson_r;      /* NaN with fewer than 2 shared trials or a constant curve */
    int trials_compared;
} ml_curve_comparison;

int ml_curve_compare(const ml_curve *a, const ml_curve *b, int n_trials, ml_curve_comparison *out);

#endif
