/* The replay (metalign/replay.h): the participants' sequences are planned from the human rows,
 * mapped to feature rows, run through the model all together and through the baseline one by
 * one; replay_summary.c turns the logits into the answer's figures. */
#include "metalign/replay.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/replay_summary.h"
#include "metalign/human_curves.h"

void ml_replay_defaults(ml_replay_request *rq) {
    memset(rq, 0, sizeof *rq);
    rq->max_trial = -1;
    rq->temperature = 0;
    rq->baseline = 1;
    rq->n_boot = ML_REPLAY_DEFAULT_N_BOOT;
    rq->n_splits = ML_REPLAY_DEFAULT_SPLITS;
}

const char *ml_replay_match_name(ml_replay_match m) {
    return m == ML_REPLAY_EXACT ? "exact" : "concept";
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void plan_free(replay_plan *p) {
    free(p->seq);
    free(p->trial);
    free(p->image);
    free(p->table);
    free(p->label);
    free(p->choice);
    free(p->correct);
    free(p->logit);
    free(p->zb);
    memset(p, 0, sizeof *p);
}

/* ---- planning: which rows, in which order, on which feature rows ------------------------ */

typedef struct cand {
    int32_t participant, dimension, trial;
    size_t row;
} cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->participant != y->participant) return x->participant < y->participant ? -1 : 1;
    if (x->dimension != y->dimension) return x->dimension < y->dimension ? -1 : 1;
    if (x->trial != y->trial) return x->trial < y->trial ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* key[i] for distinct image i: the concept's index (concept match) or the backbone row
 * (exact match), -1 when the image names no backbone row. */
static int resolve_images(const ml_dataset *d, const ml_human_data *h, ml_replay_match match,
                          int64_t *key, ml_err *err) {
    int *concept = malloc((h->concepts.n ? h->concepts.n : 1) * sizeof *concept);
    if (!concept) return ml_errf(err, "replay: out of memory");
    for (size_t c = 0; c < h->concepts.n; c++)
        concept[c] = ml_dataset_find(d, ml_strtab_get(&h->concepts, c));
    for (size_t i = 0; i < h->images.n; i++) {
        int32_t c = h->image_concept[i];
        key[i] = c < 0 ? -1 : concept[c];
        if (key[i] >= 0 && match == ML_REPLAY_EXACT)
            key[i] = ml_dataset_image_row(d, ml_strtab_get(&h->concepts, (size_t)c),
                                          ml_strtab_get(&h->files, (size_t)h->image_file[i]));
    }
    free(concept);
    return 0;
}

static int plan_alloc(replay_plan *p, size_t n, size_t n_seq) {
    size_t m = n ? n : 1;
    p->seq = calloc(n_seq ? n_seq : 1, sizeof *p->seq);
    p->trial = malloc(m * sizeof *p->trial);
    p->image = malloc(m * sizeof *p->image);
    p->table = malloc(m * sizeof *p->table);
    p->label = malloc(m);
    p->choice = malloc(m);
    p->correct = malloc(m);
    p->logit = malloc(m * sizeof *p->logit);
    p->zb = malloc(m * sizeof *p->zb);
    return p->seq && p->trial && p->image && p->table && p->label && p->choice && p->correct &&
                   p->logit && p->zb
               ? 0
               : -1;
}

/* Sequences from the candidate rows c (sorted), keeping the rows whose image resolved;
 * key64 receives each kept row's key. */
