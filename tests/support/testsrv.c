#include "testsrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PATHS 64
#define BIG_BYTES ((size_t)8 << 20)

struct testsrv {
    int listen_fd;
    int port;
    int stop_pipe[2];
    pthread_t accept_thread;

    pthread_mutex_t lock;
    pthread_cond_t idle;
    int active;
    char *body;
    size_t body_len;
    int version;
    char mode[32];
    int delay_ms, stall_ms;
    struct {
        char path[256];
        int n;
    } counts[MAX_PATHS];
    int n_counts;
    int conditional, not_modified;
    char ua[256];
};

typedef struct conn {
    testsrv *s;
    int fd;
} conn;

typedef struct request {
    char method[16];
    char path[256];
    char if_none_match[128];
    char if_modified_since[128];
    char user_agent[256];
} request;

static int send_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Sleeps ms unless the server stops first; 1 when it is stopping. */
static int nap(testsrv *s, int ms) {
    struct pollfd p = {.fd = s->stop_pipe[0], .events = POLLIN};
    return poll(&p, 1, ms) > 0;
}

static void header_copy(const char *line, const char *name, char *dst, size_t cap) {
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) != 0 || line[n] != ':') return;
    const char *v = line + n + 1;
    while (*v == ' ') v++;
    size_t len = strcspn(v, "\r\n");
    if (len >= cap) len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* Reads up to the blank line ending the headers (5 s at most). */
static int read_request(testsrv *s, int fd, request *rq) {
    char buf[8192];
    size_t got = 0;
    memset(rq, 0, sizeof *rq);
    while (got < sizeof buf - 1) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                              {.fd = s->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, 5000) <= 0 || p[1].revents) return -1;
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n")) break;
    }
    if (sscanf(buf, "%15s %255s", rq->method, rq->path) != 2) return -1;
    rq->path[strcspn(rq->path, "?")] = '\0';
    for (char *line = strstr(buf, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        header_copy(line + 2, "If-None-Match", rq->if_none_match, sizeof rq->if_none_match);
        header_copy(line + 2, "If-Modified-Since", rq->if_modified_since,
                    sizeof rq->if_modified_since);
        header_copy(line + 2, "User-Agent", rq->user_agent, sizeof rq->user_agent);
    }
    return 0;
}

static void respond(int fd, int status, const char *reason, const char *type, const char *extra,
                    const void *body, size_t len) {
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, reason, type, len, extra ? extra : "");
    if (send_all(fd, head, (size_t)n) == 0 && len) send_all(fd, body, len);
}

static void error_page(int fd, int status, const char *reason) {
    char page[256];
    int n = snprintf(page, sizeof page, "<!DOCTYPE html><html><body><h1>%d %s</h1></body></html>\n",
                     status, reason);
    respond(fd, status, reason, "text/html", NULL, page, (size_t)n);
}

/* CSV rows for the oversized answers: n bytes (the caller streams them in chunks). */
static void stream_rows(testsrv *s, int fd, size_t total) {
    static const char header[] = "participant,trial,dimension,correct\n";
    char chunk[65536];
    size_t fill = 0;
    while (fill + 16 < sizeof chunk)
        fill += (size_t)sprintf(chunk + fill, "P1,%zu,0,True\n", fill % 100);
    if (send_all(fd, header, sizeof header - 1) != 0) return;
    for (size_t sent = sizeof header - 1; sent < total;) {
        size_t n = total - sent < fill ? total - sent : fill;
        if (send_all(fd, chunk, n) != 0 || nap(s, 0)) return;
        sent += n;
    }
}

