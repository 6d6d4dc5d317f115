/* CKA against numpy float64 (tests/reference/make_cka_fixtures.py: the definition on
 * Y[:, dims], Song et al.'s unbiased HSIC on literal Gram matrices, the notebook's torch
 * cka()), cases known exactly, errors, and the bootstrap against resampling done by hand. */
#include <math.h>
#include <stdint.h>

#include "metalign/cka.h"
#include "metalign/rng.h"
#include "metalign/stats.h"
#include "boot_by_hand.h"
#include "textfix.h"
#include "unit.h"

static textfix fx;

#define MAXN 40
#define MAXREPS 8

static int n_items, n_dims_total;
static float Y[MAXN * 7];
static int n_reps;
static char rep_names[MAXREPS][16];
static int rep_p[MAXREPS];
static float *rep_X[MAXREPS];

static const char *dim_names[] = {"all", "012", "3", "51", "224"};
static const int dim_sets[][3] = {{0}, {0, 1, 2}, {3}, {5, 1}, {2, 2, 4}};
static const int dim_counts[] = {0, 3, 1, 2, 3};

/* The record "<kind>_<rep>_<dims>". */
static double fixture_value(const char *kind, const char *rep, const char *dims) {
    char name[64];
    double v = NAN;
    snprintf(name, sizeof name, "%s_%s_%s", kind, rep, dims);
    if (textfix_doubles(&fx, name, &v, 1) != 1) printf("# fixture record %s missing\n", name);
    return v;
}

static int load_fixture(void) {
    double tmp[MAXN * 64], shape[2];
    if (textfix_load(&fx, FIXTURE("analysis/cka.txt"))) return -1;
    if (textfix_doubles(&fx, "shape", shape, 2) != 2) return -1;
    n_items = (int)shape[0];
    n_dims_total = (int)shape[1];
    if (n_items > MAXN || n_dims_total > 7) return -1;
    if (textfix_doubles(&fx, "Y", tmp, MAXN * 7) != n_items * n_dims_total) return -1;
    for (int i = 0; i < n_items * n_dims_total; i++) Y[i] = (float)tmp[i];
    size_t count;
    const char *p = textfix_find(&fx, "reps", &count);
    if (!p || count > MAXREPS) return -1;
    n_reps = (int)count;
    for (int r = 0; r < n_reps; r++) {
        int used = 0;
        if (sscanf(p, " %15s%n", rep_names[r], &used) != 1) return -1;
        p += used;
        char name[32];
        snprintf(name, sizeof name, "%s_shape", rep_names[r]);
        if (textfix_doubles(&fx, name, shape, 2) != 2 || (int)shape[0] != n_items) return -1;
        rep_p[r] = (int)shape[1];
        rep_X[r] = malloc(sizeof(float) * (size_t)n_items * rep_p[r]);
        if (textfix_doubles(&fx, rep_names[r], tmp, sizeof tmp / sizeof tmp[0]) !=
            n_items * rep_p[r])
            return -1;
        for (int i = 0; i < n_items * rep_p[r]; i++) rep_X[r][i] = (float)tmp[i];
    }
    return 0;
}

/* Y[:, dims] as its own matrix (for the direct reference). */
static float *select_columns(const float *A, int n, int c, const int *dims, int m) {
    float *out = malloc(sizeof(float) * (size_t)n * m);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) out[(size_t)i * m + j] = A[(size_t)i * c + dims[j]];
    return out;
}

