#!/usr/bin/env python3
"""GET /openapi.json on the demo daemon: the document is OpenAPI 3.1 in shape (required
fields, every $ref resolves, no placeholder left), describes every route of the daemon's
endpoint list (GET /) and nothing else, states limits the daemon enforces (one past each
documented maximum is refused), and every endpoint's live answers validate against the
schemas it gives (a small JSON Schema validator below: jsonschema is not a Debian package
here). Prints TAP.

Usage: test_openapi.py METALIGND SOURCE_ROOT
"""
import json
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from demo_daemon import DemoDaemon, Tap  # noqa: E402

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# ---- a JSON Schema (2020-12 subset) validator: what the document uses ----

def resolve(doc, ref):
    if not ref.startswith("#/"):
        raise KeyError(f"not a local reference: {ref}")
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def type_ok(v, t):
    return {"null": v is None, "boolean": isinstance(v, bool),
            "integer": isinstance(v, int) and not isinstance(v, bool),
            "number": isinstance(v, (int, float)) and not isinstance(v, bool),
            "string": isinstance(v, str), "array": isinstance(v, list),
            "object": isinstance(v, dict)}[t]


def validate(doc, schema, v, path="$"):
    """The first problem found, or None."""
    if "$ref" in schema:
        p = validate(doc, resolve(doc, schema["$ref"]), v, path)
        if p:
            return p
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(type_ok(v, x) for x in types):
            return f"{path}: {json.dumps(v)[:80]} is not of type {t}"
    if "const" in schema and v != schema["const"]:
        return f"{path}: {v!r} is not {schema['const']!r}"
    if "enum" in schema and v not in schema["enum"]:
        return f"{path}: {v!r} is not one of {schema['enum']}"
    if type_ok(v, "number"):
        if "minimum" in schema and v < schema["minimum"]:
            return f"{path}: {v} < minimum {schema['minimum']}"
        if "maximum" in schema and v > schema["maximum"]:
            return f"{path}: {v} > maximum {schema['maximum']}"
    if isinstance(v, list):
        if len(v) < schema.get("minItems", 0) or len(v) > schema.get("maxItems", len(v)):
            return f"{path}: {len(v)} items, outside minItems/maxItems"
        if "items" in schema:
            for i, x in enumerate(v):
                p = validate(doc, schema["items"], x, f"{path}[{i}]")
                if p:
                    return p
    if isinstance(v, dict):
        for k in schema.get("required", []):
            if k not in v:
                return f"{path}: required member {k!r} is missing"
        props = schema.get("properties", {})
        for k, x in v.items():
            if k in props:
                p = validate(doc, props[k], x, f"{path}.{k}")
                if p:
                    return p
            elif schema.get("additionalProperties") is False:
                return f"{path}: member {k!r} is not allowed"
    for s in schema.get("allOf", []):
        p = validate(doc, s, v, path)
        if p:
            return p
    if "anyOf" in schema and all(validate(doc, s, v, path) for s in schema["anyOf"]):
        return f"{path}: matches none of anyOf"
    if "oneOf" in schema:
        n = sum(1 for s in schema["oneOf"] if not validate(doc, s, v, path))
        if n != 1:
            return f"{path}: {json.dumps(v)[:80]} matches {n} of oneOf, not exactly one"
    return None


# ---- the document's structure ----

def refs(node, out):
    if isinstance(node, dict):
        if "$ref" in node:
            out.append(node["$ref"])
        for v in node.values():
            refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def strings(node, out):
    if isinstance(node, dict):
        for v in node.values():
            strings(v, out)
    elif isinstance(node, list):
        for v in node:
            strings(v, out)
    elif isinstance(node, str):
        out.append(node)


def route_path(endpoint):
    """'GET /v1/jobs/<id>' -> ('get', '/v1/jobs/{}') with a generic template slot."""
    method, path = endpoint.split(" ", 1)
    return method.lower(), path.replace("<id>", "{}")


def template(p):
    return re.sub(r"\{[^}]+\}", "{}", p)


