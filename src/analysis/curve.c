#include "metalign/curve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/stats.h"

int ml_curve_alloc(ml_curve *c, int n_trials) {
    memset(c, 0, sizeof *c);
    size_t n = n_trials > 0 ? (size_t)n_trials : 1;
    c->n_trials = n_trials;
    c->n = calloc(n, sizeof *c->n);
    c->p_correct = malloc(n * sizeof *c->p_correct);
    c->ci_low = malloc(n * sizeof *c->ci_low);
    c->ci_high = malloc(n * sizeof *c->ci_high);
    if (!c->n || !c->p_correct || !c->ci_low || !c->ci_high) {
        ml_curve_free(c);
        return -1;
    }
    for (int t = 0; t < n_trials; t++) c->p_correct[t] = c->ci_low[t] = c->ci_high[t] = NAN;
    return 0;
}

void ml_curve_free(ml_curve *c) {
    free(c->n);
    free(c->p_correct);
    free(c->ci_low);
    free(c->ci_high);
    memset(c, 0, sizeof *c);
}

void ml_curve_set(ml_curve *c, int t, int64_t k, int64_t n, int n_boot, ml_rng *r,
                  double *scratch) {
    c->n[t] = n;
    if (n <= 0) {
        c->p_correct[t] = c->ci_low[t] = c->ci_high[t] = NAN;
        return;
    }
    /* sum / count, exactly as pandas' mean of a boolean column */
    c->p_correct[t] = (double)k / (double)n;
    c->ci_low[t] = c->ci_high[t] = NAN;
    if (n_boot >= 1) {
        double mean;
        ml_proportion_ci((size_t)k, (size_t)n, n_boot, ML_CI_LEVEL, r, scratch, &mean,
                         &c->ci_low[t], &c->ci_high[t]);
    }
}

int ml_curve_compare(const ml_curve *a, const ml_curve *b, int n_trials,
                     ml_curve_comparison *out) {
    memset(out, 0, sizeof *out);
    size_t n = n_trials > 0 ? (size_t)n_trials : 1;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return -1;
    }
    double aw = 0, an = 0, bw = 0, bn = 0;
    size_t k = 0;
    for (int t = 0; t < n_trials && t < a->n_trials && t < b->n_trials; t++) {
        int has_a = a->n[t] > 0 && isfinite(a->p_correct[t]);
        int has_b = b->n[t] > 0 && isfinite(b->p_correct[t]);
        if (has_a) {
            aw += a->p_correct[t] * (double)a->n[t];
            an += (double)a->n[t];
        }
        if (has_b) {
            bw += b->p_correct[t] * (double)b->n[t];
            bn += (double)b->n[t];
        }
        if (has_a && has_b) {
            x[k] = a->p_correct[t];
            y[k] = b->p_correct[t];
            k++;
        }
    }
    out->mean_a = an > 0 ? aw / an : NAN;
    out->mean_b = bn > 0 ? bw / bn : NAN;
    out->rmse = k ? ml_rmse(x, y, k) : NAN;
    out->pearson_r = k > 1 ? ml_pearson(x, y, k) : NAN;
    out->trials_compared = (int)k;
    free(x);
    free(y);
    return 0;
}
