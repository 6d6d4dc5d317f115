/* .npy headers and float matrices from .npy / .npz (io/npy.h).
 *
 * A per-image backbone is 26,107 rows but the service keeps only the 1,854 rows of the first
 * image of each concept, so rows are read on demand: the requested rows are sorted and each
 * array is walked once, reading runs of consecutive rows at their offsets (a .npy file, a
 * stored .npz entry, a memory buffer) or streaming a deflated entry through one small buffer. */
#include "io/npy.h"
#include "io/textmat.h"
#include "util/cpus.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

/* Bytes of one read (rows are grouped up to this size). */
#define NPMAT_CHUNK ((size_t)1 << 20)
/* zlib cannot expand data more than about 1032:1, so a larger claimed size is a lie. */
#define DEFLATE_MAX_RATIO 1032

/* ---------------------------------------------------------------------------------------- */
/* sources */

static void zip_err_msg(zip_t *z, zip_file_t *zf, char *buf, size_t n) {
    const char *s = zf ? zip_file_strerror(zf) : z ? zip_strerror(z) : "unknown error";
    snprintf(buf, n, "%s", s);
}

/* Reads exactly n bytes from an open zip entry. */
static int zread_full(zip_file_t *zf, void *dst, size_t n) {
    unsigned char *p = dst;
    while (n) {
        zip_int64_t r = zip_fread(zf, p, n);
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* One array's bytes, read at increasing offsets. */
typedef struct reader {
    ml_npmat *m;
    const ml_nparray *a;
    zip_file_t *zf;
    uint64_t pos; /* stream position in a deflated entry */
} reader;

static int reader_open(reader *r, ml_npmat *m, const ml_nparray *a, ml_err *err) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->a = a;
    if (a->zip_index < 0) return 0;
    r->zf = zip_fopen_index(m->zip, (zip_uint64_t)a->zip_index, 0);
    if (!r->zf) {
        char why[256];
        zip_err_msg(m->zip, NULL, why, sizeof why);
        return ml_errf(err, "%s: %s: cannot open the entry: %s", m->path, a->entry, why);
    }
    return 0;
}

static void reader_close(reader *r) {
    if (r->zf) zip_fclose(r->zf);
    r->zf = NULL;
}

/* n bytes at byte offset off of the array's entry (or file); off never decreases. */
static int reader_at(reader *r, uint64_t off, void *dst, size_t n, void *scratch,
                     size_t scratch_len, ml_err *err) {
    ml_npmat *m = r->m;
    const ml_nparray *a = r->a;
    const char *entry = a->entry ? a->entry : "";
    const char *sep = a->entry ? ": " : "";
    if (a->zip_index < 0) {
        if (ml_source_read(&m->src, (int64_t)off, (int64_t)n, dst, err) != 0)
            return ml_err_prefix(err, "%s", m->path);
        return 0;
    }
    if (!a->compressed) {
        if (zip_fseek(r->zf, (zip_int64_t)off, SEEK_SET) == 0 && zread_full(r->zf, dst, n) == 0)
            return 0;
    } else {
        while (r->pos < off && scratch_len) {
            uint64_t left = off - r->pos;
            size_t k = left < scratch_len ? (size_t)left : scratch_len;
            if (zread_full(r->zf, scratch, k)) break;
            r->pos += k;
        }
        if (r->pos == off && zread_full(r->zf, dst, n) == 0) {
            r->pos += n;
            return 0;
        }
    }
    char why[256];
    zip_err_msg(m->zip, r->zf, why, sizeof why);
    return ml_errf(err, "%s%s%s: reading %zu bytes at offset %llu failed: %s", m->path, sep,
                   entry, n, (unsigned long long)off, why);
}

/* ---------------------------------------------------------------------------------------- */
/* opening */

static int64_t array_bytes(const ml_npy_header *h) {
    return h->shape[0] * h->shape[1] * (int64_t)ml_dtype_size(h->dtype);
}

/* Checks one array's header against the matrix so far and appends it. */
static int add_array(ml_npmat *m, const ml_nparray *a, const char *label, ml_err *err) {
    const ml_npy_header *h = &a->h;
    if (h->ndim != 2) {
        char shape[128] = "";
        size_t o = 0;
        for (int i = 0; i < h->ndim && o < sizeof shape - 24; i++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, i ? ", %lld" : "%lld",
                                  (long long)h->shape[i]);
        return ml_errf(err, "%s%s: the array has shape (%s%s); it must be 2-D (rows, columns)",
                       m->path, label, shape, h->ndim == 1 ? "," : "");
    }
    if (h->shape[0] == 0) return ml_errf(err, "%s%s: the array has no rows", m->path, label);
    if (m->n_arrays && h->shape[0] != m->rows)
        return ml_errf(err,
                       "%s%s: the array has %lld rows but %s has %lld; all arrays must have "
                       "one row per item (or per image)",
                       m->path, label, (long long)h->shape[0],
                       m->arrays[0].entry ? m->arrays[0].entry : "the first", (long long)m->rows);
    /* Caps what a header may claim before it is checked against the real data size. */
    if (h->shape[1] > (INT64_MAX / 8) / h->shape[0] || m->cols > INT_MAX - h->shape[1])
        return ml_errf(err, "%s%s: the array is implausibly large", m->path, label);
    ml_nparray *arr = realloc(m->arrays, (m->n_arrays + 1) * sizeof *arr);
    if (!arr) return ml_errf(err, "%s: out of memory", m->path);
    m->arrays = arr;
    arr[m->n_arrays] = *a;
    arr[m->n_arrays].col0 = m->cols;
    arr[m->n_arrays].cols = h->shape[1];
    m->rows = h->shape[0];
    m->cols += h->shape[1];
    m->n_arrays++;
    return 0;
}

/* Reads the header at the start of an array's bytes (size of them in all). label is ""
 * for a bare .npy or ": <entry>". */
static int read_header(ml_npmat *m, ml_nparray *a, const char *label, uint64_t size,
                       ml_err *err) {
    reader r;
    if (reader_open(&r, m, a, err)) return -1;
    unsigned char *hb = NULL;
    size_t have = 0, need = ML_NPY_PREAMBLE;
    int rc = 1;
    while (rc == 1) {
        if (need > size) {
            rc = ml_errf(err, "%s%s: truncated .npy header", m->path, label);
            break;
        }
        unsigned char *nb = realloc(hb, need);
        if (!nb) {
            rc = ml_errf(err, "%s: out of memory", m->path);
            break;
        }
        hb = nb;
        if (reader_at(&r, have, hb + have, need - have, NULL, 0, err)) {
            rc = -1;
            break;
        }
        have = need;
        rc = ml_npy_parse_header(hb, have, &a->h, &need, err);
        if (rc == -1) ml_err_prefix(err, "%s%s", m->path, label);
    }
    free(hb);
    reader_close(&r);
    return rc;
}

/* Appends the array and checks its data fits in the size bytes of its file or entry. */
static int add_checked(ml_npmat *m, const ml_nparray *a, const char *label, uint64_t size,
                       ml_err *err) {
    if (add_array(m, a, label, err)) return -1;
    const ml_npy_header *h = &a->h;
    uint64_t want = h->data_offset + (uint64_t)array_bytes(h);
    if (size < want)
        return ml_errf(err,
                       "%s%s: truncated: the header promises %lld x %lld %s values (%llu "
                       "bytes in all) but there are %llu bytes",
                       m->path, label, (long long)h->shape[0], (long long)h->shape[1],
                       ml_dtype_name(h->dtype), (unsigned long long)want,
                       (unsigned long long)size);
    return 0;
}

static int open_npy(ml_npmat *m, uint64_t size, ml_err *err) {
    ml_nparray a = {.zip_index = -1};
    if (read_header(m, &a, "", size, err)) return -1;
    return add_checked(m, &a, "", size, err);
}

static int open_npz(ml_npmat *m, uint64_t src_size, ml_err *err) {
    zip_int64_t n = zip_get_num_entries(m->zip, 0);
    if (n <= 0) return ml_errf(err, "%s: the .npz archive holds no arrays", m->path);
    for (zip_int64_t i = 0; i < n; i++) {
        zip_stat_t st;
        if (zip_stat_index(m->zip, (zip_uint64_t)i, 0, &st) ||
            (st.valid & (ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE |
                         ZIP_STAT_COMP_METHOD)) !=
                (ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD))
            return ml_errf(err, "%s: entry %lld: unreadable zip directory entry", m->path,
                           (long long)i);
        size_t nl = strlen(st.name);
        if (nl < 4 || strcmp(st.name + nl - 4, ".npy"))
            return ml_errf(err,
                           "%s: %s: not a .npy array; an .npz of features holds only .npy "
                           "entries (np.savez)",
                           m->path, st.name);
        if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
            return ml_errf(err, "%s: %s: the entry is encrypted", m->path, st.name);
        if (st.comp_method != ZIP_CM_STORE && st.comp_method != ZIP_CM_DEFLATE)
            return ml_errf(err,
                           "%s: %s: compression method %d is not supported (np.savez stores, "
                           "np.savez_compressed deflates)",
                           m->path, st.name, (int)st.comp_method);
        int compressed = st.comp_method == ZIP_CM_DEFLATE;
        if (st.comp_size > src_size ||
            (!compressed && st.size != st.comp_size) ||
            (compressed && st.size / DEFLATE_MAX_RATIO > st.comp_size + 1))
            return ml_errf(err, "%s: %s: the zip directory gives impossible sizes (corrupt "
                                "archive)", m->path, st.name);
        char label[512];
        snprintf(label, sizeof label, ": %s", st.name);
        ml_nparray a = {.zip_index = i, .compressed = compressed, .entry = strdup(st.name)};
        if (!a.entry) return ml_errf(err, "%s: out of memory", m->path);
        if (read_header(m, &a, label, st.size, err)) {
            free(a.entry);
            return -1;
        }
        if (add_checked(m, &a, label, st.size, err)) {
            if (m->n_arrays == 0 || m->arrays[m->n_arrays - 1].entry != a.entry) free(a.entry);
            return -1;
        }
    }
    if (m->cols == 0) return ml_errf(err, "%s: the arrays have no columns", m->path);
    return 0;
}

/* Reads the headers of the .npy or the .npz's arrays once the source is set. */
static int npmat_parse(ml_npmat *m, ml_err *err) {
    m->path = m->src.name;
    if (!ml_source_is_zip(&m->src)) return open_npy(m, (uint64_t)m->src.size, err);
    m->zip = ml_source_open_zip(&m->src, err);
    if (!m->zip) return ml_err_prefix(err, "%s: not a readable .npz archive", m->path);
    return open_npz(m, (uint64_t)m->src.size, err);
}

int ml_npmat_open(ml_npmat *m, const char *path, ml_err *err) {
    memset(m, 0, sizeof *m);
    if (ml_source_open_file(&m->src, path, "the array file", err) != 0) return -1;
    if (npmat_parse(m, err) != 0) {
        ml_npmat_free(m);
        return -1;
    }
    return 0;
}

int ml_npmat_open_mem(ml_npmat *m, const char *name, const void *buf, size_t len,
                      ml_err *err) {
    memset(m, 0, sizeof *m);
    if (ml_source_open_mem(&m->src, name, buf, len, err) != 0) return -1;
    if (npmat_parse(m, err) != 0) {
        ml_npmat_free(m);
        return -1;
    }
    return 0;
}

void ml_npmat_free(ml_npmat *m) {
    if (m->zip) zip_discard(m->zip);
    for (size_t i = 0; i < m->n_arrays; i++) free(m->arrays[i].entry);
    free(m->arrays);
    ml_source_free(&m->src);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------------------------------- */
/* reading rows */

typedef struct row_ref {
    int64_t row;
    size_t out; /* output row */
} row_ref;

static int cmp_row_ref(const void *a, const void *b) {
    const row_ref *x = a, *y = b;
    if (x->row != y->row) return x->row < y->row ? -1 : 1;
    return x->out < y->out ? -1 : x->out > y->out;
}

static void byteswap(unsigned char *p, size_t n_elems, size_t size) {
    for (size_t i = 0; i < n_elems; i++, p += size)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Copies the selected rows of one array into its columns of out. */
static int read_array(ml_npmat *m, const ml_nparray *a, const row_ref *refs, size_t n,
                      float *out, unsigned char *chunk, size_t chunk_len, ml_err *err) {
    size_t esize = ml_dtype_size(a->h.dtype);
    size_t row_bytes = (size_t)a->cols * esize;
    if (row_bytes == 0) return 0;
    size_t run_max = chunk_len / row_bytes;
    reader r;
    if (reader_open(&r, m, a, err)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        /* A run of consecutive distinct rows r0 .. r1-1, refs[i .. j). */
        int64_t r0 = refs[i].row, r1 = r0 + 1;
        size_t j = i + 1;
        while (j < n && (refs[j].row == r1 - 1 || (refs[j].row == r1 && (size_t)(r1 - r0) < run_max))) {
            if (refs[j].row == r1) r1++;
            j++;
        }
        size_t nb = (size_t)(r1 - r0) * row_bytes;
        rc = reader_at(&r, a->h.data_offset + (uint64_t)r0 * row_bytes, chunk, nb, chunk,
                       chunk_len, err);
        if (rc) break;
        if (a->h.big_endian) byteswap(chunk, nb / esize, esize);
        for (size_t k = i; k < j; k++)
            ml_convert_to_f32(out + refs[k].out * (size_t)m->cols + a->col0,
                              chunk + (size_t)(refs[k].row - r0) * row_bytes, a->h.dtype,
                              (size_t)a->cols);
        i = j;
    }
    reader_close(&r);
    return rc;
}

/* Inflating costs about 7 ns per byte (1.8 s for a 240 MB backbone), so the arrays of an
 * archive with deflated entries are read in parallel, one thread per array (up to 8) when
 * there is more than one core: three arrays on two cores then finish together instead of
 * one core doing two of them. libzip handles must not be shared between threads: every
 * thread but the caller's opens the archive again; each writes only its arrays' columns. */
#define NPMAT_MAX_THREADS 8

typedef struct array_task {
    ml_npmat *m;
    const row_ref *refs;
    size_t n_refs;
    float *out;
    size_t first, step; /* arrays first, first + step, ... */
    size_t chunk_len;
    int own_zip;        /* open a private handle on the archive */
    int rc;
    ml_err err;
} array_task;

static void *array_task_run(void *arg) {
    array_task *t = arg;
    ml_npmat view = *t->m; /* the same arrays, maybe over a private zip handle */
    if (t->own_zip) {
        view.zip = ml_source_open_zip(&view.src, &t->err);
        t->rc = view.zip ? 0 : ml_err_prefix(&t->err, "%s: cannot open the archive again", view.path);
    }
    unsigned char *chunk = t->rc ? NULL : malloc(t->chunk_len);
    if (t->rc == 0 && !chunk) t->rc = ml_errf(&t->err, "%s: out of memory", view.path);
    for (size_t i = t->first; i < view.n_arrays && t->rc == 0; i += t->step)
        t->rc = read_array(&view, &view.arrays[i], t->refs, t->n_refs, t->out, chunk,
                           t->chunk_len, &t->err);
    free(chunk);
    if (t->own_zip && view.zip) zip_discard(view.zip);
    return NULL;
}

static size_t npmat_threads(const ml_npmat *m) {
    int deflated = 0;
    for (size_t i = 0; i < m->n_arrays; i++) deflated |= m->arrays[i].compressed;
    size_t n = deflated && ml_cpus_usable() > 1 ? m->n_arrays : 1;
    return n < NPMAT_MAX_THREADS ? n : NPMAT_MAX_THREADS;
}

int ml_npmat_read_rows(ml_npmat *m, const int64_t *rows, size_t n_rows, float *out,
                       ml_err *err) {
    if (!rows && (int64_t)n_rows != m->rows)
        return ml_errf(err, "%s: %zu rows requested but the file has %lld", m->path, n_rows,
                       (long long)m->rows);
    if (n_rows == 0) return 0;
    row_ref *refs = malloc(n_rows * sizeof *refs);
    if (!refs) return ml_errf(err, "%s: out of memory", m->path);
    for (size_t i = 0; i < n_rows; i++) {
        refs[i].row = rows ? rows[i] : (int64_t)i;
        refs[i].out = i;
        if (refs[i].row < 0 || refs[i].row >= m->rows) {
            free(refs);
            return ml_errf(err, "%s: row %lld requested but the file has %lld rows", m->path,
                           (long long)(rows ? rows[i] : 0), (long long)m->rows);
        }
    }
    if (rows) qsort(refs, n_rows, sizeof *refs, cmp_row_ref);
    /* A chunk holds at least one row of the widest array. */
    size_t chunk_len = NPMAT_CHUNK;
    for (size_t i = 0; i < m->n_arrays; i++) {
        size_t rb = (size_t)m->arrays[i].cols * ml_dtype_size(m->arrays[i].h.dtype);
        if (rb > chunk_len) chunk_len = rb;
    }
    size_t n_tasks = npmat_threads(m);
    array_task tasks[NPMAT_MAX_THREADS];
    pthread_t threads[NPMAT_MAX_THREADS];
    int started[NPMAT_MAX_THREADS] = {0};
    for (size_t t = 0; t < n_tasks; t++) {
        tasks[t] = (array_task){.m = m, .refs = refs, .n_refs = n_rows, .out = out,
                                .first = t, .step = n_tasks, .chunk_len = chunk_len,
                                .own_zip = t > 0};
        if (t > 0) started[t] = pthread_create(&threads[t], NULL, array_task_run, &tasks[t]) == 0;
    }
    array_task_run(&tasks[0]);
    int rc = 0;
    for (size_t t = 0; t < n_tasks; t++) {
        if (t > 0 && started[t]) pthread_join(threads[t], NULL);
        else if (t > 0) array_task_run(&tasks[t]); /* no thread: do its share here */
        if (tasks[t].rc && !rc) {
            rc = -1;
            if (err) *err = tasks[t].err;
        }
    }
    free(refs);
    return rc;
}

int ml_npmat_read(const char *path, const int64_t *rows, size_t n_rows, float **out,
                  int64_t *n_total_rows, int64_t *n_cols, ml_err *err) {
    ml_npmat m;
    *out = NULL;
    if (ml_npmat_open(&m, path, err)) return -1;
    size_t n = rows ? n_rows : (size_t)m.rows;
    float *x = malloc((n ? n : 1) * (size_t)m.cols * sizeof *x);
    if (!x) {
        ml_npmat_free(&m);
        return ml_errf(err, "%s: out of memory for %zu x %lld floats", path, n,
                       (long long)m.cols);
    }
    if (ml_npmat_read_rows(&m, rows, n, x, err)) {
        free(x);
        ml_npmat_free(&m);
        return -1;
    }
    *out = x;
    *n_total_rows = m.rows;
    *n_cols = m.cols;
    ml_npmat_free(&m);
    return 0;
}
