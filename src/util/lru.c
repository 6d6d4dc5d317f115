#include "util/lru.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* At most a few hundred entries (the bounds the app sets), so a list in recency order is
 * simpler than a hash and fast enough. */
typedef struct lru_entry {
    char *key;
    ml_ref *obj;
    int pins;                      /* > 0: held for a job, never evicted */
    struct lru_entry *prev, *next; /* head = most recent */
} lru_entry;

struct ml_lru {
    pthread_mutex_t lock;
    lru_entry *head, *tail;
    int entries, max_entries;
    size_t bytes, max_bytes;
    size_t pinned_bytes;           /* of the pinned entries (within bytes) */
};

ml_lru *ml_lru_new(size_t max_bytes, int max_entries) {
    ml_lru *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->max_bytes = max_bytes;
    c->max_entries = max_entries;
    return c;
}

static void unlink_entry(ml_lru *c, lru_entry *e) {
    if (e->prev) e->prev->next = e->next; else c->head = e->next;
    if (e->next) e->next->prev = e->prev; else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(ml_lru *c, lru_entry *e) {
    e->next = c->head;
    e->prev = NULL;
    if (c->head) c->head->prev = e; else c->tail = e;
    c->head = e;
}

static void drop_entry(ml_lru *c, lru_entry *e) {
    unlink_entry(c, e);
    c->entries--;
    c->bytes -= e->obj->bytes;
    if (e->pins) c->pinned_bytes -= e->obj->bytes;
    ml_unref(e->obj);
    free(e->key);
    free(e);
}

/* Frees an entry that is in no list. */
static void drop_entry_unlinked(lru_entry *e) {
    ml_unref(e->obj);
    free(e->key);
    free(e);
}

static lru_entry *find(ml_lru *c, const char *key) {
    for (lru_entry *e = c->head; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    return NULL;
}

void ml_lru_free(ml_lru *c) {
    if (!c) return;
    while (c->head) drop_entry(c, c->head);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

ml_ref *ml_lru_get(ml_lru *c, const char *key) {
    pthread_mutex_lock(&c->lock);
    lru_entry *e = find(c, key);
    ml_ref *r = NULL;
    if (e) {
        unlink_entry(c, e);
        push_front(c, e);
        r = ml_ref_inc(e->obj);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

ml_blob *ml_lru_get_blob(ml_lru *c, const char *key) {
    ml_ref *r = ml_lru_get(c, key);
    ml_blob *b = ml_blob_from_ref(r);
    if (!b) ml_unref(r);
    return b;
}

/* Evicts unpinned entries, least recent first, until the bounds hold or only pinned ones
 * are left. Lock held. */
static void evict(ml_lru *c) {
    lru_entry *e = c->tail;
    while (e && (c->entries > c->max_entries || c->bytes > c->max_bytes)) {
        lru_entry *prev = e->prev;
        if (!e->pins) drop_entry(c, e);
        e = prev;
    }
}

static lru_entry *new_entry(const char *key, ml_ref *obj) {
    lru_entry *fresh = calloc(1, sizeof *fresh);
    char *k = strdup(key);
    if (!fresh || !k) {
        free(fresh);
        free(k);
        return NULL;
    }
    fresh->key = k;
    fresh->obj = ml_ref_inc(obj);
    return fresh;
}

/* Lock held: room for bytes more without evicting a pinned entry? */
static int fits(const ml_lru *c, size_t bytes) {
    return bytes <= c->max_bytes && c->pinned_bytes <= c->max_bytes - bytes;
}

void ml_lru_put(ml_lru *c, const char *key, ml_ref *obj) {
    if (!obj || obj->bytes > c->max_bytes) return;
    lru_entry *fresh = new_entry(key, obj);
    if (!fresh) return;
    pthread_mutex_lock(&c->lock);
    lru_entry *old = find(c, key);
    if ((old && old->pins) || !fits(c, obj->bytes)) {
        /* a pinned answer under the same key is the same answer (keys are canonical) */
        pthread_mutex_unlock(&c->lock);
        drop_entry_unlinked(fresh);
        return;
    }
    if (old) drop_entry(c, old);
    push_front(c, fresh);
    c->entries++;
    c->bytes += obj->bytes;
    evict(c);
    pthread_mutex_unlock(&c->lock);
}

static lru_entry *find_obj(ml_lru *c, const ml_ref *obj) {
    for (lru_entry *e = c->head; e; e = e->next)
        if (e->obj == obj) return e;
    return NULL;
}

int ml_lru_pin(ml_lru *c, const char *key, ml_ref *obj) {
    if (!obj) return -1;
    lru_entry *fresh = new_entry(key, obj);
    if (!fresh) return -1;
    pthread_mutex_lock(&c->lock);
    /* the object may be cached already, under the key of the request that made it: pin that
     * entry, so its bytes count once */
    lru_entry *e = find_obj(c, obj);
    int rc = 0;
    if (e) {
        if (!e->pins && !fits(c, e->obj->bytes)) {
            rc = -1;
        } else {
            if (!e->pins) c->pinned_bytes += e->obj->bytes;
            e->pins++;
        }
    } else if (find(c, key) || !fits(c, obj->bytes)) {
        rc = -1; /* key is the caller's own: taken means a bug, not a reason to evict */
    } else {
        fresh->pins = 1;
        push_front(c, fresh);
        fresh = NULL;
        c->entries++;
        c->bytes += obj->bytes;
        c->pinned_bytes += obj->bytes;
    }
    if (rc == 0) evict(c);
    pthread_mutex_unlock(&c->lock);
    if (fresh) drop_entry_unlinked(fresh);
    return rc;
}

void ml_lru_unpin(ml_lru *c, const ml_ref *obj, int drop) {
    pthread_mutex_lock(&c->lock);
    lru_entry *e = find_obj(c, obj);
    if (e && e->pins && --e->pins == 0) {
        c->pinned_bytes -= e->obj->bytes;
        if (drop)
            drop_entry(c, e);
        else
            evict(c);
    }
    pthread_mutex_unlock(&c->lock);
}

size_t ml_lru_pinned_bytes(ml_lru *c) {
    pthread_mutex_lock(&c->lock);
    size_t n = c->pinned_bytes;
    pthread_mutex_unlock(&c->lock);
    return n;
}

size_t ml_lru_max_bytes(const ml_lru *c) { return c->max_bytes; }

void ml_lru_put_blob(ml_lru *c, const char *key, ml_blob *b) {
    ml_lru_put(c, key, b ? &b->ref : NULL);
}

void ml_lru_remove(ml_lru *c, const char *key) {
    pthread_mutex_lock(&c->lock);
    lru_entry *e = find(c, key);
    if (e && !e->pins) drop_entry(c, e);
    pthread_mutex_unlock(&c->lock);
}

void ml_lru_stats(ml_lru *c, int *entries, size_t *bytes) {
    pthread_mutex_lock(&c->lock);
    if (entries) *entries = c->entries;
    if (bytes) *bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
}
