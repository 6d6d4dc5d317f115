/* The GEMM back ends side by side on the seed-size model (In = 2306, C = 768, H = 12,
 * I = 3072, L = 6; random weights through the real safetensors path), in one process, on the
 * same threads, interleaved so that a busy minute hits both alike:
 *
 *   shapes    every GEMM shape of the notebook workload as the service runs it (128 episodes
 *             x 100 trials through a 4,096-row workspace: calls of 4,000 and 800 rows; per
 *             call the 6 layers' q|k|v, output, fc1 and fc2), each timed over the 6 layers'
 *             own matrices as a pass meets them, OpenBLAS (cblas_sgemm on the weights as
 *             loaded) then oneDNN (ml_gemm_run on the weights prepared at load); best of
 *             --reps. Then the GEMM floor of the workload: its GEMMs' FLOPs at each back
 *             end's rate per shape, and at the faster back end's per shape.
 *   workload  the whole notebook workload as POST /v1/learning-curves computes it:
 *             ml_simulate (sampling, the passes, scoring) on a runner with the daemon's
 *             4,096-row workspace, then the curves with 1,000 bootstrap resamples per trial,
 *             on each back end in turn, a new seed per round.
 *
 * The oneDNN side needs a build with oneDNN (the default); a -Dgemm=openblas build times
 * OpenBLAS alone.
 * --serve: after the set-up, reads commands from stdin, one per line, and answers each with
 * one line (bench/run_gemm.py interleaves them with requests to running daemons):
 *   workload <openblas|onednn> <seed>   one round of the workload
 *   shapes                              the shape table again
 *   quit
 *
 * Usage: bench_gemm [--reps N] [--threads N] [--only shapes|workload] [--serve] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/checkpoint.h"
#include "metalign/blas.h"
#include "metalign/model.h"
#include "metalign/runner.h"
#include "metalign/simulate.h"
#include "model/forward.h"
#include "model/gemm.h"
#include "model/weights.h"
#include "seed_model.h"

enum { C = SEED_C, FF = SEED_FF, L = SEED_L, ITEMS = 1854, D = SEED_IN - 2, K_TARGETS = 66 };
enum { ROWS = 4096, EPISODES = 128, TRIALS = 100, N_BACKENDS = 2 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, const char *msg) {
    fprintf(stderr, "bench_gemm: %s: %s\n", what, msg);
    exit(1);
}

static const char *loadavg(char *buf, size_t len) {
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = '\0';
    if (f) {
        if (fgets(buf, (int)len, f)) buf[strcspn(buf, " ")] = '\0'; /* the 1-minute figure */
        fclose(f);
    }
    return buf;
}

/* One back end: its own model (the oneDNN one holds the prepared weights), the items'
 * encodings through it, and a runner as the daemon makes it. */
typedef struct side {
    ml_gemm_backend b;
    int on;
    ml_model m;
    float *emb_raw, *emb_std;
    ml_runner r;
    ml_gemm_ctx *ctx; /* for the shape timings */
    double encode_s;
} side;

typedef struct world {
    ml_dataset d;
    side s[N_BACKENDS];
    int threads, reps;
    float *A, *out; /* shape timings: activations (ROWS, FF), outputs (ROWS, FF) */
} world;

