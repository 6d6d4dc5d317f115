/* An intrusive reference count for immutable objects shared between threads (cached answers,
 * computed results): the last ml_unref destroys the object. Embed an ml_ref as the first
 * member; `kind` tells typed getters what they hold. */
#ifndef METALIGN_UTIL_REF_H
#define METALIGN_UTIL_REF_H

#include <stddef.h>

typedef struct ml_ref {
    int count;                       /* atomic */
    size_t bytes;                    /* memory the object holds, for caches' budgets */
    const char *kind;                /* a static tag, e.g. "blob" */
    void (*destroy)(struct ml_ref *r);
} ml_ref;

/* One reference, for the creator. */
void ml_ref_init(ml_ref *r, const char *kind, size_t bytes, void (*destroy)(ml_ref *r));
ml_ref *ml_ref_inc(ml_ref *r); /* r may be NULL; returns r */
void ml_unref(ml_ref *r);      /* r may be NULL */

#endif
