/* The replay's baseline learner: L2 logistic regression solved by Newton in the span of the
 * seen rows, refitted before every trial (include/metalign/baseline.h has the maths). */
#include "metalign/baseline.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ARMIJO 1e-4
#define PLACE_MAX_STEPS 60
#define PLACE_TOL 1e-3 /* change of the new row's logit */
#define MAX_HALVINGS 60

static double softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* logloss(y, f) = softplus(f) - y f */
static double logloss(uint8_t y, double f) { return softplus(f) - (y ? f : 0); }

/* Scratch of one fit, sized for m rows; carved from one allocation. */
typedef struct fit_ws {
    double *B;                              /* (m, m) I + C S K S, then its Cholesky factor */
    double *f, *g, *w, *s, *r, *Kr;         /* (m) each */
    double *rhs;                            /* (2, m) right-hand sides of the solves */
    double *da, *Kda, *fn, *an;
} fit_ws;

static double *ws_alloc(size_t m, fit_ws *w) {
    double *mem = malloc(sizeof(double) * (m * m + 16 * m + 16));
    if (!mem) return NULL;
    double *p = mem;
    w->B = p, p += m * m;
    w->rhs = p, p += 2 * m;
    double **vecs[] = {&w->f, &w->g, &w->w, &w->s, &w->r, &w->Kr, &w->da, &w->Kda, &w->fn, &w->an};
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) *vecs[i] = p, p += m;
    return mem;
}

/* The dense kernels below are small (m <= a few hundred, all in L2) and called from several
 * threads at once, so they are plain loops the compiler vectorises, one clone per
 * instruction set, rather than BLAS calls (OpenBLAS would thread some of them and serialise
 * concurrent callers on its pool). */
#if defined(__clang__)
#define KERNEL /* clang builds only the fuzz targets: no per-ISA clones */
#else
#define KERNEL __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#endif

#pragma GCC diagnostic ignored "-Wpsabi" /* vd8 never crosses a non-inlined call */
typedef double vd8 __attribute__((vector_size(64)));

static inline vd8 vload(const double *p) {
    vd8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* a . b with eight lanes of partial sums (a reduction the compiler will not reorder alone). */
KERNEL static double dot(const double *a, const double *b, size_t n) {
    vd8 acc = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) acc += vload(a + i) * vload(b + i);
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y = K x over the leading m x m block, as sum_j x_j K[j][:] (K is symmetric: row j is
 * column j), so the inner loop is an axpy over a contiguous row. */
KERNEL static void kmul(const double *K, size_t ld, size_t m, const double *x, double *y) {
    memset(y, 0, m * sizeof *y);
    for (size_t j = 0; j < m; j++) {
        const double *Kj = K + j * ld;
        double xj = x[j];
        for (size_t i = 0; i < m; i++) y[i] += xj * Kj[i];
    }
}

/* B = U^T U in place, U upper triangular, B and U row-major (only j >= i is read and
 * written): right-looking, so the m^3/3 flops are axpys over contiguous rows. -1 when not
 * positive definite (only NaN can do that here: B >= I). */
KERNEL static int cholesky(double *B, size_t m) {
    for (size_t k = 0; k < m; k++) {
        double *Uk = B + k * m;
        if (!(Uk[k] > 0)) return -1;
        double u = sqrt(Uk[k]), inv = 1.0 / u;
        Uk[k] = u;
        for (size_t j = k + 1; j < m; j++) Uk[j] *= inv;
        for (size_t i = k + 1; i < m; i++) {
            double *Bi = B + i * m, c = Uk[i];
            for (size_t j = i; j < m; j++) Bi[j] -= c * Uk[j];
        }
    }
    return 0;
}

/* x = B^-1 x and y = B^-1 y with B = U^T U: U^T z = c forward (axpys over rows of U), then
 * U x = z backward (dots). */
KERNEL static void chol_solve2(const double *U, size_t m, double *x, double *y) {
    for (size_t k = 0; k < m; k++) {
        const double *Uk = U + k * m;
        double xk = x[k] /= Uk[k], yk = y[k] /= Uk[k];
        for (size_t j = k + 1; j < m; j++) {
            x[j] -= Uk[j] * xk;
            y[j] -= Uk[j] * yk;
        }
    }
    for (size_t k = m; k-- > 0;) {
        const double *Uk = U + k * m;
        x[k] = (x[k] - dot(Uk + k + 1, x + k + 1, m - k - 1)) / Uk[k];
        y[k] = (y[k] - dot(Uk + k + 1, y + k + 1, m - k - 1)) / Uk[k];
    }
}

/* J from f = K a + b: 0.5 a^T K a = 0.5 a^T (f - b). */
static double objective(const double *a, double b, const double *f, const uint8_t *y, size_t m,
                        double C) {
    double quad = 0, loss = 0;
    for (size_t i = 0; i < m; i++) {
        quad += a[i] * (f[i] - b);
        loss += logloss(y[i], f[i]);
    }
    return 0.5 * quad + C * loss;
}

int ml_baseline_gram(const float *X, size_t n, size_t D, double *K, ml_err *err) {
    if (n == 0) return 0;
    double *Xd = malloc(sizeof(double) * n * D);
    if (!Xd) return ml_errf(err, "baseline: out of memory for %zu x %zu features", n, D);
    for (size_t i = 0; i < n * D; i++) Xd[i] = X[i];
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)n, (int)D, 1.0, Xd, (int)D, 0.0,
                K, (int)n);
    free(Xd);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++) K[j * n + i] = K[i * n + j];
    return 0;
}

