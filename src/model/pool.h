/* A tiny fork-join thread pool for the non-GEMM parts of the forward pass (internal to
 * src/model/). Workers sleep on a condition variable between jobs, so they never compete with
 * OpenBLAS's own threads while a GEMM runs. With the oneDNN back end it has no threads of its
 * own: jobs run on the OpenMP team oneDNN's GEMMs run on (ml_pool_new's openmp).
 *
 * Why a second pool beside the engine's compute workers (engine/workers.h): those run whole
 * requests, one per worker, and queue them by class; this one splits one forward call's
 * layernorms and attention across the cores that call's GEMMs use, and lives inside one
 * workspace, so a forward pass is parallel without knowing about requests. */
#ifndef METALIGN_MODEL_POOL_H
#define METALIGN_MODEL_POOL_H

#include "metalign/err.h"

/* Processes items [begin, end) of a job; tid (0 = the caller, 1..n_threads-1 the workers)
 * lets a job give each thread its own scratch memory. */
typedef void (*ml_par_fn)(void *ctx, long begin, long end, int tid);

typedef struct ml_pool ml_pool;

/* A pool of n_threads - 1 workers (the caller is the n-th thread). openmp (builds with
 * OpenMP, i.e. the oneDNN back end): no threads of its own; each job runs on the calling
 * thread's OpenMP team, the threads oneDNN's GEMMs run on. */
ml_pool *ml_pool_new(int n_threads, int openmp, ml_err *err);
void ml_pool_free(ml_pool *p);
int ml_pool_size(const ml_pool *p); /* n_threads */

/* Runs fn over [0, n) in chunks of `grain` items on up to n_threads threads (the caller
 * included) and returns when all are done. One caller at a time. */
void ml_pool_for(ml_pool *p, int n_threads, long n, long grain, ml_par_fn fn, void *ctx);

#endif
