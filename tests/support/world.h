/* A model and its data, loaded as the daemon loads them, for the engine tests that run the
 * simulation without a daemon: the demo bundle (the seed's generation) or the later
 * generation's fixture world (tests/reference/make_metalearner_world.py). */
#ifndef METALIGN_TESTS_WORLD_H
#define METALIGN_TESTS_WORLD_H

#include <stdlib.h>
#include <string.h>

#include "metalign/dataset.h"
#include "metalign/model.h"
#include "metalign/runner.h"

typedef struct world {
    ml_model m;
    ml_dataset d;
    float *emb_raw, *emb_std; /* (n_items, d_model): the items through the input layer */
} world;

__attribute__((unused)) static void world_close(world *w) {
    free(w->emb_raw);
    free(w->emb_std);
    ml_dataset_free(&w->d);
    ml_model_free(&w->m);
    memset(w, 0, sizeof *w);
}

/* 0, or -1 with err naming what did not load (the caller reports it its own way) and the
 * world closed again. */
__attribute__((unused)) static int world_open(world *w, const char *model,
                                              const ml_data_paths *paths, ml_err *err) {
    memset(w, 0, sizeof *w); /* what is not loaded stays zero, which world_close skips */
    if (ml_model_load(&w->m, model, 0, err) != 0 || ml_dataset_load(&w->d, paths, err) != 0 ||
        ml_item_embeddings(&w->m, &w->d, &w->emb_raw, &w->emb_std, err) != 0) {
        world_close(w);
        return -1;
    }
    return 0;
}

#endif
