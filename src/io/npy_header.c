/* The .npy format's header: magic, version, and the Python dict literal that gives dtype,
 * order and shape. A strict, bounded parser: numpy writes one shape of dict, and anything else
 * is refused with the reason. */
#include "io/npy_header.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* the header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } */

typedef struct hcur {
    const char *p, *end;
} hcur;

static void h_ws(hcur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int h_eat(hcur *c, char ch) {
    h_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted literal without escapes (numpy writes none in keys and float descrs). */
static int h_string(hcur *c, char *out, size_t cap) {
    h_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap) return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    out[n] = '\0';
    return 0;
}

static int h_word(hcur *c, const char *w) {
    h_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, w, n)) {
        c->p += n;
        return 1;
    }
    return 0;
}

/* A non-negative int, with Python 2's optional 'L' suffix. */
static int h_int(hcur *c, int64_t *v) {
    h_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return -1;
    int64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (x > (INT64_MAX - 9) / 10) return -1;
        x = x * 10 + (*c->p++ - '0');
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    *v = x;
    return 0;
}

static int h_shape(hcur *c, ml_npy_header *h, ml_err *err) {
    if (!h_eat(c, '(')) return ml_errf(err, "malformed .npy header: shape is not a tuple");
    h->ndim = 0;
    for (;;) {
        if (h_eat(c, ')')) return 0;
        int64_t v;
        if (h_int(c, &v)) return ml_errf(err, "malformed .npy header: bad shape entry");
        if (h->ndim == ML_MAX_NDIM)
            return ml_errf(err, "the array has more than %d dimensions", ML_MAX_NDIM);
        h->shape[h->ndim++] = v;
        if (!h_eat(c, ',')) {
            if (h_eat(c, ')')) return 0;
            return ml_errf(err, "malformed .npy header: bad shape tuple");
        }
    }
}

/* Skips a value of a key numpy does not write (strings, words, numbers, brackets). */
static int h_skip(hcur *c) {
    h_ws(c);
    int depth = 0;
    while (c->p < c->end) {
        char ch = *c->p;
        if (ch == '\'' || ch == '"') {
            const char *q = memchr(c->p + 1, ch, (size_t)(c->end - c->p - 1));
            if (!q) return -1;
            c->p = q + 1;
            continue;
        }
        if (ch == '(' || ch == '[' || ch == '{') depth++;
        if (ch == ')' || ch == ']' || ch == '}') {
            if (depth == 0) return 0;
            depth--;
        }
        if (ch == ',' && depth == 0) return 0;
        c->p++;
    }
    return -1;
}

static int h_descr(const char *d, ml_npy_header *h, ml_err *err) {
    char order = d[0];
    const char *t = d + 1;
    if (order != '<' && order != '>' && order != '=' && order != '|') {
        order = '=';
        t = d;
    }
    if (!strcmp(t, "f4")) h->dtype = ML_F32;
    else if (!strcmp(t, "f8")) h->dtype = ML_F64;
    else if (!strcmp(t, "f2")) h->dtype = ML_F16;
    else
        return ml_errf(err, "dtype '%s' is not supported: the arrays must be float16, float32 "
                            "or float64 (save them with arr.astype(np.float32))", d);
    if (order == '|') return ml_errf(err, "dtype '%s' has no byte order", d);
    h->big_endian = order == '>';
    return 0;
}

static int h_dict(hcur *c, ml_npy_header *h, ml_err *err) {
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!h_eat(c, '{')) return ml_errf(err, "malformed .npy header: not a dict");
    for (;;) {
        if (h_eat(c, '}')) break;
        char key[32], val[64];
        if (h_string(c, key, sizeof key) || !h_eat(c, ':'))
            return ml_errf(err, "malformed .npy header: bad key");
        if (!strcmp(key, "descr")) {
            h_ws(c);
            if (c->p < c->end && *c->p == '[')
                return ml_errf(err, "structured dtypes are not supported: save a plain float "
                                    "array");
            if (h_string(c, val, sizeof val))
                return ml_errf(err, "malformed .npy header: bad descr");
            if (h_descr(val, h, err)) return -1;
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            if (h_word(c, "True"))
                return ml_errf(err, "the array is in Fortran order; save it in C order "
                                    "(np.ascontiguousarray(arr))");
            if (!h_word(c, "False"))
                return ml_errf(err, "malformed .npy header: bad fortran_order");
            have_order = 1;
        } else if (!strcmp(key, "shape")) {
            if (h_shape(c, h, err)) return -1;
            have_shape = 1;
        } else if (h_skip(c)) {
            return ml_errf(err, "malformed .npy header: bad value of '%s'", key);
        }
        if (!h_eat(c, ',')) {
            if (h_eat(c, '}')) break;
            return ml_errf(err, "malformed .npy header: expected ',' or '}'");
        }
    }
    if (!have_descr || !have_order || !have_shape)
        return ml_errf(err, "malformed .npy header: it lacks '%s'",
                       !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    return 0;
}

int ml_npy_parse_header(const void *buf, size_t len, ml_npy_header *h, size_t *need,
                        ml_err *err) {
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    const unsigned char *b = buf;
    size_t k = len < 6 ? len : 6;
    if (memcmp(b, magic, k)) return ml_errf(err, "not a .npy array (no \\x93NUMPY magic)");
    if (len < ML_NPY_PREAMBLE) {
        *need = ML_NPY_PREAMBLE;
        return 1;
    }
    int major = b[6];
    size_t pre, hlen;
    if (major == 1) {
        pre = 10;
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
    } else if (major == 2 || major == 3) {
        pre = 12;
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    } else {
        return ml_errf(err, ".npy format version %d.%d is not supported (1, 2 or 3)", major,
                       b[7]);
    }
    if (hlen > ML_NPY_MAX_HEADER)
        return ml_errf(err, "the .npy header claims %zu bytes (more than %u)", hlen,
                       ML_NPY_MAX_HEADER);
    if (len < pre + hlen) {
        *need = pre + hlen;
        return 1;
    }
    memset(h, 0, sizeof *h);
    hcur c = {(const char *)b + pre, (const char *)b + pre + hlen};
    if (h_dict(&c, h, err)) return -1;
    h->data_offset = pre + hlen;
    return 0;
}

