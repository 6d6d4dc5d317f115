#include "util/cpus.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CPUS_MAX_MASK (1 << 16) /* the largest affinity mask tried (CPUs) */
#define CPUS_LINE 4096          /* longest mountinfo or cgroup line read */

static int affinity_count(void) {
    for (int n = 1024; n <= CPUS_MAX_MASK; n *= 2) {
        cpu_set_t *set = CPU_ALLOC(n);
        if (!set) break;
        size_t size = CPU_ALLOC_SIZE(n);
        CPU_ZERO_S(size, set);
        int rc = sched_getaffinity(0, size, set), count = CPU_COUNT_S(size, set);
        CPU_FREE(set);
        if (rc == 0) return count;
        if (errno != EINVAL) break; /* EINVAL: the kernel's mask is larger than ours */
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (n < INT_MAX ? (int)n : INT_MAX) : 1;
}

/* Whole CPUs a quota allows (rounded up), or 0 for no quota / unreadable. */
static long quota_cpus(long long quota, long long period) {
    if (quota <= 0 || period <= 0) return 0;
    return (long)((quota + period - 1) / period);
}

static long read_v2(const char *dir) {
    char path[PATH_MAX + 16], max[32] = "";
    long long period = 0;
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = fscanf(f, "%31s %lld", max, &period);
    fclose(f);
    if (n != 2 || strcmp(max, "max") == 0) return 0;
    return quota_cpus(atoll(max), period);
}

static long long read_number(const char *dir, const char *name) {
    char path[PATH_MAX + 32];
    long long v = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (fscanf(f, "%lld", &v) != 1) v = 0;
    fclose(f);
    return v;
}

static long read_v1(const char *dir) {
    return quota_cpus(read_number(dir, "cpu.cfs_quota_us"), read_number(dir, "cpu.cfs_period_us"));
}

/* The tightest quota from dir up to top (a quota on an ancestor binds its children). */
static long tightest(char *dir, size_t top_len, int v2) {
    long best = 0;
    for (;;) {
        long q = v2 ? read_v2(dir) : read_v1(dir);
        if (q > 0 && (best == 0 || q < best)) best = q;
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= top_len || !slash || (size_t)(slash - dir) < top_len) break;
        *slash = '\0';
    }
    return best;
}

/* Whether the comma-separated list holds word. */
static int has_word(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0) return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* The process's cgroup path in the v2 hierarchy ("0::/path") or in the v1 hierarchy whose
 * controllers include cpu; 0 when found. */
static int own_cgroup(const char *root, int v2, char *out, size_t cap) {
    char path[PATH_MAX], line[CPUS_LINE];
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int found = -1;
    while (found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        const char *controllers = c1 + 1;
        int match = v2 ? (strcmp(line, "0") == 0 && controllers[0] == '\0')
                       : has_word(controllers, "cpu");
        if (match && strlen(c2 + 1) < cap) {
            strcpy(out, c2 + 1);
            found = 0;
        }
    }
    fclose(f);
    return found;
}

/* One mountinfo line: the quota of the process's cgroup in that mount, if it is a cgroup
 * mount with the cpu controller. */
static long mount_quota(const char *root, char *line) {
    char *sep = strstr(line, " - ");
    if (!sep) return 0;
    *sep = '\0';
    char fstype[32] = "", super[CPUS_LINE] = "", mroot[CPUS_LINE], mpoint[CPUS_LINE];
    if (sscanf(sep + 3, "%31s %*s %4095s", fstype, super) < 1) return 0;
    if (sscanf(line, "%*s %*s %*s %4095s %4095s", mroot, mpoint) != 2) return 0;
    int v2 = strcmp(fstype, "cgroup2") == 0;
    if (!v2 && !(strcmp(fstype, "cgroup") == 0 && has_word(super, "cpu"))) return 0;
    char cg[CPUS_LINE];
    if (own_cgroup(root, v2, cg, sizeof cg) != 0) return 0;
    /* The mount shows the hierarchy from mroot down; the process's path is relative to the
     * hierarchy's root. A path outside the mount (another namespace) reads the mount's top. */
    const char *rel = cg;
    size_t rl = strlen(mroot);
    if (strcmp(mroot, "/") != 0) {
        if (strncmp(cg, mroot, rl) == 0 && (cg[rl] == '/' || cg[rl] == '\0')) rel = cg + rl;
        else rel = "";
    }
    char dir[PATH_MAX];
    int top = snprintf(dir, sizeof dir, "%s%s", root, mpoint);
    if (top < 0 || (size_t)top >= sizeof dir) return 0;
    if (snprintf(dir + top, sizeof dir - (size_t)top, "%s", strcmp(rel, "/") ? rel : "") >=
        (int)(sizeof dir - (size_t)top))
        return 0;
    return tightest(dir, (size_t)top, v2);
}

int ml_cpus_usable_at(const char *root, int affinity) {
    int cpus = affinity > 0 ? affinity : 1;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/proc/self/mountinfo", root);
    FILE *f = fopen(path, "r");
    if (!f) return cpus;
    char *line = malloc(CPUS_LINE);
    while (line && fgets(line, CPUS_LINE, f)) {
        line[strcspn(line, "\n")] = '\0';
        long q = mount_quota(root, line);
        if (q > 0 && q < cpus) cpus = (int)q;
    }
    free(line);
    fclose(f);
    return cpus;
}

int ml_cpus_usable(void) { return ml_cpus_usable_at("", affinity_count()); }
