/* GET /v1/jobs/<id>: the job's state; its answer, once done, is sent after it from the cache
 * without a copy (handlers/basic.c wraps the two). */
#include "http/render/render.h"
#include "util/timefmt.h"

static void time_field(ml_jw *w, const char *key, time_t t) {
    char s[ML_RFC3339_LEN];
    ml_rfc3339(t, s);
    ml_jw_kstring(w, key, s);
}

void ml_render_job(ml_jw *w, const ml_job_info *j) {
    ml_jw_object(w);
    ml_jw_kstring(w, "job", j->id);
    ml_jw_kstring(w, "kind", j->kind);
    ml_jw_kstring(w, "status", ml_job_status_name(j->status));
    ml_jw_key(w, "progress");
    ml_jw_object(w);
    ml_jw_kint(w, "done", j->done);
    ml_jw_kint(w, "total", j->total);
    ml_jw_object_end(w);
    time_field(w, "created_at", j->created);
    if (j->started) time_field(w, "started_at", j->started);
    if (j->finished) time_field(w, "finished_at", j->finished);
    ml_jw_kbool(w, "cancel_requested", j->cancel_requested);
    if (j->cancel_requested && (j->status == ML_JOB_RUNNING || j->status == ML_JOB_QUEUED))
        ml_jw_kstring(w, "note", "cancel requested: the job stops after its current batch, "
                                 "then its status is \"cancelled\"");
    if (j->deleted) ml_jw_kbool(w, "deleted", 1);
    if (j->status == ML_JOB_FAILED) {
        ml_jw_key(w, "error");
        ml_jw_object(w);
        ml_jw_kstring(w, "code", j->error_code);
        ml_jw_kstring(w, "message", j->error_msg);
        ml_jw_object_end(w);
    }
    ml_jw_object_end(w);
}
