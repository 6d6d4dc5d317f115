/* p(correct) per trial from the human rows, overall and per dimension, as the notebook gets it:
 * keep trial <= max_trial, then every row at trial t is one observation of the mean plotted at
 * t (pandas groupby-mean, seaborn lineplot), with seaborn's percentile-bootstrap interval. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/human_curves.h"
#include "metalign/rng.h"
#include "metalign/stats.h"

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void curve_free(ml_human_curve *c) {
    free(c->n);
    free(c->p_correct);
    free(c->ci_low);
    free(c->ci_high);
    memset(c, 0, sizeof *c);
}

static int curve_alloc(ml_human_curve *c, int dimension, int n_trials) {
    memset(c, 0, sizeof *c);
    c->dimension = dimension;
    c->n = calloc((size_t)n_trials, sizeof *c->n);
    c->p_correct = malloc((size_t)n_trials * sizeof *c->p_correct);
    c->ci_low = malloc((size_t)n_trials * sizeof *c->ci_low);
    c->ci_high = malloc((size_t)n_trials * sizeof *c->ci_high);
    if (!c->n || !c->p_correct || !c->ci_low || !c->ci_high) {
        curve_free(c);
        return -1;
    }
    return 0;
}

void ml_human_curves_free(ml_human_curves *c) {
    curve_free(&c->overall);
    for (int i = 0; i < c->n_dims; i++) curve_free(&c->by_dim[i]);
    free(c->by_dim);
    memset(c, 0, sizeof *c);
}

/* The distinct dimensions of the rows with trial <= max_trial, ascending, into *dims. */
static int distinct_dimensions(const ml_human_data *d, int max_trial, int32_t **dims, int *n_dims,
                               ml_err *err) {
    int32_t *v = malloc((d->n_rows ? d->n_rows : 1) * sizeof *v);
    if (!v) return ml_errf(err, "human curves: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < d->n_rows; i++)
        if (d->trial[i] <= max_trial) v[n++] = d->dimension[i];
    qsort(v, n, sizeof *v, cmp_i32);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || v[i] != v[u - 1]) v[u++] = v[i];
    if (u > ML_HUMAN_MAX_DIMENSIONS) {
        free(v);
        return ml_errf(err,
                       "human data: %zu distinct values in column \"dimension\"; at most %d are "
                       "supported (the experiment used 3)",
                       u, ML_HUMAN_MAX_DIMENSIONS);
    }
    *dims = v;
    *n_dims = (int)u;
    return 0;
}

/* Distinct participants overall and per dimension index (dim_of[i] for row i, -1 if the row
 * is past max_trial). */
static int count_participants(const ml_human_data *d, const int *dim_of, ml_human_curves *out,
                              ml_err *err) {
    unsigned char *seen = calloc(d->n_participants ? d->n_participants : 1, 1);
    uint64_t *keys = malloc((d->n_rows ? d->n_rows : 1) * sizeof *keys);
    if (!seen || !keys) {
        free(seen);
        free(keys);
        return ml_errf(err, "human curves: out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < d->n_rows; i++) {
        if (dim_of[i] < 0) continue;
        if (!seen[d->participant[i]]) {
            seen[d->participant[i]] = 1;
            out->overall.participants++;
        }
        keys[n++] = (uint64_t)dim_of[i] << 32 | (uint32_t)d->participant[i];
    }
    qsort(keys, n, sizeof *keys, cmp_u64);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || keys[i] != keys[i - 1]) out->by_dim[keys[i] >> 32].participants++;
    free(seen);
    free(keys);
    return 0;
}

/* p(correct) and the bootstrap interval at every trial of c, from ones[t] of c->n[t]. */
static void curve_finish(ml_human_curve *c, const int64_t *ones, int n_trials, uint64_t seed,
                         uint64_t stream_base, int n_boot, double level, double *scratch) {
    for (int t = 0; t < n_trials; t++) {
        if (c->n[t] == 0) {
            c->p_correct[t] = c->ci_low[t] = c->ci_high[t] = NAN;
            continue;
        }
        ml_rng r;
        ml_rng_seed(&r, seed, stream_base | (uint64_t)t);
        double mean;
        ml_proportion_ci((size_t)ones[t], (size_t)c->n[t], n_boot, level, &r, scratch, &mean,
                         &c->ci_low[t], &c->ci_high[t]);
        /* sum / count, exactly as pandas' mean of a boolean column. */
        c->p_correct[t] = (double)ones[t] / (double)c->n[t];
    }
}

