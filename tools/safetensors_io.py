"""Minimal, dependency-free safetensors writer and reader (numpy only).

The `safetensors` python package is not available on the build machine, so the demo
bundle (tools/make_demo.py) writes its checkpoint with this module.

File layout (https://github.com/huggingface/safetensors, "format" section):

    8 bytes   N, little-endian u64: length of the JSON header
    N bytes   JSON header, UTF-8, padded with spaces (0x20) so that N % 8 == 0:
              {"__metadata__": {str: str, ...},
               "<name>": {"dtype": "F32", "shape": [d0, d1, ...],
                          "data_offsets": [begin, end]}, ...}
    rest      the tensor data, raw little-endian, C order; offsets are relative to the
              first byte after the header.

This writer is deterministic: tensors are laid out contiguously (no gaps) in the order of
their names (Python string sort, i.e. code-point order), the JSON keys appear in that order
too (`__metadata__` first), separators are compact, and only ASCII is emitted.

Usage:
    from safetensors_io import write_safetensors, read_safetensors
    write_safetensors("model.safetensors", {"w": np.zeros((2, 3), np.float32)},
                      metadata={"format": "pt"})
    tensors, metadata = read_safetensors("model.safetensors")
"""
import json
import struct

import numpy as np

# safetensors dtype string <-> numpy little-endian dtype
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NP_TO_ST = {v: k for k, v in _DTYPES.items()}

# Refuse absurd headers when reading (the reference implementation uses 100 MB).
MAX_HEADER_BYTES = 100 * 1000 * 1000


def _to_numpy(t):
    """Accept numpy arrays and torch tensors (without importing torch)."""
    if hasattr(t, "detach") and hasattr(t, "cpu"):
        t = t.detach().cpu().numpy()
    return np.asarray(t)


def write_safetensors(path, tensors, metadata=None):
    """Write `tensors` (dict name -> numpy array / torch tensor) to `path`.

    metadata: optional dict of str -> str, stored under "__metadata__".
    Returns the number of bytes written.
    """
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("safetensors metadata must map str to str: %r: %r" % (k, v))
    header = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    blobs = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("'__metadata__' is not a valid tensor name")
        arr = _to_numpy(tensors[name])
        st = _NP_TO_ST.get(arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype)
        if st is None:
            raise TypeError("unsupported dtype for %s: %s" % (name, arr.dtype))
        data = np.ascontiguousarray(arr, dtype=_DTYPES[st]).tobytes(order="C")
        header[name] = {
            "dtype": st,
            "shape": [int(s) for s in arr.shape],
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    return 8 + len(text) + offset


def read_safetensors(path):
    """Read a safetensors file. Returns (dict name -> numpy array, metadata dict or {}).

    Validates the header: offsets in range, contiguous and non-overlapping, sizes matching
    dtype x shape, and data section fully covered.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(raw):
        raise ValueError("%s: bad header length %d" % (path, n))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("%s: header is not a JSON object" % path)
    metadata = header.pop("__metadata__", None) or {}
    data = raw[8 + n:]
    tensors = {}
    spans = []
    for name, info in header.items():
        dt = _DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, info["dtype"]))
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        count = 1
        for s in shape:
            count *= s
        if not (0 <= begin <= end <= len(data)) or end - begin != count * dt.itemsize:
            raise ValueError("%s: tensor %s has bad data_offsets %r" % (path, name, [begin, end]))
        tensors[name] = np.frombuffer(data, dtype=dt, count=count, offset=begin).reshape(shape).copy()
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise ValueError("%s: tensor data not contiguous at byte %d" % (path, begin))
        pos = end
    if pos != len(data):
        raise ValueError("%s: %d trailing bytes after tensor data" % (path, len(data) - pos))
    return tensors, metadata
