#!/usr/bin/env python3
"""Runs every curl example of the README against the demo daemon and prints TAP.

Examples are the `curl ...` commands in ```sh blocks and in inline code spans. A block whose
first line is a comment containing "real THINGS files" is for the real data and is skipped
(it is still checked to parse). `<id>` stands for the last job id an example printed.
localhost:8080 / 127.0.0.1:8080 become the test daemon's address. Every example must answer
with a status below 400 and a body that parses in its Content-Type (JSON, CSV lines, HTML).

Usage: tools/readme_examples.py METALIGND SOURCE_ROOT
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "support"))
from demo_daemon import DemoDaemon  # noqa: E402

FENCE = re.compile(r"^```(\S*)\s*$")
INLINE = re.compile(r"`(curl [^`]+)`")
REAL_DATA = "real THINGS files"


def examples(readme):
    """(line number, command text, skip) for every curl example."""
    out = []
    lines = open(readme).read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            for c in INLINE.findall(lines[i]):
                out.append((i + 1, c, False))
            i += 1
            continue
        lang = m.group(1)
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        block = lines[start:j]
        i = j + 1
        if lang not in ("sh", "bash", "shell"):
            continue
        skip = bool(block) and block[0].lstrip().startswith("#") and REAL_DATA in block[0]
        k = 0
        while k < len(block):
            if not block[k].lstrip().startswith("curl "):
                k += 1
                continue
            text = block[k]
            first = k
            while True:  # a quoted body may span lines
                try:
                    shlex.split(text, comments=True)
                    break
                except ValueError:
                    k += 1
                    if k >= len(block):
                        raise SystemExit(f"README line {start + first + 1}: unterminated quote")
                    text += "\n" + block[k]
            out.append((start + first + 1, text, skip))
            k += 1
    return out


def main(daemon, root):
    cases = examples(os.path.join(root, "README.md"))
    if not cases:
        print("not ok 1 - the README has curl examples\n1..1")
        return 1
    failed = 0
    tmp = tempfile.mkdtemp(prefix="metalign-readme-")
    # DemoDaemon waits for /readyz 200 (the daemon listens at once and loads after)
    try:
        with DemoDaemon(daemon, root) as d:
            port = d.port
            job = None
            for n, (line, text, skip) in enumerate(cases, 1):
                label = f"README line {line}: {' '.join(text.split())[:90]}"
                if skip:
                    print(f"ok {n} - {label} # real data: parsed, not run")
                    continue
                cmd = text.replace("localhost:8080", f"127.0.0.1:{port}").replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                if "<id>" in cmd:
                    if not job:
                        print(f"not ok {n} - {label}\n# no job id printed by an earlier example")
                        failed += 1
                        continue
                    cmd = cmd.replace("<id>", job)
                argv = shlex.split(cmd, comments=True)
                body_path = os.path.join(tmp, "body")
                argv = [argv[0], "-sS", "--max-time", "120", "-o", body_path,
                        "-w", "%{http_code} %{content_type}"] + argv[1:]
                r = subprocess.run(argv, capture_output=True, text=True, timeout=180)
                status, _, ctype = r.stdout.partition(" ")
                body = open(body_path, "rb").read() if os.path.exists(body_path) else b""
                problem = None
                if r.returncode != 0:
                    problem = f"curl failed: {r.stderr.strip()}"
                elif not status.isdigit() or int(status) >= 400:
                    problem = f"status {status}: {body[:300]!r}"
                elif "json" in ctype:
                    try:
                        doc = json.loads(body)
                        if isinstance(doc, dict) and isinstance(doc.get("job"), str):
                            job = doc["job"]
                    except ValueError as e:
                        problem = f"not JSON: {e}"
                elif "csv" in ctype and b"\n" not in body:
                    problem = "CSV without a header line"
                if problem:
                    failed += 1
                    print(f"not ok {n} - {label}\n# {problem}")
                else:
                    print(f"ok {n} - {label}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"1..{len(cases)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
