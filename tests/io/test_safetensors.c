/* The tensor set and its safetensors parser: header validation (each bad header gets a message
 * naming the file and tensor), dtype conversion against torch's own (fixture written by
 * tests/reference/make_model_fixtures.py), strided views, zip storages, source detection. */
#include <stdint.h>
#include <unistd.h>
#include <zip.h>

#include "io/checkpoint.h"
#include "io/tensorset_build.h"
#include "unit.h"

/* Builds a safetensors buffer from a JSON header and data bytes (header padded to 8). */
static unsigned char *make_st(const char *header, const void *data, size_t data_len,
                              size_t *len) {
    size_t n = strlen(header), padded = (n + 7) / 8 * 8;
    *len = 8 + padded + data_len;
    unsigned char *buf = malloc(*len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, header, n);
    memset(buf + 8 + n, ' ', padded - n);
    if (data_len) memcpy(buf + 8 + padded, data, data_len);
    return buf;
}

static const float data6[6] = {1, 2, 3, 4, 5, 6};

static void test_parse_and_read(void) {
    const char *h = "{\"__metadata__\":{\"num_attention_heads\":\"12\",\"format\":\"pt\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                    "\"module.b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                    "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[24,24]}}";
    size_t len;
    unsigned char *buf = make_st(h, data6, sizeof data6, &len);
    ml_tensorset ts;
    ml_err err = {{0}};
    CHECK_MSG(ml_checkpoint_open_mem(&ts, "mem.safetensors", buf, len, &err) == 0, "%s", err.msg);
    CHECK_STR_CONTAINS(ts.format, "safetensors");
    CHECK(ts.n_tensors == 3);
    CHECK_STR_CONTAINS(ml_tensorset_meta(&ts, "num_attention_heads"), "12");
    CHECK(ml_tensorset_meta(&ts, "nope") == NULL);
    const ml_tensor *a = ml_tensorset_find(&ts, "a"), *b = ml_tensorset_find(&ts, "b");
    CHECK(a && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 2 && a->dtype == ML_F32);
    CHECK_MSG(b != NULL, "prefix module. is stripped");
    float out[4] = {0};
    if (a) {
        CHECK(ml_tensorset_read_f32(&ts, a, out, &err) == 0);
        CHECK(out[0] == 1 && out[3] == 4);
    }
    if (b) {
        CHECK(ml_tensorset_read_f32(&ts, b, out, &err) == 0);
        CHECK(out[0] == 5 && out[1] == 6);
    }
    const ml_tensor *e = ml_tensorset_find(&ts, "empty");
    CHECK(e && ml_tensor_numel(e) == 0 && ml_tensorset_read_f32(&ts, e, out, &err) == 0);
    ml_tensorset_free(&ts);
    free(buf);
}

/* Opens a header that must fail; the message must contain each needle. */
static void expect_fail(const char *header, const void *data, size_t data_len,
                        const char *needle1, const char *needle2) {
    size_t len;
    unsigned char *buf = make_st(header, data, data_len, &len);
    ml_tensorset ts;
    ml_err err = {{0}};
    CHECK_MSG(ml_checkpoint_open_mem(&ts, "bad.safetensors", buf, len, &err) == -1,
              "accepted: %s", header);
    CHECK_STR_CONTAINS(err.msg, "bad.safetensors");
    CHECK_STR_CONTAINS(err.msg, needle1);
    if (needle2) CHECK_STR_CONTAINS(err.msg, needle2);
    free(buf);
}

static void test_header_errors(void) {
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", data6, 8,
                "w", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,4]}}", data6, 8,
                "w", "outside");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data6, 8,
                "w", "need 12");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", data6, 8,
                "w", "shape[0]");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
                "\"data_offsets\":[0,8]}}", data6, 8, "w", "too large");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                "\"data_offsets\":[0,8]}}", data6, 8, "w", "need");
    expect_fail("{\"w\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", data6, 8,
                "w", "unsupported dtype");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", data6, 8, "w", "data_offsets");
    expect_fail("{\"w\":[1,2]}", data6, 8, "w", "not a JSON object");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                "\"data_offsets\":[0,4]}}", data6, 8, "w", "dimensions");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data6, 8,
                "not valid JSON", "duplicate");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"module.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data6, 8,
                "w", "twice");
    expect_fail("{\"w\": {\"dtype\": \"F32\", ", data6, 8, "not valid JSON", NULL);
    expect_fail("[1, 2, 3]", data6, 8, "not a JSON object", NULL);
    expect_fail("{\"__metadata__\":{\"k\":3}}", NULL, 0, "__metadata__.k", "string");
}

