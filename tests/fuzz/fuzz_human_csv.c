/* libFuzzer target: the human CSV parser, then the curves over what it accepted. */
#include <stdint.h>
#include <stdlib.h>

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
    if (ml_human_curves_compute(&d, max_trial < 0 ? 0 : max_trial, 1, 20, 95.0, &c, &err) == 0) {
        json_t *j = ml_human_curves_json(&c);
        json_decref(j);
        ml_human_curves_free(&c);
    }
    ml_human_data_free(&d);
    return 0;
}
