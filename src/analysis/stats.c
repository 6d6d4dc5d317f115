/* Curve statistics: seaborn's percentile bootstrap of a mean, numpy's linear percentile, and
 * the two figures that compare curves. Sums are in double throughout. */
#include "metalign/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's _lerp: interpolates from whichever end is nearer, which is what makes the result
 * bit-identical to numpy's (and exact at t == 1). */
static double lerp(double a, double b, double t) {
    double d = b - a;
    return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

/* numpy.percentile(..., method="linear") of ascending-sorted x: virtual index (n-1) * q/100. */
static double percentile_sorted(const double *x, size_t n, double q) {
    if (n == 0 || !(q >= 0 && q <= 100)) return NAN;
    double v = (double)(n - 1) * (q / 100.0);
    if (v >= (double)(n - 1)) return x[n - 1];
    double lo = floor(v);
    size_t i = (size_t)lo;
    return lerp(x[i], x[i + 1], v - lo);
}

double ml_percentile(double *x, size_t n, double q) {
    if (n == 0) return NAN;
    qsort(x, n, sizeof *x, cmp_double);
    return percentile_sorted(x, n, q);
}

/* The interval ends from n_boot sorted bootstrap means. */
static void interval_sorted(const double *boot, int n_boot, double level, double *lo,
                            double *hi) {
    double tail = (100.0 - level) / 2.0;
    *lo = percentile_sorted(boot, (size_t)n_boot, tail);
    *hi = percentile_sorted(boot, (size_t)n_boot, 100.0 - tail);
}

static int bad_request(size_t n, int n_boot, double level, double *mean, double *lo,
                       double *hi) {
    if (n == 0) {
        *mean = *lo = *hi = NAN;
        return 1;
    }
    if (n_boot < 1 || !(level > 0 && level <= 100)) {
        *lo = *hi = NAN;
        return 1;
    }
    return 0;
}

void ml_mean_ci(const double *x, size_t n, int n_boot, double level, ml_rng *r,
                double *scratch, double *mean, double *lo, double *hi) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += x[i];
    *mean = n ? sum / (double)n : NAN;
    if (bad_request(n, n_boot, level, mean, lo, hi)) return;
    if (n == 1) {
        *lo = *hi = *mean;
        return;
    }
    for (int b = 0; b < n_boot; b++) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += x[ml_rng_below(r, n)];
        scratch[b] = s / (double)n;
    }
    qsort(scratch, (size_t)n_boot, sizeof *scratch, cmp_double);
    interval_sorted(scratch, n_boot, level, lo, hi);
}

/* Entries of the CDF table the direct inversion below keeps on the stack; an interval that
 * needs more (a large n with a high k/n) takes the sorting sweep instead. */
#define ML_CDF_TABLE 2048

/* The binomial CDF's step from j to j + 1, in logs (see ml_proportion_ci). Both inversions
 * below take it in the same order, so they see the very same CDF values. */
static double pmf_step(double log_pmf, size_t n, size_t j, double log_odds) {
    log_pmf += log((double)(n - j) / (double)(j + 1)) + log_odds;
    return log_pmf;
}

/* The resamples by the sorting sweep: u (n_boot uniforms) sorted, then one upward pass. */
static void invert_sorted(double *u, int n_boot, size_t n, double log_odds, double log_pmf) {
    qsort(u, (size_t)n_boot, sizeof *u, cmp_double);
    double cdf = exp(log_pmf);
    size_t j = 0;
    for (int b = 0; b < n_boot; b++) {
        while (u[b] >= cdf && j < n) {
            log_pmf = pmf_step(log_pmf, n, j, log_odds);
            j++;
            cdf += exp(log_pmf);
        }
        u[b] = (double)j / (double)n;
    }
}

/* The same resamples without sorting: the CDF up to the largest uniform in a table, each
 * uniform's count found by bisection (the first j with u < cdf[j], n when there is none:
 * exactly where the sweep stops), then written out in ascending order from their tallies.
 * Returns -1 (u untouched) when the table would not fit. */
static int invert_counted(double *u, int n_boot, size_t n, double log_odds, double log_pmf) {
    double cdf[ML_CDF_TABLE];
    int count[ML_CDF_TABLE + 1];
    double umax = 0;
    for (int b = 0; b < n_boot; b++) umax = u[b] > umax ? u[b] : umax;
    size_t m = 0;
    cdf[m++] = exp(log_pmf);
    while (umax >= cdf[m - 1] && m < n) {
        if (m == ML_CDF_TABLE) return -1;
        log_pmf = pmf_step(log_pmf, n, m - 1, log_odds);
        cdf[m] = cdf[m - 1] + exp(log_pmf);
        m++;
    }
    memset(count, 0, sizeof *count * (m + 1));
    for (int b = 0; b < n_boot; b++) {
        size_t lo = 0, hi = m; /* the answer is in [lo, hi]; hi == m: none below */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (u[b] < cdf[mid])
                hi = mid;
            else
                lo = mid + 1;
        }
        count[lo]++;
    }
    int b = 0;
    for (size_t j = 0; j <= m; j++)
        for (int c = 0; c < count[j]; c++) u[b++] = (double)j / (double)n;
    return 0;
}

/* A resample's count of ones is Binomial(n, k/n). Rather than n draws per resample, n_boot
 * uniforms are pushed through the binomial CDF (inversion), so the cost is O(n_boot log n)
 * (O(n_boot log n_boot + n) by the sorting sweep when the table is too small) and the means
 * have exactly ml_mean_ci's distribution on the same 0/1 data. The pmf recurrence runs in
 * logs so (1-p)^n cannot underflow for large n. scratch ends up holding the resample means,
 * ascending. */
void ml_proportion_ci(size_t k, size_t n, int n_boot, double level, ml_rng *r, double *scratch,
                      double *mean, double *lo, double *hi) {
    if (k > n) {
        *mean = *lo = *hi = NAN;
        return;
    }
    *mean = n ? (double)k / (double)n : NAN;
    if (bad_request(n, n_boot, level, mean, lo, hi)) return;
    if (k == 0 || k == n) {
        *lo = *hi = *mean;
        return;
    }
    for (int b = 0; b < n_boot; b++) scratch[b] = ml_rng_double(r);
    double p = (double)k / (double)n;
    double log_odds = log(p) - log1p(-p);
    double log_pmf = (double)n * log1p(-p);
    if (invert_counted(scratch, n_boot, n, log_odds, log_pmf) != 0)
        invert_sorted(scratch, n_boot, n, log_odds, log_pmf);
    interval_sorted(scratch, n_boot, level, lo, hi);
}

double ml_pearson(const double *a, const double *b, size_t n) {
    if (n < 2) return NAN;
    double ma = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) {
        double da = a[i] - ma, db = b[i] - mb;
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if (saa == 0 || sbb == 0) return NAN;
    double rho = sab / sqrt(saa * sbb);
    /* Rounding can push |r| a hair past 1; numpy.corrcoef clips the same way. */
    return rho > 1 ? 1 : rho < -1 ? -1 : rho;
}

double ml_rmse(const double *a, const double *b, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s / (double)n);
}
