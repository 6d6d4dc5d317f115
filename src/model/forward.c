/* The eval-mode forward pass (MODEL.md section 2), in the manner of llm.c's train_gpt2.c: one
 * plain function per operation over all B*S rows at once. The linears are single cblas_sgemm
 * calls (row-major, W^T); everything else runs on the workspace's thread pool, with kernels
 * written on GCC vector types and compiled for AVX-512, AVX2+FMA and baseline x86-64, picked
 * at load time (the build itself is generic x86-64).
 *
 * Numerics follow torch's CPU kernels where the order matters: LayerNorm as
 * (x * rstd - mean * rstd) * w + b with the biased variance, GELU as
 * x * 0.5 * (1 + erf(x / sqrt(2))) with ATen's vectorised erf (Abramowitz-Stegun 7.1.26, max
 * abs error 1.5e-7), attention scores divided by sqrt(d) before a max-subtracted softmax that
 * multiplies by 1/sum. */
#include "metalign/blas.h"
#include "metalign/model.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/pool.h"

/* cblas.h includes <complex.h>: I is the imaginary unit here. The vector types below are
 * only passed between always-inline functions, so their ABI does not matter. */
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

/* ------------------------------------------------------------------------------------------
 * Workspace */

struct ml_workspace {
    int max_rows, max_seq;
    int C, F, H; /* hidden size, MLP width, heads */
    float *h;    /* (R, C) the residual stream */
    float *act;  /* (R, C) a LayerNorm output, then the attention output */
    float *wide; /* (R, max(3C, F)) q|k|v, then the MLP hidden layer */
    float *scratch; /* per thread: attention tiles */
    size_t scratch_floats;
    int Sp, dp; /* row length of the key tiles (> max_seq rounded up to VL); head size
                 * rounded up to VL */
    float *rope_cx, *rope_sx; /* RoPE: (max_seq, dp) cos, cos and -sin, sin per pair */
    ml_pool *pool;
    int threads; /* for this call: min(pool size, OpenBLAS threads) */
};

