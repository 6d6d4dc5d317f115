/* The forward pass against PyTorch (tests/reference/make_model_fixtures.py runs
 * tests/reference/metalign_ref.py on random models of every variant): every layer output and
 * the logits, on episodes and on length-1 sequences; the episode path (per-item embeddings +
 * label columns) and batching against the plain pass. */
#include <stdint.h>

#include "io/checkpoint.h"
#include "metalign/blas.h"
#include "io/tensorset.h"
#include "metalign/model.h"
#include "unit.h"

static const char *const cases[] = {"rope_emb",        "rope_bias", "learned_noemb",
                                    "learned_bias",    "rope_noemb_bias", "rope_d64",
                                    "learned_d80"};
#define N_CASES (sizeof cases / sizeof cases[0])

typedef struct golden {
    ml_tensorset ts;
    ml_model m;
    char name[64];
} golden;

static int open_case(golden *g, const char *name) {
    ml_err err = {{0}};
    snprintf(g->name, sizeof g->name, "%s", name);
    const char *path = FIXTUREF("model/%s.safetensors", name);
    if (ml_model_load(&g->m, path, 0, &err) != 0) {
        CHECK_MSG(0, "%s: %s", name, err.msg);
        return -1;
    }
    path = FIXTUREF("model/%s.golden.safetensors", name);
    if (ml_checkpoint_open(&g->ts, path, &err) != 0) {
        CHECK_MSG(0, "%s: %s", name, err.msg);
        ml_model_free(&g->m);
        return -1;
    }
    return 0;
}

static void close_case(golden *g) {
    ml_tensorset_free(&g->ts);
    ml_model_free(&g->m);
}

