/* metalignd: start-up, flags, signals. Listens at once (/healthz answers, /readyz says 503),
 * loads the model and data, then serves until SIGTERM or SIGINT, when it lets requests in
 * flight finish within the grace, cancels what is left and exits 0. */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "engine/app.h"
#include "metalign/blas.h"
#include "config.h"
#include "http/server.h"

/* File descriptors kept beside the connections: the listening socket, the cache files,
 * OpenBLAS's and libcurl's, the standard streams. */
#define ML_FD_RESERVE 64

/* The later generation's model lines: what MODEL.md section 7's config governs. */
static void print_metalearner(const ml_model *m) {
    const ml_metalearner_config *c = &m->meta;
    char heads[64] = "n/a", sl[32] = "unknown", mlp[32] = "no";
    if (c->model_type == ML_ARCH_TRANSFORMER)
        snprintf(heads, sizeof heads, "%d (%s)", c->n_heads, m->heads_source);
    if (c->sl > 0) snprintf(sl, sizeof sl, "%d", c->sl);
    if (c->use_mlp) snprintf(mlp, sizeof mlp, "yes (width %d)", c->int_sz);
    printf("        generation %s, type %s, heads %s, layers %d, MLP %s, sl %s, mag_std %g\n",
           ml_generation_name(m->generation), ml_arch_name(c->model_type), heads, c->n_layers,
           mlp, sl, (double)c->mag_std);
    printf("        width %d, %s, heads of width %d, %zu parameters%s%s\n", m->cfg.hidden_size,
           c->model_type == ML_ARCH_STATIC_LINEAR ? "proj" : c->no_embed ? "no_embed (mag_proj)"
                                                                        : "embed",
           c->num_dims, m->num_params, c->bias ? ", biases" : "",
           c->from_config ? "" : "; no MetaLearnerConfig in the checkpoint");
}

static void print_summary(const ml_app *app, double seconds) {
    const ml_model *m = &app->model;
    const ml_dataset *d = &app->data;
    printf("model:  %s (%s)\n", m->path, m->format);
    if (m->generation != ML_GEN_SEED)
        print_metalearner(m);
    else
        printf("        variant %s, input %d, hidden %d, heads %d, intermediate %d, layers %d, "
               "%zu parameters%s%s%s\n",
               ml_posenc_name(m->cfg.pos), m->cfg.input_size, m->cfg.hidden_size,
               m->cfg.num_heads, m->cfg.intermediate_size, m->cfg.num_layers, m->num_params,
               m->cfg.bias ? ", biases" : "", m->cfg.embedding ? "" : ", no embedding layer",
               m->synthetic ? ", SYNTHETIC" : "");
    if (m->cfg.pos == ML_POS_LEARNED) printf("        learned positions: at most %d trials\n", m->cfg.max_seq_len);
    printf("data:   %d items, backbone %d features (%s: %lld rows%s), targets %d dims (%s)\n",
           d->n_items, d->backbone_dim, d->backbone_path, (long long)d->backbone_rows,
           d->per_image ? ", one per image, aligned by the image list" : "", d->target_dims,
           d->targets_path);
    printf("        item ids: %s (first: %s, last: %s)\n", d->ids_path, d->ids[0],
           d->ids[d->n_items - 1]);
    printf("blas:   OpenBLAS %s kernels, %d threads\n", ml_blas_core(), app->threads);
    char gemm[128];
    printf("gemm:   %s: %s\n", ml_model_gemm_backend(m), ml_model_gemm_library(m, gemm, sizeof gemm));
    printf("loaded in %.2f s\n", seconds);
}

/* Every connection is a file descriptor: raise the soft limit to the hard one, and say so when
 * even that is below --max-connections. */
static void raise_fd_limit(const ml_config *cfg) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t want = (rlim_t)cfg->max_connections + ML_FD_RESERVE;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        fprintf(stderr, "metalignd: warning: only %llu file descriptors are allowed (ulimit -n) "
                        "for --max-connections %d; connections beyond about %llu will be "
                        "refused\n", (unsigned long long)rl.rlim_cur, cfg->max_connections,
                (unsigned long long)(rl.rlim_cur > ML_FD_RESERVE ? rl.rlim_cur - ML_FD_RESERVE : 0));
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static sem_t stop_sem;
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    stop_signal = sig;
    sem_post(&stop_sem); /* async-signal-safe */
}

