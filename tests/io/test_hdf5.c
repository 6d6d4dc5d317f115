/* The HDF5 backbone reader against h5py's files (tests/reference/make_hdf5_fixtures.py): both
 * layouts in float32/64/16, gzip and chunked, rows on demand in any order; float16 specials
 * and big-endian data as numpy converts them; and hostile files built with libhdf5 itself
 * (tests/support/h5build.h), each refused with a message naming the file and the dataset. */
#include <stdint.h>
#include <unistd.h>

#include "h5build.h"
#include "io/hdf5.h"
#include "io/npy.h"
#include "unit.h"

#define ROWS 35
#define COLS 8

static float *load_npy(const char *path, int64_t *rows, int64_t *cols) {
    float *x = NULL;
    ml_err err = {{0}};
    CHECK_MSG(ml_npmat_read(path, NULL, 0, &x, rows, cols, &err) == 0, "%s", err.msg);
    return x;
}

/* The per-image THINGS rows as numpy wrote them (things_backbone.npz, cls | patch). */
static float *things_X(void) {
    int64_t r = 0, c = 0;
    float *x = load_npy(FIXTURE("data/things_backbone.npz"), &r, &c);
    CHECK(r == ROWS && c == COLS);
    return x;
}

static void read_all(const char *path, int per_image, ml_dtype dt, float *out) {
    ml_h5mat m;
    ml_err err = {{0}};
    CHECK_MSG(ml_h5mat_open(&m, path, &err) == 0, "%s", err.msg);
    if (!m.path) return;
    CHECK(m.rows == ROWS && m.cols == COLS && m.per_image == per_image && m.dtype == dt);
    CHECK_MSG(ml_h5mat_read_rows(&m, NULL, ROWS, out, &err) == 0, "%s", err.msg);
    ml_h5mat_free(&m);
}

/* float32 and float64 files hold exactly the float32 rows; float16 ones numpy's rounding. */
static void test_layouts_and_dtypes(void) {
    float *X = things_X();
    int64_t r, c;
    float *x16 = load_npy(FIXTURE("data/h5_f16_expect_X.npy"), &r, &c);
    float got[ROWS * COLS];
    static const char *const tags[] = {"f32", "f64", "f16"};
    static const ml_dtype dts[] = {ML_F32, ML_F64, ML_F16};
    for (int layout = 0; X && x16 && layout < 2; layout++) {
        for (int k = 0; k < 3; k++) {
            char path[512];
            snprintf(path, sizeof path, "%s", FIXTUREF("data/h5_%s_%s.h5",
                     layout ? "images" : "repr", tags[k]));
            memset(got, 0xff, sizeof got);
            read_all(path, layout, dts[k], got);
            if (dts[k] != ML_F16) {
                CHECK_MSG(memcmp(got, X, sizeof got) == 0, "%s differs from numpy", path);
                continue;
            }
            /* the aligned rows of things_rows.txt against numpy's float16 -> float32 */
            FILE *f = fopen(FIXTURE("data/things_rows.txt"), "r");
            int row, i = 0;
            while (f && fscanf(f, "%d", &row) == 1 && i < r) {
                CHECK_MSG(memcmp(got + row * COLS, x16 + i * COLS, sizeof(float) * COLS) == 0,
                          "%s row %d differs from numpy's float16", path, row);
                i++;
            }
            CHECK(i == r);
            if (f) fclose(f);
        }
    }
    free(X);
    free(x16);
}

