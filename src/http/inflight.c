#include "http/inflight.h"

#include <pthread.h>
#include <stdlib.h>

/* The blobs being sent: few at a time (one per distinct large answer), so an array. */
typedef struct held_blob {
    const ml_blob *blob;
    int responses;
} held_blob;

struct ml_inflight {
    pthread_mutex_t lock;
    size_t bytes, max_bytes;
    held_blob *held;
    int n_held, cap_held;
};

ml_inflight *ml_inflight_new(size_t max_bytes) {
    ml_inflight *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->max_bytes = max_bytes;
    return f;
}

void ml_inflight_free(ml_inflight *f) {
    if (!f) return;
    pthread_mutex_destroy(&f->lock);
    free(f->held);
    free(f);
}

static held_blob *find(ml_inflight *f, const ml_blob *b) {
    for (int i = 0; i < f->n_held; i++)
        if (f->held[i].blob == b) return &f->held[i];
    return NULL;
}

int ml_inflight_take(ml_inflight *f, const ml_blob *blob, size_t own_bytes) {
    pthread_mutex_lock(&f->lock);
    held_blob *h = blob ? find(f, blob) : NULL;
    size_t cost = own_bytes + (blob && !h ? blob->len : 0);
    int ok = cost <= ML_INFLIGHT_SMALL_BYTES || f->bytes == 0 ||
             (f->bytes <= f->max_bytes && cost <= f->max_bytes - f->bytes);
    if (ok && blob && !h) {
        if (f->n_held == f->cap_held) {
            int cap = f->cap_held ? f->cap_held * 2 : 16;
            held_blob *grown = realloc(f->held, sizeof *grown * (size_t)cap);
            if (!grown) {
                ok = 0;
            } else {
                f->held = grown;
                f->cap_held = cap;
            }
        }
        if (ok) {
            h = &f->held[f->n_held++];
            *h = (held_blob){blob, 0};
        }
    }
    if (ok) {
        if (h) h->responses++;
        f->bytes += cost;
    }
    pthread_mutex_unlock(&f->lock);
    return ok ? 0 : -1;
}

void ml_inflight_release(ml_inflight *f, const ml_blob *blob, size_t own_bytes) {
    pthread_mutex_lock(&f->lock);
    f->bytes -= own_bytes;
    held_blob *h = blob ? find(f, blob) : NULL;
    if (h && --h->responses == 0) {
        f->bytes -= blob->len;
        *h = f->held[--f->n_held];
    }
    pthread_mutex_unlock(&f->lock);
}

size_t ml_inflight_bytes(ml_inflight *f, int *blobs) {
    pthread_mutex_lock(&f->lock);
    size_t n = f->bytes;
    if (blobs) *blobs = f->n_held;
    pthread_mutex_unlock(&f->lock);
    return n;
}

size_t ml_inflight_max(const ml_inflight *f) { return f->max_bytes; }
