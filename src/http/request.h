/* Validation of request bodies and query arguments. Every helper either stores a value or
 * answers the request with a 400 that names the field, what was wrong and what is allowed,
 * and returns -1; handlers just `if (...) return;`. */
#ifndef METALIGN_REQUEST_H
#define METALIGN_REQUEST_H

#include <jansson.h>
#include <stdint.h>

#include "http/http.h"

/* Parses the body as a JSON object (an empty body is {}), checking every key is allowed. */
int ml_body_object(const ml_request *req, const char *const *allowed, json_t **out,
                   ml_response *resp);

/* Optional members: absent (or null) keeps *out. */
int ml_json_int(json_t *obj, const char *key, long long min, long long max, long long *out,
                ml_response *resp);
int ml_json_bool(json_t *obj, const char *key, int *out, ml_response *resp);
/* One of the NULL-terminated choices; *out is the index. */
int ml_json_enum(json_t *obj, const char *key, const char *const *choices, int *out,
                 ml_response *resp);

/* Query arguments. */
int ml_arg_int(const ml_request *req, const char *key, long long min, long long max,
               long long *out, ml_response *resp);
int ml_arg_bool(const ml_request *req, const char *key, int *out, ml_response *resp);

/* A list of small integers from a JSON array or a query string "0,1,2"; what names the field
 * in messages ("dims"); each value must lie in [0, limit) (limit_what names that range, e.g.
 * "the target has 66 dimensions"). *out is malloc'd. */
int ml_int_list_json(json_t *arr, const char *what, int limit, const char *limit_what,
                     int max_len, int **out, int *n, ml_response *resp);
int ml_int_list_text(const char *text, const char *what, int limit, const char *limit_what,
                     int max_len, int **out, int *n, ml_response *resp);

#endif
