/* The episode samplers of both generations: the documented draw orders against a Python
 * reimplementation (tests/reference/make_stats_fixtures.py, with torch's medians), and their
 * statistical properties on hand-built datasets. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "textfix.h"
#include "metalign/episodes.h"
#include "metalign/rng.h"
#include "unit.h"

static textfix fx;

/* torch.median of column k of Y (n, K): the value v at sorted position (n-1)/2, i.e. with at
 * most (n-1)/2 values below it and more than (n-1)/2 at or below it. */
static float lower_median(const float *Y, int n, int K, int k) {
    float m = NAN;
    for (int i = 0; i < n; i++) {
        float v = Y[i * K + k];
        int below = 0, equal = 0;
        for (int j = 0; j < n; j++) {
            below += Y[j * K + k] < v;
            equal += Y[j * K + k] == v;
        }
        if (below <= (n - 1) / 2 && (n - 1) / 2 < below + equal) m = v;
    }
    return m;
}

/* A dataset of n items and K target dims with Y uniform in [0, 1) rounded to 0.05 (ties at
 * the median) and torch's lower medians. */
static void make_dataset(ml_dataset *d, int n, int K, uint64_t seed) {
    memset(d, 0, sizeof *d);
    d->n_items = n;
    d->target_dims = K;
    d->Y = malloc(sizeof(float) * (size_t)n * (size_t)K);
    d->median = malloc(sizeof(float) * (size_t)K);
    ml_rng r;
    ml_rng_seed(&r, seed, 0);
    for (int i = 0; i < n * K; i++) d->Y[i] = (float)(round(ml_rng_double(&r) * 20) / 20);
    for (int k = 0; k < K; k++) d->median[k] = lower_median(d->Y, n, K, k);
}

static void free_dataset(ml_dataset *d) {
    free(d->Y);
    free(d->median);
}

static void test_matches_reference(void) {
    ml_dataset d;
    memset(&d, 0, sizeof d);
    float Y[60], med[3];
    double tmp[60];
    CHECK(textfix_doubles(&fx, "ep_Y", tmp, 60) == 60);
    for (int i = 0; i < 60; i++) Y[i] = (float)tmp[i];
    CHECK(textfix_doubles(&fx, "ep_median", tmp, 3) == 3);
    for (int i = 0; i < 3; i++) med[i] = (float)tmp[i];
    d.n_items = 20;
    d.target_dims = 3;
    d.Y = Y;
    d.median = med;
    struct { uint64_t seed; int e, dim, S; } cases[] = {
        {0, 0, 0, 5}, {0, 1, 1, 5}, {0, 2, 2, 20}, {9, 127, 0, 12}, {1ull << 63, 5, 1, 1}};
    int scratch[20], items[20], labels[20];
    for (int c = 0; c < 5; c++) {
        char name[64];
        double want_items[20], want_labels[20];
        snprintf(name, sizeof name, "ep_%d_%d_%d_%d_items", (int)(cases[c].seed % 1000),
                 cases[c].e, cases[c].dim, cases[c].S);
        CHECK(textfix_doubles(&fx, name, want_items, 20) == cases[c].S);
        snprintf(name, sizeof name, "ep_%d_%d_%d_%d_labels", (int)(cases[c].seed % 1000),
                 cases[c].e, cases[c].dim, cases[c].S);
        CHECK(textfix_doubles(&fx, name, want_labels, 20) == cases[c].S);
        ml_episode_sample(&d, cases[c].seed, cases[c].e, cases[c].dim, cases[c].S, items, labels,
                          scratch);
        for (int t = 0; t < cases[c].S; t++) {
            CHECK_MSG(items[t] == (int)want_items[t], "case %d item %d: %d, expected %g", c, t,
                      items[t], want_items[t]);
            CHECK_MSG(labels[t] == (int)want_labels[t], "case %d label %d: %d, expected %g", c,
                      t, labels[t], want_labels[t]);
        }
    }
}

