/* Simulated learning curves (MODEL.md section 4): the model plays the category-learning task
 * on sampled episodes, all episodes of a forward call going through each GEMM together, and
 * the outcomes are aggregated into p(correct) per trial with bootstrap intervals.
 *
 * Same request, same answer: episode e draws only from the stream (seed, e) (episodes.h), and
 * the intervals draw from streams of their own (ml_sim_curves below), so the episodes, the
 * correct flags and the curves depend neither on batching nor on threads nor on the machine.
 * The logits' last bits may: a GEMM's rounding can depend on how many rows a call has and on
 * how threads split them, so the loss can differ in its last digits between daemons of other
 * --threads (or runners of other max_rows). The scale-out keeps both fixed to give the same
 * bits (docs/SCALEOUT.md). */
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
/* Replaces rq->dims with a copy of dims (n values). */
int ml_sim_set_dims(ml_sim_request *rq, const int *dims, int n);
int ml_sim_request_copy(ml_sim_request *dst, const ml_sim_request *src);
void ml_sim_request_free(ml_sim_request *rq);

/* Raw outcome: per episode and trial. */
typedef struct ml_sim_result {
    int episodes, seq_len;
    int *dim;               /* (E) */
    int *items;             /* (E, S) */
    int *labels;            /* (E, S) */
    float *logits;          /* (E, S) */
    unsigned char *correct; /* (E, S) */
    double loss;            /* the notebook's: mean over batches of the batch-mean BCE */
    double accuracy;
} ml_sim_result;

/* Progress and cancellation hooks (may be NULL): progress(ctx, episodes done) after every
 * forward call; cancelled(ctx) is polled before each call and stops the run. */
typedef struct ml_sim_hooks {
    void (*progress)(void *ctx, int done);
    int (*cancelled)(void *ctx);
    void *ctx;
} ml_sim_hooks;

/* Checks rq against the runner's model and data (dims, seq_len, sizes); 0 or -1 with err. */
int ml_sim_check(const ml_runner *r, const ml_sim_request *rq, ml_err *err);
/* Runs the simulation; 0, -1 with err, or 1 when cancelled. */
int ml_simulate(ml_runner *r, const ml_sim_request *rq, const ml_sim_hooks *hooks,
                ml_sim_result *res, ml_err *err);
void ml_sim_result_free(ml_sim_result *res);

/* The pieces of ml_simulate, for running an episode range somewhere else and merging it
 * (the scale-out's chunks, src/engine/chunks.c). Episode e depends only on (seed, e), and its
 * logits not on the batch it ran in, so ranges computed anywhere and put side by side give
 * the bits ml_simulate gives; ml_sim_finish then scores them with the same code.
 *
 * Allocates res for episodes x seq_len trials (every array uninitialised); 0 or -1. */
int ml_sim_result_alloc(ml_sim_result *res, int episodes, int seq_len);
/* Episodes [e0, e0 + n) of rq (checked with ml_sim_check): their dims into dim (n) and
 * their items and labels into items/labels (n, S), row 0 being episode e0. */
int ml_sim_sample_range(const ml_dataset *d, const ml_sim_request *rq, int e0, int n, int *dim,
                        int *items, int *labels, ml_err *err);
/* The same, plus the logits (n, S) from the model; hooks as ml_simulate's, progress counting
 * episodes done within the range. 0, -1 with err, or 1 when cancelled. */
int ml_sim_run_range(ml_runner *r, const ml_sim_request *rq, int e0, int n,
                     const ml_sim_hooks *hooks, int *dim, int *items, int *labels, float *logits,
                     ml_err *err);
/* Scores a filled result (dim, items, labels, logits of every episode): correct, loss and
 * accuracy; -1 with err when the loss is not finite. */
int ml_sim_finish(const ml_sim_request *rq, ml_sim_result *res, ml_err *err);

/* The probability the model gives label 1 at a trial, in float32 as torch computes it. */
float ml_sim_probability(float logit);

/* One group of episodes (all, or those of one dimension) aggregated per trial. */
typedef struct ml_sim_group {
    int dimension;        /* -1 for all episodes */
    int episodes;
    double accuracy;      /* NaN without episodes */
    ml_curve curve;       /* n: episodes at each trial */
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
