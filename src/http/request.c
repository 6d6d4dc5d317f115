#include "http/request.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

static void list_names(ml_buf *b, const char *const *names) {
    for (const char *const *n = names; *n; n++) {
        if (b->len) ml_buf_puts(b, ", ");
        ml_buf_puts(b, *n);
    }
}

static int is_one_of(const char *s, const char *const *names) {
    for (const char *const *n = names; *n; n++)
        if (strcmp(*n, s) == 0) return 1;
    return 0;
}

const char *ml_request_arg(const ml_request *r, const char *key) {
    for (int i = 0; i < r->n_query; i++)
        if (strcmp(r->query[i].key, key) == 0) return r->query[i].value;
    return NULL;
}

int ml_request_check_args(const ml_request *r, const char *const *allowed, ml_response *resp) {
    for (int i = 0; i < r->n_query; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(r->query[j].key, r->query[i].key) == 0) {
                ml_respond_error(resp, 400, "duplicate_argument",
                                 "query argument \"%s\" is given twice; give it once",
                                 r->query[i].key);
                return -1;
            }
        if (is_one_of(r->query[i].key, allowed)) continue;
        ml_buf names = {0};
        list_names(&names, allowed);
        if (names.len)
            ml_respond_error(resp, 400, "unknown_argument",
                             "unknown query argument \"%s\"; this endpoint accepts: %s",
                             r->query[i].key, names.data);
        else
            ml_respond_error(resp, 400, "unknown_argument",
                             "unknown query argument \"%s\"; this endpoint takes no arguments",
                             r->query[i].key);
        ml_buf_free(&names);
        return -1;
    }
    return 0;
}

int ml_request_no_body(const ml_request *r, ml_response *resp) {
    if (r->body_len == 0) return 0;
    ml_respond_error(resp, 400, "unexpected_body",
                     "%s %s takes no request body (%zu bytes were sent); send none", r->method,
                     r->path, r->body_len);
    return -1;
}

static int range_error(const char *key, long long x, long long min, long long max,
                       ml_response *resp) {
    ml_respond_error(resp, 400, "out_of_range", "%s=%lld is out of range: allowed %lld..%lld",
                     key, x, min, max);
    return -1;
}

int ml_arg_int(const ml_request *req, const char *key, long long min, long long max,
               long long *out, ml_response *resp) {
    const char *s = ml_request_arg(req, key);
    if (!s) return 0;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno == ERANGE || end == s || *end || *s == ' ' || *s == '+') {
        ml_respond_error(resp, 400, "invalid_argument",
                         "%s=\"%s\" is not an integer (allowed %lld..%lld)", key, s, min, max);
        return -1;
    }
    if (x < min || x > max) return range_error(key, x, min, max, resp);
    *out = x;
    return 0;
}

int ml_arg_bool(const ml_request *req, const char *key, int *out, ml_response *resp) {
    const char *s = ml_request_arg(req, key);
    if (!s) return 0;
    if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "")) {
        *out = 1;
    } else if (!strcmp(s, "false") || !strcmp(s, "0")) {
        *out = 0;
    } else {
        ml_respond_error(resp, 400, "invalid_argument",
                         "%s=\"%s\" must be true or false (or 1 or 0)", key, s);
        return -1;
    }
    return 0;
}

static int enum_error(const char *key, const char *given, const char *const *choices,
                      ml_response *resp) {
    ml_buf names = {0};
    list_names(&names, choices);
    ml_respond_error(resp, 400, "invalid_argument", "%s=\"%s\" must be one of: %s", key,
                     given ? given : "", names.len ? names.data : "");
    ml_buf_free(&names);
    return -1;
}

int ml_arg_enum(const ml_request *req, const char *key, const char *const *choices, int *out,
                ml_response *resp) {
    const char *s = ml_request_arg(req, key);
    if (!s) return 0;
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], s) == 0) {
            *out = i;
            return 0;
        }
    return enum_error(key, s, choices, resp);
}

