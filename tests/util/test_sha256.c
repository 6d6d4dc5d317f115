/* SHA-256 against the FIPS 180-2 example vectors and against Python's hashlib on the CSV
 * fixtures (reference.json), one-shot and fed in awkward pieces. */
#include "unit.h"

#include "human_test.h"
#include "metalign/sha256.h"

static void check_hex(const void *data, size_t len, const char *want) {
    char hex[ML_SHA256_HEX_LEN];
    ml_sha256_hex(data, len, hex);
    CHECK_MSG(want && strcmp(hex, want) == 0, "sha256 of %zu bytes = %s, expected %s", len, hex,
              want ? want : "(missing from the reference)");
}

static void test_fips_vectors(void) {
    check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_hex(m448, strlen(m448),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_hex(m896, strlen(m896),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    check_hex(million, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

/* Every block boundary case: 55, 56, 63, 64, 65 bytes pad differently. */
static void test_streaming_equals_one_shot(void) {
    unsigned char data[300];
    for (int i = 0; i < 300; i++) data[i] = (unsigned char)(i * 7 + 3);
    static const size_t lens[] = {55, 56, 57, 63, 64, 65, 119, 120, 128, 300};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        char one[ML_SHA256_HEX_LEN], parts[ML_SHA256_HEX_LEN];
        ml_sha256_hex(data, lens[k], one);
        for (size_t step = 1; step < 70; step += 13) {
            ml_sha256 s;
            unsigned char d[ML_SHA256_LEN];
            ml_sha256_init(&s);
            for (size_t off = 0; off < lens[k]; off += step)
                ml_sha256_update(&s, data + off, off + step > lens[k] ? lens[k] - off : step);
            ml_sha256_final(&s, d);
            ml_sha256_to_hex(d, parts);
            CHECK_MSG(strcmp(one, parts) == 0, "len %zu step %zu: %s != %s", lens[k], step, one,
                      parts);
        }
    }
}

static void test_fixtures_match_hashlib(void) {
    json_t *ref = load_reference();
    REQUIRE_MSG(ref != NULL, "cannot read %s", FIXTURE("human/reference.json"));
    const char *names[] = {"synthetic.csv", "messy.csv"};
    for (int i = 0; i < 2; i++) {
        const char *path = FIXTUREF("human/%s", names[i]);
        size_t len;
        char *buf = read_file(path, &len);
        CHECK_MSG(buf != NULL, "cannot read %s", path);
        if (!buf) continue;
        check_hex(buf, len, json_string_value(json_object_get(json_object_get(ref, "sha256"),
                                                              names[i])));
        free(buf);
    }
    json_decref(ref);
}

int main(void) {
    RUN(test_fips_vectors);
    RUN(test_streaming_equals_one_shot);
    RUN(test_fixtures_match_hashlib);
    return UT_DONE();
}
