#include "http/openapi.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "http/assets.h"
#include "http/handlers/handlers.h"
#include "http/request.h"
#include "metalign/curve.h"
#include "metalign/human_curves.h"
#include "metalign/replay.h"
#include "metalign/simulate.h"
#include "util/json_writer.h"

#define ML_OPENAPI_ASSET "openapi.json"

typedef struct constant {
    const char *name;
    long long value;
} constant;

/* Every limit the document may state, by the name the code uses. */
static const constant constants[] = {
    {"ML_SIM_MAX_EPISODES", ML_SIM_MAX_EPISODES},
    {"ML_SIM_MAX_TRIALS", ML_SIM_MAX_TRIALS},
    {"ML_SIM_MAX_DETAIL_TRIALS", ML_SIM_MAX_DETAIL_TRIALS},
    {"ML_SIM_MAX_BATCH", ML_SIM_MAX_BATCH},
    {"ML_N_BOOT_MAX", ML_N_BOOT_MAX},
    {"ML_N_BOOT_DEFAULT", ML_N_BOOT_DEFAULT},
    {"ML_SEED_MAX", ML_SEED_MAX},
    {"ML_HUMAN_MAX_TRIAL_LIMIT", ML_HUMAN_MAX_TRIAL_LIMIT},
    {"ML_HUMAN_DEFAULT_MAX_TRIAL", ML_HUMAN_DEFAULT_MAX_TRIAL},
    {"ML_ACTS_MAX_ITEMS", ML_ACTS_MAX_ITEMS},
    {"ML_ITEMS_MAX_LIMIT", ML_ITEMS_MAX_LIMIT},
    {"ML_ITEMS_DEFAULT_LIMIT", ML_ITEMS_DEFAULT_LIMIT},
    {"ML_MAX_DIMS_LIST", ML_MAX_DIMS_LIST},
    {"ML_CI_LEVEL", (long long)ML_CI_LEVEL},
    {"ML_REPLAY_MAX_N_BOOT", ML_REPLAY_MAX_N_BOOT},
    {"ML_REPLAY_DEFAULT_N_BOOT", ML_REPLAY_DEFAULT_N_BOOT},
    {"ML_REPLAY_MAX_SPLITS", ML_REPLAY_MAX_SPLITS},
    {"ML_REPLAY_DEFAULT_SPLITS", ML_REPLAY_DEFAULT_SPLITS},
};

/* The value of placeholder name (without "${" and "}"), a new reference, or NULL. */
static json_t *value_of(const ml_app *app, const char *name) {
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (!strcmp(constants[i].name, name)) return json_integer(constants[i].value);
    int n = app->data.n_items, K = app->data.target_dims;
    if (!strcmp(name, "app.items_max")) return json_integer(n - 1);
    if (!strcmp(name, "app.items")) return json_integer(n);
    if (!strcmp(name, "app.target_dims_max")) return json_integer(K - 1);
    if (!strcmp(name, "app.seq_len_max")) return json_integer(app->max_seq < n ? app->max_seq : n);
    if (!strcmp(name, "app.version")) return json_string(ML_VERSION);
    if (!strcmp(name, "app.layers") || !strcmp(name, "app.representations")) {
        json_t *arr = json_array();
        char buf[32];
        if (!strcmp(name, "app.representations")) json_array_append_new(arr, json_string("backbone"));
        for (int i = 0; i < ml_model_num_outputs(&app->model); i++)
            json_array_append_new(arr, json_string(ml_model_output_name(&app->model, i, buf,
                                                                        sizeof buf)));
        return arr;
    }
    return NULL;
}

/* The placeholder's name when s is one ("${NAME}"), into name. */
static int placeholder(const char *s, char *name, size_t cap) {
    size_t n = strlen(s);
    if (n < 4 || s[0] != '$' || s[1] != '{' || s[n - 1] != '}' || n - 3 >= cap) return 0;
    memcpy(name, s + 2, n - 3);
    name[n - 3] = '\0';
    return 1;
}

/* Replaces *v when it is a placeholder; walks into objects and arrays. */
static int fill(const ml_app *app, json_t *v, json_t **replace, ml_err *err) {
    *replace = NULL;
    char name[64];
    if (json_is_string(v) && placeholder(json_string_value(v), name, sizeof name)) {
        *replace = value_of(app, name);
        return *replace ? 0 : ml_errf(err, "openapi.json: unknown placeholder ${%s}", name);
    }
    json_t *r;
    if (json_is_object(v)) {
        const char *key;
        json_t *m;
        json_object_foreach(v, key, m) {
            if (fill(app, m, &r, err) != 0) return -1;
            if (r) json_object_set_new(v, key, r);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (fill(app, json_array_get(v, i), &r, err) != 0) return -1;
            if (r) json_array_set_new(v, i, r);
        }
    }
    return 0;
}

int ml_openapi_render(const ml_app *app, ml_buf *out, ml_err *err) {
    const char *ct = NULL;
    ml_blob *b = ml_asset_blob(ML_OPENAPI_ASSET, &ct);
    if (!b) return ml_errf(err, "the OpenAPI document is not embedded (a build problem)");
    json_error_t jerr;
    json_t *doc = json_loadb(b->data, b->len, 0, &jerr);
    ml_blob_unref(b);
    if (!doc)
        return ml_errf(err, "openapi.json: line %d: %s (a build problem)", jerr.line, jerr.text);
    json_t *r = NULL;
    int rc = fill(app, doc, &r, err);
    json_decref(r);
    if (rc == 0) {
        ml_jw w;
        ml_jw_init(&w, out);
        ml_jw_json(&w, doc);
        if (ml_jw_finish(&w) != 0) rc = ml_errf(err, "out of memory");
    }
    json_decref(doc);
    return rc;
}
