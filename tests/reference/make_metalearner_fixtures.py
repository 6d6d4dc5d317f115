#!/usr/bin/python3
"""Golden fixtures for the later generation (MODEL.md section 7): MetaLearnerConfig checkpoints
of the transformer, the LSTM and the static linear model, and PyTorch's outputs for them.

The models below implement section 7 of the spec in PyTorch. The config is a faithful
`MetaLearnerConfig` dataclass that lives in a tiny package `metalign.model` written into a
temporary folder and put on sys.path, so the pickle names the class exactly as the research
code's checkpoints do. Checkpoints are torch.save({"state_dict", "eval_accuracy", "eval_r2",
"eval_loss", "step", "config"}) with `_orig_mod.` prefixes (torch.compile), as in the wild.

Writes into tests/fixtures/model/:
  ml_<case>.pt                  the checkpoint
  ml_<case>.golden.safetensors  inputs and outputs: item features (N, D), episodes' items
                                (B, S) int32, each trial's own magnitude (B, S) (the next
                                trial is fed it), every layer's output out.<name> (B, S, W),
                                logits and magnitudes; the same for length-1 sequences with no
                                magnitudes (out1.*, logits1, magnitudes1); encode(features)
  ml_bare.pt                    ml_tf1's weights as a bare state dict (no config)
  ml_err_*.pt                   checkpoints whose config and tensors disagree

Run from the repository root:  /usr/bin/python3 tests/reference/make_metalearner_fixtures.py
Deterministic: fixed seeds, one thread.
"""
import importlib
import math
import os
import sys
import tempfile
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "model")
sys.path.insert(0, HERE)

import make_model_fixtures  # noqa: E402  (its safetensors writer)
import metalign_ref  # noqa: E402  (RoPE exactly as section 2)

CONFIG_SOURCE = '''
from dataclasses import dataclass


@dataclass
class MetaLearnerConfig:
    x_sz: int = 512
    n_heads: int = 4
    int_sz: int = 512
    n_layers: int = 2
    act: str = "gelu"
    bias: bool = True
    logit_bias: bool = True
    attn_drop: float = 0.1
    sl: int = 12
    use_mlp: bool = True
    mag_std: float = 1.0
    no_embed: bool = False
    num_dims: int = 1
    model_type: str = "transformer"
'''


def config_module():
    """metalign.model from a temporary package, so pickles say metalign.model.MetaLearnerConfig."""
    tmp = tempfile.mkdtemp(prefix="metalign-pkg-")
    pkg = os.path.join(tmp, "metalign")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    with open(os.path.join(pkg, "model.py"), "w") as f:
        f.write(CONFIG_SOURCE)
    sys.path.insert(0, tmp)
    return importlib.import_module("metalign.model")


# ----------------------------------------------------------------------------------------------
# The models (section 7)
# ----------------------------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h = cfg.n_heads
        self.qkv = nn.Linear(cfg.x_sz, 3 * cfg.x_sz, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.x_sz, cfg.x_sz, bias=cfg.bias)

    def forward(self, x, freqs_cis):
        B, S, D = x.shape
        hd = D // self.h
        q, k, v = self.qkv(x).split(D, dim=-1)
        q, k, v = (t.view(B, S, self.h, hd).transpose(1, 2) for t in (q, k, v))
        q = metalign_ref.apply_rope(q, freqs_cis)
        k = metalign_ref.apply_rope(k, freqs_cis)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        mask = torch.ones(S, S, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)  # eval: no attention dropout
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, S, D))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1 = nn.Linear(cfg.x_sz, cfg.int_sz, bias=cfg.bias)
        self.fc2 = nn.Linear(cfg.int_sz, cfg.x_sz, bias=cfg.bias)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact erf GELU


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.use_mlp = cfg.use_mlp
        self.ln1 = nn.LayerNorm(cfg.x_sz)
        self.attn = Attention(cfg)
        if cfg.use_mlp:
            self.ln2 = nn.LayerNorm(cfg.x_sz)
            self.mlp = MLP(cfg)

    def forward(self, h, freqs_cis):
        h = h + self.attn(self.ln1(h), freqs_cis)
        if self.use_mlp:
            h = h + self.mlp(self.ln2(h))
        return h