static void test_linear_and_debiased_match_numpy(void) {
    ml_err err;
    ml_cka_target *t = ml_cka_target_new(Y, n_items, n_dims_total, &err);
    CHECK(t != NULL);
    if (!t) return;
    CHECK(ml_cka_target_dims(t) == n_dims_total);
    for (int r = 0; r < n_reps; r++) {
        ml_cka_rep *rep = ml_cka_rep_new(rep_X[r], n_items, rep_p[r], t, &err);
        CHECK_MSG(rep != NULL, "%s: %s", rep_names[r], err.msg);
        if (!rep) continue;
        for (int d = 0; d < 5; d++) {
            const int *dims = dim_counts[d] ? dim_sets[d] : NULL;
            double lin, deb;
            CHECK(ml_cka_linear(rep, t, dims, dim_counts[d], &lin, &err) == 0);
            CHECK(ml_cka_debiased(rep, t, dims, dim_counts[d], &deb, &err) == 0);
            double want_lin = fixture_value("lin", rep_names[r], dim_names[d]);
            double want_deb = fixture_value("deb", rep_names[r], dim_names[d]);
            CHECK_NEAR(lin, want_lin, 1e-10, 1e-14);
            CHECK_NEAR(deb, want_deb, 1e-9, 1e-12);
            /* the plain reference agrees too */
            float *Ys = dims ? select_columns(Y, n_items, n_dims_total, dims, dim_counts[d])
                             : NULL;
            double direct = ml_cka_linear_direct(rep_X[r], n_items, rep_p[r], dims ? Ys : Y,
                                                 dims ? dim_counts[d] : n_dims_total);
            CHECK_NEAR(direct, want_lin, 1e-10, 1e-14);
            free(Ys);
        }
        /* the notebook's float32 torch numbers, at float32 accuracy */
        double lin, want;
        CHECK(ml_cka_linear(rep, t, NULL, 0, &lin, &err) == 0);
        want = fixture_value("nb", rep_names[r], "all");
        CHECK_NEAR(lin, want, 2e-5, 0);
        CHECK(ml_cka_linear(rep, t, dim_sets[1], 3, &lin, &err) == 0);
        want = fixture_value("nb", rep_names[r], "012");
        CHECK_NEAR(lin, want, 2e-5, 0);
        ml_cka_rep_free(rep);
    }
    ml_cka_target_free(t);
}

static void test_matrix_matches_numpy(void) {
    ml_err err;
    ml_cka_rep *reps[MAXREPS];
    for (int r = 0; r < n_reps; r++) {
        reps[r] = ml_cka_rep_new(rep_X[r], n_items, rep_p[r], NULL, &err);
        CHECK(reps[r] != NULL);
        if (!reps[r]) return;
    }
    double lin[MAXREPS * MAXREPS], deb[MAXREPS * MAXREPS];
    double want_lin[MAXREPS * MAXREPS], want_deb[MAXREPS * MAXREPS];
    CHECK(textfix_doubles(&fx, "matrix_linear", want_lin, MAXREPS * MAXREPS) ==
          n_reps * n_reps);
    CHECK(textfix_doubles(&fx, "matrix_debiased", want_deb, MAXREPS * MAXREPS) ==
          n_reps * n_reps);
    CHECK(ml_cka_matrix((const ml_cka_rep *const *)reps, n_reps, lin, deb, &err) == 0);
    /* The off-diagonal entries against numpy, each computed there on its own pair (both
     * (i, j) and (j, i)); the diagonal is 1 by definition, set by both sides, so comparing
     * it would prove nothing. Float Grams with double sums: about 1e-7. */
    int compared = 0;
    for (int i = 0; i < n_reps; i++)
        for (int j = 0; j < n_reps; j++) {
            if (i == j) continue;
            int k = i * n_reps + j;
            CHECK_NEAR(lin[k], want_lin[k], 1e-6, 1e-7);
            CHECK_NEAR(deb[k], want_deb[k], 1e-5, 1e-6);
            compared++;
        }
    CHECK_EQ_INT(compared, n_reps * (n_reps - 1));
    CHECK(n_reps >= 3);
    /* either output may be skipped */
    double lin2[MAXREPS * MAXREPS];
    CHECK(ml_cka_matrix((const ml_cka_rep *const *)reps, n_reps, lin2, NULL, &err) == 0);
    CHECK(!memcmp(lin, lin2, sizeof(double) * n_reps * n_reps));
    for (int r = 0; r < n_reps; r++) ml_cka_rep_free(reps[r]);
}

/* A random orthogonal (p, p) matrix: Gram-Schmidt on Gaussian columns, in double. */
static void random_orthogonal(double *Qm, int p, ml_rng *r) {
    for (int i = 0; i < p * p; i++) {
        double u = 1.0 - ml_rng_double(r), v = ml_rng_double(r);
        Qm[i] = sqrt(-2 * log(u)) * cos(2 * M_PI * v);
    }
    for (int j = 0; j < p; j++) {
        for (int k = 0; k < j; k++) {
            double dot = 0;
            for (int i = 0; i < p; i++) dot += Qm[i * p + j] * Qm[i * p + k];
            for (int i = 0; i < p; i++) Qm[i * p + j] -= dot * Qm[i * p + k];
        }
        double norm = 0;
        for (int i = 0; i < p; i++) norm += Qm[i * p + j] * Qm[i * p + j];
        for (int i = 0; i < p; i++) Qm[i * p + j] /= sqrt(norm);
    }
}

