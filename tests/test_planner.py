"""The Planner: measure once, solve many; the direction helper; the objective-aware guard."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

import mpsearch
from mpsearch import hardware_models
from mpsearch.budget import parse_budgets, resolve
from mpsearch.data import as_data
from mpsearch.errors import UsageError
from mpsearch.formats import get_choice, parse_choices
from mpsearch.objectives import as_loss, better, get_objective, sign
from mpsearch.planner import PlanConfig, Planner, guard
from mpsearch.search import SearchProblem
from mpsearch.sensitivity import Estimator, SensitivityTable


class CountingEstimator(Estimator):
    """Ω = numel · 4^-bits per (site, choice): a known table, and a count of how often it was asked."""

    BITS = {"int2": 2, "int3": 3, "int4": 4, "int5": 5, "int8": 8, "bf16": 16}

    name = "counting"

    def __init__(self, **settings):
        super().__init__(**settings)
        self.calls = 0

    def estimate(self, model, sites, choices, data, objective, seed=0) -> SensitivityTable:
        self.calls += 1
        rows = [{"site": s.name, "format": c.name, "omega": s.numel * 4.0 ** -self.BITS[c.name], "omega_se": 0.0}
                for s in sites for c in choices]
        return SensitivityTable(pd.DataFrame(rows), self.name)


FORMATS = ["int2", "int3", "int4", "int8", "bf16"]


def brute_force(table: pd.DataFrame, bits_limit: float) -> dict[str, str]:
    rows = {s: g.to_dict("records") for s, g in table.groupby("site", sort=False)}
    best, best_omega = None, float("inf")
    for combo in itertools.product(*rows.values()):
        if sum(r["bits"] for r in combo) <= bits_limit and sum(r["omega"] for r in combo) < best_omega:
            best, best_omega = {r["site"]: r["format"] for r in combo}, sum(r["omega"] for r in combo)
    return best


def test_a_second_budget_re_solves_without_re_estimating(digits_shared):
    d, est = digits_shared, CountingEstimator()
    planner = Planner(d.model, d.calibration, PlanConfig(formats=FORMATS, estimator=est, cache=False,
                                                         guard_uniform=False, search="ilp"))  # the table's optimum
    p4, p3 = planner.plan("4bits"), planner.plan("3bits")
    front = planner.pareto("bits", points=3)
    assert est.calls == 1  # one table served two budgets and a sweep
    assert p3.totals["avg_bits"] <= 3 + 1e-9 < p4.totals["avg_bits"] <= 4 + 1e-9
    # each re-solve is the brute-force optimum of the known table at its budget
    table = est.estimate(d.model, planner.sites, planner.choices, None, None).frame.merge(planner.costs)
    for plan, bits in ((p4, "4bits"), (p3, "3bits")):
        limit = resolve(parse_budgets(bits), planner.reference)["bits"]
        assert plan.assignments == brute_force(table, limit)
    assert (front.points.kind == "plan").sum() >= 1


def test_variants_share_a_table_that_covers_their_candidates(digits_shared):
    d, est = digits_shared, CountingEstimator()
    base = Planner(d.model, d.calibration, PlanConfig(formats=FORMATS, estimator=est, cache=False))
    base.sensitivity()
    narrower = base.variant(formats=["int4", "bf16"], guard_uniform=False)
    plan = narrower.plan("6bits")
    assert est.calls == 1 and set(plan.assignments.values()) <= {"int4", "bf16"}
    wider = base.variant(formats=FORMATS + ["int5"])
    wider.sensitivity()
    assert est.calls == 2  # int5 was never measured: a new table
    with pytest.raises(UsageError, match="PlanConfig has no field 'budget'"):
        base.variant(budget="4bits")
    with pytest.raises(UsageError, match="cannot change per plan"):
        base.plan("4bits", formats=["int4"])


def test_direction_helper():
    acc, ce = get_objective("accuracy"), get_objective("cross_entropy")
    assert sign(acc) == -1.0 and sign(ce) == 1.0 and sign(True) == -1.0 and sign(False) == 1.0
    assert better(acc, 0.9, 0.8) and not better(acc, 0.8, 0.9) and not better(acc, 0.8, 0.8)
    assert better(ce, 0.1, 0.2) and not better(ce, 0.2, 0.1)
    assert as_loss(acc, 0.75) == -0.75 and as_loss("kl", 0.75) == 0.75


def _uniform_problem(digits, names):
    data = as_data(digits.calibration)
    site_list = mpsearch.sites(digits.model, data.first_x)
    choices = parse_choices(names, [])
    table = hardware_models.cost_table(site_list, choices).assign(omega=0.0)
    return data, site_list, choices, SearchProblem(table, {"bits": 1e12}), \
        hardware_models.reference(digits.model, site_list)


def test_guard_follows_the_objective_direction(digits):
    """Accuracy is higher-is-better: the guard keeps a plan that measures a higher accuracy than every
    uniform plan (it used to swap in uniform int2 'because it measured a lower accuracy')."""
    data, site_list, choices, problem, ref = _uniform_problem(digits, "int2,int4")
    good = {s.name: "int4" for s in site_list}
    kept, m = guard(digits.model, data, get_objective("accuracy"), problem, good, choices, ref)
    assert m["uniform"]["int2"]["accuracy"] < m["plan"]["accuracy"]  # int2 is the worse plan here
    assert kept == good and "guard" not in m
    bad = {s.name: "int2" for s in site_list}
    swapped, m = guard(digits.model, data, get_objective("accuracy"), problem, bad, choices, ref)
    assert set(swapped.values()) == {"int4"} and m["plan"]["accuracy"] == m["uniform"]["int4"]["accuracy"]


def test_accuracy_objective_plan_returns_the_searched_plan(digits_shared, digits_sensitivity):
    """`mpsearch plan --example digits-cnn --budget 4bits --objective accuracy` returned uniform int2: the
    guard now measures in the objective's direction, so the searched mixed plan is kept."""
    d = digits_shared
    plan = mpsearch.plan(d.model, d.calibration, budget="4bits", objective="accuracy",
                         sensitivity=digits_sensitivity)
    m = plan.measured
    fitting = {k: v["accuracy"] for k, v in m["uniform"].items() if v["fits_budget"]}
    assert "guard" not in m and len(set(plan.assignments.values())) > 1
    assert m["plan"]["accuracy"] >= max(fitting.values())
    assert set(plan.assignments.values()) != {"int2"}


def test_distilled_data_defaults_to_the_measured_estimator(digits_shared):
    from mpsearch.planner import default_estimator

    data = as_data(digits_shared.calibration)
    assert default_estimator(data) == "hessian"
    data.distilled = True
    assert default_estimator(data) == "measured"
    assert Planner(digits_shared.model, data).estimator_name == "measured"


def test_guard_counts_a_uniform_plan_as_fitting_by_the_one_tolerance(digits):
    """The guard asks the problem whether a uniform plan fits (one budget-fit tolerance)."""
    data, site_list, choices, _, ref = _uniform_problem(digits, "int2,int4")
    table = hardware_models.cost_table(site_list, choices).assign(omega=0.0)
    int4_bits = float(table[table.format == "int4"].bits.sum())
    problem = SearchProblem(table, {"bits": int4_bits * (1 - 1e-12)})  # within rounding of its own cost
    bad = {s.name: "int2" for s in site_list}
    _, m = guard(digits.model, data, get_objective("cross_entropy"), problem, bad, choices, ref)
    assert m["uniform"]["int4"]["fits_budget"] is True
    assert get_choice("int4").weight.bits == 4
