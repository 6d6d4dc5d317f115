/* From the replayed rows and both learners' logits to the figures of the answer
 * (metalign/replay.h defines them): per participant, pooled per dimension and overall, the
 * curves with their participant bootstrap and the humans' noise ceiling. */
#include "engine/replay_summary.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/temperature.h"

/* Panel cells (sequences x trials) a replay may need: 90 x 120 in the experiment. */
#define MAX_PANEL_CELLS (1u << 22)

/* Integer tallies and NLL sums of one sequence or group, pooled by adding. */
typedef struct tally {
    long n, correct;
    long agree[2], right[2];    /* [0] model, [1] baseline */
    double nll[2], nll_t1[2];
} tally;

static void tally_add(tally *a, const tally *b) {
    a->n += b->n;
    a->correct += b->correct;
    for (int k = 0; k < 2; k++) {
        a->agree[k] += b->agree[k];
        a->right[k] += b->right[k];
        a->nll[k] += b->nll[k];
        a->nll_t1[k] += b->nll_t1[k];
    }
}

static double share(long k, long n) { return n ? (double)k / (double)n : NAN; }

/* The pooled figures of learner k from a tally; temperature NaN (there is no single one). */
static void pooled_fit(const tally *t, int k, int present, ml_replay_fit *out) {
    out->temperature = NAN;
    out->at_bound = 0;
    if (!present || t->n == 0) {
        out->nll = out->nll_t1 = out->pseudo_r2 = out->agreement = out->accuracy = NAN;
        return;
    }
    out->nll = t->nll[k];
    out->nll_t1 = t->nll_t1[k];
    out->pseudo_r2 = 1 - t->nll[k] / ((double)t->n * log(2.0));
    out->agreement = share(t->agree[k], t->n);
    out->accuracy = share(t->right[k], t->n);
}

/* One learner on one sequence: its temperature, NLLs and tallies. */
static void score_learner(const double *z, const uint8_t *choice, const uint8_t *label, size_t n,
                          double fixed_T, int k, tally *t, ml_replay_fit *out) {
    ml_temp_fit tf = {.temperature = fixed_T};
    if (fixed_T > 0)
        tf.nll = ml_choice_nll(z, choice, n, fixed_T);
    else
        ml_temperature_fit(z, choice, n, &tf);
    t->nll[k] = tf.nll;
    t->nll_t1[k] = ml_choice_nll(z, choice, n, 1.0);
    for (size_t i = 0; i < n; i++) {
        int pred = z[i] > 0;
        t->agree[k] += pred == choice[i];
        t->right[k] += pred == label[i];
    }
    pooled_fit(t, k, 1, out);
    out->temperature = tf.temperature;
    out->at_bound = tf.at_bound;
}

static void nan_fit(ml_replay_fit *f) {
    f->temperature = f->nll = f->nll_t1 = f->pseudo_r2 = f->agreement = f->accuracy = NAN;
    f->at_bound = 0;
}

static void group_free(ml_replay_group *g) {
    ml_panel_curve_free(&g->human_curve);
    ml_panel_curve_free(&g->model_curve);
    ml_panel_curve_free(&g->baseline_curve);
}

void ml_replay_result_free(ml_replay_result *res) {
    free(res->participants);
    group_free(&res->overall);
    for (int i = 0; i < res->n_dims; i++) group_free(&res->by_dim[i]);
    free(res->by_dim);
    free(res->trials);
    free(res->images.off);
    free(res->images.arena);
    free(res->names);
    memset(res, 0, sizeof *res);
}

/* The participants' entries (names copied into res->names), with tallies per sequence. */
static int participants(const replay_plan *p, const ml_human_data *h,
                        const ml_replay_request *rq, const double *zm, tally *tl,
                        ml_replay_result *res, ml_err *err) {
    size_t bytes = 0;
    for (size_t s = 0; s < p->n_seq; s++)
        bytes += strlen(ml_strtab_get(&h->participant_names, (size_t)p->seq[s].participant)) + 1;
    res->participants = calloc(p->n_seq ? p->n_seq : 1, sizeof *res->participants);
    res->names = malloc(bytes ? bytes : 1);
    if (!res->participants || !res->names) return ml_errf(err, "replay: out of memory");
    res->n_participants = p->n_seq;
    char *arena = res->names;
    for (size_t s = 0; s < p->n_seq; s++) {
        const replay_seq *q = &p->seq[s];
        ml_replay_participant *o = &res->participants[s];
        const char *name = ml_strtab_get(&h->participant_names, (size_t)q->participant);
        size_t len = strlen(name) + 1;
        memcpy(arena, name, len);
        o->name = arena;
        arena += len;
        o->participant = q->participant;
        o->dimension = q->dimension;
        o->trials = (int)q->n;
        o->unmatched = q->unmatched;
        o->incomplete = q->incomplete;
        tally *t = &tl[s];
        memset(t, 0, sizeof *t);
        t->n = (long)q->n;
        for (size_t i = q->first; i < q->first + q->n; i++) t->correct += p->correct[i];
        o->human_accuracy = share(t->correct, t->n);
        nan_fit(&o->model);
        nan_fit(&o->baseline);
        if (q->n == 0) continue;
        const uint8_t *c = p->choice + q->first, *l = p->label + q->first;
        score_learner(zm + q->first, c, l, q->n, rq->temperature, 0, t, &o->model);
        if (rq->baseline)
            score_learner(p->zb + q->first, c, l, q->n, rq->temperature, 1, t, &o->baseline);
    }
    return 0;
}

