"""Reference values for the random number generator and the curve statistics (rng.h, stats.h).

An independent Python reimplementation of the documented recipe (splitmix64 -> xoshiro256**,
Lemire's bounded draw) plus numpy/scipy for the statistics.  Writes
tests/fixtures/analysis/rng_stats.txt: one record per line, "name count v0 v1 ...", integers in
hex, floats as Python repr (round-trips through strtod).

    /usr/bin/python3 tests/reference/make_stats_fixtures.py
"""
import math
import os

import numpy as np
from scipy import stats as sps

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(state):
    """(new_state, output)"""
    state = (state + GOLDEN) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Rng:
    def __init__(self, seed=None, stream=None, state=None):
        if state is not None:
            self.s = list(state)
            return
        x, h = splitmix64(seed & M64)
        x = h ^ (stream & M64)
        self.s = []
        for _ in range(4):
            x, z = splitmix64(x)
            self.s.append(z)

    def next(self):
        s = self.s
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        m = self.next() * n
        low = m & M64
        if low < n:
            threshold = ((1 << 64) - n) % n
            while low < threshold:
                m = self.next() * n
                low = m & M64
        return m >> 64

    def double(self):
        return (self.next() >> 11) * 2.0 ** -53


def rec(out, name, values, kind):
    if kind == "x":
        vals = ["0x%016x" % v for v in values]
    else:
        vals = [repr(float(v)) for v in values]
    out.append("%s %d %s" % (name, len(vals), " ".join(vals)))


def seaborn_ci(x, n_boot, level, rng):
    """seaborn's bootstrap of the mean, drawing indices from our generator."""
    n = len(x)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        idx = [rng.below(n) for _ in range(n)]
        boots[b] = float(np.sum([x[i] for i in idx], dtype=np.float64)) / n
    tail = (100.0 - level) / 2
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return float(np.mean(x)), lo, hi


def proportion_ci(k, n, n_boot, level, rng):
    """Binomial inversion of sorted uniforms, with scipy's CDF."""
    u = np.sort([rng.double() for _ in range(n_boot)])
    counts = sps.binom.ppf(u, n, k / n)
    # ppf gives the smallest j with cdf(j) >= u; the service takes cdf(j) > u: the same
    # except on a set of measure zero.
    boots = counts / n
    tail = (100.0 - level) / 2
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return k / n, lo, hi


def sample_episode(Y, median, seed, episode, dim, seq_len):
    """The sampler's documented draw order (episodes.h)."""
    n = Y.shape[0]
    r = Rng(seed, episode)
    perm = list(range(n))
    items = []
    for t in range(seq_len):
        j = t + r.below(n - t)
        perm[t], perm[j] = perm[j], perm[t]
        items.append(perm[t])
    labels = [int(Y[i, dim] >= median[dim]) for i in items]
    if r.next() >> 63:
        labels = [1 - v for v in labels]
    return items, labels


def fn_positives(r, S):
    """FunctionDataset's n_pos (episodes.h, step 1): Box-Muller, round half to even, clamp."""
    u1 = 1.0 - r.double()
    u2 = r.double()
    z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
    return min(max(round(S / 2.0 + S / 20.0 * z), 0), S)


def sample_fn_episode(Y, median, seed, episode, dim, S):
    """The later generation's FunctionDataset episode, in episodes.h's draw order."""
    r = Rng(seed, episode)
    n_pos = fn_positives(r, S)
    col, m = Y[:, dim], median[dim]
    pos = [i for i in range(len(col)) if col[i] > m]
    neg = [i for i in range(len(col)) if not col[i] > m]

    def pick(lst, k):
        for t in range(k):
            j = t + r.below(len(lst) - t)
            lst[t], lst[j] = lst[j], lst[t]
        return lst[:k]

    ep = pick(pos, min(n_pos, len(pos))) + pick(neg, min(S - n_pos, len(neg)))
    for t in range(len(ep) - 1, 0, -1):
        j = r.below(t + 1)
        ep[t], ep[j] = ep[j], ep[t]
    labels = [int(col[i] > m) for i in ep]
    mags = [float(np.float32(col[i]) - np.float32(m)) for i in ep]
    return ep, labels, mags


