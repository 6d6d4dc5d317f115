/* GET /v1/jobs/<id>: the job's state and, once done, its answer (already rendered). */
#include "http/render/render.h"
#include "util/timefmt.h"

void ml_render_job(ml_jw *w, const ml_job_info *j) {
    char t[ML_RFC3339_LEN];
    ml_jw_object(w);
    ml_jw_kstring(w, "job", j->id);
    ml_jw_kstring(w, "kind", j->kind);
    ml_jw_kstring(w, "status", ml_job_status_name(j->status));
    ml_jw_key(w, "progress");
    ml_jw_object(w);
    ml_jw_kint(w, "done", j->done);
    ml_jw_kint(w, "total", j->total);
    ml_jw_object_end(w);
    ml_rfc3339(j->created, t);
    ml_jw_kstring(w, "created_at", t);
    if (j->finished) {
        ml_rfc3339(j->finished, t);
        ml_jw_kstring(w, "finished_at", t);
    }
    if (j->status == ML_JOB_DONE && j->result) {
        ml_jw_key(w, "result");
        ml_jw_raw(w, j->result->data, j->result->len);
    } else if (j->status == ML_JOB_FAILED) {
        ml_jw_key(w, "error");
        ml_jw_object(w);
        ml_jw_kstring(w, "code", j->error_code);
        ml_jw_kstring(w, "message", j->error_msg);
        ml_jw_object_end(w);
    }
    ml_jw_object_end(w);
}
