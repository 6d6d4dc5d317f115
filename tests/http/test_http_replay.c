/* GET /v1/human/replay against the demo daemon, with a loopback human CSV of our own
 * (tests/support/testsrv.c) whose images name demo items (syn_0001..syn_0400) as concepts,
 * plus unmatched concepts, an incomplete row, an unanswered row and a participant with nothing
 * to replay: every field of API.md's answer, the numbers against the engine run in this
 * process on the same files, the cache (the same computation answers twice) and a fresh
 * daemon (the same answer), the CSV tables read back, include_trials, a job with progress,
 * the 400s, the 422s (a CSV without the replay's columns, one with no known concept, a
 * later-generation checkpoint), the 503 with Retry-After, and the comparison's pointer. */
#include <curl/curl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "engine/app.h"
#include "h5build.h"
#include "http/handlers/handlers.h"
#include "metalign/human_csv.h"
#include "metalign/replay.h"
#include "testsrv.h"
#include "unit.h"
#include "human_test.h"

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

static double num(json_t *o, const char *k) {
    json_t *x = json_object_get(o, k);
    return !x || json_is_null(x) ? NAN : json_number_value(x);
}

/* ---- the human CSV ------------------------------------------------------------------- */

static uint64_t lcg = 20261201;
static unsigned next(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(lcg >> 33);
}

static void participant_name(int p, char *out, size_t cap) {
    if (p == COMMA_PART)
        snprintf(out, cap, "P,%02d", p);
    else
        snprintf(out, cap, "P%02d", p);
}

