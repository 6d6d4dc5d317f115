#include "rawhttp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int raw_connect(const char *from_ip, int port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (from_ip) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        inet_pton(AF_INET, from_ip, &src.sin_addr);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int raw_send(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int raw_send_str(int fd, const char *s) { return raw_send(fd, s, strlen(s)); }

ssize_t raw_read(int fd, char *buf, size_t cap, int timeout_ms) {
    size_t n = 0;
    int failed = 0;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0) break;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) failed = 1;
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return failed && n == 0 ? -1 : (ssize_t)n;
}

int raw_closed(int fd, int timeout_ms) {
    double until = raw_now() + timeout_ms / 1000.0;
    char junk[4096];
    for (;;) {
        int left = (int)((until - raw_now()) * 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left > 0 ? left : 0) <= 0) return 0;
        ssize_t r = recv(fd, junk, sizeof junk, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 1;
    }
}

int raw_status(const char *answer) {
    int code = -1;
    if (answer && strncmp(answer, "HTTP/1.", 7) == 0 && answer[8] == ' ') code = atoi(answer + 9);
    return code;
}

const char *raw_body(const char *answer) {
    const char *at = answer ? strstr(answer, "\r\n\r\n") : NULL;
    return at ? at + 4 : NULL;
}

int raw_status_lines(const char *answer) {
    int n = 0;
    for (const char *p = answer; p && (p = strstr(p, "HTTP/1.")); p += 7) {
        const unsigned char *q = (const unsigned char *)p + 7;
        n += (q[0] == '0' || q[0] == '1') && q[1] == ' ' && isdigit(q[2]) && isdigit(q[3]) &&
             isdigit(q[4]) && q[5] == ' ';
    }
    return n;
}

int raw_count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

double raw_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
