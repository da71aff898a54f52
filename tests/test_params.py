"""Typed plug-in settings: text coerced to the declared type, wrong types and names refused in one line,
effective values (defaults included) recorded where they matter."""

from __future__ import annotations

from typing import Literal

import pytest

import mpsearch
from mpsearch import hardware_models
from mpsearch.errors import UsageError
from mpsearch.params import coerce, describe_type
from mpsearch.search import get_searcher


@pytest.mark.parametrize("value, tp, want", [
    ("12", int, 12), (12.0, int, 12), ("0.5", float, 0.5), (3, float, 3.0), ("off", bool, False),
    ("yes", bool, True), ("none", int | None, None), ("7", int | None, 7), ("ggn", Literal["auto", "ggn"], "ggn"),
    (" tpe ", str, "tpe"), ([1, 2], tuple[int, ...], (1, 2)),
])
def test_coerce(value, tp, want):
    got = coerce(value, tp)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("value, tp", [("abc", int), (True, int), (1.5, int), ("maybe", bool), ("x", float),
                                       (3, str), ("newton", Literal["auto", "ggn"]), ("none", int), ("{}", dict)])
def test_coerce_refuses(value, tp):
    with pytest.raises(ValueError):
        coerce(value, tp)


def test_describe_type():
    assert [describe_type(t) for t in (int, float | None, Literal["a", "b"], tuple[str, ...])] == [
        "int", "float or none", "a|b", "list of str"]


def test_searcher_and_cost_model_settings_are_typed():
    assert get_searcher("optuna", trials="5", time_limit="2").get_params()["trials"] == 5
    with pytest.raises(UsageError, match=r"^search 'optuna' setting trials must be int, not 'abc'; it takes .*"
                                         r"trials \(int, default 100\)"):
        get_searcher("optuna", trials="abc")
    with pytest.raises(UsageError, match=r"search 'refine' has no setting 'measurement'.*did you mean 'measurements'"):
        get_searcher("refine", measurement=3)
    assert hardware_models.get("h100", batch="8").get_params()["batch"] == 8
    with pytest.raises(UsageError, match="hardware 'h100' setting batch must be int, not 'eight'"):
        hardware_models.get("h100", batch="eight")


def test_plan_provenance_records_the_effective_estimator_settings(tiny):
    """Defaults the user never passed are in the plan: the settings are not hidden inside estimate()."""
    model, x, y = tiny
    p = mpsearch.plan(model, (x, y), budget="6bits", estimator="hutchinson", guard_uniform=False,
                      estimator_settings={"max_probes": "8"})
    st = p.provenance["estimator_settings"]
    assert (st["max_probes"], st["tol"], st["min_probes"], st["max_samples"]) == (8, 0.05, 8, 512)
    assert st["method"] == "hutchinson" and "progress" not in st
