/* The tensor set: the index the format parsers fill, and reads of storage bytes (a byte range
 * of the file, or an entry of a torch.save zip) converted to f32. */
#include "io/tensorset_build.h"

#include <stdlib.h>
#include <string.h>
#include <zip.h>

void ml_tensorset_init(ml_tensorset *ts) {
    memset(ts, 0, sizeof *ts);
    ts->src.fd = -1;
}

void ml_tensorset_free(ml_tensorset *ts) {
    if (!ts) return;
    for (size_t i = 0; i < ts->n_tensors; i++) free(ts->tensors[i].name);
    for (size_t i = 0; i < ts->n_storages; i++) free(ts->storages[i].key);
    for (size_t i = 0; i < ts->n_meta; i++) {
        free(ts->meta[i].key);
        free(ts->meta[i].value);
    }
    free(ts->tensors);
    free(ts->storages);
    free(ts->meta);
    if (ts->zip) zip_discard(ts->zip);
    ml_source_free(&ts->src);
    free(ts->path);
    ml_tensorset_init(ts);
}

const ml_tensor *ml_tensorset_find(const ml_tensorset *ts, const char *name) {
    for (size_t i = 0; i < ts->n_tensors; i++)
        if (strcmp(ts->tensors[i].name, name) == 0) return &ts->tensors[i];
    return NULL;
}

const char *ml_tensorset_meta(const ml_tensorset *ts, const char *key) {
    for (size_t i = 0; i < ts->n_meta; i++)
        if (strcmp(ts->meta[i].key, key) == 0) return ts->meta[i].value;
    return NULL;
}

int64_t ml_tensor_numel(const ml_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0 || __builtin_mul_overflow(n, t->shape[i], &n)) return -1;
    return n;
}

/* Reads from an entry of the zip archive; seeks in stored entries, reads and skips in
 * compressed ones (libzip cannot seek those). */
static int read_zip_entry(const ml_tensorset *ts, const ml_storage *s, int64_t off, int64_t len,
                          void *dst, ml_err *err) {
    zip_t *za = ts->zip;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(za, (zip_uint64_t)s->zip_index, 0, &st) != 0)
        return ml_errf(err, "storage %s: zip entry %lld: %s", s->key, (long long)s->zip_index,
                       zip_strerror(za));
    if (!(st.valid & ZIP_STAT_SIZE) || st.size < (zip_uint64_t)(off + len))
        return ml_errf(err, "storage %s: zip entry %s holds %llu bytes, %lld needed", s->key,
                       st.name ? st.name : "?", (unsigned long long)st.size,
                       (long long)(off + len));
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)s->zip_index, 0);
    if (!zf)
        return ml_errf(err, "storage %s: cannot open zip entry %s: %s", s->key,
                       st.name ? st.name : "?", zip_strerror(za));
    int rc = 0;
    int stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
    if (off > 0 && stored && zip_fseek(zf, off, SEEK_SET) == 0) off = 0;
    unsigned char skip[1 << 16];
    while (rc == 0 && off > 0) {
        zip_int64_t want = off < (int64_t)sizeof skip ? off : (int64_t)sizeof skip;
        zip_int64_t got = zip_fread(zf, skip, (zip_uint64_t)want);
        if (got <= 0)
            rc = ml_errf(err, "storage %s: zip entry %s: read failed: %s", s->key,
                         st.name ? st.name : "?", got < 0 ? zip_file_strerror(zf) : "short");
        else
            off -= got;
    }
    unsigned char *p = dst;
    while (rc == 0 && len > 0) {
        zip_int64_t got = zip_fread(zf, p, (zip_uint64_t)len);
        if (got <= 0)
            rc = ml_errf(err, "storage %s: zip entry %s: read failed: %s", s->key,
                         st.name ? st.name : "?", got < 0 ? zip_file_strerror(zf) : "short");
        else {
            p += got;
            len -= got;
        }
    }
    if (zip_fclose(zf) != 0 && rc == 0)
        rc = ml_errf(err, "storage %s: zip entry %s is corrupt", s->key, st.name ? st.name : "?");
    return rc;
}

