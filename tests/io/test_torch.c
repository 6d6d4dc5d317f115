/* torch.save checkpoints written by torch 1.13 (tests/reference/make_io_fixtures.py) in every
 * container the research code produced: every tensor's name, dtype, shape and float32 values
 * must be those torch reports (the .expect files), views included; configs come through as
 * metadata; legacy, corrupt and foreign files fail with messages that say why. */
#include "io/checkpoint.h"
#include "io/npy.h"
#include "io/textmat.h"
#include "metalign/model.h"
#include "io/tensorset.h"
#include "unit.h"

typedef struct expect {
    char name[128], dtype[32];
    int ndim;
    int64_t shape[ML_MAX_NDIM];
} expect;

/* "<name> <dtype> <d0>,<d1>,..." per line. */
static size_t read_expect(const char *path, expect *e, size_t cap) {
    char *text;
    size_t len, n = 0;
    ml_err err;
    if (ml_file_read(path, 1 << 20, &text, &len, &err)) {
        printf("# %s\n", err.msg);
        return 0;
    }
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && n < cap;
         line = strtok_r(NULL, "\n", &save)) {
        char dims[128] = "";
        if (sscanf(line, "%127s %31s %127s", e[n].name, e[n].dtype, dims) < 2) continue;
        e[n].ndim = 0;
        for (char *d = dims; *d && e[n].ndim < ML_MAX_NDIM;) {
            e[n].shape[e[n].ndim++] = strtoll(d, &d, 10);
            if (*d == ',') d++;
        }
        n++;
    }
    free(text);
    return n;
}

static int is_float_name(const char *dt) {
    return !strcmp(dt, "float32") || !strcmp(dt, "float64") || !strcmp(dt, "float16") ||
           !strcmp(dt, "bfloat16");
}

static char *slurp(const char *path, size_t *len) {
    char *d;
    ml_err err;
    return ml_file_read(path, 1 << 26, &d, len, &err) ? NULL : d;
}

/* Opens io/<name>.pt (from the file or from memory) and compares with its .expect files. */
static void check_ckpt(const char *name, int from_mem) {
    const char *path = FIXTUREF("io/%s.pt", name);
    const char *epath = FIXTUREF("io/%s.expect.txt", name);
    const char *npath = FIXTUREF("io/%s.expect.npy", name);
    expect e[64];
    size_t ne = read_expect(epath, e, 64);
    REQUIRE_MSG(ne > 0, "%s: no tensors expected (is %s missing?)", name, epath);
    float *vals = NULL;
    int64_t vrows = 0, vcols = 0;
    ml_err err = {""};
    CHECK_MSG(ml_npmat_read(npath, NULL, 0, &vals, &vrows, &vcols, &err) == 0, "%s", err.msg);
    ml_tensorset ts;
    char *mem = NULL;
    size_t mem_len = 0;
    int rc;
    if (from_mem) {
        mem = slurp(path, &mem_len);
        rc = mem ? ml_checkpoint_open_mem(&ts, name, mem, mem_len, &err) : -1;
    } else {
        rc = ml_checkpoint_open(&ts, path, &err);
    }
    CHECK_MSG(rc == 0, "%s: %s", name, err.msg);
    if (rc == 0) {
        CHECK(!strcmp(ts.format, "pytorch"));
        CHECK_MSG(ts.n_tensors == ne, "%s: %zu tensors registered, %zu expected", name,
                  ts.n_tensors, ne);
        int64_t at = 0;
        for (size_t i = 0; i < ne; i++) {
            const ml_tensor *t = ml_tensorset_find(&ts, e[i].name);
            CHECK_MSG(t, "%s: tensor %s is missing", name, e[i].name);
            if (!t) continue;
            CHECK_MSG(!strcmp(ml_dtype_name(t->dtype), e[i].dtype), "%s: %s is %s, not %s",
                      name, e[i].name, ml_dtype_name(t->dtype), e[i].dtype);
            int same = t->ndim == e[i].ndim;
            for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == e[i].shape[d];
            CHECK_MSG(same, "%s: %s has the wrong shape", name, e[i].name);
            if (!is_float_name(e[i].dtype) || !same) continue;
            int64_t n = ml_tensor_numel(t);
            float *got = malloc((size_t)n * sizeof *got);
            CHECK(got && at + n <= vcols);
            if (got && at + n <= vcols) {
                CHECK_MSG(ml_tensorset_read_f32(&ts, t, got, &err) == 0, "%s", err.msg);
                int64_t bad = 0;
                for (int64_t k = 0; k < n; k++) bad += got[k] != vals[at + k];
                CHECK_MSG(bad == 0, "%s: %s: %lld of %lld values differ from torch's", name,
                          e[i].name, (long long)bad, (long long)n);
            }
            free(got);
            at += n;
        }
        CHECK(at == vcols);
        ml_tensorset_free(&ts);
    }
    free(vals);
    free(mem);
}

