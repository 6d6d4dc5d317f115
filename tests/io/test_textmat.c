/* Text inputs: a SPoSE-like matrix written with mixed number formats, separators, trailing
 * blanks and CRLF must give exactly np.loadtxt(...).astype(np.float32)
 * (tests/reference/make_io_fixtures.py); malformed matrices and id lists fail naming the
 * line. */
#include "io/npy.h"
#include "io/textmat.h"
#include "unit.h"

static void test_spose_like_file(void) {
    float *y = NULL, *e = NULL;
    int64_t rows = 0, cols = 0, er = 0, ec = 0;
    ml_err err = {""};
    CHECK_MSG(ml_textmat_read(FIXTURE("io/spose_small.txt"), &y, &rows, &cols, &err) == 0, "%s",
              err.msg);
    CHECK_MSG(ml_npmat_read(FIXTURE("io/spose_small.expect.npy"), NULL, 0, &e, &er, &ec, &err) ==
                  0,
              "%s", err.msg);
    CHECK(rows == 23 && cols == 7 && er == rows && ec == cols);
    if (y && e && rows == er && cols == ec) {
        int64_t bad = 0;
        for (int64_t i = 0; i < rows * cols; i++) bad += y[i] != e[i];
        CHECK_MSG(bad == 0, "%lld values differ from numpy's", (long long)bad);
    }
    free(y);
    free(e);
}

static int parse(const char *text, float **y, int64_t *r, int64_t *c, ml_err *err) {
    err->msg[0] = '\0';
    return ml_textmat_parse("t.txt", text, strlen(text), y, r, c, err);
}

static void test_matrix_layouts(void) {
    float *y;
    int64_t r, c;
    ml_err err;
    static const char *ok[] = {
        "1 2\n3 4\n",  "1 2\r\n3 4\r\n", "1\t2 \n 3   4", "1 2\n3 4\n\n\n",
        ("\xef\xbb\xbf" "1 2\n3 4"), "1e0 +2.0\n0.3e1 4.",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        CHECK_MSG(parse(ok[i], &y, &r, &c, &err) == 0, "case %zu: %s", i, err.msg);
        CHECK(r == 2 && c == 2);
        if (y) CHECK(y[0] == 1 && y[1] == 2 && y[2] == 3 && y[3] == 4);
        free(y);
    }
}

static void test_matrix_errors(void) {
    float *y;
    int64_t r, c;
    ml_err err;
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"1 2\n3\n", "t.txt: line 2 has 1 values but line 1 has 2"},
        {"1 2\n\n3 4\n", "line 2 is blank but line 3 is not"},
        {"1 nan\n", "line 1, value 2: 'nan' is not a finite"},
        {"1 inf\n", "'inf' is not a finite"},
        {"1e999 1\n", "'1e999' is not a finite"},
        {"1e39 1\n", "'1e39' is not a finite float32"},
        {"1 2,5\n", "line 1, value 2: '2,5' is not a number"},
        {"1 0x\n", "'0x' is not a number"},
        {"", "no rows"},
        {"\n\n", "no rows"},
        {"1 2\n3 4 5\n", "line 2 has 3 values"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        y = NULL;
        CHECK_MSG(parse(bad[i].text, &y, &r, &c, &err) == -1, "case %zu parsed", i);
        CHECK(y == NULL);
        CHECK_STR_CONTAINS(err.msg, bad[i].msg);
    }
    /* A NUL byte inside a number. */
    CHECK(ml_textmat_parse("t.txt", "1 2\0" "3\n", 6, &y, &r, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "is not a number");
    char long_tok[200];
    memset(long_tok, '1', sizeof long_tok - 1);
    long_tok[sizeof long_tok - 1] = '\0';
    CHECK(parse(long_tok, &y, &r, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "is not a number");
    CHECK(ml_textmat_read("/nonexistent/spose.txt", &y, &r, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/spose.txt: No such file");
}

static void test_id_lists(void) {
    char **ids;
    size_t n;
    ml_err err = {""};
    const char *text = "aardvark\r\n  abacus \n\xc3\xa9" "clair\t\nzebra\n\n\r\n";
    CHECK_MSG(ml_idlist_parse("ids.txt", text, strlen(text), &ids, &n, &err) == 0, "%s",
              err.msg);
    CHECK(n == 4);
    if (n == 4) {
        CHECK(!strcmp(ids[0], "aardvark") && !strcmp(ids[1], "abacus"));
        CHECK(!strcmp(ids[2], "\xc3\xa9" "clair") && !strcmp(ids[3], "zebra"));
    }
    ml_strv_free(ids, n);
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"a\nb\na\n", "ids.txt: 'a' appears twice, on lines 1 and 3"},
        {"a\nb\nc\nb\r\n", "'b' appears twice, on lines 2 and 4"},
        {"a\n\nb\n", "line 2 is blank but line 3 is not"},
        {"", "no ids"},
        {" \n\t\n", "no ids"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(ml_idlist_parse("ids.txt", bad[i].text, strlen(bad[i].text), &ids, &n, &err) == -1);
        CHECK(ids == NULL);
        CHECK_STR_CONTAINS(err.msg, bad[i].msg);
    }
    CHECK(ml_idlist_parse("ids.txt", "a\0b\n", 4, &ids, &n, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "NUL");
    CHECK(ml_idlist_read(FIXTURE("data/things_ids.txt"), &ids, &n, &err) == 0);
    CHECK(n == 16);
    ml_strv_free(ids, n);
}

int main(void) {
    RUN(test_spose_like_file);
    RUN(test_matrix_layouts);
    RUN(test_matrix_errors);
    RUN(test_id_lists);
    return UT_DONE();
}