int ml_tensorset_read_storage(const ml_tensorset *ts, const ml_storage *s, int64_t off,
                              int64_t len, void *dst, ml_err *err) {
    if (off < 0 || len < 0 || off > s->nbytes || len > s->nbytes - off)
        return ml_errf(err, "storage %s: bytes [%lld, %lld) lie outside its %lld bytes", s->key,
                       (long long)off, (long long)off + (long long)len, (long long)s->nbytes);
    if (len == 0) return 0;
    if (s->src_offset >= 0) {
        if (s->src_offset > INT64_MAX - off) return ml_errf(err, "storage %s: bad offset", s->key);
        return ml_source_read(&ts->src, s->src_offset + off, len, dst, err);
    }
    if (!ts->zip || s->zip_index < 0)
        return ml_errf(err, "storage %s has no location in the file", s->key);
    return read_zip_entry(ts, s, off, len, dst, err);
}

static int is_real_float(ml_dtype dt) {
    return dt == ML_F32 || dt == ML_F64 || dt == ML_F16 || dt == ML_BF16;
}

/* Converts a contiguous run of storage elements in chunks, so a large f16 tensor never needs
 * a second full-size buffer. */
static int read_contiguous(const ml_tensorset *ts, const ml_storage *s, ml_dtype dt,
                           int64_t first, int64_t n, float *dst, ml_err *err) {
    size_t es = ml_dtype_size(dt);
    if (dt == ML_F32) return ml_tensorset_read_storage(ts, s, first * 4, n * 4, dst, err);
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = malloc(CHUNK * es);
    if (!buf) return ml_errf(err, "out of memory");
    int rc = 0;
    for (int64_t i = 0; rc == 0 && i < n; i += CHUNK) {
        int64_t m = n - i < CHUNK ? n - i : CHUNK;
        rc = ml_tensorset_read_storage(ts, s, (first + i) * (int64_t)es, m * (int64_t)es, buf, err);
        if (rc == 0) ml_convert_to_f32(dst + i, buf, dt, (size_t)m);
    }
    free(buf);
    return rc;
}

/* Copies a strided view: reads the extent of the storage it touches once, then gathers. */
static int read_strided(const ml_tensorset *ts, const ml_storage *s, const ml_tensor *t,
                        int64_t lo, int64_t hi, float *dst, ml_err *err) {
    size_t es = ml_dtype_size(t->dtype);
    int64_t ext = hi - lo + 1;
    unsigned char *buf = malloc((size_t)ext * es);
    if (!buf) return ml_errf(err, "out of memory reading a view of %lld elements", (long long)ext);
    if (ml_tensorset_read_storage(ts, s, lo * (int64_t)es, ext * (int64_t)es, buf, err) != 0) {
        free(buf);
        return -1;
    }
    int64_t idx[ML_MAX_NDIM] = {0};
    int64_t numel = ml_tensor_numel(t), pos = t->offset - lo;
    for (int64_t i = 0; i < numel; i++) {
        ml_convert_to_f32(dst + i, buf + pos * (int64_t)es, t->dtype, 1);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) {
                pos += t->stride[d];
                break;
            }
            pos -= (t->shape[d] - 1) * t->stride[d];
            idx[d] = 0;
        }
    }
    free(buf);
    return 0;
}

int ml_tensorset_read_f32(const ml_tensorset *ts, const ml_tensor *t, float *dst, ml_err *err) {
    if (!is_real_float(t->dtype))
        return ml_errf(err, "%s: tensor %s has dtype %s; a floating-point tensor is needed",
                       ts->path, t->name, ml_dtype_name(t->dtype));
    if (t->storage >= ts->n_storages)
        return ml_errf(err, "%s: tensor %s refers to a missing storage", ts->path, t->name);
    const ml_storage *s = &ts->storages[t->storage];
    int64_t numel = 1, lo = t->offset, hi = t->offset, expect = 1;
    int contiguous = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 0) return 0;
        int64_t span;
        if (__builtin_mul_overflow(t->shape[d] - 1, t->stride[d], &span) ||
            __builtin_add_overflow(span > 0 ? hi : lo, span, span > 0 ? &hi : &lo) ||
            __builtin_mul_overflow(numel, t->shape[d], &numel))
            return ml_errf(err, "%s: tensor %s: shape and strides overflow", ts->path, t->name);
        if (t->shape[d] > 1 && t->stride[d] != expect) contiguous = 0;
        expect = numel;
    }
    int64_t es = (int64_t)ml_dtype_size(t->dtype), end;
    if (lo < 0 || __builtin_mul_overflow(hi + 1, es, &end) || end > s->nbytes)
        return ml_errf(err, "%s: tensor %s: its view (offset %lld, elements %lld..%lld) lies "
                            "outside its storage of %lld bytes",
                       ts->path, t->name, (long long)t->offset, (long long)lo, (long long)hi,
                       (long long)s->nbytes);
    int rc = contiguous ? read_contiguous(ts, s, t->dtype, t->offset, numel, dst, err)
                        : read_strided(ts, s, t, lo, hi, dst, err);
    if (rc != 0) ml_err_prefix(err, "%s: tensor %s", ts->path, t->name);
    return rc;
}

