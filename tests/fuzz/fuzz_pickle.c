/* libFuzzer target: the pickle VM on arbitrary bytes, then a bounded walk of the value graph
 * (which may be cyclic) through the readers torch_ckpt.c uses. The memo lets one value be
 * referenced many times, so a depth bound alone is exponential on a DAG (a 148-byte input
 * took minutes): the walk also has a budget of visits. */
#include <stddef.h>
#include <stdint.h>

#include "io/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t walk(const ml_pv *v, int depth, long *budget) {
    if (!v || depth > 32 || --*budget < 0) return 0;
    size_t n = 1;
    switch (v->type) {
    case ML_PV_LIST:
    case ML_PV_TUPLE:
        for (size_t i = 0; i < v->u.seq.n && i < 64; i++) n += walk(v->u.seq.items[i], depth + 1, budget);
        break;
    case ML_PV_DICT:
        for (size_t i = 0; i < v->u.dict.n && i < 64; i++)
            n += walk(v->u.dict.keys[i], depth + 1, budget) + walk(v->u.dict.vals[i], depth + 1, budget);
        n += ml_pv_dict_get(v, "state_dict") != NULL;
        break;
    case ML_PV_OBJECT:
        n += walk(v->u.obj.cls, depth + 1, budget) + walk(v->u.obj.args, depth + 1, budget);
        n += walk(ml_pv_object_dict(v), depth + 1, budget);
        break;
    case ML_PV_TENSOR: n += walk(v->u.tensor->storage, depth + 1, budget); break;
    case ML_PV_PERSID: n += walk(v->u.persid, depth + 1, budget); break;
    default: break;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Tighter than the defaults so one input cannot take seconds. */
    ml_pickle_limits lim = {.max_values = 1 << 16, .max_bytes = 64 << 20,
                            .max_stack = 1 << 16, .max_memo = 1 << 16};
    ml_err err;
    ml_pickle *pk = ml_pickle_load(data, size, &lim, &err);
    if (pk) {
        long budget = 1 << 20;
        volatile size_t n = walk(ml_pickle_root(pk), 0, &budget);
        (void)n;
        ml_pickle_free(pk);
    }
    return 0;
}
