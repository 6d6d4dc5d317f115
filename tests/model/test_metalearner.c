/* The later generation (MODEL.md section 7) against PyTorch: MetaLearnerConfig checkpoints of
 * the transformer, the LSTM and the static linear model written by
 * tests/reference/make_metalearner_fixtures.py, loaded from torch.save files with `_orig_mod.`
 * prefixes and a pickled metalign.model.MetaLearnerConfig. Every layer's output, the logits,
 * the magnitudes and encode() are held at 1e-4, through both ways into the generic forward
 * pass (raw features, or per-item encodings with item indices); configs that contradict
 * their tensors and --heads that contradicts the config are refused naming both. The generic
 * API is also held against the seed's goldens. */
#include <stdint.h>

#include "io/checkpoint.h"
#include "io/tensorset.h"
#include "metalign/model.h"
#include "unit.h"

#define TOL 1e-4

typedef struct mcase {
    const char *name;
    ml_arch arch;
    int width, layers, heads, mlp, no_embed, dims;
    float mag_std;
    int sl;
} mcase;

static const mcase cases[] = {
    {"tf1", ML_ARCH_TRANSFORMER, 32, 1, 4, 0, 0, 1, 0.5f, 24},
    {"tf_mlp2", ML_ARCH_TRANSFORMER, 24, 2, 2, 1, 0, 1, 1.3f, 24},
    {"tf_noembed", ML_ARCH_TRANSFORMER, 36, 1, 3, 1, 1, 1, 0.8f, 16},
    {"tf_heads3", ML_ARCH_TRANSFORMER, 48, 1, 3, 0, 0, 1, 1.0f, 120},
    {"lstm2", ML_ARCH_LSTM, 20, 2, 0, 0, 0, 1, 0.7f, 12},
    {"static", ML_ARCH_STATIC_LINEAR, 16, 0, 0, 0, 0, 3, 1.0f, 12},
};
#define N_CASES (sizeof cases / sizeof cases[0])

typedef struct golden {
    ml_tensorset ts;
    ml_model m;
    const char *name;
} golden;

static int open_golden(golden *g, const char *model_file, const char *golden_name, int heads) {
    char path[512];
    ml_err err = {{0}};
    g->name = golden_name;
    snprintf(path, sizeof path, "%s", FIXTUREF("model/%s", model_file));
    if (ml_model_load(&g->m, path, heads, &err) != 0) {
        CHECK_MSG(0, "%s: %s", model_file, err.msg);
        return -1;
    }
    snprintf(path, sizeof path, "%s", FIXTUREF("model/ml_%s.golden.safetensors", golden_name));
    if (ml_checkpoint_open(&g->ts, path, &err) != 0) {
        CHECK_MSG(0, "%s: %s", golden_name, err.msg);
        ml_model_free(&g->m);
        return -1;
    }
    return 0;
}

static int open_case(golden *g, const mcase *c) {
    char file[128];
    snprintf(file, sizeof file, "ml_%s.pt", c->name);
    return open_golden(g, file, c->name, 0);
}

static void close_golden(golden *g) {
    ml_tensorset_free(&g->ts);
    ml_model_free(&g->m);
}

static float *fbuf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* A golden float tensor (malloc'd) and its element count, or NULL with a failed check. */
static float *gf(golden *g, const char *name, int64_t *numel) {
    const ml_tensor *t = ml_tensorset_find(&g->ts, name);
    CHECK_MSG(t != NULL, "%s: golden tensor %s missing", g->name, name);
    if (!t) return NULL;
    float *buf = fbuf((size_t)ml_tensor_numel(t));
    ml_err err = {{0}};
    if (ml_tensorset_read_f32(&g->ts, t, buf, &err) != 0) {
        CHECK_MSG(0, "%s: %s", g->name, err.msg);
        free(buf);
        return NULL;
    }
    if (numel) *numel = ml_tensor_numel(t);
    return buf;
}

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
    return buf;
}

