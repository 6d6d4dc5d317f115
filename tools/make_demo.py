#!/usr/bin/python3
"""Build the metalignd demo bundle (data/demo/): a SYNTHETIC world + a small meta-trained model.

Nothing here is THINGS data or human data.  The script

  1. generates a synthetic "world" of N items: latent factors -> (a) non-negative, sparse-ish
     "SPoSE-like" target dimensions, (b) "backbone-like" features (anisotropic, correlated,
     nonzero mean, heavy-ish tails, nuisance factors, a mild nonlinearity);
  2. meta-trains a small transformer of the seed's architecture (tests/reference/metalign_ref.py,
     RoPE variant) on classification episodes of that world sampled exactly as MODEL.md
     section 4 samples them (standardised features, lower-median split, whole-episode flip,
     inputs [onehot(previous label), x]);
  3. evaluates the in-context learning curve on fresh episodes of dims 0, 1, 2 (the notebook's
     protocol: 128 episodes, 100 trials, batches of 64);
  4. writes model.safetensors, backbone.npy, targets.txt, unique_id.txt, README.md and
     curve_check.json into --out.

Run from the repo root:
    /usr/bin/python3 tools/make_demo.py --out data/demo          # full build (a few minutes)
    /usr/bin/python3 tools/make_demo.py --out /tmp/demo --quick  # smoke run (untrained model)

Deterministic: fixed seeds, a fixed torch thread count (--threads, default 1), deterministic
algorithms only, no data-dependent multithreading; the same machine produces the same bytes on
every run (README.md's wall-time line is the one exception, see --no-timing).  Other machines /
BLAS builds may differ in the last bits of the trained weights.

Only the Python standard library, numpy and torch are used; the checkpoint is written by
tools/safetensors_io.py (the `safetensors` package is not needed).
"""
import argparse
import hashlib
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
sys.path.insert(0, HERE)

