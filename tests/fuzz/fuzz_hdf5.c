/* libFuzzer target: the HDF5 backbone reader's own checks. The input is not an HDF5 file (the
 * container parser is libhdf5's, not ours): it is a recipe, decoded below, for a file that
 * libhdf5 builds in memory — hostile shapes (ranks 0..3, zero, huge and mismatched sizes),
 * types (ints, strings, compounds, odd-sized and big-endian floats), storage (chunk shapes,
 * gzip), layouts (names that are not numbers, leading zeros, gaps, groups, soft links,
 * `representations` beside per-image datasets) — which ml_h5mat_open_mem then opens and, when
 * it accepts it, reads all rows of (when small) and a scattered selection.
 *
 * Recipe: byte 0 picks the layout and extras; then per dataset: name, rank, sizes, type,
 * storage, and whether to fill it with floats taken from the input (any bit patterns). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "h5build.h"
#include "io/hdf5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DATASETS 12
#define MAX_FILL 4096             /* elements written to a dataset, at most */
#define MAX_READ_FLOATS (1 << 18) /* floats read back, at most */

typedef struct recipe {
    const uint8_t *p;
    size_t n, i;
} recipe;

static unsigned u8(recipe *r) { return r->i < r->n ? r->p[r->i++] : 0; }

static hsize_t pick_size(recipe *r) {
    static const hsize_t big[] = {0, 1, 2, 3, 7, 8, 64, 1000, (hsize_t)ML_H5_MAX_COLS,
                                  (hsize_t)ML_H5_MAX_COLS + 1, (hsize_t)ML_H5_MAX_ROWS,
                                  (hsize_t)ML_H5_MAX_ROWS + 1, (hsize_t)1 << 32,
                                  (hsize_t)1 << 40};
    unsigned b = u8(r);
    return b < 192 ? b % 24 : big[b % (sizeof big / sizeof *big)];
}

/* A file type; *owned says whether the caller must H5Tclose it. */
static hid_t pick_type(recipe *r, int *owned) {
    hid_t t;
    *owned = 1;
    unsigned kind = u8(r) % 13;
    switch (kind) {
    case 0: *owned = 0; return H5T_NATIVE_FLOAT;
    case 1: *owned = 0; return H5T_NATIVE_DOUBLE;
    case 2: /* IEEE half, as h5py writes it; case 3 the same with the wrong bias */
    case 3: {
        t = H5Tcopy(H5T_IEEE_F32LE);
        H5Tset_fields(t, 15, 10, 5, 0, 10);
        H5Tset_size(t, 2);
        H5Tset_ebias(t, kind == 2 ? 15 : 14);
        return t;
    }
    case 4: *owned = 0; return H5T_STD_I32LE;
    case 5: *owned = 0; return H5T_STD_U8LE;
    case 6:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 1 + u8(r) % 8);
        return t;
    case 7:
        t = H5Tcreate(H5T_COMPOUND, 8);
        H5Tinsert(t, "a", 0, H5T_NATIVE_FLOAT);
        H5Tinsert(t, "b", 4, H5T_NATIVE_FLOAT);
        return t;
    case 8: *owned = 0; return H5T_IEEE_F32BE;
    case 9: *owned = 0; return H5T_IEEE_F64BE;
    case 10: /* a 3-byte float */
        t = H5Tcopy(H5T_NATIVE_FLOAT);
        H5Tset_fields(t, 23, 16, 7, 0, 16);
        H5Tset_size(t, 3);
        return t;
    case 11: {
        hsize_t two = 2;
        return H5Tarray_create2(H5T_NATIVE_FLOAT, 1, &two);
    }
    default: {
        t = H5Tenum_create(H5T_NATIVE_INT);
        int v = 1;
        H5Tenum_insert(t, "one", &v);
        return t;
    }
    }
}

