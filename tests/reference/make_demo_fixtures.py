"""PyTorch/numpy reference answers for the daemon on the demo bundle (tests/http/).

Loads data/demo/ exactly as MODEL.md says, runs the reference model (metalign_ref.py) and
numpy CKA, and samples episodes with an independent Python copy of the service's documented
sampler (make_stats_fixtures.py), so the HTTP tests hold the daemon's activations, CKA,
replayed episodes and learning curves against PyTorch. Writes
tests/fixtures/http/demo_reference.json.

    /usr/bin/python3 tests/reference/make_demo_fixtures.py
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_stats_fixtures import sample_episode  # noqa: E402
from metalign_ref import Transformer, TransformerConfig  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

DEMO = os.path.join(ROOT, "data", "demo")


def load_model():
    tensors, meta = read_safetensors(os.path.join(DEMO, "model.safetensors"))
    C, In = tensors["embedding.weight"].shape
    L = len({k.split(".")[1] for k in tensors if k.startswith("layers.")})
    cfg = TransformerConfig(
        input_size=In, hidden_size=C, num_attention_heads=int(meta["num_attention_heads"]),
        intermediate_size=tensors["layers.0.mlp.fc1.weight"].shape[0], num_layers=L,
        sequence_length=int(meta.get("sequence_length", 100)),
        rope="pos_encoder.embedding.weight" not in tensors,
        bias="layers.0.self_attn.qkv.bias" in tensors,
        logit_bias="linear_head.bias" in tensors)
    m = Transformer(cfg).eval()
    missing, unexpected = m.load_state_dict({k: torch.tensor(v) for k, v in tensors.items()},
                                            strict=False)
    assert not unexpected and set(missing) <= {"freqs_cis"}, (missing, unexpected)
    return m


def linear_cka(X, Y):
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    return float(np.linalg.norm(Y.T @ X) ** 2 /
                 (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)))


def hsic_unbiased(K, L):
    """Song et al. (2012) eq. 5, literally: Gram diagonals zeroed (as make_cka_fixtures.py)."""
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
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    K = X @ X.T
    L = Y @ Y.T
    return float(hsic_unbiased(K, L) / np.sqrt(hsic_unbiased(K, K) * hsic_unbiased(L, L)))


def inputs(X, items, labels):
    rows = []
    for t, i in enumerate(items):
        onehot = [0.0, 0.0] if t == 0 else ([1.0, 0.0] if labels[t - 1] == 0 else [0.0, 1.0])
        rows.append(np.concatenate([np.array(onehot, np.float32), X[i]]))
    return torch.tensor(np.stack(rows)).unsqueeze(0)


def main():
    torch.set_grad_enabled(False)
    torch.set_num_threads(2)
    m = load_model()
    X = np.load(os.path.join(DEMO, "backbone.npy")).astype(np.float32)
    Y = np.loadtxt(os.path.join(DEMO, "targets.txt"), dtype=np.float64).astype(np.float32)
    n = X.shape[0]
    Xs = ((X - X.mean(0)) / (X.std(0, ddof=1) + 1e-8)).astype(np.float32)
    # torch's median: the lower middle value
    median = torch.tensor(Y).median(dim=0).values.numpy()
    out = {}

    # every item alone (the notebook's CKA setting), raw features
    inp = torch.cat([torch.zeros(n, 2), torch.tensor(X)], 1).unsqueeze(1)
    logits, layers = m(inp, return_layers=True)
    names = ["embedding"] + ["layer_%d" % i for i in range(len(layers) - 1)]
    pick = [0, 7, n - 1]
    out["activations"] = {
        "items": pick,
        "layers": {nm: layers[k][pick, 0].tolist() for k, nm in enumerate(names)},
        "logits": logits[pick, 0, 0].tolist(),
    }
    acts = [l[:, 0].double().numpy() for l in layers]
    Yd = Y.astype(np.float64)
    out["cka"] = {}
    for key, cols in (("all", list(range(Y.shape[1]))), ("012", [0, 1, 2])):
        res = {"backbone": linear_cka(X.astype(np.float64), Yd[:, cols])}
        for nm, a in zip(names, acts):
            res[nm] = linear_cka(a, Yd[:, cols])
        out["cka"][key] = res

    # /v1/cka/matrix: every pair of the backbone and the layers, every entry computed (the
    # diagonal too, so the test compares the service's diagonal with a computed value)
    reps = [("backbone", X.astype(np.float64))] + list(zip(names, acts))
    out["cka_matrix"] = {
        "names": [nm for nm, _ in reps],
        "linear": [[linear_cka(a, b) for _, b in reps] for _, a in reps],
        "debiased": [[debiased_cka(a, b) for _, b in reps] for _, a in reps],
    }

    # episodes as the service samples them, replayed through PyTorch on standardised inputs
    dims, seed = [0, 1, 2], 0
    detail = []
    for e in range(6):
        items, labels = sample_episode(Y, median, seed, e, dims[e % 3], 100)
        lg = m(inputs(Xs, items, labels))[0, :, 0]
        detail.append({"items": items, "labels": labels,
                       "probabilities": torch.sigmoid(lg).tolist()})
    out["episodes"] = {"seed": seed, "seq_len": 100, "dims": dims, "detail": detail}

    # the notebook's simulation: 128 episodes of 100 trials, batches of 64
    E, S, bs = 128, 100, 64
    Xe, Ye = [], []
    for e in range(E):
        items, labels = sample_episode(Y, median, seed, e, dims[e % 3], S)
        Xe.append(inputs(Xs, items, labels)[0])
        Ye.append(torch.tensor(labels, dtype=torch.float32))
    losses, correct = [], []
    for b in range(0, E, bs):
        bx, by = torch.stack(Xe[b:b + bs]), torch.stack(Ye[b:b + bs])
        lg = m(bx).squeeze(-1)
        losses.append(F.binary_cross_entropy_with_logits(lg, by).item())
        correct.append(((torch.sigmoid(lg) > 0.5).float() == by).float())
    correct = torch.cat(correct)
    out["curves"] = {"episodes": E, "seq_len": S, "seed": seed, "dims": dims,
                     "accuracy": correct.mean().item(), "loss": float(np.mean(losses)),
                     "p_correct": correct.mean(0).tolist(),
                     "correct_count": int(correct.sum().item())}

    os.makedirs(os.path.join(ROOT, "tests", "fixtures", "http"), exist_ok=True)
    path = os.path.join(ROOT, "tests", "fixtures", "http", "demo_reference.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
