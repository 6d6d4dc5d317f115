#include "engine/compare.h"

#include <stdlib.h>
#include <string.h>

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
