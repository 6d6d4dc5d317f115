/* The engine on the later generation (MODEL.md section 7) without a daemon: the fixture world
 * of tests/reference/make_metalearner_world.py (a transformer, an LSTM and a static linear
 * model, an HDF5 backbone), its learning curves held against PyTorch (FunctionDataset
 * episodes, magnitudes fed back, L < S), the runner's generic path against the model's own
 * forward pass, determinism whatever the batching, and the replay refused. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/dataset.h"
#include "metalign/human_csv.h"
#include "metalign/model.h"
#include "metalign/replay.h"
#include "metalign/runner.h"
#include "metalign/simulate.h"
#include "unit.h"
#include "world.h"

#define WORLD ML_SOURCE_ROOT "/tests/fixtures/metalearner/"

static const char *const models[] = {"tf", "lstm", "static"};
#define N_MODELS 3

static json_t *ref;

static int open_world(world *w, const char *model, const char *backbone) {
    char path[512];
    snprintf(path, sizeof path, WORLD "%s.pt", model);
    ml_err err = {{0}};
    ml_data_paths paths = {backbone, WORLD "targets.txt", WORLD "ids.txt", NULL};
    if (world_open(w, path, &paths, &err) == 0) return 0;
    CHECK_MSG(0, "%s: %s", model, err.msg);
    return -1;
}

static int runner(ml_runner *r, world *w, int max_rows) {
    ml_err err = {{0}};
    int rc = ml_runner_init(r, &w->m, &w->d, w->emb_raw, w->emb_std, max_rows, 4096, &err);
    CHECK_MSG(rc == 0, "runner: %s", err.msg);
    return rc;
}

static double num(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }
static double at(json_t *a, size_t i) {
    json_t *v = json_array_get(a, i);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The request make_metalearner_world.py simulated. */
static int reference_request(json_t *want, ml_sim_request *rq, const ml_model *m) {
    if (ml_sim_defaults(rq) != 0) return -1;
    ml_sim_model_defaults(rq, m);
    rq->episodes = (int)num(want, "episodes");
    rq->seq_len = (int)num(want, "seq_len");
    rq->seed = (uint64_t)num(want, "seed");
    rq->batch_size = (int)num(want, "batch_size");
    rq->n_boot = 0;
    json_t *dims = json_object_get(want, "dims");
    int dv[8], n = (int)json_array_size(dims);
    for (int i = 0; i < n && i < 8; i++) dv[i] = (int)at(dims, (size_t)i);
    return ml_sim_set_dims(rq, dv, n);
}

static void check_curves(const char *name, world *w) {
    json_t *want = json_object_get(json_object_get(ref, name), "curves");
    REQUIRE(want != NULL);
    ml_runner r;
    if (runner(&r, w, 4096) != 0) return;
    ml_sim_request rq;
    REQUIRE(reference_request(want, &rq, &w->m) == 0);
    CHECK(rq.standardize == 0); /* FunctionDataset feeds raw features */
    ml_sim_result res;
    ml_err err = {{0}};
    REQUIRE_MSG(ml_simulate(&r, &rq, NULL, &res, &err) == 0, "%s: %s", name, err.msg);
    int S = rq.seq_len, E = rq.episodes;
    json_t *lengths = json_object_get(want, "lengths");
    int short_eps = 0;
    for (int e = 0; e < E; e++) {
        CHECK_MSG(res.length[e] == (int)at(lengths, (size_t)e), "%s episode %d: length %d", name,
                  e, res.length[e]);
        short_eps += res.length[e] < S;
    }
    CHECK_MSG(short_eps > 0, "%s: the fixture should have episodes shorter than seq_len", name);
    CHECK(res.trials == (long long)num(want, "trials"));
    /* a logit within float noise of 0 may flip one answer */
    double trials = num(want, "trials");
    CHECK_NEAR(res.accuracy, num(want, "accuracy"), 0, 2.0 / trials);
    CHECK_NEAR(res.loss, num(want, "loss"), 1e-4, 1e-6);
    CHECK_NEAR(res.magnitude_r2, num(want, "r2"), 1e-4, 1e-5);
    ml_sim_curves c;
    REQUIRE(ml_sim_curves_compute(&rq, &res, &c, &err) == 0);
    json_t *p = json_object_get(want, "p_correct"), *n = json_object_get(want, "n"),
           *mse = json_object_get(want, "mse");
    for (int t = 0; t < S; t++) {
        CHECK_MSG(c.overall.curve.n[t] == (int64_t)at(n, (size_t)t), "%s trial %d: n %lld", name,
                  t, (long long)c.overall.curve.n[t]);
        CHECK_NEAR(c.overall.curve.p_correct[t], at(p, (size_t)t), 0,
                   1.5 / (double)c.overall.curve.n[t]);
        CHECK_NEAR(c.overall.mse[t], at(mse, (size_t)t), 1e-4, 1e-6);
    }
    CHECK_NEAR(c.overall.r2, num(want, "r2"), 1e-4, 1e-5);
    CHECK(c.overall.curve.n[S - 1] < E); /* the last trial: only the episodes that reach it */
    json_t *bd = json_object_get(want, "by_dimension");
    REQUIRE(c.n_groups == (int)json_array_size(bd));
    for (int g = 0; g < c.n_groups; g++) {
        json_t *wg = json_array_get(bd, (size_t)g);
        CHECK(c.by_dim[g].dimension == (int)num(wg, "dimension"));
        CHECK_NEAR(c.by_dim[g].accuracy, num(wg, "accuracy"), 0, 2.0 / trials * 3);
        CHECK_NEAR(c.by_dim[g].r2, num(wg, "r2"), 1e-4, 1e-5);
    }
    ml_sim_curves_free(&c);
    ml_sim_result_free(&res);
    ml_sim_request_free(&rq);
    ml_runner_free(&r);
}