static float *alloc_floats(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* The model's (position, pair) tables expanded to one entry per element of a head, zero
 * beyond the head size, so the attention kernel rotates q and k a vector at a time. */
static int rope_tables(ml_workspace *ws, const ml_model *m) {
    int half = ws->C / ws->H / 2, dp = ws->dp;
    ws->rope_cx = alloc_floats((size_t)ws->max_seq * dp);
    ws->rope_sx = alloc_floats((size_t)ws->max_seq * dp);
    if (!ws->rope_cx || !ws->rope_sx) return -1;
    for (int t = 0; t < ws->max_seq; t++) {
        float *cx = ws->rope_cx + (size_t)t * dp, *sx = ws->rope_sx + (size_t)t * dp;
        memset(cx, 0, sizeof(float) * (size_t)dp);
        memset(sx, 0, sizeof(float) * (size_t)dp);
        for (int i = 0; i < half; i++) {
            cx[2 * i] = cx[2 * i + 1] = m->rope_cos[(size_t)t * half + i];
            sx[2 * i] = -m->rope_sin[(size_t)t * half + i];
            sx[2 * i + 1] = m->rope_sin[(size_t)t * half + i];
        }
    }
    return 0;
}

ml_workspace *ml_workspace_new(const ml_model *m, int max_rows, int max_seq, ml_err *err) {
    if (max_rows < 1 || max_seq < 1)
        return ml_errp(err, "workspace: max_rows (%d) and max_seq (%d) must be positive",
                       max_rows, max_seq);
    if (m->cfg.pos == ML_POS_LEARNED && max_seq > m->cfg.max_seq_len) max_seq = m->cfg.max_seq_len;
    if (m->cfg.pos == ML_POS_ROPE && max_seq > m->rope_len) max_seq = m->rope_len;
    if (max_seq > max_rows) max_seq = max_rows;
    ml_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return ml_errp(err, "out of memory");
    ws->max_rows = max_rows;
    ws->max_seq = max_seq;
    ws->C = m->cfg.hidden_size;
    ws->F = m->cfg.intermediate_size;
    ws->H = m->cfg.num_heads;
    int d = ws->C / ws->H;
    /* An odd number of cache lines per row of Kt and P keeps their columns in distinct
     * cache sets. */
    ws->Sp = (max_seq + 2 * VL - 1) / (2 * VL) * (2 * VL) + VL;
    ws->dp = (d + VL - 1) / VL * VL;
    int threads = ml_blas_threads();
    if (threads < 1) threads = 1;
    size_t R = (size_t)max_rows, C = (size_t)ws->C;
    size_t wide = 3 * C > (size_t)ws->F ? 3 * C : (size_t)ws->F;
    /* Kt (dp, Sp), V (Sp, dp), P (4, Sp), O (4, dp), Q (Sp, dp), in whole cache lines */
    ws->scratch_floats = (3 * (size_t)ws->dp * ws->Sp + 4 * (size_t)ws->Sp +
                          4 * (size_t)ws->dp + 15) / 16 * 16;
    ws->h = alloc_floats(R * C);
    ws->act = alloc_floats(R * C);
    ws->wide = alloc_floats(R * wide);
    ws->scratch = alloc_floats(ws->scratch_floats * (size_t)threads);
    ws->pool = ml_pool_new(threads, err);
    int tables_ok = m->cfg.pos != ML_POS_ROPE || rope_tables(ws, m) == 0;
    if (!ws->h || !ws->act || !ws->wide || !ws->scratch || !ws->pool || !tables_ok) {
        ml_workspace_free(ws);
        return ml_errf(err, "out of memory for a forward-pass workspace of %d rows", max_rows),
               NULL;
    }
    return ws;
}

void ml_workspace_free(ml_workspace *ws) {
    if (!ws) return;
    ml_pool_free(ws->pool);
    free(ws->rope_cx);
    free(ws->rope_sx);
    free(ws->h);
    free(ws->act);
    free(ws->wide);
    free(ws->scratch);
    free(ws);
}

/* Splits n rows into a few chunks per thread, so a thread that was preempted does not hold
 * up the others. */
static long row_grain(const ml_workspace *ws, long n) {
    long g = n / (4L * ws->threads);
    return g < 1 ? 1 : g;
}

/* ------------------------------------------------------------------------------------------
 * Operations (shapes in the comments; N = B*S rows) */

typedef struct bias_ctx {
    float *out;
    const float *bias;
    int OC, accumulate;
} bias_ctx;

/* out (N, OC) = bias in every row, or += when accumulating */
static void bias_rows(void *vctx, long begin, long end, int tid) {
    const bias_ctx *c = vctx;
    for (long r = begin; r < end; r++) {
        float *o = c->out + r * c->OC;
        if (c->accumulate)
            for (int i = 0; i < c->OC; i++) o[i] += c->bias[i];
        else
            memcpy(o, c->bias, sizeof(float) * (size_t)c->OC);
    }
    (void)tid;
}

/* out (N, OC) = inp (N, IC) @ w (OC, IC)^T (+ bias); accumulate: out += instead of out =.
 * w may be a column slice of a wider matrix (row stride ldw). The bias goes in first, so
 * the GEMM adds onto it (beta = 1); ws NULL: no thread pool for that. */
static void matmul_forward(ml_workspace *ws, float *out, const float *inp, const float *w,
                           int ldw, const float *bias, int N, int IC, int OC, int accumulate) {
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias) {
        bias_ctx bc = {out, bias, OC, accumulate};
        if (ws)
            ml_pool_for(ws->pool, ws->threads, N, row_grain(ws, N), bias_rows, &bc);
        else
            bias_rows(&bc, 0, N, 0);
        beta = 1.0f;
    }
    if (IC == 0) {
        if (!accumulate && !bias) memset(out, 0, sizeof(float) * (size_t)N * (size_t)OC);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, ldw, beta,
                out, OC);
}

typedef struct ln_ctx {
    float *out;
    const float *inp, *w, *b;
    int C;
} ln_ctx;