static int meta_int(golden *g, const char *key) {
    const char *v = ml_tensorset_meta(&g->ts, key);
    CHECK_MSG(v != NULL, "%s: golden metadata %s missing", g->name, key);
    return v ? atoi(v) : -1;
}

/* |a - b| <= TOL * max(1, |b|) everywhere; a NaN anywhere fails. Reports the worst element. */
static void check_close(const char *cname, const char *what, const float *a, const float *b,
                        int64_t n, int64_t want_n) {
    CHECK_MSG(n == want_n, "%s: %s has %lld elements, the golden %lld", cname, what,
              (long long)n, (long long)want_n);
    if (n != want_n) return;
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double scale = fabs(b[i]) > 1 ? fabs(b[i]) : 1;
        double e = fabs((double)a[i] - b[i]) / scale;
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
    }
    CHECK_MSG(worst <= TOL, "%s: %s: element %lld is %.9g, expected %.9g (rel err %.3g)", cname,
              what, (long long)at, n ? a[at] : 0.0f, n ? b[at] : 0.0f, worst);
}

static void test_configs(void) {
    for (size_t k = 0; k < N_CASES; k++) {
        const mcase *c = &cases[k];
        golden g;
        if (open_case(&g, c)) continue;
        const ml_model *m = &g.m;
        CHECK_MSG(m->generation == ML_GEN_METALEARNER, "%s generation", c->name);
        CHECK_MSG(ml_model_arch(m) == c->arch, "%s type", c->name);
        CHECK_MSG(m->meta.from_config == 1, "%s: the config was not read", c->name);
        CHECK_MSG(ml_model_width(m) == c->width && ml_model_feature_dim(m) == c->width,
                  "%s width %d", c->name, ml_model_width(m));
        CHECK_MSG(m->cfg.num_layers == c->layers, "%s layers %d", c->name, m->cfg.num_layers);
        CHECK_MSG(m->cfg.num_heads == c->heads, "%s heads %d", c->name, m->cfg.num_heads);
        CHECK_MSG(m->meta.use_mlp == c->mlp && m->meta.no_embed == c->no_embed, "%s mlp/embed",
                  c->name);
        CHECK_MSG(ml_model_logit_dims(m) == c->dims, "%s dims", c->name);
        CHECK_MSG(m->meta.sl == c->sl, "%s sl %d", c->name, m->meta.sl);
        CHECK_NEAR(m->meta.mag_std, c->mag_std, 1e-7, 0);
        CHECK(ml_model_has_magnitudes(m));
        CHECK(!strcmp(m->format, "pytorch"));
        CHECK(ml_model_max_seq_len(m) == (c->arch == ML_ARCH_TRANSFORMER ? c->sl : 0));
        CHECK(ml_model_feedback(m) == (c->arch == ML_ARCH_STATIC_LINEAR
                                           ? ML_FEEDBACK_NONE : ML_FEEDBACK_MAGNITUDES));
        if (c->arch == ML_ARCH_TRANSFORMER) CHECK(!strcmp(m->heads_source, "checkpoint"));
        /* the output names are the golden's, in order */
        const char *names = ml_tensorset_meta(&g.ts, "outputs");
        char want[256] = "", buf[32];
        for (int i = 0; i < ml_model_num_outputs(m); i++) {
            size_t n = strlen(want);
            snprintf(want + n, sizeof want - n, "%s%s", i ? "," : "",
                     ml_model_output_name(m, i, buf, sizeof buf));
        }
        CHECK_MSG(names && !strcmp(names, want), "%s: outputs %s, golden %s", c->name, want,
                  names ? names : "?");
        CHECK(ml_model_output_index(m, "embed") == 0);
        CHECK(ml_model_output_index(m, "ln_f") == ml_model_num_outputs(m) - 1);
        CHECK(ml_model_output_index(m, "embedding") == -1);
        close_golden(&g);
    }
    CHECK(!strcmp(ml_generation_name(ML_GEN_METALEARNER), "metalearner"));
    CHECK(!strcmp(ml_generation_name(ML_GEN_SEED), "seed"));
    CHECK(!strcmp(ml_arch_name(ML_ARCH_STATIC_LINEAR), "static_linear"));
}

