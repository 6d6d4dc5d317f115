#!/usr/bin/python3
"""Writes the fixtures of the file readers (tests/fixtures/io/) and of the dataset assembly
(tests/fixtures/data/) with the real tools: CPython's pickle, torch.save (torch 1.13), numpy's
np.save/np.savez, np.savetxt/np.loadtxt, pathlib's sorted(Path.glob(...)) and torch for the
expected statistics.  The C tests read these files and compare with the expectations written
here; they never run Python.

Run from the repo root:  /usr/bin/python3 tests/reference/make_io_fixtures.py

Fixtures (all small):
  io/pickle_p{0..5}.pkl + .expect.txt   one object graph pickled with each protocol, and its
                                        canonical dump (what the C pickle VM must rebuild)
  io/ckpt_*.pt + .expect.txt/.expect.npy  torch.save checkpoints of a small metalign_ref model in
                                        the containers seen in the wild; .expect.txt lists
                                        "name dtype d0,d1,..", .expect.npy their float32 values
                                        concatenated (real float tensors only)
  io/ckpt_*.forward.npy                 [x | logit | embedding | layer_0 | ...] rows of a forward
                                        pass computed by PyTorch (B*S rows)
  io/npy_*.npy, io/npz_*.npz            formula-valued arrays (see formula() below), every
                                        header version, dtype and byte order, stored/deflated
  io/spose_small.txt + .expect.npy      SPoSE-like text and np.loadtxt(...).astype(float32)
  data/things_manifest.txt              a THINGS-like tree (f file, d folder, l symlink)
  data/things_sorted.txt                sorted(Path(tree).glob("*/*.jpg")) relative paths
  data/things_*                         ids, per-image backbone (.npz), targets, list file, and
                                        the expected aligned rows, X, X_std and medians
  data/aligned_*                        a per-concept backbone (odd n) with its expectations
"""
import _compat_pickle
import argparse
import collections
import copyreg
import io
import os
import pickle
import random
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
import metalign_ref  # noqa: E402

IO = ROOT / "tests" / "fixtures" / "io"
DATA = ROOT / "tests" / "fixtures" / "data"


# ---------------------------------------------------------------------------------------------
# pickles: a canonical dump of what the C VM builds (known callables evaluated, the rest kept as
# obj(class, args, state), sets as lists)


def gname(f, proto):
    name = f.__qualname__
    mod = pickle.whichmodule(f, name)
    if proto < 3:  # fix_imports maps Python 3 names back to Python 2's
        if (mod, name) in _compat_pickle.REVERSE_NAME_MAPPING:
            mod, name = _compat_pickle.REVERSE_NAME_MAPPING[(mod, name)]
        elif mod in _compat_pickle.REVERSE_IMPORT_MAPPING:
            mod = _compat_pickle.REVERSE_IMPORT_MAPPING[mod]
    return f"{mod}.{name}"


def canon(x, proto):
    t = type(x)
    c = lambda v: canon(v, proto)  # noqa: E731
    if x is None:
        return "None"
    if t is bool:
        return "True" if x else "False"
    if t is int:
        return str(x) if -(2**63) <= x < 2**63 else "bigint"
    if t is float:
        return format(x, ".17g")
    if t is str:
        return "'" + x + "'"
    # protocols 0-2 write bytes as _codecs.encode(latin-1 text, 'latin1'), which the C VM
    # evaluates back into the bytes
    if t is bytes or t is bytearray and proto >= 5:
        return "b'" + bytes(x).hex() + "'"
    if t is list or (t in (set, frozenset) and proto >= 4):
        return "[" + ", ".join(c(v) for v in x) + "]"
    if t is tuple:
        return "(" + ", ".join(c(v) for v in x) + ")"
    if t in (dict, collections.OrderedDict):
        return "{" + ", ".join(f"{c(k)}: {c(v)}" for k, v in x.items()) + "}"
    if isinstance(x, type) or callable(x):
        return gname(x, proto)
    rv = x.__reduce_ex__(proto)
    f, args = rv[0], rv[1]
    state = rv[2] if len(rv) > 2 else None
    if f is copyreg.__newobj__:
        cls, args = args[0], args[1:]
    elif f is copyreg._reconstructor:
        cls, args = args[0], ()
    else:
        cls = f
    return f"obj({gname(cls, proto)}, {c(tuple(args))}, {c(state)})"