import metalign_ref  # noqa: E402  (the seed architecture; state-dict names = real checkpoint names)
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Configuration (everything that determines the bundle's bytes)
# ----------------------------------------------------------------------------------------------
WORLD = dict(
    seed=20240611,
    n_items=400,        # items ("concepts")
    n_features=128,     # D, backbone feature width
    n_targets=8,        # K, SPoSE-like dimensions
    n_latent=10,        # latent factors that drive the targets
    n_nuisance=16,      # latent factors that drive the features only ("style", "background")
    n_clusters=12,      # items come in loose categories
    nuisance_scale=1.0, # strength of the nuisance factors in the features
    noise_t=0.15,       # Student-t(4) private noise
    noise_shared=0.5,   # low-rank shared noise
    quad=0.1,           # strength of the quadratic interaction term
)
MODEL = dict(
    hidden_size=64,
    num_attention_heads=4,
    intermediate_size=256,
    num_layers=3,
    sequence_length=100,
)
TRAIN = dict(
    seed=1234,
    steps=1600,
    batch_size=32,
    seq_len=100,
    lr=1e-3,
    warmup=150,
    min_lr_frac=0.1,
    weight_decay=0.01,
    grad_clip=1.0,
    prev_head_init=True,  # start layer 0, head 0 as a previous-token head (see seed_previous_token_head)
    label_init_std=1.0,   # init std of the embedding's two label columns (None: PyTorch default)
    p_single=0.5,       # fraction of episodes on a single target dim, the rest on random
                        # non-negative combinations of 2-3 (z-scored) target dims
    flip_ramp=0.1,      # curriculum, see TaskSampler
    dims_ramp=0.5,
    dim_order="reverse",  # dims join the curriculum K-1, ..., 1, 0 (eval dims last)
)
EVAL = dict(
    seed=7,
    num_eval_episodes=128,
    sequence_length=100,
    batch_size=64,
    eval_dims=[0, 1, 2],
)
QUICK_OVERRIDES = dict(steps=40)
CURVE_TRIALS = [0, 1, 5, 10, 25, 50, 99]


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# 1. The synthetic world
# ----------------------------------------------------------------------------------------------
def softplus_np(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def make_world(cfg):
    """Returns X (n, D) float32 backbone features, Y (n, K) float32 targets (already rounded to
    the 6 decimals written to targets.txt), ids (list of str)."""
    rng = np.random.default_rng(cfg["seed"])
    n, D, K, L, U, C = (cfg[k] for k in
                        ("n_items", "n_features", "n_targets", "n_latent", "n_nuisance", "n_clusters"))

    # --- latent factors: loose clusters ("categories") + item-specific variation
    centers = rng.normal(0.0, 1.0, size=(C, L))
    cluster = rng.integers(0, C, size=n)
    z = centers[cluster] * 0.9 + rng.normal(0.0, 0.75, size=(n, L))
    z = (z - z.mean(0)) / z.std(0)
    u = rng.normal(0.0, 1.0, size=(n, U))  # nuisance factors, independent of the targets

    # --- SPoSE-like targets: sparse-ish non-negative, each a smooth rectified readout of z
    # (a few latents per dimension, so dimensions are correlated but distinct)
    W = np.zeros((L, K))
    for k in range(K):
        idx = rng.choice(L, size=3, replace=False)
        W[idx, k] = rng.normal(0.0, 1.0, size=3)
        W[:, k] += rng.normal(0.0, 0.15, size=L)
        W[:, k] /= np.linalg.norm(W[:, k])
    s = z @ W
    s = (s - s.mean(0)) / s.std(0)
    shift = rng.uniform(0.3, 1.2, size=K)          # larger shift -> sparser dimension
    gain = rng.uniform(1.5, 3.0, size=K)
    scale = rng.uniform(0.4, 1.2, size=K)
    Y = scale * softplus_np(gain * (s - shift)) / gain
    # SPoSE files are sorted by dimension "size" (sum over items): do the same
    order = np.argsort(-Y.sum(0), kind="stable")
    Y = Y[:, order]
    # round to what targets.txt stores, so Python and the C side see the same numbers
    Y = np.maximum(Y, 1e-6)
    target_lines = [" ".join("%.6f" % v for v in row) for row in Y]
    Y = np.array([[float(v) for v in line.split()] for line in target_lines], dtype=np.float64)

    # --- backbone-like features
    # linear mixing of the target latents and the nuisance latents
    A_sig = rng.normal(0.0, 1.0, size=(L, D)) / math.sqrt(L)
    A_nui = rng.normal(0.0, 1.0, size=(U, D)) / math.sqrt(U) * cfg["nuisance_scale"]
    H = z @ A_sig + u @ A_nui
    # mild nonlinearity (GELU-like rectification plus a quadratic interaction term)
    G = H * (1.0 / (1.0 + np.exp(-1.702 * H))) + cfg["quad"] * (H * np.roll(H, 1, axis=1))
    # correlated, heavy-tailed noise: low-rank shared part + Student-t(4) private part
    M = rng.normal(0.0, 1.0, size=(6, D)) / math.sqrt(6)
    noise = (rng.normal(0.0, 1.0, size=(n, 6)) @ M * cfg["noise_shared"]
             + rng.standard_t(4, size=(n, D)) * cfg["noise_t"])
    feat_scale = np.exp(rng.normal(0.0, 0.6, size=D))     # anisotropy
    feat_mean = rng.normal(0.3, 0.8, size=D)               # nonzero mean
    X = feat_mean + feat_scale * (G + noise)
    # two "massive activation" channels (as in ViTs): large, nearly constant, uninformative
    X[:, 0] = 25.0 + rng.normal(0.0, 1.5, size=n)
    X[:, D // 2] = -18.0 + rng.normal(0.0, 1.0, size=n)
    X = X.astype(np.float32)

    ids = ["syn_%04d" % (i + 1) for i in range(n)]
    info = dict(cluster=cluster, target_lines=target_lines)
    return X, Y.astype(np.float32), ids, info


def standardise(X):
    """ThingsFunctionLearning: (X - mean) / (std + 1e-8), std the n-1 estimate (torch)."""
    X = torch.as_tensor(X, dtype=torch.float32)
    return (X - X.mean(0)) / (X.std(0) + 1e-8)


def world_diagnostics(Xs, Y):
    """Cross-validated ridge decodability of the median-split labels (float64, numpy)."""
    X = Xs.double().numpy()
    n = X.shape[0]
    med = torch.median(torch.as_tensor(Y), dim=0).values.numpy()
    folds = np.arange(n) % 5
    out = {}
    for k in range(Y.shape[1]):
        y = (Y[:, k] >= med[k]).astype(np.float64) * 2 - 1
        correct = 0
        for f in range(5):
            tr, te = folds != f, folds == f
            Xa = np.c_[X[tr], np.ones(tr.sum())]
            w = np.linalg.solve(Xa.T @ Xa + 10.0 * np.eye(Xa.shape[1]), Xa.T @ y[tr])
            correct += ((np.c_[X[te], np.ones(te.sum())] @ w > 0) == (y[te] > 0)).sum()
        out[k] = correct / n
    return out


# ----------------------------------------------------------------------------------------------
# 2. Episodes (MODEL.md section 4)
# ----------------------------------------------------------------------------------------------
def build_inputs(Xep, yep):
    """Xep (B, S, D), yep (B, S) -> (B, S, 2 + D): [onehot(previous label), x], [0,0] at t=0."""
    B, S, _ = Xep.shape
    prev = torch.zeros(B, S, 2)
    if S > 1:
        prev[:, 1:] = F.one_hot(yep[:, :-1].long(), num_classes=2).float()
    return torch.cat([prev, Xep], dim=-1)


class TaskSampler:
    """Training episodes, sampled as MODEL.md section 4 samples them: seq_len distinct items,
    label = score >= torch's (lower) median of the score over all items, whole-episode flip.

    The score of an episode is a single target dimension (prob p_single) or a random
    non-negative (Dirichlet(1)) combination of 2-3 z-scored target dimensions.

    Curriculum (u = fraction of training done):
      * flip probability ramps linearly 0 -> 1/2 over u in [0, flip_ramp], then stays 1/2.
        With flips at exactly 1/2 from the start the label is independent of x given no
        context, every context-free feature has zero expected gradient, and training sits at
        the log 2 saddle; a little asymmetry first lets the model learn target features, then
        the in-context "which way round is this episode" circuit.
      * the set of dimensions episodes may use grows from 1 to all K over u in [0, dims_ramp],
        in the order dim_order (the eval dims 0, 1, 2 come last), so the model grows a general
        in-context learner over a feature space instead of solving one fixed task family.
    From u = max(flip_ramp, dims_ramp) on, episodes come from the final distribution."""

    def __init__(self, Xs, Y, seq_len, gen, p_single=0.5, flip_ramp=0.1, dims_ramp=0.5,
                 dim_order=None):
        self.Xs, self.Y = Xs, torch.as_tensor(Y)
        self.Yz = (self.Y - self.Y.mean(0)) / self.Y.std(0)
        self.n, self.K = self.Y.shape
        self.seq_len, self.p_single, self.g = seq_len, p_single, gen
        self.flip_ramp, self.dims_ramp = flip_ramp, dims_ramp
        self.dim_order = torch.tensor(dim_order if dim_order is not None else list(range(self.K)))

    def schedule(self, u):
        p_flip = 0.5 * min(1.0, u / self.flip_ramp) if self.flip_ramp > 0 else 0.5
        frac = min(1.0, u / self.dims_ramp) if self.dims_ramp > 0 else 1.0
        n_active = 1 + int(math.floor((self.K - 1) * frac + 1e-9))
        return p_flip, n_active

    def sample(self, B, u=1.0):
        g, K = self.g, self.K
        p_flip, n_active = self.schedule(u)
        active = self.dim_order[:n_active]
        W = torch.zeros(B, K)
        single = torch.rand(B, generator=g) < self.p_single
        dims = active[torch.randint(0, n_active, (B,), generator=g)]
        m = torch.randint(2, 4, (B,), generator=g).clamp(max=n_active)
        perm = active[torch.rand(B, n_active, generator=g).argsort(dim=1)]
        wts = -torch.log(torch.rand(B, K, generator=g).clamp_min(1e-12))  # Dirichlet(1) weights
        for b in range(B):
            if single[b] or n_active == 1:
                W[b, dims[b]] = 1.0
                single[b] = True
            else:
                sel = perm[b, : m[b]]
                W[b, sel] = wts[b, sel] / wts[b, sel].sum()
        score = torch.where(single[None, :], self.Y @ W.T, self.Yz @ W.T).T  # (B, n)
        med = torch.median(score, dim=1).values                             # lower median
        items = torch.rand(B, self.n, generator=g).argsort(dim=1)[:, : self.seq_len]
        y = (torch.gather(score, 1, items) >= med[:, None]).float()
        flip = torch.rand(B, generator=g) < p_flip
        y = torch.where(flip[:, None], 1.0 - y, y)
        return build_inputs(self.Xs[items], y), y


def sample_eval_episodes(Xs, Y, cfg):
    """The notebook's evaluation set: episode e uses dim eval_dims[e % 3]; sample_episode as
    in ThingsFunctionLearning (randperm of items, lower-median split, flip with prob 1/2)."""
    g = torch.Generator().manual_seed(cfg["seed"])
    Yt = torch.as_tensor(Y)
    med = torch.median(Yt, dim=0).values
    n = Yt.shape[0]
    xs, ys, dims = [], [], []
    for e in range(cfg["num_eval_episodes"]):
        dim = cfg["eval_dims"][e % len(cfg["eval_dims"])]
        items = torch.randperm(n, generator=g)[: cfg["sequence_length"]]
        y = (Yt[items, dim] >= med[dim]).float()
        if torch.rand(1, generator=g).item() < 0.5:
            y = 1.0 - y
        xs.append(build_inputs(Xs[items][None], y[None])[0])
        ys.append(y)
        dims.append(dim)
    return torch.stack(xs), torch.stack(ys), dims


@torch.no_grad()
def evaluate(model, Xin, Yin, dims, batch_size):
    model.eval()
    losses, correct = [], []
    for i in range(0, Xin.shape[0], batch_size):
        logits = model(Xin[i:i + batch_size]).squeeze(-1)
        losses.append(F.binary_cross_entropy_with_logits(logits, Yin[i:i + batch_size]).item())
        correct.append(((torch.sigmoid(logits) > 0.5).float() == Yin[i:i + batch_size]).float())
    correct = torch.cat(correct)  # (E, S)
    dims_t = torch.tensor(dims)
    per_dim = {}
    for d in sorted(set(dims)):
        c = correct[dims_t == d]
        per_dim[str(d)] = dict(accuracy=c.mean().item(), p_correct=[round(v, 6) for v in c.mean(0).tolist()])
    curve = correct.mean(0).tolist()
    return dict(
        accuracy=correct.mean().item(),
        mean_loss=float(np.mean(losses)),
        p_correct=[round(v, 6) for v in curve],
        per_dim=per_dim,
    )


def evaluate_random_combos(model, Xs, Y, seed, n_episodes, seq_len):
    """Extra check (not the notebook protocol): episodes on fresh random non-negative
    combinations of 2-3 z-scored target dims (all dims eligible), flip with prob 1/2."""
    g = torch.Generator().manual_seed(seed)
    sampler = TaskSampler(Xs, Y, seq_len, g, p_single=0.0, flip_ramp=0.0, dims_ramp=0.0)
    x, y = sampler.sample(n_episodes, 1.0)
    r = evaluate(model, x, y, [0] * n_episodes, 64)
    r.pop("per_dim")
    return r


# ----------------------------------------------------------------------------------------------
# 3. Meta-training
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def seed_previous_token_head(model, amplitude=9.0, n_pairs=4, channel=0):
    """Initialise layer 0, head 0 as a "previous-token" head (position t attends to t-1).

    Why: the input puts the label of trial t-1 into token t, next to x_t, so any in-context
    learner first has to bring x_{t-1} next to its label, i.e. needs a head that attends to the
    previous position.  Growing such a head is slow: without the flip curriculum (TaskSampler)
    the loss sat at log 2 for 1,500+ steps with or without it; with the curriculum but without
    this head, fresh-episode accuracy was 0.50 after 500 steps and 0.83 at the end, against
    0.70 and 0.86 with it.  So we start with one: ln1 of layer 0 turns residual channel `channel` into a
    constant 1 (weight 0, bias 1); head 0's query and key read only that constant, with
    RoPE phases chosen so that the score is  sum_i A^2/sqrt(d) * cos((t - s - 1) * theta_i)
    over the n_pairs fastest frequencies: largest at s = t - 1 by a margin of ~10 nats.
    Everything else (what the head copies, and all the in-context learning) is learned; the
    head's weights stay trainable.  Only the architecture's own parameters are used.
    """
    blk = model.layers[0]
    C = model.cfg.hidden_size
    d = C // model.cfg.num_attention_heads
    blk.ln1.weight[channel] = 0.0
    blk.ln1.bias[channel] = 1.0
    W = blk.self_attn.qkv.weight  # (3C, C): rows [0,C) q, [C,2C) k; head 0 = first d rows of each
    W[0:d] = 0.0
    W[C:C + d] = 0.0
    for i in range(n_pairs):
        theta = 10000.0 ** (-2.0 * i / d)
        W[2 * i, channel] = amplitude * math.cos(-theta)
        W[2 * i + 1, channel] = amplitude * math.sin(-theta)
        W[C + 2 * i, channel] = amplitude


def train(model, sampler, cfg, eval_fn=None, eval_every=500):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=cfg["weight_decay"]),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=cfg["lr"], betas=(0.9, 0.98), eps=1e-8)
    steps = cfg["steps"]

    def lr_at(step):
        if step < cfg["warmup"]:
            return cfg["lr"] * (step + 1) / cfg["warmup"]
        t = (step - cfg["warmup"]) / max(1, steps - cfg["warmup"])
        return cfg["lr"] * (cfg["min_lr_frac"] + (1 - cfg["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * t)))

    t0 = time.time()
    run_loss, run_acc = 0.0, 0.0
    for step in range(steps):
        model.train()
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        x, y = sampler.sample(cfg["batch_size"], step / steps)
        logits = model(x).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        run_loss += loss.item()
        run_acc += ((logits > 0).float() == y).float()[:, -20:].mean().item()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            k = (step % 100) + 1
            p_flip, n_active = sampler.schedule(step / steps)
            log("step %5d/%d  loss %.4f  acc(last 20 trials) %.3f  lr %.2e  p_flip %.2f dims %d  %.0fs"
                % (step + 1, steps, run_loss / k, run_acc / k, lr_at(step), p_flip, n_active,
                   time.time() - t0))
            run_loss, run_acc = 0.0, 0.0
        if eval_fn is not None and (step + 1) % eval_every == 0 and step + 1 != steps:
            eval_fn(step + 1)
    return time.time() - t0


# ----------------------------------------------------------------------------------------------
# 4. Output
# ----------------------------------------------------------------------------------------------
def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def compact_json(obj):
    """json.dumps with indent, but lists of numbers on one line."""
    text = json.dumps(obj, indent=1)
    out = re.sub(r"\[\s*([-+0-9.eE,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    assert json.loads(out) == json.loads(text)
    return out


def readme_text(check, diag, train_time, wall, args):
    c = check["p_correct_at"]
    w, m, t = check["world"], check["model"], check["train"]
    files = check["files"]
    timing = ("n/a (--no-timing)" if args.no_timing else
              "training %.0f s, whole script %.0f s" % (train_time, wall))
    lines = [
        "# data/demo: SYNTHETIC demo bundle for metalignd",
        "",
        "**Everything in this folder is synthetic.** It is generated by `tools/make_demo.py`; it is",
        "not THINGS, not the SPoSE embedding, not a real vision backbone and not human data. It",
        "exists so that metalignd can be built, tested and demonstrated without the real data",
        "(THINGS images, DINOv2 features, SPoSE, the OSF human data), which are large and licensed",
        "separately.",
        "",
        "## Files",
        "",
        "| file | what | bytes |",
        "|---|---|---|",
        "| `model.safetensors` | meta-trained transformer of the seed's architecture (RoPE variant), float32; "
        "names as in a real checkpoint; `freqs_cis` omitted (recompute it) | %d |" % files["model.safetensors"]["bytes"],
        "| `backbone.npy` | (%d, %d) float32 \"backbone\" features, one row per item (already aligned) | %d |"
        % (w["n_items"], w["n_features"], files["backbone.npy"]["bytes"]),
        "| `targets.txt` | %d rows x %d non-negative floats, the \"SPoSE-like\" target dims (format of "
        "`spose_embedding_66d_sorted.txt`) | %d |" % (w["n_items"], w["n_targets"], files["targets.txt"]["bytes"]),
        "| `unique_id.txt` | %d item ids (`syn_0001` ...), one per line, in row order | %d |"
        % (w["n_items"], files["unique_id.txt"]["bytes"]),
        "| `curve_check.json` | the learning curve measured by the generator (below), full per-trial "
        "p(correct), per dim, sizes, sha256 of the data files | |",
        "",
        "Model: hidden %d, %d heads (head dim %d), intermediate %d, %d layers, input_size %d "
        "(= 2 label columns + %d features), sequence_length %d, gelu, bias=False, logit_bias=True, "
        "embedding=True, RoPE; %d parameters. The safetensors header's `__metadata__` holds "
        "`synthetic`, `num_attention_heads` (%d), `sequence_length`, `format`, `generator`, "
        "`description` (all strings)."
        % (m["hidden_size"], m["num_attention_heads"], m["hidden_size"] // m["num_attention_heads"],
           m["intermediate_size"], m["num_layers"], m["input_size"], w["n_features"],
           m["sequence_length"], m["parameters"], m["num_attention_heads"]),
        "",
        "## How it was generated",
        "",
        "```",
        "/usr/bin/python3 tools/make_demo.py --out data/demo",
        "```",
        "",
        "Debian's python3 with torch 1.13 (CPU), numpy; %d torch thread(s); wall time on the build "
        "machine (2 cores, shared): %s. Deterministic: world seed %d, model/training seed %d, eval "
        "seed %d; rerunning on the same machine reproduces every file byte for byte except this "
        "README's wall-time line (`--no-timing` writes n/a instead). `--quick` makes a tiny "
        "smoke-test bundle (not for use)."
        % (args.threads, timing, w["seed"], t["seed"], check["protocol"]["seed"]),
        "",
        "**World.** %d items in %d loose clusters with %d latent factors; %d target dims, each a "
        "smooth rectified (softplus) readout of a few latents, so they are non-negative, sparse-ish and "
        "correlated, columns sorted by sum like SPoSE; %d backbone features = a random mixing of the "
        "target latents and %d nuisance latents, a GELU-like nonlinearity plus a small quadratic "
        "interaction, low-rank shared noise and Student-t(4) noise, per-feature lognormal scales and "
        "nonzero means, and two large near-constant \"massive activation\" channels. 5-fold ridge "
        "decodability of the median-split labels from the standardised features: %s."
        % (w["n_items"], w["n_clusters"], w["n_latent"], w["n_targets"], w["n_features"],
           w["n_nuisance"], ", ".join("dim %d %.2f" % (k, v) for k, v in diag.items())),
        "",
        "**Meta-training.** Episodes exactly as MODEL.md section 4 samples them: features "
        "standardised `(X - mean) / (std + 1e-8)` (n-1 std), %d distinct items, label = score >= "
        "torch's lower median of the score over all items, whole-episode flip, inputs "
        "`[onehot(previous label), x]` with `[0, 0]` at trial 0, BCE-with-logits on every trial. "
        "The score is a single target dim (prob %.2f) or a random non-negative Dirichlet(1) "
        "combination of 2-3 z-scored target dims. %d steps of batch %d, AdamW (lr %g, %d warmup "
        "steps, cosine to %g x, weight decay %g on matrices, grad clip %g). Curriculum: the flip "
        "probability ramps 0 -> 1/2 over the first %d%% of training (with flips at 1/2 from step 0 "
        "nothing is learnable without context and training sits at the log 2 saddle), and the "
        "usable dims grow from 1 to all %d over the first %d%%, in the order %s. Layer 0 head 0 "
        "starts as a previous-token head (RoPE phases; see `seed_previous_token_head`), everything "
        "else from PyTorch's default init (the embedding's two label columns with std %s)."
        % (t["seq_len"], t["p_single"], t["steps"], t["batch_size"], t["lr"], t["warmup"],
           t["min_lr_frac"], t["weight_decay"], t["grad_clip"], round(100 * t["flip_ramp"]),
           w["n_targets"], round(100 * t["dims_ramp"]),
           "K-1 ... 0 (eval dims 0, 1, 2 last)" if t["dim_order"] == "reverse" else "0 ... K-1",
           t["label_init_std"]),
        "",
        "## Measured in-context learning curve",
        "",
        "Fresh episodes (the notebook's protocol): %d episodes, episode e on dim [0, 1, 2][e %% 3], "
        "%d trials, batches of %d, standardised inputs, prediction sigmoid(logit) > 0.5, eval seed "
        "%d (torch generator; metalignd uses its own generator, so its curve differs by sampling "
        "noise only)."
        % (check["protocol"]["num_eval_episodes"], check["protocol"]["sequence_length"],
           check["protocol"]["batch_size"], check["protocol"]["seed"]),
        "",
        "| trial | " + " | ".join(k[1:] for k in c) + " | overall accuracy | mean BCE loss |",
        "|---|" + "---|" * (len(c) + 2),
        "| p(correct) | " + " | ".join("%.3f" % v for v in c.values())
        + " | %.4f | %.4f |" % (check["accuracy"], check["mean_loss"]),
        "",
        "Trial 0 is at chance by construction (whole-episode flips make the first label "
        "unpredictable); its value above is sampling noise. The same protocol on %d episodes "
        "(seed %d, `large_sample` in curve_check.json): accuracy %.4f, p(correct) %s."
        % (check["large_sample"]["num_eval_episodes"], check["large_sample"]["seed"],
           check["large_sample"]["accuracy"],
           ", ".join("t%s %.3f" % (k[1:], v) for k, v in check["large_sample"]["p_correct_at"].items())),
        "",
        "Per dim (accuracy over all trials): " + ", ".join(
            "dim %s %.3f" % (d, r["accuracy"]) for d, r in check["per_dim"].items())
        + ". Mean p(correct) over trials 0-9: %.3f, over trials 90-99: %.3f. On fresh random "
        "combinations of target dims (extra check): accuracy %.3f."
        % (check["p_correct_first10_mean"], check["p_correct_last10_mean"],
           check["random_combinations"]["accuracy"]),
        "",
        "## Notes for consumers (metalignd)",
        "",
        "- The head count is not recoverable from tensor shapes: read `num_attention_heads` from "
        "the safetensors `__metadata__` (or configure it: %d)." % m["num_attention_heads"],
        "- `freqs_cis` (the RoPE buffer, complex64) is not in the file; recompute it "
        "(MODEL.md section 2). There is no `pos_encoder.*`, so the model is the RoPE variant.",
        "- Tensors: `embedding.weight` (%d, %d), per layer `ln1.*`, `self_attn.qkv.weight` (%d, %d), "
        "`self_attn.o_proj.weight`, `ln2.*`, `mlp.fc1.weight` (%d, %d), `mlp.fc2.weight`, then "
        "`final_ln.*`, `linear_head.weight` (1, %d), `linear_head.bias` (1,); all F32."
        % (m["hidden_size"], m["input_size"], 3 * m["hidden_size"], m["hidden_size"],
           m["intermediate_size"], m["hidden_size"], m["hidden_size"]),
        "- `backbone.npy` is already aligned (one row per item, same order as `targets.txt` and "
        "`unique_id.txt`); no image list is involved. The learning-curve simulation standardises "
        "it per column; CKA uses it raw.",
        "- `curve_check.json` holds the curve measured with torch's generator; a run of the same "
        "protocol with another generator should agree within sampling noise (128 episodes: about "
        "up to +-0.09 per trial at 95%, about +-0.02 for the overall accuracy).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "demo"))
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (few training steps)")
    ap.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    ap.add_argument("--no-timing", action="store_true",
                    help="write 'n/a' for the wall time in README.md (byte-identical reruns)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default 1: measured faster than 2 on this machine for "
                         "these small matrices; the bytes produced depend on this number)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(TRAIN["seed"])
    t_start = time.time()

    tcfg = dict(TRAIN)
    if args.quick:
        tcfg.update(QUICK_OVERRIDES)
    if args.steps is not None:
        tcfg["steps"] = args.steps
    os.makedirs(args.out, exist_ok=True)

    # --- world
    X, Y, ids, info = make_world(WORLD)
    Xs = standardise(X)
    diag = world_diagnostics(Xs, Y)
    log("world: %d items, D=%d, K=%d" % (X.shape[0], X.shape[1], Y.shape[1]))
    log("  5-fold ridge decodability of median-split labels: "
        + " ".join("%d:%.3f" % (k, v) for k, v in diag.items()))

    # --- model
    mcfg = metalign_ref.TransformerConfig(
        input_size=2 + X.shape[1], embedding=True, hidden_size=MODEL["hidden_size"],
        num_attention_heads=MODEL["num_attention_heads"], intermediate_size=MODEL["intermediate_size"],
        num_layers=MODEL["num_layers"], hidden_act="gelu", bias=False, logit_bias=True,
        attention_dropout=0.1, sequence_length=MODEL["sequence_length"], rope=True)
    torch.manual_seed(TRAIN["seed"])
    model = metalign_ref.Transformer(mcfg)
    if tcfg["label_init_std"] is not None:
        with torch.no_grad():
            model.embedding.weight[:, :2].normal_(0.0, tcfg["label_init_std"])
    if tcfg["prev_head_init"]:
        seed_previous_token_head(model)
    n_params = sum(p.numel() for p in model.parameters())
    log("model: %d parameters, %r" % (n_params, MODEL))

    Xev, Yev, dev = sample_eval_episodes(Xs, Y, EVAL)

    def eval_fn(step):
        r = evaluate(model, Xev, Yev, dev, EVAL["batch_size"])
        c = r["p_correct"]
        log("  eval @%d: acc %.3f loss %.4f  p(correct) t0 %.2f t10 %.2f t50 %.2f t90-99 %.3f"
            % (step, r["accuracy"], r["mean_loss"], c[0], c[10], c[50], float(np.mean(c[90:]))))

    gen = torch.Generator().manual_seed(TRAIN["seed"] + 1)
    K = Y.shape[1]
    order = list(range(K))[::-1] if tcfg["dim_order"] == "reverse" else list(range(K))
    sampler = TaskSampler(Xs, Y, tcfg["seq_len"], gen, p_single=tcfg["p_single"],
                          flip_ramp=tcfg["flip_ramp"], dims_ramp=tcfg["dims_ramp"], dim_order=order)
    train_time = train(model, sampler, tcfg, eval_fn)
    log("training: %d steps in %.1fs" % (tcfg["steps"], train_time))

    # --- final evaluation (the numbers the C tests compare against)
    res = evaluate(model, Xev, Yev, dev, EVAL["batch_size"])
    curve = res["p_correct"]
    log("eval: accuracy %.4f  mean loss %.4f" % (res["accuracy"], res["mean_loss"]))
    log("  p(correct): " + "  ".join("t%d %.3f" % (t, curve[t]) for t in CURVE_TRIALS))

    # --- write the bundle
    state = {k: v.detach().to(torch.float32).contiguous()
             for k, v in model.state_dict().items() if k != "freqs_cis"}
    metadata = {
        "synthetic": "true",
        "num_attention_heads": str(MODEL["num_attention_heads"]),
        "sequence_length": str(MODEL["sequence_length"]),
        "format": "pt",
        "generator": "tools/make_demo.py",
        "description": "synthetic demo world for metalignd (generated items, features and targets; "
                       "not THINGS, not SPoSE, not human data)",
    }
    paths = {name: os.path.join(args.out, name) for name in
             ("model.safetensors", "backbone.npy", "targets.txt", "unique_id.txt",
              "curve_check.json", "README.md")}
    write_safetensors(paths["model.safetensors"], state, metadata)
    np.save(paths["backbone.npy"], np.ascontiguousarray(X, dtype=np.float32))
    with open(paths["targets.txt"], "w", newline="\n") as f:
        f.write("\n".join(info["target_lines"]) + "\n")
    with open(paths["unique_id.txt"], "w", newline="\n") as f:
        f.write("\n".join(ids) + "\n")

    # --- verify: re-read every file, rebuild the model from the safetensors, re-evaluate
    X2 = np.load(paths["backbone.npy"])
    Y2 = np.loadtxt(paths["targets.txt"], dtype=np.float64).astype(np.float32)
    ids2 = open(paths["unique_id.txt"]).read().split("\n")[:-1]
    assert X2.dtype == np.float32 and np.array_equal(X2, X) and np.array_equal(Y2, Y) and ids2 == ids
    tensors, meta2 = read_safetensors(paths["model.safetensors"])
    assert meta2 == metadata
    model2 = metalign_ref.Transformer(mcfg)
    missing, unexpected = model2.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()},
                                                 strict=False)
    assert missing == ["freqs_cis"] and not unexpected, (missing, unexpected)
    res2 = evaluate(model2, *sample_eval_episodes(standardise(X2), Y2, EVAL), EVAL["batch_size"])
    assert res2 == res, "re-loaded model evaluates differently"
    log("verified: files re-read, model re-loaded from model.safetensors evaluates identically")

    # extra (not the notebook protocol): fresh random non-negative combinations of dims
    combo = evaluate_random_combos(model, Xs, Y, EVAL["seed"] + 1, 128, EVAL["sequence_length"])
    log("fresh random combinations of dims: accuracy %.4f, p(correct) t0 %.3f t99 %.3f"
        % (combo["accuracy"], combo["p_correct"][0], combo["p_correct"][-1]))

    # extra: the same protocol with 8x the episodes (less sampling noise), for tolerances
    big_cfg = dict(EVAL, seed=EVAL["seed"] + 2, num_eval_episodes=8 * EVAL["num_eval_episodes"])
    big = evaluate(model, *sample_eval_episodes(Xs, Y, big_cfg), EVAL["batch_size"])
    log("same protocol, %d episodes (seed %d): accuracy %.4f  p(correct) "
        % (big_cfg["num_eval_episodes"], big_cfg["seed"], big["accuracy"])
        + "  ".join("t%d %.3f" % (t, big["p_correct"][t]) for t in CURVE_TRIALS))

    wall = time.time() - t_start
    summary = {"t%d" % t: curve[t] for t in CURVE_TRIALS}
    check = {
        "what": "in-context learning curve of data/demo/model.safetensors on fresh episodes "
                "(MODEL.md section 4 protocol); SYNTHETIC demo world, not THINGS",
        "protocol": dict(EVAL, standardised_inputs=True, label="Y[item, dim] >= lower median of "
                         "column dim", flip_probability=0.5, rng="torch.Generator().manual_seed(seed): "
                         "per episode randperm(n)[:seq_len] then rand(1) < 0.5 flips"),
        "accuracy": round(res["accuracy"], 6),
        "mean_loss": round(res["mean_loss"], 6),
        "p_correct_at": {k: round(v, 6) for k, v in summary.items()},
        "p_correct_first10_mean": round(float(np.mean(curve[:10])), 6),
        "p_correct_last10_mean": round(float(np.mean(curve[-10:])), 6),
        "p_correct": curve,
        "per_dim": res["per_dim"],
        "large_sample": {
            "what": "same protocol and model, %d episodes, seed %d: a less noisy reference curve"
                    % (big_cfg["num_eval_episodes"], big_cfg["seed"]),
            "num_eval_episodes": big_cfg["num_eval_episodes"],
            "seed": big_cfg["seed"],
            "accuracy": round(big["accuracy"], 6),
            "mean_loss": round(big["mean_loss"], 6),
            "p_correct_at": {"t%d" % t: big["p_correct"][t] for t in CURVE_TRIALS},
            "p_correct_first10_mean": round(float(np.mean(big["p_correct"][:10])), 6),
            "p_correct_last10_mean": round(float(np.mean(big["p_correct"][-10:])), 6),
            "p_correct": big["p_correct"],
            "per_dim_accuracy": {d: round(r["accuracy"], 6) for d, r in big["per_dim"].items()},
        },
        "random_combinations": {k: (round(v, 6) if isinstance(v, float) else v)
                                for k, v in combo.items() if k != "per_dim"},
        "model": dict(MODEL, input_size=mcfg.input_size, embedding=True, bias=False, logit_bias=True,
                      rope=True, hidden_act="gelu", parameters=n_params),
        "world": {k: v for k, v in WORLD.items()},
        "train": dict(tcfg),
        "files": {name: {"bytes": os.path.getsize(p), "sha256": sha256(p)}
                  for name, p in paths.items() if name not in ("curve_check.json", "README.md")},
    }
    with open(paths["curve_check.json"], "w", newline="\n") as f:
        f.write(compact_json(check) + "\n")
    with open(paths["README.md"], "w", newline="\n") as f:
        f.write(readme_text(check, diag, train_time, wall, args))
    log("wrote %s:" % args.out)
    for name, p in paths.items():
        log("  %-18s %9d bytes  sha256 %s" % (name, os.path.getsize(p), sha256(p)))
    log("total wall time %.1fs" % wall)


if __name__ == "__main__":
    main()
