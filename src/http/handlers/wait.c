/* Requests that wait without a compute worker: for an identical request's computation
 * (engine/coalesce.h), or for a download another request runs. The request is deferred
 * (http/http.h) and registered as a waiter; when the computation ends its slow handler runs
 * again and finds the answer in the result cache. If its client goes away, or a shutdown
 * begins, while it waits, it leaves the waiters and is answered at once. */
#include <stdio.h>

#include "http/handlers/handlers.h"
#include "http/http.h"
#include "http/result_keys.h"

typedef struct waiter {
    ml_coalesce_waiter w; /* first: the table hands it back */
    ml_coalesce *table;
    const ml_request *req;
    ml_response *resp;
    char key[ML_KEY_LEN];
} waiter;

static void on_done(ml_coalesce_waiter *cw) {
    waiter *wt = (waiter *)cw;
    ml_request_rerun(wt->req);
}

static void on_cancel(void *arg) {
    waiter *wt = arg;
    if (!ml_coalesce_leave(wt->table, wt->key, &wt->w)) return; /* on_done has it */
    ml_respond_cancelled(wt->req, wt->resp);
    ml_request_resume(wt->req);
}

int ml_wait_for(ml_coalesce *table, const char *key, const ml_request *req,
                ml_response *resp) {
    waiter *wt = ml_request_scratch(req, sizeof *wt);
    if (!wt) return 0; /* no transport to park the request in: the caller computes */
    wt->w.done = on_done;
    wt->table = table;
    wt->req = req;
    wt->resp = resp;
    snprintf(wt->key, sizeof wt->key, "%s", key);
    ml_request_defer(req, on_cancel, wt);
    if (ml_coalesce_wait(table, key, &wt->w)) return 1;
    /* It ended in the meantime: take the deferral back; the caller goes on. */
    ml_request_resume(req);
    return 0;
}

void ml_respond_cancelled(const ml_request *req, ml_response *resp) {
    if (ml_request_cancelled(req) == ML_CANCEL_CLIENT_GONE)
        ml_respond_error(resp, 499, "client_gone", "the client went away; the work was stopped");
    else
        ml_respond_unavailable(resp, 1, "shutting_down",
                               "the server is shutting down; the work was stopped; retry on "
                               "another replica or after it restarts");
}
