#!/usr/bin/env python3
"""The scale-out's throughput model, measured (docs/SCALEOUT.md): one async learning-curves
job on 1..N replicas sharing a redis-server, next to a single daemon answering the same
request synchronously. Per run: wall time, chunks, the mean chunk cost, Redis round trips per
chunk, the merge's cost. All processes on this machine and on loopback: with N replicas on
fewer cores than N x --threads, the wall time shows contention, not the speed-up of N
machines; the per-chunk figures are what the model of docs/SCALEOUT.md takes.

  bench/scaleout.py build/metalignd [--config config/demo.json] [--replicas 1,2,3]
                    [--threads 1] [--episodes 12000] [--seq-len 100] [--chunk 400]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port  # noqa: E402


def call(method, url, body=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()


def metrics(url):
    out = {}
    for line in call("GET", url + "/metrics").decode().splitlines():
        if not line.startswith("#") and " " in line:
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def daemon(binary, config, tmp, name, extra):
    log = open(os.path.join(tmp, name + ".log"), "wb")
    p = subprocess.Popen([binary, "--config", config, "--listen", "127.0.0.1:0", "--cache-dir",
                          os.path.join(tmp, name), "--max-sync-rows", "100000000"] + extra, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL)
    while True:
        line = p.stderr.readline()
        log.write(line)
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            url = f"http://127.0.0.1:{m.group(1).decode()}"
            while True:  # it listens at once and loads after
                try:
                    call("GET", url + "/readyz")
                    return p, url
                except Exception:
                    time.sleep(0.05)
        if not line:
            raise SystemExit(f"{name} did not start; see {log.name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("metalignd")
    ap.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "config",
                                                     "demo.json"))
    ap.add_argument("--replicas", default="1,2,3")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--episodes", type=int, default=12000)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=400)
    a = ap.parse_args()
    job = {"episodes": a.episodes, "seq_len": a.seq_len, "seed": 21}
    tmp = tempfile.mkdtemp(prefix="metalign-bench-scaleout-")
    procs = []
    try:
        p, url = daemon(a.metalignd, a.config, tmp, "single", ["--threads", str(a.threads)])
        procs.append(p)
        t0 = time.time()
        call("POST", url + "/v1/learning-curves", job)
        single = time.time() - t0
        print(f"load average before: {open('/proc/loadavg').read().split()[:3]}")
        print(f"single daemon, synchronous: {single:.2f} s")
        print("| replicas | wall s | chunks | chunk ms | commands/chunk | merge ms | by replica |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for n in [int(x) for x in a.replicas.split(",")]:
            port = free_port()
            rdir = os.path.join(tmp, f"redis{n}")
            os.makedirs(rdir)
            r = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", rdir],
                                 stdout=subprocess.DEVNULL)
            procs.append(r)
            time.sleep(0.3)
            reps = []
            for i in range(n):
                rp, ru = daemon(a.metalignd, a.config, tmp, f"n{n}r{i}",
                                ["--threads", str(a.threads), "--redis",
                                 f"redis://127.0.0.1:{port}/0", "--chunk-episodes",
                                 str(a.chunk), "--replica-name", f"r{i}"])
                procs.append(rp)
                reps.append(ru)
            before = [metrics(u) for u in reps]
            t0 = time.time()
            jid = json.loads(call("POST", reps[0] + "/v1/learning-curves?async=true", job))["job"]
            while json.loads(call("GET", f"{reps[0]}/v1/jobs/{jid}"))["status"] in ("queued", "running"):
                time.sleep(0.5)  # each poll is 2 Redis commands: keep them out of the count
            wall = time.time() - t0
            after = [metrics(u) for u in reps]

            def d(k):
                return [x.get(k, 0) - y.get(k, 0) for x, y in zip(after, before)]
            chunks = sum(d("metalignd_chunks_computed_total"))
            us = sum(d("metalignd_chunk_microseconds_total"))
            cmds = sum(d("metalignd_redis_commands_total"))
            merge = sum(d("metalignd_shared_merge_microseconds_total"))
            print(f"| {n} | {wall:.2f} | {chunks:.0f} | {us / max(chunks, 1) / 1000:.1f} | "
                  f"{cmds / max(chunks, 1):.1f} | {merge / 1000:.1f} | "
                  f"{[int(x) for x in d('metalignd_chunks_computed_total')]} |")
            for pr in procs[-(n + 1):]:
                pr.send_signal(signal.SIGTERM)
                pr.wait()
        print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
        shutil.rmtree(tmp, ignore_errors=True)


main()