/* Grows an array of n elements to hold one more; *cap is its capacity. */
static int grow(void **arr, size_t n, size_t *cap, size_t elem, ml_err *err) {
    if (n < *cap) return 0;
    size_t ncap = *cap ? 2 * *cap : 16;
    void *p = realloc(*arr, ncap * elem);
    if (!p) return ml_errf(err, "out of memory");
    *arr = p;
    *cap = ncap;
    return 0;
}

int ml_tensorset_add_storage(ml_tensorset *ts, const ml_storage *s, size_t *index, ml_err *err) {
    if (s->nbytes < 0 || (s->src_offset < 0 && s->zip_index < 0))
        return ml_errf(err, "storage %s: bad size or location", s->key);
    if (grow((void **)&ts->storages, ts->n_storages, &ts->cap_storages, sizeof *s, err) != 0)
        return -1;
    ml_storage *dst = &ts->storages[ts->n_storages];
    *dst = *s;
    dst->key = strdup(s->key ? s->key : "");
    if (!dst->key) return ml_errf(err, "out of memory");
    if (index) *index = ts->n_storages;
    ts->n_storages++;
    return 0;
}

static const char *strip_prefixes(const char *name) {
    for (;;) {
        if (strncmp(name, "_orig_mod.", 10) == 0)
            name += 10;
        else if (strncmp(name, "module.", 7) == 0)
            name += 7;
        else
            return name;
    }
}

int ml_tensorset_add_tensor(ml_tensorset *ts, const ml_tensor *t, ml_err *err) {
    const char *name = strip_prefixes(t->name);
    if (t->ndim < 0 || t->ndim > ML_MAX_NDIM)
        return ml_errf(err, "tensor %s has %d dimensions (at most %d are supported)", name,
                       t->ndim, ML_MAX_NDIM);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0) return ml_errf(err, "tensor %s has a negative size", name);
    if (ml_tensor_numel(t) < 0) return ml_errf(err, "tensor %s: shape too large", name);
    if ((unsigned)t->dtype >= ML_DTYPE_COUNT) return ml_errf(err, "tensor %s: bad dtype", name);
    if (t->storage >= ts->n_storages || t->offset < 0)
        return ml_errf(err, "tensor %s: bad storage or offset", name);
    if (ml_tensorset_find(ts, name))
        return ml_errf(err, "tensor %s appears twice (prefixes _orig_mod. and module. are "
                            "ignored)", name);
    if (grow((void **)&ts->tensors, ts->n_tensors, &ts->cap_tensors, sizeof *t, err) != 0)
        return -1;
    ml_tensor *dst = &ts->tensors[ts->n_tensors];
    *dst = *t;
    dst->name = strdup(name);
    if (!dst->name) return ml_errf(err, "out of memory");
    ts->n_tensors++;
    return 0;
}

int ml_tensorset_add_meta(ml_tensorset *ts, const char *key, const char *value, ml_err *err) {
    char *v = strdup(value);
    if (!v) return ml_errf(err, "out of memory");
    for (size_t i = 0; i < ts->n_meta; i++) {
        if (strcmp(ts->meta[i].key, key) == 0) {
            free(ts->meta[i].value);
            ts->meta[i].value = v;
            return 0;
        }
    }
    char *k = strdup(key);
    if (!k || grow((void **)&ts->meta, ts->n_meta, &ts->cap_meta, sizeof *ts->meta, err) != 0) {
        free(k);
        free(v);
        return ml_errf(err, "out of memory");
    }
    ts->meta[ts->n_meta].key = k;
    ts->meta[ts->n_meta].value = v;
    ts->n_meta++;
    return 0;
}
