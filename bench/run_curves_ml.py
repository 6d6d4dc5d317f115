#!/usr/bin/python3
"""The later generation's learning-curve benchmark, C and PyTorch in one run, side by side.

  1. (once) the trained shape's world into bench/data/metalearner: a MetaLearnerConfig
     checkpoint (transformer, 1 layer, 16 heads, D = 768, no MLP, sl = 120; random weights,
     torch.save with `_orig_mod.` prefixes), a 1,854 x 768 gzip HDF5 backbone
     (`representations`), 66 SPoSE-like target columns, ids: SYNTHETIC
  2. build/bench/bench_curves_ml  the service's computation (ml_simulate + the curves), best
                                  of --reps, OPENBLAS_CORETYPE=SkylakeX OPENBLAS_THREAD_TIMEOUT=4
  3. bench/curves_ml_torch.py     the same episodes through PyTorch, same environment
then the agreement of every scored trial's logit and magnitude, and a table with the load
average before and after (the machine may be shared).

Usage: bench/run_curves_ml.py [--build build] [--reps 3] [--threads 2] [--episodes 128]
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from benchlib import bench_exe, run  # noqa: E402
DATA = os.path.join(ROOT, "bench", "data", "metalearner")
N, D, K = 1854, 768, 66


def generate():
    if os.path.exists(os.path.join(DATA, "model.pt")):
        return
    import h5py
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    import make_metalearner_fixtures as mlf
    os.makedirs(DATA, exist_ok=True)
    mlc = mlf.config_module()
    cfg = mlc.MetaLearnerConfig(x_sz=D, n_heads=16, n_layers=1, use_mlp=False, sl=120,
                                mag_std=0.35, model_type="transformer")
    model = mlf.make_model(cfg, 2024)
    torch.save(mlf.checkpoint(model, cfg), os.path.join(DATA, "model.pt"))
    g = np.random.default_rng(5)
    X = (g.standard_normal((N, D)) * 0.8).astype(np.float32)
    with h5py.File(os.path.join(DATA, "backbone.h5"), "w") as f:
        f.create_dataset("representations", data=X, compression="gzip", chunks=(64, D))
    Y = np.abs(g.standard_normal((N, K)) * 0.5)
    np.savetxt(os.path.join(DATA, "spose.txt"), Y, fmt="%.6f")
    with open(os.path.join(DATA, "unique_id.txt"), "w") as f:
        f.write("".join("concept_%04d\n" % i for i in range(N)))


def load_dump(path):
    v = np.loadtxt(path)
    return v[:, 2], v[:, 3]


def pick(out, prefix):
    return [l for l in out.splitlines() if l.startswith(prefix)][-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=128)
    args = ap.parse_args()
    exe = bench_exe(args.build, "bench_curves_ml", "run_curves_ml")
    generate()
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX", OPENBLAS_THREAD_TIMEOUT="4")
    out_dir = os.path.join(ROOT, "bench", "out")
    os.makedirs(out_dir, exist_ok=True)
    load_before = open("/proc/loadavg").read().split()[:3]
    common = ["--data", DATA, "--episodes", str(args.episodes), "--seq-len", "120",
              "--reps", str(args.reps), "--threads", str(args.threads)]
    c = run([exe] + common + ["--dump", os.path.join(out_dir, "curves_ml_c.txt")], env)
    t = run(["/usr/bin/python3", os.path.join(HERE, "curves_ml_torch.py")] + common +
            ["--dump", os.path.join(out_dir, "curves_ml_torch.txt")], env)
    load_after = open("/proc/loadavg").read().split()[:3]
    lc, mc = load_dump(os.path.join(out_dir, "curves_ml_c.txt"))
    lt, mt = load_dump(os.path.join(out_dir, "curves_ml_torch.txt"))
    assert lc.shape == lt.shape, "the two sides scored different trials"
    print()
    print("load average before %s, after %s" % (" ".join(load_before), " ".join(load_after)))
    print("| side | %s |" % " | ".join(["figure"]))
    print("| C simulation (sampling + passes + scoring) | %s |" % pick(c, "simulation:"))
    print("| C curves (1,000 resamples per trial) | %s |" % pick(c, "curves:"))
    print("| C encodings (first request only) | %s |" % pick(c, "encode"))
    print("| PyTorch forward + figures | %s |" % pick(t, "torch forward"))
    print("| PyTorch sampling (Python) | %s |" % pick(t, "torch sampling"))
    print("agreement over %d scored trials: logits max |diff| %.2g, magnitudes max |diff| %.2g"
          % (len(lc), np.abs(lc - lt).max(), np.abs(mc - mt).max()))


if __name__ == "__main__":
    main()
