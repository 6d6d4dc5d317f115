#include "metalign/simulate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/episodes.h"
#include "metalign/rng.h"
#include "metalign/stats.h"

static const int default_dims[] = {0, 1, 2};

int ml_sim_set_dims(ml_sim_request *rq, const int *dims, int n) {
    int *copy = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!copy) return -1;
    if (n > 0) memcpy(copy, dims, sizeof(int) * (size_t)n);
    free(rq->dims);
    rq->dims = copy;
    rq->n_dims = n;
    return 0;
}

int ml_sim_defaults(ml_sim_request *rq) {
    memset(rq, 0, sizeof *rq);
    rq->episodes = 128;
    rq->seq_len = 100;
    rq->seed = 0;
    rq->standardize = 1;
    rq->batch_size = 64;
    rq->n_boot = ML_N_BOOT_DEFAULT;
    return ml_sim_set_dims(rq, default_dims, 3);
}

void ml_sim_model_defaults(ml_sim_request *rq, const ml_model *m) {
    rq->standardize = m->generation == ML_GEN_SEED;
}

int ml_sim_request_copy(ml_sim_request *dst, const ml_sim_request *src) {
    *dst = *src;
    dst->dims = NULL;
    return ml_sim_set_dims(dst, src->dims, src->n_dims);
}

void ml_sim_request_free(ml_sim_request *rq) {
    free(rq->dims);
    rq->dims = NULL;
    rq->n_dims = 0;
}

void ml_sim_result_free(ml_sim_result *res) {
    free(res->dim);
    free(res->length);
    free(res->items);
    free(res->labels);
    free(res->logits);
    free(res->correct);
    free(res->magnitudes);
    free(res->pred_magnitudes);
    memset(res, 0, sizeof *res);
}

/* BCE with logits as torch computes it, in double: max(x,0) - x*y + log1p(exp(-|x|)). */
static double bce_with_logits(double x, double y) {
    return (x > 0 ? x : 0) - x * y + log1p(exp(-fabs(x)));
}

/* In float32, so "p > 0.5" decides exactly as torch's float32 sigmoid does. */
float ml_sim_probability(float logit) { return 1.0f / (1.0f + expf(-logit)); }

static void score(const ml_sim_request *rq, ml_sim_result *res) {
    size_t S = (size_t)res->seq_len;
    size_t total = (size_t)res->episodes * S, right = 0;
    double loss_sum_of_batches = 0;
    int n_batches = 0;
    for (int b0 = 0; b0 < res->episodes; b0 += rq->batch_size) {
        int b1 = b0 + rq->batch_size < res->episodes ? b0 + rq->batch_size : res->episodes;
        double batch = 0;
        for (size_t i = (size_t)b0 * S; i < (size_t)b1 * S; i++) {
            batch += bce_with_logits(res->logits[i], res->labels[i]);
            int pred = ml_sim_probability(res->logits[i]) > 0.5f;
            res->correct[i] = (unsigned char)(pred == res->labels[i]);
            right += res->correct[i];
        }
        loss_sum_of_batches += batch / (double)((size_t)(b1 - b0) * S);
        n_batches++;
    }
    res->loss = loss_sum_of_batches / n_batches;
    res->accuracy = (double)right / (double)total;
}

/* The later generation: only each episode's own length[e] trials count; the loss of a batch
 * is the mean over its scored trials; the magnitudes' error and R^2 over all scored trials. */
