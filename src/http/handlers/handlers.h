/* The handlers behind the endpoint table (http/routes.c), by file. Each parses and validates
 * its request (http/request.h), asks the engine, and renders what it gets (http/render/). */
#ifndef METALIGN_HTTP_HANDLERS_H
#define METALIGN_HTTP_HANDLERS_H

#include "engine/app.h"
#include "engine/human_store.h"
#include "http/request.h"
#include "http/response.h"

/* Limits of the endpoints, named once: the handlers check them and the OpenAPI document
 * (http/openapi.c) states them. */
#define ML_ACTS_MAX_ITEMS 4096
#define ML_ITEMS_MAX_LIMIT 10000
#define ML_ITEMS_DEFAULT_LIMIT 100
#define ML_HUMAN_DEFAULT_MAX_TRIAL 99 /* the notebook keeps trial <= 99 for 100 model trials */

/* basic.c: health, discovery, items, metrics, jobs */
void ml_h_root(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_healthz(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_readyz(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_info(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_items(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_metrics(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_job_get(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_job_delete(ml_app *app, const ml_request *req, ml_response *resp);

/* activations.c */
void ml_h_activations(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);

/* cka.c */
void ml_h_cka_fast(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_cka(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);
void ml_h_cka_matrix_fast(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_cka_matrix(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);

/* curves.c */
void ml_h_curves_fast(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_curves(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);

/* human.c */
void ml_h_human_curves(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);
void ml_h_human_refresh(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);
void ml_h_compare(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);

/* dashboard.c: the page, its files, the OpenAPI document */
void ml_h_dashboard(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_dashboard_asset(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_openapi(ml_app *app, const ml_request *req, ml_response *resp);

/* replay.c */
void ml_h_replay_fast(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_replay(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);

/* basic.c: a job's state and, when done, its result: the answer of GET /v1/jobs/<id>. */
void ml_respond_job_info(const ml_job_info *info, ml_response *resp);

/* shared.c: the scale-out's side of the handlers (--redis) */
/* An async learning-curves job in the shared store (cached: its answer, already known). */
void ml_start_shared_job(ml_app *app, const ml_sim_request *rq, const char *key,
                         ml_blob *cached, ml_response *resp);
/* GET (cancel 0) or DELETE (cancel 1) /v1/jobs/<id> for a job not in this replica's table. */
void ml_h_shared_job(ml_app *app, const ml_request *req, ml_response *resp, int cancel);
/* 1 when the shared store answers; else 0 with resp answered 503. */
int ml_shared_ready(ml_app *app, ml_response *resp);

/* Shared by the handlers: the cached answer under key as the response (1), or 0. */
int ml_answer_from_cache(ml_app *app, const char *key, ml_response *resp);

/* wait.c, for slow handlers: while key is in progress in table, the request waits for it
 * without a worker and its slow handler runs again once it ends: 1 (return at once, touching
 * neither req nor resp again); 0 when key is not in progress (any more): go on. */
int ml_wait_for(ml_coalesce *table, const char *key, const ml_request *req,
                ml_response *resp);
/* human.c, for slow handlers: the human copy to serve; NULL when the request now waits for a
 * download another request runs (*waiting: return at once, touching neither req nor resp),
 * or when there is no copy (resp: 503 with the upstream's reason and Retry-After). */
ml_human_snapshot *ml_human_copy(ml_app *app, const ml_request *req, ml_human_status *st,
                                 int *waiting, ml_response *resp);
/* The answer to a request whose work was stopped: 503 + Retry-After at a shutdown, else 499
 * (its client went away; nobody reads it). */
void ml_respond_cancelled(const ml_request *req, ml_response *resp);

#endif