static void http_date(int version, char *out, size_t cap) {
    struct tm base = {.tm_year = 124, .tm_mon = 4, .tm_mday = 1, .tm_hour = 12};
    time_t t = timegm(&base) + 60 * version;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void serve_body(testsrv *s, int fd, const request *rq, int etag_on, int lm_on) {
    pthread_mutex_lock(&s->lock);
    char mode[32], etag[64], lm[64];
    snprintf(mode, sizeof mode, "%s", s->mode);
    snprintf(etag, sizeof etag, "\"v%d\"", s->version);
    http_date(s->version, lm, sizeof lm);
    size_t len = s->body_len;
    char *body = malloc(len ? len : 1);
    if (body) memcpy(body, s->body, len);
    int delay = s->delay_ms, stall = s->stall_ms;
    int conditional = (etag_on && rq->if_none_match[0]) || (lm_on && rq->if_modified_since[0]);
    int match = (etag_on && rq->if_none_match[0] && strcmp(rq->if_none_match, etag) == 0) ||
                (lm_on && !(etag_on && rq->if_none_match[0]) && rq->if_modified_since[0] &&
                 strcmp(rq->if_modified_since, lm) == 0);
    if (conditional) s->conditional++;
    if (match && strcmp(mode, "ok") == 0) s->not_modified++;
    pthread_mutex_unlock(&s->lock);
    if (!body) return;
    if (delay) nap(s, delay);

    char extra[256] = "";
    size_t n = 0;
    if (etag_on) n += (size_t)snprintf(extra + n, sizeof extra - n, "ETag: %s\r\n", etag);
    if (lm_on) snprintf(extra + n, sizeof extra - n, "Last-Modified: %s\r\n", lm);

    if (strcmp(mode, "ok") == 0) {
        if (match)
            respond(fd, 304, "Not Modified", "text/csv", extra, NULL, 0);
        else
            respond(fd, 200, "OK", "text/csv", extra, body, len);
    } else if (strcmp(mode, "404") == 0) {
        error_page(fd, 404, "Not Found");
    } else if (strcmp(mode, "500") == 0) {
        error_page(fd, 500, "Internal Server Error");
    } else if (strcmp(mode, "stall") == 0) {
        char head[256];
        int h = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n", len);
        send_all(fd, head, (size_t)h);
        nap(s, stall);
    } else if (strcmp(mode, "truncate") == 0) {
        char head[256];
        int h = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n", len);
        if (send_all(fd, head, (size_t)h) == 0) send_all(fd, body, len / 2);
    } else if (strcmp(mode, "big") == 0) {
        size_t total = len > BIG_BYTES ? len : BIG_BYTES;
        char head[256];
        int h = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n", total);
        if (send_all(fd, head, (size_t)h) == 0) stream_rows(s, fd, total);
    } else if (strcmp(mode, "big_chunked") == 0) {
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n"
                                   "Connection: close\r\n\r\n";
        if (send_all(fd, head, sizeof head - 1) == 0) stream_rows(s, fd, BIG_BYTES);
    } else if (strcmp(mode, "html") == 0) {
        static const char page[] = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
                                   "<body>Please sign in to view this file.</body></html>\n";
        respond(fd, 200, "OK", "text/html; charset=utf-8", NULL, page, sizeof page - 1);
    } else if (strcmp(mode, "binary") == 0) {
        static const char zip[] = "PK\x03\x04\x14\x00\x00\x00\x08\x00participant,trial\x00\x01";
        respond(fd, 200, "OK", "application/octet-stream", NULL, zip, sizeof zip - 1);
    } else if (strcmp(mode, "empty") == 0) {
        respond(fd, 200, "OK", "text/csv", NULL, NULL, 0);
    } else if (strcmp(mode, "badrow") == 0) {
        static const char csv[] = "participant,trial,dimension,correct\nP1,0,0,True\nP1,x,0,True\n";
        respond(fd, 200, "OK", "text/csv", NULL, csv, sizeof csv - 1);
    } else {
        error_page(fd, 400, "Unknown Mode");
    }
    free(body);
}

static void count(testsrv *s, const request *rq) {
    pthread_mutex_lock(&s->lock);
    snprintf(s->ua, sizeof s->ua, "%s", rq->user_agent);
    int i = 0;
    while (i < s->n_counts && strcmp(s->counts[i].path, rq->path) != 0) i++;
    if (i == s->n_counts && i < MAX_PATHS) {
        snprintf(s->counts[i].path, sizeof s->counts[i].path, "%s", rq->path);
        s->counts[i].n = 0;
        s->n_counts++;
    }
    if (i < MAX_PATHS) s->counts[i].n++;
    pthread_mutex_unlock(&s->lock);
}

static void control(testsrv *s, int fd, const request *rq) {
    static const char mode_prefix[] = "/_control/mode/";
    if (strncmp(rq->path, mode_prefix, sizeof mode_prefix - 1) == 0) {
        testsrv_set_mode(s, rq->path + sizeof mode_prefix - 1);
        respond(fd, 200, "OK", "text/plain", NULL, "ok\n", 3);
        return;
    }
    char out[8192];
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    n += (size_t)snprintf(out + n, sizeof out - n, "{");
    for (int i = 0; i < s->n_counts && n < sizeof out - 200; i++)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s\"%s\":%d", i ? "," : "",
                              s->counts[i].path, s->counts[i].n);
    pthread_mutex_unlock(&s->lock);
    n += (size_t)snprintf(out + n, sizeof out - n, "}\n");
    respond(fd, 200, "OK", "application/json", NULL, out, n);
}

