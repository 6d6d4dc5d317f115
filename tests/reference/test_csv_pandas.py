#!/usr/bin/env python3
"""?format=csv read back with pandas on the demo daemon: every analysis answers a tidy table
that pd.read_csv reads, holding the same numbers as its JSON answer; rows=trials is the
notebook's long table (dimension,trial,correct,participant,model), whose model rows are the
simulated episodes and whose human rows are the human CSV's rows with trial <= max_trial, so
the notebook's sns.lineplot(x="trial", y="correct", hue="model") (seaborn's mean per trial and
hue, recomputed here with pandas) gives the JSON curves; the GET forms answer as the POST
bodies do, with the same validation messages. Prints TAP.

Usage: test_csv_pandas.py METALIGND SOURCE_ROOT
"""
import io
import json
import math
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from demo_daemon import DemoDaemon, Tap  # noqa: E402


def close(a, b, tol=1e-12):
    a = np.asarray([np.nan if x is None else x for x in a], dtype=float)
    b = np.asarray([np.nan if x is None else x for x in b], dtype=float)
    return a.shape == b.shape and bool(np.all((np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= tol)))


def csv(d, path, headers=None):
    st, h, b = d.get(path, headers=headers)
    if st != 200 or not h.get("content-type", "").startswith("text/csv"):
        raise AssertionError(f"{path}: {st} {h.get('content-type')}: {b[:200]!r}")
    return pd.read_csv(d.url(path)) if headers is None else pd.read_csv(io.BytesIO(b))


def test_cka(t, d):
    for q in ("", "?dims=0,1,2&ci=true&n_boot=100&debiased=true"):
        sep = "&" if q else "?"
        doc = d.json("/v1/cka" + q)
        df = csv(d, "/v1/cka" + q + sep + "format=csv")
        entries = [doc["baseline"]] + doc["layers"]
        t.check(list(df.columns) == ["name", "kind", "layer", "dims", "cka", "cka_debiased", "ci_low", "ci_high"],
                f"cka{q}: columns", list(df.columns))
        t.check(list(df.name) == [e["name"] for e in entries] and close(df.cka, [e["cka"] for e in entries]),
                f"cka{q}: one row per representation with the JSON's CKA")
        t.check(df.kind.iloc[0] == "baseline" and math.isnan(df.layer.iloc[0]) and
                list(df.layer.iloc[1:]) == list(range(len(doc["layers"]))), f"cka{q}: baseline, then layers 0..")
        if "ci" in doc:
            t.check(close(df.ci_low, [e["ci_low"] for e in entries]) and close(df.ci_high, [e["ci_high"] for e in entries])
                    and close(df.cka_debiased, [e["cka_debiased"] for e in entries]), f"cka{q}: intervals and debiased")
    m = d.json("/v1/cka/matrix")
    df = csv(d, "/v1/cka/matrix?format=csv")
    lin = df.pivot(index="a", columns="b", values="linear").loc[m["names"], m["names"]].to_numpy()
    t.check(close(lin.ravel(), np.asarray(m["linear"]).ravel()), "cka/matrix: the pairs hold the matrix")


def test_activations(t, d):
    doc = d.json("/v1/activations", "POST", '{"items": [0, "syn_0002", 17], "layers": ["embedding", "layer_1"]}')
    df = csv(d, "/v1/activations?items=0,syn_0002,17&layers=embedding,layer_1&format=csv")
    ok = True
    for layer in doc["layers"]:
        sub = df[df.layer == layer["name"]].pivot(index="position", columns="unit", values="value")
        ok &= close(sub.to_numpy().ravel(), np.asarray(layer["data"]).ravel(), 1e-9)
    lg = df[df.layer == "logit"].sort_values("position").value
    t.check(ok and close(lg, doc["logits"], 1e-9) and list(df[df.layer == "logit"].id) == doc["ids"],
            "activations: the long table holds the JSON's activations and logits")


