/* Curves over participants, their participant bootstrap and the split-half noise ceiling
 * (include/metalign/panel.h has the exact recipes). */
#include "metalign/panel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/rng.h"
#include "metalign/stats.h"

void ml_panel_curve_free(ml_panel_curve *c) {
    free(c->n);
    free(c->p_correct);
    free(c->ci_low);
    free(c->ci_high);
    memset(c, 0, sizeof *c);
}

static int curve_alloc(ml_panel_curve *c, int n_trials) {
    memset(c, 0, sizeof *c);
    size_t T = (size_t)n_trials;
    c->n_trials = n_trials;
    c->n = calloc(T ? T : 1, sizeof *c->n);
    c->p_correct = malloc((T ? T : 1) * sizeof *c->p_correct);
    c->ci_low = malloc((T ? T : 1) * sizeof *c->ci_low);
    c->ci_high = malloc((T ? T : 1) * sizeof *c->ci_high);
    if (!c->n || !c->p_correct || !c->ci_low || !c->ci_high) {
        ml_panel_curve_free(c);
        return -1;
    }
    return 0;
}

/* sums[t] / counts[t] of series values over sequences weighted by weight[i] (group-local). */
static void weighted_curve(const ml_panel *p, const double *v, const size_t *seq, size_t n_group,
                           const int *weight, double *sum, double *count) {
    size_t T = (size_t)p->n_trials;
    memset(sum, 0, T * sizeof *sum);
    memset(count, 0, T * sizeof *count);
    for (size_t i = 0; i < n_group; i++) {
        if (!weight[i]) continue;
        double wt = weight[i];
        const uint8_t *has = p->has + seq[i] * T;
        const double *x = v + seq[i] * T;
        for (size_t t = 0; t < T; t++)
            if (has[t]) {
                sum[t] += wt * x[t];
                count[t] += wt;
            }
    }
}

int ml_panel_curves(const ml_panel *p, const size_t *seq, size_t n_group, int n_boot,
                    double level, uint64_t seed, uint64_t stream, ml_panel_curve *out,
                    ml_err *err) {
    size_t T = (size_t)p->n_trials, K = (size_t)p->n_series;
    for (size_t k = 0; k < K; k++) memset(&out[k], 0, sizeof out[k]);
    if (n_boot < 0 || !(level > 0 && level < 100))
        return ml_errf(err, "panel curves: n_boot=%d, level=%g out of range", n_boot, level);
    size_t nb = (size_t)n_boot;
    int *weight = calloc(n_group ? n_group : 1, sizeof *weight);
    double *sum = malloc((T ? T : 1) * sizeof *sum), *count = malloc((T ? T : 1) * sizeof *count);
    /* boot[(k * T + t) * nb + b]: resample b's mean of series k at trial t */
    size_t n_boot_values = K * T * nb;
    double *boot = malloc((n_boot_values ? n_boot_values : 1) * sizeof *boot);
    int rc = (!weight || !sum || !count || !boot) ? -1 : 0;
    for (size_t k = 0; k < K && rc == 0; k++) rc = curve_alloc(&out[k], p->n_trials);
    if (rc) {
        for (size_t k = 0; k < K; k++) ml_panel_curve_free(&out[k]);
        free(weight), free(sum), free(count), free(boot);
        return ml_errf(err, "panel curves: out of memory for %zu trials x %d resamples", T,
                       n_boot);
    }
    for (size_t i = 0; i < n_group; i++) weight[i] = 1;
    for (size_t k = 0; k < K; k++) {
        weighted_curve(p, p->series[k], seq, n_group, weight, sum, count);
        for (size_t t = 0; t < T; t++) {
            out[k].n[t] = (int64_t)count[t];
            out[k].p_correct[t] = count[t] > 0 ? sum[t] / count[t] : NAN;
        }
    }
    ml_rng r;
    ml_rng_seed(&r, seed, stream);
    for (size_t b = 0; b < nb && n_group > 0; b++) {
        memset(weight, 0, n_group * sizeof *weight);
        for (size_t i = 0; i < n_group; i++) weight[ml_rng_below(&r, n_group)]++;
        for (size_t k = 0; k < K; k++) {
            weighted_curve(p, p->series[k], seq, n_group, weight, sum, count);
            for (size_t t = 0; t < T; t++)
                boot[(k * T + t) * nb + b] = count[t] > 0 ? sum[t] / count[t] : NAN;
        }
    }
    double tail = (100.0 - level) / 2.0;
    for (size_t k = 0; k < K; k++)
        for (size_t t = 0; t < T; t++) {
            double *x = boot + (k * T + t) * nb;
            size_t m = 0;
            for (size_t b = 0; b < nb && n_group > 0; b++)
                if (!isnan(x[b])) x[m++] = x[b];
            out[k].ci_low[t] = m ? ml_percentile(x, m, tail) : NAN;
            out[k].ci_high[t] = m ? ml_percentile(x, m, 100.0 - tail) : NAN;
        }
    free(weight);
    free(sum);
    free(count);
    free(boot);
    return 0;
}

