"""Closing the additivity gap on a real model: refinement never returns a plan that measures worse
than the ILP's, spends at most its measurement budget, and on the digits MLP finds a better plan."""

from __future__ import annotations

import pytest

from mpsearch.errors import UsageError
from mpsearch.search import SearchProblem, get_searcher
from mpsearch.search.ilp import solve_ilp
from mpsearch.search.refine import refine


@pytest.mark.parametrize("avg_bits,budget", [(3.25, 100), (3.5, 100), (3.5, 12)])
def test_refine_measures_at_least_as_well_as_the_ilp_within_budget(mlp_problem, avg_bits, budget):
    problem = mlp_problem(avg_bits)
    ilp_loss = problem.evaluate(solve_ilp(problem).assignments)
    loss = problem.evaluate
    before = loss.measurements
    sol = refine(problem, measurements=budget)
    assert loss.measurements - before <= budget
    assert sol.measured == pytest.approx(loss(sol.assignments))
    assert sol.measured <= ilp_loss + 1e-12
    assert problem.fits(sol.assignments)
    assert sol.history.measured.min() == pytest.approx(sol.measured)


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
