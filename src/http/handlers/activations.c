/* POST /v1/activations: layer outputs for chosen items, each its own length-1 sequence (the
 * notebook's CKA setting) or all of them as one episode. The episode's feedback is the
 * model's own: labels for the seed generation, magnitudes (each trial's y - m, seen by the
 * next trial) for the later one (MODEL.md section 7), none for its static linear model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "http/handlers/handlers.h"
#include "http/format.h"
#include "http/render/render.h"
#include "util/csv_writer.h"

#define ML_ACTS_MAX_ANSWER_BYTES ((size_t)512 << 20)
#define JSON_BYTES_PER_VALUE 16   /* "-1.23456789e-05," */
#define BASE64_BYTES_PER_VALUE 6  /* 4 bytes as base64 */
#define CSV_BYTES_PER_VALUE 40    /* "17,syn_0017,layer_2,63,-1.23456789e-05\n" */

enum { MODE_INDEPENDENT, MODE_SEQUENCE };
enum { ENC_JSON, ENC_BASE64 };

typedef struct acts_request {
    int mode;
    int n;
    int *items;
    int *labels;      /* sequence mode, the seed */
    float *magnitudes; /* sequence mode, the later generation */
    int n_layers;
    int layers[ML_MAX_LAYERS + 2];
    int standardize;
    int encoding;
    ml_view view;
} acts_request;

static void free_request(acts_request *r) {
    free(r->items);
    free(r->labels);
    free(r->magnitudes);
}

/* An item is its index or its id; errors name items[i]. */
static int resolve_item(const ml_app *app, json_t *v, size_t i, int *out, ml_response *resp) {
    int n = app->data.n_items;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0 || x >= n) {
            ml_respond_error(resp, 400, "unknown_item",
                             "items[%zu]=%lld is out of range: there are %d items (0..%d)", i,
                             (long long)x, n, n - 1);
            return -1;
        }
        *out = (int)x;
        return 0;
    }
    if (json_is_string(v)) {
        int idx = ml_dataset_find(&app->data, json_string_value(v));
        if (idx < 0) {
            ml_respond_error(resp, 400, "unknown_item",
                             "items[%zu]=\"%s\" is not a known item id; GET /v1/items lists them",
                             i, json_string_value(v));
            return -1;
        }
        *out = idx;
        return 0;
    }
    ml_respond_error(resp, 400, "invalid_field", "items[%zu] must be an item index or id", i);
    return -1;
}

static int parse_items(const ml_app *app, json_t *arr, acts_request *r, ml_response *resp) {
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        ml_respond_error(resp, 400, "invalid_field",
                         "items is required: a non-empty array of item indices or ids");
        return -1;
    }
    size_t n = json_array_size(arr);
    if (n > ML_ACTS_MAX_ITEMS) {
        ml_respond_error(resp, 400, "too_many_items",
                         "items has %zu entries; at most %d are allowed per request", n, ML_ACTS_MAX_ITEMS);
        return -1;
    }
    r->items = malloc(sizeof(int) * n);
    if (!r->items) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return -1;
    }
    r->n = (int)n;
    for (size_t i = 0; i < n; i++)
        if (resolve_item(app, json_array_get(arr, i), i, &r->items[i], resp) != 0) return -1;
    return 0;
}

static int parse_labels(json_t *arr, acts_request *r, ml_response *resp) {
    if (r->mode != MODE_SEQUENCE) {
        if (arr && !json_is_null(arr)) {
            ml_respond_error(resp, 400, "invalid_field",
                             "labels are only used in \"sequence\" mode; drop them or set "
                             "\"mode\": \"sequence\"");
            return -1;
        }
        return 0;
    }
    if (!json_is_array(arr) || json_array_size(arr) != (size_t)r->n) {
        ml_respond_error(resp, 400, "invalid_field",
                         "sequence mode needs labels: an array of %d labels (0 or 1), one per "
                         "item, each trial's true label", r->n);
        return -1;
    }
    r->labels = malloc(sizeof(int) * (size_t)r->n);
    if (!r->labels) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return -1;
    }
    for (int i = 0; i < r->n; i++) {
        json_t *v = json_array_get(arr, (size_t)i);
        if (!json_is_integer(v) || (json_integer_value(v) != 0 && json_integer_value(v) != 1)) {
            ml_respond_error(resp, 400, "invalid_field", "labels[%d] must be 0 or 1", i);
            return -1;
        }
        r->labels[i] = (int)json_integer_value(v);
    }
    return 0;
}