static void score_later(const ml_sim_request *rq, ml_sim_result *res) {
    size_t S = (size_t)res->seq_len;
    long long total = 0, right = 0;
    double loss_sum_of_batches = 0, sse = 0, sum_y = 0;
    int n_batches = 0;
    for (int b0 = 0; b0 < res->episodes; b0 += rq->batch_size) {
        int b1 = b0 + rq->batch_size < res->episodes ? b0 + rq->batch_size : res->episodes;
        double batch = 0;
        long long n = 0;
        for (int e = b0; e < b1; e++) {
            size_t L = (size_t)res->length[e];
            memset(res->correct + (size_t)e * S + L, 0, S - L); /* padding: never scored */
            for (size_t t = 0, i = (size_t)e * S; t < L; t++, i++) {
                batch += bce_with_logits(res->logits[i], res->labels[i]);
                int pred = ml_sim_probability(res->logits[i]) > 0.5f;
                res->correct[i] = (unsigned char)(pred == res->labels[i]);
                right += res->correct[i];
                double d = (double)res->pred_magnitudes[i] - (double)res->magnitudes[i];
                sse += d * d;
                sum_y += res->magnitudes[i];
                n++;
            }
        }
        loss_sum_of_batches += batch / (double)n;
        total += n;
        n_batches++;
    }
    double mean_y = sum_y / (double)total, sst = 0;
    for (int e = 0; e < res->episodes; e++)
        for (size_t t = 0, i = (size_t)e * S; t < (size_t)res->length[e]; t++, i++) {
            double d = (double)res->magnitudes[i] - mean_y;
            sst += d * d;
        }
    res->trials = total;
    res->loss = loss_sum_of_batches / n_batches;
    res->accuracy = (double)right / (double)total;
    res->magnitude_mse = sse / (double)total;
    res->magnitude_r2 = sst > 0 ? 1.0 - sse / sst : NAN;
}

int ml_sim_check_model(const ml_model *m, const ml_sim_request *rq, ml_err *err) {
    int K = ml_model_logit_dims(m);
    for (int i = 0; K > 1 && i < rq->n_dims; i++)
        if (rq->dims[i] >= K)
            return ml_errf(err, "dims[%d]=%d has no head column: this %s model has %d, one per "
                                "target dimension (0..%d); ask for dims below %d", i,
                           rq->dims[i], ml_arch_name(ml_model_arch(m)), K, K - 1, K);
    return 0;
}

int ml_sim_check(const ml_runner *r, const ml_sim_request *rq, ml_err *err) {
    const ml_dataset *d = r->data;
    int max_len = r->max_seq < d->n_items ? r->max_seq : d->n_items;
    if (rq->n_dims < 1 || !rq->dims) return ml_errf(err, "dims: give at least one dimension");
    for (int i = 0; i < rq->n_dims; i++)
        if (rq->dims[i] < 0 || rq->dims[i] >= d->target_dims)
            return ml_errf(err, "dims[%d]=%d is out of range: the target has %d dimensions "
                                "(0..%d)", i, rq->dims[i], d->target_dims, d->target_dims - 1);
    if (rq->episodes < 1 || rq->episodes > ML_SIM_MAX_EPISODES)
        return ml_errf(err, "episodes=%d is out of range: allowed 1..%d", rq->episodes,
                       ML_SIM_MAX_EPISODES);
    if (rq->seq_len < 1 || rq->seq_len > max_len)
        return ml_errf(err, "seq_len=%d is out of range: allowed 1..%d", rq->seq_len, max_len);
    if ((long long)rq->episodes * rq->seq_len > ML_SIM_MAX_TRIALS)
        return ml_errf(err, "episodes x seq_len = %lld trials is more than one request may "
                            "simulate (%lld)", (long long)rq->episodes * rq->seq_len,
                       ML_SIM_MAX_TRIALS);
    if (rq->batch_size < 1 || rq->batch_size > ML_SIM_MAX_BATCH)
        return ml_errf(err, "batch_size=%d is out of range: allowed 1..%d", rq->batch_size,
                       ML_SIM_MAX_BATCH);
    if (ml_sim_check_model(r->model, rq, err) != 0) return -1;
    if (rq->n_boot < 0 || rq->n_boot > ML_N_BOOT_MAX)
        return ml_errf(err, "n_boot=%d is out of range: allowed 0..%d", rq->n_boot,
                       ML_N_BOOT_MAX);
    return 0;
}

