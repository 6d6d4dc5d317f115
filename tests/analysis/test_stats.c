/* Curve statistics against numpy/scipy (tests/reference/make_stats_fixtures.py) and
 * statistical sanity checks of the bootstrap. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/stats.h"
#include "textfix.h"
#include "unit.h"

static textfix fx;

static void test_percentile_matches_numpy(void) {
    double qs[16];
    long nq = textfix_doubles(&fx, "pct_qs", qs, 16);
    CHECK(nq == 7);
    for (int i = 0; i < 6; i++) {
        char name[32];
        double data[1000], want[16];
        snprintf(name, sizeof name, "pct_data_%d", i);
        long n = textfix_doubles(&fx, name, data, 1000);
        snprintf(name, sizeof name, "pct_q_%d", i);
        CHECK(textfix_doubles(&fx, name, want, 16) == nq);
        CHECK(n > 0);
        for (long j = 0; j < nq && n > 0; j++) {
            double got = ml_percentile(data, (size_t)n, qs[j]);
            /* bit-identical: same interpolation formula as numpy's _lerp */
            CHECK_MSG(got == want[j], "data %d q=%g: %.17g, numpy %.17g", i, qs[j], got,
                      want[j]);
        }
    }
}

static void test_percentile_edges(void) {
    double x[3] = {3, 1, 2};
    CHECK(isnan(ml_percentile(x, 0, 50)));
    CHECK(isnan(ml_percentile(x, 3, -1)));
    CHECK(isnan(ml_percentile(x, 3, 100.5)));
    CHECK(ml_percentile(x, 3, 50) == 2);
    CHECK(x[0] == 1 && x[2] == 3); /* documented: sorts in place */
}

static void test_pearson_rmse_match_numpy(void) {
    double a[100], b[100], r, e;
    CHECK(textfix_doubles(&fx, "pear_a", a, 100) == 100);
    CHECK(textfix_doubles(&fx, "pear_b", b, 100) == 100);
    CHECK(textfix_doubles(&fx, "pear_r", &r, 1) == 1);
    CHECK(textfix_doubles(&fx, "rmse", &e, 1) == 1);
    /* b has an offset of 1e6: a one-pass formula loses about 9 digits here */
    CHECK_NEAR(ml_pearson(a, b, 100), r, 1e-10, 0);
    CHECK_NEAR(ml_rmse(a, b, 100), e, 1e-13, 0);
    CHECK_NEAR(ml_pearson(a, a, 100), 1.0, 1e-15, 0);
    CHECK(ml_pearson(a, a, 100) <= 1.0);
    double c[4] = {1, 1, 1, 1};
    CHECK(isnan(ml_pearson(a, c, 4)));
    CHECK(isnan(ml_pearson(a, b, 1)));
    CHECK(isnan(ml_rmse(a, b, 0)));
}

static void test_mean_ci_matches_reference(void) {
    double x[25], want[3], scratch[200], m, lo, hi;
    CHECK(textfix_doubles(&fx, "ci_x", x, 25) == 25);
    CHECK(textfix_doubles(&fx, "ci_x_95", want, 3) == 3);
    ml_rng r;
    ml_rng_seed(&r, 3, 11);
    ml_mean_ci(x, 25, 200, 95.0, &r, scratch, &m, &lo, &hi);
    CHECK_NEAR(m, want[0], 1e-14, 1e-15);
    CHECK_NEAR(lo, want[1], 1e-13, 1e-15);
    CHECK_NEAR(hi, want[2], 1e-13, 1e-15);
    for (int b = 1; b < 200; b++) CHECK(scratch[b - 1] <= scratch[b]);
    CHECK(textfix_doubles(&fx, "ci_x_68", want, 3) == 3);
    ml_rng_seed(&r, 3, 11);
    ml_mean_ci(x, 25, 200, 68.0, &r, scratch, &m, &lo, &hi);
    CHECK_NEAR(lo, want[1], 1e-13, 1e-15);
    CHECK_NEAR(hi, want[2], 1e-13, 1e-15);
}

static void test_proportion_ci_matches_reference(void) {
    size_t cases[][2] = {{30, 43}, {1, 128}, {127, 128}, {500, 1000}};
    double scratch[1000];
    for (int c = 0; c < 4; c++) {
        char name[32];
        double want[3], m, lo, hi;
        snprintf(name, sizeof name, "pci_%zu_%zu", cases[c][0], cases[c][1]);
        CHECK(textfix_doubles(&fx, name, want, 3) == 3);
        ml_rng r;
        ml_rng_seed(&r, 5, cases[c][0]);
        ml_proportion_ci(cases[c][0], cases[c][1], 1000, 95.0, &r, scratch, &m, &lo, &hi);
        CHECK_NEAR(m, want[0], 1e-15, 0);
        CHECK_NEAR(lo, want[1], 1e-13, 1e-15);
        CHECK_NEAR(hi, want[2], 1e-13, 1e-15);
    }
}

