/* The scale-out's pure parts, without Redis: a job cut into chunks, each computed on its own
 * (as other replicas would), encoded, decoded and merged, gives a single daemon's result bit
 * for bit (logits, correct flags, loss, accuracy, curves; for the later generation also the
 * predicted magnitudes, their error and R^2), on both generations; the chunk and request
 * codecs refuse what is not theirs; the Redis URL parser. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chunk_codec.h"
#include "engine/redis_conn.h"
#include "metalign/blas.h"
#include "metalign/dataset.h"
#include "metalign/model.h"
#include "metalign/runner.h"
#include "metalign/simulate.h"
#include "unit.h"
#include "world.h"

#define DEMO ML_SOURCE_ROOT "/data/demo/"
#define WORLD ML_SOURCE_ROOT "/tests/fixtures/metalearner/"
#define MAX_ROWS 4096 /* ML_APP_BATCH_ROWS: the daemon's rows per forward call */

static int open_world(world *w, const char *model, const ml_data_paths *paths) {
    ml_err err = {{0}};
    if (world_open(w, model, paths, &err) == 0) return 0;
    printf("# %s: %s\n", model, err.msg);
    return -1;
}

/* One job computed chunk by chunk through the codec, as the replicas and the merge do. */
static int merged(ml_runner *r, world *w, const ml_sim_request *rq, int want, ml_sim_result *out) {
    ml_err err = {{0}};
    int later = w->m.generation != ML_GEN_SEED;
    int per = ml_chunk_episodes(rq->episodes, rq->seq_len, want, MAX_ROWS);
    int n_chunks = ml_chunk_count(rq->episodes, per);
    size_t S = (size_t)rq->seq_len;
    if (ml_sim_result_alloc(out, rq->episodes, rq->seq_len, later) != 0 ||
        ml_sim_sample_range(&w->d, rq, later, 0, out, &err) != 0)
        return -1;
    for (int c = n_chunks - 1; c >= 0; c--) { /* any order: here, backwards */
        int e0 = c * per, n = rq->episodes - e0 < per ? rq->episodes - e0 : per;
        ml_sim_result part;
        ml_buf buf = {0};
        int rc = ml_sim_result_alloc(&part, n, rq->seq_len, later);
        if (rc == 0) rc = ml_sim_run_range(r, rq, e0, NULL, &part, &err);
        if (rc == 0) rc = ml_chunk_encode(e0, n, rq->seq_len, part.logits, part.pred_magnitudes, &buf);
        size_t row = (size_t)e0 * S, T = (size_t)n * S;
        if (rc == 0)
            rc = ml_chunk_decode(buf.data, buf.len, e0, n, rq->seq_len, out->logits + row,
                                 later ? out->pred_magnitudes + row : NULL, &err);
        /* the chunk's own episodes are the ones the merge samples again */
        if (rc == 0 && (memcmp(part.items, out->items + row, sizeof(int) * T) ||
                        memcmp(part.labels, out->labels + row, sizeof(int) * T) ||
                        memcmp(part.length, out->length + e0, sizeof(int) * (size_t)n) ||
                        (later && memcmp(part.magnitudes, out->magnitudes + row, sizeof(float) * T))))
            rc = -1;
        ml_sim_result_free(&part);
        ml_buf_free(&buf);
        if (rc != 0) {
            printf("# chunk %d: %s\n", c, err.msg);
            return -1;
        }
    }
    return ml_sim_finish(rq, later, out, &err);
}

static int same_curve(const ml_curve *a, const ml_curve *b, int n) {
    return memcmp(a->p_correct, b->p_correct, sizeof(double) * (size_t)n) == 0 &&
           memcmp(a->ci_low, b->ci_low, sizeof(double) * (size_t)n) == 0 &&
           memcmp(a->ci_high, b->ci_high, sizeof(double) * (size_t)n) == 0 &&
           memcmp(a->n, b->n, sizeof(int64_t) * (size_t)n) == 0;
}

