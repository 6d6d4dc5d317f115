#!/usr/bin/python3
"""GET /v1/human/replay's tables read as a researcher would (pandas), and its figures rebuilt
from them independently of the C reductions: prints TAP.

The demo daemon (config/demo.json) is started with tests/fixtures/human/synthetic.csv served
over loopback as the human data (its images name demo items and one unknown concept). Then:
  - pd.read_csv of the trial table (include_trials=true&format=csv) and of the participant
    table (format=csv): headers, one row per replayed trial / per participant sequence,
    dtypes pandas infers, undefined figures read as NaN;
  - per participant, from the trial rows alone: nll_t1 = -sum log p(choice) at T = 1 from the
    logits, the temperature refitted by scipy (bounded minimisation of the NLL over log T in
    [-4.6, 4.6]) and the NLL at it, pseudo_r2, agreement (p_model > 0.5 == choice), the
    model's accuracy, the humans' accuracy; against the participant table and the JSON;
  - the pooled summary (sums of NLL, shares of trials) and the per-dimension, per-trial curves
    of the humans and the model (groupby means of `correct` and `model_correct`) against the
    JSON's curves.
Skips (TAP) when pandas or scipy is missing.

Usage: tests/reference/check_replay_csv.py METALIGND SOURCE_ROOT
"""
import io
import json
import math
import os
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from demo_daemon import DemoDaemon  # noqa: E402

try:
    import numpy as np
    import pandas as pd
    from scipy.optimize import minimize_scalar
except ImportError as e:  # pragma: no cover
    print("1..0 # SKIP pandas/scipy not available: %s" % e)
    sys.exit(0)

LOG_T = (-4.6, 4.6)
checks = []


def check(ok, what):
    checks.append((bool(ok), what))


def close(a, b, tol=1e-9):
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or \
            (isinstance(b, float) and math.isnan(b)):
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return abs(a - b) <= tol * max(1.0, abs(b))


def nll_at(z, choice, T):
    """-sum log p(choice) with p = sigmoid(z / T), computed stably."""
    s = np.where(choice == 1, 1.0, -1.0) * z / T
    return float(np.sum(np.logaddexp(0.0, -s)))


def fit_temperature(z, choice):
    r = minimize_scalar(lambda lt: nll_at(z, choice, math.exp(lt)), bounds=LOG_T,
                        method="bounded", options={"xatol": 1e-10})
    best = min([(r.fun, r.x), (nll_at(z, choice, math.exp(LOG_T[0])), LOG_T[0]),
                (nll_at(z, choice, math.exp(LOG_T[1])), LOG_T[1])])
    return math.exp(best[1]), best[0]


def fetch(base, path):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + path, timeout=120) as r:
        return r.read()


