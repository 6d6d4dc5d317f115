"""Reference implementation of the trial-level replay (MODEL.md section 8) in PyTorch, numpy,
scipy and sklearn, written from the spec and the documented recipes of
include/metalign/{temperature,baseline,panel}.h and src/metalign/replay.h, not from the C.

Used by tests/reference/make_replay_fixtures.py (golden fixtures) and bench/replay_torch.py
(the benchmark's PyTorch side).
"""
import math
import os
import sys

import numpy as np
import pandas as pd
import torch
from scipy import optimize
from scipy.special import expit, log1p

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_stats_fixtures import Rng  # noqa: E402

LOG_T_MIN, LOG_T_MAX = -4.6, 4.6
LN2 = math.log(2.0)


# ---- the temperature ------------------------------------------------------------------------

def softplus(x):
    x = np.asarray(x, np.float64)
    return np.maximum(x, 0) + log1p(np.exp(-np.abs(x)))


def choice_nll(z, choice, T):
    m = np.where(np.asarray(choice) == 1, z, -np.asarray(z, np.float64))
    return float(np.sum(softplus(-m / T)))


def fit_temperature(z, choice):
    """(T, nll, at_bound): ML over log T in [-4.6, 4.6]. The optimum is located with brentq on
    the derivative in beta = 1/T (convex), and cross-checked against scipy's bounded scalar
    minimiser on log T."""
    z = np.asarray(z, np.float64)
    n = len(z)
    if n == 0 or not np.any(z != 0):
        return 1.0, n * LN2, 0
    m = np.where(np.asarray(choice) == 1, z, -z)

    def d1(beta):
        return float(-np.sum(m * expit(-m * beta)))

    lo, hi = math.exp(-LOG_T_MAX), math.exp(-LOG_T_MIN)
    if d1(lo) >= 0:
        T, bound = math.exp(LOG_T_MAX), 1
    elif d1(hi) <= 0:
        T, bound = math.exp(LOG_T_MIN), -1
    else:
        beta = optimize.brentq(d1, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps,
                               maxiter=500)
        T, bound = 1.0 / beta, 0
    nll = choice_nll(z, choice, T)
    # independent check: scipy's bounded minimiser on log T
    res = optimize.minimize_scalar(lambda lt: choice_nll(z, choice, math.exp(lt)),
                                   bounds=(LOG_T_MIN, LOG_T_MAX), method="bounded",
                                   options={"xatol": 1e-9})
    assert nll <= res.fun + 1e-9 * max(1.0, abs(res.fun)), (nll, res.fun)
    return T, nll, bound


# ---- the baseline learner -------------------------------------------------------------------

def logloss(y, f):
    return softplus(f) - y * f


def span_fit(K, y, C=1.0, a=None, b=0.0):
    """sklearn's objective in the span of the rows, by Newton on the full (m+1) system
    [[I + C W K, C w], [w^T K, sum w]] [da, db] = -[a + C g, sum g] (not the C code's
    symmetric reduction), with backtracking."""
    m = len(y)
    a = np.zeros(m) if a is None else np.array(a, np.float64)
    y = np.asarray(y, np.float64)

    def J(a, b):
        f = K @ a + b
        return 0.5 * a @ (K @ a) + C * np.sum(logloss(y, f))

    for _ in range(200):
        f = K @ a + b
        p = expit(f)
        g, w = p - y, p * (1 - p)
        r = a + C * g
        grad = math.sqrt(max(r @ K @ r, 0) + (C * g.sum()) ** 2)
        if grad < 1e-12:
            break
        M = np.zeros((m + 1, m + 1))
        M[:m, :m] = np.eye(m) + C * w[:, None] * K
        M[:m, m] = C * w
        M[m, :m] = w @ K
        M[m, m] = w.sum()
        d = np.linalg.solve(M, -np.concatenate([r, [g.sum()]]))
        da, db = d[:m], d[m]
        slope = (K @ r) @ da + C * g.sum() * db
        J0, t = J(a, b), 1.0
        while J(a + t * da, b + t * db) > J0 + 1e-4 * t * slope and t > 1e-12:
            t *= 0.5
        if t <= 1e-12:
            break
        a, b = a + t * da, b + t * db
        if -slope < 1e-24:
            break
    return a, b


