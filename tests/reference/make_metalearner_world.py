#!/usr/bin/python3
"""A small world for the daemon on the later generation (MODEL.md section 7), and PyTorch's
answers for it (tests/http/test_http_metalearner.c, tests/engine/test_simulate_ml.c).

The world: N items with D backbone features in HDF5 (both layouts: one `representations`
dataset, and one dataset per item named "0".."N-1"), K dense targets, ids, and three
MetaLearnerConfig checkpoints of the same width D (a transformer with an MLP and two blocks,
an LSTM, a static linear model with num_dims = 3), written by make_metalearner_fixtures.py's
models (MODEL.md section 7 in PyTorch) and checkpoint layout (`_orig_mod.` prefixes, the
pickled `metalign.model.MetaLearnerConfig`).

The answers, per model:
  activations  every item alone (raw features, zero magnitude column): every layer, logits,
               magnitudes of three items; one sequence fed magnitudes: the same
  cka          linear CKA (float64 numpy) of the backbone and of every representation
               (embed = encode(x), layer_i, ln_f) with all targets and with dims 0, 1, 2
  curves       FunctionDataset episodes sampled by an independent Python copy of the
               service's documented sampler (make_stats_fixtures.sample_fn_episode), raw
               features, magnitudes fed back, padded past their length L; per trial the
               share correct and its n, the magnitude MSE; R^2 of the magnitudes over all
               scored trials; the loss (mean over each batch's scored trials, then of
               batches); the static model scored on head column = the episode's dimension

Writes tests/fixtures/metalearner/. Run from the repository root:
    /usr/bin/python3 tests/reference/make_metalearner_world.py
Deterministic: fixed seeds, one thread.
"""
import json
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "metalearner")
sys.path.insert(0, HERE)

import make_metalearner_fixtures as mlf  # noqa: E402  (the models, the checkpoint layout)
from make_stats_fixtures import sample_fn_episode  # noqa: E402

N, D, K = 40, 24, 5
MODELS = {
    "tf": dict(model_type="transformer", x_sz=D, n_heads=4, n_layers=2, use_mlp=True,
               int_sz=32, sl=48, mag_std=0.6),
    "lstm": dict(model_type="lstm", x_sz=D, n_heads=4, n_layers=1, use_mlp=False, sl=48,
                 mag_std=0.45),
    "static": dict(model_type="static_linear", x_sz=D, n_heads=4, n_layers=1, num_dims=3,
                   sl=48),
}
PICK = [0, 7, N - 1]                       # items of the independent activations
SEQ_ITEMS = [3, 8, 15, 22, 1, 30, 8]       # the sequence (an item may repeat)
SEQ_MAGS = [0.25, -0.5, 0.125, 0.75, -0.3, 0.05, 1.5]
# The curves: seq_len close to N, so one side of the median often runs out (L < S).
CURVES = dict(episodes=24, seq_len=38, seed=3, dims=[0, 1, 2], batch_size=8)


def world():
    g = np.random.default_rng(1401)
    X = (g.standard_normal((N, D)) * 1.3 + 0.4).astype(np.float32)
    Y = np.abs(g.standard_normal((N, K)) * 0.6 + 0.3).astype(np.float32)
    ids = ["item_%02d" % i for i in range(N)]
    return X, Y, ids


