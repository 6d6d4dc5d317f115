/* ml_cpus_usable: the affinity mask's count, lowered by a cgroup v2 or v1 CPU quota found
 * through /proc/self/mountinfo and /proc/self/cgroup, on fake trees in a temporary folder,
 * and on the machine itself. */
#include <errno.h>
#include <ftw.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cpus.h"
#include "unit.h"

static char base[] = "/tmp/metalign-cpus-XXXXXX";

/* Writes root/rel (making its folders). */
static void put(const char *root, const char *rel, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) CHECK_MSG(0, "mkdir %s", path);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A fresh fake root under base. */
static const char *tree(const char *name) {
    static char root[512];
    snprintf(root, sizeof root, "%s/%s", base, name);
    CHECK(mkdir(root, 0755) == 0);
    return root;
}

#define V2_MOUNT "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
#define V1_MOUNT                                                                      \
    "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
#define OTHER_MOUNTS                                                                  \
    "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"                                  \
    "35 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"

static void test_no_cgroup_files_is_the_affinity(void) {
    const char *r = tree("none");
    CHECK_EQ_INT(ml_cpus_usable_at(r, 6), 6);
    CHECK_EQ_INT(ml_cpus_usable_at(r, 0), 1); /* at least one */
    put(r, "proc/self/mountinfo", OTHER_MOUNTS);
    put(r, "proc/self/cgroup", "4:memory:/x\n");
    CHECK_EQ_INT(ml_cpus_usable_at(r, 6), 6);
}

static void test_v2_quota_on_an_ancestor(void) {
    const char *r = tree("v2");
    put(r, "proc/self/mountinfo", OTHER_MOUNTS V2_MOUNT);
    put(r, "proc/self/cgroup", "0::/system.slice/app.service\n");
    put(r, "sys/fs/cgroup/system.slice/app.service/cpu.max", "max 100000\n");
    put(r, "sys/fs/cgroup/system.slice/cpu.max", "150000 100000\n"); /* 1.5 CPUs */
    CHECK_EQ_INT(ml_cpus_usable_at(r, 8), 2);                          /* rounded up */
    CHECK_EQ_INT(ml_cpus_usable_at(r, 1), 1);                          /* affinity is lower */
    /* a tighter quota lower down wins */
    put(r, "sys/fs/cgroup/system.slice/app.service/cpu.max", "50000 100000\n");
    CHECK_EQ_INT(ml_cpus_usable_at(r, 8), 1);
    /* no quota anywhere */
    put(r, "sys/fs/cgroup/system.slice/app.service/cpu.max", "max 100000\n");
    put(r, "sys/fs/cgroup/system.slice/cpu.max", "max 100000\n");
    CHECK_EQ_INT(ml_cpus_usable_at(r, 8), 8);
    /* the root of a container's namespace: "0::/" reads the mount's own cpu.max */
    put(r, "proc/self/cgroup", "0::/\n");
    put(r, "sys/fs/cgroup/cpu.max", "400000 100000\n");
    CHECK_EQ_INT(ml_cpus_usable_at(r, 8), 4);
}

static void test_v1_quota_with_a_mount_root(void) {
    const char *r = tree("v1");
    /* the container sees its own cgroup /docker/abc mounted as the hierarchy's top */
    put(r, "proc/self/mountinfo", OTHER_MOUNTS V1_MOUNT);
    put(r, "proc/self/cgroup", "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
                               "1:name=systemd:/docker/abc\n");
    put(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "300000\n");
    put(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    CHECK_EQ_INT(ml_cpus_usable_at(r, 16), 3);
    put(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n"); /* unlimited */
    CHECK_EQ_INT(ml_cpus_usable_at(r, 16), 16);
    put(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "20000\n"); /* a fifth of a CPU */
    CHECK_EQ_INT(ml_cpus_usable_at(r, 16), 1);
}

static void test_garbage_is_ignored(void) {
    const char *r = tree("junk");
    put(r, "proc/self/mountinfo", "no separator here\n - \n" V2_MOUNT "1 2 3\n");
    put(r, "proc/self/cgroup", "::\n0::/a\n");
    put(r, "sys/fs/cgroup/a/cpu.max", "lots of CPUs\n");
    CHECK_EQ_INT(ml_cpus_usable_at(r, 4), 4);
    put(r, "sys/fs/cgroup/a/cpu.max", "0 100000\n"); /* a zero quota is no usable answer */
    CHECK_EQ_INT(ml_cpus_usable_at(r, 4), 4);
    put(r, "sys/fs/cgroup/a/cpu.max", "100000 0\n");
    CHECK_EQ_INT(ml_cpus_usable_at(r, 4), 4);
}

/* On this machine: within the affinity mask, which is within the online CPUs. */
static void test_this_machine(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    int mask = CPU_COUNT(&set), n = ml_cpus_usable();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    printf("# usable %d, affinity %d, online %ld\n", n, mask, online);
    CHECK(n >= 1 && n <= mask && mask <= online);
    CHECK_EQ_INT(ml_cpus_usable_at("", mask), n);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(void) {
    if (!mkdtemp(base)) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    RUN(test_no_cgroup_files_is_the_affinity);
    RUN(test_v2_quota_on_an_ancestor);
    RUN(test_v1_quota_with_a_mount_root);
    RUN(test_garbage_is_ignored);
    RUN(test_this_machine);
    nftw(base, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    return UT_DONE();
}
