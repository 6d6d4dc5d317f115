#!/usr/bin/python3
"""Starts metalignd with the given arguments, polls GET /readyz every 10 ms from this one
process (spawning curl per poll would steal a core from the daemon's start-up), and prints
the seconds from exec to the first 200, the daemon's VmRSS / VmHWM at that moment and its
parameter count (GET /v1/info); then stops it with SIGTERM.

Usage: measure.py PORT METALIGND [ARGS...]
"""
import http.client
import json
import signal
import subprocess
import sys
import time


def status_mb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def main():
    port = int(sys.argv[1])
    t0 = time.monotonic()
    p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        if p.poll() is not None:
            sys.exit("metalignd exited: " + p.stderr.read().decode(errors="replace"))
        try:
            if get(port, "/readyz")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.01)
    ready = time.monotonic() - t0
    rss, hwm = status_mb(p.pid, "VmRSS"), status_mb(p.pid, "VmHWM")
    params = json.loads(get(port, "/v1/info")[1])["model"]["parameters"]
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    print(f"ready_s {ready:.2f} rss_MB {rss:.1f} hwm_MB {hwm:.1f} params {params}")


if __name__ == "__main__":
    main()