static int alloc_result(ml_sim_result *res, size_t E, size_t S, int later) {
    res->dim = malloc(sizeof(int) * E);
    res->length = malloc(sizeof(int) * E);
    res->items = malloc(sizeof(int) * E * S);
    res->labels = malloc(sizeof(int) * E * S);
    res->logits = malloc(sizeof(float) * E * S);
    res->correct = malloc(E * S);
    if (later) {
        res->magnitudes = malloc(sizeof(float) * E * S);
        res->pred_magnitudes = malloc(sizeof(float) * E * S);
        if (!res->magnitudes || !res->pred_magnitudes) return -1;
    }
    res->magnitude_mse = res->magnitude_r2 = NAN;
    return res->dim && res->length && res->items && res->labels && res->logits && res->correct
               ? 0
               : -1;
}

/* Per forward call of the later generation: the heads' K columns of nb episodes, from which
 * each episode's scored column is taken. */
typedef struct later_call {
    int K;
    float *logits, *mags; /* (per_call, S, K) when K > 1 */
} later_call;

/* FunctionDataset episodes e0 .. e0+nb-1 (padded past their length with their first item and
 * a zero magnitude: the passes are causal, so padding never reaches a scored trial), then
 * one forward pass with magnitude feedback. */
static int run_later(ml_runner *r, const ml_sim_request *rq, ml_sim_result *res, int e0, int nb,
                     int *scratch, const later_call *lc, ml_err *err) {
    size_t S = (size_t)rq->seq_len;
    for (int e = e0; e < e0 + nb; e++) {
        size_t row = (size_t)e * S;
        int *items = res->items + row, *labels = res->labels + row;
        float *mags = res->magnitudes + row;
        res->dim[e] = rq->dims[e % rq->n_dims];
        int L = ml_fn_episode_sample(r->data, rq->seed, e, res->dim[e], rq->seq_len, items,
                                     labels, mags, scratch);
        res->length[e] = L;
        for (size_t t = (size_t)L; t < S; t++) {
            items[t] = items[0];
            labels[t] = 0;
            mags[t] = 0.0f;
        }
    }
    size_t row0 = (size_t)e0 * S;
    if (lc->K == 1)
        return ml_runner_forward(r, res->items + row0, res->magnitudes + row0, nb, rq->seq_len,
                                 rq->standardize, NULL, res->logits + row0,
                                 res->pred_magnitudes + row0, err);
    if (ml_runner_forward(r, res->items + row0, res->magnitudes + row0, nb, rq->seq_len,
                          rq->standardize, NULL, lc->logits, lc->mags, err) != 0)
        return -1;
    /* column k predicts target dimension k (ml_sim_check: every dim < K) */
    for (int b = 0; b < nb; b++) {
        size_t col = (size_t)res->dim[e0 + b], K = (size_t)lc->K;
        for (size_t t = 0; t < S; t++) {
            size_t i = (size_t)b * S + t;
            res->logits[row0 + i] = lc->logits[i * K + col];
            res->pred_magnitudes[row0 + i] = lc->mags[i * K + col];
        }
    }
    return 0;
}