static int given(json_t *v) { return v && !json_is_null(v); }

/* The later generation's feedback: magnitudes in sequence mode (transformer, LSTM), nothing
 * for the static linear model; labels are the seed's and are refused. */
static int parse_magnitudes(const ml_app *app, json_t *labels, json_t *arr, acts_request *r,
                            ml_response *resp) {
    const ml_model *m = &app->model;
    const char *type = ml_arch_name(ml_model_arch(m));
    int takes = ml_model_feedback(m) == ML_FEEDBACK_MAGNITUDES;
    if (given(labels)) {
        if (takes)
            ml_respond_error(resp, 400, "invalid_field",
                             "labels are the seed generation's feedback; this later-generation "
                             "(%s) model is fed magnitudes: give \"magnitudes\", one number per "
                             "item, each trial's own magnitude (trial t sees magnitudes[t-1])",
                             type);
        else
            ml_respond_error(resp, 400, "invalid_field",
                             "labels are not used: this %s model takes no feedback (every trial "
                             "is predicted from its item alone); drop them", type);
        return -1;
    }
    if (!takes) {
        if (given(arr)) {
            ml_respond_error(resp, 400, "invalid_field",
                             "magnitudes are not used: this %s model takes no feedback (every "
                             "trial is predicted from its item alone); drop them", type);
            return -1;
        }
        return 0;
    }
    if (r->mode != MODE_SEQUENCE) {
        if (given(arr)) {
            ml_respond_error(resp, 400, "invalid_field",
                             "magnitudes are only used in \"sequence\" mode; drop them or set "
                             "\"mode\": \"sequence\"");
            return -1;
        }
        return 0;
    }
    if (!json_is_array(arr) || json_array_size(arr) != (size_t)r->n) {
        ml_respond_error(resp, 400, "invalid_field",
                         "sequence mode needs magnitudes: an array of %d numbers, one per item, "
                         "each trial's own magnitude y - m (trial t sees magnitudes[t-1])",
                         r->n);
        return -1;
    }
    int n = 0;
    return ml_float_list_json(arr, "magnitudes", r->n, &r->magnitudes, &n, resp);
}

static int parse_feedback(const ml_app *app, json_t *body, acts_request *r, ml_response *resp) {
    json_t *labels = json_object_get(body, "labels"), *mags = json_object_get(body, "magnitudes");
    if (ml_model_feedback(&app->model) != ML_FEEDBACK_LABELS)
        return parse_magnitudes(app, labels, mags, r, resp);
    if (given(mags)) {
        ml_respond_error(resp, 400, "invalid_field",
                         "magnitudes are the later generation's feedback; this seed-generation "
                         "model is fed labels: give \"labels\" (0 or 1 per item)");
        return -1;
    }
    return parse_labels(labels, r, resp);
}

static int parse_layers(const ml_app *app, json_t *arr, acts_request *r, ml_response *resp) {
    int n_out = ml_model_num_outputs(&app->model);
    if (!arr || json_is_null(arr) || (json_is_string(arr) && !strcmp(json_string_value(arr), "all"))) {
        r->n_layers = n_out;
        for (int i = 0; i < n_out; i++) r->layers[i] = i;
        return 0;
    }
    /* "embedding, layer_0 .. layer_5" (seed), "embed, layer_0 .. ln_f", "embed .. ln_f" */
    char first[32], last[32], names[96];
    ml_model_output_name(&app->model, 0, first, sizeof first);
    ml_model_output_name(&app->model, n_out - 1, last, sizeof last);
    snprintf(names, sizeof names, "%s%s .. %s", first,
             app->model.cfg.num_layers > 0 ? ", layer_0" : "", last);
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > (size_t)n_out) {
        ml_respond_error(resp, 400, "invalid_field",
                         "layers must be \"all\" or a list of layer names (%s)", names);
        return -1;
    }
    r->n_layers = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        int idx = json_is_string(v) ? ml_model_output_index(&app->model, json_string_value(v)) : -1;
        if (idx < 0) {
            ml_respond_error(resp, 400, "unknown_layer",
                             "layers[%zu] is not a layer of this model; the layers are "
                             "%s (GET /v1/info lists them)", i, names);
            return -1;
        }
        for (int k = 0; k < r->n_layers; k++)
            if (r->layers[k] == idx) {
                ml_respond_error(resp, 400, "invalid_field", "layers[%zu] repeats %s", i,
                                 json_string_value(v));
                return -1;
            }
        r->layers[r->n_layers++] = idx;
    }
    return 0;
}