def test_curves(t, d):
    q = "episodes=60&seq_len=30&seed=3&dims=0,1,2"
    doc = d.json(f"/v1/learning-curves?{q}&include_episodes=true")
    df = csv(d, f"/v1/learning-curves?{q}&include_episodes=true&format=csv")
    t.check(list(df.columns) == ["model", "dimension", "trial", "p_correct", "ci_low", "ci_high", "n"],
            "learning curves: curve columns")
    all_ = df[df.dimension.isna()]
    t.check(close(all_.p_correct, doc["curve"]["p_correct"]) and close(all_.ci_low, doc["curve"]["ci_low"])
            and set(df.model) == {"Meta-Learned"}, "learning curves: the overall rows are the JSON curve")
    ok = all(close(df[df.dimension == g["dimension"]].p_correct, g["curve"]["p_correct"]) for g in doc["by_dimension"])
    t.check(ok, "learning curves: the rows of each dimension are its JSON curve")
    long = csv(d, f"/v1/learning-curves?{q}&include_episodes=true&rows=trials")
    t.check(list(long.columns) == ["dimension", "trial", "correct", "participant", "model"] and
            len(long) == 60 * 30, "rows=trials: the notebook's columns, one row per trial", list(long.columns))
    want = [(e["dimension"], t_, c, e["episode"]) for e in doc["episodes_detail"] for t_, c in enumerate(e["correct"])]
    got = list(zip(long.dimension, long.trial, long.correct, long.participant))
    t.check(got == want, "rows=trials: every episode's trials, as the JSON's episodes_detail")
    mean = long.groupby("trial").correct.mean()
    t.check(close(mean, doc["curve"]["p_correct"]), "rows=trials: the mean per trial is the curve")


def human_rows(d, max_trial):
    h = pd.read_csv(d.csv_path)
    h = h[h.trial <= max_trial]
    h = h[h.correct.notna()]
    return [(int(a), int(b), int(bool(c) if not isinstance(c, str) else c == "True"), str(p))
            for a, b, c, p in zip(h.dimension, h.trial, h.correct, h.participant)]


def test_compare(t, d):
    q = "episodes=48&seq_len=40&seed=2"
    doc = d.json(f"/v1/compare/learning-curves?{q}")
    all_data = csv(d, f"/v1/compare/learning-curves?{q}&rows=trials")
    t.check(list(all_data.columns) == ["dimension", "trial", "correct", "participant", "model"],
            "compare rows=trials: the notebook's columns")
    model, human = all_data[all_data.model == "Meta-Learned"], all_data[all_data.model == "Human"]
    t.check(len(model) == 48 * 40, "compare rows=trials: the model's episodes x trials")
    got = list(zip(human.dimension, human.trial, human.correct, human.participant.astype(str)))
    t.check(got == human_rows(d, doc["max_trial"]), "compare rows=trials: the human CSV's rows with "
            "trial <= max_trial, participants as named there")
    # sns.lineplot(data=all_data, x="trial", y="correct", hue="model") plots these means
    plotted = all_data.groupby(["model", "trial"]).correct.mean()
    t.check(close(plotted["Meta-Learned"], doc["overall"]["model"]["p_correct"]) and
            close(plotted["Human"].reindex(range(doc["trials_compared"])), doc["overall"]["human"]["p_correct"]),
            "the notebook's sns.lineplot on the long table draws the comparison's curves")
    per_dim = all(close(all_data[(all_data.model == "Meta-Learned") & (all_data.dimension == g["dimension"])]
                        .groupby("trial").correct.mean(), g["model"]["p_correct"]) for g in doc["by_dimension"])
    t.check(per_dim, "the facet grid (per dimension) too")
    bars = csv(d, f"/v1/compare/learning-curves?{q}&rows=summary")
    ok = True
    for side, key in (("Meta-Learned", "model"), ("Human", "human")):
        for g in doc["by_dimension"]:
            row = bars[(bars.model == side) & (bars.dimension == g["dimension"])].iloc[0]
            b = g["bars"][key]
            ok &= close([row.mean_p_correct, row.ci_low, row.ci_high], [b["mean"], b["ci_low"], b["ci_high"]])
            sub = all_data[(all_data.model == side) & (all_data.dimension == g["dimension"])]
            if side == "Human":
                sub = sub[sub.trial < doc["trials_compared"]]
            ok &= close([sub.correct.mean()], [b["mean"]]) and row.n == len(sub)
    t.check(ok, "rows=summary: the bar plot, each bar the mean of the long table's rows (sns.barplot)")
    curves = csv(d, f"/v1/compare/learning-curves?{q}&format=csv")
    t.check(close(curves[(curves.model == "Human") & curves.dimension.isna()].p_correct,
                  doc["overall"]["human"]["p_correct"]), "compare format=csv: both sides' curves")
    h = d.json("/v1/human/learning-curves")
    hc = csv(d, "/v1/human/learning-curves?format=csv")
    t.check(close(hc[hc.dimension.isna()].p_correct, h["curve"]["p_correct"]) and
            close(hc[hc.dimension.isna()].n, h["curve"]["n"]), "human curves format=csv")
    ht = csv(d, "/v1/human/learning-curves?rows=trials&max_trial=50")
    t.check(list(zip(ht.dimension, ht.trial, ht.correct, ht.participant.astype(str))) == human_rows(d, 50),
            "human rows=trials: the CSV's rows with trial <= max_trial")