/* Only the rows asked for, in the order asked, repeats included; both layouts agree. */
static void test_rows_on_demand(void) {
    float *X = things_X();
    static const int64_t rows[] = {34, 0, 0, 17, 3, 4, 5, 33, 3, 12, 11, 10, 34};
    size_t n = sizeof rows / sizeof rows[0];
    const char *files[] = {FIXTURE("data/h5_repr_f32.h5"), FIXTURE("data/h5_images_f32.h5")};
    for (int f = 0; X && f < 2; f++) {
        ml_h5mat m;
        ml_err err = {{0}};
        float out[sizeof rows / sizeof rows[0] * COLS];
        CHECK_MSG(ml_h5mat_open(&m, files[f], &err) == 0, "%s", err.msg);
        CHECK_MSG(ml_h5mat_read_rows(&m, rows, n, out, &err) == 0, "%s", err.msg);
        for (size_t i = 0; i < n; i++)
            CHECK_MSG(!memcmp(out + i * COLS, X + rows[i] * COLS, sizeof(float) * COLS),
                      "%s: request %zu (row %lld)", files[f], i, (long long)rows[i]);
        int64_t bad[] = {3, ROWS};
        CHECK(ml_h5mat_read_rows(&m, bad, 2, out, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "row 35");
        CHECK(ml_h5mat_read_rows(&m, NULL, 3, out, &err) == -1);
        CHECK(ml_h5mat_read_rows(&m, rows, 0, out, &err) == 0);
        ml_h5mat_free(&m);
    }
    free(X);
}

static void compare_file(const char *h5, const char *npy) {
    int64_t r = 0, c = 0;
    float *want = load_npy(npy, &r, &c);
    ml_h5mat m;
    ml_err err = {{0}};
    CHECK_MSG(ml_h5mat_open(&m, h5, &err) == 0, "%s", err.msg);
    if (!want || !m.path) {
        free(want);
        ml_h5mat_free(&m);
        return;
    }
    CHECK(m.rows == r && m.cols == c);
    float *got = calloc((size_t)(r * c), sizeof(float));
    CHECK_MSG(ml_h5mat_read_rows(&m, NULL, (size_t)r, got, &err) == 0, "%s", err.msg);
    for (int64_t i = 0; i < r * c; i++) {
        if (isnan(want[i]))
            CHECK_MSG(isnan(got[i]), "%s[%lld] = %g, numpy nan", h5, (long long)i, got[i]);
        else
            CHECK_MSG(!memcmp(&got[i], &want[i], sizeof(float)), "%s[%lld] = %g, numpy %g", h5,
                      (long long)i, got[i], want[i]);
    }
    free(got);
    free(want);
    ml_h5mat_free(&m);
}

/* float16 zeros, subnormals, the largest value, infinities and nan; a big-endian float64. */
static void test_specials_and_byte_order(void) {
    compare_file(FIXTURE("io/h5_specials.h5"), FIXTURE("io/h5_specials.expect.npy"));
    compare_file(FIXTURE("io/h5_big_endian.h5"), FIXTURE("io/h5_big_endian.expect.npy"));
    CHECK(ml_h5_is_hdf5(FIXTURE("io/h5_specials.h5")));
    CHECK(!ml_h5_is_hdf5(FIXTURE("data/things_backbone.npz")));
    CHECK(!ml_h5_is_hdf5(FIXTURE("data/no such file")));
}

/* Opens the image (and reads every row when that succeeds): the message must name the
 * file and hold both needles. */
static void expect_refusal(hid_t f, const char *n1, const char *n2) {
    void *buf;
    size_t len;
    CHECK_MSG(f >= 0 && h5b_image(f, &buf, &len) == 0, "cannot build the file for \"%s\"", n1);
    if (f < 0 || !buf) return;
    ml_h5mat m;
    ml_err err = {{0}};
    int rc = ml_h5mat_open_mem(&m, "hostile.h5", buf, len, &err);
    if (rc == 0) {
        float *out = calloc((size_t)(m.rows * m.cols), sizeof(float));
        rc = out ? ml_h5mat_read_rows(&m, NULL, (size_t)m.rows, out, &err) : -1;
        free(out);
        ml_h5mat_free(&m);
    }
    CHECK_MSG(rc == -1, "a hostile file (\"%s\") was read", n1);
    CHECK_STR_CONTAINS(err.msg, "hostile.h5");
    CHECK_STR_CONTAINS(err.msg, n1);
    if (n2) CHECK_STR_CONTAINS(err.msg, n2);
    free(buf);
}

static void test_hostile_shapes_types_sizes(void) {
    hsize_t d1[1] = {8}, d2[2] = {4, 8}, d3[3] = {2, 2, 2};
    hid_t f;
    /* rank */
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_FLOAT, 1, d1, NULL, 0, NULL);
    expect_refusal(f, "\"representations\" has 1 dimensions", "2 are expected");
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_FLOAT, 3, d3, NULL, 0, NULL);
    expect_refusal(f, "has 3 dimensions", NULL);
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_FLOAT, 0, NULL, NULL, 0, NULL);
    expect_refusal(f, "has 0 dimensions", NULL);
    /* types */
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_INT32, 2, d2, NULL, 0, NULL);
    expect_refusal(f, "4-byte integer", "float16, float32 or float64");
    f = h5b_new();
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 5);
    h5b_dataset(f, "representations", str, 2, d2, NULL, 0, NULL);
    H5Tclose(str);
    expect_refusal(f, "string", NULL);
    f = h5b_new();
    hid_t odd = H5Tcopy(H5T_NATIVE_FLOAT); /* a 3-byte float: not IEEE */
    H5Tset_fields(odd, 23, 16, 7, 0, 16);
    H5Tset_size(odd, 3);
    h5b_dataset(f, "representations", odd, 2, d2, NULL, 0, NULL);
    H5Tclose(odd);
    expect_refusal(f, "3-byte float", NULL);
    /* sizes: never written, so nothing is allocated */
    hsize_t wide[2] = {4, (hsize_t)ML_H5_MAX_COLS + 1}, wch[2] = {1, 1024};
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_FLOAT, 2, wide, wch, 1, NULL);
    expect_refusal(f, "1048577 features", NULL);
    hsize_t tall[2] = {(hsize_t)ML_H5_MAX_ROWS + 1, 4}, tch[2] = {1024, 4};
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_FLOAT, 2, tall, tch, 1, NULL);
    expect_refusal(f, "67108865 rows", NULL);
    hsize_t zero[2] = {0, 4};
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_FLOAT, 2, zero, NULL, 0, NULL);
    expect_refusal(f, "0 rows", NULL);
    hsize_t big[2] = {8192, 8192}, bch[2] = {4096, 8192};
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_FLOAT, 2, big, bch, 1, NULL);
    expect_refusal(f, "chunks of more than 16 MiB", NULL);
    hsize_t many[2] = {4, 1 << 17}, tiny[2] = {1, 1};
    f = h5b_new();
    h5b_dataset(f, "representations", H5T_NATIVE_FLOAT, 2, many, tiny, 1, NULL);
    expect_refusal(f, "a row spans 131072 chunks", "wider chunks");
}

