/* HDF5 backbones through libhdf5 (io/hdf5.h). Every libhdf5 call is checked; a failure's
 * reason is libhdf5's innermost error description, put behind the file and dataset names. */
#include "io/hdf5.h"

#include <hdf5.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libhdf5 1.12 renamed the link API (info2); both are spelled here as in 1.10. */
#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t link_info;
#define LINK_INFO(loc, name, info) H5Lget_info2(loc, name, info, H5P_DEFAULT)
#define LINK_ITERATE H5Literate2
#else
typedef H5L_info_t link_info;
#define LINK_INFO(loc, name, info) H5Lget_info(loc, name, info, H5P_DEFAULT)
#define LINK_ITERATE H5Literate
#endif

#define REASON_LEN 200
/* Longest per-image name: the decimal digits of ML_H5_MAX_ROWS - 1. */
#define INDEX_DIGITS 20

static const unsigned char h5_signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

int ml_h5_is_hdf5(const char *path) {
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return n == sizeof b && !memcmp(b, h5_signature, sizeof b);
}

/* ------------------------------------------------------------------------------------------
 * errors */

static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc && *e->desc) snprintf(data, REASON_LEN, "%s", e->desc);
    return 0;
}

/* libhdf5's most specific description of its last failure, then its stack cleared. */
static const char *reason(char buf[REASON_LEN]) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf[0] ? buf : "libhdf5 gives no reason";
}

static int h5_fail(ml_err *err, const char *path, const char *dset, const char *what) {
    char r[REASON_LEN];
    reason(r);
    if (dset) return ml_errf(err, "%s: dataset \"%s\": %s: %s", path, dset, what, r);
    return ml_errf(err, "%s: %s: %s", path, what, r);
}

static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ------------------------------------------------------------------------------------------
 * datasets */

static const char *class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

/* float16 (IEEE half: sign 15, exponent 10..14 with bias 15, mantissa 0..9), float32,
 * float64; libhdf5 converts any of them, in either byte order, to native float. */
static int float_type(hid_t type, const char *path, const char *name, ml_dtype *dt,
                      ml_err *err) {
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT && size == 4) {
        *dt = ML_F32;
        return 0;
    }
    if (cls == H5T_FLOAT && size == 8) {
        *dt = ML_F64;
        return 0;
    }
    if (cls == H5T_FLOAT && size == 2) {
        size_t spos, epos, esize, mpos, msize;
        if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) >= 0 && spos == 15 &&
            epos == 10 && esize == 5 && mpos == 0 && msize == 10 && H5Tget_ebias(type) == 15) {
            *dt = ML_F16;
            return 0;
        }
    }
    H5Eclear2(H5E_DEFAULT);
    return ml_errf(err, "%s: dataset \"%s\" holds %zu-byte %s values; float16, float32 or "
                        "float64 are expected", path, name, size, class_name(cls));
}

/* The chunks must be small enough to decompress, and every filter decodable here. */
static int check_storage(hid_t d, int rank, size_t esize, const char *path, const char *name,
                         hsize_t *chunk, ml_err *err) {
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) return h5_fail(err, path, name, "cannot read its creation properties");
    int rc = 0;
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
        if (H5Pget_chunk(dcpl, rank, chunk) != rank) {
            rc = h5_fail(err, path, name, "cannot read its chunk shape");
        } else {
            uint64_t bytes = esize;
            for (int i = 0; i < rank && rc == 0; i++)
                if (chunk[i] == 0 || __builtin_mul_overflow(bytes, (uint64_t)chunk[i], &bytes) ||
                    bytes > ML_H5_MAX_CHUNK_BYTES)
                    rc = ml_errf(err, "%s: dataset \"%s\" is stored in chunks of more than "
                                      "%llu MiB (or of zero size), which this reader does not "
                                      "decompress; re-save it with smaller chunks", path, name,
                                 (unsigned long long)(ML_H5_MAX_CHUNK_BYTES >> 20));
        }
    } else {
        for (int i = 0; i < rank; i++) chunk[i] = 0;
    }
    int nf = rc == 0 ? H5Pget_nfilters(dcpl) : 0;
    if (nf < 0) rc = h5_fail(err, path, name, "cannot read its filters");
    for (int i = 0; rc == 0 && i < nf; i++) {
        unsigned flags, config = 0;
        size_t nvals = 0;
        char fname[64] = "";
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nvals, NULL, sizeof fname,
                                         fname, &config);
        if (id < 0) {
            rc = h5_fail(err, path, name, "cannot read its filters");
            break;
        }
        unsigned info = 0;
        if (H5Zfilter_avail(id) <= 0 || H5Zget_filter_info(id, &info) < 0 ||
            !(info & H5Z_FILTER_CONFIG_DECODE_ENABLED)) {
            H5Eclear2(H5E_DEFAULT);
            rc = ml_errf(err, "%s: dataset \"%s\" is compressed with filter %d (%s), which the "
                              "libhdf5 here cannot decode; re-save it with compression=\"gzip\"",
                         path, name, (int)id, fname[0] ? fname : "unnamed");
        }
    }
    H5Pclose(dcpl);
    return rc;
}

