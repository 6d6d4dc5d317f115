/* Long requests run as jobs: a bounded table of them, each with a random id, progress that
 * the worker updates as it goes, a cancel flag it checks between batches, and the finished
 * answer (opaque bytes the caller rendered) kept for a while (job_ttl) so a client can fetch
 * it later. Finished answers are pinned in the result cache (util/lru.h), so the cache and the
 * jobs share one memory budget; DELETE of a finished job releases its answer at once. */
#ifndef METALIGN_JOBS_H
#define METALIGN_JOBS_H

#include <time.h>

#include "util/blob.h"
#include "util/lru.h"
#include "metalign/err.h"

typedef enum ml_job_status {
    ML_JOB_QUEUED,
    ML_JOB_RUNNING,
    ML_JOB_DONE,
    ML_JOB_FAILED,
    ML_JOB_CANCELLED,
    ML_JOB_N_STATUS
} ml_job_status;

typedef struct ml_job ml_job;
typedef struct ml_jobs ml_jobs;

/* max_active: queued + running jobs; max_kept: finished jobs remembered (oldest dropped);
 * budget: the result cache whose byte bound the finished answers count against (pinned
 * there), or NULL for no bound. */
ml_jobs *ml_jobs_new(int max_active, int max_kept, int ttl_seconds, ml_lru *budget);
void ml_jobs_free(ml_jobs *js);

/* A new queued job (one reference for the caller), or, when a job with the same key is still
 * queued or running, that job (so identical requests share one computation; *existing = 1).
 * NULL with err set when max_active jobs are already active, or when finished answers fill
 * the budget. */
ml_job *ml_jobs_create(ml_jobs *js, const char *kind, const char *key, int total, int *existing,
                       ml_err *err);
/* A reference to a job by id, or NULL (unknown or expired). */
ml_job *ml_jobs_get(ml_jobs *js, const char *id);
/* Asks a job to stop; 0 if it existed. A queued job is cancelled at once. */
int ml_jobs_cancel(ml_jobs *js, const char *id);
void ml_jobs_cancel_all(ml_jobs *js);
/* DELETE: a queued job is cancelled at once, a running one is asked to stop (it turns
 * "cancelled" when it does; out->cancel_requested says so meanwhile), a finished one is
 * removed and its answer released (out->deleted). 0 with out (ml_job_info_free it), or -1
 * for an unknown id. */
typedef struct ml_job_info ml_job_info;
int ml_jobs_delete(ml_jobs *js, const char *id, ml_job_info *out);
void ml_jobs_counts(ml_jobs *js, int counts[ML_JOB_N_STATUS]);

ml_job *ml_job_ref(ml_job *j);
void ml_job_unref(ml_job *j);
const char *ml_job_id(const ml_job *j);
ml_job_status ml_job_get_status(const ml_job *j);
const char *ml_job_status_name(ml_job_status s);

/* Worker side. start returns 0, or -1 when the job was cancelled before it ran. */
int ml_job_start(ml_job *j);
void ml_job_progress(ml_job *j, int done);
/* Progress when the total is known only once the work has begun (e.g. a replay's sequences,
 * counted after the human data is parsed). */
void ml_job_progress_of(ml_job *j, int done, int total);
int ml_job_cancel_requested(const ml_job *j);
/* Takes a reference of its own and pins it in the budget; -1 when it does not fit (the job
 * then fails with "memory_budget"). */
int ml_job_finish(ml_job *j, ml_blob *result);
void ml_job_fail(ml_job *j, const char *code, const char *message);
/* Marks a job that honoured its cancel flag. */
void ml_job_mark_cancelled(ml_job *j);

/* A consistent copy of a job's state, for rendering. */
struct ml_job_info {
    char id[33];
    char kind[32];
    ml_job_status status;
    int done, total;
    time_t created, started, finished; /* started: 0 while queued; finished: 0 while active */
    int cancel_requested;      /* DELETE asked it to stop */
    int deleted;               /* removed from the table by this DELETE */
    ml_blob *result;           /* a reference when done (ml_job_info_free drops it) */
    char error_code[48];
    char error_msg[ML_ERR_MAX];
};

void ml_job_info_get(ml_job *j, ml_job_info *out);
void ml_job_info_free(ml_job_info *info);

#endif