def test_negotiation(t, d):
    st, h, a = d.get("/v1/cka?dims=0,1", headers={"Accept": "text/csv"})
    _, _, b = d.get("/v1/cka?dims=0,1&format=csv")
    t.check(st == 200 and h["content-type"].startswith("text/csv") and a == b, "Accept: text/csv is format=csv")
    st, h, _ = d.get("/v1/cka?dims=0,1", headers={"Accept": "text/csv;q=0.5, application/json"})
    t.check(h["content-type"].startswith("application/json"), "Accept preferring JSON gets JSON")
    # the cache keys differ by format: the same request alternately as JSON and CSV
    seq = [d.get(f"/v1/learning-curves?episodes=9&seq_len=7{s}")[1]["content-type"] for s in ("", "&format=csv", "", "&rows=trials")]
    t.check([x.split(";")[0] for x in seq] == ["application/json", "text/csv", "application/json", "text/csv"],
            "the result cache keeps JSON and CSV answers apart", seq)
    for path, code in (("/v1/cka?format=xml", 400), ("/v1/cka?rows=trials", 400),
                       ("/v1/learning-curves?format=json&rows=trials", 400),
                       ("/v1/learning-curves?rows=summary", 400)):
        st, _, b = d.get(path)
        t.check(st == code and b"error" in b, f"{path}: {code}", b[:200])


def test_get_forms(t, d):
    pairs = [("/v1/learning-curves?episodes=10&seq_len=8&seed=4&dims=1,2&standardize=false&n_boot=50",
              {"episodes": 10, "seq_len": 8, "seed": 4, "dims": [1, 2], "standardize": False, "n_boot": 50}),
             ("/v1/learning-curves?dims=all&episodes=16&seq_len=5", {"dims": "all", "episodes": 16, "seq_len": 5}),
             ("/v1/activations?items=3,syn_0009&mode=sequence&labels=1,0&layers=layer_0&standardize=true",
              {"items": [3, "syn_0009"], "mode": "sequence", "labels": [1, 0], "layers": ["layer_0"], "standardize": True}),
             ("/v1/activations?items=5&encoding=base64", {"items": [5], "encoding": "base64"})]
    for get, body in pairs:
        path = get.split("?")[0]
        a = d.get(get)
        b = d.get(path, "POST", json.dumps(body))
        t.check(a[0] == 200 and a[2] == b[2], f"GET {get} answers as POST {json.dumps(body)}", a[2][:200])
    bad = [("episodes=12.5", {"episodes": 12.5}), ("episodes=0", {"episodes": 0}), ("episodes=x", {"episodes": "x"}),
           ("dims=0,99", {"dims": [0, 99]}), ("dims=", {"dims": []}), ("standardize=maybe", {"standardize": "maybe"}),
           ("seq_len=100000", {"seq_len": 100000}), ("dims=0,a", {"dims": [0, "a"]})]
    for q, body in bad:
        a = d.get("/v1/learning-curves?" + q)
        b = d.get("/v1/learning-curves", "POST", json.dumps(body))
        t.check(a[0] == b[0] == 400 and a[2] == b[2], f"GET ?{q} is refused as the POST body is", (a[2], b[2]))
    for q, body in [("items=", {"items": []}), ("items=0,nope", {"items": [0, "nope"]}), ("mode=parallel&items=1", {"items": [1], "mode": "parallel"}),
                    ("items=1&layers=layer_99", {"items": [1], "layers": ["layer_99"]}), ("items=1&labels=0", {"items": [1], "labels": [0]})]:
        a = d.get("/v1/activations?" + q)
        b = d.get("/v1/activations", "POST", json.dumps(body))
        t.check(a[0] == b[0] == 400 and a[2] == b[2], f"GET activations ?{q} is refused as the POST body is", (a[2], b[2]))
    st, _, b = d.get("/v1/learning-curves?episodes=5&async=true")
    t.check(st == 400 and b"POST" in b, "GET never starts a job (async needs POST)", b)
    st, _, b = d.get("/v1/learning-curves?episodes=5", "GET", "{}")
    t.check(st == 400 and b"body" in b, "a GET with a body is refused", b)
    st, _, b = d.get("/v1/learning-curves?episodes=5", "POST", "{}")
    t.check(st == 400 and b"unknown query argument" in b, "a POST takes its fields in the body only", b)


def main(metalignd, root):
    t = Tap()
    with DemoDaemon(metalignd, root) as d:
        for name, fn in (("cka", test_cka), ("activations", test_activations), ("curves", test_curves),
                         ("compare", test_compare), ("negotiation", test_negotiation), ("get forms", test_get_forms)):
            t.run(name, fn, t, d)
    return t.done()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
