"""Reference CKA values (cka.h) in numpy float64, on small matrices and on PyTorch activations
of a tiny model of the seed's architecture (tests/reference/metalign_ref.py).

Independent of the service's algebra: the linear CKA is the definition on Y[:, dims]
(feature space, float64); the debiased CKA is Song et al.'s unbiased HSIC computed literally
on n x n Gram matrices with zeroed diagonals (not the closed form the service uses); the
notebook's own cka() (torch, float32, centring in place) is recorded too.

Writes tests/fixtures/analysis/cka.txt ("name count v0 v1 ...", floats as repr; float32 inputs
are written exactly).

    /usr/bin/python3 tests/reference/make_cka_fixtures.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from metalign_ref import Transformer, TransformerConfig  # noqa: E402

DIMS = {"all": None, "012": [0, 1, 2], "3": [3], "51": [5, 1], "224": [2, 2, 4]}


def linear_cka(X, Y):
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    return np.sum((Y.T @ X) ** 2) / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def hsic_unbiased(K, L):
    """Song et al. (2012) eq. 5, literally: Gram diagonals zeroed."""
    n = K.shape[0]
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    t1 = np.trace(K @ L)
    t2 = (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * (one @ K @ L @ one)
    return (t1 + t2 - t3) / (n * (n - 3))


def debiased_cka(X, Y):
    # The estimator is invariant to the feature means, so centring changes nothing in exact
    # arithmetic; it is done because the uncentred Grams of x2 (offset 100) would lose about
    # 8 digits to cancellation in float64.
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    K = X @ X.T
    L = Y @ Y.T
    return hsic_unbiased(K, L) / np.sqrt(hsic_unbiased(K, K) * hsic_unbiased(L, L))


def notebook_cka(X, Y):
    """The notebook's cka(), in torch float32 (on copies: it centres in place)."""
    X = X.clone()
    Y = Y.clone()
    X -= X.mean(dim=0)
    Y -= Y.mean(dim=0)
    XTX = X.T @ X
    YTY = Y.T @ Y
    YTX = Y.T @ X
    return ((YTX ** 2).sum() / torch.sqrt((XTX ** 2).sum() * (YTY ** 2).sum())).item()


def rec(out, name, values):
    values = np.asarray(values, dtype=np.float64).ravel()
    out.append("%s %d %s" % (name, values.size, " ".join(repr(float(v)) for v in values)))


def main():
    out = []
    g = np.random.default_rng(2024)
    n, K = 40, 7
    # SPoSE-like targets: non-negative, sparse; the last column is constant (it adds nothing
    # to "all" and alone it has no CKA)
    Y = np.maximum(g.normal(size=(n, K)), 0).astype(np.float32)
    Y[:, K - 1] = 0.25
    base = g.normal(size=(n, 12))
    reps = {
        "x1": base.astype(np.float32),
        # more columns than items, partly driven by Y, with a large common offset
        "x2": (np.concatenate([Y @ g.normal(size=(K, 30)), g.normal(size=(n, 25))], 1) + 100)
        .astype(np.float32),
        "x3": np.tanh(base @ g.normal(size=(12, 20))).astype(np.float32),
    }

    # tiny model of the seed's architecture; every item its own length-1 sequence, [0, 0]
    torch.manual_seed(0)
    cfg = TransformerConfig(input_size=2 + 16, hidden_size=32, num_attention_heads=4,
                            intermediate_size=64, num_layers=2, sequence_length=8)
    model = Transformer(cfg).eval()
    feats = torch.from_numpy(g.normal(size=(n, 16)).astype(np.float32))
    inp = torch.cat([torch.zeros(n, 2), feats], 1).unsqueeze(1)
    with torch.no_grad():
        _, outs = model(inp, return_layers=True)
    for i, o in enumerate(outs):
        reps["act%d" % i] = o.squeeze(1).numpy().astype(np.float32)

    rec(out, "Y", Y)
    rec(out, "shape", [n, K])
    names = list(reps)
    out.append("reps %d %s" % (len(names), " ".join(names)))
    for name, X in reps.items():
        rec(out, name + "_shape", X.shape)
        rec(out, name, X)
        X64 = X.astype(np.float64)
        for dname, dims in DIMS.items():
            Ys = Y.astype(np.float64) if dims is None else Y.astype(np.float64)[:, dims]
            rec(out, "lin_%s_%s" % (name, dname), [linear_cka(X64, Ys)])
            rec(out, "deb_%s_%s" % (name, dname), [debiased_cka(X64, Ys)])
        Xt = torch.from_numpy(X)
        rec(out, "nb_%s_all" % name, [notebook_cka(Xt, torch.from_numpy(Y))])
        rec(out, "nb_%s_012" % name, [notebook_cka(Xt, torch.from_numpy(Y[:, :3]))])
    m = len(names)
    lin = np.ones((m, m))
    deb = np.ones((m, m))
    for i in range(m):
        for j in range(m):
            if i != j:
                a = reps[names[i]].astype(np.float64)
                b = reps[names[j]].astype(np.float64)
                lin[i, j] = linear_cka(a, b)
                deb[i, j] = debiased_cka(a, b)
    rec(out, "matrix_linear", lin)
    rec(out, "matrix_debiased", deb)

    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "analysis", "cka.txt")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
