#!/usr/bin/python3
"""The replay benchmark, PyTorch + numpy side (bench/run_replay.py runs it beside
build/bench/bench_replay): the same computation as ml_replay_run on the same files, the way a
researcher would write it with the research code's tools.

  load      np.load of the per-image backbone (all 26,107 rows), the image list sorted, the
            concepts' first images and their mean / std (not timed against the C: metalignd
            does this once at start-up)
  model     per participant: the images' rows standardised, inputs [onehot(previous label), x],
            all 90 sequences through tests/reference/metalign_ref.py's Transformer in batches
            (padded at the end; causal attention), logits
  span      the baseline as the service computes it (span_sequence below: the same algorithm
            in numpy/scipy), for every trial of every participant
  sklearn   the baseline as a researcher would: sklearn's LogisticRegression(C=1.0) (lbfgs,
            its defaults) refitted before every trial, on the first --sklearn-participants
            participants, extrapolated to all

Usage: replay_torch.py --data DIR --csv FILE [--threads 2] [--batch 32] [--reps 2]
                       [--sklearn-participants 3] [--compare C_DUMP]
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import pandas as pd
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import metalign_ref  # noqa: E402
import replay_ref as R  # noqa: E402

IN, C, H, FF, L = 2306, 768, 12, 3072, 6


def load_world(data):
    z = np.load(os.path.join(data, "backbone.npz"))
    X = np.concatenate([z[k] for k in z.files], axis=1).astype(np.float32)
    paths = [line.strip() for line in open(os.path.join(data, "images.txt")) if line.strip()]
    parts = sorted((p.split("/")[-2], p.split("/")[-1]) for p in paths)
    parts.sort(key=lambda cf: (cf[0].encode(), cf[1].encode()))
    rows = {cf: i for i, cf in enumerate(parts)}
    ids = [line.rstrip("\n") for line in open(os.path.join(data, "unique_id.txt"))]
    first = {}
    for (c, _f), i in rows.items():
        if c not in first or i < first[c]:
            first[c] = i
    concept_rows = X[[first[c] for c in ids]]
    mean, scale = R.standardise_like_service(concept_rows)
    return X, rows, ids, mean, scale


def model_passes(model, X, mean, scale, seqs, batch):
    """logits per sequence, every sequence padded to the longest."""
    S = max(len(s["rows"]) for s in seqs)
    out = []
    for b0 in range(0, len(seqs), batch):
        chunk = seqs[b0:b0 + batch]
        inp = np.zeros((len(chunk), S, IN), np.float32)
        for b, s in enumerate(chunk):
            keys = [r["key"] for r in s["rows"]]
            feats = ((X[keys].astype(np.float64) - mean) / scale).astype(np.float32)
            labels = [r["label"] for r in s["rows"]]
            inp[b, :len(keys), 2:] = feats
            for t in range(1, len(keys)):
                inp[b, t, labels[t - 1]] = 1.0
        with torch.no_grad():
            lg = model(torch.from_numpy(inp))[:, :, 0].double().numpy()
        for b, s in enumerate(chunk):
            out.append(lg[b, :len(s["rows"])])
    return out


def span_sequence(X, y, C=1.0, gtol=1e-10, dec=1e-12):
    """The service's baseline algorithm in numpy/scipy (include/metalign/baseline.h): the Gram
    matrix once, then per trial the span-form Newton warm-started from the previous fit, the
    new row placed by a one-dimensional solve, Cholesky of B = I + C S K S (scipy), a
    backtracking line search, the same stopping rules."""
    from scipy.linalg import cho_factor, cho_solve
    from scipy.special import expit
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    n = len(y)
    K = X @ X.T
    z = np.zeros(n)
    a = np.zeros(n)
    b = 0.0
    for t in range(n):
        if len(set(y[:t].tolist())) < 2:
            continue
        Km, ym, am = K[:t, :t], y[:t], a[:t]
        f = Km @ am + b
        k = t - 1  # place the new row: 1-D Newton in a[k], bracketed
        lo, hi = -math.inf, math.inf
        for _ in range(60):
            p = expit(f)
            d1 = Km[k] @ am + C * Km[k] @ (p - ym)
            d2 = Km[k, k] + C * (Km[k] ** 2) @ (p * (1 - p))
            if d1 < 0:
                lo = am[k]
            else:
                hi = am[k]
            nxt = am[k] - d1 / d2
            if not (lo < nxt < hi):
                nxt = 0.5 * (lo + hi)
            step = nxt - am[k]
            am[k] = nxt
            f += Km[k] * step
            if abs(step) * Km[k, k] <= 1e-3:
                break

        def J(aa, bb, ff):
            return 0.5 * aa @ (ff - bb) + C * np.sum(R.logloss(ym, ff))

        for _ in range(100):
            p = expit(f)
            g, w = p - ym, p * (1 - p)
            s_ = np.sqrt(w)
            r = am + C * g
            Kr = Km @ r
            if math.sqrt(max(r @ Kr, 0) + (C * g.sum()) ** 2) <= gtol:
                break
            B = np.eye(t) + C * s_[:, None] * Km * s_[None, :]
            cf = cho_factor(B, lower=False, check_finite=False)
            t1 = cho_solve(cf, s_ * Kr, check_finite=False)
            t3 = cho_solve(cf, s_, check_finite=False)
            db = (s_ @ t1 - g.sum()) / (s_ @ t3)
            da = -(r - C * s_ * (t1 - db * t3))
            Kda = Km @ da
            lam2 = max(-(Kr @ da + C * g.sum() * db), 0.0)
            last = lam2 <= dec
            step, J0 = 1.0, J(am, b, f)
            while not last and J(am + step * da, b + step * db, f + step * (Kda + db)) > \
                    J0 - 1e-4 * step * lam2 and step > 1e-18:
                step *= 0.5
            am += step * da
            f += step * (Kda + db)
            b += step * db
            if last:
                break
        z[t] = K[t, :t] @ am + b
    return z


def features(X, mean, scale, s):
    keys = [r["key"] for r in s["rows"]]
    return ((X[keys].astype(np.float64) - mean) / scale).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sklearn-participants", type=int, default=3)
    ap.add_argument("--compare")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    print("torch %s, %d threads, OPENBLAS_CORETYPE=%s" %
          (torch.__version__, torch.get_num_threads(),
           os.environ.get("OPENBLAS_CORETYPE", "(OpenBLAS default detection)")))
    t0 = time.perf_counter()
    X, rows, ids, mean, scale = load_world(args.data)
    ck = torch.load(os.path.join(args.data, "model.pt"), weights_only=False) \
        if "weights_only" in torch.load.__code__.co_varnames else \
        torch.load(os.path.join(args.data, "model.pt"))
    sd = {k: v for k, v in ck["model_state_dict"].items() if k != "freqs_cis"}
    model = metalign_ref.Transformer(metalign_ref.TransformerConfig(
        input_size=IN, hidden_size=C, num_attention_heads=H, intermediate_size=FF,
        num_layers=L, sequence_length=128)).eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"freqs_cis"}, (missing, unexpected)
    df = pd.read_csv(args.csv)
    seqs = R.plan(df, ids, rows, None)
    n_trials = sum(len(s["rows"]) for s in seqs)
    print("load      %.3f s (backbone %s, %d sequences, %d trials)" %
          (time.perf_counter() - t0, X.shape, len(seqs), n_trials))

    best = math.inf
    for _ in range(args.reps + 1):
        t0 = time.perf_counter()
        logits = model_passes(model, X, mean, scale, seqs, args.batch)
        dt = time.perf_counter() - t0
        best = min(best, dt)
    S = max(len(s["rows"]) for s in seqs)
    rows_done = len(seqs) * S
    flops = (2.0 * C * (4.0 * C + 2.0 * FF) * L * rows_done + 2.0 * IN * C * rows_done +
             4.0 * C * (S * (S + 1) / 2.0) * L * len(seqs))
    print("model     %.3f s  %.1f GFLOP/s (batches of %d, padded to %d)" %
          (best, flops / best / 1e9, args.batch, S))

    t0 = time.perf_counter()
    zb = [span_sequence(features(X, mean, scale, s), [r["label"] for r in s["rows"]])
          for s in seqs]
    print("span      %.3f s (numpy/scipy span-form Newton, the service's algorithm, %d "
          "participants)" % (time.perf_counter() - t0, len(seqs)))

    k = min(args.sklearn_participants, len(seqs))
    t0 = time.perf_counter()
    from sklearn.linear_model import LogisticRegression
    fits = 0
    for s in seqs[:k]:
        Xs = features(X, mean, scale, s)
        y = np.array([r["label"] for r in s["rows"]])
        for t in range(len(y)):
            if len(set(y[:t].tolist())) < 2:
                continue
            LogisticRegression(C=1.0).fit(Xs[:t], y[:t]).decision_function(Xs[t:t + 1])
            fits += 1
    dt = time.perf_counter() - t0
    print("sklearn   %.3f s for %d participants (%d fits), %.1f s extrapolated to %d" %
          (dt, k, fits, dt * len(seqs) / max(k, 1), len(seqs)))

    if args.compare:
        c = {}
        for line in open(args.compare):
            p, t, z, b = line.split()
            c[(p, int(t))] = (float(z), float(b))
        dz = db = 0.0
        for s, lg, zz in zip(seqs, logits, zb):
            for r, z, b in zip(s["rows"], lg, zz):
                cz, cb = c[(s["participant"], r["trial"])]
                dz = max(dz, abs(cz - z))
                db = max(db, abs(cb - b))
        print("compare   %d trials: largest |logit C - torch| %.3g, |baseline C - numpy| %.3g" %
              (len(c), dz, db))


if __name__ == "__main__":
    main()
