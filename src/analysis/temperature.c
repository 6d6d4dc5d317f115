/* Maximum-likelihood temperature of choices given logits (include/metalign/temperature.h):
 * a one-dimensional convex problem in beta = 1/T, solved by safeguarded Newton. */
#include "metalign/temperature.h"

#include <math.h>

#define MAX_STEPS 200
#define REL_TOL 1e-14

/* log(1 + e^x) without overflow or loss of precision. */
static double softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

/* sigmoid(x), exact at both tails. */
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static double margin(const double *z, const uint8_t *c, size_t i) { return c[i] ? z[i] : -z[i]; }

double ml_choice_nll(const double *z, const uint8_t *choice, size_t n, double T) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += softplus(-margin(z, choice, i) / T);
    return s;
}

/* f(beta) = sum softplus(-m beta): f' = -sum m sigmoid(-m beta), f'' = sum m^2 s (1 - s). */
static void derivatives(const double *z, const uint8_t *c, size_t n, double beta, double *d1,
                        double *d2) {
    double g = 0, h = 0;
    for (size_t i = 0; i < n; i++) {
        double m = margin(z, c, i), s = sigmoid(-m * beta);
        g -= m * s;
        h += m * m * s * (1 - s);
    }
    *d1 = g;
    *d2 = h;
}

void ml_temperature_fit(const double *z, const uint8_t *choice, size_t n, ml_temp_fit *out) {
    out->at_bound = 0;
    out->degenerate = 0;
    out->iterations = 0;
    int informative = 0;
    for (size_t i = 0; i < n && !informative; i++) informative = z[i] != 0;
    if (!informative) {
        out->degenerate = 1;
        out->temperature = 1;
        out->nll = (double)n * log(2.0);
        return;
    }
    /* beta's interval: log beta = -log T in [-ML_TEMP_LOG_MAX, -ML_TEMP_LOG_MIN]. */
    double lo = exp(-ML_TEMP_LOG_MAX), hi = exp(-ML_TEMP_LOG_MIN), g, h;
    derivatives(z, choice, n, lo, &g, &h);
    if (g >= 0) { /* rising from the smallest beta: the largest T is best */
        out->at_bound = 1;
        out->temperature = exp(ML_TEMP_LOG_MAX);
        out->nll = ml_choice_nll(z, choice, n, out->temperature);
        return;
    }
    derivatives(z, choice, n, hi, &g, &h);
    if (g <= 0) { /* still falling at the largest beta: the smallest T is best */
        out->at_bound = -1;
        out->temperature = exp(ML_TEMP_LOG_MIN);
        out->nll = ml_choice_nll(z, choice, n, out->temperature);
        return;
    }
    /* f'(lo) < 0 < f'(hi): the minimum is inside; keep it bracketed. */
    double beta = 1.0;
    for (int it = 0; it < MAX_STEPS; it++) {
        out->iterations = it + 1;
        derivatives(z, choice, n, beta, &g, &h);
        if (g == 0) break;
        if (g < 0)
            lo = beta;
        else
            hi = beta;
        double next = h > 0 ? beta - g / h : NAN;
        /* Outside the bracket (or a flat second derivative): bisect it, geometrically, since
         * it spans four orders of magnitude. */
        if (!(next > lo && next < hi)) next = sqrt(lo * hi);
        double step = fabs(next - beta);
        beta = next;
        if (step <= REL_TOL * beta || hi - lo <= REL_TOL * hi) break;
    }
    out->temperature = 1.0 / beta;
    out->nll = ml_choice_nll(z, choice, n, out->temperature);
}
