/* Unit tests of the server's small parts: config, buffers, caches, jobs, workers, once,
 * request validation, metrics. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metalign/blob.h"
#include "metalign/buf.h"
#include "metalign/config.h"
#include "metalign/jobs.h"
#include "metalign/metrics.h"
#include "metalign/once.h"
#include "metalign/request.h"
#include "metalign/workers.h"
#include "unit.h"

static char tmpdir[] = "/tmp/metalign-units-XXXXXX";

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_config_file_and_flags(void) {
    const char *path = write_tmp("c.json", "{\"_comment\": \"x\", \"checkpoint\": \"m.pt\", "
                                           "\"heads\": 8, \"item_ids\": \"/abs/ids.txt\", "
                                           "\"listen\": \"0.0.0.0:9000\"}");
    ml_config c;
    ml_config_defaults(&c);
    ml_err err = {{0}};
    char *argv[] = {"metalignd", "--heads", "4", "--config", (char *)path, NULL};
    CHECK(ml_config_from_args(&c, 5, argv, &err) == ML_CLI_RUN);
    CHECK(c.heads == 4); /* the flag wins, whatever its position */
    char want[600];
    snprintf(want, sizeof want, "%s/m.pt", tmpdir); /* relative to the config's folder */
    CHECK_MSG(c.checkpoint && !strcmp(c.checkpoint, want), "checkpoint %s", c.checkpoint);
    CHECK(!strcmp(c.item_ids, "/abs/ids.txt"));
    CHECK(!strcmp(c.listen, "0.0.0.0:9000"));
    CHECK(c.http_threads == 4 && c.max_jobs > 0 && c.cache_dir != NULL);
    ml_config_free(&c);
}

