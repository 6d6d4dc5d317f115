#include "engine/workers.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct task {
    ml_task_fn fn;
    void *arg;
    struct task *next;
} task;

typedef struct task_queue {
    task *head, *tail;
    int queued, running;
} task_queue;

struct ml_workers {
    ml_workers_options opt;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    task_queue q[2]; /* indexed by ml_task_class */
    int stopping;
    int n_threads;
    pthread_t *threads;
};

typedef struct worker_start {
    ml_workers *w;
    int id;
} worker_start;

static task *pop(task_queue *q) {
    task *t = q->head;
    if (!t) return NULL;
    q->head = t->next;
    if (!q->head) q->tail = NULL;
    q->queued--;
    q->running++;
    return t;
}

/* Interactive first; background only while fewer than max_background of them run. */
static task *next_task(ml_workers *w, ml_task_class *cls) {
    task *t = pop(&w->q[ML_TASK_INTERACTIVE]);
    if (t) {
        *cls = ML_TASK_INTERACTIVE;
        return t;
    }
    if (w->q[ML_TASK_BACKGROUND].running < w->opt.max_background) {
        t = pop(&w->q[ML_TASK_BACKGROUND]);
        if (t) *cls = ML_TASK_BACKGROUND;
    }
    return t;
}

static void *worker_main(void *arg) {
    worker_start *start = arg;
    ml_workers *w = start->w;
    void *ctx = w->opt.init ? w->opt.init(w->opt.app, start->id) : NULL;
    free(start);
    pthread_mutex_lock(&w->lock);
    for (;;) {
        ml_task_class cls = ML_TASK_INTERACTIVE;
        task *t = next_task(w, &cls);
        if (!t) {
            if (w->stopping && !w->q[0].queued && !w->q[1].queued) break;
            pthread_cond_wait(&w->wake, &w->lock);
            continue;
        }
        pthread_mutex_unlock(&w->lock);
        t->fn(t->arg, ctx);
        free(t);
        pthread_mutex_lock(&w->lock);
        w->q[cls].running--;
        /* A finished background task may let a queued one start on another worker. */
        pthread_cond_broadcast(&w->wake);
    }
    pthread_mutex_unlock(&w->lock);
    if (w->opt.fini) w->opt.fini(ctx);
    return NULL;
}

ml_workers *ml_workers_new(const ml_workers_options *opt, ml_err *err) {
    ml_workers *w = calloc(1, sizeof *w);
    if (!w) return ml_errp(err, "out of memory");
    w->opt = *opt;
    if (w->opt.n_workers < 1) w->opt.n_workers = 1;
    if (w->opt.max_background < 1) w->opt.max_background = 1;
    if (w->opt.max_background > w->opt.n_workers) w->opt.max_background = w->opt.n_workers;
    if (w->opt.queue_cap < 1) w->opt.queue_cap = 64;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    w->threads = calloc((size_t)w->opt.n_workers, sizeof *w->threads);
    if (!w->threads) {
        free(w);
        return ml_errp(err, "out of memory");
    }
    for (int i = 0; i < w->opt.n_workers; i++) {
        worker_start *s = malloc(sizeof *s);
        if (!s || pthread_create(&w->threads[i], NULL, worker_main,
                                 (*s = (worker_start){w, i}, s)) != 0) {
            free(s);
            ml_workers_free(w);
            return ml_errp(err, "cannot start compute worker %d", i);
        }
        w->n_threads++;
    }
    return w;
}

int ml_workers_submit(ml_workers *w, ml_task_class cls, ml_task_fn fn, void *arg) {
    task *t = malloc(sizeof *t);
    if (!t) return -1;
    *t = (task){fn, arg, NULL};
    pthread_mutex_lock(&w->lock);
    task_queue *q = &w->q[cls];
    if (w->stopping || q->queued >= w->opt.queue_cap) {
        pthread_mutex_unlock(&w->lock);
        free(t);
        return -1;
    }
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
    q->queued++;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void ml_workers_load(ml_workers *w, int *interactive, int *background) {
    pthread_mutex_lock(&w->lock);
    if (interactive) *interactive = w->q[0].queued + w->q[0].running;
    if (background) *background = w->q[1].queued + w->q[1].running;
    pthread_mutex_unlock(&w->lock);
}

void ml_workers_free(ml_workers *w) {
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n_threads; i++) pthread_join(w->threads[i], NULL);
    free(w->threads);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
