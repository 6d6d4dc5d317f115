/* The model's learning curves beside the humans' (GET /v1/compare/learning-curves): the model
 * plays the dimensions the humans saw (those the targets have), and both are compared trial
 * by trial on the trials both have: overall and per dimension, each side's mean p(correct),
 * the RMSE and the Pearson r between the curves. Numbers only: http/ renders them. */
#ifndef METALIGN_ENGINE_COMPARE_H
#define METALIGN_ENGINE_COMPARE_H

#include "metalign/curve.h"
#include "metalign/err.h"
#include "metalign/human_curves.h"
#include "metalign/simulate.h"

/* The dims of the humans' curves that the targets (K columns) have, ascending, into *dims
 * (malloc'd); the rest are counted in *n_missing. */
int ml_compare_dims(const ml_human_curves *h, int K, int **dims, int *n_dims, int *n_missing,
                    ml_err *err);

/* One side-by-side group. The curves are the model's and the humans' own (not copies). */
typedef struct ml_compare_group {
    int dimension;                 /* -1 overall */
    const ml_curve *model;
    const ml_curve *human;
    int model_episodes;
    size_t human_participants;
    ml_curve_comparison summary;   /* over the first n_trials trials */
} ml_compare_group;

typedef struct ml_comparison {
    int n_trials;                  /* trials compared: those both sides have */
    double model_accuracy;         /* over all the model's trials */
    ml_compare_group overall;
    int n_groups;
    ml_compare_group *by_dim;      /* the dims both sides have, in the model's order */
} ml_comparison;

/* Compares the model's curves m (from ml_sim_curves_compute, with accuracy) and the humans'
 * h over their first n_trials trials (clamped to what both have). Both must outlive out. */
int ml_compare(const ml_sim_curves *m, double model_accuracy, const ml_human_curves *h,
               int n_trials, ml_comparison *out, ml_err *err);
void ml_comparison_free(ml_comparison *c);

#endif