static int parse_request(const ml_app *app, const ml_request *req, acts_request *r,
                         ml_response *resp) {
    static const ml_field fields[] = {
        {"items", ML_FIELD_ITEM_LIST}, {"mode", ML_FIELD_STRING},
        {"labels", ML_FIELD_INT_LIST}, {"magnitudes", ML_FIELD_NUMBER_LIST},
        {"layers", ML_FIELD_NAMES},
        {"standardize", ML_FIELD_BOOL}, {"encoding", ML_FIELD_STRING},
    };
    static const char *const args[] = {ML_VIEW_ARGS, NULL};
    static const char *const modes[] = {"independent", "sequence", NULL};
    static const char *const encodings[] = {"json", "base64", NULL};
    json_t *body = NULL;
    if (ml_request_fields(req, fields, (int)(sizeof fields / sizeof fields[0]), args, &body,
                          resp) != 0)
        return -1;
    if (ml_view_parse(req, 0, &r->view, resp) != 0) {
        json_decref(body);
        return -1;
    }
    int rc = -1;
    if (ml_json_enum(body, "mode", modes, &r->mode, resp) == 0 &&
        ml_json_enum(body, "encoding", encodings, &r->encoding, resp) == 0 &&
        ml_json_bool(body, "standardize", &r->standardize, resp) == 0 &&
        parse_items(app, json_object_get(body, "items"), r, resp) == 0 &&
        parse_feedback(app, body, r, resp) == 0 &&
        parse_layers(app, json_object_get(body, "layers"), r, resp) == 0)
        rc = 0;
    json_decref(body);
    if (rc == 0 && r->mode == MODE_SEQUENCE && r->n > app->max_seq) {
        const ml_model *m = &app->model;
        const char *why = "";
        if (m->generation == ML_GEN_SEED && m->cfg.pos == ML_POS_LEARNED)
            why = ": it has learned positions";
        else if (m->generation != ML_GEN_SEED && ml_model_max_seq_len(m) == app->max_seq)
            why = ": the sl of its config";
        ml_respond_error(resp, 400, "too_many_items",
                         "a sequence of %d items is longer than this model allows (%d trials%s)",
                         r->n, app->max_seq, why);
        return -1;
    }
    if (rc == 0 && r->view.format == ML_FORMAT_CSV && r->encoding == ENC_BASE64) {
        ml_respond_error(resp, 400, "invalid_field",
                         "encoding is for JSON answers; a CSV table has one value per row "
                         "(drop encoding, or ask for format=json)");
        return -1;
    }
    size_t per_value = r->view.format == ML_FORMAT_CSV ? CSV_BYTES_PER_VALUE
                       : r->encoding == ENC_JSON   ? JSON_BYTES_PER_VALUE
                                                   : BASE64_BYTES_PER_VALUE;
    size_t answer = (size_t)r->n * (size_t)r->n_layers * (size_t)ml_model_width(&app->model) * per_value;
    if (rc == 0 && answer > ML_ACTS_MAX_ANSWER_BYTES) {
        ml_respond_error(resp, 400, "too_large",
                         "the answer would be about %zu MB; ask for fewer items or layers, or "
                         "use \"encoding\": \"base64\"", answer >> 20);
        return -1;
    }
    return rc;
}

static void render_layer(ml_jw *w, const char *name, const float *data, int n, int C,
                         int encoding) {
    size_t count = (size_t)n * (size_t)C;
    ml_jw_object(w);
    ml_jw_kstring(w, "name", name);
    ml_jw_key(w, "shape");
    ml_jw_array(w);
    ml_jw_int(w, n);
    ml_jw_int(w, C);
    ml_jw_array_end(w);
    if (encoding == ENC_BASE64) {
        for (size_t i = 0; i < count; i++)
            if (!isfinite(data[i])) w->bad = 1; /* as the JSON encoding would refuse it */
        ml_jw_kstring(w, "encoding", "base64");
        ml_jw_kstring(w, "dtype", "<f4");
        ml_jw_key(w, "data");
        ml_jw_base64(w, data, sizeof(float) * count);
    } else {
        ml_jw_key(w, "data");
        ml_jw_array(w);
        for (int i = 0; i < n && !w->bad; i++) ml_jw_floats(w, data + (size_t)i * C, (size_t)C);
        ml_jw_array_end(w);
    }
    ml_jw_object_end(w);
}

