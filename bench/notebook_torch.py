#!/usr/bin/python3
"""The notebook's simulation cell in PyTorch (bench/curves_e2e.py's copy of it: episodes
sampled with torch's generator, 128 x 100, dims [0, 1, 2], batches of 64, BCE loss, the
per-trial bookkeeping) on the seed-size files of bench/startup, as a server for
bench/run_gemm.py: loads the model once, prints "ready", then answers every line "run SEED"
on stdin with one line "torch seed SEED: T s (accuracy A)" and stops at "quit".

Run it with OPENBLAS_CORETYPE=SkylakeX on AVX-512 machines whose OpenBLAS would pick narrower
kernels (run_gemm.py does): PyTorch 1.13 from Debian does its matrix work in Debian's OpenBLAS.

Usage: bench/notebook_torch.py [--threads 2]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import curves_e2e  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = HERE / "data" / "startup"
    model, X, Y = curves_e2e.load_torch_side(data, args.threads)
    sampler = curves_e2e.ThingsFunctionLearning(X, Y)
    print("ready torch %s, %d threads" % (torch.__version__, torch.get_num_threads()), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] != "run" or len(words) != 2:
            print("error unknown command", flush=True)
            continue
        seed = int(words[1])
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        acc, _ = curves_e2e.notebook_simulation(model, sampler)
        t = time.perf_counter() - t0
        print("torch seed %d: %.4f s (accuracy %.4f)" % (seed, t, acc), flush=True)


if __name__ == "__main__":
    main()