static void make_dataset(ml_dataset *d) {
    memset(d, 0, sizeof *d);
    d->n_items = ITEMS;
    d->backbone_dim = D;
    d->target_dims = K_TARGETS;
    d->X = malloc(sizeof(float) * ITEMS * D);
    d->X_std = malloc(sizeof(float) * ITEMS * D);
    d->Y = malloc(sizeof(float) * ITEMS * K_TARGETS);
    d->median = malloc(sizeof(float) * K_TARGETS);
    if (!d->X || !d->X_std || !d->Y || !d->median) die("dataset", "out of memory");
    bench_fill(d->X, (size_t)ITEMS * D, 1.0f);
    for (int j = 0; j < D; j++) { /* X_std as the loader makes it: n - 1 std, + 1e-8 */
        double s = 0, ss = 0;
        for (int i = 0; i < ITEMS; i++) s += d->X[(size_t)i * D + j];
        double mean = s / ITEMS;
        for (int i = 0; i < ITEMS; i++) {
            double x = d->X[(size_t)i * D + j] - mean;
            ss += x * x;
        }
        double scale = sqrt(ss / (ITEMS - 1)) + 1e-8;
        for (int i = 0; i < ITEMS; i++)
            d->X_std[(size_t)i * D + j] = (float)((d->X[(size_t)i * D + j] - mean) / scale);
    }
    for (size_t i = 0; i < (size_t)ITEMS * K_TARGETS; i++) d->Y[i] = 0.5f * (bench_frand() + 1);
    float *col = malloc(sizeof(float) * ITEMS);
    for (int k = 0; k < K_TARGETS; k++) { /* torch.median: the lower middle value */
        for (int i = 0; i < ITEMS; i++) col[i] = d->Y[(size_t)i * K_TARGETS + k];
        for (int i = 1; i < ITEMS; i++) /* insertion sort: 1,854 values, once */
            for (int j = i; j > 0 && col[j - 1] > col[j]; j--) {
                float t = col[j];
                col[j] = col[j - 1];
                col[j - 1] = t;
            }
        d->median[k] = col[(ITEMS - 1) / 2];
    }
    free(col);
}

static void make_side(world *w, side *s, ml_gemm_backend b, const unsigned char *file,
                      size_t len) {
    ml_err err = {{0}};
    s->b = b;
    s->on = ml_gemm_available(b);
    if (!s->on) return;
    ml_tensorset ts;
    if (ml_checkpoint_open_mem(&ts, "seed-size.safetensors", file, len, &err)) die("model", err.msg);
    double t0 = now();
    if (ml_model_from_tensorset(&s->m, &ts, 0, &err)) die("model", err.msg);
    if (ml_model_prepare_gemm(&s->m, b, &err)) die("prepare", err.msg);
    double t_load = now() - t0;
    ml_tensorset_free(&ts);
    t0 = now();
    if (ml_item_embeddings(&s->m, &w->d, &s->emb_raw, &s->emb_std, &err)) die("encode", err.msg);
    s->encode_s = now() - t0;
    if (ml_runner_init(&s->r, &s->m, &w->d, s->emb_raw, s->emb_std, ROWS, ROWS, &err))
        die("runner", err.msg);
    ml_runner_touch(&s->r);
    if (s->m.gemm && !(s->ctx = ml_gemm_ctx_new(s->m.gemm, &err))) die("gemm", err.msg);
    char lib[128];
    printf("%-8s %s; binding + preparing the weights %.3f s (prepared copies %.1f MB), the "
           "items' encodings %.3f s\n", ml_gemm_backend_name(b),
           ml_model_gemm_library(&s->m, lib, sizeof lib), t_load,
           (double)ml_gemm_set_bytes(s->m.gemm) / 1e6, s->encode_s);
}

/* ---- shapes ---- */

typedef struct shape {
    int M, K, N, acc;
    int calls; /* in the workload: per layer, times the calls of M rows */
    const char *name;
} shape;

/* The workload's calls: episodes per call as ml_simulate cuts them. */
static int workload_shapes(shape *sh) {
    int per_call = ROWS / TRIALS, n = 0;
    int Ms[2] = {per_call * TRIALS, (EPISODES % per_call) * TRIALS};
    int calls[2] = {EPISODES / per_call, EPISODES % per_call ? 1 : 0};
    for (int i = 0; i < 2; i++) {
        if (!calls[i]) continue;
        const shape layer[4] = {{Ms[i], C, 3 * C, 0, 0, "q|k|v"},
                                {Ms[i], C, C, 1, 0, "output"},
                                {Ms[i], C, FF, 0, 0, "fc1"},
                                {Ms[i], FF, C, 1, 0, "fc2"}};
        for (int k = 0; k < 4; k++) {
            sh[n] = layer[k];
            sh[n++].calls = calls[i] * L;
        }
    }
    return n;
}