static int plan_sequences(const ml_human_data *h, const cand *c, size_t n_cand,
                          const int64_t *img_key, replay_plan *p, int64_t *key64,
                          ml_replay_code *code, ml_err *err) {
    size_t n_seq = 0;
    for (size_t i = 0; i < n_cand; i++) {
        int new_seq = i == 0 || c[i].participant != c[i - 1].participant ||
                      c[i].dimension != c[i - 1].dimension;
        if (!new_seq && c[i].trial == c[i - 1].trial) {
            *code = ML_REPLAY_E_DATA;
            return ml_errf(err,
                           "participant '%s' has two rows for trial %d (dimension %d); the "
                           "replay needs one row per trial",
                           ml_strtab_get(&h->participant_names, (size_t)c[i].participant),
                           c[i].trial, c[i].dimension);
        }
        n_seq += new_seq;
    }
    if (plan_alloc(p, n_cand, n_seq) != 0) return ml_errf(err, "replay: out of memory");
    size_t s = (size_t)-1, n = 0;
    for (size_t i = 0; i < n_cand; i++) {
        if (i == 0 || c[i].participant != c[i - 1].participant ||
            c[i].dimension != c[i - 1].dimension) {
            s++;
            p->seq[s].participant = c[i].participant;
            p->seq[s].dimension = c[i].dimension;
            p->seq[s].first = n;
        }
        size_t r = c[i].row;
        int32_t img = h->image[r];
        if (h->choice[r] == ML_HUMAN_NA || h->label[r] == ML_HUMAN_NA) {
            p->seq[s].incomplete++;
            continue;
        }
        if (img < 0 || img_key[img] < 0) {
            p->seq[s].unmatched++;
            continue;
        }
        p->trial[n] = c[i].trial;
        p->image[n] = img;
        p->label[n] = h->label[r];
        p->choice[n] = h->choice[r];
        p->correct[n] = h->correct[r];
        key64[n] = img_key[img];
        p->seq[s].n++;
        if (p->trial[n] > p->max_trial) p->max_trial = p->trial[n];
        n++;
    }
    p->n_seq = n_seq;
    p->n_rows = n;
    for (size_t k = 0; k < n_seq; k++)
        if ((int)p->seq[k].n > p->S_max) p->S_max = (int)p->seq[k].n;
    return 0;
}

static int plan_build(const ml_runner *r, const ml_human_data *h, const ml_replay_request *rq,
                      replay_plan *p, int64_t **key64, ml_replay_code *code, ml_err *err) {
    memset(p, 0, sizeof *p);
    p->max_trial = -1;
    p->match = r->data->per_image ? ML_REPLAY_EXACT : ML_REPLAY_CONCEPT;
    cand *c = malloc((h->n_rows ? h->n_rows : 1) * sizeof *c);
    int64_t *img_key = malloc((h->images.n ? h->images.n : 1) * sizeof *img_key);
    *key64 = malloc((h->n_rows ? h->n_rows : 1) * sizeof **key64);
    if (!c || !img_key || !*key64) {
        free(c);
        free(img_key);
        return ml_errf(err, "replay: out of memory for %zu rows", h->n_rows);
    }
    size_t n = 0;
    for (size_t i = 0; i < h->n_rows; i++)
        if (rq->max_trial < 0 || h->trial[i] <= rq->max_trial)
            c[n++] = (cand){h->participant[i], h->dimension[i], h->trial[i], i};
    qsort(c, n, sizeof *c, cmp_cand);
    int rc = resolve_images(r->data, h, p->match, img_key, err);
    if (rc == 0) rc = plan_sequences(h, c, n, img_key, p, *key64, code, err);
    free(c);
    free(img_key);
    return rc;
}

/* ---- features --------------------------------------------------------------------------- */

typedef struct features {
    size_t n;          /* rows of the table */
    const float *X;    /* (n, D) standardised features */
    const float *E;    /* (n, C) their embeddings */
    float *own_X, *own_E;
} features;

/* The feature table and plan->table: the concept rows themselves, or for "exact" the
 * distinct images' rows read from the backbone. */
static int build_features(ml_runner *r, replay_plan *p, const int64_t *key64,
                          features *f, ml_err *err) {
    memset(f, 0, sizeof *f);
    if (p->match == ML_REPLAY_CONCEPT) {
        f->n = (size_t)r->data->n_items;
        f->X = r->data->X_std;
        f->E = r->emb[1]; /* the standardised features, as the simulation feeds them */
        for (size_t i = 0; i < p->n_rows; i++) p->table[i] = (int32_t)key64[i];
        return f->E ? 0 : -1;
    }
    size_t n = p->n_rows, D = (size_t)r->data->backbone_dim,
           C = (size_t)r->model->cfg.hidden_size;
    int64_t *rows = malloc((n ? n : 1) * sizeof *rows);
    if (!rows) return ml_errf(err, "replay: out of memory");
    memcpy(rows, key64, n * sizeof *rows);
    qsort(rows, n, sizeof *rows, cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || rows[i] != rows[u - 1]) rows[u++] = rows[i];
    for (size_t i = 0; i < n; i++)
        p->table[i] = (int32_t)((const int64_t *)bsearch(&key64[i], rows, u, sizeof *rows,
                                                         cmp_i64) -
                                rows);
    f->n = u;
    f->own_X = malloc((u ? u : 1) * D * sizeof *f->own_X);
    f->own_E = malloc((u ? u : 1) * C * sizeof *f->own_E);
    int rc = f->own_X && f->own_E ? 0 : ml_errf(err, "replay: out of memory for %zu images", u);
    if (rc == 0) rc = ml_dataset_read_std_rows(r->data, rows, u, f->own_X, err);
    if (rc == 0 && u > 0) rc = ml_embed_features(r->model, f->own_X, (int)u, f->own_E, err);
    free(rows);
    f->X = f->own_X;
    f->E = f->own_E;
    return rc;
}