class MetaLearner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D = cfg.x_sz
        self.log_var_ce = nn.Parameter(torch.zeros(1))
        self.log_var_mse = nn.Parameter(torch.zeros(1))
        if cfg.model_type == "static_linear":
            self.proj = nn.Linear(D, D, bias=cfg.bias)
            self.ln_f = nn.LayerNorm(D)
            self.head_binary = nn.Linear(D, cfg.num_dims, bias=cfg.logit_bias)
            self.head_magnitude = nn.Linear(D, cfg.num_dims, bias=cfg.logit_bias)
            return
        self.register_buffer("mag_std", torch.tensor(float(cfg.mag_std)))
        if cfg.no_embed:
            self.mag_proj = nn.Linear(1, D, bias=cfg.bias)
        else:
            self.embed = nn.Linear(D + 1, D, bias=cfg.bias)
        if cfg.model_type == "transformer":
            self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        else:
            self.lstm = nn.LSTM(D, D, num_layers=cfg.n_layers, batch_first=True)
        self.ln_f = nn.LayerNorm(D)
        self.head_binary = nn.Linear(D, 1, bias=cfg.logit_bias)
        self.head_magnitude = nn.Linear(D, 1, bias=cfg.logit_bias)

    def embed_input(self, x, y_magnitude):
        B, S, _ = x.shape
        if y_magnitude is None:
            prev = torch.zeros(B, S)
        else:
            prev = torch.cat([torch.zeros(B, 1), y_magnitude[:, :-1]], dim=1)
        prev = (prev / self.mag_std)[..., None]
        if self.cfg.no_embed:
            return x + self.mag_proj(prev)
        return self.embed(torch.cat([prev, x], dim=-1))  # the magnitude column first

    def lstm_layers(self, h):
        """The LSTM one layer at a time with the same weights, for every layer's output."""
        h_in, outs = h, []
        D = self.cfg.x_sz
        for k in range(self.cfg.n_layers):
            one = nn.LSTM(D, D, num_layers=1, batch_first=True)
            with torch.no_grad():
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(one, n + "_l0").copy_(getattr(self.lstm, f"{n}_l{k}"))
            h, _ = one(h)
            outs.append(h)
        full, _ = self.lstm(h_in)
        assert torch.allclose(full, h, atol=1e-6), "layer-wise LSTM differs from nn.LSTM"
        return outs

    def forward(self, x, y_magnitude=None):
        """x (B, S, D) raw features -> (logits, magnitudes, {name: output})."""
        outs = {}
        if self.cfg.model_type == "static_linear":
            h = self.ln_f(self.proj(x))
            outs["embed"] = h
            outs["ln_f"] = h
            return self.head_binary(h), self.head_magnitude(h), outs
        h = self.embed_input(x, y_magnitude)
        outs["embed"] = h
        if self.cfg.model_type == "transformer":
            hd = self.cfg.x_sz // self.cfg.n_heads
            fc = metalign_ref.precompute_freqs_cis(hd, self.cfg.sl)
            for i, blk in enumerate(self.layers):
                h = blk(h, fc[: h.shape[1]])
                outs["layer_%d" % i] = h
        else:
            for i, o in enumerate(self.lstm_layers(h)):
                outs["layer_%d" % i] = o
                h = o
        h = self.ln_f(h)
        outs["ln_f"] = h
        return self.head_binary(h).squeeze(-1), self.head_magnitude(h).squeeze(-1), outs

    def encode(self, x):
        """The representation the research code evaluates: a length-1 input, zero magnitude."""
        if self.cfg.model_type == "static_linear":
            return self.ln_f(self.proj(x))
        return self.embed_input(x[:, None, :], None)[:, 0]


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------
# Widths 16..48, head sizes 8, 12 and 16, sequences that need several key tiles (S = 21).
CASES = [
    dict(name="tf1", cfg=dict(model_type="transformer", x_sz=32, n_heads=4, n_layers=1,
                              use_mlp=False, sl=24, mag_std=0.5), B=3, S=9),
    dict(name="tf_mlp2", cfg=dict(model_type="transformer", x_sz=24, n_heads=2, n_layers=2,
                                  use_mlp=True, int_sz=40, sl=24, logit_bias=False,
                                  mag_std=np.float64(1.3)), B=2, S=21),
    dict(name="tf_noembed", cfg=dict(model_type="transformer", x_sz=36, n_heads=3, n_layers=1,
                                     use_mlp=True, int_sz=20, no_embed=True, bias=False,
                                     sl=16, mag_std=0.8), B=2, S=7),
    dict(name="tf_heads3", cfg=dict(model_type="transformer", x_sz=48, n_heads=3, n_layers=1,
                                    use_mlp=False, bias=False, sl=120, mag_std=1.0), B=2, S=21),
    dict(name="lstm2", cfg=dict(model_type="lstm", x_sz=20, n_heads=4, n_layers=2,
                                use_mlp=False, sl=12, mag_std=0.7), B=3, S=8),
    dict(name="static", cfg=dict(model_type="static_linear", x_sz=16, n_heads=4, n_layers=1,
                                 num_dims=3, sl=12), B=2, S=5),
]
N_ITEMS = 17  # distinct items the episodes draw from
B1 = 4        # length-1 sequences per case