static float *fbuf(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* A golden float tensor (malloc'd), or NULL with a failed check. */
static float *gf(golden *g, const char *name, int64_t *numel) {
    const ml_tensor *t = ml_tensorset_find(&g->ts, name);
    CHECK_MSG(t != NULL, "%s: golden tensor %s missing", g->name, name);
    if (!t) return NULL;
    float *buf = fbuf((size_t)ml_tensor_numel(t) + 1);
    ml_err err = {{0}};
    if (ml_tensorset_read_f32(&g->ts, t, buf, &err) != 0) {
        CHECK_MSG(0, "%s: %s", g->name, err.msg);
        free(buf);
        return NULL;
    }
    if (numel) *numel = ml_tensor_numel(t);
    return buf;
}

/* A golden int32 tensor (malloc'd). */
static int *gi(golden *g, const char *name) {
    const ml_tensor *t = ml_tensorset_find(&g->ts, name);
    CHECK_MSG(t && t->dtype == ML_I32, "%s: golden int32 tensor %s missing", g->name, name);
    if (!t || t->dtype != ML_I32) return NULL;
    int64_t n = ml_tensor_numel(t);
    int32_t *buf = malloc(sizeof(int32_t) * (size_t)n + 1);
    ml_err err = {{0}};
    if (ml_tensorset_read_storage(&g->ts, &g->ts.storages[t->storage], 0, 4 * n, buf, &err)) {
        CHECK_MSG(0, "%s: %s", g->name, err.msg);
        free(buf);
        return NULL;
    }
    return buf; /* little-endian host */
}

static int meta_int(golden *g, const char *key) {
    const char *v = ml_tensorset_meta(&g->ts, key);
    CHECK_MSG(v != NULL, "%s: golden metadata %s missing", g->name, key);
    return v ? atoi(v) : -1;
}

/* Elementwise |a - b| <= rtol * max(1, |b|), every value finite on both sides: a NaN in the
 * output or in the golden file fails. */
static void check_close(const char *what, const char *cname, const float *a, const float *b,
                        int64_t n, double rtol) {
    char label[160];
    snprintf(label, sizeof label, "%s: %s", cname, what);
    CHECK_ARRAY_NEAR_AS(label, a, b, n, rtol, rtol, UT_TOL_MAX);
}

static void test_config_detected(void) {
    for (size_t c = 0; c < N_CASES; c++) {
        golden g;
        if (open_case(&g, cases[c])) continue;
        const ml_model_config *cfg = &g.m.cfg;
        CHECK_MSG(cfg->input_size == meta_int(&g, "input_size"), "%s input_size", g.name);
        CHECK_MSG(cfg->hidden_size == meta_int(&g, "hidden_size"), "%s hidden", g.name);
        CHECK_MSG(cfg->num_heads == meta_int(&g, "num_attention_heads"), "%s heads", g.name);
        CHECK_MSG(cfg->intermediate_size == meta_int(&g, "intermediate_size"), "%s I", g.name);
        CHECK_MSG(cfg->num_layers == meta_int(&g, "num_layers"), "%s layers", g.name);
        CHECK_MSG(cfg->embedding == meta_int(&g, "embedding"), "%s embedding", g.name);
        CHECK_MSG(cfg->bias == meta_int(&g, "bias"), "%s bias", g.name);
        CHECK_MSG(cfg->logit_bias == meta_int(&g, "logit_bias"), "%s logit_bias", g.name);
        int rope = meta_int(&g, "rope");
        CHECK_MSG((cfg->pos == ML_POS_ROPE) == rope, "%s rope", g.name);
        if (!rope)
            CHECK_MSG(cfg->max_seq_len == meta_int(&g, "sequence_length"), "%s seq", g.name);
        CHECK_STR_CONTAINS(g.m.format, "safetensors");
        CHECK(g.m.synthetic == 0);
        close_case(&g);
    }
}

/* The cos/sin tables against torch's freqs_cis. torch's float pow differs from the correctly
 * rounded one by up to 2 ulp, so angles t * freq may differ by about t * 2.4e-7. */
static void test_rope_tables_match_torch(void) {
    for (size_t c = 0; c < N_CASES; c++) {
        golden g;
        if (open_case(&g, cases[c])) continue;
        if (g.m.cfg.pos == ML_POS_ROPE) {
            int64_t n;
            float *cs = gf(&g, "rope.cos", &n), *sn = gf(&g, "rope.sin", NULL);
            int half = g.m.cfg.hidden_size / g.m.cfg.num_heads / 2;
            CHECK(g.m.rope_len >= 4096);
            for (int64_t i = 0; cs && sn && i < n; i++) {
                int t = (int)(i / half);
                CHECK_NEAR(g.m.rope_cos[i], cs[i], 0, 3e-7 * (1 + t));
                CHECK_NEAR(g.m.rope_sin[i], sn[i], 0, 3e-7 * (1 + t));
            }
            free(cs);
            free(sn);
        }
        close_case(&g);
    }
}

/* Runs ml_forward on golden input <in> and compares every output with <prefix>.* and
 * <logits>. Returns the outputs (caller frees) when keep is set. */
static void run_and_compare(golden *g, const char *in, const char *prefix, const char *lname,
                            int B, int S) {
    ml_err err = {{0}};
    int nout = ml_model_num_outputs(&g->m), C = g->m.cfg.hidden_size;
    float *inp = gf(g, in, NULL);
    float **outs = calloc((size_t)nout, sizeof *outs);
    float *logits = fbuf((size_t)B * S);
    for (int i = 0; i < nout; i++) outs[i] = fbuf((size_t)B * S * C);
    ml_workspace *ws = ml_workspace_new(&g->m, B * S, S, &err);
    CHECK_MSG(ws != NULL, "%s", err.msg);
    if (inp && ws) {
        int rc = ml_forward(&g->m, ws, inp, B, S, outs, logits, &err);
        CHECK_MSG(rc == 0, "%s: %s", g->name, err.msg);
        for (int i = 0; rc == 0 && i < nout; i++) {
            char oname[32], gname[64];
            ml_model_output_name(&g->m, i, oname, sizeof oname);
            snprintf(gname, sizeof gname, "%s.%s", prefix, oname);
            float *want = gf(g, gname, NULL);
            if (want) check_close(gname, g->name, outs[i], want, (int64_t)B * S * C, 1e-4);
            free(want);
        }
        float *want = gf(g, lname, NULL);
        if (rc == 0 && want) check_close(lname, g->name, logits, want, (int64_t)B * S, 1e-4);
        free(want);
    }
    ml_workspace_free(ws);
    for (int i = 0; i < nout; i++) free(outs[i]);
    free(outs);
    free(logits);
    free(inp);
}

static void dims(golden *g, const char *name, int *B, int *S) {
    const ml_tensor *t = ml_tensorset_find(&g->ts, name);
    *B = t ? (int)t->shape[0] : 0;
    *S = t ? (int)t->shape[1] : 0;
}

static void test_forward_matches_torch(void) {
    for (size_t c = 0; c < N_CASES; c++) {
        golden g;
        if (open_case(&g, cases[c])) continue;
        int B, S;
        dims(&g, "input", &B, &S);
        run_and_compare(&g, "input", "out", "logits", B, S);
        close_case(&g);
    }
}

static void test_length1_matches_torch(void) {
    for (size_t c = 0; c < N_CASES; c++) {
        golden g;
        if (open_case(&g, cases[c])) continue;
        int B, S;
        dims(&g, "input1", &B, &S);
        CHECK(S == 1);
        run_and_compare(&g, "input1", "out1", "logits1", B, S);
        close_case(&g);
    }
}

/* Per-item embeddings plus label columns, then the pass from the embedding, reproduce the
 * plain pass on the same episodes. */
static void test_episode_path_matches_forward(void) {
    for (size_t c = 0; c < N_CASES; c++) {
        golden g;
        if (open_case(&g, cases[c])) continue;
        ml_err err = {{0}};
        int B, S, C = g.m.cfg.hidden_size, L = g.m.cfg.num_layers;
        dims(&g, "input", &B, &S);
        int64_t nfeat_total;
        float *inp = gf(&g, "input", NULL), *feats = gf(&g, "features", &nfeat_total);
        int *items = gi(&g, "items"), *labels = gi(&g, "labels");
        int n_items = (int)ml_tensorset_find(&g.ts, "features")->shape[0];
        float *E = fbuf((size_t)n_items * C);
        float *h0 = fbuf((size_t)B * S * C);
        float *la = fbuf((size_t)B * S), *lb = fbuf((size_t)B * S);
        float *oa = fbuf((size_t)B * S * C), *ob = fbuf((size_t)B * S * C);
        float *ea = fbuf((size_t)B * S * C), *eb = fbuf((size_t)B * S * C);
        float **outs_a = calloc((size_t)L + 1, sizeof(float *));
        float **outs_b = calloc((size_t)L + 1, sizeof(float *));
        outs_a[0] = ea;
        outs_b[0] = eb;
        outs_a[L] = oa;
        outs_b[L] = ob;
        ml_workspace *ws = ml_workspace_new(&g.m, B * S, S, &err);
        if (inp && feats && items && labels && ws) {
            CHECK(ml_embed_features(&g.m, feats, n_items, E, &err) == 0);
            ml_embed_episodes(&g.m, E, items, labels, B, S, h0);
            CHECK(ml_forward(&g.m, ws, inp, B, S, outs_a, la, &err) == 0);
            CHECK(ml_forward_from_embedding(&g.m, ws, h0, B, S, outs_b, lb, &err) == 0);
            check_close("episode embedding", g.name, eb, ea, (int64_t)B * S * C, 1e-5);
            check_close("episode last layer", g.name, ob, oa, (int64_t)B * S * C, 1e-5);
            check_close("episode logits", g.name, lb, la, (int64_t)B * S, 1e-5);
            float *want = gf(&g, "logits", NULL);
            if (want)
                check_close("episode logits vs torch", g.name, lb, want, (int64_t)B * S, 1e-4);
            free(want);
        }
        ml_workspace_free(ws);
        free(outs_a);
        free(outs_b);
        free(inp);
        free(feats);
        free(items);
        free(labels);
        free(E);
        free(h0);
        free(la);
        free(lb);
        free(oa);
        free(ob);
        free(ea);
        free(eb);
        close_case(&g);
    }
}

/* A sequence gives the same answer alone as inside a batch, and a workspace larger than the
 * call does not change it. */
static void test_batching_is_invisible(void) {
    for (size_t c = 0; c < N_CASES; c++) {
        golden g;
        if (open_case(&g, cases[c])) continue;
        ml_err err = {{0}};
        int B, S, C = g.m.cfg.hidden_size, In = g.m.cfg.input_size, L = g.m.cfg.num_layers;
        dims(&g, "input", &B, &S);
        float *inp = gf(&g, "input", NULL);
        float *all = fbuf((size_t)B * S * C), *one = fbuf((size_t)S * C);
        float *lall = fbuf((size_t)B * S), *lone = fbuf((size_t)S);
        float **oa = calloc((size_t)L + 1, sizeof(float *));
        float **oo = calloc((size_t)L + 1, sizeof(float *));
        oa[L] = all;
        oo[L] = one;
        ml_workspace *ws = ml_workspace_new(&g.m, 4 * B * S, 2 * S, &err);
        if (inp && ws && ml_forward(&g.m, ws, inp, B, S, oa, lall, &err) == 0) {
            for (int b = 0; b < B; b++) {
                CHECK(ml_forward(&g.m, ws, inp + (size_t)b * S * In, 1, S, oo, lone, &err) == 0);
                check_close("sequence alone: last layer", g.name, one, all + (size_t)b * S * C,
                            (int64_t)S * C, 1e-5);
                check_close("sequence alone: logits", g.name, lone, lall + (size_t)b * S, S, 1e-5);
            }
        } else {
            CHECK_MSG(0, "%s: %s", g.name, err.msg);
        }
        ml_workspace_free(ws);
        free(oa);
        free(oo);
        free(inp);
        free(all);
        free(one);
        free(lall);
        free(lone);
        close_case(&g);
    }
}

/* Asking only for early outputs (no logits) gives the same values as the full pass. */
static void test_partial_outputs(void) {
    golden g;
    if (open_case(&g, "rope_bias")) return;
    ml_err err = {{0}};
    int B, S, C = g.m.cfg.hidden_size;
    dims(&g, "input", &B, &S);
    float *inp = gf(&g, "input", NULL), *want = gf(&g, "out.layer_0", NULL);
    float *emb_want = gf(&g, "out.embedding", NULL);
    float *l0 = fbuf((size_t)B * S * C), *emb = fbuf((size_t)B * S * C);
    float *outs[4] = {emb, l0, NULL, NULL};
    ml_workspace *ws = ml_workspace_new(&g.m, B * S, S, &err);
    if (inp && want && emb_want && ws) {
        CHECK(ml_forward(&g.m, ws, inp, B, S, outs, NULL, &err) == 0);
        check_close("layer_0 only", g.name, l0, want, (int64_t)B * S * C, 1e-4);
        check_close("embedding only", g.name, emb, emb_want, (int64_t)B * S * C, 1e-4);
        CHECK(ml_forward(&g.m, ws, inp, B, S, NULL, NULL, &err) == 0);
    }
    ml_workspace_free(ws);
    free(inp);
    free(want);
    free(emb_want);
    free(l0);
    free(emb);
    close_case(&g);
}

static void test_call_limits(void) {
    golden g;
    if (open_case(&g, "learned_noemb")) return; /* learned positions: 9 of them */
    ml_err err = {{0}};
    int C = g.m.cfg.hidden_size;
    float *inp = calloc((size_t)20 * C, sizeof(float)), *logits = malloc(sizeof(float) * 20);
    ml_workspace *ws = ml_workspace_new(&g.m, 20, 20, &err);
    CHECK(ws != NULL);
    if (ws) {
        CHECK(ml_forward(&g.m, ws, inp, 1, 10, NULL, logits, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "learned positions");
        CHECK(ml_forward(&g.m, ws, inp, 3, 9, NULL, logits, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "exceed");
        CHECK(ml_forward(&g.m, ws, inp, 0, 9, NULL, logits, &err) == -1);
        CHECK(ml_forward(&g.m, ws, inp, 2, 9, NULL, logits, &err) == 0);
        for (int i = 0; i < 18; i++) CHECK(isfinite(logits[i]));
    }
    ml_workspace_free(ws);
    free(inp);
    free(logits);
    close_case(&g);
}

/* One OpenBLAS thread (ml_blas_set_threads) runs everything on the caller: same answer. */
static void test_single_thread(void) {
    int saved = ml_blas_threads();
    ml_blas_set_threads(1);
    golden g;
    if (open_case(&g, "rope_d64") == 0) {
        int B, S;
        dims(&g, "input", &B, &S);
        run_and_compare(&g, "input", "out", "logits", B, S);
        close_case(&g);
    }
    ml_blas_set_threads(saved);
}

int main(void) {
    RUN(test_config_detected);
    RUN(test_rope_tables_match_torch);
    RUN(test_forward_matches_torch);
    RUN(test_length1_matches_torch);
    RUN(test_episode_path_matches_forward);
    RUN(test_batching_is_invisible);
    RUN(test_partial_outputs);
    RUN(test_call_limits);
    RUN(test_single_thread);
    return UT_DONE();
}
