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
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/human/%s", ML_SOURCE_ROOT, name);
    size_t len;
    char *buf = read_file(path, &len);
    ml_fetch_code code;
    ml_err err = {{0}};
    int rc = buf ? ml_human_csv_parse(buf, len, name, d, &code, &err) : -1;
    if (rc != 0) printf("# %s: %s\n", name, err.msg);
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
        CHECK_MSG(c->n[t] == rn, "%s trial %d: n %lld, pandas %lld", what, t,
                  (long long)c->n[t], (long long)rn);
        if (rn == 0) {
            CHECK_MSG(json_is_null(json_array_get(p, (size_t)t)) && isnan(c->p_correct[t]),
                      "%s trial %d: empty trial has a value", what, t);
            continue;
        }
        double rp = json_real_value(json_array_get(p, (size_t)t));
        CHECK_MSG(fabs(c->p_correct[t] - rp) <= 1e-12, "%s trial %d: p %.17g, pandas %.17g",
                  what, t, c->p_correct[t], rp);
        double atom = 1.0 / (double)rn + 1e-9;
        double rlo = json_real_value(json_array_get(lo, (size_t)t));
        double rhi = json_real_value(json_array_get(hi, (size_t)t));
        CHECK_MSG(fabs(c->ci_low[t] - rlo) <= atom && fabs(c->ci_high[t] - rhi) <= atom,
                  "%s trial %d (n=%lld): ci [%g, %g], seaborn's [%g, %g]", what, t,
                  (long long)rn, c->ci_low[t], c->ci_high[t], rlo, rhi);
        CHECK_MSG(c->ci_low[t] <= c->p_correct[t] + 1e-12 &&
                      c->p_correct[t] <= c->ci_high[t] + 1e-12,
                  "%s trial %d: p %g outside [%g, %g]", what, t, c->p_correct[t], c->ci_low[t],
                  c->ci_high[t]);
        cs->sum_abs += (fabs(c->ci_low[t] - rlo) + fabs(c->ci_high[t] - rhi)) * (double)rn;
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
            CHECK(ml_human_curves_compute(&d, max_trial, 0, n_boot, level, &c, &err) == 0);
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
        if (a->n[t] != b->n[t]) return 0;
        if (a->n[t] == 0) continue;
        if (a->p_correct[t] != b->p_correct[t] || a->ci_low[t] != b->ci_low[t] ||
            a->ci_high[t] != b->ci_high[t])
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
    CHECK(ml_human_curves_compute(&d, 99, 7, 1000, 95, &a, &err) == 0);
    CHECK(ml_human_curves_compute(&d, 99, 7, 1000, 95, &b, &err) == 0);
    CHECK(ml_human_curves_compute(&d, 99, 8, 1000, 95, &c, &err) == 0);
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
    CHECK(ml_human_curves_compute(&e, 99, 7, 1000, 95, &f, &err) == 0);
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

/* Trials past the data are null in the JSON (and NaN-free); counts are 0 there. */
static void test_json_has_null_not_nan(void) {
    ml_human_data d;
    if (load("synthetic.csv", &d) != 0) {
        CHECK(0);
        return;
    }
    ml_human_curves c;
    ml_err err;
    CHECK(ml_human_curves_compute(&d, 130, 0, 200, 95, &c, &err) == 0);
    json_t *doc = ml_human_curves_json(&c);
    CHECK(doc != NULL);
    char *text = json_dumps(doc, 0);
    CHECK(text && !strstr(text, "nan") && !strstr(text, "NaN") && !strstr(text, "inf"));
    json_t *curve = json_object_get(doc, "curve");
    CHECK(json_array_size(json_object_get(curve, "p_correct")) == 131);
    CHECK(json_is_real(json_array_get(json_object_get(curve, "p_correct"), 119)));
    CHECK(json_is_null(json_array_get(json_object_get(curve, "p_correct"), 120)));
    CHECK(json_is_null(json_array_get(json_object_get(curve, "ci_low"), 130)));
    CHECK(json_integer_value(json_array_get(json_object_get(curve, "n"), 125)) == 0);
    CHECK(json_integer_value(json_object_get(doc, "max_trial")) == 130);
    CHECK(json_integer_value(json_object_get(doc, "participants")) == 18);
    json_t *dim0 = json_array_get(json_object_get(doc, "by_dimension"), 0);
    CHECK(json_integer_value(json_object_get(dim0, "dimension")) == 0);
    CHECK(json_integer_value(json_object_get(dim0, "participants")) == 6);
    CHECK(json_is_object(json_object_get(dim0, "curve")));
    free(text);
    json_decref(doc);
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
    CHECK(ml_human_curves_compute(&d, -1, 0, 100, 95, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "max_trial=-1");
    CHECK(ml_human_curves_compute(&d, ML_HUMAN_MAX_TRIAL_LIMIT + 1, 0, 100, 95, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "max_trial");
    CHECK(ml_human_curves_compute(&d, 99, 0, 0, 95, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "n_boot=0");
    CHECK(ml_human_curves_compute(&d, 99, 0, 100, 100, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "level=100");
    ml_human_data_free(&d);
}

int main(void) {
    RUN(test_curves_match_pandas);
    RUN(test_seeded_and_independent_of_other_dimensions);
    RUN(test_json_has_null_not_nan);
    RUN(test_bad_arguments);
    return UT_DONE();
}
