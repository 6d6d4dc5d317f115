/* The GEMM back end (src/model/gemm.h) against cblas_sgemm computed in double: every form
 * ml_op_matmul is called with (bias or not, accumulating or not, a column slice of a wider
 * matrix, a single row, the shapes of a small model), the primitive cache, and that a loaded
 * model's passes really run on the build's back end (no call fell back to OpenBLAS). The
 * model-level agreement with PyTorch is test_forward_golden's, run on every back end. */
#include <stdint.h>

#include "io/checkpoint.h"
#include "metalign/model.h"
#include "model/forward.h"
#include "model/gemm.h"
#include "model/ops.h"
#include "model/weights.h"
#include "unit.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *rand_floats(size_t n) {
    float *x = ml_alloc_floats(n);
    for (size_t i = 0; x && i < n; i++) x[i] = frand();
    return x;
}

/* want (N, OC) = inp @ w^T (+ bias) (+ out0), in double */
static void reference(double *want, const float *inp, const float *w, int ldw,
                      const float *bias, const float *out0, int N, int IC, int OC) {
    for (int r = 0; r < N; r++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int k = 0; k < IC; k++) s += (double)inp[(size_t)r * IC + k] * w[(size_t)o * ldw + k];
            want[(size_t)r * OC + o] = s + (out0 ? out0[(size_t)r * OC + o] : 0.0);
        }
}

/* The build's back end runs out = inp @ w^T in every form; w is (OC, ldw), its first IC
 * columns used. */
static void check_form(ml_gemm_ctx *c, const float *w, int ldw, int N, int IC, int OC, int bias,
                       int accumulate, const char *what) {
    float *inp = rand_floats((size_t)N * IC), *b = bias ? rand_floats((size_t)OC) : NULL;
    float *out = rand_floats((size_t)N * OC);
    float *out0 = ml_alloc_floats((size_t)N * OC);
    double *want = malloc(sizeof(double) * (size_t)N * OC);
    REQUIRE(inp && out && out0 && want && (!bias || b));
    memcpy(out0, out, sizeof(float) * (size_t)N * OC);
    reference(want, inp, w, ldw, b, accumulate ? out0 : NULL, N, IC, OC);
    ml_par par = {.pool = NULL, .threads = 2, .gemm = c};
    ml_op_matmul(&par, out, inp, w, ldw, b, N, IC, OC, accumulate);
    double worst = 0;
    for (size_t i = 0; i < (size_t)N * OC; i++) {
        double d = fabs(out[i] - want[i]) / (1.0 + fabs(want[i]));
        if (!(d <= worst)) worst = d;
    }
    /* float32 sums of IC products of O(1) terms: a few ulps of sqrt(IC) */
    CHECK_MSG(worst <= 1e-5, "%s (%d x %d x %d, bias %d, accumulate %d): worst relative "
                             "difference %g", what, N, IC, OC, bias, accumulate, worst);
    free(inp);
    free(b);
    free(out);
    free(out0);
    free(want);
}

static void test_build_backend(void) {
    ml_gemm_backend b = ml_gemm_build_backend();
    CHECK(ml_gemm_available(ML_GEMM_OPENBLAS));
    CHECK(ml_gemm_available(b));
    CHECK_EQ_STR(ml_gemm_backend_name(ML_GEMM_OPENBLAS), "openblas");
    CHECK_EQ_STR(ml_gemm_backend_name(ML_GEMM_ONEDNN), "onednn");
    printf("# GEMM back end of this build: %s\n", ml_gemm_backend_name(b));
    ml_err err = {{0}};
    if (!ml_gemm_available(ML_GEMM_ONEDNN)) {
        /* asking an OpenBLAS build for oneDNN weights is refused, naming the fix */
        ml_gemm_set *s = ml_gemm_set_new(ML_GEMM_ONEDNN, &err);
        CHECK(s == NULL);
        CHECK_STR_CONTAINS(err.msg, "-Dgemm=onednn");
        ml_gemm_set_free(s);
    }
    CHECK(ml_gemm_set_new(ML_GEMM_OPENBLAS, &err) == NULL); /* nothing to prepare */
}

