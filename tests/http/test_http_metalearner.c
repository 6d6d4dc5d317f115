/* The daemon serving the later generation (MODEL.md section 7, API.md "The later
 * generation"): for each model type of tests/reference/make_metalearner_world.py's world (a
 * transformer with an MLP, an LSTM, a static linear model with three head columns) a daemon
 * on a MetaLearnerConfig checkpoint and an HDF5 backbone (both layouts), held against
 * PyTorch: /v1/info, activations (every layer, logits, magnitudes; every item alone and one
 * sequence fed magnitudes), CKA of every representation, learning curves (FunctionDataset
 * episodes, magnitude MSE and R^2, L < S), the feedback vocabulary, the comparison with
 * the humans (a CSV from tests/support/testsrv.c) and the replay's refusal (422; in the engine
 * too: tests/engine/test_simulate_ml.c). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "testsrv.h"
#include "unit.h"

#define WORLD ML_SOURCE_ROOT "/tests/fixtures/metalearner/"

static test_daemon d;
static testsrv *srv;  /* serves a small human CSV for the comparison */
static json_t *ref;   /* reference.json */
static json_t *want;  /* this model's part */
static const char *model_name;

static json_t *call(const char *method, const char *path, const char *body, long status) {
    http_reply r;
    if (http_call(&d, method, path, body, &r) != 0) {
        CHECK_MSG(0, "%s: %s %s: no reply", model_name, method, path);
        return NULL;
    }
    CHECK_MSG(r.status == status, "%s: %s %s: status %ld, expected %ld: %.400s", model_name,
              method, path, r.status, status, r.body ? r.body : "");
    json_t *doc = http_json(&r);
    CHECK_MSG(doc != NULL, "%s: %s %s: not JSON", model_name, method, path);
    http_reply_free(&r);
    return doc;
}

static void expect_error(const char *method, const char *path, const char *body, long status,
                         const char *needle) {
    json_t *doc = call(method, path, body, status);
    const char *m = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    CHECK_MSG(m && strstr(m, needle), "%s: %s %s: message \"%s\" lacks \"%s\"", model_name,
              method, path, m ? m : "(none)", needle);
    json_decref(doc);
}

static double num(json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }
static json_t *get(json_t *o, const char *k) { return json_object_get(o, k); }
static int is_static(void) { return !strcmp(model_name, "static"); }

/* Nested arrays of numbers compared leaf by leaf (shapes must agree). */
static void check_values(const char *what, json_t *got, json_t *exp, double rtol, double atol) {
    if (json_is_array(exp)) {
        CHECK_MSG(json_is_array(got) && json_array_size(got) == json_array_size(exp),
                  "%s %s: %zu values, expected %zu", model_name, what, json_array_size(got),
                  json_array_size(exp));
        for (size_t i = 0; json_is_array(got) && i < json_array_size(exp); i++)
            check_values(what, json_array_get(got, i), json_array_get(exp, i), rtol, atol);
        return;
    }
    double a = num(got), b = num(exp), tol = fmax(atol, rtol * fabs(b));
    CHECK_MSG(fabs(a - b) <= tol, "%s %s: %.9g, expected %.9g", model_name, what, a, b);
}

static void check_layers(json_t *doc, json_t *exp_layers) {
    json_t *layers = get(doc, "layers");
    CHECK_MSG(json_array_size(layers) == json_object_size(exp_layers), "%s: %zu layers",
              model_name, json_array_size(layers));
    for (size_t k = 0; k < json_array_size(layers); k++) {
        json_t *l = json_array_get(layers, k);
        const char *name = json_string_value(get(l, "name"));
        json_t *w = get(exp_layers, name);
        CHECK_MSG(w != NULL, "%s: unexpected layer %s", model_name, name ? name : "?");
        if (w) check_values(name, get(l, "data"), w, 1e-4, 1e-4);
    }
}

