#include "http/response.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/err.h"

void ml_response_reset(ml_response *r) {
    free(r->body);
    free(r->suffix);
    ml_blob_unref(r->blob);
    memset(r, 0, sizeof *r);
}

static void clear_body(ml_response *r) {
    free(r->body);
    free(r->suffix);
    ml_blob_unref(r->blob);
    r->body = r->suffix = NULL;
    r->blob = NULL;
    r->body_len = r->suffix_len = 0;
}

const char *ml_response_data(const ml_response *r, size_t *len) {
    if (r->blob && (r->body_len || r->suffix_len)) {
        *len = 0;
        return NULL;
    }
    if (r->blob) {
        *len = r->blob->len;
        return r->blob->data;
    }
    *len = r->body_len;
    return r->body ? r->body : "";
}

size_t ml_response_len(const ml_response *r) {
    return r->body_len + (r->blob ? r->blob->len : 0) + r->suffix_len;
}

void ml_respond_raw(ml_response *r, int status, const char *content_type, char *body, size_t len) {
    clear_body(r);
    r->status = status;
    r->content_type = content_type;
    r->body = body;
    r->body_len = len;
}

void ml_respond_buf(ml_response *r, int status, const char *content_type, ml_buf *out) {
    if (out->oom) {
        ml_buf_free(out);
        ml_respond_error(r, 500, "internal", "out of memory building the answer");
        return;
    }
    size_t len = 0;
    char *text = ml_buf_take(out, &len);
    if (!text) text = strdup("");
    ml_respond_raw(r, status, content_type, text, len);
}

void ml_respond_blob(ml_response *r, int status, const char *content_type, ml_blob *b) {
    clear_body(r);
    r->status = status;
    r->content_type = content_type;
    r->blob = ml_blob_ref(b);
}

void ml_respond_wrapped(ml_response *r, int status, const char *content_type, ml_buf *prefix,
                        ml_blob *b, ml_buf *suffix) {
    if (prefix->oom || suffix->oom) {
        ml_buf_free(prefix);
        ml_buf_free(suffix);
        ml_respond_error(r, 500, "internal", "out of memory building the answer");
        return;
    }
    clear_body(r);
    r->status = status;
    r->content_type = content_type;
    r->body = ml_buf_take(prefix, &r->body_len);
    r->suffix = ml_buf_take(suffix, &r->suffix_len);
    r->blob = ml_blob_ref(b);
}

void ml_respond_writer(ml_response *r, int status, ml_jw *w) {
    if (ml_jw_finish(w) != 0) {
        int oom = w->out->oom;
        ml_buf_free(w->out);
        if (oom)
            ml_respond_error(r, 500, "internal", "out of memory building the answer");
        else
            ml_respond_error(r, 500, "non_finite",
                             "the answer holds a value that is not finite (JSON has no NaN); "
                             "check the checkpoint and the backbone features");
        return;
    }
    ml_respond_buf(r, status, ML_CT_JSON, w->out);
}

void ml_respond_csv(ml_response *r, int status, ml_csv *c) {
    if (ml_csv_finish(c) != 0) {
        int oom = c->out->oom;
        ml_buf_free(c->out);
        ml_respond_error(r, 500, "internal", oom ? "out of memory building the table"
                                                 : "the table came out ragged (a bug)");
        return;
    }
    ml_respond_buf(r, status, ML_CT_CSV, c->out);
}

void ml_respond_json(ml_response *r, int status, json_t *doc) {
    if (!doc) {
        ml_respond_error(r, 500, "internal", "out of memory building the answer");
        return;
    }
    ml_buf out = {0};
    ml_jw w;
    ml_jw_init(&w, &out);
    ml_jw_json(&w, doc);
    json_decref(doc);
    ml_respond_writer(r, status, &w);
}

void ml_respond_header(ml_response *r, const char *name, const char *fmt, ...) {
    if (r->n_headers == ML_RESP_MAX_HEADERS) return;
    ml_header *h = &r->headers[r->n_headers++];
    h->name = name;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->value, sizeof h->value, fmt, ap);
    va_end(ap);
}

char *ml_error_json(const char *code, const char *message, size_t *len) {
    ml_buf out = {0};
    ml_jw w;
    ml_jw_init(&w, &out);
    ml_jw_object(&w);
    ml_jw_key(&w, "error");
    ml_jw_object(&w);
    ml_jw_kstring(&w, "code", code);
    ml_jw_kstring(&w, "message", message);
    ml_jw_object_end(&w);
    ml_jw_object_end(&w);
    char *text = ml_jw_finish(&w) == 0 ? ml_buf_take(&out, len) : NULL;
    ml_buf_free(&out);
    return text;
}

static void error_body(ml_response *r, int status, const char *code, const char *fmt,
                       va_list ap) {
    char msg[ML_ERR_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len = 0;
    char *text = ml_error_json(code, msg, &len);
    if (!text) {
        text = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
        len = text ? strlen(text) : 0;
    }
    ml_respond_raw(r, status, ML_CT_JSON, text, len);
}

void ml_respond_error(ml_response *r, int status, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_body(r, status, code, fmt, ap);
    va_end(ap);
}

void ml_respond_unavailable(ml_response *r, int retry_after, const char *code, const char *fmt,
                            ...) {
    va_list ap;
    va_start(ap, fmt);
    error_body(r, 503, code, fmt, ap);
    va_end(ap);
    r->retry_after = retry_after > 0 ? retry_after : 1;
}
