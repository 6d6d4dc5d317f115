/* The record the human-data cache keeps beside its CSV (human.json): where the copy came from,
 * when, its size and sha256, and the validators for a conditional GET. */
#ifndef METALIGN_HUMAN_META_H
#define METALIGN_HUMAN_META_H

#include <stddef.h>
#include <time.h>

#include "metalign/err.h"
#include "metalign/sha256.h"

#define ML_HUMAN_META_FORMAT 1

typedef struct ml_human_meta {
    time_t fetched_at, validated_at;
    size_t bytes;
    char sha256[ML_SHA256_HEX_LEN];
    char etag[256];
    char last_modified[128];
} ml_human_meta;

/* {"format", "url", "fetched_at", "validated_at", "bytes", "sha256", "etag",
 *  "last_modified"} as indented JSON with a final newline: *text is malloc'd, *len its length
 * (src/io/human_meta.c). */
int ml_human_meta_format(const ml_human_meta *m, const char *url, char **text, size_t *len);
/* Parses what ml_human_meta_format writes; *url is malloc'd. name labels messages. */
int ml_human_meta_parse(const char *text, size_t len, const char *name, ml_human_meta *m,
                        char **url, ml_err *err);

#endif
