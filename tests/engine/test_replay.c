/* The replay without a daemon, against tests/reference/make_replay_fixtures.py (PyTorch,
 * scipy, sklearn; tests/fixtures/replay/reference.json): the demo model on a small synthetic
 * world, once with a per-image backbone and its image list ("exact") and once with a
 * per-concept backbone ("concept"), on a synthetic CSV with unmatched images, unanswered rows,
 * an incomplete row and a participant with nothing to replay. Every per-participant figure,
 * the pooled summaries, the curves with their bootstrap intervals, the noise ceiling, the
 * curve comparisons and every trial's logits are held against the reference, which ran each
 * participant's sequence alone (so the batched, padded passes are checked too). Then the
 * failures: missing columns, a duplicated trial, a model too short for the sequences, and
 * cancellation. */
#include <jansson.h>

#include "config.h"
#include "engine/app.h"
#include "metalign/replay.h"
#include "unit.h"
#include "human_test.h"

#define REPLAY(rel) FIXTURE("replay/" rel)

static json_t *ref;
static ml_human_data humans;

/* equal within tolerance, or both NaN (the reference writes null for NaN) */
#define CHECK_NEAR_NAN(a, b, rtol, atol)                                                   \
    do {                                                                                   \
        double na_ = (a), nb_ = (b);                                                       \
        if (isnan(nb_))                                                                    \
            CHECK_MSG(isnan(na_), "%s = %g, expected NaN", #a, na_);                       \
        else                                                                               \
            CHECK_NEAR(na_, nb_, rtol, atol);                                              \
    } while (0)

static double num(json_t *o, const char *k) {
    json_t *x = json_object_get(o, k);
    return !x || json_is_null(x) ? NAN : json_number_value(x);
}

static int app_open(ml_app *app, ml_config *cfg, int exact) {
    ml_config_defaults(cfg);
    cfg->checkpoint = strdup(ML_SOURCE_ROOT "/data/demo/model.safetensors");
    cfg->backbone = strdup(exact ? REPLAY("backbone_images.npz") : REPLAY("backbone_concepts.npy"));
    cfg->targets = strdup(REPLAY("targets.txt"));
    cfg->item_ids = strdup(REPLAY("unique_id.txt"));
    cfg->things_images = exact ? strdup(REPLAY("images.txt")) : NULL;
    cfg->threads = 2;
    ml_err err = {{0}};
    int rc = ml_app_load(app, cfg, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    return rc;
}

static void app_close(ml_app *app, ml_config *cfg) {
    ml_app_free(app);
    ml_config_free(cfg);
}

static ml_worker *worker(void) { return calloc(1, sizeof(ml_worker)); }

static void request_from(json_t *r, ml_replay_request *rq) {
    ml_replay_defaults(rq);
    json_t *mt = json_object_get(r, "max_trial");
    rq->max_trial = json_is_null(mt) ? -1 : (int)json_integer_value(mt);
    json_t *t = json_object_get(r, "temperature");
    rq->temperature = json_is_null(t) ? 0 : json_number_value(t);
    rq->baseline = json_is_true(json_object_get(r, "baseline"));
    rq->seed = (uint64_t)json_integer_value(json_object_get(r, "seed"));
    rq->n_boot = (int)json_integer_value(json_object_get(r, "n_boot"));
    rq->n_splits = (int)json_integer_value(json_object_get(r, "n_splits"));
    rq->include_trials = 1;
}

/* T and the NLLs are functions of logits that agree with PyTorch to ~1e-5, hence their
 * tolerances (at the lower bound, T = 0.01, an NLL moves by 100 times a logit's error) */
static void check_fit(const char *who, const ml_replay_fit *f, json_t *w, int per_seq) {
    if (!w || json_is_null(w)) {
        CHECK_MSG(isnan(f->nll) && isnan(f->agreement), "%s: expected no figures", who);
        return;
    }
    if (per_seq) {
        CHECK_NEAR(f->temperature, num(w, "temperature"), 2e-4, 0);
        CHECK_MSG(f->at_bound == (int)num(w, "at_bound"), "%s at_bound %d", who, f->at_bound);
    }
    CHECK_NEAR(f->nll, num(w, "nll"), 2e-5, 2e-5);
    CHECK_NEAR(f->nll_t1, num(w, "nll_t1"), 2e-5, 2e-6);
    CHECK_NEAR(f->pseudo_r2, num(w, "pseudo_r2"), 0, 2e-5);
    CHECK_MSG(f->agreement == num(w, "agreement"), "%s agreement %.17g vs %.17g", who,
              f->agreement, num(w, "agreement"));
    CHECK_MSG(f->accuracy == num(w, "accuracy"), "%s accuracy %.17g", who, f->accuracy);
}

static void check_curve(const char *who, const ml_panel_curve *c, json_t *w, int n_trials) {
    json_t *p = json_object_get(w, "p_correct"), *lo = json_object_get(w, "ci_low"),
           *hi = json_object_get(w, "ci_high"), *n = json_object_get(w, "n");
    CHECK_MSG(c->n_trials == n_trials && json_array_size(p) == (size_t)n_trials, "%s: %d trials",
              who, c->n_trials);
    for (int t = 0; t < n_trials && t < c->n_trials; t++) {
        json_t *pv = json_array_get(p, (size_t)t);
        CHECK(c->n[t] == json_integer_value(json_array_get(n, (size_t)t)));
        CHECK_NEAR_NAN(c->p_correct[t], json_is_null(pv) ? NAN : json_number_value(pv), 1e-13,
                       1e-15);
        json_t *l = json_array_get(lo, (size_t)t), *h = json_array_get(hi, (size_t)t);
        CHECK_NEAR_NAN(c->ci_low[t], json_is_null(l) ? NAN : json_number_value(l), 1e-13, 1e-15);
        CHECK_NEAR_NAN(c->ci_high[t], json_is_null(h) ? NAN : json_number_value(h), 1e-13, 1e-15);
    }
}

static void check_group(const ml_replay_group *g, json_t *w, int n_trials, int baseline) {
    char who[32];
    snprintf(who, sizeof who, "dimension %d", g->dimension);
    CHECK(g->dimension == (int)num(w, "dimension"));
    CHECK_MSG(g->participants == (int)num(w, "participants"), "%s participants %d", who,
              g->participants);
    CHECK(g->trials == (long)num(w, "trials"));
    CHECK(g->unmatched == (long)num(w, "unmatched"));
    CHECK(g->incomplete == (long)num(w, "incomplete"));
    CHECK_NEAR(g->human_accuracy, num(w, "human_accuracy"), 1e-15, 0);
    check_fit(who, &g->model, json_object_get(w, "model"), 0);
    check_fit(who, &g->baseline, json_object_get(w, "baseline"), 0);
    CHECK(isnan(g->model.temperature));
    json_t *cv = json_object_get(w, "curves");
    check_curve(who, &g->human_curve, json_object_get(cv, "human"), n_trials);
    check_curve(who, &g->model_curve, json_object_get(cv, "model"), n_trials);
    if (baseline) check_curve(who, &g->baseline_curve, json_object_get(cv, "baseline"), n_trials);
    json_t *nc = json_object_get(w, "noise_ceiling");
    CHECK_NEAR_NAN(g->noise_ceiling.r, num(nc, "r"), 1e-12, 1e-14);
    CHECK_NEAR_NAN(g->noise_ceiling.ci_low, num(nc, "ci_low"), 1e-12, 1e-14);
    CHECK_NEAR_NAN(g->noise_ceiling.ci_high, num(nc, "ci_high"), 1e-12, 1e-14);
    CHECK(g->noise_ceiling.splits == (int)num(nc, "splits"));
    CHECK_NEAR_NAN(g->model_r, num(w, "model_r"), 1e-12, 1e-14);
    CHECK_NEAR_NAN(g->rmse, num(w, "rmse"), 1e-12, 1e-14);
    if (baseline) {
        CHECK_NEAR_NAN(g->baseline_r, num(w, "baseline_r"), 1e-12, 1e-14);
        CHECK_NEAR_NAN(g->baseline_rmse, num(w, "baseline_rmse"), 1e-12, 1e-14);
    } else {
        CHECK(isnan(g->baseline_r) && isnan(g->baseline_rmse) && isnan(g->baseline.nll));
    }
}

static void check_result(const char *name, const ml_replay_result *res, json_t *want) {
    json_t *rq = json_object_get(want, "request");
    const char *world = json_string_value(json_object_get(rq, "world"));
    int baseline = json_is_true(json_object_get(rq, "baseline"));
    CHECK_MSG(!strcmp(ml_replay_match_name(res->match), world), "%s: match %s", name,
              ml_replay_match_name(res->match));
    CHECK(res->max_trial == (int)num(want, "max_trial") && res->n_trials == res->max_trial + 1);
    json_t *ps = json_object_get(want, "participants");
    CHECK_MSG(res->n_participants == json_array_size(ps), "%s: %zu participants", name,
              res->n_participants);
    for (size_t i = 0; i < res->n_participants && i < json_array_size(ps); i++) {
        const ml_replay_participant *p = &res->participants[i];
        json_t *w = json_array_get(ps, i);
        CHECK_MSG(!strcmp(p->name, json_string_value(json_object_get(w, "participant"))),
                  "%s: participant %zu is %s", name, i, p->name);
        CHECK(p->dimension == (int)num(w, "dimension"));
        CHECK_MSG(p->trials == (int)num(w, "trials") && p->unmatched == (int)num(w, "unmatched") &&
                      p->incomplete == (int)num(w, "incomplete"),
                  "%s %s: %d trials, %d unmatched, %d incomplete", name, p->name, p->trials,
                  p->unmatched, p->incomplete);
        CHECK_NEAR_NAN(p->human_accuracy, num(w, "human_accuracy"), 1e-15, 0);
        check_fit(p->name, &p->model, json_object_get(w, "model"), 1);
        check_fit(p->name, &p->baseline, json_object_get(w, "baseline"), 1);
    }
    check_group(&res->overall, json_object_get(want, "overall"), res->n_trials, baseline);
    json_t *dims = json_object_get(want, "by_dimension");
    CHECK(res->n_dims == (int)json_array_size(dims));
    for (int j = 0; j < res->n_dims && j < (int)json_array_size(dims); j++)
        check_group(&res->by_dim[j], json_array_get(dims, (size_t)j), res->n_trials, baseline);
    json_t *tr = json_object_get(want, "trials");
    CHECK(res->n_trial_rows == json_array_size(tr));
    double worst = 0, worst_b = 0;
    for (size_t i = 0; i < res->n_trial_rows && i < json_array_size(tr); i++) {
        const ml_replay_trial *t = &res->trials[i];
        json_t *w = json_array_get(tr, i);
        CHECK(!strcmp(res->participants[t->seq].name,
                      json_string_value(json_object_get(w, "participant"))));
        CHECK(t->trial == (int)num(w, "trial") && t->label == (int)num(w, "label") &&
              t->choice == (int)num(w, "choice") && t->correct == (int)num(w, "correct"));
        CHECK(!strcmp(ml_strtab_get(&res->images, (size_t)t->image),
                      json_string_value(json_object_get(w, "image"))));
        double dz = fabs(t->logit - num(w, "logit"));
        if (dz > worst) worst = dz;
        CHECK_NEAR(t->logit, num(w, "logit"), 0, 1e-4);
        CHECK(t->model_correct == ((t->logit > 0) == t->label));
        CHECK_NEAR(t->p_choice, t->choice ? t->p_model : 1 - t->p_model, 0, 1e-15);
        if (baseline) {
            double zb = num(w, "baseline_logit"), d = fabs(t->baseline_logit - zb);
            if (d > worst_b) worst_b = d;
            CHECK_NEAR(t->baseline_logit, zb, 1e-6, 1e-7);
        } else {
            CHECK(isnan(t->baseline_logit) && isnan(t->p_baseline));
        }
    }
    printf("# %s: %zu trials, largest |logit - torch| %.2g, |baseline - reference| %.2g; "
           "baseline %ld fits, %ld Newton steps\n",
           name, res->n_trial_rows, worst, worst_b, res->baseline_stats.fits,
           res->baseline_stats.newton_steps);
}

static void run_request(const char *name, int batch_rows) {
    json_t *want = json_object_get(json_object_get(ref, "requests"), name);
    json_t *r = json_object_get(want, "request");
    CHECK(want && r);
    if (!want || !r) return;
    int exact = !strcmp(json_string_value(json_object_get(r, "world")), "exact");
    ml_app app;
    ml_config cfg;
    if (app_open(&app, &cfg, exact) != 0) return;
    if (batch_rows) app.batch_rows = batch_rows; /* several batches, other paddings */
    ml_replay_request rq;
    request_from(r, &rq);
    ml_replay_result res;
    ml_replay_code code;
    ml_err err = {{0}};
    ml_worker *w = worker();
    int rc = ml_app_replay(&app, w, &humans, &rq, NULL, &res, &code, &err);
    CHECK_MSG(rc == 0 && code == ML_REPLAY_OK, "%s: %s", name, err.msg);
    if (rc == 0) check_result(name, &res, want);
    ml_replay_result_free(&res);
    ml_app_worker_free(w);
    app_close(&app, &cfg);
}

static void test_exact_images(void) { run_request("exact_default", 0); }
static void test_concept_rows(void) { run_request("concept_default", 0); }
/* max_trial, a fixed temperature, no baseline, another seed; one sequence per forward call */
static void test_max_trial_fixed_temperature(void) { run_request("exact_t1_max24", 64); }

/* The two matches differ exactly by the images of known concepts missing from the list. */
static void test_unmatched_counting(void) {
    json_t *rs = json_object_get(ref, "requests");
    json_t *e = json_object_get(json_object_get(rs, "exact_default"), "overall");
    json_t *c = json_object_get(json_object_get(rs, "concept_default"), "overall");
    long missing_file = 0, unknown = 0;
    for (size_t i = 0; i < humans.n_rows; i++) {
        if (humans.choice[i] == ML_HUMAN_NA) continue;
        const char *img = ml_strtab_get(&humans.images, (size_t)humans.image[i]);
        if (strstr(img, "_99z.jpg")) missing_file++;
        if (strstr(img, "unicorn")) unknown++;
    }
    CHECK(missing_file > 0 && unknown > 0);
    CHECK(num(e, "unmatched") == (double)(missing_file + unknown));
    CHECK(num(c, "unmatched") == (double)unknown);
    CHECK(num(e, "trials") + missing_file == num(c, "trials"));
    CHECK(num(e, "incomplete") == 1 && num(c, "incomplete") == 1);
}

static ml_replay_code run_text(const char *csv, ml_err *err) {
    ml_human_data d;
    ml_fetch_code fc;
    if (ml_human_csv_parse(csv, strlen(csv), "inline.csv", &d, &fc, err) != 0) return -1;
    ml_app app;
    ml_config cfg;
    ml_replay_code code = ML_REPLAY_E_INTERNAL;
    if (app_open(&app, &cfg, 0) == 0) {
        ml_replay_request rq;
        ml_replay_defaults(&rq);
        ml_replay_result res;
        ml_worker *w = worker();
        CHECK(ml_app_replay(&app, w, &d, &rq, NULL, &res, &code, err) == -1);
        ml_replay_result_free(&res);
        ml_app_worker_free(w);
        app_close(&app, &cfg);
    }
    ml_human_data_free(&d);
    return code;
}

static void test_failures_name_the_fix(void) {
    ml_err err = {{0}};
    /* no replay columns: the curves work, the replay says which are missing */
    CHECK(run_text("participant,trial,dimension,correct\na,0,0,True\n", &err) == ML_REPLAY_E_DATA);
    CHECK_STR_CONTAINS(err.msg, "\"choice\", \"true_category_binary\", \"image\"");
    /* two rows for one trial */
    CHECK(run_text("participant,trial,dimension,correct,choice,true_category_binary,image\n"
                   "a,0,0,True,1,1,s/x/y.jpg\na,0,0,True,1,1,s/x/z.jpg\n",
                   &err) == ML_REPLAY_E_DATA);
    CHECK_STR_CONTAINS(err.msg, "participant 'a' has two rows for trial 0");
    /* nothing matches */
    CHECK(run_text("participant,trial,dimension,correct,choice,true_category_binary,image\n"
                   "a,0,0,True,1,1,s/nope/y.jpg\n",
                   &err) == ML_REPLAY_E_DATA);
    CHECK_STR_CONTAINS(err.msg, "no trial of the human data could be replayed");

    /* a model whose sequences are shorter than the participants' */
    ml_app app;
    ml_config cfg;
    if (app_open(&app, &cfg, 0) != 0) return;
    app.max_seq = 20;
    ml_replay_request rq;
    ml_replay_defaults(&rq);
    ml_replay_result res;
    ml_replay_code code;
    ml_worker *w = worker();
    CHECK(ml_app_replay(&app, w, &humans, &rq, NULL, &res, &code, &err) == -1);
    CHECK(code == ML_REPLAY_E_MODEL);
    CHECK_STR_CONTAINS(err.msg, "ask for max_trial=19");
    rq.max_trial = 19;
    CHECK(ml_app_replay(&app, w, &humans, &rq, NULL, &res, &code, &err) == 0);
    CHECK(res.max_trial == 19 && res.overall.trials > 0);
    ml_replay_result_free(&res);
    rq.max_trial = -1;
    rq.n_splits = 0;
    CHECK(ml_app_replay(&app, w, &humans, &rq, NULL, &res, &code, &err) == -1);
    CHECK(code == ML_REPLAY_E_ARG);
    CHECK_STR_CONTAINS(err.msg, "n_splits=0");
    ml_app_worker_free(w);
    app_close(&app, &cfg);
}

typedef struct hook_state {
    long calls, last_done, total;
    long cancel_after;
} hook_state;

static void on_progress(void *ctx, long done, long total) {
    hook_state *h = ctx;
    h->calls++;
    CHECK(done > h->last_done && done <= total);
    h->last_done = done;
    h->total = total;
}

static int on_cancelled(void *ctx) {
    hook_state *h = ctx;
    return h->cancel_after >= 0 && h->calls >= h->cancel_after;
}

static void test_progress_and_cancel(void) {
    ml_app app;
    ml_config cfg;
    if (app_open(&app, &cfg, 1) != 0) return;
    app.batch_rows = 128; /* three sequences per forward call */
    ml_replay_request rq;
    ml_replay_defaults(&rq);
    rq.n_boot = 20;
    ml_replay_result res;
    ml_replay_code code;
    ml_err err = {{0}};
    ml_worker *w = worker();
    hook_state hs = {.cancel_after = -1};
    ml_replay_hooks hooks = {on_progress, on_cancelled, &hs};
    CHECK(ml_app_replay(&app, w, &humans, &rq, &hooks, &res, &code, &err) == 0);
    /* 4 forward calls, then the baseline's sequences as this thread sees them finish */
    CHECK(hs.total == 2 * 10 && hs.last_done == hs.total && hs.calls >= 4 + 1);
    CHECK(res.seconds_model > 0 && res.seconds_baseline > 0);
    ml_replay_result_free(&res);
    hs = (hook_state){.cancel_after = 2};
    CHECK(ml_app_replay(&app, w, &humans, &rq, &hooks, &res, &code, &err) == 1);
    CHECK(code == ML_REPLAY_CANCELLED && res.participants == NULL);
    CHECK_STR_CONTAINS(err.msg, "cancelled");
    /* During the baseline: with one thread the caller fits every sequence itself and polls
     * between them (with more, the other threads may finish first: not a test of anything). */
    app.threads = 1;
    hs = (hook_state){.cancel_after = 6};
    CHECK(ml_app_replay(&app, w, &humans, &rq, &hooks, &res, &code, &err) == 1);
    ml_app_worker_free(w);
    app_close(&app, &cfg);
}

int main(void) {
    json_error_t e;
    ref = json_load_file(REPLAY("reference.json"), 0, &e);
    size_t len;
    char *csv = read_file(REPLAY("humans.csv"), &len);
    ml_fetch_code fc;
    ml_err err = {{0}};
    if (!ref || !csv || ml_human_csv_parse(csv, len, "humans.csv", &humans, &fc, &err) != 0) {
        printf("# fixtures: %s %s\nnot ok 1 - fixtures\n1..1\n", ref ? "" : e.text, err.msg);
        return 1;
    }
    free(csv);
    RUN(test_exact_images);
    RUN(test_concept_rows);
    RUN(test_max_trial_fixed_temperature);
    RUN(test_unmatched_counting);
    RUN(test_failures_name_the_fix);
    RUN(test_progress_and_cancel);
    ml_human_data_free(&humans);
    json_decref(ref);
    return UT_DONE();
}
