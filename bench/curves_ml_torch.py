#!/usr/bin/python3
"""The later generation's learning-curve benchmark, PyTorch side (bench/run_curves_ml.py runs
it beside build/bench/bench_curves_ml): the research code's evaluation as a researcher would
run it in PyTorch: the MetaLearnerConfig model (tests/reference/make_metalearner_fixtures.py's
MetaLearner, section 7 of MODEL.md) loaded from the same checkpoint, the same FunctionDataset
episodes (the service's documented sampler, make_stats_fixtures.sample_fn_episode), raw
features, magnitudes fed back, forward passes in batches of --batch episodes under
torch.inference_mode(), then accuracy per trial, the magnitude MSE per trial and R^2.

Timed separately: sampling the episodes (pure Python), and the forward passes plus the
per-trial figures (best of --reps after a warm-up).

Usage: bench/curves_ml_torch.py --data DIR [--episodes 128] [--seq-len 120] [--reps 3]
                                [--threads 2] [--batch 64] [--dump FILE]
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))

import make_metalearner_fixtures as mlf  # noqa: E402
from make_stats_fixtures import sample_fn_episode  # noqa: E402


def load(data):
    mlf.config_module()  # metalign.model.MetaLearnerConfig, for the pickle
    ck = torch.load(os.path.join(data, "model.pt"))
    cfg = ck["config"]
    model = mlf.MetaLearner(cfg).eval()
    sd = {k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k: v
          for k, v in ck["state_dict"].items()}
    model.load_state_dict(sd)
    import h5py
    with h5py.File(os.path.join(data, "backbone.h5"), "r") as f:
        X = np.asarray(f["representations"], dtype=np.float32)
    Y = np.loadtxt(os.path.join(data, "spose.txt"), dtype=np.float64).astype(np.float32)
    return model, cfg, X, Y


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--episodes", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=120)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dump")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, cfg, X, Y = load(a.data)
    E, S = a.episodes, a.seq_len
    dims = [0, 1, 2]
    median = torch.tensor(Y).median(dim=0).values.numpy()
    t0 = time.perf_counter()
    eps = []
    for e in range(E):
        dim = dims[e % 3]
        items, labels, mags = sample_fn_episode(Y, median, 0, e, dim, S)
        L = len(items)
        eps.append((dim, L, items + [items[0]] * (S - L), labels + [0] * (S - L),
                    mags + [0.0] * (S - L)))
    t_sample = time.perf_counter() - t0
    Xt = torch.tensor(X)
    idx = torch.tensor([e[2] for e in eps])
    lab = torch.tensor([e[3] for e in eps], dtype=torch.float32)
    mag = torch.tensor(np.array([e[4] for e in eps], dtype=np.float32))
    length = torch.tensor([e[1] for e in eps])
    mask = (torch.arange(S)[None, :] < length[:, None]).float()

    def run():
        logits, preds = [], []
        with torch.inference_mode():
            for b0 in range(0, E, a.batch):
                x = Xt[idx[b0:b0 + a.batch]]  # (B, S, D) raw features
                lg, mp, _ = model(x, mag[b0:b0 + a.batch])
                logits.append(lg)
                preds.append(mp)
            lg, mp = torch.cat(logits), torch.cat(preds)
            correct = ((torch.sigmoid(lg) > 0.5).float() == lab).float() * mask
            n = mask.sum(0)
            p_correct = correct.sum(0) / n
            se = (mp - mag) ** 2 * mask
            mse = se.sum(0) / n
            ym = (mag * mask).sum() / mask.sum()
            r2 = 1 - se.sum() / (((mag - ym) ** 2) * mask).sum()
            acc = correct.sum() / mask.sum()
        return lg, mp, p_correct, mse, float(r2), float(acc)

    best = 1e30
    for rep in range(a.reps + 1):
        t0 = time.perf_counter()
        out = run()
        t = time.perf_counter() - t0
        print("torch rep %d: forward + figures %.3f s" % (rep, t), flush=True)
        if rep:
            best = min(best, t)
    lg, mp, _, _, r2, acc = out
    D, L = cfg.x_sz, cfg.n_layers
    rows = E * S
    flops = (2 * D * (D + 1) * rows                       # embed of every trial
             + 2 * D * 4 * D * L * rows                   # qkv, o_proj
             + 2 * 2 * D * S * S * L * E                  # attention as computed: S^2, masked
             + 2 * 2 * D * rows)
    print("torch sampling (Python, %d episodes): %.3f s" % (E, t_sample))
    print("torch forward + figures: %.3f s  %.1f GFLOP/s (%.1f GFLOP, its own work)"
          % (best, flops / best / 1e9, flops / 1e9))
    print("torch accuracy %.6f r2 %.6f" % (acc, r2))
    if a.dump:
        with open(a.dump, "w") as f:
            for e in range(E):
                for t in range(int(length[e])):
                    f.write("%d %d %.9g %.9g\n" % (e, t, float(lg[e, t]), float(mp[e, t])))


if __name__ == "__main__":
    main()
