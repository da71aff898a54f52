"""The searchers through `mpsearch.plan` and the CLI: settings pass through, measured searches find the
brute-force measured optimum where the ILP's proxy misleads, errors are one line."""

from __future__ import annotations

import itertools

import pytest

import mpsearch
from mpsearch.apply import quantized
from mpsearch.cli import main
from mpsearch.data import as_data
from mpsearch.errors import UsageError
from mpsearch.objectives import measure


def loss_of(ex, assign, data=None) -> float:
    with quantized(ex.model, assign):
        return measure(ex.model, as_data(ex.calibration if data is None else data), ["cross_entropy"])[
            "cross_entropy"]


@pytest.fixture(scope="module")
def brute_force_3bits(cnn):
    """The digits CNN on 128 calibration digits with int2/int3/int4: every plan within 3.25 bits/weight (159 of
    243), measured, and the Hessian table for those formats (there the ILP's plan measures 2.2x the best)."""
    cal = {"x": cnn.calibration["x"][:128], "y": cnn.calibration["y"][:128]}
    formats = ["int2", "int3", "int4"]
    names = list(mpsearch.Plan.from_assignments(cnn.model, {}).assignments)
    losses = {}
    for combo in itertools.product(formats, repeat=len(names)):
        assign = dict(zip(names, combo, strict=True))
        if mpsearch.Plan.from_assignments(cnn.model, assign).totals["avg_bits"] <= 3.25 + 1e-9:
            losses[combo] = loss_of(cnn, assign, cal)
    sens = mpsearch.sensitivity(cnn.model, cal, formats=formats, seed=0, max_probes=12)
    return cal, formats, sens, min(losses.values()), len(losses)


@pytest.mark.parametrize("search,settings", [("refine", {"measurements": 30}), ("optuna", {"trials": 50})])
def test_measured_searches_through_plan_find_the_brute_force_optimum(cnn, brute_force_3bits, search, settings):
    cal, formats, sens, best, n_feasible = brute_force_3bits
    common = dict(budget="3.25bits", formats=formats, sensitivity=sens, guard_uniform=False)
    ilp = mpsearch.plan(cnn.model, cal, search="ilp", **common)
    assert loss_of(cnn, ilp.assignments, cal) > best * 1.05  # the proxy misleads the ILP here
    p = mpsearch.plan(cnn.model, cal, search=search, search_settings=settings, **common)
    assert settings.get("measurements", settings.get("trials")) < n_feasible / 3  # not by enumeration
    assert loss_of(cnn, p.assignments, cal) == pytest.approx(best)
    assert p.totals["avg_bits"] <= 3.25 + 1e-9
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
