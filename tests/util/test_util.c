/* Unit tests of src/util's small parts: buffers, the blob LRU, run-once. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/blob.h"
#include "util/buf.h"
#include "util/lru.h"
#include "util/once.h"
#include "unit.h"

static void test_base64(void) {
    /* RFC 4648 section 10 vectors */
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        ml_buf b = {0};
        ml_buf_base64(&b, in[i], strlen(in[i]));
        CHECK_MSG(!strcmp(b.data ? b.data : "", out[i]), "base64(%s) = %s", in[i], b.data);
        ml_buf_free(&b);
    }
}

static void test_json_floats(void) {
    ml_buf b = {0};
    float v[] = {1.0f, -0.5f, 3.14159274f, 1e-30f};
    CHECK(ml_buf_json_floats(&b, v, 4) == 0);
    CHECK(!strcmp(b.data, "[1,-0.5,3.14159274,1e-30]"));
    ml_buf_free(&b);
    float bad[] = {1.0f, NAN};
    CHECK(ml_buf_json_floats(&b, bad, 2) != 0);
    CHECK(b.len == 0);
    ml_buf_free(&b);
}

static void test_lru(void) {
    ml_lru *c = ml_lru_new(100, 3);
    ml_blob *a = ml_blob_new("aaaa", 4), *b = ml_blob_new("bbbb", 4);
    ml_lru_put(c, "a", a);
    ml_lru_put(c, "b", b);
    ml_blob *got = ml_lru_get(c, "a");
    CHECK(got && !strcmp(got->data, "aaaa"));
    ml_blob_unref(got);
    for (int i = 0; i < 3; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        ml_lru_put(c, k, b);
    }
    int n;
    size_t bytes;
    ml_lru_stats(c, &n, &bytes);
    CHECK(n == 3 && bytes == 12);
    got = ml_lru_get(c, "a");
    CHECK(got == NULL); /* evicted as the oldest */
    char big[200];
    memset(big, 'x', sizeof big);
    ml_blob *huge = ml_blob_new(big, sizeof big); /* ml_blob_new copies */
    ml_lru_put(c, "huge", huge); /* larger than the cache: not kept */
    CHECK(ml_lru_get(c, "huge") == NULL);
    ml_blob_unref(a);
    ml_blob_unref(b);
    ml_blob_unref(huge);
    ml_lru_free(c);
}

static int once_calls;
static int once_fn(void *arg, ml_err *err) {
    (void)arg;
    (void)err;
    __atomic_add_fetch(&once_calls, 1, __ATOMIC_RELAXED);
    usleep(20000);
    return 0;
}
static void *once_thread(void *o) {
    ml_err err;
    return (void *)(long)ml_once_run(o, once_fn, NULL, &err);
}
static void test_once_concurrent(void) {
    ml_once o;
    ml_once_init(&o);
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, once_thread, &o);
    for (int i = 0; i < 8; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        CHECK(rc == NULL);
    }
    CHECK(once_calls == 1 && ml_once_done(&o));
    ml_once_destroy(&o);
}

int main(void) {
    RUN(test_base64);
    RUN(test_json_floats);
    RUN(test_lru);
    RUN(test_once_concurrent);
    return UT_DONE();
}