static void test_info(void) {
    json_t *info = call("GET", "/v1/info", NULL, 200);
    json_t *m = get(info, "model");
    CHECK(!strcmp(json_string_value(get(m, "generation")), "metalearner"));
    const char *type = json_string_value(get(m, "model_type"));
    const char *expect_type = !strcmp(model_name, "tf") ? "transformer" : is_static() ? "static_linear" : "lstm";
    CHECK_MSG(type && !strcmp(type, expect_type), "%s: model_type %s", model_name, type);
    CHECK(!strcmp(json_string_value(get(m, "feedback")), is_static() ? "none" : "magnitudes"));
    CHECK(json_integer_value(get(m, "logit_dims")) == (is_static() ? 3 : 1));
    CHECK(json_is_true(get(m, "magnitudes")));
    json_t *variant = get(m, "variant"); /* positions: the transformer's only */
    if (!strcmp(model_name, "tf"))
        CHECK(json_is_string(variant) && !strcmp(json_string_value(variant), "rope"));
    else
        CHECK(json_is_null(variant));
    if (!strcmp(model_name, "tf")) {
        CHECK(json_integer_value(get(m, "max_seq_len")) == 48);
        CHECK(json_integer_value(get(m, "sl")) == 48);
        CHECK(json_integer_value(get(m, "num_heads")) == 4);
        CHECK(json_is_true(get(m, "use_mlp")));
        CHECK_NEAR(num(get(m, "mag_std")), 0.6, 0, 1e-12); /* the shortest decimal of 0.6f */
        CHECK(!strcmp(json_string_value(get(m, "heads_source")), "checkpoint"));
    } else if (is_static()) {
        CHECK(json_is_null(get(m, "mag_std")));
        CHECK(json_is_null(get(m, "heads_source")));
    } else {
        CHECK_NEAR(num(get(m, "mag_std")), 0.45, 0, 1e-12);
    }
    /* the layer names, in the order the reference lists them */
    json_t *layers = get(m, "layers");
    json_t *exp = get(get(want, "activations"), "layers");
    CHECK(json_array_size(layers) == json_object_size(exp));
    const char *name;
    json_t *v;
    size_t i = 0;
    json_object_foreach(exp, name, v) {
        const char *got = json_string_value(json_array_get(layers, i++));
        CHECK_MSG(got && !strcmp(got, name), "%s: layer %zu is %s, expected %s", model_name,
                  i - 1, got ? got : "?", name);
    }
    CHECK(json_integer_value(get(get(info, "data"), "backbone_dim")) ==
          json_integer_value(get(ref, "D")));
    json_decref(info);
}

/* Every item alone: raw features, a zero magnitude column. Asked before and after the
 * all-item activations are cached (two code paths). */
static void check_independent(void) {
    json_t *w = get(want, "activations"), *items = get(w, "items");
    char body[256];
    snprintf(body, sizeof body, "{\"items\": [%lld, \"item_%02lld\", %lld]}",
             (long long)json_integer_value(json_array_get(items, 0)),
             (long long)json_integer_value(json_array_get(items, 1)),
             (long long)json_integer_value(json_array_get(items, 2)));
    json_t *doc = call("POST", "/v1/activations", body, 200);
    check_layers(doc, get(w, "layers"));
    check_values("logits", get(doc, "logits"), get(w, "logits"), 1e-4, 1e-5);
    check_values("magnitudes", get(doc, "magnitudes"), get(w, "magnitudes"), 1e-4, 1e-5);
    /* probabilities: the logits' sigmoid, same shape */
    json_t *lg = get(doc, "logits"), *p = get(doc, "probabilities");
    json_t *l0 = json_array_get(lg, 0), *p0 = json_array_get(p, 0);
    if (json_is_array(l0)) {
        CHECK(is_static() && json_array_size(l0) == 3);
        l0 = json_array_get(l0, 2);
        p0 = json_array_get(p0, 2);
    }
    CHECK_NEAR(num(p0), 1 / (1 + exp(-num(l0))), 1e-6, 1e-7);
    CHECK(!strcmp(json_string_value(get(doc, "feedback")), "none"));
    json_decref(doc);
}

