#include "engine/jobs.h"

#include "util/lru.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define JOB_ID_HEX 32 /* 128 random bits */

struct ml_job {
    int refs;            /* atomic */
    char id[JOB_ID_HEX + 1];
    char kind[32];
    char *key;
    ml_jobs *owner;
    /* Guarded by owner->lock. */
    ml_job_status status;
    int done, total;
    int cancel;
    time_t created, started, finished;
    ml_blob *result;
    int pinned;          /* result held in the budget (its cache entry, or one under pin_key) */
    char *pin_key;
    char error_code[48];
    char error_msg[ML_ERR_MAX];
    struct ml_job *next; /* in the table, newest first */
};

struct ml_jobs {
    pthread_mutex_t lock;
    ml_job *list;
    int max_active, max_kept, ttl;
    ml_lru *budget;      /* finished results are pinned here; NULL: unbounded */
};

ml_jobs *ml_jobs_new(int max_active, int max_kept, int ttl_seconds, ml_lru *budget) {
    ml_jobs *js = calloc(1, sizeof *js);
    if (!js) return NULL;
    pthread_mutex_init(&js->lock, NULL);
    js->max_active = max_active;
    js->max_kept = max_kept;
    js->ttl = ttl_seconds;
    js->budget = budget;
    return js;
}

ml_job *ml_job_ref(ml_job *j) {
    if (j) __atomic_add_fetch(&j->refs, 1, __ATOMIC_RELAXED);
    return j;
}

