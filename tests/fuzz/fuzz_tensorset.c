/* libFuzzer target for checkpoints from memory (ml_checkpoint_open_mem): built twice, as
 * fuzz_torch (seeded with torch.save zips) and fuzz_safetensors (seeded with safetensors);
 * the content decides the parser. Every registered tensor is read back, so the storage
 * bounds checks are exercised too. */
#include <stdint.h>
#include <stdlib.h>

#include "io/checkpoint.h"
#include "io/tensorset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ml_tensorset ts;
    ml_err err;
    if (ml_checkpoint_open_mem(&ts, "fuzz", data, size, &err)) return 0;
    (void)ml_tensorset_meta(&ts, "num_attention_heads");
    for (size_t i = 0; i < ts.n_tensors; i++) {
        const ml_tensor *t = &ts.tensors[i];
        int64_t n = ml_tensor_numel(t);
        if (n < 0 || n > (1 << 22)) continue;
        float *dst = malloc((size_t)(n ? n : 1) * sizeof *dst);
        if (dst) ml_tensorset_read_f32(&ts, t, dst, &err);
        free(dst);
        (void)ml_tensorset_find(&ts, t->name);
    }
    ml_tensorset_free(&ts);
    return 0;
}