/* Layer l's matrix of a shape, as the pass multiplies by it. */
static const float *shape_w(const ml_model *m, const shape *s, int l) {
    const ml_params *p = &m->params;
    size_t lC = (size_t)l * C;
    if (!strcmp(s->name, "q|k|v")) return p->qkv_w + lC * 3 * C;
    if (!strcmp(s->name, "output")) return p->o_w + lC * C;
    if (!strcmp(s->name, "fc1")) return p->fc1_w + (size_t)l * FF * C;
    return p->fc2_w + lC * FF;
}

/* The shape over the 6 layers' matrices on one back end: seconds. */
static double time_shape(world *w, side *s, const shape *sh) {
    double t0 = now();
    for (int l = 0; l < L; l++) {
        const float *W = shape_w(&s->m, sh, l);
        if (s->b == ML_GEMM_OPENBLAS) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, sh->M, sh->N, sh->K, 1.0f, w->A,
                        sh->K, W, sh->K, sh->acc ? 1.0f : 0.0f, w->out, sh->N);
        } else if (ml_gemm_run(s->ctx, w->threads, w->out, w->A, W, sh->K, NULL, sh->M, sh->K,
                               sh->N, sh->acc) != 0) {
            die("onednn", "a shape of the workload has no prepared matrix");
        }
    }
    return now() - t0;
}

static double shape_flops(const shape *sh) { return 2.0 * sh->M * sh->K * sh->N; }

/* The shape table and the floor; floor[b] (seconds, b = N_BACKENDS: the faster per shape). */
static void run_shapes(world *w, double floor_s[N_BACKENDS + 1]) {
    shape sh[8];
    int n = workload_shapes(sh);
    double best[8][N_BACKENDS];
    for (int i = 0; i < n; i++) best[i][0] = best[i][1] = 1e30;
    for (int rep = 0; rep <= w->reps; rep++) /* rep 0 warms up (and makes the primitives) */
        for (int i = 0; i < n; i++)
            for (int b = 0; b < N_BACKENDS; b++) {
                if (!w->s[b].on) continue;
                double t = time_shape(w, &w->s[b], &sh[i]) / L;
                if (rep > 0 && t < best[i][b]) best[i][b] = t;
            }
    char la[32];
    printf("\nGEMM shapes of the workload (rows x in -> out, best of %d, each over the 6 "
           "layers' matrices), load %s:\n", w->reps, loadavg(la, sizeof la));
    printf("  %-7s %5s x %4s -> %4s %4s %6s | %16s %16s | %s\n", "matrix", "M", "K", "N", "acc",
           "calls", "openblas GFLOP/s", "onednn GFLOP/s", "faster");
    for (int b = 0; b <= N_BACKENDS; b++) floor_s[b] = 0;
    for (int i = 0; i < n; i++) {
        double f = shape_flops(&sh[i]), r[N_BACKENDS];
        for (int b = 0; b < N_BACKENDS; b++) r[b] = w->s[b].on ? f / best[i][b] / 1e9 : 0;
        int fast = r[1] > r[0] ? 1 : 0;
        for (int b = 0; b < N_BACKENDS; b++) floor_s[b] += w->s[b].on ? best[i][b] * sh[i].calls : 0;
        floor_s[N_BACKENDS] += best[i][fast] * sh[i].calls;
        printf("  %-7s %5d x %4d -> %4d %4d %6d | %16.1f %16.1f | %s %+.1f%%\n", sh[i].name,
               sh[i].M, sh[i].K, sh[i].N, sh[i].acc, sh[i].calls, r[0], r[1],
               ml_gemm_backend_name((ml_gemm_backend)fast),
               r[1] > 0 ? 100.0 * (r[fast] / r[1 - fast] - 1) : 0.0);
    }
    double flops = 0;
    for (int i = 0; i < n; i++) flops += shape_flops(&sh[i]) * sh[i].calls;
    printf("GEMM floor of the workload (%.1f GFLOP of block GEMMs): openblas %.3f s (%.1f "
           "GFLOP/s)", flops / 1e9, floor_s[0], flops / floor_s[0] / 1e9);
    if (w->s[1].on)
        printf(", onednn %.3f s (%.1f GFLOP/s), the faster per shape %.3f s (%.1f GFLOP/s)",
               floor_s[1], flops / floor_s[1] / 1e9, floor_s[2], flops / floor_s[2] / 1e9);
    printf("\n");
    fflush(stdout);
}

