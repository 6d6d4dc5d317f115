/* The replay's numerics against tests/reference/make_replay_fixtures.py (scipy, sklearn,
 * numpy; replay_numerics.json): the temperature fit with the optimum inside and at both
 * bounds (and the degenerate inputs), the baseline learner against sklearn's primal fit and
 * the reference's span form, the panel curves with their participant bootstrap and the
 * split-half noise ceiling, NaN where there is no value. */
#include <jansson.h>

#include "metalign/baseline.h"
#include "metalign/panel.h"
#include "metalign/temperature.h"
#include "unit.h"

static json_t *ref;

static double *doubles(json_t *a, size_t *n) {
    *n = json_array_size(a);
    double *v = malloc((*n ? *n : 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) {
        json_t *x = json_array_get(a, i);
        v[i] = json_is_null(x) ? NAN : json_number_value(x);
    }
    return v;
}

static double num(json_t *o, const char *k) {
    json_t *x = json_object_get(o, k);
    return json_is_null(x) || !x ? NAN : json_number_value(x);
}

/* equal within tolerance, or both NaN (the reference writes null for NaN) */
#define CHECK_NEAR_NAN(a, b, rtol, atol)                                                   \
    do {                                                                                   \
        double na_ = (a), nb_ = (b);                                                       \
        if (isnan(nb_))                                                                    \
            CHECK_MSG(isnan(na_), "%s = %g, expected NaN", #a, na_);                       \
        else                                                                               \
            CHECK_NEAR(na_, nb_, rtol, atol);                                              \
    } while (0)

static void test_temperature_fit(void) {
    json_t *cases = json_object_get(ref, "temperature");
    CHECK(json_array_size(cases) == 7);
    int seen_bound[3] = {0, 0, 0};
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        size_t n, m;
        double *z = doubles(json_object_get(c, "z"), &n);
        double *cd = doubles(json_object_get(c, "choice"), &m);
        uint8_t *ch = malloc(n ? n : 1);
        for (size_t k = 0; k < n; k++) ch[k] = (uint8_t)cd[k];
        ml_temp_fit f;
        ml_temperature_fit(z, ch, n, &f);
        int bound = (int)num(c, "at_bound");
        seen_bound[bound + 1]++;
        CHECK_MSG(f.at_bound == bound, "%s: at_bound %d, want %d", name, f.at_bound, bound);
        CHECK_NEAR(f.temperature, num(c, "T"), 1e-9, 0);
        CHECK_NEAR(f.nll, num(c, "nll"), 1e-12, 1e-12);
        CHECK_NEAR(ml_choice_nll(z, ch, n, 1.0), num(c, "nll_t1"), 1e-13, 1e-13);
        CHECK_NEAR(ml_choice_nll(z, ch, n, 3.0), num(c, "nll_T3"), 1e-13, 1e-13);
        /* an optimum: neither neighbour in log T is better (inside only) */
        if (bound == 0 && !f.degenerate) {
            double up = ml_choice_nll(z, ch, n, f.temperature * (1 + 1e-6));
            double down = ml_choice_nll(z, ch, n, f.temperature * (1 - 1e-6));
            CHECK(f.nll <= up && f.nll <= down);
            CHECK(f.iterations > 0 && f.iterations < 60);
        }
        if (!strcmp(name, "zeros") || !strcmp(name, "empty")) CHECK(f.degenerate && f.temperature == 1);
        free(z);
        free(cd);
        free(ch);
    }
    CHECK(seen_bound[0] >= 1 && seen_bound[1] >= 1 && seen_bound[2] >= 1);
}

static void test_baseline_against_sklearn(void) {
    json_t *b = json_object_get(ref, "baseline");
    size_t n = (size_t)json_integer_value(json_object_get(b, "n"));
    size_t D = (size_t)json_integer_value(json_object_get(b, "D")), nx, ny, nz;
    double *xd = doubles(json_object_get(b, "X"), &nx);
    double *yd = doubles(json_object_get(b, "y"), &ny);
    double *zs = doubles(json_object_get(b, "z"), &nz);
    double *zp = doubles(json_object_get(b, "z_primal"), &nz);
    CHECK(nx == n * D && ny == n && nz == n);
    float *X = malloc(n * D * sizeof *X);
    uint8_t *y = malloc(n), *fitted = malloc(n);
    for (size_t i = 0; i < n * D; i++) X[i] = (float)xd[i];
    for (size_t i = 0; i < n; i++) y[i] = (uint8_t)yd[i];
    double *K = malloc(n * n * sizeof *K), *z = malloc(n * sizeof *z);
    ml_err err;
    CHECK(ml_baseline_gram(X, n, D, K, &err) == 0);
    CHECK(K[7 * n + 20] == K[7 * n + 7]); /* the repeated row */
    ml_baseline_stats st = {0};
    CHECK_MSG(ml_baseline_sequence(K, y, n, ML_BASELINE_C, z, fitted, &st, &err) == 0, "%s",
              err.msg);
    for (size_t t = 0; t < n; t++) {
        CHECK_NEAR(z[t], zs[t], 1e-8, 1e-9);  /* the reference's span form */
        CHECK_NEAR(z[t], zp[t], 1e-6, 1e-7);  /* sklearn, primal, tol 1e-12 */
    }
    /* trials 0..3 see one class only (1, 1, 1 before trial 3): p = 0.5 */
    for (size_t t = 0; t < 4; t++) CHECK(z[t] == 0 && fitted[t] == 0);
    CHECK(fitted[4] == 1);
    CHECK(st.fits == (long)n - 4);
    CHECK(st.max_grad <= ML_BASELINE_GTOL * 100);
    CHECK_MSG(st.newton_steps < 6 * st.fits, "%ld Newton steps for %ld fits", st.newton_steps,
              st.fits);
    printf("# baseline: %ld fits, %ld Newton steps, %ld halvings, largest gradient %.2g\n",
           st.fits, st.newton_steps, st.line_search, st.max_grad);
    /* a single fit from zeros equals the warm-started one */
    double a[36] = {0}, bb = 0;
    CHECK(ml_baseline_fit(K, n, y, 30, ML_BASELINE_C, a, &bb, NULL, &err) == 0);
    double z30 = bb;
    for (size_t j = 0; j < 30; j++) z30 += K[30 * n + j] * a[j];
    CHECK_NEAR(z30, zs[30], 1e-8, 1e-9);
    /* too long a sequence is refused with a reason */
    CHECK(ml_baseline_sequence(K, y, ML_BASELINE_MAX_ROWS + 1, 1.0, z, NULL, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "longer than");
    free(xd), free(yd), free(zs), free(zp), free(X), free(y), free(fitted), free(K), free(z);
}

static void check_curve(const ml_panel_curve *c, json_t *want) {
    size_t n;
    double *p = doubles(json_object_get(want, "p_correct"), &n);
    double *lo = doubles(json_object_get(want, "ci_low"), &n);
    double *hi = doubles(json_object_get(want, "ci_high"), &n);
    double *cnt = doubles(json_object_get(want, "n"), &n);
    CHECK(n == (size_t)c->n_trials);
    for (size_t t = 0; t < n && t < (size_t)c->n_trials; t++) {
        CHECK(c->n[t] == (int64_t)cnt[t]);
        CHECK_NEAR_NAN(c->p_correct[t], p[t], 1e-14, 1e-15);
        CHECK_NEAR_NAN(c->ci_low[t], lo[t], 1e-14, 1e-15);
        CHECK_NEAR_NAN(c->ci_high[t], hi[t], 1e-14, 1e-15);
    }
    free(p), free(lo), free(hi), free(cnt);
}

static void test_panel_and_noise_ceiling(void) {
    json_t *p = json_object_get(ref, "panel");
    size_t P = (size_t)json_integer_value(json_object_get(p, "P"));
    int T = (int)json_integer_value(json_object_get(p, "T"));
    size_t n;
    double *hd = doubles(json_object_get(p, "has"), &n);
    double *s0 = doubles(json_object_get(p, "s0"), &n);
    double *s1 = doubles(json_object_get(p, "s1"), &n);
    double *sd = doubles(json_object_get(p, "seq"), &n);
    uint8_t *has = malloc(P * (size_t)T);
    for (size_t i = 0; i < P * (size_t)T; i++) has[i] = (uint8_t)hd[i];
    size_t seq[16];
    for (size_t i = 0; i < n; i++) seq[i] = (size_t)sd[i];
    ml_panel panel = {.n_seq = P, .n_trials = T, .has = has, .series = {s0, s1}, .n_series = 2};
    ml_panel_curve c[2];
    ml_err err;
    CHECK(ml_panel_curves(&panel, seq, n, (int)num(p, "n_boot"), 95.0, (uint64_t)num(p, "seed"),
                          (uint64_t)num(p, "stream"), c, &err) == 0);
    json_t *want = json_object_get(p, "curves");
    check_curve(&c[0], json_array_get(want, 0));
    check_curve(&c[1], json_array_get(want, 1));
    /* a trial nobody of the group has: n 0 and NaN */
    ml_panel_curve_free(&c[0]);
    ml_panel_curve_free(&c[1]);
    size_t all[16];
    for (size_t i = 0; i < P; i++) all[i] = i;
    ml_noise_ceiling nc;
    CHECK(ml_noise_ceiling_compute(&panel, 0, all, P, (int)num(p, "nc_splits"),
                                   (uint64_t)num(p, "seed"), (uint64_t)num(p, "nc_stream"), &nc,
                                   &err) == 0);
    json_t *w = json_object_get(p, "noise_ceiling");
    CHECK_NEAR(nc.r, num(w, "r"), 1e-12, 1e-14);
    CHECK_NEAR(nc.ci_low, num(w, "ci_low"), 1e-12, 1e-14);
    CHECK_NEAR(nc.ci_high, num(w, "ci_high"), 1e-12, 1e-14);
    CHECK(nc.splits == (int)num(w, "splits"));
    /* one participant cannot be split */
    CHECK(ml_noise_ceiling_compute(&panel, 0, all, 1, 10, 0, 0, &nc, &err) == 0);
    CHECK(isnan(nc.r) && isnan(nc.ci_low) && nc.splits == 0);
    /* no bootstrap asked: means, NaN intervals; an empty group: NaN everywhere */
    CHECK(ml_panel_curves(&panel, seq, n, 0, 95.0, 0, 0, c, &err) == 0);
    CHECK(isnan(c[0].ci_low[0]) && !isnan(c[0].p_correct[0]));
    double r, rmse;
    ml_panel_curve_compare(&c[0], &c[0], &r, &rmse);
    CHECK_NEAR(r, 1.0, 0, 1e-12);
    CHECK(rmse == 0);
    ml_panel_curve_free(&c[0]);
    ml_panel_curve_free(&c[1]);
    CHECK(ml_panel_curves(&panel, seq, 0, 50, 95.0, 0, 0, c, &err) == 0);
    CHECK(c[0].n[0] == 0 && isnan(c[0].p_correct[0]) && isnan(c[0].ci_high[0]));
    ml_panel_curve_compare(&c[0], &c[1], &r, &rmse);
    CHECK(isnan(r) && isnan(rmse));
    ml_panel_curve_free(&c[0]);
    ml_panel_curve_free(&c[1]);
    free(hd), free(s0), free(s1), free(sd), free(has);
}

int main(void) {
    json_error_t e;
    ref = json_load_file(FIXTURE("analysis/replay_numerics.json"), 0, &e);
    if (!ref) {
        printf("# replay_numerics.json: %s\nnot ok 1 - fixture\n1..1\n", e.text);
        return 1;
    }
    RUN(test_temperature_fit);
    RUN(test_baseline_against_sklearn);
    RUN(test_panel_and_noise_ceiling);
    json_decref(ref);
    return UT_DONE();
}
