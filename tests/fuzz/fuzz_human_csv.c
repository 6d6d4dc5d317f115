/* libFuzzer target: the human CSV parser, then the curves over what it accepted, rendered as
 * the API renders them (which must be valid JSON, NaN-free). */
#include <stdint.h>
#include <stdlib.h>

#include "http/render/render.h"
#include "metalign/human_csv.h"
#include "metalign/human_curves.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ml_human_data d;
    ml_fetch_code code;
    ml_err err;
    if (ml_human_csv_parse((const char *)data, size, "fuzz.csv", &d, &code, &err) != 0) return 0;
    ml_human_curves c;
    int max_trial = d.max_trial < 200 ? d.max_trial : 200;
    if (ml_human_curves_compute(&d, max_trial < 0 ? 0 : max_trial, 1, 20, &c, &err) == 0) {
        ml_human_status st = {.url = "fuzz.csv", .cached = 1};
        ml_buf out = {0};
        ml_jw w;
        ml_jw_init(&w, &out);
        ml_render_human_curves(&w, &c, &st);
        if (ml_jw_finish(&w) != 0) abort(); /* a non-finite value reached the answer */
        json_t *doc = json_loadb(out.data, out.len, 0, NULL);
        if (!doc) abort();
        json_decref(doc);
        ml_buf_free(&out);
        ml_human_curves_free(&c);
    }
    ml_human_data_free(&d);
    return 0;
}