static void test_activations_independent(void) {
    check_independent(); /* a forward pass */
    json_t *c = call("GET", "/v1/cka", NULL, 200); /* caches every item's activations */
    json_decref(c);
    check_independent(); /* rows of the cache */
}

static void test_activations_sequence(void) {
    json_t *w = get(want, "sequence");
    char *items = json_dumps(get(w, "items"), JSON_COMPACT);
    char *mags = json_dumps(get(w, "magnitudes_in"), JSON_COMPACT);
    char body[1024];
    if (is_static()) {
        /* no feedback: a sequence is every item alone */
        snprintf(body, sizeof body, "{\"items\": %s, \"mode\": \"sequence\"}", items);
        json_t *doc = call("POST", "/v1/activations", body, 200);
        check_layers(doc, get(w, "layers"));
        check_values("logits", get(doc, "logits"), get(w, "logits"), 1e-4, 1e-5);
        check_values("magnitudes", get(doc, "magnitudes"), get(w, "magnitudes"), 1e-4, 1e-5);
        char *warn = json_dumps(get(doc, "warnings"), 0);
        CHECK_STR_CONTAINS(warn, "sees no sequence");
        free(warn);
        json_decref(doc);
        snprintf(body, sizeof body,
                 "{\"items\": %s, \"mode\": \"sequence\", \"magnitudes\": %s}", items, mags);
        expect_error("POST", "/v1/activations", body, 400, "static_linear model takes no feedback");
    } else {
        snprintf(body, sizeof body,
                 "{\"items\": %s, \"mode\": \"sequence\", \"magnitudes\": %s}", items, mags);
        json_t *doc = call("POST", "/v1/activations", body, 200);
        check_layers(doc, get(w, "layers"));
        check_values("logits", get(doc, "logits"), get(w, "logits"), 1e-4, 1e-5);
        check_values("magnitudes", get(doc, "magnitudes"), get(w, "magnitudes"), 1e-4, 1e-5);
        CHECK(!strcmp(json_string_value(get(doc, "feedback")), "magnitudes"));
        check_values("fed_magnitudes", get(doc, "fed_magnitudes"), get(w, "magnitudes_in"), 1e-7,
                     0);
        json_decref(doc);
        /* the last magnitude is seen by no trial: changing it changes nothing */
        snprintf(body, sizeof body,
                 "{\"items\": [3, 8], \"mode\": \"sequence\", \"magnitudes\": [0.5, -9]}");
        json_t *a = call("POST", "/v1/activations", body, 200);
        snprintf(body, sizeof body,
                 "{\"items\": [3, 8], \"mode\": \"sequence\", \"magnitudes\": [0.5, 4]}");
        json_t *b = call("POST", "/v1/activations", body, 200);
        CHECK(json_equal(get(a, "logits"), get(b, "logits")));
        snprintf(body, sizeof body,
                 "{\"items\": [3, 8], \"mode\": \"sequence\", \"magnitudes\": [-0.5, 4]}");
        json_t *c = call("POST", "/v1/activations", body, 200);
        CHECK(!json_equal(get(a, "logits"), get(c, "logits"))); /* the first one is seen */
        json_decref(a);
        json_decref(b);
        json_decref(c);
    }
    free(items);
    free(mags);
}

