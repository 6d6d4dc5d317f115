/* The human CSV parser: the synthetic fixture and its messy twin (BOM, CRLF, quoting, columns
 * reordered, 1/0 booleans, a quoted newline) give identical rows with the counts pandas finds;
 * every broken fixture fails naming the line pandas' writer put the fault on; small inline
 * cases cover each accepted spelling and each rejection; damaged inputs never crash. */
#include "unit.h"

#include "human_test.h"
#include "metalign/human_csv.h"

/* The fixture's bytes, or NULL (the caller REQUIREs it: a missing fixture is a failure). */
static char *fixture(const char *name, size_t *len) { return read_file(FIXTUREF("human/%s", name), len); }

static int parse_str(const char *text, ml_human_data *d, ml_fetch_code *code, ml_err *err) {
    return ml_human_csv_parse(text, strlen(text), "test.csv", d, code, err);
}

static void test_synthetic_matches_pandas_counts(void) {
    json_t *ref = load_reference();
    REQUIRE_MSG(ref != NULL, "cannot read %s", FIXTURE("human/reference.json"));
    const char *names[] = {"synthetic.csv", "messy.csv"};
    for (int i = 0; i < 2; i++) {
        json_t *r = json_object_get(json_object_get(ref, "files"), names[i]);
        CHECK_MSG(json_is_object(r), "reference.json has no counts for %s", names[i]);
        size_t len;
        char *buf = fixture(names[i], &len);
        if (!buf) json_decref(ref);
        REQUIRE_MSG(buf != NULL, "cannot read %s", FIXTUREF("human/%s", names[i]));
        ml_human_data d;
        ml_fetch_code code;
        ml_err err = {{0}};
        int rc = ml_human_csv_parse(buf, len, names[i], &d, &code, &err);
        CHECK_MSG(rc == 0 && err.msg[0] == 0, "%s: %s", names[i], err.msg);
        if (rc != 0) {
            free(buf);
            continue;
        }
        CHECK_EQ_SIZE(d.n_rows, json_integer_value(json_object_get(r, "rows")));
        CHECK_EQ_SIZE(d.n_missing, json_integer_value(json_object_get(r, "missing")));
        CHECK_EQ_SIZE(d.n_participants,
                      json_integer_value(json_object_get(json_object_get(r, "119"),
                                                         "participants")));
        CHECK_EQ_INT(d.max_trial, 119);
        CHECK_MSG(d.replay_problem == NULL, "%s", d.replay_problem);
        CHECK(d.choice && d.label && d.image && d.images.n > 0 && d.concepts.n == 8);
        ml_human_data_free(&d);
        free(buf);
    }
    json_decref(ref);
}

static void test_messy_equals_clean(void) {
    size_t la, lb;
    char *a = fixture("synthetic.csv", &la), *b = fixture("messy.csv", &lb);
    if (!a || !b) {
        free(a);
        free(b);
        REQUIRE_MSG(0, "cannot read %s", FIXTURE(!a ? "human/synthetic.csv" : "human/messy.csv"));
    }
    ml_human_data da, db;
    ml_fetch_code code;
    ml_err err;
    int rc_a = ml_human_csv_parse(a, la, "synthetic.csv", &da, &code, &err);
    CHECK_MSG(rc_a == 0, "%s", err.msg);
    int rc_b = ml_human_csv_parse(b, lb, "messy.csv", &db, &code, &err);
    CHECK_MSG(rc_b == 0, "%s", err.msg);
    if (rc_a != 0 || rc_b != 0) {
        if (rc_a == 0) ml_human_data_free(&da);
        if (rc_b == 0) ml_human_data_free(&db);
        free(a);
        free(b);
        return;
    }
    CHECK_EQ_SIZE(db.n_rows, da.n_rows);
    CHECK(da.n_rows > 0);
    if (da.n_rows == db.n_rows && da.n_rows > 0) {
        CHECK(memcmp(da.participant, db.participant, da.n_rows * sizeof(int32_t)) == 0);
        CHECK(memcmp(da.trial, db.trial, da.n_rows * sizeof(int32_t)) == 0);
        CHECK(memcmp(da.dimension, db.dimension, da.n_rows * sizeof(int32_t)) == 0);
        CHECK(memcmp(da.correct, db.correct, da.n_rows) == 0);
        CHECK(da.choice && db.choice && memcmp(da.choice, db.choice, da.n_rows) == 0);
        CHECK(da.label && db.label && memcmp(da.label, db.label, da.n_rows) == 0);
        CHECK(da.image && db.image && memcmp(da.image, db.image, da.n_rows * 4) == 0);
    }
    ml_human_data_free(&da);
    ml_human_data_free(&db);
    free(a);
    free(b);
}

