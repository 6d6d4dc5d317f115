/* One bounded download with libcurl: http and https only (redirects too), HTTPS verified,
 * connect and total timeouts, a size cap enforced both on the announced length and on the
 * bytes actually received, an optional conditional GET, and a cancel flag polled while the
 * transfer runs (a stalled upstream cannot outlive a shutdown). Each curl failure is mapped
 * to an ml_fetch_code so the API can say what went wrong; no message carries bytes the
 * upstream sent (a status line, a header, a body), only what we asked and what happened. */
#include <curl/curl.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "metalign/fetch.h"

typedef struct sink {
    int fd;
    size_t max_bytes;
    size_t bytes;
    ml_sha256 sha;
    int too_large;  /* the body grew past max_bytes */
    int io_errno;   /* writing fd failed */
    ml_fetch_result *res;
} sink;

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg) {
    sink *s = arg;
    size_t n = size * nmemb;
    if (n > s->max_bytes - s->bytes) {
        s->too_large = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = write(s->fd, data + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s->io_errno = w < 0 ? errno : EIO;
            return 0;
        }
        done += (size_t)w;
    }
    ml_sha256_update(&s->sha, data, n);
    s->bytes += n;
    return n;
}

/* Copies a header's value (without surrounding blanks and CRLF) when it fits. */
static void header_value(const char *v, size_t n, char *dst, size_t cap) {
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n < cap) {
        memcpy(dst, v, n);
        dst[n] = '\0';
    } else {
        dst[0] = '\0'; /* a cut validator would never match: better none */
    }
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg) {
    sink *s = arg;
    size_t n = size * nmemb;
    ml_fetch_result *r = s->res;
    /* Each response of a redirect chain starts with its status line: keep only the last's. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        r->etag[0] = r->last_modified[0] = r->content_type[0] = '\0';
        return n;
    }
    static const struct {
        const char *name;
        size_t off, cap;
    } wanted[] = {
        {"etag:", offsetof(ml_fetch_result, etag), sizeof r->etag},
        {"last-modified:", offsetof(ml_fetch_result, last_modified), sizeof r->last_modified},
        {"content-type:", offsetof(ml_fetch_result, content_type), sizeof r->content_type},
    };
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        size_t len = strlen(wanted[i].name);
        if (n > len && strncasecmp(data, wanted[i].name, len) == 0)
            header_value(data + len, n - len, (char *)r + wanted[i].off, wanted[i].cap);
    }
    return n;
}

/* libcurl calls this about once a second while idle and on every chunk: a non-zero return
 * aborts the transfer with CURLE_ABORTED_BY_CALLBACK. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    const int *cancel = arg;
    return cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED);
}

static ml_fetch_code classify(CURLcode rc, const sink *s) {
    switch (rc) {
    case CURLE_OK: return ML_FETCH_OK;
    case CURLE_ABORTED_BY_CALLBACK: return ML_FETCH_E_CANCELLED;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return ML_FETCH_E_BAD_URL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return ML_FETCH_E_DNS;
    case CURLE_COULDNT_CONNECT: return ML_FETCH_E_REFUSED;
    case CURLE_OPERATION_TIMEDOUT: return ML_FETCH_E_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED: return ML_FETCH_E_TLS;
    case CURLE_HTTP_RETURNED_ERROR: return ML_FETCH_E_STATUS;
    case CURLE_TOO_MANY_REDIRECTS: return ML_FETCH_E_REDIRECTS;
    case CURLE_FILESIZE_EXCEEDED: return ML_FETCH_E_TOO_LARGE;
    case CURLE_PARTIAL_FILE: return ML_FETCH_E_TRUNCATED;
    case CURLE_OUT_OF_MEMORY: return ML_FETCH_E_INTERNAL;
    case CURLE_WRITE_ERROR:
        if (s->too_large) return ML_FETCH_E_TOO_LARGE;
        if (s->io_errno) return ML_FETCH_E_CACHE_IO;
        return ML_FETCH_E_NETWORK;
    default: return ML_FETCH_E_NETWORK;
    }
}

/* The sentence for a failure: the cause in our words, then curl's (which carries specifics
 * such as the host, the elapsed time and the bytes received). */
static int explain(const ml_fetch_request *rq, const ml_fetch_result *res, const sink *s,
                   const char *curl_msg, ml_err *err) {
    const char *url = rq->url;
    switch (res->code) {
    case ML_FETCH_E_BAD_URL:
        return ml_errf(err, "%s: not a usable URL (%s); give an http:// or https:// URL "
                            "(--human-url)", url, curl_msg);
    case ML_FETCH_E_CANCELLED:
        return ml_errf(err, "%s: the download was cancelled (the daemon is shutting down)",
                       url);
    case ML_FETCH_E_DNS:
        return ml_errf(err, "%s: the host name does not resolve (DNS: %s); check the URL and "
                            "the network", url, curl_msg);
    case ML_FETCH_E_REFUSED:
        return ml_errf(err, "%s: cannot connect (%s); the server is down or unreachable", url,
                       curl_msg);
    case ML_FETCH_E_TIMEOUT:
        return ml_errf(err, "%s: timed out (%s; limits: connect %.1f s, total %.1f s)", url,
                       curl_msg, rq->connect_timeout_ms / 1000.0, rq->total_timeout_ms / 1000.0);
    case ML_FETCH_E_TLS:
        return ml_errf(err, "%s: TLS failed (%s); the certificate could not be verified or the "
                            "handshake failed", url, curl_msg);
    case ML_FETCH_E_STATUS:
        /* not the redirect target: the upstream chose it */
        if (strcmp(res->effective_url, url) != 0 && res->effective_url[0])
            return ml_errf(err, "%s: the server answered HTTP %ld (after redirects)", url,
                           res->http_status);
        return ml_errf(err, "%s: the server answered HTTP %ld", url, res->http_status);
    case ML_FETCH_E_REDIRECTS:
        return ml_errf(err, "%s: too many redirects (%s)", url, curl_msg);
    case ML_FETCH_E_TOO_LARGE:
        return ml_errf(err, "%s: the body is larger than the limit of %zu bytes (%s); raise "
                            "--human-max-bytes if the dataset really is that large",
                       url, rq->max_bytes,
                       s->too_large ? "more arrived" : "the server announced more");
    case ML_FETCH_E_TRUNCATED:
        return ml_errf(err, "%s: the connection closed before the body was complete (%s)", url,
                       curl_msg);
    case ML_FETCH_E_CACHE_IO:
        return ml_errf(err, "%s: cannot write the download to the cache folder: %s", url,
                       strerror(s->io_errno));
    case ML_FETCH_E_INTERNAL: return ml_errf(err, "%s: out of memory", url);
    default: return ml_errf(err, "%s: the download failed (%s)", url, curl_msg);
    }
}

/* CURLOPT_RESOLVER_START_FUNCTION: libcurl calls it only for hosts that rq->resolve does
 * not answer; a non-zero return fails the transfer with CURLE_COULDNT_RESOLVE_HOST. */
static int refuse_lookup(void *resolver_state, void *reserved, void *arg) {
    (void)resolver_state, (void)reserved, (void)arg;
    return 1;
}

static int setup(CURL *c, const ml_fetch_request *rq, sink *s, struct curl_slist **hdrs,
                 struct curl_slist **resolve, char *errbuf) {
    char line[512];
    *hdrs = *resolve = NULL;
    for (const char *const *r = rq->resolve; r && *r; r++) {
        struct curl_slist *l = curl_slist_append(*resolve, *r);
        if (!l) return -1;
        *resolve = l;
    }
    if (rq->etag && rq->etag[0]) {
        snprintf(line, sizeof line, "If-None-Match: %s", rq->etag);
        *hdrs = curl_slist_append(*hdrs, line);
        if (!*hdrs) return -1;
    }
    if (rq->last_modified && rq->last_modified[0]) {
        snprintf(line, sizeof line, "If-Modified-Since: %s", rq->last_modified);
        struct curl_slist *h = curl_slist_append(*hdrs, line);
        if (!h) return -1;
        *hdrs = h;
    }
    int bad = 0;
    bad |= curl_easy_setopt(c, CURLOPT_URL, rq->url) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, rq->connect_timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->total_timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rq->max_bytes) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_USERAGENT, rq->user_agent) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
    /* Let the server compress; the cap applies to the decoded bytes in on_body. */
    bad |= curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    /* An error page must not end up in the file. */
    bad |= curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_WRITEDATA, s) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_HEADERDATA, s) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)rq->cancel) != CURLE_OK;
    if (*hdrs) bad |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs) != CURLE_OK;
    if (*resolve) bad |= curl_easy_setopt(c, CURLOPT_RESOLVE, *resolve) != CURLE_OK;
    if (rq->resolve_only)
        bad |= curl_easy_setopt(c, CURLOPT_RESOLVER_START_FUNCTION, refuse_lookup) != CURLE_OK;
    return bad ? -1 : 0;
}