/* The primal gradient's norm at a with predictions w->f: sqrt(r^T K r + (C sum g)^2). */
static double gradient_norm(const double *K, size_t ld, const uint8_t *y, size_t m, double C,
                            const double *a, fit_ws *w) {
    double sum_g = 0;
    for (size_t i = 0; i < m; i++) {
        double g = sigmoid(w->f[i]) - y[i];
        w->r[i] = a[i] + C * g;
        sum_g += g;
    }
    kmul(K, ld, m, w->r, w->Kr);
    return sqrt(fmax(dot(w->r, w->Kr, m), 0) + C * C * sum_g * sum_g);
}

/* The warm start's new coordinate: a[m-1] minimising J with every other a and b fixed. It is
 * a convex one-dimensional problem (f_i moves by K[i][m-1] per unit of a[m-1]), solved by
 * Newton's method kept inside the bracket the derivative's signs give (bisection when a step
 * would leave it) until f[m-1] moves by less than PLACE_TOL. f (m) holds K a + b on entry
 * and on return. Without it the first full Newton step overshoots: K's diagonal is of the
 * order of the feature count, so a unit of a moves that row's prediction by thousands. */
static void place_new_row(const double *K, size_t ld, const uint8_t *y, size_t m, double C,
                          double *a, double *f) {
    size_t k = m - 1;
    const double *Kk = K + k * ld; /* row k = column k: K is symmetric */
    double Ka_k = dot(Kk, a, m), x = a[k], lo = -INFINITY, hi = INFINITY;
    for (int it = 0; it < PLACE_MAX_STEPS; it++) {
        double d1 = Ka_k, d2 = Kk[k];
        for (size_t i = 0; i < m; i++) {
            double p = sigmoid(f[i]);
            d1 += C * Kk[i] * (p - y[i]);
            d2 += C * Kk[i] * Kk[i] * p * (1 - p);
        }
        if (d1 < 0)
            lo = x;
        else
            hi = x;
        double next = x - d1 / d2;
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi); /* both ends known here */
        double step = next - x;
        if (!isfinite(step)) break;
        a[k] = x = next;
        Ka_k += Kk[k] * step;
        for (size_t i = 0; i < m; i++) f[i] += Kk[i] * step;
        if (fabs(step) * Kk[k] <= PLACE_TOL) break;
    }
}

