#include "http/assets.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "http/response.h"

#define ML_MAX_ASSETS 32

static pthread_once_t blobs_once = PTHREAD_ONCE_INIT;
static ml_blob *blobs[ML_MAX_ASSETS]; /* process-wide and immutable: kept until exit */

static void make_blobs(void) {
    for (int i = 0; i < ml_n_assets && i < ML_MAX_ASSETS; i++)
        blobs[i] = ml_blob_new((const char *)ml_assets[i].data, ml_assets[i].len);
}

static const char *type_of(const char *name) {
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", ML_CT_HTML},
                 {".js", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".json", ML_CT_JSON}};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && !strcmp(name + n - e, types[i].ext)) return types[i].type;
    }
    return "application/octet-stream";
}

ml_blob *ml_asset_blob(const char *name, const char **content_type) {
    pthread_once(&blobs_once, make_blobs);
    for (int i = 0; i < ml_n_assets && i < ML_MAX_ASSETS; i++)
        if (!strcmp(ml_assets[i].name, name)) {
            *content_type = type_of(name);
            return ml_blob_ref(blobs[i]);
        }
    return NULL;
}
