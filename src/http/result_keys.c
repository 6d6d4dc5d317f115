#include "http/result_keys.h"

#include <stdio.h>
#include <string.h>

/* Every field is written as "<name>=<value>;" and a list as "<name>[<n>]=v0,v1,...;", so no
 * two different requests have the same text (names contain no '=', values no ';'). */
static void put(ml_key *k, const char *s, size_t n) { ml_sha256_update(&k->hash, s, n); }

static void put_str(ml_key *k, const char *s) { put(k, s, strlen(s)); }

void ml_key_begin(ml_key *k, const char *kind) {
    ml_sha256_init(&k->hash);
    snprintf(k->kind, sizeof k->kind, "%s", kind);
    put_str(k, kind);
    put(k, ";", 1);
}

void ml_key_int(ml_key *k, const char *name, long long v) {
    char buf[48];
    int n = snprintf(buf, sizeof buf, "=%lld;", v);
    put_str(k, name);
    put(k, buf, (size_t)n);
}

void ml_key_uint(ml_key *k, const char *name, unsigned long long v) {
    char buf[48];
    int n = snprintf(buf, sizeof buf, "=%llu;", v);
    put_str(k, name);
    put(k, buf, (size_t)n);
}

void ml_key_ints(ml_key *k, const char *name, const int *v, int n) {
    char buf[32];
    put_str(k, name);
    put(k, buf, (size_t)snprintf(buf, sizeof buf, "[%d]=", n));
    for (int i = 0; i < n; i++) put(k, buf, (size_t)snprintf(buf, sizeof buf, "%d,", v[i]));
    put(k, ";", 1);
}

void ml_key_str(ml_key *k, const char *name, const char *s) {
    /* the length first: a value may contain any byte */
    char buf[32];
    put_str(k, name);
    put(k, buf, (size_t)snprintf(buf, sizeof buf, "(%zu)=", strlen(s)));
    put_str(k, s);
    put(k, ";", 1);
}

void ml_key_view(ml_key *k, const ml_view *v) {
    ml_key_str(k, "format", v->format == ML_FORMAT_CSV ? "csv" : "json");
    ml_key_str(k, "rows", v->format == ML_FORMAT_CSV ? ml_rows_name(v->rows) : "");
}

void ml_key_finish(ml_key *k, char out[ML_KEY_LEN]) {
    unsigned char digest[ML_SHA256_LEN];
    char hex[ML_SHA256_HEX_LEN];
    ml_sha256_final(&k->hash, digest);
    ml_sha256_to_hex(digest, hex);
    snprintf(out, ML_KEY_LEN, "%s:%s", k->kind, hex);
}
