/* ml_fetch_to_fd against the loopback test server: a plain download, a redirect, conditional
 * GETs (ETag and Last-Modified), and every failure with its code and a message naming the
 * cause. No internet and no DNS: URLs name 127.0.0.1, and the host names of the DNS cases are
 * answered (or refused) by the request's own resolver override, never looked up. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#include "human_test.h"
#include "engine/human_store.h"
#include "metalign/fetch.h"
#include "testsrv.h"

static testsrv *srv;
static char *body;
static size_t body_len;
static char body_sha[ML_SHA256_HEX_LEN];

typedef struct fetched {
    int rc;
    ml_fetch_result res;
    ml_err err;
    char *data;   /* what was written */
    size_t len;
    double seconds;
} fetched;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* How the fetch resolves host names: as usual (numeric URLs need no lookup), or only from
 * the given "host:port:address" answers. */
typedef struct dns {
    const char *const *resolve;
    int resolve_only;
} dns;
static const dns usual_dns = {NULL, 0};

static void fetch_dns(const char *url, const char *etag, const char *lm, size_t max_bytes,
                      const dns *names, fetched *f) {
    memset(f, 0, sizeof *f);
    char path[] = "/tmp/mlfetch-XXXXXX";
    int fd = mkstemp(path);
    CHECK_MSG(fd >= 0, "mkstemp: %s", strerror(errno));
    ml_fetch_request rq = {.url = url, .user_agent = ML_HUMAN_USER_AGENT,
                           .connect_timeout_ms = 2000, .total_timeout_ms = 1000,
                           .max_bytes = max_bytes, .etag = etag, .last_modified = lm,
                           .resolve = names->resolve, .resolve_only = names->resolve_only};
    double t0 = now_s();
    f->rc = ml_fetch_to_fd(&rq, fd, &f->res, &f->err);
    f->seconds = now_s() - t0;
    close(fd);
    f->data = read_file(path, &f->len);
    unlink(path);
}

static void fetch(const char *url, const char *etag, const char *lm, size_t max_bytes,
                  fetched *f) {
    fetch_dns(url, etag, lm, max_bytes, &usual_dns, f);
}

static void done(fetched *f) { free(f->data); }

static void url(const char *path, char *out) { testsrv_url(srv, path, out, 256); }

static void test_download(void) {
    char u[256];
    url("/data.csv", u);
    fetched f;
    fetch(u, NULL, NULL, 1 << 20, &f);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK(f.res.code == ML_FETCH_OK && f.res.http_status == 200 && !f.res.not_modified);
    CHECK(f.res.bytes == body_len && f.len == body_len);
    CHECK(f.data && memcmp(f.data, body, body_len) == 0);
    CHECK(strcmp(f.res.sha256, body_sha) == 0);
    CHECK(strcmp(f.res.etag, "\"v1\"") == 0);
    CHECK_STR_CONTAINS(f.res.last_modified, "GMT");
    CHECK(strcmp(f.res.content_type, "text/csv") == 0);
    char ua[256];
    testsrv_last_user_agent(srv, ua, sizeof ua);
    CHECK(strncmp(ua, "metalignd/", 10) == 0);
    done(&f);
}

static void test_redirect(void) {
    char u[256];
    url("/redirect", u);
    int before = testsrv_count(srv, "/data.csv");
    fetched f;
    fetch(u, NULL, NULL, 1 << 20, &f);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK(strcmp(f.res.sha256, body_sha) == 0 && f.len == body_len);
    CHECK_STR_CONTAINS(f.res.effective_url, "/data.csv");
    CHECK(testsrv_count(srv, "/data.csv") == before + 1);
    /* The validators are the final response's, not the redirect's. */
    CHECK(strcmp(f.res.etag, "\"v1\"") == 0);
    done(&f);
}

static void test_conditional(void) {
    char u[256];
    url("/data.csv", u);
    fetched f;
    fetch(u, NULL, NULL, 1 << 20, &f);
    char etag[256], lm[128];
    snprintf(etag, sizeof etag, "%s", f.res.etag);
    snprintf(lm, sizeof lm, "%s", f.res.last_modified);
    done(&f);
    int n304 = testsrv_not_modified(srv);

    fetch(u, etag, NULL, 1 << 20, &f);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK(f.res.not_modified && f.res.http_status == 304 && f.res.bytes == 0 && f.len == 0);
    done(&f);

    fetch(u, "\"v0\"", NULL, 1 << 20, &f); /* an outdated ETag gets the body */
    CHECK(f.rc == 0 && !f.res.not_modified && f.res.bytes == body_len);
    done(&f);

    char ulm[256];
    url("/lm.csv", ulm);
    fetch(ulm, NULL, lm, 1 << 20, &f);
    CHECK_MSG(f.rc == 0 && f.res.not_modified, "%s", f.err.msg);
    CHECK(f.res.etag[0] == 0);
    done(&f);
    CHECK(testsrv_not_modified(srv) == n304 + 2);
}

