/* Start-up cost of the loaders alone: ml_model_load and ml_dataset_load timed separately,
 * with the resident memory after each (bench/startup/run.sh drives it on real-size files).
 * Usage: bench_load CHECKPOINT HEADS BACKBONE TARGETS IDS [THINGS_IMAGES] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metalign/blas.h"
#include "metalign/dataset.h"
#include "metalign/model.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "VmRSS" or "VmHWM" of this process, in MB. */
static double status_mb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') sscanf(line + kl + 1, "%lf", &kb);
    if (f) fclose(f);
    return kb / 1024;
}

int main(int argc, char **argv) {
    ml_blas_select_core(argv);
    if (argc < 6) {
        fprintf(stderr, "usage: %s CHECKPOINT HEADS BACKBONE TARGETS IDS [THINGS_IMAGES]\n",
                argv[0]);
        return 2;
    }
    ml_err err;
    ml_model m;
    double t0 = now();
    if (ml_model_load(&m, argv[1], atoi(argv[2]), &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t1 = now();
    double rss_model = status_mb("VmRSS");
    ml_data_paths p = {argv[3], argv[4], argv[5], argc > 6 ? argv[6] : NULL};
    ml_dataset d;
    if (ml_dataset_load(&d, &p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t2 = now();
    double model_mb = (double)m.num_params * 4 / 1048576;
    double data_mb = ((double)d.n_items * d.backbone_dim * 2 + (double)d.n_items * d.target_dims) *
                     4 / 1048576;
    printf("model_load_s %.3f dataset_load_s %.3f model_MB %.1f data_MB %.1f "
           "rss_after_model_MB %.1f rss_MB %.1f hwm_MB %.1f\n",
           t1 - t0, t2 - t1, model_mb, data_mb, rss_model, status_mb("VmRSS"),
           status_mb("VmHWM"));
    ml_dataset_free(&d);
    ml_model_free(&m);
    return 0;
}