static void test_seed_container(void) {
    check_ckpt("ckpt_seed", 0);
    check_ckpt("ckpt_seed", 1);
    ml_tensorset ts;
    ml_err err;
    REQUIRE_MSG(ml_checkpoint_open(&ts, FIXTURE("io/ckpt_seed.pt"), &err) == 0, "%s", err.msg);
    /* No config in the seed's container: the head count comes from --heads. */
    CHECK(ml_tensorset_meta(&ts, "num_attention_heads") == NULL);
    /* The optimizer's exp_avg tensors are not registered. */
    CHECK(ml_tensorset_find(&ts, "exp_avg") == NULL);
    ml_tensorset_free(&ts);
}

static void test_config_object(void) {
    check_ckpt("ckpt_config", 0);
    ml_tensorset ts;
    ml_err err;
    REQUIRE_MSG(ml_checkpoint_open(&ts, FIXTURE("io/ckpt_config.pt"), &err) == 0, "%s", err.msg);
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "num_attention_heads"), "2");
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "hidden_size"), "16");
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "bias"), "true");
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "rope"), "false");
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "hidden_act"), "gelu");
    const char *dropout = ml_tensorset_meta(&ts, "attention_dropout");
    CHECK(dropout && atof(dropout) == 0.1);
    ml_tensorset_free(&ts);
}

static void test_config_dict(void) {
    ml_tensorset ts;
    ml_err err;
    REQUIRE_MSG(ml_checkpoint_open(&ts, FIXTURE("io/ckpt_dictcfg.pt"), &err) == 0, "%s", err.msg);
    CHECK(ml_tensorset_find(&ts, "layers.1.mlp.fc2.weight") != NULL);
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "num_attention_heads"), "4");
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "lr"), "0.5");
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "name"), "seed");
    CHECK_EQ_STR(ml_tensorset_meta(&ts, "bias"), "false");
    ml_tensorset_free(&ts);
}

static void test_prefixes(void) {
    check_ckpt("ckpt_compiled", 0); /* bare state dict, _orig_mod. */
    check_ckpt("ckpt_module", 0);   /* module._orig_mod. */
}

static void test_dtypes(void) {
    check_ckpt("ckpt_f16", 0);
    check_ckpt("ckpt_bf16", 0);
    check_ckpt("ckpt_f64", 0);
}

static void test_views(void) {
    check_ckpt("ckpt_views", 0);
    ml_tensorset ts;
    ml_err err;
    REQUIRE_MSG(ml_checkpoint_open(&ts, FIXTURE("io/ckpt_views.pt"), &err) == 0, "%s", err.msg);
    const ml_tensor *q = ml_tensorset_find(&ts, "layers.0.self_attn.qkv.weight");
    const ml_tensor *a = ml_tensorset_find(&ts, "layers.0.ln1.weight");
    const ml_tensor *b = ml_tensorset_find(&ts, "layers.0.ln2.weight");
    CHECK(q && q->stride[0] == 1 && q->stride[1] == 51 && q->offset == 54);
    CHECK(a && b && a->storage == b->storage && b->offset == 4);
    ml_tensorset_free(&ts);
}

static void test_torch2_layout(void) {
    check_ckpt("ckpt_torch2", 0);
    check_ckpt("ckpt_v3", 0);
}

/* The later generation's container (tests/reference/make_metalearner_fixtures.py): a pickled
 * dataclass metalign.model.MetaLearnerConfig whose mag_std is a numpy float64, numpy scalars
 * beside the state dict, `_orig_mod.` prefixes. */
