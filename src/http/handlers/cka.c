/* GET /v1/cka and /v1/cka/matrix: representational alignment, served from memory once the
 * representations are prepared (the first request prepares them on a compute worker). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/request.h"
#include "http/routes.h"

typedef struct cka_query {
    int all_dims;
    int dims[1024];
    int n_dims;
    int use_layer[ML_MAX_LAYERS + 2]; /* by representation index; [0] backbone always */
    int debiased;
    int ci;
    long long n_boot;
    long long seed;
} cka_query;

static int parse_layers_arg(const ml_app *app, const char *text, cka_query *q,
                            ml_response *resp) {
    int n_out = ml_model_num_outputs(&app->model);
    if (!text || !strcmp(text, "all")) {
        for (int i = 0; i < n_out; i++) q->use_layer[1 + i] = 1;
        return 0;
    }
    char *copy = strdup(text), *save = NULL;
    if (!copy) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return -1;
    }
    int rc = 0, any = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        int idx = ml_model_output_index(&app->model, tok);
        if (idx < 0) {
            char last[32];
            ml_model_output_name(&app->model, n_out - 1, last, sizeof last);
            ml_respond_error(resp, 400, "unknown_layer",
                             "layers: \"%s\" is not a layer of this model; the layers are "
                             "embedding, layer_0 .. %s, or \"all\"", tok, last);
            rc = -1;
        } else {
            q->use_layer[1 + idx] = 1;
            any = 1;
        }
    }
    free(copy);
    if (rc == 0 && !any) {
        ml_respond_error(resp, 400, "invalid_argument", "layers is empty; use \"all\" or names");
        rc = -1;
    }
    return rc;
}

static int parse_cka(const ml_app *app, const ml_request *req, cka_query *q, ml_response *resp) {
    static const char *const args[] = {"dims", "layers", "debiased", "ci", "n_boot", "seed", NULL};
    memset(q, 0, sizeof *q);
    q->n_boot = 1000;
    if (ml_request_check_args(req, args, resp) != 0) return -1;
    int K = app->data.target_dims;
    const char *dims = ml_request_arg(req, "dims");
    if (!dims || !strcmp(dims, "all")) {
        q->all_dims = 1;
    } else {
        char range[96];
        snprintf(range, sizeof range, "the target has %d dimensions", K);
        int *v = NULL, n = 0;
        if (ml_int_list_text(dims, "dims", K, range, K, &v, &n, resp) != 0) return -1;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++)
                if (v[i] == v[j]) {
                    ml_respond_error(resp, 400, "invalid_argument",
                                     "dims[%d]=%d repeats dims[%d]; list each dimension once", i,
                                     v[i], j);
                    free(v);
                    return -1;
                }
        memcpy(q->dims, v, sizeof(int) * (size_t)n);
        q->n_dims = n;
        free(v);
    }
    return parse_layers_arg(app, ml_request_arg(req, "layers"), q, resp) != 0 ||
                   ml_arg_bool(req, "debiased", &q->debiased, resp) != 0 ||
                   ml_arg_bool(req, "ci", &q->ci, resp) != 0 ||
                   ml_arg_int(req, "n_boot", 10, 100000, &q->n_boot, resp) != 0 ||
                   ml_arg_int(req, "seed", 0, (1LL << 62), &q->seed, resp) != 0
               ? -1
               : 0;
}

static void cka_key(const cka_query *q, int n_reps, char *buf, size_t len) {
    int n = snprintf(buf, len, "cka|deb=%d|ci=%d|nb=%lld|seed=%lld|layers=", q->debiased, q->ci,
                     q->ci ? q->n_boot : 0, q->ci ? q->seed : 0);
    for (int i = 1; i < n_reps && n > 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - (size_t)n, "%d", q->use_layer[i]);
    n += snprintf(buf + n, len - (size_t)n, "|dims=%s", q->all_dims ? "all" : "");
    for (int i = 0; !q->all_dims && i < q->n_dims && n > 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - (size_t)n, i ? ",%d" : "%d", q->dims[i]);
}