/* The Newton iteration of ml_baseline_fit with its scratch given. */
static int newton(const double *K, size_t ld, const uint8_t *y, size_t m, double C, double *a,
                  double *b, fit_ws *w, ml_baseline_stats *st, ml_err *err) {
    kmul(K, ld, m, a, w->f);
    for (size_t i = 0; i < m; i++) w->f[i] += *b;
    if (m >= 2) place_new_row(K, ld, y, m, C, a, w->f);
    double grad = INFINITY;
    for (int it = 0; it < ML_BASELINE_MAX_NEWTON; it++) {
        double sum_g = 0;
        for (size_t i = 0; i < m; i++) {
            double p = sigmoid(w->f[i]);
            w->g[i] = p - y[i];
            w->w[i] = p * (1 - p);
            w->s[i] = sqrt(w->w[i]);
            w->r[i] = a[i] + C * w->g[i];
            sum_g += w->g[i];
        }
        kmul(K, ld, m, w->r, w->Kr);
        grad = sqrt(fmax(dot(w->r, w->Kr, m), 0) + C * C * sum_g * sum_g);
        if (grad <= ML_BASELINE_GTOL) break;

        /* B = I + C S K S, upper triangle, factorised */
        for (size_t i = 0; i < m; i++) {
            const double *Ki = K + i * ld;
            double *Bi = w->B + i * m, ci = C * w->s[i];
            for (size_t j = i; j < m; j++) Bi[j] = ci * Ki[j] * w->s[j];
            Bi[i] += 1;
        }
        if (cholesky(w->B, m) != 0)
            return ml_errf(err, "baseline: the Newton system is not positive definite "
                                "(non-finite features?)");
        st->newton_steps++;
        /* two solves at once: t1 = B^-1 S K r, t3 = B^-1 S 1 (baseline.h) */
        double *t1 = w->rhs, *t3 = w->rhs + m;
        for (size_t i = 0; i < m; i++) {
            t1[i] = w->s[i] * w->Kr[i];
            t3[i] = w->s[i];
        }
        chol_solve2(w->B, m, t1, t3);
        /* the denominator is a Schur complement, (S1)^T B^-1 (S1) > 0: written so, it
         * cannot vanish by cancellation */
        double db = (dot(w->s, t1, m) - sum_g) / dot(w->s, t3, m);
        for (size_t i = 0; i < m; i++)
            w->da[i] = -(w->r[i] - C * w->s[i] * (t1[i] - db * t3[i]));
        kmul(K, ld, m, w->da, w->Kda);
        /* lambda^2 = -grad . step, the primal gradient being (K r, C sum g) in the span */
        double lambda2 = -(dot(w->Kr, w->da, m) + C * sum_g * db);
        if (!(lambda2 >= 0)) lambda2 = 0;

        /* Near the optimum J cannot tell a full step from a smaller one (the decrease,
         * lambda^2 / 2, is below its rounding): take the full step, where Newton is at its
         * quadratic best, and end the fit. */
        int last = lambda2 <= ML_BASELINE_DECREMENT;
        double J = objective(a, *b, w->f, y, m, C), step = 1;
        int h = 0;
        for (; !last && h <= MAX_HALVINGS; h++, step *= 0.5) {
            for (size_t i = 0; i < m; i++) {
                w->an[i] = a[i] + step * w->da[i];
                w->fn[i] = w->f[i] + step * (w->Kda[i] + db);
            }
            if (objective(w->an, *b + step * db, w->fn, y, m, C) <= J - ARMIJO * step * lambda2)
                break;
        }
        if (h > MAX_HALVINGS) break; /* no decrease is possible: at the rounding floor */
        st->line_search += h;
        for (size_t i = 0; i < m; i++) {
            a[i] += step * w->da[i];
            w->f[i] += step * (w->Kda[i] + db);
        }
        *b += step * db;
        if (last) {
            grad = gradient_norm(K, ld, y, m, C, a, w);
            break;
        }
    }
    if (grad > st->max_grad) st->max_grad = grad;
    return 0;
}

int ml_baseline_fit(const double *K, size_t ldk, const uint8_t *y, size_t m, double C,
                    double *a, double *b, ml_baseline_stats *st, ml_err *err) {
    ml_baseline_stats local = {0};
    if (!st) st = &local;
    if (m == 0) return 0;
    fit_ws w;
    double *mem = ws_alloc(m, &w);
    if (!mem) return ml_errf(err, "baseline: out of memory for a fit on %zu rows", m);
    int rc = newton(K, ldk, y, m, C, a, b, &w, st, err);
    if (rc == 0) st->fits++;
    free(mem);
    return rc;
}

int ml_baseline_sequence(const double *K, const uint8_t *y, size_t n, double C, double *z,
                         uint8_t *fitted, ml_baseline_stats *st, ml_err *err) {
    ml_baseline_stats local = {0};
    if (!st) st = &local;
    if (n > ML_BASELINE_MAX_ROWS)
        return ml_errf(err, "baseline: a sequence of %zu trials is longer than the %d the "
                            "logistic baseline supports",
                       n, ML_BASELINE_MAX_ROWS);
    if (n == 0) return 0;
    fit_ws w;
    double *mem = ws_alloc(n, &w), *a = calloc(n, sizeof *a);
    if (!mem || !a) {
        free(mem);
        free(a);
        return ml_errf(err, "baseline: out of memory for a sequence of %zu trials", n);
    }
    double b = 0;
    int seen[2] = {0, 0}, rc = 0;
    for (size_t t = 0; t < n && rc == 0; t++) {
        int ready = seen[0] && seen[1];
        if (fitted) fitted[t] = (uint8_t)ready;
        z[t] = 0;
        if (ready) {
            /* Warm start: the previous fit, and 0 for the row it had not seen (a only ever
             * grows, so that entry is still 0 from calloc). */
            rc = newton(K, n, y, t, C, a, &b, &w, st, err);
            if (rc == 0) {
                st->fits++;
                z[t] = dot(K + t * n, a, t) + b;
            }
        }
        seen[y[t] ? 1 : 0] = 1;
    }
    free(mem);
    free(a);
    return rc;
}