int ml_fetch_to_fd(const ml_fetch_request *rq, int fd, ml_fetch_result *res, ml_err *err) {
    memset(res, 0, sizeof *res);
    sink s = {.fd = fd, .max_bytes = rq->max_bytes, .res = res};
    ml_sha256_init(&s.sha);
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL, *resolve = NULL;
    CURL *c = curl_easy_init();
    if (!c || setup(c, rq, &s, &hdrs, &resolve, errbuf) != 0) {
        curl_slist_free_all(hdrs);
        curl_slist_free_all(resolve);
        if (c) curl_easy_cleanup(c);
        res->code = ML_FETCH_E_INTERNAL;
        return ml_errf(err, "%s: cannot set up the download (libcurl without http/https "
                            "support, or out of memory)", rq->url);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->http_status);
    char *eff = NULL;
    if (curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff)
        snprintf(res->effective_url, sizeof res->effective_url, "%s", eff);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    curl_slist_free_all(resolve);

    res->bytes = s.bytes;
    res->code = classify(rc, &s);
    if (res->code == ML_FETCH_OK) {
        if (res->http_status == 304) {
            res->not_modified = 1;
        } else if (res->http_status != 200) {
            /* 1xx-3xx other than 304 and 2xx other than 200 (e.g. 204, 206, a 302 without a
             * Location): not the file. */
            res->code = ML_FETCH_E_STATUS;
        }
    }
    if (res->code != ML_FETCH_OK)
        return explain(rq, res, &s, errbuf[0] ? errbuf : curl_easy_strerror(rc), err);
    if (!res->not_modified) {
        unsigned char digest[ML_SHA256_LEN];
        ml_sha256_final(&s.sha, digest);
        ml_sha256_to_hex(digest, res->sha256);
    }
    return 0;
}

