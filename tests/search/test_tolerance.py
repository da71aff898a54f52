"""Bisection to tolerance: the cheapest plan whose measured drop is within tolerance, to the resolution."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import mpsearch
from mpsearch.apply import quantized
from mpsearch.errors import InfeasibleBudget, UsageError
from mpsearch.objectives import measure
from mpsearch.search import SearchProblem, get_searcher
from mpsearch.search.tolerance import Tolerance, cheapest_within


def test_tolerance_parsing():
    assert Tolerance.parse("1%") == Tolerance(0.01, True)
    assert Tolerance.parse("0.005") == Tolerance(0.005, False)
    assert Tolerance.parse("1%").allowed(0.9, "accuracy") == pytest.approx(0.009)
    with pytest.raises(UsageError, match="cannot parse the tolerance"):
        Tolerance.parse("one percent")
    with pytest.raises(UsageError, match="nonzero FP"):
        Tolerance.parse("1%").allowed(0.0, "kl")


@pytest.mark.parametrize("seed", range(6))
def test_bisection_finds_the_cheapest_budget_within_tolerance(seed):
    """With drop = the ILP's own objective (monotone in the budget), the answer is known by brute force."""
    rng = np.random.default_rng(seed)
    sites, fmts = [f"s{i}" for i in range(6)], ["f2", "f4", "f8", "f16"]
    rows = [{"site": s, "format": f, "omega": float(rng.exponential()) * 4.0 ** -(b / 2), "bytes": float(n * b)}
            for s, n in zip(sites, rng.integers(10, 100, len(sites))) for f, b in zip(fmts, (2, 4, 8, 16))]
    table = pd.DataFrame(rows)
    problem = SearchProblem(table, {"bytes": float(table.groupby("site").bytes.max().sum())})
    allowed = float(rng.uniform(0.05, 0.3))
    om = table.omega.to_numpy().reshape(len(sites), len(fmts))
    by = table.bytes.to_numpy().reshape(len(sites), len(fmts))
    combos = np.array(list(itertools.product(range(len(fmts)), repeat=len(sites))))  # every assignment
    rows_ = np.arange(len(sites))
    total_om, total_by = om[rows_, combos].sum(1), by[rows_, combos].sum(1)
    b_star = total_by[total_om <= allowed].min()
    sol, at = cheapest_within(problem, get_searcher("ilp"), problem.predicted, allowed, resolution=0.001)
    span = problem.limits["bytes"] - table.groupby("site").bytes.min().sum()
    assert sol.measured <= allowed
    assert b_star <= sol.totals["bytes"] <= b_star + 0.001 * span
    assert at.limits["bytes"] == sol.totals["bytes"]
    assert sol.history.within.any() and (~sol.history.within).any()


def test_no_plan_within_tolerance_is_an_error():
    table = pd.DataFrame({"site": ["a", "a"], "format": ["x", "y"], "omega": [1.0, 0.5], "bytes": [1.0, 2.0]})
    problem = SearchProblem(table, {"bytes": 2.0})
    with pytest.raises(InfeasibleBudget, match="keeps the drop within"):
        cheapest_within(problem, get_searcher("ilp"), problem.predicted, 0.1)


def test_plan_max_drop_on_the_digits_cnn(cnn, cnn_sens):
    """`plan(max_drop=...)`: accuracy on the calibration data stays within 1% of FP, the plan is far
    cheaper than 16-bit, and the bisection rejected every cheaper budget it tried."""
    p = mpsearch.plan(cnn.model, cnn.calibration, sensitivity=cnn_sens, max_drop="1%")
    with quantized(cnn.model, p.assignments):
        acc = measure(cnn.model, mpsearch.data.as_data(cnn.calibration), ["accuracy"])["accuracy"]
    fp = measure(cnn.model, mpsearch.data.as_data(cnn.calibration), ["accuracy"])["accuracy"]
    assert fp - acc <= 0.01 * fp + 1e-9
    assert p.totals["avg_bits"] < 4
    steps = pd.DataFrame(p.measured["search"])
    accepted = steps[steps.within].cost.min()
    assert (steps.cost < accepted).any()  # a cheaper plan was measured and rejected
    assert p.provenance["max_drop"] == "1%"
