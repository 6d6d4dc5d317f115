#!/usr/bin/env python3
"""Counts test results across build directories from meson's testlog.json.

Every TAP test point ("ok N" / "not ok N") counts once; a test program that is not TAP, or
that died before printing its plan, counts as one result of its own. Prints the totals as
the last line: "N passed, N failed". Exits 1 if anything failed.
"""
import json
import os
import re
import sys

TAP = re.compile(r"^(not )?ok \d+", re.M)
PLAN = re.compile(r"^1\.\.(\d+)", re.M)


def count(log_path):
    passed = failed = 0
    with open(log_path) as f:
        for line in f:
            entry = json.loads(line)
            out = entry.get("stdout") or ""
            points = TAP.findall(out)
            ok = entry.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
            if not points:
                passed += ok
                failed += not ok
                continue
            p = sum(1 for m in points if not m)
            passed += p
            failed += len(points) - p
            plan = PLAN.search(out)
            if not ok and (len(points) == p or not plan):
                failed += 1  # crashed, timed out or exited non-zero after passing points
    return passed, failed


def main(argv):
    failed_builds = []
    dirs = []
    it = iter(argv)
    for a in it:
        if a == "--failed-builds":
            with open(next(it)) as f:
                failed_builds = [l.strip() for l in f if l.strip()]
        else:
            dirs.append(a)
    total_p, total_f = 0, len(failed_builds)
    for d in dirs:
        log = os.path.join(d, "meson-logs", "testlog.json")
        if not os.path.exists(log):
            continue
        p, f = count(log)
        print(f"{d}: {p} passed, {f} failed")
        total_p += p
        total_f += f
    for b in failed_builds:
        print(f"{b}: the build failed (counted as 1 failure)")
    print(f"{total_p} passed, {total_f} failed")
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