def pickle_fixtures():
    shared = [1, 2, 3]
    base = {
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**31, 2**63 - 1,
                 -(2**63), 2**63, -(2**63) - 1, 2**100, -(2**100)],
        "floats": [0.0, -0.0, 0.1, -2.5, 1e300, -1e-300, float("inf"), float("-inf")],
        "strs": ["", "a", "café", "€uro", "back\\slash", "new\nline", "q'uote\"", "x" * 300],
        "consts": [None, True, False],
        "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((), ((),))],
        "shared": [shared, shared, {"again": shared}],
        "dict_int_keys": {0: "zero", 1: {"nested": [[]]}, -5: None},
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "namespace": argparse.Namespace(lr=0.001, heads=12, name="run"),
        "config": metalign_ref.TransformerConfig(input_size=10, hidden_size=16,
                                                 num_attention_heads=4),
        "np_scalar": np.float64(0.25),
        "np_int": np.int64(-7),
        "class": argparse.Namespace,
        "long_list": list(range(2500)),
        "big_dict": {f"k{i}": i for i in range(1100)},
    }
    for proto in range(6):
        data = dict(base)
        if proto >= 3:
            data["bytes"] = [b"", b"\x00\xff", bytes(range(256)) * 2]
        if proto >= 4:
            data["sets"] = [{3}, frozenset({4})]
        if proto >= 5:
            data["bytearray"] = bytearray(b"ba")
        (IO / f"pickle_p{proto}.pkl").write_bytes(pickle.dumps(data, protocol=proto))
        (IO / f"pickle_p{proto}.expect.txt").write_bytes(canon(data, proto).encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# torch checkpoints

CFG = dict(input_size=10, hidden_size=16, num_attention_heads=4, intermediate_size=32,
           num_layers=2, sequence_length=8)


def make_model(seed, **over):
    torch.manual_seed(seed)
    cfg = metalign_ref.TransformerConfig(**{**CFG, **over})
    m = metalign_ref.Transformer(cfg)
    with torch.no_grad():  # non-trivial LayerNorms
        for name, p in m.named_parameters():
            if "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def forward_rows(model, seed):
    """[x | logit | embedding | layer_i ...] for B=2 sequences of S=5 trials."""
    g = torch.Generator().manual_seed(seed)
    B, S, In = 2, 5, model.cfg.input_size
    feats = torch.randn(B, S, In - 2, generator=g)
    labels = torch.randint(0, 2, (B, S), generator=g)
    x = torch.zeros(B, S, In)
    x[:, :, 2:] = feats
    for t in range(1, S):
        x[torch.arange(B), t, labels[:, t - 1]] = 1.0
    with torch.no_grad():
        logits, outs = model(x, return_layers=True)
    cols = [x, logits] + list(outs)
    return torch.cat([c.reshape(B * S, -1) for c in cols], dim=1).numpy().astype(np.float32)


def write_expect(name, sd):
    lines, vals = [], []
    for k, v in sd.items():
        dt = str(v.dtype).replace("torch.", "")
        lines.append(f"{k} {dt} {','.join(str(s) for s in v.shape)}")
        if v.is_floating_point():
            vals.append(v.detach().float().contiguous().reshape(-1).numpy())
    (IO / f"{name}.expect.txt").write_text("\n".join(lines) + "\n")
    np.save(IO / f"{name}.expect.npy", np.concatenate(vals).astype(np.float32)[None, :])


def save(name, obj, sd, model=None, **kw):
    torch.save(obj, IO / f"{name}.pt", **kw)
    if sd is not None:
        write_expect(name, sd)
    if model is not None:
        np.save(IO / f"{name}.forward.npy", forward_rows(model, 7))


def rewrite_zip(src, dst, prefix, extra, byteorder):
    """The same archive under another prefix, with PyTorch 2's extra records."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        names = zin.namelist()
        old = names[0].split("/")[0]
        for n in names:
            info = zipfile.ZipInfo(prefix + n[len(old):], date_time=(1980, 1, 1, 0, 0, 0))
            zout.writestr(info, zin.read(n))
            if n.endswith("/data.pkl") and byteorder:
                zout.writestr(zipfile.ZipInfo(f"{prefix}/byteorder", (1980, 1, 1, 0, 0, 0)),
                              byteorder)
        for n, b in extra.items():
            zout.writestr(zipfile.ZipInfo(f"{prefix}/{n}", (1980, 1, 1, 0, 0, 0)), b)


def checkpoint_fixtures():
    # The seed's container: model_state_dict + optimizer state + counters + a numpy scalar.
    m = make_model(1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m(torch.randn(1, 3, CFG["input_size"])).sum().backward()
    opt.step()
    opt.zero_grad()
    m.eval()
    sd = m.state_dict()
    save("ckpt_seed", {"model_state_dict": sd, "optimizer_state_dict": opt.state_dict(),
                       "epoch": 3, "best_loss": np.float64(0.4375)}, sd, m)

    # Later code: state_dict + a pickled config dataclass; learned positions and biases.
    m2 = make_model(2, rope=False, bias=True, num_attention_heads=2)
    sd2 = m2.state_dict()
    save("ckpt_config", {"state_dict": sd2, "config": m2.cfg, "step": 1000}, sd2, m2)

    # A plain-dict config and a bare, torch.compile-prefixed state dict.
    save("ckpt_dictcfg", {"state_dict": sd, "config": {"num_attention_heads": 4,
                                                         "hidden_size": 16, "bias": False,
                                                         "lr": 0.5, "name": "seed"}}, None)
    compiled = collections.OrderedDict(("_orig_mod." + k, v) for k, v in sd.items())
    save("ckpt_compiled", compiled, sd)
    both = collections.OrderedDict(("module._orig_mod." + k, v) for k, v in sd.items())
    save("ckpt_module", {"model_state_dict": both}, sd)

    # Other storage dtypes (the complex RoPE buffer stays complex64).
    for tag, dt in (("f16", torch.float16), ("bf16", torch.bfloat16), ("f64", torch.float64)):
        sdt = collections.OrderedDict(
            (k, v.to(dt) if v.is_floating_point() else v) for k, v in sd.items())
        save(f"ckpt_{tag}", {"model_state_dict": sdt}, sdt)

    # Views: a transposed slice of a bigger storage, two tensors sharing one storage.
    C = CFG["hidden_size"]
    g = torch.Generator().manual_seed(3)
    views = collections.OrderedDict(sd)
    big = torch.randn(C + 1, 3 * C + 3, generator=g)
    views["layers.0.self_attn.qkv.weight"] = big[1:, 3:].t()
    shared = 1 + 0.1 * torch.randn(2 * C + 4, generator=g)
    views["layers.0.ln1.weight"] = shared[:C]
    views["layers.0.ln2.weight"] = shared[4:4 + C]
    assert not views["layers.0.self_attn.qkv.weight"].is_contiguous()
    mv = make_model(1)
    mv.load_state_dict(views)
    save("ckpt_views", {"model_state_dict": views}, views, mv.eval())

    # PyTorch 2's layout: another prefix, byteorder, .data/serialization_id.
    rewrite_zip(IO / "ckpt_seed.pt", IO / "ckpt_torch2.pt", "best",
                {".data/serialization_id": b"1234567890123456789012345678901234567890"},
                b"little")
    rewrite_zip(IO / "ckpt_seed.pt", IO / "ckpt_bigendian.pt", "best", {}, b"big")
    for ext in ("txt", "npy"):
        shutil.copy(IO / f"ckpt_seed.expect.{ext}", IO / f"ckpt_torch2.expect.{ext}")
    shutil.copy(IO / "ckpt_seed.forward.npy", IO / "ckpt_torch2.forward.npy")

    # The legacy (pre-1.6) format must be refused with a clear message (its storage keys
    # are object ids, so this file's bytes change from run to run).
    torch.save({"model_state_dict": sd}, IO / "ckpt_legacy.pt",
               _use_new_zipfile_serialization=False)

    # A later generation of the research code (different architecture names).
    gl = torch.Generator().manual_seed(4)
    later = collections.OrderedDict([
        ("embed.weight", torch.randn(C, 11, generator=gl)),
        ("layers.0.attn.qkv.weight", torch.randn(3 * C, C, generator=gl)),
        ("layers.0.attn.o_proj.weight", torch.randn(C, C, generator=gl)),
        ("ln_f.weight", torch.ones(C)), ("ln_f.bias", torch.zeros(C)),
        ("head_binary.weight", torch.randn(1, C, generator=gl)),
        ("head_magnitude.weight", torch.randn(1, C, generator=gl)),
    ])
    save("ckpt_latergen", {"model_state_dict": later}, later)

    # No tensors at all, and a whole pickled module.
    save("ckpt_notensors", {"epoch": 3, "note": "no weights"}, None)


# Hand-made checkpoints for what torch 1.13 cannot write (a _rebuild_tensor_v3 over an
# UntypedStorage, as later versions may) and for corrupt ones: a Pickler whose persistent ids
# and reduce values are spelled out.


class StorageRef:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Call:
    """Pickles as func(*args) (REDUCE)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _standin(module, name):
    """A module-level function pickle can name (torch 1.13 has no _rebuild_tensor_v3)."""
    mod = sys.modules[module]
    if not hasattr(mod, name):
        def f(*a):
            raise RuntimeError("stand-in")
        f.__module__, f.__qualname__, f.__name__ = module, name, name
        setattr(mod, name, f)
    return getattr(mod, name)


class CkptPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def tensor_call(storage, offset, size, stride, dtype=None):
    args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
    if dtype is None:
        return Call(torch._utils._rebuild_tensor_v2, *args)
    return Call(_standin("torch._utils", "_rebuild_tensor_v3"), *args, dtype)


def craft(name, obj, storages, prefix="archive", extra=None):
    buf = io.BytesIO()
    CkptPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(IO / f"{name}.pt", "w", zipfile.ZIP_STORED) as z:
        t = (1980, 1, 1, 0, 0, 0)
        z.writestr(zipfile.ZipInfo(f"{prefix}/data.pkl", t), buf.getvalue())
        for key, data in storages.items():
            z.writestr(zipfile.ZipInfo(f"{prefix}/data/{key}", t), data)
        z.writestr(zipfile.ZipInfo(f"{prefix}/version", t), b"3\n")
        for n, data in (extra or {}).items():
            z.writestr(zipfile.ZipInfo(n, t), data)


def crafted_fixtures():
    vals = np.arange(12, dtype="<f4") / 4
    f12 = StorageRef(torch.FloatStorage, "0", 12)
    # v3 over untyped bytes: a (3, 2) view at element offset 2 with strides (1, 3).
    u = StorageRef(torch.UntypedStorage, "0", 48)
    craft("ckpt_v3", {"state_dict": {"w": tensor_call(u, 2, (3, 2), (1, 3), torch.float32)}},
          {"0": vals.tobytes()})
    np.save(IO / "ckpt_v3.expect.npy",
            np.lib.stride_tricks.as_strided(vals[2:], (3, 2), (4, 12)).reshape(1, -1))
    (IO / "ckpt_v3.expect.txt").write_text("w float32 3,2\n")
    craft("ckpt_bad_view", {"w": tensor_call(f12, 2, (3, 4), (4, 1))}, {"0": vals.tobytes()})
    craft("ckpt_bad_size", {"w": tensor_call(f12, 0, (3, 4), (4, 1))},
          {"0": vals[:10].tobytes()})
    craft("ckpt_missing_storage", {"w": tensor_call(StorageRef(torch.FloatStorage, "7", 12),
                                                    0, (12,), (1,))}, {"0": vals.tobytes()})
    craft("ckpt_qtensor", {"w": Call(torch._utils._rebuild_qtensor, 1, 2)}, {})
    craft("ckpt_torchscript", {"w": tensor_call(f12, 0, (12,), (1,))}, {"0": vals.tobytes()},
          extra={"archive/constants.pkl": b"\x80\x02)."})
    craft("ckpt_two_pickles", {"w": tensor_call(f12, 0, (12,), (1,))}, {"0": vals.tobytes()},
          extra={"other/data.pkl": b"\x80\x02}."})
    torch.save(make_model(9), IO / "ckpt_module_object.pt")


# ---------------------------------------------------------------------------------------------
# .npy / .npz


def formula(a, rows, cols):
    """a*64 + i + j/4: exact in float16, so every dtype must give the same float32."""
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    return (a * 64 + i + j / 4).astype(np.float64)


def write_npy(path, arr, version=None):
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=version)


