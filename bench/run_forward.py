#!/usr/bin/python3
"""The forward-pass benchmark, C and PyTorch in one run, side by side.

Runs, one after the other on an otherwise idle machine and with the same thread count:
  1. build/bench/bench_forward   metalignd's pass and the same OpenBLAS SGEMMs alone
  2. bench/forward_torch.py      Debian's PyTorch on the same shapes, with OpenBLAS's own
                                 core detection and again with the BLAS settings metalignd
                                 runs with (its OPENBLAS_CORETYPE, OPENBLAS_THREAD_TIMEOUT=4)
then prints one table: seconds, GFLOP/s, the pass as a fraction of the SGEMM rate, and the
speed-up over each PyTorch run. The workloads are the notebook's simulation (128 episodes x
100 trials in batches of --batch episodes, 64 in the notebook) and the CKA workload (1,854
items as length-1 sequences, every layer output kept).

Usage: bench/run_forward.py [--build build] [--batch 64] [--reps 3] [--threads 2]
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from benchlib import bench_exe, run  # noqa: E402


def c_figures(out, batch):
    """{workload: (seconds, gflops, gemm_seconds, gemm_gflops, rate_ratio)} from bench_forward."""
    res = {}
    for line in out.splitlines():
        m = re.match(r"episodes\s+(\S+)\s+batch\s+(\d+) eps.*?:\s+([\d.]+) s\s+([\d.]+) GFLOP/s"
                     r" \| same GEMMs alone\s+([\d.]+) s\s+([\d.]+) GFLOP/s \| rate ratio\s+"
                     r"([\d.]+)%", line)
        if m and int(m.group(2)) == batch:
            key = "episodes (service path)" if m.group(1).startswith("embed") else "episodes (ml_forward)"
            res[key] = tuple(float(m.group(i)) for i in range(3, 8))
        m = re.match(r"items\s+all layers.*batch\s+(\d+) items:\s+([\d.]+) s\s+([\d.]+) GFLOP/s"
                     r" \| same GEMMs alone\s+([\d.]+) s\s*([\d.]+) GFLOP/s \| ratio\s+([\d.]+)%",
                     line)
        if m and int(m.group(1)) == 1854:
            s, gf, gs, ggf = (float(m.group(i)) for i in range(2, 6))
            res["items, all layers"] = (s, gf, gs, ggf, 100.0 * gf / ggf)
    return res


def torch_figures(out):
    res = {}
    for line in out.splitlines():
        m = re.match(r"episodes\s+batch\s+\d+ eps.*?:\s+([\d.]+) s\s+([\d.]+) GFLOP/s", line)
        if m:
            res["episodes"] = (float(m.group(1)), float(m.group(2)))
        m = re.match(r"items\s+all layers.*:\s+([\d.]+) s\s+([\d.]+) GFLOP/s", line)
        if m:
            res["items, all layers"] = (float(m.group(1)), float(m.group(2)))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    exe = bench_exe(args.build, "bench_forward", "run_forward")
    c_out = run([exe, "--batches", str(args.batch), "--reps", str(args.reps),
                 "--threads", str(args.threads), "--only", "episodes"])
    c_out += run([exe, "--batches", str(args.batch), "--reps", str(args.reps),
                  "--threads", str(args.threads), "--only", "forward"])
    c_out += run([exe, "--reps", str(args.reps), "--threads", str(args.threads),
                  "--only", "items"])
    c = c_figures(c_out, args.batch)

    torch_cmd = ["/usr/bin/python3", os.path.join(HERE, "forward_torch.py"), "--batches",
                 str(args.batch), "--reps", str(args.reps), "--threads", str(args.threads)]
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    t_default = torch_figures(run(torch_cmd, env))
    core = re.search(r"OpenBLAS core (\w+)", c_out)
    core = core.group(1) if core else None
    t_same = None
    if core:
        env_same = dict(env, OPENBLAS_CORETYPE=core, OPENBLAS_THREAD_TIMEOUT="4")
        t_same = torch_figures(run(torch_cmd, env_same))

    print()
    print("side by side (%d threads, best of %d; episodes in batches of %d):"
          % (args.threads, args.reps, args.batch))
    hdr = "%-26s %9s %9s %13s %11s %16s" % ("workload", "C s", "GFLOP/s", "of SGEMM rate",
                                             "torch s", "C speed-up")
    print(hdr)
    for key, tkey in (("episodes (service path)", "episodes"), ("episodes (ml_forward)", "episodes"),
                      ("items, all layers", "items, all layers")):
        if key not in c:
            continue
        s, gf, _, _, ratio = c[key]
        for label, t in (("default", t_default), ("as metalignd: %s, timeout 4" % core, t_same)):
            if not t or tkey not in t:
                continue
            ts = t[tkey][0]
            print("%-26s %9.3f %9.1f %12.1f%% %11.3f %9.2fx (torch %s)"
                  % (key, s, gf, ratio, ts, ts / s, label))


if __name__ == "__main__":
    main()