static void test_lower_median_helper_agrees(void) {
    /* The test's median against torch's on the fixture (ties, even n: guards make_dataset). */
    double tmp[60], med[3];
    float Y[60];
    CHECK(textfix_doubles(&fx, "ep_Y", tmp, 60) == 60);
    CHECK(textfix_doubles(&fx, "ep_median", med, 3) == 3);
    for (int i = 0; i < 60; i++) Y[i] = (float)tmp[i];
    for (int k = 0; k < 3; k++) CHECK(lower_median(Y, 20, 3, k) == (float)med[k]);
}

static void test_distinct_and_median_split(void) {
    ml_dataset d;
    make_dataset(&d, 200, 4, 3);
    int scratch[200], items[150], labels[150], seen[200];
    int flips = 0, E = 400;
    for (int e = 0; e < E; e++) {
        int dim = e % 4;
        ml_episode_sample(&d, 5, e, dim, 150, items, labels, scratch);
        memset(seen, 0, sizeof seen);
        int same = 0, opposite = 0;
        for (int t = 0; t < 150; t++) {
            CHECK(items[t] >= 0 && items[t] < 200);
            CHECK(!seen[items[t]]);
            seen[items[t]] = 1;
            CHECK(labels[t] == 0 || labels[t] == 1);
            int split = d.Y[items[t] * 4 + dim] >= d.median[dim];
            same += labels[t] == split;
            opposite += labels[t] != split;
        }
        /* either no label or every label flipped */
        CHECK(same == 150 || opposite == 150);
        flips += opposite == 150;
    }
    /* Binomial(400, 1/2): sd 10; 6 sd */
    CHECK_MSG(abs(flips - 200) <= 60, "%d flipped of %d", flips, E);
    free_dataset(&d);
}

static void test_replay_and_batch_independence(void) {
    ml_dataset d;
    make_dataset(&d, 100, 2, 4);
    enum { E = 50, S = 30 };
    static int fwd_items[E][S], fwd_labels[E][S];
    int scratch[100], items[S], labels[S];
    for (int e = 0; e < E; e++)
        ml_episode_sample(&d, 77, e, e % 2, S, fwd_items[e], fwd_labels[e], scratch);
    /* backwards, and with the scratch left dirty by other episodes */
    for (int e = E - 1; e >= 0; e--) {
        ml_episode_sample(&d, 77, e, e % 2, S, items, labels, scratch);
        CHECK(!memcmp(items, fwd_items[e], sizeof items));
        CHECK(!memcmp(labels, fwd_labels[e], sizeof labels));
    }
    /* another seed gives other episodes */
    ml_episode_sample(&d, 78, 0, 0, S, items, labels, scratch);
    CHECK(memcmp(items, fwd_items[0], sizeof items) != 0);
    /* a shorter episode is a prefix of a longer one with the same stream (draw order) */
    ml_episode_sample(&d, 77, 3, 1, 10, items, labels, scratch);
    CHECK(!memcmp(items, fwd_items[3], sizeof(int) * 10));
    free_dataset(&d);
}

/* Every item is equally likely at every position: chi-square of the first and the last
 * position's item over 20,000 episodes of 5 of 40 items (39 df; 0.9999 quantile 80.1), and of
 * the item counts over all positions (sampling without replacement makes that statistic
 * smaller, mean 39 * (1 - 5/40), so the same bound holds). */
static void test_uniform_items(void) {
    ml_dataset d;
    make_dataset(&d, 40, 1, 6);
    enum { E = 20000, S = 5 };
    long first[40] = {0}, last[40] = {0}, all[40] = {0};
    int scratch[40], items[S], labels[S];
    for (int e = 0; e < E; e++) {
        ml_episode_sample(&d, 123, e, 0, S, items, labels, scratch);
        first[items[0]]++;
        last[items[S - 1]]++;
        for (int t = 0; t < S; t++) all[items[t]]++;
    }
    double c1 = 0, c2 = 0, c3 = 0, e1 = E / 40.0, e3 = E * S / 40.0;
    for (int i = 0; i < 40; i++) {
        c1 += (first[i] - e1) * (first[i] - e1) / e1;
        c2 += (last[i] - e1) * (last[i] - e1) / e1;
        c3 += (all[i] - e3) * (all[i] - e3) / e3;
    }
    CHECK_MSG(c1 < 80.1, "first position chi2 = %g", c1);
    CHECK_MSG(c2 < 80.1, "last position chi2 = %g", c2);
    CHECK_MSG(c3 < 80.1, "all positions chi2 = %g", c3);
    free_dataset(&d);
}

