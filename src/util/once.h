/* Run-once with waiting: the first caller computes, concurrent callers wait for its result,
 * later callers return at once. A failed computation is not remembered, so a later call can
 * retry (e.g. after memory was freed). */
#ifndef METALIGN_ONCE_H
#define METALIGN_ONCE_H

#include <pthread.h>

#include "metalign/err.h"

typedef struct ml_once {
    pthread_mutex_t lock;
    pthread_cond_t done;
    int state; /* 0 not run, 1 running, 2 done */
} ml_once;

#define ML_ONCE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}

void ml_once_init(ml_once *o);
void ml_once_free(ml_once *o);
/* 0 once fn has succeeded (now or before); -1 with err when this call's fn failed. A caller
 * that waited on a run that failed tries fn itself. */
int ml_once_run(ml_once *o, int (*fn)(void *arg, ml_err *err), void *arg, ml_err *err);
/* 1 if fn has succeeded, without waiting. */
int ml_once_done(ml_once *o);

#endif