/* One value per item (K == 1, the seed's shape) or K per item (a row each). */
static void render_heads(ml_jw *w, const char *key, const float *v, int n, int K, int sigmoid) {
    ml_jw_key(w, key);
    ml_jw_array(w);
    for (int i = 0; i < n; i++) {
        if (K > 1) ml_jw_array(w);
        for (int k = 0; k < K; k++) {
            float x = v[(size_t)i * (size_t)K + (size_t)k];
            ml_jw_float(w, sigmoid ? 1.0f / (1.0f + expf(-x)) : x);
        }
        if (K > 1) ml_jw_array_end(w);
    }
    ml_jw_array_end(w);
}

static const char *const acts_columns[] = {"position", "item", "id", "layer", "unit", "value",
                                           NULL};

static void acts_row(ml_csv *c, int pos, int item, const char *id, const char *layer, int unit,
                     float v) {
    ml_csv_int(c, pos);
    ml_csv_int(c, item);
    ml_csv_string(c, id);
    ml_csv_string(c, layer);
    ml_csv_int(c, unit);
    ml_csv_float(c, v);
    ml_csv_row_end(c);
}

/* The tidy table: one row per item position, layer and unit; the output's logit and
 * probability follow as layers "logit" and "probability" with unit 0. */
static void respond_acts_csv(const ml_app *app, const acts_request *r, float **outs,
                             const float *logits, const float *magnitudes, ml_response *resp) {
    int C = ml_model_width(&app->model), K = ml_model_logit_dims(&app->model);
    ml_buf out = {0};
    ml_csv c;
    ml_csv_init(&c, &out, acts_columns);
    char name[32];
    for (int k = 0; k < r->n_layers && !c.bad && !out.oom; k++) {
        ml_model_output_name(&app->model, r->layers[k], name, sizeof name);
        const float *data = outs[r->layers[k]];
        for (int i = 0; i < r->n; i++)
            for (int u = 0; u < C; u++)
                acts_row(&c, i, r->items[i], app->data.ids[r->items[i]], name, u,
                         data[(size_t)i * (size_t)C + (size_t)u]);
    }
    /* the heads: unit k is head column k (one column for the seed) */
    for (int i = 0; i < r->n; i++)
        for (int k = 0; k < K; k++)
            acts_row(&c, i, r->items[i], app->data.ids[r->items[i]], "logit", k,
                     logits[(size_t)i * (size_t)K + (size_t)k]);
    for (int i = 0; i < r->n; i++)
        for (int k = 0; k < K; k++)
            acts_row(&c, i, r->items[i], app->data.ids[r->items[i]], "probability", k,
                     1.0f / (1.0f + expf(-logits[(size_t)i * (size_t)K + (size_t)k])));
    for (int i = 0; magnitudes && i < r->n; i++)
        for (int k = 0; k < K; k++)
            acts_row(&c, i, r->items[i], app->data.ids[r->items[i]], "magnitude", k,
                     magnitudes[(size_t)i * (size_t)K + (size_t)k]);
    ml_respond_csv(resp, 200, &c);
}