static void test_every_form(void) {
    if (!ml_gemm_available(ML_GEMM_ONEDNN)) {
        /* OpenBLAS: ml_op_matmul's own cblas_sgemm; the same checks hold it */
        float *w = rand_floats(40 * 72);
        REQUIRE(w);
        for (int acc = 0; acc < 2; acc++)
            for (int bias = 0; bias < 2; bias++) check_form(NULL, w, 72, 33, 70, 40, bias, acc, "openblas");
        free(w);
        return;
    }
    ml_err err = {{0}};
    ml_gemm_set *s = ml_gemm_set_new(ML_GEMM_ONEDNN, &err);
    REQUIRE_MSG(s, "%s", err.msg);
    float *w = rand_floats(96 * 130);
    REQUIRE(w);
    /* (96, 128) whole, and its columns 2.. as a (96, 126) slice: two entries */
    CHECK(ml_gemm_set_add(s, w, 130, 96, 128, &err) == 0);
    CHECK(ml_gemm_set_add(s, w + 2, 130, 96, 126, &err) == 0);
    CHECK(ml_gemm_set_add(s, w, 130, 96, 128, &err) == 0); /* again: no new entry */
    CHECK_EQ_INT(ml_gemm_set_count(s), 2);
    CHECK(ml_gemm_set_bytes(s) >= sizeof(float) * (96 * 128 + 96 * 126));
    CHECK(ml_gemm_set_add(s, w, 10, 96, 128, &err) != 0); /* stride below the row */
    CHECK_STR_CONTAINS(err.msg, "row stride 10");
    ml_gemm_ctx *c = ml_gemm_ctx_new(s, &err);
    REQUIRE_MSG(c, "%s", err.msg);
    static const int rows[] = {1, 7, 100, 301};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (int acc = 0; acc < 2; acc++)
            for (int bias = 0; bias < 2; bias++) {
                check_form(c, w, 130, rows[i], 128, 96, bias, acc, "whole");
                check_form(c, w + 2, 130, rows[i], 126, 96, bias, acc, "slice");
            }
    CHECK_EQ_INT((int)ml_gemm_ctx_fallbacks(c), 0);
    /* a matrix the set does not hold: ml_gemm_run declines, ml_op_matmul uses OpenBLAS */
    float *other = rand_floats(16 * 128);
    float out[4 * 16];
    float *inp = rand_floats(4 * 128);
    REQUIRE(other && inp);
    CHECK(ml_gemm_run(c, 2, out, inp, other, 128, NULL, 4, 128, 16, 0) == -1);
    CHECK_EQ_INT((int)ml_gemm_ctx_fallbacks(c), 1);
    check_form(c, other, 128, 4, 128, 16, 1, 1, "not prepared");
    /* the same shape again reuses its primitive: bit-identical answers */
    float *x = rand_floats(50 * 128), *o1 = ml_alloc_floats(50 * 96), *o2 = ml_alloc_floats(50 * 96);
    REQUIRE(x && o1 && o2);
    CHECK(ml_gemm_run(c, 2, o1, x, w, 130, NULL, 50, 128, 96, 0) == 0);
    CHECK(ml_gemm_run(c, 1, o2, x, w, 130, NULL, 50, 128, 96, 0) == 0);
    CHECK(memcmp(o1, o2, sizeof(float) * 50 * 96) == 0); /* and on one thread as on two */
    free(x);
    free(o1);
    free(o2);
    free(other);
    free(inp);
    free(w);
    ml_gemm_ctx_free(c);
    ml_gemm_set_free(s);
}

/* A loaded model's passes run on the build's back end: every GEMM of ml_forward (episodes
 * and length-1) found its prepared matrix. */
