/* libFuzzer target: the text parsers on the same bytes (SPoSE matrix, id list, image list),
 * then the alignment of the parsed ids with the parsed images. */
#include <stdint.h>
#include <stdlib.h>

#include "io/npy.h"
#include "io/textmat.h"
#include "data/things.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    ml_err err;
    float *y = NULL;
    int64_t rows, cols;
    if (ml_textmat_parse("fuzz", text, size, &y, &rows, &cols, &err) == 0) free(y);
    char **ids = NULL;
    size_t n_ids = 0;
    int have_ids = ml_idlist_parse("fuzz", text, size, &ids, &n_ids, &err) == 0;
    ml_imagelist l;
    if (ml_things_parse_list(&l, "fuzz", text, size, &err) == 0) {
        if (have_ids) {
            int64_t *r = malloc(n_ids * sizeof *r);
            if (r) ml_things_align(&l, "fuzz", ids, n_ids, "fuzz", r, &err);
            free(r);
        }
        ml_imagelist_free(&l);
    }
    ml_strv_free(ids, n_ids);
    return 0;
}