def compare(base):
    q = "/v1/human/replay?n_boot=0&seed=0"
    doc = json.loads(fetch(base, q + "&include_trials=true"))
    trials = pd.read_csv(io.BytesIO(fetch(base, q + "&include_trials=true&format=csv")))
    people = pd.read_csv(io.BytesIO(fetch(base, q + "&format=csv")))
    # the digits are the shortest that read back exactly; pandas' default float parser may
    # miss the last bit, its round-trip one does not
    exact = pd.read_csv(io.BytesIO(fetch(base, q + "&format=csv")), float_precision="round_trip")
    check(list(trials.columns) == ["participant", "dimension", "trial", "image", "label",
                                   "choice", "correct", "logit", "p_model", "p_choice",
                                   "model_correct", "baseline_logit", "p_baseline",
                                   "baseline_correct"], "trial table header")
    check(len(trials) == doc["summary"]["trials"] == len(doc["trials"]),
          "one trial row per replayed trial (%d)" % len(trials))
    check(len(people) == len(doc["participants"]), "one row per participant sequence")
    check(np.allclose(people["nll"], exact["nll"], rtol=1e-15, atol=0),
          "pandas' default float parser reads the figures to the last digit or so")
    check(all(trials[c].dtype.kind in "if" for c in ["logit", "p_model", "p_choice"]),
          "numeric columns read as numbers")
    check(people["participant"].dtype == object, "participant ids read as strings")
    by_name = {(p["participant"], p["dimension"]): p for p in doc["participants"]}
    worst = 0.0
    for (name, dim), g in trials.groupby(["participant", "dimension"], sort=False):
        p = by_name[(name, dim)]
        row = exact[(exact.participant == name) & (exact.dimension == dim)].iloc[0]
        z = g["logit"].to_numpy(float)
        c = g["choice"].to_numpy(int)
        lab = g["label"].to_numpy(int)
        n = len(g)
        T, nll = fit_temperature(z, c)
        nll1 = nll_at(z, c, 1.0)
        # logits carry 9 digits: the refit agrees to what they hold
        ok = close(nll1, p["nll_t1"], 1e-6) and close(nll, p["nll"], 1e-6) and \
            close(1 - nll / (n * math.log(2)), p["pseudo_r2"], 1e-6) and \
            close(T, p["temperature"], 1e-3)
        worst = max(worst, abs(nll - p["nll"]) / max(1.0, p["nll"]))
        check(ok, "%s: temperature %.6g vs %.6g, nll %.9g vs %.9g, nll_t1 %.9g vs %.9g"
              % (name, T, p["temperature"], nll, p["nll"], nll1, p["nll_t1"]))
        check(close(np.mean((z > 0) == c), p["agreement"], 1e-12) and
              close(np.mean((z > 0) == lab), p["model_accuracy"], 1e-12) and
              close(g["correct"].mean(), p["human_accuracy"], 1e-12) and n == p["trials"],
              "%s: agreement, accuracies, trials" % name)
        check(close(row["nll"], p["nll"], 0) and close(row["pseudo_r2"], p["pseudo_r2"], 0) and
              row["unmatched"] == p["unmatched"], "%s: participant table = JSON" % name)
        pm = 1 / (1 + np.exp(-z / p["temperature"]))
        check(np.allclose(g["p_model"], pm, rtol=1e-6, atol=1e-9) and
              np.allclose(g["p_choice"], np.where(c == 1, pm, 1 - pm), rtol=1e-6, atol=1e-9),
              "%s: p_model = sigmoid(logit / T), p_choice" % name)
    s = doc["summary"]
    nll_sum = sum(p["nll"] for p in doc["participants"] if p["nll"] is not None)
    check(close(nll_sum, s["nll"], 1e-12) and
          close(1 - nll_sum / (s["trials"] * math.log(2)), s["pseudo_r2"], 1e-12) and
          close(np.mean((trials.logit > 0) == trials.choice), s["agreement"], 1e-12),
          "pooled summary: sums of nll, shares of trials")
    check(s["unmatched"] > 0 and people["trials"].sum() == len(trials),
          "unmatched rows counted (%d), replayed rows = trial rows" % s["unmatched"])
    for d in doc["by_dimension"]:
        sub = trials[trials.dimension == d["dimension"]]
        for who, col in [("human", "correct"), ("model", "model_correct")]:
            want = sub.groupby("trial")[col].mean()
            got = d["curve"][who]["p_correct"]
            ok = all((t not in want.index and got[t] is None) or
                     (t in want.index and close(got[t], float(want[t]), 1e-12))
                     for t in range(len(got)))
            check(ok, "dimension %d: the %s curve is the groupby mean of %s"
                  % (d["dimension"], who, col))
    print("# largest relative nll difference after the scipy refit: %.2g" % worst)


def main(daemon, root):
    # DemoDaemon serves the synthetic human CSV over loopback and waits for /readyz 200
    with DemoDaemon(daemon, root) as d:
        compare(d.origin)
    failed = 0
    for i, (ok, what) in enumerate(checks, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, what))
        failed += not ok
    print("1..%d" % len(checks))
    return 1 if failed or not checks else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