static void test_curves_match_pytorch(void) {
    for (int k = 0; k < N_MODELS; k++) {
        world w;
        if (open_world(&w, models[k], WORLD "backbone.h5") != 0) continue;
        check_curves(models[k], &w);
        world_close(&w);
    }
}

/* The same answer however the episodes are cut into forward calls. */
static void test_batching_does_not_matter(void) {
    for (int k = 0; k < N_MODELS; k++) {
        world w;
        if (open_world(&w, models[k], WORLD "backbone.h5") != 0) continue;
        ml_runner big, small;
        if (runner(&big, &w, 4096) != 0 || runner(&small, &w, 38 * 3 + 5) != 0) {
            world_close(&w);
            continue;
        }
        ml_sim_request rq;
        REQUIRE(ml_sim_defaults(&rq) == 0);
        ml_sim_model_defaults(&rq, &w.m);
        rq.episodes = 17;
        rq.seq_len = 38;
        rq.seed = 99;
        ml_sim_result a, b;
        ml_err err = {{0}};
        REQUIRE(ml_simulate(&big, &rq, NULL, &a, &err) == 0);
        REQUIRE(ml_simulate(&small, &rq, NULL, &b, &err) == 0);
        size_t ES = (size_t)rq.episodes * (size_t)rq.seq_len;
        CHECK(memcmp(a.length, b.length, sizeof(int) * (size_t)rq.episodes) == 0);
        CHECK(memcmp(a.items, b.items, sizeof(int) * ES) == 0);
        /* GEMMs of other shapes may round differently: compare the scored trials closely */
        int same = 1;
        for (int e = 0; e < rq.episodes; e++)
            for (int t = 0; t < a.length[e]; t++) {
                size_t i = (size_t)e * (size_t)rq.seq_len + (size_t)t;
                if (fabsf(a.logits[i] - b.logits[i]) > 1e-5f ||
                    fabsf(a.pred_magnitudes[i] - b.pred_magnitudes[i]) > 1e-5f)
                    same = 0;
            }
        CHECK_MSG(same, "%s: batching changed the logits or magnitudes", models[k]);
        ml_sim_result_free(&a);
        ml_sim_result_free(&b);
        ml_sim_request_free(&rq);
        ml_runner_free(&big);
        ml_runner_free(&small);
        world_close(&w);
    }
}

/* ml_runner_forward (per-item encodings, magnitude feedback) against ml_model_forward on raw
 * features: the same numbers, every output. */
