/* Start-up and shutdown as an orchestrator sees them: the daemon listens before it has loaded
 * (/healthz 200, /readyz and the model routes 503 with Retry-After), and SIGTERM ends it with
 * exit 0 within the grace even when a long synchronous simulation, requests waiting for it,
 * or a download from a stalled upstream are still running (libmicrohttpd aborted the process
 * when stopped with suspended connections). */
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "daemon.h"
#include "human_test.h"
#include "rawhttp.h"
#include "testsrv.h"

#define GRACE "4"           /* --shutdown-grace of these daemons, seconds */
#define GRACE_SECONDS 4.0
#define EXIT_SLACK 1.5      /* seconds beyond the grace an exit may take on a loaded machine */
/* 100,000 episodes of 200 trials: minutes of work on the demo, never finished here */
#define LONG_CURVES "{\"episodes\": 100000, \"seq_len\": 200, \"seed\": 7}"

static char tmp[] = "/tmp/metalign-shutdown-XXXXXX";

static char *path_in(const char *name) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 512, "%s/%s", tmp, name);
    return p;
}

static long status_of(const test_daemon *d, const char *path) {
    http_reply r;
    long s = http_call(d, "GET", path, NULL, &r) == 0 ? r.status : -1;
    http_reply_free(&r);
    return s;
}

/* The answer was a 503 with Retry-After and an error code. */
static void expect_shutdown_answer(bg_call *c, const char *what) {
    pthread_join(c->t, NULL);
    CHECK_MSG(c->rc == 0, "%s: no answer at all", what);
    CHECK_MSG(c->r.status == 503, "%s: status %ld: %.200s", what, c->r.status,
              c->r.body ? c->r.body : "");
    CHECK_MSG(c->r.retry_after > 0, "%s: no Retry-After", what);
    json_t *doc = http_json(&c->r);
    const char *code = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    CHECK_MSG(code != NULL, "%s: no error code: %.200s", what, c->r.body ? c->r.body : "");
    json_decref(doc);
    http_reply_free(&c->r);
}

/* The ids file is a FIFO the test fills when it chooses: until then the daemon is loading. */
static void test_listens_while_loading(void) {
    const char *fifo = path_in("ids.fifo");
    REQUIRE(mkfifo(fifo, 0600) == 0);
    const char *args[] = {"--config", demo_config(), "--item-ids", fifo, "--cache-dir",
                          path_in("cache"), NULL};
    test_daemon d;
    REQUIRE(daemon_spawn(&d, args) == 0);
    CHECK(status_of(&d, "/healthz") == 200);
    http_reply r;
    CHECK(http_call(&d, "GET", "/readyz", NULL, &r) == 0 && r.status == 503 && r.retry_after > 0);
    CHECK_STR_CONTAINS(r.body, "not_ready");
    http_reply_free(&r);
    CHECK(http_call(&d, "GET", "/v1/info", NULL, &r) == 0 && r.status == 503 && r.retry_after > 0);
    CHECK_STR_CONTAINS(r.body, "still loading");
    http_reply_free(&r);
    CHECK(http_call(&d, "POST", "/v1/learning-curves", "{}", &r) == 0 && r.status == 503);
    http_reply_free(&r);
    CHECK(http_call(&d, "GET", "/metrics", NULL, &r) == 0 && r.status == 200);
    CHECK_STR_CONTAINS(r.body, "metalignd_ready 0");
    http_reply_free(&r);
    /* now the ids arrive and loading completes */
    size_t len = 0;
    char *ids = read_file(ML_SOURCE_ROOT "/data/demo/unique_id.txt", &len);
    int fd = open(fifo, O_WRONLY);
    CHECK(ids && fd >= 0 && write(fd, ids, len) == (ssize_t)len);
    if (fd >= 0) close(fd);
    free(ids);
    CHECK(daemon_wait_ready(&d, 30) == 0);
    CHECK(status_of(&d, "/v1/info") == 200);
    CHECK(daemon_stop(&d, SIGTERM) == 0);
}

/* A synchronous simulation of minutes, SIGTERM a second in: /readyz turns 503 at once (the
 * daemon still serves), the simulation is cancelled before the grace ends and answered 503,
 * identical requests waiting for it too, and the exit is 0 within the grace. */