/* A hard link to a dataset of `rank` dimensions of floats; dims and dtype out. */
static int check_dataset(hid_t d, const char *path, const char *name, int rank, hsize_t *dims,
                         ml_dtype *dt, hsize_t *chunk, ml_err *err) {
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    int rc = 0;
    if (space < 0 || type < 0) {
        rc = h5_fail(err, path, name, "cannot read its shape and type");
    } else if (H5Sget_simple_extent_type(space) != H5S_SIMPLE ||
               H5Sget_simple_extent_ndims(space) != rank) {
        int got = H5Sget_simple_extent_type(space) == H5S_SIMPLE
                      ? H5Sget_simple_extent_ndims(space) : 0;
        H5Eclear2(H5E_DEFAULT);
        rc = ml_errf(err, "%s: dataset \"%s\" has %d dimensions; %s", path, name, got,
                     rank == 2 ? "(images, features) = 2 are expected"
                               : "one per image, each (features,) = 1, is expected");
    } else if (H5Sget_simple_extent_dims(space, dims, NULL) != rank) {
        rc = h5_fail(err, path, name, "cannot read its shape");
    } else {
        rc = float_type(type, path, name, dt, err);
    }
    if (rc == 0) rc = check_storage(d, rank, ml_dtype_size(*dt), path, name, chunk, err);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return rc;
}

static int check_link(hid_t file, const char *path, const char *name, ml_err *err) {
    link_info info;
    if (LINK_INFO(file, name, &info) < 0)
        return h5_fail(err, path, name, "cannot read the link");
    if (info.type != H5L_TYPE_HARD)
        return ml_errf(err, "%s: \"%s\" is a %s link; only datasets stored in the file itself "
                            "are read", path, name,
                       info.type == H5L_TYPE_SOFT ? "soft" : "external");
    return 0;
}

