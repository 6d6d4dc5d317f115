/* Start-up: flags, --check, and every way a bad file must stop the daemon with a message that
 * names the file and the problem (and a non-zero exit), never a crash. */
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon.h"
#include "h5build.h"
#include "unit.h"

#define DEMO ML_SOURCE_ROOT "/data/demo/"

static char dir[] = "/tmp/metalign-startup-XXXXXX";
static char out[65536];

static char *path_in(const char *name) {
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len + 1);
    if (b && fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

/* Runs with the demo bundle, one of its files replaced by path (NULL keeps it). */
static int run_demo(const char *flag, const char *path, const char *extra) {
    const char *args[16];
    int n = 0;
    const char *flags[] = {"--checkpoint", "--backbone", "--targets", "--item-ids"};
    const char *files[] = {DEMO "model.safetensors", DEMO "backbone.npy", DEMO "targets.txt",
                           DEMO "unique_id.txt"};
    for (int i = 0; i < 4; i++) {
        args[n++] = flags[i];
        args[n++] = flag && !strcmp(flag, flags[i]) ? path : files[i];
    }
    args[n++] = "--cache-dir";
    args[n++] = path_in("cache");
    if (extra) args[n++] = extra;
    args[n] = NULL;
    return daemon_run(args, out, sizeof out);
}

static void test_version_help(void) {
    const char *v[] = {"--version", NULL};
    CHECK(daemon_run(v, out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "metalignd ");
    const char *h[] = {"--help", NULL};
    CHECK(daemon_run(h, out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "--things-images");
}

/* The OpenBLAS re-exec says so on stderr, and --help and --version skip it. */
static void test_blas_restart_is_announced(void) {
    unsetenv("METALIGN_KEEP_BLAS_CORE");
    unsetenv("OPENBLAS_THREAD_TIMEOUT");
    const char *check[] = {"--config", demo_config(), "--check", NULL};
    CHECK(daemon_run(check, out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "restarting itself with");
    CHECK_STR_CONTAINS(out, "OPENBLAS_THREAD_TIMEOUT=4");
    const char *help[] = {"--help", NULL};
    CHECK(daemon_run(help, out, sizeof out) == 0);
    CHECK(!strstr(out, "restarting itself"));
    CHECK_STR_CONTAINS(out, "--max-connections-per-ip");
    CHECK_STR_CONTAINS(out, "--shutdown-grace");
    const char *version[] = {"--version", NULL};
    CHECK(daemon_run(version, out, sizeof out) == 0);
    CHECK(!strstr(out, "restarting itself"));
}

static void test_usage_errors(void) {
    const char *none[] = {NULL};
    CHECK(daemon_run(none, out, sizeof out) == 2);
    CHECK_STR_CONTAINS(out, "no --checkpoint given");
    const char *bogus[] = {"--bogus", NULL};
    CHECK(daemon_run(bogus, out, sizeof out) == 2);
    CHECK_STR_CONTAINS(out, "unknown option --bogus");
    const char *cfg = path_in("bad.json");
    spit(cfg, "{\"checkpiont\": \"x\"}", 19);
    const char *bad[] = {"--config", cfg, NULL};
    CHECK(daemon_run(bad, out, sizeof out) == 2);
    CHECK_STR_CONTAINS(out, "unknown key \"checkpiont\"");
}

static void test_check_demo(void) {
    const char *args[] = {"--config", demo_config(), "--check", NULL};
    CHECK(daemon_run(args, out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "variant rope");
    CHECK_STR_CONTAINS(out, "SYNTHETIC");
    CHECK_STR_CONTAINS(out, "items");
    CHECK_STR_CONTAINS(out, "check: ok");
}

static void test_missing_file(void) {
    const char *missing = path_in("nope.safetensors");
    CHECK(run_demo("--checkpoint", missing, NULL) == 1);
    CHECK_STR_CONTAINS(out, missing);
    CHECK_STR_CONTAINS(out, "No such file");
    CHECK(run_demo("--targets", path_in("nope.txt"), NULL) == 1);
    CHECK_STR_CONTAINS(out, "nope.txt");
}

static void test_truncated_safetensors(void) {
    size_t len = 0;
    unsigned char *m = slurp(DEMO "model.safetensors", &len);
    CHECK(m != NULL);
    if (!m) return;
    const char *cut = path_in("cut.safetensors");
    size_t lens[] = {4, 8 + 10, len / 2, len - 1};
    for (int i = 0; i < 4; i++) {
        spit(cut, m, lens[i]);
        int rc = run_demo("--checkpoint", cut, "--check");
        CHECK_MSG(rc == 1, "truncated to %zu bytes: exit %d: %s", lens[i], rc, out);
        CHECK_STR_CONTAINS(out, "cut.safetensors");
    }
    free(m);
}

/* Rewrites the safetensors header with one tensor's shape changed (same byte count). */
static void test_misshaped_tensor(void) {
    size_t len = 0;
    unsigned char *m = slurp(DEMO "model.safetensors", &len);
    if (!m) {
        CHECK(m != NULL);
        return;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | m[i];
    json_t *hdr = json_loadb((const char *)m + 8, (size_t)n, 0, NULL);
    json_t *t = json_object_get(hdr, "layers.0.mlp.fc1.weight");
    CHECK(t != NULL);
    json_t *shape = json_object_get(t, "shape");
    json_int_t a = json_integer_value(json_array_get(shape, 0)),
               b = json_integer_value(json_array_get(shape, 1));
    json_object_set_new(t, "shape", json_pack("[I,I]", b, a)); /* (I, C) -> (C, I) */
    char *text = json_dumps(hdr, JSON_COMPACT);
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    unsigned char *o = malloc(8 + padded + (len - 8 - n));
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)(padded >> (8 * i));
    memset(o + 8, ' ', padded);
    memcpy(o + 8, text, tl);
    memcpy(o + 8 + padded, m + 8 + n, len - 8 - n);
    const char *bad = path_in("misshaped.safetensors");
    spit(bad, o, 8 + padded + (len - 8 - n));
    CHECK(run_demo("--checkpoint", bad, "--check") == 1);
    CHECK_STR_CONTAINS(out, "misshaped.safetensors");
    CHECK_STR_CONTAINS(out, "layers.0.mlp.fc1.weight");
    free(text);
    free(o);
    free(m);
    json_decref(hdr);
}

static void test_backbone_width_mismatch(void) {
    /* a valid .npy with one feature column too many for the model */
    size_t len = 0;
    unsigned char *ids = slurp(DEMO "unique_id.txt", &len);
    int rows = 0;
    for (size_t i = 0; ids && i < len; i++) rows += ids[i] == '\n';
    free(ids);
    int cols = 7;
    char header[128];
    int hl = snprintf(header, sizeof header,
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols);
    size_t total = 10 + (size_t)hl + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)hl + pad + 1;
    size_t bytes = 10 + hlen + sizeof(float) * (size_t)rows * (size_t)cols;
    unsigned char *npy = calloc(1, bytes);
    memcpy(npy, "\x93NUMPY\x01\x00", 8);
    npy[8] = (unsigned char)(hlen & 0xff);
    npy[9] = (unsigned char)(hlen >> 8);
    memset(npy + 10, ' ', hlen);
    memcpy(npy + 10, header, (size_t)hl);
    npy[10 + hlen - 1] = '\n';
    const char *bad = path_in("narrow.npy");
    spit(bad, npy, bytes);
    free(npy);
    CHECK(run_demo("--backbone", bad, "--check") == 1);
    CHECK_STR_CONTAINS(out, "narrow.npy");
    CHECK_STR_CONTAINS(out, "7 feature columns");
}

static void test_ids_count_mismatch(void) {
    size_t len = 0;
    unsigned char *ids = slurp(DEMO "unique_id.txt", &len);
    if (!ids) {
        CHECK(ids != NULL);
        return;
    }
    size_t cut = len - 1;
    while (cut > 0 && ids[cut - 1] != '\n') cut--; /* drop the last line */
    const char *bad = path_in("short_ids.txt");
    spit(bad, ids, cut);
    free(ids);
    CHECK(run_demo("--item-ids", bad, "--check") == 1);
    CHECK_STR_CONTAINS(out, "short_ids.txt");
}

/* An aligned HDF5 backbone of D features for aligned_ids.txt's 7 ids, in the test folder. */
static const char *h5_backbone(const char *name, int D) {
    const char *path = path_in(name);
    void *buf = NULL;
    size_t len = 0;
    hid_t f = h5b_new();
    CHECK(f >= 0 && h5b_floats(f, "representations", 2, 7, (hsize_t)D, 0) == 0);
    CHECK(f >= 0 && h5b_image(f, &buf, &len) == 0);
    if (buf) spit(path, buf, len);
    free(buf);
    return path;
}

static int run_later(const char *model, const char *backbone, const char *x1, const char *x2,
                     const char *x3) {
    const char *args[] = {"--checkpoint", model, "--backbone", backbone,
                          "--targets", ML_SOURCE_ROOT "/tests/fixtures/data/aligned_targets.npy",
                          "--item-ids", ML_SOURCE_ROOT "/tests/fixtures/data/aligned_ids.txt",
                          "--cache-dir", path_in("cache"), x1, x2, x3, NULL};
    return daemon_run(args, out, sizeof out);
}

/* The later generation (MODEL.md section 7): --check reads MetaLearnerConfig checkpoints
 * with HDF5 backbones and prints what their config governs (test_http_metalearner.c serves
 * them); a --heads that contradicts the config, or a backbone of the wrong width, stops the
 * daemon naming both. */
static void test_check_later_generation(void) {
    const char *tf1 = ML_SOURCE_ROOT "/tests/fixtures/model/ml_tf1.pt";
    const char *bb32 = h5_backbone("tf1_backbone.h5", 32);
    CHECK(run_later(tf1, bb32, "--check", NULL, NULL) == 0);
    CHECK_STR_CONTAINS(out, "generation metalearner, type transformer, heads 4 (checkpoint), "
                            "layers 1, MLP no, sl 24, mag_std 0.5");
    CHECK_STR_CONTAINS(out, "width 32, embed, heads of width 1");
    CHECK_STR_CONTAINS(out, "backbone 32 features (");
    CHECK_STR_CONTAINS(out, "tf1_backbone.h5");
    CHECK_STR_CONTAINS(out, "check: ok");
    CHECK(run_later(tf1, bb32, "--heads", "4", "--check") == 0);
    CHECK(run_later(tf1, bb32, "--heads", "8", "--check") == 1);
    CHECK_STR_CONTAINS(out, "--heads 8 contradicts the checkpoint");
    CHECK_STR_CONTAINS(out, "n_heads=4");
    CHECK(run_later(tf1, h5_backbone("narrow.h5", 31), "--check", NULL, NULL) == 1);
    CHECK_STR_CONTAINS(out, "expects 32 backbone features");
    CHECK(run_later(ML_SOURCE_ROOT "/tests/fixtures/model/ml_lstm2.pt",
                    h5_backbone("lstm_backbone.h5", 20), "--check", NULL, NULL) == 0);
    CHECK_STR_CONTAINS(out, "type lstm, heads n/a, layers 2, MLP no, sl 12, mag_std 0.7");
    CHECK(run_later(ML_SOURCE_ROOT "/tests/fixtures/model/ml_tf_mlp2.pt",
                    h5_backbone("mlp_backbone.h5", 24), "--check", NULL, NULL) == 0);
    CHECK_STR_CONTAINS(out, "heads 2 (checkpoint), layers 2, MLP yes (width 40), sl 24, "
                            "mag_std 1.3");
    CHECK(run_later(ML_SOURCE_ROOT "/tests/fixtures/model/ml_static.pt",
                    h5_backbone("static_backbone.h5", 16), "--check", NULL, NULL) == 0);
    CHECK_STR_CONTAINS(out, "type static_linear, heads n/a, layers 0");
    CHECK_STR_CONTAINS(out, "width 16, proj, heads of width 3");
}

static void test_port_in_use(void) {
    test_daemon first;
    const char *args[] = {"--config", demo_config(), "--cache-dir", path_in("cache"), NULL};
    CHECK(daemon_start(&first, args) == 0);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", first.port);
    const char *again[] = {"--config", demo_config(), "--listen", listen, "--cache-dir",
                           path_in("cache"), NULL};
    CHECK(daemon_run(again, out, sizeof out) == 1);
    CHECK_STR_CONTAINS(out, listen);
    CHECK(daemon_stop(&first, SIGINT) == 0);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    RUN(test_version_help);
    RUN(test_blas_restart_is_announced);
    RUN(test_usage_errors);
    RUN(test_check_demo);
    RUN(test_missing_file);
    RUN(test_truncated_safetensors);
    RUN(test_misshaped_tensor);
    RUN(test_backbone_width_mismatch);
    RUN(test_ids_count_mismatch);
    RUN(test_check_later_generation);
    RUN(test_port_in_use);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return UT_DONE();
}
