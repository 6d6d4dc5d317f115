#include "util/ref.h"

void ml_ref_init(ml_ref *r, const char *kind, size_t bytes, void (*destroy)(ml_ref *r)) {
    r->count = 1;
    r->kind = kind;
    r->bytes = bytes;
    r->destroy = destroy;
}

ml_ref *ml_ref_inc(ml_ref *r) {
    if (r) __atomic_add_fetch(&r->count, 1, __ATOMIC_RELAXED);
    return r;
}

void ml_unref(ml_ref *r) {
    /* Release on the way down, acquire by the destroyer: every write another holder made
     * before letting go is visible to destroy. */
    if (r && __atomic_sub_fetch(&r->count, 1, __ATOMIC_ACQ_REL) == 0) r->destroy(r);
}
