/* GET /v1/human/replay's other faces against the demo daemon with a loopback human CSV of
 * our own (tests/support/replay_test.h): include_trials, the CSV tables read back (Accept and
 * format=csv, RFC 4180 quoting, empty cells for undefined figures), a job with progress, the
 * 400s, the 422s (a CSV without the replay's columns, one with no known concept, as a request
 * and as a job; a later-generation checkpoint). */
#include "config.h"
#include "engine/app.h"
#include "h5build.h"
#include "http/handlers/handlers.h"
#include "unit.h"
#include "human_test.h"
#include "replay_test.h"

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

static void test_async_job(void) {
    const char *q = "/v1/human/replay?async=true&seed=9&n_boot=300";
    json_t *doc = call("GET", q, 202);
    json_t *job = wait_job(json_string_value(json_object_get(doc, "status_url")));
    json_decref(doc);
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
    json_t *job = wait_job(json_string_value(json_object_get(doc, "status_url")));
    json_decref(doc);
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

int main(void) {
    if (replay_setup() != 0) return 1;
    RUN(test_include_trials);
    RUN(test_csv_tables);
    RUN(test_async_job);
    RUN(test_bad_arguments);
    RUN(test_unreplayable_csv_is_422);
    RUN(test_later_generation_is_422);
    RUN(test_daemon_stops_cleanly);
    if (replay_teardown() != 0) return 1;
    return UT_DONE();
}
