#!/usr/bin/python3
"""Reference for the human learning curves (src/analysis/human_curves.c) and the CSV fixtures
the C tests read.

SYNTHETIC DATA: the CSVs written here are made up by a seeded random generator in the shape of
the Demircan et al. (2024) category-learning CSV (MODEL.md section 5). They are not human data
and must never be presented as such.

Writes into tests/fixtures/human/:
  synthetic.csv      pandas-style: an unnamed index column, True/False, LF, a few missing
                     answers, participants who stopped early, extra columns
  messy.csv          the same rows: UTF-8 BOM, CRLF, every field quoted, columns reordered,
                     1/0 booleans
  bad_*.csv          broken variants (a missing column, a bad boolean, a non-numeric trial,
                     a short row, an unterminated quote) with the line of the fault recorded
  reference.json     what pandas computes on synthetic.csv and messy.csv (read back from disk):
                     per trial p(correct) = groupby-mean of `correct` over the rows with
                     trial <= max_trial, row counts, distinct participants, overall and per
                     dimension; plus seaborn's bootstrap interval (numpy Generator, the same
                     algorithm as seaborn.algorithms.bootstrap + np.percentile) for a
                     statistical comparison with the C bootstrap, which uses its own RNG.

Run: /usr/bin/python3 tests/reference/human_curves.py
"""
import csv
import hashlib
import json
import os

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "human")
MAX_TRIALS = [99, 119, 10]
N_BOOT = 4000
# Seven of the demo bundle's items (data/demo/unique_id.txt) and one THINGS concept it does not
# have, so that GET /v1/human/replay on the demo has matched and unmatched rows. (The random
# draws do not depend on the names: renaming keeps every curve.)
CONCEPTS = ["syn_0007", "syn_0042", "syn_0099", "syn_0150", "syn_0233", "syn_0301", "syn_0388",
            "aardvark"]


def make_rows(seed=20240501):
    rng = np.random.default_rng(seed)
    rows = []
    n_participants = 18
    for p in range(n_participants):
        pid = "P%06x" % rng.integers(0, 1 << 24)
        dim = p % 3
        n_trials = 120 if p % 5 else int(rng.integers(60, 110))  # some stopped early
        skill = rng.uniform(0.02, 0.06)
        for t in range(n_trials):
            p_correct = 0.5 + 0.45 * (1 - np.exp(-skill * t))
            truth = int(rng.integers(0, 2))
            correct = bool(rng.random() < p_correct)
            choice = truth if correct else 1 - truth
            concept = CONCEPTS[int(rng.integers(0, len(CONCEPTS)))]
            image = "stimuli/%s/%s_%02d.jpg" % (concept, concept, int(rng.integers(1, 13)))
            missing = rng.random() < 0.01  # an unanswered trial
            rows.append(dict(participant=pid, trial=t, dimension=dim,
                             correct=None if missing else correct, choice=choice, image=image,
                             true_category_binary=truth,
                             rt=round(float(rng.uniform(400, 2500)), 1)))
    return rows


