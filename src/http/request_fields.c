/* GET forms of the analyses that take a body: the query arguments become the JSON object the
 * body would be, field by field, and the endpoint validates that object as it validates a
 * body. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "http/request.h"
#include "util/buf.h"

#define ML_FIELDS_MAX 32 /* fields of one endpoint, more than any has */

static int is_integer_text(const char *s, long long *v) {
    if (!*s || *s == ' ' || *s == '+') return 0;
    char *end = NULL;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return !errno && !*end;
}

static int is_real_text(const char *s, double *v) {
    if (!*s || *s == ' ' || *s == '+') return 0;
    char *end = NULL;
    errno = 0;
    *v = strtod(s, &end);
    return !errno && !*end && isfinite(*v);
}

/* A string the JSON value can hold (jansson takes UTF-8 only); NULL when it is not UTF-8. */
static json_t *text(const char *s) { return json_string(s); }

/* One scalar of a list or a field: an integer when the text is one, else (ints_only: a real
 * when it reads as a number, so "must be an integer" is what the body check says) a string. */
static json_t *scalar(const char *s, int numbers) {
    long long i;
    double d;
    if (numbers && is_integer_text(s, &i)) return json_integer(i);
    if (numbers && is_real_text(s, &d)) return json_real(d);
    return text(s);
}

static json_t *list(const char *s, int numbers) {
    json_t *arr = json_array();
    if (!arr || !*s) return arr; /* "" is the empty list: the body check refuses it */
    char *copy = strdup(s);
    if (!copy) {
        json_decref(arr);
        return NULL;
    }
    for (char *p = copy;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        json_t *v = scalar(p, numbers);
        if (!v || json_array_append_new(arr, v) != 0) {
            json_decref(arr);
            arr = NULL;
            break;
        }
        if (!comma) break;
        p = comma + 1;
    }
    free(copy);
    return arr;
}

static json_t *convert(const char *s, ml_field_type type) {
    switch (type) {
    case ML_FIELD_INT: return scalar(s, 1);
    case ML_FIELD_BOOL:
        if (!strcmp(s, "true") || !strcmp(s, "1") || !*s) return json_true();
        if (!strcmp(s, "false") || !strcmp(s, "0")) return json_false();
        return text(s);
    case ML_FIELD_STRING: return text(s);
    case ML_FIELD_INT_LIST: return list(s, 1);
    case ML_FIELD_NUMBER_LIST: return list(s, 1);
    case ML_FIELD_ITEM_LIST: return list(s, 1);
    case ML_FIELD_DIMS: return !strcmp(s, "all") ? text(s) : list(s, 1);
    case ML_FIELD_NAMES: return !strcmp(s, "all") ? text(s) : list(s, 0);
    }
    return NULL;
}

static const ml_field *find(const ml_field *fields, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(fields[i].name, key)) return &fields[i];
    return NULL;
}

static int from_query(const ml_request *req, const ml_field *fields, int n_fields,
                      json_t **out, ml_response *resp) {
    json_t *obj = json_object();
    if (!obj) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return -1;
    }
    for (int i = 0; i < req->n_query; i++) {
        const ml_field *f = find(fields, n_fields, req->query[i].key);
        if (!f) continue; /* a control argument (checked by the caller) */
        json_t *v = convert(req->query[i].value, f->type);
        if (!v) {
            ml_respond_error(resp, 400, "invalid_argument",
                             "%s: the value is not valid UTF-8 text", f->name);
            json_decref(obj);
            return -1;
        }
        json_object_set_new(obj, f->name, v);
    }
    *out = obj;
    return 0;
}

int ml_request_fields(const ml_request *req, const ml_field *fields, int n_fields,
                      const char *const *args, json_t **out, ml_response *resp) {
    *out = NULL;
    const char *names[ML_FIELDS_MAX * 2 + 1];
    int n = 0, get = req->method && strcmp(req->method, "POST") != 0;
    for (int i = 0; i < n_fields && i < ML_FIELDS_MAX; i++)
        if (get) names[n++] = fields[i].name;
    for (const char *const *a = args; *a && n < ML_FIELDS_MAX * 2; a++) names[n++] = *a;
    names[n] = NULL;
    if (ml_request_check_args(req, names, resp) != 0) return -1;
    if (!get) {
        const char *body_names[ML_FIELDS_MAX + 1];
        int m = 0;
        for (int i = 0; i < n_fields && i < ML_FIELDS_MAX; i++) body_names[m++] = fields[i].name;
        body_names[m] = NULL;
        return ml_body_object(req, body_names, out, resp);
    }
    if (ml_request_no_body(req, resp) != 0) return -1;
    return from_query(req, fields, n_fields, out, resp);
}
