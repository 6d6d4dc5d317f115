/* GET /v1/cka and /v1/cka/matrix: representational alignment, served from memory once the
 * representations are prepared (the first request prepares them on a compute worker). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/handlers/handlers.h"
#include "http/render/render.h"
#include "http/result_keys.h"
#include "util/csv_writer.h"

typedef struct cka_query {
    int all_dims;
    int *dims;         /* NULL with all_dims */
    int n_dims;
    int use_layer[ML_MAX_LAYERS + 2]; /* by representation index; [0] backbone always */
    int debiased;
    int ci;
    long long n_boot;
    long long seed;
    ml_view view;
} cka_query;

static void query_free(cka_query *q) {
    free(q->dims);
    q->dims = NULL;
}

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
            char first[32], last[32];
            ml_model_output_name(&app->model, 0, first, sizeof first);
            ml_model_output_name(&app->model, n_out - 1, last, sizeof last);
            ml_respond_error(resp, 400, "unknown_layer",
                             "layers: \"%s\" is not a layer of this model; the layers are "
                             "%s .. %s (GET /v1/info lists them), or \"all\"", tok, first, last);
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
    static const char *const args[] = {"dims", "layers", "debiased", "ci", "n_boot", "seed",
                                       ML_VIEW_ARGS, NULL};
    memset(q, 0, sizeof *q);
    q->n_boot = ML_N_BOOT_DEFAULT;
    if (ml_request_check_args(req, args, resp) != 0 || ml_request_no_body(req, resp) != 0 ||
        ml_view_parse(req, 0, &q->view, resp) != 0)
        return -1;
    const char *dims = ml_request_arg(req, "dims");
    q->all_dims = !dims || !strcmp(dims, "all");
    if (!q->all_dims &&
        ml_dims_text(dims, app->data.target_dims, 1, &q->dims, &q->n_dims, resp) != 0)
        return -1;
    return parse_layers_arg(app, ml_request_arg(req, "layers"), q, resp) != 0 ||
                   ml_arg_bool(req, "debiased", &q->debiased, resp) != 0 ||
                   ml_arg_bool(req, "ci", &q->ci, resp) != 0 ||
                   ml_arg_int(req, "n_boot", 0, ML_N_BOOT_MAX, &q->n_boot, resp) != 0 ||
                   ml_arg_int(req, "seed", 0, ML_SEED_MAX, &q->seed, resp) != 0
               ? -1
               : 0;
}

static void cka_key(const cka_query *q, int n_reps, char out[ML_KEY_LEN]) {
    ml_key k;
    ml_key_begin(&k, "cka");
    ml_key_view(&k, &q->view);
    ml_key_int(&k, "debiased", q->debiased);
    ml_key_int(&k, "ci", q->ci);
    ml_key_int(&k, "n_boot", q->ci ? q->n_boot : 0);
    ml_key_int(&k, "seed", q->ci ? q->seed : 0);
    ml_key_ints(&k, "layers", q->use_layer + 1, n_reps - 1);
    if (q->all_dims)
        ml_key_str(&k, "dims", "all");
    else
        ml_key_ints(&k, "dims", q->dims, q->n_dims);
    ml_key_finish(&k, out);
}

/* The chosen representations: [0] the backbone, then the chosen layers in model order. */
static int chosen_reps(const ml_cka_cache *c, const cka_query *q, const ml_cka_rep **reps,
                       int *idx) {
    int n = 0;
    for (int i = 0; i < c->n_reps; i++)
        if (i == 0 || q->use_layer[i]) {
            idx[n] = i;
            reps[n++] = c->reps[i];
        }
    return n;
}

static void render_entry(ml_jw *w, const char *name, double lin, const double *deb,
                         const double *lo, const double *hi) {
    ml_jw_object(w);
    ml_jw_kstring(w, "name", name);
    ml_jw_kdouble(w, "cka", lin);
    if (deb) ml_jw_kdouble(w, "cka_debiased", *deb);
    if (lo) {
        ml_jw_key(w, "ci_low");
        ml_jw_double_or_null(w, *lo);
        ml_jw_key(w, "ci_high");
        ml_jw_double_or_null(w, *hi);
    }
    ml_jw_object_end(w);
}

static const char *const cka_columns[] = {"name", "kind", "layer", "dims", "cka", "cka_debiased",
                                          "ci_low", "ci_high", NULL};

/* The tidy table: one row per representation, the baseline first; layer is the x of the
 * notebook's plot (0 = the embedding), empty for the baseline. */
