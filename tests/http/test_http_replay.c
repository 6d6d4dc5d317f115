/* GET /v1/human/replay against the demo daemon with a loopback human CSV of our own
 * (tests/support/replay_test.h): every field of API.md's answer, the numbers against the
 * engine run in this process on the same files, the cache (one computation answers twice), a
 * fresh daemon (the same answer, after a 503 with Retry-After while upstream has nothing), and
 * the comparison's pointer. test_http_replay_io.c has the tables, jobs and refusals. */
#include "config.h"
#include "engine/app.h"
#include "metalign/human_csv.h"
#include "metalign/replay.h"
#include "unit.h"
#include "human_test.h"
#include "replay_test.h"

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

static void test_second_request_from_cache(void) {
    http_reply a, b;
    /* a request no other test makes: the first computes, the second must not */
    const char *q = "/v1/human/replay?n_boot=200&seed=5";
    CHECK(http_call(&d, "GET", q, NULL, &a) == 0);
    CHECK(http_call(&d, "GET", q, NULL, &b) == 0);
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
    if (replay_setup() != 0) return 1;
    RUN(test_json_shape);
    RUN(test_numbers_equal_engine);
    RUN(test_second_request_from_cache);
    RUN(test_compare_points_to_replay);
    RUN(test_fresh_daemon_same_answer);
    RUN(test_daemon_stops_cleanly);
    if (replay_teardown() != 0) return 1;
    return UT_DONE();
}
