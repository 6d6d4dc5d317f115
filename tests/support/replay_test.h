/* Shared by the replay's daemon tests (tests/http/test_http_replay*.c): a loopback human
 * CSV whose images name demo items (syn_0001..syn_0400) as concepts, with unmatched concepts,
 * an incomplete row, an unanswered row, a participant with nothing to replay and one whose
 * name needs quoting; the demo daemon fetching it; small HTTP helpers. One test program per
 * translation unit: the state below is each program's own. */
#ifndef METALIGN_TESTS_REPLAY_TEST_H
#define METALIGN_TESTS_REPLAY_TEST_H

#include <curl/curl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "testsrv.h"
#include "util/buf.h"

#define N_PART 12          /* participants in the CSV */
#define N_TRIALS 40        /* trials each */
#define EMPTY_PART 11      /* every image of this one is unmatched: nothing to replay */
#define COMMA_PART 7       /* its name has a comma: quoted in both CSVs */
#define QUERY "/v1/human/replay?n_boot=200&seed=4"

static testsrv *srv;
static test_daemon d;
static char dir[] = "/tmp/metalign-replay-XXXXXX";
static char url[256];
static char *csv_body;     /* the CSV served */
static size_t csv_len;
static long want_trials, want_unmatched, want_incomplete;

/* equal within tolerance, or both NaN (null in the answer) */
#define CHECK_NEAR_NAN(a, b, rtol, atol)                                                   \
    do {                                                                                   \
        double na_ = (a), nb_ = (b);                                                       \
        if (isnan(nb_))                                                                    \
            CHECK_MSG(isnan(na_), "%s = %g, expected null", #a, na_);                      \
        else                                                                               \
            CHECK_NEAR(na_, nb_, rtol, atol);                                              \
    } while (0)

__attribute__((unused)) static double num(json_t *o, const char *k) {
    json_t *x = json_object_get(o, k);
    return !x || json_is_null(x) ? NAN : json_number_value(x);
}

/* ---- the human CSV ------------------------------------------------------------------- */

static uint64_t lcg = 20261201;
__attribute__((unused)) static unsigned next(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(lcg >> 33);
}

__attribute__((unused)) static void participant_name(int p, char *out, size_t cap) {
    if (p == COMMA_PART)
        snprintf(out, cap, "P,%02d", p);
    else
        snprintf(out, cap, "P%02d", p);
}

/* pandas-style, with the replay's columns; the expected counts as it goes. */
__attribute__((unused)) static char *make_csv(size_t *len) {
    ml_buf b = {0};
    ml_buf_puts(&b, ",participant,trial,image,choice,correct,true_category_binary,dimension,rt\n");
    long row = 0;
    for (int p = 0; p < N_PART; p++) {
        char name[16];
        participant_name(p, name, sizeof name);
        for (int t = 0; t < N_TRIALS; t++) {
            int label = (int)(next() & 1), choice = next() % 4 ? label : 1 - label;
            int unmatched = p == EMPTY_PART || next() % 9 == 0;
            int item = (int)(next() % 400) + 1;
            int no_choice = p == 2 && t == 5 && !unmatched, no_correct = p == 3 && t == 7;
            char image[80];
            if (unmatched)
                snprintf(image, sizeof image, "stimuli/zebra/zebra_%02d.jpg", t % 12 + 1);
            else
                snprintf(image, sizeof image, "stimuli/syn_%04d/syn_%04d_%02db.jpg", item, item,
                         t % 12 + 1);
            ml_buf_printf(&b, "%ld,%s%s%s,%d,%s,", row++, p == COMMA_PART ? "\"" : "", name,
                          p == COMMA_PART ? "\"" : "", t, image);
            if (!no_choice) ml_buf_printf(&b, "%d", choice);
            ml_buf_printf(&b, ",%s,%d,%d,%d.5\n",
                          no_correct ? "" : choice == label ? "True" : "False", label, p % 3,
                          400 + t);
            if (no_correct) continue; /* not an observation at all */
            if (unmatched)
                want_unmatched++;
            else if (no_choice)
                want_incomplete++;
            else
                want_trials++;
        }
    }
    return ml_buf_take(&b, len);
}

/* ---- talking to the daemon ----------------------------------------------------------- */

__attribute__((unused)) static json_t *call(const char *method, const char *path, long status) {
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

/* A GET with an Accept header, keeping the body and the response headers. */
typedef struct raw_reply {
    long status;
    ml_buf body, headers;
} raw_reply;

__attribute__((unused)) static size_t on_bytes(char *p, size_t size, size_t n, void *ud) {
    ml_buf_append(ud, p, size * n);
    return size * n;
}

__attribute__((unused)) static int get_raw(const char *path, const char *accept, raw_reply *r) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) return -1;
    char u[512], h[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d%s", d.port, path);
    struct curl_slist *hdrs = NULL;
    if (accept) {
        snprintf(h, sizeof h, "Accept: %s", accept);
        hdrs = curl_slist_append(hdrs, h);
    }
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc == CURLE_OK && r->body.data && r->headers.data ? 0 : -1;
}

__attribute__((unused)) static void raw_free(raw_reply *r) {
    ml_buf_free(&r->body);
    ml_buf_free(&r->headers);
}

__attribute__((unused)) static int start(const char *cache_dir) {
    /* every refresh and failed download may ask again (tests/http/test_upstream.c covers the
     * rate limit and the back-off) */
    const char *args[] = {"--config", demo_config(), "--human-url", url, "--cache-dir",
                          cache_dir, "--human-timeout", "3", "--human-min-refresh", "0",
                          "--human-retry-min", "0", NULL};
    int rc = daemon_start(&d, args);
    if (rc != 0) printf("# daemon did not start: %s\n", d.log);
    return rc;
}

__attribute__((unused)) static void check_keys(json_t *o, const char *what, const char *const *keys) {
    CHECK_MSG(json_is_object(o), "%s is not an object", what);
    for (int i = 0; keys[i]; i++)
        CHECK_MSG(json_object_get(o, keys[i]) != NULL, "%s has no \"%s\"", what, keys[i]);
}

__attribute__((unused)) static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* field k (0-based) of the CSV line at s, RFC 4180 quotes removed, into out */
__attribute__((unused)) static void csv_field(const char *s, int k, char *out, size_t cap) {
    size_t n = 0;
    int f = 0, quoted = 0;
    for (; *s && !(*s == '\n' && !quoted); s++) {
        if (*s == '"') {
            if (quoted && s[1] == '"') {
                if (f == k && n + 1 < cap) out[n++] = '"';
                s++;
            } else {
                quoted = !quoted;
            }
        } else if (*s == ',' && !quoted) {
            f++;
        } else if (f == k && n + 1 < cap) {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
}

/* Polls a job's status_url until it is done, failed or cancelled (or ~12 s pass). */
__attribute__((unused)) static json_t *wait_job(const char *status_url) {
    char path[160];
    snprintf(path, sizeof path, "%s", status_url ? status_url : "/v1/jobs/none");
    json_t *job = NULL;
    for (int i = 0; i < 600; i++) {
        json_decref(job);
        job = call("GET", path, 200);
        const char *s = json_string_value(json_object_get(job, "status"));
        if (!s || (strcmp(s, "queued") && strcmp(s, "running"))) break;
        usleep(20000);
    }
    return job;
}

/* The CSV, the loopback server, the test folder and the daemon; 0 or -1 (TAP printed). */
__attribute__((unused)) static int replay_setup(void) {
    unset_proxies();
    csv_body = make_csv(&csv_len);
    srv = testsrv_start();
    if (!csv_body || !srv || !mkdtemp(dir)) {
        printf("not ok 1 - set-up (the CSV, the test server or the test folder)\n1..1\n");
        return -1;
    }
    testsrv_set_body(srv, csv_body, csv_len);
    testsrv_url(srv, "/data.csv", url, sizeof url);
    char cache[320];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    if (start(cache) != 0) {
        printf("not ok 1 - daemon starts\n1..1\n");
        return -1;
    }
    return 0;
}

/* The daemon exits 0 on SIGTERM (under ASan: without leaks); as the last test. */
__attribute__((unused)) static void test_daemon_stops_cleanly(void) {
    int rc = daemon_stop(&d, SIGTERM);
    CHECK_MSG(rc == 0, "exit status %d: %.2000s", rc, d.log);
}

__attribute__((unused)) static int replay_teardown(void) {
    if (d.pid) daemon_stop(&d, SIGTERM);
    testsrv_stop(srv);
    free(csv_body);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
