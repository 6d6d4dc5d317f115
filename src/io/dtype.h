/* Element types of stored tensors and arrays, and their conversion to float32. */
#ifndef METALIGN_IO_DTYPE_H
#define METALIGN_IO_DTYPE_H

#include <stddef.h>

typedef enum ml_dtype {
    ML_F32,
    ML_F64,
    ML_F16,
    ML_BF16,
    ML_I64,
    ML_I32,
    ML_I16,
    ML_I8,
    ML_U8,
    ML_BOOL,
    ML_C64,  /* complex64 (torch.ComplexFloatStorage), e.g. the saved RoPE buffer freqs_cis */
    ML_C128,
    ML_DTYPE_COUNT
} ml_dtype;

size_t ml_dtype_size(ml_dtype dt);
const char *ml_dtype_name(ml_dtype dt); /* "float32", "bfloat16", ... */

/* Converts n little-endian elements of a real floating dtype (f32/f64/f16/bf16) to float32.
 * Returns -1 for integer, bool and complex dtypes. src need not be aligned. */
int ml_convert_to_f32(float *dst, const void *src, ml_dtype dt, size_t n);

#endif