/* ---- the model ------------------------------------------------------------------------- */


static int cancelled(const ml_replay_hooks *hk) {
    return hk && hk->cancelled && hk->cancelled(hk->ctx);
}

/* Every sequence through the model, as many per forward call as the workspace holds, so each
 * GEMM sees all their rows at once. Sequences of different lengths are padded at the end to
 * the longest: attention is causal, so a padded position never influences a real one, and
 * its logit is dropped. */
static int run_model(ml_runner *r, replay_plan *p, const features *f,
                     const ml_replay_hooks *hk, long total, ml_replay_code *code, ml_err *err) {
    int S = p->S_max;
    if (p->n_rows == 0) return 0;
    int limit = r->max_seq;
    if (S > limit) {
        *code = ML_REPLAY_E_MODEL;
        return ml_errf(err,
                       "a participant has %d replayed trials but this model takes sequences of "
                       "at most %d%s; ask for max_trial=%d",
                       S, limit,
                       r->model->cfg.pos == ML_POS_LEARNED ? " (its learned positions)" : "",
                       limit - 1);
    }
    int per_batch = r->max_rows / S;
    size_t cap = (size_t)per_batch * (size_t)S;
    int *items = calloc(cap, sizeof *items), *labels = calloc(cap, sizeof *labels);
    float *logits = malloc(cap * sizeof *logits);
    int rc = items && labels && logits ? 0 : ml_errf(err, "replay: out of memory");
    for (size_t s0 = 0; rc == 0 && s0 < p->n_seq; s0 += (size_t)per_batch) {
        if (cancelled(hk)) {
            rc = 1;
            ml_errf(err, "cancelled");
            break;
        }
        int nb = p->n_seq - s0 < (size_t)per_batch ? (int)(p->n_seq - s0) : per_batch;
        memset(items, 0, cap * sizeof *items);
        memset(labels, 0, cap * sizeof *labels);
        for (int b = 0; b < nb; b++) {
            const replay_seq *q = &p->seq[s0 + (size_t)b];
            for (size_t t = 0; t < q->n; t++) {
                items[(size_t)b * (size_t)S + t] = p->table[q->first + t];
                labels[(size_t)b * (size_t)S + t] = p->label[q->first + t];
            }
        }
        rc = ml_runner_run_table(r, f->E, items, labels, nb, S, NULL, logits, err);
        for (int b = 0; rc == 0 && b < nb; b++) {
            const replay_seq *q = &p->seq[s0 + (size_t)b];
            memcpy(p->logit + q->first, logits + (size_t)b * (size_t)S, q->n * sizeof *logits);
        }
        if (rc == 0 && hk && hk->progress) hk->progress(hk->ctx, (long)(s0 + (size_t)nb), total);
    }
    free(items);
    free(labels);
    free(logits);
    for (size_t i = 0; rc == 0 && i < p->n_rows; i++)
        if (!isfinite(p->logit[i])) {
            *code = ML_REPLAY_E_MODEL;
            rc = ml_errf(err, "the model's logit is not finite on a replayed trial");
        }
    return rc;
}

/* ---- the baseline ---------------------------------------------------------------------- */

/* The sequences' fits are independent: the Gram matrices are made first, in this thread
 * (DSYRK, OpenBLAS's own threads), then the fits, plain C without BLAS, are shared out among
 * the compute threads by a counter. Only the calling thread runs the hooks. */
typedef struct baseline_run {
    const replay_plan *p;
    const double *K;          /* the sequences' Gram matrices, one after another */
    const size_t *k_off;      /* (n_seq) offset of each in K */
    _Atomic size_t next;      /* next sequence to fit */
    _Atomic long done;
    _Atomic int stop;         /* an error or a cancellation */
    pthread_mutex_t lock;     /* over rc, err, st */
    int rc;
    ml_err err;
    ml_baseline_stats st;
} baseline_run;

/* Fits sequences until none is left; returns after one when `one` (the caller's turn to
 * poll the hooks). 0 when there is nothing left to take. */
