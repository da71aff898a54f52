"""`--max-drop`: the acceptance test of a plan's measured drop, and the bisection that uses it.

The drop of a plan is how much worse (under the metric's direction) it measures than the FP model on
the calibration data; the bisection itself (`search.tolerance.cheapest_within`) only sees a callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..objectives import as_loss, default_objective, get_objective, measure
from ..quantize import quantized
from ..search import Searcher, SearchProblem, Solution
from ..search.tolerance import Tolerance, cheapest_within


@dataclass
class DropCheck:
    """How far a plan's measured `metric` falls below the FP model's on the calibration data, and
    how far it may: the acceptance test of `--max-drop`, shared by the bisection and the guard."""

    drop: Callable[[dict[str, str]], float]
    allowed: float
    metric: str
    fp: float
    tolerance: Tolerance

    def accepts(self, assignments: dict[str, str]) -> bool:
        return self.drop(assignments) <= self.allowed


def drop_check(model, data, max_drop, metric: str | None = None, acts=None) -> DropCheck:
    """The drop of `metric` (default: accuracy with labels, else the objective the data implies);
    WEIGHT:ACT choices use the plan's calibrated activation parameters `acts`."""
    tol = Tolerance.parse(max_drop)
    obj = get_objective(metric) if metric else (get_objective("accuracy") if data.labelled
                                                else default_objective(data))
    fp = measure(model, data, [obj])[obj.name]
    seen: dict[frozenset, float] = {}

    def drop(assign: dict[str, str]) -> float:
        key = frozenset(assign.items())
        if key not in seen:
            with quantized(model, assign, acts, data):
                seen[key] = as_loss(obj, measure(model, data, [obj])[obj.name] - fp) + 0.0  # + 0.0: no -0.0
        return seen[key]

    return DropCheck(drop, tol.allowed(fp, obj.name), obj.name, fp, tol)


def within_tolerance(problem: SearchProblem, searcher: Searcher, check: DropCheck) -> tuple[Solution, SearchProblem]:
    """`cheapest_within` under a `DropCheck` measured on the calibration data the plan sees."""
    sol, at = cheapest_within(problem, searcher, check.drop, check.allowed)
    sol.history = sol.history.assign(metric=check.metric, fp=check.fp, tolerance=str(check.tolerance))
    return sol, at
