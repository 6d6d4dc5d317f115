#!/usr/bin/python3
"""Golden fixtures of the trial-level replay (MODEL.md section 8) and of its numerics.

SYNTHETIC DATA: the world and the "human" CSV written here are made up by a seeded generator;
they are not THINGS, not DINOv2 features and not human data.

The world is small: 60 concepts (the first 60 items of the demo bundle, renamed), one to four
images each, whose per-image features are the demo item's features plus noise; the targets
are the demo's. It is written twice: as a per-image backbone (an .npz of two arrays) with a
THINGS-like image list (the "exact" match), and as a per-concept backbone (each concept's first
image) without a list (the "concept" match). The model is the demo bundle's
(data/demo/model.safetensors, RoPE, 128 features). The CSV has participants of three
dimensions in the shape of the Demircan et al. (2024) data: learners of varying skill, one
whose choices are the model's own predictions (its temperature fit lands on the lower bound),
one who always chooses against the model (upper bound), images of concepts that are not
among the ids (unmatched in both matches), images of known concepts missing from the list
(unmatched only for "exact"), unanswered rows (dropped), a row without a choice (incomplete),
a participant with no replayable row, a name that needs quoting.

Every figure is computed from the spec by tests/reference/replay_ref.py (PyTorch forward
pass of each participant's sequence alone, scipy for the temperature, the baseline both in
sklearn's primal and in the span form, asserted to agree; the bootstrap and the splits with
the documented generator). Writes into tests/fixtures/replay/:

  backbone_images.npz  images.txt  backbone_concepts.npy  targets.txt  unique_id.txt
  humans.csv           reference.json  (the replay's answers for three requests)
and tests/fixtures/analysis/replay_numerics.json: the temperature fit, baseline and panel
cases of tests/analysis.

    /usr/bin/python3 tests/reference/make_replay_fixtures.py
"""
import json
import math
import os
import sys

import numpy as np
import pandas as pd
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "replay")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import replay_ref as R  # noqa: E402
from make_demo_fixtures import load_model  # noqa: E402

DEMO = os.path.join(ROOT, "data", "demo")
N_CONCEPTS = 60
SEED = 20240612
STREAM_BOOT = 3 << 40
STREAM_SPLIT = 4 << 40
SYLL = ["ab", "ca", "do", "fe", "gi", "ho", "ju", "ki", "la", "mo", "nu", "pe", "ri", "sa",
        "to", "vi"]


def names(rng):
    out = set()
    while len(out) < N_CONCEPTS:
        w = "".join(rng.choice(SYLL, size=int(rng.integers(2, 4))))
        if rng.random() < 0.1:
            w += "_" + "".join(rng.choice(SYLL, size=2))
        out.add(w)
    return list(rng.permutation(sorted(out)))


def make_world(rng):
    X = np.load(os.path.join(DEMO, "backbone.npy")).astype(np.float32)[:N_CONCEPTS]
    Y = np.loadtxt(os.path.join(DEMO, "targets.txt"))[:N_CONCEPTS]
    ids = names(rng)
    col_std = X.std(0)
    images = []  # (concept, file, features)
    for i, c in enumerate(ids):
        for k in range(int(rng.integers(1, 5))):
            f = "%s_%02d%s.jpg" % (c, k + 1, "abcdefgh"[int(rng.integers(0, 8))])
            x = X[i] + 0.35 * col_std * rng.standard_normal(X.shape[1]).astype(np.float32)
            images.append((c, f, x.astype(np.float32)))
    images.sort(key=lambda im: (im[0].encode(), im[1].encode()))
    feats = np.stack([im[2] for im in images])
    rows = {(im[0], im[1]): r for r, im in enumerate(images)}
    first = [min(r for (c, _f), r in rows.items() if c == cid) for cid in ids]
    return ids, Y, images, feats, rows, first


