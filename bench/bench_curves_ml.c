/* The later generation's learning-curve benchmark, C side (bench/run_curves_ml.py runs it
 * beside bench/curves_ml_torch.py): POST /v1/learning-curves' computation (ml_simulate on a
 * compute worker's runner, then ml_sim_curves_compute) on the trained shape (MetaLearnerConfig: 1 layer, 16 heads,
 * D = 768, no MLP, sl = 120; random weights) with FunctionDataset episodes of 120 trials fed
 * magnitudes, over an HDF5 backbone of 1,854 items: the files bench/run_curves_ml.py writes.
 *
 * Timed: the items' encodings (once per daemon: the first request pays them), then per rep
 * the simulation (sampling, the forward passes batched, scoring) and the curves (1,000
 * bootstrap resamples per trial, the service's default), best of --reps after a warm-up.
 *
 * FLOPs counted are the work done: the blocks' GEMMs over every padded row (qkv 3D^2, o_proj
 * D^2, both heads), causal attention (S(S+1)/2 scores and as many weighted sums of hd per
 * head and sequence); the encodings (2 D^2 per item) separately.
 *
 * Usage: bench_curves_ml --data DIR [--episodes 128] [--seq-len 120] [--reps 3]
 *                        [--threads 2] [--dump FILE]
 *   --dump writes every scored trial as "episode trial logit magnitude" lines, for
 *   run_curves_ml.py to compare with PyTorch's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "engine/app.h"
#include "metalign/blas.h"
#include "metalign/simulate.h"

static void die(const char *what, const char *msg) {
    fprintf(stderr, "bench_curves_ml: %s: %s\n", what, msg);
    exit(1);
}

static char *join(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double sim_flops(const ml_model *m, int E, int S) {
    double D = ml_model_width(m), L = m->cfg.num_layers, F = m->cfg.intermediate_size;
    double rows = (double)E * S;
    double gemm = 2.0 * D * (4.0 * D + 2.0 * F) * L * rows + 2.0 * 2.0 * D * rows;
    double attn = 2.0 * 2.0 * D * ((double)S * (S + 1) / 2.0) * L * E;
    return gemm + attn;
}

int main(int argc, char **argv) {
    ml_blas_select_core(argv);
    const char *data = NULL, *dump = NULL;
    int reps = 3, threads = 2, episodes = 128, seq_len = 120;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--episodes") && i + 1 < argc)
            episodes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq-len") && i + 1 < argc)
            seq_len = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
            dump = argv[++i];
        else {
            fprintf(stderr, "usage: %s --data DIR [--episodes N] [--seq-len S] [--reps N] "
                            "[--threads N] [--dump FILE]\n", argv[0]);
            return 2;
        }
    }
    if (!data) die("arguments", "--data is required");
    ml_config cfg;
    ml_config_defaults(&cfg);
    cfg.checkpoint = join(data, "model.pt");
    cfg.backbone = join(data, "backbone.h5");
    cfg.targets = join(data, "spose.txt");
    cfg.item_ids = join(data, "unique_id.txt");
    cfg.threads = threads;
    ml_err err = {{0}};
    ml_app app;
    if (ml_app_load(&app, &cfg, &err) != 0) die("load", err.msg);
    ml_blas_set_threads(threads);
    const ml_model *m = &app.model;
    printf("OpenBLAS core %s, %d threads; %s %s: D=%d heads=%d layers=%d MLP=%d sl=%d; %d items, "
           "%d target dims; %d episodes x %d trials\n",
           ml_blas_core(), ml_blas_threads(), ml_generation_name(m->generation),
           ml_arch_name(ml_model_arch(m)), ml_model_width(m), m->cfg.num_heads,
           m->cfg.num_layers, m->meta.use_mlp, m->meta.sl, app.data.n_items,
           app.data.target_dims, episodes, seq_len);

    ml_worker *w = calloc(1, sizeof *w);
    w->app = &app;
    double t0 = now();
    ml_runner *r = ml_app_runner_acquire(&app, &err); /* the items' encodings, the workspace */
    if (!r) die("runner", err.msg);
    double t_encode = now() - t0;
    ml_sim_request rq;
    if (ml_sim_defaults(&rq) != 0) die("request", "out of memory");
    ml_sim_model_defaults(&rq, m);
    rq.episodes = episodes;
    rq.seq_len = seq_len;
    double best_sim = 1e30, best_curves = 1e30;
    ml_sim_result res = {0};
    ml_sim_curves curves = {0};
    for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up */
        ml_sim_result_free(&res);
        ml_sim_curves_free(&curves);
        double a = now();
        /* ml_app_simulate without the daemon's metrics */
        if (ml_simulate(r, &rq, NULL, &res, &err) != 0) die("simulate", err.msg);
        double b = now();
        if (ml_sim_curves_compute(&rq, &res, &curves, &err) != 0) die("curves", err.msg);
        double c = now();
        printf("rep %d: simulation %.3f s, curves (%d resamples per trial) %.3f s\n", rep, b - a,
               rq.n_boot, c - b);
        fflush(stdout);
        if (rep == 0) continue;
        if (b - a < best_sim) best_sim = b - a;
        if (c - b < best_curves) best_curves = c - b;
    }
    double gf = sim_flops(m, episodes, seq_len);
    double enc = 2.0 * ml_model_width(m) * ml_model_width(m) * app.data.n_items;
    printf("encode %d items: %.3f s (%.1f GFLOP/s, first request only)\n", app.data.n_items,
           t_encode, enc / t_encode / 1e9);
    printf("simulation: %lld trials: %.3f s  %.1f GFLOP/s (%.1f GFLOP)\n", res.trials, best_sim,
           gf / best_sim / 1e9, gf / 1e9);
    printf("curves: %.3f s\n", best_curves);
    printf("accuracy %.6f loss %.6f magnitude_mse %.6f r2 %.6f\n", res.accuracy, res.loss,
           res.magnitude_mse, res.magnitude_r2);
    if (dump) {
        FILE *f = fopen(dump, "w");
        if (!f) die(dump, "cannot write");
        for (int e = 0; e < res.episodes; e++)
            for (int t = 0; t < res.length[e]; t++) {
                size_t i = (size_t)e * (size_t)res.seq_len + (size_t)t;
                fprintf(f, "%d %d %.9g %.9g\n", e, t, (double)res.logits[i],
                        (double)res.pred_magnitudes[i]);
            }
        fclose(f);
    }
    ml_sim_curves_free(&curves);
    ml_sim_result_free(&res);
    ml_sim_request_free(&rq);
    ml_app_runner_release(&app, r);
    ml_app_worker_free(w);
    ml_app_free(&app);
    ml_config_free(&cfg);
    return 0;
}