static void test_activations_vocabulary(void) {
    const char *A = "/v1/activations";
    if (is_static()) {
        expect_error("POST", A, "{\"items\": [1, 2], \"mode\": \"sequence\", \"labels\": [0, 1]}",
                     400, "labels are not used");
    } else {
        expect_error("POST", A, "{\"items\": [1, 2], \"mode\": \"sequence\", \"labels\": [0, 1]}",
                     400, "is fed magnitudes: give \"magnitudes\"");
        expect_error("POST", A, "{\"items\": [1, 2], \"mode\": \"sequence\"}", 400,
                     "sequence mode needs magnitudes: an array of 2 numbers");
        expect_error("POST", A, "{\"items\": [1, 2], \"mode\": \"sequence\", \"magnitudes\": [0.5]}",
                     400, "an array of 2 numbers");
        expect_error("POST", A,
                     "{\"items\": [1, 2], \"mode\": \"sequence\", \"magnitudes\": [0.5, \"x\"]}",
                     400, "magnitudes[1] must be a number");
        expect_error("POST", A,
                     "{\"items\": [1, 2], \"mode\": \"sequence\", \"magnitudes\": [0.5, 1e300]}",
                     400, "magnitudes[1] is too large");
        expect_error("POST", A, "{\"items\": [1], \"magnitudes\": [0.5]}", 400,
                     "only used in \"sequence\" mode");
    }
    expect_error("POST", A, "{\"items\": [1], \"layers\": [\"embedding\"]}", 400,
                 is_static() ? "the layers are embed .. ln_f"
                             : "the layers are embed, layer_0 .. ln_f");
    expect_error("POST", A, "{\"items\": [1], \"feedback\": [0]}", 400, "feedback");
    if (!strcmp(model_name, "tf")) {
        /* sl = 48: a sequence of 49 trials is refused, naming the limit */
        char body[1024] = "{\"items\": [";
        for (int i = 0; i < 49; i++) strcat(body, i ? ",1" : "1");
        strcat(body, "], \"mode\": \"sequence\", \"magnitudes\": [");
        for (int i = 0; i < 49; i++) strcat(body, i ? ",0" : "0");
        strcat(body, "]}");
        expect_error("POST", A, body, 400, "(48 trials: the sl of its config)");
    } else if (!strcmp(model_name, "lstm")) {
        /* the LSTM runs past its config's sl = 48, and the answer says so */
        char body[1024] = "{\"items\": [";
        for (int i = 0; i < 49; i++) strcat(body, i ? ",1" : "1");
        strcat(body, "], \"mode\": \"sequence\", \"magnitudes\": [");
        for (int i = 0; i < 49; i++) strcat(body, i ? ",0" : "0");
        strcat(body, "]}");
        json_t *doc = call("POST", A, body, 200);
        char *warn = json_dumps(get(doc, "warnings"), 0);
        CHECK_STR_CONTAINS(warn, "beyond the sl=48 trials of the model's config");
        free(warn);
        json_decref(doc);
    }
}

static void check_cka(json_t *doc, json_t *exp) {
    CHECK_NEAR(num(get(get(doc, "baseline"), "cka")), num(get(exp, "backbone")), 1e-6, 1e-9);
    json_t *layers = get(doc, "layers");
    CHECK(json_array_size(layers) + 1 == json_object_size(exp));
    for (size_t i = 0; i < json_array_size(layers); i++) {
        json_t *l = json_array_get(layers, i);
        const char *name = json_string_value(get(l, "name"));
        json_t *e = get(exp, name);
        CHECK_MSG(e != NULL, "%s: unexpected representation %s", model_name, name);
        CHECK_NEAR(num(get(l, "cka")), num(e), 1e-4, 1e-7);
    }
}

static void test_cka(void) {
    json_t *doc = call("GET", "/v1/cka", NULL, 200);
    check_cka(doc, get(get(want, "cka"), "all"));
    json_decref(doc);
    doc = call("GET", "/v1/cka?dims=0,1,2", NULL, 200);
    check_cka(doc, get(get(want, "cka"), "012"));
    json_decref(doc);
    doc = call("GET", "/v1/cka?layers=embed,ln_f", NULL, 200);
    CHECK(json_array_size(get(doc, "layers")) == 2);
    json_decref(doc);
    expect_error("GET", "/v1/cka?layers=embedding", NULL, 400, "the layers are embed .. ln_f");
    doc = call("GET", "/v1/cka/matrix", NULL, 200);
    CHECK(json_array_size(get(doc, "names")) == json_object_size(get(get(want, "cka"), "all")));
    json_decref(doc);
}

