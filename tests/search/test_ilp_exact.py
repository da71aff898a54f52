"""The ILP is exact: on random small instances with 1-3 budgets, ties, pairwise terms and every
aggregate it matches brute-force enumeration, with both solvers; early stops report a real bound."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from mpsearch import InfeasibleBudget, solve
from mpsearch.errors import UsageError
from mpsearch.search.ilp import available_solvers

SOLVERS = available_solvers()
METRICS = ["bytes", "latency", "energy"]


def instance(seed: int):
    """A random table (2-6 sites, 2-4 formats), 1-3 binding budgets, maybe ties and pairwise terms."""
    rng = np.random.default_rng(seed)
    n_sites, n_formats = int(rng.integers(2, 7)), int(rng.integers(2, 5))
    metrics = METRICS[: int(rng.integers(1, 4))]
    rows = [{"site": f"s{s}", "format": f"f{f}", "omega": float(rng.exponential()),
             **{m: float(rng.integers(1, 100)) for m in metrics}}
            for s in range(n_sites) for f in range(n_formats)]
    table = pd.DataFrame(rows)
    limits = {}
    for m in metrics:
        lo, hi = table.groupby("site")[m].min().sum(), table.groupby("site")[m].max().sum()
        limits[m] = float(lo + rng.uniform(0.3, 0.9) * (hi - lo))
    ties = []
    if n_sites >= 3 and rng.random() < 0.6:
        ties = [list(rng.choice([f"s{s}" for s in range(n_sites)], size=2, replace=False))]
    pairs = []
    if rng.random() < 0.7:
        for a, b in itertools.combinations(range(n_sites), 2):
            for fa, fb in itertools.product(range(n_formats), repeat=2):
                if rng.random() < 0.3:
                    pairs.append({"site_a": f"s{a}", "format_a": f"f{fa}", "site_b": f"s{b}", "format_b": f"f{fb}",
                                  "omega": float(rng.normal(0, 0.7))})
    pw = pd.DataFrame(pairs, columns=["site_a", "format_a", "site_b", "format_b", "omega"])
    return table, limits, ties, pw


def brute_force(table, limits, ties, pairwise, aggregate):
    """Independent of the library: enumerate every assignment and score it directly."""
    sites = list(dict.fromkeys(table.site))
    rec = {(r["site"], r["format"]): r for r in table.to_dict("records")}
    fmts = [list(table[table.site == s].format) for s in sites]
    best = None
    for combo in itertools.product(*fmts):
        a = dict(zip(sites, combo))
        if any(len({a[s] for s in g}) > 1 for g in ties):
            continue
        if any(sum(rec[(s, f)][m] for s, f in a.items()) > lim for m, lim in limits.items()):
            continue
        om = np.array([rec[(s, f)]["omega"] for s, f in a.items()])
        if aggregate == "sum":
            v = om.sum()
        elif aggregate == "max":
            v = om.max()
        else:
            p = float(aggregate.split(":")[1])
            v = (np.clip(om, 0, None) ** p).sum() ** (1 / p)
        v += sum(r.omega for r in pairwise.itertuples() if a[r.site_a] == r.format_a and a[r.site_b] == r.format_b)
        if best is None or v < best - 1e-12:
            best = v
    return best


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("seed", range(30))
def test_sum_with_ties_and_pairwise_equals_brute_force(seed, solver):
    table, limits, ties, pw = instance(seed)
    expected = brute_force(table, limits, ties, pw, "sum")
    if expected is None:
        with pytest.raises(InfeasibleBudget):
            solve(table, limits, ties=ties, pairwise=pw, solver=solver)
        return
    sol = solve(table, limits, ties=ties, pairwise=pw, solver=solver)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert sol.bound == pytest.approx(expected, rel=1e-7, abs=1e-7)
    assert sol.bound <= sol.objective
    for g in ties:
        assert len({sol.assignments[s] for s in g}) == 1
    for m, lim in limits.items():
        assert sol.totals[m] <= lim * (1 + 1e-9)


@pytest.mark.parametrize("aggregate", ["max", "lp:2", "lp:3.5"])
@pytest.mark.parametrize("seed", range(12))
def test_max_and_lp_aggregates_equal_brute_force(seed, aggregate):
    table, limits, ties, _ = instance(100 + seed)
    empty = pd.DataFrame(columns=["site_a", "format_a", "site_b", "format_b", "omega"])
    expected = brute_force(table, limits, ties, empty, aggregate)
    if expected is None:
        return
    sol = solve(table, limits, ties=ties, aggregate=aggregate)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_aggregates_choose_differently():
    """Max protects the worst site where the sum would sacrifice it; Lp sits between."""
    table = pd.DataFrame({"site": ["a", "a", "b", "b", "c", "c"], "format": ["lo", "hi"] * 3,
                          "omega": [10.0, 0.0, 4.0, 0.0, 4.0, 0.0], "bytes": [1.0, 3.0, 1.0, 2.0, 1.0, 2.0]})
    budget = {"bytes": 5.0}  # room for one upgrade: a (cost 2, saves 10) or b+c? (cost 2, saves 8 only with both)
    assert solve(table, budget).assignments == {"a": "hi", "b": "lo", "c": "lo"}
    table.loc[(table.site == "a") & (table.format == "lo"), "omega"] = 7.0
    assert solve(table, {"bytes": 5.0}).objective == pytest.approx(7.0)
    assert solve(table, {"bytes": 5.0}, aggregate="max").objective == pytest.approx(4.0)


def _hard_instance():
    rng = np.random.default_rng(7)
    n, f = 60, 6
    table = pd.DataFrame({"site": np.repeat([f"s{i}" for i in range(n)], f), "format": [f"f{j}" for j in range(f)] * n,
                          "omega": rng.random(n * f), "bytes": rng.integers(1, 1000, n * f).astype(float),
                          "latency": rng.integers(1, 1000, n * f).astype(float)})
    limits = {"bytes": 0.45 * table.groupby("site").bytes.max().sum(),
              "latency": 0.45 * table.groupby("site").latency.max().sum()}
    return table, limits


@pytest.mark.parametrize("solver", SOLVERS)
def test_time_limited_solve_reports_a_real_bound(solver, monkeypatch):
    """An early stop, injected (no wall clock): the solver's incumbent comes back with its own proven
    bound, strictly below the objective, status time_limit."""
    import mpsearch.search.ilp as ilp

    table, limits = _hard_instance()
    exact = solve(table, limits, solver=solver)
    real = ilp._solve_highs if solver == "highs" else ilp._solve_cbc

    def stopped_early(m, time_limit, threads, start):
        r = real(m, time_limit, threads, start)
        return ilp._Result(r.z, "time_limit", r.bound - 0.05 * abs(r.bound))

    monkeypatch.setattr(ilp, "_solve_highs" if solver == "highs" else "_solve_cbc", stopped_early)
    sol = solve(table, limits, solver=solver, time_limit=0.5)
    assert sol.status == "time_limit" and sol.objective == pytest.approx(exact.objective, rel=1e-9)
    assert math.isfinite(sol.bound) and sol.bound < sol.objective and 0 < sol.gap < 1


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_time_limit_with_no_incumbent_still_returns_a_feasible_plan(solver, monkeypatch):
    """The solver stopped before finding any plan: a greedy plan that fits, with the LP bound as its
    proven bound (≤ the true optimum), not InfeasibleBudget."""
    import mpsearch.search.ilp as ilp

    table, limits = _hard_instance()
    exact = solve(table, limits, solver=solver)
    monkeypatch.setattr(ilp, "_solve_highs" if solver == "highs" else "_solve_cbc",
                        lambda m, *a: ilp._Result(None, "time_limit", math.nan))
    sol = solve(table, limits, solver=solver, time_limit=0.01)
    assert sol.status == "time_limit"
    assert all(sol.totals[k] <= lim for k, lim in limits.items())
    assert sol.bound <= exact.objective + 1e-9 <= sol.objective + 2e-9
    assert 0 <= sol.gap < 1 and sol.objective < table.groupby("site").omega.max().sum()


@pytest.mark.parametrize("solver", SOLVERS)
def test_omega_over_twelve_decades_is_solved_to_the_brute_force_optimum(solver):
    """CBC returned plans above the optimum labelled optimal when Ω spanned many decades (the objective
    was scaled by the worst case). CI runs 40 instances; benchmarks/ilp_decades.py runs 500."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from ilp_decades import above

    excess = [above(seed, solver) for seed in range(40)]
    assert max(excess) <= 1e-9, [(i, e) for i, e in enumerate(excess) if e > 1e-9]