static void test_broken_fixtures_name_the_line(void) {
    json_t *ref = load_reference();
    REQUIRE_MSG(ref != NULL, "cannot read %s", FIXTURE("human/reference.json"));
    json_t *errors = json_object_get(ref, "errors");
    CHECK_MSG(json_object_size(errors) >= 5, "reference.json lists %zu broken fixtures",
              json_object_size(errors));
    const char *key;
    json_t *e;
    json_object_foreach(errors, key, e) {
        size_t len;
        char *buf = fixture(key, &len);
        CHECK_MSG(buf != NULL, "cannot read %s", FIXTUREF("human/%s", key));
        if (!buf) continue;
        ml_human_data d;
        ml_fetch_code code = 0;
        ml_err err = {{0}};
        CHECK_MSG(ml_human_csv_parse(buf, len, key, &d, &code, &err) == -1, "%s parsed", key);
        char want[64];
        snprintf(want, sizeof want, "line %lld:",
                 (long long)json_integer_value(json_object_get(e, "line")));
        CHECK_STR_CONTAINS(err.msg, want);
        CHECK_STR_CONTAINS(err.msg, key);
        const char *col = json_string_value(json_object_get(e, "column"));
        if (col) CHECK_STR_CONTAINS(err.msg, col);
        CHECK(code == (strcmp(key, "bad_missing_column.csv") == 0 ? ML_FETCH_E_NOT_CSV
                                                                  : ML_FETCH_E_BAD_CSV));
        CHECK(d.n_rows == 0 && d.trial == NULL);
        free(buf);
    }
    json_decref(ref);
}

static void test_accepted_spellings(void) {
    const char *text = "\xEF\xBB\xBF" "extra,\"correct\",dimension,trial,participant\r\n"
                       "x,True,0,0,a\r\n"
                       "x,false,1,1,b\r\n"
                       "x,TRUE,2,2.0,\"a\"\r\n"
                       "x,0.0,3,3,\" b \"\r\n"
                       "\r\n"
                       "\"x,\"\"y\"\"\",1,4, 4 ,\"c\"\r\n"
                       "x,,0,5,c\r\n"
                       "x,NA,0,6,d\r\n"
                       "x,1.0,0,2147483647,e";
    ml_human_data d;
    ml_fetch_code code;
    ml_err err = {{0}};
    CHECK(parse_str(text, &d, &code, &err) == 0);
    CHECK_MSG(err.msg[0] == 0, "%s", err.msg);
    CHECK(d.n_rows == 6);
    CHECK(d.n_missing == 2);
    if (d.n_rows == 6) {
        static const uint8_t correct[] = {1, 0, 1, 0, 1, 1};
        static const int32_t trial[] = {0, 1, 2, 3, 4, 2147483647};
        static const int32_t dim[] = {0, 1, 2, 3, 4, 0};
        /* " b " is not b (pandas keeps the blanks); d only has an NA row, so it got an id but
         * no row. */
        static const int32_t part[] = {0, 1, 0, 2, 3, 5};
        for (int i = 0; i < 6; i++) {
            CHECK_MSG(d.correct[i] == correct[i], "row %d correct %d", i, d.correct[i]);
            CHECK_MSG(d.trial[i] == trial[i], "row %d trial %d", i, d.trial[i]);
            CHECK_MSG(d.dimension[i] == dim[i], "row %d dimension %d", i, d.dimension[i]);
            CHECK_MSG(d.participant[i] == part[i], "row %d participant %d", i, d.participant[i]);
        }
    }
    CHECK(d.n_participants == 6);
    CHECK(d.max_trial == 2147483647);
    ml_human_data_free(&d);
}