def npy_fixtures():
    R = 37
    write_npy(IO / "npy_f4.npy", formula(0, R, 5).astype("<f4"))
    write_npy(IO / "npy_f8.npy", formula(0, R, 5).astype("<f8"))
    write_npy(IO / "npy_f2.npy", formula(0, R, 5).astype("<f2"))
    write_npy(IO / "npy_be.npy", formula(0, R, 5).astype(">f4"))
    write_npy(IO / "npy_v2.npy", formula(0, R, 5).astype("<f4"), version=(2, 0))
    write_npy(IO / "npy_v3.npy", formula(0, R, 5).astype("<f4"), version=(3, 0))
    write_npy(IO / "npy_fortran.npy", np.asfortranarray(formula(0, R, 5).astype("<f4")))
    write_npy(IO / "npy_i8.npy", np.arange(10, dtype="<i8").reshape(5, 2))
    write_npy(IO / "npy_1d.npy", np.arange(10, dtype="<f4"))
    write_npy(IO / "npy_3d.npy", np.zeros((2, 3, 4), dtype="<f4"))
    # Archive order differs from name order: zeta, alpha, mid (3, 4 and 2 columns).
    arrs = {"zeta": formula(0, R, 3).astype("<f4"), "alpha": formula(1, R, 4).astype("<f2"),
            "mid": formula(2, R, 2).astype("<f8")}
    np.savez(IO / "npz_stored.npz", **arrs)
    np.savez_compressed(IO / "npz_deflated.npz", **arrs)
    np.savez(IO / "npz_badrows.npz", a=formula(0, R, 2).astype("<f4"),
             b=formula(1, R - 1, 2).astype("<f4"))
    with zipfile.ZipFile(IO / "npz_notnpy.npz", "w") as z:
        buf = io.BytesIO()
        np.save(buf, formula(0, 3, 2).astype("<f4"))
        z.writestr(zipfile.ZipInfo("a.npy", (1980, 1, 1, 0, 0, 0)), buf.getvalue())
        z.writestr(zipfile.ZipInfo("README.txt", (1980, 1, 1, 0, 0, 0)), "not an array")