static int check_cols(const char *path, const char *name, hsize_t cols, ml_err *err) {
    if (cols < 1 || cols > (hsize_t)ML_H5_MAX_COLS)
        return ml_errf(err, "%s: dataset \"%s\" has %llu features; 1..%lld are accepted", path,
                       name, (unsigned long long)cols, (long long)ML_H5_MAX_COLS);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * the two layouts */

/* `representations` (N, D), reopened with a chunk cache that holds one band of chunks. */
static int open_matrix(ml_h5mat *m, ml_err *err) {
    const char *name = ML_H5_DATASET;
    if (check_link((hid_t)m->file, m->path, name, err)) return -1;
    hid_t d = H5Dopen2((hid_t)m->file, name, H5P_DEFAULT);
    if (d < 0) return h5_fail(err, m->path, name, "cannot open it (is it a group?)");
    hsize_t dims[2], chunk[2];
    int rc = check_dataset(d, m->path, name, 2, dims, &m->dtype, chunk, err);
    H5Dclose(d);
    if (rc) return -1;
    if (dims[0] < 1 || dims[0] > (hsize_t)ML_H5_MAX_ROWS)
        return ml_errf(err, "%s: dataset \"%s\" has %llu rows; 1..%lld are accepted", m->path,
                       name, (unsigned long long)dims[0], (long long)ML_H5_MAX_ROWS);
    if (check_cols(m->path, name, dims[1], err)) return -1;
    m->rows = (int64_t)dims[0];
    m->cols = (int64_t)dims[1];
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl < 0) return h5_fail(err, m->path, name, "cannot make access properties");
    if (chunk[0] > 0) {
        uint64_t band = (dims[1] + chunk[1] - 1) / chunk[1];
        if (band > ML_H5_MAX_BAND_CHUNKS) {
            H5Pclose(dapl);
            return ml_errf(err, "%s: dataset \"%s\": a row spans %llu chunks of %llu columns, "
                                "more than the %llu this reader accepts; re-save it with wider "
                                "chunks", m->path, name, (unsigned long long)band,
                           (unsigned long long)chunk[1],
                           (unsigned long long)ML_H5_MAX_BAND_CHUNKS);
        }
        size_t bytes = (size_t)band * (size_t)chunk[0] * (size_t)chunk[1] *
                       ml_dtype_size(m->dtype); /* <= 2^16 chunks of <= 16 MiB */
        if (bytes > ML_H5_MAX_CACHE_BYTES) bytes = ML_H5_MAX_CACHE_BYTES;
        size_t chunk_bytes = (size_t)chunk[0] * (size_t)chunk[1] * ml_dtype_size(m->dtype);
        size_t slots = 100 * (bytes / chunk_bytes) + 1;
        if (slots > ML_H5_MAX_CACHE_SLOTS) slots = ML_H5_MAX_CACHE_SLOTS;
        if (H5Pset_chunk_cache(dapl, slots, bytes, 1.0) < 0) {
            H5Pclose(dapl);
            return h5_fail(err, m->path, name, "cannot size its chunk cache");
        }
    }
    m->dset = H5Dopen2((hid_t)m->file, name, dapl);
    H5Pclose(dapl);
    if (m->dset < 0) return h5_fail(err, m->path, name, "cannot open it");
    return 0;
}

/* "0", "17": a canonical decimal below ML_H5_MAX_ROWS (no sign, no leading zero). */
static int index_name(const char *s, int64_t *out) {
    size_t n = strlen(s);
    if (n == 0 || n > INDEX_DIGITS || (n > 1 && s[0] == '0')) return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
        if (v >= ML_H5_MAX_ROWS) return 0;
    }
    *out = v;
    return 1;
}

typedef struct scan {
    int64_t count, max;
    char bad[80];  /* the first name that is not an index, or of a link that is not hard */
    int not_hard;
} scan;

static herr_t scan_link(hid_t g, const char *name, const link_info *info, void *data) {
    scan *s = data;
    int64_t i;
    (void)g;
    if (!index_name(name, &i) || info->type != H5L_TYPE_HARD || s->count >= ML_H5_MAX_ROWS) {
        snprintf(s->bad, sizeof s->bad, "%s", name);
        s->not_hard = info->type != H5L_TYPE_HARD;
        return 1; /* stop */
    }
    s->count++;
    if (i > s->max) s->max = i;
    return 0;
}

