/* CKA benchmark at the service's size: n = 1,854 items, the backbone (p = 2,304) and seven
 * hidden representations (p = 768: embedding + 6 blocks), K = 66 targets.
 *
 * Reports wall and process CPU seconds for: preparing the target and each representation
 * (Gram in double + target terms), one request (linear / debiased, all dims and dims 0,1,2),
 * the 8 x 8 matrix (linear + debiased), and the bootstrap interval of all 8 representations
 * for n_boot resamples.
 *
 * Usage: bench_cka [--boot 200,1000] [--threads N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metalign/blas.h"
#include "metalign/cka.h"
#include "metalign/rng.h"

enum { N = 1854, P_BIG = 2304, P_HID = 768, K = 66, REPS = 8 };

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct stopwatch {
    double wall, cpu;
} stopwatch;

static stopwatch start(void) {
    return (stopwatch){clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_PROCESS_CPUTIME_ID)};
}

static void report(const char *what, stopwatch s, int times) {
    double wall = (clock_s(CLOCK_MONOTONIC) - s.wall) / times;
    double cpu = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - s.cpu) / times;
    if (wall < 1e-3)
        printf("%-44s %10.2f us wall %10.2f us cpu\n", what, wall * 1e6, cpu * 1e6);
    else
        printf("%-44s %10.3f s  wall %10.3f s  cpu\n", what, wall, cpu);
}

static float *random_matrix(int n, int p, ml_rng *r, float offset) {
    float *A = malloc(sizeof(float) * (size_t)n * p);
    if (!A) exit(1);
    for (size_t i = 0; i < (size_t)n * p; i++) A[i] = offset + (float)ml_rng_double(r);
    return A;
}

static void die(const ml_err *err) {
    fprintf(stderr, "bench_cka: %s\n", err->msg);
    exit(1);
}

int main(int argc, char **argv) {
    ml_blas_select_core(argv);
    const char *boots = "200,1000";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--boot") && i + 1 < argc) {
            boots = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            ml_blas_set_threads(atoi(argv[++i]));
        } else {
            fprintf(stderr, "usage: bench_cka [--boot 200,1000] [--threads N]\n");
            return 2;
        }
    }
    printf("OpenBLAS core %s, %d threads; n = %d, K = %d\n", ml_blas_core(), ml_blas_threads(),
           N, K);
    ml_rng r;
    ml_rng_seed(&r, 1, 0);
    float *Y = random_matrix(N, K, &r, 0);
    float *X[REPS];
    for (int i = 0; i < REPS; i++) X[i] = random_matrix(N, i ? P_HID : P_BIG, &r, 2.0f * i);
    ml_err err;

    stopwatch s = start();
    ml_cka_target *t = ml_cka_target_new(Y, N, K, &err);
    if (!t) die(&err);
    report("prepare target (66 dims)", s, 1);
    ml_cka_rep *reps[REPS];
    for (int i = 0; i < REPS; i++) {
        s = start();
        if (!(reps[i] = ml_cka_rep_new(X[i], N, i ? P_HID : P_BIG, t, &err))) die(&err);
        if (i < 2) report(i ? "prepare representation p=768" : "prepare representation p=2304",
                          s, 1);
    }

    int eval[] = {0, 1, 2};
    double v, sink = 0;
    const int times = 20000;
    s = start();
    for (int k = 0; k < times; k++) {
        ml_cka_linear(reps[k % REPS], t, NULL, 0, &v, &err);
        sink += v;
    }
    report("request: linear, all 66 dims, one rep", s, times);
    s = start();
    for (int k = 0; k < times; k++) {
        ml_cka_debiased(reps[k % REPS], t, NULL, 0, &v, &err);
        sink += v;
    }
    report("request: debiased, all 66 dims, one rep", s, times);
    s = start();
    for (int k = 0; k < times; k++) {
        ml_cka_linear(reps[k % REPS], t, eval, 3, &v, &err);
        sink += v;
    }
    report("request: linear, dims 0,1,2, one rep", s, times);

    double lin[REPS * REPS], deb[REPS * REPS];
    s = start();
    if (ml_cka_matrix((const ml_cka_rep *const *)reps, REPS, lin, deb, &err)) die(&err);
    report("matrix 8 x 8 (linear + debiased)", s, 1);

    for (const char *p = boots; *p;) {
        int B = atoi(p);
        double lo[REPS], hi[REPS];
        char what[64];
        snprintf(what, sizeof what, "bootstrap 8 reps, dims 0,1,2, n_boot=%d", B);
        s = start();
        if (ml_cka_bootstrap((const ml_cka_rep *const *)reps, REPS, t, eval, 3, B, 95, 0, lo, hi,
                             &err))
            die(&err);
        report(what, s, 1);
        snprintf(what, sizeof what, "bootstrap 8 reps, all dims, n_boot=%d", B);
        s = start();
        if (ml_cka_bootstrap((const ml_cka_rep *const *)reps, REPS, t, NULL, 0, B, 95, 0, lo, hi,
                             &err))
            die(&err);
        report(what, s, 1);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    printf("(checksum %g)\n", sink);
    for (int i = 0; i < REPS; i++) {
        ml_cka_rep_free(reps[i]);
        free(X[i]);
    }
    ml_cka_target_free(t);
    free(Y);
    return 0;
}
