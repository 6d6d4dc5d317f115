#!/usr/bin/python3
"""The notebook's simulation end to end, PyTorch and metalignd in one run, on the seed-size
files of bench/startup (generated there if missing; never committed).

  torch      the notebook's cell verbatim in its maths (ThingsFunctionLearning episodes,
             128 x 100, dims [0, 1, 2], batches of 64, BCE loss, the per-trial bookkeeping),
             Debian's python3-torch, torch.set_num_threads(--threads), best of --reps
  metalignd  POST /v1/learning-curves with the notebook's defaults, a new seed per rep so the
             result cache never answers; wall time seen by the client, best of --reps

Then, while metalignd runs one more simulation, a second connection polls GET /healthz and a cached GET /v1/cka
every 10 ms and records their latencies: a heavy request must not stall light ones.

Usage: bench/curves_e2e.py [--build build] [--reps 3] [--threads 2] [--port 18633]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "reference"))
import metalign_ref  # noqa: E402

sys.path.insert(0, str(HERE))
from benchlib import request  # noqa: E402

EPISODES, SEQ_LEN, BATCH, DIMS = 128, 100, 64, [0, 1, 2]


def concept_rows(list_file):
    """Row of each concept's first image: component-wise path order (MODEL.md section 1)."""
    paths = [line.strip() for line in open(list_file) if line.strip()]
    order = sorted(range(len(paths)), key=lambda i: Path(paths[i]).parts)
    first = {}
    for i in order:
        concept = Path(paths[i]).parts[-2]
        first.setdefault(concept, i)
    return first


def load_torch_side(data, threads):
    ck = torch.load(data / "model.pt", map_location="cpu")
    sd = ck["model_state_dict"]
    cfg = metalign_ref.TransformerConfig()  # gen.py writes the seed-size default
    model = metalign_ref.Transformer(cfg)
    model.load_state_dict(sd)
    model.eval()
    with np.load(data / "backbone.npz") as z:
        feats = np.concatenate([z[k] for k in z.files], axis=1)
    ids = [line.strip() for line in open(data / "unique_id.txt") if line.strip()]
    first = concept_rows(data / "images.txt")
    X = torch.tensor(feats[[first[c] for c in ids]], dtype=torch.float32)
    Y = torch.tensor(np.loadtxt(data / "spose.txt", dtype=np.float32))
    torch.set_num_threads(threads)
    return model, X, Y


class ThingsFunctionLearning:
    """The seed's sampler (MODEL.md section 4), torch's generator."""

    def __init__(self, X, Y):
        self.X = (X - X.mean(0)) / (X.std(0) + 1e-8)
        self.Y = Y
        self.median = Y.median(0).values

    def sample_episode(self, dim, seq_len):
        idx = torch.randperm(self.X.shape[0])[:seq_len]
        y = (self.Y[idx, dim] >= self.median[dim]).float()
        if torch.rand(1).item() < 0.5:
            y = 1 - y
        return self.X[idx], y


def notebook_simulation(model, data):
    """The notebook's cell, unchanged in what it computes."""
    synthetic = dict(dimension=[], trial=[], correct=[], participant=[])
    with torch.no_grad():
        losses, correct_n, total_n = [], 0, 0
        xs, ys = [], []
        for i in range(EPISODES):
            dim = DIMS[i % len(DIMS)]
            X_ep, Y_ep = data.sample_episode(dim, SEQ_LEN)
            prev = torch.cat([torch.tensor([0]), Y_ep[:-1]])
            onehot = F.one_hot(prev.long(), num_classes=2).float()
            onehot[0] = 0.0
            xs.append(torch.cat([onehot, X_ep], dim=1))
            ys.append(Y_ep)
        for i in range(0, EPISODES, BATCH):
            bx, by = torch.stack(xs[i:i + BATCH]), torch.stack(ys[i:i + BATCH])
            logits = model(bx).squeeze(-1)
            losses.append(F.binary_cross_entropy_with_logits(logits, by).item())
            corr = (torch.sigmoid(logits) > 0.5).float() == by
            for j in range(corr.shape[0]):
                for k in range(corr.shape[1]):
                    synthetic["dimension"].append(DIMS[(i + j) % len(DIMS)])
                    synthetic["trial"].append(k)
                    synthetic["correct"].append(corr[j, k].item())
                    synthetic["participant"].append(i + j)
            correct_n += corr.sum().item()
            total_n += by.numel()
    return correct_n / total_n, float(np.mean(losses))


