/* A parsed request and the one validation vocabulary every route uses. Each helper either
 * stores a value or answers the request with a 400 that names the field, what was wrong and
 * what is allowed, and returns -1; handlers just `if (...) return;`. The same rules hold
 * everywhere: integers are JSON integers (100.0 is not one), booleans are true/false (query:
 * true/false/1/0), dims are "all" or a list, unknown fields and query arguments are refused,
 * a route that takes no body refuses one. */
#ifndef METALIGN_HTTP_REQUEST_H
#define METALIGN_HTTP_REQUEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "http/response.h"

#define ML_MAX_QUERY_ARGS 64   /* more than any endpoint takes */
#define ML_SEED_MAX ((1LL << 53) - 1) /* seeds stay exact as JSON numbers in every client */

typedef struct ml_query_arg {
    char *key;
    char *value; /* "" when the argument has no '=' */
} ml_query_arg;

typedef struct ml_request {
    const char *method;
    const char *path;       /* decoded path without the query */
    const char *path_param; /* the rest after a prefix route ("/v1/jobs/<id>"), else NULL */
    const ml_query_arg *query;
    int n_query;
    const char *body;       /* NUL-terminated; "" when there is none */
    size_t body_len;
    const char *accept;     /* the Accept header, or NULL */
    const char *if_none_match; /* the If-None-Match header, or NULL */
    const char *origin;     /* the Origin header, or NULL */
    double received_at;     /* Unix time its request line arrived */
    void *glue;             /* the transport's own (http/http.h ml_request_*) */
} ml_request;

/* The value of a query argument, or NULL. */
const char *ml_request_arg(const ml_request *r, const char *key);
/* 0 when every query argument is one of the NULL-terminated names, each given once; else a
 * 400 naming the argument and the accepted ones. */
int ml_request_check_args(const ml_request *r, const char *const *allowed, ml_response *resp);
/* 0 when the request has no body; else a 400 (this route takes none). */
int ml_request_no_body(const ml_request *r, ml_response *resp);

/* Query arguments; absent keeps *out. */
int ml_arg_int(const ml_request *req, const char *key, long long min, long long max,
               long long *out, ml_response *resp);
int ml_arg_bool(const ml_request *req, const char *key, int *out, ml_response *resp);
int ml_arg_enum(const ml_request *req, const char *key, const char *const *choices, int *out,
                ml_response *resp);

/* Parses the body as a JSON object (an empty body is {}), checking every key is allowed. */
int ml_body_object(const ml_request *req, const char *const *allowed, json_t **out,
                   ml_response *resp);
/* GET forms: an endpoint's fields as query arguments (request_fields.c). Each field has the
 * type its JSON member has; the query text is turned into that JSON value (a text that is not
 * of the type stays a string, or a real for "12.5" as an integer), so the body's checks run
 * unchanged and GET and POST share every rule and every message. */
typedef enum ml_field_type {
    ML_FIELD_INT,         /* "128" */
    ML_FIELD_BOOL,        /* true/false/1/0 (a bare key is true) */
    ML_FIELD_STRING,      /* "sequence" */
    ML_FIELD_INT_LIST,    /* "1,0,1" */
    ML_FIELD_NUMBER_LIST, /* "0.5,-1.25,2" */
    ML_FIELD_ITEM_LIST,   /* "0,syn_0002,17": indices and ids */
    ML_FIELD_DIMS,        /* "all" or "0,1,2" */
    ML_FIELD_NAMES,       /* "all" or "embedding,layer_2" */
} ml_field_type;

typedef struct ml_field {
    const char *name;
    ml_field_type type;
} ml_field;

/* The request's fields as a JSON object (a new reference in *out): a POST's body (as
 * ml_body_object), or a GET's query arguments named in fields, converted by type. Query
 * arguments that are not fields must be in args (NULL-terminated: async, format, ...); a GET
 * with a body is refused. 0, or -1 with a 400 answered. */
int ml_request_fields(const ml_request *req, const ml_field *fields, int n_fields,
                      const char *const *args, json_t **out, ml_response *resp);

/* Members of a body; absent (or null) keeps *out. */
int ml_json_int(json_t *obj, const char *key, long long min, long long max, long long *out,
                ml_response *resp);
int ml_json_bool(json_t *obj, const char *key, int *out, ml_response *resp);
/* One of the NULL-terminated choices; *out is the index. */
int ml_json_enum(json_t *obj, const char *key, const char *const *choices, int *out,
                 ml_response *resp);

/* Dimensions of the targets: "all" (every one of the K, in order) or a list of integers in
 * [0, K) (each once when distinct is set; else up to ML_MAX_DIMS_LIST entries), from a JSON
 * value (array or "all") or a query string ("all", "0,1,2"). *out is malloc'd (*n values). */
#define ML_MAX_DIMS_LIST 65536
int ml_dims_json(json_t *v, int K, int distinct, int **out, int *n, ml_response *resp);
int ml_dims_text(const char *text, int K, int distinct, int **out, int *n, ml_response *resp);
/* The query argument key, when given. */
int ml_dims_arg(const ml_request *req, const char *key, int K, int distinct, int **out, int *n,
                ml_response *resp);

/* A list of integers in [0, limit) from a JSON array; what names the field in messages
 * ("labels"); limit_what names that range, e.g. "labels are 0 or 1". *out is malloc'd. */
int ml_int_list_json(json_t *arr, const char *what, int limit, const char *limit_what,
                     int max_len, int **out, int *n, ml_response *resp);
int ml_int_list_text(const char *text, const char *what, int limit, const char *limit_what,
                     int max_len, int **out, int *n, ml_response *resp);

/* A list of numbers (JSON integers or reals), each finite as a float32, from a JSON array of
 * 1..max_len entries; what names the field ("magnitudes"). *out is malloc'd (*n values). */
int ml_float_list_json(json_t *arr, const char *what, int max_len, float **out, int *n,
                       ml_response *resp);

#endif
