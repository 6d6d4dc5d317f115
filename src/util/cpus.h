/* How many CPUs this process may actually use. sysconf(_SC_NPROCESSORS_ONLN) counts every
 * CPU of the machine; in a container or under taskset the process may run on fewer (its
 * affinity mask, set by cpusets) and for less time (a cgroup CPU bandwidth quota), and
 * sizing the compute threads by the machine's count overcommits the CPUs it does have. */
#ifndef METALIGN_CPUS_H
#define METALIGN_CPUS_H

/* The CPUs in the affinity mask, lowered by the tightest CPU quota of the process's cgroup
 * or any ancestor (cgroup v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us), a quota
 * rounded up to whole CPUs; at least 1. */
int ml_cpus_usable(void);

/* The same with the files read below root (root + "/proc/self/mountinfo", root +
 * "/proc/self/cgroup" and the cgroup folders they name) and the affinity count given
 * (tests use a fake tree; "" is the real one). */
int ml_cpus_usable_at(const char *root, int affinity);

#endif
