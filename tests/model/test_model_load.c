/* Loading checkpoints: variant detection on a tiny model, and every way a checkpoint can be
 * wrong or foreign, each with a message that names the file and the tensor (fixtures from
 * tests/reference/make_model_fixtures.py). */
#include <jansson.h>
#include <stdint.h>
#include <fcntl.h>
#include <unistd.h>

#include "metalign/model.h"
#include "unit.h"

#define ERRF(name) FIXTURE("model/err_" name ".safetensors")

static void expect_load_error(const char *path, int heads, const char *needle1,
                              const char *needle2) {
    ml_model m;
    ml_err err = {{0}};
    CHECK_MSG(ml_model_load(&m, path, heads, &err) == -1, "%s loaded", path);
    CHECK_STR_CONTAINS(err.msg, path);
    CHECK_STR_CONTAINS(err.msg, needle1);
    if (needle2) CHECK_STR_CONTAINS(err.msg, needle2);
    CHECK(m.params_memory == NULL);
}

static void test_tiny_model_config(void) {
    ml_model m;
    ml_err err = {{0}};
    CHECK_MSG(ml_model_load(&m, ERRF("ok"), 0, &err) == 0, "%s", err.msg);
    const ml_model_config *c = &m.cfg;
    CHECK(c->input_size == 6 && c->hidden_size == 8 && c->num_heads == 2);
    CHECK(c->intermediate_size == 12 && c->num_layers == 2 && c->embedding == 1);
    CHECK(c->bias == 0 && c->logit_bias == 1 && c->pos == ML_POS_ROPE && c->max_seq_len == 0);
    /* emb 8*6, per layer 4*8 + 24*8 + 8*8 + 12*8 + 8*12, final 2*8, head 8 + 1 */
    CHECK(m.num_params == 48 + 2 * (32 + 192 + 64 + 96 + 96) + 16 + 9);
    CHECK(m.params.emb_b == NULL && m.params.qkv_b == NULL && m.params.pos == NULL);
    CHECK(m.params.head_b != NULL);
    CHECK(m.params.emb_w == m.params_memory);
    CHECK(m.params.head_b == m.params_memory + m.num_params - 1);
    /* the label columns are Wemb[:, 0] and Wemb[:, 1] */
    for (int c2 = 0; c2 < 8; c2++) {
        CHECK(m.label_emb[c2] == m.params.emb_w[c2 * 6]);
        CHECK(m.label_emb[8 + c2] == m.params.emb_w[c2 * 6 + 1]);
    }
    CHECK_STR_CONTAINS(m.format, "safetensors");
    CHECK_STR_CONTAINS(m.path, "err_ok.safetensors");
    CHECK(m.synthetic == 0);
    char buf[32];
    CHECK(ml_model_num_outputs(&m) == 3);
    CHECK_STR_CONTAINS(ml_model_output_name(&m, 0, buf, sizeof buf), "embedding");
    CHECK(strcmp(ml_model_output_name(&m, 2, buf, sizeof buf), "layer_1") == 0);
    CHECK(ml_model_output_index(&m, "embedding") == 0);
    CHECK(ml_model_output_index(&m, "layer_1") == 2);
    CHECK(ml_model_output_index(&m, "layer_2") == -1);
    CHECK(ml_model_output_index(&m, "layer_01") == -1);
    CHECK(ml_model_output_index(&m, "") == -1);
    CHECK(strcmp(ml_posenc_name(ML_POS_ROPE), "rope") == 0);
    CHECK(strcmp(ml_posenc_name(ML_POS_LEARNED), "learned_positions") == 0);
    ml_model_free(&m);
    ml_model_free(&m); /* idempotent */
}

static void test_heads(void) {
    ml_model m;
    ml_err err = {{0}};
    /* the file records 2 heads: a --heads that agrees is fine, one that contradicts it is
     * refused naming both counts */
    CHECK_MSG(ml_model_load(&m, ERRF("ok"), 2, &err) == 0, "%s", err.msg);
    CHECK(m.cfg.num_heads == 2 && !strcmp(m.heads_source, "checkpoint"));
    ml_model_free(&m);
    expect_load_error(ERRF("ok"), 4, "--heads 4", "num_attention_heads=2");
    /* no count in the file and no --heads: the default 12, which does not divide 8 */
    expect_load_error(ERRF("ok_noheads"), 0, "12 attention heads", "--heads");
    CHECK_MSG(ml_model_load(&m, ERRF("ok_noheads"), 4, &err) == 0, "%s", err.msg);
    CHECK(m.cfg.num_heads == 4 && !strcmp(m.heads_source, "--heads"));
    CHECK(m.synthetic == 1);
    ml_model_free(&m);
    expect_load_error(ERRF("ok_noheads"), 3, "multiple", "3");
    expect_load_error(ERRF("ok_noheads"), 8, "even head size", NULL);
    expect_load_error(ERRF("heads5"), 0, "multiple", "5");
    expect_load_error(ERRF("heads_bad"), 2, "num_attention_heads", "twelve");
}

