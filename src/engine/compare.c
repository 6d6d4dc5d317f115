#include "engine/compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/stats.h"

int ml_compare_dims(const ml_human_curves *h, int K, int **dims, int *n_dims, int *n_missing,
                    ml_err *err) {
    int *v = malloc(sizeof(int) * (size_t)(h->n_dims > 0 ? h->n_dims : 1));
    if (!v) return ml_errf(err, "out of memory");
    int n = 0, missing = 0;
    for (int i = 0; i < h->n_dims; i++) {
        if (h->by_dim[i].dimension < K)
            v[n++] = h->by_dim[i].dimension;
        else
            missing++;
    }
    *dims = v;
    *n_dims = n;
    *n_missing = missing;
    return 0;
}

static void group(ml_compare_group *g, int dimension, const ml_sim_group *m,
                  const ml_human_curve *h, int n_trials) {
    g->dimension = dimension;
    g->model = &m->curve;
    g->human = &h->curve;
    g->model_episodes = m->episodes;
    g->human_participants = h->participants;
    ml_curve_compare(&m->curve, &h->curve, n_trials, &g->summary);
}

int ml_compare(const ml_sim_curves *m, double model_accuracy, const ml_human_curves *h,
               int n_trials, ml_comparison *out, ml_err *err) {
    memset(out, 0, sizeof *out);
    /* Compare on the trials both sides have: a model run longer than the humans' experiment
     * must not average over trials the humans never saw. */
    if (n_trials > m->overall.curve.n_trials) n_trials = m->overall.curve.n_trials;
    if (n_trials > h->n_trials) n_trials = h->n_trials;
    /* the humans' experiment ends at its last trial with an observation (a max_trial past it
     * only adds empty trials to their side) */
    while (n_trials > 0 && h->overall.curve.n[n_trials - 1] == 0) n_trials--;
    out->n_trials = n_trials;
    out->model_accuracy = model_accuracy;
    out->by_dim = calloc((size_t)(m->n_groups > 0 ? m->n_groups : 1), sizeof *out->by_dim);
    if (!out->by_dim) return ml_errf(err, "out of memory");
    group(&out->overall, -1, &m->overall, &h->overall, n_trials);
    for (int i = 0; i < m->n_groups; i++) {
        const ml_sim_group *mg = &m->by_dim[i];
        const ml_human_curve *hg = NULL;
        for (int k = 0; k < h->n_dims && !hg; k++)
            if (h->by_dim[k].dimension == mg->dimension) hg = &h->by_dim[k];
        if (!hg || mg->episodes == 0) continue;
        group(&out->by_dim[out->n_groups++], mg->dimension, mg, hg, n_trials);
    }
    return 0;
}

void ml_comparison_free(ml_comparison *c) {
    free(c->by_dim);
    memset(c, 0, sizeof *c);
}

static void bar(const ml_curve *c, int n_trials, int n_boot, uint64_t seed, uint64_t stream,
                double *scratch, ml_bar *out) {
    int64_t k = 0, n = 0;
    for (int t = 0; t < n_trials && t < c->n_trials; t++) {
        if (c->n[t] <= 0) continue;
        k += (int64_t)llround(c->p_correct[t] * (double)c->n[t]);
        n += c->n[t];
    }
    ml_rng r;
    ml_rng_seed(&r, seed, stream);
    out->n = n;
    ml_proportion_ci((size_t)k, (size_t)n, n_boot, ML_CI_LEVEL, &r, scratch, &out->mean,
                     &out->ci_low, &out->ci_high);
}

static void group_bars(ml_compare_group *g, int n_trials, int n_boot, uint64_t seed,
                       double *scratch) {
    uint64_t base = ML_COMPARE_STREAM_BARS + (uint64_t)(g->dimension + 1);
    bar(g->model, n_trials, n_boot, seed, base, scratch, &g->model_bar);
    bar(g->human, n_trials, n_boot, seed, base + (1ull << 20), scratch, &g->human_bar);
}

int ml_compare_bars(ml_comparison *c, int n_boot, uint64_t seed, ml_err *err) {
    double *scratch = malloc(sizeof(double) * (size_t)(n_boot > 0 ? n_boot : 1));
    if (!scratch) return ml_errf(err, "out of memory");
    group_bars(&c->overall, c->n_trials, n_boot, seed, scratch);
    for (int i = 0; i < c->n_groups; i++) group_bars(&c->by_dim[i], c->n_trials, n_boot, seed, scratch);
    free(scratch);
    return 0;
}