int ml_fetch_url_allowed(const char *url) {
    return url && (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0);
}

const char *ml_fetch_code_name(ml_fetch_code c) {
    static const char *const names[ML_FETCH_N_CODES] = {
        [ML_FETCH_OK] = "ok",
        [ML_FETCH_E_BAD_URL] = "upstream_bad_url",
        [ML_FETCH_E_DNS] = "upstream_dns",
        [ML_FETCH_E_REFUSED] = "upstream_refused",
        [ML_FETCH_E_TIMEOUT] = "upstream_timeout",
        [ML_FETCH_E_TLS] = "upstream_tls",
        [ML_FETCH_E_STATUS] = "upstream_status",
        [ML_FETCH_E_REDIRECTS] = "upstream_redirects",
        [ML_FETCH_E_TOO_LARGE] = "upstream_too_large",
        [ML_FETCH_E_TRUNCATED] = "upstream_truncated",
        [ML_FETCH_E_NOT_CSV] = "upstream_not_csv",
        [ML_FETCH_E_BAD_CSV] = "upstream_bad_csv",
        [ML_FETCH_E_NETWORK] = "upstream_error",
        [ML_FETCH_E_CACHE_IO] = "cache_io",
        [ML_FETCH_E_INTERNAL] = "internal",
        [ML_FETCH_E_CANCELLED] = "cancelled",
    };
    return (unsigned)c < ML_FETCH_N_CODES ? names[c] : "internal";
}