def fn_episodes(out, Y, median):
    for seed, e, dim, S in [(0, 0, 0, 12), (0, 1, 1, 12), (3, 2, 2, 20), (3, 3, 0, 20),
                            (3, 4, 1, 20), (3, 5, 2, 20), (2**63, 7, 1, 1), (11, 40, 0, 19)]:
        items, labels, mags = sample_fn_episode(Y, median, seed, e, dim, S)
        name = "fn_%d_%d_%d_%d" % (seed % 1000, e, dim, S)
        rec(out, name + "_items", items, "f")
        rec(out, name + "_labels", labels, "f")
        rec(out, name + "_mags", mags, "f")
    for S in (1, 12, 120):
        rec(out, "fn_npos_%d" % S, [fn_positives(Rng(5, e), S) for e in range(64)], "f")


def episodes(out):
    """A small dataset (20 items, 3 dims, ties included) and a few of its episodes; the
    medians are torch's (the lower middle value for even n)."""
    import torch

    g = np.random.default_rng(17)
    Y = np.round(g.random((20, 3)), 1).astype(np.float32)
    median = torch.from_numpy(Y).median(dim=0).values.numpy()
    rec(out, "ep_Y", Y.ravel(), "f")
    rec(out, "ep_median", median, "f")
    for seed, e, dim, S in [(0, 0, 0, 5), (0, 1, 1, 5), (0, 2, 2, 20), (9, 127, 0, 12),
                            (2**63, 5, 1, 1)]:
        items, labels = sample_episode(Y, median, seed, e, dim, S)
        name = "ep_%d_%d_%d_%d" % (seed % 1000, e, dim, S)
        rec(out, name + "_items", items, "f")
        rec(out, name + "_labels", labels, "f")
    fn_episodes(out, Y, median)


def main():
    out = []
    episodes(out)
    # splitmix64 from 0 (widely published: 0xe220a8397b1dcdaf, ...)
    x, vals = 0, []
    for _ in range(4):
        x, z = splitmix64(x)
        vals.append(z)
    rec(out, "splitmix64_seed0", vals, "x")
    # xoshiro256** from the raw state {1, 2, 3, 4} (Vigna's test vector starts 11520, 0, ...)
    r = Rng(state=[1, 2, 3, 4])
    rec(out, "xoshiro_state1234", [r.next() for _ in range(8)], "x")
    # seeded streams
    for seed, stream in [(0, 0), (0, 1), (1, 0), (42, 7), (M64, 1 << 40), (12345, 127)]:
        r = Rng(seed, stream)
        rec(out, "next_%d_%d" % (seed & 0xFFFF, stream & 0xFFFF), [r.next() for _ in range(6)],
            "x")
    # bounded draws: small, item-sized and huge n (the rejection branch is common there)
    for n in [1, 3, 1854, (1 << 63) + 1, M64]:
        r = Rng(7, 3)
        rec(out, "below_%x" % n, [r.below(n) for _ in range(16)], "x")
    r = Rng(9, 9)
    rec(out, "double_9_9", [r.double() for _ in range(8)], "f")

    # percentiles (numpy linear) of random and tied data
    g = np.random.default_rng(5)
    data = [g.normal(size=1), g.normal(size=2), g.normal(size=7), g.normal(size=1000),
            np.round(g.normal(size=50), 1), np.full(5, 0.3)]
    qs = [0, 2.5, 25, 50, 97.5, 99.9, 100]
    for i, d in enumerate(data):
        rec(out, "pct_data_%d" % i, d, "f")
        rec(out, "pct_q_%d" % i, np.percentile(d, qs), "f")
    rec(out, "pct_qs", qs, "f")

    # Pearson and RMSE
    a = g.normal(size=100)
    b = 0.3 * a + g.normal(size=100) + 1e6  # large offset: the two-pass form matters
    rec(out, "pear_a", a, "f")
    rec(out, "pear_b", b, "f")
    rec(out, "pear_r", [np.corrcoef(a, b)[0, 1]], "f")
    rec(out, "rmse", [np.sqrt(np.mean((a - b) ** 2))], "f")

    # bootstrap intervals with this generator
    x = g.normal(size=25)
    rec(out, "ci_x", x, "f")
    rec(out, "ci_x_95", seaborn_ci(list(x), 200, 95.0, Rng(3, 11)), "f")
    rec(out, "ci_x_68", seaborn_ci(list(x), 200, 68.0, Rng(3, 11)), "f")
    for k, n in [(30, 43), (1, 128), (127, 128), (500, 1000)]:
        rec(out, "pci_%d_%d" % (k, n), proportion_ci(k, n, 1000, 95.0, Rng(5, k)), "f")

    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "analysis", "rng_stats.txt")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
