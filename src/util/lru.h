/* A bounded least-recently-used map from keys to shared objects (util/ref.h): rendered
 * answers, computed results. Bounded by entries and by the objects' bytes; thread-safe.
 * An entry can be pinned (a finished job's result): pinned entries count against the same
 * byte bound but are never evicted, so one budget covers the cache and the jobs. */
#ifndef METALIGN_UTIL_LRU_H
#define METALIGN_UTIL_LRU_H

#include <stddef.h>

#include "util/blob.h"
#include "util/ref.h"

typedef struct ml_lru ml_lru;

ml_lru *ml_lru_new(size_t max_bytes, int max_entries);
void ml_lru_free(ml_lru *c);
/* A new reference to the object under key, or NULL. */
ml_ref *ml_lru_get(ml_lru *c, const char *key);
/* The same for a blob (NULL when absent or not a blob). */
ml_blob *ml_lru_get_blob(ml_lru *c, const char *key);
/* Stores a reference to obj under key (replacing an older one), evicting the least recently
 * used entries beyond the bounds. An object larger than max_bytes is not kept. */
void ml_lru_put(ml_lru *c, const char *key, ml_ref *obj);
void ml_lru_put_blob(ml_lru *c, const char *key, ml_blob *b);
/* Drops the entry under key, if any and not pinned. */
void ml_lru_remove(ml_lru *c, const char *key);
/* Holds obj until ml_lru_unpin (one pin per call): the entry that already holds obj, under
 * whatever key, or a new one under key (the caller's own, e.g. "job:<id>"). -1, nothing
 * held, when the pinned entries and obj would not fit the byte bound: the caller refuses the
 * job rather than exceed the budget. */
int ml_lru_pin(ml_lru *c, const char *key, ml_ref *obj);
/* Releases one pin of obj; once the last is gone its entry is dropped (drop) or becomes an
 * ordinary, evictable entry. */
void ml_lru_unpin(ml_lru *c, const ml_ref *obj, int drop);
size_t ml_lru_pinned_bytes(ml_lru *c);
size_t ml_lru_max_bytes(const ml_lru *c);
void ml_lru_stats(ml_lru *c, int *entries, size_t *bytes);

#endif