/* pandas-style, with the replay's columns; the expected counts as it goes. */
static char *make_csv(size_t *len) {
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

/* A GET with an Accept header, keeping the body and the response headers. */
typedef struct raw_reply {
    long status;
    ml_buf body, headers;
} raw_reply;

static size_t on_bytes(char *p, size_t size, size_t n, void *ud) {
    ml_buf_append(ud, p, size * n);
    return size * n;
}

static int get_raw(const char *path, const char *accept, raw_reply *r) {
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

static void raw_free(raw_reply *r) {
    ml_buf_free(&r->body);
    ml_buf_free(&r->headers);
}

static int start(const char *cache_dir) {
    const char *args[] = {"--config", demo_config(), "--human-url", url, "--cache-dir",
                          cache_dir, "--human-timeout", "3", NULL};
    int rc = daemon_start(&d, args);
    if (rc != 0) printf("# daemon did not start: %s\n", d.log);
    return rc;
}

/* ---- the answer's shape -------------------------------------------------------------- */

static void check_keys(json_t *o, const char *what, const char *const *keys) {
    CHECK_MSG(json_is_object(o), "%s is not an object", what);
    for (int i = 0; keys[i]; i++)
        CHECK_MSG(json_object_get(o, keys[i]) != NULL, "%s has no \"%s\"", what, keys[i]);
}

static void check_curve_shape(json_t *c, const char *what, int n_trials) {
    static const char *const keys[] = {"p_correct", "ci_low", "ci_high", "n", NULL};
    check_keys(c, what, keys);
    CHECK_MSG(json_array_size(json_object_get(c, "p_correct")) == (size_t)n_trials,
              "%s: %zu trials", what, json_array_size(json_object_get(c, "p_correct")));
    CHECK(json_array_size(json_object_get(c, "ci_low")) == (size_t)n_trials);
}

static void test_json_shape(void) {
    json_t *doc = call("GET", QUERY, 200);
    static const char *const top[] = {"source", "image_match", "max_trial", "participants",
                                      "summary", "curve", "by_dimension", "notes", "synthetic",
                                      "request", "warnings", NULL};
    check_keys(doc, "answer", top);
    check_keys(json_object_get(doc, "source"), "source",
               (const char *const[]){"url", "fetched_at", "bytes", "sha256", "from_cache", NULL});
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(doc, "source"), "url")), url));
    CHECK_EQ_STR(json_string_value(json_object_get(doc, "image_match")), "concept");
    CHECK(json_integer_value(json_object_get(doc, "max_trial")) == N_TRIALS - 1);
    CHECK(json_is_true(json_object_get(doc, "synthetic")));
    CHECK(json_object_get(doc, "trials") == NULL); /* include_trials only */
    json_t *ps = json_object_get(doc, "participants");
    CHECK(json_array_size(ps) == N_PART);
    static const char *const pkeys[] = {"participant", "dimension", "trials", "unmatched",
                                        "human_accuracy", "model_accuracy", "agreement",
                                        "temperature", "nll", "nll_t1", "pseudo_r2", "baseline",
                                        NULL};
    static const char *const bkeys[] = {"temperature", "nll", "pseudo_r2", "agreement", NULL};
    for (size_t i = 0; i < json_array_size(ps); i++) {
        json_t *p = json_array_get(ps, i);
        check_keys(p, "participant", pkeys);
        check_keys(json_object_get(p, "baseline"), "participant baseline", bkeys);
        char name[16];
        participant_name((int)i, name, sizeof name);
        CHECK_EQ_STR(json_string_value(json_object_get(p, "participant")), name);
        CHECK(json_integer_value(json_object_get(p, "dimension")) == (json_int_t)i % 3);
    }
    /* nothing replayed: counted, every figure null (never a number) */
    json_t *empty = json_array_get(ps, EMPTY_PART);
    CHECK(json_integer_value(json_object_get(empty, "trials")) == 0);
    CHECK(json_integer_value(json_object_get(empty, "unmatched")) == N_TRIALS);
    CHECK(json_is_null(json_object_get(empty, "nll")) && json_is_null(json_object_get(empty, "pseudo_r2")));
    CHECK(json_is_null(json_object_get(json_object_get(empty, "baseline"), "nll")));
    CHECK(json_integer_value(json_object_get(json_array_get(ps, 2), "incomplete")) == 1);
    json_t *s = json_object_get(doc, "summary");
    static const char *const skeys[] = {"participants", "trials", "unmatched", "nll", "pseudo_r2",
                                        "agreement", "baseline", NULL};
    check_keys(s, "summary", skeys);
    check_keys(json_object_get(s, "baseline"), "summary baseline",
               (const char *const[]){"nll", "pseudo_r2", "agreement", NULL});
    CHECK(json_integer_value(json_object_get(s, "participants")) == N_PART - 1);
    CHECK_MSG(json_integer_value(json_object_get(s, "trials")) == want_trials, "trials %lld vs %ld",
              (long long)json_integer_value(json_object_get(s, "trials")), want_trials);
    CHECK(json_integer_value(json_object_get(s, "unmatched")) == want_unmatched);
    CHECK(json_integer_value(json_object_get(s, "incomplete")) == want_incomplete);
    double r2 = num(s, "pseudo_r2");
    CHECK(r2 <= 1 && r2 > -1);
    json_t *c = json_object_get(doc, "curve");
    check_keys(c, "curve", (const char *const[]){"human", "model", "baseline", NULL});
    check_curve_shape(json_object_get(c, "human"), "curve.human", N_TRIALS);
    check_curve_shape(json_object_get(c, "model"), "curve.model", N_TRIALS);
    check_curve_shape(json_object_get(c, "baseline"), "curve.baseline", N_TRIALS);
    json_t *by = json_object_get(doc, "by_dimension");
    CHECK(json_array_size(by) == 3);
    static const char *const dkeys[] = {"dimension", "participants", "curve", "pseudo_r2",
                                        "agreement", "noise_ceiling", "model_r", "rmse", NULL};
    for (size_t j = 0; j < json_array_size(by); j++) {
        json_t *g = json_array_get(by, j);
        check_keys(g, "by_dimension", dkeys);
        check_keys(json_object_get(g, "noise_ceiling"), "noise_ceiling",
                   (const char *const[]){"r", "ci_low", "ci_high", NULL});
        CHECK(json_integer_value(json_object_get(g, "dimension")) == (json_int_t)j);
        check_curve_shape(json_object_get(json_object_get(g, "curve"), "human"), "dim human", N_TRIALS);
        double ceil = num(json_object_get(g, "noise_ceiling"), "r");
        CHECK(isnan(ceil) || (ceil >= -1 && ceil <= 1));
    }
    /* the choices the spec left open are said */
    json_t *notes = json_object_get(doc, "notes");
    const char *want[] = {"sequences:", "skipped rows: ", "image_match concept", "standardisation",
                          "pooled summaries", "baseline:", "noise_ceiling:", "SYNTHETIC"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        int found = 0;
        for (size_t i = 0; i < json_array_size(notes); i++)
            found |= strstr(json_string_value(json_array_get(notes, i)), want[k]) != NULL;
        CHECK_MSG(found, "no note on \"%s\"", want[k]);
    }
    json_decref(doc);
    /* baseline=none: its figures are null, its curve too */
    doc = call("GET", "/v1/human/replay?baseline=none&n_boot=0&temperature=1", 200);
    CHECK(json_is_null(json_object_get(json_object_get(doc, "summary"), "baseline")));
    CHECK(json_is_null(json_object_get(json_object_get(doc, "curve"), "baseline")));
    CHECK(json_is_null(json_object_get(json_object_get(json_object_get(doc, "curve"), "human"), "ci_low")));
    json_t *p0 = json_array_get(json_object_get(doc, "participants"), 0);
    CHECK(num(p0, "temperature") == 1);
    CHECK_NEAR(num(p0, "nll"), num(p0, "nll_t1"), 0, 0);
    json_decref(doc);
    doc = call("GET", "/v1/human/replay?max_trial=19&n_boot=0", 200);
    CHECK(json_integer_value(json_object_get(doc, "max_trial")) == 19);
    CHECK(json_array_size(json_object_get(json_object_get(json_object_get(doc, "curve"), "model"), "p_correct")) == 20);
    json_decref(doc);
}