static void test_sigterm_during_long_request(void) {
    const char *args[] = {"--config", demo_config(), "--cache-dir", path_in("cache"),
                          "--max-sync-rows", "20000000", "--shutdown-grace", GRACE, NULL};
    test_daemon d;
    REQUIRE(daemon_start(&d, args) == 0);
    bg_call leader, waiter;
    bg_start(&leader, &d, "POST", "/v1/learning-curves", LONG_CURVES);
    CHECK(http_metric_wait(&d, "metalignd_http_suspended", 1, 1e9, 10, NULL) == 0);
    bg_start(&waiter, &d, "POST", "/v1/learning-curves", LONG_CURVES); /* waits for leader */
    CHECK(http_metric_wait(&d, "metalignd_http_suspended", 2, 1e9, 10, NULL) == 0);
    usleep(500000);
    double t0 = raw_now();
    kill(d.pid, SIGTERM);
    usleep(300000);
    http_reply r;
    CHECK(http_call(&d, "GET", "/readyz", NULL, &r) == 0 && r.status == 503);
    CHECK_STR_CONTAINS(r.body, "shutting_down");
    http_reply_free(&r);
    CHECK(status_of(&d, "/healthz") == 200);
    int rc = daemon_stop(&d, 0);
    double took = raw_now() - t0;
    printf("# SIGTERM with a long synchronous simulation in flight: exit %d after %.2f s "
           "(grace %s s)\n", rc, took, GRACE);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, d.log);
    CHECK_MSG(took < GRACE_SECONDS + EXIT_SLACK, "the exit took %.2f s", took);
    CHECK_STR_CONTAINS(d.log, "stopped");
    expect_shutdown_answer(&leader, "the simulation");
    expect_shutdown_answer(&waiter, "the identical request waiting for it");
}

/* An upstream that sends headers and then nothing: the download (60 s timeout) is abandoned
 * at the shutdown, the request waiting on it and one waiting for that download are answered,
 * and the exit is 0 within the grace. */
static void test_sigterm_during_stalled_download(void) {
    testsrv *srv = testsrv_start();
    REQUIRE(srv != NULL);
    testsrv_set_body(srv, "participant,trial,dimension,correct\nP1,0,0,True\n", 48);
    testsrv_set_stall_ms(srv, 60000);
    testsrv_set_mode(srv, "stall");
    char url[256];
    testsrv_url(srv, "/data.csv", url, sizeof url);
    const char *args[] = {"--config", demo_config(), "--cache-dir", path_in("cache-stall"),
                          "--human-url", url, "--human-timeout", "60", "--shutdown-grace",
                          GRACE, NULL};
    test_daemon d;
    if (daemon_start(&d, args) != 0) {
        testsrv_stop(srv);
        CHECK_MSG(0, "daemon: %s", d.log);
        return;
    }
    bg_call fetching, waiting;
    bg_start(&fetching, &d, "GET", "/v1/human/learning-curves", NULL);
    CHECK(http_metric_wait(&d, "metalignd_http_suspended", 1, 1e9, 10, NULL) == 0);
    bg_start(&waiting, &d, "GET", "/v1/human/learning-curves?max_trial=5", NULL);
    CHECK(http_metric_wait(&d, "metalignd_http_suspended", 2, 1e9, 10, NULL) == 0);
    usleep(500000);
    double t0 = raw_now();
    int rc = daemon_stop(&d, SIGTERM);
    double took = raw_now() - t0;
    printf("# SIGTERM with a stalled download in flight: exit %d after %.2f s\n", rc, took);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, d.log);
    CHECK_MSG(took < GRACE_SECONDS + EXIT_SLACK, "the exit took %.2f s", took);
    expect_shutdown_answer(&fetching, "the request running the download");
    expect_shutdown_answer(&waiting, "the request waiting for the download");
    testsrv_stop(srv);
}

int main(void) {
    unset_proxies();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(tmp)) return 1;
    RUN(test_listens_while_loading);
    RUN(test_sigterm_during_long_request);
    RUN(test_sigterm_during_stalled_download);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    curl_global_cleanup();
    return UT_DONE();
}