static void test_config_errors(void) {
    ml_config c;
    ml_err err = {{0}};
    ml_config_defaults(&c);
    const char *bad_key = write_tmp("k.json", "{\"chekpoint\": \"m.pt\"}");
    CHECK(ml_config_load_file(&c, bad_key, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "unknown key \"chekpoint\"");
    const char *bad_type = write_tmp("t.json", "{\"heads\": \"twelve\"}");
    CHECK(ml_config_load_file(&c, bad_type, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "\"heads\" must be an integer");
    const char *bad_json = write_tmp("j.json", "{\"heads\": 12,,}");
    CHECK(ml_config_load_file(&c, bad_json, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "line 1");
    CHECK(ml_config_load_file(&c, "/nonexistent/x.json", &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/x.json");
    char *argv[] = {"metalignd", "--heads", "0", NULL};
    CHECK(ml_config_from_args(&c, 3, argv, &err) == ML_CLI_EXIT_USAGE);
    CHECK_STR_CONTAINS(err.msg, "heads=0 is out of range");
    char *argv2[] = {"metalignd", "--bogus", NULL};
    CHECK(ml_config_from_args(&c, 2, argv2, &err) == ML_CLI_EXIT_USAGE);
    CHECK_STR_CONTAINS(err.msg, "--bogus");
    CHECK(ml_config_validate(&c, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "--checkpoint");
    ml_config_free(&c);
}

static void test_listen(void) {
    char host[64];
    int port;
    ml_err err;
    CHECK(ml_parse_listen("127.0.0.1:8080", host, sizeof host, &port, &err) == 0);
    CHECK(!strcmp(host, "127.0.0.1") && port == 8080);
    CHECK(ml_parse_listen("[::1]:0", host, sizeof host, &port, &err) == 0);
    CHECK(!strcmp(host, "::1") && port == 0);
    CHECK(ml_parse_listen("localhost", host, sizeof host, &port, &err) != 0);
    CHECK(ml_parse_listen("h:70000", host, sizeof host, &port, &err) != 0);
    CHECK(ml_parse_listen(":80", host, sizeof host, &port, &err) != 0);
}

static void test_base64(void) {
    /* RFC 4648 section 10 vectors */
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        ml_buf b = {0};
        ml_buf_base64(&b, in[i], strlen(in[i]));
        CHECK_MSG(!strcmp(b.data ? b.data : "", out[i]), "base64(%s) = %s", in[i], b.data);
        ml_buf_free(&b);
    }
}

static void test_json_floats(void) {
    ml_buf b = {0};
    float v[] = {1.0f, -0.5f, 3.14159274f, 1e-30f};
    CHECK(ml_buf_json_floats(&b, v, 4) == 0);
    CHECK(!strcmp(b.data, "[1,-0.5,3.14159274,1e-30]"));
    ml_buf_free(&b);
    float bad[] = {1.0f, NAN};
    CHECK(ml_buf_json_floats(&b, bad, 2) != 0);
    CHECK(b.len == 0);
    ml_buf_free(&b);
}

static void test_lru(void) {
    ml_lru *c = ml_lru_new(100, 3);
    ml_blob *a = ml_blob_new("aaaa", 4), *b = ml_blob_new("bbbb", 4);
    ml_lru_put(c, "a", a);
    ml_lru_put(c, "b", b);
    ml_blob *got = ml_lru_get(c, "a");
    CHECK(got && !strcmp(got->data, "aaaa"));
    ml_blob_unref(got);
    for (int i = 0; i < 3; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        ml_lru_put(c, k, b);
    }
    int n;
    size_t bytes;
    ml_lru_stats(c, &n, &bytes);
    CHECK(n == 3 && bytes == 12);
    got = ml_lru_get(c, "a");
    CHECK(got == NULL); /* evicted as the oldest */
    char big[200];
    memset(big, 'x', sizeof big);
    ml_blob *huge = ml_blob_new(big, sizeof big); /* ml_blob_new copies */
    ml_lru_put(c, "huge", huge); /* larger than the cache: not kept */
    CHECK(ml_lru_get(c, "huge") == NULL);
    ml_blob_unref(a);
    ml_blob_unref(b);
    ml_blob_unref(huge);
    ml_lru_free(c);
}

static void test_jobs(void) {
    ml_jobs *js = ml_jobs_new(2, 10, 3600);
    ml_err err;
    int existing = 0;
    ml_job *a = ml_jobs_create(js, "curves", "key-a", 10, &existing, &err);
    CHECK(a && !existing && strlen(ml_job_id(a)) == 32);
    ml_job *again = ml_jobs_create(js, "curves", "key-a", 10, &existing, &err);
    CHECK(again == a && existing); /* identical request: the same job */
    ml_job_release(again);
    ml_job *b = ml_jobs_create(js, "curves", "key-b", 10, &existing, &err);
    CHECK(b && !existing);
    ml_job *c = ml_jobs_create(js, "curves", "key-c", 10, &existing, &err);
    CHECK(c == NULL);
    CHECK_STR_CONTAINS(err.msg, "--max-jobs");
    CHECK(ml_job_start(a) == 0);
    ml_job_progress(a, 4);
    ml_buf out = {0};
    ml_job_render(a, &out);
    CHECK_STR_CONTAINS(out.data, "\"status\":\"running\",\"progress\":{\"done\":4,\"total\":10}");
    ml_buf_free(&out);
    ml_blob *res = ml_blob_new("{\"x\":1}", 7);
    ml_job_finish(a, res);
    ml_blob_unref(res);
    ml_job *g = ml_jobs_get(js, ml_job_id(a));
    ml_job_render(g, &out);
    CHECK_STR_CONTAINS(out.data, "\"status\":\"done\"");
    CHECK_STR_CONTAINS(out.data, "\"result\":{\"x\":1}");
    ml_buf_free(&out);
    ml_job_release(g);
    CHECK(ml_jobs_cancel(js, ml_job_id(b)) == 0); /* queued: cancelled at once */
    CHECK(ml_job_get_status(b) == ML_JOB_CANCELLED);
    CHECK(ml_job_start(b) != 0);
    CHECK(ml_jobs_cancel(js, "nope") != 0);
    int counts[5];
    ml_jobs_counts(js, counts);
    CHECK(counts[ML_JOB_DONE] == 1 && counts[ML_JOB_CANCELLED] == 1);
    ml_job_release(a);
    ml_job_release(b);
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

static int once_calls;
static int once_fn(void *arg, ml_err *err) {
    (void)arg;
    (void)err;
    __atomic_add_fetch(&once_calls, 1, __ATOMIC_RELAXED);
    usleep(20000);
    return 0;
}
static void *once_thread(void *o) {
    ml_err err;
    return (void *)(long)ml_once_run(o, once_fn, NULL, &err);
}
static void test_once_concurrent(void) {
    ml_once o;
    ml_once_init(&o);
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, once_thread, &o);
    for (int i = 0; i < 8; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        CHECK(rc == NULL);
    }
    CHECK(once_calls == 1 && ml_once_done(&o));
    ml_once_destroy(&o);
}

static void test_int_lists(void) {
    ml_response resp = {0};
    int *v = NULL, n = 0;
    CHECK(ml_int_list_text("0,1,2", "dims", 66, "the target has 66 dimensions", 66, &v, &n, &resp) == 0);
    CHECK(n == 3 && v[2] == 2);
    free(v);
    CHECK(ml_int_list_text("0,70", "dims", 66, "the target has 66 dimensions", 66, &v, &n, &resp) != 0);
    CHECK(resp.status == 400);
    CHECK_STR_CONTAINS(resp.body, "dims[1]=70 is out of range: the target has 66 dimensions (0..65)");
    ml_response_reset(&resp);
    CHECK(ml_int_list_text("0,,1", "dims", 66, "x", 66, &v, &n, &resp) != 0);
    CHECK_STR_CONTAINS(resp.body, "comma-separated");
    ml_response_reset(&resp);
    json_t *arr = json_pack("[i,s]", 1, "2");
    CHECK(ml_int_list_json(arr, "dims", 66, "x", 66, &v, &n, &resp) != 0);
    CHECK_STR_CONTAINS(resp.body, "dims[1] must be an integer");
    json_decref(arr);
    ml_response_reset(&resp);
}

static void test_body_validation(void) {
    static const char *const fields[] = {"a", "b", NULL};
    ml_request req = {.body = "{\"a\": 1, \"c\": 2}", .body_len = 16};
    ml_response resp = {0};
    json_t *doc = NULL;
    CHECK(ml_body_object(&req, fields, &doc, &resp) != 0);
    CHECK_STR_CONTAINS(resp.body, "unknown field \\\"c\\\"");
    ml_response_reset(&resp);
    req.body = "{\"a\": 1, \"a\": 2}";
    req.body_len = strlen(req.body);
    CHECK(ml_body_object(&req, fields, &doc, &resp) != 0); /* duplicate keys are refused */
    ml_response_reset(&resp);
    req.body = "{\"a\": 100.0, \"b\": 5}";
    req.body_len = strlen(req.body);
    CHECK(ml_body_object(&req, fields, &doc, &resp) == 0);
    long long a = 0, b = 0;
    CHECK(ml_json_int(doc, "a", 1, 1000, &a, &resp) == 0 && a == 100);
    CHECK(ml_json_int(doc, "b", 10, 20, &b, &resp) != 0);
    CHECK_STR_CONTAINS(resp.body, "b=5 is out of range: allowed 10..20");
    json_decref(doc);
    ml_response_reset(&resp);
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
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_config_file_and_flags);
    RUN(test_config_errors);
    RUN(test_listen);
    RUN(test_base64);
    RUN(test_json_floats);
    RUN(test_lru);
    RUN(test_jobs);
    RUN(test_workers_limit_background);
    RUN(test_once_concurrent);
    RUN(test_int_lists);
    RUN(test_body_validation);
    RUN(test_metrics_render);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    return UT_DONE();
}
