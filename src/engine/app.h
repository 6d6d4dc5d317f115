/* The running world: configuration, model, data, the caches derived from them, the compute
 * workers, jobs, metrics and the human-data store. Built once; the model and data are
 * read-only after loading, and everything derived from them is computed once, on first use,
 * and kept. Callers ask the app ("are the activations ready?") rather than reach into it. */
#ifndef METALIGN_ENGINE_APP_H
#define METALIGN_ENGINE_APP_H

#include <pthread.h>
#include <time.h>

#include "config.h"
#include "engine/cka_cache.h"
#include "engine/coalesce.h"
#include "engine/jobs.h"
#include "engine/metrics.h"
#include "engine/workers.h"
#include "metalign/dataset.h"
#include "metalign/model.h"
#include "metalign/replay.h"
#include "metalign/runner.h"
#include "metalign/simulate.h"
#include "util/lru.h"
#include "util/once.h"

/* Which features the model is fed. */
typedef enum ml_inputs { ML_INPUTS_RAW, ML_INPUTS_STANDARDIZED, ML_N_INPUTS } ml_inputs;

#define ML_APP_BATCH_ROWS 4096     /* rows per forward call: one workspace's size */
#define ML_APP_MAX_SEQ_ROPE 4096   /* RoPE has no limit of its own; the workspace has */
#define ML_RESULT_CACHE_ENTRIES 256 /* the byte bound is --result-cache-bytes */
#define ML_JOBS_KEPT 256           /* finished jobs remembered */
#define ML_WORKER_QUEUE 256        /* queued tasks per class */

/* Activations of every item as its own length-1 sequence (the notebook's CKA setting). */
typedef struct ml_item_acts {
    int n_outputs;  /* one per ml_model_num_outputs */
    int n_items;
    int hidden;     /* W (ml_model_width) */
    int logit_dims; /* K (ml_model_logit_dims) */
    float **outs;   /* n_outputs arrays of (n_items, W) */
    float *logits;  /* (n_items, K) */
    float *magnitudes; /* (n_items, K) the later generation's magnitude head; else NULL */
} ml_item_acts;

typedef struct ml_app ml_app;

/* A compute worker's context. The runners (forward-pass workspaces) are the app's, lent to
 * whichever worker runs a model request (ml_app_simulate, ...). */
typedef struct ml_worker {
    int id;
    ml_app *app;
} ml_worker;

/* The app's idle runners, the most recently used on top: consecutive heavy requests run on
 * the one hot workspace (its pages resident, its GEMM primitives made) whichever worker takes
 * them, and a second workspace is made only when two requests run at once. */
typedef struct ml_runner_stack {
    pthread_mutex_t mu;
    ml_runner **idle;
    int n_idle, cap;
    int made;
} ml_runner_stack;

struct ml_app {
    const ml_config *cfg;
    ml_model model;
    ml_dataset data;
    int threads;          /* compute threads in use */
    int max_seq;          /* longest sequence a request may ask for */
    int batch_rows;       /* rows per forward call, a runner's workspace (ML_APP_BATCH_ROWS;
                           * tests lower it to exercise batching) */
    time_t started_at;
    int ready;            /* atomic: model and data loaded, workers running */
    int stopping;         /* atomic: a shutdown has begun */

    ml_metrics *metrics;  /* owned; from ml_app_init */
    ml_coalesce *coalesce; /* computations in progress, by result key; from ml_app_init */
    ml_workers *workers;  /* the rest from ml_app_start */
    ml_jobs *jobs;
    ml_lru *results;      /* rendered answers and computed results, by canonical request, and
                           * finished jobs' results (pinned): one budget */
    struct ml_human *human; /* the human data: fetched on demand, cached on disk */
    void *transport;      /* the HTTP server serving this app (opaque here; for /metrics) */
    struct ml_shared *shared; /* with --redis: what replicas share (engine/shared.h), else NULL */
    /* Renders a merged learning-curves result as a single daemon answers (the scale-out's
     * merge); set by the http layer after ml_app_init, used from ml_app_start on. */
    struct ml_blob *(*render_curves)(struct ml_app *app, const ml_sim_request *rq,
                                     ml_sim_result *res, ml_err *err);

