#!/usr/bin/python3
"""GET /v1/human/replay end to end on the seed-size world: the first request (download of the
human CSV, the replay, rendering), a first request with the data in memory (another seed),
and the repeated request answered from the result cache (JSON, CSV, with and without trial
rows), as a client sees them, with the load average.

Needs the files of bench/run_replay.py (bench/data/startup and bench/data/replay/humans.csv:
run it once first). The CSV is served over loopback by a thread of this script.

Usage: [OPENBLAS_CORETYPE=SkylakeX] bench/replay_http.py [--build build] [--threads 2]
                                  [--port 18641] [--reps 20]
(run_replay.py times both sides with OPENBLAS_CORETYPE=SkylakeX; set it here too for figures
beside those. The daemon inherits the caller's environment, OPENBLAS_* included.)
"""
import argparse
import http.client
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def serve_csv(path, port):
    body = open(path, "rb").read()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def get(port, path, timeout=600):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return time.perf_counter() - t0, r.status, body


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=18641)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    data = os.path.join(ROOT, "bench", "data", "startup")
    csv = os.path.join(ROOT, "bench", "data", "replay", "humans.csv")
    if not os.path.exists(csv) or not os.path.exists(os.path.join(data, "model.pt")):
        sys.exit("replay_http: run bench/run_replay.py once first (it writes %s and %s)"
                 % (data, csv))
    srv = serve_csv(csv, args.port + 1)
    load0 = open("/proc/loadavg").read().split()[:3]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [os.path.join(args.build, "metalignd"), "--listen", "127.0.0.1:%d" % args.port,
               "--checkpoint", os.path.join(data, "model.pt"), "--heads", "12",
               "--backbone", os.path.join(data, "backbone.npz"),
               "--things-images", os.path.join(data, "images.txt"),
               "--targets", os.path.join(data, "spose.txt"),
               "--item-ids", os.path.join(data, "unique_id.txt"), "--cache-dir", tmp,
               "--threads", str(args.threads),
               "--human-url", "http://127.0.0.1:%d/humans.csv" % (args.port + 1)]
        env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT="4")
        daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=env)
        try:
            for _ in range(600):
                try:
                    if get(args.port, "/readyz", timeout=1)[1] == 200:
                        break
                except OSError:
                    pass
                if daemon.poll() is not None:
                    sys.exit("replay_http: metalignd exited with %d" % daemon.returncode)
                time.sleep(0.1)
            rows = []
            q = "/v1/human/replay?seed=0"
            t, st, body = get(args.port, q)
            assert st == 200, body[:300]
            doc = json.loads(body)
            rows.append(("first request (download + replay + render)", t, len(body)))
            t, st, body = get(args.port, "/v1/human/replay?seed=1")
            assert st == 200, body[:300]
            rows.append(("first request, data in memory (seed=1)", t, len(body)))
            for label, path in [("repeated, JSON (cache)", q),
                                ("repeated, format=csv per participant (cache)", q + "&format=csv")]:
                best = min(get(args.port, path)[0] for _ in range(args.reps))
                rows.append((label + ", best of %d" % args.reps, best, len(get(args.port, path)[2])))
            qt = q + "&include_trials=true"
            t, st, body = get(args.port, qt)
            assert st == 200, body[:300]
            rows.append(("include_trials=true, first (replay + render)", t, len(body)))
            for label, path in [("include_trials=true, repeated JSON (cache)", qt),
                                ("include_trials=true, repeated CSV (cache)", qt + "&format=csv")]:
                best = min(get(args.port, path)[0] for _ in range(args.reps))
                rows.append((label + ", best of %d" % args.reps, best, len(get(args.port, path)[2])))
        finally:
            daemon.terminate()
            daemon.wait()
    srv.shutdown()
    load1 = open("/proc/loadavg").read().split()[:3]
    s = doc["summary"]
    print("GET /v1/human/replay, %d participants, %d trials (%s match), %d threads; load "
          "average before %s, after %s" % (s["participants"], s["trials"], doc["image_match"],
                                           args.threads, " ".join(load0), " ".join(load1)))
    print("engine: model passes %.3f s, baseline %.3f s (the answer's \"seconds\")"
          % (doc["seconds"]["model"], doc["seconds"]["baseline"]))
    for label, t, n in rows:
        print("  %-62s %9.2f ms  %9d bytes" % (label, t * 1e3, n))


if __name__ == "__main__":
    main()
