/* The headers an answer carries beyond its own fields, decided in one place (http.c adds what
 * these functions put in the response, for every route alike):
 * - a strong ETag on every successful GET / HEAD answer: the SHA-256 of the body (a cached
 *   answer's was taken once, when it was made), and 304 Not Modified without a body when the
 *   request's If-None-Match names it, so pollers (the dashboard) move no bytes until an answer
 *   changes;
 * - Vary: Accept (answers are JSON or CSV by the Accept header), plus Origin when CORS is on;
 * - CORS, only with --cors-origin: Access-Control-Allow-Origin for that one origin (never a
 *   wildcard), the validators exposed to its scripts, and preflights (OPTIONS) answered with
 *   the path's methods and the request headers a browser sends. Off, no CORS header at all. */
#ifndef METALIGN_HTTP_HEADERS_H
#define METALIGN_HTTP_HEADERS_H

#include "http/request.h"
#include "http/response.h"

#define ML_CORS_MAX_AGE 600 /* seconds a browser may reuse a preflight's answer */
#define ML_CORS_ALLOW_HEADERS "Content-Type, Accept, If-None-Match"
#define ML_CORS_EXPOSE_HEADERS "ETag, Location, Retry-After"

/* Runs once per answer, after the handler (a second call does nothing). cors_origin: the
 * configured origin, or NULL when CORS is off. */
void ml_headers_finish(const ml_request *req, const char *cors_origin, ml_response *resp);
/* The answer to OPTIONS on a path whose methods are allow ("GET, POST"): 204 with Allow, and
 * the CORS preflight headers when the request comes from cors_origin. */
void ml_headers_preflight(const ml_request *req, const char *allow, const char *cors_origin,
                          ml_response *resp);
/* 1 when the If-None-Match value (a list of entity tags, or "*") names etag (weak comparison,
 * as RFC 9110 asks for If-None-Match). */
int ml_etag_matches(const char *if_none_match, const char *etag);

#endif
