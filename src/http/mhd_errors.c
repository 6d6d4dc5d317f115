#include "http/mhd_errors.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http/response.h"

typedef enum MHD_Result (*queue_fn)(struct MHD_Connection *, unsigned int, struct MHD_Response *);

static queue_fn real_queue;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;
static __thread int queuing_ours; /* set while ml_mhd_queue calls through */
static int rewritten;             /* atomic */

static void find_real(void) {
    real_queue = (queue_fn)(void (*)(void))dlsym(RTLD_NEXT, "MHD_queue_response");
}


int ml_http_write_error(int fd, unsigned int status, const char *code, const char *message,
                        int retry_after) {
    size_t len = 0;
    char *body = ml_error_json(code, message, &len);
    if (!body || fd < 0) {
        free(body);
        return -1;
    }
    const char *reason = MHD_get_reason_phrase_for(status);
    char retry[48] = "";
    if (retry_after > 0) snprintf(retry, sizeof retry, "Retry-After: %d\r\n", retry_after);
    ml_buf msg = {0};
    ml_buf_printf(&msg,
                  "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                  "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                  status, reason && reason[0] ? reason : "Error", len, retry);
    ml_buf_append(&msg, body, len);
    free(body);
    int rc = msg.oom ? -1 : 0;
    /* A few hundred bytes into an empty socket buffer: one send, never a partial one that
     * would need a retry from this thread. */
    for (size_t off = 0; rc == 0 && off < msg.len;) {
        ssize_t n = send(fd, msg.data + off, msg.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) rc = -1;
        else off += (size_t)n;
    }
    ml_buf_free(&msg);
    shutdown(fd, SHUT_WR);
    return rc;
}

enum MHD_Result ml_mhd_queue(struct MHD_Connection *c, unsigned int status,
                             struct MHD_Response *r) {
    queuing_ours = 1;
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    queuing_ours = 0;
    return rc;
}

int ml_mhd_errors_seen(void) { return __atomic_load_n(&rewritten, __ATOMIC_RELAXED); }

/* MHD reads Content-Length only without Transfer-Encoding, as digits that fit 64 bits. */
static int bad_content_length(struct MHD_Connection *c) {
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return 0;
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v) return 0;
    if (!*v) return 1;
    unsigned long long x = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9') return 1;
        unsigned d = (unsigned)(*p - '0');
        if (x > (~0ULL - d) / 10) return 1;
        x = x * 10 + d;
    }
    return 0;
}

/* The code and sentence for an answer MHD makes itself. */
static void describe(unsigned int status, int bad_length, const char **code, char *msg,
                     size_t cap) {
    switch (status) {
    case MHD_HTTP_BAD_REQUEST:
        *code = "bad_request";
        snprintf(msg, cap, "%s", bad_length
                     ? "the Content-Length header is not a number of bytes; send the body's "
                       "length as digits (or a chunked body)"
                     : "the request is not valid HTTP/1.1 (its request line, a header line or "
                       "its chunked body is malformed); check the client");
        break;
    case MHD_HTTP_CONTENT_TOO_LARGE:
        *code = "body_too_large";
        snprintf(msg, cap, "%s", bad_length
                     ? "the Content-Length header is larger than any body this server reads; "
                       "send a smaller body (see --max-body-bytes)"
                     : "a chunk of the request body is larger than this server reads; send "
                       "smaller chunks");
        break;
    case MHD_HTTP_URI_TOO_LONG:
        *code = "uri_too_long";
        snprintf(msg, cap, "the request line does not fit the %zu bytes this server keeps for "
                           "a request's line and headers; shorten the URL (long lists can go "
                           "in a POST body)", ML_HTTP_CONNECTION_MEMORY);
        break;
    case MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE:
        *code = "headers_too_large";
        snprintf(msg, cap, "the request's headers do not fit the %zu bytes this server keeps "
                           "for a request's line and headers; send fewer or shorter headers",
                 ML_HTTP_CONNECTION_MEMORY);
        break;
    case MHD_HTTP_HTTP_VERSION_NOT_SUPPORTED:
        *code = "http_version_not_supported";
        snprintf(msg, cap, "only HTTP/1.0 and HTTP/1.1 are served; send the request as HTTP/1.1");
        break;
    case MHD_HTTP_SERVICE_UNAVAILABLE:
        *code = "unavailable";
        snprintf(msg, cap, "the server cannot take this request now; retry shortly");
        break;
    default:
        *code = status >= 500 ? "internal" : "bad_request";
        snprintf(msg, cap, "the HTTP server refused the request (%u %s)", status,
                 MHD_get_reason_phrase_for(status));
    }
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *c, unsigned int status,
                                   struct MHD_Response *r) {
    pthread_once(&real_once, find_real);
    if (!real_queue) return MHD_NO;
    if (queuing_ours || status < 400) return real_queue(c, status, r);
    __atomic_store_n(&rewritten, 1, __ATOMIC_RELAXED);
    const char *code = NULL;
    char msg[320];
    int bad_length = bad_content_length(c);
    describe(status, bad_length, &code, msg, sizeof msg);
    int retry = status == MHD_HTTP_SERVICE_UNAVAILABLE ? 1 : 0;
    if (bad_length) {
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (fd) ml_http_write_error(fd->connect_fd, status, code, msg, retry);
        return MHD_NO; /* MHD closes the connection, writing nothing more */
    }
    size_t len = 0;
    char *body = ml_error_json(code, msg, &len);
    struct MHD_Response *json = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!json) {
        free(body);
        return real_queue(c, status, r); /* out of memory: MHD's own words, at least */
    }
    MHD_add_response_header(json, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(json, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (retry) MHD_add_response_header(json, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result rc = real_queue(c, status, json);
    MHD_destroy_response(json);
    return rc;
}

/* libmicrohttpd's own format strings, passed through, at most ML_MHD_LOG_PER_SECOND a
 * second: a crowd of connections over the limits must not flood the log. */
void ml_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static time_t second;
    static int printed, dropped;
    /* MHD's HTML for the answers mhd_errors.c rewrites, and its note that mhd_errors.c
     * answered one itself, add nothing to the log */
    static const char *const quiet[] = {"Error processing request (HTTP response code is",
                                        "Closing connection (failed to queue error response)"};
    for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++)
        if (strncmp(fmt, quiet[i], strlen(quiet[i])) == 0) return;
    time_t now = time(NULL);
    pthread_mutex_lock(&lock);
    if (now != second) {
        if (dropped)
            fprintf(stderr, "metalignd: http: (%d more messages in the last second)\n", dropped);
        second = now;
        printed = dropped = 0;
    }
    int show = printed < ML_MHD_LOG_PER_SECOND;
    if (show) printed++;
    else dropped++;
    pthread_mutex_unlock(&lock);
    if (!show) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "metalignd: http: %s%s", line, line[0] && line[strlen(line) - 1] == '\n' ? "" : "\n");
}
