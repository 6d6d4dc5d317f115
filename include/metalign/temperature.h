/* The probability of a human's choices under a model's logits, with a temperature fitted by
 * maximum likelihood (MODEL.md section 8; src/analysis/temperature.c).
 *
 * With logit z_i and choice c_i in {0, 1}, p(c_i) = sigmoid(s_i z_i / T), s_i = 2 c_i - 1, and
 *     nll(T) = -sum_i log p(c_i) = sum_i softplus(-s_i z_i beta),   beta = 1 / T,
 * is convex in beta (its second derivative is sum_i z_i^2 sigma (1 - sigma) >= 0). The fit
 * minimises it over log T in [ML_TEMP_LOG_MIN, ML_TEMP_LOG_MAX] (the research code's bounds):
 * the derivative is checked at both ends of the beta interval, and when its sign changes
 * inside, a safeguarded Newton iteration on beta (bisection of the bracket, in log beta,
 * whenever a Newton step would leave it) runs to convergence (the bracket or the step below
 * 1e-14 relative, or the derivative exactly 0). */
#ifndef METALIGN_TEMPERATURE_H
#define METALIGN_TEMPERATURE_H

#include <stddef.h>
#include <stdint.h>

#define ML_TEMP_LOG_MIN (-4.6)
#define ML_TEMP_LOG_MAX 4.6

typedef struct ml_temp_fit {
    double temperature; /* T */
    double nll;         /* -sum log p(choice) at T (natural log) */
    int at_bound;       /* 0 inside; -1 at T = exp(ML_TEMP_LOG_MIN); +1 at T = exp(ML_TEMP_LOG_MAX) */
    int degenerate;     /* n == 0 or every z_i == 0: the NLL does not depend on T; T = 1 */
    int iterations;     /* Newton or bisection steps taken */
} ml_temp_fit;

/* -sum log p(choice_i) with p = sigmoid(z_i / T), T > 0, computed stably (softplus). */
double ml_choice_nll(const double *z, const uint8_t *choice, size_t n, double T);

/* The maximum-likelihood temperature of choices (0/1) given logits z (n values, finite). */
void ml_temperature_fit(const double *z, const uint8_t *choice, size_t n, ml_temp_fit *out);

#endif
