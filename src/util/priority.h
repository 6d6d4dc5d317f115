/* CPU priority of the compute threads. On a machine with as many busy compute threads as
 * cores, a light request (/healthz, a cached /v1/cka) competes with them for a core; running
 * the compute threads (job workers, their forward-pass pools, OpenBLAS's threads) a few nice
 * levels below the HTTP threads lets the scheduler hand the light request a core at once,
 * and costs the heavy work nothing when nothing else wants the CPU. Linux nice values are
 * per thread; an unprivileged thread can lower its own priority but never raise it again. */
#ifndef METALIGN_PRIORITY_H
#define METALIGN_PRIORITY_H

#include "metalign/err.h"

/* Nice increment of the compute threads relative to the HTTP threads. */
#define ML_COMPUTE_NICE 5

/* Lowers the calling thread's priority to `nice` (threads it creates later inherit it). */
int ml_priority_lower_self(int nice, ml_err *err);

/* Lowers the priority of every other thread of the process that exists now (at start-up:
 * the BLAS library's threads), leaving the calling thread as it is. */
int ml_priority_lower_others(int nice, ml_err *err);

#endif
