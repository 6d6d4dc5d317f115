"""The demo daemon for the Python tests: build/metalignd on config/demo.json, on a free
loopback port, with its human data served by a loopback HTTP server from
tests/fixtures/human/synthetic.csv and a cache folder of its own (mkdtemp). No network beyond
loopback.

    with DemoDaemon(metalignd, root, extra_args) as d:
        d.url("/v1/info")     # "http://127.0.0.1:<port>/v1/info"
        d.get("/v1/cka")      # (status, headers, body bytes)
"""
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request


class _CsvHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is an answer to look at, not to follow


_opener = urllib.request.build_opener(_NoRedirect)


class DemoDaemon:
    def __init__(self, metalignd, root, extra_args=()):
        self.metalignd, self.root, self.extra = metalignd, root, list(extra_args)

    def __enter__(self):
        csv_path = os.path.join(self.root, "tests", "fixtures", "human", "synthetic.csv")
        handler = type("CsvHandler", (_CsvHandler,), {"body": open(csv_path, "rb").read()})
        self.csv_path = csv_path
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.tmp = tempfile.mkdtemp(prefix="metalign-pytest-")
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.tmp, "daemon.log"), "w+")
        self.proc = subprocess.Popen(
            [self.metalignd, "--config", os.path.join(self.root, "config", "demo.json"),
             "--listen", f"127.0.0.1:{self.port}", "--cache-dir", os.path.join(self.tmp, "cache"),
             "--human-url", f"http://127.0.0.1:{self.srv.server_address[1]}/rsd46.csv"] + self.extra,
            stderr=self.log, stdout=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("metalignd exited: " + self.read_log())
            try:
                if self.get("/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("metalignd did not become ready: " + self.read_log())

    def read_log(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        log = self.read_log()
        self.srv.shutdown()
        self.srv.server_close()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        # a graceful stop exits 0; under the sanitizers a report (a leak at exit) fails it
        if exc[0] is None and (rc != 0 or "Sanitizer" in log or "runtime error" in log):
            raise RuntimeError(f"metalignd exited with {rc} after SIGTERM:\n{log}")

    def url(self, path):
        return self.origin + path

    def get(self, path, method="GET", body=None, headers=None, timeout=300):
        """(status, headers as a dict with lower-case names, body bytes); never raises on a
        status and never follows a redirect."""
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers or {})
        try:
            with _opener.open(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def json(self, path, method="GET", body=None, status=200):
        st, _, b = self.get(path, method, body)
        if st != status:
            raise AssertionError(f"{method} {path}: status {st}, expected {status}: {b[:300]!r}")
        return json.loads(b)


class Tap:
    """TAP output: ok/not ok lines, then the plan."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, cond, label, detail=""):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {label}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.n} - {label}", flush=True)
            for line in str(detail).splitlines()[:20]:
                print("# " + line, flush=True)
        return cond

    def run(self, name, fn, *args):
        """Runs a test function; an exception is one failed point."""
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - every failure is reported
            import traceback
            self.check(False, f"{name} raised", "\n".join(traceback.format_exc().splitlines()[-20:]))

    def done(self):
        print(f"1..{self.n}", flush=True)
        return 1 if self.failed or self.n == 0 else 0
