"""The searchers through `mpsearch.plan` and the CLI: settings pass through, measured searches never
return a plan that measures worse than the ILP's, errors are one line."""

from __future__ import annotations

import pytest

import mpsearch
from mpsearch.apply import quantized
from mpsearch.cli import main
from mpsearch.data import as_data
from mpsearch.errors import UsageError
from mpsearch.objectives import measure


def loss_of(ex, assign) -> float:
    with quantized(ex.model, assign):
        return measure(ex.model, as_data(ex.calibration), ["cross_entropy"])["cross_entropy"]


@pytest.mark.parametrize("search,settings", [("refine", {"measurements": 30}),
                                             ("optuna", {"trials": 15, "storage": "memory"})])
def test_measured_searches_through_plan(cnn, cnn_sens, search, settings):
    common = dict(budget="2.5bits", sensitivity=cnn_sens, guard_uniform=False)
    ilp = mpsearch.plan(cnn.model, cnn.calibration, search="ilp", **common)
    p = mpsearch.plan(cnn.model, cnn.calibration, search=search, search_settings=settings, **common)
    assert loss_of(cnn, p.assignments) <= loss_of(cnn, ilp.assignments) + 1e-9
    assert p.totals["avg_bits"] <= 2.5 + 1e-9
    assert p.provenance["search"] == search
    if search == "refine":
        assert p.measured["search"]  # what the search measured is kept with the plan


def test_aggregate_setting(cnn, cnn_sens):
    p = mpsearch.plan(cnn.model, cnn.calibration, budget="3bits", sensitivity=cnn_sens, guard_uniform=False,
                      search_settings={"aggregate": "max"})
    worst = max(r["omega"] for r in p.sites.values())
    q = mpsearch.plan(cnn.model, cnn.calibration, budget="3bits", sensitivity=cnn_sens, guard_uniform=False)
    assert worst <= max(r["omega"] for r in q.sites.values()) + 1e-12
    with pytest.raises(UsageError, match="no setting 'trails'"):
        mpsearch.plan(cnn.model, cnn.calibration, budget="3bits", sensitivity=cnn_sens, search="optuna",
                      search_settings={"trails": 3})


def test_cli_errors_are_one_line(capsys):
    assert main(["plan", "--example", "digits-cnn", "--max-drop", "lots"]) == 2
    err = capsys.readouterr().err
    assert "cannot parse the tolerance 'lots'" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main(["plan", "--example", "digits-cnn", "--budget", "3bits", "--search-option", "aggregate"])
    assert e.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_plan_needs_a_budget_or_a_tolerance(capsys):
    with pytest.raises(SystemExit) as e:
        main(["plan", "--example", "digits-cnn"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--budget" in err and "--max-drop" in err and "\n" not in err
