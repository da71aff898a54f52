"""Bisection to tolerance: the cheapest plan whose *measured* metric drop stays within a tolerance.

The procedure of "Augmenting Hessians with Inter-Layer Dependencies": bisect the budget; at each
budget solve for the best plan, measure it, and keep the budget if the drop is tolerable. The upper
end then moves to the accepted plan's own cost (every budget between that cost and the midpoint
yields the same plan), so each measurement either halves the interval or skips straight past a
plateau. The drop of a plan is FP minus plan for a higher-is-better metric (accuracy), plan minus FP
for a loss; `1%` is relative to the FP value, a plain number is absolute in the metric's units.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..errors import InfeasibleBudget, UsageError
from ._base import Searcher, SearchProblem, Solution


@dataclass(frozen=True)
class Tolerance:
    value: float
    relative: bool

    @classmethod
    def parse(cls, text) -> Tolerance:
        if isinstance(text, Tolerance):
            return text
        s = str(text).strip().lower().replace(" ", "")
        m = re.fullmatch(r"(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)(%?)", s)
        if not m:
            raise UsageError(f"cannot parse the tolerance {text!r}; write e.g. 1% (of the FP value) or 0.005 "
                             "(absolute, in the metric's units)")
        v = float(m.group(1))
        return cls(v / 100, True) if m.group(2) else cls(v, False)

    def allowed(self, fp_value: float, metric: str) -> float:
        """The largest acceptable drop in the metric's units."""
        if not self.relative:
            return self.value
        if abs(fp_value) < 1e-12:
            raise UsageError(f"a relative tolerance needs a nonzero FP {metric} (it is {fp_value:g}); give an "
                             "absolute one, e.g. --max-drop 0.01")
        return self.value * abs(fp_value)

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


def cheapest_within(problem: SearchProblem, searcher: Searcher, drop: Callable[[dict[str, str]], float],
                    allowed: float, *, column: str | None = None, resolution: float = 0.002,
                    max_steps: int = 24) -> tuple[Solution, SearchProblem]:
    """Bisect the limit on `column` (default: the first budget's) between the cheapest achievable total
    and the given limit. Returns the accepted solution (with a `history` of every step) and the problem
    at the accepted plan's cost."""
    column = column or next(iter(problem.limits), None)
    if column is None:
        raise UsageError("bisection needs a budget to tighten (e.g. memory=100%)")
    t0 = time.perf_counter()
    lo = float(problem.table.groupby("site", sort=False)[column].min().sum())
    hi = float(problem.limits[column])
    span = max(hi - lo, 1e-300)
    seen: dict[frozenset, float] = {}
    history = []

    def attempt(limit: float) -> tuple[Solution, float] | None:
        limits = dict(problem.limits, **{column: limit})
        try:
            sol = searcher.search(problem.with_limits(limits))
        except InfeasibleBudget:
            return None
        key = frozenset(sol.assignments.items())
        if key not in seen:
            seen[key] = float(drop(sol.assignments)) + 0.0  # + 0.0: no -0.0 in reports
        d = seen[key]
        history.append({"limit": limit, "cost": sol.totals[column], "drop": d, "within": d <= allowed,
                        "assignments": sol.assignments})
        return sol, d

    first = attempt(hi)
    if first is None or first[1] > allowed:
        got = "no plan" if first is None else f"the best plan drops {first[1]:.4g}"
        raise InfeasibleBudget(f"no plan within the budget keeps the drop within {allowed:.4g}: {got}; "
                               "raise the budget or the tolerance")
    best, best_drop = first
    hi = min(hi, best.totals[column])
    steps = 0
    while hi - lo > resolution * span and steps < max_steps:
        steps += 1
        mid = (lo + hi) / 2
        r = attempt(mid)
        if r is not None and r[1] <= allowed:
            best, best_drop = r
            hi = min(mid, best.totals[column])
        else:
            lo = mid
    hist = pd.DataFrame(history)
    best.history = hist
    best.measured = best_drop
    best.seconds = time.perf_counter() - t0
    best.status = f"{best.status}; bisected {len(hist)} budgets, {len(seen)} plans measured"
    return best, problem.with_limits(dict(problem.limits, **{column: best.totals[column]}))
