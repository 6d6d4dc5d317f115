/* Unit tests of src/http/request.c: the validation vocabulary. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http/request.h"
#include "unit.h"

static void test_int_lists(void) {
    ml_response resp = {0};
    int *v = NULL, n = 0;
    CHECK(ml_int_list_text("0,1,2", "dims", 66, "the target has 66 dimensions", 66, &v, &n, &resp) == 0);
    CHECK(n == 3 && v[2] == 2);
    free(v);
    CHECK(ml_int_list_text("0,70", "dims", 66, "the target has 66 dimensions", 66, &v, &n, &resp) != 0);
    CHECK(resp.status == 400);
    CHECK_STR_CONTAINS(resp.body, "dims[1]=70 is out of range: the target has 66 dimensions (0..65)");
    ml_response_reset(&resp);
    CHECK(ml_int_list_text("0,,1", "dims", 66, "x", 66, &v, &n, &resp) != 0);
    CHECK_STR_CONTAINS(resp.body, "comma-separated");
    ml_response_reset(&resp);
    json_t *arr = json_pack("[i,s]", 1, "2");
    CHECK(ml_int_list_json(arr, "dims", 66, "x", 66, &v, &n, &resp) != 0);
    CHECK_STR_CONTAINS(resp.body, "dims[1] must be an integer");
    json_decref(arr);
    ml_response_reset(&resp);
}

static void test_body_validation(void) {
    static const char *const fields[] = {"a", "b", NULL};
    ml_request req = {.body = "{\"a\": 1, \"c\": 2}", .body_len = 16};
    ml_response resp = {0};
    json_t *doc = NULL;
    CHECK(ml_body_object(&req, fields, &doc, &resp) != 0);
    CHECK_STR_CONTAINS(resp.body, "unknown field \\\"c\\\"");
    ml_response_reset(&resp);
    req.body = "{\"a\": 1, \"a\": 2}";
    req.body_len = strlen(req.body);
    CHECK(ml_body_object(&req, fields, &doc, &resp) != 0); /* duplicate keys are refused */
    ml_response_reset(&resp);
    req.body = "{\"a\": 100.0, \"b\": 5}";
    req.body_len = strlen(req.body);
    CHECK(ml_body_object(&req, fields, &doc, &resp) == 0);
    long long a = 0, b = 0;
    /* integers are integers: 100.0 is refused with a hint, as items: [1.0] is */
    CHECK(ml_json_int(doc, "a", 1, 1000, &a, &resp) != 0 && a == 0);
    CHECK_STR_CONTAINS(resp.body, "a must be an integer (allowed 1..1000); write it without a "
                                  "decimal point");
    ml_response_reset(&resp);
    CHECK(ml_json_int(doc, "b", 10, 20, &b, &resp) != 0);
    CHECK_STR_CONTAINS(resp.body, "b=5 is out of range: allowed 10..20");
    json_decref(doc);
    ml_response_reset(&resp);
}

int main(void) {
    RUN(test_int_lists);
    RUN(test_body_validation);
    return UT_DONE();
}
