/* The daemon over HTTP on the demo bundle: discovery, errors, limits, metrics, shutdown. */
#include <signal.h>
#include <string.h>

#include "daemon.h"
#include "unit.h"

static test_daemon d;

static json_t *get_json(const char *method, const char *path, const char *body, long status) {
    http_reply r;
    if (http_call(&d, method, path, body, &r) != 0) {
        CHECK_MSG(0, "%s %s: no reply", method, path);
        return NULL;
    }
    CHECK_MSG(r.status == status, "%s %s: status %ld, expected %ld: %s", method, path, r.status,
              status, r.body ? r.body : "");
    json_t *doc = http_json(&r);
    CHECK_MSG(doc != NULL, "%s %s: body is not JSON: %s", method, path, r.body ? r.body : "");
    CHECK_STR_CONTAINS(r.content_type, "application/json");
    http_reply_free(&r);
    return doc;
}

/* An error answer has {"error": {"code": code, "message": containing needle}}. */
static void expect_error(const char *method, const char *path, const char *body, long status,
                         const char *code, const char *needle) {
    json_t *doc = get_json(method, path, body, status);
    json_t *e = json_object_get(doc, "error");
    CHECK_MSG(json_is_object(e), "%s %s: no error object", method, path);
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *m = json_string_value(json_object_get(e, "message"));
    CHECK_MSG(c && !strcmp(c, code), "%s %s: code %s, expected %s", method, path, c ? c : "(none)",
              code);
    if (needle) CHECK_STR_CONTAINS(m, needle);
    json_decref(doc);
}

static void test_health(void) {
    json_t *doc = get_json("GET", "/healthz", NULL, 200);
    CHECK(!strcmp(json_string_value(json_object_get(doc, "status")), "ok"));
    json_decref(doc);
    doc = get_json("GET", "/readyz", NULL, 200);
    CHECK(!strcmp(json_string_value(json_object_get(doc, "status")), "ready"));
    json_decref(doc);
}

static void test_info(void) {
    json_t *doc = get_json("GET", "/v1/info", NULL, 200);
    json_t *model = json_object_get(doc, "model"), *data = json_object_get(doc, "data");
    CHECK(json_is_string(json_object_get(doc, "version")));
    CHECK(!strcmp(json_string_value(json_object_get(model, "format")), "safetensors"));
    const char *variant = json_string_value(json_object_get(model, "variant"));
    CHECK(variant && (!strcmp(variant, "rope") || !strcmp(variant, "learned_positions")));
    int layers = (int)json_integer_value(json_object_get(model, "num_layers"));
    json_t *names = json_object_get(model, "layers");
    CHECK(layers >= 1 && json_array_size(names) == (size_t)layers + 1);
    CHECK(!strcmp(json_string_value(json_array_get(names, 0)), "embedding"));
    CHECK(!strcmp(json_string_value(json_array_get(names, 1)), "layer_0"));
    CHECK(json_integer_value(json_object_get(model, "input_size")) ==
          2 + json_integer_value(json_object_get(data, "backbone_dim")));
    CHECK(json_integer_value(json_object_get(model, "parameters")) > 0);
    CHECK(json_is_true(json_object_get(data, "synthetic")));
    CHECK(json_integer_value(json_object_get(data, "items")) >= 100);
    CHECK(json_integer_value(json_object_get(data, "target_dims")) >= 3);
    json_t *human = json_object_get(doc, "human");
    CHECK(json_is_string(json_object_get(human, "url")));
    CHECK(json_is_boolean(json_object_get(human, "cached")));
    json_decref(doc);
}

static void test_items(void) {
    json_t *doc = get_json("GET", "/v1/items?offset=2&limit=3", NULL, 200);
    json_t *items = json_object_get(doc, "items");
    CHECK(json_array_size(items) == 3);
    CHECK(json_integer_value(json_object_get(json_array_get(items, 0), "index")) == 2);
    CHECK(json_is_string(json_object_get(json_array_get(items, 0), "id")));
    CHECK(json_integer_value(json_object_get(doc, "total")) >= 100);
    json_decref(doc);
    expect_error("GET", "/v1/items?limit=0", NULL, 400, "out_of_range", "limit");
    expect_error("GET", "/v1/items?limit=abc", NULL, 400, "invalid_argument", "limit");
    expect_error("GET", "/v1/items?colour=red", NULL, 400, "unknown_argument", "colour");
}

static void test_http_errors(void) {
    expect_error("GET", "/v1/nope", NULL, 404, "not_found", "/v1/nope");
    expect_error("GET", "/v1/jobs/0123456789abcdef", NULL, 404, "job_not_found", "0123456789abcdef");
    http_reply r;
    CHECK(http_call(&d, "POST", "/healthz", "{}", &r) == 0);
    CHECK(r.status == 405);
    CHECK_STR_CONTAINS(r.allow, "GET");
    CHECK_STR_CONTAINS(r.body, "method_not_allowed");
    http_reply_free(&r);
    expect_error("PUT", "/v1/activations", NULL, 405, "method_not_allowed", "GET, POST");
    expect_error("GET", "/v1/human/refresh", NULL, 405, "method_not_allowed", "POST");
    expect_error("POST", "/v1/activations", "{\"items\": [0,", 400, "malformed_json", "JSON");
    expect_error("POST", "/v1/activations", "[1,2]", 400, "malformed_json", "object");
    expect_error("POST", "/v1/activations", "{\"items\": [0], \"colour\": 1}", 400,
                 "unknown_field", "colour");
    /* the daemon runs with --max-body-bytes 4096 */
    char big[6000];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[0] = '{';
    big[sizeof big - 2] = '}';
    expect_error("POST", "/v1/activations", big, 413, "body_too_large", "4096");
}

static void test_head(void) {
    http_reply r;
    CHECK(http_call(&d, "HEAD", "/healthz", NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(r.len == 0);
    http_reply_free(&r);
}

static void test_metrics(void) {
    http_reply r;
    CHECK(http_call(&d, "GET", "/metrics", NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK_STR_CONTAINS(r.content_type, "text/plain");
    CHECK_STR_CONTAINS(r.body, "metalignd_http_requests_total{route=\"healthz\",status=\"200\"}");
    CHECK_STR_CONTAINS(r.body, "metalignd_http_requests_total{route=\"unmatched\",status=\"404\"}");
    CHECK_STR_CONTAINS(r.body, "metalignd_http_request_duration_seconds_bucket{route=\"info\",le=\"+Inf\"}");
    CHECK_STR_CONTAINS(r.body, "metalignd_jobs{status=\"running\"}");
    CHECK_STR_CONTAINS(r.body, "metalignd_ready 1");
    http_reply_free(&r);
}

static void test_sigterm_exits_zero(void) {
    int rc = daemon_stop(&d, SIGTERM);
    CHECK_MSG(rc == 0, "SIGTERM: exit status %d, log:\n%s", rc, d.log);
    CHECK_STR_CONTAINS(d.log, "stopped");
}

int main(void) {
    /* daemon_start gives it a --cache-dir of its own (not ~/.cache) */
    const char *args[] = {"--config", demo_config(), "--max-body-bytes", "4096", NULL};
    if (daemon_start(&d, args) != 0) {
        printf("# the daemon did not start:\n# %s\n", d.log);
        printf("not ok 1 - daemon starts\n1..1\n");
        return 1;
    }
    RUN(test_health);
    RUN(test_info);
    RUN(test_items);
    RUN(test_http_errors);
    RUN(test_head);
    RUN(test_metrics);
    RUN(test_sigterm_exits_zero);
    return UT_DONE();
}