/* Fetches path (in mode) and checks the code and message. */
static void expect_failure_dns(const dns *names, const char *path, const char *mode,
                               size_t max_bytes, ml_fetch_code code, const char *a,
                               const char *b) {
    char u[256];
    if (strstr(path, "://"))
        snprintf(u, sizeof u, "%s", path);
    else
        url(path, u);
    testsrv_set_mode(srv, mode);
    fetched f;
    fetch_dns(u, NULL, NULL, max_bytes, names, &f);
    testsrv_set_mode(srv, "ok");
    CHECK_MSG(f.rc == -1, "%s (%s) did not fail", path, mode);
    CHECK_MSG(f.res.code == code, "%s (%s): code %s, expected %s: %s", path, mode,
              ml_fetch_code_name(f.res.code), ml_fetch_code_name(code), f.err.msg);
    CHECK_STR_CONTAINS(f.err.msg, u);
    CHECK_STR_CONTAINS(f.err.msg, a);
    if (b) CHECK_STR_CONTAINS(f.err.msg, b);
    CHECK_MSG(f.len <= max_bytes, "%zu bytes written past the cap", f.len);
    CHECK_MSG(f.seconds < 2.5, "%s (%s) took %.2f s", path, mode, f.seconds);
    printf("# %-28s %-12s -> %s: %s\n", path, mode, ml_fetch_code_name(f.res.code), f.err.msg);
    done(&f);
}

static void expect_failure(const char *path, const char *mode, size_t max_bytes,
                           ml_fetch_code code, const char *a, const char *b) {
    expect_failure_dns(&usual_dns, path, mode, max_bytes, code, a, b);
}

static void test_http_errors(void) {
    expect_failure("/404", "ok", 1 << 20, ML_FETCH_E_STATUS, "HTTP 404", NULL);
    expect_failure("/500", "ok", 1 << 20, ML_FETCH_E_STATUS, "HTTP 500", NULL);
    expect_failure("/data.csv", "404", 1 << 20, ML_FETCH_E_STATUS, "HTTP 404", NULL);
    expect_failure("/redirect", "500", 1 << 20, ML_FETCH_E_STATUS, "HTTP 500", "after redirects");
    expect_failure("/redirect-loop", "ok", 1 << 20, ML_FETCH_E_REDIRECTS, "too many redirects",
                   NULL);
}

static void test_stall_times_out(void) {
    expect_failure("/data.csv", "stall", 1 << 20, ML_FETCH_E_TIMEOUT, "timed out", "total 1.0 s");
}

static void test_truncated(void) {
    expect_failure("/data.csv", "truncate", 1 << 20, ML_FETCH_E_TRUNCATED,
                   "closed before the body was complete", NULL);
}

static void test_too_large(void) {
    expect_failure("/data.csv", "big", 1 << 20, ML_FETCH_E_TOO_LARGE, "limit of 1048576 bytes",
                   "announced");
    expect_failure("/data.csv", "big_chunked", 1 << 20, ML_FETCH_E_TOO_LARGE,
                   "limit of 1048576 bytes", "more arrived");
    /* The cap is exact: a body of exactly max_bytes passes, one byte less fails. */
    char u[256];
    url("/data.csv", u);
    fetched f;
    fetch(u, NULL, NULL, body_len, &f);
    CHECK(f.rc == 0 && f.len == body_len);
    done(&f);
    fetch(u, NULL, NULL, body_len - 1, &f);
    CHECK(f.rc == -1 && f.res.code == ML_FETCH_E_TOO_LARGE);
    done(&f);
}

