/* .npy and .npz written by numpy (tests/reference/make_io_fixtures.py): every header version,
 * float dtype and byte order, stored and deflated archives joined in archive order, row
 * selection, and the refusals (Fortran order, integers, 1-D/3-D, ragged rows, non-.npy
 * entries, truncation). The arrays hold formula(a, i, j) = a*64 + i + j/4 (exact in
 * float16), a = the array's position in the archive, i the row, j the column. */
#include <unistd.h>
#include <zip.h>

#include "io/npy.h"
#include "io/textmat.h"
#include "unit.h"

static float formula(int a, int64_t i, int64_t j) { return (float)(a * 64 + i + j / 4.0); }

static char *slurp(const char *path, size_t *len) {
    char *d;
    ml_err err;
    return ml_file_read(path, 1 << 26, &d, len, &err) ? NULL : d;
}

/* npz_* fixtures: zeta (3 columns), alpha (4), mid (2), 37 rows. */
static const int npz_widths[3] = {3, 4, 2};

static float npz_value(int64_t row, int64_t col) {
    int a = 0;
    while (col >= npz_widths[a]) col -= npz_widths[a++];
    return formula(a, row, col);
}

static int64_t count_bad(const float *x, const int64_t *rows, size_t n, int64_t cols,
                         float (*f)(int64_t, int64_t)) {
    int64_t bad = 0;
    for (size_t i = 0; i < n; i++)
        for (int64_t j = 0; j < cols; j++) bad += x[i * (size_t)cols + (size_t)j] != f(rows[i], j);
    return bad;
}

static float single_value(int64_t row, int64_t col) { return formula(0, row, col); }

static void check_single(const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", FIXTURE("io/"), file);
    ml_npmat m;
    ml_err err = {""};
    REQUIRE_MSG(ml_npmat_open(&m, path, &err) == 0, "%s: %s", file, err.msg);
    CHECK(m.rows == 37 && m.cols == 5 && m.n_arrays == 1 && m.arrays[0].entry == NULL);
    float *x = malloc(37 * 5 * sizeof *x);
    int64_t all[37];
    for (int i = 0; i < 37; i++) all[i] = i;
    CHECK_MSG(ml_npmat_read_rows(&m, NULL, 37, x, &err) == 0, "%s", err.msg);
    CHECK_MSG(count_bad(x, all, 37, 5, single_value) == 0, "%s: wrong values", file);
    int64_t pick[] = {36, 0, 5, 5, 6, 7, 1};
    CHECK_MSG(ml_npmat_read_rows(&m, pick, 7, x, &err) == 0, "%s", err.msg);
    CHECK_MSG(count_bad(x, pick, 7, 5, single_value) == 0, "%s: wrong selected values", file);
    ml_npmat_free(&m);
    free(x);
}

static void test_npy_versions_and_dtypes(void) {
    check_single("npy_f4.npy");
    check_single("npy_f8.npy");
    check_single("npy_f2.npy");
    check_single("npy_be.npy");
    check_single("npy_v2.npy");
    check_single("npy_v3.npy");
}

static void check_npz(const char *file, int from_mem, int compressed) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", FIXTURE("io/"), file);
    ml_npmat m;
    ml_err err = {""};
    size_t len = 0;
    char *mem = from_mem ? slurp(path, &len) : NULL;
    int rc = from_mem ? ml_npmat_open_mem(&m, file, mem, len, &err)
                      : ml_npmat_open(&m, path, &err);
    CHECK_MSG(rc == 0, "%s: %s", file, err.msg);
    if (rc == 0) {
        CHECK(m.rows == 37 && m.cols == 9 && m.n_arrays == 3);
        static const char *names[] = {"zeta.npy", "alpha.npy", "mid.npy"};
        static const ml_dtype dts[] = {ML_F32, ML_F16, ML_F64};
        for (size_t a = 0; a < 3 && a < m.n_arrays; a++) {
            CHECK(!strcmp(m.arrays[a].entry, names[a]));
            CHECK(m.arrays[a].cols == npz_widths[a] && m.arrays[a].h.dtype == dts[a]);
            CHECK(m.arrays[a].compressed == compressed);
        }
        float x[37 * 9];
        int64_t all[37];
        for (int i = 0; i < 37; i++) all[i] = i;
        CHECK_MSG(ml_npmat_read_rows(&m, NULL, 37, x, &err) == 0, "%s", err.msg);
        CHECK_MSG(count_bad(x, all, 37, 9, npz_value) == 0, "%s: wrong values", file);
        int64_t pick[] = {30, 2, 2, 36, 0, 17, 18, 19};
        CHECK_MSG(ml_npmat_read_rows(&m, pick, 8, x, &err) == 0, "%s", err.msg);
        CHECK_MSG(count_bad(x, pick, 8, 9, npz_value) == 0, "%s: wrong selected values", file);
        int64_t out_of_range = 37;
        CHECK(ml_npmat_read_rows(&m, &out_of_range, 1, x, &err) != 0);
        CHECK_STR_CONTAINS(err.msg, "row 37 requested but the file has 37 rows");
        ml_npmat_free(&m);
    }
    free(mem);
}