static void test_metalearner_config(void) {
    ml_tensorset ts;
    ml_err err = {""};
    CHECK_MSG(ml_checkpoint_open(&ts, FIXTURE("model/ml_tf_mlp2.pt"), &err) == 0, "%s", err.msg);
    if (!ts.tensors) return;
    const char *cls = ml_tensorset_meta(&ts, "__class__");
    CHECK(cls && !strcmp(cls, "metalign.model.MetaLearnerConfig"));
    const char *ms = ml_tensorset_meta(&ts, "mag_std"), *mt = ml_tensorset_meta(&ts, "model_type");
    CHECK(ms && atof(ms) == 1.3);
    CHECK(mt && !strcmp(mt, "transformer"));
    CHECK(ml_tensorset_meta(&ts, "n_heads") && !strcmp(ml_tensorset_meta(&ts, "n_heads"), "2"));
    CHECK(ml_tensorset_meta(&ts, "use_mlp") && !strcmp(ml_tensorset_meta(&ts, "use_mlp"), "true"));
    CHECK(ml_tensorset_find(&ts, "embed.weight") != NULL);
    CHECK(ml_tensorset_find(&ts, "_orig_mod.embed.weight") == NULL);
    const ml_tensor *t = ml_tensorset_find(&ts, "mag_std");
    CHECK(t && t->ndim == 0 && ml_tensor_numel(t) == 1);
    ml_tensorset_free(&ts);
}

static void test_later_generation(void) {
    /* Loads: the weight binding, not the reader, decides it is not the seed's architecture. */
    check_ckpt("ckpt_latergen", 0);
}

static void expect_error(const char *file, const char *msg1, const char *msg2) {
    ml_tensorset ts;
    ml_err err = {""};
    char path[512];
    snprintf(path, sizeof path, "%s%s", FIXTURE("io/"), file);
    int rc = ml_checkpoint_open(&ts, path, &err);
    CHECK_MSG(rc != 0, "%s opened", file);
    if (rc == 0) ml_tensorset_free(&ts);
    CHECK_STR_CONTAINS(err.msg, file);
    CHECK_STR_CONTAINS(err.msg, msg1);
    if (msg2) CHECK_STR_CONTAINS(err.msg, msg2);
    /* The same bytes from memory fail the same way, never crashing on any prefix. */
    size_t len;
    char *mem = slurp(path, &len);
    REQUIRE_MSG(mem != NULL, "cannot read %s", path);
    for (size_t n = 0; n <= len; n += n + 64 < len ? 37 : 1) {
        if (ml_checkpoint_open_mem(&ts, file, mem, n, &err) == 0) ml_tensorset_free(&ts);
    }
    free(mem);
}

static void test_errors(void) {
    expect_error("ckpt_legacy.pt", "legacy", "torch.save");
    expect_error("ckpt_bigendian.pt", "big-endian", "best/byteorder");
    expect_error("ckpt_notensors.pt", "no tensors", "epoch, note");
    expect_error("ckpt_module_object.pt", "metalign_ref.Transformer", "state_dict()");
    expect_error("ckpt_bad_view.pt", "tensor w", "outside its storage");
    expect_error("ckpt_bad_size.pt", "archive/data/0", "has 40 bytes");
    expect_error("ckpt_missing_storage.pt", "archive/data/7", "missing");
    expect_error("ckpt_qtensor.pt", "_rebuild_qtensor", "not supported");
    expect_error("ckpt_torchscript.pt", "TorchScript", NULL);
    expect_error("ckpt_two_pickles.pt", "two pickles", NULL);
    expect_error("npz_stored.npz", ".npz", NULL);
}

static void test_truncated_checkpoint(void) {
    /* Every prefix of a real checkpoint: an error or (for none) a load, never a crash. */
    size_t len;
    char *mem = slurp(FIXTURE("io/ckpt_config.pt"), &len);
    REQUIRE_MSG(mem != NULL, "cannot read %s", FIXTURE("io/ckpt_config.pt"));
    int opened = 0;
    for (size_t n = 0; mem && n < len; n += 97) {
        ml_tensorset ts;
        ml_err err;
        if (ml_checkpoint_open_mem(&ts, "x", mem, n, &err) == 0) {
            opened++;
            ml_tensorset_free(&ts);
        }
    }
    CHECK(opened == 0);
    free(mem);
}

/* Loads io/<name>.pt as a model and runs PyTorch's inputs through it: the logits and every
 * layer output must be PyTorch's (io/<name>.forward.npy: [x | logit | embedding | layer_i]). */
