#include "http/request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

static void list_names(ml_buf *b, const char *const *names) {
    for (const char *const *n = names; *n; n++) {
        if (b->len) ml_buf_puts(b, ", ");
        ml_buf_puts(b, *n);
    }
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
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, key) == 0;
        if (!ok) {
            ml_buf names = {0};
            list_names(&names, allowed);
            ml_respond_error(resp, 400, "unknown_field",
                             "unknown field \"%s\"; this endpoint accepts: %s", key,
                             names.len ? names.data : "no fields");
            ml_buf_free(&names);
            json_decref(doc);
            return -1;
        }
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
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v)) {
        x = (long long)json_real_value(v); /* 100.0 is 100 */
    } else {
        ml_respond_error(resp, 400, "invalid_field", "%s must be an integer (%lld..%lld)", key,
                         min, max);
        return -1;
    }
    if (x < min || x > max) {
        ml_respond_error(resp, 400, "out_of_range", "%s=%lld is out of range: allowed %lld..%lld",
                         key, x, min, max);
        return -1;
    }
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
    if (json_is_string(v)) {
        for (int i = 0; choices[i]; i++)
            if (strcmp(choices[i], json_string_value(v)) == 0) {
                *out = i;
                return 0;
            }
    }
    ml_buf names = {0};
    list_names(&names, choices);
    ml_respond_error(resp, 400, "invalid_field", "%s must be one of: %s", key,
                     names.len ? names.data : "");
    ml_buf_free(&names);
    return -1;
}

int ml_arg_int(const ml_request *req, const char *key, long long min, long long max,
               long long *out, ml_response *resp) {
    const char *s = ml_request_arg(req, key);
    if (!s) return 0;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end) {
        ml_respond_error(resp, 400, "invalid_argument", "%s=\"%s\" is not an integer (%lld..%lld)",
                         key, s, min, max);
        return -1;
    }
    if (x < min || x > max) {
        ml_respond_error(resp, 400, "out_of_range", "%s=%lld is out of range: allowed %lld..%lld",
                         key, x, min, max);
        return -1;
    }
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
        ml_respond_error(resp, 400, "invalid_argument", "%s=\"%s\" must be true or false", key, s);
        return -1;
    }
    return 0;
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

int ml_int_list_json(json_t *arr, const char *what, int limit, const char *limit_what,
                     int max_len, int **out, int *n, ml_response *resp) {
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        ml_respond_error(resp, 400, "invalid_field", "%s must be a non-empty array of integers",
                         what);
        return -1;
    }
    size_t len = json_array_size(arr);
    if ((long long)len > max_len) {
        ml_respond_error(resp, 400, "too_large", "%s has %zu entries; at most %d are allowed",
                         what, len, max_len);
        return -1;
    }
    int *v = malloc(sizeof(int) * len);
    if (!v) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return -1;
    }
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

int ml_int_list_text(const char *text, const char *what, int limit, const char *limit_what,
                     int max_len, int **out, int *n, ml_response *resp) {
    int cap = 8, len = 0;
    int *v = malloc(sizeof(int) * (size_t)cap);
    if (!v) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return -1;
    }
    const char *p = text;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (errno || end == p || (*end && *end != ',')) {
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
                ml_respond_error(resp, 500, "internal", "out of memory");
                return -1;
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