/* X Q * scale + offset, rounded to float. */
static float *transform(const float *X, int n, int p, const double *Qm, double scale,
                        double offset) {
    float *out = malloc(sizeof(float) * (size_t)n * p);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < p; j++) {
            double s = 0;
            for (int k = 0; k < p; k++) s += X[(size_t)i * p + k] * Qm[k * p + j];
            out[(size_t)i * p + j] = (float)(s * scale + offset);
        }
    return out;
}

static void test_known_exact(void) {
    ml_err err;
    int r = 2; /* x3: 20 columns */
    int n = n_items, p = rep_p[r];
    const float *X = rep_X[r];
    /* CKA of a matrix with itself is 1 (as target and as representation) */
    ml_cka_target *tx = ml_cka_target_new(X, n, p, &err);
    ml_cka_rep *rx = ml_cka_rep_new(X, n, p, tx, &err);
    CHECK(tx && rx);
    if (!tx || !rx) return;
    double v;
    CHECK(ml_cka_linear(rx, tx, NULL, 0, &v, &err) == 0);
    CHECK_NEAR(v, 1.0, 1e-13, 0);
    CHECK(ml_cka_debiased(rx, tx, NULL, 0, &v, &err) == 0);
    CHECK_NEAR(v, 1.0, 1e-12, 0);
    /* ...and a subset of its columns matches the definition on X[:, S] */
    int sub[] = {3, 7, 11};
    float *Xs = select_columns(X, n, p, sub, 3);
    CHECK(ml_cka_linear(rx, tx, sub, 3, &v, &err) == 0);
    CHECK_NEAR(v, ml_cka_linear_direct(X, n, p, Xs, 3), 1e-12, 0);
    free(Xs);

    /* invariance to an orthogonal transform, isotropic scaling and translation */
    ml_cka_target *t = ml_cka_target_new(Y, n, n_dims_total, &err);
    ml_cka_rep *r0 = ml_cka_rep_new(X, n, p, t, &err);
    static double Qm[20 * 20];
    ml_rng rng;
    ml_rng_seed(&rng, 31, 0);
    random_orthogonal(Qm, p, &rng);
    float *Xt = transform(X, n, p, Qm, 7.5, -3.0);
    ml_cka_rep *r1 = ml_cka_rep_new(Xt, n, p, t, &err);
    CHECK(r0 && r1);
    if (r0 && r1) {
        for (int d = 0; d < 5; d++) {
            const int *dims = dim_counts[d] ? dim_sets[d] : NULL;
            double a, b;
            CHECK(ml_cka_linear(r0, t, dims, dim_counts[d], &a, &err) == 0);
            CHECK(ml_cka_linear(r1, t, dims, dim_counts[d], &b, &err) == 0);
            CHECK_NEAR(b, a, 1e-5, 1e-7); /* Xt is rounded to float */
            CHECK(ml_cka_debiased(r0, t, dims, dim_counts[d], &a, &err) == 0);
            CHECK(ml_cka_debiased(r1, t, dims, dim_counts[d], &b, &err) == 0);
            CHECK_NEAR(b, a, 1e-5, 1e-6);
        }
        const ml_cka_rep *pair[2] = {r0, r1};
        double lin[4], deb[4];
        CHECK(ml_cka_matrix(pair, 2, lin, deb, &err) == 0);
        CHECK_NEAR(lin[1], 1.0, 1e-6, 0);
        CHECK_NEAR(deb[1], 1.0, 1e-6, 0);
        /* the off-diagonal entries are the pairwise CKA with Xt as the target, both ways */
        CHECK_NEAR(lin[1], ml_cka_linear_direct(X, n, p, Xt, p), 1e-9, 1e-12);
        CHECK_NEAR(lin[2], ml_cka_linear_direct(Xt, n, p, X, p), 1e-9, 1e-12);
        ml_cka_target *txt = ml_cka_target_new(Xt, n, p, &err);
        ml_cka_rep *rxt = txt ? ml_cka_rep_new(X, n, p, txt, &err) : NULL;
        double want_deb = NAN;
        CHECK(rxt && ml_cka_debiased(rxt, txt, NULL, 0, &want_deb, &err) == 0);
        CHECK_NEAR(deb[1], want_deb, 1e-9, 1e-12);
        CHECK_NEAR(deb[2], want_deb, 1e-9, 1e-12);
        ml_cka_rep_free(rxt);
        ml_cka_target_free(txt);
    }
    free(Xt);
    ml_cka_rep_free(r0);
    ml_cka_rep_free(r1);
    ml_cka_rep_free(rx);
    ml_cka_target_free(tx);
    ml_cka_target_free(t);
}

