/* The bytes of answers that are queued but not yet sent: what slow or non-reading clients
 * make the daemon hold. A shared answer (a cached blob, sent without a copy) counts once
 * however many responses send it; an answer of its own (owned bytes) counts each time. A new
 * large answer is refused (the caller answers 503 + Retry-After) when it would take the
 * total past the bound, so a crowd of clients that never read cannot take the memory; a
 * small answer (an error, /healthz) is always let through, and so is any one answer when
 * nothing else is held. */
#ifndef METALIGN_HTTP_INFLIGHT_H
#define METALIGN_HTTP_INFLIGHT_H

#include <stddef.h>

#include "util/blob.h"

#define ML_INFLIGHT_SMALL_BYTES ((size_t)64 << 10) /* always admitted */

typedef struct ml_inflight ml_inflight;

ml_inflight *ml_inflight_new(size_t max_bytes);
void ml_inflight_free(ml_inflight *f);
/* An answer is about to be queued: its blob (shared, or NULL) and the bytes of its own. 0 and
 * it is counted until ml_inflight_release with the same arguments, or -1 (nothing counted). */
int ml_inflight_take(ml_inflight *f, const ml_blob *blob, size_t own_bytes);
void ml_inflight_release(ml_inflight *f, const ml_blob *blob, size_t own_bytes);
/* Bytes held now, and the number of distinct blobs among them. */
size_t ml_inflight_bytes(ml_inflight *f, int *blobs);
size_t ml_inflight_max(const ml_inflight *f);

#endif