/* ---- the numbers are the engine's -------------------------------------------------- */

static void check_fit(const char *who, const ml_replay_fit *f, json_t *o, int model, int per_seq) {
    (void)who;
    if (per_seq) CHECK_NEAR_NAN(num(o, "temperature"), f->temperature, 1e-9, 1e-12);
    CHECK_NEAR_NAN(num(o, "nll"), f->nll, 1e-9, 1e-12);
    CHECK_NEAR_NAN(num(o, "nll_t1"), f->nll_t1, 1e-9, 1e-12);
    CHECK_NEAR_NAN(num(o, "pseudo_r2"), f->pseudo_r2, 1e-9, 1e-12);
    CHECK_NEAR_NAN(num(o, "agreement"), f->agreement, 0, 0);
    CHECK_NEAR_NAN(num(o, model ? "model_accuracy" : "accuracy"), f->accuracy, 0, 0);
}

static void check_panel_curve(json_t *c, const ml_panel_curve *want) {
    const char *keys[] = {"p_correct", "ci_low", "ci_high"};
    const double *v[] = {want->p_correct, want->ci_low, want->ci_high};
    for (int k = 0; k < 3; k++) {
        json_t *a = json_object_get(c, keys[k]);
        CHECK(json_array_size(a) == (size_t)want->n_trials);
        for (int t = 0; t < want->n_trials && t < (int)json_array_size(a); t++) {
            json_t *x = json_array_get(a, (size_t)t);
            CHECK_NEAR_NAN(json_is_null(x) ? NAN : json_number_value(x), v[k][t], 1e-12, 1e-12);
        }
    }
}

/* g: a group's figures; c: its curves (the summary's are the answer's top-level "curve") */
static void check_group(json_t *g, json_t *c, const ml_replay_group *want) {
    CHECK(json_integer_value(json_object_get(g, "participants")) == want->participants);
    CHECK(json_integer_value(json_object_get(g, "trials")) == want->trials);
    CHECK(json_integer_value(json_object_get(g, "unmatched")) == want->unmatched);
    check_fit("group", &want->model, g, 1, 0);
    check_fit("group baseline", &want->baseline, json_object_get(g, "baseline"), 0, 0);
    json_t *nc = json_object_get(g, "noise_ceiling");
    CHECK_NEAR_NAN(num(nc, "r"), want->noise_ceiling.r, 1e-12, 1e-12);
    CHECK_NEAR_NAN(num(nc, "ci_low"), want->noise_ceiling.ci_low, 1e-12, 1e-12);
    CHECK_NEAR_NAN(num(nc, "ci_high"), want->noise_ceiling.ci_high, 1e-12, 1e-12);
    CHECK_NEAR_NAN(num(g, "model_r"), want->model_r, 1e-9, 1e-12);
    CHECK_NEAR_NAN(num(g, "rmse"), want->rmse, 1e-9, 1e-12);
    CHECK_NEAR_NAN(num(g, "baseline_r"), want->baseline_r, 1e-9, 1e-12);
    CHECK(json_is_object(c));
    check_panel_curve(json_object_get(c, "human"), &want->human_curve);
    check_panel_curve(json_object_get(c, "model"), &want->model_curve);
    check_panel_curve(json_object_get(c, "baseline"), &want->baseline_curve);
}

