#include "http/send.h"

#include <stdlib.h>
#include <string.h>

typedef struct sent_body {
    ml_inflight *inflight;
    char *head;     /* owned bytes (all of them when there is no blob) */
    size_t head_len;
    ml_blob *blob;  /* shared, sent without a copy */
    char *tail;
    size_t tail_len;
} sent_body;

static void release_body(void *cls) {
    sent_body *sb = cls;
    ml_inflight_release(sb->inflight, sb->blob, sb->head_len + sb->tail_len);
    free(sb->head);
    free(sb->tail);
    ml_blob_unref(sb->blob);
    free(sb);
}

/* Copies the wrapped answer's bytes from pos: head, then the blob, then the tail. */
static ssize_t read_wrapped(void *cls, uint64_t pos, char *buf, size_t max) {
    const sent_body *sb = cls;
    const struct { const char *p; size_t n; } parts[3] = {
        {sb->head, sb->head_len}, {sb->blob->data, sb->blob->len}, {sb->tail, sb->tail_len}};
    size_t done = 0;
    uint64_t at = 0;
    for (int i = 0; i < 3 && done < max; i++) {
        if (pos < at + parts[i].n) {
            size_t off = (size_t)(pos - at), n = parts[i].n - off;
            if (n > max - done) n = max - done;
            memcpy(buf + done, parts[i].p + off, n);
            done += n;
            pos += n;
        }
        at += parts[i].n;
    }
    return done ? (ssize_t)done : MHD_CONTENT_READER_END_OF_STREAM;
}

struct MHD_Response *ml_send_response(ml_inflight *f, ml_response *r) {
    sent_body *sb = calloc(1, sizeof *sb);
    if (!sb) return NULL;
    sb->inflight = f;
    size_t own = r->body_len + r->suffix_len;
    if (ml_inflight_take(f, r->blob, own) != 0) {
        free(sb);
        return NULL;
    }
    sb->head = r->body;
    sb->head_len = r->body_len;
    sb->blob = r->blob;
    sb->tail = r->suffix;
    sb->tail_len = r->suffix_len;
    r->body = r->suffix = NULL;
    r->blob = NULL;
    r->body_len = r->suffix_len = 0;
    struct MHD_Response *m;
    if (sb->blob && (sb->head_len || sb->tail_len))
        m = MHD_create_response_from_callback(sb->head_len + sb->blob->len + sb->tail_len,
                                              ML_SEND_BLOCK, read_wrapped, sb, release_body);
    else if (sb->blob) /* the cached bytes themselves */
        m = MHD_create_response_from_buffer_with_free_callback_cls(
            sb->blob->len, sb->blob->data, release_body, sb);
    else
        m = MHD_create_response_from_buffer_with_free_callback_cls(
            sb->head_len, sb->head ? sb->head : (char *)"", release_body, sb);
    if (!m) release_body(sb);
    return m;
}

