/* Helpers shared by the human-data tests. */
#ifndef METALIGN_TESTS_HUMAN_TEST_H
#define METALIGN_TESTS_HUMAN_TEST_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* Talk to the loopback server directly even when the environment names a proxy. */
__attribute__((unused)) static void unset_proxies(void) {
    static const char *const vars[] = {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY",
                                       "HTTPS_PROXY", "ALL_PROXY", NULL};
    for (int i = 0; vars[i]; i++) unsetenv(vars[i]);
}

/* The whole file (NUL-terminated, *len without it), or NULL. */
__attribute__((unused)) static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 65536;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* tests/fixtures/human/reference.json (written by tests/reference/human_curves.py). */
__attribute__((unused)) static json_t *load_reference(void) {
    json_error_t e;
    json_t *r = json_load_file(FIXTURE("human/reference.json"), 0, &e);
    if (!r) printf("# reference.json: %s (line %d)\n", e.text, e.line);
    return r;
}

#endif
