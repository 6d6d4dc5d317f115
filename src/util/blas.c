#include "metalign/blas.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Declared by OpenBLAS but not by every cblas.h. */
char *openblas_get_corename(void);
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

const char *ml_blas_core(void) { return openblas_get_corename(); }

const char *ml_blas_wanted_core(void) {
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want) return NULL;

    /* Only override the generic fallbacks; a specific model OpenBLAS recognised is kept. */
    static const char *const generic[] = {"Prescott", "Core2", "Penryn", "Dunnington",
                                          "Nehalem", "Atom", "Katmai", "Coppermine",
                                          "Northwood", "Banias", "Barcelona", "Unknown"};
    const char *core = openblas_get_corename();
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        if (core && strcasecmp(core, generic[i]) == 0) return want;
    return NULL;
}

void ml_blas_select_core(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("METALIGN_KEEP_BLAS_CORE")) return;
    const char *want = ml_blas_wanted_core();
    if (!want) return;
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
    /* Idle OpenBLAS workers spin on sched_yield for 2^28 cycles by default, stealing the
     * cores from the forward pass's own threads between GEMMs (10% of the pass); 2^4 makes
     * them sleep at once. Also read only at load time, so it rides on this re-exec. */
    if (!getenv("OPENBLAS_THREAD_TIMEOUT")) setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the slow kernels rather than not at all. */
    fprintf(stderr, "metalign: could not re-execute with OPENBLAS_CORETYPE=%s; "
                    "set it yourself for full speed\n", want);
    unsetenv("OPENBLAS_CORETYPE");
}

void ml_blas_set_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}

int ml_blas_threads(void) { return openblas_get_num_threads(); }
