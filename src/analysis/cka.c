/* Linear and debiased CKA from prepared Grams (the algebra is in cka.h). Point estimates are
 * computed in double end to end; the float copy of each Gram serves the pairwise matrix and
 * the bootstrap, whose answers need no more than float accuracy. */
#include "metalign/cka.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/rng.h"
#include "metalign/stats.h"

struct ml_cka_target {
    int n, K;
    uint64_t fingerprint; /* of Y's bytes and shape: ties reps to the target they were made with */
    double *Yc;           /* (n, K) column-centred */
    double *G;            /* (K, K) Yc^T Yc */
    double *Q;            /* (K, K) (Yc∘Yc)^T (Yc∘Yc) */
};

struct ml_cka_rep {
    int n, p;
    float *gram;     /* (n, n) Kc = Xc Xc^T, full (both triangles) */
    double fro2;     /* ||Kc||_F^2 from the double Gram */
    double fro2_f;   /* the same from the float Gram, so pairwise products normalise alike */
    double trace;    /* tr Kc */
    double diag2;    /* sum_i Kc_ii^2 */
    double *diag;    /* (n) Kc_ii */
    int K;           /* 0 when prepared without a target */
    uint64_t target_fingerprint;
    double *a;       /* (K) yc_k^T Kc yc_k */
    double *b;       /* (K) sum_i Kc_ii yc_ik^2 */
};

/* FNV-1a over the shape and the raw bytes. */
static uint64_t fingerprint(const float *Y, int n, int K) {
    uint64_t h = 0xcbf29ce484222325ull;
    int shape[2] = {n, K};
    const unsigned char *p = (const unsigned char *)shape;
    for (size_t i = 0; i < sizeof shape; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    p = (const unsigned char *)Y;
    for (size_t i = 0; i < (size_t)n * (size_t)K * sizeof(float); i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Column-centred double copy of A (n, c); -1 with err naming the first non-finite value. */
static double *center_columns(const float *A, int n, int c, const char *what, ml_err *err) {
    double *out = malloc(sizeof(double) * (size_t)n * (size_t)c);
    double *mean = calloc((size_t)c, sizeof(double));
    if (!out || !mean) {
        free(out);
        free(mean);
        ml_errf(err, "out of memory centring a (%d, %d) %s", n, c, what);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            float v = A[(size_t)i * c + j];
            if (!isfinite(v)) {
                free(out);
                free(mean);
                ml_errf(err, "%s row %d column %d is %g: CKA needs finite values", what, i, j,
                        (double)v);
                return NULL;
            }
            mean[j] += v;
        }
    for (int j = 0; j < c; j++) mean[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++)
            out[(size_t)i * c + j] = (double)A[(size_t)i * c + j] - mean[j];
    free(mean);
    return out;
}

static int check_shape(int n, int c, const char *what, ml_err *err) {
    if (n < 2 || c < 1)
        return ml_errf(err, "%s has shape (%d, %d): CKA needs at least 2 items and 1 column",
                       what, n, c);
    /* the Gram's n*n entries are indexed with BLAS's int */
    if ((long long)n * n > INT_MAX || (long long)n * c > INT_MAX)
        return ml_errf(err, "%s has shape (%d, %d): too many items for the Gram route "
                       "(n^2 must stay below 2^31)", what, n, c);
    return 0;
}

ml_cka_target *ml_cka_target_new(const float *Y, int n, int K, ml_err *err) {
    if (check_shape(n, K, "target matrix", err)) return NULL;
    ml_cka_target *t = calloc(1, sizeof *t);
    if (!t) {
        ml_errf(err, "out of memory");
        return NULL;
    }
    t->n = n;
    t->K = K;
    t->fingerprint = fingerprint(Y, n, K);
    t->Yc = center_columns(Y, n, K, "target matrix", err);
    t->G = malloc(sizeof(double) * (size_t)K * K);
    t->Q = malloc(sizeof(double) * (size_t)K * K);
    double *Y2 = malloc(sizeof(double) * (size_t)n * K);
    if (!t->Yc || !t->G || !t->Q || !Y2) {
        if (t->Yc) ml_errf(err, "out of memory for a (%d, %d) target", n, K);
        free(Y2);
        ml_cka_target_free(t);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)n * K; i++) Y2[i] = t->Yc[i] * t->Yc[i];
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, K, n, 1.0, t->Yc, K, t->Yc, K, 0.0,
                t->G, K);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, K, n, 1.0, Y2, K, Y2, K, 0.0, t->Q,
                K);
    free(Y2);
    return t;
}