static void test_numbers_equal_engine(void) {
    ml_config cfg;
    ml_config_defaults(&cfg);
    cfg.checkpoint = strdup(ML_SOURCE_ROOT "/data/demo/model.safetensors");
    cfg.backbone = strdup(ML_SOURCE_ROOT "/data/demo/backbone.npy");
    cfg.targets = strdup(ML_SOURCE_ROOT "/data/demo/targets.txt");
    cfg.item_ids = strdup(ML_SOURCE_ROOT "/data/demo/unique_id.txt");
    ml_app app;
    ml_err err = {{0}};
    REQUIRE_MSG(ml_app_load(&app, &cfg, &err) == 0, "%s", err.msg);
    ml_human_data h;
    ml_fetch_code fc;
    REQUIRE_MSG(ml_human_csv_parse(csv_body, csv_len, "replay.csv", &h, &fc, &err) == 0, "%s",
                err.msg);
    ml_replay_request rq;
    ml_replay_defaults(&rq);
    rq.n_boot = 200;
    rq.seed = 4;
    rq.include_trials = 1;
    ml_worker *w = calloc(1, sizeof *w);
    ml_replay_result res;
    ml_replay_code code;
    int rc = ml_app_replay(&app, w, &h, &rq, NULL, &res, &code, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    json_t *doc = rc == 0 ? call("GET", QUERY "&include_trials=true", 200) : NULL;
    if (doc) {
        json_t *ps = json_object_get(doc, "participants");
        CHECK(json_array_size(ps) == res.n_participants);
        for (size_t i = 0; i < res.n_participants && i < json_array_size(ps); i++) {
            json_t *p = json_array_get(ps, i);
            const ml_replay_participant *e = &res.participants[i];
            CHECK_EQ_STR(json_string_value(json_object_get(p, "participant")), e->name);
            CHECK(json_integer_value(json_object_get(p, "trials")) == e->trials);
            CHECK(json_integer_value(json_object_get(p, "unmatched")) == e->unmatched);
            CHECK_NEAR_NAN(num(p, "human_accuracy"), e->human_accuracy, 0, 0);
            check_fit(e->name, &e->model, p, 1, 1);
            check_fit(e->name, &e->baseline, json_object_get(p, "baseline"), 0, 1);
        }
        check_group(json_object_get(doc, "summary"), json_object_get(doc, "curve"), &res.overall);
        json_t *by = json_object_get(doc, "by_dimension");
        CHECK(json_array_size(by) == (size_t)res.n_dims);
        for (int j = 0; j < res.n_dims && j < (int)json_array_size(by); j++)
            check_group(json_array_get(by, (size_t)j),
                        json_object_get(json_array_get(by, (size_t)j), "curve"), &res.by_dim[j]);
        json_t *tr = json_object_get(doc, "trials");
        CHECK(json_array_size(tr) == res.n_trial_rows);
        for (size_t i = 0; i < res.n_trial_rows && i < json_array_size(tr); i++) {
            json_t *t = json_array_get(tr, i);
            const ml_replay_trial *e = &res.trials[i];
            CHECK(json_integer_value(json_object_get(t, "trial")) == e->trial);
            CHECK_NEAR(num(t, "logit"), e->logit, 1e-6, 1e-6);
            CHECK_NEAR(num(t, "p_model"), e->p_model, 1e-9, 1e-12);
            CHECK_NEAR(num(t, "p_baseline"), e->p_baseline, 1e-9, 1e-12);
        }
        json_decref(doc);
    }
    ml_replay_result_free(&res);
    ml_human_data_free(&h);
    ml_app_worker_free(w);
    ml_app_free(&app);
    ml_config_free(&cfg);
}

/* ---- cache, trials, CSV -------------------------------------------------------------- */

static void test_second_request_from_cache(void) {
    http_reply a, b;
    CHECK(http_call(&d, "GET", QUERY, NULL, &a) == 0);
    CHECK(http_call(&d, "GET", QUERY, NULL, &b) == 0);
    /* "seconds" times the computation: equal bytes mean one computation answered both */
    CHECK_MSG(a.len == b.len && a.body && b.body && !memcmp(a.body, b.body, a.len),
              "the repeated request was not answered from the cache");
    json_t *doc = http_json(&b);
    CHECK(num(json_object_get(doc, "seconds"), "model") > 0);
    json_decref(doc);
    printf("# replay request from the cache: %.2f ms (first of the pair %.2f ms)\n",
           b.seconds * 1e3, a.seconds * 1e3);
    http_reply_free(&a);
    http_reply_free(&b);
}

static void test_include_trials(void) {
    json_t *doc = call("GET", "/v1/human/replay?include_trials=true&n_boot=0", 200);
    json_t *tr = json_object_get(doc, "trials");
    CHECK(json_array_size(tr) == (size_t)want_trials);
    static const char *const keys[] = {"participant", "trial", "dimension", "image", "label",
                                       "choice", "correct", "p_model", "p_choice",
                                       "model_correct", "p_baseline", NULL};
    for (size_t i = 0; i < json_array_size(tr); i++) {
        json_t *t = json_array_get(tr, i);
        check_keys(t, "trial row", keys);
        int choice = (int)json_integer_value(json_object_get(t, "choice"));
        int label = (int)json_integer_value(json_object_get(t, "label"));
        double pm = num(t, "p_model"), pc = num(t, "p_choice");
        CHECK_NEAR(pc, choice ? pm : 1 - pm, 0, 1e-15);
        CHECK(json_is_true(json_object_get(t, "correct")) == (choice == label));
        CHECK(json_is_true(json_object_get(t, "model_correct")) == ((num(t, "logit") > 0) == label));
        CHECK(!strncmp(json_string_value(json_object_get(t, "image")), "stimuli/syn_", 12));
        CHECK(strcmp(json_string_value(json_object_get(t, "participant")), "P11") != 0);
    }
    json_decref(doc);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* field k (0-based) of the CSV line at s, RFC 4180 quotes removed, into out */
static void csv_field(const char *s, int k, char *out, size_t cap) {
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

static void test_csv_tables(void) {
    raw_reply r;
    /* trials: one row per trial, through the Accept header */
    CHECK(get_raw("/v1/human/replay?include_trials=true&n_boot=0", "text/csv", &r) == 0);
    CHECK(r.status == 200);
    CHECK_STR_CONTAINS(r.headers.data, "text/csv");
    const char *header = "participant,dimension,trial,image,label,choice,correct,logit,p_model,"
                         "p_choice,model_correct,baseline_logit,p_baseline,baseline_correct\n";
    CHECK(r.body.data && !strncmp(r.body.data, header, strlen(header)));
    CHECK_MSG(count_lines(r.body.data) == want_trials + 1, "%d lines for %ld trials",
              count_lines(r.body.data), want_trials);
    json_t *doc = call("GET", "/v1/human/replay?include_trials=true&n_boot=0", 200);
    json_t *t0 = json_array_get(json_object_get(doc, "trials"), 0);
    const char *line1 = strchr(r.body.data, '\n') + 1;
    char f[128];
    csv_field(line1, 0, f, sizeof f);
    CHECK_EQ_STR(f, json_string_value(json_object_get(t0, "participant")));
    csv_field(line1, 3, f, sizeof f);
    CHECK_EQ_STR(f, json_string_value(json_object_get(t0, "image")));
    csv_field(line1, 8, f, sizeof f);
    CHECK(strtod(f, NULL) == num(t0, "p_model")); /* both the shortest round-trip digits */
    csv_field(line1, 12, f, sizeof f);
    CHECK(strtod(f, NULL) == num(t0, "p_baseline"));
    json_decref(doc);
    /* the participant with a comma in its name is quoted */
    CHECK_STR_CONTAINS(r.body.data, "\n\"P,07\",1,");
    raw_free(&r);
    /* without include_trials: one row per participant sequence, format=csv */
    CHECK(get_raw(QUERY "&format=csv", NULL, &r) == 0);
    CHECK(r.status == 200);
    CHECK(r.body.data && !strncmp(r.body.data, "participant,dimension,trials,unmatched,", 39));
    CHECK(count_lines(r.body.data) == N_PART + 1);
    doc = call("GET", QUERY, 200);
    json_t *p1 = json_array_get(json_object_get(doc, "participants"), 1);
    const char *row = strchr(r.body.data, '\n') + 1;
    row = strchr(row, '\n') + 1; /* participant 1 */
    csv_field(row, 10, f, sizeof f);
    CHECK(strtod(f, NULL) == num(p1, "nll"));
    csv_field(row, 12, f, sizeof f);
    CHECK(strtod(f, NULL) == num(p1, "pseudo_r2"));
    /* the empty participant's undefined figures are empty cells */
    const char *last = strstr(r.body.data, "\nP11,");
    CHECK(last != NULL);
    if (last) {
        csv_field(last + 1, 10, f, sizeof f);
        CHECK_EQ_STR(f, "");
        csv_field(last + 1, 2, f, sizeof f);
        CHECK_EQ_STR(f, "0");
    }
    json_decref(doc);
    raw_free(&r);
    /* a JSON Accept still gets JSON; format wins over Accept */
    CHECK(get_raw(QUERY "&format=json", "text/csv", &r) == 0);
    CHECK(r.body.data && r.body.data[0] == '{');
    raw_free(&r);
}

/* ---- jobs ---------------------------------------------------------------------------- */

static void test_async_job(void) {
    const char *q = "/v1/human/replay?async=true&seed=9&n_boot=300";
    json_t *doc = call("GET", q, 202);
    const char *status_url = json_string_value(json_object_get(doc, "status_url"));
    CHECK(status_url != NULL);
    char path[160];
    snprintf(path, sizeof path, "%s", status_url ? status_url : "/v1/jobs/none");
    json_decref(doc);
    json_t *job = NULL;
    for (int i = 0; i < 600; i++) {
        json_decref(job);
        job = call("GET", path, 200);
        const char *s = json_string_value(json_object_get(job, "status"));
        if (!s || !strcmp(s, "done") || !strcmp(s, "failed")) break;
        usleep(20000);
    }
    CHECK_EQ_STR(json_string_value(json_object_get(job, "status")), "done");
    CHECK_EQ_STR(json_string_value(json_object_get(job, "kind")), "replay");
    json_t *pr = json_object_get(job, "progress");
    /* sequences through the model, then through the baseline */
    CHECK(json_integer_value(json_object_get(pr, "total")) == 2 * N_PART);
    CHECK(json_integer_value(json_object_get(pr, "done")) == 2 * N_PART);
    json_t *sync = call("GET", "/v1/human/replay?seed=9&n_boot=300", 200);
    json_t *res = json_object_get(job, "result");
    CHECK(json_equal(json_object_get(res, "summary"), json_object_get(sync, "summary")));
    CHECK(json_equal(json_object_get(res, "by_dimension"), json_object_get(sync, "by_dimension")));
    CHECK(json_equal(json_object_get(res, "seconds"), json_object_get(sync, "seconds")));
    json_decref(sync);
    json_decref(job);
    /* the same request again: a job that is done at once, from the cache */
    doc = call("GET", q, 202);
    CHECK_EQ_STR(json_string_value(json_object_get(doc, "status")), "done");
    json_decref(doc);
}

/* ---- refusals ------------------------------------------------------------------------ */

static void test_bad_arguments(void) {
    const char *bad[][2] = {
        {"temperature=0", "temperature"},      {"temperature=-1", "temperature"},
        {"temperature=hot", "temperature"},    {"temperature=nan", "temperature"},
        {"temperature=1e9", "temperature"},    {"baseline=svm", "baseline"},
        {"max_trial=-1", "max_trial"},         {"max_trial=1.5", "max_trial"},
        {"n_boot=-1", "n_boot"},               {"n_boot=100001", "n_boot"},
        {"n_splits=0", "n_splits"},            {"seed=-2", "seed"},
        {"include_trials=maybe", "include_trials"}, {"format=xml", "format"},
        {"async=true&format=csv", "async"},    {"dims=1", "dims"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/human/replay?%s", bad[i][0]);
        json_t *doc = call("GET", path, 400);
        const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
        CHECK_MSG(msg && strstr(msg, bad[i][1]), "%s: message %s", bad[i][0], msg ? msg : "(none)");
        json_decref(doc);
    }
    json_t *doc = call("POST", "/v1/human/replay", 405);
    json_decref(doc);
}

/* The body served, then a refresh so the daemon takes it. */
static void serve(const char *body, size_t len) {
    testsrv_set_body(srv, body, len);
    json_t *doc = call("POST", "/v1/human/refresh", 200);
    json_decref(doc);
}

static void test_unreplayable_csv_is_422(void) {
    const char *no_columns = "participant,trial,dimension,correct\np1,0,0,True\np1,1,0,False\n";
    serve(no_columns, strlen(no_columns));
    json_t *doc = call("GET", "/v1/human/replay", 422);
    json_t *e = json_object_get(doc, "error");
    CHECK_EQ_STR(json_string_value(json_object_get(e, "code")), "human_data_not_replayable");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(e, "message")), "choice");
    json_decref(doc);
    doc = call("GET", "/v1/human/learning-curves?max_trial=1", 200); /* the curves still work */
    json_decref(doc);
    const char *unknown = "participant,trial,dimension,correct,choice,true_category_binary,image\n"
                          "p1,0,0,True,1,1,stimuli/zebra/zebra_01.jpg\n"
                          "p1,1,0,False,0,1,stimuli/okapi/okapi_01.jpg\n";
    serve(unknown, strlen(unknown));
    doc = call("GET", "/v1/human/replay?async=false", 422);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(json_object_get(doc, "error"), "message")),
                       "item ids");
    json_decref(doc);
    /* as a job: failed with the same reason */
    doc = call("GET", "/v1/human/replay?async=true", 202);
    char path[160];
    snprintf(path, sizeof path, "%s", json_string_value(json_object_get(doc, "status_url")));
    json_decref(doc);
    json_t *job = NULL;
    for (int i = 0; i < 300; i++) {
        json_decref(job);
        job = call("GET", path, 200);
        const char *s = json_string_value(json_object_get(job, "status"));
        if (!s || !strcmp(s, "done") || !strcmp(s, "failed")) break;
        usleep(20000);
    }
    CHECK_EQ_STR(json_string_value(json_object_get(job, "status")), "failed");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(job, "error"), "code")),
                 "human_data_not_replayable");
    json_decref(job);
    serve(csv_body, csv_len);
}