static void test_model_on_backend(void) {
    ml_err err = {{0}};
    ml_model m;
    REQUIRE_MSG(ml_model_load(&m, FIXTUREF("model/%s.safetensors", "rope_bias"), 0, &err) == 0,
                "%s", err.msg);
    ml_gemm_backend b = ml_gemm_build_backend();
    CHECK_EQ_STR(ml_model_gemm_backend(&m), ml_gemm_backend_name(b));
    char lib[128];
    ml_model_gemm_library(&m, lib, sizeof lib);
    CHECK_STR_CONTAINS(lib, b == ML_GEMM_ONEDNN ? "oneDNN" : "OpenBLAS");
    printf("# %s\n", lib);
    CHECK((m.gemm != NULL) == (b == ML_GEMM_ONEDNN));
    int B = 3, S = 9, In = m.cfg.input_size, C = m.cfg.hidden_size;
    ml_workspace *ws = ml_workspace_new(&m, B * S, S, &err);
    float *inp = rand_floats((size_t)B * S * In), *logits = ml_alloc_floats((size_t)B * S);
    float *E = ml_alloc_floats((size_t)5 * C);
    REQUIRE(ws && inp && logits && E);
    CHECK(ml_forward(&m, ws, inp, B, S, NULL, logits, &err) == 0);
    CHECK(ml_forward(&m, ws, inp, B * S, 1, NULL, logits, &err) == 0);
    CHECK(ml_embed_features(&m, inp, 5, E, &err) == 0);
    CHECK_EQ_INT((int)ml_gemm_ctx_fallbacks(ws->gemm), 0);
    CHECK(b != ML_GEMM_ONEDNN || ws->gemm != NULL);
    /* a workspace made before the weights were prepared again is refused, not misused */
    if (b == ML_GEMM_ONEDNN) {
        CHECK(ml_model_prepare_gemm(&m, ML_GEMM_ONEDNN, &err) == 0);
        CHECK(ml_forward(&m, ws, inp, B, S, NULL, logits, &err) != 0);
        CHECK_STR_CONTAINS(err.msg, "GEMM back end");
    }
    ml_workspace_free(ws);
    free(inp);
    free(logits);
    free(E);
    ml_model_free(&m);
}

/* A service gives the loaded copies back (oneDNN reads only its own): the passes answer
 * bit for bit as before, the prepared copies unpack to the loaded weights exactly, and the
 * model refuses to be prepared again. With OpenBLAS nothing is given back. */
static void test_release_loaded_weights(void) {
    ml_err err = {{0}};
    ml_model a, b;
    const char *path = FIXTUREF("model/%s.safetensors", "rope_emb");
    REQUIRE_MSG(ml_model_load(&a, path, 0, &err) == 0, "%s", err.msg);
    if (ml_model_load(&b, path, 0, &err) != 0) {
        CHECK_MSG(0, "%s", err.msg);
        ml_model_free(&a);
        return;
    }
    size_t given = ml_model_release_loaded_weights(&a);
    int onednn = ml_gemm_build_backend() == ML_GEMM_ONEDNN;
    CHECK(onednn ? a.loaded_released : given == 0);
    int B = 2, S = 7, In = a.cfg.input_size, C = a.cfg.hidden_size;
    ml_workspace *wa = ml_workspace_new(&a, B * S, S, &err), *wb = ml_workspace_new(&b, B * S, S, &err);
    float *inp = rand_floats((size_t)B * S * In), *la = ml_alloc_floats((size_t)B * S),
          *lb = ml_alloc_floats((size_t)B * S);
    REQUIRE(wa && wb && inp && la && lb);
    CHECK(ml_forward(&a, wa, inp, B, S, NULL, la, &err) == 0);
    CHECK(ml_forward(&b, wb, inp, B, S, NULL, lb, &err) == 0);
    CHECK(memcmp(la, lb, sizeof(float) * (size_t)B * S) == 0);
    CHECK_EQ_INT((int)ml_gemm_ctx_fallbacks(wa->gemm), 0);
    if (onednn) {
        float *w = ml_alloc_floats((size_t)3 * C * C);
        REQUIRE(w);
        CHECK(ml_gemm_unpack(a.gemm, a.params.qkv_w, C, 3 * C, C, w, &err) == 0);
        CHECK(memcmp(w, b.params.qkv_w, sizeof(float) * 3 * (size_t)C * C) == 0);
        CHECK(ml_gemm_set_dropped(a.gemm, a.params.qkv_w, C, 3 * C, C));
        CHECK(!ml_gemm_set_dropped(b.gemm, b.params.qkv_w, C, 3 * C, C));
        free(w);
        CHECK(ml_model_prepare_gemm(&a, ML_GEMM_ONEDNN, &err) != 0);
        CHECK_STR_CONTAINS(err.msg, "load the model again");
    }
    ml_workspace_free(wa);
    ml_workspace_free(wb);
    free(inp);
    free(la);
    free(lb);
    ml_model_free(&a);
    ml_model_free(&b);
}

int main(void) {
    RUN(test_build_backend);
    RUN(test_every_form);
    RUN(test_model_on_backend);
    RUN(test_release_loaded_weights);
    return UT_DONE();
}