/* The curve of half [lo, hi) of perm, as means where count > 0 (NaN elsewhere). */
static void half_curve(const ml_panel *p, const double *v, const size_t *seq, const size_t *perm,
                       size_t lo, size_t hi, double *sum, double *count) {
    size_t T = (size_t)p->n_trials;
    memset(sum, 0, T * sizeof *sum);
    memset(count, 0, T * sizeof *count);
    for (size_t i = lo; i < hi; i++) {
        size_t s = seq[perm[i]];
        const uint8_t *has = p->has + s * T;
        const double *x = v + s * T;
        for (size_t t = 0; t < T; t++)
            if (has[t]) {
                sum[t] += x[t];
                count[t] += 1;
            }
    }
}

int ml_noise_ceiling_compute(const ml_panel *p, int k, const size_t *seq, size_t n_group,
                             int n_splits, uint64_t seed, uint64_t stream, ml_noise_ceiling *out,
                             ml_err *err) {
    out->r = out->ci_low = out->ci_high = NAN;
    out->splits = 0;
    if (n_group < 2 || n_splits < 1) return 0;
    size_t T = (size_t)p->n_trials;
    size_t *perm = malloc(n_group * sizeof *perm);
    double *buf = malloc(6 * (T ? T : 1) * sizeof *buf);
    double *sb = malloc((size_t)n_splits * sizeof *sb);
    if (!perm || !buf || !sb) {
        free(perm), free(buf), free(sb);
        return ml_errf(err, "noise ceiling: out of memory");
    }
    double *sa = buf, *ca = buf + T, *sbm = buf + 2 * T, *cb = buf + 3 * T, *xa = buf + 4 * T,
           *xb = buf + 5 * T;
    ml_rng r;
    ml_rng_seed(&r, seed, stream);
    size_t half = n_group / 2, n_ok = 0;
    for (int s = 0; s < n_splits; s++) {
        for (size_t i = 0; i < n_group; i++) perm[i] = i;
        for (size_t i = n_group - 1; i > 0; i--) {
            size_t j = (size_t)ml_rng_below(&r, i + 1), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        half_curve(p, p->series[k], seq, perm, 0, half, sa, ca);
        half_curve(p, p->series[k], seq, perm, half, n_group, sbm, cb);
        size_t m = 0;
        for (size_t t = 0; t < T; t++)
            if (ca[t] > 0 && cb[t] > 0) {
                xa[m] = sa[t] / ca[t];
                xb[m] = sbm[t] / cb[t];
                m++;
            }
        double rr = ml_pearson(xa, xb, m);
        if (isnan(rr) || rr <= -1) continue;
        sb[n_ok++] = 2 * rr / (1 + rr);
    }
    if (n_ok) {
        double sum = 0;
        for (size_t i = 0; i < n_ok; i++) sum += sb[i];
        out->r = sum / (double)n_ok;
        out->ci_low = ml_percentile(sb, n_ok, 2.5);
        out->ci_high = ml_percentile(sb, n_ok, 97.5);
        out->splits = (int)n_ok;
    }
    free(perm);
    free(buf);
    free(sb);
    return 0;
}

void ml_panel_curve_compare(const ml_panel_curve *a, const ml_panel_curve *b, double *r,
                            double *rmse) {
    size_t T = (size_t)a->n_trials, m = 0;
    double *x = malloc(2 * (T ? T : 1) * sizeof *x);
    if (!x) {
        *r = *rmse = NAN;
        return;
    }
    double *y = x + T;
    for (size_t t = 0; t < T && t < (size_t)b->n_trials; t++)
        if (a->n[t] > 0 && b->n[t] > 0) {
            x[m] = a->p_correct[t];
            y[m] = b->p_correct[t];
            m++;
        }
    *r = ml_pearson(x, y, m);
    *rmse = ml_rmse(x, y, m);
    free(x);
}