static void test_curves(void) {
    json_t *w = get(want, "curves");
    char *dims = json_dumps(get(w, "dims"), JSON_COMPACT);
    char body[512];
    snprintf(body, sizeof body,
             "{\"episodes\": %lld, \"seq_len\": %lld, \"seed\": %lld, \"dims\": %s, "
             "\"batch_size\": %lld, \"n_boot\": 50, \"include_episodes\": true}",
             (long long)json_integer_value(get(w, "episodes")),
             (long long)json_integer_value(get(w, "seq_len")),
             (long long)json_integer_value(get(w, "seed")), dims,
             (long long)json_integer_value(get(w, "batch_size")));
    free(dims);
    json_t *doc = call("POST", "/v1/learning-curves", body, 200);
    REQUIRE(doc != NULL);
    CHECK(json_is_false(get(doc, "standardize"))); /* the research code feeds raw features */
    CHECK(!strcmp(json_string_value(get(doc, "task")), "function_dataset"));
    double trials = num(get(w, "trials"));
    CHECK(num(get(doc, "trials")) == trials);
    CHECK_NEAR(num(get(doc, "accuracy")), num(get(w, "accuracy")), 0, 2.0 / trials);
    CHECK_NEAR(num(get(doc, "loss")), num(get(w, "loss")), 1e-4, 1e-6);
    json_t *curve = get(doc, "curve"), *p = get(curve, "p_correct"), *n = get(curve, "n");
    json_t *wp = get(w, "p_correct"), *wn = get(w, "n"), *wmse = get(w, "mse");
    size_t S = json_array_size(wp);
    CHECK(json_array_size(p) == S && json_array_size(n) == S);
    for (size_t t = 0; t < S; t++) {
        double nt = num(json_array_get(n, t));
        CHECK_MSG(nt == num(json_array_get(wn, t)), "%s trial %zu: n %g", model_name, t, nt);
        CHECK_NEAR(num(json_array_get(p, t)), num(json_array_get(wp, t)), 0, 1.5 / nt);
        CHECK(num(json_array_get(get(curve, "ci_low"), t)) <= num(json_array_get(p, t)) + 1e-12);
    }
    CHECK(num(json_array_get(n, S - 1)) < num(get(w, "episodes"))); /* L < S */
    json_t *mag = get(doc, "magnitude");
    check_values("magnitude.mse", get(mag, "mse"), wmse, 1e-4, 1e-6);
    CHECK_NEAR(num(get(mag, "r2")), num(get(w, "r2")), 1e-4, 1e-5);
    json_t *bd = get(doc, "by_dimension"), *wbd = get(w, "by_dimension");
    CHECK(json_array_size(bd) == json_array_size(wbd));
    for (size_t g = 0; g < json_array_size(bd); g++) {
        json_t *a = json_array_get(bd, g), *b = json_array_get(wbd, g);
        CHECK(num(get(a, "dimension")) == num(get(b, "dimension")));
        CHECK_NEAR(num(get(a, "accuracy")), num(get(b, "accuracy")), 0, 6.0 / trials);
        CHECK_NEAR(num(get(get(a, "magnitude"), "r2")), num(get(b, "r2")), 1e-4, 1e-5);
        CHECK(json_array_size(get(get(a, "magnitude"), "mse")) == S);
    }
    /* every episode as long as the reference's, its items and magnitudes that long */
    json_t *det = get(doc, "episodes_detail"), *lengths = get(w, "lengths");
    CHECK(json_array_size(det) == json_array_size(lengths));
    for (size_t e = 0; e < json_array_size(det); e++) {
        json_t *ep = json_array_get(det, e);
        double L = num(json_array_get(lengths, e));
        CHECK(num(get(ep, "length")) == L);
        CHECK(json_array_size(get(ep, "items")) == (size_t)L);
        CHECK(json_array_size(get(ep, "magnitudes")) == (size_t)L);
        CHECK(json_array_size(get(ep, "predicted_magnitudes")) == (size_t)L);
        CHECK(json_array_size(get(ep, "correct")) == (size_t)L);
    }
    if (is_static()) {
        CHECK(!strcmp(json_string_value(get(doc, "head_column")), "dimension"));
        CHECK_STR_CONTAINS(json_string_value(get(doc, "note")), "no-learning baseline");
        expect_error("POST", "/v1/learning-curves", "{\"dims\": [1, 3], \"seq_len\": 10}", 400,
                     "dims[1]=3 has no head column: this static_linear model has 3");
    } else {
        CHECK(json_integer_value(get(doc, "head_column")) == 0);
        CHECK(!strcmp(json_string_value(get(doc, "feedback")), "magnitudes"));
    }
    json_decref(doc);
    /* standardised features on request: another answer */
    json_t *a = call("POST", "/v1/learning-curves",
                     "{\"episodes\": 6, \"seq_len\": 12, \"n_boot\": 0}", 200);
    json_t *b = call("POST", "/v1/learning-curves",
                     "{\"episodes\": 6, \"seq_len\": 12, \"n_boot\": 0, \"standardize\": true}",
                     200);
    CHECK(json_is_true(get(b, "standardize")));
    CHECK(!json_equal(get(get(a, "magnitude"), "mse"), get(get(b, "magnitude"), "mse")));
    json_decref(a);
    json_decref(b);
}

