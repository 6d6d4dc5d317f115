/* safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then
 * the data; offsets count from the first byte after the header. Every tensor becomes its own
 * storage, a byte range of the file, read only when the model asks for it. */
#include "io/safetensors.h"
#include "io/tensorset_build.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The reference implementation's limit; a larger header is corruption or an attack. */
#define MAX_HEADER_BYTES (100 * 1000 * 1000)

static int parse_dtype(const char *s, ml_dtype *dt) {
    static const struct {
        const char *name;
        ml_dtype dt;
    } names[] = {{"F32", ML_F32}, {"F64", ML_F64}, {"F16", ML_F16}, {"BF16", ML_BF16},
                 {"I64", ML_I64}, {"I32", ML_I32}, {"I16", ML_I16}, {"I8", ML_I8},
                 {"U8", ML_U8},   {"BOOL", ML_BOOL}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i].name) == 0) {
            *dt = names[i].dt;
            return 0;
        }
    }
    return -1;
}

static int parse_metadata(ml_tensorset *ts, json_t *md, ml_err *err) {
    if (!json_is_object(md)) return ml_errf(err, "header: __metadata__ is not a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(md, key, v) {
        if (!json_is_string(v))
            return ml_errf(err, "header: __metadata__.%s is not a string", key);
        if (ml_tensorset_add_meta(ts, key, json_string_value(v), err) != 0) return -1;
    }
    return 0;
}

/* One header entry: checks dtype, shape and offsets against the data section, then records
 * the storage (its absolute file range) and the tensor. */
static int parse_tensor(ml_tensorset *ts, const char *name, json_t *info, int64_t data_start,
                        int64_t data_len, ml_err *err) {
    if (!json_is_object(info)) return ml_errf(err, "tensor %s: entry is not a JSON object", name);
    json_t *jdt = json_object_get(info, "dtype");
    json_t *jshape = json_object_get(info, "shape");
    json_t *joffs = json_object_get(info, "data_offsets");
    if (!json_is_string(jdt) || !json_is_array(jshape) || !json_is_array(joffs))
        return ml_errf(err, "tensor %s: entry needs \"dtype\" (string), \"shape\" and "
                            "\"data_offsets\" (arrays)", name);
    ml_tensor t = {.name = (char *)name};
    if (parse_dtype(json_string_value(jdt), &t.dtype) != 0)
        return ml_errf(err, "tensor %s: unsupported dtype \"%s\" (supported: F32, F64, F16, "
                            "BF16, I64, I32, I16, I8, U8, BOOL)", name, json_string_value(jdt));
    size_t ndim = json_array_size(jshape);
    if (ndim > ML_MAX_NDIM)
        return ml_errf(err, "tensor %s: %zu dimensions (at most %d are supported)", name, ndim,
                       ML_MAX_NDIM);
    t.ndim = (int)ndim;
    int64_t numel = 1;
    for (size_t d = 0; d < ndim; d++) {
        json_t *jd = json_array_get(jshape, d);
        if (!json_is_integer(jd) || json_integer_value(jd) < 0)
            return ml_errf(err, "tensor %s: shape[%zu] is not a non-negative integer", name, d);
        t.shape[d] = json_integer_value(jd);
        if (__builtin_mul_overflow(numel, t.shape[d], &numel))
            return ml_errf(err, "tensor %s: shape too large", name);
    }
    int64_t stride = 1;
    for (int d = t.ndim - 1; d >= 0; d--) {
        t.stride[d] = stride;
        stride *= t.shape[d];
    }
    json_t *jb = json_array_get(joffs, 0), *je = json_array_get(joffs, 1);
    if (json_array_size(joffs) != 2 || !json_is_integer(jb) || !json_is_integer(je))
        return ml_errf(err, "tensor %s: data_offsets must be [begin, end]", name);
    int64_t begin = json_integer_value(jb), end = json_integer_value(je), nbytes;
    if (begin < 0 || end < begin || end > data_len)
        return ml_errf(err, "tensor %s: data_offsets [%lld, %lld] lie outside the %lld data "
                            "bytes; the file is truncated or corrupt",
                       name, (long long)begin, (long long)end, (long long)data_len);
    if (__builtin_mul_overflow(numel, (int64_t)ml_dtype_size(t.dtype), &nbytes) ||
        nbytes != end - begin)
        return ml_errf(err, "tensor %s: data_offsets [%lld, %lld] hold %lld bytes but %lld "
                            "elements of %s need %lld",
                       name, (long long)begin, (long long)end, (long long)(end - begin),
                       (long long)numel, ml_dtype_name(t.dtype), (long long)nbytes);
    ml_storage s = {.key = (char *)name, .dtype = t.dtype, .nbytes = nbytes,
                    .src_offset = data_start + begin, .zip_index = -1};
    if (ml_tensorset_add_storage(ts, &s, &t.storage, err) != 0) return -1;
    return ml_tensorset_add_tensor(ts, &t, err);
}

int ml_safetensors_parse(ml_tensorset *ts, ml_err *err) {
    unsigned char lenbuf[8];
    if (ts->src.size < 8)
        return ml_errf(err, "too short (%lld bytes) for a safetensors file or a PyTorch "
                            "checkpoint", (long long)ts->src.size);
    if (ml_source_read(&ts->src, 0, 8, lenbuf, err) != 0) return -1;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | lenbuf[i];
    if (n > MAX_HEADER_BYTES || n > (uint64_t)(ts->src.size - 8))
        return ml_errf(err, "safetensors header length %llu is larger than %s; this is not a "
                            "safetensors file (or it is truncated)",
                       (unsigned long long)n,
                       n > MAX_HEADER_BYTES ? "100 MB" : "the rest of the file");
    char *text = malloc(n ? n : 1);
    if (!text) return ml_errf(err, "out of memory for a %llu-byte header", (unsigned long long)n);
    if (ml_source_read(&ts->src, 8, (int64_t)n, text, err) != 0) {
        free(text);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return ml_errf(err, "the safetensors header is not valid JSON (byte %d: %s); this is "
                            "not a safetensors file or it is corrupt",
                       jerr.position, jerr.text);
    int rc = 0;
    if (!json_is_object(root))
        rc = ml_errf(err, "the safetensors header is not a JSON object");
    int64_t data_start = 8 + (int64_t)n, data_len = ts->src.size - data_start;
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (rc != 0) break;
        if (strcmp(name, "__metadata__") == 0)
            rc = parse_metadata(ts, v, err);
        else
            rc = parse_tensor(ts, name, v, data_start, data_len, err);
    }
    json_decref(root);
    return rc;
}
