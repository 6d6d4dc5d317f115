#include "http/headers.h"

#include <stdio.h>
#include <string.h>

static int is_get(const ml_request *req) {
    return req->method && (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD"));
}

static void set_etag(ml_response *resp) {
    if (!resp->etag[0]) {
        char hex[ML_SHA256_HEX_LEN];
        if (resp->blob && (resp->body_len || resp->suffix_len)) {
            /* a blob between bytes of its own (a job's state around its result): the hash
             * of the parts, the blob by its own hash (taken once, when it was made) */
            ml_sha256 h;
            unsigned char digest[ML_SHA256_LEN];
            ml_sha256_init(&h);
            ml_sha256_update(&h, resp->body ? resp->body : "", resp->body_len);
            ml_sha256_update(&h, resp->blob->sha256, strlen(resp->blob->sha256));
            ml_sha256_update(&h, resp->suffix ? resp->suffix : "", resp->suffix_len);
            ml_sha256_final(&h, digest);
            ml_sha256_to_hex(digest, hex);
        } else if (resp->blob) {
            memcpy(hex, resp->blob->sha256, sizeof hex);
        } else {
            size_t len = 0;
            const char *body = ml_response_data(resp, &len);
            ml_sha256_hex(body, len, hex);
        }
        snprintf(resp->etag, sizeof resp->etag, "\"%s\"", hex);
    }
    ml_respond_header(resp, "ETag", "%s", resp->etag);
}

int ml_etag_matches(const char *inm, const char *etag) {
    size_t want = strlen(etag);
    const char *p = inm;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) return 0;
        if (*p == '*') return 1;
        if (p[0] == 'W' && p[1] == '/') p += 2; /* weak comparison: the opaque tags only */
        const char *start = p;
        if (*p == '"') {
            const char *close = strchr(p + 1, '"');
            if (!close) return 0;
            p = close + 1;
        } else {
            while (*p && *p != ',') p++; /* not a quoted tag: skip it */
        }
        if ((size_t)(p - start) == want && memcmp(start, etag, want) == 0) return 1;
    }
}

static void not_modified(ml_response *resp) {
    /* the ETag and the other headers stay: a 304 carries them */
    ml_respond_raw(resp, 304, resp->content_type, NULL, 0);
}

static int from_origin(const ml_request *req, const char *cors_origin) {
    return cors_origin && req->origin && strcmp(req->origin, cors_origin) == 0;
}

static void cors(const ml_request *req, const char *cors_origin, ml_response *resp) {
    ml_respond_header(resp, "Vary", "%s", cors_origin ? "Accept, Origin" : "Accept");
    if (!from_origin(req, cors_origin)) return;
    ml_respond_header(resp, "Access-Control-Allow-Origin", "%s", cors_origin);
    ml_respond_header(resp, "Access-Control-Expose-Headers", "%s", ML_CORS_EXPOSE_HEADERS);
}

void ml_headers_finish(const ml_request *req, const char *cors_origin, ml_response *resp) {
    if (resp->finished) return;
    resp->finished = 1;
    if (is_get(req) && resp->status == 200) {
        set_etag(resp);
        if (req->if_none_match && ml_etag_matches(req->if_none_match, resp->etag))
            not_modified(resp);
    }
    cors(req, cors_origin, resp);
}

void ml_headers_preflight(const ml_request *req, const char *allow, const char *cors_origin,
                          ml_response *resp) {
    ml_respond_raw(resp, 204, NULL, NULL, 0);
    snprintf(resp->allow, sizeof resp->allow, "%s, OPTIONS", allow);
    resp->finished = 1;
    ml_respond_header(resp, "Vary", "%s", cors_origin ? "Origin" : "Accept");
    if (!from_origin(req, cors_origin)) return;
    ml_respond_header(resp, "Access-Control-Allow-Origin", "%s", cors_origin);
    ml_respond_header(resp, "Access-Control-Allow-Methods", "%s", resp->allow);
    ml_respond_header(resp, "Access-Control-Allow-Headers", "%s", ML_CORS_ALLOW_HEADERS);
    ml_respond_header(resp, "Access-Control-Max-Age", "%d", ML_CORS_MAX_AGE);
}
