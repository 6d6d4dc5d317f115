#ifndef METALIGN_UTIL_LRU_H
#define METALIGN_UTIL_LRU_H

#include <stddef.h>

#include "util/blob.h"

/* A bounded least-recently-used map from request keys to answers. */
typedef struct ml_lru ml_lru;
ml_lru *ml_lru_new(size_t max_bytes, int max_entries);
void ml_lru_free(ml_lru *c);
/* A new reference to the answer for key, or NULL. */
ml_blob *ml_lru_get(ml_lru *c, const char *key);
/* Stores a reference to b under key (replacing an older one), evicting the oldest entries
 * beyond the bounds. An answer larger than max_bytes is not kept. */
void ml_lru_put(ml_lru *c, const char *key, ml_blob *b);
void ml_lru_stats(ml_lru *c, int *entries, size_t *bytes);

#endif