static void test_truncated_and_foreign(void) {
    ml_tensorset ts;
    ml_err err = {{0}};
    size_t len;
    unsigned char *buf = make_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[6],"
                                 "\"data_offsets\":[0,24]}}", data6, sizeof data6, &len);
    /* Cut anywhere: in the length, the header, or the data. */
    for (size_t cut = 0; cut < len; cut += 3) {
        CHECK_MSG(ml_checkpoint_open_mem(&ts, "cut.safetensors", buf, cut, &err) == -1,
                  "accepted a file cut at %zu of %zu bytes", cut, len);
        CHECK_STR_CONTAINS(err.msg, "cut.safetensors");
    }
    /* A header length beyond 100 MB, and one beyond the file. */
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = 0;
    buf[3] = 0x10;
    CHECK(ml_checkpoint_open_mem(&ts, "huge.safetensors", buf, len, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "100 MB");
    buf[3] = 0;
    buf[0] = 0xf8;
    CHECK(ml_checkpoint_open_mem(&ts, "long.safetensors", buf, len, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "rest of the file");
    free(buf);

    static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                           0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, 0x80};
    CHECK(ml_checkpoint_open_mem(&ts, "old.pt", legacy, sizeof legacy, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "old.pt");
    CHECK_STR_CONTAINS(err.msg, "legacy");
    CHECK_STR_CONTAINS(err.msg, "torch.save");

    static const unsigned char notzip[] = "PK\x03\x04 this is not really a zip archive";
    CHECK(ml_checkpoint_open_mem(&ts, "broken.pt", notzip, sizeof notzip, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "broken.pt");
    CHECK_STR_CONTAINS(err.msg, "zip");

    CHECK(ml_checkpoint_open(&ts, "/nonexistent/model.safetensors", &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/model.safetensors");
    CHECK(ml_checkpoint_open(&ts, "/", &err) == -1);
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* f16, bf16 and f64 read as float32 equal torch's .float() bit for bit (NaNs included). */
static void test_dtype_conversion_matches_torch(void) {
    ml_tensorset ts;
    ml_err err = {{0}};
    if (ml_checkpoint_open(&ts, FIXTURE("model/dtypes.safetensors"), &err) != 0) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    const char *names[] = {"f16", "bf16", "f64", "f16_2d"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char ref[32];
        snprintf(ref, sizeof ref, "%s.as_f32", names[k]);
        const ml_tensor *t = ml_tensorset_find(&ts, names[k]), *r = ml_tensorset_find(&ts, ref);
        CHECK(t && r && ml_tensor_numel(t) == ml_tensor_numel(r) && r->dtype == ML_F32);
        if (!t || !r) continue;
        int64_t n = ml_tensor_numel(t);
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        CHECK(ml_tensorset_read_f32(&ts, t, a, &err) == 0);
        CHECK(ml_tensorset_read_f32(&ts, r, b, &err) == 0);
        for (int64_t i = 0; i < n; i++)
            CHECK_MSG(bits(a[i]) == bits(b[i]), "%s[%lld]: %08x, torch gives %08x", names[k],
                      (long long)i, bits(a[i]), bits(b[i]));
        free(a);
        free(b);
    }
    CHECK(ml_tensorset_find(&ts, "f16")->dtype == ML_F16);
    CHECK(ml_tensorset_find(&ts, "bf16")->dtype == ML_BF16);
    ml_tensorset_free(&ts);
}

static void test_dtype_helpers(void) {
    CHECK(ml_dtype_size(ML_F32) == 4 && ml_dtype_size(ML_BF16) == 2);
    CHECK(ml_dtype_size(ML_C128) == 16 && ml_dtype_size(ML_DTYPE_COUNT) == 0);
    CHECK_STR_CONTAINS(ml_dtype_name(ML_BF16), "bfloat16");
    float f;
    int32_t i = 7;
    CHECK(ml_convert_to_f32(&f, &i, ML_I32, 1) == -1);
    CHECK(ml_convert_to_f32(&f, &i, ML_C64, 1) == -1);
}

/* Non-contiguous views (as torch checkpoints store them) are gathered, and a view reaching
 * outside its storage is refused before any byte is read. */
static void test_strided_views(void) {
    const char *h = "{\"s\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
                    "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[24,28]}}";
    unsigned char data[28];
    memcpy(data, data6, 24);
    memset(data + 24, 0, 4);
    size_t len;
    unsigned char *buf = make_st(h, data, sizeof data, &len);
    ml_tensorset ts;
    ml_err err = {{0}};
    if (ml_checkpoint_open_mem(&ts, "views", buf, len, &err) != 0) {
        CHECK_MSG(0, "%s", err.msg);
        free(buf);
        return;
    }
    size_t st = ml_tensorset_find(&ts, "s")->storage;
    /* transpose of a (2, 3) matrix: shape (3, 2), strides (1, 3) */
    ml_tensor t = {.name = "_orig_mod.module.tr", .dtype = ML_F32, .ndim = 2, .shape = {3, 2},
                   .stride = {1, 3}, .offset = 0, .storage = st};
    CHECK(ml_tensorset_add_tensor(&ts, &t, &err) == 0);
    ml_tensor off = {.name = "tail", .dtype = ML_F32, .ndim = 1, .shape = {2}, .stride = {2},
                     .offset = 3, .storage = st};
    CHECK(ml_tensorset_add_tensor(&ts, &off, &err) == 0);
    ml_tensor oob = {.name = "oob", .dtype = ML_F32, .ndim = 2, .shape = {2, 3},
                     .stride = {3, 1}, .offset = 1, .storage = st};
    CHECK(ml_tensorset_add_tensor(&ts, &oob, &err) == 0);
    ml_tensor huge = {.name = "huge", .dtype = ML_F32, .ndim = 2, .shape = {2, 2},
                      .stride = {INT64_MAX / 2, 1}, .offset = 0, .storage = st};
    CHECK(ml_tensorset_add_tensor(&ts, &huge, &err) == 0);
    ml_tensor dup = {.name = "module.tr", .dtype = ML_F32, .ndim = 1, .shape = {1},
                     .stride = {1}, .storage = st};
    CHECK(ml_tensorset_add_tensor(&ts, &dup, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "twice");
    ml_tensor badst = {.name = "x", .dtype = ML_F32, .ndim = 1, .shape = {1}, .stride = {1},
                       .storage = 99};
    CHECK(ml_tensorset_add_tensor(&ts, &badst, &err) == -1);

    float out[6] = {0};
    const ml_tensor *tr = ml_tensorset_find(&ts, "tr");
    CHECK_MSG(tr != NULL, "both prefixes stripped");
    if (tr) {
        CHECK(ml_tensorset_read_f32(&ts, tr, out, &err) == 0);
        const float want[6] = {1, 4, 2, 5, 3, 6};
        for (int i = 0; i < 6; i++) CHECK(out[i] == want[i]);
    }
    CHECK(ml_tensorset_read_f32(&ts, ml_tensorset_find(&ts, "tail"), out, &err) == 0);
    CHECK(out[0] == 4 && out[1] == 6);
    CHECK(ml_tensorset_read_f32(&ts, ml_tensorset_find(&ts, "oob"), out, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "oob");
    CHECK_STR_CONTAINS(err.msg, "outside its storage");
    CHECK(ml_tensorset_read_f32(&ts, ml_tensorset_find(&ts, "huge"), out, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "huge");
    CHECK(ml_tensorset_read_f32(&ts, ml_tensorset_find(&ts, "i"), out, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "int32");

    CHECK(ml_tensorset_add_meta(&ts, "k", "1", &err) == 0);
    CHECK(ml_tensorset_add_meta(&ts, "k", "2", &err) == 0);
    CHECK_STR_CONTAINS(ml_tensorset_meta(&ts, "k"), "2");
    ml_tensorset_free(&ts);
    free(buf);
}

/* Storages inside a zip archive (torch.save's layout): stored entries are read with a seek,
 * deflated ones by reading and skipping; a range past the entry fails. */
static void test_zip_storages(void) {
    char path[] = "/tmp/metalign-test-zip-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    float vals[3000];
    for (int i = 0; i < 3000; i++) vals[i] = (float)i * 0.5f;
    int zerr;
    zip_t *za = zip_open(path, ZIP_TRUNCATE | ZIP_CREATE, &zerr);
    CHECK(za != NULL);
    if (!za) return;
    const char *names[] = {"archive/data/0", "archive/data/1"};
    for (int k = 0; k < 2; k++) {
        zip_source_t *src = zip_source_buffer(za, vals, sizeof vals, 0);
        zip_int64_t idx = zip_file_add(za, names[k], src, ZIP_FL_OVERWRITE);
        CHECK(idx >= 0);
        CHECK(zip_set_file_compression(za, (zip_uint64_t)idx, k ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                                       0) == 0);
    }
    CHECK(zip_close(za) == 0);

    ml_tensorset ts;
    ml_tensorset_init(&ts);
    ts.path = strdup(path);
    ts.format = "pytorch";
    ts.zip = zip_open(path, ZIP_RDONLY, &zerr);
    CHECK(ts.zip != NULL);
    ml_err err = {{0}};
    for (int k = 0; ts.zip && k < 2; k++) {
        ml_storage s = {.key = (char *)(k ? "1" : "0"), .dtype = ML_F32, .nbytes = sizeof vals,
                        .src_offset = -1, .zip_index = zip_name_locate(ts.zip, names[k], 0)};
        size_t si;
        CHECK(ml_tensorset_add_storage(&ts, &s, &si, &err) == 0);
        char tname[16];
        snprintf(tname, sizeof tname, "w%d", k);
        /* column 2 of a (1000, 3) matrix starting at element 2000: strided and offset */
        ml_tensor t = {.name = tname, .dtype = ML_F32, .ndim = 1, .shape = {300},
                       .stride = {3}, .offset = 2000, .storage = si};
        CHECK(ml_tensorset_add_tensor(&ts, &t, &err) == 0);
        float out[300];
        CHECK_MSG(ml_tensorset_read_f32(&ts, ml_tensorset_find(&ts, tname), out, &err) == 0,
                  "%s", err.msg);
        for (int i = 0; i < 300; i++) CHECK(out[i] == vals[2000 + 3 * i]);
        unsigned char tail[8];
        const ml_storage *st = &ts.storages[si];
        CHECK(ml_tensorset_read_storage(&ts, st, sizeof vals - 8, 8, tail, &err) == 0);
        CHECK(memcmp(tail, (unsigned char *)vals + sizeof vals - 8, 8) == 0);
        CHECK(ml_tensorset_read_storage(&ts, st, sizeof vals - 4, 8, tail, &err) == -1);
        /* a storage that claims more bytes than its entry holds */
        ml_storage big = s;
        big.nbytes = 2 * (int64_t)sizeof vals;
        CHECK(ml_tensorset_add_storage(&ts, &big, &si, &err) == 0);
        CHECK(ml_tensorset_read_storage(&ts, &ts.storages[si], sizeof vals, 8, tail, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "zip entry");
    }
    ml_tensorset_free(&ts);
    unlink(path);
}

int main(void) {
    RUN(test_parse_and_read);
    RUN(test_header_errors);
    RUN(test_truncated_and_foreign);
    RUN(test_dtype_conversion_matches_torch);
    RUN(test_dtype_helpers);
    RUN(test_strided_views);
    RUN(test_zip_storages);
    return UT_DONE();
}
