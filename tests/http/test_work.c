/* The compute workers spent well: work whose client went away stops, a synchronous request
 * is bounded (--max-sync-rows, pointing to ?async=true), identical synchronous requests are
 * computed once, one worker stays free for interactive requests even with --threads 1, and
 * finished jobs' results count against the result budget (DELETE frees them). */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#include "daemon.h"
#include "rawhttp.h"

/* minutes of work on the demo: never finished here */
#define LONG_CURVES_SEED(s) "{\"episodes\": 100000, \"seq_len\": 200, \"seed\": " s "}"
#define SMALL_CURVES "{\"episodes\": 6, \"seq_len\": 20, \"seed\": 77, \"n_boot\": 0}"
/* about a second on the demo */
#define SHARED_CURVES "{\"episodes\": 3000, \"seq_len\": 100, \"seed\": 31, \"n_boot\": 0}"
#define IDENTICAL 4
/* results of about 620 kB: one fits a 1 MiB budget, two do not */
#define JOB_RESULT(s) "{\"episodes\": 300, \"seq_len\": 100, \"include_episodes\": true, \"n_boot\": 0, \"seed\": " s "}"
#define BUDGET "1048576"
#define INTERACTIVE_TASKS "metalignd_worker_tasks{class=\"interactive\"}" /* a series of /metrics */

static char tmp[] = "/tmp/metalign-work-XXXXXX";

static char *path_in(const char *name) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 512, "%s/%s", tmp, name);
    return p;
}

static json_t *call(const test_daemon *d, const char *method, const char *path,
                    const char *body, long status) {
    http_reply r;
    if (http_call(d, method, path, body, &r) != 0) {
        CHECK_MSG(0, "%s %s: no reply", method, path);
        return NULL;
    }
    CHECK_MSG(r.status == status, "%s %s: status %ld, expected %ld: %.300s", method, path,
              r.status, status, r.body ? r.body : "");
    json_t *doc = http_json(&r);
    http_reply_free(&r);
    return doc;
}

static const char *status_of_job(json_t *j) {
    return json_string_value(json_object_get(j, "status"));
}

static json_t *wait_job(const test_daemon *d, const char *url, const char *status,
                        double seconds) {
    for (double t0 = raw_now(); raw_now() - t0 < seconds; usleep(50000)) {
        json_t *j = call(d, "GET", url, NULL, 200);
        if (j && !strcmp(status_of_job(j) ? status_of_job(j) : "", status)) return j;
        json_decref(j);
    }
    CHECK_MSG(0, "job %s never became %s", url, status);
    return NULL;
}

static int raw_post(int port, const char *path, const char *body) {
    int fd = raw_connect(NULL, port, 0);
    if (fd < 0) return -1;
    char head[256];
    snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                "\r\nContent-Length: %zu\r\n\r\n", path, strlen(body));
    raw_send_str(fd, head);
    raw_send_str(fd, body);
    return fd;
}

/* Two simulations of minutes whose clients leave: both workers are free again within a
 * moment, and a small request is answered at once (it waited 23 s, once 80 s, before). */
static void test_abandoned_work_stops(const test_daemon *d) {
    int a = raw_post(d->port, "/v1/learning-curves", LONG_CURVES_SEED("401"));
    int b = raw_post(d->port, "/v1/learning-curves", LONG_CURVES_SEED("402"));
    REQUIRE(a >= 0 && b >= 0);
    CHECK(http_metric_wait(d, "metalignd_http_suspended", 2, 2, 10, NULL) == 0);
    CHECK(http_metric_wait(d, INTERACTIVE_TASKS, 2, 2, 10, NULL) == 0);
    usleep(300000);
    close(a);
    close(b);
    double t0 = raw_now();
    CHECK(http_metric_wait(d, INTERACTIVE_TASKS, 0, 0, 10, NULL) == 0);
    double freed = raw_now() - t0;
    http_reply r;
    CHECK(http_call(d, "POST", "/v1/learning-curves", SMALL_CURVES, &r) == 0 && r.status == 200);
    printf("# two abandoned simulations: workers free after %.2f s; then a small request "
           "%.0f ms\n", freed, r.seconds * 1e3);
    CHECK_MSG(freed < 3.0, "the workers were busy for %.2f s after the clients left", freed);
    http_reply_free(&r);
}

