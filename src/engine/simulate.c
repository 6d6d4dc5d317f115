#include "engine/simulate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/episodes.h"
#include "metalign/rng.h"
#include "metalign/stats.h"

void ml_sim_defaults(ml_sim_request *rq) {
    memset(rq, 0, sizeof *rq);
    rq->dims[0] = 0;
    rq->dims[1] = 1;
    rq->dims[2] = 2;
    rq->n_dims = 3;
    rq->episodes = 128;
    rq->seq_len = 100;
    rq->seed = 0;
    rq->standardize = 1;
    rq->batch_size = 64;
    rq->n_boot = 1000;
}

void ml_sim_key(const ml_sim_request *rq, char *buf, size_t len) {
    int n = snprintf(buf, len, "curves|E=%d|S=%d|seed=%llu|std=%d|inc=%d|bs=%d|boot=%d|dims=",
                     rq->episodes, rq->seq_len, (unsigned long long)rq->seed, rq->standardize,
                     rq->include_episodes, rq->batch_size, rq->n_boot);
    for (int i = 0; i < rq->n_dims && n > 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - (size_t)n, i ? ",%d" : "%d", rq->dims[i]);
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

/* Sigmoid in float32, so "p > 0.5" decides exactly as torch's float32 sigmoid does. */
static float sigmoidf_torch(float x) { return 1.0f / (1.0f + expf(-x)); }

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
            int pred = sigmoidf_torch(res->logits[i]) > 0.5f;
            res->correct[i] = (unsigned char)(pred == res->labels[i]);
            right += res->correct[i];
        }
        loss_sum_of_batches += batch / (double)((size_t)(b1 - b0) * S);
        n_batches++;
    }
    res->loss = loss_sum_of_batches / n_batches;
    res->accuracy = (double)right / (double)total;
}

int ml_simulate(ml_app *app, ml_worker *w, const ml_sim_request *rq, const ml_sim_hooks *hooks,
                ml_sim_result *res, ml_err *err) {
    memset(res, 0, sizeof *res);
    size_t E = (size_t)rq->episodes, S = (size_t)rq->seq_len;
    res->episodes = rq->episodes;
    res->seq_len = rq->seq_len;
    res->dim = malloc(sizeof(int) * E);
    res->items = malloc(sizeof(int) * E * S);
    res->labels = malloc(sizeof(int) * E * S);
    res->logits = malloc(sizeof(float) * E * S);
    res->correct = malloc(E * S);
    int *scratch = malloc(sizeof(int) * (size_t)app->data.n_items);
    if (!res->dim || !res->items || !res->labels || !res->logits || !res->correct || !scratch) {
        free(scratch);
        ml_sim_result_free(res);
        return ml_errf(err, "out of memory for %zu episodes of %zu trials", E, S);
    }
    /* Episodes per forward call: as many as the workspace holds, so each GEMM sees
     * (episodes x trials) rows at once. */
    int per_batch = app->batch_rows / rq->seq_len;
    if (per_batch < 1) per_batch = 1;
    int rc = 0;
    for (int e0 = 0; e0 < rq->episodes && rc == 0; e0 += per_batch) {
        if (hooks && hooks->cancelled && hooks->cancelled(hooks->ctx)) {
            rc = 1;
            ml_errf(err, "cancelled");
            break;
        }
        int nb = rq->episodes - e0 < per_batch ? rq->episodes - e0 : per_batch;
        for (int e = e0; e < e0 + nb; e++) {
            res->dim[e] = rq->dims[e % rq->n_dims];
            ml_episode_sample(&app->data, rq->seed, e, res->dim[e], rq->seq_len,
                              res->items + (size_t)e * S, res->labels + (size_t)e * S, scratch);
        }
        size_t row0 = (size_t)e0 * S;
        if (ml_app_run_items(app, w, res->items + row0, res->labels + row0, nb, rq->seq_len,
                             rq->standardize, NULL, res->logits + row0, err) != 0)
            rc = -1;
        if (rc == 0 && hooks && hooks->progress) hooks->progress(hooks->ctx, e0 + nb);
    }
    free(scratch);
    if (rc != 0) {
        ml_sim_result_free(res);
        return rc;
    }
    score(rq, res);
    if (app->metrics) ml_metrics_add(app->metrics, ML_CNT_EPISODES, E);
    return 0;
}

