/* libFuzzer target: .npy / .npz from memory, then every row and a scattered selection. */
#include <stdint.h>
#include <stdlib.h>

#include "io/npy.h"
#include "io/textmat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ml_npmat m;
    ml_err err;
    if (ml_npmat_open_mem(&m, "fuzz", data, size, &err)) return 0;
    if (m.rows > 0 && m.cols > 0 && m.rows <= (1 << 20) / m.cols) {
        float *x = malloc((size_t)(m.rows * m.cols) * sizeof *x);
        if (x) {
            ml_npmat_read_rows(&m, NULL, (size_t)m.rows, x, &err);
            int64_t pick[4] = {m.rows - 1, 0, m.rows / 2, m.rows - 1};
            ml_npmat_read_rows(&m, pick, m.rows >= 4 ? 4 : 1, x, &err);
        }
        free(x);
    }
    ml_npmat_free(&m);
    return 0;
}
