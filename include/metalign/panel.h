/* Per-trial curves over participants, with participant-bootstrap intervals and the split-half
 * noise ceiling (MODEL.md section 8; src/analysis/panel.c).
 *
 * A panel is a set of P sequences (participants) over trials 0..n_trials-1: has[p][t] says
 * whether sequence p has trial t, and each series (human correctness, the model's, the
 * baseline's) gives a value there. The curve of a series at trial t is the mean of its values
 * over the sequences that have trial t.
 *
 * Bootstrap (ml_panel_curves): n_boot resamples of P sequences drawn with replacement, all
 * from one stream ml_rng_seed(seed, stream): resample by resample, P draws
 * ml_rng_below(r, P) each. Every series is resampled with the same draws (so the intervals of
 * the humans, the model and the baseline are paired). A resample's value at trial t is the
 * mean over the drawn sequences that have trial t (each counted as often as it was drawn);
 * a resample without any is left out at that trial. The interval is numpy's linear
 * percentile of the resample values at (100 - level) / 2 and 100 - (100 - level) / 2.
 *
 * Noise ceiling (ml_noise_ceiling): n_splits random halvings, all from one stream: for each,
 * perm = 0..P-1, then Fisher-Yates from the top (for i = P-1 down to 1: j =
 * ml_rng_below(r, i + 1), swap perm[i], perm[j]); the first floor(P/2) of perm are one half,
 * the rest the other. r = Pearson correlation (stats.h) of the two halves' curves over the
 * trials both halves have; Spearman-Brown 2r / (1 + r). A split whose r is undefined (fewer
 * than 2 common trials, a constant curve) or -1 is left out; the answer is the mean and the
 * 2.5 / 97.5 percentiles of the rest, NaN when none is left (or P < 2). */
#ifndef METALIGN_PANEL_H
#define METALIGN_PANEL_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/curve.h"
#include "metalign/err.h"

#define ML_PANEL_MAX_SERIES 4

typedef struct ml_panel {
    size_t n_seq;
    int n_trials;
    const uint8_t *has;                        /* (n_seq, n_trials) */
    const double *series[ML_PANEL_MAX_SERIES]; /* each (n_seq, n_trials); read where has */
    int n_series;
} ml_panel;

/* One series' curve over a group of sequences: the one curve type (metalign/curve.h), n[t]
 * counting the sequences that have trial t. Where none has it, n[t] == 0 and the three values
 * are NaN. */
typedef ml_curve ml_panel_curve;

typedef struct ml_noise_ceiling {
    double r;            /* mean Spearman-Brown corrected split-half r */
    double ci_low;       /* 2.5th percentile over splits */
    double ci_high;      /* 97.5th */
    int splits;          /* splits that gave a value */
} ml_noise_ceiling;

/* The curves of every series over the sequences seq[0..n_group-1] (indices into the panel),
 * out[k] for series k (allocated here; ml_panel_curve_free). n_boot >= 0 (0: no intervals,
 * NaN), 0 < level < 100. */
int ml_panel_curves(const ml_panel *p, const size_t *seq, size_t n_group, int n_boot,
                    double level, uint64_t seed, uint64_t stream, ml_panel_curve *out,
                    ml_err *err);
void ml_panel_curve_free(ml_panel_curve *c);

/* The split-half noise ceiling of series k over the group, as above. */
int ml_noise_ceiling_compute(const ml_panel *p, int k, const size_t *seq, size_t n_group,
                             int n_splits, uint64_t seed, uint64_t stream, ml_noise_ceiling *out,
                             ml_err *err);

/* Pearson r and RMSE between two curves over the trials both have (n > 0); NaN when fewer
 * than 2 (r) or none (rmse). */
void ml_panel_curve_compare(const ml_panel_curve *a, const ml_panel_curve *b, double *r,
                            double *rmse);

#endif
