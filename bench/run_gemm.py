#!/usr/bin/python3
"""The GEMM back ends, the notebook workload and the end-to-end request, in one run.

On one machine, same threads, everything interleaved so that the host's drift hits all sides
alike (only same-run ratios count), with the load average beside every figure:

  1. build/bench/bench_gemm --serve   every GEMM shape of the notebook workload on
     OpenBLAS and on oneDNN, and the workload's GEMM floor (its block GEMMs at each back
     end's rate per shape, and at the faster one's); the whole notebook workload (simulation
     + curves) on each back end
  2. metalignd of each build given (--builds; default build (oneDNN, the default back end)
     and build-openblas), started on
     the seed-size files of bench/startup: 6 (--consecutive) POST /v1/learning-curves right
     after start-up, one after the other (the daemon's steadiness, first request included)
  3. --rounds rounds of: one request to each daemon, each followed by bench_gemm's pass on the
     same back end, then the notebook cell in PyTorch (bench/notebook_torch.py)
  4. the shape table again (did the machine drift?)

Every process runs with OPENBLAS_CORETYPE=SkylakeX (--coretype; PyTorch too: Debian's
OpenBLAS would give this AMD guest its Haswell kernels, half the SGEMM rate) and
OPENBLAS_THREAD_TIMEOUT=4. --wait-quiet L first waits (up to --wait-max s) until the
1-minute load average is below L.

Usage: bench/run_gemm.py [--builds build,build-openblas] [--bench PATH] [--rounds 6]
                         [--consecutive 6] [--reps 3] [--threads 2] [--wait-quiet 0.5]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import request  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Server:
    """A child that answers one line per command line (bench_gemm --serve, notebook_torch)."""

    def __init__(self, name, cmd, env):
        self.name = name
        self.p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  universal_newlines=True, bufsize=1)
        self.setup = []
        for line in self.p.stdout:
            line = line.rstrip("\n")
            if line.startswith("ready"):
                break
            self.setup.append(line)
        else:
            sys.exit("run_gemm: %s stopped during its set-up" % name)

    def ask(self, line, until=None):
        """Sends one command; returns the answer line, or every line up to `until`."""
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = []
        for ans in self.p.stdout:
            ans = ans.rstrip("\n")
            if until is None:
                if ans.startswith("error"):
                    sys.exit("run_gemm: %s: %s" % (self.name, ans))
                return ans
            if ans == until:
                return out
            out.append(ans)
        sys.exit("run_gemm: %s stopped" % self.name)

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
        except OSError:
            pass
        self.p.wait()


class Daemon:
    def __init__(self, build, port, data, tmp, threads, env):
        self.build, self.port = build, port
        exe = Path(build) / "metalignd"
        if not os.access(exe, os.X_OK):
            sys.exit("run_gemm: build %s first" % exe)
        cmd = [str(exe), "--listen", "127.0.0.1:%d" % port, "--checkpoint", str(data / "model.pt"),
               "--heads", "12", "--backbone", str(data / "backbone.npz"), "--things-images",
               str(data / "images.txt"), "--targets", str(data / "spose.txt"), "--item-ids",
               str(data / "unique_id.txt"), "--cache-dir", tmp, "--threads", str(threads),
               "--human-url", "http://127.0.0.1:9/none"]
        t0 = time.perf_counter()
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                if request(port, "GET", "/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if self.p.poll() is not None:
                sys.exit("run_gemm: %s exited with %d" % (exe, self.p.returncode))
            time.sleep(0.02)
        self.ready_s = time.perf_counter() - t0
        self.rss_ready = self.rss()
        server = json.loads(request(port, "GET", "/v1/info")[1])["server"]
        # a daemon from before the GEMM back ends were reported runs OpenBLAS
        self.gemm = server.get("gemm", "openblas")
        self.gemm_library = server.get("gemm_library", "OpenBLAS")
        self.blas_core = server["blas_core"]

    def rss(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def simulate(self, seed):
        """One notebook workload, a new seed so the result cache never answers."""
        t0 = time.perf_counter()
        status, out = request(self.port, "POST", "/v1/learning-curves", json.dumps({"seed": seed}))
        t = time.perf_counter() - t0
        if status != 200:
            sys.exit("run_gemm: /v1/learning-curves answered %d: %s" % (status, out[:300]))
        return t

    def stop(self):
        self.p.terminate()
        self.p.wait()


def spread(ts):
    return 100.0 * (max(ts) - min(ts)) / min(ts)


def machine():
    model = family = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("cpu family") and family == "?":
                family = line.split(":", 1)[1].strip()
    return "%s (family %s), %d CPUs usable" % (model, family, len(os.sched_getaffinity(0)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", default=None,
                    help="metalignd build folders to time (default: build and build-openblas, "
                         "those that exist)")
    ap.add_argument("--bench", default=None, help="bench_gemm of a oneDNN build (default: build's)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--consecutive", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=18640)
    ap.add_argument("--coretype", default="SkylakeX")
    ap.add_argument("--wait-quiet", type=float, default=0.0)
    ap.add_argument("--wait-max", type=float, default=3600.0)
    args = ap.parse_args()

    builds = args.builds.split(",") if args.builds else [
        str(ROOT / b) for b in ("build", "build-openblas") if (ROOT / b / "metalignd").exists()]
    bench = args.bench or str(ROOT / "build" / "bench" / "bench_gemm")
    if not os.access(bench, os.X_OK):
        sys.exit("run_gemm: %s is missing: tools/build.sh build -Dbuildtype=release" % bench)
    data = HERE / "data" / "startup"
    subprocess.run(["/usr/bin/python3", str(HERE / "startup" / "gen.py"), str(data), "--no-deflated"],
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, OPENBLAS_CORETYPE=args.coretype, OPENBLAS_THREAD_TIMEOUT="4")

    if args.wait_quiet > 0:
        t0 = time.time()
        while loadavg() >= args.wait_quiet and time.time() - t0 < args.wait_max:
            time.sleep(15)
    print("machine: %s; %s; load %.2f" % (machine(), time.strftime("%Y-%m-%d %H:%M"), loadavg()))
    print("every process: OPENBLAS_CORETYPE=%s OPENBLAS_THREAD_TIMEOUT=4, %d threads"
          % (args.coretype, args.threads), flush=True)

    b = Server("bench_gemm", [bench, "--serve", "--threads", str(args.threads), "--reps",
                              str(args.reps)], env)
    print("\n".join(b.setup))
    shapes = b.ask("shapes", until="done")
    print("\n".join(shapes), flush=True)
    floor = {}
    for line in shapes:
        m = re.search(r"openblas ([\d.]+) s", line)
        if m and "floor" in line:
            floor["openblas"] = float(m.group(1))
            m = re.search(r"onednn ([\d.]+) s", line)
            if m:
                floor["onednn"] = float(m.group(1))
            m = re.search(r"faster per shape ([\d.]+) s", line)
            floor["faster"] = float(m.group(1)) if m else floor["openblas"]
    torch = Server("notebook_torch", ["/usr/bin/python3", str(HERE / "notebook_torch.py"),
                                      "--threads", str(args.threads)], env)

    daemons = []
    consecutive = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for i, build in enumerate(builds):
                cache = os.path.join(tmp, str(i))
                os.mkdir(cache)
                d = Daemon(build, args.port + i, data, cache, args.threads, env)
                daemons.append(d)
                la = loadavg()
                ts = [d.simulate(1000 + k) for k in range(args.consecutive)]
                consecutive[build] = ts
                print("\n%s (%s: %s; OpenBLAS %s): ready in %.2f s, RSS %.0f MB at /readyz, "
                      "%.0f MB after the requests" % (build, d.gemm, d.gemm_library, d.blas_core,
                                                      d.ready_s, d.rss_ready, d.rss()))
                print("  %d requests right after start-up (load %.2f -> %.2f): %s s; spread "
                      "%.1f%%" % (len(ts), la, loadavg(), ", ".join("%.3f" % t for t in ts),
                                  spread(ts)), flush=True)

            rows = []
            print("\nrounds: a request to each daemon, each followed by bench_gemm's pass on its "
                  "back end; then PyTorch's notebook cell")
            for r in range(args.rounds):
                row = {"load": loadavg()}
                for i, d in enumerate(daemons):
                    seed = 5000 + 10 * r + i
                    row[d.build] = d.simulate(seed)
                    ans = b.ask("workload %s %d" % (d.gemm, seed))
                    row["bench " + d.build] = float(re.search(r"total ([\d.]+) s", ans).group(1))
                row["torch"] = float(re.search(r": ([\d.]+) s", torch.ask("run %d" % r)).group(1))
                rows.append(row)
                print("  round %d (load %.2f): " % (r + 1, row["load"]) + " | ".join(
                    "%s request %.3f s, bench %.3f s" % (d.gemm, row[d.build], row["bench " + d.build])
                    for d in daemons) + " | torch %.3f s" % row["torch"], flush=True)
        finally:
            for d in daemons:
                d.stop()
            torch.close()
    shapes2 = b.ask("shapes", until="done")
    b.close()
    print("\nthe shape table again, after the rounds:")
    print("\n".join(shapes2))

    print("\nsummary (load at the end %.2f):" % loadavg())
    print("  GEMM floor of the workload, this run: openblas %.3f s%s, the faster per shape %.3f s"
          % (floor["openblas"], ", onednn %.3f s" % floor["onednn"] if "onednn" in floor else "",
             floor["faster"]))
    for d in daemons:
        req = [row[d.build] for row in rows]
        pas = [row["bench " + d.build] for row in rows]
        sp = [row["torch"] / row[d.build] for row in rows]
        print("  %s (%s):" % (d.build, d.gemm))
        print("    %d consecutive requests after start-up: %s s, spread %.1f%% (target <= 15%%)"
              % (len(consecutive[d.build]), ", ".join("%.3f" % t for t in consecutive[d.build]),
                 spread(consecutive[d.build])))
        print("    rounds: request median %.3f s (best %.3f, spread %.1f%%), bench pass median %.3f "
              "s (best %.3f): request / pass %.3f (median of rounds)"
              % (statistics.median(req), min(req), spread(req), statistics.median(pas), min(pas),
                 statistics.median([a / p for a, p in zip(req, pas)])))
        print("    request / GEMM floor at the faster back end per shape: median %.3f, best %.3f "
              "(target <= 1.10)" % (statistics.median(req) / floor["faster"], min(req) / floor["faster"]))
        print("    speed-up over PyTorch's notebook cell, per round: %s; lowest %.2fx (target >= 1.5x)"
              % (", ".join("%.2fx" % s for s in sp), min(sp)))


if __name__ == "__main__":
    main()
