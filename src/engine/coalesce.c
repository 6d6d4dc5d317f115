#include "engine/coalesce.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A handful of computations run at once (one per compute worker), so a list will do. */
typedef struct computation {
    char *key;
    ml_coalesce_waiter *waiters;
    int n_waiters;
    struct computation *next;
} computation;

struct ml_coalesce {
    pthread_mutex_t lock;
    computation *list;
    int n;
};

ml_coalesce *ml_coalesce_new(void) {
    ml_coalesce *c = calloc(1, sizeof *c);
    if (c) pthread_mutex_init(&c->lock, NULL);
    return c;
}

void ml_coalesce_free(ml_coalesce *c) {
    if (!c) return;
    while (c->list) {
        computation *next = c->list->next;
        free(c->list->key);
        free(c->list);
        c->list = next;
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static computation **find(ml_coalesce *c, const char *key) {
    computation **link = &c->list;
    while (*link && strcmp((*link)->key, key) != 0) link = &(*link)->next;
    return link;
}

int ml_coalesce_begin(ml_coalesce *c, const char *key) {
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    if (*find(c, key)) {
        rc = -1;
    } else {
        computation *k = calloc(1, sizeof *k);
        if (k && (k->key = strdup(key))) {
            k->next = c->list;
            c->list = k;
            c->n++;
        } else {
            free(k);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void ml_coalesce_end(ml_coalesce *c, const char *key) {
    pthread_mutex_lock(&c->lock);
    computation **link = find(c, key), *k = *link;
    if (k) {
        *link = k->next;
        c->n--;
    }
    pthread_mutex_unlock(&c->lock);
    if (!k) return;
    /* Outside the lock: a waiter's done resumes its request, which may start computing. */
    for (ml_coalesce_waiter *w = k->waiters, *next; w; w = next) {
        next = w->next;
        w->done(w);
    }
    free(k->key);
    free(k);
}

int ml_coalesce_wait(ml_coalesce *c, const char *key, ml_coalesce_waiter *w) {
    pthread_mutex_lock(&c->lock);
    computation *k = *find(c, key);
    if (k) {
        w->next = k->waiters;
        k->waiters = w;
        k->n_waiters++;
    }
    pthread_mutex_unlock(&c->lock);
    return k != NULL;
}

int ml_coalesce_leave(ml_coalesce *c, const char *key, ml_coalesce_waiter *w) {
    int found = 0;
    pthread_mutex_lock(&c->lock);
    computation *k = *find(c, key);
    for (ml_coalesce_waiter **link = k ? &k->waiters : NULL; link && *link; link = &(*link)->next)
        if (*link == w) {
            *link = w->next;
            k->n_waiters--;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&c->lock);
    return found;
}

int ml_coalesce_waiters(ml_coalesce *c, const char *key) {
    pthread_mutex_lock(&c->lock);
    computation *k = *find(c, key);
    int n = k ? k->n_waiters : 0;
    pthread_mutex_unlock(&c->lock);
    return n;
}

int ml_coalesce_in_progress(ml_coalesce *c) {
    pthread_mutex_lock(&c->lock);
    int n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}