void ml_job_unref(ml_job *j) {
    if (!j || __atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    ml_blob_unref(j->result);
    free(j->key);
    free(j->pin_key);
    free(j);
}

/* Takes a job out of the table (lock held, or the table being freed): its result leaves the
 * budget with it, and the table's reference is dropped. */
static void forget(ml_jobs *js, ml_job *j) {
    if (j->pinned && js->budget) ml_lru_unpin(js->budget, &j->result->ref, 1);
    j->pinned = 0;
    j->owner = NULL;
    ml_job_unref(j);
}

void ml_jobs_free(ml_jobs *js) {
    if (!js) return;
    ml_job *j = js->list;
    while (j) {
        ml_job *next = j->next;
        forget(js, j);
        j = next;
    }
    pthread_mutex_destroy(&js->lock);
    free(js);
}

static int is_active(const ml_job *j) {
    return j->status == ML_JOB_QUEUED || j->status == ML_JOB_RUNNING;
}

/* Drops finished jobs past their time to live and beyond max_kept. Lock held. */
static void expire(ml_jobs *js, time_t now) {
    int kept = 0;
    ml_job **link = &js->list;
    while (*link) {
        ml_job *j = *link;
        if (!is_active(j)) {
            kept++;
            if (now - j->finished > js->ttl || kept > js->max_kept) {
                *link = j->next;
                forget(js, j);
                continue;
            }
        }
        link = &j->next;
    }
}

static void new_id(char out[JOB_ID_HEX + 1]) {
    unsigned char raw[JOB_ID_HEX / 2];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < sizeof raw) { /* no entropy source: still unique within this process */
        static unsigned long long counter;
        unsigned long long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        snprintf(out, JOB_ID_HEX + 1, "%016llx%016llx", (unsigned long long)t.tv_nsec ^ c,
                 (unsigned long long)t.tv_sec * 1000003ULL + c);
        return;
    }
    for (size_t i = 0; i < sizeof raw; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

ml_job *ml_jobs_create(ml_jobs *js, const char *kind, const char *key, int total, int *existing,
                       ml_err *err) {
    time_t now = time(NULL);
    *existing = 0;
    pthread_mutex_lock(&js->lock);
    expire(js, now);
    int active = 0;
    for (ml_job *j = js->list; j; j = j->next) {
        if (!is_active(j)) continue;
        if (key && j->key && strcmp(j->key, key) == 0 && !j->cancel) {
            ml_job_ref(j);
            pthread_mutex_unlock(&js->lock);
            *existing = 1;
            return j;
        }
        active++;
    }
    if (active >= js->max_active) {
        pthread_mutex_unlock(&js->lock);
        return ml_errp(err, "%d jobs are already queued or running (the limit, --max-jobs); "
                            "wait for one to finish or cancel one with DELETE /v1/jobs/<id>",
                       active);
    }
    if (js->budget && ml_lru_pinned_bytes(js->budget) >= ml_lru_max_bytes(js->budget)) {
        pthread_mutex_unlock(&js->lock);
        return ml_errp(err, "the results of finished jobs fill the memory budget for results "
                            "(--result-cache-bytes, %zu MiB); fetch them and free them with "
                            "DELETE /v1/jobs/<id>, or wait for --job-ttl",
                       ml_lru_max_bytes(js->budget) >> 20);
    }
    ml_job *j = calloc(1, sizeof *j);
    if (!j || (key && !(j->key = strdup(key)))) {
        pthread_mutex_unlock(&js->lock);
        free(j);
        return ml_errp(err, "out of memory");
    }
    j->refs = 2; /* the table's and the caller's */
    new_id(j->id);
    snprintf(j->kind, sizeof j->kind, "%s", kind);
    j->owner = js;
    j->status = ML_JOB_QUEUED;
    j->total = total;
    j->created = now;
    j->next = js->list;
    js->list = j;
    pthread_mutex_unlock(&js->lock);
    return j;
}

ml_job *ml_jobs_get(ml_jobs *js, const char *id) {
    pthread_mutex_lock(&js->lock);
    expire(js, time(NULL));
    ml_job *found = NULL;
    for (ml_job *j = js->list; j; j = j->next)
        if (strcmp(j->id, id) == 0) {
            found = ml_job_ref(j);
            break;
        }
    pthread_mutex_unlock(&js->lock);
    return found;
}

static void cancel_locked(ml_job *j, time_t now) {
    j->cancel = 1;
    if (j->status == ML_JOB_QUEUED) {
        j->status = ML_JOB_CANCELLED;
        j->finished = now;
    }
}

int ml_jobs_cancel(ml_jobs *js, const char *id) {
    int rc = -1;
    pthread_mutex_lock(&js->lock);
    for (ml_job *j = js->list; j; j = j->next)
        if (strcmp(j->id, id) == 0) {
            cancel_locked(j, time(NULL));
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&js->lock);
    return rc;
}

static void info_locked(const ml_job *j, ml_job_info *out);

int ml_jobs_delete(ml_jobs *js, const char *id, ml_job_info *out) {
    int rc = -1;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&js->lock);
    for (ml_job **link = &js->list; *link; link = &(*link)->next) {
        ml_job *j = *link;
        if (strcmp(j->id, id) != 0) continue;
        rc = 0;
        if (is_active(j)) {
            cancel_locked(j, time(NULL));
            info_locked(j, out);
        } else {
            info_locked(j, out);
            out->deleted = 1;
            ml_job_info_free(out); /* the answer says what it was, without the result */
            *link = j->next;
            forget(js, j);
        }
        break;
    }
    pthread_mutex_unlock(&js->lock);
    return rc;
}

void ml_jobs_cancel_all(ml_jobs *js) {
    pthread_mutex_lock(&js->lock);
    for (ml_job *j = js->list; j; j = j->next) cancel_locked(j, time(NULL));
    pthread_mutex_unlock(&js->lock);
}

void ml_jobs_counts(ml_jobs *js, int counts[ML_JOB_N_STATUS]) {
    memset(counts, 0, ML_JOB_N_STATUS * sizeof counts[0]);
    pthread_mutex_lock(&js->lock);
    for (ml_job *j = js->list; j; j = j->next) counts[j->status]++;
    pthread_mutex_unlock(&js->lock);
}

const char *ml_job_id(const ml_job *j) { return j->id; }

/* Jobs made by a table carry its lock; a job whose table is gone has no readers left. */
static void job_lock(const ml_job *j) {
    if (j->owner) pthread_mutex_lock(&j->owner->lock);
}
static void job_unlock(const ml_job *j) {
    if (j->owner) pthread_mutex_unlock(&j->owner->lock);
}

ml_job_status ml_job_get_status(const ml_job *j) {
    job_lock(j);
    ml_job_status s = j->status;
    job_unlock(j);
    return s;
}

const char *ml_job_status_name(ml_job_status s) {
    static const char *const names[] = {"queued", "running", "done", "failed", "cancelled"};
    return names[s];
}

int ml_job_start(ml_job *j) {
    job_lock(j);
    int rc = j->cancel ? -1 : 0;
    if (!rc) {
        j->status = ML_JOB_RUNNING;
        j->started = time(NULL);
    }
    job_unlock(j);
    return rc;
}

void ml_job_progress(ml_job *j, int done) {
    job_lock(j);
    j->done = done;
    job_unlock(j);
}

void ml_job_progress_of(ml_job *j, int done, int total) {
    job_lock(j);
    j->done = done;
    j->total = total;
    job_unlock(j);
}

int ml_job_cancel_requested(const ml_job *j) {
    return __atomic_load_n(&j->cancel, __ATOMIC_RELAXED);
}

static void finish(ml_job *j, ml_job_status s) {
    j->status = s;
    j->finished = time(NULL);
}

int ml_job_finish(ml_job *j, ml_blob *result) {
    job_lock(j);
    ml_lru *budget = j->owner ? j->owner->budget : NULL;
    if (budget && !j->pin_key && asprintf(&j->pin_key, "job:%s", j->id) < 0) j->pin_key = NULL;
    int rc = 0;
    if (budget && (!j->pin_key || ml_lru_pin(budget, j->pin_key, &result->ref) != 0)) {
        snprintf(j->error_code, sizeof j->error_code, "memory_budget");
        snprintf(j->error_msg, sizeof j->error_msg,
                 "the result (%zu bytes) does not fit the memory budget for results beside "
                 "the finished jobs it already holds (--result-cache-bytes, %zu MiB); free "
                 "finished jobs with DELETE /v1/jobs/<id> or raise --result-cache-bytes",
                 result->len, ml_lru_max_bytes(budget) >> 20);
        finish(j, ML_JOB_FAILED);
        rc = -1;
    } else {
        j->pinned = budget != NULL;
        j->result = ml_blob_ref(result);
        j->done = j->total;
        finish(j, ML_JOB_DONE);
    }
    job_unlock(j);
    return rc;
}

void ml_job_fail(ml_job *j, const char *code, const char *message) {
    job_lock(j);
    snprintf(j->error_code, sizeof j->error_code, "%s", code);
    snprintf(j->error_msg, sizeof j->error_msg, "%s", message);
    finish(j, ML_JOB_FAILED);
    job_unlock(j);
}

void ml_job_mark_cancelled(ml_job *j) {
    job_lock(j);
    finish(j, ML_JOB_CANCELLED);
    job_unlock(j);
}

static void info_locked(const ml_job *j, ml_job_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", j->id);
    snprintf(out->kind, sizeof out->kind, "%s", j->kind);
    out->status = j->status;
    out->done = j->done;
    out->total = j->total;
    out->created = j->created;
    out->started = j->started;
    out->finished = is_active(j) ? 0 : j->finished;
    out->cancel_requested = j->cancel;
    if (j->status == ML_JOB_DONE) out->result = ml_blob_ref(j->result);
    snprintf(out->error_code, sizeof out->error_code, "%s", j->error_code);
    snprintf(out->error_msg, sizeof out->error_msg, "%s", j->error_msg);
}

void ml_job_info_get(ml_job *j, ml_job_info *out) {
    job_lock(j);
    info_locked(j, out);
    job_unlock(j);
}

void ml_job_info_free(ml_job_info *info) {
    ml_blob_unref(info->result);
    info->result = NULL;
}
