/* The daemon's configuration: a JSON file whose keys are the long flag names (with `_` for
 * `-`), overridden by command-line flags. Relative paths in the file are resolved against the
 * file's own folder (so a config and its data can move together); relative paths given as
 * flags are taken from the working directory. */
#ifndef METALIGN_CONFIG_H
#define METALIGN_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "metalign/err.h"

#define ML_DEFAULT_LISTEN "127.0.0.1:8080"
#define ML_DEFAULT_HUMAN_URL "https://osf.io/rsd46/download"
#define ML_CORS_ORIGIN_MAX 200 /* longest --cors-origin (scheme://host:port) */

typedef struct ml_config {
    char *config_path;   /* the file read, or NULL */
    char *listen;        /* HOST:PORT */
    char *checkpoint;    /* .pt (torch.save) or .safetensors */
    int heads;           /* used when the checkpoint carries no config; 0 = not given */
    char *backbone;      /* .npz / .npy */
    char *targets;       /* SPoSE text or .npy */
    char *item_ids;      /* unique_id.txt */
    char *things_images; /* folder or list file; only for per-image backbones */
    char *human_url;
    char *cache_dir;
    int threads;         /* compute threads (OpenBLAS and workers); 0 = all cores */
    /* Extensions beyond API.md's flags (config file keys and flags alike). */
    int http_threads;        /* libmicrohttpd's pool for I/O and light requests */
    size_t max_body_bytes;   /* larger request bodies get 413 */
    int max_jobs;            /* queued + running jobs; more get 503 */
    int job_ttl;             /* seconds a finished job's result is kept */
    int human_max_age;       /* seconds before a cached human CSV is revalidated */
    int human_timeout;       /* total seconds for one download */
    size_t human_max_bytes;  /* downloads larger than this fail */
    char *cors_origin;       /* the one browser origin allowed to call the API; NULL: off */
    int human_min_refresh;   /* seconds between two downloads asked by POST /v1/human/refresh */
    int human_retry_min;     /* seconds before the first automatic retry after a failure */
    int human_retry_max;     /* cap of the doubling retry delay */
    /* Connections and requests (http/http.c). */
    int max_connections;     /* open connections in all */
    int max_connections_per_ip; /* from one address; 0 = no limit */
    int read_timeout;        /* seconds to send a whole request, from the connection's start
                              * or its previous answer: a trickle cannot extend it */
    int idle_timeout;        /* seconds a connection may make no progress at all */
    size_t max_inflight_bytes; /* answers held for clients that have not read them yet */
    /* Work. */
    long long max_sync_rows; /* episodes x seq_len a synchronous request may simulate */
    size_t result_cache_bytes; /* one budget: cached answers + finished jobs' results */
    int shutdown_grace;      /* seconds from SIGTERM to exit */
    /* Scale-out (docs/SCALEOUT.md): all unused without redis. */
    char *redis;             /* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]; NULL = alone */
    int redis_connect_timeout; /* milliseconds for one connect */
    int redis_timeout;       /* milliseconds for one command's answer */
    int redis_claim_timeout; /* seconds a chunk may go without a heartbeat before another
                              * replica takes it over */
    int chunk_episodes;      /* episodes per chunk; 0 = one forward call's worth */
    int redis_max_jobs;      /* active shared jobs across all replicas */
    int redis_result_ttl;    /* seconds an answer stays in the shared result cache */
    int redis_results;       /* answers the shared result cache holds */
    char *replica_name;      /* this replica's name in the consumer group; NULL = HOST-PID */
    int check;               /* --check: load, validate, print, exit */
} ml_config;

/* Outcome of parsing the command line. */
typedef enum ml_cli_action {
    ML_CLI_RUN,
    ML_CLI_EXIT_OK,    /* --help or --version printed */
    ML_CLI_EXIT_USAGE, /* bad flags: err says why */
} ml_cli_action;

void ml_config_defaults(ml_config *c);
/* Parses argv: reads --config FILE first (if given), then applies every other flag. */
ml_cli_action ml_config_from_args(ml_config *c, int argc, char **argv, ml_err *err);
/* Applies the keys of a JSON config file; unknown keys and wrong types are errors. */
int ml_config_load_file(ml_config *c, const char *path, ml_err *err);
/* Checks what start-up needs (a checkpoint and data files, a valid listen address). */
int ml_config_validate(const ml_config *c, ml_err *err);
void ml_config_free(ml_config *c);

/* Splits "HOST:PORT" ("[::1]:80" for IPv6) into host (host_len bytes) and *port. */
int ml_parse_listen(const char *listen, char *host, size_t host_len, int *port, ml_err *err);

void ml_config_usage(FILE *out);

#endif