static int cka_csv(const ml_app *app, const cka_query *q, const int *idx, int m,
                   const double *lin, const double *deb, const double *lo, const double *hi,
                   ml_buf *out) {
    ml_buf dims = {0};
    if (q->all_dims) {
        ml_buf_puts(&dims, "all");
    } else {
        for (int i = 0; i < q->n_dims; i++) ml_buf_printf(&dims, "%s%d", i ? "," : "", q->dims[i]);
    }
    ml_csv c;
    ml_csv_init(&c, out, cka_columns);
    char name[32];
    for (int k = 0; k < m; k++) {
        ml_csv_string(&c, ml_app_rep_name(app, idx[k], name, sizeof name));
        ml_csv_string(&c, k == 0 ? "baseline" : "layer");
        if (k == 0)
            ml_csv_empty(&c);
        else
            ml_csv_int(&c, idx[k] - 1);
        ml_csv_string(&c, dims.oom || !dims.data ? "" : dims.data);
        ml_csv_double(&c, lin[k]);
        ml_csv_double(&c, q->debiased ? deb[k] : NAN);
        ml_csv_double(&c, q->ci ? lo[k] : NAN);
        ml_csv_double(&c, q->ci ? hi[k] : NAN);
        ml_csv_row_end(&c);
    }
    ml_buf_free(&dims);
    return ml_csv_finish(&c);
}

/* Renders the answer from the prepared cache; NULL with err (a CKA that is undefined). */
static ml_blob *render_cka(const ml_app *app, const ml_cka_cache *c, const cka_query *q,
                           ml_err *err) {
    const int *dims = q->all_dims ? NULL : q->dims;
    int n_dims = q->all_dims ? 0 : q->n_dims;
    const ml_cka_rep *reps[ML_MAX_LAYERS + 2];
    int idx[ML_MAX_LAYERS + 2];
    int m = chosen_reps(c, q, reps, idx);
    double lin[ML_MAX_LAYERS + 2], deb[ML_MAX_LAYERS + 2], lo[ML_MAX_LAYERS + 2],
        hi[ML_MAX_LAYERS + 2];
    for (int k = 0; k < m; k++) {
        if (ml_cka_linear(reps[k], c->target, dims, n_dims, &lin[k], err) != 0) return NULL;
        if (q->debiased && ml_cka_debiased(reps[k], c->target, dims, n_dims, &deb[k], err) != 0)
            return NULL;
        lo[k] = hi[k] = NAN;
    }
    if (q->ci && q->n_boot > 0 &&
        ml_cka_bootstrap(reps, m, c->target, dims, n_dims, (int)q->n_boot, ML_CI_LEVEL,
                         (uint64_t)q->seed, lo, hi, err) != 0)
        return NULL;
    ml_buf out = {0};
    if (q->view.format == ML_FORMAT_CSV) {
        ml_blob *b = cka_csv(app, q, idx, m, lin, deb, lo, hi, &out) == 0
                         ? ml_blob_new(out.data, out.len) : NULL;
        ml_buf_free(&out);
        if (!b) ml_errf(err, "out of memory");
        return b;
    }
    ml_jw w;
    ml_jw_init(&w, &out);
    ml_jw_object(&w);
    ml_jw_kstring(&w, "kernel", "linear");
    ml_jw_kint(&w, "items", app->data.n_items);
    ml_jw_key(&w, "dims");
    if (q->all_dims)
        ml_jw_string(&w, "all");
    else
        ml_jw_ints(&w, q->dims, (size_t)q->n_dims);
    ml_jw_kstring(&w, "inputs", "raw backbone features, each item its own length-1 sequence");
    ml_jw_kbool(&w, "synthetic", app->model.synthetic);
    if (q->ci) {
        ml_jw_key(&w, "ci");
        ml_jw_object(&w);
        ml_jw_kdouble(&w, "level", ML_CI_LEVEL);
        ml_jw_kint(&w, "n_boot", q->n_boot);
        ml_jw_kint(&w, "seed", q->seed);
        ml_jw_object_end(&w);
    }
    char name[32];
    for (int k = 0; k < m; k++) {
        ml_app_rep_name(app, idx[k], name, sizeof name);
        if (k == 0) {
            ml_jw_key(&w, "baseline");
        } else if (k == 1) {
            ml_jw_key(&w, "layers");
            ml_jw_array(&w);
        }
        render_entry(&w, name, lin[k], q->debiased ? &deb[k] : NULL, q->ci ? &lo[k] : NULL,
                     q->ci ? &hi[k] : NULL);
    }
    if (m == 1) {
        ml_jw_key(&w, "layers");
        ml_jw_array(&w);
    }
    ml_jw_array_end(&w);
    ml_jw_object_end(&w);
    if (ml_jw_finish(&w) != 0) {
        ml_buf_free(&out);
        ml_errf(err, "the CKA answer holds a value that is not finite");
        return NULL;
    }
    ml_blob *b = ml_blob_new(out.data, out.len);
    ml_buf_free(&out);
    if (!b) ml_errf(err, "out of memory");
    return b;
}

static void answer(ml_app *app, const ml_cka_cache *c, const cka_query *q, const char *key,
                   ml_response *resp) {
    ml_err err = {{0}};
    ml_blob *b = render_cka(app, c, q, &err);
    if (!b) {
        ml_respond_error(resp, 422, "cka_undefined", "%s", err.msg);
        return;
    }
    ml_metrics_add(app->metrics, ML_CNT_CKA_CACHE_MISS, 1);
    ml_lru_put_blob(app->results, key, b);
    ml_respond_blob(resp, 200, q->view.format == ML_FORMAT_CSV ? ML_CT_CSV : ML_CT_JSON, b);
    ml_blob_unref(b);
}