static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Chunk sizes that cut the loss's batches and the forward calls anywhere. */
static void check_merge(const char *name, world *w, ml_sim_request *rq) {
    ml_runner r;
    ml_err err = {{0}};
    REQUIRE(ml_runner_init(&r, &w->m, &w->d, w->emb_raw, w->emb_std, MAX_ROWS, 4096, &err) == 0);
    int later = w->m.generation != ML_GEN_SEED;
    ml_sim_result single;
    REQUIRE_MSG(ml_simulate(&r, rq, NULL, &single, &err) == 0, "%s: %s", name, err.msg);
    ml_sim_curves want;
    REQUIRE(ml_sim_curves_compute(rq, &single, &want, &err) == 0);
    const int sizes[] = {0, 1, 7, 41, 64, 100, 333};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        ml_sim_result m;
        REQUIRE_MSG(merged(&r, w, rq, sizes[k], &m) == 0, "%s, chunk size %d", name, sizes[k]);
        size_t T = (size_t)rq->episodes * (size_t)rq->seq_len;
        CHECK_MSG(memcmp(m.logits, single.logits, sizeof(float) * T) == 0 &&
                      memcmp(m.correct, single.correct, T) == 0 &&
                      memcmp(m.dim, single.dim, sizeof(int) * (size_t)rq->episodes) == 0 &&
                      (!later || memcmp(m.pred_magnitudes, single.pred_magnitudes,
                                        sizeof(float) * T) == 0),
                  "%s, chunks of %d: logits, magnitudes or correct flags differ", name, sizes[k]);
        CHECK_MSG(same_bits(m.loss, single.loss) && same_bits(m.accuracy, single.accuracy) &&
                      m.trials == single.trials &&
                      (!later || (same_bits(m.magnitude_mse, single.magnitude_mse) &&
                                  same_bits(m.magnitude_r2, single.magnitude_r2))),
                  "%s, chunks of %d: loss %.17g vs %.17g, accuracy %.17g vs %.17g", name,
                  sizes[k], m.loss, single.loss, m.accuracy, single.accuracy);
        ml_sim_curves got;
        REQUIRE(ml_sim_curves_compute(rq, &m, &got, &err) == 0);
        int same = same_curve(&got.overall.curve, &want.overall.curve, rq->seq_len) &&
                   got.n_groups == want.n_groups;
        for (int g = 0; same && g < got.n_groups; g++)
            same = same_curve(&got.by_dim[g].curve, &want.by_dim[g].curve, rq->seq_len);
        CHECK_MSG(same, "%s, chunks of %d: the curves differ", name, sizes[k]);
        ml_sim_curves_free(&got);
        ml_sim_result_free(&m);
    }
    ml_sim_curves_free(&want);
    ml_sim_result_free(&single);
    ml_runner_free(&r);
}

static void test_merge_is_bit_identical(void) {
    world w;
    ml_data_paths paths = {DEMO "backbone.npy", DEMO "targets.txt", DEMO "unique_id.txt", NULL};
    REQUIRE(open_world(&w, DEMO "model.safetensors", &paths) == 0);
    ml_sim_request rq;
    REQUIRE(ml_sim_defaults(&rq) == 0);
    rq.episodes = 333;
    rq.seed = 9;
    rq.batch_size = 50;
    check_merge("seed generation", &w, &rq);
    ml_sim_request_free(&rq);
    world_close(&w);
}

/* The later generation: episodes of their own lengths, magnitudes fed and predicted. */
static void test_merge_later_generation(void) {
    static const char *const models[] = {WORLD "tf.pt", WORLD "static.pt"};
    for (int k = 0; k < 2; k++) {
        world w;
        ml_data_paths paths = {WORLD "backbone.h5", WORLD "targets.txt", WORLD "ids.txt", NULL};
        REQUIRE(open_world(&w, models[k], &paths) == 0);
        ml_sim_request rq;
        REQUIRE(ml_sim_defaults(&rq) == 0);
        ml_sim_model_defaults(&rq, &w.m);
        int dims[] = {0, 1};
        REQUIRE(ml_sim_set_dims(&rq, dims, 2) == 0);
        rq.episodes = 333;
        rq.seq_len = 30;
        rq.seed = 4;
        rq.batch_size = 50;
        check_merge(models[k], &w, &rq);
        ml_sim_request_free(&rq);
        world_close(&w);
    }
}

