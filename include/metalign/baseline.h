/* The baseline learner of the replay (MODEL.md section 8; src/analysis/baseline.c):
 * Demircan et al.'s category learner, sklearn's LogisticRegression(C=1.0) refitted before
 * every trial t on the participant's trials < t, predicting trial t.
 *
 * The objective is sklearn's: 0.5 ||w||^2 + C sum_i logloss(y_i, w . x_i + b), the intercept
 * b unpenalised. Its minimiser lies in the span of the seen rows, w = X^T a, so with n rows of
 * D >> n features the fit is an (n+1)-dimensional problem in (a, b) that needs only the Gram
 * matrix K = X X^T:
 *     J(a, b) = 0.5 a^T K a + C sum_i logloss(y_i, f_i),   f = K a + b 1.
 * Each Newton step is the primal Newton step mapped into the span (exact, not an
 * approximation). With g = sigmoid(f) - y, omega = sigmoid(f)(1 - sigmoid(f)), s = omega^1/2,
 * S = diag(s), r = a + C g, the primal step (dw = X^T da, db) solves
 *     (I + C diag(omega) K) da + C omega db = -r,   omega^T K da + sum(omega) db = -sum g.
 * With B = I + C S K S (symmetric, eigenvalues >= 1: Cholesky-factorised) and the two solves
 * t1 = B^-1 S K r, t3 = B^-1 s, using C S K S = B - I,
 *     db = (s^T t1 - sum g) / (s^T t3),   da = -(r - C S (t1 - db t3)),
 * then a backtracking (Armijo) line search on J. Per step: one factorisation (m^3 / 3) and
 * O(m^2) besides (K r, K da, the two solves). A repeated row (the same concept twice)
 * makes K singular; B stays well conditioned, so nothing special is needed.
 *
 * Convergence: the primal gradient's norm, sqrt(r^T K r + (C sum g)^2), below
 * ML_BASELINE_GTOL, or a Newton decrement lambda^2 = -grad . step below ML_BASELINE_DECREMENT:
 * then the full step is taken (J cannot see so small a decrease through its rounding, so no
 * line search) and the fit ends; quadratic convergence leaves an error of order lambda^4.
 *
 * Warm start: the fit before trial t starts from the one before trial t - 1, and the
 * coefficient of the row that fit had not seen is placed first: J minimised over it alone
 * (every other a and b fixed), a convex one-dimensional problem solved by bracketed Newton.
 * Without that the first full step overshoots (K's diagonal is of the order of the feature
 * count) and costs two or three more factorisations per fit. The dense kernels are plain C,
 * without BLAS, so that several threads can fit sequences at once. */
#ifndef METALIGN_BASELINE_H
#define METALIGN_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"

#define ML_BASELINE_C 1.0            /* sklearn's default inverse regularisation */
#define ML_BASELINE_GTOL 1e-10       /* primal gradient norm */
#define ML_BASELINE_DECREMENT 1e-12 /* Newton decrement below which the fit ends */
#define ML_BASELINE_MAX_NEWTON 100   /* steps per fit (never reached in practice) */
#define ML_BASELINE_MAX_ROWS 4096    /* longest sequence: K alone is n^2 doubles */

typedef struct ml_baseline_stats {
    long fits;          /* trials with a fit (both classes seen before them) */
    long newton_steps;  /* Newton steps, i.e. Cholesky factorisations */
    long line_search;   /* step halvings */
    double max_grad;    /* largest final gradient norm over the fits */
} ml_baseline_stats;

/* K (n, n) = X X^T, row-major and full (both triangles), of the standardised feature rows
 * X (n, D) float32, computed in double with one DSYRK. K[t][0..t-1] and its leading t x t
 * block are all the fit before trial t needs, so the fits reuse it as it grows by one row
 * and column per trial. */
int ml_baseline_gram(const float *X, size_t n, size_t D, double *K, ml_err *err);

/* One fit on rows 0..m-1 of K (leading dimension ldk) with labels y (0/1, both present):
 * a (m) and *b are the starting point on entry (zeros, or the previous fit with a 0 appended;
 * a[m-1] is first placed by its one-dimensional solve, as in the warm start) and the
 * solution on return. Adds to *st (which may be NULL). */
int ml_baseline_fit(const double *K, size_t ldk, const uint8_t *y, size_t m, double C,
                    double *a, double *b, ml_baseline_stats *st, ml_err *err);

/* The learner over one sequence of n trials: z[t] = w_t . x_t + b_t from the fit on trials
 * < t, warm-started from the fit before it; z[t] = 0 (p = 0.5) and fitted[t] = 0 while the
 * trials < t hold only one class. fitted may be NULL. n <= ML_BASELINE_MAX_ROWS. */
int ml_baseline_sequence(const double *K, const uint8_t *y, size_t n, double C, double *z,
                         uint8_t *fitted, ml_baseline_stats *st, ml_err *err);

#endif