/* The comparison with the humans plays this generation's episodes (raw features). */
static void test_compare(void) {
    json_t *doc = call("GET", "/v1/compare/learning-curves?episodes=6&seq_len=12&n_boot=0",
                       NULL, 200);
    CHECK(json_integer_value(get(doc, "trials_compared")) == 12);
    CHECK(json_array_size(get(doc, "by_dimension")) == 3);
    CHECK(json_is_number(get(doc, "model_accuracy")));
    CHECK(!strcmp(json_string_value(get(doc, "replay_url")), "/v1/human/replay?max_trial=11"));
    json_decref(doc);
    /* the replay feeds the humans' labels back: this generation takes magnitudes (or nothing) */
    expect_error("GET", "/v1/human/replay", NULL, 422, "not the previous trial's label");
    expect_error("GET", "/v1/human/replay?async=true", NULL, 422, "cannot be replayed");
}

static int run_model(const char *name, const char *backbone) {
    model_name = name;
    want = get(ref, name);
    char ckpt[512], url[128];
    snprintf(ckpt, sizeof ckpt, WORLD "%s.pt", name);
    testsrv_url(srv, "/data.csv", url, sizeof url);
    const char *args[] = {"--checkpoint", ckpt, "--backbone", backbone,
                          "--targets", WORLD "targets.txt", "--item-ids", WORLD "ids.txt",
                          "--human-url", url, NULL};
    if (daemon_start(&d, args) != 0) {
        printf("# %s: the daemon did not start:\n# %s\n", name, d.log);
        CHECK_MSG(0, "%s: the daemon starts", name);
        return -1;
    }
    RUN(test_info);
    RUN(test_activations_independent);
    RUN(test_activations_sequence);
    RUN(test_activations_vocabulary);
    RUN(test_cka);
    RUN(test_curves);
    RUN(test_compare);
    int rc = daemon_stop(&d, SIGTERM);
    CHECK_MSG(rc == 0, "%s: the daemon exited %d: %s", name, rc, d.log);
    return 0;
}

int main(void) {
    json_error_t jerr;
    ref = json_load_file(FIXTURE("metalearner/reference.json"), 0, &jerr);
    if (!ref) {
        printf("not ok 1 - fixture metalearner/reference.json: %s\n1..1\n", jerr.text);
        return 1;
    }
    srv = testsrv_start();
    if (!srv) {
        printf("not ok 1 - the test server starts\n1..1\n");
        return 1;
    }
    /* three participants, one per dimension, 12 trials each */
    char csv[4096] = "participant,trial,dimension,correct\n";
    for (int p = 0; p < 3; p++)
        for (int t = 0; t < 12; t++) {
            char row[64];
            snprintf(row, sizeof row, "p%d,%d,%d,%s\n", p, t, p, (p + t) % 3 ? "True" : "False");
            strcat(csv, row);
        }
    testsrv_set_body(srv, csv, strlen(csv));
    run_model("tf", WORLD "backbone.h5");
    run_model("lstm", WORLD "backbone_images.h5"); /* one dataset per item */
    run_model("static", WORLD "backbone.h5");
    testsrv_stop(srv);
    json_decref(ref);
    return UT_DONE();
}
