/* Simulated learning curves (MODEL.md section 4): the model plays the category-learning task
 * on sampled episodes, all episodes of a forward call going through each GEMM together, and
 * the outcomes are aggregated into p(correct) per trial with bootstrap intervals.
 *
 * Each generation plays its own task:
 *   - the seed (label feedback): ThingsFunctionLearning episodes (ml_episode_sample), every
 *     episode seq_len trials, trial t fed the one-hot of label t-1;
 *   - the later generation (MODEL.md section 7): FunctionDataset episodes
 *     (ml_fn_episode_sample), no flip, trial t fed magnitude t-1 (y - m); an episode has
 *     L <= seq_len trials (fewer when one side of the median runs out), so trial t of the
 *     curves counts only the episodes longer than t (the curve's n). Beside p(correct), the
 *     magnitude head's squared error per trial and R^2 over all trials. The static linear
 *     model sees no sequence: it takes the same episodes, but every trial is predicted from
 *     its item alone (its curve is flat up to sampling noise: the no-learning baseline).
 *     Which head column scores an episode: column 0 when the model has one (K = 1); with K > 1
 *     columns (static linear, num_dims) column k predicts target dimension k, so an episode of
 *     dimension d is scored on column d (dims must then be < K).
 *   Features are what rq->standardize says; ml_sim_model_defaults sets each generation's own
 *   (the seed's ThingsFunctionLearning standardises, FunctionDataset feeds them raw).
 *
 * Same request, same answer: episode e draws only from the stream (seed, e) (episodes.h), and
 * the intervals draw from streams of their own (ml_sim_curves below), so the answer depends
 * neither on batching nor on threads nor on the machine. */
#ifndef METALIGN_SIMULATE_H
#define METALIGN_SIMULATE_H

#include <stdint.h>

#include "metalign/curve.h"
#include "metalign/err.h"
#include "metalign/runner.h"

#define ML_SIM_MAX_EPISODES 100000
/* episodes x seq_len of one request: about 20 minutes of a seed-size model on 2 cores */
#define ML_SIM_MAX_TRIALS 20000000LL
/* include_episodes answers stay below ~100 MB */
#define ML_SIM_MAX_DETAIL_TRIALS 2000000LL
#define ML_SIM_MAX_BATCH 100000

typedef struct ml_sim_request {
    int *dims;            /* episode e uses dims[e % n_dims]; owned (ml_sim_request_free) */
    int n_dims;
    int episodes;
    int seq_len;
    uint64_t seed;
    int standardize;      /* standardised features, as ThingsFunctionLearning feeds them */
    int include_episodes; /* every episode's items, labels, probabilities, correctness */
    int batch_size;       /* the notebook's loss grouping: mean per batch, then of batches */
    int n_boot;           /* bootstrap resamples for the intervals; 0: none */
} ml_sim_request;

/* The notebook's defaults: dims [0,1,2], 128 episodes of 100 trials, seed 0, standardised,
 * loss over batches of 64, ML_N_BOOT_DEFAULT resamples. 0, or -1 when out of memory. */
int ml_sim_defaults(ml_sim_request *rq);
/* After ml_sim_defaults: the defaults that depend on the model's generation (standardize:
 * 1 for the seed, 0 for the later generation, whose research code feeds raw features). */
void ml_sim_model_defaults(ml_sim_request *rq, const ml_model *m);
/* Replaces rq->dims with a copy of dims (n values). */
int ml_sim_set_dims(ml_sim_request *rq, const int *dims, int n);
int ml_sim_request_copy(ml_sim_request *dst, const ml_sim_request *src);
void ml_sim_request_free(ml_sim_request *rq);

/* Raw outcome: per episode and trial. Trials t >= length[e] of episode e are padding (their
 * values are undefined and never scored). */
typedef struct ml_sim_result {
    int episodes, seq_len;
    int *dim;               /* (E) */
    int *length;            /* (E) trials of each episode (seq_len for the seed) */
    int *items;             /* (E, S) */
    int *labels;            /* (E, S) */
    float *logits;          /* (E, S) the scored head column */
    unsigned char *correct; /* (E, S) */
    double loss;            /* the notebook's: mean over batches of the batch-mean BCE (the
                             * later generation: over the batch's scored trials) */
    double accuracy;        /* over all scored trials */
    long long trials;       /* scored trials: the sum of length */
    /* the later generation only (NULL / NaN for the seed) */
    float *magnitudes;      /* (E, S) each trial's own y - m, fed to the next trial */
    float *pred_magnitudes; /* (E, S) the magnitude head, same column as logits */
    double magnitude_mse;   /* mean squared error over all scored trials */
    double magnitude_r2;    /* 1 - SSE / SST over all scored trials (SST about their mean) */
} ml_sim_result;

/* Progress and cancellation hooks (may be NULL): progress(ctx, episodes done) after every
 * forward call; cancelled(ctx) is polled before each call and stops the run. */
typedef struct ml_sim_hooks {
    void (*progress)(void *ctx, int done);
    int (*cancelled)(void *ctx);
    void *ctx;
} ml_sim_hooks;

/* What rq asks of the model alone: every dim has a head column (models with K > 1 columns);
 * 0 or -1 with err. Part of ml_sim_check. */
int ml_sim_check_model(const ml_model *m, const ml_sim_request *rq, ml_err *err);
/* Checks rq against the runner's model and data (dims, seq_len, sizes); 0 or -1 with err. */
int ml_sim_check(const ml_runner *r, const ml_sim_request *rq, ml_err *err);
/* Runs the simulation; 0, -1 with err, or 1 when cancelled. */
int ml_simulate(ml_runner *r, const ml_sim_request *rq, const ml_sim_hooks *hooks,
                ml_sim_result *res, ml_err *err);
void ml_sim_result_free(ml_sim_result *res);

/* The probability the model gives label 1 at a trial, in float32 as torch computes it. */
float ml_sim_probability(float logit);

/* One group of episodes (all, or those of one dimension) aggregated per trial. */
typedef struct ml_sim_group {
    int dimension;        /* -1 for all episodes */
    int episodes;
    double accuracy;      /* NaN without episodes */
    ml_curve curve;       /* n: episodes at each trial (those that reach it) */
    /* the later generation (res->pred_magnitudes): NULL / NaN for the seed */
    double *mse;          /* (seq_len) squared magnitude error per trial; NaN where n = 0 */
    double r2;            /* R^2 of the magnitudes over the group's scored trials */
} ml_sim_group;

typedef struct ml_sim_curves {
    ml_sim_group overall;
    int n_groups;
    ml_sim_group *by_dim; /* the request's distinct dims, in order of first appearance */
} ml_sim_curves;

/* The interval of trial t of group g draws from the stream
 * (seed, ML_SIM_STREAM_BOOT + ((g + 1) << 20) + t), g being the group's index among the
 * distinct dims (-1 for all), so intervals never share draws with episodes (streams
 * 0 .. episodes - 1) or with each other. */
#define ML_SIM_STREAM_BOOT (1ull << 40)
int ml_sim_curves_compute(const ml_sim_request *rq, const ml_sim_result *res,
                          ml_sim_curves *out, ml_err *err);
void ml_sim_curves_free(ml_sim_curves *c);

#endif