/* Renders the answer from the prepared cache; NULL with err on failure. */
static ml_blob *render_cka(ml_app *app, const cka_query *q, ml_err *err) {
    ml_cka_cache *c = app->cka;
    const int *dims = q->all_dims ? NULL : q->dims;
    int n_dims = q->all_dims ? 0 : q->n_dims;
    int m = c->n_reps;
    double *lo = NULL, *hi = NULL;
    const ml_cka_rep *chosen[ML_MAX_LAYERS + 2];
    int idx[ML_MAX_LAYERS + 2], n_chosen = 0;
    for (int i = 0; i < m; i++)
        if (i == 0 || q->use_layer[i]) {
            idx[n_chosen] = i;
            chosen[n_chosen++] = c->reps[i];
        }
    if (q->ci) {
        lo = malloc(sizeof(double) * (size_t)n_chosen);
        hi = malloc(sizeof(double) * (size_t)n_chosen);
        if (!lo || !hi ||
            ml_cka_bootstrap(chosen, n_chosen, c->target, dims, n_dims, (int)q->n_boot, 95.0,
                             (uint64_t)q->seed, lo, hi, err) != 0) {
            if (!lo || !hi) ml_errf(err, "out of memory");
            free(lo);
            free(hi);
            return NULL;
        }
    }
    json_t *layers = json_array(), *baseline = NULL;
    json_t *doc = json_object();
    int rc = 0;
    for (int k = 0; k < n_chosen && rc == 0; k++) {
        double lin = 0, deb = 0;
        rc = ml_cka_linear(chosen[k], c->target, dims, n_dims, &lin, err);
        if (rc == 0 && q->debiased) rc = ml_cka_debiased(chosen[k], c->target, dims, n_dims, &deb, err);
        if (rc != 0) break;
        char name[32];
        json_t *e = json_pack("{s:s,s:f}", "name", ml_cka_rep_name(app, idx[k], name, sizeof name),
                              "cka", lin);
        if (q->debiased) json_object_set_new(e, "cka_debiased", json_real(deb));
        if (q->ci) {
            json_object_set_new(e, "ci_low", json_real(lo[k]));
            json_object_set_new(e, "ci_high", json_real(hi[k]));
        }
        if (idx[k] == 0)
            baseline = e;
        else
            json_array_append_new(layers, e);
    }
    free(lo);
    free(hi);
    if (rc != 0) {
        json_decref(layers);
        json_decref(baseline);
        json_decref(doc);
        return NULL;
    }
    json_object_set_new(doc, "kernel", json_string("linear"));
    json_object_set_new(doc, "items", json_integer(app->data.n_items));
    if (q->all_dims) {
        json_object_set_new(doc, "dims", json_string("all"));
    } else {
        json_t *d = json_array();
        for (int i = 0; i < q->n_dims; i++) json_array_append_new(d, json_integer(q->dims[i]));
        json_object_set_new(doc, "dims", d);
    }
    json_object_set_new(doc, "inputs", json_string("raw backbone features, each item its own "
                                                   "length-1 sequence"));
    json_object_set_new(doc, "synthetic", json_boolean(app->model.synthetic));
    if (q->ci)
        json_object_set_new(doc, "ci", json_pack("{s:i,s:I,s:I}", "level", 95, "n_boot",
                                                 (json_int_t)q->n_boot, "seed", (json_int_t)q->seed));
    json_object_set_new(doc, "baseline", baseline);
    json_object_set_new(doc, "layers", layers);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(doc);
    ml_blob *b = text ? ml_blob_new(text, strlen(text)) : NULL;
    free(text);
    if (!b) ml_errf(err, "out of memory");
    return b;
}

static int answer_from_cache(ml_app *app, const char *key, ml_response *resp) {
    ml_blob *b = ml_lru_get(app->results, key);
    if (!b) return 0;
    ml_metrics_add(app->metrics, ML_CNT_CKA_CACHE_HIT, 1);
    ml_respond_blob(resp, 200, b);
    ml_blob_unref(b);
    return 1;
}

static void answer(ml_app *app, const cka_query *q, const char *key, ml_response *resp) {
    ml_err err = {{0}};
    ml_blob *b = render_cka(app, q, &err);
    if (!b) {
        ml_respond_error(resp, 422, "cka_undefined", "%s", err.msg);
        return;
    }
    ml_metrics_add(app->metrics, ML_CNT_CKA_CACHE_MISS, 1);
    ml_lru_put(app->results, key, b);
    ml_respond_blob(resp, 200, b);
    ml_blob_unref(b);
}

void ml_h_cka_fast(ml_app *app, const ml_request *req, ml_response *resp) {
    cka_query q;
    if (parse_cka(app, req, &q, resp) != 0) return;
    char key[2048];
    cka_key(&q, 1 + ml_model_num_outputs(&app->model), key, sizeof key);
    if (answer_from_cache(app, key, resp)) return;
    /* Prepared and cheap (no bootstrap): O(dims^2) arithmetic, fine in the I/O thread. */
    if (ml_once_done(&app->cka->prepared) && !q.ci) answer(app, &q, key, resp);
}

void ml_h_cka(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    cka_query q;
    if (parse_cka(app, req, &q, resp) != 0) return;
    char key[2048];
    cka_key(&q, 1 + ml_model_num_outputs(&app->model), key, sizeof key);
    if (answer_from_cache(app, key, resp)) return;
    ml_err err = {{0}};
    if (ml_cka_cache_prepare(app, w, &err) != 0) {
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return;
    }
    answer(app, &q, key, resp);
}

static void render_matrix(ml_app *app, ml_response *resp) {
    ml_cka_cache *c = app->cka;
    json_t *names = json_array(), *lin = json_array(), *deb = json_array();
    for (int i = 0; i < c->n_reps; i++) {
        char name[32];
        json_array_append_new(names, json_string(ml_cka_rep_name(app, i, name, sizeof name)));
        json_t *rl = json_array(), *rd = json_array();
        for (int j = 0; j < c->n_reps; j++) {
            json_array_append_new(rl, json_real(c->linear[i * c->n_reps + j]));
            json_array_append_new(rd, json_real(c->debiased[i * c->n_reps + j]));
        }
        json_array_append_new(lin, rl);
        json_array_append_new(deb, rd);
    }
    ml_respond_json(resp, 200, json_pack("{s:s,s:i,s:o,s:o,s:o,s:b}", "kernel", "linear", "items",
                                         app->data.n_items, "names", names, "linear", lin,
                                         "debiased", deb, "synthetic", app->model.synthetic));
}

void ml_h_cka_matrix_fast(ml_app *app, const ml_request *req, ml_response *resp) {
    static const char *const no_args[] = {NULL};
    if (ml_request_check_args(req, no_args, resp) != 0) return;
    if (ml_once_done(&app->cka->matrices)) render_matrix(app, resp);
}

void ml_h_cka_matrix(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    (void)req;
    ml_err err = {{0}};
    if (ml_cka_cache_prepare(app, w, &err) != 0 || ml_cka_cache_matrices(app, &err) != 0) {
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return;
    }
    render_matrix(app, resp);
}