static void test_inputs_unchanged(void) {
    ml_err err;
    size_t ny = sizeof(float) * n_items * n_dims_total, nx = sizeof(float) * n_items * rep_p[0];
    float *y0 = malloc(ny), *x0 = malloc(nx);
    memcpy(y0, Y, ny);
    memcpy(x0, rep_X[0], nx);
    ml_cka_target *t = ml_cka_target_new(Y, n_items, n_dims_total, &err);
    ml_cka_rep *r = ml_cka_rep_new(rep_X[0], n_items, rep_p[0], t, &err);
    double v;
    CHECK(ml_cka_linear(r, t, NULL, 0, &v, &err) == 0);
    (void)ml_cka_linear_direct(rep_X[0], n_items, rep_p[0], Y, n_dims_total);
    CHECK(!memcmp(y0, Y, ny));
    CHECK(!memcmp(x0, rep_X[0], nx));
    ml_cka_rep_free(r);
    ml_cka_target_free(t);
    free(y0);
    free(x0);
}

static void test_errors(void) {
    ml_err err;
    int n = n_items;
    ml_cka_target *t = ml_cka_target_new(Y, n, n_dims_total, &err);
    ml_cka_rep *r = ml_cka_rep_new(rep_X[0], n, rep_p[0], t, &err);
    double v = 42;
    int bad[] = {7};
    CHECK(ml_cka_linear(r, t, bad, 1, &v, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "dimension 7 is out of range");
    int neg[] = {-1};
    CHECK(ml_cka_debiased(r, t, neg, 1, &v, &err) == -1);
    CHECK(ml_cka_linear(r, t, bad, 0, &v, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "no target dimensions");
    int constant[] = {6};
    CHECK(ml_cka_linear(r, t, constant, 1, &v, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "constant");
    CHECK(v == 42);

    /* a constant representation */
    float *Xc = malloc(sizeof(float) * n * 3);
    for (int i = 0; i < n * 3; i++) Xc[i] = 1.5f;
    CHECK(ml_cka_rep_new(Xc, n, 3, t, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "constant across");
    CHECK(isnan(ml_cka_linear_direct(Xc, n, 3, Y, n_dims_total)));
    /* a non-finite value */
    Xc[5] = NAN;
    CHECK(ml_cka_rep_new(Xc, n, 3, t, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "row 1 column 2");
    Xc[5] = INFINITY;
    CHECK(ml_cka_target_new(Xc, n, 3, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "finite");
    free(Xc);
    /* shapes */
    CHECK(ml_cka_rep_new(rep_X[0], 1, rep_p[0], NULL, &err) == NULL);
    CHECK(ml_cka_rep_new(rep_X[0], n - 1, rep_p[0], t, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "items");
    /* a rep prepared without, or with another, target */
    ml_cka_rep *bare = ml_cka_rep_new(rep_X[0], n, rep_p[0], NULL, &err);
    CHECK(ml_cka_linear(bare, t, NULL, 0, &v, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "without a target");
    ml_cka_target *t2 = ml_cka_target_new(rep_X[1], n, 5, &err);
    CHECK(ml_cka_linear(r, t2, NULL, 0, &v, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "another target");
    /* too few items for the debiased estimator */
    ml_cka_target *t3 = ml_cka_target_new(Y, 3, n_dims_total, &err);
    ml_cka_rep *r3 = ml_cka_rep_new(rep_X[0], 3, rep_p[0], t3, &err);
    CHECK(t3 && r3);
    CHECK(ml_cka_linear(r3, t3, dim_sets[1], 3, &v, &err) == 0);
    CHECK(ml_cka_debiased(r3, t3, dim_sets[1], 3, &v, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "at least 4 items");
    /* bootstrap arguments */
    double lo, hi;
    const ml_cka_rep *one[1] = {r};
    CHECK(ml_cka_bootstrap(one, 1, t, NULL, 0, 0, 95, 0, &lo, &hi, &err) == -1);
    CHECK(ml_cka_bootstrap(one, 1, t, NULL, 0, 10, 100, 0, &lo, &hi, &err) == -1);
    CHECK(ml_cka_bootstrap(one, 1, t, bad, 1, 10, 95, 0, &lo, &hi, &err) == -1);
    const ml_cka_rep *mixed[2] = {r, r3};
    CHECK(ml_cka_matrix(mixed, 2, &v, NULL, &err) == -1);
    ml_cka_rep_free(r3);
    ml_cka_target_free(t3);
    ml_cka_target_free(t2);
    ml_cka_rep_free(bare);
    ml_cka_rep_free(r);
    ml_cka_target_free(t);
}

static void test_bootstrap(void) {
    ml_err err;
    int n = n_items;
    ml_cka_target *t = ml_cka_target_new(Y, n, n_dims_total, &err);
    const ml_cka_rep *reps[3];
    for (int r = 0; r < 3; r++) reps[r] = ml_cka_rep_new(rep_X[r + 1], n, rep_p[r + 1], t, &err);
    CHECK(reps[0] && reps[1] && reps[2]);
    double lo[3], hi[3], lo2[3], hi2[3];
    CHECK(ml_cka_bootstrap(reps, 3, t, dim_sets[1], 3, 200, 95, 7, lo, hi, &err) == 0);
    float *Ys = select_columns(Y, n, n_dims_total, dim_sets[1], 3);
    for (int r = 0; r < 3; r++) {
        double want_lo, want_hi, point;
        bootstrap_by_hand(rep_X[r + 1], n, rep_p[r + 1], Ys, 3, 200, 95, 7, &want_lo, &want_hi);
        CHECK_NEAR(lo[r], want_lo, 1e-5, 1e-6);
        CHECK_NEAR(hi[r], want_hi, 1e-5, 1e-6);
        /* x2 is driven by Y: its interval holds the estimate. (For x3, unrelated to Y, it
         * need not: duplicated items inflate the biased CKA, so the resampled values sit
         * above a near-null estimate; the hand computation above shows the same.) */
        CHECK(ml_cka_linear(reps[r], t, dim_sets[1], 3, &point, &err) == 0);
        if (r == 0)
            CHECK_MSG(lo[r] < point && point < hi[r], "rep %d: %g not in [%g, %g]", r, point,
                      lo[r], hi[r]);
    }
    free(Ys);
    /* same seed, same interval; another seed, another one; one rep alone gets the same
     * interval as within the group (resamples do not depend on the reps) */
    CHECK(ml_cka_bootstrap(reps, 3, t, dim_sets[1], 3, 200, 95, 7, lo2, hi2, &err) == 0);
    CHECK(!memcmp(lo, lo2, sizeof lo) && !memcmp(hi, hi2, sizeof hi));
    CHECK(ml_cka_bootstrap(reps + 1, 1, t, dim_sets[1], 3, 200, 95, 7, lo2, hi2, &err) == 0);
    CHECK(lo2[0] == lo[1] && hi2[0] == hi[1]);
    CHECK(ml_cka_bootstrap(reps, 3, t, dim_sets[1], 3, 200, 95, 8, lo2, hi2, &err) == 0);
    CHECK(lo2[0] != lo[0] || hi2[0] != hi[0]);
    /* all dims */
    CHECK(ml_cka_bootstrap(reps, 1, t, NULL, 0, 100, 90, 1, lo, hi, &err) == 0);
    double want_lo, want_hi;
    bootstrap_by_hand(rep_X[1], n, rep_p[1], Y, n_dims_total, 100, 90, 1, &want_lo, &want_hi);
    CHECK_NEAR(lo[0], want_lo, 1e-5, 1e-6);
    CHECK_NEAR(hi[0], want_hi, 1e-5, 1e-6);
    for (int r = 0; r < 3; r++) ml_cka_rep_free((ml_cka_rep *)reps[r]);
    ml_cka_target_free(t);
}

int main(void) {
    if (load_fixture()) {
        printf("Bail out! cannot read %s\n", FIXTURE("analysis/cka.txt"));
        return 1;
    }
    RUN(test_linear_and_debiased_match_numpy);
    RUN(test_matrix_matches_numpy);
    RUN(test_known_exact);
    RUN(test_inputs_unchanged);
    RUN(test_errors);
    RUN(test_bootstrap);
    for (int r = 0; r < n_reps; r++) free(rep_X[r]);
    free(fx.text);
    return UT_DONE();
}
