/* Simulated learning curves (MODEL.md section 4): the model plays the category-learning task
 * on sampled episodes, all episodes of a batch going through each GEMM together, and the
 * results are aggregated into p(correct) per trial with bootstrap intervals. */
#ifndef METALIGN_SIMULATE_H
#define METALIGN_SIMULATE_H

#include <stdint.h>

#include "engine/app.h"
#include "util/buf.h"

#define ML_SIM_MAX_DIMS 256

typedef struct ml_sim_request {
    int dims[ML_SIM_MAX_DIMS]; /* episode e uses dims[e % n_dims] */
    int n_dims;
    int episodes;
    int seq_len;
    uint64_t seed;
    int standardize;      /* standardised features, as ThingsFunctionLearning feeds them */
    int include_episodes; /* every episode's items, labels, probabilities, correctness */
    int batch_size;       /* the notebook's loss grouping: mean per batch, then of batches */
    int n_boot;           /* bootstrap resamples for the intervals; 0: none */
} ml_sim_request;

/* Raw outcome: per episode and trial. */
typedef struct ml_sim_result {
    int episodes, seq_len;
    int *dim;              /* (E) */
    int *items;            /* (E, S) */
    int *labels;           /* (E, S) */
    float *logits;         /* (E, S) */
    unsigned char *correct;/* (E, S) */
    double loss;           /* the notebook's: mean over batches of the batch-mean BCE */
    double accuracy;
} ml_sim_result;

/* The notebook's defaults: dims [0,1,2], 128 episodes of 100 trials, seed 0, standardised,
 * loss over batches of 64, 1000 bootstrap resamples. */
void ml_sim_defaults(ml_sim_request *rq);
/* A canonical text naming everything that determines the answer (the result cache key). */
void ml_sim_key(const ml_sim_request *rq, char *buf, size_t len);

/* Progress and cancellation hooks (may be NULL): progress(ctx, episodes done); cancelled(ctx)
 * is polled between batches and stops the run (returns 1, err says cancelled). */
typedef struct ml_sim_hooks {
    void (*progress)(void *ctx, int done);
    int (*cancelled)(void *ctx);
    void *ctx;
} ml_sim_hooks;

/* Runs the simulation; 0, -1 with err, or 1 when cancelled. */
int ml_simulate(ml_app *app, ml_worker *w, const ml_sim_request *rq, const ml_sim_hooks *hooks,
                ml_sim_result *res, ml_err *err);
void ml_sim_result_free(ml_sim_result *res);

/* Per-trial aggregate of one group of episodes (all, or one dimension). */
typedef struct ml_curve {
    int n_trials;
    int episodes;
    double accuracy;
    double *p_correct, *ci_low, *ci_high; /* (n_trials) */
} ml_curve;

/* Curve over the episodes whose dimension is dim (-1: all). The interval of trial t draws
 * from the stream (seed, ML_SIM_STREAM_BOOT + ((group + 1) << 20) + t), group being the index
 * of dim among the request's distinct dims (-1 for all), so intervals never share draws with
 * episodes (streams 0 .. episodes - 1) or with each other. */
#define ML_SIM_STREAM_BOOT (1ull << 40)
int ml_sim_curve(const ml_sim_request *rq, const ml_sim_result *res, int dim, int group,
                 ml_curve *c);
void ml_curve_free(ml_curve *c);

/* The JSON answer of POST /v1/learning-curves. Returns -1 if a value is not finite. */
int ml_sim_render(const ml_app *app, const ml_sim_request *rq, const ml_sim_result *res,
                  ml_buf *out);

/* The rendered answer for rq: from the result cache, else simulated, rendered and cached.
 * A new reference, or NULL with err (*rc 1: cancelled, -1: failed). */
ml_blob *ml_sim_answer(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                       const ml_sim_hooks *hooks, int *rc, ml_err *err);

#endif