void ml_cka_target_free(ml_cka_target *t) {
    if (!t) return;
    free(t->Yc);
    free(t->G);
    free(t->Q);
    free(t);
}

int ml_cka_target_dims(const ml_cka_target *t) { return t->K; }

void ml_cka_rep_free(ml_cka_rep *r) {
    if (!r) return;
    free(r->gram);
    free(r->diag);
    free(r->a);
    free(r->b);
    free(r);
}

/* The target's cross terms from the double Gram Kd (upper triangle valid). */
static int target_terms(ml_cka_rep *r, const double *Kd, const ml_cka_target *t, ml_err *err) {
    int n = r->n, K = t->K;
    double *T = malloc(sizeof(double) * (size_t)n * K);
    r->a = calloc((size_t)K, sizeof(double));
    r->b = calloc((size_t)K, sizeof(double));
    if (!T || !r->a || !r->b) {
        free(T);
        return ml_errf(err, "out of memory for the target terms");
    }
    cblas_dsymm(CblasRowMajor, CblasLeft, CblasUpper, n, K, 1.0, Kd, n, t->Yc, K, 0.0, T, K);
    for (int i = 0; i < n; i++) {
        const double *y = t->Yc + (size_t)i * K, *ty = T + (size_t)i * K;
        for (int k = 0; k < K; k++) {
            r->a[k] += y[k] * ty[k];
            r->b[k] += r->diag[i] * y[k] * y[k];
        }
    }
    free(T);
    r->K = K;
    r->target_fingerprint = t->fingerprint;
    return 0;
}

ml_cka_rep *ml_cka_rep_new(const float *X, int n, int p, const ml_cka_target *t, ml_err *err) {
    if (check_shape(n, p, "representation", err)) return NULL;
    if (t && t->n != n) {
        ml_errf(err, "representation has %d items but the target has %d", n, t->n);
        return NULL;
    }
    ml_cka_rep *r = calloc(1, sizeof *r);
    double *Xc = center_columns(X, n, p, "representation", err);
    double *Kd = malloc(sizeof(double) * (size_t)n * n);
    if (r) {
        r->n = n;
        r->p = p;
        r->gram = malloc(sizeof(float) * (size_t)n * n);
        r->diag = malloc(sizeof(double) * (size_t)n);
    }
    if (!r || !Xc || !Kd || !r->gram || !r->diag) {
        if (Xc) ml_errf(err, "out of memory for the Gram of %d items", n);
        goto fail;
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, p, 1.0, Xc, p, 0.0, Kd, n);
    free(Xc);
    Xc = NULL;
    double off = 0;
    for (int i = 0; i < n; i++) {
        double d = Kd[(size_t)i * n + i];
        r->diag[i] = d;
        r->trace += d;
        r->diag2 += d * d;
        r->gram[(size_t)i * n + i] = (float)d;
        for (int j = i + 1; j < n; j++) {
            double v = Kd[(size_t)i * n + j];
            off += v * v;
            r->gram[(size_t)i * n + j] = r->gram[(size_t)j * n + i] = (float)v;
        }
    }
    r->fro2 = r->diag2 + 2 * off;
    if (!(r->fro2 > 0)) {
        ml_errf(err, "the representation is constant across the %d items (every column has "
                "zero variance): CKA is undefined", n);
        goto fail;
    }
    r->fro2_f = cblas_dsdot(n * n, r->gram, 1, r->gram, 1);
    if (t && target_terms(r, Kd, t, err)) goto fail;
    free(Kd);
    return r;
fail:
    free(Xc);
    free(Kd);
    ml_cka_rep_free(r);
    return NULL;
}

