/* Human learning curves against pandas (tests/reference/human_curves.py): p(correct), row and
 * participant counts per trial, overall and per dimension, for several max_trial, equal to
 * 1e-12. The bootstrap interval uses the service's RNG, so it is compared with seaborn's
 * algorithm run on numpy's RNG statistically: both estimate the same percentiles of the same
 * resampling distribution from 4000 draws, whose atoms are 1/n apart, so each bound may differ
 * by at most one atom (1/n) and the two must agree closely on average. */
#include <math.h>

#include "unit.h"

#include "human_test.h"
#include "metalign/human_curves.h"

static int load(const char *name, ml_human_data *d) {
    const char *path = FIXTUREF("human/%s", name);
    size_t len;
    char *buf = read_file(path, &len);
    ml_fetch_code code;
    ml_err err = {{0}};
    int rc = buf ? ml_human_csv_parse(buf, len, name, d, &code, &err) : -1;
    if (rc != 0) printf("# %s: %s\n", path, buf ? err.msg : "cannot read the fixture");
    free(buf);
    return rc;
}

typedef struct ci_stats {
    double sum_abs;  /* sum of |ours - seaborn's| in units of 1/n */
    int count;
} ci_stats;

static void compare_curve(const ml_human_curve *c, int n_trials, json_t *ref, const char *what,
                          ci_stats *cs) {
    json_t *p = json_object_get(ref, "p_correct"), *n = json_object_get(ref, "n"),
           *lo = json_object_get(ref, "ci_low"), *hi = json_object_get(ref, "ci_high");
    CHECK_MSG(json_array_size(p) == (size_t)n_trials, "%s: %zu trials in the reference", what,
              json_array_size(p));
    for (int t = 0; t < n_trials && t < (int)json_array_size(p); t++) {
        json_int_t rn = json_integer_value(json_array_get(n, (size_t)t));
        CHECK_MSG(c->curve.n[t] == rn, "%s trial %d: n %lld, pandas %lld", what, t,
                  (long long)c->curve.n[t], (long long)rn);
        if (rn == 0) {
            CHECK_MSG(json_is_null(json_array_get(p, (size_t)t)) && isnan(c->curve.p_correct[t]),
                      "%s trial %d: empty trial has a value", what, t);
            continue;
        }
        double rp = json_real_value(json_array_get(p, (size_t)t));
        CHECK_MSG(fabs(c->curve.p_correct[t] - rp) <= 1e-12, "%s trial %d: p %.17g, pandas %.17g",
                  what, t, c->curve.p_correct[t], rp);
        double atom = 1.0 / (double)rn + 1e-9;
        double rlo = json_real_value(json_array_get(lo, (size_t)t));
        double rhi = json_real_value(json_array_get(hi, (size_t)t));
        CHECK_MSG(fabs(c->curve.ci_low[t] - rlo) <= atom && fabs(c->curve.ci_high[t] - rhi) <= atom,
                  "%s trial %d (n=%lld): ci [%g, %g], seaborn's [%g, %g]", what, t,
                  (long long)rn, c->curve.ci_low[t], c->curve.ci_high[t], rlo, rhi);
        CHECK_MSG(c->curve.ci_low[t] <= c->curve.p_correct[t] + 1e-12 &&
                      c->curve.p_correct[t] <= c->curve.ci_high[t] + 1e-12,
                  "%s trial %d: p %g outside [%g, %g]", what, t, c->curve.p_correct[t], c->curve.ci_low[t],
                  c->curve.ci_high[t]);
        cs->sum_abs += (fabs(c->curve.ci_low[t] - rlo) + fabs(c->curve.ci_high[t] - rhi)) * (double)rn;
        cs->count += 2;
    }
}