int ml_human_curves_compute(const ml_human_data *d, int max_trial, uint64_t seed, int n_boot,
                            double level, ml_human_curves *out, ml_err *err) {
    memset(out, 0, sizeof *out);
    if (max_trial < 0 || max_trial > ML_HUMAN_MAX_TRIAL_LIMIT)
        return ml_errf(err, "max_trial=%d is out of range: use 0..%d", max_trial,
                       ML_HUMAN_MAX_TRIAL_LIMIT);
    if (n_boot < 1) return ml_errf(err, "n_boot=%d is out of range: use at least 1", n_boot);
    if (!(level > 0 && level < 100))
        return ml_errf(err, "level=%g is out of range: use a percentage between 0 and 100",
                       level);
    int n_trials = max_trial + 1;
    out->max_trial = max_trial;
    out->n_trials = n_trials;
    out->seed = seed;
    out->n_boot = n_boot;
    out->level = level;

    int32_t *dims = NULL;
    int n_dims = 0;
    if (distinct_dimensions(d, max_trial, &dims, &n_dims, err) != 0) return -1;

    int rc = -1;
    int *dim_of = malloc((d->n_rows ? d->n_rows : 1) * sizeof *dim_of);
    int64_t *ones = calloc((size_t)(n_dims + 1) * (size_t)n_trials, sizeof *ones);
    double *scratch = malloc((size_t)n_boot * sizeof *scratch);
    out->by_dim = calloc(n_dims ? (size_t)n_dims : 1, sizeof *out->by_dim);
    if (!dim_of || !ones || !scratch || !out->by_dim ||
        curve_alloc(&out->overall, -1, n_trials) != 0)
        goto oom;
    for (int j = 0; j < n_dims; j++) {
        if (curve_alloc(&out->by_dim[j], dims[j], n_trials) != 0) goto oom;
        out->n_dims = j + 1;
    }

    /* ones[0] counts for the overall curve, ones[1 + j] for dimension index j. */
    for (size_t i = 0; i < d->n_rows; i++) {
        int32_t t = d->trial[i];
        if (t > max_trial) {
            dim_of[i] = -1;
            continue;
        }
        const int32_t *hit = bsearch(&d->dimension[i], dims, (size_t)n_dims, sizeof *dims,
                                     cmp_i32);
        int j = (int)(hit - dims);
        dim_of[i] = j;
        out->overall.n[t]++;
        out->overall.rows++;
        ones[t] += d->correct[i];
        out->by_dim[j].n[t]++;
        out->by_dim[j].rows++;
        ones[(size_t)(1 + j) * (size_t)n_trials + (size_t)t] += d->correct[i];
    }
    if (count_participants(d, dim_of, out, err) != 0) goto fail;

    curve_finish(&out->overall, ones, n_trials, seed, 0, n_boot, level, scratch);
    for (int j = 0; j < n_dims; j++)
        curve_finish(&out->by_dim[j], ones + (size_t)(1 + j) * (size_t)n_trials, n_trials, seed,
                     (uint64_t)(dims[j] + 1) << 32, n_boot, level, scratch);
    rc = 0;
    goto done;
oom:
    ml_errf(err, "human curves: out of memory for max_trial=%d and %d dimensions", max_trial,
            n_dims);
fail:
    ml_human_curves_free(out);
done:
    free(dims);
    free(dim_of);
    free(ones);
    free(scratch);
    return rc;
}

/* A JSON array of values[t], null where n[t] == 0 (JSON has no NaN). */
static json_t *values_json(const double *values, const int64_t *n, int n_trials) {
    json_t *a = json_array();
    for (int t = 0; a && t < n_trials; t++)
        json_array_append_new(a, n[t] > 0 && isfinite(values[t]) ? json_real(values[t])
                                                                  : json_null());
    return a;
}

json_t *ml_human_curve_json(const ml_human_curve *c, int n_trials) {
    json_t *counts = json_array();
    for (int t = 0; counts && t < n_trials; t++)
        json_array_append_new(counts, json_integer((json_int_t)c->n[t]));
    return json_pack("{s:o,s:o,s:o,s:o}", "p_correct", values_json(c->p_correct, c->n, n_trials),
                     "ci_low", values_json(c->ci_low, c->n, n_trials), "ci_high",
                     values_json(c->ci_high, c->n, n_trials), "n", counts);
}

json_t *ml_human_curves_json(const ml_human_curves *c) {
    json_t *dims = json_array();
    for (int j = 0; dims && j < c->n_dims; j++) {
        const ml_human_curve *dc = &c->by_dim[j];
        json_array_append_new(dims, json_pack("{s:i,s:I,s:I,s:o}", "dimension", dc->dimension,
                                              "participants", (json_int_t)dc->participants,
                                              "rows", (json_int_t)dc->rows, "curve",
                                              ml_human_curve_json(dc, c->n_trials)));
    }
    return json_pack("{s:I,s:I,s:i,s:i,s:f,s:I,s:o,s:o}", "participants",
                     (json_int_t)c->overall.participants, "rows", (json_int_t)c->overall.rows,
                     "max_trial", c->max_trial, "n_boot", c->n_boot, "level", c->level, "seed",
                     (json_int_t)c->seed, "curve", ml_human_curve_json(&c->overall, c->n_trials),
                     "by_dimension", dims);
}
