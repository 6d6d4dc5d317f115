#!/usr/bin/env python3
"""Proves that the suite fails when it should (TAP; meson runs it as suite 'meta').

    check_suite_fails.py SOURCE_ROOT BUILD_ROOT

Damages copies, never the tree: the test binaries read their fixtures from $ML_FIXTURES_DIR
(tests/unit.h), here a copy in a temporary folder.
  - a NaN planted in a golden file (test_forward_golden's out.layer_0 and logits, test_torch's
    PyTorch layer outputs) makes the test fail, naming the non-finite value;
  - a deleted fixture (human/messy.csv, human/reference.json) makes the test fail, naming it;
  - tools/count_tests.py fails on a build folder without a test log, on an empty log, on a
    log that lacks a test meson lists (an interrupted run), on a TAP program without a plan
    or short of it, and on a skipped test.
Each damage is paired with a control on an undamaged copy, so a failure is the damage's.
Stdlib only (any python3); takes a few seconds.
"""
import importlib.util
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

NAN = struct.pack("<f", math.nan)


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def point(self, ok, desc, detail=""):
        self.n += 1
        if not ok:
            self.failed += 1
            for line in detail.splitlines()[-15:]:
                print("# " + line)
        print(("ok" if ok else "not ok") + f" {self.n} - {desc}", flush=True)

    def done(self):
        print(f"1..{self.n}")
        return 1 if self.failed else 0


def run_test(binary, fixtures):
    env = dict(os.environ, ML_FIXTURES_DIR=fixtures)
    r = subprocess.run([binary], capture_output=True, text=True, env=env, timeout=300)
    return r.returncode, r.stdout + r.stderr


def plant_nan_safetensors(path, tensor, elements):
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        t = header[tensor]
        assert t["dtype"] == "F32", t
        for e in elements:
            f.seek(8 + n + t["data_offsets"][0] + 4 * e)
            f.write(NAN)


def npy_layout(path):
    """(offset of the data, columns) of a 2-D little-endian float32 C-order .npy."""
    with open(path, "rb") as f:
        head = f.read(12)
        assert head[:6] == b"\x93NUMPY", path
        if head[6] == 1:
            hlen, start = struct.unpack("<H", head[8:10])[0], 10
        else:
            hlen, start = struct.unpack("<I", head[8:12])[0], 12
        f.seek(start)
        text = f.read(hlen).decode("latin1")
    assert "'<f4'" in text and "'fortran_order': False" in text, text
    cols = int(text[text.index("'shape': (") + 10:].split(")")[0].split(",")[1])
    return start + hlen, cols


def npy_cols(path):
    return npy_layout(path)[1]


def plant_nan_npy(path, row, col):
    data, cols = npy_layout(path)
    with open(path, "r+b") as f:
        f.seek(data + 4 * (row * cols + col))
        f.write(NAN)


def copy_fixtures(src, dst, folders):
    for d in folders:
        shutil.copytree(os.path.join(src, "tests", "fixtures", d), os.path.join(dst, d))


def expect_failure(tap, desc, binary, fixtures, needles):
    rc, out = run_test(binary, fixtures)
    missing = [n for n in needles if n not in out]
    tap.point(rc != 0 and "not ok" in out and not missing,
              f"{desc}: the test fails (exit {rc})" + (f", naming {', '.join(needles)}"
                                                       if needles else ""),
              out + (f"\nmissing from the output: {missing}" if missing else ""))


def expect_pass(tap, desc, binary, fixtures):
    rc, out = run_test(binary, fixtures)
    tap.point(rc == 0 and "not ok" not in out, f"control: {desc} passes on an undamaged copy", out)


def golden_cases(tap, src, build, tmp):
    golden = os.path.join(build, "tests", "model", "test_forward_golden")
    torch = os.path.join(build, "tests", "io", "test_torch")
    clean = os.path.join(tmp, "clean")
    copy_fixtures(src, clean, ["model", "io"])
    expect_pass(tap, "test_forward_golden", golden, clean)
    expect_pass(tap, "test_torch", torch, clean)

    nan = os.path.join(tmp, "nan")
    copy_fixtures(src, nan, ["model", "io"])
    # one NaN at the start of a layer's output and one in the middle of the logits: the old
    # worst-error loop forgot the first at the next finite element and never saw the second
    plant_nan_safetensors(os.path.join(nan, "model", "rope_emb.golden.safetensors"),
                          "out.layer_0", [0])
    plant_nan_safetensors(os.path.join(nan, "model", "rope_emb.golden.safetensors"),
                          "logits", [10])
    expect_failure(tap, "NaN in rope_emb.golden.safetensors", golden, nan,
                   ["rope_emb", "out.layer_0", "non-finite", "logits"])
    # a NaN in the last column of one row of PyTorch's forward outputs (a layer output)
    path = os.path.join(nan, "io", "ckpt_seed.forward.npy")
    plant_nan_npy(path, 3, npy_cols(path) - 1)
    expect_failure(tap, "NaN in ckpt_seed.forward.npy", torch, nan,
                   ["ckpt_seed", "non-finite"])