int ml_simulate(ml_runner *r, const ml_sim_request *rq, const ml_sim_hooks *hooks,
                ml_sim_result *res, ml_err *err) {
    memset(res, 0, sizeof *res);
    if (ml_sim_check(r, rq, err) != 0) return -1;
    size_t E = (size_t)rq->episodes, S = (size_t)rq->seq_len;
    res->episodes = rq->episodes;
    res->seq_len = rq->seq_len;
    int later = r->model->generation != ML_GEN_SEED;
    /* Episodes per forward call: as many as the workspace holds, so each GEMM sees
     * (episodes x trials) rows at once. */
    int per_call = r->max_rows / rq->seq_len;
    if (per_call < 1) per_call = 1;
    later_call lc = {ml_model_logit_dims(r->model), NULL, NULL};
    if (later && lc.K > 1) {
        size_t n = (size_t)per_call * S * (size_t)lc.K;
        lc.logits = malloc(sizeof(float) * n);
        lc.mags = malloc(sizeof(float) * n);
    }
    int *scratch = malloc(sizeof(int) * (size_t)r->data->n_items);
    if (!scratch || alloc_result(res, E, S, later) != 0 ||
        (later && lc.K > 1 && (!lc.logits || !lc.mags))) {
        free(scratch);
        free(lc.logits);
        free(lc.mags);
        ml_sim_result_free(res);
        return ml_errf(err, "out of memory for %zu episodes of %zu trials", E, S);
    }
    int rc = 0;
    for (int e0 = 0; e0 < rq->episodes && rc == 0; e0 += per_call) {
        if (hooks && hooks->cancelled && hooks->cancelled(hooks->ctx)) {
            rc = 1;
            ml_errf(err, "cancelled");
            break;
        }
        int nb = rq->episodes - e0 < per_call ? rq->episodes - e0 : per_call;
        if (later) {
            rc = run_later(r, rq, res, e0, nb, scratch, &lc, err) != 0 ? -1 : 0;
            if (rc == 0 && hooks && hooks->progress) hooks->progress(hooks->ctx, e0 + nb);
            continue;
        }
        for (int e = e0; e < e0 + nb; e++) {
            res->length[e] = rq->seq_len;
            res->dim[e] = rq->dims[e % rq->n_dims];
            ml_episode_sample(r->data, rq->seed, e, res->dim[e], rq->seq_len,
                              res->items + (size_t)e * S, res->labels + (size_t)e * S, scratch);
        }
        size_t row0 = (size_t)e0 * S;
        if (ml_runner_run(r, res->items + row0, res->labels + row0, nb, rq->seq_len,
                          rq->standardize, NULL, res->logits + row0, err) != 0)
            rc = -1;
        if (rc == 0 && hooks && hooks->progress) hooks->progress(hooks->ctx, e0 + nb);
    }
    free(scratch);
    free(lc.logits);
    free(lc.mags);
    if (rc != 0) {
        ml_sim_result_free(res);
        return rc;
    }
    if (later) {
        score_later(rq, res);
    } else {
        score(rq, res);
        res->trials = (long long)E * (long long)S;
    }
    if (!isfinite(res->loss) || (later && !isfinite(res->magnitude_mse))) {
        ml_sim_result_free(res);
        return ml_errf(err, "the model produced values that are not finite on these episodes; "
                            "check the checkpoint and the backbone features");
    }
    return 0;
}

static void group_free(ml_sim_group *g) {
    ml_curve_free(&g->curve);
    free(g->mse);
}

void ml_sim_curves_free(ml_sim_curves *c) {
    group_free(&c->overall);
    for (int i = 0; i < c->n_groups; i++) group_free(&c->by_dim[i]);
    free(c->by_dim);
    memset(c, 0, sizeof *c);
}

static int episode_length(const ml_sim_result *res, int e) {
    return res->length ? res->length[e] : res->seq_len;
}

/* The magnitude head's figures of the group's episodes: squared error per trial (over the
 * episodes that reach it) and R^2 over all their scored trials. sse: seq_len doubles. */
static int group_magnitudes(const ml_sim_result *res, int dim, const int64_t *n, double *sse,
                            ml_sim_group *g) {
    size_t S = (size_t)res->seq_len;
    g->mse = malloc(sizeof(double) * S);
    if (!g->mse) return -1;
    memset(sse, 0, sizeof *sse * S);
    double sum_y = 0, total_sse = 0, sst = 0;
    long long total = 0;
    for (int e = 0; e < res->episodes; e++) {
        if (dim >= 0 && res->dim[e] != dim) continue;
        for (size_t t = 0, i = (size_t)e * S; t < (size_t)episode_length(res, e); t++, i++) {
            double d = (double)res->pred_magnitudes[i] - (double)res->magnitudes[i];
            sse[t] += d * d;
            sum_y += res->magnitudes[i];
            total++;
        }
    }
    double mean_y = total ? sum_y / (double)total : NAN;
    for (int e = 0; e < res->episodes; e++) {
        if (dim >= 0 && res->dim[e] != dim) continue;
        for (size_t t = 0, i = (size_t)e * S; t < (size_t)episode_length(res, e); t++, i++) {
            double d = (double)res->magnitudes[i] - mean_y;
            sst += d * d;
        }
    }
    for (size_t t = 0; t < S; t++) {
        g->mse[t] = n[t] > 0 ? sse[t] / (double)n[t] : NAN;
        total_sse += sse[t];
    }
    g->r2 = sst > 0 ? 1.0 - total_sse / sst : NAN;
    return 0;
}

