#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/fetch.h"

/* One table drives the flags, the config file keys and --help, so they cannot drift apart. */
typedef enum opt_kind { OPT_STR, OPT_PATH, OPT_INT, OPT_SIZE, OPT_LLONG, OPT_FLAG } opt_kind;

typedef struct opt_def {
    const char *flag;  /* long flag without dashes; the file key is the same with '_' for '-' */
    opt_kind kind;
    size_t offset;     /* into ml_config */
    long long min, max; /* for OPT_INT, OPT_SIZE and OPT_LLONG */
    const char *arg;   /* placeholder in --help */
    const char *help;
} opt_def;

#define OFF(field) offsetof(ml_config, field)

static const opt_def options[] = {
    {"listen", OPT_STR, OFF(listen), 0, 0, "HOST:PORT", "address to serve on (default " ML_DEFAULT_LISTEN ")"},
    {"checkpoint", OPT_PATH, OFF(checkpoint), 0, 0, "PATH", "model: torch.save .pt or .safetensors"},
    {"heads", OPT_INT, OFF(heads), 1, 4096, "N", "attention heads when the checkpoint has no config (default 12)"},
    {"backbone", OPT_PATH, OFF(backbone), 0, 0, "PATH", "backbone features: .npz or .npy"},
    {"targets", OPT_PATH, OFF(targets), 0, 0, "PATH", "SPoSE embedding: text or .npy"},
    {"item-ids", OPT_PATH, OFF(item_ids), 0, 0, "PATH", "unique_id.txt: one concept per line"},
    {"things-images", OPT_PATH, OFF(things_images), 0, 0, "DIR|LISTFILE", "THINGS images, for per-image backbones"},
    {"human-url", OPT_STR, OFF(human_url), 0, 0, "URL", "human data CSV (default " ML_DEFAULT_HUMAN_URL ")"},
    {"cache-dir", OPT_PATH, OFF(cache_dir), 0, 0, "DIR", "where downloaded data is kept"},
    {"threads", OPT_INT, OFF(threads), 0, 256, "N", "compute threads (default: the CPUs this process may use)"},
    {"http-threads", OPT_INT, OFF(http_threads), 1, 256, "N", "HTTP I/O threads (default 4)"},
    {"max-body-bytes", OPT_SIZE, OFF(max_body_bytes), 64, 1L << 30, "BYTES", "largest request body (default 4 MiB)"},
    {"max-jobs", OPT_INT, OFF(max_jobs), 1, 100000, "N", "queued + running jobs (default 16)"},
    {"job-ttl", OPT_INT, OFF(job_ttl), 1, 86400 * 30, "SECONDS", "how long finished jobs are kept (default 3600)"},
    {"human-max-age", OPT_INT, OFF(human_max_age), 0, INT_MAX, "SECONDS", "revalidate the cached human CSV after this (default 86400)"},
    {"human-timeout", OPT_INT, OFF(human_timeout), 1, 3600, "SECONDS", "total time for one download (default 60)"},
    {"human-max-bytes", OPT_SIZE, OFF(human_max_bytes), 1024, 1L << 34, "BYTES", "largest human CSV accepted (default 64 MiB)"},
    {"human-min-refresh", OPT_INT, OFF(human_min_refresh), 0, 86400, "SECONDS", "POST /v1/human/refresh downloads at most once per this (default 60)"},
    {"human-retry-min", OPT_INT, OFF(human_retry_min), 0, 86400, "SECONDS", "first wait before retrying a failed download, doubling (default 5)"},
    {"human-retry-max", OPT_INT, OFF(human_retry_max), 1, 86400 * 7, "SECONDS", "longest wait between failed downloads (default 600)"},
    {"max-connections", OPT_INT, OFF(max_connections), 1, 1000000, "N", "open connections in all (default 1024)"},
    {"max-connections-per-ip", OPT_INT, OFF(max_connections_per_ip), 0, 1000000, "N", "open connections from one address, 0 = no limit (default 128)"},
    {"read-timeout", OPT_INT, OFF(read_timeout), 1, 3600, "SECONDS", "time to send a whole request, however slowly (default 30)"},
    {"idle-timeout", OPT_INT, OFF(idle_timeout), 1, 86400, "SECONDS", "close a connection that moves no byte this long (default 60)"},
    {"max-inflight-bytes", OPT_SIZE, OFF(max_inflight_bytes), 1L << 20, 1LL << 40, "BYTES", "answers held for clients still reading; more get 503 (default 512 MiB)"},
    {"max-sync-rows", OPT_LLONG, OFF(max_sync_rows), 1, 1LL << 40, "N", "episodes x seq_len a request may simulate without ?async=true (default 1000000)"},
    {"result-cache-bytes", OPT_SIZE, OFF(result_cache_bytes), 1L << 20, 1LL << 40, "BYTES", "memory for cached answers and finished jobs' results (default 256 MiB)"},
    {"shutdown-grace", OPT_INT, OFF(shutdown_grace), 0, 3600, "SECONDS", "SIGTERM: finish what is running, cancel what is left, exit by then (default 30)"},
    {"cors-origin", OPT_STR, OFF(cors_origin), 0, 0, "ORIGIN", "let browser pages of this origin (https://host:port) call the API (default off)"},
    {"redis", OPT_STR, OFF(redis), 0, 0, "URL", "redis://HOST:PORT[/DB]: share jobs, work and caches with other replicas"},
    {"redis-connect-timeout", OPT_INT, OFF(redis_connect_timeout), 10, 60000, "MS", "Redis connect timeout (default 1000)"},
    {"redis-timeout", OPT_INT, OFF(redis_timeout), 10, 60000, "MS", "Redis command timeout (default 2000)"},
    {"redis-claim-timeout", OPT_INT, OFF(redis_claim_timeout), 1, 3600, "SECONDS", "a chunk without heartbeat this long is redone elsewhere (default 30)"},
    {"chunk-episodes", OPT_INT, OFF(chunk_episodes), 0, 100000, "N", "episodes per shared chunk (default 0: one forward call's worth)"},
    {"redis-max-jobs", OPT_INT, OFF(redis_max_jobs), 1, 100000, "N", "active shared jobs across replicas (default 64)"},
    {"redis-result-ttl", OPT_INT, OFF(redis_result_ttl), 1, 86400 * 30, "SECONDS", "shared result cache lifetime (default 3600)"},
    {"redis-results", OPT_INT, OFF(redis_results), 1, 1000000, "N", "shared result cache entries (default 1024)"},
    {"replica-name", OPT_STR, OFF(replica_name), 0, 0, "NAME", "this replica's name for Redis (default HOST-PID)"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

/* $XDG_CACHE_HOME/metalignd, else ~/.cache/metalignd, else a folder under /tmp. */
static char *default_cache_dir(void) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char buf[PATH_MAX];
    if (xdg && xdg[0] == '/')
        snprintf(buf, sizeof buf, "%s/metalignd", xdg);
    else if (home && home[0] == '/')
        snprintf(buf, sizeof buf, "%s/.cache/metalignd", home);
    else
        snprintf(buf, sizeof buf, "/tmp/metalignd-cache");
    return strdup(buf);
}

void ml_config_defaults(ml_config *c) {
    memset(c, 0, sizeof *c);
    c->listen = strdup(ML_DEFAULT_LISTEN);
    c->human_url = strdup(ML_DEFAULT_HUMAN_URL);
    c->http_threads = 4;
    c->max_body_bytes = 4u << 20;
    c->max_jobs = 16;
    c->job_ttl = 3600;
    c->human_max_age = 86400;
    c->human_timeout = 60;
    c->human_max_bytes = 64u << 20;
    c->human_min_refresh = 60;
    c->human_retry_min = 5;
    c->human_retry_max = 600;
    c->max_connections = 1024;
    c->max_connections_per_ip = 128;
    c->read_timeout = 30;
    c->idle_timeout = 60;
    c->max_inflight_bytes = (size_t)512 << 20;
    c->max_sync_rows = 1000000;
    c->result_cache_bytes = (size_t)256 << 20;
    c->shutdown_grace = 30;
    c->redis_connect_timeout = 1000;
    c->redis_timeout = 2000;
    c->redis_claim_timeout = 30;
    c->redis_max_jobs = 64;
    c->redis_result_ttl = 3600;
    c->redis_results = 1024;
    c->cache_dir = default_cache_dir();
}

void ml_config_free(ml_config *c) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].kind == OPT_STR || options[i].kind == OPT_PATH) {
            char **p = (char **)((char *)c + options[i].offset);
            free(*p);
            *p = NULL;
        }
    }
    free(c->config_path);
    c->config_path = NULL;
}