static void test_refused_and_bad_url(void) {
    /* A port nobody listens on: bind one, note it, close it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    getsockname(fd, (struct sockaddr *)&a, &alen);
    close(fd);
    char u[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/data.csv", ntohs(a.sin_port));
    expect_failure(u, "ok", 1 << 20, ML_FETCH_E_REFUSED, "cannot connect", NULL);
    expect_failure("ftp://127.0.0.1/data.csv", "ok", 1 << 20, ML_FETCH_E_BAD_URL,
                   "not a usable URL", NULL);
}

/* A name the override answers is fetched from the loopback server; a name it does not
 * answer fails as a DNS failure at once, without a lookup (a real lookup of a .invalid name
 * depends on the machine's resolver: a black-holed one turns it into a timeout). */
static void test_dns_without_lookups(void) {
    char entry[128], u[256];
    snprintf(entry, sizeof entry, "metalignd-test.invalid:%d:127.0.0.1", testsrv_port(srv));
    const char *const answers[] = {entry, NULL};
    const dns only = {answers, 1};
    snprintf(u, sizeof u, "http://metalignd-test.invalid:%d/data.csv", testsrv_port(srv));
    fetched f;
    fetch_dns(u, NULL, NULL, 1 << 20, &only, &f);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK(f.len == body_len && strcmp(f.res.sha256, body_sha) == 0);
    done(&f);
    expect_failure_dns(&only, "http://unknown-host.metalignd-test.invalid/data.csv", "ok", 1 << 20,
                       ML_FETCH_E_DNS, "does not resolve", "DNS");
    /* resolve_only refuses IP literals too: nothing reaches a resolver or the network */
    snprintf(u, sizeof u, "http://127.0.0.1:%d/data.csv", testsrv_port(srv));
    int before = testsrv_count(srv, "/data.csv");
    expect_failure_dns(&only, u, "ok", 1 << 20, ML_FETCH_E_DNS, "does not resolve", NULL);
    CHECK_EQ_INT(testsrv_count(srv, "/data.csv"), before);
}

/* Only http and https are fetched: a file:// URL would let the daemon read a local file and
 * an error message show its first line to anonymous clients. */
static void test_file_url_refused(void) {
    char u[600];
    snprintf(u, sizeof u, "file://%s", FIXTURE("human/synthetic.csv"));
    fetched f;
    fetch(u, NULL, NULL, 1 << 20, &f);
    CHECK(f.rc != 0 && f.res.code == ML_FETCH_E_BAD_URL);
    CHECK(f.len == 0);
    done(&f);
    CHECK(!ml_fetch_url_allowed(u) && ml_fetch_url_allowed("HTTPS://example.org/x.csv") &&
          ml_fetch_url_allowed("http://127.0.0.1/x") && !ml_fetch_url_allowed("ftp://x/y"));
}

static int cancel_flag;

static void *raise_cancel(void *arg) {
    (void)arg;
    usleep(300000);
    __atomic_store_n(&cancel_flag, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* A stalled upstream is abandoned as soon as the cancel flag rises (a shutdown), long
 * before its timeout. */
static void test_cancel_stalled(void) {
    char u[256];
    url("/data.csv", u);
    testsrv_set_mode(srv, "stall");
    char path[] = "/tmp/mlfetch-XXXXXX";
    int fd = mkstemp(path);
    ml_fetch_request rq = {.url = u, .user_agent = ML_HUMAN_USER_AGENT,
                           .connect_timeout_ms = 2000, .total_timeout_ms = 20000,
                           .max_bytes = 1 << 20, .cancel = &cancel_flag};
    pthread_t t;
    pthread_create(&t, NULL, raise_cancel, NULL);
    ml_fetch_result res;
    ml_err err;
    double t0 = now_s();
    int rc = ml_fetch_to_fd(&rq, fd, &res, &err);
    double took = now_s() - t0;
    pthread_join(t, NULL);
    close(fd);
    unlink(path);
    testsrv_set_mode(srv, "ok");
    CHECK(rc != 0 && res.code == ML_FETCH_E_CANCELLED);
    CHECK_STR_CONTAINS(err.msg, "cancelled");
    CHECK_MSG(took < 3.0, "the cancelled download took %.2f s", took);
}

int main(void) {
    unset_proxies();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    srv = testsrv_start();
    body = read_file(FIXTURE("human/synthetic.csv"), &body_len);
    if (!srv || !body) {
        printf("Bail out! cannot start the test server or read %s\n", FIXTURE("human/synthetic.csv"));
        return 1;
    }
    ml_sha256_hex(body, body_len, body_sha);
    testsrv_set_body(srv, body, body_len);
    RUN(test_download);
    RUN(test_redirect);
    RUN(test_conditional);
    RUN(test_http_errors);
    RUN(test_stall_times_out);
    RUN(test_truncated);
    RUN(test_too_large);
    RUN(test_refused_and_bad_url);
    RUN(test_dns_without_lookups);
    RUN(test_file_url_refused);
    RUN(test_cancel_stalled);
    testsrv_stop(srv);
    free(body);
    curl_global_cleanup();
    return UT_DONE();
}
