/* Causal multi-head attention (model/ops.h) with RoPE folded into the tile loads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops.h"
#include "model/vec.h"

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

/* The model's (position, pair) tables expanded to one entry per element of a head, zero
 * beyond the head size, so the attention kernel rotates q and k a vector at a time. */
static int expand_rope(ml_attn *a, const float *rope_cos, const float *rope_sin) {
    int half = a->d / 2, dp = a->dp;
    a->rope_cx = ml_alloc_floats((size_t)a->max_seq * dp);
    a->rope_sx = ml_alloc_floats((size_t)a->max_seq * dp);
    if (!a->rope_cx || !a->rope_sx) return -1;
    for (int t = 0; t < a->max_seq; t++) {
        float *cx = a->rope_cx + (size_t)t * dp, *sx = a->rope_sx + (size_t)t * dp;
        memset(cx, 0, sizeof(float) * (size_t)dp);
        memset(sx, 0, sizeof(float) * (size_t)dp);
        for (int i = 0; i < half; i++) {
            cx[2 * i] = cx[2 * i + 1] = rope_cos[(size_t)t * half + i];
            sx[2 * i] = -rope_sin[(size_t)t * half + i];
            sx[2 * i + 1] = rope_sin[(size_t)t * half + i];
        }
    }
    return 0;
}

int ml_attn_init(ml_attn *a, int C, int H, int max_seq, const float *rope_cos,
                 const float *rope_sin, int threads) {
    memset(a, 0, sizeof *a);
    a->C = C;
    a->H = H;
    a->d = C / H;
    a->max_seq = max_seq;
    a->threads = threads;
    /* An odd number of cache lines per row of Kt and P keeps their columns in distinct
     * cache sets. */
    a->Sp = (max_seq + 2 * VL - 1) / (2 * VL) * (2 * VL) + VL;
    a->dp = (a->d + VL - 1) / VL * VL;
    /* Kt (dp, Sp), V (Sp, dp), P (4, Sp), O (4, dp), Q (Sp, dp), in whole cache lines */
    a->scratch_floats = (3 * (size_t)a->dp * a->Sp + 4 * (size_t)a->Sp + 4 * (size_t)a->dp +
                         15) / 16 * 16;
    a->scratch = ml_alloc_floats(a->scratch_floats * (size_t)threads);
    if (!a->scratch || (rope_cos && expand_rope(a, rope_cos, rope_sin) != 0)) {
        ml_attn_free(a);
        return -1;
    }
    return 0;
}

void ml_attn_free(ml_attn *a) {
    free(a->rope_cx);
    free(a->rope_sx);
    free(a->scratch);
    memset(a, 0, sizeof *a);
}

void ml_op_attention(const ml_par *p, const ml_attn *a, float *out, const float *qkv, int B,
                     int S) {
    att_ctx c = {out, qkv, a->rope_cx, a->rope_sx, S, a->C, a->H, a->scratch,
                 a->scratch_floats, a->Sp, a->dp};
    long tasks = (long)B * a->H, grain = tasks / (8L * p->threads);
    ml_pool_for(p->pool, p->threads, tasks, grain < 1 ? 1 : grain, attention_tasks, &c);
}
