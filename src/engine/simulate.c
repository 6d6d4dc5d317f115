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
    free(res->items);
    free(res->labels);
    free(res->logits);
    free(res->correct);
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
    if (rq->n_boot < 0 || rq->n_boot > ML_N_BOOT_MAX)
        return ml_errf(err, "n_boot=%d is out of range: allowed 0..%d", rq->n_boot,
                       ML_N_BOOT_MAX);
    return 0;
}

int ml_sim_result_alloc(ml_sim_result *res, int episodes, int seq_len) {
    size_t E = (size_t)episodes, S = (size_t)seq_len;
    memset(res, 0, sizeof *res);
    res->episodes = episodes;
    res->seq_len = seq_len;
    res->dim = malloc(sizeof(int) * E);
    res->items = malloc(sizeof(int) * E * S);
    res->labels = malloc(sizeof(int) * E * S);
    res->logits = malloc(sizeof(float) * E * S);
    res->correct = malloc(E * S);
    if (res->dim && res->items && res->labels && res->logits && res->correct) return 0;
    ml_sim_result_free(res);
    return -1;
}

int ml_sim_sample_range(const ml_dataset *d, const ml_sim_request *rq, int e0, int n, int *dim,
                        int *items, int *labels, ml_err *err) {
    size_t S = (size_t)rq->seq_len;
    int *scratch = malloc(sizeof(int) * (size_t)d->n_items);
    if (!scratch) return ml_errf(err, "out of memory sampling %d episodes", n);
    for (int i = 0; i < n; i++) {
        int e = e0 + i;
        dim[i] = rq->dims[e % rq->n_dims];
        ml_episode_sample(d, rq->seed, e, dim[i], rq->seq_len, items + (size_t)i * S,
                          labels + (size_t)i * S, scratch);
    }
    free(scratch);
    return 0;
}

int ml_sim_run_range(ml_runner *r, const ml_sim_request *rq, int e0, int n,
                     const ml_sim_hooks *hooks, int *dim, int *items, int *labels, float *logits,
                     ml_err *err) {
    size_t S = (size_t)rq->seq_len;
    /* Episodes per forward call: as many as the workspace holds, so each GEMM sees
     * (episodes x trials) rows at once. */
    int per_call = r->max_rows / rq->seq_len;
    if (per_call < 1) per_call = 1;
    for (int i0 = 0; i0 < n; i0 += per_call) {
        if (hooks && hooks->cancelled && hooks->cancelled(hooks->ctx)) {
            ml_errf(err, "cancelled");
            return 1;
        }
        int nb = n - i0 < per_call ? n - i0 : per_call;
        size_t row0 = (size_t)i0 * S;
        if (ml_sim_sample_range(r->data, rq, e0 + i0, nb, dim + i0, items + row0, labels + row0,
                                err) != 0 ||
            ml_runner_run(r, items + row0, labels + row0, nb, rq->seq_len, rq->standardize, NULL,
                          logits + row0, err) != 0)
            return -1;
        if (hooks && hooks->progress) hooks->progress(hooks->ctx, i0 + nb);
    }
    return 0;
}

int ml_sim_finish(const ml_sim_request *rq, ml_sim_result *res, ml_err *err) {
    score(rq, res);
    if (!isfinite(res->loss))
        return ml_errf(err, "the model produced values that are not finite on these episodes; "
                            "check the checkpoint and the backbone features");
    return 0;
}

int ml_simulate(ml_runner *r, const ml_sim_request *rq, const ml_sim_hooks *hooks,
                ml_sim_result *res, ml_err *err) {
    memset(res, 0, sizeof *res);
    if (ml_sim_check(r, rq, err) != 0) return -1;
    if (ml_sim_result_alloc(res, rq->episodes, rq->seq_len) != 0)
        return ml_errf(err, "out of memory for %d episodes of %d trials", rq->episodes,
                       rq->seq_len);
    int rc = ml_sim_run_range(r, rq, 0, rq->episodes, hooks, res->dim, res->items, res->labels,
                              res->logits, err);
    if (rc == 0) rc = ml_sim_finish(rq, res, err);
    if (rc != 0) ml_sim_result_free(res);
    return rc;
}

static void group_free(ml_sim_group *g) { ml_curve_free(&g->curve); }

void ml_sim_curves_free(ml_sim_curves *c) {
    group_free(&c->overall);
    for (int i = 0; i < c->n_groups; i++) group_free(&c->by_dim[i]);
    free(c->by_dim);
    memset(c, 0, sizeof *c);
}

/* The episodes of dimension dim (-1: all) per trial; group indexes the bootstrap streams. */
static int group_compute(const ml_sim_request *rq, const ml_sim_result *res, int dim, int group,
                         double *scratch, int64_t *k, ml_sim_group *g) {
    size_t S = (size_t)res->seq_len;
    g->dimension = dim;
    if (ml_curve_alloc(&g->curve, res->seq_len) != 0) return -1;
    memset(k, 0, sizeof *k * S);
    for (int e = 0; e < res->episodes; e++) {
        if (dim >= 0 && res->dim[e] != dim) continue;
        g->episodes++;
        const unsigned char *row = res->correct + (size_t)e * S;
        for (size_t t = 0; t < S; t++) k[t] += row[t];
    }
    int64_t right = 0;
    for (size_t t = 0; t < S; t++) {
        right += k[t];
        ml_rng rng;
        ml_rng_seed(&rng, rq->seed, ML_SIM_STREAM_BOOT + ((uint64_t)(group + 1) << 20) + t);
        ml_curve_set(&g->curve, (int)t, k[t], g->episodes, rq->n_boot, &rng, scratch);
    }
    g->accuracy = g->episodes ? (double)right / ((double)g->episodes * (double)S) : NAN;
    return 0;
}

int ml_sim_curves_compute(const ml_sim_request *rq, const ml_sim_result *res,
                          ml_sim_curves *out, ml_err *err) {
    memset(out, 0, sizeof *out);
    double *scratch = malloc(sizeof(double) * (size_t)(rq->n_boot > 0 ? rq->n_boot : 1));
    int64_t *k = malloc(sizeof *k * (size_t)res->seq_len);
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