static void test_curves_match_pandas(void) {
    json_t *ref = load_reference();
    if (!ref) {
        CHECK(ref != NULL);
        return;
    }
    int n_boot = (int)json_integer_value(json_object_get(ref, "n_boot"));
    double level = json_number_value(json_object_get(ref, "level"));
    CHECK_MSG(level == ML_CI_LEVEL, "the reference's level %g is not the service's %g", level,
              ML_CI_LEVEL);
    const char *file;
    json_t *fref;
    ci_stats cs = {0};
    json_object_foreach(json_object_get(ref, "files"), file, fref) {
        ml_human_data d;
        if (load(file, &d) != 0) {
            CHECK(0);
            continue;
        }
        const char *key;
        json_t *r;
        json_object_foreach(fref, key, r) {
            if (!json_is_object(r)) continue; /* "missing", "rows" */
            int max_trial = atoi(key);
            ml_human_curves c;
            ml_err err = {{0}};
            CHECK(ml_human_curves_compute(&d, max_trial, 0, n_boot, &c, &err) == 0);
            CHECK_MSG(err.msg[0] == 0, "%s", err.msg);
            char what[128];
            snprintf(what, sizeof what, "%s max_trial=%d overall", file, max_trial);
            CHECK(c.n_trials == max_trial + 1);
            CHECK(c.overall.participants ==
                  (size_t)json_integer_value(json_object_get(r, "participants")));
            CHECK(c.overall.rows == (size_t)json_integer_value(json_object_get(r, "rows")));
            compare_curve(&c.overall, c.n_trials, json_object_get(r, "curve"), what, &cs);
            json_t *dims = json_object_get(r, "by_dimension");
            CHECK(c.n_dims == (int)json_array_size(dims));
            for (int j = 0; j < c.n_dims && j < (int)json_array_size(dims); j++) {
                json_t *dr = json_array_get(dims, (size_t)j);
                CHECK(c.by_dim[j].dimension ==
                      json_integer_value(json_object_get(dr, "dimension")));
                CHECK(c.by_dim[j].participants ==
                      (size_t)json_integer_value(json_object_get(dr, "participants")));
                CHECK(c.by_dim[j].rows == (size_t)json_integer_value(json_object_get(dr, "rows")));
                snprintf(what, sizeof what, "%s max_trial=%d dimension %d", file, max_trial,
                         c.by_dim[j].dimension);
                compare_curve(&c.by_dim[j], c.n_trials, json_object_get(dr, "curve"), what, &cs);
            }
            ml_human_curves_free(&c);
        }
        ml_human_data_free(&d);
    }
    /* Both estimates land on the same atom almost always: seeds 0-3 and 12345 give a mean
     * of 0.002-0.005 atoms, while a 92.5% or 97.5% interval gives 0.033 and 0.17, and a
     * normal approximation or resampling the wrong n would be further off. */
    double mean_atoms = cs.count ? cs.sum_abs / cs.count : 1;
    printf("# %d interval bounds: mean |ours - seaborn's| = %.3f atoms (1/n)\n", cs.count,
           mean_atoms);
    CHECK(cs.count > 500);
    CHECK(mean_atoms < 0.02);
    json_decref(ref);
}

static int same_curve(const ml_human_curve *a, const ml_human_curve *b, int n_trials) {
    for (int t = 0; t < n_trials; t++) {
        if (a->curve.n[t] != b->curve.n[t]) return 0;
        if (a->curve.n[t] == 0) continue;
        if (a->curve.p_correct[t] != b->curve.p_correct[t] || a->curve.ci_low[t] != b->curve.ci_low[t] ||
            a->curve.ci_high[t] != b->curve.ci_high[t])
            return 0;
    }
    return 1;
}

