/* The app's start-up work and its runners (engine/app.h): the items' encodings and the first
 * runner are made before the app is ready, so the first model request pays for neither;
 * consecutive requests reuse that one runner (its memory resident, its primitives made); a
 * second is made only while the first is lent out, and the most recently returned one is
 * lent next. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "engine/app.h"
#include "unit.h"

static char dir[] = "/tmp/metalign-test-app-XXXXXX";

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(path);
}

static int app_open(ml_app *app, ml_config *cfg) {
    ml_config_defaults(cfg);
    cfg->checkpoint = strdup(ML_SOURCE_ROOT "/data/demo/model.safetensors");
    cfg->backbone = strdup(ML_SOURCE_ROOT "/data/demo/backbone.npy");
    cfg->targets = strdup(ML_SOURCE_ROOT "/data/demo/targets.txt");
    cfg->item_ids = strdup(ML_SOURCE_ROOT "/data/demo/unique_id.txt");
    free(cfg->cache_dir); /* the defaults' */
    free(cfg->human_url);
    cfg->cache_dir = strdup(dir);
    cfg->human_url = strdup("http://127.0.0.1:9/none");
    cfg->threads = 2;
    ml_err err = {{0}};
    int rc = ml_app_load(app, cfg, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    return rc;
}

static void test_startup_prepares_the_pass(void) {
    ml_app app;
    ml_config cfg;
    if (app_open(&app, &cfg) != 0) {
        ml_config_free(&cfg);
        return;
    }
    CHECK_EQ_INT(ml_app_runners_made(&app), 0); /* loading alone makes none */
    CHECK(app.item_emb[ML_INPUTS_RAW] == NULL);
    ml_err err = {{0}};
    int rc = ml_app_start(&app, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(ml_app_is_ready(&app));
        CHECK_EQ_INT(ml_app_runners_made(&app), 1);
        CHECK(app.item_emb[ML_INPUTS_RAW] && app.item_emb[ML_INPUTS_STANDARDIZED]);
        /* three requests one after the other: the same runner every time */
        ml_sim_request rq;
        REQUIRE(ml_sim_defaults(&rq) == 0);
        rq.episodes = 6;
        rq.seq_len = 20;
        rq.n_boot = 0;
        for (int i = 0; i < 3; i++) {
            ml_sim_result res;
            rq.seed = (uint64_t)i;
            CHECK_MSG(ml_app_simulate(&app, NULL, &rq, NULL, &res, &err) == 0, "%s", err.msg);
            ml_sim_result_free(&res);
        }
        CHECK_EQ_INT(ml_app_runners_made(&app), 1);
        ml_sim_request_free(&rq);
    }
    ml_app_free(&app);
    ml_config_free(&cfg);
}

static void test_runners_lent_hot_first(void) {
    ml_app app;
    ml_config cfg;
    if (app_open(&app, &cfg) != 0) {
        ml_config_free(&cfg);
        return;
    }
    ml_err err = {{0}};
    ml_runner *a = ml_app_runner_acquire(&app, &err);
    REQUIRE_MSG(a, "%s", err.msg);
    ml_runner *b = ml_app_runner_acquire(&app, &err); /* a is lent out: a second one */
    REQUIRE_MSG(b, "%s", err.msg);
    CHECK(a != b);
    CHECK_EQ_INT(ml_app_runners_made(&app), 2);
    ml_app_runner_release(&app, a);
    ml_app_runner_release(&app, b);
    ml_runner *c = ml_app_runner_acquire(&app, &err);
    CHECK(c == b); /* the most recently returned */
    ml_runner *d = ml_app_runner_acquire(&app, &err);
    CHECK(d == a);
    CHECK_EQ_INT(ml_app_runners_made(&app), 2);
    ml_app_runner_release(&app, d);
    ml_app_runner_release(&app, c);
    ml_app_free(&app); /* frees the idle runners (ASan: no leak) */
    ml_config_free(&cfg);
}

int main(void) {
    if (!mkdtemp(dir)) {
        printf("not ok 1 - set-up (the test folder)\n1..1\n");
        return 1;
    }
    RUN(test_startup_prepares_the_pass);
    RUN(test_runners_lent_hot_first);
    nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
    return UT_DONE();
}