/* Runs the generic pass on the golden episodes (via features or via encodings) or on the
 * length-1 items and compares every output with the golden. */
static void run_case(golden *g, int via_encodings, int length1) {
    const ml_model *m = &g->m;
    ml_err err = {{0}};
    int D = ml_model_feature_dim(m), W = ml_model_width(m), K = ml_model_logit_dims(m);
    int n_items = meta_int(g, "n_items");
    int B = length1 ? meta_int(g, "B1") : meta_int(g, "B");
    int S = length1 ? 1 : meta_int(g, "S");
    size_t N = (size_t)B * S;
    float *feats = gf(g, "features", NULL);
    float *fb = length1 ? NULL : gf(g, "feedback", NULL);
    int *items = length1 ? calloc(N, sizeof(int)) : gi(g, "items");
    if (!feats || (!length1 && (!fb || !items)) || !items) goto done;
    if (length1)
        for (size_t r = 0; r < N; r++) items[r] = (int)r;
    int nout = ml_model_num_outputs(m);
    float *outs[ML_MAX_LAYERS + 2] = {0};
    for (int i = 0; i < nout; i++) outs[i] = fbuf(N * W);
    float *logits = fbuf(N * K), *mags = fbuf(N * K);
    float *x = fbuf(N * D), *E = fbuf((size_t)n_items * W);
    for (size_t r = 0; r < N; r++)
        memcpy(x + r * D, feats + (size_t)items[r] * D, sizeof(float) * (size_t)D);
    ml_batch in = {.B = B, .S = S, .feedback = fb};
    if (via_encodings) {
        CHECK_MSG(ml_model_encode(m, feats, n_items, E, &err) == 0, "%s", err.msg);
        in.E = E;
        in.items = items;
        in.n_items = n_items;
    } else {
        in.x = x;
    }
    ml_outputs out = {outs, logits, mags};
    ml_workspace *ws = ml_workspace_new(m, (int)N, S, &err);
    CHECK_MSG(ws != NULL, "%s", err.msg);
    int rc = ws ? ml_model_forward(m, ws, &in, &out, &err) : -1;
    CHECK_MSG(rc == 0, "%s: %s", g->name, err.msg);
    char what[96];
    const char *pre = length1 ? "out1" : "out";
    for (int i = 0; rc == 0 && i < nout; i++) {
        char oname[32], gname[64];
        int64_t n = 0;
        ml_model_output_name(m, i, oname, sizeof oname);
        snprintf(gname, sizeof gname, "%s.%s", pre, oname);
        float *want = gf(g, gname, &n);
        snprintf(what, sizeof what, "%s (%s)", gname, via_encodings ? "encodings" : "features");
        if (want) check_close(g->name, what, outs[i], want, (int64_t)N * W, n);
        free(want);
    }
    const char *lname = length1 ? "logits1" : "logits", *mname = length1 ? "magnitudes1"
                                                                          : "magnitudes";
    int64_t n = 0;
    float *want = rc == 0 ? gf(g, lname, &n) : NULL;
    if (want) check_close(g->name, lname, logits, want, (int64_t)N * K, n);
    free(want);
    want = rc == 0 ? gf(g, mname, &n) : NULL;
    if (want) check_close(g->name, mname, mags, want, (int64_t)N * K, n);
    free(want);
    if (via_encodings && !length1) {
        want = gf(g, "encode", &n);
        if (want) check_close(g->name, "encode", E, want, (int64_t)n_items * W, n);
        free(want);
    }
    ml_workspace_free(ws);
    for (int i = 0; i < nout; i++) free(outs[i]);
    free(logits);
    free(mags);
    free(x);
    free(E);
done:
    free(feats);
    free(fb);
    free(items);
}

