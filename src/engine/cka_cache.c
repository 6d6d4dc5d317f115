#include "engine/cka_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/app.h"

ml_cka_cache *ml_cka_cache_new(void) {
    ml_cka_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    ml_once_init(&c->prepared);
    ml_once_init(&c->matrices);
    return c;
}

static void free_prepared(ml_cka_cache *c) {
    if (c->reps)
        for (int i = 0; i < c->n_reps; i++) ml_cka_rep_free(c->reps[i]);
    free(c->reps);
    c->reps = NULL;
    ml_cka_target_free(c->target);
    c->target = NULL;
    c->n_reps = 0;
}

void ml_cka_cache_free(ml_cka_cache *c) {
    if (!c) return;
    free_prepared(c);
    free(c->linear);
    free(c->debiased);
    ml_once_destroy(&c->prepared);
    ml_once_destroy(&c->matrices);
    free(c);
}

const char *ml_cka_rep_name(const ml_app *app, int i, char *buf, size_t len) {
    if (i == 0) {
        snprintf(buf, len, "backbone");
        return buf;
    }
    return ml_model_output_name(&app->model, i - 1, buf, len);
}

typedef struct prepare_arg {
    ml_app *app;
    ml_worker *w;
} prepare_arg;

static int prepare(void *arg, ml_err *err) {
    prepare_arg *pa = arg;
    ml_app *app = pa->app;
    ml_cka_cache *c = app->cka;
    /* The notebook's setting: raw features, every item its own length-1 sequence. */
    const ml_item_acts *acts = ml_app_item_acts(app, pa->w, 0, err);
    if (!acts) return -1;
    const ml_dataset *d = &app->data;
    c->target = ml_cka_target_new(d->Y, d->n_items, d->target_dims, err);
    if (!c->target) return ml_err_prefix(err, "CKA targets (%s)", d->targets_path);
    c->n_reps = 1 + acts->n_outputs;
    c->reps = calloc((size_t)c->n_reps, sizeof *c->reps);
    if (!c->reps) {
        free_prepared(c);
        return ml_errf(err, "out of memory");
    }
    for (int i = 0; i < c->n_reps; i++) {
        const float *X = i == 0 ? d->X : acts->outs[i - 1];
        int p = i == 0 ? d->backbone_dim : acts->hidden;
        c->reps[i] = ml_cka_rep_new(X, d->n_items, p, c->target, err);
        if (!c->reps[i]) {
            char name[32];
            ml_err_prefix(err, "CKA of %s", ml_cka_rep_name(app, i, name, sizeof name));
            free_prepared(c);
            return -1;
        }
    }
    return 0;
}

int ml_cka_cache_prepare(ml_app *app, ml_worker *w, ml_err *err) {
    prepare_arg pa = {app, w};
    return ml_once_run(&app->cka->prepared, prepare, &pa, err);
}

static int matrices(void *arg, ml_err *err) {
    ml_app *app = arg;
    ml_cka_cache *c = app->cka;
    size_t m = (size_t)c->n_reps;
    c->linear = malloc(sizeof(double) * m * m);
    c->debiased = malloc(sizeof(double) * m * m);
    int rc = c->linear && c->debiased
                 ? ml_cka_matrix((const ml_cka_rep *const *)c->reps, c->n_reps, c->linear,
                                 c->debiased, err)
                 : ml_errf(err, "out of memory for the CKA matrices");
    if (rc != 0) {
        free(c->linear);
        free(c->debiased);
        c->linear = c->debiased = NULL;
    }
    return rc;
}

int ml_cka_cache_matrices(ml_app *app, ml_err *err) {
    return ml_once_run(&app->cka->matrices, matrices, app, err);
}
