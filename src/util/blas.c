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

    /* Override the generic fallbacks (a virtual machine that hides the CPU model), and AVX2
     * kernels on a CPU that has AVX-512: Debian's OpenBLAS 0.3.21 gives AMD Zen 4 its
     * Haswell kernels, whose SGEMM runs at half the SkylakeX kernels' rate there (measured:
     * 248 vs 488 GFLOP/s on (6400 x 768) x (768 x 3072), 2 threads). Any other model OpenBLAS
     * recognised is kept. */
    static const char *const generic[] = {"Prescott", "Core2", "Penryn", "Dunnington",
                                          "Nehalem", "Atom", "Katmai", "Coppermine",
                                          "Northwood", "Banias", "Barcelona", "Unknown"};
    static const char *const avx2_only[] = {"Haswell", "Zen"};
    const char *core = openblas_get_corename();
    if (!core) return want;
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        if (strcasecmp(core, generic[i]) == 0) return want;
    if (strcmp(want, "SkylakeX") == 0)
        for (size_t i = 0; i < sizeof avx2_only / sizeof avx2_only[0]; i++)
            if (strcasecmp(core, avx2_only[i]) == 0) return want;
    return NULL;
}

/* An operator's OPENBLAS_CORETYPE is respected, but one narrower than the CPU costs half the
 * GEMM rate, which deserves a line on stderr. */
static void warn_narrow_core(const char *set) {
    static const char *const avx2_only[] = {"Haswell", "Zen", "Prescott", "Nehalem"};
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
        return;
    for (size_t i = 0; i < sizeof avx2_only / sizeof avx2_only[0]; i++)
        if (strcasecmp(set, avx2_only[i]) == 0) {
            fprintf(stderr, "metalignd: note: OPENBLAS_CORETYPE=%s is set, but this CPU has "
                            "AVX-512: OPENBLAS_CORETYPE=SkylakeX runs SGEMM about twice as "
                            "fast here\n", set);
            return;
        }
}

/* --help and --version print and exit: no reason to start the process twice. */
static int prints_only(char **argv) {
    for (char **a = argv + 1; *a; a++)
        if (!strcmp(*a, "--help") || !strcmp(*a, "--version")) return 1;
    return 0;
}

void ml_blas_select_core(char **argv) {
    if (getenv("METALIGN_KEEP_BLAS_CORE") || prints_only(argv)) return;
    if (getenv("OPENBLAS_CORETYPE")) warn_narrow_core(getenv("OPENBLAS_CORETYPE"));
    const char *want = getenv("OPENBLAS_CORETYPE") ? NULL : ml_blas_wanted_core();
    /* Idle OpenBLAS workers spin on sched_yield for 2^28 cycles by default, stealing the
     * cores from the forward pass's own threads between GEMMs (5-10% of the pass) and from
     * the HTTP threads; 2^4 makes them sleep at once. Read only when the library loads. */
    int timeout = getenv("OPENBLAS_THREAD_TIMEOUT") == NULL;
    if (!want && !timeout) return;
    if (want && setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
    if (timeout && setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1) != 0) return;
    /* Said once, before the second start (which finds both set and does not come here). */
    const char *name = strrchr(argv[0], '/');
    fprintf(stderr, "%s: restarting itself with%s%s%s so that OpenBLAS loads with them (set "
                    "METALIGN_KEEP_BLAS_CORE=1 to skip this)\n",
            name ? name + 1 : argv[0], want ? " OPENBLAS_CORETYPE=" : "", want ? want : "",
            timeout ? " OPENBLAS_THREAD_TIMEOUT=4" : "");
    /* exec the resolved path, not /proc/self/exe itself, so the process keeps its name
     * ("metalignd", not "exe") for ps, pkill and top */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        execv(self, argv);
    }
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the library as loaded rather than not at all. */
    fprintf(stderr, "metalign: could not re-execute with OPENBLAS_CORETYPE=%s "
                    "OPENBLAS_THREAD_TIMEOUT=4; set them yourself for full speed\n",
            want ? want : "(as detected)");
    if (want) unsetenv("OPENBLAS_CORETYPE");
}

void ml_blas_set_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}

int ml_blas_threads(void) { return openblas_get_num_threads(); }