/* The panel of the curves: has, and the humans', model's and baseline's correctness. */
typedef struct panel_data {
    uint8_t *has;
    double *v[3];
    ml_panel panel;
} panel_data;

static int panel_build(const replay_plan *p, const double *zm, int n_trials, panel_data *pd,
                       ml_err *err) {
    memset(pd, 0, sizeof *pd);
    size_t T = (size_t)n_trials, cells = p->n_seq * T;
    if (cells > MAX_PANEL_CELLS)
        return ml_errf(err, "replay: %zu participants x %d trials is more than the curves "
                            "support (%u cells); ask for a smaller max_trial",
                       p->n_seq, n_trials, MAX_PANEL_CELLS);
    pd->has = calloc(cells ? cells : 1, 1);
    for (int k = 0; k < 3; k++) pd->v[k] = calloc(cells ? cells : 1, sizeof *pd->v[k]);
    if (!pd->has || !pd->v[0] || !pd->v[1] || !pd->v[2])
        return ml_errf(err, "replay: out of memory for the curves");
    for (size_t s = 0; s < p->n_seq; s++)
        for (size_t i = p->seq[s].first; i < p->seq[s].first + p->seq[s].n; i++) {
            size_t c = s * T + (size_t)p->trial[i];
            pd->has[c] = 1;
            pd->v[0][c] = p->correct[i];
            pd->v[1][c] = (zm[i] > 0) == p->label[i];
            pd->v[2][c] = isnan(p->zb[i]) ? NAN : (double)((p->zb[i] > 0) == p->label[i]);
        }
    pd->panel = (ml_panel){.n_seq = p->n_seq, .n_trials = n_trials, .has = pd->has,
                           .series = {pd->v[0], pd->v[1], pd->v[2]}, .n_series = 3};
    return 0;
}

static void panel_free(panel_data *pd) {
    free(pd->has);
    for (int k = 0; k < 3; k++) free(pd->v[k]);
}

