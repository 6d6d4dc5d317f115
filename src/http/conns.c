#include "http/conns.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <stdio.h>
#include <time.h>

#include "http/mhd_errors.h"

struct ml_conn {
    ml_conns *table;
    int fd;
    double phase_start;  /* reading since (monotonic seconds) */
    int reading;         /* 1 until the whole request is in, again after the answer */
    int in_body;         /* its headers are in and its body is being read */
    int suspended;
    int closing;         /* answered and closing: by the sweep (408) or its reader (408, 413) */
    int gone;            /* its client went away (reported once) */
    void *req;           /* the current request, or NULL */
    ml_conn *prev, *next;
};

struct ml_conns {
    ml_conns_options opt;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    ml_conn *head;
    int count, n_suspended;
    int stop;
    pthread_t sweeper;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Shuts down the sockets past their read deadline (lock held). MHD sees the end of the
 * stream at once and closes the connection. A body being read gets a 408 first (MHD writes
 * nothing while it reads a body); a header phase gets none (an idle keep-alive connection
 * and a trickle of header bytes look the same). */
static void enforce_deadlines(ml_conns *t, double now) {
    for (ml_conn *c = t->head; c; c = c->next)
        if (c->reading && !c->closing && now - c->phase_start > t->opt.read_timeout) {
            if (c->in_body) {
                char msg[160];
                snprintf(msg, sizeof msg, "the request took longer than %.0f s to arrive "
                                          "(--read-timeout); send it at once",
                         t->opt.read_timeout);
                ml_http_write_error(c->fd, 408, "request_timeout", msg, 0);
            }
            shutdown(c->fd, SHUT_RDWR);
            c->closing = 1;
        }
}

/* Polls the suspended sockets for a hang-up (lock held). */
static void watch_suspended(ml_conns *t) {
    if (!t->n_suspended) return;
    struct pollfd stack[64], *fds = stack;
    ml_conn *stack_conn[64], **who = stack_conn;
    if (t->n_suspended > 64) {
        fds = malloc(sizeof *fds * (size_t)t->n_suspended);
        who = malloc(sizeof *who * (size_t)t->n_suspended);
        if (!fds || !who) {
            if (fds != stack) free(fds);
            if (who != stack_conn) free(who);
            return;
        }
    }
    int n = 0;
    for (ml_conn *c = t->head; c && n < t->n_suspended; c = c->next)
        if (c->suspended && !c->gone) {
            fds[n] = (struct pollfd){.fd = c->fd, .events = POLLRDHUP};
            who[n++] = c;
        }
    if (n && poll(fds, (nfds_t)n, 0) > 0)
        for (int i = 0; i < n; i++)
            if (fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                who[i]->gone = 1;
                if (who[i]->req && t->opt.client_gone) t->opt.client_gone(who[i]->req, t->opt.arg);
            }
    if (fds != stack) free(fds);
    if (who != stack_conn) free(who);
}

static void *sweep_main(void *arg) {
    ml_conns *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        enforce_deadlines(t, now_s());
        watch_suspended(t);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += ML_CONNS_SWEEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&t->wake, &t->lock, &until);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

ml_conns *ml_conns_new(const ml_conns_options *o, ml_err *err) {
    ml_conns *t = calloc(1, sizeof *t);
    if (!t) return ml_errp(err, "out of memory");
    t->opt = *o;
    /* Recursive: a request cancelled by the sweep (under the lock) may resume at once, which
     * marks its connection resumed (the lock again, on the same thread). */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&t->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_cond_init(&t->wake, NULL);
    int rc = pthread_create(&t->sweeper, NULL, sweep_main, t);
    if (rc != 0) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->wake);
        free(t);
        return ml_errp(err, "cannot start the connection sweeper: %s", strerror(rc));
    }
    return t;
}

void ml_conns_free(ml_conns *t) {
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->sweeper, NULL);
    while (t->head) { /* none after MHD_stop_daemon; kept tidy regardless */
        ml_conn *next = t->head->next;
        free(t->head);
        t->head = next;
    }
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    free(t);
}

void ml_conns_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                     enum MHD_ConnectionNotificationCode code) {
    ml_conns *t = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        ml_conn *c = calloc(1, sizeof *c);
        *socket_context = c;
        if (!c) return; /* untracked: MHD's own idle timeout still applies */
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->table = t;
        c->fd = fd ? fd->connect_fd : -1;
        c->phase_start = now_s();
        c->reading = c->fd >= 0;
        pthread_mutex_lock(&t->lock);
        c->next = t->head;
        if (t->head) t->head->prev = c;
        t->head = c;
        t->count++;
        pthread_mutex_unlock(&t->lock);
        return;
    }
    ml_conn *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&t->lock);
    if (c->prev) c->prev->next = c->next; else t->head = c->next;
    if (c->next) c->next->prev = c->prev;
    t->count--;
    if (c->suspended) t->n_suspended--;
    pthread_mutex_unlock(&t->lock);
    free(c);
    *socket_context = NULL;
}

ml_conn *ml_conn_of(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

void ml_conn_begin(ml_conn *c, void *req) {
    if (!c) return;
    pthread_mutex_lock(&c->table->lock);
    c->req = req;
    pthread_mutex_unlock(&c->table->lock);
}

void ml_conn_body(ml_conn *c) {
    if (!c) return;
    pthread_mutex_lock(&c->table->lock);
    c->in_body = 1;
    pthread_mutex_unlock(&c->table->lock);
}

void ml_conn_received(ml_conn *c) {
    if (!c) return;
    pthread_mutex_lock(&c->table->lock);
    c->reading = 0;
    c->in_body = 0;
    pthread_mutex_unlock(&c->table->lock);
}

int ml_conn_claim_overdue(ml_conn *c) {
    if (!c) return 0;
    pthread_mutex_lock(&c->table->lock);
    int late = c->reading && !c->closing && now_s() - c->phase_start > c->table->opt.read_timeout;
    if (late) c->closing = 1; /* the sweeper leaves it to us (enforce_deadlines) */
    pthread_mutex_unlock(&c->table->lock);
    return late;
}

int ml_conn_claim_answer(ml_conn *c) {
    if (!c) return 1;
    pthread_mutex_lock(&c->table->lock);
    int ours = !c->closing;
    c->closing = 1;
    pthread_mutex_unlock(&c->table->lock);
    return ours;
}

void ml_conn_suspended(ml_conn *c, int on) {
    if (!c) return;
    pthread_mutex_lock(&c->table->lock);
    if (c->suspended != on) c->table->n_suspended += on ? 1 : -1;
    c->suspended = on;
    pthread_mutex_unlock(&c->table->lock);
}

void ml_conn_end(ml_conn *c) {
    if (!c) return;
    pthread_mutex_lock(&c->table->lock);
    c->req = NULL;
    c->gone = 0;
    c->reading = 1;
    c->in_body = 0;
    c->phase_start = now_s();
    pthread_mutex_unlock(&c->table->lock);
}

int ml_conn_fd(const ml_conn *c) { return c ? c->fd : -1; }

void ml_conns_each_suspended(ml_conns *t, void (*fn)(void *req, void *arg), void *arg) {
    pthread_mutex_lock(&t->lock);
    for (ml_conn *c = t->head; c; c = c->next)
        if (c->suspended && c->req) fn(c->req, arg);
    pthread_mutex_unlock(&t->lock);
}

int ml_conns_count(ml_conns *t) {
    pthread_mutex_lock(&t->lock);
    int n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}
