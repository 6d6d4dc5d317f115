#include "util/lru.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* At most a few hundred entries (the bounds the app sets), so a list in recency order is
 * simpler than a hash and fast enough. */
typedef struct lru_entry {
    char *key;
    ml_ref *obj;
    struct lru_entry *prev, *next; /* head = most recent */
} lru_entry;

struct ml_lru {
    pthread_mutex_t lock;
    lru_entry *head, *tail;
    int entries, max_entries;
    size_t bytes, max_bytes;
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

void ml_lru_put(ml_lru *c, const char *key, ml_ref *obj) {
    if (!obj || obj->bytes > c->max_bytes) return;
    lru_entry *fresh = calloc(1, sizeof *fresh);
    char *k = strdup(key);
    if (!fresh || !k) {
        free(fresh);
        free(k);
        return;
    }
    fresh->key = k;
    fresh->obj = ml_ref_inc(obj);
    pthread_mutex_lock(&c->lock);
    lru_entry *old = find(c, key);
    if (old) drop_entry(c, old);
    push_front(c, fresh);
    c->entries++;
    c->bytes += obj->bytes;
    while (c->tail && (c->entries > c->max_entries || c->bytes > c->max_bytes))
        drop_entry(c, c->tail);
    pthread_mutex_unlock(&c->lock);
}

void ml_lru_put_blob(ml_lru *c, const char *key, ml_blob *b) {
    ml_lru_put(c, key, b ? &b->ref : NULL);
}

void ml_lru_remove(ml_lru *c, const char *key) {
    pthread_mutex_lock(&c->lock);
    lru_entry *e = find(c, key);
    if (e) drop_entry(c, e);
    pthread_mutex_unlock(&c->lock);
}

void ml_lru_stats(ml_lru *c, int *entries, size_t *bytes) {
    pthread_mutex_lock(&c->lock);
    if (entries) *entries = c->entries;
    if (bytes) *bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
}