/* A group's figures: pooled tallies, curves, ceiling, curve comparisons. dim -1: all. */
static int group_fill(const replay_plan *p, const ml_replay_request *rq, const tally *tl,
                      const panel_data *pd, int32_t dim, size_t *seq, ml_replay_group *g,
                      ml_err *err) {
    memset(g, 0, sizeof *g);
    g->dimension = dim;
    tally sum = {0};
    size_t n_group = 0;
    for (size_t s = 0; s < p->n_seq; s++) {
        if (dim >= 0 && p->seq[s].dimension != dim) continue;
        g->unmatched += p->seq[s].unmatched;
        g->incomplete += p->seq[s].incomplete;
        if (p->seq[s].n == 0) continue; /* nothing to draw or split */
        tally_add(&sum, &tl[s]);
        seq[n_group++] = s;
    }
    g->participants = (int)n_group;
    g->trials = sum.n;
    g->human_accuracy = share(sum.correct, sum.n);
    pooled_fit(&sum, 0, 1, &g->model);
    pooled_fit(&sum, 1, rq->baseline, &g->baseline);
    ml_panel_curve c[3];
    uint64_t off = (uint64_t)((int64_t)dim + 1);
    if (ml_panel_curves(&pd->panel, seq, n_group, rq->n_boot, ML_REPLAY_LEVEL, rq->seed,
                        ML_REPLAY_STREAM_BOOT + off, c, err) != 0)
        return -1;
    g->human_curve = c[0];
    g->model_curve = c[1];
    g->baseline_curve = c[2];
    if (ml_noise_ceiling_compute(&pd->panel, 0, seq, n_group, rq->n_splits, rq->seed,
                                 ML_REPLAY_STREAM_SPLIT + off, &g->noise_ceiling, err) != 0)
        return -1;
    ml_panel_curve_compare(&g->model_curve, &g->human_curve, &g->model_r, &g->rmse);
    if (rq->baseline)
        ml_panel_curve_compare(&g->baseline_curve, &g->human_curve, &g->baseline_r,
                               &g->baseline_rmse);
    else
        g->baseline_r = g->baseline_rmse = NAN;
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int groups(const replay_plan *p, const ml_replay_request *rq, const tally *tl,
                  const panel_data *pd, ml_replay_result *res, ml_err *err) {
    int32_t *dims = malloc((p->n_seq ? p->n_seq : 1) * sizeof *dims);
    size_t *seq = malloc((p->n_seq ? p->n_seq : 1) * sizeof *seq);
    int rc = dims && seq ? 0 : ml_errf(err, "replay: out of memory");
    size_t u = 0;
    if (rc == 0) {
        for (size_t s = 0; s < p->n_seq; s++) dims[s] = p->seq[s].dimension;
        qsort(dims, p->n_seq, sizeof *dims, cmp_i32);
        for (size_t s = 0; s < p->n_seq; s++)
            if (u == 0 || dims[s] != dims[u - 1]) dims[u++] = dims[s];
        if (u > ML_REPLAY_MAX_DIMENSIONS)
            rc = ml_errf(err, "replay: %zu distinct dimensions; at most %d are supported", u,
                         ML_REPLAY_MAX_DIMENSIONS);
    }
    if (rc == 0) rc = group_fill(p, rq, tl, pd, -1, seq, &res->overall, err);
    if (rc == 0 && !(res->by_dim = calloc(u ? u : 1, sizeof *res->by_dim)))
        rc = ml_errf(err, "replay: out of memory");
    for (size_t j = 0; rc == 0 && j < u; j++) {
        rc = group_fill(p, rq, tl, pd, dims[j], seq, &res->by_dim[j], err);
        res->n_dims = (int)j + (rc == 0);
    }
    free(dims);
    free(seq);
    return rc;
}

static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static int trial_rows(const replay_plan *p, const double *zm, ml_replay_result *res,
                      ml_err *err) {
    res->trials = malloc((p->n_rows ? p->n_rows : 1) * sizeof *res->trials);
    if (!res->trials) return ml_errf(err, "replay: out of memory for %zu trial rows", p->n_rows);
    res->n_trial_rows = p->n_rows;
    for (size_t s = 0; s < p->n_seq; s++) {
        const ml_replay_participant *o = &res->participants[s];
        for (size_t i = p->seq[s].first; i < p->seq[s].first + p->seq[s].n; i++) {
            ml_replay_trial *r = &res->trials[i];
            r->seq = (int32_t)s;
            r->trial = p->trial[i];
            r->image = p->image[i];
            r->label = p->label[i];
            r->choice = p->choice[i];
            r->correct = p->correct[i];
            r->logit = p->logit[i];
            r->model_correct = (zm[i] > 0) == p->label[i];
            r->p_model = sigmoid(zm[i] / o->model.temperature);
            r->p_choice = r->choice ? r->p_model : 1 - r->p_model;
            r->baseline_logit = p->zb[i];
            r->baseline_correct = !isnan(p->zb[i]) && (p->zb[i] > 0) == p->label[i];
            r->p_baseline = isnan(p->zb[i]) ? NAN : sigmoid(p->zb[i] / o->baseline.temperature);
        }
    }
    return 0;
}

static int copy_strtab(const ml_strtab *from, ml_strtab *to) {
    memset(to, 0, sizeof *to);
    size_t bytes = 0;
    if (from->n) bytes = from->off[from->n - 1] + strlen(ml_strtab_get(from, from->n - 1)) + 1;
    to->off = malloc((from->n ? from->n : 1) * sizeof *to->off);
    to->arena = malloc(bytes ? bytes : 1);
    if (!to->off || !to->arena) return -1;
    memcpy(to->off, from->off, from->n * sizeof *to->off);
    memcpy(to->arena, from->arena, bytes);
    to->n = from->n;
    return 0;
}

int replay_summarise(const replay_plan *p, const ml_human_data *h, const ml_replay_request *rq,
                     ml_replay_result *res, ml_err *err) {
    res->match = p->match;
    res->request = *rq;
    res->max_trial = p->max_trial;
    res->n_trials = p->max_trial + 1;
    double *zm = malloc((p->n_rows ? p->n_rows : 1) * sizeof *zm);
    tally *tl = calloc(p->n_seq ? p->n_seq : 1, sizeof *tl);
    panel_data pd = {0};
    int rc = zm && tl ? 0 : ml_errf(err, "replay: out of memory");
    for (size_t i = 0; rc == 0 && i < p->n_rows; i++) zm[i] = p->logit[i];
    if (rc == 0) rc = participants(p, h, rq, zm, tl, res, err);
    if (rc == 0) rc = panel_build(p, zm, res->n_trials, &pd, err);
    if (rc == 0) rc = groups(p, rq, tl, &pd, res, err);
    if (rc == 0 && rq->include_trials) rc = trial_rows(p, zm, res, err);
    if (rc == 0 && copy_strtab(&h->images, &res->images) != 0)
        rc = ml_errf(err, "replay: out of memory");
    panel_free(&pd);
    free(zm);
    free(tl);
    return rc;
}