/* The later generation takes magnitudes as feedback: the handler refuses it before it looks
 * at the human data (the daemon does not serve such checkpoints yet, so the handler is
 * called here on an app loaded in this process). */
static void test_later_generation_is_422(void) {
    char bb[300];
    snprintf(bb, sizeof bb, "%s/tf1_backbone.h5", dir);
    void *buf = NULL;
    size_t len = 0;
    hid_t f = h5b_new();
    REQUIRE(f >= 0 && h5b_floats(f, "representations", 2, 7, 32, 0) == 0 &&
            h5b_image(f, &buf, &len) == 0);
    FILE *out = fopen(bb, "wb");
    REQUIRE(out && fwrite(buf, 1, len, out) == len);
    fclose(out);
    free(buf);
    ml_config cfg;
    ml_config_defaults(&cfg);
    cfg.checkpoint = strdup(ML_SOURCE_ROOT "/tests/fixtures/model/ml_tf1.pt");
    cfg.backbone = strdup(bb);
    cfg.targets = strdup(ML_SOURCE_ROOT "/tests/fixtures/data/aligned_targets.npy");
    cfg.item_ids = strdup(ML_SOURCE_ROOT "/tests/fixtures/data/aligned_ids.txt");
    ml_app app;
    ml_err err = {{0}};
    int rc = ml_app_load(&app, &cfg, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(app.model.generation == ML_GEN_METALEARNER);
        ml_request req = {.method = "GET", .path = "/v1/human/replay", .body = ""};
        ml_response resp = {0};
        ml_h_replay_fast(&app, &req, &resp);
        CHECK(resp.status == 422);
        size_t n = 0;
        const char *body = ml_response_data(&resp, &n);
        CHECK(body != NULL);
        if (body) {
            CHECK_STR_CONTAINS(body, "model_not_replayable");
            CHECK_STR_CONTAINS(body, "magnitudes");
            CHECK_STR_CONTAINS(body, "label");
        }
        ml_response_reset(&resp);
        /* a bad argument is still a 400 first */
        ml_query_arg qa = {"temperature", "cold"};
        req.query = &qa;
        req.n_query = 1;
        ml_h_replay_fast(&app, &req, &resp);
        CHECK(resp.status == 400);
        ml_response_reset(&resp);
    }
    ml_app_free(&app);
    ml_config_free(&cfg);
}