static int baseline_take(baseline_run *r, int one) {
    const replay_plan *p = r->p;
    for (;;) {
        if (atomic_load(&r->stop)) return 0;
        size_t s = atomic_fetch_add(&r->next, 1);
        if (s >= p->n_seq) return 0;
        const replay_seq *q = &p->seq[s];
        ml_baseline_stats st = {0};
        ml_err err;
        int rc = ml_baseline_sequence(r->K + r->k_off[s], p->label + q->first, q->n,
                                      ML_BASELINE_C, p->zb + q->first, NULL, &st, &err);
        pthread_mutex_lock(&r->lock);
        r->st.fits += st.fits;
        r->st.newton_steps += st.newton_steps;
        r->st.line_search += st.line_search;
        if (st.max_grad > r->st.max_grad) r->st.max_grad = st.max_grad;
        if (rc != 0 && r->rc == 0) {
            r->rc = rc;
            r->err = err;
            atomic_store(&r->stop, 1);
        }
        pthread_mutex_unlock(&r->lock);
        atomic_fetch_add(&r->done, 1);
        if (one) return 1;
    }
}

static void *baseline_thread(void *arg) {
    baseline_take(arg, 0);
    return NULL;
}

/* The Gram matrices of every sequence (K[k_off[s]], q->n x q->n each). */
static int baseline_grams(const ml_runner *r, const replay_plan *p, const features *f,
                          double **K, size_t **k_off, ml_err *err) {
    size_t D = (size_t)r->data->backbone_dim, S = (size_t)p->S_max, total = 0;
    *k_off = malloc((p->n_seq ? p->n_seq : 1) * sizeof **k_off);
    if (!*k_off) return ml_errf(err, "baseline: out of memory");
    for (size_t s = 0; s < p->n_seq; s++) {
        (*k_off)[s] = total;
        total += p->seq[s].n * p->seq[s].n;
    }
    *K = malloc((total ? total : 1) * sizeof **K);
    float *X = malloc((S ? S : 1) * D * sizeof *X);
    int rc = *K && X ? 0 : ml_errf(err, "baseline: out of memory for the Gram matrices");
    for (size_t s = 0; rc == 0 && s < p->n_seq; s++) {
        const replay_seq *q = &p->seq[s];
        for (size_t t = 0; t < q->n; t++)
            memcpy(X + t * D, f->X + (size_t)p->table[q->first + t] * D, D * sizeof *X);
        rc = ml_baseline_gram(X, q->n, D, *K + (*k_off)[s], err);
    }
    free(X);
    return rc;
}

static int run_baseline(const ml_runner *runner, int threads, replay_plan *p, const features *f,
                        const ml_replay_hooks *hk, long total, ml_baseline_stats *st,
                        ml_err *err) {
    if ((size_t)p->S_max > ML_BASELINE_MAX_ROWS)
        return ml_errf(err, "baseline: a participant has %d replayed trials, more than the %d "
                            "the logistic baseline supports; use baseline=none or a smaller "
                            "max_trial",
                       p->S_max, ML_BASELINE_MAX_ROWS);
    baseline_run r = {.p = p};
    atomic_init(&r.next, 0);
    atomic_init(&r.done, 0);
    atomic_init(&r.stop, 0);
    double *K = NULL;
    size_t *k_off = NULL;
    int rc = baseline_grams(runner, p, f, &K, &k_off, err);
    if (rc != 0) {
        free(K);
        free(k_off);
        return rc;
    }
    r.K = K;
    r.k_off = k_off;
    pthread_mutex_init(&r.lock, NULL);
    pthread_t tid[ML_REPLAY_MAX_THREADS];
    int n_threads = threads < ML_REPLAY_MAX_THREADS ? threads : ML_REPLAY_MAX_THREADS;
    int started = 0;
    for (int i = 1; i < n_threads && (size_t)i < p->n_seq; i++, started++)
        if (pthread_create(&tid[started], NULL, baseline_thread, &r) != 0) break;
    int cancel = 0;
    long reported = 0;
    while (baseline_take(&r, 1)) {
        long done = atomic_load(&r.done);
        if (hk && hk->progress && done > reported)
            hk->progress(hk->ctx, (long)p->n_seq + (reported = done), total);
        if (cancelled(hk)) {
            cancel = 1;
            atomic_store(&r.stop, 1);
        }
    }
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&r.lock);
    free(K);
    free(k_off);
    *st = r.st;
    if (r.rc != 0) {
        *err = r.err;
        return r.rc;
    }
    if (cancel || atomic_load(&r.done) < (long)p->n_seq) return ml_errf(err, "cancelled"), 1;
    if (hk && hk->progress && reported < (long)p->n_seq) hk->progress(hk->ctx, total, total);
    return 0;
}

