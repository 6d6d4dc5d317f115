/* The house's fixed bugs and the one validation vocabulary, over HTTP on the demo bundle:
 * result keys that cannot collide (256 dims differing in the last), targets with more than
 * 1,024 columns, integers that are integers, dims=all, n_boot=0, trailing slashes, unknown
 * arguments and unexpected bodies on every route, shortest numbers, warnings. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "unit.h"

static test_daemon d;
static char tmp[] = "/tmp/metalign-validation-XXXXXX";

static json_t *call_on(const test_daemon *dm, const char *method, const char *path,
                       const char *body, long status) {
    http_reply r;
    if (http_call(dm, method, path, body, &r) != 0) {
        CHECK_MSG(0, "%s %s: no reply", method, path);
        return NULL;
    }
    CHECK_MSG(r.status == status, "%s %s: status %ld, expected %ld: %.300s", method, path,
              r.status, status, r.body ? r.body : "");
    json_t *doc = http_json(&r);
    CHECK_MSG(doc != NULL, "%s %s: not JSON: %.200s", method, path, r.body ? r.body : "");
    http_reply_free(&r);
    return doc;
}

static json_t *call(const char *method, const char *path, const char *body, long status) {
    return call_on(&d, method, path, body, status);
}

static void expect_error(const char *method, const char *path, const char *body, long status,
                         const char *code, const char *needle) {
    json_t *doc = call(method, path, body, status);
    json_t *e = json_object_get(doc, "error");
    CHECK_MSG(e && !strcmp(json_string_value(json_object_get(e, "code")), code),
              "%s %s: code %s, expected %s", method, path,
              json_string_value(json_object_get(e, "code")), code);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(e, "message")), needle);
    json_decref(doc);
}

/* Two requests of 256 dims that differ only in the last one: the old 512-byte key cut them
 * to the same text and served the second client the first one's answer. */
static void test_result_keys_do_not_collide(void) {
    char *bodies[2];
    for (int k = 0; k < 2; k++) {
        size_t cap = 4096;
        bodies[k] = malloc(cap);
        size_t n = (size_t)snprintf(bodies[k], cap, "{\"episodes\": 256, \"seq_len\": 5, \"dims\": [");
        for (int i = 0; i < 256; i++)
            n += (size_t)snprintf(bodies[k] + n, cap - n, "%s%d", i ? "," : "",
                                  i < 255 ? 0 : 1 + k);
        snprintf(bodies[k] + n, cap - n, "]}");
    }
    json_t *a = call("POST", "/v1/learning-curves", bodies[0], 200);
    json_t *b = call("POST", "/v1/learning-curves", bodies[1], 200);
    json_t *da = json_object_get(a, "dims"), *db = json_object_get(b, "dims");
    CHECK(json_array_size(da) == 256 && json_array_size(db) == 256);
    CHECK(json_integer_value(json_array_get(da, 255)) == 1);
    CHECK(json_integer_value(json_array_get(db, 255)) == 2);
    json_t *ga = json_object_get(a, "by_dimension"), *gb = json_object_get(b, "by_dimension");
    CHECK(json_array_size(ga) == 2 && json_array_size(gb) == 2);
    CHECK(json_integer_value(json_object_get(json_array_get(gb, 1), "dimension")) == 2);
    /* and the repeat of each is served from the cache with its own answer */
    json_t *a2 = call("POST", "/v1/learning-curves", bodies[0], 200);
    CHECK(json_equal(a, a2));
    json_decref(a);
    json_decref(b);
    json_decref(a2);
    free(bodies[0]);
    free(bodies[1]);
}

/* CKA keys likewise: 2 dims lists that share their first 2,000 bytes of text. */
static void test_cka_keys_do_not_collide(void) {
    json_t *a = call("GET", "/v1/cka?dims=0,1", NULL, 200);
    json_t *b = call("GET", "/v1/cka?dims=0,2", NULL, 200);
    CHECK(!json_equal(json_object_get(a, "dims"), json_object_get(b, "dims")));
    CHECK(json_number_value(json_object_get(json_object_get(a, "baseline"), "cka")) !=
          json_number_value(json_object_get(json_object_get(b, "baseline"), "cka")));
    json_decref(a);
    json_decref(b);
}