static const opt_def *find_option(const char *name, int file_key) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *f = options[i].flag;
        size_t k = 0;
        for (; f[k] && name[k]; k++) {
            char want = (file_key && f[k] == '-') ? '_' : f[k];
            if (name[k] != want) break;
        }
        if (!f[k] && !name[k]) return &options[i];
    }
    return NULL;
}

/* dir/rel, tidied by realpath when the file exists (messages then show a plain path). */
static char *join_path(const char *dir, const char *rel) {
    if (!dir || rel[0] == '/') return strdup(rel);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *out = malloc(n);
    if (!out) return NULL;
    snprintf(out, n, "%s/%s", dir, rel);
    char *tidy = realpath(out, NULL);
    if (!tidy) return out;
    free(out);
    return tidy;
}

/* Stores a textual value; base_dir resolves relative OPT_PATH values (NULL: keep as given). */
static int set_option(ml_config *c, const opt_def *o, const char *value, const char *base_dir,
                      const char *origin, ml_err *err) {
    void *field = (char *)c + o->offset;
    if (o->kind == OPT_STR || o->kind == OPT_PATH) {
        if (!value[0]) return ml_errf(err, "%s: %s is empty", origin, o->flag);
        char *copy = o->kind == OPT_PATH ? join_path(base_dir, value) : strdup(value);
        if (!copy) return ml_errf(err, "%s: out of memory", origin);
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end)
        return ml_errf(err, "%s: %s=\"%s\" is not an integer", origin, o->flag, value);
    if (v < o->min || v > o->max)
        return ml_errf(err, "%s: %s=%lld is out of range (%lld..%lld)", origin, o->flag, v,
                       o->min, o->max);
    if (o->kind == OPT_INT)
        *(int *)field = (int)v;
    else if (o->kind == OPT_LLONG)
        *(long long *)field = v;
    else
        *(size_t *)field = (size_t)v;
    return 0;
}

