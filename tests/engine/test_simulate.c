/* The simulation without a daemon: the demo bundle loaded directly, episodes and learning
 * curves held against the PyTorch reference (tests/reference/make_demo_fixtures.py writes
 * tests/fixtures/http/demo_reference.json), and the contract of metalign/simulate.h:
 * determinism whatever the batching, cancellation, progress, bounds. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/blas.h"
#include "metalign/dataset.h"
#include "metalign/model.h"
#include "metalign/runner.h"
#include "metalign/simulate.h"
#include "unit.h"
#include "world.h"

#define DEMO ML_SOURCE_ROOT "/data/demo/"

static world demo; /* the demo bundle */
static json_t *ref;

static int load_world(void) {
    ml_err err = {{0}};
    ml_data_paths paths = {DEMO "backbone.npy", DEMO "targets.txt", DEMO "unique_id.txt", NULL};
    if (world_open(&demo, DEMO "model.safetensors", &paths, &err) != 0) {
        printf("# demo bundle: %s\n", err.msg);
        return -1;
    }
    json_error_t jerr;
    ref = json_load_file(FIXTURE("http/demo_reference.json"), 0, &jerr);
    if (!ref) printf("# demo_reference.json: %s\n", jerr.text);
    return ref ? 0 : -1;
}

static int runner(ml_runner *r, int max_rows) {
    ml_err err = {{0}};
    int rc =
        ml_runner_init(r, &demo.m, &demo.d, demo.emb_raw, demo.emb_std, max_rows, 4096, &err);
    if (rc != 0) printf("# runner: %s\n", err.msg);
    return rc;
}

static double num(json_t *v) { return json_number_value(v); }

static void test_curves_match_pytorch(void) {
    json_t *want = json_object_get(ref, "curves");
    REQUIRE(want != NULL);
    ml_runner r;
    REQUIRE(runner(&r, 4096) == 0);
    ml_sim_request rq;
    REQUIRE(ml_sim_defaults(&rq) == 0); /* the notebook's: 128 x 100, dims 0,1,2, seed 0 */
    ml_sim_result res;
    ml_err err = {{0}};
    REQUIRE(ml_simulate(&r, &rq, NULL, &res, &err) == 0);
    /* a logit within float noise of 0 may flip one answer: allow 3 of 12,800 */
    CHECK_NEAR(res.accuracy, num(json_object_get(want, "accuracy")), 0, 3.0 / 12800);
    CHECK_NEAR(res.loss, num(json_object_get(want, "loss")), 1e-4, 1e-6);
    ml_sim_curves c;
    REQUIRE(ml_sim_curves_compute(&rq, &res, &c, &err) == 0);
    json_t *p = json_object_get(want, "p_correct");
    REQUIRE(json_array_size(p) == 100 && c.overall.curve.n_trials == 100);
    int64_t right = 0;
    for (int t = 0; t < 100; t++) {
        CHECK_NEAR(c.overall.curve.p_correct[t], num(json_array_get(p, (size_t)t)), 0, 1.5 / 128);
        CHECK(c.overall.curve.n[t] == 128);
        CHECK(c.overall.curve.ci_low[t] <= c.overall.curve.p_correct[t] + 1e-12);
        CHECK(c.overall.curve.ci_high[t] >= c.overall.curve.p_correct[t] - 1e-12);
        right += (int64_t)llround(c.overall.curve.p_correct[t] * 128);
    }
    CHECK_NEAR((double)right, num(json_object_get(want, "correct_count")), 0, 3);
    CHECK(c.n_groups == 3);
    int total = 0;
    for (int g = 0; g < c.n_groups; g++) {
        CHECK(c.by_dim[g].dimension == g);
        total += c.by_dim[g].episodes;
    }
    CHECK(total == 128);
    ml_sim_curves_free(&c);
    ml_sim_result_free(&res);
    ml_sim_request_free(&rq);
    ml_runner_free(&r);
}

static void test_episodes_match_pytorch(void) {
    json_t *want = json_object_get(ref, "episodes");
    json_t *detail = json_object_get(want, "detail");
    REQUIRE(json_array_size(detail) == 6);
    ml_runner r;
    REQUIRE(runner(&r, 4096) == 0);
    ml_sim_request rq;
    REQUIRE(ml_sim_defaults(&rq) == 0);
    rq.episodes = 6;
    rq.include_episodes = 1;
    ml_sim_result res;
    ml_err err = {{0}};
    REQUIRE(ml_simulate(&r, &rq, NULL, &res, &err) == 0);
    double worst = 0;
    int bad = 0;
    for (int e = 0; e < 6; e++) {
        json_t *w = json_array_get(detail, (size_t)e);
        CHECK(res.dim[e] == e % 3);
        for (int t = 0; t < 100; t++) {
            size_t i = (size_t)e * 100 + (size_t)t;
            CHECK(res.items[i] == (int)json_integer_value(json_array_get(json_object_get(w, "items"), (size_t)t)));
            CHECK(res.labels[i] == (int)json_integer_value(json_array_get(json_object_get(w, "labels"), (size_t)t)));
            double d = fabs((double)ml_sim_probability(res.logits[i]) -
                            num(json_array_get(json_object_get(w, "probabilities"), (size_t)t)));
            if (!(d <= worst)) worst = d; /* NaN lands here too and fails below */
            bad += !isfinite(res.logits[i]);
        }
    }
    CHECK_MSG(bad == 0 && worst <= 1e-4, "largest probability difference %g, %d non-finite",
              worst, bad);
    ml_sim_result_free(&res);
    ml_sim_request_free(&rq);
    ml_runner_free(&r);
}