/* ---- the workload ---- */

static double workload_flops(void) {
    double gemm = 2.0 * C * (3.0 * C + C + 2.0 * FF) * L * EPISODES * TRIALS;
    double attention = 2.0 * 2.0 * C * (TRIALS * (TRIALS + 1) / 2.0) * L * EPISODES;
    return gemm + attention;
}

/* One round on side s: seconds of the simulation and of the curves. */
static void run_workload(side *s, uint64_t seed, double *t_sim, double *t_curves) {
    ml_sim_request rq;
    ml_err err = {{0}};
    if (ml_sim_defaults(&rq) != 0) die("request", "out of memory");
    rq.seed = seed;
    ml_sim_result res;
    ml_sim_curves curves;
    double t0 = now();
    if (ml_simulate(&s->r, &rq, NULL, &res, &err) != 0) die("simulate", err.msg);
    double t1 = now();
    if (ml_sim_curves_compute(&rq, &res, &curves, &err) != 0) die("curves", err.msg);
    *t_sim = t1 - t0;
    *t_curves = now() - t1;
    if (s->r.ws->gemm && ml_gemm_ctx_fallbacks(s->r.ws->gemm) != 0)
        die("onednn", "a GEMM of the pass fell back to OpenBLAS");
    ml_sim_curves_free(&curves);
    ml_sim_result_free(&res);
    ml_sim_request_free(&rq);
}

static void run_workloads(world *w, const double floor_s[N_BACKENDS + 1]) {
    double best[N_BACKENDS] = {1e30, 1e30};
    char la[32];
    printf("\nnotebook workload (128 episodes x 100 trials: simulation + curves with 1,000 "
           "resamples per trial), load %s:\n", loadavg(la, sizeof la));
    for (int rep = 0; rep <= w->reps; rep++) {
        printf("  %s", rep ? "round" : "warm-up");
        if (rep) printf(" %d", rep);
        for (int b = 0; b < N_BACKENDS; b++) {
            if (!w->s[b].on) continue;
            double ts, tc;
            run_workload(&w->s[b], 1000 + (uint64_t)rep, &ts, &tc);
            if (rep > 0 && ts + tc < best[b]) best[b] = ts + tc;
            printf(" | %s %.3f s (simulation %.3f, curves %.3f)", ml_gemm_backend_name(w->s[b].b),
                   ts + tc, ts, tc);
        }
        printf("\n");
        fflush(stdout);
    }
    printf("best of %d, load %s:\n", w->reps, loadavg(la, sizeof la));
    for (int b = 0; b < N_BACKENDS; b++) {
        if (!w->s[b].on) continue;
        printf("  %-8s %.3f s, %.1f GFLOP/s; %.1f%% of its own GEMM floor, %.1f%% of the "
               "faster back ends' floor\n", ml_gemm_backend_name(w->s[b].b), best[b],
               workload_flops() / best[b] / 1e9, 100.0 * best[b] / floor_s[b],
               100.0 * best[b] / floor_s[N_BACKENDS]);
    }
    fflush(stdout);
}

