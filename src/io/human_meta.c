#include "metalign/human_meta.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/timefmt.h"

int ml_human_meta_format(const ml_human_meta *m, const char *url, char **text_out,
                         size_t *len) {
    char fetched[ML_RFC3339_LEN], validated[ML_RFC3339_LEN];
    ml_rfc3339(m->fetched_at, fetched);
    ml_rfc3339(m->validated_at, validated);
    json_t *doc = json_pack("{s:i,s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "format", ML_HUMAN_META_FORMAT,
                            "url", url, "fetched_at", fetched, "validated_at", validated,
                            "bytes", (json_int_t)m->bytes, "sha256", m->sha256, "etag", m->etag,
                            "last_modified", m->last_modified);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    size_t n = text ? strlen(text) : 0;
    char *grown = text ? realloc(text, n + 2) : NULL;
    if (!grown) {
        free(text);
        return -1;
    }
    grown[n] = '\n';
    grown[n + 1] = '\0';
    *text_out = grown;
    *len = n + 1;
    return 0;
}

int ml_human_meta_parse(const char *text, size_t len, const char *name, ml_human_meta *m,
                        char **url, ml_err *err) {
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    if (!doc) return ml_errf(err, "its metadata %s is not valid JSON (%s, line %d)", name,
                             je.text, je.line);
    const char *u, *fetched, *validated, *sha, *etag, *lm;
    json_int_t bytes;
    int rc = 0;
    memset(m, 0, sizeof *m);
    *url = NULL;
    if (json_unpack(doc, "{s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "url", &u, "fetched_at", &fetched,
                    "validated_at", &validated, "bytes", &bytes, "sha256", &sha, "etag", &etag,
                    "last_modified", &lm) != 0 ||
        bytes < 0 || strlen(sha) != 64 || ml_rfc3339_parse(fetched, &m->fetched_at) != 0 ||
        ml_rfc3339_parse(validated, &m->validated_at) != 0) {
        rc = ml_errf(err, "its metadata %s lacks a field or has a malformed one", name);
    } else if (!(*url = strdup(u))) {
        rc = ml_errf(err, "%s: out of memory", name);
    } else {
        m->bytes = (size_t)bytes;
        snprintf(m->sha256, sizeof m->sha256, "%s", sha);
        snprintf(m->etag, sizeof m->etag, "%s", etag);
        snprintf(m->last_modified, sizeof m->last_modified, "%s", lm);
    }
    json_decref(doc);
    return rc;
}