static void test_runner_forward_matches_model(void) {
    for (int k = 0; k < N_MODELS; k++) {
        world w;
        if (open_world(&w, models[k], WORLD "backbone_images.h5") != 0) continue;
        ml_runner r;
        if (runner(&r, &w, 256) != 0) {
            world_close(&w);
            continue;
        }
        enum { B = 3, S = 11 };
        int items[B * S];
        float fb[B * S], x[B * S * 24];
        int D = ml_model_feature_dim(&w.m), W = ml_model_width(&w.m),
            K = ml_model_logit_dims(&w.m), n_out = ml_model_num_outputs(&w.m);
        REQUIRE(D == 24);
        for (int i = 0; i < B * S; i++) {
            items[i] = (i * 7 + 3) % w.d.n_items;
            fb[i] = 0.1f * (float)((i % 9) - 4);
            memcpy(x + (size_t)i * D, w.d.X + (size_t)items[i] * D, sizeof(float) * (size_t)D);
        }
        float *outs_a[ML_MAX_LAYERS + 2], *outs_b[ML_MAX_LAYERS + 2];
        for (int i = 0; i < n_out; i++) {
            outs_a[i] = calloc((size_t)B * S * W, sizeof(float));
            outs_b[i] = calloc((size_t)B * S * W, sizeof(float));
        }
        float la[B * S * 3], lb[B * S * 3], ma[B * S * 3], mb[B * S * 3];
        ml_err err = {{0}};
        CHECK(ml_runner_forward(&r, items, fb, B, S, 0, outs_a, la, ma, &err) == 0);
        ml_workspace *ws = ml_workspace_new(&w.m, B * S, S, &err);
        REQUIRE(ws != NULL);
        ml_batch in = {.B = B, .S = S, .x = x, .feedback = fb};
        ml_outputs o = {.outs = outs_b, .logits = lb, .magnitudes = mb};
        CHECK(ml_model_forward(&w.m, ws, &in, &o, &err) == 0);
        for (int i = 0; i < n_out; i++) {
            CHECK_ARRAY_NEAR_AS(models[k], outs_a[i], outs_b[i], (size_t)B * S * W, 1e-5, 1e-5,
                                UT_TOL_MAX);
            free(outs_a[i]);
            free(outs_b[i]);
        }
        CHECK_ARRAY_NEAR(la, lb, (size_t)B * S * K, 1e-5, 1e-5);
        CHECK_ARRAY_NEAR(ma, mb, (size_t)B * S * K, 1e-5, 1e-5);
        /* the seed's label path refuses this generation, naming the way that works */
        int labels[B * S] = {0};
        CHECK(ml_runner_run(&r, items, labels, B, S, 0, NULL, NULL, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "fed magnitudes, not labels");
        ml_workspace_free(ws);
        ml_runner_free(&r);
        world_close(&w);
    }
}

/* Head columns: the static linear model's K = 3 columns, one per target dimension. */
static void test_static_columns(void) {
    world w;
    if (open_world(&w, "static", WORLD "backbone.h5") != 0) return;
    ml_runner r;
    if (runner(&r, &w, 4096) == 0) {
        ml_sim_request rq;
        REQUIRE(ml_sim_defaults(&rq) == 0);
        int dims[] = {1, 4};
        REQUIRE(ml_sim_set_dims(&rq, dims, 2) == 0);
        rq.seq_len = 20;
        ml_err err = {{0}};
        CHECK(ml_sim_check_model(&w.m, &rq, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "dims[1]=4 has no head column");
        ml_sim_result res;
        CHECK(ml_simulate(&r, &rq, NULL, &res, &err) == -1);
        ml_sim_request_free(&rq);
        ml_runner_free(&r);
    }
    world_close(&w);
}

/* The replay feeds label feedback; the later generation takes magnitudes (or nothing). */
static void test_replay_refused(void) {
    static const char csv[] =
        "participant,trial,dimension,correct,choice,true_category_binary,image\n"
        "a,0,0,True,1,1,stimuli/item_03/x.jpg\na,1,0,False,0,1,stimuli/item_04/y.jpg\n";
    ml_human_data h;
    ml_fetch_code fc;
    ml_err err = {{0}};
    REQUIRE(ml_human_csv_parse(csv, strlen(csv), "inline.csv", &h, &fc, &err) == 0);
    for (int k = 0; k < N_MODELS; k++) {
        world w;
        if (open_world(&w, models[k], WORLD "backbone.h5") != 0) continue;
        ml_runner r;
        if (runner(&r, &w, 512) == 0) {
            ml_replay_request rq;
            ml_replay_defaults(&rq);
            ml_replay_result res;
            ml_replay_code code = ML_REPLAY_OK;
            CHECK(ml_replay_run(&r, 1, &h, &rq, NULL, &res, &code, &err) == -1);
            CHECK_MSG(code == ML_REPLAY_E_MODEL, "%s: code %d", models[k], (int)code);
            CHECK_STR_CONTAINS(err.msg, "later-generation");
            CHECK_STR_CONTAINS(err.msg, ml_arch_name(ml_model_arch(&w.m)));
            CHECK_STR_CONTAINS(err.msg, "cannot be replayed");
            ml_replay_result_free(&res);
            ml_runner_free(&r);
        }
        world_close(&w);
    }
    ml_human_data_free(&h);
}

int main(void) {
    json_error_t jerr;
    ref = json_load_file(FIXTURE("metalearner/reference.json"), 0, &jerr);
    if (!ref) {
        printf("not ok 1 - fixture metalearner/reference.json: %s\n1..1\n", jerr.text);
        return 1;
    }
    RUN(test_curves_match_pytorch);
    RUN(test_batching_does_not_matter);
    RUN(test_runner_forward_matches_model);
    RUN(test_static_columns);
    RUN(test_replay_refused);
    json_decref(ref);
    return UT_DONE();
}
