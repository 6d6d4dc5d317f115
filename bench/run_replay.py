#!/usr/bin/python3
"""The replay benchmark, C and PyTorch + numpy in one run, side by side.

  1. bench/startup/gen.py        (once) the seed-size world into bench/data/startup
  2. a synthetic 90-participant x 120-trial CSV into bench/data/replay/humans.csv (images
     drawn from the world's image list, labels from the SPoSE-like targets split at the lower
     median with a flip per participant, choices of a noisy learner): SYNTHETIC, not human data
  3. build/bench/bench_replay    ml_replay_run: model passes and baseline, best of --reps,
                                 with OPENBLAS_CORETYPE=SkylakeX OPENBLAS_THREAD_TIMEOUT=4;
                                 then once more with the core OpenBLAS detects
  4. bench/replay_torch.py       the same in PyTorch + numpy (+ sklearn on a few
                                 participants), with the same OPENBLAS_CORETYPE=SkylakeX
                                 OPENBLAS_THREAD_TIMEOUT=4
then a table, with the load average beside it (the machine may be shared).

Usage: bench/run_replay.py [--build build] [--reps 3] [--threads 2] [--participants 90]
"""
import argparse
import os
import re
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from benchlib import bench_exe, run  # noqa: E402


def write_csv(data, path, n_participants, n_trials=120, seed=12):
    rng = np.random.default_rng(seed)
    paths = [line.strip() for line in open(os.path.join(data, "images.txt")) if line.strip()]
    by_concept = {}
    for p in paths:
        c, f = p.split("/")[-2:]
        by_concept.setdefault(c, []).append(f)
    ids = [line.rstrip("\n") for line in open(os.path.join(data, "unique_id.txt"))]
    Y = np.loadtxt(os.path.join(data, "spose.txt"))
    med = np.sort(Y, axis=0)[(len(ids) - 1) // 2]
    rows = []
    for p in range(n_participants):
        dim, flip = p % 3, int(rng.integers(0, 2))
        skill = rng.uniform(0.02, 0.08)
        for t, ci in enumerate(rng.choice(len(ids), size=n_trials, replace=False)):
            c = ids[ci]
            label = int(Y[ci, dim] >= med[dim]) ^ flip
            right = rng.random() < 0.5 + 0.4 * (1 - np.exp(-skill * t))
            choice = label if right else 1 - label
            f = by_concept[c][int(rng.integers(0, len(by_concept[c])))]
            rows.append(dict(participant="P%03d" % p, trial=t, image="stimuli/%s/%s" % (c, f),
                             choice=choice, correct=bool(right), true_category_binary=label,
                             dimension=dim))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pd.DataFrame(rows).to_csv(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--participants", type=int, default=90)
    ap.add_argument("--sklearn-participants", type=int, default=3)
    args = ap.parse_args()
    exe = bench_exe(args.build, "bench_replay", "run_replay")
    data = os.path.join(ROOT, "bench", "data", "startup")
    run(["/usr/bin/python3", os.path.join(HERE, "startup", "gen.py"), data, "--no-deflated"])
    csv = os.path.join(ROOT, "bench", "data", "replay", "humans.csv")
    write_csv(data, csv, args.participants)
    dump = os.path.join(ROOT, "bench", "data", "replay", "c_trials.txt")
    load0 = open("/proc/loadavg").read().split()[:3]
    # Both sides with the same kernels: SkylakeX (AVX-512) and metalignd's thread timeout.
    # (On a CPU OpenBLAS maps to another core, metalignd keeps that choice: the second C run
    # shows it.)
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX", OPENBLAS_THREAD_TIMEOUT="4")
    c_out = run([exe, "--data", data, "--csv", csv, "--reps", str(args.reps), "--threads",
                 str(args.threads), "--dump", dump], env=env)
    c_det = run([exe, "--data", data, "--csv", csv, "--reps", "1", "--threads",
                 str(args.threads)], env={k: v for k, v in os.environ.items()
                                          if k != "OPENBLAS_CORETYPE"})
    t_out = run(["/usr/bin/python3", os.path.join(HERE, "replay_torch.py"), "--data", data,
                 "--csv", csv, "--threads", str(args.threads), "--reps", str(args.reps - 1),
                 "--sklearn-participants", str(args.sklearn_participants), "--compare", dump],
                env=env)
    load1 = open("/proc/loadavg").read().split()[:3]

    def grab(pattern, text):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else float("nan")

    cm = grab(r"replay model passes: .*?: ([\d.]+) s", c_out)
    cg = grab(r"replay model passes: .*? s\s+([\d.]+) GFLOP/s", c_out)
    cb = grab(r"replay baseline: .*: ([\d.]+) s", c_out)
    tm = grab(r"model\s+([\d.]+) s", t_out)
    tg = grab(r"model\s+[\d.]+ s\s+([\d.]+) GFLOP/s", t_out)
    ts = grab(r"span\s+([\d.]+) s", t_out)
    tk = grab(r"sklearn .*?, ([\d.]+) s extrapolated", t_out)
    print()
    print("%d participants x 120 trials, %d threads; load average before %s, after %s"
          % (args.participants, args.threads, " ".join(load0), " ".join(load1)))
    print("%-34s %10s %10s %12s" % ("workload", "metalignd", "PyTorch", "speed-up"))
    print("%-34s %9.3fs %9.3fs %11.2fx   (%.0f vs %.0f GFLOP/s)"
          % ("model passes", cm, tm, tm / cm, cg, tg))
    core = re.search(r"OpenBLAS core ([^,\s]+)", c_det)
    print("%-34s %9.3fs %10s %12s   (%.0f GFLOP/s)"
          % ("model passes, C, core %s" % (core.group(1) if core else "?"),
             grab(r"replay model passes: .*?: ([\d.]+) s", c_det), "", "",
             grab(r"replay model passes: .*? s\s+([\d.]+) GFLOP/s", c_det)))
    print("%-34s %9.3fs %9.3fs %11.1fx" % ("baseline vs numpy span form", cb, ts, ts / cb))
    print("%-34s %9.3fs %9.1fs %11.0fx" % ("baseline vs sklearn refits (extrap.)", cb, tk, tk / cb))


if __name__ == "__main__":
    main()