static int check_dims(const ml_cka_target *t, const int *dims, int n_dims, ml_err *err) {
    if (!dims) return 0;
    if (n_dims < 1) return ml_errf(err, "no target dimensions selected");
    for (int i = 0; i < n_dims; i++)
        if (dims[i] < 0 || dims[i] >= t->K)
            return ml_errf(err, "target dimension %d is out of range: the target has %d "
                           "dimensions (0 .. %d)", dims[i], t->K, t->K - 1);
    return 0;
}

/* The selection's sums: sum a_k, sum b_k, tr L, ||L||_F^2, sum_i L_ii^2. */
typedef struct sel_sums {
    double a, b, trL, L2, Ldiag2;
} sel_sums;

static int selection(const ml_cka_rep *r, const ml_cka_target *t, const int *dims, int n_dims,
                     sel_sums *s, ml_err *err) {
    if (!r->K || r->target_fingerprint != t->fingerprint || r->n != t->n)
        return ml_errf(err, "the representation was prepared %s: prepare it with this target",
                       r->K ? "with another target" : "without a target");
    if (check_dims(t, dims, n_dims, err)) return -1;
    int m = dims ? n_dims : t->K, K = t->K;
    memset(s, 0, sizeof *s);
    for (int i = 0; i < m; i++) {
        int k = dims ? dims[i] : i;
        s->a += r->a[k];
        s->b += r->b[k];
        s->trL += t->G[(size_t)k * K + k];
        for (int j = 0; j < m; j++) {
            int l = dims ? dims[j] : j;
            double g = t->G[(size_t)k * K + l];
            s->L2 += g * g;
            s->Ldiag2 += t->Q[(size_t)k * K + l];
        }
    }
    if (!(s->L2 > 0))
        return ml_errf(err, "the selected target dimensions are constant across the %d items: "
                       "CKA is undefined", t->n);
    return 0;
}

int ml_cka_linear(const ml_cka_rep *r, const ml_cka_target *t, const int *dims, int n_dims,
                  double *cka, ml_err *err) {
    sel_sums s;
    if (selection(r, t, dims, n_dims, &s, err)) return -1;
    *cka = s.a / (sqrt(r->fro2) * sqrt(s.L2));
    return 0;
}

/* n(n-3) times Song et al.'s unbiased HSIC of two centred Grams, from their inner product,
 * the dot of their diagonals and their traces. */
static double hsic1(int n, double inner, double diag_dot, double tr_a, double tr_b) {
    double nn = n;
    return inner - nn / (nn - 2) * diag_dot + tr_a * tr_b / ((nn - 1) * (nn - 2));
}

static int debiased_ratio(double hab, double haa, double hbb, double *cka, ml_err *err) {
    if (!(haa > 0) || !(hbb > 0))
        return ml_errf(err, "the debiased CKA is undefined: the unbiased HSIC of the %s with "
                       "itself is %g (not positive)", haa > 0 ? "target" : "representation",
                       haa > 0 ? hbb : haa);
    *cka = hab / sqrt(haa * hbb);
    return 0;
}

int ml_cka_debiased(const ml_cka_rep *r, const ml_cka_target *t, const int *dims, int n_dims,
                    double *cka, ml_err *err) {
    if (r->n < 4)
        return ml_errf(err, "the debiased CKA needs at least 4 items (have %d)", r->n);
    sel_sums s;
    if (selection(r, t, dims, n_dims, &s, err)) return -1;
    int n = r->n;
    return debiased_ratio(hsic1(n, s.a, s.b, r->trace, s.trL),
                          hsic1(n, r->fro2, r->diag2, r->trace, r->trace),
                          hsic1(n, s.L2, s.Ldiag2, s.trL, s.trL), cka, err);
}