static void expect_fail(const char *text, ml_fetch_code want, const char *a, const char *b) {
    ml_human_data d;
    ml_fetch_code code = ML_FETCH_OK;
    ml_err err = {{0}};
    CHECK_MSG(parse_str(text, &d, &code, &err) == -1, "parsed: %s", text);
    CHECK_MSG(code == want, "code %s for %s", ml_fetch_code_name(code), text);
    CHECK_STR_CONTAINS(err.msg, a);
    if (b) CHECK_STR_CONTAINS(err.msg, b);
    CHECK_STR_CONTAINS(err.msg, "test.csv");
}

static void test_rejections(void) {
    const char *h = "participant,trial,dimension,correct\n";
    char buf[512];
#define ROWS(s) (snprintf(buf, sizeof buf, "%s%s", h, s), buf)
    expect_fail(ROWS("a,0,0,True\na,-1,0,True\n"), ML_FETCH_E_BAD_CSV, "line 3:", "\"trial\"");
    expect_fail(ROWS("a,0,0,True\na,1.5,0,True\n"), ML_FETCH_E_BAD_CSV, "line 3:", "\"1.5\"");
    expect_fail(ROWS("a,0,0,True\na,2147483648,0,True\n"), ML_FETCH_E_BAD_CSV, "line 3:", "trial");
    expect_fail(ROWS("a,0,x,True\n"), ML_FETCH_E_BAD_CSV, "line 2:", "\"dimension\"");
    expect_fail(ROWS("a,0,0,yes\n"), ML_FETCH_E_BAD_CSV, "line 2:", "\"yes\"");
    expect_fail(ROWS("a,0,0,2\n"), ML_FETCH_E_BAD_CSV, "line 2:", "correct");
    expect_fail(ROWS(",0,0,True\n"), ML_FETCH_E_BAD_CSV, "line 2:", "participant");
    expect_fail(ROWS("a,0,0,True,extra\n"), ML_FETCH_E_BAD_CSV, "line 2:", "5 fields");
    expect_fail(ROWS("a,0,0\n"), ML_FETCH_E_BAD_CSV, "line 2:", "3 fields");
    expect_fail(ROWS("a,0,0,True\n\"a\"b,1,0,True\n"), ML_FETCH_E_BAD_CSV, "line 3:", NULL);
    expect_fail(ROWS("a,0,0,True\na,1,0,\"True\n"), ML_FETCH_E_BAD_CSV, "line 3:", "never closed");
    expect_fail(h, ML_FETCH_E_BAD_CSV, "no rows", NULL);
    expect_fail("participant,trial,correct\na,0,True\n", ML_FETCH_E_NOT_CSV, "line 1:",
                "\"dimension\"");
    expect_fail("", ML_FETCH_E_NOT_CSV, "empty", NULL);
    expect_fail("\n\n\r\n", ML_FETCH_E_NOT_CSV, "no header", NULL);
    expect_fail("  <!DOCTYPE html><html>", ML_FETCH_E_NOT_CSV, "HTML", "<!DOCTYPE html>");
    expect_fail("{\"error\": \"not found\"}", ML_FETCH_E_NOT_CSV, "JSON", NULL);
#undef ROWS
    ml_human_data d;
    ml_fetch_code code;
    ml_err err;
    static const char bin[] = "participant,trial\n\x00\x01\x02";
    CHECK(ml_human_csv_parse(bin, sizeof bin - 1, "test.csv", &d, &code, &err) == -1);
    CHECK(code == ML_FETCH_E_NOT_CSV);
    CHECK_STR_CONTAINS(err.msg, "binary");
    CHECK_STR_CONTAINS(err.msg, "offset 18");
}

/* The replay's optional columns: booleans spelled like correct, NA cells kept as
 * ML_HUMAN_NA / -1, images interned with their concept (folder) and file. */