    /* The items' encodings and the first runner are made at start-up (ml_app_start), the
     * rest once, on first use (app.c). */
    ml_once emb_once;
    float *item_emb[ML_N_INPUTS]; /* (n_items, C): features through the embedding */
    ml_runner_stack runners;
    ml_once acts_once[ML_N_INPUTS];
    ml_item_acts acts[ML_N_INPUTS];
    ml_cka_cache *cka;
};

/* The world before anything is loaded, enough to serve /healthz, /readyz and /metrics while
 * loading: the configuration, the compute thread count, metrics labelled by the caller's
 * route names (NULL: none), the table of computations in progress. */
int ml_app_init(ml_app *app, const ml_config *cfg, const char *const *route_names, int n_routes,
                ml_err *err);
/* The daemon's: gives OpenBLAS its thread count and its threads, being compute threads, a
 * lower priority; call before the HTTP threads exist (they keep the caller's). */
void ml_app_take_threads(ml_app *app);
/* Loads model and data as the configuration says; err names the file and the problem. */
int ml_app_load_data(ml_app *app, ml_err *err);
/* ml_app_init without metrics, then ml_app_load_data: model and data for a tool or a test. */
int ml_app_load(ml_app *app, const ml_config *cfg, ml_err *err);
/* Starts caches, jobs, the human store and the workers after a successful load; then the
 * app is ready. */
int ml_app_start(ml_app *app, ml_err *err);
int ml_app_is_ready(const ml_app *app);
/* A shutdown begins: /readyz turns 503, new heavy work is refused, jobs are cancelled and a
 * running download is abandoned. */
void ml_app_begin_shutdown(ml_app *app);
int ml_app_is_stopping(const ml_app *app);
/* The shutdown's last step: the running download is abandoned too. */
void ml_app_cancel_work(ml_app *app);
void ml_app_free(ml_app *app);

/* Frees a worker context the caller made (the compute workers free their own). */
void ml_app_worker_free(ml_worker *w);
/* A runner for one request, the items' encodings made first if they are not yet: the most
 * recently released runner (hot), else a new one. Give it back with ml_app_runner_release
 * when the request is done with it. */
ml_runner *ml_app_runner_acquire(ml_app *app, ml_err *err);
void ml_app_runner_release(ml_app *app, ml_runner *r);
/* Runners made so far (the first at start-up; more only for overlapping requests). */
int ml_app_runners_made(ml_app *app);
/* ml_runner_run on the worker's runner. */
int ml_app_run_items(ml_app *app, ml_worker *w, const int *items, const int *labels, int B, int S,
                     int standardize, float **outs, float *logits, ml_err *err);
/* ml_runner_forward on the worker's runner (either generation; feedback as it says). */
int ml_app_forward_items(ml_app *app, ml_worker *w, const int *items, const float *feedback,
                         int B, int S, int standardize, float **outs, float *logits,
                         float *magnitudes, ml_err *err);

/* The all-item activations (computed once per kind of input), and whether they are. */
int ml_app_acts_ready(ml_app *app, ml_inputs in);
const ml_item_acts *ml_app_item_acts(ml_app *app, ml_worker *w, ml_inputs in, ml_err *err);

/* The CKA cache, prepared from the raw all-item activations (the notebook's setting). */
int ml_app_cka_ready(ml_app *app);
ml_cka_cache *ml_app_cka(ml_app *app, ml_worker *w, ml_err *err);
int ml_app_cka_matrices_ready(ml_app *app);
ml_cka_cache *ml_app_cka_matrices(ml_app *app, ml_worker *w, ml_err *err);

/* ml_simulate on the worker's runner, counted in the metrics. */
int ml_app_simulate(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                    const ml_sim_hooks *hooks, ml_sim_result *res, ml_err *err);

/* ml_replay_run on the worker's runner, the baseline's fits on the app's compute threads. */
int ml_app_replay(ml_app *app, ml_worker *w, const ml_human_data *h, const ml_replay_request *rq,
                  const ml_replay_hooks *hooks, ml_replay_result *res, ml_replay_code *code,
                  ml_err *err);

/* Name of CKA representation i: "backbone", then the model's output names. */
const char *ml_app_rep_name(const ml_app *app, int i, char *buf, size_t len);

#endif