static void test_broken_checkpoints(void) {
    expect_load_error(ERRF("missing"), 0, "layers.1.mlp.fc2.weight", "missing");
    expect_load_error(ERRF("shape"), 0, "layers.0.ln2.weight", "(9)");
    expect_load_error(ERRF("shape"), 0, "(8)", "expected");
    expect_load_error(ERRF("partial_bias"), 0, "layers.1.mlp.fc1.bias",
                      "layers.0.self_attn.qkv.bias");
    expect_load_error(ERRF("layer_gap"), 0, "layers.1", "missing");
    expect_load_error(ERRF("unknown"), 0, "layers.0.self_attn.mask", "not part of");
    /* a later-generation checkpoint is read as one; this one is incomplete (embed.weight
     * should be (8, 9)) and has no head count */
    expect_load_error(ERRF("later_generation"), 0, "later-generation", "12 attention heads");
    expect_load_error(ERRF("later_generation"), 2, "later-generation", "embed.weight");
    expect_load_error(ERRF("later_generation"), 2, "(8, 3)", "(8, 9)");
    expect_load_error(FIXTURE("model/nonexistent.safetensors"), 2, "cannot open", NULL);
}

/* A file cut short: the tensors past the cut are named. */
static void test_truncated_file(void) {
    FILE *f = fopen(ERRF("ok"), "rb");
    CHECK(f != NULL);
    if (!f) return;
    unsigned char buf[1 << 14];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char path[] = "/tmp/metalign-trunc-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, buf, n - 100) == (ssize_t)(n - 100));
    close(fd);
    ml_model m;
    ml_err err = {{0}};
    CHECK(ml_model_load(&m, path, 0, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, path);
    CHECK_STR_CONTAINS(err.msg, "truncated");
    CHECK_STR_CONTAINS(err.msg, "tensor ");
    /* and a corrupt header */
    buf[8] = 'x';
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0 && write(fd, buf, n) == (ssize_t)n);
    close(fd);
    CHECK(ml_model_load(&m, path, 0, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, path);
    CHECK_STR_CONTAINS(err.msg, "not valid JSON");
    unlink(path);
}

/* err_ok.safetensors with one more metadata field (key = value) in a temporary folder: a
 * config that contradicts the tensors is refused naming both (n1 NULL: it agrees, and
 * loads). */
static void expect_config_refused(const char *key, const char *value, const char *n1,
                                  const char *n2) {
    FILE *f = fopen(ERRF("ok"), "rb");
    unsigned char buf[1 << 14];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    json_t *hdr = n > 8 && hl < n - 8 ? json_loadb((const char *)buf + 8, hl, 0, NULL) : NULL;
    CHECK(hdr != NULL);
    if (!hdr) return;
    json_object_set_new(json_object_get(hdr, "__metadata__"), key, json_string(value));
    char *text = json_dumps(hdr, JSON_COMPACT);
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    char dir[] = "/tmp/metalign-cfg-XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/cfg.safetensors", dir);
    f = fopen(path, "wb");
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(padded >> (8 * i));
    if (f) {
        fwrite(len8, 1, 8, f);
        fwrite(text, 1, tl, f);
        for (size_t i = tl; i < padded; i++) fputc(' ', f);
        fwrite(buf + 8 + hl, 1, n - 8 - hl, f);
        fclose(f);
    }
    if (n1) {
        expect_load_error(path, 0, n1, n2);
    } else {
        ml_model m;
        ml_err err = {{0}};
        CHECK_MSG(ml_model_load(&m, path, 0, &err) == 0, "%s=%s: %s", key, value, err.msg);
        ml_model_free(&m);
    }
    unlink(path);
    rmdir(dir);
    free(text);
    json_decref(hdr);
}

static void test_config_contradicts_tensors(void) {
    expect_config_refused("num_layers", "3", "num_layers=3", "tensors say 2");
    expect_config_refused("hidden_size", "16", "hidden_size=16", "tensors say 8");
    expect_config_refused("intermediate_size", "13", "intermediate_size=13", "say 12");
    expect_config_refused("bias", "true", "bias=true", "tensors say 0");
    expect_config_refused("embedding", "false", "embedding=false", "tensors say 1");
    expect_config_refused("input_size", "7", "input_size=7", "tensors say 6");
    /* agreeing fields load; a RoPE checkpoint's sequence_length bounds nothing */
    expect_config_refused("num_layers", "2", NULL, NULL);
    expect_config_refused("bias", "false", NULL, NULL);
    expect_config_refused("sequence_length", "3", NULL, NULL);
}

static void load_params(const char *path, ml_model *m) {
    ml_err err = {{0}};
    CHECK_MSG(ml_model_load(m, path, 0, &err) == 0, "%s", err.msg);
}

/* `_orig_mod.` / `module.` prefixes change nothing; bf16 weights are torch's bf16 -> f32. */
static void test_prefixes_and_bf16(void) {
    ml_model a, b;
    load_params(ERRF("ok"), &a);
    load_params(ERRF("prefixed"), &b);
    CHECK(a.num_params == b.num_params && a.num_params > 0);
    if (a.params_memory && b.params_memory)
        CHECK(memcmp(a.params_memory, b.params_memory, sizeof(float) * a.num_params) == 0);
    ml_model_free(&a);
    ml_model_free(&b);
    load_params(ERRF("bf16"), &a);
    load_params(ERRF("bf16.as_f32"), &b);
    CHECK(a.num_params == b.num_params && a.num_params > 0);
    if (a.params_memory && b.params_memory)
        CHECK(memcmp(a.params_memory, b.params_memory, sizeof(float) * a.num_params) == 0);
    ml_model_free(&a);
    ml_model_free(&b);
}

int main(void) {
    RUN(test_tiny_model_config);
    RUN(test_heads);
    RUN(test_broken_checkpoints);
    RUN(test_config_contradicts_tensors);
    RUN(test_truncated_file);
    RUN(test_prefixes_and_bf16);
    return UT_DONE();
}