int ml_body_object(const ml_request *req, const char *const *allowed, json_t **out,
                   ml_response *resp) {
    json_error_t jerr;
    json_t *doc;
    if (req->body_len == 0) {
        doc = json_object();
    } else {
        doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
            ml_respond_error(resp, 400, "malformed_json",
                             "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                             jerr.line, jerr.column);
            return -1;
        }
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        ml_respond_error(resp, 400, "malformed_json", "the body must be a JSON object");
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach(doc, key, val) {
        if (is_one_of(key, allowed)) continue;
        ml_buf names = {0};
        list_names(&names, allowed);
        ml_respond_error(resp, 400, "unknown_field",
                         "unknown field \"%s\"; this endpoint accepts: %s", key,
                         names.len ? names.data : "no fields");
        ml_buf_free(&names);
        json_decref(doc);
        return -1;
    }
    *out = doc;
    return 0;
}

static json_t *member(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

int ml_json_int(json_t *obj, const char *key, long long min, long long max, long long *out,
                ml_response *resp) {
    json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v)) {
        ml_respond_error(resp, 400, "invalid_field",
                         "%s must be an integer (allowed %lld..%lld)%s", key, min, max,
                         json_is_real(v) ? "; write it without a decimal point" : "");
        return -1;
    }
    long long x = json_integer_value(v);
    if (x < min || x > max) return range_error(key, x, min, max, resp);
    *out = x;
    return 0;
}

int ml_json_bool(json_t *obj, const char *key, int *out, ml_response *resp) {
    json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) {
        ml_respond_error(resp, 400, "invalid_field", "%s must be true or false", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

int ml_json_enum(json_t *obj, const char *key, const char *const *choices, int *out,
                 ml_response *resp) {
    json_t *v = member(obj, key);
    if (!v) return 0;
    if (json_is_string(v))
        for (int i = 0; choices[i]; i++)
            if (strcmp(choices[i], json_string_value(v)) == 0) {
                *out = i;
                return 0;
            }
    ml_buf names = {0};
    list_names(&names, choices);
    ml_respond_error(resp, 400, "invalid_field", "%s must be one of: %s", key,
                     names.len ? names.data : "");
    ml_buf_free(&names);
    return -1;
}

static int check_index(long long v, int pos, const char *what, int limit, const char *limit_what,
                       ml_response *resp) {
    if (v < 0 || v >= limit) {
        ml_respond_error(resp, 400, "out_of_range", "%s[%d]=%lld is out of range: %s (0..%d)",
                         what, pos, v, limit_what, limit - 1);
        return -1;
    }
    return 0;
}

static int oom(ml_response *resp) {
    ml_respond_error(resp, 500, "internal", "out of memory");
    return -1;
}

/* The checks both list readers make first: arr is a non-empty array of at most max_len
 * entries (kind names what the entries must be, for the message). Its length, or -1. */
static long long list_length(json_t *arr, const char *what, const char *kind, int max_len,
                             ml_response *resp) {
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        ml_respond_error(resp, 400, "invalid_field", "%s must be a non-empty array of %s", what,
                         kind);
        return -1;
    }
    size_t len = json_array_size(arr);
    if ((long long)len > max_len) {
        ml_respond_error(resp, 400, "too_large", "%s has %zu entries; at most %d are allowed",
                         what, len, max_len);
        return -1;
    }
    return (long long)len;
}

int ml_int_list_json(json_t *arr, const char *what, int limit, const char *limit_what,
                     int max_len, int **out, int *n, ml_response *resp) {
    long long n_in = list_length(arr, what, "integers", max_len, resp);
    if (n_in < 0) return -1;
    size_t len = (size_t)n_in;
    int *v = malloc(sizeof(int) * len);
    if (!v) return oom(resp);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_integer(e)) {
            ml_respond_error(resp, 400, "invalid_field", "%s[%zu] must be an integer", what, i);
            free(v);
            return -1;
        }
        if (check_index(json_integer_value(e), (int)i, what, limit, limit_what, resp) != 0) {
            free(v);
            return -1;
        }
        v[i] = (int)json_integer_value(e);
    }
    *out = v;
    *n = (int)len;
    return 0;
}