static void test_hostile_layouts(void) {
    hid_t f;
    f = h5b_new();
    expect_refusal(f, "no dataset \"representations\" and no per-image datasets", NULL);
    f = h5b_new();
    h5b_floats(f, "0", 1, 1, 8, 0);
    h5b_floats(f, "cat", 1, 1, 8, 1);
    expect_refusal(f, "\"cat\" is not an image number", "\"representations\"");
    f = h5b_new();
    h5b_floats(f, "0", 1, 1, 8, 0);
    h5b_floats(f, "01", 1, 1, 8, 1);
    expect_refusal(f, "\"01\" is not an image number", NULL);
    f = h5b_new();
    h5b_floats(f, "0", 1, 1, 8, 0);
    h5b_floats(f, "1", 1, 1, 8, 1);
    h5b_floats(f, "3", 1, 1, 8, 3);
    expect_refusal(f, "\"2\" is missing but \"3\" is present", NULL);
    f = h5b_new();
    h5b_floats(f, "1", 1, 1, 8, 1);
    expect_refusal(f, "\"0\" is missing", NULL);
    f = h5b_new();
    h5b_floats(f, "0", 1, 1, 8, 0);
    h5b_floats(f, "1", 1, 1, 7, 1);
    expect_refusal(f, "\"1\" has 7 features but \"0\" has 8", NULL);
    f = h5b_new();
    h5b_floats(f, "0", 2, 2, 8, 0);
    expect_refusal(f, "\"0\" has 2 dimensions", "one per image");
    f = h5b_new();
    hid_t g = H5Gcreate2(f, "representations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    expect_refusal(f, "\"representations\"", "cannot open it");
    f = h5b_new();
    h5b_floats(f, "x", 2, 3, 4, 0);
    H5Lcreate_soft("/x", f, "representations", H5P_DEFAULT, H5P_DEFAULT);
    expect_refusal(f, "\"representations\" is a soft link", NULL);
    f = h5b_new();
    h5b_floats(f, "0", 1, 1, 8, 0);
    H5Lcreate_external("/etc/other.h5", "/x", f, "1", H5P_DEFAULT, H5P_DEFAULT);
    expect_refusal(f, "\"1\" is a soft or external link", NULL);
    f = h5b_new();
    g = H5Gcreate2(f, "0", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    expect_refusal(f, "\"0\"", "cannot open it");
}

/* A per-image file built here: rows come back in numeric order, not string or creation order
 * ("10" after "9"). */
static void test_numeric_order(void) {
    hid_t f = h5b_new();
    static const int order[] = {10, 2, 0, 11, 1, 9, 3, 4, 5, 6, 7, 8};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        char name[8];
        snprintf(name, sizeof name, "%d", order[i]);
        CHECK(h5b_floats(f, name, 1, 1, 3, order[i]) == 0);
    }
    void *buf;
    size_t len;
    CHECK(h5b_image(f, &buf, &len) == 0);
    ml_h5mat m;
    ml_err err = {{0}};
    CHECK_MSG(buf && ml_h5mat_open_mem(&m, "order.h5", buf, len, &err) == 0, "%s", err.msg);
    if (m.path) {
        float out[12 * 3];
        CHECK(m.rows == 12 && m.cols == 3 && m.per_image == 1);
        CHECK_MSG(ml_h5mat_read_rows(&m, NULL, 12, out, &err) == 0, "%s", err.msg);
        for (int r = 0; r < 12; r++)
            for (int c = 0; c < 3; c++) CHECK(out[r * 3 + c] == (float)(r * 100 + c));
        ml_h5mat_free(&m);
    }
    free(buf);
}

