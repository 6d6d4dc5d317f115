/* The one way metalignd writes JSON: a streaming writer into an ml_buf. It places the commas,
 * escapes strings, writes a double with the fewest digits that read back to the same value
 * (0.7, not 0.69999999999999996), a float32 with 9 significant digits (enough to round-trip
 * it), and refuses what JSON cannot hold (NaN, infinities): the writer goes "bad" and
 * ml_jw_finish fails, so no answer ever carries one. Small documents are built with jansson
 * and written through ml_jw_json, so they come out with the same digits. */
#ifndef METALIGN_UTIL_JSON_WRITER_H
#define METALIGN_UTIL_JSON_WRITER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define ML_JW_MAX_DEPTH 64

typedef struct ml_jw {
    ml_buf *out;
    int depth;
    unsigned char need_comma[ML_JW_MAX_DEPTH + 1];
    int after_key; /* a key was written: the next value follows it without a comma */
    int bad;       /* a non-finite number, nesting too deep, or out of memory */
} ml_jw;

void ml_jw_init(ml_jw *w, ml_buf *out);
void ml_jw_object(ml_jw *w);
void ml_jw_object_end(ml_jw *w);
void ml_jw_array(ml_jw *w);
void ml_jw_array_end(ml_jw *w);
void ml_jw_key(ml_jw *w, const char *key);
void ml_jw_string(ml_jw *w, const char *s);
void ml_jw_int(ml_jw *w, int64_t v);
void ml_jw_bool(ml_jw *w, int v);
void ml_jw_null(ml_jw *w);
void ml_jw_double(ml_jw *w, double v);       /* shortest round-trip; non-finite: bad */
void ml_jw_double_or_null(ml_jw *w, double v); /* non-finite (undefined) as null */
void ml_jw_float(ml_jw *w, float v);         /* 9 significant digits; non-finite: bad */
void ml_jw_doubles(ml_jw *w, const double *v, size_t n);
void ml_jw_floats(ml_jw *w, const float *v, size_t n);
void ml_jw_ints(ml_jw *w, const int *v, size_t n);
/* A string holding the standard base64 (RFC 4648, padded) of n bytes. */
void ml_jw_base64(ml_jw *w, const void *data, size_t n);
/* A jansson value, written with this writer's number rules. */
void ml_jw_json(ml_jw *w, const json_t *v);
/* Bytes that are already a JSON value (a cached answer embedded in a job). */
void ml_jw_raw(ml_jw *w, const char *json, size_t len);
/* Key and value in one call. */
void ml_jw_kstring(ml_jw *w, const char *key, const char *s);
void ml_jw_kint(ml_jw *w, const char *key, int64_t v);
void ml_jw_kbool(ml_jw *w, const char *key, int v);
void ml_jw_kdouble(ml_jw *w, const char *key, double v);

/* 0 if everything written was valid JSON, else -1. */
int ml_jw_finish(const ml_jw *w);

/* The shortest "%.Ng" (N = 1..17) of v that strtod reads back as v, into buf (>= 32 bytes). */
void ml_format_double(char *buf, size_t len, double v);

#endif
