/* Identical requests computed once. A table of the computations in progress, by result key
 * (http/result_keys.h): the first request for a key computes it; a request that finds the key
 * in progress registers a waiter instead of computing it again (and instead of holding a
 * compute worker while it waits), and is called back once the computation ends, when the
 * answer is in the result cache. The computation asks ml_coalesce_waiters whether anyone
 * still wants it, so it can stop when its own client and every waiter have gone away. */
#ifndef METALIGN_ENGINE_COALESCE_H
#define METALIGN_ENGINE_COALESCE_H

typedef struct ml_coalesce ml_coalesce;

/* Embedded in the waiter's own state; done(w) runs once, on the computing thread, after the
 * computation ended (successfully or not), outside the table's lock. */
typedef struct ml_coalesce_waiter {
    void (*done)(struct ml_coalesce_waiter *w);
    struct ml_coalesce_waiter *next; /* private */
} ml_coalesce_waiter;

ml_coalesce *ml_coalesce_new(void);
/* Call once nothing is in progress. */
void ml_coalesce_free(ml_coalesce *c);

/* Claims key: 0 and the caller computes it, then calls ml_coalesce_end on every path (out of
 * memory for the entry also gives 0: the caller computes without sharing, and end is a
 * no-op); -1 when it is already in progress (register a waiter instead). */
int ml_coalesce_begin(ml_coalesce *c, const char *key);
/* Ends the computation of key and calls its waiters' done. */
void ml_coalesce_end(ml_coalesce *c, const char *key);
/* Registers w for the computation of key: 1, or 0 when key is not in progress (any more):
 * then w is not registered and the answer, if any, is already in the cache. */
int ml_coalesce_wait(ml_coalesce *c, const char *key, ml_coalesce_waiter *w);
/* Takes w back (its client went away): 1, or 0 when done has run or is running. */
int ml_coalesce_leave(ml_coalesce *c, const char *key, ml_coalesce_waiter *w);
/* Waiters registered for key now (0 when not in progress). */
int ml_coalesce_waiters(ml_coalesce *c, const char *key);
/* Computations in progress, for /metrics. */
int ml_coalesce_in_progress(ml_coalesce *c);

#endif
