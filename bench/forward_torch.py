#!/usr/bin/python3
"""PyTorch reference timings for bench/bench_forward.c: the same seed-size model
(tests/reference/metalign_ref.py, In=2306, C=768, H=12, I=3072, L=6, RoPE, no biases, logit
bias; random weights) on the same workloads, eval mode, no grad, torch.set_num_threads(2).

  episodes  128 episodes x 100 trials, in batches of b episodes, logits only
  items     1854 items as length-1 sequences, every layer output kept (return_layers=True)

torch's BLAS is Debian's OpenBLAS; run it with Debian's defaults and with the kernels and
thread timeout metalignd picks (src/util/blas.c):
    /usr/bin/python3 bench/forward_torch.py
    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/forward_torch.py
    OPENBLAS_CORETYPE=SkylakeX OPENBLAS_THREAD_TIMEOUT=4 /usr/bin/python3 bench/forward_torch.py
"""
import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import metalign_ref  # noqa: E402

IN, C, H, FF, L = 2306, 768, 12, 3072, 6
ITEMS, EPISODES, TRIALS = 1854, 128, 100


def flops(rows, seqs, S):
    gemm = 2.0 * C * (4.0 * C + 2.0 * FF) * L * rows + 2.0 * IN * C * rows
    attn = 2.0 * 2.0 * C * (S * (S + 1) / 2.0) * L * seqs
    return gemm + attn


def best_of(fn, reps):
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="16,32,64,128")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    model = metalign_ref.Transformer(metalign_ref.TransformerConfig(
        input_size=IN, hidden_size=C, num_attention_heads=H, intermediate_size=FF,
        num_layers=L)).eval()
    core = os.environ.get("OPENBLAS_CORETYPE", "(OpenBLAS default detection)")
    timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "(default)")
    print("torch %s, %d threads, OPENBLAS_CORETYPE=%s, OPENBLAS_THREAD_TIMEOUT=%s" %
          (torch.__version__, torch.get_num_threads(), core, timeout))

    feats = torch.randn(ITEMS, IN - 2)
    items = torch.randint(0, ITEMS, (EPISODES, TRIALS))
    labels = torch.randint(0, 2, (EPISODES, TRIALS))
    x = torch.zeros(EPISODES, TRIALS, IN)
    x[:, :, 2:] = feats[items]
    for t in range(1, TRIALS):
        x[torch.arange(EPISODES), t, labels[:, t - 1]] = 1.0

    for b in [int(v) for v in args.batches.split(",")]:
        def episodes():
            for e0 in range(0, EPISODES, b):
                model(x[e0:e0 + b])
        t = best_of(episodes, args.reps)
        print("episodes  batch %3d eps (%5d rows): %7.3f s  %6.1f GFLOP/s" %
              (b, b * TRIALS, t, flops(EPISODES * TRIALS, EPISODES, TRIALS) / t / 1e9))
        sys.stdout.flush()

    x1 = torch.zeros(ITEMS, 1, IN)
    x1[:, 0, 2:] = feats

    def items_all_layers():
        logits, outs = model(x1, return_layers=True)
        return [o.squeeze(1) for o in outs]
    t = best_of(items_all_layers, args.reps)
    print("items     all layers, length 1, %d items: %7.3f s  %6.1f GFLOP/s" %
          (ITEMS, t, flops(ITEMS, ITEMS, 1) / t / 1e9))


if __name__ == "__main__":
    main()