static void test_not_hdf5(void) {
    ml_h5mat m;
    ml_err err = {{0}};
    CHECK(ml_h5mat_open(&m, FIXTURE("data/things_backbone.npz"), &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "things_backbone.npz");
    CHECK_STR_CONTAINS(err.msg, "not a readable HDF5 file");
    CHECK(ml_h5mat_open(&m, FIXTURE("data/missing.h5"), &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "missing.h5: cannot open: No such file");
    static const char junk[] = "\x89HDF\r\n\x1a\n but nothing after the signature";
    CHECK(ml_h5mat_open_mem(&m, "junk.h5", junk, sizeof junk, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "junk.h5");
    /* a valid file cut short, at every length */
    FILE *fp = fopen(FIXTURE("data/h5_repr_f32.h5"), "rb");
    unsigned char whole[1 << 14];
    size_t n = fp ? fread(whole, 1, sizeof whole, fp) : 0;
    if (fp) fclose(fp);
    CHECK(n > 1000);
    int opened = 0;
    for (size_t cut = 0; cut + 1 < n; cut += cut < 2048 ? 61 : 397) {
        if (ml_h5mat_open_mem(&m, "cut.h5", whole, cut, &err) == 0) {
            float out[ROWS * COLS];
            if (ml_h5mat_read_rows(&m, NULL, (size_t)m.rows, out, &err) == 0) opened++;
            ml_h5mat_free(&m);
        }
    }
    CHECK(opened == 0);
}

int main(void) {
    RUN(test_layouts_and_dtypes);
    RUN(test_rows_on_demand);
    RUN(test_specials_and_byte_order);
    RUN(test_hostile_shapes_types_sizes);
    RUN(test_hostile_layouts);
    RUN(test_numeric_order);
    RUN(test_not_hdf5);
    return UT_DONE();
}
