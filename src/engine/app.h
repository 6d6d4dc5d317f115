/* The loaded world and everything the handlers share: configuration, model, data, caches,
 * workers, jobs and metrics. Built once at start-up; the model and data are read-only after
 * that, and everything derived from them is computed once, on first use, and kept. */
#ifndef METALIGN_APP_H
#define METALIGN_APP_H

#include <time.h>

#include "util/lru.h"
#include "engine/cka_cache.h"
#include "config.h"
#include "metalign/dataset.h"
#include "engine/jobs.h"
#include "engine/metrics.h"
#include "metalign/model.h"
#include "util/once.h"
#include "engine/workers.h"

/* Activations of every item as its own length-1 sequence (the notebook's CKA setting). */
typedef struct ml_item_acts {
    int n_outputs;  /* embedding + one per block */
    int n_items;
    int hidden;     /* C */
    float **outs;   /* n_outputs arrays of (n_items, C) */
    float *logits;  /* (n_items) */
} ml_item_acts;

/* Per compute-worker context: its forward-pass workspace, allocated on first use. */
typedef struct ml_worker {
    int id;
    ml_workspace *ws;
    float *inp;     /* (ws_rows, In) input scratch */
    float *h0;      /* (ws_rows, C) embedding scratch */
} ml_worker;

typedef struct ml_app {
    const ml_config *cfg;
    ml_model model;
    ml_dataset data;
    int threads;          /* compute threads in use */
    int batch_rows;       /* rows per forward call (workspace size) */
    int max_seq;          /* longest sequence a request may ask for */
    time_t started_at;
    int ready;            /* atomic: model and data loaded */

    ml_metrics *metrics;  /* made by the server (it knows the routes), freed with the app */
    ml_workers *workers;
    ml_jobs *jobs;
    ml_lru *results;      /* serialised answers of heavy requests, by canonical request */
    struct ml_human *human; /* the human data: fetched on demand, cached on disk */

    /* Derived once, on first use (see app.c). */
    ml_once acts_once[2]; /* [0] raw inputs, [1] standardised */
    ml_item_acts acts[2];
    ml_once emb_once;
    float *item_emb[2];   /* (n_items, C): features through the embedding, raw / standardised */
    ml_cka_cache *cka;
} ml_app;

/* Loads model and data as the configuration says; err names the file and the problem. */
int ml_app_load(ml_app *app, const ml_config *cfg, ml_err *err);
/* Starts workers and caches (after a successful load). */
int ml_app_start(ml_app *app, ml_err *err);
void ml_app_free(ml_app *app);

/* Worker thread hooks (ml_workers_options.init / fini). */
void *ml_app_worker_init(void *app, int id);
void ml_app_worker_fini(void *worker);
/* The worker's workspace, allocating it on first use. */
int ml_app_worker_ready(ml_app *app, ml_worker *w, ml_err *err);

/* All-item activations (standardised or raw inputs), computed once. */
const ml_item_acts *ml_app_item_acts(ml_app *app, ml_worker *w, int standardize, ml_err *err);
/* Per-item embeddings, computed once. */
const float *ml_app_item_embeddings(ml_app *app, int standardize, ml_err *err);

/* Runs B sequences given as item indices (B, S) and labels (B, S) (labels may be NULL for
 * S == 1) through the model in worker-sized batches; outs as in ml_forward (each (B, S, C)
 * or NULL), logits (B, S) or NULL. */
int ml_app_run_items(ml_app *app, ml_worker *w, const int *items, const int *labels, int B, int S,
                     int standardize, float **outs, float *logits, ml_err *err);

#endif