static void test_chunk_plan(void) {
    CHECK(ml_chunk_episodes(128, 100, 0, MAX_ROWS) == 40);   /* one forward call */
    CHECK(ml_chunk_episodes(128, 100, 50, MAX_ROWS) == 80);  /* whole calls */
    CHECK(ml_chunk_episodes(10, 100, 500, MAX_ROWS) == 10);  /* not beyond the job */
    CHECK(ml_chunk_episodes(100000, 1, 1, MAX_ROWS) == 4096);
    int per = ml_chunk_episodes(100000, 100, 1, MAX_ROWS);
    CHECK(ml_chunk_count(100000, per) <= ML_CHUNKS_MAX_PER_JOB && per % 40 == 0);
    CHECK(ml_chunk_count(128, 40) == 4 && ml_chunk_count(120, 40) == 3);
}

static void test_chunk_codec_refuses(void) {
    float v[6] = {1, -2, 3.5f, NAN, 0, 1e-30f}, back[6];
    ml_buf b = {0};
    ml_err err = {{0}};
    REQUIRE(ml_chunk_encode(40, 2, 3, v, NULL, &b) == 0);
    CHECK(b.len == ML_CHUNK_HEADER + 24);
    CHECK(ml_chunk_decode(b.data, b.len, 40, 2, 3, back, NULL, &err) == 0);
    CHECK(memcmp(v, back, sizeof v) == 0); /* bits, NaN included */
    CHECK(ml_chunk_decode(b.data, b.len - 1, 40, 2, 3, back, NULL, &err) != 0);
    CHECK_MSG(strstr(err.msg, "truncated") != NULL, "%s", err.msg);
    CHECK(ml_chunk_decode(b.data, b.len, 80, 2, 3, back, NULL, &err) != 0); /* another range */
    CHECK(ml_chunk_decode(b.data, b.len, 40, 2, 4, back, NULL, &err) != 0);
    float mags[6];
    CHECK(ml_chunk_decode(b.data, b.len, 40, 2, 3, back, mags, &err) != 0); /* no magnitudes */
    CHECK(ml_chunk_decode("MLC0", 4, 40, 2, 3, back, NULL, &err) != 0);
    CHECK(ml_chunk_decode(b.data, 3, 40, 2, 3, back, NULL, &err) != 0);
    ml_buf_free(&b);
    float m[6] = {0.5f, -1, 2, 3, 4, 5}, mback[6];
    REQUIRE(ml_chunk_encode(0, 3, 2, v, m, &b) == 0);
    CHECK(b.len == ML_CHUNK_HEADER + 48);
    CHECK(ml_chunk_decode(b.data, b.len, 0, 3, 2, back, mback, &err) == 0 &&
          memcmp(m, mback, sizeof m) == 0 && memcmp(v, back, sizeof v) == 0);
    CHECK(ml_chunk_decode(b.data, b.len, 0, 3, 2, back, NULL, &err) != 0);
    ml_buf_free(&b);
}