/* The episodes of dimension dim (-1: all) per trial; group indexes the bootstrap streams.
 * work: 3 * seq_len slots (k and n as int64, the magnitude errors as doubles). */
static int group_compute(const ml_sim_request *rq, const ml_sim_result *res, int dim, int group,
                         double *scratch, int64_t *work, ml_sim_group *g) {
    size_t S = (size_t)res->seq_len;
    int64_t *k = work, *n = work + S;
    g->dimension = dim;
    g->r2 = NAN;
    if (ml_curve_alloc(&g->curve, res->seq_len) != 0) return -1;
    memset(k, 0, sizeof *k * S);
    memset(n, 0, sizeof *n * S);
    for (int e = 0; e < res->episodes; e++) {
        if (dim >= 0 && res->dim[e] != dim) continue;
        g->episodes++;
        const unsigned char *row = res->correct + (size_t)e * S;
        size_t L = (size_t)episode_length(res, e);
        for (size_t t = 0; t < L; t++) {
            k[t] += row[t];
            n[t]++;
        }
    }
    int64_t right = 0, total = 0;
    for (size_t t = 0; t < S; t++) {
        right += k[t];
        total += n[t];
        ml_rng rng;
        ml_rng_seed(&rng, rq->seed, ML_SIM_STREAM_BOOT + ((uint64_t)(group + 1) << 20) + t);
        ml_curve_set(&g->curve, (int)t, k[t], n[t], rq->n_boot, &rng, scratch);
    }
    g->accuracy = total ? (double)right / (double)total : NAN;
    if (res->pred_magnitudes && group_magnitudes(res, dim, n, (double *)(work + 2 * S), g) != 0)
        return -1;
    return 0;
}

int ml_sim_curves_compute(const ml_sim_request *rq, const ml_sim_result *res,
                          ml_sim_curves *out, ml_err *err) {
    memset(out, 0, sizeof *out);
    double *scratch = malloc(sizeof(double) * (size_t)(rq->n_boot > 0 ? rq->n_boot : 1));
    int64_t *k = malloc(sizeof *k * 3 * (size_t)res->seq_len);
    int *groups = malloc(sizeof(int) * (size_t)rq->n_dims);
    int rc = scratch && k && groups ? 0 : -1;
    /* the distinct dims in order of first appearance */
    int n = 0;
    for (int i = 0; rc == 0 && i < rq->n_dims; i++) {
        int seen = 0;
        for (int j = 0; j < n && !seen; j++) seen = groups[j] == rq->dims[i];
        if (!seen) groups[n++] = rq->dims[i];
    }
    if (rc == 0) out->by_dim = calloc((size_t)(n ? n : 1), sizeof *out->by_dim);
    if (!out->by_dim) rc = -1;
    if (rc == 0) rc = group_compute(rq, res, -1, -1, scratch, k, &out->overall);
    for (int g = 0; rc == 0 && g < n; g++) {
        out->n_groups = g + 1;
        rc = group_compute(rq, res, groups[g], g, scratch, k, &out->by_dim[g]);
    }
    free(scratch);
    free(k);
    free(groups);
    if (rc != 0) {
        ml_sim_curves_free(out);
        return ml_errf(err, "out of memory for the curves of %d episodes", res->episodes);
    }
    return 0;
}
