#!/usr/bin/env python3
"""The dashboard in a real browser: Debian's chromium, headless, driven through chromedriver's
W3C WebDriver HTTP API with urllib (no selenium). On the demo daemon with a loopback human CSV
it loads /dashboard, waits for the charts and checks that

- every figure is drawn (its dygraph holds rows and has painted pixels) with exactly the values
  of the JSON answer it came from (read back from the dygraph objects through the page, and
  recomputed here from the same URLs);
- the synthetic banner shows, the dimension labels do not (the demo is not SPoSE), the replay
  panel shows the daemon's own replay of the synthetic CSV; through a loopback proxy that
  answers the replay from a fixture shaped as API.md says and makes /v1/info look
  like a real SPoSE world, the replay panel appears with its figures, dimensions 0-2 get the
  notebook's names and the banner goes;
- a job started from the form runs to its end with the progress bar fed by /v1/jobs/<id>;
- the page polls with ETags (304s on the wire), logs no console error and makes no request
  outside the daemon's origin (performance log and resource timing);
and saves a screenshot under the build folder. Prints TAP.

Usage: test_dashboard.py METALIGND SOURCE_ROOT BUILD_ROOT [CHROMIUM CHROMEDRIVER]
"""
import base64
import http.server
import json
import threading
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from demo_daemon import DemoDaemon, Tap, free_port  # noqa: E402

CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--window-size=1280,3000"]


class WebDriver:
    def __init__(self, chromium, chromedriver, tmp):
        self.port = free_port()
        self.log = open(os.path.join(tmp, "chromedriver.log"), "w")
        self.proc = subprocess.Popen([chromedriver, f"--port={self.port}"], stdout=self.log,
                                     stderr=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                self.call("GET", "/status")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium,
                                   "args": CHROME_ARGS + ["--user-data-dir=" + os.path.join(tmp, "profile")]},
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}}}}
        self.sid = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.load(r)["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.read()[:500]!r}")

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.sid}{path}", body)

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script, seconds, what):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.js(script):
                return True
            time.sleep(0.2)
        raise AssertionError(f"timed out after {seconds} s waiting for {what}")

    def logs(self, kind):
        return self.s("POST", "/se/log", {"type": kind})

    def close(self):
        try:
            self.s("DELETE", "")
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.log.close()


# ---- the rows each figure must hold, recomputed from the JSON ----

def band(v, lo, hi):
    if v is None:
        return None
    return [v if lo is None else lo, v, v if hi is None else hi]


def curve_rows(curves):
    n = max(len(c["p_correct"]) for c in curves)
    rows = []
    for t in range(n):
        row = [t]
        for c in curves:
            lo = c["ci_low"][t] if c.get("ci_low") else None
            hi = c["ci_high"][t] if c.get("ci_high") else None
            row.append(band(c["p_correct"][t], lo, hi) if t < len(c["p_correct"]) else None)
        rows.append(row)
    return rows


def cka_rows(doc):
    b = doc["baseline"]
    return [[i, band(l["cka"], l.get("ci_low"), l.get("ci_high")),
             band(b["cka"], b.get("ci_low"), b.get("ci_high"))] for i, l in enumerate(doc["layers"])]


def bar_rows(doc):
    out = []
    for i, g in enumerate(doc["by_dimension"]):
        m, h = g["bars"]["model"], g["bars"]["human"]
        out.append([i, band(m["mean"], m["ci_low"], m["ci_high"]), band(h["mean"], h["ci_low"], h["ci_high"])])
    return out


def expected(d, charts):
    """name -> rows, from the JSON of each chart's source URL."""
    want = {}
    for name, c in charts.items():
        if name == "job":
            continue
        doc = d.json("/" + c["source"])
        if name.startswith("cka-"):
            want[name] = cka_rows(doc)
        elif name == "curves":
            want[name] = curve_rows([doc["overall"]["model"], doc["overall"]["human"]])
        elif name == "bars":
            want[name] = bar_rows(doc)
        elif name.startswith("facet:"):
            _, dim, side = name.split(":")
            g = next(g for g in doc["by_dimension"] if g["dimension"] == int(dim))
            want[name] = curve_rows([g["model"] if side == "Meta-Learned" else g["human"]])
    return want


