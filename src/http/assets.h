/* Files the build embeds (tools/embed_assets.py, src/http/meson.build): the dashboard's page,
 * scripts and style, Debian's dygraphs (libjs-dygraphs) and the OpenAPI document. They are
 * served from memory, so the dashboard works offline and nothing it loads comes from
 * anywhere but the daemon. */
#ifndef METALIGN_HTTP_ASSETS_H
#define METALIGN_HTTP_ASSETS_H

#include <stddef.h>

#include "util/blob.h"

typedef struct ml_asset {
    const char *name;          /* the file's basename: "dygraph.min.js" */
    const unsigned char *data; /* NUL-terminated */
    size_t len;
} ml_asset;

extern const ml_asset ml_assets[];
extern const int ml_n_assets;

/* The asset as a shared blob (made once, so its ETag is hashed once), or NULL when there is
 * no such asset (or no memory); *content_type from its extension. */
ml_blob *ml_asset_blob(const char *name, const char **content_type);

#endif