static void test_sync_size_bound(const test_daemon *d) {
    json_t *e = call(d, "POST", "/v1/learning-curves", "{\"episodes\": 20000, \"seq_len\": 100}", 400);
    const char *m = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
    CHECK_STR_CONTAINS(m, "2000000 trials");
    CHECK_STR_CONTAINS(m, "--max-sync-rows");
    CHECK_STR_CONTAINS(m, "?async=true");
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(e, "error"), "code")),
                  "too_large_for_sync"));
    json_decref(e);
    json_t *job = call(d, "POST", "/v1/learning-curves?async=true",
                       "{\"episodes\": 20000, \"seq_len\": 100}", 202);
    const char *url = json_string_value(json_object_get(job, "status_url"));
    json_t *del = url ? call(d, "DELETE", url, NULL, 200) : NULL;
    json_decref(del);
    json_decref(job);
    e = call(d, "GET", "/v1/compare/learning-curves?episodes=20000&seq_len=100", NULL, 400);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(json_object_get(e, "error"), "message")),
                       "--max-sync-rows");
    json_decref(e);
}

/* Four identical synchronous requests at once: one simulation (the episodes counter moves
 * by one request's episodes), the other three wait for it without a worker, same answer. */
static void test_identical_requests_computed_once(const test_daemon *d) {
    double before = http_metric(d, "metalignd_episodes_simulated_total");
    bg_call c[IDENTICAL];
    for (int i = 0; i < IDENTICAL; i++) {
        bg_start(&c[i], d, "POST", "/v1/learning-curves", SHARED_CURVES);
    }
    /* all four suspended together: one computing, three waiting for it */
    int together =
        http_metric_wait(d, "metalignd_http_suspended", IDENTICAL, IDENTICAL, 10, NULL) == 0;
    for (int i = 0; i < IDENTICAL; i++) pthread_join(c[i].t, NULL);
    double after = http_metric(d, "metalignd_episodes_simulated_total");
    CHECK_MSG(together, "the four requests never waited together");
    CHECK_MSG(after - before == 3000, "%.0f episodes simulated for %d identical requests",
              after - before, IDENTICAL);
    for (int i = 0; i < IDENTICAL; i++) {
        CHECK(c[i].rc == 0 && c[i].r.status == 200);
        CHECK(c[i].r.len == c[0].r.len && c[i].r.body && c[0].r.body &&
              memcmp(c[i].r.body, c[0].r.body, c[0].r.len) == 0);
    }
    for (int i = 0; i < IDENTICAL; i++) http_reply_free(&c[i].r);
}

/* With one compute thread, a long job still leaves a worker for interactive requests. */
static void test_one_thread_keeps_an_interactive_worker(void) {
    const char *args[] = {"--config", demo_config(), "--cache-dir", path_in("cache-one"),
                          "--threads", "1", NULL};
    test_daemon d;
    REQUIRE(daemon_start(&d, args) == 0);
    json_t *job = call(&d, "POST", "/v1/learning-curves?async=true", LONG_CURVES_SEED("403"), 202);
    const char *url = json_string_value(json_object_get(job, "status_url"));
    json_t *running = url ? wait_job(&d, url, "running", 30) : NULL;
    json_decref(running);
    http_reply r;
    CHECK(http_call(&d, "POST", "/v1/learning-curves", SMALL_CURVES, &r) == 0 && r.status == 200);
    printf("# --threads 1, a job running: a small request took %.0f ms\n", r.seconds * 1e3);
    CHECK_MSG(r.seconds < 10, "the small request took %.1f s", r.seconds);
    http_reply_free(&r);
    json_t *still = url ? call(&d, "GET", url, NULL, 200) : NULL;
    CHECK(still && !strcmp(status_of_job(still), "running"));
    json_decref(still);
    json_decref(job);
    CHECK(daemon_stop(&d, SIGTERM) == 0);
}

static int is_rfc3339(const char *s) {
    return s && strlen(s) == 20 && s[4] == '-' && s[10] == 'T' && s[19] == 'Z';
}

/* DELETE of a running job says the cancel was requested; the job then reads "cancelled";
 * DELETE of a finished job removes it. Times are RFC 3339; a refused job has Retry-After. */
static void test_delete_and_job_states(const test_daemon *d) {
    json_t *acc = call(d, "POST", "/v1/learning-curves?async=true", LONG_CURVES_SEED("404"), 202);
    const char *url = json_string_value(json_object_get(acc, "status_url"));
    REQUIRE(url != NULL);
    json_t *running = wait_job(d, url, "running", 30);
    CHECK(running && is_rfc3339(json_string_value(json_object_get(running, "created_at"))));
    CHECK(running && is_rfc3339(json_string_value(json_object_get(running, "started_at"))));
    CHECK(running && json_is_false(json_object_get(running, "cancel_requested")));
    json_decref(running);
    json_t *del = call(d, "DELETE", url, NULL, 200);
    const char *s = status_of_job(del);
    CHECK(json_is_true(json_object_get(del, "cancel_requested")));
    CHECK_MSG(s && (!strcmp(s, "cancelled") ||
                    (!strcmp(s, "running") && json_string_value(json_object_get(del, "note")))),
              "DELETE answered status %s without saying a cancel was requested", s ? s : "?");
    json_decref(del);
    json_t *gone = wait_job(d, url, "cancelled", 30);
    CHECK(gone && is_rfc3339(json_string_value(json_object_get(gone, "finished_at"))));
    CHECK(gone && json_object_get(gone, "result") == NULL);
    json_decref(gone);
    del = call(d, "DELETE", url, NULL, 200);
    CHECK(json_is_true(json_object_get(del, "deleted")));
    json_decref(del);
    json_t *nf = call(d, "GET", url, NULL, 404);
    json_decref(nf);
    json_decref(acc);
}