/* Datasets "0".."N-1" at the root, each (D,); only "0" is opened here. */
static int open_per_image(ml_h5mat *m, ml_err *err) {
    scan s = {.count = 0, .max = -1};
    hsize_t idx = 0;
    if (LINK_ITERATE((hid_t)m->file, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, scan_link, &s) < 0)
        return h5_fail(err, m->path, NULL, "cannot list the datasets at the root");
    if (s.bad[0] && s.count >= ML_H5_MAX_ROWS)
        return ml_errf(err, "%s: more than %lld datasets at the root; that many images are "
                            "not accepted", m->path, (long long)ML_H5_MAX_ROWS);
    if (s.bad[0])
        return ml_errf(err, "%s: no dataset \"%s\", and \"%.64s\" is %s; a backbone file holds "
                            "either \"%s\" (images, features) or one dataset per image named "
                            "\"0\", \"1\", ... in image order", m->path, ML_H5_DATASET, s.bad,
                       s.not_hard ? "a soft or external link" : "not an image number",
                       ML_H5_DATASET);
    if (s.count == 0)
        return ml_errf(err, "%s: the file holds no dataset \"%s\" and no per-image datasets "
                            "\"0\", \"1\", ...", m->path, ML_H5_DATASET);
    if (s.max + 1 != s.count) {
        /* names are unique, so one of 0..count is missing */
        int64_t gap = 0;
        char name[INDEX_DIGITS + 4];
        for (; gap <= s.count; gap++) {
            snprintf(name, sizeof name, "%lld", (long long)gap);
            if (H5Lexists((hid_t)m->file, name, H5P_DEFAULT) <= 0) break;
        }
        H5Eclear2(H5E_DEFAULT);
        return ml_errf(err, "%s: per-image dataset \"%lld\" is missing but \"%lld\" is present; "
                            "the datasets must be numbered 0..N-1 without a gap", m->path,
                       (long long)gap, (long long)s.max);
    }
    hid_t d = H5Dopen2((hid_t)m->file, "0", H5P_DEFAULT);
    if (d < 0) return h5_fail(err, m->path, "0", "cannot open it (is it a group?)");
    hsize_t dims[1], chunk[1];
    int rc = check_dataset(d, m->path, "0", 1, dims, &m->dtype, chunk, err);
    H5Dclose(d);
    if (rc || check_cols(m->path, "0", dims[0], err)) return -1;
    m->per_image = 1;
    m->rows = s.count;
    m->cols = (int64_t)dims[0];
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * opening */

static int open_file(ml_h5mat *m, hid_t fapl, ml_err *err) {
    quiet();
#if H5_VERSION_GE(1, 10, 7)
    /* read-only: no need for locks (which fail on read-only and network file systems) */
    H5Pset_file_locking(fapl, 0, 1);
#endif
    m->file = H5Fopen(m->path, H5F_ACC_RDONLY, fapl);
    if (m->file < 0) return h5_fail(err, m->path, NULL, "not a readable HDF5 file");
    htri_t has = H5Lexists((hid_t)m->file, ML_H5_DATASET, H5P_DEFAULT);
    if (has < 0) return h5_fail(err, m->path, NULL, "cannot read the root group");
    return has ? open_matrix(m, err) : open_per_image(m, err);
}

static int start(ml_h5mat *m, const char *path, ml_err *err) {
    memset(m, 0, sizeof *m);
    m->file = m->dset = -1;
    m->path = strdup(path);
    if (!m->path) return ml_errf(err, "out of memory");
    return 0;
}

int ml_h5mat_open(ml_h5mat *m, const char *path, ml_err *err) {
    if (start(m, path, err)) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        ml_h5mat_free(m);
        return ml_errf(err, "%s: cannot open: %s", path, strerror(e));
    }
    fclose(f);
    quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    int rc = fapl < 0 ? h5_fail(err, path, NULL, "cannot make access properties")
                      : open_file(m, fapl, err);
    if (fapl >= 0) H5Pclose(fapl);
    if (rc) ml_h5mat_free(m);
    return rc;
}

int ml_h5mat_open_mem(ml_h5mat *m, const char *name, const void *buf, size_t len,
                      ml_err *err) {
    if (start(m, name, err)) return -1;
    quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    int rc = 0;
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ||
        H5Pset_file_image(fapl, (void *)buf, len) < 0)
        rc = h5_fail(err, name, NULL, "cannot set up the in-memory file");
    if (rc == 0) rc = open_file(m, fapl, err);
    if (fapl >= 0) H5Pclose(fapl);
    if (rc) ml_h5mat_free(m);
    return rc;
}

void ml_h5mat_free(ml_h5mat *m) {
    if (!m) return;
    if (m->dset >= 0) H5Dclose((hid_t)m->dset);
    if (m->file >= 0) H5Fclose((hid_t)m->file);
    H5Eclear2(H5E_DEFAULT);
    free(m->path);
    memset(m, 0, sizeof *m);
    m->file = m->dset = -1;
}

/* ------------------------------------------------------------------------------------------
 * reading */