int ml_config_load_file(ml_config *c, const char *path, ml_err *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line <= 0)
            return ml_errf(err, "config %s: %s", path, jerr.text);
        return ml_errf(err, "config %s: line %d, column %d: %s", path, jerr.line, jerr.column,
                       jerr.text);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return ml_errf(err, "config %s: must be a JSON object of settings", path);
    }
    char *dir = strdup(path);
    if (!dir) {
        json_decref(root);
        return ml_errf(err, "config %s: out of memory", path);
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");

    char origin[PATH_MAX + 16];
    snprintf(origin, sizeof origin, "config %s", path);
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (key[0] == '_' || strcmp(key, "comment") == 0) continue; /* annotations */
        const opt_def *o = find_option(key, 1);
        if (!o) {
            rc = ml_errf(err, "config %s: unknown key \"%s\" (keys are the long flag names "
                              "with '_' for '-', e.g. \"item_ids\"; see --help)", path, key);
            break;
        }
        char buf[64];
        const char *text = NULL;
        if ((o->kind == OPT_STR || o->kind == OPT_PATH) && json_is_string(val)) {
            text = json_string_value(val);
        } else if ((o->kind == OPT_INT || o->kind == OPT_SIZE || o->kind == OPT_LLONG) &&
                   json_is_integer(val)) {
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(val));
            text = buf;
        } else if (json_is_null(val)) {
            continue; /* null: keep the default */
        } else {
            rc = ml_errf(err, "config %s: \"%s\" must be %s", path, key,
                         o->kind == OPT_STR || o->kind == OPT_PATH ? "a string" : "an integer");
            break;
        }
        if (set_option(c, o, text, dir, origin, err) != 0) {
            rc = -1;
            break;
        }
    }
    free(dir);
    json_decref(root);
    if (rc == 0) {
        free(c->config_path);
        c->config_path = strdup(path);
    }
    return rc;
}

void ml_config_usage(FILE *out) {
    fprintf(out,
            "usage: metalignd [--config FILE] [options]\n"
            "Serves layer activations, CKA and learning curves of a meta-learned model.\n\n"
            "  --config FILE                JSON settings (keys: the flag names with '_' for '-')\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", options[i].flag, options[i].arg);
        fprintf(out, "  %-28s %s\n", left, options[i].help);
    }
    fprintf(out, "  --check                      load and validate everything, print a summary, exit\n"
                 "  --version                    print the version\n"
                 "  --help                       this text\n");
}

