/* CKA at the service's real size (n = 1,854 items, p = 2,304 backbone columns and 768 hidden
 * units, K = 66 targets) against the direct float64 computations: the prepared route must
 * agree to 1e-6 relative. The data are synthetic with the features' awkward traits: large
 * column means (centring matters), a few strong directions shared with the targets, and
 * sparse non-negative targets. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "boot_by_hand.h"
#include "metalign/blas.h"
#include "metalign/cka.h"
#include "metalign/rng.h"
#include "unit.h"

enum { N = 1854, P_BIG = 2304, P_HID = 768, K = 66, LATENT = 24 };

static float *Y, *Xbig, *Xhid;

static double gauss(ml_rng *r) {
    double u = 1.0 - ml_rng_double(r), v = ml_rng_double(r);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* rows = Z A + noise + offset_j, Z the shared latent factors (N, LATENT) */
static float *make_features(const double *Z, int p, double offset, double noise, ml_rng *r) {
    double *A = malloc(sizeof(double) * LATENT * p);
    for (int i = 0; i < LATENT * p; i++) A[i] = gauss(r);
    double *off = malloc(sizeof(double) * p);
    for (int j = 0; j < p; j++) off[j] = offset * (1 + gauss(r));
    float *X = malloc(sizeof(float) * (size_t)N * p);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < p; j++) {
            double s = off[j] + noise * gauss(r);
            for (int l = 0; l < LATENT; l++) s += Z[i * LATENT + l] * A[l * p + j];
            X[(size_t)i * p + j] = (float)s;
        }
    free(A);
    free(off);
    return X;
}

static void make_data(void) {
    ml_rng r;
    ml_rng_seed(&r, 1854, 0);
    double *Z = malloc(sizeof(double) * N * LATENT);
    for (int i = 0; i < N * LATENT; i++) Z[i] = gauss(&r);
    Y = malloc(sizeof(float) * N * K);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            /* the first 12 targets follow the latents, the rest are noise; ReLU-sparse */
            double s = k < 12 ? Z[i * LATENT + k] + 0.5 * gauss(&r) : gauss(&r);
            Y[i * K + k] = (float)(s > 0 ? s : 0);
        }
    Xbig = make_features(Z, P_BIG, 3.0, 2.0, &r);
    Xhid = make_features(Z, P_HID, 20.0, 4.0, &r);
    free(Z);
}

static float *columns(const float *A, int c, const int *dims, int m) {
    float *out = malloc(sizeof(float) * N * m);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < m; j++) out[i * m + j] = A[(size_t)i * c + dims[j]];
    return out;
}

static void test_linear_at_scale(void) {
    ml_err err;
    ml_cka_target *t = ml_cka_target_new(Y, N, K, &err);
    ml_cka_rep *big = ml_cka_rep_new(Xbig, N, P_BIG, t, &err);
    ml_cka_rep *hid = ml_cka_rep_new(Xhid, N, P_HID, t, &err);
    CHECK(t && big && hid);
    if (!t || !big || !hid) return;
    int eval[] = {0, 1, 2}, one[] = {40}, mixed[] = {65, 3, 20, 11};
    struct { const int *dims; int m; } sel[] = {{NULL, K}, {eval, 3}, {one, 1}, {mixed, 4}};
    for (int s = 0; s < 4; s++) {
        float *Ys = sel[s].dims ? columns(Y, K, sel[s].dims, sel[s].m) : Y;
        double v, want;
        CHECK(ml_cka_linear(big, t, sel[s].dims, sel[s].m, &v, &err) == 0);
        want = ml_cka_linear_direct(Xbig, N, P_BIG, Ys, sel[s].m);
        CHECK_NEAR(v, want, 1e-6, 0);
        printf("# p=%d dims %d: %.15f direct %.15f\n", P_BIG, s, v, want);
        CHECK(ml_cka_linear(hid, t, sel[s].dims, sel[s].m, &v, &err) == 0);
        want = ml_cka_linear_direct(Xhid, N, P_HID, Ys, sel[s].m);
        CHECK_NEAR(v, want, 1e-6, 0);
        if (Ys != Y) free(Ys);
    }
    /* the pairwise matrix against the direct CKA of the two feature matrices */
    const ml_cka_rep *pair[2] = {big, hid};
    double lin[4];
    CHECK(ml_cka_matrix(pair, 2, lin, NULL, &err) == 0);
    double want = ml_cka_linear_direct(Xbig, N, P_BIG, Xhid, P_HID);
    CHECK_NEAR(lin[1], want, 1e-6, 0);
    printf("# matrix %.15f direct %.15f\n", lin[1], want);
    ml_cka_rep_free(big);
    ml_cka_rep_free(hid);
    ml_cka_target_free(t);
}

/* Kornblith et al.'s feature-space debiased linear CKA (their feature_space_linear_cka with
 * debiased=True), in double: an independent route to the same number. */