int ml_cka_matrix(const ml_cka_rep *const *reps, int m, double *linear, double *debiased,
                  ml_err *err) {
    for (int i = 0; i < m; i++)
        if (reps[i]->n != reps[0]->n)
            return ml_errf(err, "representation %d has %d items but representation 0 has %d",
                           i, reps[i]->n, reps[0]->n);
    if (debiased && m > 0 && reps[0]->n < 4)
        return ml_errf(err, "the debiased CKA needs at least 4 items (have %d)", reps[0]->n);
    for (int i = 0; i < m; i++) {
        if (linear) linear[(size_t)i * m + i] = 1;
        if (debiased) debiased[(size_t)i * m + i] = 1;
    }
    for (int i = 0; i < m; i++)
        for (int j = i + 1; j < m; j++) {
            const ml_cka_rep *a = reps[i], *b = reps[j];
            int n = a->n;
            double inner = cblas_dsdot(n * n, a->gram, 1, b->gram, 1);
            if (linear)
                linear[(size_t)i * m + j] = linear[(size_t)j * m + i] =
                    inner / sqrt(a->fro2_f * b->fro2_f);
            if (!debiased) continue;
            double dd = 0;
            for (int k = 0; k < n; k++) dd += a->diag[k] * b->diag[k];
            double v = 0;
            if (debiased_ratio(hsic1(n, inner, dd, a->trace, b->trace),
                               hsic1(n, a->fro2_f, a->diag2, a->trace, a->trace),
                               hsic1(n, b->fro2_f, b->diag2, b->trace, b->trace), &v, err))
                return ml_err_prefix(err, "representations %d and %d", i, j);
            debiased[(size_t)i * m + j] = debiased[(size_t)j * m + i] = v;
        }
    return 0;
}

/* ---- bootstrap ----------------------------------------------------------------------------
 * For resample weights w (counts, sum n) and omega = w / n, with Kc and Lc centred over all
 * items, m = Kc omega, g = omega.m, l = Lc omega, h = omega.l, the resample's centred Grams
 * are K'_ij = Kc_ij - m_i - m_j + g (likewise L'), and
 *   <K', L'>_w = omega^T (Kc∘Lc) omega - 2 sum_i omega_i m_i l_i + g h
 *   ||K'||_w^2 = omega^T (Kc∘Kc) omega - 2 sum_i omega_i m_i^2 + g^2     (likewise L')
 * (the factor n^2 that turns weighted sums into sums over drawn rows cancels in the ratio).
 * All resamples go through BLAS at once as the (n, n_boot) count matrix W: Kc W and Lc W by
 * GEMM (m and l are needed whole), the Hadamard quadratic forms by a triangular multiply. */

typedef struct boot_ws {
    int n, B;
    float *W;     /* (n, B) counts */
    float *AW;    /* (n, B) product scratch */
    float *LW;    /* (n, B) Lc W */
    float *MW;    /* (n, B) Kc W */
    float *H;     /* (n, n) Hadamard products */
    float *Lc;    /* (n, n) */
} boot_ws;

static void boot_ws_free(boot_ws *ws) {
    free(ws->W);
    free(ws->AW);
    free(ws->LW);
    free(ws->MW);
    free(ws->H);
    free(ws->Lc);
}

static int boot_ws_alloc(boot_ws *ws, int n, int B, ml_err *err) {
    size_t nB = (size_t)n * B, nn = (size_t)n * n;
    memset(ws, 0, sizeof *ws);
    ws->n = n;
    ws->B = B;
    ws->W = calloc(nB, sizeof(float));
    ws->AW = malloc(nB * sizeof(float));
    ws->LW = malloc(nB * sizeof(float));
    ws->MW = malloc(nB * sizeof(float));
    ws->H = malloc(nn * sizeof(float));
    ws->Lc = malloc(nn * sizeof(float));
    if (!ws->W || !ws->AW || !ws->LW || !ws->MW || !ws->H || !ws->Lc) {
        boot_ws_free(ws);
        return ml_errf(err, "out of memory for %d bootstrap resamples of %d items", B, n);
    }
    return 0;
}

/* out = A W (n x n times n x B). */
static void gemm_nB(const boot_ws *ws, const float *A, float *out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ws->n, ws->B, ws->n, 1.0f, A, ws->n,
                ws->W, ws->B, 0.0f, out, ws->B);
}