def test_warm_start_keeps_the_optimum():
    table, limits, ties, pw = instance(3)
    cold = solve(table, limits, ties=ties, pairwise=pw)
    warm = solve(table, limits, ties=ties, pairwise=pw, warm_start=cold.assignments)
    assert warm.objective == pytest.approx(cold.objective)


def test_tie_without_a_common_format_is_an_error():
    table = pd.DataFrame({"site": ["a", "a", "b", "b"], "format": ["x", "y", "z", "w"],
                          "omega": [1.0, 0.0, 1.0, 0.0], "bytes": [1.0, 2.0, 1.0, 2.0]})
    with pytest.raises(InfeasibleBudget, match="share no candidate format"):
        solve(table, {"bytes": 4.0}, ties=[["a", "b"]])
    with pytest.raises(UsageError, match="unknown site"):
        solve(table, {"bytes": 4.0}, ties=[["a", "nope"]])


def test_pairwise_needs_the_sum_and_known_rows():
    table = pd.DataFrame({"site": ["a", "a", "b", "b"], "format": ["x", "y"] * 2,
                          "omega": [1.0, 0.0, 1.0, 0.0], "bytes": [1.0, 2.0, 1.0, 2.0]})
    pw = pd.DataFrame([{"site_a": "a", "format_a": "x", "site_b": "b", "format_b": "q", "omega": 1.0}])
    with pytest.raises(UsageError, match="not in the table"):
        solve(table, {"bytes": 4.0}, pairwise=pw)
    with pytest.raises(UsageError, match="cannot combine"):
        solve(table, {"bytes": 4.0}, pairwise=pw, aggregate="max")
    with pytest.raises(UsageError, match="unknown objective aggregate"):
        solve(table, {"bytes": 4.0}, aggregate="median")


