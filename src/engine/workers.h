/* Compute workers: a fixed set of threads that run the heavy work (forward passes, CKA
 * preparation, simulations, downloads) off the HTTP I/O threads. Interactive tasks (a client
 * is waiting on its connection) always go first; background tasks (async jobs) may occupy at
 * most max_background workers at once, so a long job never starves interactive requests. */
/* (The forward pass has a fork-join pool of its own, src/model/pool.h, that splits one call
 * across cores; these workers run whole requests.) */
#ifndef METALIGN_WORKERS_H
#define METALIGN_WORKERS_H

#include "metalign/err.h"

typedef enum ml_task_class { ML_TASK_INTERACTIVE, ML_TASK_BACKGROUND } ml_task_class;

/* worker is the per-thread context made by init (e.g. its forward-pass workspace). */
typedef void (*ml_task_fn)(void *arg, void *worker);

typedef struct ml_workers ml_workers;

typedef struct ml_workers_options {
    int n_workers;
    int max_background; /* background tasks running at once (>= 1, <= n_workers) */
    int queue_cap;      /* queued tasks of each class beyond which submit fails */
    void *(*init)(void *app, int id); /* per-worker context, made in the worker thread */
    void (*fini)(void *worker);
    void *app;
} ml_workers_options;

ml_workers *ml_workers_new(const ml_workers_options *opt, ml_err *err);
/* Queues fn(arg, worker); -1 when the queue of that class is full (nothing queued). */
int ml_workers_submit(ml_workers *w, ml_task_class cls, ml_task_fn fn, void *arg);
/* Tasks queued or running, by class. */
void ml_workers_load(ml_workers *w, int *interactive, int *background);
/* Runs what is queued, then joins the threads. */
void ml_workers_free(ml_workers *w);

#endif