/* q[b] = omega_b^T (A omega_b) from AW = A W: sum_i w_ib AW_ib / n^2. */
static void quad_forms(const boot_ws *ws, const float *AW, double *q) {
    int n = ws->n, B = ws->B;
    memset(q, 0, sizeof(double) * (size_t)B);
    for (int i = 0; i < n; i++) {
        const float *w = ws->W + (size_t)i * B, *aw = AW + (size_t)i * B;
        for (int b = 0; b < B; b++) q[b] += (double)w[b] * aw[b];
    }
    double s = 1.0 / ((double)n * n);
    for (int b = 0; b < B; b++) q[b] *= s;
}

/* q[b] = omega_b^T (A∘Bm) omega_b for symmetric A, Bm: only the upper triangle of the
 * Hadamard product is formed and multiplied (strmm, half a GEMM's work):
 * w^T S w = 2 w^T (upper(S) w) - sum_i S_ii w_i^2. */
static void hadamard_quad_forms(const boot_ws *ws, const float *A, const float *Bm, double *q) {
    int n = ws->n, B = ws->B;
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            size_t ij = (size_t)i * n + j;
            ws->H[ij] = A[ij] * Bm[ij];
        }
    memcpy(ws->AW, ws->W, sizeof(float) * (size_t)n * B);
    cblas_strmm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, n, B, 1.0f,
                ws->H, n, ws->AW, B);
    memset(q, 0, sizeof(double) * (size_t)B);
    for (int i = 0; i < n; i++) {
        const float *w = ws->W + (size_t)i * B, *aw = ws->AW + (size_t)i * B;
        double d = ws->H[(size_t)i * n + i];
        for (int b = 0; b < B; b++) q[b] += (double)w[b] * (2.0 * aw[b] - d * w[b]);
    }
    double s = 1.0 / ((double)n * n);
    for (int b = 0; b < B; b++) q[b] *= s;
}

/* Lc for the selected columns (float, full). */
static int target_gram(const ml_cka_target *t, const int *dims, int n_dims, float *Lc,
                       ml_err *err) {
    int n = t->n, m = dims ? n_dims : t->K;
    float *Ys = malloc(sizeof(float) * (size_t)n * m);
    if (!Ys) return ml_errf(err, "out of memory");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++)
            Ys[(size_t)i * m + j] = (float)t->Yc[(size_t)i * t->K + (dims ? dims[j] : j)];
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, m, 1.0f, Ys, m, 0.0f, Lc, n);
    free(Ys);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) Lc[(size_t)j * n + i] = Lc[(size_t)i * n + j];
    return 0;
}

/* A resample whose centred Gram is zero up to float rounding has no CKA. */
#define BOOT_DEGENERATE 1e-5

/* Per-resample sums over items for one Gram side: s1[b] = sum_i w_ib x_ib^2 and, when y is
 * given, s2[b] = sum_i w_ib x_ib y_ib, with x = XW / n, y = YW / n (the m and l vectors). */
static void weighted_sums(const boot_ws *ws, const float *XW, const float *YW, double *s1,
                          double *s2) {
    int n = ws->n, B = ws->B;
    memset(s1, 0, sizeof(double) * (size_t)B);
    if (s2) memset(s2, 0, sizeof(double) * (size_t)B);
    for (int i = 0; i < n; i++)
        for (int b = 0; b < B; b++) {
            size_t ib = (size_t)i * B + b;
            double w = ws->W[ib], x = XW[ib] / (double)n;
            s1[b] += w * x * x;
            if (s2) s2[b] += w * x * (YW[ib] / (double)n);
        }
}