def baseline_sequence(X, y, C=1.0, primal=False, tol=1e-10):
    """z[t] of the learner refitted on rows < t (0 until both classes were seen): in the span
    (warm-started, as the service) or with sklearn in the primal (primal=True)."""
    from sklearn.linear_model import LogisticRegression
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.int64)
    n = len(y)
    K = X @ X.T
    z = np.zeros(n)
    a, b = None, 0.0
    for t in range(n):
        if len(set(y[:t].tolist())) < 2:
            continue
        if primal:
            lr = LogisticRegression(C=C, tol=tol, max_iter=100000, solver="newton-cholesky")
            lr.fit(X[:t], y[:t])
            z[t] = float(lr.decision_function(X[t:t + 1])[0])
        else:
            a0 = np.zeros(t) if a is None else np.concatenate([a, np.zeros(t - len(a))])
            a, b = span_fit(K[:t, :t], y[:t], C, a0, b)
            z[t] = float(K[t, :t] @ a + b)
    return z


# ---- curves over participants ---------------------------------------------------------------

def panel_curves(has, series, seq, n_boot, level, seed, stream):
    """Means per trial over the sequences seq, and the participant bootstrap (panel.h)."""
    has = np.asarray(has, bool)
    seq = list(seq)
    P, T = len(seq), has.shape[1]
    out = []
    H = has[seq].astype(np.float64)
    V = [np.where(has[seq], np.asarray(v, np.float64)[seq], 0.0) for v in series]
    for v in V:
        cnt = H.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, v.sum(0) / np.where(cnt > 0, cnt, 1), np.nan)
        out.append({"n": cnt.astype(int).tolist(), "p_correct": mean, "boot": []})
    r = Rng(seed, stream)
    for _ in range(n_boot if P else 0):
        w = np.zeros(P)
        for _i in range(P):
            w[r.below(P)] += 1
        cnt = w @ H
        for k, v in enumerate(V):
            with np.errstate(invalid="ignore", divide="ignore"):
                out[k]["boot"].append(np.where(cnt > 0, (w @ v) / np.where(cnt > 0, cnt, 1),
                                               np.nan))
    tail = (100.0 - level) / 2
    for c in out:
        B = np.array(c.pop("boot")) if c["boot"] else np.full((0, T), np.nan)
        lo, hi = [], []
        for t in range(T):
            col = B[:, t][~np.isnan(B[:, t])] if len(B) else np.array([])
            lo.append(float(np.percentile(col, tail)) if len(col) else math.nan)
            hi.append(float(np.percentile(col, 100 - tail)) if len(col) else math.nan)
        c["ci_low"], c["ci_high"] = lo, hi
        c["p_correct"] = [float(x) for x in c["p_correct"]]
    return out


