/* The learning-curve answer, shared by POST /v1/learning-curves, its jobs and the comparison. */
#ifndef METALIGN_HTTP_HANDLERS_CURVES_H
#define METALIGN_HTTP_HANDLERS_CURVES_H

#include "engine/app.h"
#include "http/result_keys.h"
#include "metalign/simulate.h"
#include "util/blob.h"

void ml_curves_key(const ml_sim_request *rq, const ml_view *view, char out[ML_KEY_LEN]);
/* The rendered answer for rq in view: from the result cache, else simulated, rendered and
 * cached (with the other small views of the same simulation).
 * A new reference, or NULL with err (*rc 1: cancelled, -1: failed). */
ml_blob *ml_curves_answer(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                          const ml_view *view, const ml_sim_hooks *hooks, int *rc, ml_err *err);

#endif