def check_structure(t, doc, endpoints):
    t.check(doc.get("openapi") == "3.1.0", "openapi is 3.1.0")
    info = doc.get("info", {})
    t.check(isinstance(info.get("title"), str) and isinstance(info.get("version"), str),
            "info has title and version")
    t.check(isinstance(doc.get("paths"), dict) and doc["paths"], "paths is a non-empty object")
    all_refs = []
    refs(doc, all_refs)
    bad = []
    for r in all_refs:
        try:
            resolve(doc, r)
        except (KeyError, TypeError) as e:
            bad.append(f"{r}: {e}")
    t.check(all_refs and not bad, f"every $ref resolves ({len(all_refs)} of them)", bad)
    left = [s for s in (lambda o: (strings(doc, o), o)[1])([]) if "${" in s]
    t.check(not left, "no placeholder is left unfilled", left[:5])
    ops = {}
    problems = []
    for p, item in doc["paths"].items():
        declared = set(re.findall(r"\{([^}]+)\}", p))
        for m, op in item.items():
            if m not in METHODS:
                continue
            ops[(m, template(p))] = op
            if not isinstance(op.get("responses"), dict) or not op["responses"]:
                problems.append(f"{m} {p}: no responses")
            if not op.get("operationId"):
                problems.append(f"{m} {p}: no operationId")
            for prm in op.get("parameters", []):
                prm = resolve(doc, prm["$ref"]) if "$ref" in prm else prm
                if "name" not in prm or prm.get("in") not in ("query", "path", "header", "cookie"):
                    problems.append(f"{m} {p}: a parameter without name/in")
                if prm.get("in") == "path":
                    declared.discard(prm["name"])
                    if prm.get("required") is not True:
                        problems.append(f"{m} {p}: path parameter {prm['name']} not required")
            for code, r in op["responses"].items():
                r = resolve(doc, r["$ref"]) if "$ref" in r else r
                if "description" not in r:
                    problems.append(f"{m} {p} {code}: a response without description")
        if declared:
            problems.append(f"{p}: path parameters {declared} have no parameter object")
    t.check(not problems, "every operation has an id, responses with descriptions, parameters "
            "with name and in, its path parameters declared", problems[:10])
    routes = {route_path(e) for e in endpoints}
    t.check(routes <= set(ops), f"every one of the {len(routes)} routes is in the document",
            sorted(routes - set(ops)))
    t.check(set(ops) <= routes, "the document has no path the daemon does not serve",
            sorted(set(ops) - routes))
    return ops


def documented_maximums(doc, ops):
    """(method, path, argument name, maximum) for every integer query argument of a GET."""
    out = []
    for (m, p), op in ops.items():
        if m != "get" or "{" in p:
            continue
        for prm in op.get("parameters", []):
            prm = resolve(doc, prm["$ref"]) if "$ref" in prm else prm
            s = prm.get("schema", {})
            if prm.get("in") == "query" and s.get("type") == "integer" and "maximum" in s:
                out.append((p, prm["name"], s["maximum"], s.get("minimum")))
    return out


