#!/usr/bin/env python3
"""Counts test results across build directories from meson's testlog.json, and fails when the
log cannot be trusted.

    count_tests.py [--failed-builds FILE] [--meson-status FILE] [--list-args "ARGS"] DIR...

--list-args gives the suite arguments the directories after it were tested with (e.g.
"--no-suite fuzz"); `meson test -C DIR --list --no-rebuild ARGS` then says which tests had
to run. --failed-builds names a file with one "DIR description" line per build that failed;
--meson-status one "DIR STATUS" line per `meson test` run (tools/test.sh writes both).

Every TAP test point ("ok N" / "not ok N") counts once; a test program that is not TAP counts
as one result of its own. Counted as failures, each with a line saying why:
  - a build that failed, a folder without a test log or with an empty one (meson writes none
    on "no suitable tests" or when the rebuild fails);
  - a test that meson lists but that did not run (an interrupted run, a log from another
    selection), one failure per missing program;
  - a TAP program without a plan, whose points do not match its plan or are out of order,
    or that bailed out;
  - a program that exited non-zero, crashed or timed out after passing points;
  - a `meson test` that exited non-zero although the log shows no failure;
  - anything skipped (a "# SKIP" or "# TODO" point, a skipped program, "1..0"): a skipped test
    proves nothing, so it is reported and does not count as passed.
Prints the totals as the last line: "N passed, N failed". Exits 1 if anything failed.
"""
import json
import os
import re
import shlex
import subprocess
import sys

POINT = re.compile(r"^(not )?ok\b\s*(\d+)?([^#\n]*)(#\s*(\S+)(.*))?$", re.I)
PLAN = re.compile(r"^1\.\.(\d+)(\s*#\s*(\S+).*)?$", re.I)
BAIL = re.compile(r"^Bail out!(.*)$", re.M)
TAP_LINE = re.compile(r"^((not )?ok\b|1\.\.\d+)", re.I | re.M)


class Tally:
    def __init__(self, where):
        self.where = where
        self.passed = 0
        self.failed = 0
        self.notes = []

    def fail(self, n, why):
        self.failed += n
        self.notes.append(f"{self.where}: {why}")


def tap_count(name, out, tally):
    """Counts one TAP program's output; returns the number of points that passed."""
    points, plan, plan_directive = [], None, None
    for line in out.splitlines():
        m = POINT.match(line)
        if m:
            directive = (m.group(5) or "").upper()
            points.append((not m.group(1), m.group(2), directive, m.group(3).strip()))
            continue
        m = PLAN.match(line)
        if m and plan is None:
            plan = int(m.group(1))
            plan_directive = (m.group(3) or "").upper()
    passed = 0
    for i, (ok, number, directive, what) in enumerate(points, 1):
        if directive.startswith("SKIP") or directive.startswith("TODO"):
            tally.fail(1, f"{name}: point {number or i} was skipped ({directive})")
        elif ok:
            passed += 1
        else:
            # Named so the last lines of a CI log say which point failed, not only how many.
            tally.fail(1, f"{name}: not ok {number or i} {what}".rstrip())
    if plan is None:
        tally.fail(1, f"{name}: no TAP plan (the program died or was cut short after "
                      f"{len(points)} points)")
    elif plan == 0 and plan_directive.startswith("SKIP"):
        tally.fail(1, f"{name}: skipped entirely (1..0 # SKIP)")
    elif plan != len(points):
        missing = max(plan - len(points), 1)
        tally.fail(missing, f"{name}: the plan says {plan} points but {len(points)} ran")
    numbers = [int(n) for _, n, _, _ in points if n is not None]
    if numbers and numbers != list(range(1, len(numbers) + 1)):
        tally.fail(1, f"{name}: test points numbered out of order: {numbers[:10]}...")
    for m in BAIL.finditer(out):
        tally.fail(1, f"{name}: bailed out:{m.group(1)}")
    return passed


