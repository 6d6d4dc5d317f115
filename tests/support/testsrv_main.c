/* The loopback test server as a program, for tests that run the daemon itself:
 *   testsrv [BODY_FILE [MODE]]
 * prints "port N" on stdout once it listens and serves until SIGTERM or SIGINT. The mode
 * can be changed while it runs with GET /_control/mode/<mode>. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include "testsrv.h"

int main(int argc, char **argv) {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* the server's threads inherit the mask */
    testsrv *s = testsrv_start();
    if (!s) return 1;
    if (argc > 1 && testsrv_set_body_file(s, argv[1]) != 0) {
        fprintf(stderr, "testsrv: cannot read %s\n", argv[1]);
        testsrv_stop(s);
        return 1;
    }
    if (argc > 2) testsrv_set_mode(s, argv[2]);
    printf("port %d\n", testsrv_port(s));
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    testsrv_stop(s);
    return 0;
}