static void test_episodes_match_torch(void) {
    for (size_t k = 0; k < N_CASES; k++) {
        golden g;
        if (open_case(&g, &cases[k])) continue;
        run_case(&g, 0, 0);
        run_case(&g, 1, 0);
        close_golden(&g);
    }
}

static void test_length1_matches_torch(void) {
    for (size_t k = 0; k < N_CASES; k++) {
        golden g;
        if (open_case(&g, &cases[k])) continue;
        run_case(&g, 0, 1);
        run_case(&g, 1, 1);
        close_golden(&g);
    }
}

/* Asking for one early layer only (no heads) gives the same values; one sequence at a time
 * gives what the batch gives. */
static void test_partial_and_batched(void) {
    for (size_t k = 0; k < N_CASES; k++) {
        golden g;
        if (open_case(&g, &cases[k])) continue;
        const ml_model *m = &g.m;
        ml_err err = {{0}};
        int B = meta_int(&g, "B"), S = meta_int(&g, "S"), D = ml_model_feature_dim(m);
        int W = ml_model_width(m), n_items = meta_int(&g, "n_items");
        float *feats = gf(&g, "features", NULL), *fb = gf(&g, "feedback", NULL);
        int *items = gi(&g, "items");
        float *want = gf(&g, "out.embed", NULL), *logits_want = gf(&g, "logits", NULL);
        float *got = fbuf((size_t)B * S * W), *lg = fbuf((size_t)S * ml_model_logit_dims(m));
        ml_workspace *ws = ml_workspace_new(m, S, S, &err);
        CHECK_MSG(ws != NULL, "%s", err.msg);
        for (int b = 0; ws && feats && fb && items && want && logits_want && b < B; b++) {
            float *outs[ML_MAX_LAYERS + 2] = {got + (size_t)b * S * W};
            ml_batch in = {.B = 1, .S = S, .E = NULL, .feedback = fb + (size_t)b * S};
            float *x = fbuf((size_t)S * D);
            for (int t = 0; t < S; t++)
                memcpy(x + (size_t)t * D, feats + (size_t)items[b * S + t] * D,
                       sizeof(float) * (size_t)D);
            in.x = x;
            ml_outputs only_embed = {outs, NULL, NULL};
            CHECK_MSG(ml_model_forward(m, ws, &in, &only_embed, &err) == 0, "%s", err.msg);
            ml_outputs only_logits = {NULL, lg, NULL};
            CHECK_MSG(ml_model_forward(m, ws, &in, &only_logits, &err) == 0, "%s", err.msg);
            int K = ml_model_logit_dims(m);
            check_close(g.name, "logits, one sequence at a time", lg,
                        logits_want + (size_t)b * S * K, (int64_t)S * K, (int64_t)S * K);
            free(x);
        }
        if (want) check_close(g.name, "out.embed alone", got, want, (int64_t)B * S * W,
                              (int64_t)B * S * W);
        (void)n_items;
        ml_workspace_free(ws);
        free(feats);
        free(fb);
        free(items);
        free(want);
        free(logits_want);
        free(got);
        free(lg);
        close_golden(&g);
    }
}

/* ml_tf1's weights without a config: --heads (or the default) gives the head count, the
 * mag_std buffer the scale; with the right count the outputs are tf1's. */