static void check_forward(const char *name, int heads_hint, int expect_heads) {
    const char *path = FIXTUREF("io/%s.pt", name);
    const char *fpath = FIXTUREF("io/%s.forward.npy", name);
    ml_model m;
    ml_err err = {""};
    REQUIRE_MSG(ml_model_load(&m, path, heads_hint, &err) == 0, "%s: %s", name, err.msg);
    CHECK(!strcmp(m.format, "pytorch") && m.cfg.num_heads == expect_heads);
    float *ref = NULL;
    int64_t rows = 0, cols = 0;
    CHECK(ml_npmat_read(fpath, NULL, 0, &ref, &rows, &cols, &err) == 0);
    int B = 2, S = 5, In = m.cfg.input_size, C = m.cfg.hidden_size;
    int n_out = ml_model_num_outputs(&m);
    CHECK(rows == B * S && cols == In + 1 + (int64_t)n_out * C);
    ml_workspace *ws = ml_workspace_new(&m, B * S, S, &err);
    CHECK(ws != NULL);
    if (ref && ws && rows == B * S && cols == In + 1 + (int64_t)n_out * C) {
        float *inp = malloc(sizeof(float) * (size_t)(B * S * In));
        float *logits = malloc(sizeof(float) * (size_t)(B * S));
        float *outs_mem = malloc(sizeof(float) * (size_t)(n_out * B * S * C));
        float *outs[ML_MAX_LAYERS + 1];
        for (int o = 0; o < n_out; o++) outs[o] = outs_mem + (size_t)o * (size_t)(B * S * C);
        for (int r = 0; r < B * S; r++)
            memcpy(inp + (size_t)r * In, ref + (size_t)r * (size_t)cols, sizeof(float) * (size_t)In);
        CHECK_MSG(ml_forward(&m, ws, inp, B, S, outs, logits, &err) == 0, "%s", err.msg);
        /* Any NaN or infinity on either side fails, as does a difference over 1e-4. */
        int close = 1;
        for (int r = 0; r < B * S; r++) {
            const float *row = ref + (size_t)r * (size_t)cols;
            CHECK_NEAR(logits[r], row[In], 1e-4, 1e-5);
            for (int o = 0; o < n_out; o++) {
                char label[96];
                snprintf(label, sizeof label, "%s: row %d, output %d", name, r, o);
                close &= CHECK_ARRAY_NEAR_AS(label, outs[o] + (size_t)r * C, row + In + 1 + o * C,
                                             C, 0, 1e-4, 0);
            }
        }
        CHECK_MSG(close, "%s: layer outputs differ from PyTorch's", name);
        free(inp);
        free(logits);
        free(outs_mem);
    }
    ml_workspace_free(ws);
    free(ref);
    ml_model_free(&m);
}

static void test_forward_matches_pytorch(void) {
    check_forward("ckpt_seed", 4, 4);   /* no config: the operator's --heads */
    check_forward("ckpt_config", 0, 2); /* the pickled config's head count */
    check_forward("ckpt_config", 2, 2); /* and a --heads that agrees with it */
    check_forward("ckpt_views", 4, 4);
    check_forward("ckpt_torch2", 4, 4);
    ml_model m;
    ml_err err = {""};
    /* a --heads that contradicts the pickled config is refused, naming both */
    CHECK(ml_model_load(&m, FIXTURE("io/ckpt_config.pt"), 7, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "--heads 7");
    CHECK_STR_CONTAINS(err.msg, "num_attention_heads=2");
    /* read as the later generation; its embed.weight does not fit its ln_f */
    CHECK(ml_model_load(&m, FIXTURE("io/ckpt_latergen.pt"), 4, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "later-generation");
    CHECK_STR_CONTAINS(err.msg, "embed.weight");
}

int main(void) {
    RUN(test_seed_container);
    RUN(test_config_object);
    RUN(test_config_dict);
    RUN(test_prefixes);
    RUN(test_dtypes);
    RUN(test_views);
    RUN(test_torch2_layout);
    RUN(test_later_generation);
    RUN(test_metalearner_config);
    RUN(test_errors);
    RUN(test_truncated_checkpoint);
    RUN(test_forward_matches_pytorch);
    return UT_DONE();
}
