#include "util/priority.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static pid_t thread_id(void) { return (pid_t)syscall(SYS_gettid); }

/* setpriority(PRIO_PROCESS, tid) sets one thread's nice value on Linux. */
static int lower(pid_t tid, int nice, ml_err *err) {
    errno = 0;
    int now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (now == -1 && errno != 0) {
        if (errno == ESRCH) return 0; /* the thread has exited meanwhile */
        return ml_errf(err, "getpriority(thread %d): %s", (int)tid, strerror(errno));
    }
    if (now >= nice) return 0;
    if (setpriority(PRIO_PROCESS, (id_t)tid, nice) != 0 && errno != ESRCH)
        return ml_errf(err, "setpriority(thread %d, %d): %s", (int)tid, nice, strerror(errno));
    return 0;
}

int ml_priority_lower_self(int nice, ml_err *err) { return lower(thread_id(), nice, err); }

int ml_priority_lower_others(int nice, ml_err *err) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return ml_errf(err, "/proc/self/task: %s", strerror(errno));
    pid_t self = thread_id();
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char *end;
        long tid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || tid <= 0 || tid == (long)self) continue;
        rc = lower((pid_t)tid, nice, err);
    }
    closedir(d);
    return rc;
}