def text_fixtures():
    rng = np.random.default_rng(5)
    y = rng.gamma(0.6, 0.5, size=(23, 7)) * (rng.random((23, 7)) < 0.7)
    y[0, 0] = 1e-30  # subnormal-range double -> 0 in float32 rounding, must match numpy
    y[1, 1] = 3.4e38
    lines = []
    for r, row in enumerate(y):
        fmt = ["%.8e", "%.17g", "%g", "%.3f"][r % 4]
        sep = [" ", "\t", "  ", " \t "][r % 4]
        lines.append(sep.join(fmt % v for v in row) + (" " if r % 3 == 0 else ""))
    text = "\r\n".join(lines) + "\r\n\r\n"
    (IO / "spose_small.txt").write_bytes(text.encode())
    np.save(IO / "spose_small.expect.npy",
            np.loadtxt(IO / "spose_small.txt").astype(np.float32))


# ---------------------------------------------------------------------------------------------
# THINGS alignment and dataset assembly

THINGS_TREE = {
    # concept folder: image files (plus some entries glob must skip)
    "a": ["x.jpg", "X.jpg", ".h.jpg", "1.jpg", "10.jpg", "2.jpg", "notes.txt", "p.JPG",
          "p.jpeg"],
    "a-b": ["x.jpg", "a.jpg"],
    "a b": ["x.jpg"],
    "a.b": ["z.jpg", "y.jpg"],
    "café": ["é.jpg", "e.jpg"],
    "cafe": ["f.jpg"],
    "Zebra": ["z.jpg"],
    "zebra": ["b_02.jpg", "b_01.jpg"],
    "a1": ["q.jpg"],
    "a10": ["q.jpg"],
    "a2": ["q.jpg", "p.jpg"],
    "_x": ["m.jpg"],
    ".hidden": ["h.jpg"],
    "ü": ["u.jpg"],
    "empty": ["readme.txt"],
    "dirjpg": ["d.jpg/"],  # a folder named *.jpg: glob lists it too
}


