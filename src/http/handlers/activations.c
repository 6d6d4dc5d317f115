/* POST /v1/activations: layer outputs for chosen items, each its own length-1 sequence (the
 * notebook's CKA setting) or all of them as one episode. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "http/request.h"
#include "http/routes.h"

#define MAX_ITEMS 4096
#define MAX_ANSWER_BYTES ((size_t)512 << 20)

enum { MODE_INDEPENDENT, MODE_SEQUENCE };
enum { ENC_JSON, ENC_BASE64 };

typedef struct acts_request {
    int mode;
    int n;
    int *items;
    int *labels;      /* sequence mode */
    int n_layers;
    int layers[ML_MAX_LAYERS + 1];
    int standardize;
    int encoding;
} acts_request;

static void free_request(acts_request *r) {
    free(r->items);
    free(r->labels);
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
    if (n > MAX_ITEMS) {
        ml_respond_error(resp, 400, "too_many_items",
                         "items has %zu entries; at most %d are allowed per request", n, MAX_ITEMS);
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

static int parse_layers(const ml_app *app, json_t *arr, acts_request *r, ml_response *resp) {
    int n_out = ml_model_num_outputs(&app->model);
    if (!arr || json_is_null(arr) || (json_is_string(arr) && !strcmp(json_string_value(arr), "all"))) {
        r->n_layers = n_out;
        for (int i = 0; i < n_out; i++) r->layers[i] = i;
        return 0;
    }
    char last[32];
    ml_model_output_name(&app->model, n_out - 1, last, sizeof last);
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > (size_t)n_out) {
        ml_respond_error(resp, 400, "invalid_field",
                         "layers must be \"all\" or a list of layer names (embedding, layer_0 .. "
                         "%s)", last);
        return -1;
    }
    r->n_layers = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        int idx = json_is_string(v) ? ml_model_output_index(&app->model, json_string_value(v)) : -1;
        if (idx < 0) {
            ml_respond_error(resp, 400, "unknown_layer",
                             "layers[%zu] is not a layer of this model; the layers are "
                             "embedding, layer_0 .. %s (GET /v1/info lists them)", i, last);
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
    static const char *const fields[] = {"items", "mode", "labels", "layers", "standardize",
                                         "encoding", NULL};
    static const char *const modes[] = {"independent", "sequence", NULL};
    static const char *const encodings[] = {"json", "base64", NULL};
    json_t *body = NULL;
    if (ml_body_object(req, fields, &body, resp) != 0) return -1;
    int rc = -1;
    if (ml_json_enum(body, "mode", modes, &r->mode, resp) == 0 &&
        ml_json_enum(body, "encoding", encodings, &r->encoding, resp) == 0 &&
        ml_json_bool(body, "standardize", &r->standardize, resp) == 0 &&
        parse_items(app, json_object_get(body, "items"), r, resp) == 0 &&
        parse_labels(json_object_get(body, "labels"), r, resp) == 0 &&
        parse_layers(app, json_object_get(body, "layers"), r, resp) == 0)
        rc = 0;
    json_decref(body);
    if (rc == 0 && r->mode == MODE_SEQUENCE && r->n > app->max_seq) {
        ml_respond_error(resp, 400, "too_many_items",
                         "a sequence of %d items is longer than this model allows (%d trials%s)",
                         r->n, app->max_seq,
                         app->model.cfg.pos == ML_POS_LEARNED ? ": it has learned positions" : "");
        return -1;
    }
    size_t per_value = r->encoding == ENC_JSON ? 16 : 6;
    size_t answer = (size_t)r->n * (size_t)r->n_layers * (size_t)app->model.cfg.hidden_size * per_value;
    if (rc == 0 && answer > MAX_ANSWER_BYTES) {
        ml_respond_error(resp, 400, "too_large",
                         "the answer would be about %zu MB; ask for fewer items or layers, or "
                         "use \"encoding\": \"base64\"", answer >> 20);
        return -1;
    }
    return rc;
}

static void append_layer(ml_buf *out, const char *name, const float *data, int n, int C,
                         int encoding, int *bad) {
    ml_buf_printf(out, "{\"name\":\"%s\",\"shape\":[%d,%d],", name, n, C);
    if (encoding == ENC_BASE64) {
        for (size_t i = 0; i < (size_t)n * (size_t)C; i++)
            if (!isfinite(data[i])) *bad = 1;
        ml_buf_puts(out, "\"encoding\":\"base64\",\"dtype\":\"<f4\",\"data\":\"");
        ml_buf_base64(out, data, sizeof(float) * (size_t)n * (size_t)C);
        ml_buf_puts(out, "\"}");
        return;
    }
    ml_buf_puts(out, "\"data\":[");
    for (int i = 0; i < n && !*bad; i++) {
        if (i) ml_buf_puts(out, ",");
        if (ml_buf_json_floats(out, data + (size_t)i * (size_t)C, (size_t)C) != 0) *bad = 1;
    }
    ml_buf_puts(out, "]}");
}

static void respond_acts(const ml_app *app, const acts_request *r, float **outs,
                         const float *logits, ml_response *resp) {
    int C = app->model.cfg.hidden_size;
    ml_buf out = {0};
    int bad = 0;
    ml_buf_printf(&out, "{\"mode\":\"%s\",\"standardize\":%s,\"items\":[",
                  r->mode == MODE_SEQUENCE ? "sequence" : "independent",
                  r->standardize ? "true" : "false");
    for (int i = 0; i < r->n; i++) ml_buf_printf(&out, i ? ",%d" : "%d", r->items[i]);
    ml_buf_puts(&out, "],\"ids\":[");
    for (int i = 0; i < r->n; i++) {
        /* ids come from the operator's file; json_dumps escapes them properly */
        json_t *s = json_string(app->data.ids[r->items[i]]);
        char *id = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        json_decref(s);
        ml_buf_printf(&out, i ? ",%s" : "%s", id ? id : "null");
        free(id);
    }
    ml_buf_puts(&out, "],\"layers\":[");
    char name[32];
    for (int k = 0; k < r->n_layers && !bad; k++) {
        if (k) ml_buf_puts(&out, ",");
        ml_model_output_name(&app->model, r->layers[k], name, sizeof name);
        append_layer(&out, name, outs[r->layers[k]], r->n, C, r->encoding, &bad);
    }
    float *probs = malloc(sizeof(float) * (size_t)r->n);
    if (probs)
        for (int i = 0; i < r->n; i++) probs[i] = 1.0f / (1.0f + expf(-logits[i]));
    ml_buf_puts(&out, "],\"logits\":");
    if (ml_buf_json_floats(&out, logits, (size_t)r->n) != 0) bad = 1;
    ml_buf_puts(&out, ",\"probabilities\":");
    if (!probs || ml_buf_json_floats(&out, probs, (size_t)r->n) != 0) bad = 1;
    ml_buf_puts(&out, "}");
    free(probs);
    if (bad) {
        ml_buf_free(&out);
        ml_respond_error(resp, 500, "non_finite",
                         "the model produced values that are not finite for these inputs; "
                         "check the checkpoint and the backbone features");
        return;
    }
    size_t len = 0;
    char *text = ml_buf_take(&out, &len);
    if (!text) {
        ml_respond_error(resp, 500, "internal", "out of memory building the answer");
        return;
    }
    ml_respond_raw(resp, 200, "application/json", text, len);
}

void ml_h_activations(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    acts_request r = {0};
    if (parse_request(app, req, &r, resp) != 0) {
        free_request(&r);
        return;
    }
    size_t C = (size_t)app->model.cfg.hidden_size, n = (size_t)r.n;
    float *outs[ML_MAX_LAYERS + 1] = {0};
    float *logits = malloc(sizeof(float) * n);
    int ok = logits != NULL;
    for (int k = 0; k < r.n_layers && ok; k++)
        ok = (outs[r.layers[k]] = malloc(sizeof(float) * n * C)) != NULL;
    ml_err err = {{0}};
    int rc = ok ? 0 : ml_errf(&err, "out of memory for %zu x %zu activations", n, C);

    const ml_item_acts *cached = NULL;
    if (rc == 0 && r.mode == MODE_INDEPENDENT && ml_once_done(&app->acts_once[r.standardize]))
        cached = ml_app_item_acts(app, w, r.standardize, &err);
    if (rc == 0 && cached) {
        /* Every item alone is what the cache holds: copy rows, no forward pass. */
        for (size_t i = 0; i < n; i++) {
            size_t row = (size_t)r.items[i];
            for (int k = 0; k < r.n_layers; k++)
                memcpy(outs[r.layers[k]] + i * C, cached->outs[r.layers[k]] + row * C,
                       sizeof(float) * C);
            logits[i] = cached->logits[row];
        }
    } else if (rc == 0) {
        int B = r.mode == MODE_SEQUENCE ? 1 : r.n, S = r.mode == MODE_SEQUENCE ? r.n : 1;
        rc = ml_app_run_items(app, w, r.items, r.labels, B, S, r.standardize, outs, logits, &err);
    }
    if (rc != 0)
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
    else
        respond_acts(app, &r, outs, logits, resp);
    for (int k = 0; k < ML_MAX_LAYERS + 1; k++) free(outs[k]);
    free(logits);
    free_request(&r);
}