/* ---- the comparison's pointer, a fresh daemon, no data ------------------------------- */

static void test_compare_points_to_replay(void) {
    json_t *doc = call("GET", "/v1/compare/learning-curves?episodes=8&seq_len=30&n_boot=0", 200);
    const char *ru = json_string_value(json_object_get(doc, "replay_url"));
    CHECK(ru && !strcmp(ru, "/v1/human/replay?max_trial=29"));
    json_t *r = ru ? call("GET", ru, 200) : NULL;
    CHECK(json_integer_value(json_object_get(r, "max_trial")) == 29);
    json_decref(r);
    json_decref(doc);
}

static json_t *without_run_details(json_t *doc) {
    json_object_del(doc, "source");
    json_object_del(doc, "seconds");
    return doc;
}

static void test_fresh_daemon_same_answer(void) {
    json_t *first = call("GET", QUERY "&include_trials=true", 200);
    CHECK(daemon_stop(&d, SIGTERM) == 0);
    char fresh[320];
    snprintf(fresh, sizeof fresh, "%s/fresh-cache", dir);
    testsrv_set_mode(srv, "404"); /* no copy anywhere: 503 with Retry-After */
    if (start(fresh) != 0) {
        CHECK(0);
        json_decref(first);
        return;
    }
    raw_reply r;
    CHECK(get_raw(QUERY, NULL, &r) == 0);
    CHECK(r.status == 503);
    CHECK_STR_CONTAINS(r.headers.data, "Retry-After:");
    CHECK_STR_CONTAINS(r.body.data, "upstream_status");
    raw_free(&r);
    testsrv_set_mode(srv, "ok");
    json_t *again = call("GET", QUERY "&include_trials=true", 200);
    CHECK(json_is_false(json_object_get(json_object_get(again, "source"), "from_cache")));
    CHECK_MSG(json_equal(without_run_details(first), without_run_details(again)),
              "a fresh daemon gave another answer");
    json_decref(first);
    json_decref(again);
}

int main(void) {
    unset_proxies();
    csv_body = make_csv(&csv_len);
    srv = testsrv_start();
    if (!csv_body || !srv || !mkdtemp(dir)) {
        printf("not ok 1 - set-up (the CSV, the test server or the test folder)\n1..1\n");
        return 1;
    }
    testsrv_set_body(srv, csv_body, csv_len);
    testsrv_url(srv, "/data.csv", url, sizeof url);
    char cache[320];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    if (start(cache) != 0) {
        printf("not ok 1 - daemon starts\n1..1\n");
        return 1;
    }
    RUN(test_json_shape);
    RUN(test_numbers_equal_engine);
    RUN(test_second_request_from_cache);
    RUN(test_include_trials);
    RUN(test_csv_tables);
    RUN(test_async_job);
    RUN(test_bad_arguments);
    RUN(test_unreplayable_csv_is_422);
    RUN(test_later_generation_is_422);
    RUN(test_compare_points_to_replay);
    RUN(test_fresh_daemon_same_answer);
    daemon_stop(&d, SIGTERM);
    testsrv_stop(srv);
    free(csv_body);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return UT_DONE();
}