def pearson(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(np.clip(np.corrcoef(a, b)[0, 1], -1, 1))


def noise_ceiling(has, v, seq, n_splits, seed, stream):
    has = np.asarray(has, bool)
    v = np.asarray(v, np.float64)
    seq = list(seq)
    P = len(seq)
    if P < 2:
        return {"r": math.nan, "ci_low": math.nan, "ci_high": math.nan, "splits": 0}
    r = Rng(seed, stream)
    vals = []
    for _ in range(n_splits):
        perm = list(range(P))
        for i in range(P - 1, 0, -1):
            j = r.below(i + 1)
            perm[i], perm[j] = perm[j], perm[i]
        halves = [[seq[i] for i in perm[:P // 2]], [seq[i] for i in perm[P // 2:]]]
        curves = []
        for hs in halves:
            cnt = has[hs].sum(0)
            s = np.where(has[hs], v[hs], 0).sum(0)
            curves.append((cnt, s))
        both = (curves[0][0] > 0) & (curves[1][0] > 0)
        xa = curves[0][1][both] / curves[0][0][both]
        xb = curves[1][1][both] / curves[1][0][both]
        rr = pearson(xa, xb)
        if math.isnan(rr) or rr <= -1:
            continue
        vals.append(2 * rr / (1 + rr))
    if not vals:
        return {"r": math.nan, "ci_low": math.nan, "ci_high": math.nan, "splits": 0}
    return {"r": float(np.mean(vals)), "ci_low": float(np.percentile(vals, 2.5)),
            "ci_high": float(np.percentile(vals, 97.5)), "splits": len(vals)}


def compare_curves(a, b):
    """Pearson r and RMSE over the trials both curves have."""
    pa, pb = np.array(a["p_correct"]), np.array(b["p_correct"])
    ok = (np.array(a["n"]) > 0) & (np.array(b["n"]) > 0)
    x, y = pa[ok], pb[ok]
    rmse = float(np.sqrt(np.mean((x - y) ** 2))) if len(x) else math.nan
    return pearson(x, y), rmse


# ---- the replay of a world --------------------------------------------------------------------

def image_parts(path):
    """(concept, file): the last two '/'-separated components; concept None without a folder."""
    parts = path.split("/")
    if len(parts) < 2 or parts[-2] == "":
        return None, parts[-1]
    return parts[-2], parts[-1]


def standardise_like_service(X_concepts):
    X = X_concepts.astype(np.float64)
    mean = X.mean(0)
    scale = X.std(0, ddof=1) + 1e-8
    return mean, scale


def plan(df, ids, image_rows, max_trial):
    """The sequences of metalign/replay.h from the CSV's rows (pandas): a list of dicts with the
    participant, dimension, the replayed rows (trial, key, label, choice, correct, image) and
    the unmatched / incomplete counts. image_rows: (concept, file) -> backbone row for the
    exact match, or None for the concept match (key = concept index)."""
    # participants are numbered in order of first appearance in the whole file
    order = {p: i for i, p in enumerate(pd.unique(df.participant))}
    df = df.dropna(subset=["correct"])
    if max_trial is not None:
        df = df[df.trial <= max_trial]
    id_index = {c: i for i, c in enumerate(ids)}
    seqs = []
    keys = sorted({(order[p], int(d)) for p, d in zip(df.participant, df.dimension)})
    names = {v: k for k, v in order.items()}
    for pi, d in keys:
        sub = df[(df.participant == names[pi]) & (df.dimension == d)].sort_values("trial",
                                                                                   kind="stable")
        assert sub.trial.is_unique
        s = {"participant": names[pi], "dimension": d, "rows": [], "unmatched": 0,
             "incomplete": 0}
        for _, row in sub.iterrows():
            if pd.isna(row.choice) or pd.isna(row.true_category_binary):
                s["incomplete"] += 1
                continue
            img = row.image if isinstance(row.image, str) else None
            concept, file = image_parts(img) if img else (None, None)
            key = id_index.get(concept) if concept is not None else None
            if key is not None and image_rows is not None:
                key = image_rows.get((concept, file))
            if key is None:
                s["unmatched"] += 1
                continue
            s["rows"].append({"trial": int(row.trial), "key": int(key),
                              "label": int(row.true_category_binary),
                              "choice": int(row.choice), "correct": int(bool(row.correct)),
                              "image": img})
        seqs.append(s)
    return seqs


def model_logits(model, feats, labels):
    """One participant's sequence alone (no padding) through the reference model."""
    rows = []
    for t in range(len(labels)):
        onehot = [0.0, 0.0] if t == 0 else ([1.0, 0.0] if labels[t - 1] == 0 else [0.0, 1.0])
        rows.append(np.concatenate([np.array(onehot, np.float32), feats[t]]))
    with torch.no_grad():
        x = torch.tensor(np.stack(rows)).unsqueeze(0)
        return model(x)[0, :, 0].double().numpy()


def learner_scores(z, choice, label, fixed_T=None):
    z = np.asarray(z, np.float64)
    n = len(z)
    if n == 0:
        return None
    if fixed_T:
        T, nll, bound = fixed_T, choice_nll(z, choice, fixed_T), 0
    else:
        T, nll, bound = fit_temperature(z, choice)
    pred = (z > 0).astype(int)
    return {"temperature": T, "at_bound": bound, "nll": nll,
            "nll_t1": choice_nll(z, choice, 1.0), "pseudo_r2": 1 - nll / (n * LN2),
            "agreement": float(np.mean(pred == np.asarray(choice))),
            "accuracy": float(np.mean(pred == np.asarray(label))),
            "agree_count": int(np.sum(pred == np.asarray(choice))),
            "right_count": int(np.sum(pred == np.asarray(label)))}
