#include "engine/cka_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    ml_once_free(&c->prepared);
    ml_once_free(&c->matrices);
    free(c);
}

typedef struct prepare_arg {
    ml_cka_cache *c;
    const ml_dataset *d;
    const float *const *outs;
    int n_outputs, hidden;
} prepare_arg;

static int prepare(void *arg, ml_err *err) {
    const prepare_arg *pa = arg;
    ml_cka_cache *c = pa->c;
    const ml_dataset *d = pa->d;
    c->target = ml_cka_target_new(d->Y, d->n_items, d->target_dims, err);
    if (!c->target) return ml_err_prefix(err, "CKA targets (%s)", d->targets_path);
    c->n_reps = 1 + pa->n_outputs;
    c->reps = calloc((size_t)c->n_reps, sizeof *c->reps);
    if (!c->reps) {
        free_prepared(c);
        return ml_errf(err, "out of memory");
    }
    for (int i = 0; i < c->n_reps; i++) {
        const float *X = i == 0 ? d->X : pa->outs[i - 1];
        int p = i == 0 ? d->backbone_dim : pa->hidden;
        c->reps[i] = ml_cka_rep_new(X, d->n_items, p, c->target, err);
        if (!c->reps[i]) {
            if (i == 0)
                ml_err_prefix(err, "CKA of the backbone");
            else
                ml_err_prefix(err, "CKA of model output %d", i - 1);
            free_prepared(c);
            return -1;
        }
    }
    return 0;
}

int ml_cka_cache_prepare(ml_cka_cache *c, const ml_dataset *d, const float *const *outs,
                         int n_outputs, int hidden, ml_err *err) {
    prepare_arg pa = {c, d, outs, n_outputs, hidden};
    return ml_once_run(&c->prepared, prepare, &pa, err);
}

int ml_cka_cache_ready(ml_cka_cache *c) { return ml_once_done(&c->prepared); }

static int matrices(void *arg, ml_err *err) {
    ml_cka_cache *c = arg;
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

int ml_cka_cache_matrices(ml_cka_cache *c, ml_err *err) {
    if (!ml_cka_cache_ready(c)) return ml_errf(err, "the CKA representations are not prepared");
    return ml_once_run(&c->matrices, matrices, c, err);
}

int ml_cka_cache_matrices_ready(ml_cka_cache *c) { return ml_once_done(&c->matrices); }