def manifest_lines():
    lines = []
    for concept, files in THINGS_TREE.items():
        lines.append(f"d {concept}")
        for f in files:
            if f.endswith("/"):
                lines.append(f"d {concept}/{f[:-1]}")
            else:
                lines.append(f"f {concept}/{f}")
    lines += ["f top.jpg", "l link -> a", "l broken -> missing", "l a/ln.jpg -> x.jpg",
              "l a/dead.jpg -> nowhere.jpg"]
    return lines


def build_tree(root, lines):
    for line in lines:
        kind, rest = line[0], line[2:]
        if kind == "d":
            (root / rest).mkdir(parents=True, exist_ok=True)
        elif kind == "f":
            (root / rest).parent.mkdir(parents=True, exist_ok=True)
            (root / rest).write_bytes(b"")
        else:
            path, target = rest.split(" -> ")
            os.symlink(target, root / path)


def torch_stats(X, Y):
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    xstd = ((Xt - Xt.mean(0)) / (Xt.std(0) + 1e-8)).numpy()
    med = Yt.median(0).values.numpy()[None, :]
    return xstd.astype(np.float32), med.astype(np.float32)


def things_fixtures():
    lines = manifest_lines()
    (DATA / "things_manifest.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "THINGS"
        root.mkdir()
        build_tree(root, lines)
        paths = [p.relative_to(root) for p in sorted(root.glob("*/*.jpg"))]
    rel = [p.as_posix() for p in paths]
    (DATA / "things_sorted.txt").write_text("\n".join(rel) + "\n", encoding="utf-8")

    concepts = sorted({p.parts[0] for p in paths})
    ids = list(concepts)
    random.Random(6).shuffle(ids)
    if len(ids) % 2:  # an even count, so the median is torch's lower middle value
        ids.remove("ü")
    (DATA / "things_ids.txt").write_text("\n".join(ids) + "\r\n\n", encoding="utf-8")
    first = {}
    for i, p in enumerate(paths):
        first.setdefault(p.parts[0], i)
    rows = [first[c] for c in ids]
    (DATA / "things_rows.txt").write_text("\n".join(map(str, rows)) + "\n")

    rng = np.random.default_rng(7)
    n = len(paths)
    cls = (rng.standard_normal((n, 3)) * 2 + 1).astype(np.float32)
    patch = rng.standard_normal((n, 5)).astype(np.float32)
    np.savez(DATA / "things_backbone.npz", cls=cls, patch=patch)
    np.savez_compressed(DATA / "things_backbone_deflated.npz", cls=cls, patch=patch)
    Y = rng.gamma(0.6, 0.5, size=(len(ids), 4))
    np.savetxt(DATA / "things_targets.txt", Y, fmt="%.8e")
    Y = np.loadtxt(DATA / "things_targets.txt").astype(np.float32)
    X = np.concatenate([cls, patch], axis=1)[rows]
    xstd, med = torch_stats(X, Y)
    np.save(DATA / "things_expect_X.npy", X)
    np.save(DATA / "things_expect_Xstd.npy", xstd)
    np.save(DATA / "things_expect_median.npy", med)

    listed = [f"THINGS/images/{r}" for r in rel]
    random.Random(8).shuffle(listed)
    (DATA / "things_list.txt").write_text("\n".join(listed) + "\n", encoding="utf-8")

    # A per-concept backbone (already aligned), targets as .npy, an odd count.
    ids7 = ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]
    (DATA / "aligned_ids.txt").write_text("\n".join(ids7))
    Xa = rng.standard_normal((7, 6)).astype(np.float32)
    Ya = rng.gamma(0.6, 0.5, size=(7, 4)).astype(np.float32)
    np.save(DATA / "aligned_backbone.npy", Xa)
    np.save(DATA / "aligned_targets.npy", Ya)
    xstd, med = torch_stats(Xa, Ya)
    np.save(DATA / "aligned_expect_Xstd.npy", xstd)
    np.save(DATA / "aligned_expect_median.npy", med)


