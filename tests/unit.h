/* A tiny TAP producer for the C tests: each RUN(test) prints "ok N - test" or "not ok N - test"
 * with the failed checks as "# file:line: ..." diagnostics; meson runs the binaries with the
 * TAP protocol, so every test function is counted on its own.
 *
 * CHECK*      record a failure and go on.
 * REQUIRE*    record a failure and return from the (void) test function at once: for what the
 *             rest of the test cannot do without (a fixture, an allocation, a started server).
 * CHECK_EQ_*  print both values when they differ.
 * CHECK_ARRAY_NEAR  elementwise closeness in which any NaN or infinity fails.
 * A test function that runs no check at all fails too: a test that cannot fail is a defect
 * (typically a loop over a fixture that was not there). */
#ifndef METALIGN_TESTS_UNIT_H
#define METALIGN_TESTS_UNIT_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ut_count, ut_failures, ut_current_failed;
static long ut_checks; /* checks evaluated in the current test */

__attribute__((format(printf, 3, 4), unused)) static void ut_fail(const char *file, int line,
                                                                 const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("# %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    ut_current_failed++;
}

#define CHECK(cond)                                                                  \
    do {                                                                             \
        ut_checks++;                                                                 \
        if (!(cond)) ut_fail(__FILE__, __LINE__, "check failed: %s", #cond);         \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        ut_checks++;                                                                 \
        if (!(cond)) ut_fail(__FILE__, __LINE__, __VA_ARGS__);                       \
    } while (0)

/* Fails the test and returns from the enclosing void function when cond is false. */
#define REQUIRE(cond)                                                                \
    do {                                                                             \
        ut_checks++;                                                                 \
        if (!(cond)) {                                                               \
            ut_fail(__FILE__, __LINE__, "required: %s", #cond);                      \
            return;                                                                  \
        }                                                                            \
    } while (0)

#define REQUIRE_MSG(cond, ...)                                                       \
    do {                                                                             \
        ut_checks++;                                                                 \
        if (!(cond)) {                                                               \
            ut_fail(__FILE__, __LINE__, __VA_ARGS__);                                \
            return;                                                                  \
        }                                                                            \
    } while (0)

/* |a - b| <= atol + rtol * |b| (b is the reference); NaN on either side fails. */
#define CHECK_NEAR(a, b, rtol, atol)                                                 \
    do {                                                                             \
        double ut_a = (double)(a), ut_b = (double)(b);                               \
        ut_checks++;                                                                 \
        if (!(fabs(ut_a - ut_b) <= (atol) + (rtol)*fabs(ut_b)))                      \
            ut_fail(__FILE__, __LINE__, "%s = %.9g, expected %s = %.9g", #a, ut_a,  \
                    #b, ut_b);                                                       \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                           \
    do {                                                                             \
        long long ut_a = (long long)(a), ut_b = (long long)(b);                      \
        ut_checks++;                                                                 \
        if (ut_a != ut_b)                                                            \
            ut_fail(__FILE__, __LINE__, "%s = %lld, expected %s = %lld", #a, ut_a,   \
                    #b, ut_b);                                                       \
    } while (0)

#define CHECK_EQ_SIZE(a, b)                                                          \
    do {                                                                             \
        size_t ut_a = (size_t)(a), ut_b = (size_t)(b);                               \
        ut_checks++;                                                                 \
        if (ut_a != ut_b)                                                            \
            ut_fail(__FILE__, __LINE__, "%s = %zu, expected %s = %zu", #a, ut_a, #b, \
                    ut_b);                                                           \
    } while (0)

/* Equal strings; NULL equals only NULL. */
#define CHECK_EQ_STR(a, b)                                                           \
    do {                                                                             \
        const char *ut_a = (a), *ut_b = (b);                                         \
        ut_checks++;                                                                 \
        if (!(ut_a == ut_b || (ut_a && ut_b && strcmp(ut_a, ut_b) == 0)))            \
            ut_fail(__FILE__, __LINE__, "%s = %s%s%s, expected %s = %s%s%s", #a,     \
                    ut_a ? "\"" : "", ut_a ? ut_a : "(null)", ut_a ? "\"" : "", #b,  \
                    ut_b ? "\"" : "", ut_b ? ut_b : "(null)", ut_b ? "\"" : "");     \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                         \
    do {                                                                             \
        const char *ut_h = (haystack), *ut_n = (needle);                             \
        ut_checks++;                                                                 \
        if (!ut_h || !strstr(ut_h, ut_n))                                            \
            ut_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"",           \
                    ut_h ? ut_h : "(null)", ut_n);                                   \
    } while (0)

/* Flags of CHECK_ARRAY_NEAR_AS. UT_SAME_NONFINITE_OK: a NaN facing a NaN, or an infinity
 * facing the same infinity, counts as equal (for outputs that are meant to be non-finite,
 * e.g. an empty trial). UT_TOL_MAX: the tolerance is max(atol, rtol * |want|) instead of the
 * sum (rtol * max(1, |want|) with atol = rtol). */
#define UT_SAME_NONFINITE_OK 1
#define UT_TOL_MAX 2

static double ut_elem(const float *f, const double *d, int64_t i) { return f ? f[i] : d[i]; }

/* Every |got[i] - want[i]| <= atol + rtol * |want[i]|, and every value finite on both sides.
 * On failure prints how many elements are non-finite or too far off, the first non-finite
 * one and the worst one (relative to its tolerance). Returns 1 when close. Called through
 * CHECK_ARRAY_NEAR (float or double arrays, either side). */
__attribute__((unused)) static int ut_array_near(const char *file, int line, const char *label,
                                                 const float *gf, const double *gd,
                                                 const float *wf, const double *wd, int64_t n,
                                                 double rtol, double atol, int flags) {
    ut_checks++;
    if ((!gf && !gd) || (!wf && !wd)) {
        ut_fail(file, line, "%s: %s array is NULL", label, !gf && !gd ? "the tested" : "the reference");
        return 0;
    }
    if (n <= 0) {
        ut_fail(file, line, "%s: %lld elements: nothing to compare", label, (long long)n);
        return 0;
    }
    int64_t n_nonfinite = 0, first_nf = -1, n_far = 0, worst_at = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = ut_elem(gf, gd, i), w = ut_elem(wf, wd, i);
        if (!isfinite(g) || !isfinite(w)) {
            int same = (isnan(g) && isnan(w)) || (isinf(g) && g == w);
            if ((flags & UT_SAME_NONFINITE_OK) && same) continue;
            if (first_nf < 0) first_nf = i;
            n_nonfinite++;
            continue;
        }
        double e = fabs(g - w), rel = rtol * fabs(w);
        double tol = flags & UT_TOL_MAX ? (atol > rel ? atol : rel) : atol + rel;
        double ratio = tol > 0 ? e / tol : (e > 0 ? INFINITY : 0);
        if (e > tol) n_far++;
        if (ratio > worst || worst_at < 0) {
            worst = ratio;
            worst_at = i;
        }
    }
    if (n_nonfinite)
        ut_fail(file, line, "%s: %lld of %lld elements non-finite (first: [%lld] = %.9g, "
                "expected %.9g)", label, (long long)n_nonfinite, (long long)n,
                (long long)first_nf, ut_elem(gf, gd, first_nf), ut_elem(wf, wd, first_nf));
    if (n_far) {
        double g = ut_elem(gf, gd, worst_at), w = ut_elem(wf, wd, worst_at);
        double rel = rtol * fabs(w);
        double tol = flags & UT_TOL_MAX ? (atol > rel ? atol : rel) : atol + rel;
        ut_fail(file, line, "%s: %lld of %lld elements differ (worst: [%lld] = %.9g, expected "
                "%.9g, |diff| %.3g > %.3g = %s(%g, %g * |expected|))", label, (long long)n_far,
                (long long)n, (long long)worst_at, g, w, fabs(g - w), tol,
                flags & UT_TOL_MAX ? "max" : "sum", atol, rtol);
    }
    return n_nonfinite == 0 && n_far == 0;
}

#define UT_AS_F32(p) _Generic((p), float *: (p), const float *: (p), default: (const float *)NULL)
#define UT_AS_F64(p)                                                                 \
    _Generic((p), double *: (p), const double *: (p), default: (const double *)NULL)

/* got and want: float or double arrays of n elements; tolerance atol + rtol * |want|. The
 * value is 1 when close, so a caller can also keep the verdict. */
#define CHECK_ARRAY_NEAR(got, want, n, rtol, atol)                                   \
    ut_array_near(__FILE__, __LINE__, #got, UT_AS_F32(got), UT_AS_F64(got),          \
                  UT_AS_F32(want), UT_AS_F64(want), (int64_t)(n), (rtol), (atol), 0)
/* The same with a label for the diagnostics and flags (UT_SAME_NONFINITE_OK). */
#define CHECK_ARRAY_NEAR_AS(label, got, want, n, rtol, atol, flags)                  \
    ut_array_near(__FILE__, __LINE__, (label), UT_AS_F32(got), UT_AS_F64(got),       \
                  UT_AS_F32(want), UT_AS_F64(want), (int64_t)(n), (rtol), (atol), (flags))

/* A check that failed outside any test (in main, between two RUNs: a daemon's exit status,
 * say) becomes a failing point of its own, so it cannot be lost when the next test starts. */
__attribute__((unused)) static int ut_flush_loose(void) {
    if (ut_current_failed) {
        ut_count++;
        ut_failures++;
        printf("not ok %d - checks outside a test (see the lines above)\n", ut_count);
        fflush(stdout);
    }
    ut_current_failed = 0;
    ut_checks = 0;
    return 0;
}

/* Ends one test: its TAP line (a test that evaluated no check fails: it cannot fail). */
__attribute__((unused)) static void ut_run_end(const char *name) {
    if (ut_checks == 0) {
        printf("# %s ran no checks: a test that cannot fail\n", name);
        ut_current_failed++;
    }
    ut_count++;
    if (ut_current_failed) ut_failures++;
    printf("%sok %d - %s\n", ut_current_failed ? "not " : "", ut_count, name);
    fflush(stdout);
    ut_current_failed = 0;
    ut_checks = 0;
}

__attribute__((unused)) static void ut_run(const char *name, void (*fn)(void)) {
    ut_flush_loose();
    fn();
    ut_run_end(name);
}

#define RUN(fn) ut_run(#fn, fn)

/* RUN for a test that takes the fixture its neighbours share (e.g. one running daemon). */
#define RUN_WITH(fn, arg)                                                            \
    do {                                                                             \
        ut_flush_loose();                                                            \
        fn(arg);                                                                     \
        ut_run_end(#fn);                                                             \
    } while (0)

/* Ends main(): prints the TAP plan and returns the exit status. */
#define UT_DONE() (ut_flush_loose(), printf("1..%d\n", ut_count), ut_failures ? 1 : 0)

/* Fixture paths. The root is $ML_FIXTURES_DIR when set (tools/check_suite_fails.sh points it
 * at a damaged copy), else the source tree's tests/fixtures (meson passes
 * -DML_SOURCE_ROOT="..."). FIXTURE("model/x.safetensors") and FIXTUREF("io/%s.pt", name)
 * return a path that stays valid until the program ends (one copy per distinct path). */
#ifndef ML_SOURCE_ROOT
#define ML_SOURCE_ROOT "."
#endif
#define UT_MAX_FIXTURE_PATHS 512

__attribute__((unused)) static const char *ut_fixture_root(void) {
    const char *env = getenv("ML_FIXTURES_DIR");
    return env && env[0] ? env : ML_SOURCE_ROOT "/tests/fixtures";
}

__attribute__((unused)) static const char *ut_fixture(const char *rel) {
    static char *paths[UT_MAX_FIXTURE_PATHS];
    static int n_paths;
    const char *root = ut_fixture_root();
    size_t len = strlen(root) + 1 + strlen(rel);
    for (int i = 0; i < n_paths; i++)
        if (strlen(paths[i]) == len && !strncmp(paths[i], root, strlen(root)) &&
            !strcmp(paths[i] + strlen(root) + 1, rel))
            return paths[i];
    char *p = malloc(len + 1);
    if (!p || n_paths == UT_MAX_FIXTURE_PATHS) {
        printf("Bail out! out of fixture path slots for %s\n", rel);
        exit(1);
    }
    snprintf(p, len + 1, "%s/%s", root, rel);
    paths[n_paths++] = p;
    return p;
}

__attribute__((format(printf, 1, 2), unused)) static const char *ut_fixturef(const char *fmt,
                                                                             ...) {
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    return ut_fixture(rel);
}

#define FIXTURE(rel) ut_fixture(rel)
#define FIXTUREF(...) ut_fixturef(__VA_ARGS__)

#endif
