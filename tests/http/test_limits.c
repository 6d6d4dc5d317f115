/* What a hostile or careless client cannot do to the daemon: starve other clients with idle
 * connections from one address, hold a connection by sending a byte now and then, upload a
 * chunked body forever, make the daemon hold one copy of a large answer per client that never
 * reads it, or get libmicrohttpd's HTML (or its headers twice) instead of a JSON error; and
 * %00 cannot silently cut a path or an argument. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "daemon.h"
#include "rawhttp.h"
#include "unit.h"

#define IDLE_SOCKETS 1100     /* idle connections opened from one address */
#define PER_IP 128            /* the daemon's default --max-connections-per-ip */
#define READ_TIMEOUT "2"      /* --read-timeout of the deadline daemon */
#define SLOW_CLIENTS 40       /* clients that never read */
#define SMALL_RCVBUF 4096     /* their receive buffer: the answer stays in the daemon */
/* an include_episodes answer of about 8 MB: more than the kernel's socket buffers hold */
#define BIG_CURVES "{\"episodes\": 4000, \"seq_len\": 100, \"include_episodes\": true, \"n_boot\": 0}"

static char tmp[] = "/tmp/metalign-limits-XXXXXX";
static char cache[600];

static long vm_rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

/* One raw request; its whole answer into buf (the connection is closed). */
static int raw_request(int port, const char *text, char *buf, size_t cap) {
    int fd = raw_connect(NULL, port, 0);
    if (fd < 0) return -1;
    raw_send_str(fd, text);
    ssize_t n = raw_read(fd, buf, cap, 3000);
    close(fd);
    return n > 0 ? raw_status(buf) : -1;
}

/* The answer is one JSON error with this code (and exactly one status line). */
static void expect_json_error(const char *answer, int status, const char *code, const char *what) {
    CHECK_MSG(raw_status(answer) == status, "%s: status %d, expected %d: %.300s", what,
              raw_status(answer), status, answer);
    CHECK_MSG(raw_status_lines(answer) == 1, "%s: %d status lines: %.600s", what,
              raw_status_lines(answer), answer);
    CHECK_MSG(strstr(answer, "Content-Type: application/json") != NULL, "%s: not JSON: %.300s",
              what, answer);
    const char *body = raw_body(answer);
    json_t *doc = body ? json_loads(body, 0, NULL) : NULL;
    const char *c = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    CHECK_MSG(c && !strcmp(c, code), "%s: code %s, expected %s; the answer (%zu bytes): %.600s", what,
              c ? c : "(none)", code, strlen(answer), answer);
    CHECK_MSG(json_string_value(json_object_get(json_object_get(doc, "error"), "message")) != NULL,
              "%s: no message", what);
    json_decref(doc);
}

/* 1,100 connections from 127.0.0.2 that send nothing: the address gets its 128, the rest are
 * closed at once, and a client from 127.0.0.1 is served as if nothing happened. */
static void test_idle_sockets_from_one_address(const test_daemon *d) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int n = IDLE_SOCKETS;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)n + 64) {
        n = (int)rl.rlim_cur - 64;
        printf("# only %d idle sockets: the file descriptor limit is %llu\n", n,
               (unsigned long long)rl.rlim_cur);
    }
    REQUIRE(n > PER_IP);
    int *fds = malloc(sizeof *fds * (size_t)n);
    int opened = 0;
    for (int i = 0; i < n; i++)
        if ((fds[i] = raw_connect("127.0.0.2", d->port, 0)) >= 0) opened++;
    CHECK_MSG(opened == n, "%d of %d connects", opened, n);
    usleep(500000);
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        http_reply r;
        CHECK(http_call(d, "GET", "/healthz", NULL, &r) == 0 && r.status == 200);
        if (r.seconds > worst) worst = r.seconds;
        http_reply_free(&r);
    }
    int open_now = 0;
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0 && !raw_closed(fds[i], 0)) open_now++;
    printf("# %d idle sockets from 127.0.0.2: %d kept open; slowest /healthz from 127.0.0.1 "
           "%.1f ms\n", n, open_now, worst * 1e3);
    CHECK_MSG(open_now <= PER_IP, "%d connections kept from one address", open_now);
    CHECK_MSG(open_now >= PER_IP / 2, "only %d kept: is the limit too low?", open_now);
    CHECK_MSG(worst < 1.0, "/healthz took %.3f s", worst);
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(fds);
}