/* Targets with 1,100 columns: dims lists longer than the old stack array of 1,024. */
static void test_more_than_1024_target_columns(void) {
    char path[256], arg[300];
    snprintf(path, sizeof path, "%s/wide.txt", tmp);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    unsigned s = 1;
    for (int i = 0; i < 400; i++) { /* the demo's 400 items */
        for (int k = 0; k < 1100; k++) {
            s = s * 1103515245u + 12345u;
            fprintf(f, "%s%.4f", k ? " " : "", (double)(s >> 8) / 16777216.0);
        }
        fputc('\n', f);
    }
    fclose(f);
    snprintf(arg, sizeof arg, "%s/cache-wide", tmp);
    const char *args[] = {"--config", demo_config(), "--targets", path, "--cache-dir", arg,
                          "--threads", "1", NULL};
    test_daemon w;
    REQUIRE(daemon_start(&w, args) == 0);
    size_t cap = 8192, n = 0;
    char *q = malloc(cap);
    n += (size_t)snprintf(q, cap, "/v1/cka?dims=");
    for (int k = 0; k < 1100; k++) n += (size_t)snprintf(q + n, cap - n, "%s%d", k ? "," : "", k);
    json_t *doc = call_on(&w, "GET", q, NULL, 200);
    CHECK(json_array_size(json_object_get(doc, "dims")) == 1100);
    double cka = json_number_value(json_object_get(json_object_get(doc, "baseline"), "cka"));
    json_decref(doc);
    doc = call_on(&w, "GET", "/v1/cka?dims=all", NULL, 200);
    CHECK_NEAR(json_number_value(json_object_get(json_object_get(doc, "baseline"), "cka")), cka,
               1e-12, 1e-12); /* all 1,100 dims in order is the same target */
    json_decref(doc);
    doc = call_on(&w, "POST", "/v1/learning-curves",
                  "{\"dims\": \"all\", \"episodes\": 1100, \"seq_len\": 3, \"n_boot\": 0}", 200);
    CHECK(json_array_size(json_object_get(doc, "by_dimension")) == 1100);
    json_decref(doc);
    free(q);
    CHECK(daemon_stop(&w, SIGTERM) == 0);
}

static void test_integers_are_integers(void) {
    expect_error("POST", "/v1/learning-curves", "{\"seq_len\": 100.0}", 400, "invalid_field",
                 "seq_len must be an integer");
    expect_error("POST", "/v1/learning-curves", "{\"episodes\": 1e2}", 400, "invalid_field",
                 "episodes must be an integer");
    expect_error("POST", "/v1/activations", "{\"items\": [1.0]}", 400, "invalid_field",
                 "items[0]");
    expect_error("GET", "/v1/cka?n_boot=10.0", NULL, 400, "invalid_argument", "not an integer");
}

static void test_dims_all_and_n_boot(void) {
    json_t *doc = call("POST", "/v1/learning-curves",
                       "{\"dims\": \"all\", \"episodes\": 8, \"seq_len\": 4, \"n_boot\": 0}", 200);
    json_t *info = call("GET", "/v1/info", NULL, 200);
    int K = (int)json_integer_value(json_object_get(json_object_get(info, "data"), "target_dims"));
    CHECK(json_array_size(json_object_get(doc, "dims")) == (size_t)K);
    json_t *curve = json_object_get(doc, "curve");
    CHECK(json_is_array(json_object_get(curve, "p_correct")));
    CHECK(json_is_null(json_object_get(curve, "ci_low")) && json_is_null(json_object_get(curve, "ci_high")));
    json_decref(doc);
    json_decref(info);
    /* one range for n_boot everywhere */
    expect_error("GET", "/v1/cka?ci=true&n_boot=-1", NULL, 400, "out_of_range", "allowed 0..100000");
    expect_error("POST", "/v1/learning-curves", "{\"n_boot\": 100001}", 400, "out_of_range",
                 "allowed 0..100000");
    expect_error("GET", "/v1/human/learning-curves?n_boot=100001", NULL, 400, "out_of_range",
                 "allowed 0..100000");
    expect_error("GET", "/v1/compare/learning-curves?n_boot=-2", NULL, 400, "out_of_range",
                 "allowed 0..100000");
    expect_error("POST", "/v1/learning-curves", "{\"dims\": \"most\"}", 400, "invalid_field",
                 "dims must be \"all\"");
}