static void test_request_codec(void) {
    ml_sim_request rq, back;
    ml_err err = {{0}};
    REQUIRE(ml_sim_defaults(&rq) == 0);
    int dims[] = {5, 0, 5, 7};
    REQUIRE(ml_sim_set_dims(&rq, dims, 4) == 0);
    rq.seed = 123456789012ull;
    rq.include_episodes = 1;
    ml_buf b = {0};
    REQUIRE(ml_request_encode(&rq, &b) == 0);
    REQUIRE_MSG(ml_request_decode(b.data, b.len, &back, &err) == 0, "%s", err.msg);
    CHECK(back.episodes == rq.episodes && back.seq_len == rq.seq_len && back.seed == rq.seed &&
          back.standardize == rq.standardize && back.include_episodes == 1 &&
          back.batch_size == rq.batch_size && back.n_boot == rq.n_boot && back.n_dims == 4 &&
          memcmp(back.dims, dims, sizeof dims) == 0);
    ml_sim_request_free(&back);
    static const char *const bad[] = {
        "",
        "v2 episodes=1",
        "v1 episodes=1 seq_len=1 seed=0 standardize=1 include_episodes=0 batch_size=1 n_boot=0",
        "v1 episodes=1 seq_len=1 seed=0 standardize=2 include_episodes=0 batch_size=1 n_boot=0 dims=0",
        "v1 episodes=0 seq_len=1 seed=0 standardize=1 include_episodes=0 batch_size=1 n_boot=0 dims=0",
        "v1 episodes=1 episodes=1 seq_len=1 seed=0 standardize=1 include_episodes=0 batch_size=1 n_boot=0 dims=0",
        "v1 episodes=1 seq_len=1 seed=0 standardize=1 include_episodes=0 batch_size=1 n_boot=0 dims=0,",
        "v1 episodes=1 seq_len=1 seed=0 standardize=1 include_episodes=0 batch_size=1 n_boot=0 dims=-1",
        "v1 episodes=1 seq_len=1 seed=0 standardize=1 include_episodes=0 batch_size=1 n_boot=0 dims=0 x=1",
        "v1 episodes=100000 seq_len=100000 seed=0 standardize=1 include_episodes=0 batch_size=1 n_boot=0 dims=0",
        "v1 episodes=99999999999999999999999 seq_len=1 seed=0 standardize=1 include_episodes=0 batch_size=1 n_boot=0 dims=0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ml_sim_request x;
        int rc = ml_request_decode(bad[i], strlen(bad[i]), &x, &err);
        CHECK_MSG(rc != 0 && err.msg[0], "accepted \"%s\"", bad[i]);
        if (rc == 0) ml_sim_request_free(&x);
    }
    ml_buf_free(&b);
    ml_sim_request_free(&rq);
}

static void test_redis_url(void) {
    ml_redis_url u;
    ml_err err = {{0}};
    CHECK(ml_redis_url_parse("redis://127.0.0.1:6380/2", &u, &err) == 0 && u.port == 6380 &&
          u.db == 2 && !strcmp(u.host, "127.0.0.1") && !u.password[0]);
    CHECK(ml_redis_url_parse("redis://redis", &u, &err) == 0 && u.port == 6379 && u.db == 0);
    CHECK(ml_redis_url_parse("redis://:s3cret@h:1/", &u, &err) == 0 &&
          !strcmp(u.password, "s3cret") && !u.user[0] && u.port == 1);
    CHECK(ml_redis_url_parse("redis://me:pw@[::1]:7000/3", &u, &err) == 0 &&
          !strcmp(u.host, "::1") && !strcmp(u.user, "me") && u.port == 7000 && u.db == 3);
    CHECK(strstr(u.display, "pw") == NULL); /* messages never show the password */
    static const char *const bad[] = {"http://h:1", "redis://", "redis://h:0", "redis://h:65536",
                                      "redis://h:x", "redis://h:1/x", "redis://[::1", "redis://pw@h",
                                      "redis://[::1]x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(ml_redis_url_parse(bad[i], &u, &err) != 0, "accepted %s", bad[i]);
}

int main(void) {
    ml_blas_set_threads(1);
    RUN(test_merge_is_bit_identical);
    RUN(test_merge_later_generation);
    RUN(test_chunk_plan);
    RUN(test_chunk_codec_refuses);
    RUN(test_request_codec);
    RUN(test_redis_url);
    return UT_DONE();
}
