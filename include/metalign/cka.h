/* Representational alignment by centred kernel alignment (MODEL.md section 3): linear CKA of
 * each representation against the targets for any subset of target dimensions, the debiased
 * estimator beside it, the representation-by-representation matrix, and a seeded bootstrap
 * interval over items.
 *
 * Everything that does not depend on the chosen target dimensions is prepared once:
 *
 *   target  (Y, n x K)  column-centred Yc in double, G = Yc^T Yc, Q = (Yc∘Yc)^T (Yc∘Yc)
 *   rep     (X, n x p)  the centred Gram Kc = Xc Xc^T, formed in double (dsyrk on the
 *                       double-centred columns) and kept in float for the pairwise and
 *                       bootstrap work; in double: ||Kc||_F^2, diag(Kc), tr Kc and, against
 *                       a target, a_k = yc_k^T Kc yc_k and b_k = sum_i Kc_ii yc_ik^2
 *
 * so that for a set S of target columns
 *
 *   linear   CKA = sum_S a_k / (||Kc||_F * sqrt(sum_{k,l in S} G_kl^2))
 *   debiased CKA = h(K,L) / sqrt(h(K,K) h(L,L)), Song et al.'s unbiased HSIC (Gram diagonals
 *                  zeroed) times n(n-3), which for centred K, L is
 *                  h(A,B) = <A,B>_F - n/(n-2) sum_i A_ii B_ii + tr A tr B / ((n-1)(n-2)),
 *                  here with <Kc,L> = sum_S a_k, sum_i Kc_ii L_ii = sum_S b_k, tr L =
 *                  sum_S G_kk, ||L||_F^2 = sum_{SxS} G_kl^2, sum_i L_ii^2 = sum_{SxS} Q_kl
 *
 * are O(|S|^2) and never touch X again. The Gram route (n x n rather than p x p) is taken
 * because the pairwise matrix (<Ka, Kb>_F) and the bootstrap both need it; it costs
 * n^2 p / 2 multiply-adds and 4 n^2 bytes per representation (13.7 MB at n = 1,854).
 *
 * All objects are read-only after construction (safe to share between threads); no function
 * changes its inputs. Degenerate cases are errors, never NaN answers: a non-finite input
 * value, a representation constant across items (Kc = 0), a selection of target columns that
 * are all constant, fewer than 2 items (4 for the debiased estimator), or a debiased
 * normaliser h(K,K) or h(L,L) that is not positive. */
#ifndef METALIGN_CKA_H
#define METALIGN_CKA_H

#include <stdint.h>

#include "metalign/err.h"

typedef struct ml_cka_target ml_cka_target;
typedef struct ml_cka_rep ml_cka_rep;

/* Y is (n, K), row-major; copied (centred, in double). */
ml_cka_target *ml_cka_target_new(const float *Y, int n, int K, ml_err *err);
void ml_cka_target_free(ml_cka_target *t);
int ml_cka_target_dims(const ml_cka_target *t);

/* Prepares representation X (n, p), row-major, and, when t is not NULL, its cross terms
 * with that target. The rep keeps only numbers (t may be freed first); target queries must
 * pass the same t (checked by a fingerprint of Y). Level-3 BLAS on OpenBLAS's threads:
 * about 0.24 s of CPU for p = 2,304 and 0.12 s for p = 768 at n = 1,854. */
ml_cka_rep *ml_cka_rep_new(const float *X, int n, int p, const ml_cka_target *t, ml_err *err);
void ml_cka_rep_free(ml_cka_rep *r);

/* CKA of rep r (prepared with target t) against the columns dims[0 .. n_dims-1] of t's Y,
 * i.e. against Y[:, dims] (repeats count as repeated columns); dims == NULL means all K.
 * 0 and *cka, or -1 with err (dims out of range, r prepared without t or with another
 * target, degenerate selection). */
int ml_cka_linear(const ml_cka_rep *r, const ml_cka_target *t, const int *dims, int n_dims,
                  double *cka, ml_err *err);
int ml_cka_debiased(const ml_cka_rep *r, const ml_cka_target *t, const int *dims, int n_dims,
                    double *cka, ml_err *err);

/* CKA between every pair of the m representations (same n): linear and/or debiased into
 * (m, m) row-major arrays (either may be NULL). Diagonals are 1. O(m^2 n^2). */
int ml_cka_matrix(const ml_cka_rep *const *reps, int m, double *linear, double *debiased,
                  ml_err *err);

/* Percentile bootstrap interval over items of the linear CKA against Y[:, dims], for m
 * representations at once (they share the resamples, so their intervals are paired).
 * Resample b (0 <= b < n_boot) draws n items with replacement from the stream
 * ml_rng_seed(seed, ML_CKA_STREAM_BOOT + b): w[ml_rng_below(n)] += 1, n times; the
 * resample's CKA is computed exactly from the prepared Grams with weights w (the CKA of the
 * matrix whose rows are the drawn items, centred over the drawn rows), in float BLAS with
 * double sums (relative error ~1e-7 at n = 1,854, far below the Monte Carlo error). A resample
 * whose CKA is undefined (all draws on items with equal features) is left out, as numpy's
 * nanpercentile would. The interval is the (100-level)/2 and 100-(100-level)/2 percentiles
 * (stats.h, numpy linear). lo and hi get m values. Cost ~ (2m + 1.5) n^2 n_boot
 * multiply-adds and 16 n n_boot + 8 n^2 transient bytes: for the seed's 8 representations at
 * n = 1,854 and n_boot = 1,000 about 1.1 s of CPU and 57 MB (bench/bench_cka.c). */
#define ML_CKA_STREAM_BOOT (2ull << 40)
#define ML_CKA_BOOT_DEFAULT 1000
int ml_cka_bootstrap(const ml_cka_rep *const *reps, int m, const ml_cka_target *t,
                     const int *dims, int n_dims, int n_boot, double level, uint64_t seed,
                     double *lo, double *hi, ml_err *err);

/* Reference: linear CKA of X (n, p) and Y (n, q) straight from the definition in double
 * (centre, X^T X, Y^T Y, Y^T X by dgemm). NaN when either side is constant. For tests. */
double ml_cka_linear_direct(const float *X, int n, int p, const float *Y, int q);

#endif
