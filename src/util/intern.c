#include "util/intern.h"

#include <stdlib.h>
#include <string.h>

#define INTERN_FIRST_SLOTS 1024
#define INTERN_FIRST_ARENA 4096

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

void ml_intern_free(ml_intern *t) {
    free(t->slot_id);
    free(t->slot_hash);
    free(t->offsets);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

static int intern_grow(ml_intern *t) {
    size_t cap = t->cap ? t->cap * 2 : INTERN_FIRST_SLOTS;
    int32_t *ids = malloc(cap * sizeof *ids);
    uint64_t *hashes = malloc(cap * sizeof *hashes);
    size_t *offsets = realloc(t->offsets, cap / 2 * sizeof *offsets);
    if (!ids || !hashes || !offsets) {
        free(ids);
        free(hashes);
        if (offsets) t->offsets = offsets;
        return -1;
    }
    t->offsets = offsets;
    for (size_t i = 0; i < cap; i++) ids[i] = -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slot_id[i] < 0) continue;
        size_t j = t->slot_hash[i] & (cap - 1);
        while (ids[j] >= 0) j = (j + 1) & (cap - 1);
        ids[j] = t->slot_id[i];
        hashes[j] = t->slot_hash[i];
    }
    free(t->slot_id);
    free(t->slot_hash);
    t->slot_id = ids;
    t->slot_hash = hashes;
    t->cap = cap;
    return 0;
}

int32_t ml_intern_id(ml_intern *t, const char *s, size_t n) {
    if ((t->n + 1) * 2 > t->cap && intern_grow(t) != 0) return -1;
    uint64_t h = fnv1a(s, n);
    size_t j = h & (t->cap - 1);
    for (; t->slot_id[j] >= 0; j = (j + 1) & (t->cap - 1)) {
        int32_t id = t->slot_id[j];
        const char *name = t->arena + t->offsets[id];
        if (t->slot_hash[j] == h && strlen(name) == n && memcmp(name, s, n) == 0) return id;
    }
    if (t->n >= INT32_MAX) return -1;
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : INTERN_FIRST_ARENA;
        while (cap < t->arena_len + n + 1) cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a) return -1;
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = '\0';
    t->offsets[t->n] = t->arena_len;
    t->arena_len += n + 1;
    t->slot_id[j] = (int32_t)t->n;
    t->slot_hash[j] = h;
    return (int32_t)t->n++;
}
