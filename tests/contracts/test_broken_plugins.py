"""The contract checks catch broken plug-ins: each is registered inside the test, like a new plug-in would
be, and its check must raise AssertionError (a suite that passes everything would prove nothing)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest
import torch

from mpsearch.search import Solution, get_searcher
from mpsearch.search.ilp import ILPSearch
from mpsearch.sensitivity import get_estimator
from mpsearch.sensitivity.measured import Measured

from .checks import check_estimator, check_params_round_trip, check_searcher

SEARCHERS = sys.modules["mpsearch.search._base"]._REGISTRY
ESTIMATORS = sys.modules["mpsearch.sensitivity._base"]._REGISTRY


class IgnoresBudget(ILPSearch):
    """Picks the least damaging format at every site, whatever the budget says."""

    name = "ignores-budget"

    def search(self, problem):
        best = {s: min(fs, key=lambda f: problem.row(s, f)[0]) for s, fs in problem.formats.items()}
        return Solution(best, "optimal", problem.predicted(best), float("nan"), 0.0, problem.totals(best))


class LoosensBudget(ILPSearch):
    """Solves exactly, but against a budget 20% looser than the one given."""

    name = "loosens-budget"

    def search(self, problem):
        return super().search(problem.with_limits({k: v * 1.2 for k, v in problem.limits.items()}))


class Suboptimal(ILPSearch):
    """Within budget, but always the cheapest plan: not the brute-force optimum."""

    name = "suboptimal"

    def search(self, problem):
        problem.check_feasible()
        a = {s: min(fs, key=lambda f: problem.row(s, f)[1]) for s, fs in problem.formats.items()}
        return Solution(a, "feasible", problem.predicted(a), float("nan"), 0.0, problem.totals(a))


@pytest.mark.parametrize("cls, match", [(IgnoresBudget, "exceeded a budget"), (LoosensBudget, "exceeded a budget"),
                                        (Suboptimal, "brute force")])
def test_a_searcher_breaking_its_contract_fails_the_check(monkeypatch, cls, match):
    monkeypatch.setitem(SEARCHERS, cls.name, cls)
    with pytest.raises(AssertionError, match=match):
        check_searcher(lambda: get_searcher(cls.name))


class TrainsBatchNorm(Measured):
    """Runs one forward in train mode first: BatchNorm's running statistics move."""

    name = "trains-batchnorm"

    def estimate(self, model, sites, choices, data, objective, seed=0):
        model.train()
        with torch.no_grad():
            model(data.first_x)
        return super().estimate(model, sites, choices, data, objective, seed)


class LeavesEvalMode(Measured):
    name = "leaves-eval-mode"

    def estimate(self, model, sites, choices, data, objective, seed=0):
        model.eval()
        return super().estimate(model, sites, choices, data, objective, seed)


class DropsARow(Measured):
    name = "drops-a-row"

    def estimate(self, model, sites, choices, data, objective, seed=0):
        t = super().estimate(model, sites, choices, data, objective, seed)
        t.frame = t.frame.iloc[1:]
        return t


class Unseeded(Measured):
    name = "unseeded"

    def estimate(self, model, sites, choices, data, objective, seed=0):
        t = super().estimate(model, sites, choices, data, objective, seed)
        t.frame = t.frame.assign(omega=t.frame.omega + torch.rand(len(t.frame)).numpy())
        return t


@pytest.mark.parametrize("cls, match", [(TrainsBatchNorm, "changed 'bn.running_mean'"),
                                        (LeavesEvalMode, "train/eval mode"), (DropsARow, "misses"),
                                        (Unseeded, "same seed, other table")])
def test_an_estimator_breaking_its_contract_fails_the_check(monkeypatch, module_case, pt2_case, cls, match):
    monkeypatch.setitem(ESTIMATORS, cls.name, cls)
    state = {k: v.clone() for k, v in module_case.model.state_dict().items()}
    try:
        with pytest.raises(AssertionError, match=match):
            check_estimator(lambda: get_estimator(cls.name, max_samples=16), module_case, pt2_case)
    finally:  # the shared model goes back as it was, for the checks that follow
        module_case.model.load_state_dict(state)
        module_case.model.eval()


@dataclass(eq=False)
class HiddenDefault(ILPSearch):
    """Declares a setting but reports another value than it uses."""

    name = "hidden-default"
    rounds: int = 3

    def get_params(self):
        return {**super().get_params(), "rounds": "3"}


def test_params_that_do_not_round_trip_fail_the_check():
    with pytest.raises(AssertionError, match="rounds='3' is not"):
        check_params_round_trip(HiddenDefault())