ml_cli_action ml_config_from_args(ml_config *c, int argc, char **argv, ml_err *err) {
    enum { ID_CONFIG = 1000, ID_CHECK, ID_VERSION, ID_HELP, ID_FIRST_OPTION };
    struct option longopts[N_OPTIONS + 5];
    size_t n = 0;
    longopts[n++] = (struct option){"config", required_argument, NULL, ID_CONFIG};
    longopts[n++] = (struct option){"check", no_argument, NULL, ID_CHECK};
    longopts[n++] = (struct option){"version", no_argument, NULL, ID_VERSION};
    longopts[n++] = (struct option){"help", no_argument, NULL, ID_HELP};
    for (size_t i = 0; i < N_OPTIONS; i++)
        longopts[n++] = (struct option){options[i].flag, required_argument, NULL,
                                        ID_FIRST_OPTION + (int)i};
    longopts[n] = (struct option){0, 0, 0, 0};

    /* First pass: only --config, so flags override the file whatever their order. */
    opterr = 0;
    optind = 1;
    int id;
    while ((id = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (id == ID_CONFIG && ml_config_load_file(c, optarg, err) != 0) return ML_CLI_EXIT_USAGE;
    }
    optind = 1;
    while ((id = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (id) {
        case ID_CONFIG: break;
        case ID_CHECK: c->check = 1; break;
        case ID_VERSION: printf("metalignd %s\n", ML_VERSION); return ML_CLI_EXIT_OK;
        case ID_HELP: ml_config_usage(stdout); return ML_CLI_EXIT_OK;
        case '?':
        case ':':
            if (optopt >= ID_FIRST_OPTION || optopt == ID_CONFIG)
                ml_errf(err, "%s needs a value", argv[optind - 1]);
            else
                ml_errf(err, "unknown option %s (see --help)", argv[optind - 1]);
            return ML_CLI_EXIT_USAGE;
        default: {
            const opt_def *o = &options[id - ID_FIRST_OPTION];
            char origin[64];
            snprintf(origin, sizeof origin, "--%s", o->flag);
            if (set_option(c, o, optarg, NULL, origin, err) != 0) return ML_CLI_EXIT_USAGE;
        }
        }
    }
    if (optind < argc) {
        ml_errf(err, "unexpected argument \"%s\" (options start with --; see --help)",
                argv[optind]);
        return ML_CLI_EXIT_USAGE;
    }
    return ML_CLI_RUN;
}

int ml_parse_listen(const char *listen, char *host, size_t host_len, int *port, ml_err *err) {
    const char *colon;
    const char *h = listen;
    size_t hl;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return ml_errf(err, "listen \"%s\": expected [IPv6]:PORT", listen);
        h = listen + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon) return ml_errf(err, "listen \"%s\": expected HOST:PORT, e.g. 127.0.0.1:8080", listen);
        hl = (size_t)(colon - listen);
    }
    if (hl == 0 || hl >= host_len) return ml_errf(err, "listen \"%s\": bad host", listen);
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
        return ml_errf(err, "listen \"%s\": port must be 0..65535", listen);
    *port = (int)p;
    return 0;
}

/* An origin as browsers send it: scheme://host[:port], nothing after (no path, no slash). */
static int validate_origin(const char *o, ml_err *err) {
    const char *host = !strncmp(o, "http://", 7) ? o + 7 : !strncmp(o, "https://", 8) ? o + 8 : NULL;
    size_t n = strlen(o);
    int bad = !host || !*host || n > ML_CORS_ORIGIN_MAX;
    for (const char *p = host; !bad && *p; p++)
        bad = *p == '/' || *p == ',' || *p == '*' || (unsigned char)*p <= ' ' || *p == 0x7f;
    if (bad)
        return ml_errf(err, "--cors-origin \"%s\" is not an origin: give scheme://host[:port] "
                            "as the browser sends it (e.g. http://localhost:8888), at most %d "
                            "characters, no path or trailing slash, no wildcard",
                       o, ML_CORS_ORIGIN_MAX);
    return 0;
}

int ml_config_validate(const ml_config *c, ml_err *err) {
    static const struct {
        size_t offset;
        const char *flag, *key;
    } required[] = {{OFF(checkpoint), "checkpoint", "checkpoint"},
                    {OFF(backbone), "backbone", "backbone"},
                    {OFF(targets), "targets", "targets"},
                    {OFF(item_ids), "item-ids", "item_ids"}};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!*(char *const *)((const char *)c + required[i].offset))
            return ml_errf(err, "no --%s given: pass it or a --config file that sets \"%s\" "
                                "(config/demo.json serves the demo bundle)",
                           required[i].flag, required[i].key);
    }
    if (!ml_fetch_url_allowed(c->human_url))
        return ml_errf(err, "--human-url %s: only http:// and https:// URLs are fetched; give "
                            "the CSV's web address (a local file can be served with any web "
                            "server)", c->human_url);
    if (c->human_retry_min > c->human_retry_max)
        return ml_errf(err, "--human-retry-min %d is above --human-retry-max %d; lower it",
                       c->human_retry_min, c->human_retry_max);
    if (c->cors_origin && validate_origin(c->cors_origin, err) != 0) return -1;
    char host[256];
    int port;
    return ml_parse_listen(c->listen, host, sizeof host, &port, err);
}
