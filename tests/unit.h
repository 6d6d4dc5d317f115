/* A tiny TAP producer for the C tests: each RUN(test) prints "ok N - test" or "not ok N - test"
 * with the failed checks as "# file:line: ..." diagnostics; meson runs the binaries with the
 * TAP protocol, so every test function is counted on its own. */
#ifndef METALIGN_TESTS_UNIT_H
#define METALIGN_TESTS_UNIT_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ut_count, ut_failures, ut_current_failed;

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
        if (!(cond)) ut_fail(__FILE__, __LINE__, "check failed: %s", #cond);         \
    } while (0)

/* Fails the test and returns from the test function at once (later checks would only repeat
 * the failure or crash on what is missing). */
#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            ut_fail(__FILE__, __LINE__, "required: %s", #cond);                      \
            return;                                                                  \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) ut_fail(__FILE__, __LINE__, __VA_ARGS__);                       \
    } while (0)

/* |a - b| <= atol + rtol * |b| (b is the reference) */
#define CHECK_NEAR(a, b, rtol, atol)                                                 \
    do {                                                                             \
        double ut_a = (double)(a), ut_b = (double)(b);                               \
        if (!(fabs(ut_a - ut_b) <= (atol) + (rtol)*fabs(ut_b)))                      \
            ut_fail(__FILE__, __LINE__, "%s = %.9g, expected %s = %.9g", #a, ut_a,  \
                    #b, ut_b);                                                       \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                         \
    do {                                                                             \
        const char *ut_h = (haystack), *ut_n = (needle);                             \
        if (!ut_h || !strstr(ut_h, ut_n))                                            \
            ut_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"",           \
                    ut_h ? ut_h : "(null)", ut_n);                                   \
    } while (0)

__attribute__((unused)) static void ut_run(const char *name, void (*fn)(void)) {
    ut_current_failed = 0;
    fn();
    ut_count++;
    if (ut_current_failed) ut_failures++;
    printf("%sok %d - %s\n", ut_current_failed ? "not " : "", ut_count, name);
    fflush(stdout);
}

#define RUN(fn) ut_run(#fn, fn)

/* Ends main(): prints the TAP plan and returns the exit status. */
#define UT_DONE() (printf("1..%d\n", ut_count), ut_failures ? 1 : 0)

/* Source-tree paths for fixtures: meson passes -DML_SOURCE_ROOT="...". */
#ifndef ML_SOURCE_ROOT
#define ML_SOURCE_ROOT "."
#endif
#define FIXTURE(rel) ML_SOURCE_ROOT "/tests/fixtures/" rel

#endif
