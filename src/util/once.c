#include "util/once.h"

void ml_once_init(ml_once *o) {
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->done, NULL);
    o->state = 0;
}

void ml_once_free(ml_once *o) {
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->done);
}

int ml_once_done(ml_once *o) { return __atomic_load_n(&o->state, __ATOMIC_ACQUIRE) == 2; }

int ml_once_run(ml_once *o, int (*fn)(void *arg, ml_err *err), void *arg, ml_err *err) {
    if (ml_once_done(o)) return 0;
    pthread_mutex_lock(&o->lock);
    while (o->state == 1) pthread_cond_wait(&o->done, &o->lock);
    if (o->state == 2) {
        pthread_mutex_unlock(&o->lock);
        return 0;
    }
    o->state = 1;
    pthread_mutex_unlock(&o->lock);

    int rc = fn(arg, err);

    pthread_mutex_lock(&o->lock);
    __atomic_store_n(&o->state, rc == 0 ? 2 : 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&o->done);
    pthread_mutex_unlock(&o->lock);
    return rc;
}