@pytest.mark.skipif(len(available_solvers()) < 2, reason="needs both HiGHS and CBC")
def test_verify_replaces_a_wrong_optimal_with_the_other_solvers_answer(monkeypatch):
    """A backend that labels a sub-optimal plan "optimal" (injected: the greedy plan) is caught by
    verify=True, which solves with the other backend and keeps the better plan; without it the wrong
    plan comes back."""
    import mpsearch.search.ilp as ilp

    table, limits = _hard_instance()
    exact = solve(table, limits, solver="highs")
    monkeypatch.setattr(ilp, "_solve_highs", lambda m, *a: ilp._Result(ilp._greedy(m), "optimal", math.nan))
    trusted = solve(table, limits, solver="highs")
    assert trusted.objective > exact.objective * (1 + 1e-6)  # the injected answer really is worse
    with pytest.warns(UserWarning, match="keeping cbc's plan"):
        checked = solve(table, limits, solver="highs", verify=True)
    assert checked.solver == "cbc" and checked.objective == pytest.approx(exact.objective, rel=1e-9)
    assert checked.info["verification"]["other_objective"] == pytest.approx(exact.objective, rel=1e-9)


def test_lp_relaxation_bounds_every_answer_and_an_answer_below_it_is_an_error(monkeypatch):
    """The LP relaxation is a lower bound no solver bookkeeping enters: it sits at or below the
    brute-force optimum, and an answer below it (injected: an LP bound above every plan) is refused."""
    import mpsearch.search.ilp as ilp

    for seed in range(6):
        table, limits, ties, pw = instance(seed)
        best = brute_force(table, limits, ties, pw, "sum")
        if best is None:
            continue
        sol = solve(table, limits, ties, pw)
        lp = sol.info["verification"]["lp_bound"]
        assert lp <= best + 1e-9 and sol.objective == pytest.approx(best, rel=1e-9, abs=1e-9)
        assert sol.bound >= lp - 1e-12
    table, limits = _hard_instance()
    monkeypatch.setattr(ilp, "_lp_bound", lambda m: 1e30)
    with pytest.raises(RuntimeError, match="below its LP relaxation"):
        solve(table, limits)
