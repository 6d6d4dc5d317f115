/* The handlers' side of the scale-out (--redis): async learning-curves jobs live in the
 * shared store, so any replica answers for them; a job id this replica does not know is
 * looked up there. When Redis cannot be reached these answer 503 with the reason, and
 * /readyz does too (engine/shared.h). */
#include <stdio.h>
#include <string.h>

#include "engine/shared.h"
#include "http/handlers/handlers.h"
#include "http/render/render.h"

#define ML_SHARED_RETRY_AFTER 2 /* seconds a client waits before asking again */

static void unavailable(ml_app *app, ml_response *resp, const char *what, const char *why) {
    ml_respond_unavailable(resp, ML_SHARED_RETRY_AFTER, "shared_store_unavailable",
                           "%s needs the shared store %s, which does not answer: %s", what,
                           ml_redis_display(app->shared->redis), why);
}

int ml_shared_ready(ml_app *app, ml_response *resp) {
    char why[ML_ERR_MAX];
    if (ml_shared_up(app->shared, why, sizeof why)) return 1;
    unavailable(app, resp, "this replica", why);
    return 0;
}

void ml_start_shared_job(ml_app *app, const ml_sim_request *rq, const char *key,
                         ml_blob *cached, ml_response *resp) {
    ml_err err = {{0}};
    char id[33] = "";
    int rc = cached ? ml_shared_job_done(app->shared, rq, key, cached, id, &err)
                    : ml_shared_job_submit(app->shared, rq, key, id, &err);
    if (rc == ML_SHARED_FULL) {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_REJECTED, 1);
        ml_respond_unavailable(resp, 5, "too_many_jobs", "%s", err.msg);
        return;
    }
    if (rc == ML_SHARED_DOWN) {
        unavailable(app, resp, "an async job", err.msg);
        return;
    }
    if (rc == ML_SHARED_OK) ml_metrics_add(app->metrics, ML_CNT_JOBS_SUBMITTED, 1);
    snprintf(resp->location, sizeof resp->location, "/v1/jobs/%s", id);
    ml_job_info info;
    const char *status = "queued";
    if (ml_shared_job_info(app->shared, id, &info, &err) == ML_SHARED_OK) {
        status = ml_job_status_name(info.status);
        ml_job_info_free(&info);
    }
    ml_respond_json(resp, 202, json_pack("{s:s,s:s,s:s}", "job", id, "status_url",
                                         resp->location, "status", status));
}

void ml_h_shared_job(ml_app *app, const ml_request *req, ml_response *resp, int cancel) {
    ml_err err = {{0}};
    const char *id = req->path_param;
    int rc = strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32 ? ML_SHARED_OK
                                                                      : ML_SHARED_NOT_FOUND;
    if (rc == ML_SHARED_OK && cancel) rc = ml_shared_job_cancel(app->shared, id, &err);
    ml_job_info info;
    if (rc == ML_SHARED_OK) rc = ml_shared_job_info(app->shared, id, &info, &err);
    if (rc == ML_SHARED_DOWN) {
        unavailable(app, resp, "looking up a job", err.msg);
    } else if (rc == ML_SHARED_NOT_FOUND) {
        ml_respond_error(resp, 404, "job_not_found",
                         "no job \"%s\" on any replica (unknown, or its result expired; "
                         "finished jobs are kept for --job-ttl seconds)", id);
    } else {
        ml_respond_job_info(&info, resp);
        ml_job_info_free(&info);
    }
}