def make_model(cfg, seed):
    torch.manual_seed(seed)
    model = MetaLearner(cfg).eval()
    # Every parameter matters and activations are O(1): LayerNorm scales around 1 with spread,
    # non-zero shifts and biases, sharper attention; loss weights non-zero (unused).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight")) or name == "ln_f.weight":
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias") or name.startswith("log_var") or "bias_" in name:
                p.copy_(0.3 * torch.randn_like(p))
            else:
                gain = 2.0 if "qkv" in name else 1.0
                p.copy_(gain * torch.randn_like(p) / math.sqrt(p.shape[-1]))
    return model


def checkpoint(model, cfg, prefix="_orig_mod."):
    sd = {prefix + k: v for k, v in model.state_dict().items()}
    return {"state_dict": sd, "eval_accuracy": np.float64(0.8125), "eval_r2": np.float32(0.25),
            "eval_loss": 0.4321, "step": 12000, "config": cfg}


def write_case(mlc, case, seed):
    cfg = mlc.MetaLearnerConfig(**case["cfg"])
    model = make_model(cfg, seed)
    torch.save(checkpoint(model, cfg), os.path.join(OUT, "ml_%s.pt" % case["name"]))
    gen = torch.Generator().manual_seed(seed + 1)
    B, S, D = case["B"], case["S"], cfg.x_sz
    feats = (torch.randn(N_ITEMS, D, generator=gen) * 1.5 + 0.3).float()
    items = torch.randint(0, N_ITEMS, (B, S), generator=gen, dtype=torch.int32)
    mags = torch.randn(B, S, generator=gen) * 0.9
    x = feats[items.long()]
    golden = {"features": feats, "items": items, "feedback": mags}
    with torch.no_grad():
        logits, magnitudes, outs = model(x, mags)
        logits1, magnitudes1, outs1 = model(feats[:B1, None, :], None)
        golden["encode"] = model.encode(feats)
    golden.update(logits=logits, magnitudes=magnitudes, logits1=logits1,
                  magnitudes1=magnitudes1)
    for n, o in outs.items():
        golden["out." + n] = o
    for n, o in outs1.items():
        golden["out1." + n] = o
    golden = {k: v.contiguous() for k, v in golden.items()}
    names = list(outs)
    meta = {"outputs": ",".join(names), "B": B, "S": S, "B1": B1, "n_items": N_ITEMS,
            "generator": "tests/reference/make_metalearner_fixtures.py"}
    make_model_fixtures.write_st(os.path.join(OUT, "ml_%s.golden.safetensors" % case["name"]),
                                 golden, meta)
    return cfg, model


def write_errors(mlc, tf1):
    """ml_tf1 without its config; tiny checkpoints whose config contradicts their tensors, or
    whose config is of the wrong class."""
    torch.save({"_orig_mod." + k: v for k, v in tf1.state_dict().items()},
               os.path.join(OUT, "ml_bare.pt"))
    tiny_cfg = mlc.MetaLearnerConfig(x_sz=8, n_heads=2, n_layers=1, use_mlp=False, sl=12)
    tiny = make_model(tiny_cfg, 5)
    mlp_cfg = replace(tiny_cfg, use_mlp=True, int_sz=12)
    tiny_mlp = make_model(mlp_cfg, 6)

    def bad(name, model, cfg):
        torch.save(checkpoint(model, cfg), os.path.join(OUT, "ml_err_%s.pt" % name))

    bad("layers", tiny, replace(tiny_cfg, n_layers=2))
    bad("mlp", tiny, replace(tiny_cfg, use_mlp=True))
    bad("noembed", tiny, replace(tiny_cfg, no_embed=True))
    bad("xsz", tiny, replace(tiny_cfg, x_sz=9))
    bad("type", tiny, replace(tiny_cfg, model_type="lstm"))
    bad("magstd", tiny, replace(tiny_cfg, mag_std=0.75))
    bad("bias", tiny, replace(tiny_cfg, bias=False))
    bad("class", tiny, metalign_ref.TransformerConfig(hidden_size=8, num_attention_heads=2))
    bad("intsz", tiny_mlp, replace(mlp_cfg, int_sz=20))


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    mlc = config_module()
    assert mlc.MetaLearnerConfig.__module__ == "metalign.model"
    written = {}
    for i, case in enumerate(CASES):
        written[case["name"]] = write_case(mlc, case, 2000 + 31 * i)
    write_errors(mlc, written["tf1"][1])
    files = [f for f in os.listdir(OUT) if f.startswith("ml_")]
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in files)
    print("wrote %d files, %d bytes, into %s" % (len(files), total, OUT))


if __name__ == "__main__":
    main()