static void test_ci_edges(void) {
    double scratch[100], m, lo, hi;
    ml_rng r;
    ml_rng_seed(&r, 1, 1);
    double x[5] = {0.1, 0.1, 0.1, 0.1, 0.1};
    ml_mean_ci(x, 0, 100, 95, &r, scratch, &m, &lo, &hi);
    CHECK(isnan(m) && isnan(lo) && isnan(hi));
    ml_mean_ci(x, 1, 100, 95, &r, scratch, &m, &lo, &hi);
    CHECK(m == 0.1 && lo == 0.1 && hi == 0.1);
    ml_mean_ci(x, 5, 100, 95, &r, scratch, &m, &lo, &hi); /* all equal */
    CHECK(lo == m && hi == m);
    ml_mean_ci(x, 5, 0, 95, &r, scratch, &m, &lo, &hi);
    CHECK(!isnan(m) && isnan(lo) && isnan(hi));
    ml_proportion_ci(0, 0, 100, 95, &r, scratch, &m, &lo, &hi);
    CHECK(isnan(m) && isnan(lo) && isnan(hi));
    ml_proportion_ci(3, 2, 100, 95, &r, scratch, &m, &lo, &hi);
    CHECK(isnan(m) && isnan(lo) && isnan(hi));
    ml_proportion_ci(0, 7, 100, 95, &r, scratch, &m, &lo, &hi);
    CHECK(m == 0 && lo == 0 && hi == 0);
    ml_proportion_ci(7, 7, 100, 95, &r, scratch, &m, &lo, &hi);
    CHECK(m == 1 && lo == 1 && hi == 1);
    ml_proportion_ci(1, 1, 100, 95, &r, scratch, &m, &lo, &hi);
    CHECK(m == 1 && lo == 1 && hi == 1);
}

