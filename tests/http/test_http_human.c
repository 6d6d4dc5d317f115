/* The human-data endpoints of the daemon against a loopback server of our own (tests/support/
 * testsrv.c): first fetch, the curves against pandas, /v1/info, the comparison, refresh,
 * failures with and without a cached copy, and a restart served from disk. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "testsrv.h"
#include "unit.h"

static testsrv *srv;
static test_daemon d;
static char cache[] = "/tmp/metalign-human-XXXXXX";
static char url[256];
static json_t *ref;

static json_t *call(const char *method, const char *path, long status) {
    http_reply r;
    if (http_call(&d, method, path, NULL, &r) != 0) {
        CHECK_MSG(0, "%s %s: no reply", method, path);
        return NULL;
    }
    CHECK_MSG(r.status == status, "%s %s: status %ld, expected %ld: %.400s", method, path,
              r.status, status, r.body ? r.body : "");
    json_t *doc = http_json(&r);
    http_reply_free(&r);
    return doc;
}

static int start(const char *human_url, const char *cache_dir) {
    /* every refresh and every failed fetch may ask the upstream again here (test_upstream.c
     * covers the rate limit and the back-off) */
    const char *args[] = {"--config", demo_config(), "--human-url", human_url, "--cache-dir",
                          cache_dir, "--human-timeout", "3", "--human-min-refresh", "0",
                          "--human-retry-min", "0", NULL};
    int rc = daemon_start(&d, args);
    if (rc != 0) printf("# daemon did not start: %s\n", d.log);
    return rc;
}

static void test_first_fetch_matches_pandas(void) {
    json_t *info = call("GET", "/v1/info", 200);
    CHECK(json_is_false(json_object_get(json_object_get(info, "human"), "cached")));
    json_decref(info);
    testsrv_reset_counts(srv);
    json_t *doc = call("GET", "/v1/human/learning-curves?max_trial=99", 200);
    CHECK(testsrv_count(srv, "/data.csv") == 1);
    json_t *want = json_object_get(json_object_get(json_object_get(ref, "files"), "synthetic.csv"), "99");
    CHECK(json_integer_value(json_object_get(doc, "participants")) ==
          json_integer_value(json_object_get(want, "participants")));
    json_t *p = json_object_get(json_object_get(doc, "curve"), "p_correct");
    json_t *wp = json_object_get(json_object_get(want, "curve"), "p_correct");
    CHECK(json_array_size(p) == 100 && json_array_size(wp) == 100);
    for (size_t t = 0; t < json_array_size(wp); t++)
        CHECK_NEAR(json_number_value(json_array_get(p, t)), json_number_value(json_array_get(wp, t)), 1e-12, 1e-12);
    json_t *src = json_object_get(doc, "source");
    CHECK(!strcmp(json_string_value(json_object_get(src, "url")), url));
    CHECK(json_is_false(json_object_get(src, "from_cache")));
    CHECK(strlen(json_string_value(json_object_get(src, "sha256"))) == 64);
    CHECK(json_array_size(json_object_get(doc, "by_dimension")) >= 2);
    json_decref(doc);
    /* second call: memory, no download */
    doc = call("GET", "/v1/human/learning-curves?max_trial=99", 200);
    CHECK(testsrv_count(srv, "/data.csv") == 1);
    CHECK(json_is_true(json_object_get(json_object_get(doc, "source"), "from_cache")));
    json_decref(doc);
    info = call("GET", "/v1/info", 200);
    json_t *h = json_object_get(info, "human");
    CHECK(json_is_true(json_object_get(h, "cached")));
    CHECK(json_integer_value(json_object_get(h, "bytes")) > 1000);
    CHECK(json_is_string(json_object_get(h, "fetched_at")));
    json_decref(info);
}

static void test_compare(void) {
    json_t *doc = call("GET", "/v1/compare/learning-curves?episodes=24&seq_len=60&seed=2", 200);
    CHECK(json_integer_value(json_object_get(doc, "max_trial")) == 59);
    json_t *overall = json_object_get(doc, "overall");
    CHECK(json_array_size(json_object_get(json_object_get(overall, "model"), "p_correct")) == 60);
    CHECK(json_array_size(json_object_get(json_object_get(overall, "human"), "p_correct")) == 60);
    json_t *s = json_object_get(overall, "summary");
    double r = json_number_value(json_object_get(s, "pearson_r"));
    CHECK(r >= -1 && r <= 1);
    CHECK(json_number_value(json_object_get(s, "rmse")) >= 0);
    CHECK(json_is_number(json_object_get(s, "model_mean_p_correct")));
    CHECK(json_is_number(json_object_get(s, "human_mean_p_correct")));
    json_t *by = json_object_get(doc, "by_dimension");
    CHECK(json_array_size(by) >= 2);
    for (size_t i = 0; i < json_array_size(by); i++)
        CHECK(json_is_object(json_object_get(json_array_get(by, i), "summary")));
    CHECK(json_is_true(json_object_get(doc, "model_synthetic")));
    CHECK_STR_CONTAINS(json_string_value(json_array_get(json_object_get(doc, "notes"), 0)), "SYNTHETIC");
    json_decref(doc);
    doc = call("GET", "/v1/compare/learning-curves?seq_len=0", 400);
    json_decref(doc);
}