/* A client sending its headers, or its body, one byte every 0.4 s: MHD's own timeout would
 * restart on every byte; the deadline counts from the start. */
static void test_trickle_cannot_extend_the_deadline(void) {
    char dir[700];
    snprintf(dir, sizeof dir, "%s/cache-deadline", tmp);
    const char *args[] = {"--config", demo_config(), "--cache-dir", dir, "--read-timeout",
                          READ_TIMEOUT, NULL};
    test_daemon d;
    REQUIRE(daemon_start(&d, args) == 0);
    const double limit = atof(READ_TIMEOUT) + 1.5;
    /* headers */
    int fd = raw_connect(NULL, d.port, 0);
    const char *head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa";
    double t0 = raw_now(), closed_at = 0;
    for (const char *p = head; *p && !closed_at; p++) {
        if (raw_send(fd, p, 1) != 0 || raw_closed(fd, 400)) closed_at = raw_now() - t0;
    }
    close(fd);
    printf("# header trickle closed after %.2f s (--read-timeout %s)\n", closed_at, READ_TIMEOUT);
    CHECK_MSG(closed_at > 0 && closed_at < limit, "closed after %.2f s", closed_at);
    /* body: a 408 says why */
    fd = raw_connect(NULL, d.port, 0);
    raw_send_str(fd, "POST /v1/activations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     "\r\nContent-Length: 200\r\n\r\n{\"items\":");
    char answer[4096] = "";
    t0 = raw_now();
    for (int i = 0; i < 40 && !answer[0]; i++) {
        raw_send(fd, " ", 1);
        raw_read(fd, answer, sizeof answer, 400);
    }
    double took = raw_now() - t0;
    close(fd);
    printf("# body trickle answered after %.2f s\n", took);
    expect_json_error(answer, 408, "request_timeout", "body trickle");
    CHECK_STR_CONTAINS(answer, "--read-timeout");
    CHECK_MSG(took < limit, "answered after %.2f s", took);
    /* a normal request on a new connection is unaffected */
    http_reply r;
    CHECK(http_call(&d, "GET", "/healthz", NULL, &r) == 0 && r.status == 200);
    http_reply_free(&r);
    CHECK(daemon_stop(&d, SIGTERM) == 0);
}

/* A chunked body over --max-body-bytes is refused when it crosses the limit, not read to
 * its end (which never comes). */
static void test_chunked_body_over_the_limit(const test_daemon *d) {
    int fd = raw_connect(NULL, d->port, 0);
    REQUIRE(fd >= 0);
    raw_send_str(fd, "POST /v1/activations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     "\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[1100];
    memset(chunk, ' ', sizeof chunk);
    memcpy(chunk, "3e8\r\n", 5);
    memcpy(chunk + 5 + 1000, "\r\n", 2);
    for (int i = 0; i < 5; i++) raw_send(fd, chunk, 5 + 1000 + 2); /* 5,000 bytes > 4,096 */
    char answer[4096];
    double t0 = raw_now();
    raw_read(fd, answer, sizeof answer, 3000);
    double took = raw_now() - t0;
    close(fd);
    expect_json_error(answer, 413, "body_too_large", "chunked upload");
    CHECK_STR_CONTAINS(answer, "4096");
    CHECK_MSG(took < 2.5, "the 413 took %.2f s", took);
}

/* libmicrohttpd's own refusals, each a JSON error with one status line. */
static void test_mhd_refusals_are_json(const test_daemon *d) {
    char answer[8192];
    static const struct {
        const char *what, *request;
        int status;
        const char *code;
    } cases[] = {
        {"HTTP/2.5", "GET /healthz HTTP/2.5\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"},
        {"Content-Length: abc", "POST /v1/activations HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
         400, "bad_request"},
        {"an endless Content-Length", "POST /v1/activations HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 99999999999999999999999\r\n\r\n", 413, "body_too_large"},
        {"a header line without a colon", "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
         400, "bad_request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        raw_request(d->port, cases[i].request, answer, sizeof answer);
        expect_json_error(answer, cases[i].status, cases[i].code, cases[i].what);
        CHECK_MSG(!strstr(answer, "<html>"), "%s: HTML", cases[i].what);
    }
    /* more than the 32 KiB a connection keeps for a request's line and headers */
    size_t big = 40000;
    char *req = malloc(big + 200);
    snprintf(req, big + 200, "GET /v1/items?x=%0*d HTTP/1.1\r\nHost: x\r\n\r\n", (int)big, 0);
    raw_request(d->port, req, answer, sizeof answer);
    expect_json_error(answer, 414, "uri_too_long", "a 40 kB request line");
    snprintf(req, big + 200, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %0*d\r\n\r\n", (int)big, 0);
    raw_request(d->port, req, answer, sizeof answer);
    expect_json_error(answer, 431, "headers_too_large", "a 40 kB header");
    free(req);
}

static void test_nul_is_refused(const test_daemon *d) {
    char answer[8192];
    raw_request(d->port, "GET /healthz%00.html HTTP/1.1\r\nHost: x\r\n\r\n", answer, sizeof answer);
    expect_json_error(answer, 400, "nul_in_uri", "%00 in the path");
    raw_request(d->port, "GET /v1/items?limit=1%002 HTTP/1.1\r\nHost: x\r\n\r\n", answer,
                sizeof answer);
    expect_json_error(answer, 400, "nul_in_uri", "%00 in an argument");
    /* the same without %00 is fine */
    CHECK(raw_request(d->port, "GET /v1/items?limit=12 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                      answer, sizeof answer) == 200);
}

/* 40 clients that ask for the same 8 MB answer and never read it: the daemon sends the one
 * cached copy to all of them (in flight once, not 40 times) and its memory barely moves. */
static void test_slow_readers_share_one_copy(const test_daemon *d) {
    http_reply r;
    REQUIRE(http_call(d, "POST", "/v1/learning-curves", BIG_CURVES, &r) == 0 && r.status == 200);
    size_t size = r.len;
    http_reply_free(&r);
    long before = vm_rss_kb(d->pid);
    char request[512];
    snprintf(request, sizeof request,
             "POST /v1/learning-curves HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s", strlen(BIG_CURVES), BIG_CURVES);
    int fds[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        fds[i] = raw_connect(NULL, d->port, SMALL_RCVBUF);
        CHECK(fds[i] >= 0 && raw_send_str(fds[i], request) == 0);
    }
    usleep(1500000);
    long after = vm_rss_kb(d->pid);
    double held = http_metric(d, "metalignd_http_inflight_bytes");
    printf("# %d non-reading clients on a %.1f MB answer: RSS %ld -> %ld MB, %.1f MB held "
           "for them\n", SLOW_CLIENTS, size / 1e6, before >> 10, after >> 10, held / 1e6);
    CHECK_MSG(held >= (double)size && held < 2.0 * (double)size,
              "%.0f bytes in flight for a %zu-byte answer", held, size);
    CHECK_MSG(after - before < (long)(5 * size / 1024), "RSS grew by %ld kB", after - before);
    for (int i = 0; i < SLOW_CLIENTS; i++)
        if (fds[i] >= 0) close(fds[i]);
    double left;
    CHECK_MSG(http_metric_wait(d, "metalignd_http_inflight_bytes", 0, 64 * 1024, 30, &left) == 0,
              "%.0f bytes still in flight 30 s after the clients left", left);
}

/* Distinct large answers beyond --max-inflight-bytes wait with 503 + Retry-After while one
 * client does not read; small answers always pass; the retry succeeds once it is gone. */
static void test_inflight_bound(void) {
    char dir[700];
    snprintf(dir, sizeof dir, "%s/cache-inflight", tmp);
    const char *args[] = {"--config", demo_config(), "--cache-dir", dir, "--max-inflight-bytes",
                          "1048576", NULL};
    test_daemon d;
    REQUIRE(daemon_start(&d, args) == 0);
    /* 4,096 items, every layer: about 10 MB of JSON, computed fresh for every request */
    size_t cap = 4096 * 4 + 64;
    char *body = malloc(cap);
    size_t n = (size_t)snprintf(body, cap, "{\"items\": [");
    for (int i = 0; i < 4096; i++) n += (size_t)snprintf(body + n, cap - n, "%s%d", i ? "," : "", i % 400);
    snprintf(body + n, cap - n, "]}");
    char request[512];
    snprintf(request, sizeof request,
             "POST /v1/activations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n", strlen(body));
    int slow = raw_connect(NULL, d.port, SMALL_RCVBUF);
    CHECK(raw_send_str(slow, request) == 0 && raw_send_str(slow, body) == 0);
    /* The slow client's answer is computed first (seconds on a loaded machine); only once it
     * holds the bound can the next large answer be refused. */
    double t0 = raw_now();
    double held;
    int holds = http_metric_wait(&d, "metalignd_http_inflight_bytes", 1048576, 1e12, 60, &held);
    printf("# the non-reading client's answer held %.1f MB after %.2f s\n", held / 1e6,
           raw_now() - t0);
    if (holds != 0) { /* say what the slow client got instead */
        char got[256];
        ssize_t len = raw_read(slow, got, sizeof got - 1, 200);
        got[len > 0 ? len : 0] = 0;
        CHECK_MSG(0, "the non-reading client's answer never held the bound (%.0f bytes in "
                  "flight after 60 s); it got %zd bytes: %.120s", held, len, got);
    }
    http_reply r;
    CHECK(http_call(&d, "POST", "/v1/activations", body, &r) == 0);
    CHECK_MSG(r.status == 503 && r.retry_after > 0, "status %ld, Retry-After %d", r.status,
              r.retry_after);
    CHECK_STR_CONTAINS(r.body, "--max-inflight-bytes");
    http_reply_free(&r);
    CHECK(http_call(&d, "GET", "/healthz", NULL, &r) == 0 && r.status == 200);
    http_reply_free(&r);
    close(slow);
    double left;
    CHECK_MSG(http_metric_wait(&d, "metalignd_http_inflight_bytes", 0, 64 * 1024, 30, &left) == 0,
              "%.0f bytes still in flight 30 s after the slow client left", left);
    CHECK(http_call(&d, "POST", "/v1/activations", body, &r) == 0 && r.status == 200);
    CHECK(r.len > 1048576);
    http_reply_free(&r);
    free(body);
    CHECK(daemon_stop(&d, SIGTERM) == 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(tmp)) return 1;
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    const char *args[] = {"--config", demo_config(), "--cache-dir", cache, "--max-body-bytes",
                          "4096", NULL};
    test_daemon d;
    if (daemon_start(&d, args) != 0) {
        printf("not ok 1 - the daemon starts: %s\n1..1\n", d.log);
        return 1;
    }
    RUN_WITH(test_idle_sockets_from_one_address, &d);
    RUN_WITH(test_chunked_body_over_the_limit, &d);
    RUN_WITH(test_mhd_refusals_are_json, &d);
    RUN_WITH(test_nul_is_refused, &d);
    RUN_WITH(test_slow_readers_share_one_copy, &d);
    int rc = daemon_stop(&d, SIGTERM);
    CHECK_MSG(rc == 0, "exit %d", rc);
    RUN(test_trickle_cannot_extend_the_deadline);
    RUN(test_inflight_bound);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    curl_global_cleanup();
    return UT_DONE();
}