static void *conn_main(void *arg) {
    conn *c = arg;
    testsrv *s = c->s;
    request rq;
    if (read_request(s, c->fd, &rq) == 0) {
        count(s, &rq);
        char loc[256];
        if (strcmp(rq.path, "/data.csv") == 0) {
            serve_body(s, c->fd, &rq, 1, 1);
        } else if (strcmp(rq.path, "/lm.csv") == 0) {
            serve_body(s, c->fd, &rq, 0, 1);
        } else if (strcmp(rq.path, "/plain.csv") == 0) {
            serve_body(s, c->fd, &rq, 0, 0);
        } else if (strcmp(rq.path, "/redirect") == 0 || strcmp(rq.path, "/redirect-loop") == 0) {
            snprintf(loc, sizeof loc, "Location: http://127.0.0.1:%d%s\r\n", s->port,
                     strcmp(rq.path, "/redirect") == 0 ? "/data.csv" : "/redirect-loop");
            respond(c->fd, 302, "Found", "text/html", loc, "<a>moved</a>", 12);
        } else if (strcmp(rq.path, "/404") == 0) {
            error_page(c->fd, 404, "Not Found");
        } else if (strcmp(rq.path, "/500") == 0) {
            error_page(c->fd, 500, "Internal Server Error");
        } else if (strncmp(rq.path, "/_control/", 10) == 0) {
            control(s, c->fd, &rq);
        } else {
            error_page(c->fd, 404, "Not Found");
        }
    }
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    free(c);
    pthread_mutex_lock(&s->lock);
    s->active--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void *accept_main(void *arg) {
    testsrv *s = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = s->listen_fd, .events = POLLIN},
                              {.fd = s->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[1].revents) break;
        if (!(p[0].revents & POLLIN)) continue;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        conn *c = malloc(sizeof *c);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_mutex_lock(&s->lock);
        s->active++;
        pthread_mutex_unlock(&s->lock);
        if (c) *c = (conn){s, fd};
        if (!c || pthread_create(&t, &attr, conn_main, c) != 0) {
            free(c);
            close(fd);
            pthread_mutex_lock(&s->lock);
            s->active--;
            pthread_mutex_unlock(&s->lock);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

testsrv *testsrv_start(void) {
    testsrv *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    snprintf(s->mode, sizeof s->mode, "ok");
    s->stall_ms = 10000;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->listen_fd, 64) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&a, &alen) != 0 ||
        pipe2(s->stop_pipe, O_CLOEXEC) != 0) {
        perror("testsrv: listen on 127.0.0.1");
        if (s->listen_fd >= 0) close(s->listen_fd);
        free(s);
        return NULL;
    }
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->accept_thread, NULL, accept_main, s) != 0) {
        close(s->listen_fd);
        close(s->stop_pipe[0]);
        close(s->stop_pipe[1]);
        free(s);
        return NULL;
    }
    return s;
}

void testsrv_stop(testsrv *s) {
    if (!s) return;
    /* The pipe stays readable once written: every nap and poll returns at once. */
    if (write(s->stop_pipe[1], "x", 1) != 1) perror("testsrv: stop");
    pthread_join(s->accept_thread, NULL);
    pthread_mutex_lock(&s->lock);
    while (s->active) pthread_cond_wait(&s->idle, &s->lock);
    pthread_mutex_unlock(&s->lock);
    close(s->listen_fd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->idle);
    free(s->body);
    free(s);
}

int testsrv_port(const testsrv *s) { return s->port; }

void testsrv_url(const testsrv *s, const char *path, char *out, size_t cap) {
    snprintf(out, cap, "http://127.0.0.1:%d%s", s->port, path);
}

void testsrv_set_body(testsrv *s, const void *data, size_t len) {
    char *copy = malloc(len ? len : 1);
    if (!copy) return;
    memcpy(copy, data, len);
    pthread_mutex_lock(&s->lock);
    free(s->body);
    s->body = copy;
    s->body_len = len;
    s->version++;
    pthread_mutex_unlock(&s->lock);
}

int testsrv_set_body_file(testsrv *s, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *b = realloc(buf, cap);
            if (!b) break;
            buf = b;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0) break;
        len += n;
    }
    int ok = !ferror(f) && buf;
    fclose(f);
    if (ok) testsrv_set_body(s, buf, len);
    free(buf);
    return ok ? 0 : -1;
}

void testsrv_set_mode(testsrv *s, const char *mode) {
    pthread_mutex_lock(&s->lock);
    snprintf(s->mode, sizeof s->mode, "%s", mode);
    pthread_mutex_unlock(&s->lock);
}

void testsrv_set_delay_ms(testsrv *s, int ms) {
    pthread_mutex_lock(&s->lock);
    s->delay_ms = ms;
    pthread_mutex_unlock(&s->lock);
}

void testsrv_set_stall_ms(testsrv *s, int ms) {
    pthread_mutex_lock(&s->lock);
    s->stall_ms = ms;
    pthread_mutex_unlock(&s->lock);
}

int testsrv_count(testsrv *s, const char *path) {
    int n = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_counts; i++)
        if (strcmp(s->counts[i].path, path) == 0) n = s->counts[i].n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int testsrv_conditional(testsrv *s) {
    pthread_mutex_lock(&s->lock);
    int n = s->conditional;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int testsrv_not_modified(testsrv *s) {
    pthread_mutex_lock(&s->lock);
    int n = s->not_modified;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void testsrv_reset_counts(testsrv *s) {
    pthread_mutex_lock(&s->lock);
    s->n_counts = 0;
    s->conditional = s->not_modified = 0;
    pthread_mutex_unlock(&s->lock);
}

void testsrv_last_user_agent(testsrv *s, char *out, size_t cap) {
    pthread_mutex_lock(&s->lock);
    snprintf(out, cap, "%s", s->ua);
    pthread_mutex_unlock(&s->lock);
}