static void test_replay_columns(void) {
    const char *text = "participant,trial,dimension,correct,choice,true_category_binary,image\n"
                       "p1,0,0,True,1,1,stimuli/aardvark/aardvark_01b.jpg\n"
                       "p1,1,0,False,False,True,stimuli/banana/banana_02.jpg\n"
                       "p2,0,2,1,0,1,THINGS/images/aardvark/aardvark_01b.jpg\n"
                       "p2,1,2,1,NA,0,stimuli/aardvark/aardvark_01b.jpg\n"
                       "p2,2,2,NA,1,1,stimuli/cello/cello_01.jpg\n"
                       "p2,3,2,0,1,,plain.jpg\n"
                       "p2,4,2,0,1,0,\n"
                       "\"p,3\",0,1,True,1.0,1.0,stimuli//x.jpg\n";
    ml_human_data d;
    ml_fetch_code code;
    ml_err err = {{0}};
    CHECK(parse_str(text, &d, &code, &err) == 0);
    CHECK_MSG(d.replay_problem == NULL, "%s", d.replay_problem);
    CHECK(d.n_rows == 7 && d.n_missing == 1);
    CHECK(d.choice && d.label && d.image);
    if (d.n_rows == 7 && d.choice && d.label && d.image) {
        static const uint8_t choice[] = {1, 0, 0, ML_HUMAN_NA, 1, 1, 1};
        static const uint8_t label[] = {1, 1, 1, 0, ML_HUMAN_NA, 0, 1};
        static const int32_t image[] = {0, 1, 2, 0, 4, -1, 5};
        for (int i = 0; i < 7; i++) {
            CHECK_MSG(d.choice[i] == choice[i], "row %d choice %d", i, d.choice[i]);
            CHECK_MSG(d.label[i] == label[i], "row %d label %d", i, d.label[i]);
            CHECK_MSG(d.image[i] == image[i], "row %d image %d", i, d.image[i]);
        }
    }
    /* cello's row had no answer, but its image was interned before that was known */
    CHECK(d.images.n == 6);
    if (d.images.n == 6) {
        CHECK(strcmp(ml_strtab_get(&d.images, 0), "stimuli/aardvark/aardvark_01b.jpg") == 0);
        CHECK(strcmp(ml_strtab_get(&d.images, 2), "THINGS/images/aardvark/aardvark_01b.jpg") == 0);
        /* the same concept and file through another prefix */
        CHECK(d.image_concept[0] == d.image_concept[2] && d.image_file[0] == d.image_file[2]);
        CHECK(strcmp(ml_strtab_get(&d.concepts, (size_t)d.image_concept[0]), "aardvark") == 0);
        CHECK(strcmp(ml_strtab_get(&d.files, (size_t)d.image_file[1]), "banana_02.jpg") == 0);
        CHECK(d.image_concept[4] == -1); /* "plain.jpg": no folder */
        CHECK(strcmp(ml_strtab_get(&d.files, (size_t)d.image_file[4]), "plain.jpg") == 0);
        CHECK(d.image_concept[5] == -1); /* "stimuli//x.jpg": an empty folder name */
    }
    CHECK(d.concepts.n == 3); /* aardvark, banana, cello */
    CHECK(d.participant_names.n == 3 && d.n_participants == 3);
    if (d.participant_names.n == 3) {
        CHECK(strcmp(ml_strtab_get(&d.participant_names, 0), "p1") == 0);
        CHECK(strcmp(ml_strtab_get(&d.participant_names, 2), "p,3") == 0);
    }
    ml_human_data_free(&d);
}

/* Without the replay's columns the curves still work; the replay is told which are missing. */
static void test_replay_columns_missing_or_bad(void) {
    ml_human_data d;
    ml_fetch_code code;
    ml_err err = {{0}};
    CHECK(parse_str("participant,trial,dimension,correct\na,0,0,True\n", &d, &code, &err) == 0);
    CHECK(d.n_rows == 1 && !d.choice && !d.label && !d.image);
    CHECK_STR_CONTAINS(d.replay_problem, "test.csv has no columns \"choice\", "
                                         "\"true_category_binary\", \"image\"");
    ml_human_data_free(&d);
    CHECK(parse_str("participant,trial,dimension,correct,choice,true_category_binary\n"
                    "a,0,0,True,1,1\n",
                    &d, &code, &err) == 0);
    CHECK(d.choice && d.label && !d.image);
    CHECK_STR_CONTAINS(d.replay_problem, "no column \"image\":");
    ml_human_data_free(&d);
    /* a bad cell in an optional column: the parse succeeds, the replay gets the line */
    CHECK(parse_str("participant,trial,dimension,correct,choice,true_category_binary,image\n"
                    "a,0,0,True,1,1,s/c/f.jpg\n"
                    "a,1,0,True,left,1,s/c/g.jpg\n"
                    "a,2,0,True,1,maybe,s/c/h.jpg\n",
                    &d, &code, &err) == 0);
    CHECK(d.n_rows == 3 && d.choice && d.choice[1] == ML_HUMAN_NA);
    CHECK_STR_CONTAINS(d.replay_problem, "line 3: column \"choice\" is \"left\"");
    ml_human_data_free(&d);
}