/* out (N, C) = LayerNorm(inp (N, C)) * w + b, eps 1e-5, biased variance */
KERNEL static void layernorm_rows(void *vctx, long begin, long end, int tid) {
    const ln_ctx *x = vctx;
    int C = x->C, Cv = C / VL * VL;
    for (long r = begin; r < end; r++) {
        const float *in = x->inp + r * C;
        float *out = x->out + r * C;
        vf16 acc = {0};
        float tail = 0;
        for (int i = 0; i < Cv; i += VL) acc += vld(in + i);
        for (int i = Cv; i < C; i++) tail += in[i];
        float mean = (vhsum(acc) + tail) / (float)C;
        acc = (vf16){0};
        tail = 0;
        for (int i = 0; i < Cv; i += VL) {
            vf16 dv = vld(in + i) - mean;
            acc += dv * dv;
        }
        for (int i = Cv; i < C; i++) tail += (in[i] - mean) * (in[i] - mean);
        float var = (vhsum(acc) + tail) / (float)C;
        float rstd = 1.0f / sqrtf(var + 1e-5f);
        float shift = -rstd * mean;
        for (int i = 0; i < Cv; i += VL)
            vst(out + i, (vld(in + i) * rstd + shift) * vld(x->w + i) + vld(x->b + i));
        for (int i = Cv; i < C; i++) out[i] = (in[i] * rstd + shift) * x->w[i] + x->b[i];
    }
    (void)tid;
}

static void layernorm_forward(ml_workspace *ws, float *out, const float *inp, const float *w,
                              const float *b, int N, int C) {
    ln_ctx x = {out, inp, w, b, C};
    ml_pool_for(ws->pool, ws->threads, N, row_grain(ws, N), layernorm_rows, &x);
}

typedef struct ew_ctx {
    float *x;
    const float *y;
    int n; /* row length */
} ew_ctx;

/* x (n) = gelu(x), exact erf form */
KERNEL static void gelu_chunk(void *vctx, long begin, long end, int tid) {
    const ew_ctx *c = vctx;
    float *x = c->x;
    long i = begin;
    for (; i + VL <= end; i += VL) {
        vf16 v = vld(x + i);
        vst(x + i, v * 0.5f * (1.0f + verf(v * 0.70710678118654752440f)));
    }
    if (i < end) {
        float buf[VL] = {0};
        memcpy(buf, x + i, sizeof(float) * (size_t)(end - i));
        vf16 v = vld(buf);
        vst(buf, v * 0.5f * (1.0f + verf(v * 0.70710678118654752440f)));
        memcpy(x + i, buf, sizeof(float) * (size_t)(end - i));
    }
    (void)tid;
}

static void gelu_forward(ml_workspace *ws, float *x, long n) {
    ew_ctx c = {x, NULL, 0};
    long grain = (row_grain(ws, n) + VL - 1) / VL * VL;
    ml_pool_for(ws->pool, ws->threads, n, grain, gelu_chunk, &c);
}

typedef struct pos_ctx {
    float *h;
    const float *pos;
    int S, C;
} pos_ctx;

/* h (N, C) += pos[t] for the row's position t */
static void positions_rows(void *vctx, long begin, long end, int tid) {
    const pos_ctx *c = vctx;
    for (long r = begin; r < end; r++) {
        float *h = c->h + r * c->C;
        const float *p = c->pos + (r % c->S) * c->C;
        for (int i = 0; i < c->C; i++) h[i] += p[i];
    }
    (void)tid;
}

/* Attention of one (sequence, head). q and k are rotated (RoPE) while they are copied into
 * the tiles, so they make one trip from memory: q into Q (S, dp), k transposed into Kt (d, Sp)
 * so 16 keys fill a vector. Then tiles of 4 queries: scores against all earlier keys,
 * softmax, P @ V. */
typedef struct att_ctx {
    float *out;       /* (N, C) */
    const float *qkv; /* (N, 3C) */
    const float *cx, *sx; /* RoPE tables expanded per element (max_seq, dp), or NULL */
    int S, C, H;
    float *scratch;
    size_t scratch_floats;
    int Sp, dp;
} att_ctx;