static void test_bare_state_dict(void) {
    ml_model m;
    ml_err err = {{0}};
    CHECK(ml_model_load(&m, FIXTURE("model/ml_bare.pt"), 0, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "12 attention heads");
    CHECK_STR_CONTAINS(err.msg, "--heads");
    golden g;
    if (open_golden(&g, "ml_bare.pt", "tf1", 4)) return;
    CHECK(g.m.meta.from_config == 0 && g.m.meta.sl == 0 && ml_model_max_seq_len(&g.m) == 0);
    CHECK(!strcmp(g.m.heads_source, "--heads") && g.m.cfg.num_heads == 4);
    CHECK_NEAR(g.m.meta.mag_std, 0.5, 0, 0);
    run_case(&g, 0, 0);
    close_golden(&g);
}

static void expect_error(const char *file, int heads, const char *n1, const char *n2) {
    char path[512];
    snprintf(path, sizeof path, "%s", FIXTUREF("model/%s", file));
    ml_model m;
    ml_err err = {{0}};
    CHECK_MSG(ml_model_load(&m, path, heads, &err) == -1, "%s loaded", file);
    CHECK_STR_CONTAINS(err.msg, path);
    CHECK_STR_CONTAINS(err.msg, n1);
    if (n2) CHECK_STR_CONTAINS(err.msg, n2);
    CHECK(m.params_memory == NULL);
}

static void test_heads_contradiction(void) {
    ml_model m;
    ml_err err = {{0}};
    CHECK_MSG(ml_model_load(&m, FIXTURE("model/ml_tf1.pt"), 4, &err) == 0, "%s", err.msg);
    ml_model_free(&m);
    expect_error("ml_tf1.pt", 8, "--heads 8", "n_heads=4");
    /* also for a model without attention: the config says 4 */
    expect_error("ml_lstm2.pt", 8, "--heads 8", "n_heads=4");
}

static void test_config_disagrees_with_tensors(void) {
    expect_error("ml_err_layers.pt", 0, "n_layers=2", "n_layers=1");
    expect_error("ml_err_mlp.pt", 0, "use_mlp=true", "use_mlp=false");
    expect_error("ml_err_noembed.pt", 0, "no_embed=true", "no_embed=false");
    expect_error("ml_err_xsz.pt", 0, "x_sz=9", "x_sz=8");
    expect_error("ml_err_type.pt", 0, "model_type=lstm", "transformer");
    expect_error("ml_err_magstd.pt", 0, "mag_std=0.75", "holds 1");
    expect_error("ml_err_bias.pt", 0, "bias=false", "bias=true");
    expect_error("ml_err_intsz.pt", 0, "int_sz=20", "int_sz=12");
    expect_error("ml_err_class.pt", 0, "TransformerConfig", "MetaLearnerConfig");
}

/* Calls that cannot be served fail with a message and write nothing out of bounds. */
static void test_refusals(void) {
    golden g;
    if (open_case(&g, &cases[0])) return;
    ml_err err = {{0}};
    const ml_model *m = &g.m;
    int W = ml_model_width(m);
    float x[32 * 30] = {0}, out[32 * 30], lg[30];
    CHECK(ml_embed_features(m, x, 1, out, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "ml_model_forward");
    ml_workspace *ws = ml_workspace_new(m, 30, 100, &err); /* lowered to sl = 24 */
    CHECK_MSG(ws != NULL, "%s", err.msg);
    if (ws) {
        CHECK(ml_forward(m, ws, x, 1, 2, NULL, lg, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "later-generation");
        ml_batch in = {.B = 1, .S = 25, .x = x};
        ml_outputs o = {NULL, lg, NULL};
        CHECK(ml_model_forward(m, ws, &in, &o, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "sl");
        int items[2] = {0, 5};
        ml_batch bad = {.B = 1, .S = 2, .E = out, .items = items, .n_items = 5};
        CHECK(ml_model_forward(m, ws, &bad, &o, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "item 5");
        ml_batch both = {.B = 1, .S = 2, .x = x, .E = out, .items = items, .n_items = 6};
        CHECK(ml_model_forward(m, ws, &both, &o, &err) == -1);
    }
    ml_workspace_free(ws);
    /* a workspace of another model */
    golden s;
    if (open_case(&s, &cases[5]) == 0) {
        ml_workspace *ws2 = ml_workspace_new(&s.m, 4, 4, &err);
        ml_batch in = {.B = 1, .S = 1, .x = x};
        ml_outputs o = {NULL, lg, NULL};
        CHECK(ws2 && ml_model_forward(m, ws2, &in, &o, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "another model");
        ml_workspace_free(ws2);
        close_golden(&s);
    }
    (void)W;
    close_golden(&g);
}

/* The generic API on the seed's model: its label feedback through ml_batch.feedback gives the
 * seed goldens' logits and layer outputs (tests/reference/make_model_fixtures.py). */
static void test_generic_api_on_seed(void) {
    ml_model m;
    ml_tensorset ts;
    ml_err err = {{0}};
    if (ml_model_load(&m, FIXTURE("model/rope_bias.safetensors"), 0, &err) != 0) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    if (ml_checkpoint_open(&ts, FIXTURE("model/rope_bias.golden.safetensors"), &err) != 0) {
        CHECK_MSG(0, "%s", err.msg);
        ml_model_free(&m);
        return;
    }
    golden g = {.ts = ts, .m = m, .name = "rope_bias"};
    CHECK(m.generation == ML_GEN_SEED && ml_model_feedback(&m) == ML_FEEDBACK_LABELS);
    CHECK(!ml_model_has_magnitudes(&m) && ml_model_logit_dims(&m) == 1);
    CHECK(ml_model_feature_dim(&m) == m.cfg.input_size - 2);
    const ml_tensor *t = ml_tensorset_find(&ts, "items");
    int B = t ? (int)t->shape[0] : 0, S = t ? (int)t->shape[1] : 0, n_items = 0;
    const ml_tensor *ft = ml_tensorset_find(&ts, "features");
    n_items = ft ? (int)ft->shape[0] : 0;
    int *items = gi(&g, "items"), *labels = gi(&g, "labels");
    float *feats = gf(&g, "features", NULL), *want = gf(&g, "logits", NULL);
    float *want1 = gf(&g, "out.layer_1", NULL);
    int W = ml_model_width(&m), D = ml_model_feature_dim(&m);
    if (items && labels && feats && want && want1 && B > 0) {
        size_t N = (size_t)B * S;
        float *fb = fbuf(N), *E = fbuf((size_t)n_items * W), *lg = fbuf(N), *l1 = fbuf(N * W);
        float *x = fbuf(N * D);
        for (size_t r = 0; r < N; r++) {
            fb[r] = (float)labels[r];
            memcpy(x + r * D, feats + (size_t)items[r] * D, sizeof(float) * (size_t)D);
        }
        CHECK(ml_model_encode(&m, feats, n_items, E, &err) == 0);
        ml_workspace *ws = ml_workspace_new(&m, (int)N, S, &err);
        float *outs[ML_MAX_LAYERS + 1] = {NULL, NULL, l1};
        ml_outputs o = {outs, lg, NULL};
        ml_batch viaE = {.B = B, .S = S, .E = E, .items = items, .n_items = n_items,
                         .feedback = fb};
        ml_batch viaX = {.B = B, .S = S, .x = x, .feedback = fb};
        for (int pass = 0; ws && pass < 2; pass++) {
            CHECK_MSG(ml_model_forward(&m, ws, pass ? &viaX : &viaE, &o, &err) == 0, "%s",
                      err.msg);
            check_close("rope_bias", "generic logits", lg, want, (int64_t)N, (int64_t)N);
            check_close("rope_bias", "generic layer_1", l1, want1, (int64_t)N * W,
                        (int64_t)N * W);
        }
        ml_outputs with_mags = {NULL, lg, lg};
        CHECK(ws && ml_model_forward(&m, ws, &viaE, &with_mags, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "no magnitude head");
        ml_workspace_free(ws);
        free(fb);
        free(E);
        free(lg);
        free(l1);
        free(x);
    }
    free(items);
    free(labels);
    free(feats);
    free(want);
    free(want1);
    close_golden(&g);
}

int main(void) {
    RUN(test_configs);
    RUN(test_episodes_match_torch);
    RUN(test_length1_matches_torch);
    RUN(test_partial_and_batched);
    RUN(test_bare_state_dict);
    RUN(test_heads_contradiction);
    RUN(test_config_disagrees_with_tensors);
    RUN(test_refusals);
    RUN(test_generic_api_on_seed);
    return UT_DONE();
}