static int install_stop_handlers(void) {
    if (sem_init(&stop_sem, 0, 0) != 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return sigaction(SIGTERM, &sa, NULL) == 0 && sigaction(SIGINT, &sa, NULL) == 0 ? 0 : -1;
}

static int wait_for_stop(void) {
    while (sem_wait(&stop_sem) != 0) continue; /* EINTR: a handler ran on this thread */
    return stop_signal;
}

int main(int argc, char **argv) {
    ml_blas_select_core(argv);

    ml_config cfg;
    ml_config_defaults(&cfg);
    ml_err err = {{0}};
    switch (ml_config_from_args(&cfg, argc, argv, &err)) {
    case ML_CLI_EXIT_OK: ml_config_free(&cfg); return 0;
    case ML_CLI_EXIT_USAGE:
        fprintf(stderr, "metalignd: %s\n", err.msg);
        ml_config_free(&cfg);
        return 2;
    case ML_CLI_RUN: break;
    }
    if (ml_config_validate(&cfg, &err) != 0) {
        fprintf(stderr, "metalignd: %s\n", err.msg);
        ml_config_free(&cfg);
        return 2;
    }

    /* SIGTERM and SIGINT are caught by a handler, not only blocked for sigwait: OpenBLAS
     * starts its threads before main with every signal unblocked, and the kernel hands a
     * process-directed signal to any thread that does not block it, whose default action
     * would kill the daemon mid-request (seen: exit 143 when the signal came while this
     * thread was not in sigwait). With a handler, whichever thread takes it only posts the
     * semaphore main waits on. */
    if (install_stop_handlers() != 0) {
        fprintf(stderr, "metalignd: cannot install the SIGTERM/SIGINT handlers\n");
        ml_config_free(&cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    double t0 = now_seconds();
    ml_app app;
    if (cfg.check) {
        int rc = ml_app_load(&app, &cfg, &err) == 0 ? 0 : 1;
        if (rc == 0) {
            print_summary(&app, now_seconds() - t0);
            printf("check: ok\n");
        } else {
            fprintf(stderr, "metalignd: cannot start: %s\n", err.msg);
        }
        ml_app_free(&app);
        ml_config_free(&cfg);
        return rc;
    }
    raise_fd_limit(&cfg);
    /* Listen first: /healthz answers and /readyz says 503 while the model loads. */
    ml_server server = {0};
    if (ml_server_start(&server, &app, &cfg, &err) != 0) {
        fprintf(stderr, "metalignd: cannot start: %s\n", err.msg);
        ml_app_free(&app);
        ml_config_free(&cfg);
        return 1;
    }
    char host[256];
    int port;
    ml_parse_listen(cfg.listen, host, sizeof host, &port, NULL); /* validated above */
    fprintf(stderr, "metalignd %s: loading the model and data; listening on http://%s%s%s:%d\n",
            ML_VERSION, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
            ml_server_port(&server));
    if (ml_app_load_data(&app, &err) != 0 || ml_app_start(&app, &err) != 0) {
        fprintf(stderr, "metalignd: cannot start: %s\n", err.msg);
        if (ml_server_stop(&server, 0) != 0) _exit(1);
        ml_app_free(&app);
        ml_config_free(&cfg);
        return 1;
    }
    fprintf(stderr, "metalignd: ready in %.2f s: %s model (%s), %d items%s\n",
            now_seconds() - t0, ml_posenc_name(app.model.cfg.pos), app.model.path,
            app.data.n_items, app.model.synthetic ? " (SYNTHETIC demo data)" : "");

    int sig = 0;
    sig = wait_for_stop();
    fprintf(stderr, "metalignd: %s received: finishing requests in flight (at most %d s)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_grace);
    double t_stop = now_seconds();
    int left = ml_server_stop(&server, cfg.shutdown_grace);
    if (left != 0) {
        /* A request that did not stop when asked (a step that cannot be interrupted):
         * libmicrohttpd cannot be stopped under it, so leave without tidying up. */
        fprintf(stderr, "metalignd: %d requests still running after the %d s grace; exiting "
                        "without waiting for them\n", left, cfg.shutdown_grace);
        _exit(0);
    }
    ml_app_free(&app);
    ml_config_free(&cfg);
    fprintf(stderr, "metalignd: stopped in %.2f s\n", now_seconds() - t_stop);
    return 0;
}
