#include "model/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#ifdef ML_HAVE_OPENMP
#include <omp.h>
#endif

struct ml_pool {
    int openmp;  /* jobs run on the caller's OpenMP team, no threads of our own */
    int size;    /* threads a job may use, the caller included */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a new job, or shutdown */
    pthread_cond_t done; /* the last worker finished */
    pthread_t *threads;
    int n_workers;
    int stop;
    unsigned long generation;
    /* the current job */
    ml_par_fn fn;
    void *ctx;
    long n, grain;
    int active;  /* workers taking part in this job */
    int pending; /* of those, still running */
    atomic_long next;
};

static void run_chunks(ml_pool *p, int tid) {
    for (;;) {
        long begin = atomic_fetch_add(&p->next, p->grain);
        if (begin >= p->n) return;
        long end = begin + p->grain < p->n ? begin + p->grain : p->n;
        p->fn(p->ctx, begin, end, tid);
    }
}

typedef struct worker_arg {
    ml_pool *pool;
    int id;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    ml_pool *p = wa->pool;
    int id = wa->id;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        if (id >= p->active) continue;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p, id + 1);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ml_pool *ml_pool_new(int n_threads, int openmp, ml_err *err) {
    ml_pool *p = calloc(1, sizeof *p);
    if (!p) return ml_errp(err, "out of memory");
    p->size = n_threads > 1 ? n_threads : 1;
#ifdef ML_HAVE_OPENMP
    if (openmp) {
        p->openmp = 1;
        return p;
    }
#else
    (void)openmp;
#endif
    int workers = n_threads > 1 ? n_threads - 1 : 0;
    p->threads = calloc((size_t)workers + 1, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return ml_errp(err, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < workers; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){.pool = p, .id = i};
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            ml_pool_free(p);
            return ml_errp(err, "cannot start the forward-pass threads");
        }
        p->n_workers++;
    }
    return p;
}

void ml_pool_free(ml_pool *p) {
    if (!p) return;
    if (p->openmp) {
        free(p);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int ml_pool_size(const ml_pool *p) { return p->openmp ? p->size : p->n_workers + 1; }

#ifdef ML_HAVE_OPENMP
/* The same chunks on the calling thread's OpenMP team: its threads are the ones oneDNN's
 * GEMMs just ran on (and may still be spinning on, waiting for work), so the layernorms and
 * attention between two GEMMs take the cores without waking a second set of threads. */
static void omp_for(int threads, long n, long grain, ml_par_fn fn, void *ctx) {
    atomic_long next = 0;
#pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num();
        for (;;) {
            long begin = atomic_fetch_add(&next, grain);
            if (begin >= n) break;
            long end = begin + grain < n ? begin + grain : n;
            fn(ctx, begin, end, tid);
        }
    }
}
#endif

void ml_pool_for(ml_pool *p, int n_threads, long n, long grain, ml_par_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    long chunks = (n + grain - 1) / grain;
    int helpers = n_threads - 1;
    if (helpers > ml_pool_size(p) - 1) helpers = ml_pool_size(p) - 1;
    if (helpers > chunks - 1) helpers = (int)(chunks - 1);
    if (helpers <= 0) {
        fn(ctx, 0, n, 0);
        return;
    }
#ifdef ML_HAVE_OPENMP
    if (p->openmp) {
        omp_for(helpers + 1, n, grain, fn, ctx);
        return;
    }
#endif
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    p->active = helpers;
    p->pending = helpers;
    atomic_store(&p->next, 0);
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
