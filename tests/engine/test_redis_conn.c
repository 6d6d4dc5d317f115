/* The Redis connection's failure semantics (engine/redis_conn.h) against a real redis-server
 * (argv[1]) on a free loopback port and a listener that never answers: an unreachable Redis
 * fails within the connect timeout and then at once, a silent one within the command
 * timeout, never a hang; a restarted one is reconnected to; scripts run. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/redis_conn.h"
#include "unit.h"

static const char *redis_server;
static char dir[64];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A loopback socket bound to a free port and listening (never accepted from): connects
 * succeed, nothing is ever answered. */
static int silent_listener(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static int free_port(void) {
    int port = 0, fd = silent_listener(&port);
    if (fd >= 0) close(fd);
    return port;
}

static pid_t start_redis(int port) {
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        execl(redis_server, redis_server, "--port", p, "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Pings until Redis answers (it needs a moment to listen); 0 when it did. */
static int wait_up(ml_redis *r) {
    ml_err err;
    for (int i = 0; i < 100; i++) {
        if (ml_redis_ping(r, &err) == 0) return 0;
        usleep(50 * 1000);
    }
    printf("# %s\n", err.msg);
    return -1;
}

static ml_redis *pool(int port, int db, int connect_ms, int command_ms) {
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/%d", port, db);
    ml_redis_config cfg = {url, connect_ms, command_ms};
    ml_err err = {{0}};
    ml_redis *r = ml_redis_new(&cfg, &err);
    if (!r) printf("# %s\n", err.msg);
    return r;
}

static void test_unreachable(void) {
    ml_redis *r = pool(free_port(), 0, 300, 300);
    REQUIRE(r != NULL);
    ml_err err = {{0}};
    char why[ML_ERR_MAX];
    CHECK(!ml_redis_up(r, why, sizeof why) && why[0]); /* not contacted yet: not up */
    double t0 = now();
    CHECK(ml_redis_get(r, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "unreachable") && strstr(err.msg, "redis://127.0.0.1:"), "%s",
              err.msg);
    double t1 = now();
    CHECK(ml_redis_get(r, &err) == NULL); /* within the retry period: at once */
    CHECK_MSG(now() - t1 < 0.05 && t1 - t0 < 1.0, "first %.3f s, then %.3f s", t1 - t0,
              now() - t1);
    CHECK(!ml_redis_up(r, why, sizeof why) && strstr(why, "unreachable"));
    ml_redis_stats st;
    ml_redis_stats_get(r, &st);
    CHECK(st.errors >= 1 && !st.up);
    ml_redis_free(r);
}

static void test_silent(void) {
    int port = 0, fd = silent_listener(&port);
    REQUIRE(fd >= 0);
    ml_redis *r = pool(port, 0, 300, 400);
    REQUIRE(r != NULL);
    ml_err err = {{0}};
    double t0 = now();
    ml_redis_conn *c = ml_redis_get(r, &err); /* the kernel accepts; nobody answers */
    REQUIRE_MSG(c != NULL, "%s", err.msg);
    redisReply *rep = ml_redis_cmd(c, &err, "PING");
    double took = now() - t0;
    CHECK(rep == NULL);
    CHECK_MSG(strstr(err.msg, "timeout") != NULL, "%s", err.msg);
    CHECK_MSG(took >= 0.35 && took < 2.0, "the timeout took %.3f s", took);
    ml_redis_put(r, c); /* closed, not reused */
    CHECK(!ml_redis_up(r, NULL, 0));
    ml_redis_free(r);
    r = pool(port, 2, 300, 400); /* the same during the handshake (SELECT) */
    REQUIRE(r != NULL);
    t0 = now();
    CHECK(ml_redis_get(r, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "timeout") != NULL && now() - t0 < 2.0, "%s", err.msg);
    ml_redis_free(r);
    close(fd);
}

static void test_restart(void) {
    int port = free_port();
    pid_t pid = start_redis(port);
    REQUIRE(pid > 0);
    ml_redis *r = pool(port, 1, 500, 1000);
    REQUIRE(r != NULL);
    REQUIRE(wait_up(r) == 0);
    ml_err err = {{0}};
    ml_redis_conn *c = ml_redis_get(r, &err);
    REQUIRE(c != NULL);
    redisReply *rep = ml_redis_cmd(c, &err, "SET k %b", "a\0b", (size_t)3);
    CHECK(rep != NULL);
    if (rep) freeReplyObject(rep);
    const char *args[] = {"k", "x"};
    rep = ml_redis_eval(c, &err, "return redis.call('STRLEN', KEYS[1]) + #ARGV[1]", 1, args,
                        NULL, 2);
    CHECK(ml_redis_int(rep, -1) == 4); /* in db 1, the binary value whole */
    if (rep) freeReplyObject(rep);
    rep = ml_redis_cmd(c, &err, "NOSUCHCOMMAND");
    CHECK(rep == NULL && strstr(err.msg, "answered") != NULL); /* an error reply */
    ml_redis_put(r, c);
    stop(pid);
    c = ml_redis_get(r, &err);
    rep = c ? ml_redis_cmd(c, &err, "PING") : NULL;
    CHECK(rep == NULL && !ml_redis_up(r, NULL, 0));
    if (c) { /* its reconnect failed: every later use fails cleanly, none crashes */
        ml_redis_set_timeout(c, 100);
        CHECK(ml_redis_cmd(c, &err, "PING") == NULL && err.msg[0]);
        CHECK(ml_redis_append(c, &err, "PING") != 0);
        CHECK(ml_redis_reply(c, &err) == NULL);
    }
    ml_redis_put(r, c);
    pid = start_redis(port);
    CHECK(wait_up(r) == 0); /* after the retry period, a new connection */
    ml_redis_stats st;
    ml_redis_stats_get(r, &st);
    CHECK(st.up && st.reconnects >= 1 && st.commands >= 3);
    stop(pid);
    ml_redis_free(r);
}

/* Waits until something listens on the port (a restarted Redis), without the pool. */
static int wait_listening(int port) {
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0) close(fd);
        if (ok) return 0;
        usleep(50 * 1000);
    }
    return -1;
}

/* Connections left in the pool while Redis restarts are stale: their next command goes out
 * again on a new connection, once, and Redis is not reported down for it. */
static void test_stale_after_restart(void) {
    int port = free_port();
    pid_t pid = start_redis(port);
    ml_redis *r = pool(port, 0, 500, 1000);
    REQUIRE(r != NULL && wait_up(r) == 0);
    ml_err err = {{0}};
    ml_redis_conn *a = ml_redis_get(r, &err), *b = ml_redis_get(r, &err);
    REQUIRE(a && b); /* two pooled connections */
    ml_redis_put(r, a);
    ml_redis_put(r, b);
    stop(pid);
    pid = start_redis(port);
    REQUIRE(wait_listening(port) == 0);
    usleep(100 * 1000);
    for (int i = 0; i < 2; i++) {
        ml_redis_conn *c = ml_redis_get(r, &err);
        REQUIRE(c != NULL);
        redisReply *rep = ml_redis_cmd(c, &err, "PING");
        CHECK_MSG(rep != NULL, "command %d on a stale connection: %s", i, err.msg);
        if (rep) freeReplyObject(rep);
        ml_redis_put(r, c);
        CHECK(ml_redis_up(r, NULL, 0));
    }
    ml_redis_stats st;
    ml_redis_stats_get(r, &st);
    CHECK(st.reconnects >= 1);
    stop(pid);
    ml_redis_free(r);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        printf("not ok 1 - usage: test_redis_conn REDIS_SERVER\n1..1\n");
        return 1;
    }
    redis_server = argv[1];
    snprintf(dir, sizeof dir, "/tmp/metalign-redis-XXXXXX");
    if (!mkdtemp(dir)) {
        printf("not ok 1 - a temporary folder\n1..1\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    RUN(test_unreachable);
    RUN(test_silent);
    RUN(test_restart);
    RUN(test_stale_after_restart);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    return UT_DONE();
}
