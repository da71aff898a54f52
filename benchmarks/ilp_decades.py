"""ILP exactness on tables whose Ω spans 12 decades: how many instances each solver returns above the
brute-force optimum (the claim: none). Usage: python benchmarks/ilp_decades.py [N=500]."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pandas as pd

from mpsearch import solve
from mpsearch.search.ilp import available_solvers


def decades_instance(seed: int, n_sites: int = 6, n_formats: int = 4):
    """Ω = 10^U(-12, 0) per site, falling with bits per format; bytes grow with bits; one binding budget."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sites):
        scale = 10.0 ** rng.uniform(-12, 0)
        size = float(rng.integers(1, 1000))
        om = np.sort(scale * 10.0 ** rng.uniform(-3, 0, n_formats))[::-1]
        for f in range(n_formats):
            rows.append({"site": f"s{s}", "format": f"f{f}", "omega": float(om[f]), "bytes": size * (2 + 2 * f)})
    t = pd.DataFrame(rows)
    lo, hi = t.groupby("site").bytes.min().sum(), t.groupby("site").bytes.max().sum()
    return t, {"bytes": float(lo + rng.uniform(0.2, 0.8) * (hi - lo))}


def brute_force(table, limits) -> float:
    """Every assignment, scored directly (numpy over all combinations; independent of the library)."""
    sites = list(dict.fromkeys(table.site))
    om = np.array([table[table.site == s].omega.to_numpy() for s in sites])
    by = np.array([table[table.site == s].bytes.to_numpy() for s in sites])
    combos = np.array(list(itertools.product(*[range(om.shape[1])] * len(sites))))
    rows = np.arange(len(sites))
    total_om = om[rows, combos].sum(1)
    fits = by[rows, combos].sum(1) <= limits["bytes"]
    return float(total_om[fits].min())


def above(seed: int, solver: str) -> float:
    """Relative excess of the solver's objective over the brute-force optimum (0 when optimal)."""
    t, lim = decades_instance(seed)
    best = brute_force(t, lim)
    return solve(t, lim, solver=solver).objective / best - 1


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print(f"{'solver':8} {'instances':>9} {'above optimum':>14} {'worst excess':>13}")
    for solver in available_solvers():
        ex = [above(seed, solver) for seed in range(n)]
        bad = [e for e in ex if e > 1e-9]
        print(f"{solver:8} {n:9d} {len(bad):14d} {max(ex):13.3g}")