READ_CHARTS = """
const out = {};
for (const [k, c] of Object.entries(window.metalign.charts)) {
  const canvas = c.graph.hidden_;
  const img = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < img.length; i += 4) if (img[i] > 0) painted++;
  out[k] = {source: c.source, raw: c.graph.rawData_, labels: c.graph.getLabels(), painted: painted,
            rows: c.graph.numRows()};
}
return out;
"""


def check_figures(t, wd, d):
    charts = wd.js(READ_CHARTS)
    info = d.json("/v1/info")
    cmp = d.json("/v1/compare/learning-curves")
    dims = [g["dimension"] for g in cmp["by_dimension"]]
    names = {"cka-all", "cka-eval", "curves", "bars"} | {
        f"facet:{dim}:{side}" for dim in dims for side in ("Meta-Learned", "Human")}
    t.check(names <= set(charts), "every figure has a chart: CKA x2, curves, facets, bars",
            f"missing: {sorted(names - set(charts))}")
    want = expected(d, {k: v for k, v in charts.items() if k in names})
    for name in sorted(names & set(charts)):
        c = charts[name]
        t.check(c["rows"] > 0 and c["painted"] > 200, f"{name}: drawn ({c['rows']} rows, {c['painted']} px)")
        t.check(c["raw"] == want[name], f"{name}: holds the values of {c['source']}",
                f"page: {json.dumps(c['raw'])[:400]}\njson: {json.dumps(want[name])[:400]}")
    t.check(charts["cka-all"]["source"].startswith("v1/cka?dims=all&ci=true") and
            charts["cka-eval"]["source"].startswith("v1/cka?dims=0,1,2&ci=true"),
            "the CKA figures are all dims and the eval dims 0-2, with bootstrap bands")
    t.check(charts["cka-all"]["labels"] == ["Layer", "Meta-Learned", "Baseline"], "CKA legend")
    dashed = wd.js("return JSON.stringify(window.metalign.charts['cka-all'].graph.getOption('strokePattern', 'Baseline'))")
    t.check(dashed not in (None, "null", "[]"), "the baseline is dashed", dashed)
    ticks = wd.js("return Array.from(document.querySelectorAll('#chart-bars .dygraph-axis-label-x')).map(e => e.textContent)")
    t.check(info["data"]["dimension_labels"] is None and all(x.startswith("Dimension ") for x in ticks) and ticks,
            "bars: dimensions named by number on the demo (no SPoSE labels)", ticks)
    banner = wd.js("const b = document.getElementById('synthetic-banner'); return [b.hidden, b.offsetHeight, b.textContent]")
    t.check(info["data"]["synthetic"] and not banner[0] and banner[1] > 0 and "SYNTHETIC" in banner[2],
            "the synthetic banner shows", banner)
    shown = wd.js("return document.getElementById('info-list').textContent")
    t.check(info["model"]["path"] in shown and info["data"]["targets_path"] in shown,
            "the model and data in use are shown")
    # the demo daemon has the replay endpoint: the panel shows its own answer (the synthetic CSV)
    wd.wait("return !!(window.metalign.charts.replay || window.metalign.errors.length)", 120,
            "the replay panel")
    replay = d.json("/v1/human/replay")
    got = wd.js("return [document.getElementById('replay').hidden, window.metalign.replay,"
                " window.metalign.charts.replay ? window.metalign.charts.replay.graph.numRows() : -1,"
                " document.getElementById('replay-summary').textContent]")
    t.check(got[0] is False and got[1] is True and got[2] == len(replay["by_dimension"]) and
            ("pseudo-R² %.3f" % replay["summary"]["pseudo_r2"]) in got[3],
            "the replay panel shows the daemon's GET /v1/human/replay", got)