static void test_seeded_and_independent_of_other_dimensions(void) {
    ml_human_data d;
    if (load("synthetic.csv", &d) != 0) {
        CHECK(0);
        return;
    }
    ml_human_curves a, b, c;
    ml_err err;
    CHECK(ml_human_curves_compute(&d, 99, 7, 1000, &a, &err) == 0);
    CHECK(ml_human_curves_compute(&d, 99, 7, 1000, &b, &err) == 0);
    CHECK(ml_human_curves_compute(&d, 99, 8, 1000, &c, &err) == 0);
    CHECK(same_curve(&a.overall, &b.overall, 100));
    CHECK(!same_curve(&a.overall, &c.overall, 100));
    /* Without dimension 1's rows, dimension 2's interval is drawn from the same streams. (Only
     * the fields the curves read are copied: e owns its arrays, d keeps the rest.) */
    ml_human_data e = {.n_participants = d.n_participants, .max_trial = d.max_trial};
    e.participant = malloc(d.n_rows * sizeof *e.participant);
    e.trial = malloc(d.n_rows * sizeof *e.trial);
    e.dimension = malloc(d.n_rows * sizeof *e.dimension);
    e.correct = malloc(d.n_rows);
    e.n_rows = 0;
    for (size_t i = 0; i < d.n_rows; i++) {
        if (d.dimension[i] == 1) continue;
        e.participant[e.n_rows] = d.participant[i];
        e.trial[e.n_rows] = d.trial[i];
        e.dimension[e.n_rows] = d.dimension[i];
        e.correct[e.n_rows++] = d.correct[i];
    }
    ml_human_curves f;
    CHECK(ml_human_curves_compute(&e, 99, 7, 1000, &f, &err) == 0);
    CHECK(f.n_dims == 2 && a.n_dims == 3);
    if (f.n_dims == 2 && a.n_dims == 3) {
        CHECK(f.by_dim[1].dimension == 2);
        CHECK(same_curve(&a.by_dim[2], &f.by_dim[1], 100));
    }
    ml_human_curves_free(&a);
    ml_human_curves_free(&b);
    ml_human_curves_free(&c);
    ml_human_curves_free(&f);
    ml_human_data_free(&e);
    ml_human_data_free(&d);
}

/* Trials past the data have no observations and NaN values; n_boot = 0 gives no intervals. */
static void test_empty_trials_and_no_intervals(void) {
    ml_human_data d;
    if (load("synthetic.csv", &d) != 0) {
        CHECK(0);
        return;
    }
    ml_human_curves c;
    ml_err err;
    CHECK(ml_human_curves_compute(&d, 130, 0, 200, &c, &err) == 0);
    CHECK(c.n_trials == 131 && c.overall.curve.n_trials == 131);
    CHECK(c.overall.curve.n[119] > 0 && isfinite(c.overall.curve.p_correct[119]));
    CHECK(c.overall.curve.n[120] == 0 && isnan(c.overall.curve.p_correct[120]));
    CHECK(isnan(c.overall.curve.ci_low[130]) && c.overall.curve.n[125] == 0);
    CHECK(c.overall.participants == 18);
    CHECK(c.by_dim[0].dimension == 0 && c.by_dim[0].participants == 6);
    ml_human_curves_free(&c);
    CHECK(ml_human_curves_compute(&d, 99, 0, 0, &c, &err) == 0);
    for (int t = 0; t < 100; t++) {
        CHECK(isnan(c.overall.curve.ci_low[t]) && isnan(c.overall.curve.ci_high[t]));
        CHECK(c.overall.curve.n[t] == 0 || isfinite(c.overall.curve.p_correct[t]));
    }
    ml_human_curves_free(&c);
    ml_human_data_free(&d);
}

static void test_bad_arguments(void) {
    ml_human_data d;
    if (load("synthetic.csv", &d) != 0) {
        CHECK(0);
        return;
    }
    ml_human_curves c;
    ml_err err;
    CHECK(ml_human_curves_compute(&d, -1, 0, 100, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "max_trial=-1");
    CHECK(ml_human_curves_compute(&d, ML_HUMAN_MAX_TRIAL_LIMIT + 1, 0, 100, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "max_trial");
    CHECK(ml_human_curves_compute(&d, 99, 0, -1, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "n_boot=-1");
    CHECK(ml_human_curves_compute(&d, 99, 0, ML_N_BOOT_MAX + 1, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "n_boot");
    ml_human_data_free(&d);
}

int main(void) {
    RUN(test_curves_match_pandas);
    RUN(test_seeded_and_independent_of_other_dimensions);
    RUN(test_empty_trials_and_no_intervals);
    RUN(test_bad_arguments);
    return UT_DONE();
}
