/* Unit tests of src/util's small parts: buffers, the blob LRU, run-once. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/blob.h"
#include "util/buf.h"
#include "util/lru.h"
#include "util/json_writer.h"
#include "util/once.h"
#include "metalign/rng.h"
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

static char *written(void (*fn)(ml_jw *w), int *ok) {
    static ml_buf b;
    ml_buf_free(&b);
    ml_jw w;
    ml_jw_init(&w, &b);
    fn(&w);
    *ok = ml_jw_finish(&w) == 0;
    return b.data ? b.data : "";
}

static void write_numbers(ml_jw *w) {
    ml_jw_array(w);
    ml_jw_double(w, 0.7);
    ml_jw_double(w, 0.1 + 0.2);
    ml_jw_double(w, 1.0 / 3.0);
    ml_jw_double(w, 1e300);
    ml_jw_double(w, 2.5e-310); /* subnormal */
    ml_jw_double(w, 95.0);
    ml_jw_float(w, 3.14159274f);
    ml_jw_float(w, 1e-30f);
    ml_jw_int(w, -42);
    ml_jw_array_end(w);
}

static void write_nested(ml_jw *w) {
    ml_jw_object(w);
    ml_jw_kstring(w, "s", "a\"b\\c\n\x01");
    ml_jw_key(w, "a");
    ml_jw_array(w);
    ml_jw_bool(w, 1);
    ml_jw_null(w);
    ml_jw_object(w);
    ml_jw_object_end(w);
    ml_jw_array_end(w);
    ml_jw_key(w, "j");
    json_t *doc = json_pack("{s:f,s:[i,s]}", "x", 0.7, "y", 1, "z");
    ml_jw_json(w, doc);
    json_decref(doc);
    ml_jw_object_end(w);
}

static void write_nan(ml_jw *w) {
    ml_jw_array(w);
    ml_jw_double(w, 1.0);
    ml_jw_double(w, NAN);
    ml_jw_array_end(w);
}

static void write_nan_as_null(ml_jw *w) {
    ml_jw_array(w);
    ml_jw_double_or_null(w, NAN);
    ml_jw_double_or_null(w, INFINITY);
    ml_jw_double_or_null(w, 0.25);
    ml_jw_array_end(w);
}

/* Valid UTF-8 passes through; bytes that are not UTF-8 become U+FFFD, one per byte. */
static void write_utf8(ml_jw *w) {
    ml_jw_array(w);
    ml_jw_string(w, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"); /* 2, 3, 4 bytes */
    ml_jw_string(w, "a\xff" "b");               /* never UTF-8 */
    ml_jw_string(w, "\xe2\x82");                /* cut short */
    ml_jw_string(w, "\xc0\xaf");                /* overlong '/' */
    ml_jw_string(w, "\xed\xa0\x80");            /* a surrogate */
    ml_jw_string(w, "\xf4\x90\x80\x80");        /* past U+10FFFF */
    ml_jw_array_end(w);
}

static void test_json_writer(void) {
    int ok = 0;
    const char *s = written(write_numbers, &ok);
    CHECK(ok);
    CHECK_MSG(!strcmp(s, "[0.7,0.30000000000000004,0.3333333333333333,1e+300,2.5e-310,95,"
                         "3.14159274,1e-30,-42]"), "numbers: %s", s);
    s = written(write_nested, &ok);
    CHECK(ok);
    CHECK_MSG(!strcmp(s, "{\"s\":\"a\\\"b\\\\c\\n\\u0001\",\"a\":[true,null,{}],"
                         "\"j\":{\"x\":0.7,\"y\":[1,\"z\"]}}"), "nested: %s", s);
    json_t *back = json_loads(s, 0, NULL);
    CHECK(back != NULL); /* what it writes is JSON */
    json_decref(back);
    s = written(write_utf8, &ok);
    CHECK(ok);
    CHECK_MSG(!strcmp(s, "[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"a\\ufffdb\","
                         "\"\\ufffd\\ufffd\",\"\\ufffd\\ufffd\",\"\\ufffd\\ufffd\\ufffd\","
                         "\"\\ufffd\\ufffd\\ufffd\\ufffd\"]"),
              "utf8: %s", s);
    back = json_loads(s, 0, NULL);
    CHECK(back != NULL); /* jansson refuses invalid UTF-8: this is valid */
    json_decref(back);
    s = written(write_nan, &ok);
    CHECK(!ok); /* NaN is refused, never written as a number */
    s = written(write_nan_as_null, &ok);
    CHECK(ok && !strcmp(s, "[null,null,0.25]"));
}

static void test_shortest_doubles_round_trip(void) {
    /* every written double reads back bit for bit */
    ml_rng r;
    ml_rng_seed(&r, 7, 0);
    char buf[40];
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = ml_rng_next(&r);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v)) continue;
        ml_format_double(buf, sizeof buf, v);
        double back = strtod(buf, NULL);
        CHECK_MSG(memcmp(&back, &v, sizeof v) == 0 || (v == 0 && back == 0), "%.17g -> %s", v,
                  buf);
    }
    ml_format_double(buf, sizeof buf, 0.1);
    CHECK(!strcmp(buf, "0.1"));
}

static void test_lru(void) {
    ml_lru *c = ml_lru_new(1000, 3);
    ml_blob *a = ml_blob_new("aaaa", 4), *b = ml_blob_new("bbbb", 4);
    ml_lru_put_blob(c, "a", a);
    ml_lru_put_blob(c, "b", b);
    ml_blob *got = ml_lru_get_blob(c, "a");
    CHECK(got && !strcmp(got->data, "aaaa"));
    ml_blob_unref(got);
    for (int i = 0; i < 3; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        ml_lru_put_blob(c, k, b);
    }
    int n;
    size_t bytes;
    ml_lru_stats(c, &n, &bytes);
    CHECK(n == 3 && bytes == 3 * b->ref.bytes);
    got = ml_lru_get_blob(c, "a");
    CHECK(got == NULL); /* evicted as the oldest */
    char big[2000];
    memset(big, 'x', sizeof big);
    ml_blob *huge = ml_blob_new(big, sizeof big); /* ml_blob_new copies */
    ml_lru_put_blob(c, "huge", huge); /* larger than the cache: not kept */
    CHECK(ml_lru_get_blob(c, "huge") == NULL);
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
    ml_once_free(&o);
}

int main(void) {
    RUN(test_base64);
    RUN(test_json_writer);
    RUN(test_shortest_doubles_round_trip);
    RUN(test_lru);
    RUN(test_once_concurrent);
    return UT_DONE();
}