def missing_fixture_cases(tap, src, build, tmp):
    csv = os.path.join(build, "tests", "data", "test_human_csv")
    clean = os.path.join(tmp, "clean")
    copy_fixtures(src, clean, ["human"])
    expect_pass(tap, "test_human_csv", csv, clean)
    for name in ("messy.csv", "reference.json"):
        damaged = os.path.join(tmp, "no-" + name)
        copy_fixtures(src, damaged, ["human"])
        os.remove(os.path.join(damaged, "human", name))
        expect_failure(tap, f"human/{name} deleted", csv, damaged, [name])


def load_counter(src):
    spec = importlib.util.spec_from_file_location(
        "count_tests", os.path.join(src, "tools", "count_tests.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tap_out(n, plan=True, skip_at=None):
    lines = []
    for i in range(1, n + 1):
        lines.append(f"ok {i} - t{i}" + (" # SKIP no data" if i == skip_at else ""))
    if plan:
        lines.append(f"1..{n}")
    return "\n".join(lines) + "\n"


def write_log(d, entries):
    os.makedirs(os.path.join(d, "meson-logs"), exist_ok=True)
    with open(os.path.join(d, "meson-logs", "testlog.json"), "w") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")


def counter_cases(tap, src, tmp):
    ct = load_counter(src)
    listed = ["metalignd:util / a", "metalignd:util / b"]
    # the listing meson would give, without a meson build folder
    ct.listed_tests = lambda d, args: (listed, None)
    ct.protocols = lambda d: {name: "tap" for name in listed}

    def count(label, entries, needle=None, expect_ok=False):
        d = os.path.join(tmp, "count-" + label)
        if entries is not None:
            write_log(d, entries)
        else:
            os.makedirs(d)
        out_path = os.path.join(tmp, label + ".out")
        with open(out_path, "w") as out:
            saved, sys.stdout = sys.stdout, out
            try:
                rc = ct.main([d])
            finally:
                sys.stdout = saved
        with open(out_path) as f:
            text = f.read()
        last = text.strip().splitlines()[-1] if text.strip() else ""
        honest = last.endswith(" 0 failed") == (rc == 0) and last.count(" passed, ") == 1
        if expect_ok:
            tap.point(rc == 0 and honest, f"control: count_tests.py passes {label}", text)
        else:
            tap.point(rc == 1 and honest and (needle is None or needle in text),
                      f"count_tests.py fails on {label}" + (f" ({needle!r})" if needle else ""),
                      text)

    def entry(name, out, result="OK"):
        return {"name": name, "stdout": out, "result": result, "returncode": 0}

    good = [entry(listed[0], tap_out(3)), entry(listed[1], tap_out(2))]
    count("a complete log", good, expect_ok=True)
    count("a folder without a test log", None, "no test log")
    count("an empty test log", [], "empty")
    count("a log without one listed test", good[:1], "did not run")
    count("a TAP program without a plan", [good[0], entry(listed[1], tap_out(2, plan=False))],
          "no TAP plan")
    count("a TAP program short of its plan",
          [good[0], entry(listed[1], tap_out(2).replace("1..2", "1..4"))], "plan says 4")
    count("a skipped point", [good[0], entry(listed[1], tap_out(2, skip_at=2))], "skipped")
    count("a skipped program", [good[0], entry(listed[1], "", "SKIP")], "skipped")
    count("a crash after passing points",
          [good[0], dict(entry(listed[1], tap_out(2, plan=False), "ERROR"), returncode=-11)],
          "no TAP plan")


def main(argv):
    if len(argv) != 2:
        print("usage: check_suite_fails.py SOURCE_ROOT BUILD_ROOT", file=sys.stderr)
        return 2
    src, build = argv
    tap = Tap()
    tmp = tempfile.mkdtemp(prefix="metalign-suite-fails-")
    try:
        golden_cases(tap, src, build, tmp)
        missing_fixture_cases(tap, src, build, tmp)
        counter_cases(tap, src, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
