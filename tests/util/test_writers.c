/* The CSV writer (util/csv_writer.h) and the JSON writer's handling of text that is not UTF-8
 * (request text echoed in error messages). */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "unit.h"
#include "util/csv_writer.h"
#include "util/json_writer.h"

static const char *const cols[] = {"a", "b", "c", NULL};

static void test_csv_table(void) {
    ml_buf b = {0};
    ml_csv c;
    ml_csv_init(&c, &b, cols);
    ml_csv_string(&c, "x,y");
    ml_csv_double(&c, 0.1 + 0.2);
    ml_csv_double(&c, NAN);
    ml_csv_row_end(&c);
    ml_csv_string(&c, "say \"hi\"\nthere");
    ml_csv_int(&c, -7);
    ml_csv_float(&c, 0.1f);
    ml_csv_row_end(&c);
    ml_csv_string(&c, " padded");
    ml_csv_empty(&c);
    ml_csv_double(&c, INFINITY);
    ml_csv_row_end(&c);
    CHECK(ml_csv_finish(&c) == 0);
    CHECK(c.rows == 3);
    const char *want = "a,b,c\n\"x,y\",0.30000000000000004,\n\"say \"\"hi\"\"\nthere\",-7,0.100000001\n"
                       "\" padded\",,\n";
    CHECK_MSG(b.data && strcmp(b.data, want) == 0, "got %s", b.data ? b.data : "(null)");
    ml_buf_free(&b);
}

static void test_csv_ragged(void) {
    ml_buf b = {0};
    ml_csv c;
    ml_csv_init(&c, &b, cols);
    ml_csv_int(&c, 1);
    ml_csv_int(&c, 2);
    ml_csv_row_end(&c); /* one field short */
    CHECK(ml_csv_finish(&c) != 0);
    ml_buf_free(&b);
    ml_csv_init(&c, &b, cols);
    for (int i = 0; i < 4; i++) ml_csv_int(&c, i); /* one too many */
    ml_csv_row_end(&c);
    CHECK(ml_csv_finish(&c) != 0);
    ml_buf_free(&b);
    ml_csv_init(&c, &b, cols);
    ml_csv_int(&c, 1); /* an unfinished row */
    CHECK(ml_csv_finish(&c) != 0);
    ml_buf_free(&b);
}

static void test_json_not_utf8(void) {
    ml_buf b = {0};
    ml_jw w;
    ml_jw_init(&w, &b);
    ml_jw_array(&w);
    ml_jw_string(&w, "ok \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");        /* é € 😀 kept */
    ml_jw_string(&w, "bad \x9f \xC0\xAF \xED\xA0\x80 \xF4\x90\x80\x80 \xE2\x82"); /* replaced */
    ml_jw_array_end(&w);
    CHECK(ml_jw_finish(&w) == 0);
    json_t *doc = json_loadb(b.data, b.len, 0, NULL);
    CHECK_MSG(doc != NULL, "not valid JSON: %s", b.data);
    CHECK(doc && !strcmp(json_string_value(json_array_get(doc, 0)), "ok \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
    const char *bad = doc ? json_string_value(json_array_get(doc, 1)) : NULL;
    CHECK(bad && strncmp(bad, "bad \xEF\xBF\xBD ", 8) == 0 && !strchr(bad, '\x9f'));
    json_decref(doc);
    ml_buf_free(&b);
}

int main(void) {
    RUN(test_csv_table);
    RUN(test_csv_ragged);
    RUN(test_json_not_utf8);
    return UT_DONE();
}
