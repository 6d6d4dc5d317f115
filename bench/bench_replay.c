/* The replay benchmark, C side (bench/run_replay.py runs it beside bench/replay_torch.py):
 * ml_replay_run on a seed-size world (bench/startup's files: a torch.save checkpoint, the
 * 26,107 x 2,304 per-image backbone with its image list, so the "exact" match with every
 * image read from the file) and a 90-participant x 120-trial CSV, timed as the engine reports
 * it: the model passes (planning, reading and standardising the images' rows, their
 * embedding, the blocks over all sequences batched) and the baseline (the Gram matrices and
 * 10,800 refits) separately; best of --reps after a warm-up run.
 *
 * FLOPs counted are the work done: the image embeddings (2 (In-2) C per distinct image), the
 * blocks' GEMMs over every row of the padded batches and causal attention (S(S+1)/2 scores
 * and as many weighted sums of d per head, layer and sequence).
 *
 * Usage: bench_replay --data DIR --csv FILE [--reps N] [--threads N] [--dump FILE]
 *   --dump writes every replayed trial as "participant trial logit baseline_logit" lines, for
 *   run_replay.py to compare with PyTorch's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "engine/app.h"
#include "metalign/replay.h"
#include "metalign/blas.h"

static void die(const char *what, const char *msg) {
    fprintf(stderr, "bench_replay: %s: %s\n", what, msg);
    exit(1);
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path, "cannot open");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) die(path, "cannot read");
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static char *join(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

/* The model passes' FLOPs, from the result's shapes. */
static double model_flops(const ml_app *app, const ml_replay_result *res, size_t n_images) {
    const ml_model_config *c = &app->model.cfg;
    double C = c->hidden_size, I = c->intermediate_size, L = c->num_layers;
    size_t S = 0;
    for (size_t i = 0; i < res->n_participants; i++)
        if ((size_t)res->participants[i].trials > S) S = (size_t)res->participants[i].trials;
    double rows = (double)res->n_participants * (double)S; /* padded */
    double gemm = 2.0 * C * (4.0 * C + 2.0 * I) * L * rows + 2.0 * C; /* + head */
    double attn = 2.0 * 2.0 * C * ((double)S * (double)(S + 1) / 2.0) * L *
                  (double)res->n_participants;
    double embed = 2.0 * (double)(c->input_size - 2) * C * (double)n_images;
    return gemm + attn + embed;
}

int main(int argc, char **argv) {
    ml_blas_select_core(argv);
    const char *data = NULL, *csv = NULL, *dump = NULL;
    int reps = 3, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
            csv = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
            dump = argv[++i];
        else {
            fprintf(stderr, "usage: %s --data DIR --csv FILE [--reps N] [--threads N] "
                            "[--dump FILE]\n", argv[0]);
            return 2;
        }
    }
    if (!data || !csv) die("arguments", "--data and --csv are required");
    ml_config cfg;
    ml_config_defaults(&cfg);
    cfg.checkpoint = join(data, "model.pt");
    cfg.backbone = join(data, "backbone.npz");
    cfg.targets = join(data, "spose.txt");
    cfg.item_ids = join(data, "unique_id.txt");
    cfg.things_images = join(data, "images.txt");
    cfg.heads = 12;
    cfg.threads = threads;
    ml_err err = {{0}};
    ml_app app;
    if (ml_app_load(&app, &cfg, &err) != 0) die("load", err.msg);
    ml_blas_set_threads(threads);
    size_t len;
    char *text = read_all(csv, &len);
    ml_human_data h;
    ml_fetch_code fc;
    if (ml_human_csv_parse(text, len, csv, &h, &fc, &err) != 0) die("csv", err.msg);
    free(text);
    printf("OpenBLAS core %s, %d threads; model In=%d C=%d H=%d I=%d L=%d; %zu CSV rows, %zu "
           "participants, %zu distinct images\n",
           ml_blas_core(), ml_blas_threads(), app.model.cfg.input_size,
           app.model.cfg.hidden_size, app.model.cfg.num_heads, app.model.cfg.intermediate_size,
           app.model.cfg.num_layers, h.n_rows, h.n_participants, h.images.n);

    ml_worker *w = calloc(1, sizeof *w);
    ml_replay_request rq;
    ml_replay_defaults(&rq);
    rq.include_trials = dump != NULL;
    double best_m = 1e30, best_b = 1e30, best_total = 1e30;
    ml_replay_result res = {0};
    for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up (workspace, page cache) */
        ml_replay_result_free(&res);
        ml_replay_code code;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (ml_app_replay(&app, w, &h, &rq, NULL, &res, &code, &err) != 0) die("replay", err.msg);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double total = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("rep %d: model passes %.3f s, baseline %.3f s, whole ml_replay_run %.3f s\n", rep,
               res.seconds_model, res.seconds_baseline, total);
        fflush(stdout);
        if (rep == 0) continue;
        if (res.seconds_model < best_m) best_m = res.seconds_model;
        if (res.seconds_baseline < best_b) best_b = res.seconds_baseline;
        if (total < best_total) best_total = total;
    }
    double gf = model_flops(&app, &res, h.images.n);
    printf("replay model passes: %zu sequences, %ld trials: %.3f s  %.1f GFLOP/s (%.0f GFLOP)\n",
           res.n_participants, res.overall.trials, best_m, gf / best_m / 1e9, gf / 1e9);
    printf("replay baseline: %ld fits, %ld Newton steps (%.2f per fit), %ld halvings, largest "
           "final gradient %.2g: %.3f s\n",
           res.baseline_stats.fits, res.baseline_stats.newton_steps,
           (double)res.baseline_stats.newton_steps /
               (double)(res.baseline_stats.fits ? res.baseline_stats.fits : 1),
           res.baseline_stats.line_search, res.baseline_stats.max_grad, best_b);
    printf("replay whole: %.3f s; pseudo_r2 model %.4f baseline %.4f, agreement model %.4f "
           "baseline %.4f\n",
           best_total, res.overall.model.pseudo_r2, res.overall.baseline.pseudo_r2,
           res.overall.model.agreement, res.overall.baseline.agreement);
    if (dump) {
        FILE *f = fopen(dump, "w");
        if (!f) die(dump, "cannot write");
        for (size_t i = 0; i < res.n_trial_rows; i++) {
            const ml_replay_trial *t = &res.trials[i];
            fprintf(f, "%s %d %.9g %.17g\n", res.participants[t->seq].name, t->trial,
                    (double)t->logit, t->baseline_logit);
        }
        fclose(f);
    }
    ml_replay_result_free(&res);
    ml_app_worker_free(w);
    ml_human_data_free(&h);
    ml_app_free(&app);
    ml_config_free(&cfg);
    return 0;
}
