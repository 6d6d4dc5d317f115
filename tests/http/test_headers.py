#!/usr/bin/env python3
"""ETag, If-None-Match -> 304, Cache-Control and CORS on the demo daemon, with CORS off (the
default) and on (--cors-origin), over raw HTTP (urllib). Prints TAP.

Usage: test_headers.py METALIGND SOURCE_ROOT
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from demo_daemon import DemoDaemon, Tap  # noqa: E402

ORIGIN = "http://notebook.example:8888"
GETS = ["/", "/healthz", "/readyz", "/metrics", "/v1/info", "/v1/items?limit=2", "/dashboard",
        "/dashboard/dygraph.min.js", "/openapi.json", "/v1/cka", "/v1/cka?format=csv",
        "/v1/cka/matrix", "/v1/activations?items=1,2", "/v1/learning-curves?episodes=8&seq_len=6",
        "/v1/learning-curves?episodes=8&seq_len=6&rows=trials", "/v1/human/learning-curves",
        "/v1/compare/learning-curves?episodes=8&seq_len=20"]


def cors_headers(h):
    return {k: v for k, v in h.items() if k.startswith("access-control-")}


def test_etags(t, d):
    for path in GETS:
        d.get(path)  # the first answers differ (the human data is downloaded, caches fill)
    for path in GETS:
        st, h, body = d.get(path)
        etag = h.get("etag", "")
        t.check(st == 200 and etag.startswith('"') and len(etag) == 66, f"GET {path}: a strong ETag", h)
        t.check(h.get("cache-control") == "no-cache", f"GET {path}: Cache-Control: no-cache", h.get("cache-control"))
        if path == "/metrics":
            continue  # counts this very request: never the same twice
        st2, h2, b2 = d.get(path, headers={"If-None-Match": etag})
        t.check(st2 == 304 and b2 == b"" and h2.get("etag") == etag, f"GET {path} with its ETag: 304, no body", (st2, b2[:80]))
        st3, _, b3 = d.get(path, headers={"If-None-Match": '"0000", W/' + etag})
        t.check(st3 == 304, f"GET {path}: a list with the weak form of the ETag matches", st3)
        st4, _, b4 = d.get(path, headers={"If-None-Match": '"stale"'})
        t.check(st4 == 200 and b4 == body, f"GET {path}: another ETag gets the body")
    st, h, _ = d.get("/v1/info", headers={"If-None-Match": "*"})
    t.check(st == 304, "If-None-Match: * matches", st)
    st, h, _ = d.get("/v1/info", "HEAD")
    t.check(st == 200 and h.get("etag"), "HEAD carries the ETag")
    a = d.get("/v1/cka?dims=0,1")[1]["etag"]
    b = d.get("/v1/cka?dims=0,1&format=csv")[1]["etag"]
    t.check(a != b, "JSON and CSV of one analysis have different ETags")
    st, h, _ = d.get("/v1/learning-curves", "POST", '{"episodes": 8, "seq_len": 6}')
    t.check(st == 200 and "etag" not in h, "a POST answer has no ETag", h)
    st, h, _ = d.get("/v1/cka?bad=1")
    t.check(st == 400 and "etag" not in h, "an error has no ETag")
    job = d.json("/v1/learning-curves?async=true", "POST", '{"episodes": 30, "seq_len": 10}', status=202)
    # a finished job's status no longer changes: polling it is 304 from then on
    deadline = time.monotonic() + 120  # a bound in time, not in polls: a loaded machine is slow
    while True:
        st, h, body = d.get(job["status_url"])
        if b'"done"' in body or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    t.check(b'"done"' in body, "the job finished", body[:200])
    st2, _, _ = d.get(job["status_url"], headers={"If-None-Match": h["etag"]})
    t.check(st2 == 304, "a finished job polled with its ETag: 304", st2)
    st, h, _ = d.get("/dashboard")
    t.check("default-src 'self'" in h.get("content-security-policy", ""), "the dashboard may load its own origin only", h)
    st, h, _ = d.get("/dashboard/")
    t.check(st == 301 and h.get("location") == "/dashboard", "/dashboard/ moves to /dashboard", (st, h))
    st, _, _ = d.get("/dashboard/nosuch.js")
    t.check(st == 404, "an unknown dashboard file: 404")
    st, _, _ = d.get("/dashboard/openapi.json")
    t.check(st == 404, "the dashboard folder serves only scripts and styles")


def test_cors_off(t, d):
    for path in ("/v1/info", "/v1/cka"):
        st, h, _ = d.get(path, headers={"Origin": ORIGIN})
        t.check(st == 200 and not cors_headers(h) and h.get("vary") == "Accept",
                f"CORS off: GET {path} from an origin has no CORS header", h)
    st, h, _ = d.get("/v1/learning-curves", "OPTIONS", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    t.check(st == 204 and not cors_headers(h) and h.get("allow") == "GET, POST, OPTIONS",
            "CORS off: a preflight gets 204 with Allow and no CORS header", (st, h))
    st, _, _ = d.get("/nowhere", "OPTIONS")
    t.check(st == 404, "OPTIONS on an unknown path: 404")


def test_cors_on(t, d):
    st, h, _ = d.get("/v1/info", headers={"Origin": ORIGIN})
    t.check(st == 200 and h.get("access-control-allow-origin") == ORIGIN and "Origin" in h.get("vary", "")
            and "ETag" in h.get("access-control-expose-headers", ""),
            "CORS on: the origin is allowed, Vary: Origin, the ETag exposed", h)
    st, h, _ = d.get("/v1/info", headers={"Origin": "http://evil.example"})
    t.check(st == 200 and "access-control-allow-origin" not in h and "Origin" in h.get("vary", ""),
            "CORS on: another origin gets no Access-Control-Allow-Origin", h)
    st, h, _ = d.get("/v1/info")
    t.check("access-control-allow-origin" not in h, "CORS on: no Origin, no CORS header")
    st, h, _ = d.get("/v1/learning-curves", "OPTIONS",
                     headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                              "Access-Control-Request-Headers": "content-type, if-none-match"})
    ok = (st == 204 and h.get("access-control-allow-origin") == ORIGIN and
          h.get("access-control-allow-methods") == "GET, POST, OPTIONS" and
          "If-None-Match" in h.get("access-control-allow-headers", "") and
          "Content-Type" in h.get("access-control-allow-headers", "") and h.get("access-control-max-age"))
    t.check(ok, "CORS on: a preflight gets the methods, headers and max-age", (st, h))
    st, h, _ = d.get("/v1/jobs/abc", "OPTIONS", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"})
    t.check(st == 204 and h.get("access-control-allow-methods") == "GET, DELETE, OPTIONS", "a preflight for a job", h)
    st, h, _ = d.get("/v1/info", "OPTIONS", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    t.check(st == 204 and not cors_headers(h), "a preflight from another origin gets no CORS header", h)
    st, h, _ = d.get("/v1/cka?nope=1", headers={"Origin": ORIGIN})
    t.check(st == 400 and h.get("access-control-allow-origin") == ORIGIN, "errors carry CORS too (the page can read them)")


def test_bad_origin(t, metalignd, root):
    for bad in ("*", "notebook.example", "http://a.example/", "http://a.example/path", "ftp://a.example"):
        r = subprocess.run([metalignd, "--config", os.path.join(root, "config", "demo.json"),
                            "--cors-origin", bad, "--check"], capture_output=True, text=True, timeout=60)
        t.check(r.returncode != 0 and "--cors-origin" in r.stderr, f"--cors-origin {bad!r} is refused at start-up",
                r.stderr[-300:])


def main(metalignd, root):
    t = Tap()
    with DemoDaemon(metalignd, root) as d:
        t.run("etags", test_etags, t, d)
        t.run("cors off", test_cors_off, t, d)
    with DemoDaemon(metalignd, root, ["--cors-origin", ORIGIN]) as d:
        t.run("cors on", test_cors_on, t, d)
    t.run("bad origin", test_bad_origin, t, metalignd, root)
    return t.done()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
