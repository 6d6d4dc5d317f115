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

void ml_human_curves_free(ml_human_curves *c) {
    ml_curve_free(&c->overall.curve);
    for (int i = 0; i < c->n_dims; i++) ml_curve_free(&c->by_dim[i].curve);
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

/* p(correct) and the bootstrap interval at every trial of c, from ones[t] of n[t]. */
static void curve_finish(ml_human_curve *c, const int64_t *ones, const int64_t *n, int n_trials,
                         uint64_t seed, uint64_t stream_base, int n_boot, double *scratch) {
    for (int t = 0; t < n_trials; t++) {
        ml_rng r;
        ml_rng_seed(&r, seed, stream_base | (uint64_t)t);
        ml_curve_set(&c->curve, t, ones[t], n[t], n_boot, &r, scratch);
    }
}

int ml_human_curves_compute(const ml_human_data *d, int max_trial, uint64_t seed, int n_boot,
                            ml_human_curves *out, ml_err *err) {
    memset(out, 0, sizeof *out);
    if (max_trial < 0 || max_trial > ML_HUMAN_MAX_TRIAL_LIMIT)
        return ml_errf(err, "max_trial=%d is out of range: use 0..%d", max_trial,
                       ML_HUMAN_MAX_TRIAL_LIMIT);
    if (n_boot < 0 || n_boot > ML_N_BOOT_MAX)
        return ml_errf(err, "n_boot=%d is out of range: use 0..%d", n_boot, ML_N_BOOT_MAX);
    int n_trials = max_trial + 1;
    out->max_trial = max_trial;
    out->n_trials = n_trials;
    out->seed = seed;
    out->n_boot = n_boot;

    int32_t *dims = NULL;
    int n_dims = 0;
    if (distinct_dimensions(d, max_trial, &dims, &n_dims, err) != 0) return -1;

    int rc = -1;
    int *dim_of = malloc((d->n_rows ? d->n_rows : 1) * sizeof *dim_of);
    int64_t *ones = calloc((size_t)(n_dims + 1) * (size_t)n_trials, sizeof *ones);
    int64_t *rows = calloc((size_t)(n_dims + 1) * (size_t)n_trials, sizeof *rows);
    double *scratch = malloc((size_t)(n_boot > 0 ? n_boot : 1) * sizeof *scratch);
    out->by_dim = calloc(n_dims ? (size_t)n_dims : 1, sizeof *out->by_dim);
    out->overall.dimension = -1;
    if (!dim_of || !ones || !rows || !scratch || !out->by_dim ||
        ml_curve_alloc(&out->overall.curve, n_trials) != 0)
        goto oom;
    for (int j = 0; j < n_dims; j++) {
        out->by_dim[j].dimension = dims[j];
        if (ml_curve_alloc(&out->by_dim[j].curve, n_trials) != 0) goto oom;
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
        size_t at = (size_t)(1 + j) * (size_t)n_trials + (size_t)t;
        rows[t]++;
        out->overall.rows++;
        ones[t] += d->correct[i];
        rows[at]++;
        out->by_dim[j].rows++;
        ones[at] += d->correct[i];
    }
    if (count_participants(d, dim_of, out, err) != 0) goto fail;

    curve_finish(&out->overall, ones, rows, n_trials, seed, 0, n_boot, scratch);
    for (int j = 0; j < n_dims; j++) {
        size_t at = (size_t)(1 + j) * (size_t)n_trials;
        curve_finish(&out->by_dim[j], ones + at, rows + at, n_trials, seed,
                     (uint64_t)(dims[j] + 1) << 32, n_boot, scratch);
    }
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
    free(rows);
    free(scratch);
    return rc;
}
