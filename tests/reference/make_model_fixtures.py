#!/usr/bin/python3
"""Golden fixtures for the C model tests (tests/model/, tests/io/test_safetensors.c).

Builds small random models of every variant of the seed's transformer (metalign_ref.py, whose
state-dict names are the real checkpoint's), runs them in eval mode on fixed inputs built as
MODEL.md section 2 says, and writes into tests/fixtures/model/:

  <case>.safetensors         the weights, __metadata__ num_attention_heads
  <case>.golden.safetensors  the inputs (episodes: item features, items, labels, and the input
                             rows built from them; a length-1 batch), every layer output and
                             the logits from PyTorch, and for RoPE models torch's freqs_cis
                             (real and imaginary parts)
  err_*.safetensors          broken or foreign checkpoints for the loader's error tests
  dtypes.safetensors         f16/bf16/f64 tensors (subnormals, inf, nan, signed zeros) with
                             torch's own float32 conversion of each

Run from the repository root:  /usr/bin/python3 tests/reference/make_model_fixtures.py
Deterministic: fixed seeds, one thread.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "model")
sys.path.insert(0, HERE)

import metalign_ref  # noqa: E402

# Every variant combination that changes the computation, with sizes that are not multiples
# of the kernels' vector widths: head sizes 8, 15 (odd), 24, 40, 64 and 80 cover every tile
# shape of the attention kernel; S = 20 and 37 need several key tiles and a partial query
# tile; I is never a multiple of C.
CASES = [
    dict(name="rope_emb", rope=True, bias=False, embedding=True, logit_bias=True,
         input_size=12, hidden_size=32, num_attention_heads=4, intermediate_size=80,
         num_layers=2, sequence_length=100, B=3, S=7),
    dict(name="rope_bias", rope=True, bias=True, embedding=True, logit_bias=False,
         input_size=11, hidden_size=24, num_attention_heads=3, intermediate_size=50,
         num_layers=3, sequence_length=100, B=2, S=7),
    dict(name="learned_noemb", rope=False, bias=False, embedding=False, logit_bias=True,
         input_size=30, hidden_size=30, num_attention_heads=2, intermediate_size=44,
         num_layers=2, sequence_length=9, B=2, S=7),
    dict(name="learned_bias", rope=False, bias=True, embedding=True, logit_bias=True,
         input_size=9, hidden_size=48, num_attention_heads=2, intermediate_size=100,
         num_layers=2, sequence_length=40, B=2, S=37),
    dict(name="rope_noemb_bias", rope=True, bias=True, embedding=False, logit_bias=False,
         input_size=40, hidden_size=40, num_attention_heads=1, intermediate_size=72,
         num_layers=1, sequence_length=100, B=2, S=20),
    dict(name="rope_d64", rope=True, bias=False, embedding=True, logit_bias=True,
         input_size=22, hidden_size=64, num_attention_heads=1, intermediate_size=96,
         num_layers=1, sequence_length=100, B=2, S=37),
    dict(name="learned_d80", rope=False, bias=False, embedding=True, logit_bias=True,
         input_size=6, hidden_size=80, num_attention_heads=1, intermediate_size=40,
         num_layers=1, sequence_length=12, B=2, S=11),
]
N_ITEMS = 23  # distinct items the episodes draw from
B1 = 3        # length-1 sequences per case

# ----------------------------------------------------------------------------------------------
# A minimal safetensors writer (raw little-endian bytes; bf16 needs no numpy support)
# ----------------------------------------------------------------------------------------------
_ST = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
       torch.bfloat16: "BF16", torch.int32: "I32", torch.int64: "I64"}


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def write_st(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in sorted(metadata.items())}
    for name in sorted(tensors):
        t = tensors[name]
        data = tensor_bytes(t)
        header[name] = {"dtype": _ST[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# ----------------------------------------------------------------------------------------------
# Models and inputs
# ----------------------------------------------------------------------------------------------
def make_model(case, seed):
    torch.manual_seed(seed)
    keys = ("rope", "bias", "embedding", "logit_bias", "input_size", "hidden_size",
            "num_attention_heads", "intermediate_size", "num_layers", "sequence_length")
    cfg = metalign_ref.TransformerConfig(**{k: case[k] for k in keys})
    model = metalign_ref.Transformer(cfg).eval()
    # Replace the initialisation so every parameter matters and activations are O(1):
    # LayerNorm scales around 1 with spread, non-zero shifts and biases, sharper attention.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln1.weight") or name.endswith("ln2.weight") or \
                    name == "final_ln.weight":
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn_like(p))
            elif name == "pos_encoder.embedding.weight":
                p.copy_(0.7 * torch.randn_like(p))
            else:
                gain = 2.0 if "qkv" in name else 1.0
                p.copy_(gain * torch.randn_like(p) / math.sqrt(p.shape[1]))
    return cfg, model


def episode_inputs(cfg, B, S, gen):
    """Item features, items (B, S), labels (B, S) and the input rows MODEL.md section 2 builds:
    [onehot(previous label), x]; trial 0 gets [0, 0]."""
    nfeat = cfg.input_size - 2
    feats = (torch.randn(N_ITEMS, nfeat, generator=gen) * 1.5 + 0.3).float()
    items = torch.randint(0, N_ITEMS, (B, S), generator=gen, dtype=torch.int32)
    labels = torch.randint(0, 2, (B, S), generator=gen, dtype=torch.int32)
    x = torch.zeros(B, S, cfg.input_size)
    x[:, :, 2:] = feats[items.long()]
    for t in range(1, S):
        x[torch.arange(B), t, labels[:, t - 1].long()] = 1.0
    return feats, items, labels, x


def run(model, x):
    with torch.no_grad():
        logits, outs = model(x, return_layers=True)
    return logits.squeeze(-1), outs


def write_case(case, seed):
    cfg, model = make_model(case, seed)
    # safetensors has no complex dtype: the RoPE buffer freqs_cis stays out (the loader
    # recomputes it anyway).
    sd = {k: v for k, v in model.state_dict().items() if not v.is_complex()}
    H = cfg.num_attention_heads
    write_st(os.path.join(OUT, case["name"] + ".safetensors"), sd,
             {"num_attention_heads": H, "generator": "tests/reference/make_model_fixtures.py"})
    gen = torch.Generator().manual_seed(seed + 1)
    feats, items, labels, x = episode_inputs(cfg, case["B"], case["S"], gen)
    x1 = torch.zeros(B1, 1, cfg.input_size)
    x1[:, 0, 2:] = feats[:B1]
    golden = {"features": feats, "items": items, "labels": labels, "input": x, "input1": x1}
    logits, outs = run(model, x)
    logits1, outs1 = run(model, x1)
    golden["logits"] = logits
    golden["logits1"] = logits1
    names = ["embedding"] + ["layer_%d" % i for i in range(cfg.num_layers)]
    for n, o, o1 in zip(names, outs, outs1):
        golden["out." + n] = o
        golden["out1." + n] = o1
    if cfg.rope:
        golden["rope.cos"] = model.freqs_cis.real.contiguous()
        golden["rope.sin"] = model.freqs_cis.imag.contiguous()
    config = {k: int(v) if isinstance(v, bool) else v for k, v in vars(cfg).items()
              if k not in ("hidden_act", "attention_dropout")}
    write_st(os.path.join(OUT, case["name"] + ".golden.safetensors"), golden, config)
    return sd


# ----------------------------------------------------------------------------------------------
# Broken and foreign checkpoints
# ----------------------------------------------------------------------------------------------
TINY = dict(name="tiny", rope=True, bias=False, embedding=True, logit_bias=True, input_size=6,
            hidden_size=8, num_attention_heads=2, intermediate_size=12, num_layers=2,
            sequence_length=16)


def write_errors():
    _, model = make_model(TINY, 99)
    sd = {k: v for k, v in model.state_dict().items() if not v.is_complex()}
    meta = {"num_attention_heads": 2}

    def w(name, tensors, md=meta):
        write_st(os.path.join(OUT, "err_" + name + ".safetensors"), tensors, md)

    w("ok", sd)  # the unbroken tiny model, so the tests know the breakage is the only fault
    w("ok_noheads", sd, {"synthetic": "true"})
    w("missing", {k: v for k, v in sd.items() if k != "layers.1.mlp.fc2.weight"})
    bad = dict(sd)
    bad["layers.0.ln2.weight"] = torch.ones(9)
    w("shape", bad)
    bad = dict(sd)
    bad["layers.1.mlp.fc1.bias"] = torch.zeros(12)
    w("partial_bias", bad)
    bad = {k: v for k, v in sd.items() if not k.startswith("layers.1.")}
    bad.update({k.replace("layers.1.", "layers.2."): v for k, v in sd.items()
                if k.startswith("layers.1.")})
    w("layer_gap", bad)
    bad = dict(sd)
    bad["layers.0.self_attn.mask"] = torch.ones(4, 4)
    w("unknown", bad)
    w("heads5", sd, {"num_attention_heads": 5})
    w("heads_bad", sd, {"num_attention_heads": "twelve"})
    # A later generation (names as MODEL.md section 2 lists them)
    later = {"embed.weight": torch.zeros(8, 3), "layers.0.attn.qkv.weight": torch.zeros(24, 8),
             "ln_f.weight": torch.ones(8), "ln_f.bias": torch.zeros(8),
             "head_binary.weight": torch.zeros(1, 8), "head_magnitude.weight": torch.zeros(1, 8)}
    w("later_generation", later)
    # torch.compile / DataParallel prefixes, stripped by the loader
    w("prefixed", {("_orig_mod." if i % 2 else "module.") + k: v
                   for i, (k, v) in enumerate(sorted(sd.items()))})
    # bf16 weights: the model must see exactly torch's bf16 -> f32 values
    w("bf16", {k: v.to(torch.bfloat16) for k, v in sd.items()})
    write_st(os.path.join(OUT, "err_bf16.as_f32.safetensors"),
             {k: v.to(torch.bfloat16).float() for k, v in sd.items()}, meta)


def write_dtypes():
    """Values chosen to hit every branch of the half-precision conversions."""
    f16_bits = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF,
                0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x3555, 0x0200, 0x1234, 0xC000]
    bf16_bits = [0x0000, 0x8000, 0x0001, 0x807F, 0x0080, 0x3F80, 0xBF80, 0x7F7F, 0xFF7F,
                 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0x3EAB, 0x4049, 0xC2F7]
    f16 = torch.tensor(np.array(f16_bits, dtype=np.uint16).view(np.float16))
    bf16 = torch.tensor(np.array(bf16_bits, dtype=np.uint16).view(np.int16)).view(torch.bfloat16)
    f64 = torch.tensor([0.0, -0.0, 1.0 / 3.0, 1e-40, 1e-46, 3.5e38, -1e300, float("inf"),
                        float("nan"), 16777217.0, 2.0 ** -149 * 1.5], dtype=torch.float64)
    tensors = {"f16": f16, "bf16": bf16, "f64": f64,
               "f16.as_f32": f16.float(), "bf16.as_f32": bf16.float(), "f64.as_f32": f64.float(),
               "f16_2d": f16[:18].reshape(3, 6), "f16_2d.as_f32": f16[:18].reshape(3, 6).float()}
    write_st(os.path.join(OUT, "dtypes.safetensors"), tensors, {"purpose": "dtype conversion"})


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for i, case in enumerate(CASES):
        write_case(case, 1000 + 17 * i)
    write_errors()
    write_dtypes()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d files, %d bytes, into %s" % (len(os.listdir(OUT)), total, OUT))


if __name__ == "__main__":
    main()
