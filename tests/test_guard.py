"""The guard measures only the uniform plans that fit, and remembers measurements across budgets."""

import pytest
import torch

import mpsearch
import mpsearch.planner._planner as planner_mod
from mpsearch import memo
from mpsearch.apply import quantized
from mpsearch.data import as_data
from mpsearch.objectives import measure


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = planner_mod.measure

    def counting(model, data, metrics):
        calls.append(1)
        return real(model, data, metrics)

    monkeypatch.setattr(planner_mod, "measure", counting)
    memo.clear()
    yield calls
    memo.clear()


def _distinct(plan):
    return {tuple(sorted(plan.assignments.items()))} | {
        (n,) for n, u in plan.measured["uniform"].items() if u["fits_budget"]}


def test_guard_measures_only_fitting_uniform_plans_and_reuses_them(digits, digits_sensitivity, counted):
    m = digits.model
    p4 = mpsearch.plan(m, digits.calibration, budget="4.1bits", sensitivity=digits_sensitivity)
    uni = p4.measured["uniform"]
    fits = {n for n, u in uni.items() if u["fits_budget"]}
    assert fits == {"int2", "int3", "int4"}  # int4 per channel is 4.0039 bits; int5 and up do not fit
    assert all(("cross_entropy" in u) == (n in fits) for n, u in uni.items())
    plan_is_uniform = len(set(p4.assignments.values())) == 1 and p4.assignments[next(iter(p4.assignments))] in fits
    assert len(counted) == 1 + len(fits) + (0 if plan_is_uniform else 1)  # fp + plan + fitting uniforms
    # a remembered number is the number: measure int3 directly
    data = as_data(digits.calibration)
    with quantized(m, {s: "int3" for s in p4.assignments}):
        direct = measure(m, data, ["cross_entropy", "accuracy"])
    assert uni["int3"]["cross_entropy"] == direct["cross_entropy"]

    before = len(counted)
    p5 = mpsearch.plan(m, digits.calibration, budget="5.1bits", sensitivity=digits_sensitivity)
    new_plan = tuple(sorted(p5.assignments.items())) not in {tuple(sorted(p4.assignments.items()))}
    # fp, int2-int4 come from the memo: only int5 and the new searched plan are measured
    assert len(counted) - before == 1 + int(new_plan and len(set(p5.assignments.values())) > 1)
    assert p5.measured["uniform"]["int3"] == {**uni["int3"]}

    with torch.no_grad():  # other weights: another fingerprint, nothing reused
        m.get_parameter("features.0.weight").mul_(1.01)
    before = len(counted)
    # (a table made for the old weights is refused now, so this plan estimates its own, with fisher)
    mpsearch.plan(m, digits.calibration, budget="4.1bits", estimator="fisher")
    assert len(counted) - before == 1 + len(fits) + (0 if plan_is_uniform else 1)
