/* Element types of checkpoint tensors and their conversion to float32.
 *
 * The half-precision conversions reproduce torch's own (c10/util/Half.h, which uses Marat
 * Dukhan's FP16 library, and c10/util/BFloat16.h) bit for bit, including subnormals, infinities
 * and NaN payloads, so a checkpoint saved in f16/bf16 gives the weights torch would use. */
#include "io/dtype.h"

#include <stdint.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[ML_DTYPE_COUNT] = {
    [ML_F32] = {"float32", 4},  [ML_F64] = {"float64", 8},   [ML_F16] = {"float16", 2},
    [ML_BF16] = {"bfloat16", 2}, [ML_I64] = {"int64", 8},    [ML_I32] = {"int32", 4},
    [ML_I16] = {"int16", 2},    [ML_I8] = {"int8", 1},       [ML_U8] = {"uint8", 1},
    [ML_BOOL] = {"bool", 1},    [ML_C64] = {"complex64", 8}, [ML_C128] = {"complex128", 16},
};

size_t ml_dtype_size(ml_dtype dt) {
    return (unsigned)dt < ML_DTYPE_COUNT ? dtype_info[dt].size : 0;
}

const char *ml_dtype_name(ml_dtype dt) {
    return (unsigned)dt < ML_DTYPE_COUNT ? dtype_info[dt].name : "unknown";
}

static float f32_from_bits(uint32_t w) {
    float f;
    memcpy(&f, &w, sizeof f);
    return f;
}

static uint32_t f32_to_bits(float f) {
    uint32_t w;
    memcpy(&w, &f, sizeof w);
    return w;
}

/* fp16_ieee_to_fp32_value() of the FP16 library, as c10::detail uses it. */
static float f16_to_f32(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & UINT32_C(0x80000000);
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = UINT32_C(0xE0) << 23;
    const float exp_scale = 0x1.0p-112f;
    const float normalized = f32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = UINT32_C(126) << 23;
    const float magic_bias = 0.5f;
    const float denormalized = f32_from_bits((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = UINT32_C(1) << 27;
    return f32_from_bits(sign | (two_w < denormalized_cutoff ? f32_to_bits(denormalized)
                                                             : f32_to_bits(normalized)));
}

static uint16_t load_u16le(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

int ml_convert_to_f32(float *dst, const void *src, ml_dtype dt, size_t n) {
    const unsigned char *p = src;
    switch (dt) {
    case ML_F32:
        memmove(dst, src, n * sizeof(float));
        return 0;
    case ML_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, p + 8 * i, sizeof v);
            dst[i] = (float)v;
        }
        return 0;
    case ML_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(load_u16le(p + 2 * i));
        return 0;
    case ML_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = f32_from_bits((uint32_t)load_u16le(p + 2 * i) << 16);
        return 0;
    default:
        return -1;
    }
}