def simulate(port, seed):
    """One notebook workload; every field but the seed is the notebook's default."""
    t0 = time.perf_counter()
    status, out = request(port, "POST", "/v1/learning-curves", json.dumps({"seed": seed}))
    t = time.perf_counter() - t0
    if status != 200:
        sys.exit("curves_e2e: /v1/learning-curves answered %d: %s" % (status, out[:300]))
    return t, json.loads(out)


def prober(port, stop, lat):
    while not stop.is_set():
        for path in ("/healthz", "/v1/cka"):
            t0 = time.perf_counter()
            status, _ = request(port, "GET", path, timeout=10)
            lat.setdefault(path, []).append((time.perf_counter() - t0, status))
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=18633)
    args = ap.parse_args()
    data = ROOT / "bench" / "data" / "startup"
    subprocess.run(["/usr/bin/python3", str(HERE / "startup" / "gen.py"), str(data)], check=True,
                   stdout=subprocess.DEVNULL)
    exe = Path(args.build) / "metalignd"
    if not os.access(exe, os.X_OK):
        sys.exit("curves_e2e: build %s first" % exe)

    model, X, Y = load_torch_side(data, args.threads)
    sampler = ThingsFunctionLearning(X, Y)
    print("torch %s, %d threads, OPENBLAS_CORETYPE=%s" % (
        torch.__version__, torch.get_num_threads(),
        os.environ.get("OPENBLAS_CORETYPE", "(OpenBLAS default detection)")), flush=True)
    best_torch = float("inf")
    for rep in range(args.reps):
        torch.manual_seed(rep)
        t0 = time.perf_counter()
        acc, loss = notebook_simulation(model, sampler)
        t = time.perf_counter() - t0
        best_torch = min(best_torch, t)
        print("torch     notebook cell:            %7.3f s  (accuracy %.4f, loss %.4f)"
              % (t, acc, loss), flush=True)
    del model

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(exe), "--listen", "127.0.0.1:%d" % args.port, "--checkpoint",
               str(data / "model.pt"), "--heads", "12", "--backbone", str(data / "backbone.npz"),
               "--things-images", str(data / "images.txt"), "--targets", str(data / "spose.txt"),
               "--item-ids", str(data / "unique_id.txt"), "--cache-dir", tmp,
               "--threads", str(args.threads), "--human-url", "http://127.0.0.1:9/none"]
        daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if request(args.port, "GET", "/readyz", timeout=1)[0] == 200:
                        break
                except OSError:
                    pass
                if daemon.poll() is not None:
                    sys.exit("curves_e2e: metalignd exited with %d" % daemon.returncode)
                time.sleep(0.05)
            request(args.port, "GET", "/v1/cka")  # warm: the probe asks a cached answer
            best_c = float("inf")
            for rep in range(args.reps):
                t, r = simulate(args.port, 1000 + rep)
                best_c = min(best_c, t)
                print("metalignd POST /v1/learning-curves: %7.3f s  (accuracy %.4f, loss %.4f)"
                      % (t, r["accuracy"], r["loss"]), flush=True)
            # A separate phase, so the probes' own CPU does not slow the timed runs above.
            lat, stop = {}, threading.Event()
            probe = threading.Thread(target=prober, args=(args.port, stop, lat))
            probe.start()
            t, _ = simulate(args.port, 2000)
            stop.set()
            probe.join()
            print("metalignd POST /v1/learning-curves: %7.3f s  (while probed)" % t, flush=True)
        finally:
            daemon.terminate()
            daemon.wait()

    print()
    print("notebook simulation, 128 episodes x 100 trials, %d threads, best of %d:"
          % (args.threads, args.reps))
    print("  torch (notebook cell)         %7.3f s" % best_torch)
    print("  metalignd (HTTP, end to end)  %7.3f s   speed-up %.2fx" % (best_c, best_torch / best_c))
    for path, v in sorted(lat.items()):
        ts = sorted(x[0] for x in v)
        bad = sum(1 for x in v if x[1] != 200)
        print("  during the simulation: GET %-9s %4d probes, p50 %6.2f ms, p99 %6.2f ms, "
              "max %6.2f ms, non-200 %d" % (path, len(ts), 1e3 * ts[len(ts) // 2],
                                          1e3 * ts[min(len(ts) - 1, int(0.99 * len(ts)))],
                                          1e3 * ts[-1], bad))


if __name__ == "__main__":
    main()