def write_world(X, Y, ids):
    os.makedirs(OUT, exist_ok=True)
    with h5py.File(os.path.join(OUT, "backbone.h5"), "w") as f:
        f.create_dataset("representations", data=X, compression="gzip", chunks=(8, D))
    with h5py.File(os.path.join(OUT, "backbone_images.h5"), "w") as f:
        # one dataset per item, created out of numeric order: the reader must sort 0..N-1
        # numerically, not as strings ("10" before "2")
        for i in sorted(range(N), key=str):
            f.create_dataset(str(i), data=X[i].astype(np.float64), compression="gzip")
    np.savetxt(os.path.join(OUT, "targets.txt"), Y, fmt="%.6f")
    with open(os.path.join(OUT, "ids.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")


def linear_cka(A, B):
    A = A - A.mean(0)
    B = B - B.mean(0)
    return float(np.linalg.norm(B.T @ A) ** 2 /
                 (np.linalg.norm(A.T @ A) * np.linalg.norm(B.T @ B)))


def to_list(t):
    return t.detach().double().numpy().tolist()


def activations(model, X):
    x = torch.tensor(X)
    logits1, mags1, outs1 = model(x[:, None, :], None)
    enc = model.encode(x)
    assert torch.allclose(enc, outs1["embed"][:, 0], atol=1e-6), "encode != length-1 embed"
    indep = {"items": PICK,
             "layers": {n: to_list(o[PICK, 0]) for n, o in outs1.items()},
             "logits": to_list(logits1[PICK, 0]),
             "magnitudes": to_list(mags1[PICK, 0])}
    xs = x[SEQ_ITEMS][None]
    ms = torch.tensor(SEQ_MAGS, dtype=torch.float32)[None]
    logits, mags, outs = model(xs, ms)
    seq = {"items": SEQ_ITEMS, "magnitudes_in": SEQ_MAGS,
           "layers": {n: to_list(o[0]) for n, o in outs.items()},
           "logits": to_list(logits[0]), "magnitudes": to_list(mags[0])}
    reps = {n: o[:, 0].double().numpy() for n, o in outs1.items()}
    return indep, seq, reps


def cka(X, Y, reps):
    out = {}
    for key, cols in (("all", list(range(K))), ("012", [0, 1, 2])):
        res = {"backbone": linear_cka(X.astype(np.float64), Y.astype(np.float64)[:, cols])}
        for n, a in reps.items():
            res[n] = linear_cka(a, Y.astype(np.float64)[:, cols])
        out[key] = res
    return out


def curves(model, cfg, X, Y):
    E, S, seed, dims, bs = (CURVES[k] for k in ("episodes", "seq_len", "seed", "dims",
                                                "batch_size"))
    median = torch.tensor(Y).median(dim=0).values.numpy()
    eps = []
    for e in range(E):
        dim = dims[e % len(dims)]
        items, labels, mags = sample_fn_episode(Y, median, seed, e, dim, S)
        eps.append((dim, items, labels, mags))
    right = np.zeros(S)
    n = np.zeros(S)
    sse_t = np.zeros(S)
    losses, ys, preds = [], [], []
    by_dim = {d: {"right": 0, "n": 0, "ys": [], "preds": []} for d in dims}
    for b0 in range(0, E, bs):
        batch = eps[b0:b0 + bs]
        xb, mb = [], []
        for dim, items, labels, mags in batch:
            L = len(items)
            pad = items + [items[0]] * (S - L)
            xb.append(X[pad])
            mb.append(mags + [0.0] * (S - L))
        xb = torch.tensor(np.stack(xb))
        mb = torch.tensor(np.array(mb, dtype=np.float32))
        logits, mag_pred, _ = model(xb, mb)
        bce_sum, bce_n = 0.0, 0
        for i, (dim, items, labels, mags) in enumerate(batch):
            L = len(items)
            if cfg.model_type == "static_linear":
                lg, mp = logits[i, :L, dim], mag_pred[i, :L, dim]  # column = the dimension
            else:
                lg, mp = logits[i, :L], mag_pred[i, :L]
            y = torch.tensor(labels, dtype=torch.float32)
            bce_sum += F.binary_cross_entropy_with_logits(lg.double(), y.double(),
                                                          reduction="sum").item()
            bce_n += L
            correct = ((torch.sigmoid(lg) > 0.5).float() == y).double().numpy()
            err = (mp.double() - torch.tensor(mags, dtype=torch.float32).double()).numpy()
            right[:L] += correct
            n[:L] += 1
            sse_t[:L] += err ** 2
            ys += mags
            preds += mp.double().tolist()
            bd = by_dim[dim]
            bd["right"] += correct.sum()
            bd["n"] += L
            bd["ys"] += mags
            bd["preds"] += mp.double().tolist()
        losses.append(bce_sum / bce_n)

    def r2(y, p):
        y, p = np.array(y, np.float64), np.array(p, np.float64)
        return float(1 - ((p - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())

    return {**CURVES,
            "lengths": [len(e[1]) for e in eps],
            "accuracy": float(right.sum() / n.sum()), "loss": float(np.mean(losses)),
            "trials": int(n.sum()), "correct_count": int(right.sum()),
            "p_correct": (right / n).tolist(), "n": n.astype(int).tolist(),
            "mse": (sse_t / n).tolist(), "r2": r2(ys, preds),
            "by_dimension": [{"dimension": d, "accuracy": float(v["right"] / v["n"]),
                              "r2": r2(v["ys"], v["preds"])} for d, v in by_dim.items()]}


def main():
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    mlc = mlf.config_module()
    X, Y, ids = world()
    write_world(X, Y, ids)
    ref = {"N": N, "D": D, "K": K}
    for i, (name, c) in enumerate(MODELS.items()):
        cfg = mlc.MetaLearnerConfig(**c)
        model = mlf.make_model(cfg, 7100 + 17 * i)
        torch.save(mlf.checkpoint(model, cfg), os.path.join(OUT, name + ".pt"))
        indep, seq, reps = activations(model, X)
        ref[name] = {"activations": indep, "sequence": seq, "cka": cka(X, Y, reps),
                     "curves": curves(model, cfg, X, Y)}
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    short = [sum(1 for L in ref[m]["curves"]["lengths"] if L < CURVES["seq_len"])
             for m in MODELS]
    print("wrote %s: %d files, %d bytes; episodes shorter than seq_len: %s"
          % (OUT, len(os.listdir(OUT)), total, short))


if __name__ == "__main__":
    main()