static int read_image(ml_h5mat *m, int64_t row, float *out, ml_err *err) {
    char name[INDEX_DIGITS + 4];
    snprintf(name, sizeof name, "%lld", (long long)row);
    if (check_link((hid_t)m->file, m->path, name, err)) return -1;
    hid_t d = H5Dopen2((hid_t)m->file, name, H5P_DEFAULT);
    if (d < 0) return h5_fail(err, m->path, name, "cannot open it (is it a group?)");
    hsize_t dims[1], chunk[1];
    ml_dtype dt;
    int rc = check_dataset(d, m->path, name, 1, dims, &dt, chunk, err);
    if (rc == 0 && dims[0] != (hsize_t)m->cols)
        rc = ml_errf(err, "%s: dataset \"%s\" has %llu features but \"0\" has %lld; every "
                          "image needs the same", m->path, name, (unsigned long long)dims[0],
                     (long long)m->cols);
    if (rc == 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = h5_fail(err, m->path, name, "cannot read it");
    H5Dclose(d);
    return rc;
}

/* rows [r0, r0 + n) of `representations` into buf (n, cols). */
static int read_run(ml_h5mat *m, int64_t r0, int64_t n, float *buf, ml_err *err) {
    hid_t fs = H5Dget_space((hid_t)m->dset);
    hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)n, (hsize_t)m->cols};
    hid_t ms = H5Screate_simple(2, count, NULL);
    int rc = 0;
    if (fs < 0 || ms < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread((hid_t)m->dset, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) < 0) {
        char what[96];
        snprintf(what, sizeof what, "cannot read rows %lld..%lld", (long long)r0,
                 (long long)(r0 + n - 1));
        rc = h5_fail(err, m->path, ML_H5_DATASET, what);
    }
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

typedef struct request {
    int64_t row;
    size_t at; /* index into the caller's rows and out */
} request;

static int by_row(const void *a, const void *b) {
    int64_t x = ((const request *)a)->row, y = ((const request *)b)->row;
    return (x > y) - (x < y);
}

/* The requests in row order; runs of consecutive rows are one read each, through a buffer of
 * at most ML_H5_READ_BYTES. */
static int read_matrix(ml_h5mat *m, const int64_t *rows, size_t n, float *out, ml_err *err) {
    size_t cols = (size_t)m->cols, per = ML_H5_READ_BYTES / (cols * sizeof(float));
    if (per < 1) per = 1;
    request *req = malloc(n * sizeof *req);
    float *buf = malloc(per * cols * sizeof *buf);
    if (!req || !buf) {
        free(req);
        free(buf);
        return ml_errf(err, "%s: out of memory", m->path);
    }
    for (size_t i = 0; i < n; i++) req[i] = (request){rows[i], i};
    qsort(req, n, sizeof *req, by_row);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n;) {
        int64_t r0 = req[i].row, r1 = r0; /* the run [r0, r1] */
        size_t j = i;
        while (j + 1 < n && req[j + 1].row <= r1 + 1 && (size_t)(req[j + 1].row - r0) < per)
            r1 = req[++j].row;
        rc = read_run(m, r0, r1 - r0 + 1, buf, err);
        for (size_t k = i; rc == 0 && k <= j; k++)
            memcpy(out + req[k].at * cols, buf + (size_t)(req[k].row - r0) * cols,
                   cols * sizeof(float));
        i = j + 1;
    }
    free(req);
    free(buf);
    return rc;
}

int ml_h5mat_read_rows(ml_h5mat *m, const int64_t *rows, size_t n_rows, float *out,
                       ml_err *err) {
    if (!rows && n_rows != (size_t)m->rows)
        return ml_errf(err, "%s: %zu rows asked for, the file has %lld", m->path, n_rows,
                       (long long)m->rows);
    int64_t *all = NULL;
    if (!rows && n_rows) {
        if (!(all = malloc(n_rows * sizeof *all))) return ml_errf(err, "out of memory");
        for (size_t i = 0; i < n_rows; i++) all[i] = (int64_t)i;
        rows = all;
    }
    int rc = 0;
    for (size_t i = 0; i < n_rows && rc == 0; i++)
        if (rows[i] < 0 || rows[i] >= m->rows)
            rc = ml_errf(err, "%s: row %lld asked for, the file has %lld rows", m->path,
                         (long long)rows[i], (long long)m->rows);
    quiet();
    if (rc == 0 && m->per_image)
        for (size_t i = 0; i < n_rows && rc == 0; i++)
            rc = read_image(m, rows[i], out + i * (size_t)m->cols, err);
    else if (rc == 0 && n_rows)
        rc = read_matrix(m, rows, n_rows, out, err);
    free(all);
    return rc;
}
