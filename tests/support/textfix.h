/* Reader for the text fixtures the reference scripts write (tests/reference/make_*_fixtures.py):
 * one record per line, "name count v0 v1 ...", integers in hex, floats as decimal repr. */
#ifndef METALIGN_TESTS_TEXTFIX_H
#define METALIGN_TESTS_TEXTFIX_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct textfix {
    char *text;
    size_t len;
} textfix;

__attribute__((unused)) static int textfix_load(textfix *f, const char *path) {
    FILE *fp = fopen(path, "rb");
    f->text = NULL;
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->text = malloc((size_t)n + 1);
    f->len = f->text ? fread(f->text, 1, (size_t)n, fp) : 0;
    fclose(fp);
    if (!f->text) return -1;
    f->text[f->len] = 0;
    return 0;
}

/* The record's values start; *count gets the count; NULL when absent. */
static const char *textfix_find(const textfix *f, const char *name, size_t *count) {
    size_t nl = strlen(name);
    for (const char *p = f->text; p && *p;) {
        if (!strncmp(p, name, nl) && p[nl] == ' ') {
            char *end;
            *count = strtoull(p + nl + 1, &end, 10);
            return end;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return NULL;
}

/* Copies up to max values of a record into out (doubles); returns the count or -1. */
__attribute__((unused)) static long textfix_doubles(const textfix *f, const char *name,
                                                    double *out, size_t max) {
    size_t n;
    const char *p = textfix_find(f, name, &n);
    if (!p || n > max) return -1;
    for (size_t i = 0; i < n; i++) out[i] = strtod(p, (char **)&p);
    return (long)n;
}

__attribute__((unused)) static long textfix_u64(const textfix *f, const char *name,
                                                uint64_t *out, size_t max) {
    size_t n;
    const char *p = textfix_find(f, name, &n);
    if (!p || n > max) return -1;
    for (size_t i = 0; i < n; i++) out[i] = strtoull(p, (char **)&p, 16);
    return (long)n;
}

#endif