/* Standard normal samples by Box-Muller, for the coverage check. */
static double normal(ml_rng *r) {
    double u = 1.0 - ml_rng_double(r), v = ml_rng_double(r);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* The 95% percentile bootstrap of a mean of 30 normals covers the true mean in about 93-94%
 * of samples (it is slightly narrow at small n). Over 400 replications the count has sd 12;
 * the bounds [350, 392] are more than 3 sd from the expected ~374. */
static void test_mean_ci_coverage(void) {
    ml_rng data, boot;
    ml_rng_seed(&data, 99, 0);
    ml_rng_seed(&boot, 99, 1);
    double x[30], scratch[400], m, lo, hi;
    int covered = 0, ordered = 0;
    for (int rep = 0; rep < 400; rep++) {
        for (int i = 0; i < 30; i++) x[i] = normal(&data);
        ml_mean_ci(x, 30, 400, 95, &boot, scratch, &m, &lo, &hi);
        covered += lo <= 0 && 0 <= hi;
        ordered += lo <= m && m <= hi;
    }
    CHECK_MSG(covered >= 350 && covered <= 392, "covered %d of 400", covered);
    CHECK(ordered == 400);
}

/* ml_proportion_ci draws Binomial(n, k/n)/n: a chi-square of its returned resamples against
 * the binomial pmf, computed here independently with lgamma. */
static void test_proportion_distribution(void) {
    enum { N = 20, K = 7, B = 40000 };
    static double scratch[B];
    double m, lo, hi;
    ml_rng r;
    ml_rng_seed(&r, 8, 8);
    ml_proportion_ci(K, N, B, 95, &r, scratch, &m, &lo, &hi);
    long cnt[N + 1] = {0};
    for (int b = 0; b < B; b++) {
        double j = scratch[b] * N;
        CHECK(fabs(j - round(j)) < 1e-9);
        cnt[(int)round(j)]++;
    }
    double p = (double)K / N, chi2 = 0, rest_obs = 0, rest_exp = 0;
    int df = -1;
    for (int j = 0; j <= N; j++) {
        double e = B * exp(lgamma(N + 1.0) - lgamma(j + 1.0) - lgamma(N - j + 1.0) +
                           j * log(p) + (N - j) * log1p(-p));
        if (e < 5) { /* pool sparse tails */
            rest_obs += cnt[j];
            rest_exp += e;
            continue;
        }
        chi2 += (cnt[j] - e) * (cnt[j] - e) / e;
        df++;
    }
    if (rest_exp > 0) {
        chi2 += (rest_obs - rest_exp) * (rest_obs - rest_exp) / rest_exp;
        df++;
    }
    /* df is about 12; the 0.9999 quantile of chi2(12) is 37.9 */
    CHECK_MSG(chi2 < 37.9, "chi2 = %g with %d df", chi2, df);
    CHECK(lo <= m && m <= hi);
}

/* The two routes agree: the interval of k ones in n from ml_mean_ci on the 0/1 data and from
 * ml_proportion_ci differ by at most one atom (1/n) at a large n_boot. */
static void test_proportion_agrees_with_mean_ci(void) {
    enum { N = 43, K = 30, B = 20000 };
    static double scratch[B];
    double x[N], m1, lo1, hi1, m2, lo2, hi2;
    for (int i = 0; i < N; i++) x[i] = i < K;
    ml_rng r;
    ml_rng_seed(&r, 4, 0);
    ml_mean_ci(x, N, B, 95, &r, scratch, &m1, &lo1, &hi1);
    ml_rng_seed(&r, 4, 1);
    ml_proportion_ci(K, N, B, 95, &r, scratch, &m2, &lo2, &hi2);
    CHECK(m1 == m2);
    CHECK_NEAR(lo2, lo1, 0, 1.0 / N + 1e-12);
    CHECK_NEAR(hi2, hi1, 0, 1.0 / N + 1e-12);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The resamples as the first version computed them (sort the uniforms, one upward sweep of
 * the CDF), written out here so the faster inversion is held to it bit for bit. */
static void reference_resamples(size_t k, size_t n, int n_boot, ml_rng *r, double *out) {
    for (int b = 0; b < n_boot; b++) out[b] = ml_rng_double(r);
    qsort(out, (size_t)n_boot, sizeof *out, cmp_d);
    double p = (double)k / (double)n;
    double log_odds = log(p) - log1p(-p);
    double log_pmf = (double)n * log1p(-p);
    double cdf = exp(log_pmf);
    size_t j = 0;
    for (int b = 0; b < n_boot; b++) {
        while (out[b] >= cdf && j < n) {
            log_pmf += log((double)(n - j) / (double)(j + 1)) + log_odds;
            j++;
            cdf += exp(log_pmf);
        }
        out[b] = (double)j / (double)n;
    }
}

/* Every (k, n) of a grid from 2 trials to 20,000 (past the stack table: the sorting path),
 * with 1 to 5,000 resamples: the same resamples and interval as the first version. */
static void test_proportion_same_as_first_version(void) {
    static const size_t ns[] = {2, 3, 7, 43, 100, 128, 1000, 2047, 2048, 2049, 5000, 20000};
    static const int boots[] = {1, 2, 1000, 5000};
    static double got[5000], want[5000];
    int compared = 0, bad = 0;
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (size_t f = 1; f < 8; f++) {
            size_t n = ns[i], k = n * f / 8 ? n * f / 8 : 1;
            if (f == 7) k = n - 1; /* the high end: a long table */
            for (size_t bi = 0; bi < sizeof boots / sizeof boots[0]; bi++) {
                int B = boots[bi];
                ml_rng r1, r2;
                ml_rng_seed(&r1, 99, n * 16 + f);
                ml_rng_seed(&r2, 99, n * 16 + f);
                double m, lo, hi;
                ml_proportion_ci(k, n, B, 95, &r1, got, &m, &lo, &hi);
                reference_resamples(k, n, B, &r2, want);
                compared++;
                if (memcmp(got, want, sizeof(double) * (size_t)B) != 0) bad++;
                CHECK(ml_rng_next(&r1) == ml_rng_next(&r2)); /* as many draws */
            }
        }
    CHECK_MSG(bad == 0, "%d of %d (k, n, n_boot) differ from the first version", bad, compared);
}

static void test_same_seed_same_interval(void) {
    double scratch[300], a[3], b[3];
    ml_rng r;
    ml_rng_seed(&r, 11, 2);
    ml_proportion_ci(40, 64, 300, 95, &r, scratch, &a[0], &a[1], &a[2]);
    ml_rng_seed(&r, 11, 2);
    ml_proportion_ci(40, 64, 300, 95, &r, scratch, &b[0], &b[1], &b[2]);
    CHECK(a[0] == b[0] && a[1] == b[1] && a[2] == b[2]);
    CHECK(a[1] < a[0] && a[0] < a[2]);
}

int main(void) {
    if (textfix_load(&fx, FIXTURE("analysis/rng_stats.txt"))) {
        printf("Bail out! cannot read %s\n", FIXTURE("analysis/rng_stats.txt"));
        return 1;
    }
    RUN(test_percentile_matches_numpy);
    RUN(test_percentile_edges);
    RUN(test_pearson_rmse_match_numpy);
    RUN(test_mean_ci_matches_reference);
    RUN(test_proportion_ci_matches_reference);
    RUN(test_ci_edges);
    RUN(test_mean_ci_coverage);
    RUN(test_proportion_distribution);
    RUN(test_proportion_agrees_with_mean_ci);
    RUN(test_same_seed_same_interval);
    RUN(test_proportion_same_as_first_version);
    free(fx.text);
    return UT_DONE();
}