# ---------------------------------------------------------------------------------------------
# seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): small valid inputs


def fuzz_seeds():
    sys.path.insert(0, str(ROOT / "tools"))
    from safetensors_io import write_safetensors

    corpus = ROOT / "tests" / "fuzz" / "corpus"
    dirs = {n: corpus / n for n in ("fuzz_pickle", "fuzz_torch", "fuzz_safetensors",
                                    "fuzz_npy", "fuzz_text")}
    for d in dirs.values():
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    g = torch.Generator().manual_seed(11)

    small = {"a": [1, -2, 2**40, 2**70, 0.5, "s", None, True, (1, 2), (3,)],
             "od": collections.OrderedDict(b=1), "ns": argparse.Namespace(heads=2),
             "cfg": metalign_ref.TransformerConfig(hidden_size=8), "np": np.float64(1.5)}
    for proto in range(6):
        (dirs["fuzz_pickle"] / f"p{proto}.pkl").write_bytes(pickle.dumps(small, protocol=proto))

    sd = collections.OrderedDict([("w", torch.randn(2, 3, generator=g)),
                                  ("b", torch.randn(3, generator=g).half())])
    big = torch.randn(4, 5, generator=g)
    sd["v"] = big[1:, 2:].t()
    tdir = dirs["fuzz_torch"]
    torch.save({"model_state_dict": sd, "config": argparse.Namespace(num_attention_heads=2),
                "epoch": 1}, tdir / "seed.pt")
    torch.save(collections.OrderedDict(("module." + k, v.double()) for k, v in sd.items()),
               tdir / "bare.pt")
    rewrite_zip(tdir / "seed.pt", tdir / "torch2.pt", "best",
                {".data/serialization_id": b"123"}, b"little")
    shutil.copy(IO / "ckpt_v3.pt", tdir / "v3.pt")
    with zipfile.ZipFile(tdir / "seed.pt") as z:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
        (dirs["fuzz_pickle"] / "ckpt_data.pkl").write_bytes(z.read(pkl))

    sdir = dirs["fuzz_safetensors"]
    write_safetensors(str(sdir / "f32.safetensors"),
                      {"w": sd["w"].numpy(), "b": np.arange(3, dtype=np.float32)},
                      metadata={"num_attention_heads": "2", "format": "pt"})
    write_safetensors(str(sdir / "f16.safetensors"), {"w": sd["w"].numpy().astype(np.float16)})

    ndir = dirs["fuzz_npy"]
    write_npy(ndir / "v1.npy", formula(0, 3, 2).astype("<f4"))
    write_npy(ndir / "v2_f2.npy", formula(0, 3, 2).astype("<f2"), version=(2, 0))
    write_npy(ndir / "be_f8.npy", formula(0, 2, 2).astype(">f8"))
    arrs = {"cls": formula(0, 3, 2).astype("<f4"), "patch": formula(1, 3, 1).astype("<f8")}
    np.savez(ndir / "stored.npz", **arrs)
    np.savez_compressed(ndir / "deflated.npz", **arrs)

    xdir = dirs["fuzz_text"]
    (xdir / "spose.txt").write_bytes(b"0.1 2e-3 0\r\n1 2 3 \n4\t5 6.5\n\n")
    (xdir / "ids.txt").write_bytes(b"aardvark\nabacus \r\nzebra\n")
    (xdir / "images.txt").write_bytes(b"THINGS/aardvark/a_01b.jpg\nabacus/x.jpg\n"
                                      b"aardvark/.h.jpg\nzebra/z.jpg\n")


def main():
    IO.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    pickle_fixtures()
    checkpoint_fixtures()
    crafted_fixtures()
    npy_fixtures()
    text_fixtures()
    things_fixtures()
    fuzz_seeds()


if __name__ == "__main__":
    main()
