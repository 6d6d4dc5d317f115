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

/* A side's mean p(correct) over single trials and its interval: the notebook's bar plot
 * (seaborn's barplot averages the rows and bootstraps them). */
typedef struct ml_bar {
    double mean, ci_low, ci_high; /* NaN without trials; bounds NaN without resamples */
    int64_t n;                    /* trials behind the mean */
} ml_bar;

/* One side-by-side group. The curves are the model's and the humans' own (not copies). */
typedef struct ml_compare_group {
    int dimension;                 /* -1 overall */
    const ml_curve *model;
    const ml_curve *human;
    int model_episodes;
    size_t human_participants;
    ml_curve_comparison summary;   /* over the first n_trials trials */
    ml_bar model_bar, human_bar;   /* set by ml_compare_bars */
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

/* Fills every group's bars: the trials of its first n_trials trials pooled, the interval a
 * percentile bootstrap of n_boot resamples at ML_CI_LEVEL (stats.h ml_proportion_ci), drawn
 * from the stream (seed, ML_COMPARE_STREAM_BARS + side * 2^20 + dimension + 1), side 0 the
 * model and 1 the humans, dimension -1 overall: streams no episode or curve interval uses. */
#define ML_COMPARE_STREAM_BARS (1ull << 41)
int ml_compare_bars(ml_comparison *c, int n_boot, uint64_t seed, ml_err *err);

#endif
