"""The ILP is exact: it matches brute-force enumeration on random small instances."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mpsearch import InfeasibleBudget, solve


def random_table(rng: np.random.Generator, n_sites: int, n_formats: int, metrics: list[str]) -> pd.DataFrame:
    rows = []
    for s in range(n_sites):
        for f in range(n_formats):
            rows.append({"site": f"s{s}", "format": f"f{f}", "omega": float(rng.exponential()),
                         **{m: float(rng.integers(1, 100)) for m in metrics}})
    return pd.DataFrame(rows)


def brute_force(table: pd.DataFrame, limits: dict[str, float]) -> float | None:
    sites = list(dict.fromkeys(table.site))
    by = {s: table[table.site == s].to_dict("records") for s in sites}
    best = None
    for combo in itertools.product(*(by[s] for s in sites)):
        if all(sum(r[m] for r in combo) <= lim for m, lim in limits.items()):
            om = sum(r["omega"] for r in combo)
            best = om if best is None or om < best else best
    return best


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("metrics", [["bytes"], ["bytes", "latency"]])
def test_ilp_equals_brute_force(seed, metrics):
    rng = np.random.default_rng(seed)
    n_sites, n_formats = int(rng.integers(2, 9)), int(rng.integers(2, 5))
    if n_formats ** n_sites > 70000:
        n_sites = 6
    table = random_table(rng, n_sites, n_formats, metrics)
    # limits between the cheapest and the dearest total, so the budget binds
    limits = {}
    for m in metrics:
        lo = table.groupby("site")[m].min().sum()
        hi = table.groupby("site")[m].max().sum()
        limits[m] = float(lo + rng.uniform(0.2, 0.8) * (hi - lo))
    expected = brute_force(table, limits)
    if expected is None:
        with pytest.raises(InfeasibleBudget):
            solve(table, limits)
        return
    sol = solve(table, limits)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert sol.bound == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert set(sol.assignments) == set(table.site)
    for m, lim in limits.items():
        assert sol.totals[m] <= lim + 1e-9


def test_infeasible_budget_names_the_smallest_achievable():
    table = pd.DataFrame({"site": ["a", "a", "b", "b"], "format": ["x", "y", "x", "y"],
                          "omega": [1.0, 2.0, 1.0, 2.0], "bytes": [10.0, 5.0, 10.0, 5.0]})
    with pytest.raises(InfeasibleBudget, match="smallest achievable is 10B"):
        solve(table, {"bytes": 9.0})
