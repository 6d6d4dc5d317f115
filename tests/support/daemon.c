#include "daemon.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ML_BUILD_ROOT
#define ML_BUILD_ROOT "build"
#endif
#ifndef ML_SOURCE_ROOT
#define ML_SOURCE_ROOT "."
#endif

const char *demo_config(void) { return ML_SOURCE_ROOT "/config/demo.json"; }

static int has_arg(const char *const *args, const char *name) {
    for (; args && *args; args++)
        if (!strcmp(*args, name)) return 1;
    return 0;
}

/* A fresh folder for a daemon's --cache-dir (under $TMPDIR or /tmp), so no test reads or
 * writes ~/.cache or a folder another run shares. 0 when made. */
static int make_cache_dir(char *out, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    snprintf(out, cap, "%s/metalign-daemon-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(out)) return 0;
    fprintf(stderr, "daemon.c: mkdtemp(%s): %s\n", out, strerror(errno));
    out[0] = '\0';
    return -1;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_cache_dir(char *dir) {
    if (!dir[0]) return;
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
}

/* argv: the binary, args, --cache-dir cache_dir (when given), --listen (when asked). */
static void build_argv(const char *const *args, const char **argv, int max, int add_listen,
                       const char *cache_dir) {
    int n = 0;
    argv[n++] = ML_BUILD_ROOT "/metalignd";
    for (; args && *args && n < max - 6; args++) argv[n++] = *args;
    if (cache_dir && cache_dir[0]) {
        argv[n++] = "--cache-dir";
        argv[n++] = cache_dir;
    }
    if (add_listen) {
        argv[n++] = "--listen";
        argv[n++] = "127.0.0.1:0";
    }
    argv[n] = NULL;
}

static void read_available(test_daemon *d, int timeout_ms) {
    struct pollfd p = {d->stderr_fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return;
    if (d->log_len + 1 >= sizeof d->log) return;
    ssize_t n = read(d->stderr_fd, d->log + d->log_len, sizeof d->log - 1 - d->log_len);
    if (n > 0) {
        d->log_len += (size_t)n;
        d->log[d->log_len] = '\0';
    }
}

int daemon_spawn(test_daemon *d, const char *const *args) {
    memset(d, 0, sizeof *d);
    if (!has_arg(args, "--cache-dir") && make_cache_dir(d->cache_dir, sizeof d->cache_dir) != 0)
        return -1;
    int fds[2];
    if (pipe(fds) != 0) {
        remove_cache_dir(d->cache_dir);
        return -1;
    }
    const char *argv[64];
    build_argv(args, argv, 64, 1, d->cache_dir);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        remove_cache_dir(d->cache_dir);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    d->pid = pid;
    d->stderr_fd = fds[0];
    for (int waited = 0; waited < 30000; waited += 50) {
        read_available(d, 50);
        const char *at = strstr(d->log, "listening on http://");
        const char *nl = at ? strchr(at, '\n') : NULL;
        if (nl) { /* the port ends the line */
            const char *colon = nl;
            while (colon > at && *colon != ':') colon--;
            d->port = atoi(colon + 1);
            return d->port > 0 ? 0 : -1;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            read_available(d, 100);
            close(d->stderr_fd);
            d->pid = 0;
            remove_cache_dir(d->cache_dir);
            return -1;
        }
    }
    daemon_stop(d, SIGKILL);
    return -1;
}

/* GET /readyz until 200 (the daemon listens before it has loaded the model). */
int daemon_wait_ready(test_daemon *d, double seconds) {
    for (double waited = 0; waited < seconds; waited += 0.02) {
        http_reply r;
        int ok = http_call(d, "GET", "/readyz", NULL, &r) == 0 && r.status == 200;
        http_reply_free(&r);
        if (ok) return 0;
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            read_available(d, 100);
            d->pid = 0;
            return -1;
        }
        read_available(d, 0);
        usleep(20000);
    }
    return -1;
}

int daemon_start(test_daemon *d, const char *const *args) {
    if (daemon_spawn(d, args) != 0) return -1;
    if (daemon_wait_ready(d, 60) == 0) return 0;
    if (d->pid) daemon_stop(d, SIGKILL);
    return -1;
}

int daemon_stop(test_daemon *d, int sig) {
    if (!d->pid) return -1;
    kill(d->pid, sig);
    int st = 0;
    for (int waited = 0; waited < 60000; waited += 20) {
        read_available(d, 20);
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) break;
    }
    read_available(d, 10);
    close(d->stderr_fd);
    d->pid = 0;
    remove_cache_dir(d->cache_dir);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

int daemon_run(const char *const *args, char *out, size_t out_len) {
    char cache_dir[128] = "";
    if ((has_arg(args, "--config") || has_arg(args, "--checkpoint")) &&
        !has_arg(args, "--cache-dir") && make_cache_dir(cache_dir, sizeof cache_dir) != 0)
        return -1;
    int fds[2];
    if (pipe(fds) != 0) {
        remove_cache_dir(cache_dir);
        return -1;
    }
    const char *argv[64];
    build_argv(args, argv, 64, 0, cache_dir);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        remove_cache_dir(cache_dir);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], out + len, out_len - 1 - len)) > 0) {
        len += (size_t)n;
        if (len + 1 >= out_len) break;
    }
    out[len] = '\0';
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    remove_cache_dir(cache_dir);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    http_reply *r = ud;
    size_t add = size * n;
    char *grown = realloc(r->body, r->len + add + 1);
    if (!grown) return 0;
    r->body = grown;
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    http_reply *r = ud;
    size_t len = size * n;
    if (len > 6 && strncasecmp(p, "Allow:", 6) == 0)
        snprintf(r->allow, sizeof r->allow, "%.*s", (int)(len - 6), p + 6);
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) r->retry_after = atoi(p + 12);
    return len;
}