/* Where an unclosed quote opened, found from libcsv's callbacks alone. */
static void test_unclosed_quote_lines(void) {
    const char *h = "participant,trial,dimension,correct\n";
    char buf[512];
#define ROWS(s) (snprintf(buf, sizeof buf, "%s%s", h, s), buf)
    /* a quoted newline closes on line 4, then a field opens there and never closes */
    expect_fail(ROWS("a,0,0,True\n\"a\nb\",1,0,\"True\n"), ML_FETCH_E_BAD_CSV, "line 4:",
                "never closed");
    /* opened as a record's first field, then blank and non-blank lines inside it */
    expect_fail(ROWS("a,0,0,True\n\r\n\"a\n\nb\nc\n"), ML_FETCH_E_BAD_CSV, "line 4:",
                "never closed");
    /* without a final newline */
    expect_fail(ROWS("a,0,0,True\na,1,0,\"True"), ML_FETCH_E_BAD_CSV, "line 3:", "never closed");
#undef ROWS
    /* a quoted newline that does close parses, and the row after it is counted */
    ml_human_data d;
    ml_fetch_code code;
    ml_err err = {{0}};
    CHECK(parse_str("participant,trial,dimension,correct\n\"a\nb\",0,0,True\nc,1,0,False\n", &d,
                    &code, &err) == 0);
    CHECK(d.n_rows == 2 && d.n_participants == 2);
    if (d.n_participants == 2)
        CHECK(strcmp(ml_strtab_get(&d.participant_names, 0), "a\nb") == 0);
    ml_human_data_free(&d);
}

/* The first of two columns with the same name is the one read (pandas renames the second). */
static void test_duplicate_column_first_wins(void) {
    ml_human_data d;
    ml_fetch_code code;
    ml_err err;
    CHECK(parse_str("participant,trial,dimension,correct,correct\na,0,0,True,False\n", &d, &code,
                    &err) == 0);
    CHECK(d.n_rows == 1 && d.correct[0] == 1);
    ml_human_data_free(&d);
}

/* Every prefix and every single-byte change of a real-looking file either parses or fails
 * with a message; none may crash or read out of bounds (run under ASan). */
static void test_damaged_inputs_never_crash(void) {
    size_t len;
    char *buf = fixture("messy.csv", &len);
    REQUIRE_MSG(buf != NULL, "cannot read %s", FIXTURE("human/messy.csv"));
    size_t n = len < 6000 ? len : 6000;
    char *copy = malloc(n);
    int ok = 0, failed = 0;
    for (size_t cut = 0; cut <= n; cut += 7) {
        memcpy(copy, buf, cut);
        ml_human_data d;
        ml_fetch_code code;
        ml_err err = {{0}};
        if (ml_human_csv_parse(copy, cut, "cut.csv", &d, &code, &err) == 0) {
            ok++;
            ml_human_data_free(&d);
        } else {
            failed++;
            CHECK(err.msg[0] != 0 && code != ML_FETCH_OK);
        }
    }
    static const char junk[] = {'"', ',', '\n', '\r', '\0', 'x', '9', ' '};
    for (size_t pos = 0; pos < n; pos += 11) {
        memcpy(copy, buf, n);
        copy[pos] = junk[pos % sizeof junk];
        ml_human_data d;
        ml_fetch_code code;
        ml_err err = {{0}};
        if (ml_human_csv_parse(copy, n, "flip.csv", &d, &code, &err) == 0) ml_human_data_free(&d);
        else CHECK(err.msg[0] != 0);
    }
    CHECK(ok > 0 && failed > 0);
    free(copy);
    free(buf);
}

int main(void) {
    RUN(test_synthetic_matches_pandas_counts);
    RUN(test_messy_equals_clean);
    RUN(test_broken_fixtures_name_the_line);
    RUN(test_accepted_spellings);
    RUN(test_rejections);
    RUN(test_duplicate_column_first_wins);
    RUN(test_replay_columns);
    RUN(test_replay_columns_missing_or_bad);
    RUN(test_unclosed_quote_lines);
    RUN(test_damaged_inputs_never_crash);
    return UT_DONE();
}
