/* The learning-curve answer, shared by POST /v1/learning-curves, its jobs and the comparison. */
#ifndef METALIGN_HTTP_HANDLERS_CURVES_H
#define METALIGN_HTTP_HANDLERS_CURVES_H

#include "engine/app.h"
#include "http/request.h"
#include "http/response.h"
#include "http/result_keys.h"
#include "metalign/simulate.h"
#include "util/blob.h"

void ml_curves_key(const ml_sim_request *rq, const ml_view *view, char out[ML_KEY_LEN]);
/* The rendered answer for rq in view: from the result cache, else simulated, rendered and
 * cached (with the other small views of the same simulation).
 * A new reference, or NULL with err (*rc 1: cancelled, -1: failed). */
ml_blob *ml_curves_answer(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                          const ml_view *view, const ml_sim_hooks *hooks, int *rc, ml_err *err);

/* 0 when episodes x seq_len is within --max-sync-rows; else a 400 whose message ends with
 * async_hint (what to do instead), and -1. */
int ml_check_sync_rows(const ml_app *app, long long episodes, long long seq_len,
                       const char *async_hint, ml_response *resp);

/* Stops a synchronous simulation once nobody wants its answer: its client went away and no
 * identical request waits for key (NULL: none can), or a shutdown began. s must outlive the
 * simulation. */
typedef struct ml_sync_stop {
    ml_app *app;
    const ml_request *req;
    const char *key;
} ml_sync_stop;
ml_sim_hooks ml_sync_hooks(ml_sync_stop *s);
/* The answer for request key from the result cache (this replica's, then the shared one);
 * a new reference or NULL. */
ml_blob *ml_curves_cached(ml_app *app, const char *key);
/* The JSON answer for a finished simulation (res is not freed): what a single daemon answers,
 * and what the scale-out's merge renders. */
ml_blob *ml_curves_render(ml_app *app, const ml_sim_request *rq, ml_sim_result *res,
                          ml_err *err);

#endif
