#!/usr/bin/env python3
"""Checks the house's layering (README "Architecture"), as a test that prints TAP.

1. Every #include "x/y.h" of src/ names a header that exists (src/x/y.h, or include/x/y.h
   for the public "metalign/..." headers).
2. No arrow from a lower layer to a higher one: a file of layer L includes only headers of
   layers <= L. Public headers (include/metalign/NAME.h) belong to the layer of the source
   that implements them (src/*/NAME.c).
3. No include circle between files (a header may not, through any chain, include itself).
4. The daemon's layers (src/engine, src/http, src/main.c) reach the core's io, model, data and
   analysis only through include/metalign/ (the public API), never their private headers.
5. Every module-private header sits beside its source, named after it (src/x/y.h has
   src/x/y.c), except headers that declare several sources' shared contract (listed below).
6. No file over 600 lines except the pickle interpreter.

Usage: tools/check_layers.py [SOURCE_ROOT]
"""
import os
import re
import sys

LAYERS = ["util", "io", "model", "data", "analysis", "config", "engine", "http", "main"]
RANK = {name: i for i, name in enumerate(LAYERS)}
# model and data are peers: neither may include the other.
PEERS = {("model", "data"), ("data", "model")}
CORE_PRIVATE = {"io", "model", "data", "analysis"}
DAEMON = {"engine", "http", "main"}
# headers that are a contract over several sources (documented in the README)
SHARED_HEADERS = {"src/http/handlers/handlers.h", "src/http/render/render.h",
                  "src/io/tensorset_build.h",
                  "src/model/vec.h"}  # header-only: the vector kernels' inline helpers
LONG_FILES = {"src/io/pickle.c"}
# The public API (include/metalign/NAME.h) and the layer of the module behind each header.
PUBLIC = {"err": "util", "blas": "util", "rng": "util", "sha256": "util",
          "fetch": "io", "human_meta": "io",
          "model": "model",
          "dataset": "data", "episodes": "data", "human_csv": "data",
          "stats": "analysis", "curve": "analysis", "cka": "analysis", "human_curves": "analysis",
          "temperature": "analysis", "baseline": "analysis", "panel": "analysis",
          "runner": "engine", "simulate": "engine", "replay": "engine"}
MAX_LINES = 600
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel):
    """The layer of a file under src/ or include/ (rel to the root)."""
    parts = rel.split("/")
    if parts[0] == "src":
        if len(parts) == 2:
            return "main" if parts[1] == "main.c" else "config"
        return parts[1]
    return None


def main(root):
    results = []
    src_files = []
    for base, _, files in os.walk(os.path.join(root, "src")):
        for f in files:
            if f.endswith((".c", ".h")):
                src_files.append(os.path.relpath(os.path.join(base, f), root))
    pub = sorted(f for f in os.listdir(os.path.join(root, "include", "metalign")) if f.endswith(".h"))
    pub_layer = {}
    problems = []
    for h in pub:
        stem = h[:-2]
        if stem not in PUBLIC:
            problems.append(f"include/metalign/{h}: not in tools/check_layers.py's PUBLIC table "
                            "(say which layer's module it is the API of)")
            continue
        pub_layer["metalign/" + h] = PUBLIC[stem]
        if not os.path.isdir(os.path.join(root, "src", PUBLIC[stem])):
            problems.append(f"include/metalign/{h}: no src/{PUBLIC[stem]}/")
    results.append(("every public header is the API of a module of a known layer", problems))

    graph = {}
    missing, upward, private = [], [], []
    for f in sorted(src_files + ["include/metalign/" + h for h in pub]):
        text = open(os.path.join(root, f)).read()
        me = layer_of(f) if f.startswith("src/") else pub_layer.get(f[len("include/"):])
        deps = []
        for inc in INCLUDE.findall(text):
            if inc.startswith("metalign/"):
                target = "include/" + inc
                their = pub_layer.get(inc)
            elif "/" in inc:
                target = "src/" + inc
                their = layer_of(target)
            elif inc == "config.h":
                target, their = "src/config.h", "config"
            else:
                missing.append(f"{f}: #include \"{inc}\" is not of the form \"layer/name.h\"")
                continue
            if not os.path.exists(os.path.join(root, target)):
                missing.append(f"{f}: #include \"{inc}\": no {target}")
                continue
            deps.append(target)
            if me is None or their is None:
                continue
            if RANK[their] > RANK[me] or (me, their) in PEERS:
                upward.append(f"{f} ({me}) includes {inc} ({their})")
            if me in DAEMON and not inc.startswith("metalign/") and their in CORE_PRIVATE:
                private.append(f"{f} ({me}) includes the core's private header {inc}")
        graph[f] = deps
    results.append(("every include names an existing header", missing))
    results.append(("no include from a lower layer to a higher one", upward))
    results.append(("the daemon reaches the core through include/metalign/ only", private))

    cycles = []
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for d in graph.get(node, []):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif not state.get(d):
                visit(d, stack)
        stack.pop()
        state[node] = 2

    for n in sorted(graph):
        if not state.get(n):
            visit(n, [])
    results.append(("no include circle", cycles))

    beside = []
    for f in src_files:
        if f.endswith(".h") and f not in SHARED_HEADERS and f != "src/config.h":
            if not os.path.exists(os.path.join(root, f[:-2] + ".c")):
                beside.append(f"{f}: no {f[:-2]}.c beside it")
    results.append(("private headers sit beside their sources, named after them", beside))

    long_files = []
    for f in src_files:
        n = sum(1 for _ in open(os.path.join(root, f)))
        if n > MAX_LINES and f not in LONG_FILES:
            long_files.append(f"{f}: {n} lines")
    results.append((f"no source file over {MAX_LINES} lines but the pickle interpreter", long_files))

    failed = 0
    for i, (name, probs) in enumerate(results, 1):
        print(("not ok" if probs else "ok") + f" {i} - {name}")
        for p in probs:
            print(f"# {p}")
        failed += bool(probs)
    print(f"1..{len(results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