def check_job(t, wd, d):
    wd.js("const f = document.getElementById('job-form'); f.episodes.value = '600'; f.seq_len.value = '60';"
          "f.seed.value = '5'; f.dims.value = '0,1'; f.querySelector('button').click();")
    wd.wait("return window.metalign.job && (window.metalign.job.result || window.metalign.errors.length)",
            240, "the job to finish")
    job = wd.js("return {id: metalign.job.id, progress: metalign.job.progress, errors: metalign.errors,"
                " bar: [document.getElementById('job-progress').value, document.getElementById('job-progress').max]}")
    t.check(not job["errors"], "the job ran without errors", job["errors"])
    prog = job["progress"]
    t.check(prog and prog[-1] == [600, 600] and all(a[0] <= b[0] for a, b in zip(prog, prog[1:])),
            "the progress bar followed /v1/jobs/<id> to the end", prog)
    t.check(job["bar"] == [600, 600], "the progress bar is full", job["bar"])
    result = d.json(f"/v1/jobs/{job['id']}")["result"]
    rows = wd.js("return window.metalign.charts.job.graph.rawData_")
    t.check(rows == curve_rows([result["curve"]]) and result["episodes"] == 600 and result["dims"] == [0, 1],
            "the job's figure holds the job's result")


def check_network(t, wd, d):
    perf = wd.logs("performance")
    urls, statuses = [], []
    for e in perf:
        m = json.loads(e["message"])["message"]
        if m["method"] == "Network.requestWillBeSent":
            # the requests of the dashboard's document (not the browser's own pages, such as
            # the new-tab page chromium opens before the test navigates)
            if m["params"].get("documentURL", "").startswith(d.origin + "/"):
                urls.append(m["params"]["request"]["url"])
            elif not m["params"].get("documentURL", "").startswith(("chrome:", "about:")):
                urls.append(m["params"]["request"]["url"])
        elif m["method"] == "Network.responseReceived":
            statuses.append((m["params"]["response"]["url"], m["params"]["response"]["status"]))
    outside = [u for u in urls if not u.startswith(d.origin + "/")]
    t.check(urls and not outside, f"all {len(urls)} requests went to the daemon's origin", outside[:10])
    resources = wd.js("return performance.getEntriesByType('resource').map(e => e.name)")
    t.check(resources and all(u.startswith(d.origin + "/") for u in resources),
            "resource timing: nothing loaded from elsewhere", resources[:10])
    t.check(any(u.endswith("/dashboard/dygraph.min.js") for u in urls), "dygraphs came from the daemon")
    not_modified = [u for u, s in statuses if s == 304]
    t.check(len(not_modified) >= 3, f"polling revalidated with ETags: {len(not_modified)} answers were 304",
            statuses[-10:])
    errors = [e for e in wd.logs("browser") if e["level"] in ("SEVERE", "ERROR")]
    t.check(not errors, "no console error", errors[:5])


# ---- the replay panel, against a daemon that has the endpoint ----

REPLAY = {  # shaped as API.md's GET /v1/human/replay answer
    "summary": {"participants": 18, "trials": 1800, "unmatched": 0, "nll": 0.5, "pseudo_r2": 0.21,
                "agreement": 0.8, "baseline": {"nll": 0.6, "pseudo_r2": 0.05, "agreement": 0.7}},
    "by_dimension": [
        {"dimension": 0, "participants": 6, "pseudo_r2": 0.25, "agreement": 0.81,
         "baseline": {"pseudo_r2": 0.04}, "noise_ceiling": {"r": 0.6, "ci_low": 0.5, "ci_high": 0.7}},
        {"dimension": 1, "participants": 6, "pseudo_r2": 0.18, "agreement": 0.79,
         "baseline": {"pseudo_r2": 0.06}, "noise_ceiling": {"r": 0.55, "ci_low": 0.41, "ci_high": 0.66}}],
}


SPOSE_LABELS = ["Metallic/Artificial", "Food-related", "Animal-related"]


class ReplayProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the daemon, but lists GET /v1/human/replay and answers it from REPLAY, and
    makes /v1/info say what a real SPoSE world says (not synthetic, dimension labels)."""
    upstream = ""

    def forward(self):
        if self.path.startswith("/v1/human/replay"):
            return self.answer(200, {"Content-Type": "application/json"}, json.dumps(REPLAY).encode())
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "if-none-match", "content-type")}
        req = urllib.request.Request(self.upstream + self.path, data=body, method=self.command, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                status, h, data = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, h, data = e.code, dict(e.headers), e.read()
        if self.path == "/" and status == 200:
            doc = json.loads(data)
            if "GET /v1/human/replay" not in doc["endpoints"]:
                doc["endpoints"].append("GET /v1/human/replay")
            data = json.dumps(doc).encode()
            h.pop("ETag", None)
        if self.path == "/v1/info" and status == 200:
            doc = json.loads(data)
            doc["data"]["synthetic"] = False
            doc["data"]["dimension_labels"] = SPOSE_LABELS
            data = json.dumps(doc).encode()
            h.pop("ETag", None)
        self.answer(status, h, data)

    def answer(self, status, h, data):
        self.send_response(status)
        for k, v in h.items():
            if k.lower() not in ("content-length", "connection", "date", "server", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = forward

    def log_message(self, *args):
        pass


def check_replay_panel(t, wd, d):
    handler = type("Proxy", (ReplayProxy,), {"upstream": d.origin})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        wd.logs("browser")
        wd.s("POST", "/url", {"url": f"http://127.0.0.1:{proxy.server_address[1]}/dashboard"})
        wd.wait("return !!(window.metalign && window.metalign.ready === true && window.metalign.charts.replay)", 120,
                "the replay panel")
        got = wd.js("return [document.getElementById('replay').hidden, window.metalign.charts.replay.graph.rawData_,"
                    " document.getElementById('replay-summary').textContent, window.metalign.errors]")
        want = [[i, [g["pseudo_r2"]] * 3, [g["baseline"]["pseudo_r2"]] * 3,
                 [g["noise_ceiling"]["ci_low"], g["noise_ceiling"]["r"], g["noise_ceiling"]["ci_high"]]]
                for i, g in enumerate(REPLAY["by_dimension"])]
        t.check(got[0] is False and got[1] == want and "0.210" in got[2] and not got[3],
                "the replay panel appears when the endpoint is listed, with its per-dimension figures", got)
        ticks = wd.js("return Array.from(document.querySelectorAll('#chart-bars .dygraph-axis-label-x')).map(e => e.textContent)")
        t.check(ticks[:3] == [f"({i}) {n}" for i, n in enumerate(SPOSE_LABELS)],
                "on a SPoSE world the bars name dimensions 0-2 as the notebook does", ticks)
        t.check(wd.js("return document.getElementById('synthetic-banner').hidden === true"),
                "no synthetic banner on a world that is not synthetic")
        errors = [e for e in wd.logs("browser") if e["level"] in ("SEVERE", "ERROR")]
        t.check(not errors, "no console error with the replay panel", errors[:5])
    finally:
        proxy.shutdown()
        proxy.server_close()


def main(metalignd, root, build_root, chromium="/usr/bin/chromium", chromedriver="/usr/bin/chromedriver"):
    t = Tap()
    tmp = tempfile.mkdtemp(prefix="metalign-browser-")
    with DemoDaemon(metalignd, root) as d:
        wd = WebDriver(chromium, chromedriver, tmp)
        try:
            wd.s("POST", "/url", {"url": "about:blank"})
            wd.logs("performance")  # drained: only the dashboard's own requests count
            wd.logs("browser")
            wd.s("POST", "/url", {"url": d.url("/dashboard#poll=1")})
            wd.wait("return window.metalign && window.metalign.ready === true", 180, "the first drawing")
            errors = wd.js("return window.metalign.errors")
            t.check(not errors, "the page drew without errors", errors)
            wd.wait("return window.metalign.polls >= 4", 60, "four polling rounds")
            t.run("figures", check_figures, t, wd, d)
            t.run("job", check_job, t, wd, d)
            t.run("network", check_network, t, wd, d)
            shot = base64.b64decode(wd.s("GET", "/screenshot"))
            path = os.path.join(build_root, "dashboard-screenshot.png")
            with open(path, "wb") as f:
                f.write(shot)
            t.check(shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10000, f"screenshot saved: {path}")
            t.run("replay panel", check_replay_panel, t, wd, d)
        finally:
            wd.close()
    return t.done()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