int http_call(const test_daemon *d, const char *method, const char *path, const char *body,
              http_reply *r) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) return -1;
    char *url = NULL; /* paths can be long (dims lists of a thousand entries) */
    if (asprintf(&url, "http://127.0.0.1:%d%s", d->port, path) < 0) {
        curl_easy_cleanup(c);
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    struct curl_slist *hdrs = NULL;
    if (body) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ct) snprintf(r->content_type, sizeof r->content_type, "%s", ct);
        curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->seconds);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    free(url);
    return rc == CURLE_OK ? 0 : -1;
}

void http_reply_free(http_reply *r) {
    free(r->body);
    r->body = NULL;
}

json_t *http_json(const http_reply *r) {
    if (!r->body) return NULL;
    return json_loadb(r->body, r->len, 0, NULL);
}

static void *bg_main(void *arg) {
    bg_call *c = arg;
    c->rc = http_call(c->d, c->method, c->path, c->body, &c->r);
    return NULL;
}

void bg_start(bg_call *c, const test_daemon *d, const char *method, const char *path,
              const char *body) {
    *c = (bg_call){.d = d, .method = method, .path = path, .body = body};
    if (pthread_create(&c->t, NULL, bg_main, c) != 0) {
        printf("Bail out! pthread_create for %s %s\n", method, path);
        exit(1);
    }
}

double http_metric(const test_daemon *d, const char *name) {
    http_reply r;
    double v = -1;
    if (http_call(d, "GET", "/metrics", NULL, &r) == 0 && r.body) {
        char key[160];
        snprintf(key, sizeof key, "\n%s ", name);
        const char *at = strstr(r.body, key);
        if (at) v = atof(at + strlen(key));
    }
    http_reply_free(&r);
    return v;
}

static double monotonic_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int http_metric_wait(const test_daemon *d, const char *name, double lo, double hi,
                     double seconds, double *last) {
    double until = monotonic_seconds() + seconds;
    for (;;) {
        double v = http_metric(d, name);
        if (last) *last = v;
        if (v >= lo && v <= hi) return 0;
        if (monotonic_seconds() > until) return -1;
        usleep(20000);
    }
}
