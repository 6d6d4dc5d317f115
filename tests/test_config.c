/* Unit tests of src/config.c: the config file, the flags and the listen address. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "unit.h"

static char tmpdir[] = "/tmp/metalign-units-XXXXXX";

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_config_file_and_flags(void) {
    const char *path = write_tmp("c.json", "{\"_comment\": \"x\", \"checkpoint\": \"m.pt\", "
                                           "\"heads\": 8, \"item_ids\": \"/abs/ids.txt\", "
                                           "\"listen\": \"0.0.0.0:9000\"}");
    ml_config c;
    ml_config_defaults(&c);
    ml_err err = {{0}};
    char *argv[] = {"metalignd", "--heads", "4", "--config", (char *)path, NULL};
    CHECK(ml_config_from_args(&c, 5, argv, &err) == ML_CLI_RUN);
    CHECK(c.heads == 4); /* the flag wins, whatever its position */
    char want[600];
    snprintf(want, sizeof want, "%s/m.pt", tmpdir); /* relative to the config's folder */
    CHECK_MSG(c.checkpoint && !strcmp(c.checkpoint, want), "checkpoint %s", c.checkpoint);
    CHECK(!strcmp(c.item_ids, "/abs/ids.txt"));
    CHECK(!strcmp(c.listen, "0.0.0.0:9000"));
    CHECK(c.http_threads == 4 && c.max_jobs > 0 && c.cache_dir != NULL);
    ml_config_free(&c);
}

/* The scale-out's options: off by default, from the file and the flags, bounded. */
static void test_scaleout_options(void) {
    const char *path = write_tmp("r.json", "{\"redis\": \"redis://r:6380/1\", "
                                           "\"redis_claim_timeout\": 5, \"chunk_episodes\": 80}");
    ml_config c;
    ml_config_defaults(&c);
    CHECK(c.redis == NULL && c.redis_claim_timeout == 30 && c.redis_timeout == 2000 &&
          c.redis_connect_timeout == 1000 && c.chunk_episodes == 0 && c.redis_max_jobs == 64);
    ml_err err = {{0}};
    char *argv[] = {"metalignd", "--config", (char *)path, "--replica-name", "pod-1",
                    "--redis-timeout", "300", NULL};
    CHECK(ml_config_from_args(&c, 7, argv, &err) == ML_CLI_RUN);
    CHECK(c.redis && !strcmp(c.redis, "redis://r:6380/1") && c.redis_claim_timeout == 5 &&
          c.chunk_episodes == 80 && c.redis_timeout == 300 && c.replica_name &&
          !strcmp(c.replica_name, "pod-1"));
    ml_config_free(&c);
    ml_config_defaults(&c);
    char *bad[] = {"metalignd", "--redis-claim-timeout", "0", NULL};
    CHECK(ml_config_from_args(&c, 3, bad, &err) == ML_CLI_EXIT_USAGE);
    CHECK_MSG(strstr(err.msg, "redis-claim-timeout") != NULL, "%s", err.msg);
    ml_config_free(&c);
}

static void test_config_errors(void) {
    ml_config c;
    ml_err err = {{0}};
    ml_config_defaults(&c);
    const char *bad_key = write_tmp("k.json", "{\"chekpoint\": \"m.pt\"}");
    CHECK(ml_config_load_file(&c, bad_key, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "unknown key \"chekpoint\"");
    const char *bad_type = write_tmp("t.json", "{\"heads\": \"twelve\"}");
    CHECK(ml_config_load_file(&c, bad_type, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "\"heads\" must be an integer");
    const char *bad_json = write_tmp("j.json", "{\"heads\": 12,,}");
    CHECK(ml_config_load_file(&c, bad_json, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "line 1");
    CHECK(ml_config_load_file(&c, "/nonexistent/x.json", &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/x.json");
    char *argv[] = {"metalignd", "--heads", "0", NULL};
    CHECK(ml_config_from_args(&c, 3, argv, &err) == ML_CLI_EXIT_USAGE);
    CHECK_STR_CONTAINS(err.msg, "heads=0 is out of range");
    char *argv2[] = {"metalignd", "--bogus", NULL};
    CHECK(ml_config_from_args(&c, 2, argv2, &err) == ML_CLI_EXIT_USAGE);
    CHECK_STR_CONTAINS(err.msg, "--bogus");
    CHECK(ml_config_validate(&c, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "--checkpoint");
    ml_config_free(&c);
}

static void test_listen(void) {
    char host[64];
    int port;
    ml_err err;
    CHECK(ml_parse_listen("127.0.0.1:8080", host, sizeof host, &port, &err) == 0);
    CHECK(!strcmp(host, "127.0.0.1") && port == 8080);
    CHECK(ml_parse_listen("[::1]:0", host, sizeof host, &port, &err) == 0);
    CHECK(!strcmp(host, "::1") && port == 0);
    CHECK(ml_parse_listen("localhost", host, sizeof host, &port, &err) != 0);
    CHECK(ml_parse_listen("h:70000", host, sizeof host, &port, &err) != 0);
    CHECK(ml_parse_listen(":80", host, sizeof host, &port, &err) != 0);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_config_file_and_flags);
    RUN(test_config_errors);
    RUN(test_scaleout_options);
    RUN(test_listen);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    return UT_DONE();
}