/* Transposes 16 rows of 16 floats in registers: 4 butterfly stages, stage k swapping bit k
 * of the row and column indices. */
VINLINE void transpose16(vf16 r[16]) {
#define TRANSPOSE_STAGE(m, LO, HI)                                                           \
    for (int i = 0; i < 16; i++) {                                                           \
        if (i & (m)) continue;                                                               \
        vf16 a = r[i], b = r[i | (m)];                                                       \
        r[i] = __builtin_shufflevector(a, b, LO);                                            \
        r[i | (m)] = __builtin_shufflevector(a, b, HI);                                      \
    }
#define L(...) __VA_ARGS__
    TRANSPOSE_STAGE(1, L(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
                    L(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))
    TRANSPOSE_STAGE(2, L(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
                    L(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
    TRANSPOSE_STAGE(4, L(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
                    L(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
    TRANSPOSE_STAGE(8, L(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
                    L(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
#undef L
#undef TRANSPOSE_STAGE
}

/* Lanes [i, i + VL) of a row of d floats starting at x, rotated by the expanded tables
 * (x * cx + swap(x) * sx, swap exchanging the two elements of each pair) when cx is set;
 * lanes at or beyond d are 0. Reading past d stays inside the qkv row (q and k are followed
 * by k and v). */
VINLINE vf16 load_rotated(const float *x, int i, int d, const float *cx, const float *sx) {
    const vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    vf16 v = vld(x + i);
    if (cx) return v * vld(cx + i) + __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14) * vld(sx + i);
    return vsel(lane + i < d, v, vsplat(0.0f));
}

/* P (4, Sp)[:, 0:nv*VL] = q rows (4, d) @ Kt (d, Sp)[:, 0:nv*VL]: pairs of key vectors
 * (4 x 2 accumulators keep both FMA ports busy), then a single one if nv is odd. */
VINLINE void att_scores(float *P, const float *const q[4], const float *Kt, int Sp, int d,
                        int nv) {
    int jv = 0;
    for (; jv + 2 <= nv; jv += 2) {
        vf16 a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0},
             a31 = {0};
        const float *kt = Kt + jv * VL;
        for (int k = 0; k < d; k++) {
            vf16 k0 = vld(kt + (size_t)k * Sp), k1 = vld(kt + (size_t)k * Sp + VL);
            float q0 = q[0][k], q1 = q[1][k], q2 = q[2][k], q3 = q[3][k];
            a00 += q0 * k0;
            a01 += q0 * k1;
            a10 += q1 * k0;
            a11 += q1 * k1;
            a20 += q2 * k0;
            a21 += q2 * k1;
            a30 += q3 * k0;
            a31 += q3 * k1;
        }
        float *p = P + jv * VL;
        vst(p, a00);
        vst(p + VL, a01);
        vst(p + Sp, a10);
        vst(p + Sp + VL, a11);
        vst(p + 2 * Sp, a20);
        vst(p + 2 * Sp + VL, a21);
        vst(p + 3 * Sp, a30);
        vst(p + 3 * Sp + VL, a31);
    }
    if (jv < nv) {
        vf16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        const float *kt = Kt + jv * VL;
        for (int k = 0; k < d; k++) {
            vf16 k0 = vld(kt + (size_t)k * Sp);
            a0 += q[0][k] * k0;
            a1 += q[1][k] * k0;
            a2 += q[2][k] * k0;
            a3 += q[3][k] * k0;
        }
        float *p = P + jv * VL;
        vst(p, a0);
        vst(p + Sp, a1);
        vst(p + 2 * Sp, a2);
        vst(p + 3 * Sp, a3);
    }
}

/* row[0:nv*VL] = softmax(row[0:t+1] * scale), zero beyond t. (torch divides by sqrt(d);
 * multiplying by its reciprocal is exact for the usual power-of-4 head sizes and within an
 * ulp otherwise, and a tenth of the cost.) */
VINLINE void att_softmax(float *row, int t, int nv, float scale) {
    const vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    int last = (nv - 1) * VL; /* only the last vector reaches past t */
    vf16 mx = vsplat(-INFINITY);
    for (int j = 0; j < last; j += VL) {
        vf16 x = vld(row + j) * scale;
        vst(row + j, x);
        mx = vmax(x, mx);
    }
    vf16 xl = vsel(lane + last <= t, vld(row + last) * scale, vsplat(-INFINITY));
    vst(row + last, xl);
    float m = vhmax(vmax(xl, mx));
    vf16 sum = {0};
    for (int j = 0; j < nv * VL; j += VL) {
        vf16 e = vexp(vld(row + j) - m);
        vst(row + j, e);
        sum += e;
    }
    float inv = 1.0f / vhsum(sum);
    for (int j = 0; j < nv * VL; j += VL) vst(row + j, vld(row + j) * inv);
}

/* O (4, dp)[:, dc:dc+NV*VL] = P (4, Sp)[:, 0:nk] @ V (nk, dp)[:, dc:dc+NV*VL] */
VINLINE void att_pv(float *O, const float *P, int Sp, const float *V, int dp, int nk, int dc,
                    const int NV) {
    vf16 acc[4][4] = {{{0}}};
    for (int j = 0; j < nk; j++) {
        const float *v = V + (size_t)j * dp + dc;
        vf16 v0 = vld(v), v1 = NV > 1 ? vld(v + VL) : v0, v2 = NV > 2 ? vld(v + 2 * VL) : v0,
             v3 = NV > 3 ? vld(v + 3 * VL) : v0;
        for (int r = 0; r < 4; r++) {
            float p = P[r * Sp + j];
            acc[r][0] += p * v0;
            if (NV > 1) acc[r][1] += p * v1;
            if (NV > 2) acc[r][2] += p * v2;
            if (NV > 3) acc[r][3] += p * v3;
        }
    }
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < NV; i++) vst(O + r * dp + dc + i * VL, acc[r][i]);
}

KERNEL static void attention_head(float *out, const float *qkv, const float *next,
                                  const float *cx, const float *sx, int S, int C, int d,
                                  float *scratch, int Sp, int dp) {
    size_t ld = 3 * (size_t)C;
    const float *q = qkv, *k = qkv + C, *v = qkv + 2 * C;
    float *Kt = scratch, *V = Kt + (size_t)dp * Sp, *P = V + (size_t)Sp * dp, *O = P + 4 * Sp;
    float *Q = O + 4 * dp;
    int Sk = (S + VL - 1) / VL * VL; /* keys the tiles may touch */
    for (int j = 0; j < S; j++) {
        const float *cxj = cx ? cx + (size_t)j * dp : NULL, *sxj = cx ? sx + (size_t)j * dp : NULL;
        for (int i = 0; i < dp; i += VL)
            vst(Q + (size_t)j * dp + i, load_rotated(q + j * ld, i, d, cxj, sxj));
    }
    for (int j0 = 0; j0 < Sk; j0 += VL) {
        for (int i = 0; i < dp; i += VL) {
            vf16 blk[16];
            for (int r = 0; r < 16; r++) {
                int j = j0 + r;
                const float *cxj = cx ? cx + (size_t)j * dp : NULL;
                const float *sxj = cx ? sx + (size_t)j * dp : NULL;
                blk[r] = j < S ? load_rotated(k + j * ld, i, d, cxj, sxj) : vsplat(0.0f);
            }
            transpose16(blk);
            for (int c = 0; c < 16 && i + c < d; c++) vst(Kt + (size_t)(i + c) * Sp + j0, blk[c]);
        }
    }
    int dv = d / VL * VL;
    for (int j = 0; j < S; j++) {
        const float *vr = v + j * ld;
        float *vo = V + (size_t)j * dp;
        for (int i = 0; i < dv; i += VL) vst(vo + i, vld(vr + i));
        for (int i = dv; i < dp; i++) vo[i] = i < d ? vr[i] : 0.0f;
    }
    float scale = 1.0f / (float)sqrt((double)d);
    for (int t0 = 0; t0 < S; t0 += 4) {
        int nr = S - t0 < 4 ? S - t0 : 4, nk = t0 + nr, nv = (nk + VL - 1) / VL;
        /* The next head's q, k and v come from memory (the GEMM that wrote them left them far
         * from this core); ask for them while this one computes. */
        for (int r = t0; next && r < t0 + nr; r++)
            for (int part = 0; part < 3; part++)
                for (int i = 0; i < d; i += 16)
                    __builtin_prefetch(next + (size_t)r * ld + (size_t)part * C + i, 0, 2);
        const float *qr[4];
        for (int r = 0; r < 4; r++) qr[r] = Q + (size_t)(t0 + (r < nr ? r : nr - 1)) * dp;
        att_scores(P, qr, Kt, Sp, d, nv);
        for (int r = 0; r < nr; r++) att_softmax(P + r * Sp, t0 + r, nv, scale);
        for (int r = nr; r < 4; r++) memset(P + r * Sp, 0, sizeof(float) * (size_t)nk);
        int dc = 0;
        for (; dc + 4 * VL <= dp; dc += 4 * VL) att_pv(O, P, Sp, V, dp, nk, dc, 4);
        switch ((dp - dc) / VL) {
        case 3: att_pv(O, P, Sp, V, dp, nk, dc, 3); break;
        case 2: att_pv(O, P, Sp, V, dp, nk, dc, 2); break;
        case 1: att_pv(O, P, Sp, V, dp, nk, dc, 1); break;
        default: break;
        }
        for (int r = 0; r < nr; r++)
            memcpy(out + (size_t)(t0 + r) * C, O + r * dp, sizeof(float) * (size_t)d);
    }
}

static void attention_tasks(void *vctx, long begin, long end, int tid) {
    const att_ctx *c = vctx;
    int d = c->C / c->H;
    float *scratch = c->scratch + (size_t)tid * c->scratch_floats;
    for (long task = begin; task < end; task++) {
        long b = task / c->H, h = task % c->H;
        size_t row0 = (size_t)b * c->S;
        const float *next = NULL;
        if (task + 1 < end) {
            long nb = (task + 1) / c->H, nh = (task + 1) % c->H;
            next = c->qkv + (size_t)nb * c->S * 3 * c->C + nh * d;
        }
        attention_head(c->out + row0 * c->C + h * d, c->qkv + row0 * 3 * c->C + h * d, next,
                       c->cx, c->sx, c->S, c->C, d, scratch, c->Sp, c->dp);
    }
}

/* out (B, S, C) = concat over heads of causal softmax(q k^T / sqrt(d)) v, from qkv (B, S, 3C),
 * q and k rotated first in the RoPE variant. S > 1 (forward_blocks handles S = 1). */
static void attention_forward(ml_workspace *ws, const ml_model *m, float *out, const float *qkv,
                              int B, int S) {
    int C = ws->C;
    int rope = m->cfg.pos == ML_POS_ROPE;
    att_ctx c = {out, qkv, rope ? ws->rope_cx : NULL, rope ? ws->rope_sx : NULL, S, C, ws->H,
                 ws->scratch, ws->scratch_floats, ws->Sp, ws->dp};
    long tasks = (long)B * ws->H, grain = tasks / (8L * ws->threads);
    ml_pool_for(ws->pool, ws->threads, tasks, grain < 1 ? 1 : grain, attention_tasks, &c);
}

typedef struct head_ctx {
    float *logits;
    const float *x, *w, *b;
    int C;
} head_ctx;

/* logits (N) = x (N, C) @ w (C) + b */
KERNEL static void head_rows(void *vctx, long begin, long end, int tid) {
    const head_ctx *c = vctx;
    int C = c->C, Cv = C / VL * VL;
    for (long r = begin; r < end; r++) {
        const float *x = c->x + r * C;
        vf16 acc = {0};
        float tail = 0;
        for (int i = 0; i < Cv; i += VL) acc += vld(x + i) * vld(c->w + i);
        for (int i = Cv; i < C; i++) tail += x[i] * c->w[i];
        c->logits[r] = vhsum(acc) + tail + (c->b ? c->b[0] : 0.0f);
    }
    (void)tid;
}

typedef struct copy_ctx {
    float *dst;
    const float *src;
} copy_ctx;

static void copy_chunk(void *vctx, long begin, long end, int tid) {
    const copy_ctx *c = vctx;
    memcpy(c->dst + begin, c->src + begin, sizeof(float) * (size_t)(end - begin));
    (void)tid;
}

static void copy_forward(ml_workspace *ws, float *dst, const float *src, long n) {
    copy_ctx c = {dst, src};
    ml_pool_for(ws->pool, ws->threads, n, row_grain(ws, n), copy_chunk, &c);
}

/* ------------------------------------------------------------------------------------------
 * The pass */

static int check_call(const ml_model *m, const ml_workspace *ws, int B, int S, ml_err *err) {
    if (ws->C != m->cfg.hidden_size || ws->F != m->cfg.intermediate_size ||
        ws->H != m->cfg.num_heads)
        return ml_errf(err, "forward: the workspace was made for another model");
    if (B < 1 || S < 1)
        return ml_errf(err, "forward: %d sequences of %d trials; both must be positive", B, S);
    if (S > ws->max_seq)
        return ml_errf(err, "forward: sequences of %d trials are longer than the %d this %s "
                            "allows", S, ws->max_seq,
                       m->cfg.pos == ML_POS_LEARNED && S > m->cfg.max_seq_len
                           ? "model's learned positions" : "workspace");
    if ((long)B * S > ws->max_rows)
        return ml_errf(err, "forward: %d x %d rows exceed the workspace's %d", B, S,
                       ws->max_rows);
    return 0;
}

/* Outputs whose computation is needed: the last block whose output is asked for, or all of
 * them when the logits are. */
static int blocks_needed(const ml_model *m, float **outs, const float *logits) {
    int L = m->cfg.num_layers;
    if (logits) return L;
    int need = 0;
    for (int l = 0; outs && l < L; l++)
        if (outs[1 + l]) need = l + 1;
    return need;
}

/* Runs the blocks on ws->h (the embedding output, positions not yet added). */
static void forward_blocks(const ml_model *m, ml_workspace *ws, int B, int S, float **outs,
                           float *logits) {
    const ml_model_config *cfg = &m->cfg;
    const ml_params *p = &m->params;
    int N = B * S, C = cfg->hidden_size, F = cfg->intermediate_size, C3 = 3 * C;
    size_t NC = (size_t)N * C;
    if (outs && outs[0]) copy_forward(ws, outs[0], ws->h, (long)NC);
    if (cfg->pos == ML_POS_LEARNED) {
        pos_ctx pc = {ws->h, p->pos, S, C};
        ml_pool_for(ws->pool, ws->threads, N, row_grain(ws, N), positions_rows, &pc);
    }
    int L = blocks_needed(m, outs, logits);
    for (int l = 0; l < L; l++) {
        size_t lC = (size_t)l * C, lF = (size_t)l * F;
        /* h = h + attention(LayerNorm(h)) @ Wo^T: the GEMM adds onto h */
        if (S == 1) {
            /* A length-1 sequence attends to itself only: the attention output is v exactly,
             * and v's projection then Wo's is one linear map, vo_w = Wo Wv (ml_model), so
             * h += LayerNorm(h) @ vo_w^T + vo_b is the whole attention block. */
            layernorm_forward(ws, ws->act, ws->h, p->ln1_w + lC, p->ln1_b + lC, N, C);
            matmul_forward(ws, ws->h, ws->act, m->vo_w + lC * C, C,
                           m->vo_b ? m->vo_b + lC : NULL, N, C, C, 1);
        } else {
            layernorm_forward(ws, ws->act, ws->h, p->ln1_w + lC, p->ln1_b + lC, N, C);
            matmul_forward(ws, ws->wide, ws->act, p->qkv_w + lC * C3, C,
                           p->qkv_b ? p->qkv_b + lC * 3 : NULL, N, C, C3, 0);
            attention_forward(ws, m, ws->act, ws->wide, B, S);
            matmul_forward(ws, ws->h, ws->act, p->o_w + lC * C, C, p->o_b ? p->o_b + lC : NULL,
                           N, C, C, 1);
        }
        /* h = h + gelu(LayerNorm(h) @ W1^T) @ W2^T */
        layernorm_forward(ws, ws->act, ws->h, p->ln2_w + lC, p->ln2_b + lC, N, C);
        matmul_forward(ws, ws->wide, ws->act, p->fc1_w + lF * C, C,
                       p->fc1_b ? p->fc1_b + lF : NULL, N, C, F, 0);
        gelu_forward(ws, ws->wide, (long)N * F);
        matmul_forward(ws, ws->h, ws->wide, p->fc2_w + lC * F, F,
                       p->fc2_b ? p->fc2_b + lC : NULL, N, F, C, 1);
        if (outs && outs[1 + l]) copy_forward(ws, outs[1 + l], ws->h, (long)NC);
    }
    if (logits) {
        layernorm_forward(ws, ws->act, ws->h, p->lnf_w, p->lnf_b, N, C);
        head_ctx hc = {logits, ws->act, p->head_w, p->head_b, C};
        ml_pool_for(ws->pool, ws->threads, N, row_grain(ws, N), head_rows, &hc);
    }
}

static void begin_call(ml_workspace *ws) {
    int t = ml_blas_threads();
    ws->threads = t < 1 ? 1 : t > ml_pool_size(ws->pool) ? ml_pool_size(ws->pool) : t;
}

int ml_forward(const ml_model *m, ml_workspace *ws, const float *inp, int B, int S,
               float **outs, float *logits, ml_err *err) {
    if (check_call(m, ws, B, S, err)) return -1;
    begin_call(ws);
    int N = B * S, C = m->cfg.hidden_size;
    if (m->cfg.embedding)
        matmul_forward(ws, ws->h, inp, m->params.emb_w, m->cfg.input_size, m->params.emb_b, N,
                       m->cfg.input_size, C, 0);
    else
        copy_forward(ws, ws->h, inp, (long)N * C);
    forward_blocks(m, ws, B, S, outs, logits);
    return 0;
}

int ml_forward_from_embedding(const ml_model *m, ml_workspace *ws, const float *h0, int B,
                              int S, float **outs, float *logits, ml_err *err) {
    if (check_call(m, ws, B, S, err)) return -1;
    begin_call(ws);
    copy_forward(ws, ws->h, h0, (long)B * S * m->cfg.hidden_size);
    forward_blocks(m, ws, B, S, outs, logits);
    return 0;
}

int ml_embed_features(const ml_model *m, const float *x, int n, float *out, ml_err *err) {
    int C = m->cfg.hidden_size, In = m->cfg.input_size;
    if (n < 0) return ml_errf(err, "embed: negative item count %d", n);
    if (n == 0) return 0;
    if (!m->cfg.embedding) {
        for (long r = 0; r < n; r++) {
            out[r * C] = out[r * C + 1] = 0.0f;
            memcpy(out + r * C + 2, x + r * (C - 2), sizeof(float) * (size_t)(C - 2));
        }
        return 0;
    }
    matmul_forward(NULL, out, x, m->params.emb_w + 2, In, m->params.emb_b, n, In - 2, C, 0);
    return 0;
}

void ml_embed_episodes(const ml_model *m, const float *E, const int *items, const int *labels,
                       int B, int S, float *h0) {
    int C = m->cfg.hidden_size;
    for (long b = 0; b < B; b++) {
        for (long t = 0; t < S; t++) {
            float *o = h0 + (b * S + t) * C;
            const float *e = E + (size_t)items[b * S + t] * C;
            if (t == 0) {
                memcpy(o, e, sizeof(float) * (size_t)C);
                continue;
            }
            const float *lab = m->label_emb + (labels[b * S + t - 1] ? C : 0);
            for (int c = 0; c < C; c++) o[c] = e[c] + lab[c];
        }
    }
}
