/* The open connections, as libmicrohttpd reports them (MHD_OPTION_NOTIFY_CONNECTION), and a
 * sweep thread that enforces what MHD does not:
 *  - a read deadline: a connection has read_timeout seconds, counted from its start or from
 *    its previous answer, to deliver a whole request (headers and body). MHD's own timeout
 *    restarts on every byte, so a client sending one byte every few seconds would hold the
 *    connection forever; the sweep shuts such a socket down.
 *  - clients that go away: MHD does not watch a suspended connection (its request waits for
 *    a compute worker or for another request's computation), so the sweep polls those
 *    sockets and tells the request's owner, who stops the work nobody will read.
 * Every call is thread-safe. The sweep acts under the table's lock, and a connection leaves
 * the table (its CLOSED notification) under that lock before MHD closes its socket, so the
 * sweep never touches a socket that was closed (or reused). */
#ifndef METALIGN_HTTP_CONNS_H
#define METALIGN_HTTP_CONNS_H

#include <microhttpd.h>

#include "metalign/err.h"

#define ML_CONNS_SWEEP_MS 100 /* how often deadlines and suspended sockets are checked */

typedef struct ml_conns ml_conns;
typedef struct ml_conn ml_conn; /* one connection: MHD's socket context */

typedef struct ml_conns_options {
    double read_timeout;             /* seconds */
    /* The client of req (a suspended request) went away; runs on the sweep thread under the
     * table's lock, so req stays valid during the call. */
    void (*client_gone)(void *req, void *arg);
    void *arg;
} ml_conns_options;

ml_conns *ml_conns_new(const ml_conns_options *o, ml_err *err);
/* Stops the sweep; call after MHD_stop_daemon (no connection is left). */
void ml_conns_free(ml_conns *t);

/* The MHD_OPTION_NOTIFY_CONNECTION callback (cls is the table). */
void ml_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);
/* The state of MHD connection c (NULL before its STARTED notification). */
ml_conn *ml_conn_of(struct MHD_Connection *c);

/* A request began on the connection (its request line arrived). */
void ml_conn_begin(ml_conn *c, void *req);
/* Its headers are in and its body is being read: at the deadline it gets a 408. */
void ml_conn_body(ml_conn *c);
/* The whole request was received: the read deadline no longer applies. */
void ml_conn_received(ml_conn *c);
/* 1 once the connection has been reading for longer than the read timeout and the caller is
 * the one to answer it: the sweeper and the thread reading the body can both see the deadline
 * pass, and only one of them may write the 408 (a second would follow the first's body on the
 * wire). 0 when it is not late or the 408 is already someone else's. */
int ml_conn_claim_overdue(ml_conn *c);
/* The same for an answer the reader writes itself for another reason (a body over the limit):
 * 1 when no 408 was written and none will be. */
int ml_conn_claim_answer(ml_conn *c);
/* The request is suspended (on) or resumed (off): while suspended its socket is watched. */
void ml_conn_suspended(ml_conn *c, int on);
/* The request was answered: the next request's deadline starts now. */
void ml_conn_end(ml_conn *c);
/* The socket, for an answer written directly (http/mhd_errors.h). */
int ml_conn_fd(const ml_conn *c);

/* Calls fn(req, arg) for every suspended request, under the table's lock (shutdown). */
void ml_conns_each_suspended(ml_conns *t, void (*fn)(void *req, void *arg), void *arg);
/* Connections open now. */
int ml_conns_count(ml_conns *t);

#endif