int ml_cka_bootstrap(const ml_cka_rep *const *reps, int m, const ml_cka_target *t,
                     const int *dims, int n_dims, int n_boot, double level, uint64_t seed,
                     double *lo, double *hi, ml_err *err) {
    if (n_boot < 1) return ml_errf(err, "n_boot is %d: at least 1 resample is needed", n_boot);
    if (!(level > 0 && level < 100))
        return ml_errf(err, "interval level %g is outside (0, 100)", level);
    if (check_dims(t, dims, n_dims, err)) return -1;
    int n = t->n;
    for (int i = 0; i < m; i++)
        if (reps[i]->n != n)
            return ml_errf(err, "representation %d has %d items but the target has %d", i,
                           reps[i]->n, n);
    boot_ws ws;
    if (boot_ws_alloc(&ws, n, n_boot, err)) return -1;
    size_t B = (size_t)n_boot;
    /* h, ||L'||^2 per resample; g, ||K'||^2, the numerator and two sums per representation */
    double *h = malloc(sizeof(double) * B), *dL = malloc(sizeof(double) * B);
    double *g = malloc(sizeof(double) * B), *dK = malloc(sizeof(double) * B);
    double *num = malloc(sizeof(double) * B);
    double *s1 = malloc(sizeof(double) * B), *s2 = malloc(sizeof(double) * B);
    int rc = -1;
    if (!h || !dL || !g || !dK || !num || !s1 || !s2) {
        ml_errf(err, "out of memory for %d bootstrap resamples", n_boot);
        goto done;
    }
    for (int b = 0; b < n_boot; b++) {
        ml_rng r;
        ml_rng_seed(&r, seed, ML_CKA_STREAM_BOOT + (uint64_t)b);
        for (int i = 0; i < n; i++) ws.W[ml_rng_below(&r, (uint64_t)n) * B + (size_t)b] += 1.0f;
    }
    if (target_gram(t, dims, n_dims, ws.Lc, err)) goto done;

    gemm_nB(&ws, ws.Lc, ws.LW);
    quad_forms(&ws, ws.LW, h);
    hadamard_quad_forms(&ws, ws.Lc, ws.Lc, dL);
    weighted_sums(&ws, ws.LW, NULL, s1, NULL);
    for (size_t b = 0; b < B; b++) {
        double v = dL[b] - 2 * s1[b] / n + h[b] * h[b];
        dL[b] = v <= BOOT_DEGENERATE * dL[b] ? NAN : v;
    }

    for (int k = 0; k < m; k++) {
        const float *Kc = reps[k]->gram;
        gemm_nB(&ws, Kc, ws.MW);
        quad_forms(&ws, ws.MW, g);
        weighted_sums(&ws, ws.MW, ws.LW, s1, s2);
        hadamard_quad_forms(&ws, Kc, Kc, dK);
        hadamard_quad_forms(&ws, Kc, ws.Lc, num);
        size_t kept = 0;
        for (size_t b = 0; b < B; b++) {
            double vK = dK[b] - 2 * s1[b] / n + g[b] * g[b];
            if (vK <= BOOT_DEGENERATE * dK[b]) continue;
            double v = (num[b] - 2 * s2[b] / n + g[b] * h[b]) / sqrt(vK * dL[b]);
            if (isfinite(v)) num[kept++] = v;
        }
        if (kept == 0) {
            ml_errf(err, "representation %d: no bootstrap resample has a defined CKA", k);
            goto done;
        }
        double tail = (100.0 - level) / 2;
        lo[k] = ml_percentile(num, kept, tail);
        hi[k] = ml_percentile(num, kept, 100.0 - tail);
    }
    rc = 0;
done:
    boot_ws_free(&ws);
    free(h);
    free(dL);
    free(g);
    free(dK);
    free(num);
    free(s1);
    free(s2);
    return rc;
}

/* ---- reference ------------------------------------------------------------------------- */

static double fro2_of_product(const double *A, int ca, const double *Bm, int cb, int n) {
    double *P = malloc(sizeof(double) * (size_t)ca * cb);
    if (!P) return NAN;
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ca, cb, n, 1.0, A, ca, Bm, cb, 0.0, P,
                cb);
    double s = 0;
    for (size_t i = 0; i < (size_t)ca * cb; i++) s += P[i] * P[i];
    free(P);
    return s;
}

double ml_cka_linear_direct(const float *X, int n, int p, const float *Y, int q) {
    double *Xc = center_columns(X, n, p, "X", NULL);
    double *Yc = center_columns(Y, n, q, "Y", NULL);
    double v = NAN;
    if (Xc && Yc) {
        double yx = fro2_of_product(Yc, q, Xc, p, n);
        double xx = fro2_of_product(Xc, p, Xc, p, n);
        double yy = fro2_of_product(Yc, q, Yc, q, n);
        if (xx > 0 && yy > 0) v = yx / (sqrt(xx) * sqrt(yy));
    }
    free(Xc);
    free(Yc);
    return v;
}
