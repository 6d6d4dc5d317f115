/* OpenBLAS set-up shared by the daemon, the tests and the benchmarks. */
#ifndef METALIGN_BLAS_H
#define METALIGN_BLAS_H

/* OpenBLAS (Debian's DYNAMIC_ARCH build) picks its kernels from the CPU model it reads with
 * CPUID. Under some hypervisors the model is hidden and it falls back to "Prescott" (SSE3),
 * which runs SGEMM about 5x slower than the AVX-512 kernels the CPU supports. The choice is
 * made when the library loads, so the only remedy is OPENBLAS_CORETYPE in the environment
 * before exec. When OpenBLAS chose a core weaker than the CPU's features allow and the
 * operator set no OPENBLAS_CORETYPE, this sets it; when no OPENBLAS_THREAD_TIMEOUT is set, it
 * sets 4 (idle BLAS threads sleep instead of spinning); then it says so on stderr and
 * re-executes the program (argv as given). It returns only when nothing needed doing (or the
 * re-exec failed), and at once for --help and --version. Set METALIGN_KEEP_BLAS_CORE=1 to opt
 * out of both. */
void ml_blas_select_core(char **argv);

/* The kernel family OpenBLAS is using ("SkylakeX", "Haswell", ...). */
const char *ml_blas_core(void);

/* The core ml_blas_select_core would choose for this CPU, or NULL if none is better. */
const char *ml_blas_wanted_core(void);

/* Threads OpenBLAS uses for one call (0 keeps its default). */
void ml_blas_set_threads(int n);
int ml_blas_threads(void);

#endif