static void test_full_length_is_permutation(void) {
    ml_dataset d;
    make_dataset(&d, 31, 2, 7);
    int scratch[31], items[31], labels[31], seen[31] = {0};
    ml_episode_sample(&d, 1, 9, 1, 31, items, labels, scratch);
    for (int t = 0; t < 31; t++) seen[items[t]]++;
    for (int i = 0; i < 31; i++) CHECK(seen[i] == 1);
    /* 31 items, lower median: 16 items at or above it before any flip (ties can add more) */
    int ones = 0;
    for (int t = 0; t < 31; t++) ones += labels[t];
    int above = 0;
    for (int i = 0; i < 31; i++) above += d.Y[i * 2 + 1] >= d.median[1];
    CHECK(ones == above || ones == 31 - above);
    CHECK(above >= 16);
    free_dataset(&d);
}

static void test_check(void) {
    ml_dataset d;
    make_dataset(&d, 10, 3, 8);
    ml_err err;
    CHECK(ml_episode_check(&d, 0, 1, &err) == 0);
    CHECK(ml_episode_check(&d, 2, 10, &err) == 0);
    CHECK(ml_episode_check(&d, 3, 5, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "dimension 3");
    CHECK(ml_episode_check(&d, -1, 5, &err) == -1);
    CHECK(ml_episode_check(&d, 0, 11, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "1 .. 10");
    CHECK(ml_episode_check(&d, 0, 0, &err) == -1);
    free_dataset(&d);
}

static void test_inputs(void) {
    /* 3 items of D = 2 features */
    float X[] = {1, 2, 3, 4, 5, 6};
    int items[] = {2, 0, 1}, labels[] = {1, 0, 1};
    float out[3 * 4];
    ml_episode_inputs(X, 2, items, labels, 3, out);
    float want[] = {0, 0, 5, 6, /* trial 0: no previous label */
                    0, 1, 1, 2, /* previous label 1 */
                    1, 0, 3, 4}; /* previous label 0 */
    for (int i = 0; i < 12; i++) CHECK_MSG(out[i] == want[i], "out[%d] = %g", i, out[i]);
}

/* ---- FunctionDataset (the later generation) ----------------------------------------------- */

/* The fixture's 20-item dataset (ties at the median; 10 or fewer items above it). */
static void fixture_dataset(ml_dataset *d, float *Y, float *med) {
    double tmp[60];
    memset(d, 0, sizeof *d);
    CHECK(textfix_doubles(&fx, "ep_Y", tmp, 60) == 60);
    for (int i = 0; i < 60; i++) Y[i] = (float)tmp[i];
    CHECK(textfix_doubles(&fx, "ep_median", tmp, 3) == 3);
    for (int i = 0; i < 3; i++) med[i] = (float)tmp[i];
    d->n_items = 20;
    d->target_dims = 3;
    d->Y = Y;
    d->median = med;
}

/* The documented draw order against the Python reimplementation, short episodes included
 * (a side runs out when n_pos exceeds the positives). */
static void test_fn_matches_reference(void) {
    ml_dataset d;
    float Y[60], med[3];
    fixture_dataset(&d, Y, med);
    struct { uint64_t seed; int e, dim, S; } cases[] = {
        {0, 0, 0, 12}, {0, 1, 1, 12}, {3, 2, 2, 20}, {3, 3, 0, 20},
        {3, 4, 1, 20}, {3, 5, 2, 20}, {1ull << 63, 7, 1, 1}, {11, 40, 0, 19}};
    int scratch[20], items[20], labels[20], shorter = 0;
    float mags[20];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char base[64], name[80];
        double wi[20], wl[20], wm[20];
        snprintf(base, sizeof base, "fn_%d_%d_%d_%d", (int)(cases[c].seed % 1000), cases[c].e,
                 cases[c].dim, cases[c].S);
        snprintf(name, sizeof name, "%s_items", base);
        long L = textfix_doubles(&fx, name, wi, 20);
        snprintf(name, sizeof name, "%s_labels", base);
        CHECK(textfix_doubles(&fx, name, wl, 20) == L);
        snprintf(name, sizeof name, "%s_mags", base);
        CHECK(textfix_doubles(&fx, name, wm, 20) == L);
        int got = ml_fn_episode_sample(&d, cases[c].seed, cases[c].e, cases[c].dim, cases[c].S,
                                       items, labels, mags, scratch);
        CHECK_MSG(got == L, "%s: %d trials, the reference %ld", base, got, L);
        shorter += got < cases[c].S;
        for (int t = 0; t < got && t < L; t++) {
            CHECK_MSG(items[t] == (int)wi[t], "%s item %d: %d, expected %g", base, t, items[t],
                      wi[t]);
            CHECK_MSG(labels[t] == (int)wl[t], "%s label %d", base, t);
            CHECK_MSG(mags[t] == (float)wm[t], "%s magnitude %d: %.9g, expected %.9g", base, t,
                      mags[t], wm[t]);
        }
    }
    CHECK_MSG(shorter >= 2, "the fixture's short episodes are gone (%d)", shorter);
}

static void test_fn_positives(void) {
    static const int S[] = {1, 12, 120};
    for (int k = 0; k < 3; k++) {
        char name[32];
        double want[64];
        snprintf(name, sizeof name, "fn_npos_%d", S[k]);
        CHECK(textfix_doubles(&fx, name, want, 64) == 64);
        for (int e = 0; e < 64; e++) {
            ml_rng r;
            ml_rng_seed(&r, 5, (uint64_t)e);
            CHECK_MSG(ml_fn_episode_positives(&r, S[k]) == (int)want[e], "S %d episode %d",
                      S[k], e);
        }
    }
    /* N(60, 6) for S = 120: mean and sd over 4000 draws (se 0.095 and 0.067) */
    double sum = 0, sq = 0;
    int lo = 120, hi = 0;
    for (int e = 0; e < 4000; e++) {
        ml_rng r;
        ml_rng_seed(&r, 21, (uint64_t)e);
        int n = ml_fn_episode_positives(&r, 120);
        sum += n;
        sq += (double)n * n;
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
    }
    double mean = sum / 4000, sd = sqrt(sq / 4000 - mean * mean);
    CHECK_MSG(fabs(mean - 60) < 0.5, "mean n_pos %g", mean);
    CHECK_MSG(fabs(sd - 6) < 0.4, "sd of n_pos %g", sd);
    CHECK(lo >= 0 && hi <= 120 && lo < 45 && hi > 75);
}

/* Counts, labels, magnitudes, no flipping, distinct items, on a dataset with room for both
 * sides: the episode has S trials, min(n_pos, #pos) of them positive, where n_pos is the
 * stream's first normal draw. */
static void test_fn_counts_labels_magnitudes(void) {
    ml_dataset d;
    make_dataset(&d, 300, 3, 9);
    enum { S = 120, E = 300 };
    int scratch[300], items[S], labels[S], seen[300], first_pos = 0;
    float mags[S];
    for (int e = 0; e < E; e++) {
        int dim = e % 3;
        int L = ml_fn_episode_sample(&d, 8, e, dim, S, items, labels, mags, scratch);
        ml_rng r;
        ml_rng_seed(&r, 8, (uint64_t)e);
        int n_pos = ml_fn_episode_positives(&r, S), P = 0;
        for (int i = 0; i < 300; i++) P += d.Y[i * 3 + dim] > d.median[dim];
        int want_pos = n_pos < P ? n_pos : P, want_neg = S - n_pos < 300 - P ? S - n_pos : 300 - P;
        CHECK_MSG(L == want_pos + want_neg, "episode %d: %d trials", e, L);
        memset(seen, 0, sizeof seen);
        int pos = 0;
        for (int t = 0; t < L; t++) {
            float y = d.Y[items[t] * 3 + dim];
            CHECK(!seen[items[t]]);
            seen[items[t]] = 1;
            CHECK(labels[t] == (y > d.median[dim]));
            CHECK(mags[t] == y - d.median[dim]);
            CHECK((mags[t] > 0) == (labels[t] == 1));
            pos += labels[t];
        }
        CHECK_MSG(pos == want_pos, "episode %d: %d positives, %d expected", e, pos, want_pos);
        first_pos += labels[0];
    }
    /* shuffled: the first trial is positive about half the time (Binomial(300, ~0.5), sd 9) */
    CHECK_MSG(abs(first_pos - E / 2) < 50, "first trial positive in %d of %d", first_pos, E);
    free_dataset(&d);
}

/* Episode e alone decides its draws: any order, a dirty scratch, the same answer. */
static void test_fn_replay(void) {
    ml_dataset d;
    make_dataset(&d, 100, 2, 4);
    enum { E = 40, S = 30 };
    static int fwd[E][S];
    static float fwd_m[E][S];
    int scratch[100], items[S], labels[S], Ls[E];
    float mags[S];
    for (int e = 0; e < E; e++)
        Ls[e] = ml_fn_episode_sample(&d, 77, e, e % 2, S, fwd[e], labels, fwd_m[e], scratch);
    for (int e = E - 1; e >= 0; e--) {
        int L = ml_fn_episode_sample(&d, 77, e, e % 2, S, items, labels, mags, scratch);
        CHECK(L == Ls[e]);
        CHECK(!memcmp(items, fwd[e], sizeof(int) * (size_t)L));
        CHECK(!memcmp(mags, fwd_m[e], sizeof(float) * (size_t)L));
    }
    ml_fn_episode_sample(&d, 78, 0, 0, S, items, labels, mags, scratch);
    CHECK(memcmp(items, fwd[0], sizeof(int) * S) != 0);
    free_dataset(&d);
}

/* A dimension where only a few items lie above the median: every positive is drawn and the
 * episode is shorter than S. */
static void test_fn_short_side(void) {
    ml_dataset d;
    memset(&d, 0, sizeof d);
    float Y[40], med = 0;
    for (int i = 0; i < 40; i++) Y[i] = i < 36 ? 0.0f : 1.0f + (float)i; /* 4 above 0 */
    d.n_items = 40;
    d.target_dims = 1;
    d.Y = Y;
    d.median = &med;
    int scratch[40], items[30], labels[30];
    float mags[30];
    for (int e = 0; e < 20; e++) {
        int L = ml_fn_episode_sample(&d, 1, e, 0, 30, items, labels, mags, scratch);
        ml_rng r;
        ml_rng_seed(&r, 1, (uint64_t)e);
        int n_pos = ml_fn_episode_positives(&r, 30), pos = 0;
        for (int t = 0; t < L; t++) pos += labels[t];
        CHECK(n_pos > 4 && pos == 4);
        CHECK_MSG(L == 4 + (30 - n_pos) && L < 30, "episode %d: %d trials, n_pos %d", e, L,
                  n_pos);
    }
}

int main(void) {
    if (textfix_load(&fx, FIXTURE("analysis/rng_stats.txt"))) {
        printf("Bail out! cannot read %s\n", FIXTURE("analysis/rng_stats.txt"));
        return 1;
    }
    RUN(test_matches_reference);
    RUN(test_lower_median_helper_agrees);
    RUN(test_distinct_and_median_split);
    RUN(test_replay_and_batch_independence);
    RUN(test_uniform_items);
    RUN(test_full_length_is_permutation);
    RUN(test_check);
    RUN(test_inputs);
    RUN(test_fn_matches_reference);
    RUN(test_fn_positives);
    RUN(test_fn_counts_labels_magnitudes);
    RUN(test_fn_replay);
    RUN(test_fn_short_side);
    free(fx.text);
    return UT_DONE();
}