def write_world(ids, Y, images, feats, first):
    os.makedirs(OUT, exist_ok=True)
    half = feats.shape[1] // 2
    np.savez(os.path.join(OUT, "backbone_images.npz"), a=feats[:, :half], b=feats[:, half:])
    order = np.random.default_rng(3).permutation(len(images))  # the loader sorts
    with open(os.path.join(OUT, "images.txt"), "w") as f:
        for i in order:
            f.write("THINGS/images/%s/%s\n" % (images[i][0], images[i][1]))
    np.save(os.path.join(OUT, "backbone_concepts.npy"), feats[first])
    np.savetxt(os.path.join(OUT, "targets.txt"), Y, fmt="%.8e")
    with open(os.path.join(OUT, "unique_id.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")


def make_people(rng, ids, Y, images):
    """Rows of the CSV (choices filled in later for the model-driven participants)."""
    med = np.sort(Y, axis=0)[(N_CONCEPTS - 1) // 2]  # torch's lower median
    by_concept = {}
    for c, f, _x in images:
        by_concept.setdefault(c, []).append(f)
    people = [("Pa1f3", 0, "learner", 40), ("Pb22c", 1, "learner", 40), ("P,q\"x", 2, "learner", 40),
              ("Pd409", 0, "follower", 40), ("Pe5b1", 1, "contrarian", 36),
              ("Pf6aa", 2, "learner", 40), ("Pg7d0", 0, "learner", 33), ("Ph8e2", 1, "learner", 40),
              ("Pi9c4", 2, "learner", 40)]
    rows = []
    for pi, (pid, dim, kind, n_trials) in enumerate(people):
        flip = int(rng.integers(0, 2))
        skill = rng.uniform(0.03, 0.12)
        concepts = rng.permutation(N_CONCEPTS)
        for t in range(n_trials):
            ci = int(concepts[t % N_CONCEPTS])
            c = ids[ci]
            label = int(Y[ci, dim] >= med[dim]) ^ flip
            u = rng.random()
            if u < 0.05:
                image = "stimuli/unicorn/unicorn_%02d.jpg" % (t + 1)
                label = int(rng.integers(0, 2))
            elif u < 0.10:
                image = "stimuli/%s/%s_99z.jpg" % (c, c)  # known concept, not in the list
            else:
                image = "stimuli/%s/%s" % (c, by_concept[c][int(rng.integers(0, len(by_concept[c])))])
            p_right = 0.5 + 0.42 * (1 - math.exp(-skill * t))
            choice = label if rng.random() < p_right else 1 - label
            rows.append(dict(participant=pid, trial=t, image=image, choice=choice,
                             true_category_binary=label, dimension=dim, kind=kind,
                             missing=bool(rng.random() < 0.03 and kind == "learner"),
                             rt=round(float(rng.uniform(400, 2500)), 1)))
    rows[5]["choice"] = None  # an incomplete row (answered, but no choice recorded)
    for t in range(3):  # a participant none of whose rows can be replayed
        rows.append(dict(participant="Pzzzz", trial=t, image="stimuli/unicorn/u%d.jpg" % t,
                         choice=1, true_category_binary=0, dimension=1, kind="learner",
                         missing=False, rt=900.0))
    return rows


def to_frame(rows):
    df = pd.DataFrame(rows)
    # the incomplete row was answered (correct is known) but its choice was not recorded
    df["correct"] = [None if r["missing"] else
                     True if r["choice"] is None else bool(r["choice"] == r["true_category_binary"])
                     for r in rows]
    df["choice"] = df["choice"].astype("Int64")
    return df


def features_for(seq, table):
    return np.stack([table[r["key"]] for r in seq["rows"]]) if seq["rows"] else None


def replay(model, df, ids, table_std, image_rows, max_trial=None, temperature=None,
           baseline=True, seed=0, n_boot=1000, n_splits=100, primal_check=True):
    """The whole replay of metalign/replay.h, figure by figure."""
    seqs = R.plan(df, ids, image_rows, max_trial)
    out_p, all_rows = [], []
    for s in seqs:
        rows = s["rows"]
        labels = [r["label"] for r in rows]
        choice = [r["choice"] for r in rows]
        n = len(rows)
        z = R.model_logits(model, features_for(s, table_std), labels) if n else np.zeros(0)
        zb = np.full(n, np.nan)
        if baseline and n:
            X = features_for(s, table_std).astype(np.float64)
            zb = R.baseline_sequence(X, labels)
            if primal_check:
                zp = R.baseline_sequence(X, labels, primal=True, tol=1e-12)
                assert np.allclose(zb, zp, rtol=1e-6, atol=1e-6), np.max(np.abs(zb - zp))
                R.PRIMAL_SPAN_MAX_DIFF = max(getattr(R, "PRIMAL_SPAN_MAX_DIFF", 0.0),
                                             float(np.max(np.abs(zb - zp))))
        for k, r in enumerate(rows):
            r["z"] = float(z[k])
            r["zb"] = float(zb[k])
        m = R.learner_scores(z, choice, labels, temperature)
        b = R.learner_scores(zb, choice, labels, temperature) if baseline else None
        out_p.append({"participant": s["participant"], "dimension": s["dimension"],
                      "trials": n, "unmatched": s["unmatched"], "incomplete": s["incomplete"],
                      "human_accuracy": float(np.mean([r["correct"] for r in rows])) if n else None,
                      "model": m, "baseline": b})
        all_rows.append(rows)
    max_t = max((r["trial"] for rows in all_rows for r in rows), default=-1)
    T = max_t + 1
    P = len(seqs)
    has = np.zeros((P, T), bool)
    v = [np.zeros((P, T)) for _ in range(3)]
    for i, rows in enumerate(all_rows):
        for r in rows:
            has[i, r["trial"]] = True
            v[0][i, r["trial"]] = r["correct"]
            v[1][i, r["trial"]] = float((r["z"] > 0) == r["label"])
            v[2][i, r["trial"]] = float((r["zb"] > 0) == r["label"]) if baseline else np.nan
    # decisions must not hang on rounding: no logit within 1e-4 of 0 (baseline: 0 is p = 0.5)
    for rows in all_rows:
        for r in rows:
            assert abs(r["z"]) > 1e-4, r
            assert not baseline or r["zb"] == 0 or abs(r["zb"]) > 1e-4, r

    def pooled(idx, key):
        ps = [out_p[i] for i in idx if out_p[i]["trials"]]
        n = sum(p["trials"] for p in ps)
        if not ps or n == 0 or ps[0][key] is None:
            return None
        nll = sum(p[key]["nll"] for p in ps)
        return {"nll": nll, "nll_t1": sum(p[key]["nll_t1"] for p in ps),
                "pseudo_r2": 1 - nll / (n * R.LN2),
                "agreement": sum(p[key]["agree_count"] for p in ps) / n,
                "accuracy": sum(p[key]["right_count"] for p in ps) / n}

    def group(dim):
        idx = [i for i, s in enumerate(seqs) if dim < 0 or s["dimension"] == dim]
        live = [i for i in idx if out_p[i]["trials"]]
        n = sum(out_p[i]["trials"] for i in live)
        g = {"dimension": dim, "participants": len(live), "trials": n,
             "unmatched": sum(out_p[i]["unmatched"] for i in idx),
             "incomplete": sum(out_p[i]["incomplete"] for i in idx),
             "human_accuracy": sum(sum(r["correct"] for r in all_rows[i]) for i in live) / n,
             "model": pooled(idx, "model"), "baseline": pooled(idx, "baseline")}
        curves = R.panel_curves(has, v, live, n_boot, 95.0, seed, STREAM_BOOT + dim + 1)
        g["curves"] = dict(zip(["human", "model", "baseline"], curves))
        g["noise_ceiling"] = R.noise_ceiling(has, v[0], live, n_splits, seed,
                                             STREAM_SPLIT + dim + 1)
        g["model_r"], g["rmse"] = R.compare_curves(curves[1], curves[0])
        g["baseline_r"], g["baseline_rmse"] = (R.compare_curves(curves[2], curves[0])
                                               if baseline else (None, None))
        return g

    dims = sorted({s["dimension"] for s in seqs})
    trials = [{"participant": p["participant"], "trial": r["trial"], "image": r["image"],
               "label": r["label"], "choice": r["choice"], "correct": r["correct"],
               "logit": r["z"], "baseline_logit": r["zb"]}
              for p, rows in zip(out_p, all_rows) for r in rows]
    return {"max_trial": max_t, "participants": out_p, "overall": group(-1),
            "by_dimension": [group(d) for d in dims], "trials": trials}


def clean(x):
    """JSON without NaN: None instead; numpy scalars as Python numbers."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def numerics():
    """Small cases for tests/analysis: the temperature fit, the baseline, the panel."""
    g = np.random.default_rng(11)
    out = {"temperature": [], "baseline": {}, "panel": {}}
    z = g.normal(size=60) * 2.5
    cases = {
        "inside": (z, (g.random(60) < 1 / (1 + np.exp(-z / 1.7))).astype(int)),
        "inside_sharp": (z * 0.05, (g.random(60) < 1 / (1 + np.exp(-z))).astype(int)),
        "lower_bound": (z, (z > 0).astype(int)),  # choices follow the logits: T -> 0
        "upper_bound": (z, (z < 0).astype(int)),  # choices against them: T -> infinity
        "zeros": (np.zeros(7), np.array([1, 0, 1, 1, 0, 0, 1])),
        "empty": (np.zeros(0), np.zeros(0, int)),
        "one": (np.array([0.8]), np.array([0])),
    }
    for name, (zz, c) in cases.items():
        T, nll, bound = R.fit_temperature(zz, c)
        out["temperature"].append({"name": name, "z": zz.tolist(), "choice": c.tolist(),
                                   "T": T, "nll": nll, "at_bound": bound,
                                   "nll_t1": R.choice_nll(zz, c, 1.0),
                                   "nll_T3": R.choice_nll(zz, c, 3.0)})
    # baseline: 36 trials of 80 standardised float32 features, a repeated row (the same
    # concept twice), a first stretch of one class only
    n, D = 36, 80
    X = g.normal(size=(n, D)).astype(np.float32)
    X[20] = X[7]
    w = g.normal(size=D)
    y = (X.astype(np.float64) @ w + g.normal(size=n) * 3 > 0).astype(int)
    y[:4] = [1, 1, 1, 0]
    zs = R.baseline_sequence(X, y)
    zp = R.baseline_sequence(X, y, primal=True, tol=1e-12)
    out["baseline"] = {"X": X.ravel().tolist(), "n": n, "D": D, "y": y.tolist(),
                       "z": zs.tolist(), "z_primal": zp.tolist(),
                       "max_abs_primal_span": float(np.max(np.abs(zs - zp)))}
    assert out["baseline"]["max_abs_primal_span"] < 1e-6
    # panel: 7 sequences x 12 trials, ragged, values 0/1 and fractions
    P, T = 7, 12
    has = g.random((P, T)) < 0.8
    has[3, 6:] = False
    s0 = (g.random((P, T)) < 0.6).astype(float)
    s1 = np.round(g.random((P, T)), 2)
    seq = [0, 1, 2, 3, 5, 6]
    curves = R.panel_curves(has, [s0, s1], seq, 300, 95.0, 5, 9)
    nc = R.noise_ceiling(has, s0, list(range(P)), 50, 5, 10)
    out["panel"] = {"P": P, "T": T, "has": has.astype(int).ravel().tolist(),
                    "s0": s0.ravel().tolist(), "s1": s1.ravel().tolist(), "seq": seq,
                    "n_boot": 300, "seed": 5, "stream": 9, "curves": curves,
                    "nc_splits": 50, "nc_stream": 10, "noise_ceiling": nc}
    return out


def main():
    torch.set_grad_enabled(False)
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    ids, Y, images, feats, rows, first = make_world(rng)
    write_world(ids, Y, images, feats, first)
    model = load_model()
    mean, scale = R.standardise_like_service(feats[first])
    table_exact = ((feats.astype(np.float64) - mean) / scale).astype(np.float32)
    table_concept = table_exact[first]
    people = make_people(rng, ids, Y, images)
    df = to_frame(people)
    # the model-driven participants choose by the model's own predictions (exact match);
    # choices do not enter the model's inputs, so one pass is enough
    first_pass = replay(model, df, ids, table_exact, rows, baseline=False, n_boot=0,
                        n_splits=1)
    for p, seq in zip(first_pass["participants"], R.plan(df, ids, rows, None)):
        kind = df[df.participant == p["participant"]].kind.iloc[0]
        if kind not in ("follower", "contrarian"):
            continue
        by_trial = {t["trial"]: t["logit"] for t in first_pass["trials"]
                    if t["participant"] == p["participant"]}
        for i in df.index[df.participant == p["participant"]]:
            t = int(df.at[i, "trial"])
            if t in by_trial:
                pred = int(by_trial[t] > 0)
                df.at[i, "choice"] = pred if kind == "follower" else 1 - pred
                if df.at[i, "correct"] is not None and not pd.isna(df.at[i, "correct"]):
                    df.at[i, "correct"] = bool(df.at[i, "choice"] == df.at[i, "true_category_binary"])
    cols = ["participant", "trial", "image", "choice", "correct", "true_category_binary",
            "dimension", "rt"]
    df[cols].to_csv(os.path.join(OUT, "humans.csv"))
    df = pd.read_csv(os.path.join(OUT, "humans.csv"))  # exactly what the C side reads

    requests = {
        "exact_default": dict(world="exact", max_trial=None, temperature=None, baseline=True,
                              seed=0, n_boot=1000, n_splits=100),
        "concept_default": dict(world="concept", max_trial=None, temperature=None,
                                baseline=True, seed=0, n_boot=1000, n_splits=100),
        "exact_t1_max24": dict(world="exact", max_trial=24, temperature=1.0, baseline=False,
                               seed=7, n_boot=200, n_splits=30),
    }
    ref = {"note": "SYNTHETIC world and CSV made by tests/reference/make_replay_fixtures.py; "
                   "not THINGS and not human data", "requests": {}}
    for name, rq in requests.items():
        exact = rq["world"] == "exact"
        res = replay(model, df, ids, table_exact if exact else table_concept,
                     rows if exact else None, rq["max_trial"], rq["temperature"],
                     rq["baseline"], rq["seed"], rq["n_boot"], rq["n_splits"])
        res["request"] = rq
        ref["requests"][name] = res
        print(name, "participants", len(res["participants"]), "trials",
              res["overall"]["trials"], "unmatched", res["overall"]["unmatched"],
              "bounds", [p["model"]["at_bound"] for p in res["participants"] if p["model"]])
    ref["primal_vs_span_max_abs_logit"] = getattr(R, "PRIMAL_SPAN_MAX_DIFF", None)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(clean(ref), f, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(ROOT, "tests", "fixtures", "analysis", "replay_numerics.json"),
              "w") as f:
        json.dump(clean(numerics()), f, separators=(",", ":"))
        f.write("\n")
    print("primal vs span, largest logit difference:", ref["primal_vs_span_max_abs_logit"])
    for fn in sorted(os.listdir(OUT)):
        print("wrote", os.path.join("tests/fixtures/replay", fn),
              os.path.getsize(os.path.join(OUT, fn)), "bytes")


if __name__ == "__main__":
    main()
