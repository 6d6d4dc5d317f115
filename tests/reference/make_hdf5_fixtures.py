#!/usr/bin/python3
"""HDF5 backbones (MODEL.md section 7) for the reader and dataset tests, written with h5py
from the numpy fixtures of make_io_fixtures.py, so the C tests can hold them against the same
expectations. Both layouts, float32/float64/float16, gzip and chunked:

  data/h5_repr_{f32,f64,f16}.h5    one dataset "representations" (35, 8): the per-image THINGS
                                   backbone of things_backbone.npz (cls | patch joined), gzip,
                                   chunks (4, 3) so rows and columns both cross chunk borders
  data/h5_images_{f32,f64,f16}.h5  the same rows as datasets "0".."34", each (8,), created in
                                   a shuffled order (neither numeric nor string order); f32
                                   gzip'd, the others contiguous
  data/h5_aligned.h5               aligned_backbone.npy (one row per id) as "representations"
  data/h5_f16_expect_X.npy         the aligned rows (things_rows.txt) of the float16 files, as
                                   numpy converts float16 to float32
  io/h5_specials.h5 + .expect.npy  float16 specials (zeros, subnormals, 65504, inf, nan)
  io/h5_big_endian.h5 + .expect.npy  a big-endian float64 "representations" (">f8")
                                   (both with numpy's float32 values)
  fuzz/corpus/fuzz_hdf5/*          seed recipes for tests/fuzz/fuzz_hdf5.c (its decoder is
                                   described there): valid files of both layouts, a gap, a
                                   name that is no number, mismatched sizes, an int type, a
                                   huge extent, a soft link

Run from the repository root:  /usr/bin/python3 tests/reference/make_hdf5_fixtures.py
(after make_io_fixtures.py). Deterministic: fixed seeds; h5py writes no timestamps with
track_times=False.
"""
from pathlib import Path

import struct

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "fixtures" / "data"
IO = ROOT / "tests" / "fixtures" / "io"
DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16}


def things_X():
    z = np.load(DATA / "things_backbone.npz")
    return np.concatenate([z[k] for k in z.files], axis=1).astype(np.float32)


def write_repr(path, X, chunks=None, compression="gzip"):
    with h5py.File(path, "w") as f:
        f.create_dataset("representations", data=X, chunks=chunks, compression=compression,
                         track_times=False)


def write_images(path, X, gzip):
    order = np.random.default_rng(7).permutation(len(X))
    with h5py.File(path, "w") as f:
        for i in order:
            f.create_dataset(str(i), data=X[i], compression="gzip" if gzip else None,
                             track_times=False)


def fuzz_seeds():
    d = ROOT / "tests" / "fuzz" / "corpus" / "fuzz_hdf5"
    d.mkdir(parents=True, exist_ok=True)

    def floats(*v):
        return list(b"".join(struct.pack("<f", x) for x in v))

    def image(name_byte):  # rank 1, 4 features, float32, filled
        return [name_byte, 0, 4, 0, 4] + floats(1, 2, 3, 4)

    seeds = {
        "repr_f32": [1, 0, 3, 2, 0, 5, 1, 0] + floats(1, 2, 3, 4, 5, 6),
        "repr_f16_gzip": [1, 0, 2, 4, 2, 0x15, 1, 3] + floats(0.5, -1, 2, 65504, 1e-7, 0, 3, 4),
        "repr_int": [1, 0, 2, 2, 4, 0],
        "repr_huge": [1, 0, 0xC0 + 10, 4, 0, 1, 8, 4],
        "images_3": [3 << 2] + image(0) + image(1) + image(2),
        "images_gap": [2 << 2] + image(0) + image(6),
        "images_cat": [2 << 2] + image(0) + image(7 + 8),
        "images_sizes": [2 << 2, 0, 0, 4, 0, 4] + floats(1, 2, 3, 4) + [1, 0, 3, 0, 4]
        + floats(1, 2, 3),
        "soft_link": [0x80 | 0x40 | (1 << 2)] + image(0),
    }
    for name, recipe in seeds.items():
        (d / name).write_bytes(bytes(recipe))


def main():
    X = things_X()
    rows = [int(r) for r in (DATA / "things_rows.txt").read_text().split()]
    for tag, dt in DTYPES.items():
        Xd = X.astype(dt)
        write_repr(DATA / f"h5_repr_{tag}.h5", Xd, chunks=(4, 3))
        write_images(DATA / f"h5_images_{tag}.h5", Xd, gzip=tag == "f32")
    np.save(DATA / "h5_f16_expect_X.npy", X.astype(np.float16).astype(np.float32)[rows])
    write_repr(DATA / "h5_aligned.h5", np.load(DATA / "aligned_backbone.npy"))

    f16_bits = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF,
                         0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x3555, 0x0200, 0x1234, 0xC000],
                        dtype=np.uint16).view(np.float16).reshape(4, 4)
    be = (np.arange(12, dtype=np.float64).reshape(3, 4) - 5.5) / 3.0
    write_repr(IO / "h5_specials.h5", f16_bits, compression=None)
    write_repr(IO / "h5_big_endian.h5", be.astype(">f8"), compression=None)
    np.save(IO / "h5_specials.expect.npy", f16_bits.astype(np.float32))
    np.save(IO / "h5_big_endian.expect.npy", be.astype(np.float32))
    fuzz_seeds()
    sizes = sum(p.stat().st_size for p in list(DATA.glob("h5_*")) + list(IO.glob("h5_*")))
    print(f"wrote the HDF5 fixtures ({sizes} bytes)")


if __name__ == "__main__":
    main()
