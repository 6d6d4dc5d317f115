/* GCC vector types and the inline kernels the forward passes are built on (private to
 * src/model/): 16-float vectors, horizontal sums and maxima, and torch's exp and erf.
 * Hot kernels are compiled once per instruction set (KERNEL) and picked at load time. */
#ifndef METALIGN_MODEL_VEC_H
#define METALIGN_MODEL_VEC_H

#include <stdint.h>
#include <string.h>

/* The vector types are only passed between always-inline functions, so their ABI does not
 * matter. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));
#define VL 16

/* Hot kernels: one clone per instruction set, and a*b+c contracted to FMA (ISO C mode turns
 * contraction off by default). */
#if defined(__clang__)
/* clang serves only the fuzz build: no per-ISA clones (clang rejects 512-bit vector
 * arguments in its AVX2 clone), and it contracts within expressions by default. */
#define KERNEL
#else
#define KERNEL                                                                               \
    __attribute__((target_clones("avx512f", "arch=haswell", "default"),                       \
                   optimize("fp-contract=fast")))
#endif
#define VINLINE static inline __attribute__((always_inline))

VINLINE vf16 vld(const float *p) {
    vf16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

VINLINE void vst(float *p, vf16 v) { memcpy(p, &v, sizeof v); }

VINLINE vf16 vsplat(float x) { return (vf16){0} + x; }

VINLINE vf16 vsel(vi16 mask, vf16 a, vf16 b) {
    return (vf16)(((vi16)a & mask) | ((vi16)b & ~mask));
}

/* Horizontal sum and max by halving (4 shuffles instead of 15 dependent scalar steps). */
VINLINE float vhsum(vf16 v) {
    v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    return v[0];
}

VINLINE vf16 vmax(vf16 a, vf16 b) { return vsel(a > b, a, b); }

VINLINE float vhmax(vf16 v) {
    v = vmax(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
    v = vmax(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
    v = vmax(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
    v = vmax(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    return v[0];
}

/* exp with Cephes' expf polynomial (about 1 ulp); 0 below the float range, as torch. */
VINLINE vf16 vexp(vf16 x) {
    vi16 under = x < -87.33654f;
    x = vsel(x > 88.0f, vsplat(88.0f), x);
    x = vsel(under, vsplat(-87.33654f), x);
    vf16 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    vf16 r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf16 p = vsplat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    vf16 y = p * r * r + r + 1.0f;
    vi16 e = (__builtin_convertvector(n, vi16) + 127) << 23;
    return vsel(under, vsplat(0.0f), y * (vf16)e);
}

/* ATen's Vectorized<float>::erf. */
VINLINE vf16 verf(vf16 x) {
    vi16 sign = (vi16)x & (int32_t)0x80000000;
    vf16 a = (vf16)((vi16)x ^ sign);
    vf16 t = 1.0f / (0.3275911f * a + 1.0f);
    vf16 r = 1.061405429f * t + -1.453152027f;
    r = r * t + 1.421413741f;
    r = r * t + -0.284496736f;
    r = r * t + 0.254829592f;
    vf16 e = -vexp(-(x * x));
    vf16 y = e * t * r + 1.0f;
    return (vf16)((vi16)y ^ sign);
}

#endif
