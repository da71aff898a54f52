"""Fronts never go backwards: a larger budget never keeps a plan measuring worse than a smaller one's."""

from __future__ import annotations

import numpy as np

from mpsearch import pareto
from mpsearch.search.monotone import carry_forward


def test_carry_forward_replaces_worse_plans_by_the_best_smaller_one():
    rows = [{"kind": "plan", "label": f"b{b}", "budget": b, "cost": b - 0.1, "loss": v, "assignments": {"x": str(b)}}
            for b, v in [(3, 0.5), (2, 0.9), (4, 0.7), (5, 0.2), (6, 0.3)]]  # budgets out of order on purpose
    rows += [{"kind": "uniform", "label": "u", "budget": float("nan"), "cost": 1.0, "loss": 9.0, "assignments": {}},
             {"kind": "plan", "label": "failed", "budget": 3.5}]
    out = {r["label"]: r for r in carry_forward(rows, "loss")}
    assert [out[f"b{b}"]["loss"] for b in (2, 3, 4, 5, 6)] == [0.9, 0.5, 0.5, 0.2, 0.2]
    assert out["b4"]["assignments"] == {"x": "3"} and out["b4"]["carried_from"] == 3 and out["b4"]["budget"] == 4
    assert out["b6"]["carried_from"] == 5 and "carried_from" not in out["b5"]
    assert out["u"]["loss"] == 9.0 and "cost" not in out["failed"]
    # a higher-is-better metric (negated values, the same order of quality) carries the same plans
    up = carry_forward([dict(r, loss=-r["loss"]) for r in rows[:5]], "loss", higher_is_better=True)
    assert [r["loss"] for r in sorted(up, key=lambda r: r["budget"])] == [-0.9, -0.5, -0.5, -0.2, -0.2]


def test_pareto_sweep_on_the_digits_cnn_is_monotone_in_measured_loss(digits_shared, digits_sensitivity):
    budgets = [2.5, 2.75, 3.0, 3.25, 3.5, 4.0, 5.0, 6.0]
    ex = digits_shared
    front = pareto(ex.model, ex.calibration, metric="bits", budgets=budgets, search="ilp",
                   formats=list(digits_sensitivity.frame.format.unique()), sensitivity=digits_sensitivity,
                   test=ex.test, progress=False)
    plans = front.points[front.points.kind == "plan"].sort_values("budget")
    loss = plans.cal_cross_entropy.to_numpy()
    assert len(plans) >= 3
    assert np.all(np.diff(loss) <= 1e-12), plans[["budget", "cost", "cal_cross_entropy"]]
    assert np.all(plans.cost.to_numpy() <= plans.budget.to_numpy() * (1 + 1e-6))  # each plan fits its budget
