/* The shared operations (model/ops.h); attention lives in attention.c. */
#include "model/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/gemm.h"
#include "model/vec.h"

long ml_row_grain(const ml_par *p, long n) {
    long g = n / (4L * (p ? p->threads : 1));
    return g < 1 ? 1 : g;
}

/* fn over [0, n) on the pool, or on the calling thread without one. */
static void run(const ml_par *p, long n, long grain, ml_par_fn fn, void *ctx) {
    if (p && p->pool)
        ml_pool_for(p->pool, p->threads, n, grain, fn, ctx);
    else if (n > 0)
        fn(ctx, 0, n, 0);
}

/* Buffers this large are asked to live on transparent huge pages (Linux with THP in its
 * "madvise" mode, Debian's default, uses them only when asked): one fault per 2 MB instead of
 * per 4 KB when a workspace is first written (~40 -> ~10 ms for a service's 88 MB), and
 * fewer TLB misses in the passes over the activations. */
#define ML_HUGE_BYTES ((size_t)2 << 20)

float *ml_alloc_floats(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    if (bytes < 2 * ML_HUGE_BYTES) return aligned_alloc(64, bytes ? bytes : 64);
    bytes = (bytes + ML_HUGE_BYTES - 1) & ~(ML_HUGE_BYTES - 1);
    float *p = aligned_alloc(ML_HUGE_BYTES, bytes);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice: refused is fine */
#endif
    return p;
}

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

/* The bias goes in first, so the GEMM adds onto it (beta = 1). */
void ml_op_matmul(const ml_par *p, float *out, const float *inp, const float *w, int ldw,
                  const float *bias, int N, int IC, int OC, int accumulate) {
    float *unpacked = NULL;
    if (p && p->gemm && IC > 0) {
        int rc = ml_gemm_run(p->gemm, p->threads, out, inp, w, ldw, bias, N, IC, OC, accumulate);
        if (rc == 0) return;
        if (rc == -2) {
            /* out is half written and cannot be recomputed: nothing sensible is left */
            fprintf(stderr, "metalign: oneDNN failed running a %d x %d x %d matmul it had "
                            "accepted; aborting\n", N, IC, OC);
            abort();
        }
        /* no primitive for it (out of memory?): OpenBLAS, on the loaded copy if it was kept */
        const ml_gemm_set *s = ml_gemm_ctx_set(p->gemm);
        if (ml_gemm_set_dropped(s, w, ldw, OC, IC)) {
            ml_err err;
            unpacked = ml_alloc_floats((size_t)OC * (size_t)IC);
            if (!unpacked || ml_gemm_unpack(s, w, ldw, OC, IC, unpacked, &err) != 0) {
                fprintf(stderr, "metalign: a %d x %d x %d matmul could run neither on oneDNN "
                                "nor on OpenBLAS (its weights are only in oneDNN's layout); "
                                "aborting\n", N, IC, OC);
                abort();
            }
            w = unpacked;
            ldw = IC;
        }
    }
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias) {
        bias_ctx bc = {out, bias, OC, accumulate};
        run(p, N, ml_row_grain(p, N), bias_rows, &bc);
        beta = 1.0f;
    }
    if (IC == 0) {
        if (!accumulate && !bias) memset(out, 0, sizeof(float) * (size_t)N * (size_t)OC);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, ldw, beta,
                out, OC);
    free(unpacked);
}

typedef struct ln_ctx {
    float *out;
    const float *inp, *w, *b;
    int C;
} ln_ctx;

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

void ml_op_layernorm(const ml_par *p, float *out, const float *inp, const float *w,
                     const float *b, int N, int C) {
    ln_ctx x = {out, inp, w, b, C};
    run(p, N, ml_row_grain(p, N), layernorm_rows, &x);
}

typedef struct ew_ctx {
    float *x;
} ew_ctx;

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

void ml_op_gelu(const ml_par *p, float *x, long n) {
    ew_ctx c = {x};
    long grain = (ml_row_grain(p, n) + VL - 1) / VL * VL;
    run(p, n, grain, gelu_chunk, &c);
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

void ml_op_copy(const ml_par *p, float *dst, const float *src, long n) {
    copy_ctx c = {dst, src};
    run(p, n, ml_row_grain(p, n), copy_chunk, &c);
}

typedef struct head_ctx {
    float *out;
    const float *x, *w, *b;
    int C, K;
} head_ctx;

KERNEL static void head_rows(void *vctx, long begin, long end, int tid) {
    const head_ctx *c = vctx;
    int C = c->C, Cv = C / VL * VL;
    for (long r = begin; r < end; r++) {
        const float *x = c->x + r * C;
        for (int k = 0; k < c->K; k++) {
            const float *w = c->w + (size_t)k * C;
            vf16 acc = {0};
            float tail = 0;
            for (int i = 0; i < Cv; i += VL) acc += vld(x + i) * vld(w + i);
            for (int i = Cv; i < C; i++) tail += x[i] * w[i];
            c->out[r * c->K + k] = vhsum(acc) + tail + (c->b ? c->b[k] : 0.0f);
        }
    }
    (void)tid;
}

void ml_op_heads(const ml_par *p, float *out, const float *x, const float *w, const float *b,
                 int N, int C, int K) {
    head_ctx hc = {out, x, w, b, C, K};
    run(p, N, ml_row_grain(p, N), head_rows, &hc);
}

typedef struct lstm_ctx {
    const float *gates;
    size_t ldg, ldh;
    float *c, *h;
    int C;
} lstm_ctx;

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static void lstm_rows(void *vctx, long begin, long end, int tid) {
    const lstm_ctx *x = vctx;
    int C = x->C;
    for (long b = begin; b < end; b++) {
        const float *g = x->gates + (size_t)b * x->ldg;
        float *c = x->c + (size_t)b * C, *h = x->h + (size_t)b * x->ldh;
        for (int j = 0; j < C; j++) {
            float ig = sigmoidf(g[j]), fg = sigmoidf(g[C + j]);
            float gg = tanhf(g[2 * C + j]), og = sigmoidf(g[3 * C + j]);
            c[j] = fg * c[j] + ig * gg;
            h[j] = og * tanhf(c[j]);
        }
    }
    (void)tid;
}

void ml_op_lstm_cell(const ml_par *p, const float *gates, size_t ldg, float *c, float *h,
                     size_t ldh, int B, int C) {
    lstm_ctx x = {gates, ldg, ldh, c, h, C};
    run(p, B, ml_row_grain(p, B), lstm_rows, &x);
}