/* The result budget holds one finished job's 620 kB result, not two: the second fails with a
 * message naming the flag; DELETE of the first frees it and the second, submitted again,
 * then fits. */
static void test_job_results_share_the_budget(void) {
    const char *args[] = {"--config", demo_config(), "--cache-dir", path_in("cache-budget"),
                          "--result-cache-bytes", BUDGET, "--max-jobs", "1", NULL};
    test_daemon d;
    REQUIRE(daemon_start(&d, args) == 0);
    json_t *a = call(&d, "POST", "/v1/learning-curves?async=true", JOB_RESULT("1"), 202);
    const char *ua = json_string_value(json_object_get(a, "status_url"));
    json_t *done = ua ? wait_job(&d, ua, "done", 60) : NULL;
    json_decref(done);
    double held = http_metric(&d, "metalignd_result_cache_job_bytes");
    CHECK_MSG(held > 500000 && held <= 1048576, "%.0f bytes held for the job", held);
    /* one job at a time (--max-jobs 1): a second while the first runs gets 503 + Retry-After */
    json_t *b = call(&d, "POST", "/v1/learning-curves?async=true", JOB_RESULT("2"), 202);
    const char *ub = json_string_value(json_object_get(b, "status_url"));
    json_t *failed = ub ? wait_job(&d, ub, "failed", 60) : NULL;
    const char *code = json_string_value(json_object_get(json_object_get(failed, "error"), "code"));
    CHECK_MSG(code && !strcmp(code, "memory_budget"), "code %s", code ? code : "(none)");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(json_object_get(failed, "error"), "message")),
                       "--result-cache-bytes");
    json_decref(failed);
    CHECK(http_metric(&d, "metalignd_result_cache_bytes") <= 1048576);
    json_t *del = ua ? call(&d, "DELETE", ua, NULL, 200) : NULL;
    CHECK(json_is_true(json_object_get(del, "deleted")));
    json_decref(del);
    CHECK(http_metric(&d, "metalignd_result_cache_job_bytes") == 0);
    json_t *b2 = call(&d, "POST", "/v1/learning-curves?async=true", JOB_RESULT("2"), 202);
    const char *ub2 = json_string_value(json_object_get(b2, "status_url"));
    done = ub2 ? wait_job(&d, ub2, "done", 60) : NULL;
    CHECK(done && json_is_object(json_object_get(done, "result")));
    json_decref(done);
    /* --max-jobs 1 with a job running: the next is refused with 503 and Retry-After */
    json_t *l = call(&d, "POST", "/v1/learning-curves?async=true", LONG_CURVES_SEED("405"), 202);
    http_reply r;
    CHECK(http_call(&d, "POST", "/v1/learning-curves?async=true", LONG_CURVES_SEED("406"), &r) == 0);
    CHECK(r.status == 503 && r.retry_after > 0);
    http_reply_free(&r);
    json_decref(l);
    json_decref(a);
    json_decref(b);
    json_decref(b2);
    CHECK(daemon_stop(&d, SIGTERM) == 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(tmp)) return 1;
    const char *args[] = {"--config", demo_config(), "--cache-dir", path_in("cache"), "--threads",
                          "2", "--max-sync-rows", "20000000", NULL};
    test_daemon d;
    if (daemon_start(&d, args) != 0) {
        printf("not ok 1 - the daemon starts: %s\n1..1\n", d.log);
        return 1;
    }
    RUN_WITH(test_abandoned_work_stops, &d);
    RUN_WITH(test_identical_requests_computed_once, &d);
    RUN_WITH(test_delete_and_job_states, &d);
    CHECK(daemon_stop(&d, SIGTERM) == 0);
    const char *small[] = {"--config", demo_config(), "--cache-dir", path_in("cache-small"), NULL};
    if (daemon_start(&d, small) == 0) {
        RUN_WITH(test_sync_size_bound, &d);
        CHECK(daemon_stop(&d, SIGTERM) == 0);
    } else {
        CHECK_MSG(0, "the daemon with the default --max-sync-rows starts: %s", d.log);
    }
    RUN(test_one_thread_keeps_an_interactive_worker);
    RUN(test_job_results_share_the_budget);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    curl_global_cleanup();
    return UT_DONE();
}
