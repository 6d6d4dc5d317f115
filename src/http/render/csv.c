#include "http/render/csv.h"

#include <math.h>
#include <stdio.h>

static const char *const curve_columns[] = {"model", "dimension", "trial", "p_correct",
                                            "ci_low", "ci_high", "n", NULL};
static const char *const trial_columns[] = {"dimension", "trial", "correct", "participant",
                                            "model", NULL};
static const char *const summary_columns[] = {"model", "dimension", "mean_p_correct", "ci_low",
                                              "ci_high", "n", NULL};

static void dimension_field(ml_csv *c, int dimension) {
    if (dimension < 0)
        ml_csv_empty(c);
    else
        ml_csv_int(c, dimension);
}

void ml_csv_curves_begin(ml_csv *c, ml_buf *out) { ml_csv_init(c, out, curve_columns); }

void ml_csv_curve(ml_csv *c, const char *side, int dimension, const ml_curve *curve,
                  int n_trials) {
    if (n_trials > curve->n_trials) n_trials = curve->n_trials;
    for (int t = 0; t < n_trials; t++) {
        ml_csv_string(c, side);
        dimension_field(c, dimension);
        ml_csv_int(c, t);
        ml_csv_double(c, curve->n[t] > 0 ? curve->p_correct[t] : NAN);
        ml_csv_double(c, curve->n[t] > 0 ? curve->ci_low[t] : NAN);
        ml_csv_double(c, curve->n[t] > 0 ? curve->ci_high[t] : NAN);
        ml_csv_int(c, curve->n[t]);
        ml_csv_row_end(c);
    }
}

void ml_csv_sim_curves(ml_csv *c, const ml_sim_curves *curves, int seq_len) {
    ml_csv_curve(c, ML_SIDE_MODEL, -1, &curves->overall.curve, seq_len);
    for (int g = 0; g < curves->n_groups; g++)
        if (curves->by_dim[g].episodes > 0)
            ml_csv_curve(c, ML_SIDE_MODEL, curves->by_dim[g].dimension, &curves->by_dim[g].curve,
                         seq_len);
}

void ml_csv_human_curves(ml_csv *c, const ml_human_curves *h) {
    ml_csv_curve(c, ML_SIDE_HUMAN, -1, &h->overall.curve, h->n_trials);
    for (int j = 0; j < h->n_dims; j++)
        ml_csv_curve(c, ML_SIDE_HUMAN, h->by_dim[j].dimension, &h->by_dim[j].curve, h->n_trials);
}

void ml_csv_comparison(ml_csv *c, const ml_comparison *cmp) {
    const ml_compare_group *all = &cmp->overall;
    ml_csv_curve(c, ML_SIDE_MODEL, -1, all->model, cmp->n_trials);
    for (int i = 0; i < cmp->n_groups; i++)
        ml_csv_curve(c, ML_SIDE_MODEL, cmp->by_dim[i].dimension, cmp->by_dim[i].model,
                     cmp->n_trials);
    ml_csv_curve(c, ML_SIDE_HUMAN, -1, all->human, cmp->n_trials);
    for (int i = 0; i < cmp->n_groups; i++)
        ml_csv_curve(c, ML_SIDE_HUMAN, cmp->by_dim[i].dimension, cmp->by_dim[i].human,
                     cmp->n_trials);
}

void ml_csv_trials_begin(ml_csv *c, ml_buf *out) { ml_csv_init(c, out, trial_columns); }

void ml_csv_trial_row(ml_csv *c, int dimension, int trial, int correct, const char *participant,
                      const char *side) {
    ml_csv_int(c, dimension);
    ml_csv_int(c, trial);
    ml_csv_int(c, correct);
    ml_csv_string(c, participant);
    ml_csv_string(c, side);
    ml_csv_row_end(c);
}

void ml_csv_trials_model(ml_csv *c, const ml_sim_result *res) {
    char episode[24];
    for (int e = 0; e < res->episodes && !c->bad; e++) {
        snprintf(episode, sizeof episode, "%d", e);
        for (int t = 0; t < res->seq_len; t++)
            ml_csv_trial_row(c, res->dim[e], t,
                             res->correct[(size_t)e * (size_t)res->seq_len + (size_t)t], episode,
                             ML_SIDE_MODEL);
    }
}

static int has_dim(const int *dims, int n, int d) {
    for (int i = 0; i < n; i++)
        if (dims[i] == d) return 1;
    return 0;
}

void ml_csv_trials_human(ml_csv *c, const ml_human_data *d, int max_trial, const int *dims,
                         int n_dims) {
    for (size_t i = 0; i < d->n_rows && !c->bad; i++) {
        if (d->trial[i] > max_trial) continue;
        if (dims && !has_dim(dims, n_dims, d->dimension[i])) continue;
        ml_csv_trial_row(c, d->dimension[i], d->trial[i], d->correct[i],
                         ml_human_participant_name(d, d->participant[i]), ML_SIDE_HUMAN);
    }
}

static void summary_row(ml_csv *c, const char *side, int dimension, const ml_bar *m) {
    ml_csv_string(c, side);
    dimension_field(c, dimension);
    ml_csv_double(c, m->mean);
    ml_csv_double(c, m->ci_low);
    ml_csv_double(c, m->ci_high);
    ml_csv_int(c, m->n);
    ml_csv_row_end(c);
}

void ml_csv_comparison_summary(ml_csv *c, ml_buf *out, const ml_comparison *cmp) {
    ml_csv_init(c, out, summary_columns);
    summary_row(c, ML_SIDE_MODEL, -1, &cmp->overall.model_bar);
    for (int i = 0; i < cmp->n_groups; i++)
        summary_row(c, ML_SIDE_MODEL, cmp->by_dim[i].dimension, &cmp->by_dim[i].model_bar);
    summary_row(c, ML_SIDE_HUMAN, -1, &cmp->overall.human_bar);
    for (int i = 0; i < cmp->n_groups; i++)
        summary_row(c, ML_SIDE_HUMAN, cmp->by_dim[i].dimension, &cmp->by_dim[i].human_bar);
}