def listed_tests(d, list_args):
    """The test names meson would run in d with these suite arguments, or None."""
    cmd = ["meson", "test", "-C", d, "--list", "--no-rebuild"] + shlex.split(list_args)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if r.returncode != 0:
        return None, (r.stderr or r.stdout).strip().splitlines()[-1:] or ["meson failed"]
    noise = ("ninja:", "WARNING:", "DEPRECATION:", "NOTICE:")
    names = [l.strip() for l in r.stdout.splitlines()
             if l.strip() and not l.startswith(noise)]
    return names, None


def protocols(d):
    """{test name: protocol} from meson's introspection (both the bare and the suite name)."""
    try:
        r = subprocess.run(["meson", "introspect", "--tests", d], capture_output=True,
                           text=True, timeout=120)
        tests = json.loads(r.stdout) if r.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        tests = []
    out = {}
    for t in tests:
        out.setdefault(t["name"], t.get("protocol", "exitcode"))
        for s in t.get("suite", []):
            out[f"{s} / {t['name']}"] = t.get("protocol", "exitcode")
    return out


def count_dir(d, list_args, tally):
    log = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        tally.fail(1, "no test log (meson-logs/testlog.json): no test ran")
        return
    entries = []
    with open(log) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                tally.fail(1, f"testlog.json line {n} is not JSON (a run cut short?)")
    if not entries:
        tally.fail(1, "the test log is empty: no test ran")
        return
    proto = protocols(d)
    ran = set()
    for entry in entries:
        name = entry.get("name", "?")
        ran.add(name)
        out = entry.get("stdout") or ""
        result = entry.get("result")
        bare = name.split(" / ")[-1]
        known = proto.get(name, proto.get(bare))
        is_tap = known == "tap" if known else bool(TAP_LINE.search(out))
        if result == "SKIP":
            tally.fail(1, f"{name}: skipped (exit status 77)")
            continue
        ok = result in ("OK", "EXPECTEDFAIL")
        if not is_tap:
            if ok:
                tally.passed += 1
            else:
                tally.fail(1, f"{name}: {result}")
            continue
        before = tally.failed
        passed = tap_count(name, out, tally)
        tally.passed += passed
        if not ok and tally.failed == before:
            tally.fail(1, f"{name}: {result} (exit status {entry.get('returncode')}) after "
                          f"{passed} passing points")
    listed, why = listed_tests(d, list_args)
    if listed is None:
        tally.fail(1, f"cannot list the tests meson should have run ({why})")
        return
    missing = [t for t in listed if t not in ran]
    for t in missing:
        tally.fail(1, f"{t}: listed by meson but did not run (an interrupted run?)")
    if not listed:
        tally.fail(1, f"meson lists no tests for {list_args!r}")


def main(argv):
    failed_builds, meson_status = {}, {}
    runs = []  # (dir, list args)
    list_args = ""
    it = iter(argv)
    for a in it:
        if a == "--failed-builds":
            with open(next(it)) as f:
                for line in f:
                    if line.strip():
                        d, _, why = line.strip().partition(" ")
                        failed_builds[d] = why or "build"
        elif a == "--meson-status":
            with open(next(it)) as f:
                for line in f:
                    if line.strip():
                        d, _, st = line.strip().rpartition(" ")
                        meson_status[d] = st
        elif a == "--list-args":
            list_args = next(it)
        else:
            runs.append((a, list_args))
    if not runs and not failed_builds:
        print("count_tests.py: no build directories given", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    total_p, total_f, notes = 0, 0, []
    seen = set()
    for d, args in runs:
        seen.add(d)
        tally = Tally(d)
        if d in failed_builds:
            tally.fail(1, f"the build failed ({failed_builds[d]}); counted as 1 failure")
        else:
            count_dir(d, args, tally)
            st = meson_status.get(d, "0")
            if st != "0" and tally.failed == 0:
                tally.fail(1, f"meson test exited {st} but the log shows no failure")
        print(f"{d}: {tally.passed} passed, {tally.failed} failed")
        notes += tally.notes
        total_p += tally.passed
        total_f += tally.failed
    for d, why in failed_builds.items():
        if d not in seen:
            notes.append(f"{d}: the build failed ({why}); counted as 1 failure")
            total_f += 1
    for n in notes:
        print(n)
    print(f"{total_p} passed, {total_f} failed")
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
