/* Unit tests of the engine's small parts: jobs, workers, metrics. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/jobs.h"
#include "engine/metrics.h"
#include "engine/workers.h"
#include "util/blob.h"
#include "util/buf.h"
#include "unit.h"

static void test_jobs(void) {
    ml_jobs *js = ml_jobs_new(2, 10, 3600, NULL);
    ml_err err;
    int existing = 0;
    ml_job *a = ml_jobs_create(js, "curves", "key-a", 10, &existing, &err);
    CHECK(a && !existing && strlen(ml_job_id(a)) == 32);
    ml_job *again = ml_jobs_create(js, "curves", "key-a", 10, &existing, &err);
    CHECK(again == a && existing); /* identical request: the same job */
    ml_job_unref(again);
    ml_job *b = ml_jobs_create(js, "curves", "key-b", 10, &existing, &err);
    CHECK(b && !existing);
    ml_job *c = ml_jobs_create(js, "curves", "key-c", 10, &existing, &err);
    CHECK(c == NULL);
    CHECK_STR_CONTAINS(err.msg, "--max-jobs");
    CHECK(ml_job_start(a) == 0);
    ml_job_progress(a, 4);
    ml_job_info info;
    ml_job_info_get(a, &info);
    CHECK(info.status == ML_JOB_RUNNING && info.done == 4 && info.total == 10);
    CHECK(info.finished == 0 && info.result == NULL && !strcmp(info.kind, "curves"));
    ml_job_info_free(&info);
    ml_blob *res = ml_blob_new("{\"x\":1}", 7);
    ml_job_finish(a, res);
    ml_blob_unref(res);
    ml_job *g = ml_jobs_get(js, ml_job_id(a));
    ml_job_info_get(g, &info);
    CHECK(info.status == ML_JOB_DONE && info.done == 10 && info.finished >= info.created);
    CHECK(info.result && !strcmp(info.result->data, "{\"x\":1}"));
    ml_job_info_free(&info);
    ml_job_unref(g);
    CHECK(ml_jobs_cancel(js, ml_job_id(b)) == 0); /* queued: cancelled at once */
    CHECK(ml_job_get_status(b) == ML_JOB_CANCELLED);
    CHECK(ml_job_start(b) != 0);
    CHECK(ml_jobs_cancel(js, "nope") != 0);
    int counts[ML_JOB_N_STATUS];
    ml_jobs_counts(js, counts);
    CHECK(counts[ML_JOB_DONE] == 1 && counts[ML_JOB_CANCELLED] == 1);
    ml_job_unref(a);
    ml_job_unref(b);
    ml_jobs_free(js);
}

typedef struct slow_task {
    int *running_bg, *max_bg;
    pthread_mutex_t *lock;
    int background;
    int *done;
} slow_task;

static void run_slow(void *arg, void *worker) {
    (void)worker;
    slow_task *t = arg;
    pthread_mutex_lock(t->lock);
    if (t->background && ++*t->running_bg > *t->max_bg) *t->max_bg = *t->running_bg;
    pthread_mutex_unlock(t->lock);
    usleep(20000);
    pthread_mutex_lock(t->lock);
    if (t->background) --*t->running_bg;
    ++*t->done;
    pthread_mutex_unlock(t->lock);
}

static void test_workers_limit_background(void) {
    ml_err err;
    ml_workers_options o = {.n_workers = 3, .max_background = 1, .queue_cap = 100};
    ml_workers *w = ml_workers_new(&o, &err);
    CHECK(w != NULL);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    int running = 0, max_bg = 0, done = 0;
    slow_task tasks[12];
    for (int i = 0; i < 12; i++) {
        tasks[i] = (slow_task){&running, &max_bg, &lock, i % 2, &done};
        CHECK(ml_workers_submit(w, i % 2 ? ML_TASK_BACKGROUND : ML_TASK_INTERACTIVE, run_slow,
                                &tasks[i]) == 0);
    }
    ml_workers_free(w); /* runs what is queued */
    CHECK(done == 12);
    CHECK_MSG(max_bg == 1, "%d background tasks ran at once", max_bg);
}

static void test_metrics_render(void) {
    const char *names[] = {"alpha", "beta"};
    ml_metrics *m = ml_metrics_new(names, 2);
    ml_metrics_observe(m, 0, 200, 0.0007);
    ml_metrics_observe(m, 0, 200, 0.2);
    ml_metrics_observe(m, 2, 404, 0.001);
    ml_metrics_observe(m, 1, 418, 0.001);
    ml_metrics_add(m, ML_CNT_CKA_CACHE_HIT, 3);
    ml_buf out = {0};
    ml_metrics_render(m, &out);
    CHECK_STR_CONTAINS(out.data, "metalignd_http_requests_total{route=\"alpha\",status=\"200\"} 2");
    CHECK_STR_CONTAINS(out.data, "metalignd_http_requests_total{route=\"unmatched\",status=\"404\"} 1");
    CHECK_STR_CONTAINS(out.data, "metalignd_http_requests_total{route=\"beta\",status=\"4xx\"} 1");
    CHECK_STR_CONTAINS(out.data, "metalignd_http_request_duration_seconds_bucket{route=\"alpha\",le=\"0.001\"} 1");
    CHECK_STR_CONTAINS(out.data, "metalignd_http_request_duration_seconds_bucket{route=\"alpha\",le=\"0.25\"} 2");
    CHECK_STR_CONTAINS(out.data, "metalignd_http_request_duration_seconds_count{route=\"alpha\"} 2");
    CHECK_STR_CONTAINS(out.data, "metalignd_cka_cache_hits_total 3");
    ml_buf_free(&out);
    ml_metrics_free(m);
}

int main(void) {
    RUN(test_jobs);
    RUN(test_workers_limit_background);
    RUN(test_metrics_render);
    return UT_DONE();
}