static void test_refresh_and_failure_keep_copy(void) {
    json_t *doc = call("POST", "/v1/human/refresh", 200);
    CHECK(json_is_true(json_object_get(doc, "refreshed")));
    json_decref(doc);
    testsrv_set_mode(srv, "500");
    doc = call("POST", "/v1/human/refresh", 200);
    CHECK(json_is_false(json_object_get(doc, "refreshed")));
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(doc, "error"), "code")), "upstream_status"));
    CHECK(json_is_true(json_object_get(json_object_get(doc, "source"), "stale")));
    json_decref(doc);
    doc = call("GET", "/v1/human/learning-curves", 200); /* still served */
    CHECK(json_is_true(json_object_get(json_object_get(doc, "source"), "stale")));
    json_decref(doc);
    testsrv_set_mode(srv, "ok");
}

static void test_restart_serves_disk_copy(void) {
    CHECK(daemon_stop(&d, SIGTERM) == 0);
    testsrv_set_mode(srv, "stall"); /* upstream unusable: the copy on disk must do */
    testsrv_reset_counts(srv);
    if (start(url, cache) != 0) {
        CHECK(0);
        return;
    }
    json_t *doc = call("GET", "/v1/human/learning-curves?max_trial=10", 200);
    CHECK(json_is_true(json_object_get(json_object_get(doc, "source"), "from_cache")));
    CHECK(testsrv_count(srv, "/data.csv") == 0);
    json_decref(doc);
    testsrv_set_mode(srv, "ok");
}

static void test_no_copy_is_503_with_cause(void) {
    CHECK(daemon_stop(&d, SIGTERM) == 0);
    char fresh[] = "/tmp/metalign-human-empty-XXXXXX";
    if (!mkdtemp(fresh) || start(url, fresh) != 0) {
        CHECK(0);
        return;
    }
    const char *modes[] = {"404", "html", "truncate"};
    const char *codes[] = {"upstream_status", "upstream_not_csv", "upstream_truncated"};
    for (int i = 0; i < 3; i++) {
        testsrv_set_mode(srv, modes[i]);
        json_t *doc = call("GET", "/v1/human/learning-curves", 503);
        const char *code = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
        CHECK_MSG(code && !strcmp(code, codes[i]), "mode %s: code %s", modes[i], code ? code : "(none)");
        json_decref(doc);
    }
    json_t *cmp = call("GET", "/v1/compare/learning-curves?episodes=3&seq_len=5", 503);
    json_decref(cmp);
    testsrv_set_mode(srv, "ok");
    json_t *doc = call("GET", "/v1/human/learning-curves", 200); /* recovers at once */
    json_decref(doc);
    http_reply r;
    CHECK(http_call(&d, "GET", "/metrics", NULL, &r) == 0);
    CHECK_STR_CONTAINS(r.body, "metalignd_human_fetches_total");
    http_reply_free(&r);
    CHECK(daemon_stop(&d, SIGTERM) == 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fresh);
    if (system(cmd) != 0) CHECK(0);
}

int main(void) {
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    json_error_t jerr;
    ref = json_load_file(FIXTURE("human/reference.json"), 0, &jerr);
    srv = testsrv_start();
    if (!ref || !srv || !mkdtemp(cache) ||
        testsrv_set_body_file(srv, FIXTURE("human/synthetic.csv")) != 0) {
        printf("# %s or %s cannot be read, or the test server did not start\n",
               FIXTURE("human/reference.json"), FIXTURE("human/synthetic.csv"));
        printf("not ok 1 - set-up\n1..1\n");
        return 1;
    }
    testsrv_set_stall_ms(srv, 10000);
    testsrv_url(srv, "/data.csv", url, sizeof url);
    if (start(url, cache) != 0) {
        printf("not ok 1 - daemon starts\n1..1\n");
        return 1;
    }
    RUN(test_first_fetch_matches_pandas);
    RUN(test_compare);
    RUN(test_refresh_and_failure_keep_copy);
    RUN(test_restart_serves_disk_copy);
    RUN(test_no_copy_is_503_with_cause);
    testsrv_stop(srv);
    json_decref(ref);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    if (system(cmd) != 0) return 1;
    return UT_DONE();
}