void ml_curve_free(ml_curve *c) {
    free(c->p_correct);
    free(c->ci_low);
    free(c->ci_high);
    memset(c, 0, sizeof *c);
}

int ml_sim_curve(const ml_sim_request *rq, const ml_sim_result *res, int dim, int group,
                 ml_curve *c) {
    memset(c, 0, sizeof *c);
    size_t S = (size_t)res->seq_len;
    c->n_trials = res->seq_len;
    c->p_correct = malloc(sizeof(double) * S);
    c->ci_low = malloc(sizeof(double) * S);
    c->ci_high = malloc(sizeof(double) * S);
    double *scratch = malloc(sizeof(double) * (size_t)(rq->n_boot > 0 ? rq->n_boot : 1));
    size_t *k = calloc(S, sizeof *k);
    if (!c->p_correct || !c->ci_low || !c->ci_high || !scratch || !k) {
        free(scratch);
        free(k);
        ml_curve_free(c);
        return -1;
    }
    size_t right = 0;
    for (int e = 0; e < res->episodes; e++) {
        if (dim >= 0 && res->dim[e] != dim) continue;
        c->episodes++;
        const unsigned char *row = res->correct + (size_t)e * S;
        for (size_t t = 0; t < S; t++) k[t] += row[t];
    }
    for (size_t t = 0; t < S; t++) {
        right += k[t];
        if (rq->n_boot > 0) {
            ml_rng r;
            ml_rng_seed(&r, rq->seed, ML_SIM_STREAM_BOOT + ((uint64_t)(group + 1) << 20) + t);
            ml_proportion_ci(k[t], (size_t)c->episodes, rq->n_boot, 95.0, &r, scratch,
                             &c->p_correct[t], &c->ci_low[t], &c->ci_high[t]);
        } else {
            c->p_correct[t] = c->ci_low[t] = c->ci_high[t] = (double)k[t] / c->episodes;
        }
    }
    c->accuracy = c->episodes ? (double)right / ((double)c->episodes * (double)S) : NAN;
    free(scratch);
    free(k);
    return 0;
}

static int append_doubles(ml_buf *out, const double *v, size_t n) {
    ml_buf_puts(out, "[");
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) return -1;
        ml_buf_printf(out, i ? ",%.17g" : "%.17g", v[i]);
    }
    ml_buf_puts(out, "]");
    return 0;
}

static int append_curve(ml_buf *out, const ml_curve *c) {
    ml_buf_puts(out, "{\"p_correct\":");
    int rc = append_doubles(out, c->p_correct, (size_t)c->n_trials);
    ml_buf_puts(out, ",\"ci_low\":");
    rc |= append_doubles(out, c->ci_low, (size_t)c->n_trials);
    ml_buf_puts(out, ",\"ci_high\":");
    rc |= append_doubles(out, c->ci_high, (size_t)c->n_trials);
    ml_buf_puts(out, "}");
    return rc;
}

static void append_ints(ml_buf *out, const int *v, size_t n) {
    ml_buf_puts(out, "[");
    for (size_t i = 0; i < n; i++) ml_buf_printf(out, i ? ",%d" : "%d", v[i]);
    ml_buf_puts(out, "]");
}

static int append_episode(ml_buf *out, const ml_sim_result *res, int e) {
    size_t S = (size_t)res->seq_len, row = (size_t)e * S;
    ml_buf_printf(out, "{\"episode\":%d,\"dimension\":%d,\"items\":", e, res->dim[e]);
    append_ints(out, res->items + row, S);
    ml_buf_puts(out, ",\"labels\":");
    append_ints(out, res->labels + row, S);
    ml_buf_puts(out, ",\"probabilities\":[");
    for (size_t t = 0; t < S; t++) {
        float p = sigmoidf_torch(res->logits[row + t]);
        if (!isfinite(p)) return -1;
        ml_buf_printf(out, t ? ",%.9g" : "%.9g", (double)p);
    }
    ml_buf_puts(out, "],\"correct\":[");
    for (size_t t = 0; t < S; t++) ml_buf_puts(out, t ? (res->correct[row + t] ? ",1" : ",0")
                                                      : (res->correct[row + t] ? "1" : "0"));
    ml_buf_puts(out, "]}");
    return 0;
}