/* Same request, same answer: episode e draws only from (seed, e), whatever the batching. */
static void test_independent_of_batching(void) {
    ml_runner big, small;
    REQUIRE(runner(&big, 4096) == 0);
    REQUIRE(runner(&small, 300) == 0); /* three episodes of 100 per call */
    ml_sim_request rq;
    REQUIRE(ml_sim_defaults(&rq) == 0);
    rq.episodes = 20;
    rq.seed = 5;
    ml_sim_result a, b;
    ml_err err = {{0}};
    REQUIRE(ml_simulate(&big, &rq, NULL, &a, &err) == 0);
    REQUIRE(ml_simulate(&small, &rq, NULL, &b, &err) == 0);
    CHECK(memcmp(a.items, b.items, sizeof(int) * 2000) == 0);
    CHECK(memcmp(a.labels, b.labels, sizeof(int) * 2000) == 0);
    CHECK(memcmp(a.correct, b.correct, 2000) == 0);
    double worst = 0;
    for (int i = 0; i < 2000; i++) {
        double d = fabs((double)a.logits[i] - (double)b.logits[i]);
        if (!(d <= worst)) worst = d;
    }
    CHECK_MSG(worst <= 1e-5, "logits differ by %g between batchings", worst);
    ml_sim_result c;
    rq.seed = 6;
    REQUIRE(ml_simulate(&big, &rq, NULL, &c, &err) == 0);
    CHECK(memcmp(a.items, c.items, sizeof(int) * 2000) != 0); /* the seed matters */
    ml_sim_result_free(&a);
    ml_sim_result_free(&b);
    ml_sim_result_free(&c);
    ml_sim_request_free(&rq);
    ml_runner_free(&big);
    ml_runner_free(&small);
}

typedef struct hook_state {
    int calls, last, cancel_after;
} hook_state;

static void on_progress(void *ctx, int done) {
    hook_state *h = ctx;
    h->calls++;
    h->last = done;
}

static int on_cancelled(void *ctx) {
    hook_state *h = ctx;
    return h->cancel_after >= 0 && h->calls >= h->cancel_after;
}

static void test_progress_and_cancel(void) {
    ml_runner r;
    REQUIRE(runner(&r, 500) == 0); /* five episodes per call */
    ml_sim_request rq;
    REQUIRE(ml_sim_defaults(&rq) == 0);
    rq.episodes = 23;
    hook_state h = {0, 0, -1};
    ml_sim_hooks hooks = {on_progress, on_cancelled, &h};
    ml_sim_result res;
    ml_err err = {{0}};
    REQUIRE(ml_simulate(&r, &rq, &hooks, &res, &err) == 0);
    CHECK(h.calls == 5 && h.last == 23);
    ml_sim_result_free(&res);
    h = (hook_state){0, 0, 2};
    CHECK(ml_simulate(&r, &rq, &hooks, &res, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "cancelled");
    CHECK(h.calls == 2 && h.last == 10);
    CHECK(res.logits == NULL); /* nothing is left allocated */
    ml_sim_request_free(&rq);
    ml_runner_free(&r);
}

static void test_no_intervals_and_bounds(void) {
    ml_runner r;
    REQUIRE(runner(&r, 4096) == 0);
    ml_sim_request rq;
    REQUIRE(ml_sim_defaults(&rq) == 0);
    rq.episodes = 4;
    rq.n_boot = 0;
    ml_sim_result res;
    ml_err err = {{0}};
    REQUIRE(ml_simulate(&r, &rq, NULL, &res, &err) == 0);
    ml_sim_curves c;
    REQUIRE(ml_sim_curves_compute(&rq, &res, &c, &err) == 0);
    for (int t = 0; t < rq.seq_len; t++)
        CHECK(isnan(c.overall.curve.ci_low[t]) && isfinite(c.overall.curve.p_correct[t]));
    ml_sim_curves_free(&c);
    ml_sim_result_free(&res);
    int bad_dims[] = {0, demo.d.target_dims};
    CHECK(ml_sim_set_dims(&rq, bad_dims, 2) == 0);
    CHECK(ml_simulate(&r, &rq, NULL, &res, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "dims[1]");
    CHECK(ml_sim_set_dims(&rq, bad_dims, 1) == 0);
    rq.seq_len = demo.d.n_items + 1;
    CHECK(ml_simulate(&r, &rq, NULL, &res, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "seq_len");
    ml_sim_request_free(&rq);
    ml_runner_free(&r);
}

int main(void) {
    ml_blas_set_threads(2);
    if (load_world() != 0) {
        printf("not ok 1 - the demo bundle and its reference load\n1..1\n");
        return 1;
    }
    RUN(test_curves_match_pytorch);
    RUN(test_episodes_match_pytorch);
    RUN(test_independent_of_batching);
    RUN(test_progress_and_cancel);
    RUN(test_no_intervals_and_bounds);
    json_decref(ref);
    world_close(&demo);
    return UT_DONE();
}