static void test_npz(void) {
    check_npz("npz_stored.npz", 0, 0);
    check_npz("npz_stored.npz", 1, 0);
    check_npz("npz_deflated.npz", 0, 1);
    check_npz("npz_deflated.npz", 1, 1);
}

static void test_read_convenience(void) {
    float *x = NULL;
    int64_t rows = 0, cols = 0;
    ml_err err;
    int64_t pick[] = {4, 1};
    CHECK(ml_npmat_read(FIXTURE("io/npz_deflated.npz"), pick, 2, &x, &rows, &cols, &err) == 0);
    CHECK(rows == 37 && cols == 9);
    if (x) CHECK(count_bad(x, pick, 2, 9, npz_value) == 0);
    free(x);
    int64_t bad = 99;
    CHECK(ml_npmat_read(FIXTURE("io/npy_f4.npy"), &bad, 1, &x, &rows, &cols, &err) != 0);
    CHECK(x == NULL);
    CHECK_STR_CONTAINS(err.msg, "row 99");
}

static void expect_open_error(const char *file, const char *msg) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", FIXTURE("io/"), file);
    ml_npmat m;
    ml_err err = {""};
    int rc = ml_npmat_open(&m, path, &err);
    CHECK_MSG(rc != 0, "%s opened", file);
    if (rc == 0) ml_npmat_free(&m);
    CHECK_STR_CONTAINS(err.msg, file);
    CHECK_STR_CONTAINS(err.msg, msg);
    /* Every prefix of the file, from memory: an error, never a crash or a leak. */
    size_t len;
    char *mem = slurp(path, &len);
    for (size_t n = 0; mem && n < len; n += len > 4096 ? 61 : 1) {
        if (ml_npmat_open_mem(&m, file, mem, n, &err) == 0) ml_npmat_free(&m);
    }
    free(mem);
}

static void test_refusals(void) {
    expect_open_error("npy_fortran.npy", "Fortran order");
    expect_open_error("npy_i8.npy", "dtype '<i8' is not supported");
    expect_open_error("npy_1d.npy", "shape (10,)");
    expect_open_error("npy_3d.npy", "shape (2, 3, 4)");
    expect_open_error("npz_badrows.npz", "b.npy: the array has 36 rows but a.npy has 37");
    expect_open_error("npz_notnpy.npz", "README.txt: not a .npy array");
    expect_open_error("ckpt_seed.pt", "not a .npy array");
    expect_open_error("spose_small.txt", "not a .npy array");
}

static void test_truncated(void) {
    size_t len;
    char *mem = slurp(FIXTURE("io/npy_f4.npy"), &len);
    REQUIRE_MSG(mem != NULL, "cannot read %s", FIXTURE("io/npy_f4.npy"));
    int opened = 0;
    for (size_t n = 0; n < len; n++) {
        ml_npmat m;
        ml_err err;
        if (ml_npmat_open_mem(&m, "npy_f4.npy", mem, n, &err) == 0) {
            opened++;
            ml_npmat_free(&m);
        } else if (n > 200) {
            CHECK_STR_CONTAINS(err.msg, "truncated");
        }
    }
    CHECK(opened == 0);
    free(mem);
    mem = slurp(FIXTURE("io/npz_stored.npz"), &len);
    REQUIRE_MSG(mem != NULL, "cannot read %s", FIXTURE("io/npz_stored.npz"));
    for (size_t n = 0; n < len; n++) {
        ml_npmat m;
        ml_err err;
        if (ml_npmat_open_mem(&m, "npz", mem, n, &err) == 0) ml_npmat_free(&m);
    }
    free(mem);
}