static void respond_acts(const ml_app *app, const acts_request *r, float **outs,
                         const float *logits, const float *magnitudes, ml_response *resp) {
    if (r->view.format == ML_FORMAT_CSV) {
        respond_acts_csv(app, r, outs, logits, magnitudes, resp);
        return;
    }
    const ml_model *m = &app->model;
    int C = ml_model_width(m), K = ml_model_logit_dims(m);
    ml_buf out = {0};
    ml_jw w;
    ml_jw_init(&w, &out);
    ml_jw_object(&w);
    ml_jw_kstring(&w, "mode", r->mode == MODE_SEQUENCE ? "sequence" : "independent");
    ml_jw_kbool(&w, "standardize", r->standardize);
    ml_jw_key(&w, "items");
    ml_jw_ints(&w, r->items, (size_t)r->n);
    ml_jw_key(&w, "ids");
    ml_jw_array(&w);
    for (int i = 0; i < r->n; i++) ml_jw_string(&w, app->data.ids[r->items[i]]);
    ml_jw_array_end(&w);
    if (m->generation != ML_GEN_SEED) {
        ml_feedback fb = ml_model_feedback(m);
        ml_jw_kstring(&w, "feedback", r->mode != MODE_SEQUENCE ? "none"
                                      : fb == ML_FEEDBACK_MAGNITUDES ? "magnitudes"
                                                                     : "none");
        if (r->magnitudes) {
            ml_jw_key(&w, "fed_magnitudes");
            ml_jw_floats(&w, r->magnitudes, (size_t)r->n);
        }
        ml_jw_kint(&w, "logit_dims", K);
    }
    ml_jw_key(&w, "layers");
    ml_jw_array(&w);
    char name[32];
    for (int k = 0; k < r->n_layers && !w.bad; k++) {
        ml_model_output_name(m, r->layers[k], name, sizeof name);
        render_layer(&w, name, outs[r->layers[k]], r->n, C, r->encoding);
    }
    ml_jw_array_end(&w);
    render_heads(&w, "logits", logits, r->n, K, 0);
    render_heads(&w, "probabilities", logits, r->n, K, 1);
    if (magnitudes) render_heads(&w, "magnitudes", magnitudes, r->n, K, 0);
    ml_warnings warn = {0};
    if (r->mode == MODE_SEQUENCE) ml_warn_seq_len(&warn, app, r->n);
    if (r->mode == MODE_SEQUENCE && ml_model_feedback(m) == ML_FEEDBACK_NONE)
        ml_warn(&warn, "this %s model sees no sequence: every trial is predicted from its item "
                       "alone, as in \"independent\" mode", ml_arch_name(ml_model_arch(m)));
    ml_render_warnings(&w, &warn);
    ml_jw_kbool(&w, "synthetic", m->synthetic);
    ml_jw_object_end(&w);
    ml_respond_writer(resp, 200, &w);
}

void ml_h_activations(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    acts_request r = {0};
    if (parse_request(app, req, &r, resp) != 0) {
        free_request(&r);
        return;
    }
    const ml_model *m = &app->model;
    size_t C = (size_t)ml_model_width(m), K = (size_t)ml_model_logit_dims(m), n = (size_t)r.n;
    float *outs[ML_MAX_LAYERS + 2] = {0};
    float *logits = malloc(sizeof(float) * n * K);
    float *mags = ml_model_has_magnitudes(m) ? malloc(sizeof(float) * n * K) : NULL;
    int ok = logits != NULL && (mags || !ml_model_has_magnitudes(m));
    for (int k = 0; k < r.n_layers && ok; k++)
        ok = (outs[r.layers[k]] = malloc(sizeof(float) * n * C)) != NULL;
    ml_err err = {{0}};
    int rc = ok ? 0 : ml_errf(&err, "out of memory for %zu x %zu activations", n, C);

    const ml_item_acts *cached = NULL;
    ml_inputs in = r.standardize ? ML_INPUTS_STANDARDIZED : ML_INPUTS_RAW;
    if (rc == 0 && r.mode == MODE_INDEPENDENT && ml_app_acts_ready(app, in))
        cached = ml_app_item_acts(app, w, in, &err);
    if (rc == 0 && cached) {
        /* Every item alone is what the cache holds: copy rows, no forward pass. */
        for (size_t i = 0; i < n; i++) {
            size_t row = (size_t)r.items[i];
            for (int k = 0; k < r.n_layers; k++)
                memcpy(outs[r.layers[k]] + i * C, cached->outs[r.layers[k]] + row * C,
                       sizeof(float) * C);
            memcpy(logits + i * K, cached->logits + row * K, sizeof(float) * K);
            if (mags) memcpy(mags + i * K, cached->magnitudes + row * K, sizeof(float) * K);
        }
    } else if (rc == 0) {
        int B = r.mode == MODE_SEQUENCE ? 1 : r.n, S = r.mode == MODE_SEQUENCE ? r.n : 1;
        if (m->generation == ML_GEN_SEED)
            rc = ml_app_run_items(app, w, r.items, r.labels, B, S, r.standardize, outs, logits,
                                  &err);
        else
            rc = ml_app_forward_items(app, w, r.items, r.magnitudes, B, S, r.standardize, outs,
                                      logits, mags, &err);
    }
    if (rc != 0)
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
    else
        respond_acts(app, &r, outs, logits, mags, resp);
    for (int k = 0; k < ML_MAX_LAYERS + 2; k++) free(outs[k]);
    free(logits);
    free(mags);
    free_request(&r);
}
