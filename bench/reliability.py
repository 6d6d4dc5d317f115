#!/usr/bin/env python3
"""The reliability campaign of issue 11, after the fixes (docs/RELIABILITY.md):

  1. wrk throughput and p99 on /healthz, a cached /v1/cka, /v1/info and a small POST
     /v1/activations (bench/activations.lua);
  2. the daemon's RSS while 40 clients that never read ask for the same ~40 MB answer
     (include_episodes), and the bytes it holds for them;
  3. /healthz from 127.0.0.1 while 1,100 idle sockets from 127.0.0.2 are open;
  4. the shutdown time with a long synchronous simulation in flight (SIGTERM 1 s in), with
     the default grace and with --shutdown-grace 4.

Runs the daemon of BUILD (default build/) on the demo bundle over loopback; prints the load
average beside every section (the machine may be shared). Needs wrk.

Usage: bench/reliability.py [--build DIR] [--seconds N] [--clients N] [--idle N]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG = json.dumps({"episodes": 100000, "seq_len": 200, "seed": 7})
BIG = json.dumps({"episodes": 19300, "seq_len": 100, "include_episodes": True, "n_boot": 0,
                  "seed": 3})  # about 40 MB of JSON


def load():
    return open("/proc/loadavg").read().split()[:3]


class Daemon:
    def __init__(self, build, *extra):
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="metalign-reliability-")
        self.proc = subprocess.Popen(
            [os.path.join(build, "metalignd"), "--config", os.path.join(ROOT, "config", "demo.json"),
             "--listen", f"127.0.0.1:{self.port}", "--cache-dir", os.path.join(self.tmp, "cache"),
             *extra], stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the daemon did not get ready")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path, body=None, timeout=600):
        req = urllib.request.Request(self.url(path), data=body.encode() if body else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metric(self, name):
        text = self.get("/metrics")[1].decode()
        m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def rss_mb(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self, sig=signal.SIGTERM):
        t0 = time.time()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=120)
        took = time.time() - t0
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc, took


def wrk(url, seconds, script=None):
    cmd = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+(\S+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(rps.group(1)) if rps else None, p99.group(1) if p99 else None,
            int(errors.group(1)) if errors else 0)


def section_wrk(args):
    d = Daemon(args.build)
    d.get("/v1/cka")  # prepared and cached from here on
    print(f"## wrk -t2 -c32 -d{args.seconds}s (load {' '.join(load())})")
    print("| target | requests/s | p99 | non-2xx |")
    print("| --- | --- | --- | --- |")
    for name, path, script in [("GET /healthz", "/healthz", None),
                               ("GET /v1/cka (cached)", "/v1/cka", None),
                               ("GET /v1/info", "/v1/info", None),
                               ("POST /v1/activations (3 items)", "/v1/activations",
                                os.path.join(ROOT, "bench", "activations.lua"))]:
        rps, p99, bad = wrk(d.url(path), args.seconds, script)
        print(f"| {name} | {rps:,.0f} | {p99} | {bad} |")
    print(f"(load after: {' '.join(load())})")
    rc, took = d.stop()
    print(f"daemon exit {rc}\n")


def section_slow_readers(args):
    d = Daemon(args.build, "--max-sync-rows", "2000000")  # the answer: 1.93 M trials
    t0 = time.time()
    status, body = d.get("/v1/learning-curves", BIG)
    first = time.time() - t0
    size = len(body)
    del body
    before = d.rss_mb()
    req = (f"POST /v1/learning-curves HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(BIG)}\r\n\r\n{BIG}").encode()
    socks = []
    for _ in range(args.clients):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", d.port))
        s.sendall(req)
        socks.append(s)
    time.sleep(3)
    after = d.rss_mb()
    held = d.metric("metalignd_http_inflight_bytes")
    print(f"## {args.clients} clients that never read a {size / 1e6:.1f} MB answer "
          f"(load {' '.join(load())})")
    print(f"computed once in {first:.1f} s (status {status}); RSS {before:.0f} MB before, "
          f"{after:.0f} MB with the {args.clients} clients waiting; bytes held for them "
          f"{held / 1e6:.1f} MB (one copy)")
    for s in socks:
        s.close()
    time.sleep(1)
    print(f"after they left: RSS {d.rss_mb():.0f} MB, held "
          f"{d.metric('metalignd_http_inflight_bytes') / 1e6:.1f} MB")
    rc, _ = d.stop()
    print(f"daemon exit {rc}\n")


def section_idle(args):
    d = Daemon(args.build)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    t0 = time.time()
    for _ in range(args.idle):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", d.port))
        socks.append(s)
    opened = time.time() - t0
    time.sleep(1)
    times = []
    for _ in range(50):
        t = time.time()
        status = d.get("/healthz")[0]
        times.append((time.time() - t) * 1e3)
        assert status == 200
    times.sort()
    kept = d.metric("metalignd_http_connections")
    print(f"## /healthz from 127.0.0.1 with {args.idle} idle sockets from 127.0.0.2 "
          f"(load {' '.join(load())})")
    print(f"{args.idle} sockets opened in {opened:.2f} s; the daemon keeps "
          f"{kept:.0f} connections (--max-connections-per-ip 128, the rest closed at once); "
          f"/healthz x50: median {times[25]:.2f} ms, max {times[-1]:.2f} ms")
    for s in socks:
        s.close()
    rc, _ = d.stop()
    print(f"daemon exit {rc}\n")


def section_shutdown(args):
    print(f"## SIGTERM with a long synchronous simulation in flight (load {' '.join(load())})")
    for grace in (None, "4"):
        extra = ["--max-sync-rows", "20000000"] + (["--shutdown-grace", grace] if grace else [])
        d = Daemon(args.build, *extra)
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall((f"POST /v1/learning-curves HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   f"application/json\r\nContent-Length: {len(LONG)}\r\n\r\n{LONG}").encode())
        time.sleep(1)
        rc, took = d.stop()
        s.settimeout(5)
        try:
            answer = s.recv(4096).decode(errors="replace").split("\r\n")[0]
        except OSError:
            answer = "(none)"
        print(f"grace {grace or '30 (default)'} s: exit {rc} after {took:.2f} s; the request "
              f"was answered {answer!r}")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--idle", type=int, default=1100)
    ap.add_argument("--only", choices=["wrk", "slow", "idle", "shutdown"])
    args = ap.parse_args()
    print(f"# metalignd reliability campaign, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs, load {' '.join(load())}\n")
    for name, fn in [("wrk", section_wrk), ("slow", section_slow_readers),
                     ("idle", section_idle), ("shutdown", section_shutdown)]:
        if args.only in (None, name):
            fn(args)


if __name__ == "__main__":
    sys.exit(main())