static void test_headers(void) {
    static const struct {
        const char *dict;
        const char *msg; /* NULL: valid */
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", NULL},
        {"{\"descr\":\"<f8\",\"fortran_order\":False,\"shape\":(3L,4L)}", NULL},
        {"{'shape': (2, 2), 'fortran_order': False, 'descr': '>f2', 'extra': [1, (2, 3)]}", NULL},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()}", NULL},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3,)}", "dtype '|u1'"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (3,)}", "dtype '<c8'"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", "structured"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (3,)}", "Fortran"},
        {"{'descr': '<f4', 'shape': (3,)}", "lacks 'fortran_order'"},
        {"{'descr': '<f4', 'fortran_order': False}", "lacks 'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1)}", "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", "more than 8"},
        {"{'descr': '<f4', 'fortran_order': maybe, 'shape': (3,)}", "fortran_order"},
        {"['descr']", "not a dict"},
        {"{'descr': '<f4' 'fortran_order': False}", "expected ','"},
        {"{'descr': '<f4', 'unterminated: 1}", "bad key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char buf[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
        size_t dl = strlen(cases[i].dict);
        buf[8] = (unsigned char)dl;
        buf[9] = 0;
        memcpy(buf + 10, cases[i].dict, dl);
        ml_npy_header h;
        size_t need = 0;
        ml_err err = {""};
        int rc = ml_npy_parse_header(buf, 10 + dl, &h, &need, &err);
        if (!cases[i].msg) {
            CHECK_MSG(rc == 0, "case %zu: %s", i, err.msg);
            CHECK(h.data_offset == 10 + dl);
        } else {
            CHECK_MSG(rc == -1, "case %zu parsed", i);
            CHECK_STR_CONTAINS(err.msg, cases[i].msg);
        }
        /* A short buffer asks for more. */
        CHECK(ml_npy_parse_header(buf, 9, &h, &need, &err) == 1 && need == ML_NPY_PREAMBLE);
        CHECK(ml_npy_parse_header(buf, 12, &h, &need, &err) == 1 && need == 10 + dl);
    }
    ml_npy_header h;
    size_t need;
    ml_err err;
    unsigned char v4[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 4, 0, 0, 0, 0, 0};
    CHECK(ml_npy_parse_header(v4, 12, &h, &need, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "version 4.0");
    unsigned char huge[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0, 0x10};
    CHECK(ml_npy_parse_header(huge, 12, &h, &need, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "claims");
    CHECK(ml_npy_parse_header("\x93NUMPX", 6, &h, &need, &err) == -1);
    CHECK(ml_npy_parse_header("PK", 2, &h, &need, &err) == -1);
}

/* A .npy of rows x cols float32 formula(a) values, version 1 header padded to 64 bytes. */
static unsigned char *make_npy(int a, int64_t rows, int64_t cols, size_t *len) {
    char dict[128];
    int dl = snprintf(dict, sizeof dict,
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                      (long long)rows, (long long)cols);
    size_t hl = ((size_t)(10 + dl + 1) + 63) / 64 * 64 - 10;
    size_t n = 10 + hl + (size_t)(rows * cols) * 4;
    unsigned char *b = malloc(n);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)(hl & 0xff);
    b[9] = (unsigned char)(hl >> 8);
    memset(b + 10, ' ', hl);
    memcpy(b + 10, dict, (size_t)dl);
    b[10 + hl - 1] = '\n';
    float *x = (float *)(b + 10 + hl);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            float v = formula(a, i % 1000, j);
            memcpy(&x[i * cols + j], &v, 4);
        }
    *len = n;
    return b;
}

static float big_value(int64_t row, int64_t col) {
    return col < 300 ? formula(0, row % 1000, col) : formula(1, row % 1000, col - 300);
}

/* Archives bigger than the reader's 1 MiB chunk, so runs and skips cross chunk boundaries. */
static void test_large_archive(void) {
    for (int deflate = 0; deflate < 2; deflate++) {
        char path[] = "/tmp/ml_test_npz_XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        close(fd);
        int zerr;
        zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
        CHECK(za != NULL);
        if (!za) continue;
        size_t l0, l1;
        unsigned char *a0 = make_npy(0, 3000, 300, &l0), *a1 = make_npy(1, 3000, 7, &l1);
        zip_source_t *s0 = zip_source_buffer(za, a0, l0, 1);
        zip_source_t *s1 = zip_source_buffer(za, a1, l1, 1);
        zip_int64_t i0 = zip_file_add(za, "wide.npy", s0, 0);
        zip_int64_t i1 = zip_file_add(za, "narrow.npy", s1, 0);
        CHECK(i0 == 0 && i1 == 1);
        zip_int32_t method = deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE;
        zip_set_file_compression(za, 0, method, 0);
        zip_set_file_compression(za, 1, method, 0);
        CHECK(zip_close(za) == 0);

        ml_npmat m;
        ml_err err = {""};
        CHECK_MSG(ml_npmat_open(&m, path, &err) == 0, "%s", err.msg);
        if (m.path) {
            CHECK(m.rows == 3000 && m.cols == 307 && m.arrays[0].compressed == deflate);
            float *x = malloc(3000 * 307 * sizeof *x);
            int64_t *all = malloc(3000 * sizeof *all);
            for (int i = 0; i < 3000; i++) all[i] = i;
            CHECK_MSG(ml_npmat_read_rows(&m, NULL, 3000, x, &err) == 0, "%s", err.msg);
            CHECK(count_bad(x, all, 3000, 307, big_value) == 0);
            /* Scattered rows in any order, with repeats and a long consecutive run. */
            int64_t pick[1200];
            size_t np = 0;
            for (int i = 0; i < 400; i++) pick[np++] = (i * 7919) % 3000;
            for (int i = 0; i < 800; i++) pick[np++] = 1000 + i;
            pick[5] = pick[6];
            CHECK_MSG(ml_npmat_read_rows(&m, pick, np, x, &err) == 0, "%s", err.msg);
            CHECK(count_bad(x, pick, np, 307, big_value) == 0);
            free(x);
            free(all);
            ml_npmat_free(&m);
        }
        unlink(path);
    }
}

int main(void) {
    RUN(test_npy_versions_and_dtypes);
    RUN(test_npz);
    RUN(test_read_convenience);
    RUN(test_refusals);
    RUN(test_truncated);
    RUN(test_headers);
    RUN(test_large_archive);
    return UT_DONE();
}