static void test_trailing_slashes(void) {
    json_t *job = call("POST", "/v1/learning-curves?async=true", "{\"episodes\": 3, \"seq_len\": 4}", 202);
    const char *id = json_string_value(json_object_get(job, "job"));
    REQUIRE(id != NULL);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/", id);
    json_t *got = call("GET", path, NULL, 200);
    CHECK(!strcmp(json_string_value(json_object_get(got, "job")), id));
    json_decref(got);
    json_decref(job);
    json_t *info = call("GET", "/v1/info/", NULL, 200);
    json_decref(info);
    json_t *none = call("GET", "/v1/jobs/", NULL, 404); /* no id: no such endpoint */
    json_decref(none);
}

static void test_unknown_arguments_and_bodies_everywhere(void) {
    static const char *const get_routes[] = {"/", "/healthz", "/readyz", "/metrics", "/v1/info",
                                             "/v1/items", "/v1/cka", "/v1/cka/matrix",
                                             "/v1/human/learning-curves",
                                             "/v1/compare/learning-curves", NULL};
    char path[128];
    for (int i = 0; get_routes[i]; i++) {
        snprintf(path, sizeof path, "%s?bogus=1", get_routes[i]);
        expect_error("GET", path, NULL, 400, "unknown_argument", "unknown query argument \"bogus\"");
    }
    expect_error("POST", "/v1/human/refresh?force=1", NULL, 400, "unknown_argument", "\"force\"");
    expect_error("POST", "/v1/human/refresh", "{\"x\":1}", 400, "unexpected_body", "takes no request body");
    expect_error("GET", "/healthz", "{}", 400, "unexpected_body", "takes no request body");
    expect_error("DELETE", "/v1/jobs/abc", "x", 400, "unexpected_body", "takes no request body");
}

static void test_numbers_carry_their_digits(void) {
    http_reply r;
    REQUIRE(http_call(&d, "POST", "/v1/learning-curves", "{\"episodes\": 10, \"seq_len\": 10}", &r) == 0);
    CHECK(r.status == 200);
    /* k/10 proportions come out as 0.7, not 0.69999999999999996 */
    CHECK_MSG(!strstr(r.body, "99999999") && !strstr(r.body, "00000001"), "%.400s", r.body);
    http_reply_free(&r);
}

static void test_warnings_past_training(void) {
    json_t *doc = call("POST", "/v1/learning-curves", "{\"episodes\": 2, \"seq_len\": 150}", 200);
    json_t *w = json_object_get(doc, "warnings");
    CHECK(json_array_size(w) == 1);
    CHECK_STR_CONTAINS(json_string_value(json_array_get(w, 0)), "beyond the 100 trials");
    json_decref(doc);
    doc = call("POST", "/v1/learning-curves", "{\"episodes\": 2, \"seq_len\": 100}", 200);
    CHECK(json_is_array(json_object_get(doc, "warnings")) &&
          json_array_size(json_object_get(doc, "warnings")) == 0);
    json_decref(doc);
    json_t *info = call("GET", "/v1/info", NULL, 200);
    CHECK(json_integer_value(json_object_get(json_object_get(info, "model"), "trained_seq_len")) == 100);
    const char *started = json_string_value(json_object_get(json_object_get(info, "server"), "started_at"));
    CHECK(started && strlen(started) == 20 && started[10] == 'T' && started[19] == 'Z');
    json_decref(info);
}

int main(void) {
    if (!mkdtemp(tmp)) return 1;
    char cache[300];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    const char *args[] = {"--config", demo_config(), "--cache-dir", cache,
                          "--human-url", "http://127.0.0.1:9/unreachable.csv", NULL};
    if (daemon_start(&d, args) != 0) {
        printf("not ok 1 - the daemon starts: %s\n1..1\n", d.log);
        return 1;
    }
    RUN(test_result_keys_do_not_collide);
    RUN(test_cka_keys_do_not_collide);
    RUN(test_more_than_1024_target_columns);
    RUN(test_integers_are_integers);
    RUN(test_dims_all_and_n_boot);
    RUN(test_trailing_slashes);
    RUN(test_unknown_arguments_and_bodies_everywhere);
    RUN(test_numbers_carry_their_digits);
    RUN(test_warnings_past_training);
    int rc = daemon_stop(&d, SIGTERM);
    CHECK_MSG(rc == 0, "exit status %d", rc);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    return UT_DONE();
}