/* The distinct dims in order of first appearance: the groups of by_dimension. */
static int distinct_dims(const ml_sim_request *rq, int *out) {
    int n = 0;
    for (int i = 0; i < rq->n_dims; i++) {
        int seen = 0;
        for (int j = 0; j < n && !seen; j++) seen = out[j] == rq->dims[i];
        if (!seen) out[n++] = rq->dims[i];
    }
    return n;
}

int ml_sim_render(const ml_app *app, const ml_sim_request *rq, const ml_sim_result *res,
                  ml_buf *out) {
    if (!isfinite(res->loss) || !isfinite(res->accuracy)) return -1;
    ml_buf_printf(out, "{\"episodes\":%d,\"seq_len\":%d,\"seed\":%llu,\"dims\":", rq->episodes,
                  rq->seq_len, (unsigned long long)rq->seed);
    append_ints(out, rq->dims, (size_t)rq->n_dims);
    ml_buf_printf(out, ",\"standardize\":%s,\"batch_size\":%d,\"n_boot\":%d,\"ci_level\":95,"
                       "\"synthetic\":%s,\"accuracy\":%.17g,\"loss\":%.17g,\"curve\":",
                  rq->standardize ? "true" : "false", rq->batch_size, rq->n_boot,
                  app->model.synthetic ? "true" : "false", res->accuracy, res->loss);
    int rc = 0;
    ml_curve c;
    if (ml_sim_curve(rq, res, -1, -1, &c) != 0) return -1;
    rc |= append_curve(out, &c);
    ml_curve_free(&c);
    ml_buf_puts(out, ",\"by_dimension\":[");
    int groups[ML_SIM_MAX_DIMS];
    int n_groups = distinct_dims(rq, groups);
    for (int g = 0; g < n_groups && rc == 0; g++) {
        if (ml_sim_curve(rq, res, groups[g], g, &c) != 0) return -1;
        ml_buf_printf(out, "%s{\"dimension\":%d,\"episodes\":%d,", g ? "," : "", groups[g],
                      c.episodes);
        if (c.episodes == 0) { /* fewer episodes than dims: nothing to report */
            ml_buf_puts(out, "\"accuracy\":null,\"curve\":null}");
        } else {
            ml_buf_printf(out, "\"accuracy\":%.17g,\"curve\":", c.accuracy);
            rc |= append_curve(out, &c);
            ml_buf_puts(out, "}");
        }
        ml_curve_free(&c);
    }
    ml_buf_puts(out, "]");
    if (rq->include_episodes) {
        ml_buf_puts(out, ",\"episodes_detail\":[");
        for (int e = 0; e < res->episodes && rc == 0; e++) {
            if (e) ml_buf_puts(out, ",");
            rc |= append_episode(out, res, e);
        }
        ml_buf_puts(out, "]");
    }
    ml_buf_puts(out, "}");
    return rc ? -1 : 0;
}

ml_blob *ml_sim_answer(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                       const ml_sim_hooks *hooks, int *rc, ml_err *err) {
    char key[512];
    ml_sim_key(rq, key, sizeof key);
    *rc = 0;
    ml_blob *b = ml_lru_get(app->results, key);
    if (b) return b;
    ml_sim_result res;
    *rc = ml_simulate(app, w, rq, hooks, &res, err);
    if (*rc != 0) return NULL;
    ml_buf out = {0};
    if (ml_sim_render(app, rq, &res, &out) != 0) {
        ml_buf_free(&out);
        ml_sim_result_free(&res);
        *rc = -1;
        ml_errf(err, "the model produced values that are not finite on these episodes");
        return NULL;
    }
    ml_sim_result_free(&res);
    b = out.oom ? NULL : ml_blob_new(out.data, out.len);
    ml_buf_free(&out);
    if (!b) {
        *rc = -1;
        ml_errf(err, "out of memory building the answer");
        return NULL;
    }
    ml_lru_put(app->results, key, b);
    return b;
}