static int from_cache(ml_app *app, const cka_query *q, const char *key, ml_response *resp) {
    if (!ml_answer_from_cache(app, key, resp)) return 0;
    if (q->view.format == ML_FORMAT_CSV) resp->content_type = ML_CT_CSV;
    ml_metrics_add(app->metrics, ML_CNT_CKA_CACHE_HIT, 1);
    return 1;
}

void ml_h_cka_fast(ml_app *app, const ml_request *req, ml_response *resp) {
    cka_query q;
    char key[ML_KEY_LEN];
    if (parse_cka(app, req, &q, resp) != 0) goto done;
    cka_key(&q, 1 + ml_model_num_outputs(&app->model), key);
    if (from_cache(app, &q, key, resp)) goto done;
    /* Prepared and cheap (no bootstrap): O(dims^2) arithmetic, fine in the I/O thread. */
    if (ml_app_cka_ready(app) && !(q.ci && q.n_boot > 0)) answer(app, app->cka, &q, key, resp);
done:
    query_free(&q);
}

void ml_h_cka(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    cka_query q;
    char key[ML_KEY_LEN];
    if (parse_cka(app, req, &q, resp) != 0) goto done;
    cka_key(&q, 1 + ml_model_num_outputs(&app->model), key);
    if (from_cache(app, &q, key, resp)) goto done;
    ml_err err = {{0}};
    ml_cka_cache *c = ml_app_cka(app, w, &err);
    if (!c) {
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        goto done;
    }
    answer(app, c, &q, key, resp);
done:
    query_free(&q);
}

static const char *const matrix_columns[] = {"a", "b", "linear", "debiased", NULL};

static void render_matrix_csv(ml_app *app, const ml_cka_cache *c, ml_response *resp) {
    ml_buf out = {0};
    ml_csv csv;
    ml_csv_init(&csv, &out, matrix_columns);
    char a[32], b[32];
    for (int i = 0; i < c->n_reps; i++)
        for (int j = 0; j < c->n_reps; j++) {
            ml_csv_string(&csv, ml_app_rep_name(app, i, a, sizeof a));
            ml_csv_string(&csv, ml_app_rep_name(app, j, b, sizeof b));
            ml_csv_double(&csv, c->linear[(size_t)i * (size_t)c->n_reps + (size_t)j]);
            ml_csv_double(&csv, c->debiased[(size_t)i * (size_t)c->n_reps + (size_t)j]);
            ml_csv_row_end(&csv);
        }
    ml_respond_csv(resp, 200, &csv);
}

static void render_matrix(ml_app *app, const ml_cka_cache *c, const ml_view *v,
                          ml_response *resp) {
    if (v->format == ML_FORMAT_CSV) {
        render_matrix_csv(app, c, resp);
        return;
    }
    ml_buf out = {0};
    ml_jw w;
    ml_jw_init(&w, &out);
    ml_jw_object(&w);
    ml_jw_kstring(&w, "kernel", "linear");
    ml_jw_kint(&w, "items", app->data.n_items);
    ml_jw_key(&w, "names");
    ml_jw_array(&w);
    char name[32];
    for (int i = 0; i < c->n_reps; i++) ml_jw_string(&w, ml_app_rep_name(app, i, name, sizeof name));
    ml_jw_array_end(&w);
    const double *mats[2] = {c->linear, c->debiased};
    const char *keys[2] = {"linear", "debiased"};
    for (int m = 0; m < 2; m++) {
        ml_jw_key(&w, keys[m]);
        ml_jw_array(&w);
        for (int i = 0; i < c->n_reps; i++)
            ml_jw_doubles(&w, mats[m] + (size_t)i * (size_t)c->n_reps, (size_t)c->n_reps);
        ml_jw_array_end(&w);
    }
    ml_jw_kbool(&w, "synthetic", app->model.synthetic);
    ml_jw_object_end(&w);
    ml_respond_writer(resp, 200, &w);
}

static const char *const matrix_args[] = {ML_VIEW_ARGS, NULL};

static int parse_matrix(const ml_request *req, ml_view *v, ml_response *resp) {
    return ml_request_check_args(req, matrix_args, resp) != 0 ||
                   ml_request_no_body(req, resp) != 0 || ml_view_parse(req, 0, v, resp) != 0
               ? -1
               : 0;
}

void ml_h_cka_matrix_fast(ml_app *app, const ml_request *req, ml_response *resp) {
    ml_view v;
    if (parse_matrix(req, &v, resp) != 0) return;
    if (ml_app_cka_matrices_ready(app)) render_matrix(app, app->cka, &v, resp);
}

void ml_h_cka_matrix(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    ml_view v;
    if (parse_matrix(req, &v, resp) != 0) return;
    ml_err err = {{0}};
    ml_cka_cache *c = ml_app_cka_matrices(app, w, &err);
    if (!c) {
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return;
    }
    render_matrix(app, c, &v, resp);
}