/* One dataset (or, by recipe, a group) called name. */
static void add_dataset(recipe *r, hid_t f, const char *name, int default_rank) {
    unsigned shape = u8(r);
    if (shape % 16 == 15) { /* a group in its place */
        hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g >= 0) H5Gclose(g);
        return;
    }
    int rank = shape % 8 < 6 ? default_rank : (int)(shape % 4);
    hsize_t dims[3] = {1, 1, 1}, chunk[3] = {1, 1, 1};
    uint64_t total = 1;
    for (int d = 0; d < rank; d++) {
        dims[d] = pick_size(r);
        if (__builtin_mul_overflow(total, (uint64_t)dims[d], &total)) total = UINT64_MAX;
    }
    int owned;
    hid_t type = pick_type(r, &owned);
    unsigned storage = u8(r);
    int chunked = rank > 0 && (storage & 1);
    for (int d = 0; d < rank; d++) {
        hsize_t c = 1 + u8(r) % 64;
        if (storage & 2) c = (hsize_t)1 << (u8(r) % 24);
        chunk[d] = c;
    }
    if (type >= 0 &&
        h5b_dataset(f, name, type, rank, dims, chunked ? chunk : NULL, (int)(storage >> 4) % 10,
                    NULL) == 0 &&
        total <= MAX_FILL && (storage & 4)) {
        float v[MAX_FILL];
        for (uint64_t i = 0; i < total; i++) {
            uint32_t bits = 0;
            for (int k = 0; k < 4; k++) bits |= (uint32_t)u8(r) << (8 * k);
            memcpy(&v[i], &bits, sizeof bits);
        }
        h5b_fill(f, name, v);
    }
    if (owned && type >= 0) H5Tclose(type);
}

static const char *pick_name(recipe *r, int i, char *buf, size_t len) {
    unsigned b = u8(r);
    static const char *const odd[] = {"01", "cat", "-1", "99999999999999999999", "1e3", " 1"};
    if (b % 8 == 7) return odd[(b >> 3) % (sizeof odd / sizeof *odd)];
    snprintf(buf, len, "%d", b % 8 == 6 ? i + 1 + (int)(b >> 3) % 5 : i); /* or a gap */
    return buf;
}

static void read_back(ml_h5mat *m, recipe *r) {
    ml_err err;
    if (m->rows < 1 || m->cols < 1) return;
    float *x = malloc(sizeof(float) * MAX_READ_FLOATS);
    if (!x) return;
    if (m->rows <= MAX_READ_FLOATS / m->cols) ml_h5mat_read_rows(m, NULL, (size_t)m->rows, x, &err);
    int64_t pick[4] = {m->rows - 1, 0, (int64_t)(u8(r) * (uint64_t)m->rows / 256), m->rows - 1};
    size_t n = (size_t)(MAX_READ_FLOATS / m->cols);
    ml_h5mat_read_rows(m, pick, n < 4 ? n : 4, x, &err);
    int64_t bad[2] = {0, m->rows};
    ml_h5mat_read_rows(m, bad, 2, x, &err);
    free(x);
}

/* Open files, datasets, groups, named types and attributes: a handle the reader leaks is no
 * leak to LeakSanitizer (libhdf5 still holds it), so it is counted here. (libhdf5 has no
 * public count of dataspaces and property lists.) */
static ssize_t open_objects(void) { return H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    recipe r = {data, size, 0};
    hid_t f = h5b_new();
    if (f < 0) return 0;
    unsigned head = u8(&r);
    if (head & 1) {
        add_dataset(&r, f, ML_H5_DATASET, 2);
    }
    if (!(head & 1) || (head & 2)) { /* per-image datasets (also beside `representations`) */
        int n = (int)(head >> 2) % (MAX_DATASETS + 1);
        for (int i = 0; i < n; i++) {
            char name[32];
            add_dataset(&r, f, pick_name(&r, i, name, sizeof name), 1);
        }
    }
    if (head & 0x80) /* a soft link, dangling or not */
        H5Lcreate_soft(head & 0x40 ? "/0" : "/nowhere", f, head & 1 ? "extra" : ML_H5_DATASET,
                       H5P_DEFAULT, H5P_DEFAULT);
    void *buf;
    size_t len;
    if (h5b_image(f, &buf, &len) == 0) {
        ml_h5mat m;
        ml_err err;
        if (ml_h5mat_open_mem(&m, "fuzz.h5", buf, len, &err) == 0) {
            read_back(&m, &r);
            ml_h5mat_free(&m);
        }
        free(buf);
    }
    if (open_objects() != 0) {
        fprintf(stderr, "fuzz_hdf5: %zd libhdf5 objects left open\n", open_objects());
        abort();
    }
    return 0;
}
