/* Summary statistics for curves: means with seaborn-style bootstrap intervals, and the
 * figures that compare two curves. */
#ifndef METALIGN_STATS_H
#define METALIGN_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"
#include "metalign/rng.h"

/* Mean of x (n values) and the percentile bootstrap interval of the mean as seaborn's
 * errorbar=("ci", level) computes it: n_boot resamples of n values drawn with replacement
 * (index = ml_rng_below(r, n), resample by resample, value by value), the mean of each, then
 * the (100-level)/2 and 100-(100-level)/2 percentiles with numpy's linear interpolation.
 * n == 0 gives NaN for all three (callers report no value); n == 1 gives lo == hi == mean
 * without drawing; n_boot < 1 or level outside (0, 100] gives lo = hi = NaN.
 * scratch holds n_boot doubles; when resamples were drawn, it returns them (their means)
 * in ascending order. */
void ml_mean_ci(const double *x, size_t n, int n_boot, double level, ml_rng *r,
                double *scratch, double *mean, double *lo, double *hi);

/* The same for 0/1 data given as counts (k ones of n), which is what p(correct) is: the
 * resampled mean of n Bernoulli draws, exactly the distribution ml_mean_ci would sample
 * (not the same draws: each resample's count is drawn by inverting the Binomial(n, k/n) CDF
 * with one ml_rng_double: found by bisection in a table of the CDF, or, when the table would
 * be too long, by one sweep over the sorted uniforms; both give the same resamples).
 * k == 0 or k == n gives lo == hi == mean without drawing; k > n gives NaN for all three;
 * otherwise as ml_mean_ci, scratch included. */
void ml_proportion_ci(size_t k, size_t n, int n_boot, double level, ml_rng *r, double *scratch,
                      double *mean, double *lo, double *hi);

/* numpy.percentile(x, q) with linear interpolation (bit-identical, numpy's _lerp); sorts x
 * in place. NaN when n == 0 or q is outside [0, 100]; x must not hold NaN. */
double ml_percentile(double *x, size_t n, double q);

/* Pearson correlation of two equal-length series, two-pass in double, clipped to [-1, 1] as
 * numpy.corrcoef does (NaN when either is constant or n < 2). */
double ml_pearson(const double *a, const double *b, size_t n);
/* Root mean squared difference (NaN when n == 0). */
double ml_rmse(const double *a, const double *b, size_t n);

#endif
