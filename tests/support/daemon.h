/* Runs the real metalignd binary for HTTP tests and talks to it with libcurl. */
#ifndef METALIGN_TESTS_DAEMON_H
#define METALIGN_TESTS_DAEMON_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct test_daemon {
    pid_t pid;
    int port;
    int stderr_fd;
    char log[16384]; /* what it printed on stderr so far */
    size_t log_len;
    char cache_dir[128]; /* the private --cache-dir made for it; "" when the test gave one */
} test_daemon;

/* Starts build/metalignd with args (NULL-terminated; --listen 127.0.0.1:0 is added, and a
 * --cache-dir of its own in a fresh temporary folder unless args name one) and waits until
 * it prints its listening line and /readyz answers 200. Returns 0, or -1 if it exited or
 * timed out (d->log says why). */
int daemon_start(test_daemon *d, const char *const *args);
/* Only until the listening line (the model may still be loading). */
int daemon_spawn(test_daemon *d, const char *const *args);
/* Polls /readyz until 200; -1 if the daemon exited or seconds passed. */
int daemon_wait_ready(test_daemon *d, double seconds);
/* Sends sig and waits for the exit; returns the exit status (or 128 + signal). Removes the
 * private cache folder. */
int daemon_stop(test_daemon *d, int sig);
/* Runs the binary to completion (e.g. --check, failing start-ups): exit status, output.
 * A run given --config or --checkpoint without --cache-dir gets a private one, removed
 * after the run. */
int daemon_run(const char *const *args, char *out, size_t out_len);
/* The demo bundle's config. */
const char *demo_config(void);

typedef struct http_reply {
    long status;
    char *body;
    size_t len;
    char content_type[128];
    char allow[64];
    int retry_after;  /* the Retry-After header's seconds, 0 without one */
    double seconds;
} http_reply;

/* method "GET"/"POST"/...; body may be NULL. Returns 0 when a reply arrived. */
int http_call(const test_daemon *d, const char *method, const char *path, const char *body,
              http_reply *r);
void http_reply_free(http_reply *r);
/* Parses the reply body as JSON (NULL if it is not). */
json_t *http_json(const http_reply *r);

/* The value of one series on /metrics, named with its labels as printed (e.g.
 * "metalignd_worker_tasks{class=\"interactive\"}"), or -1 when it is absent. */
double http_metric(const test_daemon *d, const char *name);
/* Polls that series until its value is within [lo, hi] (0) or seconds have passed (-1): a
 * loaded machine is slow, so tests wait by time, never by a count of tries. *last (if given)
 * is the last value read (-1 when the series was absent). */
int http_metric_wait(const test_daemon *d, const char *name, double lo, double hi,
                     double seconds, double *last);

/* One request in a thread of its own, for tests that need several in flight (shutdown,
 * coalescing, abandoned work): bg_start, then pthread_join(c->t, NULL) before reading c->rc
 * and c->r (the caller frees c->r). */
typedef struct bg_call {
    const test_daemon *d;
    const char *method, *path, *body;
    http_reply r;
    int rc;
    pthread_t t;
} bg_call;
void bg_start(bg_call *c, const test_daemon *d, const char *method, const char *path,
              const char *body);

#endif
