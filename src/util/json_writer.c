#include "util/json_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ml_jw_init(ml_jw *w, ml_buf *out) {
    memset(w, 0, sizeof *w);
    w->out = out;
}

/* Before any value: the comma that separates it from the previous one at this depth. */
static void begin_value(ml_jw *w) {
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->need_comma[w->depth]) ml_buf_append(w->out, ",", 1);
    w->need_comma[w->depth] = 1;
}

static void open(ml_jw *w, char c) {
    begin_value(w);
    ml_buf_append(w->out, &c, 1);
    if (w->depth == ML_JW_MAX_DEPTH) {
        w->bad = 1;
        return;
    }
    w->need_comma[++w->depth] = 0;
}

static void close(ml_jw *w, char c) {
    ml_buf_append(w->out, &c, 1);
    if (w->depth > 0) w->depth--;
}

void ml_jw_object(ml_jw *w) { open(w, '{'); }
void ml_jw_object_end(ml_jw *w) { close(w, '}'); }
void ml_jw_array(ml_jw *w) { open(w, '['); }
void ml_jw_array_end(ml_jw *w) { close(w, ']'); }

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong form, no
 * surrogate, at most U+10FFFF), or 0. */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    int n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
    if (c >= 0xF5) n = 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0))) return 0;
    if (n == 4 && ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))) return 0;
    return n;
}

static void put_string(ml_buf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    ml_buf_append(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x80) { /* text from a request may be any bytes; JSON must be UTF-8 */
            int n = utf8_len((const unsigned char *)s);
            if (n > 0) {
                s += n - 1;
                continue;
            }
            ml_buf_append(b, run, (size_t)(s - run));
            run = s + 1;
            ml_buf_puts(b, "\\ufffd");
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        ml_buf_append(b, run, (size_t)(s - run));
        run = s + 1;
        char esc[7] = {'\\', 0};
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
        }
        ml_buf_append(b, esc, strlen(esc));
    }
    ml_buf_append(b, run, (size_t)(s - run));
    ml_buf_append(b, "\"", 1);
}

void ml_jw_key(ml_jw *w, const char *key) {
    begin_value(w);
    put_string(w->out, key);
    ml_buf_append(w->out, ":", 1);
    w->after_key = 1;
}

void ml_jw_string(ml_jw *w, const char *s) {
    begin_value(w);
    put_string(w->out, s ? s : "");
}

void ml_jw_int(ml_jw *w, int64_t v) {
    begin_value(w);
    ml_buf_printf(w->out, "%lld", (long long)v);
}

void ml_jw_bool(ml_jw *w, int v) {
    begin_value(w);
    ml_buf_puts(w->out, v ? "true" : "false");
}

void ml_jw_null(ml_jw *w) {
    begin_value(w);
    ml_buf_puts(w->out, "null");
}

void ml_format_double(char *buf, size_t len, double v) {
    /* If p significant digits read back as v, so do p + 1 (a closer decimal), so the fewest
     * that do can be found by bisection over 1..17 (17 always do): four or five tries. */
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(buf, len, "%.*g", mid, v);
        if (strtod(buf, NULL) == v)
            hi = mid;
        else
            lo = mid + 1;
    }
    snprintf(buf, len, "%.*g", lo, v);
}

void ml_jw_double(ml_jw *w, double v) {
    begin_value(w);
    if (!isfinite(v)) {
        w->bad = 1;
        ml_buf_puts(w->out, "null");
        return;
    }
    char s[40];
    ml_format_double(s, sizeof s, v);
    ml_buf_puts(w->out, s);
}

void ml_jw_double_or_null(ml_jw *w, double v) {
    if (isfinite(v))
        ml_jw_double(w, v);
    else
        ml_jw_null(w);
}

void ml_jw_float(ml_jw *w, float v) {
    begin_value(w);
    if (!isfinite(v)) {
        w->bad = 1;
        ml_buf_puts(w->out, "null");
        return;
    }
    ml_buf_printf(w->out, "%.9g", (double)v);
}

void ml_jw_doubles(ml_jw *w, const double *v, size_t n) {
    ml_jw_array(w);
    for (size_t i = 0; i < n; i++) ml_jw_double(w, v[i]);
    ml_jw_array_end(w);
}

void ml_jw_floats(ml_jw *w, const float *v, size_t n) {
    ml_jw_array(w);
    for (size_t i = 0; i < n; i++) ml_jw_float(w, v[i]);
    ml_jw_array_end(w);
}

void ml_jw_ints(ml_jw *w, const int *v, size_t n) {
    ml_jw_array(w);
    for (size_t i = 0; i < n; i++) ml_jw_int(w, v[i]);
    ml_jw_array_end(w);
}

void ml_jw_base64(ml_jw *w, const void *data, size_t n) {
    begin_value(w);
    ml_buf_append(w->out, "\"", 1);
    ml_buf_base64(w->out, data, n);
    ml_buf_append(w->out, "\"", 1);
}

void ml_jw_json(ml_jw *w, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        ml_jw_object(w);
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m) {
            ml_jw_key(w, k);
            ml_jw_json(w, m);
        }
        ml_jw_object_end(w);
        break;
    }
    case JSON_ARRAY:
        ml_jw_array(w);
        for (size_t i = 0; i < json_array_size(v); i++) ml_jw_json(w, json_array_get(v, i));
        ml_jw_array_end(w);
        break;
    case JSON_STRING: ml_jw_string(w, json_string_value(v)); break;
    case JSON_INTEGER: ml_jw_int(w, (int64_t)json_integer_value(v)); break;
    case JSON_REAL: ml_jw_double(w, json_real_value(v)); break;
    case JSON_TRUE: ml_jw_bool(w, 1); break;
    case JSON_FALSE: ml_jw_bool(w, 0); break;
    default: ml_jw_null(w); break;
    }
}

void ml_jw_raw(ml_jw *w, const char *json, size_t len) {
    begin_value(w);
    ml_buf_append(w->out, json, len);
}

void ml_jw_kstring(ml_jw *w, const char *key, const char *s) {
    ml_jw_key(w, key);
    ml_jw_string(w, s);
}

void ml_jw_kint(ml_jw *w, const char *key, int64_t v) {
    ml_jw_key(w, key);
    ml_jw_int(w, v);
}

void ml_jw_kbool(ml_jw *w, const char *key, int v) {
    ml_jw_key(w, key);
    ml_jw_bool(w, v);
}

void ml_jw_kdouble(ml_jw *w, const char *key, double v) {
    ml_jw_key(w, key);
    ml_jw_double(w, v);
}

int ml_jw_finish(const ml_jw *w) {
    return w->bad || w->out->oom || w->depth != 0 ? -1 : 0;
}