def write_clean(rows, path):
    cols = ["participant", "trial", "image", "choice", "correct", "true_category_binary",
            "dimension", "rt"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([""] + cols)
        for i, r in enumerate(rows):
            w.writerow([i] + ["" if r[c] is None else r[c] for c in cols])


def write_messy(rows, path):
    cols = ["rt", "correct", "image", "dimension", "choice", "trial", "true_category_binary",
            "participant", "note"]
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
        w.writerow(cols)
        for r in rows:
            vals = dict(r)
            vals["correct"] = "" if r["correct"] is None else int(r["correct"])
            vals["note"] = 'said "hm", then\nanswered' if r["trial"] == 3 else ""
            w.writerow([vals[c] for c in cols])


def write_broken(rows):
    """Small broken files; returns {name: {"line": n, "column": c}} for the C test."""
    head = "participant,trial,dimension,correct,image\n"
    good = ["%s,%d,%d,%s,%s\n" % (r["participant"], r["trial"], r["dimension"],
                                  "True" if r["correct"] else "False", r["image"])
            for r in rows[:12] if r["correct"] is not None]
    cases = {}

    def put(name, text, line, column):
        with open(os.path.join(OUT, name), "w", newline="") as f:
            f.write(text)
        cases[name] = {"line": line, "column": column}

    put("bad_missing_column.csv",
        "participant,trial,correct,image\n" + "".join(
            ",".join(g.split(",")[:2] + g.split(",")[3:]) for g in good), 1, "dimension")
    lines = list(good)
    lines[5] = lines[5].replace(",True,", ",maybe,").replace(",False,", ",maybe,")
    put("bad_boolean.csv", head + "".join(lines), 7, "correct")
    lines = list(good)
    parts = lines[8].split(",")
    parts[1] = "seven"
    lines[8] = ",".join(parts)
    put("bad_trial.csv", head + "".join(lines), 10, "trial")
    lines = list(good)
    lines[3] = ",".join(lines[3].split(",")[:3]) + "\n"
    put("bad_short_row.csv", head + "".join(lines), 5, None)
    lines = list(good)
    lines[9] = lines[9].rstrip("\n") + ',"never closed\n'
    put("bad_unterminated.csv", head + "".join(lines), 11, None)
    return cases


def seaborn_ci(values, rng):
    n = len(values)
    boots = np.empty(N_BOOT)
    for i in range(N_BOOT):
        boots[i] = values[rng.integers(0, n, n, dtype=np.intp)].mean()
    return np.nanpercentile(boots, [2.5, 97.5])


def curve(sub, max_trial, rng):
    g = sub.groupby("trial")["correct"]
    mean, size = g.mean(), g.size()
    p, n, lo, hi = [], [], [], []
    for t in range(max_trial + 1):
        if t in size.index:
            p.append(float(mean[t]))
            n.append(int(size[t]))
            ci = seaborn_ci(sub[sub.trial == t]["correct"].to_numpy(), rng)
            lo.append(float(ci[0]))
            hi.append(float(ci[1]))
        else:
            p.append(None)
            n.append(0)
            lo.append(None)
            hi.append(None)
    return {"p_correct": p, "n": n, "ci_low": lo, "ci_high": hi}


def reference(path):
    df = pd.read_csv(path, encoding="utf-8-sig")
    out = {"missing": int(df["correct"].isna().sum())}
    # Unanswered trials are NaN: seaborn's mean skips them, so they are not observations.
    df = df.dropna(subset=["correct"]).copy()
    df["correct"] = df["correct"].astype(float)
    out["rows"] = int(len(df))
    rng = np.random.default_rng(0)
    for max_trial in MAX_TRIALS:
        sub = df[df.trial <= max_trial]
        dims = []
        for d, sd in sub.groupby("dimension"):
            dims.append({"dimension": int(d), "participants": int(sd.participant.nunique()),
                         "rows": int(len(sd)), "curve": curve(sd, max_trial, rng)})
        out[str(max_trial)] = {"participants": int(sub.participant.nunique()),
                               "rows": int(len(sub)), "curve": curve(sub, max_trial, rng),
                               "by_dimension": dims}
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = make_rows()
    write_clean(rows, os.path.join(OUT, "synthetic.csv"))
    write_messy(rows, os.path.join(OUT, "messy.csv"))
    errors = write_broken(rows)
    ref = {"note": "SYNTHETIC data made by tests/reference/human_curves.py; not human data",
           "n_boot": N_BOOT, "level": 95,
           "files": {name: reference(os.path.join(OUT, name))
                     for name in ["synthetic.csv", "messy.csv"]},
           "errors": errors,
           "sha256": {name: hashlib.sha256(open(os.path.join(OUT, name), "rb").read()).hexdigest()
                      for name in ["synthetic.csv", "messy.csv"]}}
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
