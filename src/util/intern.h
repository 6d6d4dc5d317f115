/* Strings -> dense ids 0, 1, 2, ... in order of first appearance (participant names, image
 * paths): open addressing on an FNV-1a hash, the table at most half full, the strings kept
 * NUL-terminated in one arena so the caller can take them over as a table. */
#ifndef METALIGN_UTIL_INTERN_H
#define METALIGN_UTIL_INTERN_H

#include <stddef.h>
#include <stdint.h>

typedef struct ml_intern {
    size_t cap;        /* slots, a power of two */
    size_t n;
    int32_t *slot_id;  /* -1 = empty */
    uint64_t *slot_hash;
    size_t *offsets;   /* (n) start of each name in arena */
    char *arena;
    size_t arena_len, arena_cap;
} ml_intern;

/* The id of s (n bytes, any bytes but NUL), adding it when new; -1 when out of memory or
 * past INT32_MAX strings. */
int32_t ml_intern_id(ml_intern *t, const char *s, size_t n);
void ml_intern_free(ml_intern *t);

#endif
