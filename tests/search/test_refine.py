"""Closing the additivity gap: refinement finds the brute-force measured optimum the ILP misses, spends at
most its measurement budget, reports honestly, and on the digits MLP finds a better plan."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mpsearch.errors import UsageError
from mpsearch.search import SearchProblem, get_searcher
from mpsearch.search.ilp import solve_ilp
from mpsearch.search.refine import refine


@pytest.mark.parametrize("avg_bits,budget", [(3.25, 100), (3.5, 100), (3.5, 12)])
def test_refine_spends_at_most_its_budget_and_reports_honestly(mlp_problem, avg_bits, budget):
    problem = mlp_problem(avg_bits)
    loss = problem.evaluate
    before = loss.measurements
    sol = refine(problem, measurements=budget)
    assert loss.measurements - before <= budget
    assert sol.measured == pytest.approx(loss.fn(sol.assignments))  # re-measured, not read from the cache
    assert problem.fits(sol.assignments)
    assert sol.history.measured.min() == pytest.approx(sol.measured)


def _misled_problem(seed: int):
    """5 sites x 3 formats: the proxy Ω has a per-site scale error and misses a pairwise penalty (s0 and s1
    both 'lo'); returns the table, budget, true loss and its brute-force optimum over the feasible plans."""
    rng = np.random.default_rng(seed)
    sites, fmts, cost = [f"s{i}" for i in range(5)], ["lo", "mid", "hi"], {"lo": 2.0, "mid": 4.0, "hi": 8.0}
    true = {s: {"lo": rng.uniform(0.5, 2), "mid": rng.uniform(0.1, 0.4), "hi": 0.0} for s in sites}
    bias = rng.uniform(0.3, 3.0, len(sites))
    table = pd.DataFrame([{"site": s, "format": f, "omega": bias[i] * true[s][f], "bytes": cost[f]}
                          for i, s in enumerate(sites) for f in fmts])

    def loss(a: dict[str, str]) -> float:
        return sum(true[s][a[s]] for s in a) + (1.5 if a.get("s0") == a.get("s1") == "lo" else 0.0)

    limit = {"bytes": 22.0}
    feasible = [dict(zip(sites, c, strict=True)) for c in itertools.product(fmts, repeat=len(sites))
                if sum(cost[f] for f in c) <= limit["bytes"]]
    return table, limit, loss, min(loss(a) for a in feasible), len(feasible)


@pytest.mark.parametrize("seed", [0, 5])
def test_refine_finds_the_brute_force_optimum_the_ilp_misses(seed):
    table, limit, loss, best, n_feasible = _misled_problem(seed)
    assert loss(solve_ilp(SearchProblem(table, limit)).assignments) > best + 0.05  # the proxy misleads here
    problem = SearchProblem(table, limit, evaluate=loss)
    sol = refine(problem, measurements=40)
    assert 40 < n_feasible  # not by enumeration
    assert sol.measured == pytest.approx(best) and loss(sol.assignments) == pytest.approx(best)
    assert problem.fits(sol.assignments)


def test_refine_improves_on_the_hessian_plan_at_a_low_budget(mlp_problem):
    """At 3.25 bits the Hessian-only ILP plan is beaten by the refined one (measured, same budget)."""
    problem = mlp_problem(3.25)
    ilp_loss = problem.evaluate(solve_ilp(problem).assignments)
    sol = get_searcher("refine", measurements=100).search(problem)
    assert sol.measured < ilp_loss - 1e-3
    assert sol.solver.startswith("refine")


def test_refine_needs_a_way_to_measure(mlp_tables):
    _, table, weights = mlp_tables
    with pytest.raises(UsageError, match="needs calibration data"):
        refine(SearchProblem(table, {"bits": 3.5 * weights}))
    with pytest.raises(UsageError, match="no setting 'budget'"):
        get_searcher("refine", budget=3)