static double debiased_feature_space(const float *X, int p, const float *Yt, int q) {
    double *Xc = malloc(sizeof(double) * (size_t)N * p), *Yc = malloc(sizeof(double) * N * q);
    const float *src[2] = {X, Yt};
    double *dst[2] = {Xc, Yc};
    int cols[2] = {p, q};
    for (int m = 0; m < 2; m++)
        for (int j = 0; j < cols[m]; j++) {
            double mean = 0;
            for (int i = 0; i < N; i++) mean += src[m][(size_t)i * cols[m] + j];
            mean /= N;
            for (int i = 0; i < N; i++)
                dst[m][(size_t)i * cols[m] + j] = src[m][(size_t)i * cols[m] + j] - mean;
        }
    double *P = malloc(sizeof(double) * (size_t)p * p);
    double fro[3]; /* ||Y^T X||^2, ||X^T X||^2, ||Y^T Y||^2 */
    const double *As[3] = {Yc, Xc, Yc}, *Bs[3] = {Xc, Xc, Yc};
    int ra[3] = {q, p, q}, cb[3] = {p, p, q};
    for (int m = 0; m < 3; m++) {
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ra[m], cb[m], N, 1.0, As[m], ra[m],
                    Bs[m], cb[m], 0.0, P, cb[m]);
        fro[m] = 0;
        for (size_t i = 0; i < (size_t)ra[m] * cb[m]; i++) fro[m] += P[i] * P[i];
    }
    double sx[N], sy[N], nx = 0, ny = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < N; i++) {
        sx[i] = sy[i] = 0;
        for (int j = 0; j < p; j++) sx[i] += Xc[(size_t)i * p + j] * Xc[(size_t)i * p + j];
        for (int j = 0; j < q; j++) sy[i] += Yc[(size_t)i * q + j] * Yc[(size_t)i * q + j];
        nx += sx[i];
        ny += sy[i];
        sxy += sx[i] * sy[i];
        sxx += sx[i] * sx[i];
        syy += sy[i] * sy[i];
    }
    double n = N;
#define HELPER(xty, ss, a, b) ((xty) - n / (n - 2) * (ss) + (a) * (b) / ((n - 1) * (n - 2)))
    double num = HELPER(fro[0], sxy, nx, ny);
    double dx = HELPER(fro[1], sxx, nx, nx), dy = HELPER(fro[2], syy, ny, ny);
#undef HELPER
    free(Xc);
    free(Yc);
    free(P);
    return num / sqrt(dx * dy);
}

static void test_debiased_at_scale(void) {
    ml_err err;
    ml_cka_target *t = ml_cka_target_new(Y, N, K, &err);
    ml_cka_rep *hid = ml_cka_rep_new(Xhid, N, P_HID, t, &err);
    CHECK(t && hid);
    if (!t || !hid) return;
    double v;
    CHECK(ml_cka_debiased(hid, t, NULL, 0, &v, &err) == 0);
    double want = debiased_feature_space(Xhid, P_HID, Y, K);
    CHECK_NEAR(v, want, 1e-6, 0);
    printf("# debiased %.15f feature space %.15f\n", v, want);
    int eval[] = {0, 1, 2};
    float *Ys = columns(Y, K, eval, 3);
    CHECK(ml_cka_debiased(hid, t, eval, 3, &v, &err) == 0);
    CHECK_NEAR(v, debiased_feature_space(Xhid, P_HID, Ys, 3), 1e-6, 0);
    free(Ys);
    ml_cka_rep_free(hid);
    ml_cka_target_free(t);
}

/* Five resamples at full size against the resampled matrices' direct CKA: level 50 makes the
 * interval ends the 2nd and 4th smallest resample values exactly. */
static void test_bootstrap_at_scale(void) {
    ml_err err;
    ml_cka_target *t = ml_cka_target_new(Y, N, K, &err);
    ml_cka_rep *hid = ml_cka_rep_new(Xhid, N, P_HID, NULL, &err);
    CHECK(t && hid);
    if (!t || !hid) return;
    int eval[] = {0, 1, 2};
    float *Ys = columns(Y, K, eval, 3);
    const ml_cka_rep *one[1] = {hid};
    double lo, hi, want_lo, want_hi;
    CHECK(ml_cka_bootstrap(one, 1, t, eval, 3, 5, 50, 3, &lo, &hi, &err) == 0);
    bootstrap_by_hand(Xhid, N, P_HID, Ys, 3, 5, 50, 3, &want_lo, &want_hi);
    CHECK_NEAR(lo, want_lo, 1e-5, 0);
    CHECK_NEAR(hi, want_hi, 1e-5, 0);
    printf("# bootstrap [%.9f, %.9f] by hand [%.9f, %.9f]\n", lo, hi, want_lo, want_hi);
    free(Ys);
    ml_cka_rep_free(hid);
    ml_cka_target_free(t);
}

int main(int argc, char **argv) {
    (void)argc;
    ml_blas_select_core(argv);
    make_data();
    RUN(test_linear_at_scale);
    RUN(test_debiased_at_scale);
    RUN(test_bootstrap_at_scale);
    free(Y);
    free(Xbig);
    free(Xhid);
    return UT_DONE();
}