/* ---- the whole ------------------------------------------------------------------------- */

static int check_request(const ml_replay_request *rq, ml_err *err) {
    if (rq->max_trial < -1 || rq->max_trial > ML_HUMAN_MAX_TRIAL_LIMIT)
        return ml_errf(err, "max_trial=%d is out of range: use 0..%d", rq->max_trial,
                       ML_HUMAN_MAX_TRIAL_LIMIT);
    if (!(rq->temperature >= 0) || !isfinite(rq->temperature))
        return ml_errf(err, "temperature=%g: use a positive number, or fit", rq->temperature);
    if (rq->n_boot < 0 || rq->n_boot > ML_REPLAY_MAX_N_BOOT)
        return ml_errf(err, "n_boot=%d is out of range: use 0..%d", rq->n_boot,
                       ML_REPLAY_MAX_N_BOOT);
    if (rq->n_splits < 1 || rq->n_splits > ML_REPLAY_MAX_SPLITS)
        return ml_errf(err, "n_splits=%d is out of range: use 1..%d", rq->n_splits,
                       ML_REPLAY_MAX_SPLITS);
    return 0;
}

int ml_replay_run(ml_runner *r, int threads, const ml_human_data *h, const ml_replay_request *rq,
                  const ml_replay_hooks *hooks, ml_replay_result *res, ml_replay_code *code,
                  ml_err *err) {
    memset(res, 0, sizeof *res);
    *code = ML_REPLAY_E_ARG;
    if (check_request(rq, err) != 0) return -1;
    const ml_model *m = r->model;
    if (ml_model_feedback(m) != ML_FEEDBACK_LABELS) {
        /* the human task gives label feedback; this generation was meta-trained on magnitudes
         * (MODEL.md section 7), which the human data has none of */
        *code = ML_REPLAY_E_MODEL;
        return ml_errf(err, "%s is a later-generation (%s) checkpoint: %s, not the label "
                            "feedback the humans got, so their sequences cannot be replayed "
                            "on it (the human data has no magnitudes)",
                       m->path, ml_arch_name(ml_model_arch(m)),
                       ml_model_feedback(m) == ML_FEEDBACK_NONE
                           ? "it sees no sequence and no feedback at all"
                           : "it takes the previous trial's magnitude");
    }
    *code = ML_REPLAY_E_DATA;
    if (h->replay_problem) return ml_errf(err, "%s", h->replay_problem);
    *code = ML_REPLAY_E_INTERNAL;
    replay_plan p;
    int64_t *key64 = NULL;
    features f = {0};
    double t0 = now();
    int rc = plan_build(r, h, rq, &p, &key64, code, err);
    if (rc == 0 && p.n_rows == 0) {
        *code = ML_REPLAY_E_DATA;
        rc = ml_errf(err,
                     "no trial of the human data could be replayed: every image's concept is "
                     "missing from the item ids (%s)%s",
                     r->data->ids_path,
                     p.match == ML_REPLAY_EXACT ? " or the image from the image list" : "");
    }
    if (rc == 0) rc = build_features(r, &p, key64, &f, err);
    free(key64);
    long total = (long)p.n_seq * (rq->baseline ? 2 : 1);
    if (rc == 0) rc = run_model(r, &p, &f, hooks, total, code, err);
    res->seconds_model = now() - t0;
    t0 = now();
    if (rc == 0 && rq->baseline)
        rc = run_baseline(r, threads, &p, &f, hooks, total, &res->baseline_stats, err);
    else
        for (size_t i = 0; i < p.n_rows; i++) p.zb[i] = NAN;
    res->seconds_baseline = now() - t0;
    if (rc == 0) rc = replay_summarise(&p, h, rq, res, err);
    free(f.own_X);
    free(f.own_E);
    plan_free(&p);
    if (rc != 0) {
        if (rc == 1) *code = ML_REPLAY_CANCELLED;
        double sm = res->seconds_model, sb = res->seconds_baseline;
        ml_replay_result_free(res);
        res->seconds_model = sm;
        res->seconds_baseline = sb;
        return rc;
    }
    *code = ML_REPLAY_OK;
    return 0;
}