def check_limits(t, d, doc, ops):
    problems, n = [], 0
    for p, name, mx, mn in documented_maximums(doc, ops):
        for v in ([mx + 1] + ([mn - 1] if mn is not None else [])):
            st, _, body = d.get(f"{p}?{name}={v}")
            n += 1
            if st != 400 or str(mx if v > mx else mn) not in body.decode():
                problems.append(f"{p}?{name}={v}: {st} {body[:160]!r}")
    t.check(n > 10 and not problems, f"the daemon refuses one past each of the {n} documented "
            "bounds, and names the bound", problems[:10])
    lim = doc["components"]["schemas"]["LearningCurvesRequest"]["x-limits"]
    episodes = doc["components"]["schemas"]["LearningCurvesRequest"]["properties"]["episodes"]["maximum"]
    body = json.dumps({"episodes": episodes, "seq_len": lim["max_trials"] // episodes + 1})
    st, _, b = d.get("/v1/learning-curves", "POST", body)
    t.check(st == 400 and str(lim["max_trials"]) in b.decode(), "x-limits.max_trials is the "
            "daemon's limit on episodes x seq_len", b[:200])


# ---- live answers ----

def op_for(ops, method, path):
    p = urllib.parse.urlsplit(path).path
    for (m, tp), op in ops.items():
        if m == method.lower() and re.fullmatch(re.escape(tp).replace(r"\{\}", "[^/]+"), p):
            return op
    return None


def check_answers(t, d, doc, ops):
    job = d.json("/v1/learning-curves?async=true", "POST", '{"episodes": 40, "seq_len": 20}', status=202)
    cases = [
        ("GET", "/", None), ("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/metrics", None),
        ("GET", "/dashboard", None), ("GET", "/dashboard/dygraph.min.js", None), ("GET", "/openapi.json", None),
        ("GET", "/v1/info", None), ("GET", "/v1/items?offset=1&limit=3", None),
        ("GET", "/v1/activations?items=0,3&layers=embedding,layer_0", None),
        ("GET", "/v1/activations?items=0&encoding=base64", None),
        ("GET", "/v1/activations?items=1,2&format=csv", None),
        ("POST", "/v1/activations", '{"items": [1, 2], "mode": "sequence", "labels": [0, 1]}'),
        ("GET", "/v1/cka", None), ("GET", "/v1/cka?dims=0,1,2&ci=true&n_boot=50&debiased=true", None),
        ("GET", "/v1/cka?format=csv", None), ("GET", "/v1/cka/matrix", None), ("GET", "/v1/cka/matrix?format=csv", None),
        ("GET", "/v1/learning-curves?episodes=12&seq_len=10&dims=0,1", None),
        ("GET", "/v1/learning-curves?episodes=6&seq_len=5&include_episodes=true&n_boot=0", None),
        ("GET", "/v1/learning-curves?episodes=12&seq_len=10&rows=trials", None),
        ("POST", "/v1/learning-curves", '{"episodes": 12, "seq_len": 10}'),
        ("POST", "/v1/learning-curves?async=true", '{"episodes": 12, "seq_len": 11}'),
        ("GET", job["status_url"], None),
        ("DELETE", job["status_url"], None),
        ("GET", "/v1/human/learning-curves", None), ("GET", "/v1/human/learning-curves?format=csv", None),
        ("POST", "/v1/human/refresh", None),
        ("GET", "/v1/human/replay?n_boot=50", None), ("GET", "/v1/human/replay?n_boot=0&format=csv", None),
        ("GET", "/v1/human/replay?n_boot=0&include_trials=true", None),
        ("GET", "/v1/human/replay?n_boot=0&include_trials=true&format=csv", None),
        ("GET", "/v1/human/replay?async=true&n_boot=0&seed=3", None),
        ("GET", "/v1/human/replay?temperature=hot", None),
        ("GET", "/v1/compare/learning-curves?episodes=12&seq_len=20", None),
        ("GET", "/v1/compare/learning-curves?episodes=12&seq_len=20&rows=summary", None),
        ("GET", "/v1/cka?nope=1", None), ("GET", "/v1/jobs/nosuchjob", None),
        ("POST", "/v1/learning-curves", '{"episodes": 0}'),
    ]
    covered = set()
    for method, path, body in cases:
        st, h, b = d.get(path, method, body)
        op = op_for(ops, method, path)
        label = f"{method} {path}: {st}"
        if not t.check(op is not None, f"{method} {path} is documented"):
            continue
        covered.add(op["operationId"])
        resp = op["responses"].get(str(st))
        if not t.check(resp is not None, f"{label} is a documented status", sorted(op["responses"])):
            continue
        resp = resolve(doc, resp["$ref"]) if "$ref" in resp else resp
        ctype = h.get("content-type", "").split(";")[0]
        content = resp.get("content", {})
        if not t.check(ctype in content, f"{label}: {ctype} is a documented content type", sorted(content)):
            continue
        if ctype == "application/json":
            problem = validate(doc, content[ctype]["schema"], json.loads(b))
            t.check(problem is None, f"{label}: the answer validates", problem)
        elif ctype == "text/csv":
            header = b.decode().split("\n", 1)[0]
            desc = content[ctype]["schema"].get("description", "")
            t.check(header in desc, f"{label}: its columns ({header}) are the documented ones", desc)
    every = {op["operationId"] for op in ops.values()}
    t.check(covered == every, "every operation was called", sorted(every - covered))


def main(metalignd, root):
    t = Tap()
    with DemoDaemon(metalignd, root) as d:
        st, h, b = d.get("/openapi.json")
        t.check(st == 200 and h["content-type"].startswith("application/json"), "GET /openapi.json")
        doc = json.loads(b)
        endpoints = d.json("/")["endpoints"]
        ops = check_structure(t, doc, endpoints)
        t.run("limits", check_limits, t, d, doc, ops)
        t.run("answers", check_answers, t, d, doc, ops)
        t.check(validate(doc, {"type": "integer"}, 1.5) and validate(doc, {"type": "integer"}, True)
                and not validate(doc, {"oneOf": [{"const": "all"}, {"type": "array"}]}, "all"),
                "the validator itself refuses what it must")
    return t.done()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