int ml_float_list_json(json_t *arr, const char *what, int max_len, float **out, int *n,
                       ml_response *resp) {
    long long n_in = list_length(arr, what, "numbers", max_len, resp);
    if (n_in < 0) return -1;
    size_t len = (size_t)n_in;
    float *v = malloc(sizeof(float) * len);
    if (!v) return oom(resp);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(arr, i);
        double x = json_is_number(e) ? json_number_value(e) : NAN;
        if (!json_is_number(e) || !isfinite(x) || fabs(x) > FLT_MAX) {
            if (json_is_number(e))
                ml_respond_error(resp, 400, "invalid_field",
                                 "%s[%zu] is too large: at most %g in absolute value", what, i,
                                 (double)FLT_MAX);
            else
                ml_respond_error(resp, 400, "invalid_field", "%s[%zu] must be a number", what,
                                 i);
            free(v);
            return -1;
        }
        v[i] = (float)x;
    }
    *out = v;
    *n = (int)len;
    return 0;
}

int ml_int_list_text(const char *text, const char *what, int limit, const char *limit_what,
                     int max_len, int **out, int *n, ml_response *resp) {
    int cap = 8, len = 0;
    int *v = malloc(sizeof(int) * (size_t)cap);
    if (!v) return oom(resp);
    const char *p = text;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (errno || end == p || *p == ' ' || *p == '+' || (*end && *end != ',')) {
            ml_respond_error(resp, 400, "invalid_argument",
                             "%s=\"%s\" must be \"all\" or a comma-separated list of integers "
                             "such as 0,1,2", what, text);
            free(v);
            return -1;
        }
        if (len == max_len) {
            ml_respond_error(resp, 400, "too_large", "%s has more than %d entries", what, max_len);
            free(v);
            return -1;
        }
        if (check_index(x, len, what, limit, limit_what, resp) != 0) {
            free(v);
            return -1;
        }
        if (len == cap) {
            int *grown = realloc(v, sizeof(int) * (size_t)(cap *= 2));
            if (!grown) {
                free(v);
                return oom(resp);
            }
            v = grown;
        }
        v[len++] = (int)x;
        if (!*end) break;
        p = end + 1;
    }
    *out = v;
    *n = len;
    return 0;
}

static int all_dims(int K, int **out, int *n, ml_response *resp) {
    int *v = malloc(sizeof(int) * (size_t)(K > 0 ? K : 1));
    if (!v) return oom(resp);
    for (int i = 0; i < K; i++) v[i] = i;
    *out = v;
    *n = K;
    return 0;
}

/* Each dimension once: a repeat is almost always a typo. On a repeat the list is freed and
 * *v is NULL. */
static int check_distinct(int **v, int n, ml_response *resp) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if ((*v)[i] == (*v)[j]) {
                ml_respond_error(resp, 400, "invalid_argument",
                                 "dims[%d]=%d repeats dims[%d]; list each dimension once", i,
                                 (*v)[i], j);
                free(*v);
                *v = NULL;
                return -1;
            }
    return 0;
}

static void dims_range(char *buf, size_t len, int K) {
    snprintf(buf, len, "the target has %d dimensions", K);
}

int ml_dims_json(json_t *v, int K, int distinct, int **out, int *n, ml_response *resp) {
    if (json_is_string(v) && strcmp(json_string_value(v), "all") == 0)
        return all_dims(K, out, n, resp);
    if (!json_is_array(v)) {
        ml_respond_error(resp, 400, "invalid_field",
                         "dims must be \"all\" or a non-empty array of distinct integers "
                         "(0..%d)", K - 1);
        return -1;
    }
    char range[64];
    dims_range(range, sizeof range, K);
    if (ml_int_list_json(v, "dims", K, range, distinct ? K : ML_MAX_DIMS_LIST, out, n, resp) != 0)
        return -1;
    return distinct ? check_distinct(out, *n, resp) : 0;
}

int ml_dims_text(const char *text, int K, int distinct, int **out, int *n, ml_response *resp) {
    if (strcmp(text, "all") == 0) return all_dims(K, out, n, resp);
    char range[64];
    dims_range(range, sizeof range, K);
    if (ml_int_list_text(text, "dims", K, range, distinct ? K : ML_MAX_DIMS_LIST, out, n,
                         resp) != 0)
        return -1;
    return distinct ? check_distinct(out, *n, resp) : 0;
}

int ml_dims_arg(const ml_request *req, const char *key, int K, int distinct, int **out, int *n,
                ml_response *resp) {
    const char *s = ml_request_arg(req, key);
    return s ? ml_dims_text(s, K, distinct, out, n, resp) : 0;
}