static void serve(world *w) {
    char line[256];
    double floor_s[N_BACKENDS + 1];
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        char cmd[32] = "", name[32] = "";
        unsigned long long seed = 0;
        int n = sscanf(line, "%31s %31s %llu", cmd, name, &seed);
        if (n >= 1 && !strcmp(cmd, "quit")) break;
        if (n >= 1 && !strcmp(cmd, "shapes")) {
            run_shapes(w, floor_s);
            printf("done\n");
        } else if (n == 3 && !strcmp(cmd, "workload")) {
            int b = !strcmp(name, "onednn") ? 1 : 0;
            if (!w->s[b].on) {
                printf("error %s is not in this build\n", name);
            } else {
                double ts, tc;
                char la[32];
                loadavg(la, sizeof la);
                run_workload(&w->s[b], seed, &ts, &tc);
                printf("workload %s seed %llu: total %.4f s simulation %.4f s curves %.4f s "
                       "load %s\n", name, seed, ts + tc, ts, tc, la);
            }
        } else {
            printf("error unknown command\n");
        }
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    ml_blas_select_core(argv);
    int threads = 2, reps = 3, do_serve = 0;
    const char *only = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--serve"))
            do_serve = 1;
        else {
            fprintf(stderr, "usage: %s [--reps N] [--threads N] [--only shapes|workload] "
                            "[--serve]\n", argv[0]);
            return 2;
        }
    }
    world w = {.threads = threads < 1 ? 1 : threads, .reps = reps < 1 ? 1 : reps};
    ml_blas_set_threads(w.threads);
    const char *timeout = getenv("OPENBLAS_THREAD_TIMEOUT"), *omp = getenv("OMP_WAIT_POLICY");
    char la[32];
    printf("bench_gemm: %d threads; OpenBLAS core %s, OPENBLAS_THREAD_TIMEOUT=%s; "
           "OMP_WAIT_POLICY=%s; build back end %s; load %s\n", ml_blas_threads(), ml_blas_core(),
           timeout ? timeout : "(default)", omp ? omp : "(default)",
           ml_gemm_backend_name(ml_gemm_build_backend()), loadavg(la, sizeof la));
    make_dataset(&w.d);
    size_t len;
    unsigned char *file = bench_seed_model_file(&len);
    make_side(&w, &w.s[0], ML_GEMM_OPENBLAS, file, len);
    make_side(&w, &w.s[1], ML_GEMM_ONEDNN, file, len);
    free(file);
    if (!w.s[1].on) printf("onednn   not in this build (meson -Dgemm=onednn): OpenBLAS alone\n");
    w.A = ml_alloc_floats((size_t)ROWS * FF);
    w.out = ml_alloc_floats((size_t)ROWS * FF);
    if (!w.A || !w.out) die("buffers", "out of memory");
    bench_fill(w.A, (size_t)ROWS * FF, 1.0f);
    memset(w.out, 0, sizeof(float) * (size_t)ROWS * FF);
    fflush(stdout);

    if (do_serve) {
        serve(&w);
    } else {
        double floor_s[N_BACKENDS + 1] = {0};
        if (!*only || !strcmp(only, "shapes") || !strcmp(only, "workload")) run_shapes(&w, floor_s);
        if (!*only || !strcmp(only, "workload")) run_workloads(&w, floor_s);
    }
    for (int b = 0; b < N_BACKENDS; b++) {
        side *s = &w.s[b];
        if (!s->on) continue;
        ml_gemm_ctx_free(s->ctx);
        ml_runner_free(&s->r);
        free(s->emb_raw);
        free(s->emb_std);
        ml_model_free(&s->m);
    }
    free(w.d.X);
    free(w.d.X_std);
    free(w.d.Y);
    free(w.d.median);
    free(w.A);
    free(w.out);
    return 0;
}
