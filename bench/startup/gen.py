#!/usr/bin/python3
"""Generates real-size start-up inputs for bench/startup/run.sh (not committed; bench/data/ is
gitignored):

  model.pt             the seed-size model (In 2306, C 768, H 12, I 3072, L 6; ~177 MB)
                       saved by torch.save in the seed's container
                       {"model_state_dict", "epoch", "best_loss": np.float64}
  backbone.npz         per-image features, 26,107 x 2,304 float32 as three 768-wide arrays
                       cls, patch, register (np.savez: stored, ~241 MB)
  backbone_deflated.npz  the same through np.savez_compressed
  THINGS/              1,854 concept folders holding 26,107 empty <concept>_NNx.jpg files
  images.txt           the same paths as a list file (THINGS/<concept>/<file>)
  spose.txt            1,854 x 66 non-negative floats, "%.8e"
  unique_id.txt        the 1,854 concept names

Usage: /usr/bin/python3 bench/startup/gen.py OUT_DIR [--no-deflated]
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
import metalign_ref  # noqa: E402

N_CONCEPTS, N_IMAGES, DIM = 1854, 26107, 2304


def concept_names(rng):
    """THINGS-like names: lowercase words, some with '_', '-', digits; all distinct."""
    syll = ["ba", "ca", "de", "fo", "gu", "ha", "ki", "lo", "mu", "ne", "pi", "ra", "so", "tu"]
    names = set()
    while len(names) < N_CONCEPTS:
        w = "".join(rng.choice(syll, size=rng.integers(2, 5)))
        r = rng.random()
        if r < 0.1:
            w += "_" + "".join(rng.choice(syll, size=2))
        elif r < 0.13:
            w += "-" + "".join(rng.choice(syll, size=2))
        elif r < 0.16:
            w += str(rng.integers(1, 3))
        names.add(w)
    return sorted(names)


def main():
    out = Path(sys.argv[1])
    deflated = "--no-deflated" not in sys.argv
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    if not (out / "model.pt").exists():
        cfg = metalign_ref.TransformerConfig(intermediate_size=3072, input_size=2306,
                                             num_attention_heads=12)
        with torch.no_grad():
            model = metalign_ref.Transformer(cfg)
        torch.save({"model_state_dict": model.state_dict(), "epoch": 41,
                    "best_loss": np.float64(0.5123)}, out / "model.pt")

    names = concept_names(rng)
    counts = np.ones(N_CONCEPTS, dtype=int)
    extra = rng.multinomial(N_IMAGES - N_CONCEPTS, np.full(N_CONCEPTS, 1 / N_CONCEPTS))
    counts += extra
    paths = [f"{c}/{c}_{k:02d}{'abcdefghijklmnopqrstuvwxyz'[k % 26]}.jpg"
             for c, n in zip(names, counts) for k in range(1, n + 1)]
    assert len(paths) == N_IMAGES
    if not (out / "THINGS").exists():
        for c in names:
            (out / "THINGS" / c).mkdir(parents=True)
        for p in paths:
            (out / "THINGS" / p).touch()
    (out / "images.txt").write_text("".join(f"THINGS/{p}\n" for p in paths))
    ids = list(names)
    (out / "unique_id.txt").write_text("\n".join(ids) + "\n")
    y = rng.gamma(0.6, 0.5, size=(N_CONCEPTS, 66)) * (rng.random((N_CONCEPTS, 66)) < 0.7)
    np.savetxt(out / "spose.txt", y, fmt="%.8e")

    if not (out / "backbone.npz").exists() or (deflated and
                                                not (out / "backbone_deflated.npz").exists()):
        # Feature-like values: per-column offsets and scales, float32.
        x = rng.standard_normal((N_IMAGES, DIM), dtype=np.float32)
        x *= rng.gamma(2.0, 0.5, size=DIM).astype(np.float32)
        x += rng.standard_normal(DIM).astype(np.float32)
        arrays = {"cls": x[:, :768], "patch": x[:, 768:1536], "register": x[:, 1536:]}
        if not (out / "backbone.npz").exists():
            np.savez(out / "backbone.npz", **arrays)
        if deflated and not (out / "backbone_deflated.npz").exists():
            np.savez_compressed(out / "backbone_deflated.npz", **arrays)
    for f in sorted(out.iterdir()):
        if f.is_file():
            print(f"{f.name:24s} {os.path.getsize(f) / 1e6:9.1f} MB")


if __name__ == "__main__":
    main()
